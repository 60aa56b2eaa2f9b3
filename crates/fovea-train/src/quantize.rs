//! int8 export: static QDQ quantisation of the exported ONNX graph through
//! fovea-quantize (the quantiser `fovea quantize` uses), calibrated on
//! training images prepared exactly as the network sees them.

use fovea_quantize::{QuantizeOptions, quantize};
use tch::{Device, Kind};

use crate::augment::{Normalize, to_tensors};
use crate::data::Dataset;
use crate::error::{Result, TrainError};
use crate::eval::fit_input;

/// Quantises `onnx` with the first `count` images of `data` as calibration set.
pub fn quantize_int8(
    onnx: &[u8],
    data: &Dataset,
    normalize: &Normalize,
    input_size: [usize; 2],
    count: usize,
) -> Result<Vec<u8>> {
    let count = count.min(data.len()) as i64;
    let (images, _) = to_tensors(data, Device::Cpu);
    let mut calibration = Vec::new();
    for start in (0..count).step_by(64) {
        let len = 64.min(count - start);
        let x = fit_input(&normalize.apply(&images.narrow(0, start, len)), input_size);
        let values = Vec::<f32>::try_from(x.to_kind(Kind::Float).flatten(0, -1))
            .map_err(|e| TrainError::Export(format!("reading calibration images: {e}")))?;
        let shape = vec![len as usize, 3, input_size[0], input_size[1]];
        calibration.push(
            fovea_core::Tensor::new(shape, values)
                .map_err(|e| TrainError::Export(e.to_string()))?,
        );
    }
    quantize(onnx, &calibration, &QuantizeOptions::default())
        .map(|quantized| quantized.bytes)
        .map_err(|e| TrainError::Export(format!("int8 quantisation: {e}")))
}

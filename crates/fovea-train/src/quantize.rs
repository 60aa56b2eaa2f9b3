//! `fovea export --quantize int8`: the exported fp32 graph goes through
//! fovea-engine's quantiser, the one `fovea quantize` uses (per-channel int8
//! weights, activation ranges calibrated with ONNX Runtime), fed real
//! training images exactly as the network sees them at evaluation
//! (normalised, no augmentation, resized to the input size).

use burn::tensor::{Device, Tensor, TensorData};
use fovea_engine::quantize::{QuantizeOptions, quantize};
use rand::SeedableRng;
use rand::rngs::ChaCha8Rng;

use crate::augment::{Augment, Normalize, make_batch};
use crate::data::Dataset;
use crate::error::{Result, TrainError};
use crate::eval::fit_input;

/// Quantises the encoded fp32 model `onnx` to static int8 QDQ, calibrated on
/// the first `count` images of `data`.
pub fn quantize_int8(
    onnx: &[u8],
    data: &Dataset,
    normalize: &Normalize,
    input_size: [usize; 2],
    count: usize,
    device: &Device,
) -> Result<Vec<u8>> {
    let device = device.clone().without_autodiff();
    let indices: Vec<usize> = (0..count.min(data.len())).collect();
    // Unused without augmentation, but make_batch takes one.
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut calibration = Vec::new();
    for chunk in indices.chunks(64) {
        let batch = make_batch(data, chunk, &Augment::none(), normalize, &mut rng);
        let x = Tensor::<4>::from_data(
            TensorData::new(batch.images, [chunk.len(), 3, batch.height, batch.width]),
            &device,
        );
        let values = fit_input(x, input_size)
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .map_err(|e| TrainError::Export(format!("reading calibration images: {e:?}")))?;
        let shape = vec![chunk.len(), 3, input_size[0], input_size[1]];
        calibration.push(
            fovea_core::Tensor::new(shape, values)
                .map_err(|e| TrainError::Export(e.to_string()))?,
        );
    }
    quantize(onnx, &calibration, &QuantizeOptions::default())
        .map(|quantized| quantized.bytes)
        .map_err(|e| TrainError::Export(format!("int8 quantisation: {e}")))
}

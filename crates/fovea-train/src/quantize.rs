//! Calibration for int8 QDQ export: runs the network over real images and
//! records, for every tensor entering a convolution, the largest magnitude
//! seen, which becomes that activation's per-tensor scale.

use burn::module::Module;
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor, TensorData};
use rand::SeedableRng;
use rand::rngs::ChaCha8Rng;

use crate::augment::{Augment, Normalize, make_batch};
use crate::data::Dataset;
use crate::eval::fit_input;
use crate::export::{ActivationScales, INPUT};
use crate::model::ResNet;

fn max_abs(t: &Tensor<4>) -> f32 {
    t.clone()
        .abs()
        .max()
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .ok()
        .and_then(|v| v.first().copied())
        .unwrap_or(0.0)
}

fn record(scales: &mut ActivationScales, name: &str, t: &Tensor<4>, signed: bool) {
    // int8 for the signed image, uint8 for post-ReLU activations.
    let levels = if signed { 127.0 } else { 255.0 };
    let scale = (max_abs(t) / levels).max(1e-8);
    let entry = scales.entry(name.to_string()).or_insert(0.0);
    *entry = entry.max(scale);
}

/// Per-tensor activation scales from the first `count` images of `data`, fed
/// to the network as they are at evaluation (normalised, no augmentation).
/// Names match the ONNX graph `export::to_onnx` writes.
pub fn calibrate(
    model: &ResNet,
    data: &Dataset,
    normalize: &Normalize,
    input_size: [usize; 2],
    count: usize,
    device: &Device,
) -> ActivationScales {
    let model = model.valid();
    let device = device.clone().without_autodiff();
    let mut scales = ActivationScales::new();
    let indices: Vec<usize> = (0..count.min(data.len())).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    for chunk in indices.chunks(64) {
        let batch = make_batch(data, chunk, &Augment::none(), normalize, &mut rng);
        let x = Tensor::<4>::from_data(
            TensorData::new(batch.images, [chunk.len(), 3, batch.height, batch.width]),
            &device,
        );
        let x = fit_input(x, input_size);
        record(&mut scales, INPUT, &x, true);
        let mut x = relu(model.bn1.forward(model.conv1.forward(x)));
        let mut name = "relu.out".to_string();
        if let Some(pool) = &model.maxpool {
            x = pool.forward(x);
            name = "maxpool.out".into();
        }
        for (layer, blocks) in [&model.layer1, &model.layer2, &model.layer3, &model.layer4]
            .into_iter()
            .enumerate()
        {
            for (i, block) in blocks.iter().enumerate() {
                let p = format!("layer{}.{i}", layer + 1);
                record(&mut scales, &name, &x, false);
                let identity = match &block.downsample {
                    Some(d) => d.bn.forward(d.conv.forward(x.clone())),
                    None => x.clone(),
                };
                let y = relu(block.bn1.forward(block.conv1.forward(x)));
                record(&mut scales, &format!("{p}.relu1.out"), &y, false);
                let y = block.bn2.forward(block.conv2.forward(y));
                x = relu(y + identity);
                name = format!("{p}.relu2.out");
            }
        }
    }
    scales
}

//! ONNX export: the exported graph computes the libtorch network's logits under
//! both serving backends, and the repository entry is one fovea can serve.

mod common;

use common::*;
use fovea_core::ModelConfig;
use fovea_engine::{BackendChoice, open_backend};
use fovea_train::ResNet;
use fovea_train::export::{serving_config, to_onnx, write_repository_entry};
use fovea_train::pth;
use tch::{Device, Tensor};

/// Runs `onnx` (written to a file) under `choice` on `input` [n, 3, h, w].
fn run_onnx(choice: BackendChoice, onnx: &[u8], input: &[f32], shape: [usize; 4]) -> Vec<f32> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.onnx");
    std::fs::write(&path, onnx).unwrap();
    let mut backend = open_backend(choice, &path, 1).unwrap();
    let input = fovea_core::tensor::Tensor::new(shape.to_vec(), input.to_vec()).unwrap();
    backend.run(&input).unwrap().into_data()
}

fn torch_logits(model: &ResNet, input: &[f32], shape: [usize; 4]) -> Vec<f32> {
    let x = Tensor::from_slice(input).view(shape.map(|d| d as i64));
    values(&tch::no_grad(|| model.forward(&x, false)))
}

fn assert_parity(model: &ResNet, input: &[f32], shape: [usize; 4], reference: Option<&[f32]>) {
    let onnx = to_onnx(model, [shape[2], shape[3]]).unwrap();
    let want = torch_logits(model, input, shape);
    if let Some(reference) = reference {
        let diff = max_abs_diff(&want, reference);
        assert!(diff <= 1e-3, "libtorch vs PyTorch: {diff}");
    }
    for choice in [BackendChoice::Tract, BackendChoice::Ort] {
        let got = run_onnx(choice, &onnx, input, shape);
        let diff = max_abs_diff(&got, &want);
        eprintln!(
            "{choice}: max abs diff to libtorch {diff:e} over {} logits",
            got.len()
        );
        assert!(diff <= 1e-3, "{choice}: max abs diff {diff}");
    }
}

#[test]
fn exported_cifar_stem_network_matches_libtorch_under_tract_and_onnxruntime() {
    let model = pth::import(&fixture("resnet18-cifar-w4-c3.pth"), Device::Cpu).unwrap();
    let input = read_f32(&fixture("resnet18-cifar-w4-c3.input.f32"));
    let reference = read_f32(&fixture("resnet18-cifar-w4-c3.logits.f32"));
    assert_parity(&model.model, &input, [2, 3, 16, 16], Some(&reference));
}

#[test]
fn exported_torchvision_stem_network_matches_pytorch_under_both_backends() {
    let Some(models) = shared("models") else {
        return;
    };
    let model = pth::import(&models.join("resnet18-cifar10-random.pth"), Device::Cpu).unwrap();
    let input = read_f32(&models.join("resnet18-cifar10-random.input.f32"));
    let reference = read_f32(&models.join("resnet18-cifar10-random.logits.f32"));
    assert_parity(&model.model, &input, [4, 3, 32, 32], Some(&reference));
}

#[test]
fn exported_graph_accepts_any_batch_size() {
    let model = pth::import(&fixture("resnet18-cifar-w4-c3.pth"), Device::Cpu).unwrap();
    let onnx = to_onnx(&model.model, [16, 16]).unwrap();
    let input = read_f32(&fixture("resnet18-cifar-w4-c3.input.f32"));
    let one = run_onnx(BackendChoice::Tract, &onnx, &input[..768], [1, 3, 16, 16]);
    let two = run_onnx(BackendChoice::Tract, &onnx, &input, [2, 3, 16, 16]);
    assert_eq!(one.len(), 3);
    assert!(max_abs_diff(&one, &two[..3]) <= 1e-5);
}

#[test]
fn repository_entry_has_a_valid_config_labels_and_a_versioned_model() {
    let model = pth::import(&fixture("resnet18-cifar-w4-c3.pth"), Device::Cpu).unwrap();
    let onnx = to_onnx(&model.model, [32, 32]).unwrap();
    let repo = tempfile::tempdir().unwrap();
    let classes: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
    let p = fovea_core::PreprocessConfig::cifar10();
    let config = serving_config("tiny", 32, 3, p.mean, p.std, "test".into());
    let entry = write_repository_entry(repo.path(), "tiny", 1, &onnx, &config, &classes).unwrap();
    let model_dir = repo.path().join("tiny");
    assert_eq!(entry.onnx, model_dir.join("1/model.onnx"));
    let loaded = ModelConfig::load(&model_dir.join("config.toml")).unwrap();
    assert_eq!(loaded.input.shape, vec![3, 32, 32]);
    assert_eq!(loaded.input.name, "input");
    assert_eq!(loaded.output.name, "logits");
    assert_eq!(loaded.preprocess, fovea_core::PreprocessConfig::cifar10());
    let labels = fovea_core::Labels::load(&model_dir.join("labels.txt")).unwrap();
    assert_eq!(labels.as_slice(), classes.as_slice());
    let again = write_repository_entry(repo.path(), "tiny", 1, &onnx, &config, &classes);
    assert!(again.unwrap_err().to_string().contains("already exists"));
    let left: Vec<_> = std::fs::read_dir(model_dir.join("1"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["model.onnx"], "no partial file may be left behind");
}

#[test]
fn int8_qdq_export_stays_close_to_float_under_onnxruntime() {
    use fovea_train::augment::{Normalize, to_tensors};
    use fovea_train::data::Dataset;
    use fovea_train::quantize::quantize_int8;
    use rand::RngExt;
    use rand::SeedableRng;
    use rand::rngs::ChaCha8Rng;

    let model = pth::import(&fixture("resnet18-cifar-w4-c3.pth"), Device::Cpu).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let n = 64;
    let pixels: Vec<u8> = (0..n * 3 * 256)
        .map(|_| rng.random_range(0..=255u8))
        .collect();
    let data = Dataset::new(
        vec!["a".into(), "b".into(), "c".into()],
        [16, 16],
        pixels,
        vec![0; n],
    )
    .unwrap();
    let normalize = Normalize::cifar10();
    let fp32 = to_onnx(&model.model, [16, 16]).unwrap();
    let int8 = quantize_int8(&fp32, &data, &normalize, [16, 16], n).unwrap();
    assert!(fovea_quantize::is_quantized(&int8).unwrap());
    let (images, _) = to_tensors(&data, Device::Cpu);
    let batch = values(&normalize.apply(&images.narrow(0, 0, 16)));
    let shape = [16, 3, 16, 16];
    let want = torch_logits(&model.model, &batch, shape);
    let got = run_onnx(BackendChoice::Ort, &int8, &batch, shape);
    let spread = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    let diff = max_abs_diff(&got, &want);
    eprintln!("int8 vs float: max abs diff {diff} (largest logit {spread})");
    assert!(
        diff <= 0.1 * spread,
        "int8 drifted by {diff} (logits up to {spread})"
    );
}

//! `.pth` import reproduces PyTorch's logits.

mod common;

use burn::tensor::Device;
use common::*;
use fovea_train::model::{Arch, ResNetConfig};
use fovea_train::pth;

#[test]
fn committed_state_dict_fixture_reproduces_its_reference_logits() {
    let device = Device::flex();
    let path = fixture("resnet18-cifar-w4-c3.pth");
    let config = pth::read_config(&path).unwrap();
    assert_eq!(
        config,
        ResNetConfig::new(Arch::Resnet18Cifar, 3).with_width(4)
    );
    let model = pth::import(&path, &device).unwrap();
    let input = read_input(
        &fixture("resnet18-cifar-w4-c3.input.f32"),
        [2, 3, 16, 16],
        &device,
    );
    let want = read_f32(&fixture("resnet18-cifar-w4-c3.logits.f32"));
    let got = values(model.forward(input));
    let diff = max_abs_diff(&got, &want);
    eprintln!("fixture: max abs diff {diff:e}");
    assert!(diff <= 1e-4, "max abs diff {diff}");
}

#[test]
fn torchvision_resnet18_state_dict_reproduces_pytorch_logits() {
    let Some(models) = shared("models") else {
        return;
    };
    let device = Device::flex();
    let model = pth::import(&models.join("resnet18-cifar10-random.pth"), &device).unwrap();
    assert_eq!(model.config(), ResNetConfig::new(Arch::Resnet18, 10));
    let input = read_input(
        &models.join("resnet18-cifar10-random.input.f32"),
        [4, 3, 32, 32],
        &device,
    );
    let want = read_f32(&models.join("resnet18-cifar10-random.logits.f32"));
    let got = values(model.forward(input));
    let diff = max_abs_diff(&got, &want);
    eprintln!("resnet18-cifar10-random.pth: max abs diff {diff:e}");
    assert!(diff <= 1e-3, "max abs diff {diff}");
}

#[test]
fn a_state_dict_of_another_width_is_refused_by_name() {
    let device = Device::flex();
    let model = ResNetConfig::new(Arch::Resnet18Cifar, 3)
        .with_width(8)
        .init(&device);
    let message = pth::load_into(model, &fixture("resnet18-cifar-w4-c3.pth"))
        .unwrap_err()
        .to_string();
    assert!(message.contains("resnet18-cifar-w4-c3.pth"), "{message}");
    assert!(message.contains("conv1.weight"), "{message}");
}

#[test]
fn a_file_that_is_not_a_state_dict_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.pth");
    std::fs::write(&path, b"PK\x03\x04 not really a zip").unwrap();
    let message = pth::import(&path, &Device::flex()).unwrap_err().to_string();
    assert!(message.contains("broken.pth"), "{message}");
}

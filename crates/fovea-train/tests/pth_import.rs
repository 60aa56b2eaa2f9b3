//! `.pth` import reproduces PyTorch's logits.

mod common;

use common::*;
use fovea_train::model::{Arch, ResNetConfig};
use fovea_train::pth;
use tch::Device;

fn logits(net: &fovea_train::Network, input: &tch::Tensor) -> Vec<f32> {
    values(&tch::no_grad(|| net.model.forward(input, false)))
}

#[test]
fn committed_state_dict_fixture_reproduces_its_reference_logits() {
    let path = fixture("resnet18-cifar-w4-c3.pth");
    let config = pth::read_config(&path).unwrap();
    assert_eq!(
        config,
        ResNetConfig::new(Arch::Resnet18Cifar, 3).with_width(4)
    );
    let net = pth::import(&path, Device::Cpu).unwrap();
    let input = read_input(&fixture("resnet18-cifar-w4-c3.input.f32"), [2, 3, 16, 16]);
    let want = read_f32(&fixture("resnet18-cifar-w4-c3.logits.f32"));
    let got = logits(&net, &input);
    let diff = max_abs_diff(&got, &want);
    eprintln!("fixture: max abs diff {diff:e}");
    assert!(diff <= 1e-4, "max abs diff {diff}");
}

#[test]
fn torchvision_resnet18_state_dict_reproduces_pytorch_logits() {
    let Some(models) = shared("models") else {
        return;
    };
    let net = pth::import(&models.join("resnet18-cifar10-random.pth"), Device::Cpu).unwrap();
    assert_eq!(net.model.config, ResNetConfig::new(Arch::Resnet18, 10));
    let input = read_input(
        &models.join("resnet18-cifar10-random.input.f32"),
        [4, 3, 32, 32],
    );
    let want = read_f32(&models.join("resnet18-cifar10-random.logits.f32"));
    let got = logits(&net, &input);
    let diff = max_abs_diff(&got, &want);
    eprintln!("resnet18-cifar10-random.pth: max abs diff {diff:e}");
    assert!(diff <= 1e-3, "max abs diff {diff}");
}

#[test]
fn a_state_dict_of_another_width_is_refused_by_name() {
    let mut net = fovea_train::Network::init(
        ResNetConfig::new(Arch::Resnet18Cifar, 3).with_width(8),
        Device::Cpu,
        0,
    );
    let message = pth::load_into(&mut net, &fixture("resnet18-cifar-w4-c3.pth"))
        .unwrap_err()
        .to_string();
    assert!(message.contains("resnet18-cifar-w4-c3.pth"), "{message}");
    // The first mismatching tensor in name order, with both shapes.
    assert!(
        message.contains("`bn1.bias` has shape [4], the network needs [8]"),
        "{message}"
    );
}

#[test]
fn a_file_that_is_not_a_state_dict_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.pth");
    std::fs::write(&path, b"PK\x03\x04 not really a zip").unwrap();
    let message = pth::import(&path, Device::Cpu).err().unwrap().to_string();
    assert!(message.contains("broken.pth"), "{message}");
}

//! Both backends against real models: PyTorch's reference logits for the
//! random-weight ResNet-18, and agreement with each other on the tiny model.

mod common;

use common::*;
use fovea_core::Tensor;
use fovea_engine::{BackendChoice, bench_backend, open_backend};

fn check_reference_logits(choice: BackendChoice) {
    let Some(models) = shared_models() else {
        return;
    };
    let input = read_f32(&models.join("resnet18-imagenet-random.input.f32"));
    let expected = read_f32(&models.join("resnet18-imagenet-random.logits.f32"));
    let mut backend =
        open_backend(choice, &models.join("resnet18-imagenet-random.onnx"), 2).unwrap();
    let output = backend
        .run(&Tensor::new(vec![4, 3, 224, 224], input).unwrap())
        .unwrap();
    assert_eq!(output.shape(), &[4, 1000]);
    let diff = max_abs_diff(output.data(), &expected);
    eprintln!(
        "{}: max abs diff from PyTorch's logits = {diff:e}",
        backend.name()
    );
    assert!(diff <= 1e-3, "{}: max abs diff {diff}", backend.name());
}

#[test]
fn tract_reproduces_pytorch_reference_logits() {
    check_reference_logits(BackendChoice::Tract);
}

#[test]
fn onnxruntime_reproduces_pytorch_reference_logits() {
    if ort_available() {
        check_reference_logits(BackendChoice::Ort);
    }
}

#[test]
fn backends_agree_on_the_tiny_models_argmax() {
    if !ort_available() {
        return;
    }
    let input = tiny_input(16, 0);
    let mut tract = open_backend(BackendChoice::Tract, &tiny_model(), 1).unwrap();
    let mut ort = open_backend(BackendChoice::Ort, &tiny_model(), 1).unwrap();
    let (a, b) = (tract.run(&input).unwrap(), ort.run(&input).unwrap());
    assert_eq!(a.shape(), &[16, 10]);
    let classes = argmax_rows(&a);
    eprintln!(
        "tiny argmax: {classes:?}; max abs diff {:e}",
        max_abs_diff(a.data(), b.data())
    );
    assert_eq!(classes, argmax_rows(&b));
    assert!(
        classes.iter().any(|c| *c != classes[0]),
        "the inputs should not all land in one class"
    );
}

#[test]
fn signature_reports_the_models_names_and_dynamic_batch() {
    let mut choices = vec![BackendChoice::Tract];
    if ort_available() {
        choices.push(BackendChoice::Ort);
    }
    for choice in choices {
        let backend = open_backend(choice, &tiny_model(), 1).unwrap();
        let signature = backend.signature();
        assert_eq!(signature.input_name, "input", "{choice}");
        assert_eq!(signature.output_name, "logits", "{choice}");
        assert_eq!(
            signature.input_shape[0], None,
            "{choice}: batch must be dynamic"
        );
        assert_eq!(
            signature.input_item_shape(),
            Some(vec![3, 32, 32]),
            "{choice}"
        );
        assert_eq!(signature.num_classes(), Some(10), "{choice}");
    }
}

#[test]
fn a_file_that_is_not_onnx_fails_to_load_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("garbage.onnx");
    std::fs::write(&path, b"not a model").unwrap();
    let message = open_backend(BackendChoice::Tract, &path, 1)
        .err()
        .unwrap()
        .to_string();
    assert!(message.contains("garbage.onnx"), "{message}");
}

#[test]
fn bench_backend_times_the_requested_runs() {
    let mut backend = open_backend(BackendChoice::Tract, &tiny_model(), 1).unwrap();
    let result = bench_backend(backend.as_mut(), 4, 5).unwrap();
    assert_eq!((result.batch, result.iterations), (4, 5));
    assert!(result.p50 <= result.p90 && result.images_per_second() > 0.0);
}

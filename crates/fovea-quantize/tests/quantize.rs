//! Static int8 quantisation, end to end: the rewritten graph loads and runs,
//! its weights are int8 per channel, ONNX Runtime runs it on integer kernels,
//! and it picks the same class as the fp32 model.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use fovea_core::{PreprocessConfig, Tensor};
use fovea_engine::{BackendChoice, open_backend};
use fovea_onnx::{ModelProto, data_type};
use fovea_quantize::{
    QuantizeError, QuantizeOptions, QuantizedModel, compare_backends, is_quantized, ort_kernels,
    quantize,
};
use prost::Message;

/// Items `[1, 3, 32, 32]` one by one, as the server hands them over.
fn items(t: &Tensor) -> Vec<Tensor> {
    (0..t.batch_size())
        .map(|i| Tensor::new(vec![1, 3, 32, 32], t.item(i).unwrap().to_vec()).unwrap())
        .collect()
}

/// The tiny test model quantised with default options, calibrated on 32
/// items; `None` (having said why) when ONNX Runtime is not available.
fn quantized_tiny_model() -> Option<QuantizedModel> {
    if !ort_available() {
        return None;
    }
    let fp32 = std::fs::read(tiny_model()).unwrap();
    Some(
        quantize(
            &fp32,
            &items(&tiny_input(32, 1)),
            &QuantizeOptions::default(),
        )
        .unwrap(),
    )
}

fn write(dir: &Path, bytes: &[u8]) -> PathBuf {
    let path = dir.join("model.onnx");
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn tiny_model_quantises_to_per_channel_int8_weights() {
    let Some(quantized) = quantized_tiny_model() else {
        return;
    };
    let model = ModelProto::decode(quantized.bytes.as_slice()).unwrap();
    let graph = model.graph.unwrap();
    let init = |name: &str| graph.initializer.iter().find(|t| t.name == name);
    // Every Conv/Gemm weight comes from a per-axis DequantizeLinear of an int8 tensor.
    for node in graph
        .node
        .iter()
        .filter(|n| n.op_type == "Conv" || n.op_type == "Gemm")
    {
        let dq = graph
            .node
            .iter()
            .find(|d| d.output[0] == node.input[1])
            .unwrap_or_else(|| panic!("{}: weight is not dequantised", node.name));
        assert_eq!(dq.op_type, "DequantizeLinear");
        let weight = init(&dq.input[0]).unwrap();
        let scales = init(&dq.input[1]).unwrap();
        assert_eq!(weight.data_type, data_type::INT8);
        let axis = dq.int_attribute("axis").unwrap() as usize;
        assert_eq!(
            scales.dims,
            vec![weight.dims[axis]],
            "one scale per channel"
        );
        assert!(weight.raw_data.iter().all(|&b| b as i8 >= -127));
    }
    assert!(
        graph
            .initializer
            .iter()
            .filter(|t| t.data_type == data_type::FLOAT)
            .all(|t| t.dims.len() <= 1),
        "no float weight matrix may remain"
    );
    assert!(
        !graph.node.iter().any(|n| n.op_type == "Relu"),
        "ReLU folds into the quantisation"
    );
    let s = &quantized.summary;
    assert_eq!((s.weights, s.biases, s.folded_activations), (2, 2, 1));
    assert_eq!(s.calibration_items, 32);
}

#[test]
fn quantised_tiny_model_runs_on_integer_kernels_and_agrees_with_fp32() {
    let Some(quantized) = quantized_tiny_model() else {
        return;
    };
    let kernels = ort_kernels(&quantized.bytes, 1).unwrap();
    eprintln!("ONNX Runtime kernels: {kernels:?}");
    assert_eq!(kernels.get("QLinearConv"), Some(&1), "{kernels:?}");
    assert!(!kernels.contains_key("Conv") && !kernels.contains_key("FusedConv"));

    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), &quantized.bytes);
    let mut reference = open_backend(BackendChoice::Ort, &tiny_model(), 1).unwrap();
    let mut int8 = open_backend(BackendChoice::Ort, &path, 1).unwrap();
    // Inputs the calibration never saw.
    let eval = items(&tiny_input(48, 7));
    let agreement = compare_backends(reference.as_mut(), int8.as_mut(), &eval).unwrap();
    eprintln!("{agreement:?}");
    assert_eq!(agreement.items, 48);
    assert!(agreement.top1_rate() >= 0.9, "{agreement:?}");
}

#[test]
fn tract_runs_the_quantised_tiny_model() {
    let Some(quantized) = quantized_tiny_model() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), &quantized.bytes);
    let mut reference = open_backend(BackendChoice::Tract, &tiny_model(), 1).unwrap();
    let mut int8 = open_backend(BackendChoice::Tract, &path, 1).unwrap();
    let agreement = compare_backends(
        reference.as_mut(),
        int8.as_mut(),
        &items(&tiny_input(48, 7)),
    )
    .unwrap();
    eprintln!("tract: {agreement:?}");
    assert!(agreement.top1_rate() >= 0.9, "{agreement:?}");
}

#[test]
fn a_model_without_weights_to_quantise_is_refused() {
    let fp32 = std::fs::read(tiny_model()).unwrap();
    let mut model = ModelProto::decode(fp32.as_slice()).unwrap();
    let graph = model.graph.as_mut().unwrap();
    // Weights fed as inputs are not constants: nothing can be quantised.
    graph.initializer.clear();
    let err = quantize(
        &model.encode_to_vec(),
        &items(&tiny_input(2, 1)),
        &QuantizeOptions::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("no Conv"), "{err}");
    assert!(quantize(b"not a model", &[], &QuantizeOptions::default()).is_err());
}

#[test]
fn a_quantised_model_is_recognised_and_not_quantised_twice() {
    if !ort_available() {
        return;
    }
    let fp32 = std::fs::read(tiny_model()).unwrap();
    let calibration = items(&tiny_input(4, 1));
    let int8 = quantize(&fp32, &calibration, &QuantizeOptions::default()).unwrap();
    assert!(!is_quantized(&fp32).unwrap());
    assert!(is_quantized(&int8.bytes).unwrap());
    assert!(matches!(
        quantize(&int8.bytes, &calibration, &QuantizeOptions::default()),
        Err(QuantizeError::AlreadyQuantized)
    ));
}

/// Files of `dir`'s class folders (or `dir` itself), `per_class` of each,
/// skipping the first `skip` of each, preprocessed for ImageNet.
fn imagenet_inputs(dir: &Path, per_class: usize, skip: usize) -> Vec<Tensor> {
    let spec = PreprocessConfig::imagenet();
    let mut folders: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    if folders.is_empty() {
        folders.push(dir.to_path_buf());
    }
    folders.sort();
    let mut out = Vec::new();
    for folder in folders {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&folder)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        for file in files.iter().skip(skip).take(per_class) {
            let bytes = std::fs::read(file).unwrap();
            out.push(
                fovea_vision::preprocess(&bytes, &spec, &fovea_vision::ImageLimits::default())
                    .unwrap(),
            );
        }
    }
    out
}

#[test]
fn resnet18_quantised_on_real_images_keeps_its_top1() {
    let (Some(models), Some(cifar), Some(photos)) = (
        shared_models(),
        shared_data("cifar10/test"),
        shared_data("images"),
    ) else {
        return;
    };
    if !ort_available() {
        return;
    }
    let source = models.join("resnet18-imagenet-random.onnx");
    let fp32 = std::fs::read(&source).unwrap();
    let calibration = imagenet_inputs(&cifar, 4, 0);
    let quantized = quantize(&fp32, &calibration, &QuantizeOptions::default()).unwrap();
    eprintln!("{:?}", quantized.summary);
    let kernels = ort_kernels(&quantized.bytes, 2).unwrap();
    eprintln!("ONNX Runtime kernels: {kernels:?}");
    assert_eq!(kernels.get("QLinearConv"), Some(&20), "{kernels:?}");
    assert_eq!(kernels.get("QLinearAdd"), Some(&8), "{kernels:?}");
    // The whole chain stays int8: only the image is quantised, nothing is
    // dequantised between layers, and no float convolution is left.
    assert_eq!(kernels.get("QuantizeLinear"), Some(&1), "{kernels:?}");
    for float_op in ["DequantizeLinear", "Conv", "FusedConv", "Add", "Relu"] {
        assert!(
            !kernels.contains_key(float_op),
            "{float_op} left: {kernels:?}"
        );
    }

    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), &quantized.bytes);
    let mut reference = open_backend(BackendChoice::Ort, &source, 2).unwrap();
    let mut int8 = open_backend(BackendChoice::Ort, &path, 2).unwrap();
    // Photos and CIFAR images the calibration did not see.
    let mut eval = imagenet_inputs(&photos, 8, 0);
    eval.extend(imagenet_inputs(&cifar, 3, 100));
    let agreement = compare_backends(reference.as_mut(), int8.as_mut(), &eval).unwrap();
    eprintln!("resnet18 int8 vs fp32: {agreement:?}");
    assert_eq!(agreement.items, 38);
    assert!(agreement.top1_rate() >= 0.9, "{agreement:?}");
}

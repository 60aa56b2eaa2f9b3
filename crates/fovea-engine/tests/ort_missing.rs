//! Without the ONNX Runtime library: `ort` fails clearly, `auto` falls back
//! to tract, and caller-built backends need no library at all. Its own test
//! binary, because the library is loaded once per process.

mod common;

use std::sync::Once;

use fovea_core::{Labels, ModelConfig, PreprocessConfig};
use fovea_engine::{BackendChoice, BackendError, Engine, EngineOptions, ModelSource, open_backend};

/// Points ONNX Runtime at a library that does not exist.
fn without_onnxruntime() {
    static MISSING: Once = Once::new();
    // SAFETY: every test of this binary calls this before anything else, and
    // `Once` finishes the write before any of them goes on to read the
    // environment; nothing else in the binary writes it.
    MISSING.call_once(|| unsafe {
        std::env::set_var("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so")
    });
}

#[test]
fn a_missing_onnxruntime_library_is_reported_and_auto_falls_back_to_tract() {
    without_onnxruntime();
    let error = open_backend(BackendChoice::Ort, &common::tiny_model(), 1)
        .err()
        .unwrap();
    assert!(
        matches!(error, BackendError::RuntimeUnavailable(_)),
        "{error}"
    );
    assert!(error.to_string().contains("ORT_DYLIB_PATH"), "{error}");
    let backend = open_backend(BackendChoice::Auto, &common::tiny_model(), 1).unwrap();
    assert_eq!(backend.name(), "tract");
}

#[tokio::test]
async fn caller_built_backends_start_without_probing_onnxruntime() {
    without_onnxruntime();
    let gate = fovea_testkit::Gate::new(&[3, 32, 32], 10);
    let source = ModelSource::Backend {
        config: ModelConfig::image_classifier("input", "logits", PreprocessConfig::cifar10()),
        labels: Labels::cifar10(),
        factory: gate.factory(),
    };
    // ONNX Runtime chosen and missing fails a file source at start-up.
    let options = EngineOptions {
        backend: BackendChoice::Ort,
        ..EngineOptions::default()
    };
    let engine = Engine::start(source, options).await.unwrap();
    assert!(engine.is_ready(), "{:?}", engine.statuses());
    assert_eq!(engine.backend_name(), "gated");
}

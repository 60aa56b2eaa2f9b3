//! Without the ONNX Runtime library: `ort` fails clearly and `auto` falls back
//! to tract. Its own test binary, because the library is loaded once per process.

mod common;

use fovea_engine::{BackendChoice, BackendError, open_backend};

#[test]
fn a_missing_onnxruntime_library_is_reported_and_auto_falls_back_to_tract() {
    // SAFETY: the only test in this binary, run before any thread reads the environment.
    unsafe { std::env::set_var("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so") };
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

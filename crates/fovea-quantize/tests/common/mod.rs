//! What the quantisation tests share: the engine's tiny test model, the
//! shared data directory (absent on a fresh clone) and deterministic inputs.

#![allow(dead_code)]

use std::path::PathBuf;

use fovea_core::Tensor;

/// The committed tiny CIFAR-shaped model, kept with the engine's fixtures
/// (scripts/make_tiny_model.py writes it there).
pub fn tiny_model() -> PathBuf {
    fovea_testkit::tiny_cifar_model()
}

/// `../shared/models`, or `None` (with the reason printed) on a machine
/// without it; a failure in CI (`fovea_testkit`).
pub fn shared_models() -> Option<PathBuf> {
    fovea_testkit::shared("models")
}

/// `../shared/data/<what>`, or `None` with the reason printed (a failure in CI).
pub fn shared_data(what: &str) -> Option<PathBuf> {
    fovea_testkit::shared(&format!("data/{what}"))
}

/// Whether ONNX Runtime can be loaded here; prints why not, or fails in CI.
pub fn ort_available() -> bool {
    fovea_testkit::available(
        fovea_testkit::REQUIRE_ORT,
        "the ONNX Runtime half",
        fovea_engine::ort_runtime_status().map(|_| ()),
    )
    .is_some()
}

/// `n` CIFAR-shaped items (`fovea_testkit::tiny_cifar_values`).
pub fn tiny_input(n: usize, seed: usize) -> Tensor {
    Tensor::new(
        vec![n, 3, 32, 32],
        fovea_testkit::tiny_cifar_values(n, seed),
    )
    .unwrap()
}

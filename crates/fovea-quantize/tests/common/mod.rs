//! What the quantisation tests share: the engine's tiny test model, the
//! shared data directory (absent on a fresh clone) and deterministic inputs.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use fovea_core::Tensor;

/// The committed tiny CIFAR-shaped model, kept with the engine's fixtures
/// (scripts/make_tiny_model.py writes it there).
pub fn tiny_model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fovea-engine/tests/fixtures/tiny-cifar.onnx")
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

/// `n` CIFAR-shaped items that differ in colour as well as texture, so the
/// tiny model's argmax varies between them (pure noise averages out).
pub fn tiny_input(n: usize, seed: usize) -> Tensor {
    let mut data = Vec::with_capacity(n * 3 * 32 * 32);
    for item in 0..n {
        let k = (seed * 131 + item * 17) as f32;
        for channel in 0..3 {
            let offset = 2.0 * (1.7 * k + 2.3 * channel as f32).sin();
            for pixel in 0..32 * 32 {
                data.push(offset + 0.5 * (0.37 * pixel as f32 + k).sin());
            }
        }
    }
    Tensor::new(vec![n, 3, 32, 32], data).unwrap()
}

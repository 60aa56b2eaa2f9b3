//! Helpers shared by the integration tests: fixture paths, the shared data
//! directory (absent on a fresh clone), deterministic inputs and temporary
//! model repositories built around the tiny model.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use fovea_core::Tensor;

/// The committed tiny CIFAR-shaped model (scripts/make_tiny_model.py).
pub fn tiny_model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-cifar.onnx")
}

/// `../shared/models`, or `None` (with the reason printed) on a machine
/// without it; a failure in CI (`fovea_testkit`).
pub fn shared_models() -> Option<PathBuf> {
    fovea_testkit::shared("models")
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

/// Reads a raw little-endian f32 file.
pub fn read_f32(path: &Path) -> Vec<f32> {
    std::fs::read(path)
        .unwrap()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// `n` CIFAR-shaped items (`fovea_testkit::tiny_cifar_values`).
pub fn tiny_input(n: usize, seed: usize) -> Tensor {
    Tensor::new(
        vec![n, 3, 32, 32],
        fovea_testkit::tiny_cifar_values(n, seed),
    )
    .unwrap()
}

/// Index of the largest value of each row.
pub fn argmax_rows(t: &Tensor) -> Vec<usize> {
    (0..t.batch_size())
        .map(|i| {
            let row = t.item(i).unwrap();
            (0..row.len())
                .max_by(|a, b| row[*a].total_cmp(&row[*b]))
                .unwrap()
        })
        .collect()
}

/// Largest absolute difference between two equally long slices.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

pub const CIFAR_LABELS: &str =
    "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n";

/// A config.toml for the tiny model with `extra` (top-level keys, then tables) first.
pub fn tiny_config(extra: &str) -> String {
    format!(
        r#"
{extra}
[input]
name = "input"
shape = [3, 32, 32]
format = "tensor"
[output]
name = "logits"
labels = "labels.txt"
"#
    )
}

/// Writes `<root>/<name>/` with `config`, the CIFAR labels and the tiny model
/// in each of `versions`.
pub fn add_model(root: &Path, name: &str, config: &str, versions: &[u64]) -> PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.toml"), config).unwrap();
    std::fs::write(dir.join("labels.txt"), CIFAR_LABELS).unwrap();
    for version in versions {
        add_version(&dir, *version);
    }
    dir
}

/// Copies the tiny model into `<model_dir>/<version>/model.onnx`.
pub fn add_version(model_dir: &Path, version: u64) {
    let dir = model_dir.join(version.to_string());
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(tiny_model(), dir.join("model.onnx")).unwrap();
}

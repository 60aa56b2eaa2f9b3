//! What the integration tests of every fovea crate share about their
//! environment. Tests that need something a fresh clone may lack (the real
//! data and reference models in `../shared`, the ONNX Runtime library) skip
//! with a printed reason on a user's machine; CI sets `FOVEA_REQUIRE_SHARED=1`
//! and `FOVEA_REQUIRE_ORT=1`, and then the same absence fails the test, so
//! nothing passes in CI by skipping.
//!
//! It also holds the test doubles they share: [`Gate`] and its
//! [`GatedBackend`], a backend the test lets run batch by batch, and
//! [`GatedRepository`], a model repository whose versions run on them.

mod gated;
mod repository;

use std::path::{Path, PathBuf};

pub use gated::{Batch, Gate, GatedBackend};
pub use repository::GatedRepository;

/// Set in CI: a test that needs `../shared` fails when it is absent.
pub const REQUIRE_SHARED: &str = "FOVEA_REQUIRE_SHARED";
/// Set in CI: a test that needs ONNX Runtime fails when it cannot be loaded.
pub const REQUIRE_ORT: &str = "FOVEA_REQUIRE_ORT";

/// `../shared/<sub>` next to the repository (`sub` may be empty), or `None`
/// with the reason printed; panics instead when `FOVEA_REQUIRE_SHARED` is set.
pub fn shared(sub: &str) -> Option<PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared")
        .join(sub);
    let path = path.canonicalize().unwrap_or(path);
    if path.exists() {
        return Some(path);
    }
    skip_or_fail(REQUIRE_SHARED, &format!("{} is absent", path.display()));
    None
}

/// `Ok` passes through; an `Err` prints why the test skips, or panics when
/// `require_var` is set in the environment.
pub fn available<T>(require_var: &str, what: &str, status: Result<T, String>) -> Option<T> {
    match status {
        Ok(value) => Some(value),
        Err(reason) => {
            skip_or_fail(require_var, &format!("{what}: {reason}"));
            None
        }
    }
}

fn skip_or_fail(require_var: &str, reason: &str) {
    assert!(
        std::env::var_os(require_var).is_none(),
        "{reason}, and {require_var} is set: this test must run here"
    );
    eprintln!("skipped: {reason}");
}

/// The committed tiny CIFAR-shaped ONNX model (input `input` `[N,3,32,32]`,
/// output `logits` `[N,10]`), kept with fovea-engine's test fixtures.
pub fn tiny_cifar_model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fovea-engine/tests/fixtures/tiny-cifar.onnx")
}

/// The values of `n` CIFAR-shaped items (`n × 3 × 32 × 32`, row-major) that
/// differ in colour as well as texture, so the tiny model's argmax varies
/// between them (pure noise averages out). Deterministic in `seed`.
pub fn tiny_cifar_values(n: usize, seed: usize) -> Vec<f32> {
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
    data
}

//! What the integration tests of every fovea crate share about their
//! environment. Tests that need something a fresh clone may lack (the real
//! data and reference models in `../shared`, the ONNX Runtime library) skip
//! with a printed reason on a user's machine; CI sets `FOVEA_REQUIRE_SHARED=1`
//! and `FOVEA_REQUIRE_ORT=1`, and then the same absence fails the test, so
//! nothing passes in CI by skipping.

use std::path::{Path, PathBuf};

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

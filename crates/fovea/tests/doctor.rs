//! `fovea doctor` and where fovea finds ONNX Runtime, as a user runs the
//! built binary by hand: no ORT_DYLIB_PATH, started from another directory.

use std::path::Path;
use std::process::{Command, Output};

fn doctor(configure: impl FnOnce(&mut Command)) -> Output {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut command = Command::new(env!("CARGO_BIN_EXE_fovea"));
    command
        .args(["doctor", "--models"])
        .arg(workspace.join("models"))
        .env_remove("ORT_DYLIB_PATH")
        .current_dir(std::env::temp_dir());
    configure(&mut command);
    command.output().unwrap()
}

#[test]
fn onnx_runtime_is_found_in_the_workspace_venv_without_ort_dylib_path() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let venv = workspace.join(".venv").canonicalize();
    let installed = venv
        .as_ref()
        .map_err(|e| format!(".venv: {e}"))
        .and_then(|venv| {
            std::fs::read_dir(venv.join("lib"))
                .map_err(|e| e.to_string())?
                .filter_map(Result::ok)
                .map(|python| python.path().join("site-packages/onnxruntime"))
                .find(|p| p.is_dir())
                .ok_or_else(|| "no onnxruntime wheel in the workspace .venv".to_string())
        });
    if fovea_testkit::available(fovea_testkit::REQUIRE_ORT, "ONNX Runtime", installed).is_none() {
        return;
    }
    let out = doctor(|_| {});
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = text
        .lines()
        .find(|l| l.contains("ONNX Runtime:"))
        .unwrap_or_default();
    assert!(line.contains(".venv/lib/python3"), "{line}");
    assert!(line.contains("libonnxruntime.so"), "{line}");
    assert!(text.contains("resnet18-cifar10"), "{text}");
    assert!(text.contains("config: valid"), "{text}");
}

#[test]
fn a_missing_onnx_runtime_is_reported_with_the_command_that_fixes_it() {
    let out = doctor(|c| {
        c.env("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so");
    });
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(
            "ONNX Runtime: NOT FOUND: ORT_DYLIB_PATH=/nonexistent/libonnxruntime.so does not exist"
        ),
        "{text}"
    );
    assert!(text.contains("pip install onnxruntime=="), "{text}");
    assert!(text.contains("tract: built in"), "{text}");
}

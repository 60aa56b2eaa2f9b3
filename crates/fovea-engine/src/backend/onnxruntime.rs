//! ONNX Runtime through the `ort` crate, loaded at run time from
//! `ORT_DYLIB_PATH` or wherever a user has the `onnxruntime` wheel or library.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use fovea_core::Tensor;
use ort::environment::Environment;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::{TensorRef, ValueType};

use super::{Backend, BackendTuning, Signature};
use crate::error::BackendError;

/// The process-wide ONNX Runtime environment: `ort` allows one per process and
/// loads the library once, so the outcome (or the reason it failed) is kept.
static ENVIRONMENT: OnceLock<Result<(Environment, PathBuf), String>> = OnceLock::new();

/// Where the ONNX Runtime library is, looked for where a user would have it:
/// `ORT_DYLIB_PATH` when set (and then only there); else the `onnxruntime`
/// wheel in `./.venv` or in the `.venv` of the workspace the binary was built
/// in (`target/<profile>/fovea`, where `scripts/serve.sh` installs it); else a
/// `libonnxruntime.so*` on the library path (`LD_LIBRARY_PATH`, the system
/// directories); else the wheel of the system `python3`. The error lists
/// every place looked at.
pub fn ort_library_path() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!("ORT_DYLIB_PATH={} does not exist", path.display()))
        };
    }
    let mut looked = Vec::new();
    for venv in venv_candidates() {
        if let Some(library) = venv_library(&venv) {
            return Ok(library);
        }
        looked.push(venv.display().to_string());
    }
    for dir in library_dirs() {
        if let Some(library) = newest_library(&dir) {
            return Ok(library);
        }
    }
    looked.push("the library path".into());
    match python_library() {
        Ok(library) => Ok(library),
        Err(reason) => {
            looked.push(format!("python3 ({reason})"));
            Err(format!(
                "no libonnxruntime.so (ORT_DYLIB_PATH is unset; looked in {})",
                looked.join(", ")
            ))
        }
    }
}

/// `./.venv`, then the `.venv` at the root of the workspace whose
/// `target/<profile>/` holds the running binary.
fn venv_candidates() -> Vec<PathBuf> {
    let mut candidates = vec![PathBuf::from(".venv")];
    if let Ok(exe) = std::env::current_exe() {
        // <workspace>/target/<profile>/fovea, or .../target/<profile>/deps/<test binary>.
        for ancestor in exe.ancestors().skip(1) {
            if ancestor.file_name().is_some_and(|n| n == "target") {
                if let Some(workspace) = ancestor.parent() {
                    candidates.push(workspace.join(".venv"));
                }
                break;
            }
        }
    }
    candidates.dedup_by(|a, b| {
        a.canonicalize()
            .ok()
            .is_some_and(|a| Some(a) == b.canonicalize().ok())
    });
    candidates
}

/// `<venv>/lib/python3.*/site-packages/onnxruntime/capi/libonnxruntime.so*`.
fn venv_library(venv: &Path) -> Option<PathBuf> {
    let mut pythons: Vec<PathBuf> = std::fs::read_dir(venv.join("lib"))
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("python3"))
        })
        .collect();
    pythons.sort();
    pythons
        .iter()
        .rev()
        .find_map(|python| newest_library(&python.join("site-packages/onnxruntime/capi")))
}

/// `LD_LIBRARY_PATH`'s directories, then the usual system library directories.
fn library_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("LD_LIBRARY_PATH")
        .map(|paths| std::env::split_paths(&paths).collect())
        .unwrap_or_default();
    dirs.extend(
        [
            "/usr/local/lib",
            "/usr/lib",
            "/usr/lib/x86_64-linux-gnu",
            "/usr/lib/aarch64-linux-gnu",
            "/usr/lib64",
        ]
        .map(PathBuf::from),
    );
    dirs
}

/// The `libonnxruntime.so*` of `dir` with the highest version: the versioned
/// name sorts last and is the real file (the bare `.so` may be absent).
fn newest_library(dir: &Path) -> Option<PathBuf> {
    let mut libraries: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libonnxruntime.so"))
        })
        .collect();
    libraries.sort();
    libraries.pop()
}

/// The library inside the system `python3`'s `onnxruntime` package.
fn python_library() -> Result<PathBuf, String> {
    let output = Command::new("python3")
        .args([
            "-c",
            "import onnxruntime, os; print(os.path.dirname(onnxruntime.__file__))",
        ])
        .output()
        .map_err(|e| format!("cannot run: {e}"))?;
    if !output.status.success() {
        return Err("no onnxruntime package".into());
    }
    let capi = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()).join("capi");
    newest_library(&capi).ok_or_else(|| format!("no libonnxruntime.so* in {}", capi.display()))
}

/// Loads the ONNX Runtime library and builds the environment once; returns the
/// library's path, or why it is unavailable.
pub(super) fn runtime_status() -> Result<PathBuf, String> {
    environment().map(|(_, path)| path.clone())
}

/// The process-wide ONNX Runtime environment, for code outside the engine
/// that builds its own sessions (the quantiser's calibration and kernel
/// census): `ort` allows one environment per process, so it must be this one.
pub fn ort_environment() -> Result<&'static Environment, BackendError> {
    environment()
        .map(|(environment, _)| environment)
        .map_err(BackendError::RuntimeUnavailable)
}

/// The shared environment every session is built against (and the library's path).
fn environment() -> Result<&'static (Environment, PathBuf), String> {
    ENVIRONMENT
        .get_or_init(|| {
            let path = ort_library_path()?;
            let builder = ort::init_from(&path).map_err(|e| e.to_string())?;
            let environment = builder
                .with_name("fovea")
                .build()
                .map_err(|e| format!("cannot create the ONNX Runtime environment: {e}"))?;
            Ok((environment, path))
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// An ONNX Runtime session for one model, owned by one inference thread.
pub struct OrtBackend {
    session: Session,
    signature: Signature,
}

impl OrtBackend {
    /// The name reported by [`Backend::name`].
    pub const NAME: &'static str = super::ORT_NAME;

    /// Opens `path` with `threads` intra-op threads, one inter-op thread and all graph optimisations.
    pub fn open(path: &Path, threads: usize, tuning: BackendTuning) -> Result<Self, BackendError> {
        let environment = ort_environment()?;
        let load = |message: String| BackendError::Load {
            path: path.to_path_buf(),
            message,
        };
        let session = Session::builder(environment)
            .map_err(|e| load(e.to_string()))?
            .with_optimization_level(GraphOptimizationLevel::All)
            .map_err(|e| load(e.to_string()))?
            .with_intra_threads(threads)
            .map_err(|e| load(e.to_string()))?
            .with_inter_threads(1)
            .map_err(|e| load(e.to_string()))?
            .with_intra_op_spinning(tuning.intra_op_spinning)
            .map_err(|e| load(e.to_string()))?
            .commit_from_file(path)
            .map_err(|e| load(e.to_string()))?;
        let signature = signature(&session, path)?;
        Ok(Self { session, signature })
    }
}

fn signature(session: &Session, path: &Path) -> Result<Signature, BackendError> {
    let unsupported = |message: String| BackendError::Unsupported {
        path: path.to_path_buf(),
        message,
    };
    let (inputs, outputs) = (session.inputs(), session.outputs());
    let ([input], [output, ..]) = (inputs, outputs) else {
        return Err(unsupported(format!(
            "fovea serves models with one input and at least one output; this one has {} inputs and {} outputs",
            inputs.len(),
            outputs.len()
        )));
    };
    let dims = |outlet: &ort::value::Outlet| -> Result<Vec<Option<usize>>, BackendError> {
        match outlet.dtype() {
            ValueType::Tensor {
                ty: ort::value::TensorElementType::Float32,
                shape,
                ..
            } => Ok(shape.iter().map(|d| usize::try_from(*d).ok()).collect()),
            other => Err(unsupported(format!(
                "`{}` is {other:?}; fovea needs float32 tensors",
                outlet.name()
            ))),
        }
    };
    Ok(Signature {
        input_name: input.name().to_string(),
        input_shape: dims(input)?,
        output_name: output.name().to_string(),
        output_shape: dims(output)?,
    })
}

impl Backend for OrtBackend {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn run(&mut self, input: &Tensor) -> Result<Tensor, BackendError> {
        let run = |e: ort::Error| BackendError::Run(e.to_string());
        let value = TensorRef::from_array_view((input.shape(), input.data())).map_err(run)?;
        let outputs = self
            .session
            .run(ort::inputs![self.signature.input_name.as_str() => value])
            .map_err(run)?;
        let output = outputs.get(&self.signature.output_name).ok_or_else(|| {
            BackendError::Run(format!("no output `{}`", self.signature.output_name))
        })?;
        let (shape, data) = output.try_extract_tensor::<f32>().map_err(run)?;
        let shape = shape.iter().map(|d| *d as usize).collect();
        Tensor::new(shape, data.to_vec()).map_err(|e| BackendError::Run(e.to_string()))
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }
}

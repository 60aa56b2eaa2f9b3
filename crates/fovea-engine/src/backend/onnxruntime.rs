//! ONNX Runtime through the `ort` crate, loaded at run time from
//! `ORT_DYLIB_PATH` or from the `onnxruntime` Python wheel.

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

/// Where the ONNX Runtime library is: `ORT_DYLIB_PATH` when set, else the
/// `capi/libonnxruntime.so*` inside the installed `onnxruntime` Python package.
pub fn ort_library_path() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!("ORT_DYLIB_PATH={} does not exist", path.display()))
        };
    }
    let output = Command::new("python3")
        .args([
            "-c",
            "import onnxruntime, os; print(os.path.dirname(onnxruntime.__file__))",
        ])
        .output()
        .map_err(|e| format!("ORT_DYLIB_PATH is unset and python3 cannot run: {e}"))?;
    if !output.status.success() {
        return Err(
            "ORT_DYLIB_PATH is unset and the onnxruntime Python package is not installed".into(),
        );
    }
    let package = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    let capi = package.join("capi");
    let mut libraries: Vec<PathBuf> = std::fs::read_dir(&capi)
        .map_err(|e| format!("cannot list {}: {e}", capi.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libonnxruntime.so"))
        })
        .collect();
    // The versioned name sorts last and is the real file; the bare .so may be absent.
    libraries.sort();
    libraries
        .pop()
        .ok_or_else(|| format!("no libonnxruntime.so* in {}", capi.display()))
}

/// Loads the ONNX Runtime library and builds the environment once; returns the
/// library's path, or why it is unavailable.
pub fn ort_runtime_status() -> Result<PathBuf, String> {
    environment().map(|(_, path)| path.clone())
}

/// The shared environment every session is built against (and the library's path).
pub(crate) fn environment() -> Result<&'static (Environment, PathBuf), String> {
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
    pub const NAME: &'static str = "onnxruntime";

    /// Opens `path` with `threads` intra-op threads, one inter-op thread and all graph optimisations.
    pub fn open(path: &Path, threads: usize, tuning: BackendTuning) -> Result<Self, BackendError> {
        let (environment, _) = environment().map_err(BackendError::RuntimeUnavailable)?;
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

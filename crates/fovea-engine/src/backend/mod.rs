//! The synchronous `Backend` trait, the choice between ONNX Runtime and tract,
//! and opening a model file with the chosen one. Each backend is a cargo
//! feature (`onnxruntime`, `tract`); choosing one that was left out of the
//! build is an error that says so.

#[cfg(feature = "onnxruntime")]
mod onnxruntime;
#[cfg(feature = "tract")]
mod tract;
mod tta;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use fovea_core::Tensor;

#[cfg(feature = "onnxruntime")]
pub use self::onnxruntime::{OrtBackend, ort_environment, ort_library_path};
#[cfg(feature = "tract")]
pub use self::tract::TractBackend;
pub(crate) use self::tta::FlipAveraged;
use crate::error::BackendError;

/// What the ONNX Runtime backend reports as its name.
const ORT_NAME: &str = "onnxruntime";
/// What the tract backend reports as its name.
const TRACT_NAME: &str = "tract";

/// Runs one model on batches of f32 tensors. Owned by one inference thread,
/// hence `&mut self` and `Send` but not `Sync`.
pub trait Backend: Send {
    /// `"onnxruntime"` or `"tract"` (or whatever a caller-built backend calls itself).
    fn name(&self) -> &'static str;
    /// Runs `input` ([n, ...item]) and returns the model's single output ([n, ...]).
    fn run(&mut self, input: &Tensor) -> Result<Tensor, BackendError>;
    /// The model's input and output as the backend sees them.
    fn signature(&self) -> &Signature;
}

/// Builds one instance of a backend the caller constructs itself, for
/// [`ModelSource::Backend`](crate::ModelSource::Backend): called once per
/// instance of the version, on its inference thread. Cheap to clone.
#[derive(Clone)]
pub struct BackendFactory(Arc<dyn Fn() -> Result<Box<dyn Backend>, BackendError> + Send + Sync>);

impl BackendFactory {
    /// Wraps `open`, which returns a fresh backend each time it is called.
    pub fn new(
        open: impl Fn() -> Result<Box<dyn Backend>, BackendError> + Send + Sync + 'static,
    ) -> Self {
        Self(Arc::new(open))
    }

    /// A new backend instance.
    pub fn open(&self) -> Result<Box<dyn Backend>, BackendError> {
        (self.0)()
    }
}

// A closure has no Debug, and `ModelSource` (which holds a factory) derives it.
impl fmt::Debug for BackendFactory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BackendFactory(..)")
    }
}

/// Opens a repository version's model file with a backend the caller
/// builds, for [`ModelSource::RepositoryWith`](crate::ModelSource::RepositoryWith):
/// called once per instance, on the version's inference thread, with the
/// path of its `model.onnx`. Cheap to clone.
#[derive(Clone)]
pub struct FileOpener(Arc<OpenFile>);

/// What a [`FileOpener`] calls: the model file's path to a fresh backend.
type OpenFile = dyn Fn(&Path) -> Result<Box<dyn Backend>, BackendError> + Send + Sync;

impl FileOpener {
    /// Wraps `open`, which returns a fresh backend for the model file it is given.
    pub fn new(
        open: impl Fn(&Path) -> Result<Box<dyn Backend>, BackendError> + Send + Sync + 'static,
    ) -> Self {
        Self(Arc::new(open))
    }

    /// A new backend instance for the model file `path`.
    pub fn open(&self, path: &Path) -> Result<Box<dyn Backend>, BackendError> {
        (self.0)(path)
    }
}

impl fmt::Debug for FileOpener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FileOpener(..)")
    }
}

/// A model's single input and output: names and shapes, `None` where a
/// dimension is dynamic (the batch dimension, normally).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    /// Name of the graph input.
    pub input_name: String,
    /// Full input shape including the batch dimension.
    pub input_shape: Vec<Option<usize>>,
    /// Name of the graph output.
    pub output_name: String,
    /// Full output shape including the batch dimension.
    pub output_shape: Vec<Option<usize>>,
}

impl Signature {
    /// The input shape without the batch dimension, if every dimension is known.
    pub fn input_item_shape(&self) -> Option<Vec<usize>> {
        self.input_shape.get(1..)?.iter().copied().collect()
    }

    /// Number of classes: the last output dimension, when known and the output is [n, classes].
    pub fn num_classes(&self) -> Option<usize> {
        match self.output_shape[..] {
            [_, classes] => classes,
            _ => None,
        }
    }
}

/// Which inference library runs the models.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum BackendChoice {
    /// ONNX Runtime when its library can be loaded, otherwise tract.
    #[default]
    Auto,
    /// ONNX Runtime (the fast CPU path); fails when the library is missing.
    Ort,
    /// tract, pure Rust, always available.
    Tract,
}

impl BackendChoice {
    /// The accepted spellings, for CLI help.
    pub const NAMES: [&'static str; 3] = ["auto", "ort", "tract"];

    /// Whether this build can run the choice at all (`Auto`: either backend).
    pub fn is_compiled(self) -> bool {
        match self {
            BackendChoice::Auto => cfg!(any(feature = "onnxruntime", feature = "tract")),
            BackendChoice::Ort => cfg!(feature = "onnxruntime"),
            BackendChoice::Tract => cfg!(feature = "tract"),
        }
    }

    /// `Ok` when this build has the backend, else the error that names the
    /// missing cargo feature.
    fn ensure_compiled(self) -> Result<(), BackendError> {
        if self.is_compiled() {
            Ok(())
        } else {
            Err(self.not_compiled())
        }
    }

    /// The error for a backend this build lacks. `Auto` lacks one only when
    /// neither is built; ONNX Runtime is the one to ask for then.
    fn not_compiled(self) -> BackendError {
        match self {
            BackendChoice::Tract => BackendError::NotCompiled {
                backend: TRACT_NAME,
                feature: "tract",
            },
            _ => BackendError::NotCompiled {
                backend: ORT_NAME,
                feature: "onnxruntime",
            },
        }
    }
}

impl fmt::Display for BackendChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackendChoice::Auto => "auto",
            BackendChoice::Ort => "ort",
            BackendChoice::Tract => "tract",
        })
    }
}

impl FromStr for BackendChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(BackendChoice::Auto),
            "ort" | "onnxruntime" => Ok(BackendChoice::Ort),
            "tract" => Ok(BackendChoice::Tract),
            other => Err(format!(
                "unknown backend `{other}`; expected one of auto, ort, tract"
            )),
        }
    }
}

/// Knobs that change how a backend uses the CPU, beyond the thread count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BackendTuning {
    /// Let ONNX Runtime's intra-op threads spin while waiting for work. Off by
    /// default: spinning threads steal the core that decoding needs on a busy
    /// two-core machine (NOTES.md). tract ignores it.
    pub intra_op_spinning: bool,
}

/// The onnxruntime wheel fovea is built and tested against (`ort`'s api-31
/// needs ONNX Runtime 1.31 or newer); scripts/ensure-onnxruntime.sh installs it.
pub const ORT_WHEEL: &str = "1.32.0";

/// Loads the ONNX Runtime library and builds the environment once; returns the
/// library's path, or why it is unavailable (including a build without the
/// `onnxruntime` feature).
pub fn ort_runtime_status() -> Result<PathBuf, String> {
    #[cfg(feature = "onnxruntime")]
    {
        self::onnxruntime::runtime_status()
    }
    #[cfg(not(feature = "onnxruntime"))]
    {
        Err(BackendChoice::Ort.not_compiled().to_string())
    }
}

/// Resolves `Auto` to the backend that will actually be used, logging why.
/// A build with only one backend resolves to it; with only ONNX Runtime and
/// no library, `Auto` stays ONNX Runtime (there is nothing to fall back to)
/// and opening a model reports the missing library.
pub fn resolve_choice(choice: BackendChoice) -> BackendChoice {
    if choice != BackendChoice::Auto {
        return choice;
    }
    if !cfg!(feature = "onnxruntime") {
        tracing::info!("this build has no ONNX Runtime backend; using tract");
        return BackendChoice::Tract;
    }
    match ort_runtime_status() {
        Ok(path) => {
            tracing::info!(library = %path.display(), "using ONNX Runtime");
            BackendChoice::Ort
        }
        Err(reason) if cfg!(feature = "tract") => {
            tracing::warn!(
                "ONNX Runtime not found: {reason}; falling back to tract, about 3x slower. \
                 Fix: `python3 -m venv .venv && .venv/bin/pip install onnxruntime=={ORT_WHEEL}` \
                 here (or set ORT_DYLIB_PATH to a libonnxruntime.so >= 1.31)"
            );
            BackendChoice::Tract
        }
        Err(reason) => {
            tracing::warn!(
                "ONNX Runtime not found: {reason}; this build has no tract fallback. \
                 Fix: `python3 -m venv .venv && .venv/bin/pip install onnxruntime=={ORT_WHEEL}` \
                 here (or set ORT_DYLIB_PATH to a libonnxruntime.so >= 1.31)"
            );
            BackendChoice::Ort
        }
    }
}

/// Resolves `choice` and checks that it can run here: compiled in and, for
/// ONNX Runtime, its library loadable. The engine calls it once at start-up
/// so that a choice that can never work fails there, not per model.
pub(crate) fn probe(choice: BackendChoice) -> Result<BackendChoice, BackendError> {
    let resolved = resolve_choice(choice);
    resolved.ensure_compiled()?;
    if resolved == BackendChoice::Ort {
        ort_runtime_status().map_err(BackendError::RuntimeUnavailable)?;
    }
    Ok(resolved)
}

/// The name a backend of the resolved `choice` reports.
pub(crate) fn name_of(resolved: BackendChoice) -> &'static str {
    match resolved {
        BackendChoice::Tract => TRACT_NAME,
        _ => ORT_NAME,
    }
}

/// The name `open_backend` will report for `choice` (after resolving `Auto`).
pub fn backend_name(choice: BackendChoice) -> &'static str {
    name_of(resolve_choice(choice))
}

/// Opens `model_path` with the chosen backend and `threads` intra-op threads,
/// with default tuning (no spinning).
pub fn open_backend(
    choice: BackendChoice,
    model_path: &Path,
    threads: usize,
) -> Result<Box<dyn Backend>, BackendError> {
    open_backend_tuned(choice, model_path, threads, BackendTuning::default())
}

/// `open_backend` with explicit tuning.
pub fn open_backend_tuned(
    choice: BackendChoice,
    model_path: &Path,
    threads: usize,
    tuning: BackendTuning,
) -> Result<Box<dyn Backend>, BackendError> {
    let threads = threads.max(1);
    match resolve_choice(choice) {
        BackendChoice::Tract => open_tract(model_path, threads),
        _ => open_ort(model_path, threads, tuning),
    }
}

#[cfg(feature = "tract")]
fn open_tract(model_path: &Path, threads: usize) -> Result<Box<dyn Backend>, BackendError> {
    Ok(Box::new(TractBackend::open(model_path, threads)?))
}

#[cfg(not(feature = "tract"))]
fn open_tract(_: &Path, _: usize) -> Result<Box<dyn Backend>, BackendError> {
    Err(BackendChoice::Tract.not_compiled())
}

#[cfg(feature = "onnxruntime")]
fn open_ort(
    model_path: &Path,
    threads: usize,
    tuning: BackendTuning,
) -> Result<Box<dyn Backend>, BackendError> {
    Ok(Box::new(OrtBackend::open(model_path, threads, tuning)?))
}

#[cfg(not(feature = "onnxruntime"))]
fn open_ort(_: &Path, _: usize, _: BackendTuning) -> Result<Box<dyn Backend>, BackendError> {
    Err(BackendChoice::Ort.not_compiled())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_choice_round_trips_through_its_name() {
        for name in BackendChoice::NAMES {
            let choice: BackendChoice = name.parse().unwrap();
            assert_eq!(choice.to_string(), name);
        }
        assert_eq!("ONNXRuntime".parse(), Ok(BackendChoice::Ort));
        assert!("cuda".parse::<BackendChoice>().is_err());
    }

    #[test]
    fn a_backend_left_out_of_the_build_is_refused_naming_its_feature() {
        for choice in [BackendChoice::Ort, BackendChoice::Tract] {
            let opened = open_backend(choice, Path::new("missing.onnx"), 1);
            if choice.is_compiled() {
                assert!(
                    !matches!(opened, Err(BackendError::NotCompiled { .. })),
                    "{choice}"
                );
            } else {
                let message = opened.err().map(|e| e.to_string()).unwrap_or_default();
                assert!(message.contains("built without"), "{choice}: {message}");
            }
        }
    }

    #[test]
    fn num_classes_comes_from_a_two_dimensional_output() {
        let signature = Signature {
            input_name: "input".into(),
            input_shape: vec![None, Some(3), Some(32), Some(32)],
            output_name: "logits".into(),
            output_shape: vec![None, Some(10)],
        };
        assert_eq!(signature.num_classes(), Some(10));
        assert_eq!(signature.input_item_shape(), Some(vec![3, 32, 32]));
    }
}

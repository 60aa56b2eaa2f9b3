//! The engine's errors and their client/server classification.

use std::path::PathBuf;

use fovea_core::{ErrorKind, FoveaError};

/// A backend could not be opened or could not run a batch.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The ONNX Runtime shared library could not be found or loaded.
    #[error("ONNX Runtime is not available: {0}")]
    RuntimeUnavailable(String),
    /// The chosen backend was left out of this build (a cargo feature).
    #[error(
        "this build of fovea has no {backend} backend (fovea-engine was built without its `{feature}` feature); rebuild with it or choose another backend"
    )]
    NotCompiled {
        backend: &'static str,
        feature: &'static str,
    },
    /// The model file could not be loaded or optimised.
    #[error("cannot load {path}: {message}")]
    Load { path: PathBuf, message: String },
    /// The model loaded but is not a single-input, single-output f32 model.
    #[error("{path}: {message}")]
    Unsupported { path: PathBuf, message: String },
    /// Running a batch failed.
    #[error("inference failed: {0}")]
    Run(String),
}

impl FoveaError for BackendError {
    fn kind(&self) -> ErrorKind {
        match self {
            BackendError::RuntimeUnavailable(_) | BackendError::NotCompiled { .. } => {
                ErrorKind::Unavailable
            }
            _ => ErrorKind::Internal,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            BackendError::RuntimeUnavailable(_) => "runtime_unavailable",
            BackendError::NotCompiled { .. } => "backend_not_compiled",
            BackendError::Load { .. } => "model_load_failed",
            BackendError::Unsupported { .. } => "model_unsupported",
            BackendError::Run(_) => "inference_failed",
        }
    }
}

/// Everything `Engine` and `ModelHandle` can answer instead of a result.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// No model of that name is configured.
    #[error("model `{0}` not found")]
    ModelNotFound(String),
    /// The model exists but that version is not served.
    #[error("model `{model}` has no served version {version}")]
    VersionNotFound { model: String, version: u64 },
    /// The model is configured but no version is available yet (loading or failed).
    #[error("model `{0}` is not ready")]
    NotReady(String),
    /// The model version's queue holds `capacity` items already; retry later.
    #[error(
        "model `{model}` version {version} is overloaded: its queue of {capacity} items is full"
    )]
    QueueFull {
        model: String,
        version: u64,
        capacity: usize,
    },
    /// One request carries more items than the queue can ever hold.
    #[error("a request of {items} items exceeds the queue capacity of {capacity} items")]
    BatchTooLarge { items: usize, capacity: usize },
    /// The request's deadline passed before it could run.
    #[error("deadline exceeded before inference")]
    DeadlineExceeded,
    /// The input tensor does not match the model's input.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The version stopped taking work (unloading or shutting down) while the request waited.
    #[error("model `{model}` version {version} is unloading")]
    Unloading { model: String, version: u64 },
    /// A model could not be loaded (engine start-up only; per-model failures are statuses).
    #[error("{0}")]
    Load(String),
    /// The backend failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
}

impl FoveaError for EngineError {
    fn kind(&self) -> ErrorKind {
        match self {
            EngineError::ModelNotFound(_) | EngineError::VersionNotFound { .. } => {
                ErrorKind::NotFound
            }
            EngineError::NotReady(_)
            | EngineError::QueueFull { .. }
            | EngineError::Unloading { .. } => ErrorKind::Unavailable,
            EngineError::BatchTooLarge { .. } => ErrorKind::TooLarge,
            EngineError::DeadlineExceeded => ErrorKind::Timeout,
            EngineError::InvalidInput(_) => ErrorKind::InvalidInput,
            EngineError::Load(_) => ErrorKind::Internal,
            EngineError::Backend(e) => e.kind(),
        }
    }

    fn code(&self) -> &'static str {
        match self {
            EngineError::ModelNotFound(_) => "model_not_found",
            EngineError::VersionNotFound { .. } => "version_not_found",
            EngineError::NotReady(_) => "model_not_ready",
            EngineError::QueueFull { .. } => "queue_full",
            EngineError::BatchTooLarge { .. } => "batch_too_large",
            EngineError::DeadlineExceeded => "deadline_exceeded",
            EngineError::InvalidInput(_) => "invalid_input",
            EngineError::Unloading { .. } => "model_unloading",
            EngineError::Load(_) => "model_load_failed",
            EngineError::Backend(e) => e.code(),
        }
    }
}

/// A model file could not be written into the repository (or elsewhere).
#[derive(Debug, thiserror::Error)]
pub enum WriteModelError {
    /// The file exists already and is never replaced.
    #[error("{} exists already", .0.display())]
    Exists(PathBuf),
    /// Creating the directory, writing or renaming failed.
    #[error("cannot write {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

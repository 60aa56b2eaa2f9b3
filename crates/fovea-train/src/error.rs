//! The crate's error type: every failure names the file (and where useful the
//! byte offset or tensor) it concerns.

use std::path::PathBuf;

use fovea_core::{ErrorKind, FoveaError};

/// Anything training, evaluation, import or export can fail with.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A dataset file is truncated or malformed.
    #[error("{path}: {message}")]
    Data { path: PathBuf, message: String },
    /// An image inside an ImageFolder dataset could not be decoded.
    #[error("{path}: cannot decode image: {message}")]
    Image { path: PathBuf, message: String },
    /// A `.pth` file could not be read or does not fit the network.
    #[error("{path}: {message}")]
    Import { path: PathBuf, message: String },
    /// A checkpoint could not be written or read back.
    #[error("checkpoint {path}: {message}")]
    Checkpoint { path: PathBuf, message: String },
    /// An option or combination of options is invalid.
    #[error("{0}")]
    Invalid(String),
    /// The network could not be written as ONNX.
    #[error("export: {0}")]
    Export(String),
    /// libtorch refused an operation (out of memory, a device it lacks, ...).
    #[error("libtorch: {0}")]
    Torch(String),
}

impl TrainError {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> TrainError {
        let path = path.into();
        move |source| TrainError::Io { path, source }
    }
}

impl FoveaError for TrainError {
    fn kind(&self) -> ErrorKind {
        match self {
            TrainError::Invalid(_) => ErrorKind::InvalidInput,
            TrainError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                ErrorKind::NotFound
            }
            TrainError::Data { .. } | TrainError::Image { .. } | TrainError::Import { .. } => {
                ErrorKind::InvalidInput
            }
            TrainError::Io { .. }
            | TrainError::Checkpoint { .. }
            | TrainError::Export(_)
            | TrainError::Torch(_) => ErrorKind::Internal,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            TrainError::Io { .. } => "io_error",
            TrainError::Data { .. } => "malformed_dataset",
            TrainError::Image { .. } => "undecodable_image",
            TrainError::Import { .. } => "import_failed",
            TrainError::Checkpoint { .. } => "checkpoint_failed",
            TrainError::Invalid(_) => "invalid_option",
            TrainError::Export(_) => "export_failed",
            TrainError::Torch(_) => "torch_failed",
        }
    }
}

/// Shorthand for this crate's results.
pub type Result<T, E = TrainError> = std::result::Result<T, E>;

//! What the pipeline answers instead of a result. Each front end maps it to
//! its protocol's form once, through [`FoveaError`].

use fovea_core::{ErrorKind, FoveaError};
use fovea_engine::EngineError;
use fovea_vision::VisionError;

use crate::SourceError;

/// Why a request through the pipeline failed.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The engine is still loading its models.
    #[error("models are still loading")]
    NotReady,
    /// The request names no model and no model is available to default to.
    #[error("no model is loaded")]
    NoModel,
    /// Encoded images were sent to a model that takes numeric tensors.
    #[error("model `{0}` takes numeric tensors, not encoded images")]
    ModelTakesTensors(String),
    /// `top_k` was 0.
    #[error("top_k must be at least 1")]
    InvalidTopK,
    /// The request holds no image (or no item).
    #[error("the request holds no image")]
    NoImage,
    /// More items than one request may carry.
    #[error("{count} images exceed the limit of {limit} per request")]
    TooManyImages { count: usize, limit: usize },
    /// The server is shutting down and decodes no more.
    #[error("server is shutting down")]
    ShuttingDown,
    /// The engine refused or failed the request.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The image could not be decoded or preprocessed.
    #[error(transparent)]
    Image(#[from] VisionError),
    /// A deferred image (a URL) could not be obtained.
    #[error("{0}")]
    Source(SourceError),
    /// Preprocessing panicked on the blocking pool (a decoder bug).
    #[error("preprocessing failed unexpectedly: {0}")]
    Panicked(String),
    /// The model's outputs could not be put together.
    #[error("the model's outputs do not fit together: {0}")]
    OutputMismatch(String),
    /// The model answered an item with no row.
    #[error("model `{0}` returned no output for the image")]
    EmptyOutput(String),
    /// One item of a request of several failed; says which.
    #[error("image {index}: {source}")]
    Item {
        index: usize,
        source: Box<PipelineError>,
    },
}

impl PipelineError {
    /// The error of item `index` of a request of several.
    pub fn numbered(self, index: usize) -> Self {
        PipelineError::Item {
            index,
            source: Box::new(self),
        }
    }
}

impl FoveaError for PipelineError {
    fn kind(&self) -> ErrorKind {
        match self {
            PipelineError::NotReady | PipelineError::NoModel | PipelineError::ShuttingDown => {
                ErrorKind::Unavailable
            }
            PipelineError::ModelTakesTensors(_)
            | PipelineError::InvalidTopK
            | PipelineError::NoImage => ErrorKind::InvalidInput,
            PipelineError::TooManyImages { .. } => ErrorKind::TooLarge,
            PipelineError::Engine(e) => e.kind(),
            PipelineError::Image(e) => e.kind(),
            PipelineError::Source(e) => e.kind(),
            PipelineError::Panicked(_)
            | PipelineError::OutputMismatch(_)
            | PipelineError::EmptyOutput(_) => ErrorKind::Internal,
            PipelineError::Item { source, .. } => source.kind(),
        }
    }

    fn code(&self) -> &'static str {
        match self {
            PipelineError::NotReady => "not_ready",
            PipelineError::NoModel => "no_model",
            PipelineError::ModelTakesTensors(_) => "model_takes_tensors",
            PipelineError::InvalidTopK => "invalid_option",
            PipelineError::NoImage => "no_image",
            PipelineError::TooManyImages { .. } => "too_many_images",
            PipelineError::ShuttingDown => "shutting_down",
            PipelineError::Engine(e) => e.code(),
            PipelineError::Image(e) => e.code(),
            PipelineError::Source(e) => e.code(),
            PipelineError::Panicked(_) => "preprocess_panicked",
            PipelineError::OutputMismatch(_) => "output_mismatch",
            PipelineError::EmptyOutput(_) => "empty_output",
            PipelineError::Item { source, .. } => source.code(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_numbered_error_keeps_its_items_kind_and_code_and_names_it() {
        let error = PipelineError::from(EngineError::DeadlineExceeded).numbered(2);
        assert_eq!(error.kind(), ErrorKind::Timeout);
        assert_eq!(error.code(), "deadline_exceeded");
        assert!(error.to_string().starts_with("image 2: "), "{error}");
    }
}

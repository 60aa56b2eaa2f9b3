//! The crate's one error type: a tensor of a model that cannot be read as
//! asked.

/// A tensor whose shape or data cannot be read as the caller asks.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OnnxError {
    /// The tensor's element type is not the one asked for.
    #[error("tensor '{name}': data type {dtype} is not supported")]
    UnsupportedDtype { name: String, dtype: String },
    /// Negative or overflowing dimensions.
    #[error("tensor '{name}': invalid shape {shape:?}: {reason}")]
    InvalidShape {
        name: String,
        shape: Vec<i64>,
        reason: &'static str,
    },
    /// The number of values does not fill the declared shape.
    #[error("tensor '{name}': shape {shape:?} needs {expected} elements, got {actual}")]
    ElementCount {
        name: String,
        shape: Vec<usize>,
        expected: usize,
        actual: usize,
    },
    /// Values present but unusable (external storage, a ragged byte length).
    #[error("tensor '{name}': {reason}")]
    InvalidData { name: String, reason: String },
}

//! The one error type of every conversion in this crate, classified for the
//! front ends through fovea_core::FoveaError.

use fovea_core::{ErrorKind, FoveaError};

/// A protocol message or payload that cannot become a fovea tensor (or back).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProtoError {
    /// The tensor's element type is one fovea does not accept.
    #[error("tensor '{name}': data type {dtype} is not supported")]
    UnsupportedDtype { name: String, dtype: String },
    /// Negative, unknown or overflowing dimensions.
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
    /// Raw little-endian content whose length is not elements × element size.
    #[error(
        "tensor '{name}': {dtype} content for shape {shape:?} must be {expected} bytes, got {actual}"
    )]
    ByteLength {
        name: String,
        dtype: String,
        shape: Vec<usize>,
        expected: usize,
        actual: usize,
    },
    /// An integer or double that f32 cannot hold.
    #[error("tensor '{name}': value {value} cannot be represented as f32")]
    NotRepresentable { name: String, value: String },
    /// More elements than the caller allows (guards fill-with-last expansion).
    #[error("tensor '{name}': {elements} elements exceed the limit of {limit}")]
    TooManyElements {
        name: String,
        elements: usize,
        limit: usize,
    },
    /// A request whose tensors (or Classify examples) are each within the
    /// limit but together exceed it: TensorFlow's fill rule and a shared
    /// Classify context let a few bytes declare many values.
    #[error("the request decodes to {elements} values in total; the limit is {limit}")]
    TooManyElementsInTotal { elements: usize, limit: usize },
    /// A tensor with elements but no values at all.
    #[error("tensor '{name}': no values given for shape {shape:?}")]
    MissingData { name: String, shape: Vec<usize> },
    /// Values present but unusable: conflicting fields, wrong JSON types, bad BYTES framing.
    #[error("tensor '{name}': {reason}")]
    InvalidData { name: String, reason: String },
    /// A binary payload ends before the data its header announces.
    #[error("binary payload truncated: {what} needs {needed} bytes, only {available} remain")]
    Truncated {
        what: String,
        needed: usize,
        available: usize,
    },
    /// The JSON part of a request is not valid JSON or not the expected structure.
    #[error("malformed request JSON: {0}")]
    MalformedJson(String),
    /// A structurally invalid request (e.g. raw contents not matching the inputs).
    #[error("{0}")]
    InvalidRequest(String),
    /// A TF Serving REST body member of the wrong JSON type or missing.
    #[error("{0}")]
    MalformedRequest(String),
    /// A TF Serving REST instance (or `inputs` object) naming another input.
    #[error("an instance must name only the input `{expected}`; got keys {got:?}")]
    UnknownInput { expected: String, got: Vec<String> },
    /// Encoded images and numbers in one batch.
    #[error("tensor '{name}': instances mix images with numbers")]
    MixedInstances { name: String },
    /// Nested lists whose items differ in shape (or depth).
    #[error(
        "tensor '{name}': instances are ragged: every item must have the first one's shape {shape:?}"
    )]
    Ragged { name: String, shape: Vec<usize> },
    /// A `{"b64": ...}` value that is not a base64 string.
    #[error("tensor '{name}': \"b64\" must hold a base64 string")]
    InvalidBase64 { name: String },
    /// A Classify example with none of the features fovea looks for.
    #[error(
        "example {index} has no input feature; expected one of {expected:?} or a single feature"
    )]
    MissingFeature { index: usize, expected: Vec<String> },
    /// A Classify feature that is neither an encoded image nor numbers.
    #[error("example {index}: feature `{key}` is neither {{\"b64\": ...}} nor numbers")]
    InvalidFeature { index: usize, key: String },
}

impl FoveaError for ProtoError {
    fn kind(&self) -> ErrorKind {
        match self {
            ProtoError::TooManyElements { .. } | ProtoError::TooManyElementsInTotal { .. } => {
                ErrorKind::TooLarge
            }
            _ => ErrorKind::InvalidInput,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ProtoError::UnsupportedDtype { .. } => "unsupported_dtype",
            ProtoError::InvalidShape { .. } => "invalid_shape",
            ProtoError::ElementCount { .. } => "shape_mismatch",
            ProtoError::ByteLength { .. } => "byte_length_mismatch",
            ProtoError::NotRepresentable { .. } => "value_not_representable",
            ProtoError::TooManyElements { .. } | ProtoError::TooManyElementsInTotal { .. } => {
                "tensor_too_large"
            }
            ProtoError::MissingData { .. } => "missing_tensor_data",
            ProtoError::InvalidData { .. } => "invalid_tensor_data",
            ProtoError::Truncated { .. } => "truncated_payload",
            ProtoError::MalformedJson(_) => "malformed_json",
            ProtoError::InvalidRequest(_) => "invalid_request",
            ProtoError::MalformedRequest(_) => "malformed_request",
            ProtoError::UnknownInput { .. } => "unknown_input",
            ProtoError::MixedInstances { .. } => "mixed_instances",
            ProtoError::Ragged { .. } => "ragged_instances",
            ProtoError::InvalidBase64 { .. } => "invalid_base64",
            ProtoError::MissingFeature { .. } => "missing_feature",
            ProtoError::InvalidFeature { .. } => "invalid_feature",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversized_tensors_are_too_large_and_the_rest_invalid_input() {
        let big = ProtoError::TooManyElements {
            name: "x".into(),
            elements: 10,
            limit: 5,
        };
        assert_eq!(big.kind(), ErrorKind::TooLarge);
        let cut = ProtoError::Truncated {
            what: "input 'x'".into(),
            needed: 8,
            available: 3,
        };
        assert_eq!(cut.kind(), ErrorKind::InvalidInput);
        assert_eq!(cut.code(), "truncated_payload");
        assert!(cut.to_string().contains("needs 8 bytes"));
    }
}

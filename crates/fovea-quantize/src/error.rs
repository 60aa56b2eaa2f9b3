//! The crate's one error type. Failures of the serving engine's backends
//! (ONNX Runtime missing, a run that failed) arrive as `BackendError` and are
//! kept as the source of the step they broke.

use fovea_engine::BackendError;
use fovea_onnx::OnnxError;

/// Why a model could not be quantised, inspected or compared.
#[derive(Debug, thiserror::Error)]
pub enum QuantizeError {
    /// The bytes are not an ONNX model.
    #[error("not an ONNX model: {0}")]
    Decode(#[from] prost::DecodeError),
    /// The model is ONNX but not something this quantiser handles.
    #[error("{0}")]
    Unsupported(String),
    /// A tensor in the model is malformed.
    #[error(transparent)]
    Tensor(#[from] OnnxError),
    /// The model holds QuantizeLinear/DequantizeLinear or QLinear* nodes already.
    #[error("the model is quantised already; start from its fp32 version")]
    AlreadyQuantized,
    /// No Conv, Gemm or MatMul with constant weights was found.
    #[error("the model has no Conv, Gemm or MatMul with constant weights to quantise")]
    NothingToQuantize,
    /// Calibration needs at least one input.
    #[error("no calibration inputs were given")]
    NoCalibrationData,
    /// ONNX Runtime could not run the calibration model.
    #[error("calibration failed: {0}")]
    Calibration(#[source] BackendError),
    /// ONNX Runtime could not optimise the model to list its kernels.
    #[error("cannot list ONNX Runtime's kernels: {0}")]
    KernelCensus(#[source] BackendError),
    /// A backend failed while the two models were compared.
    #[error("comparing the models failed: {0}")]
    Comparison(#[source] BackendError),
    /// The two backends' outputs cannot be compared item by item.
    #[error("outputs differ in shape: {reference:?} and {candidate:?}")]
    OutputShapes {
        reference: Vec<usize>,
        candidate: Vec<usize>,
    },
}

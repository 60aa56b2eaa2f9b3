//! Static int8 quantisation of an fp32 ONNX classifier into the QDQ format,
//! calibrated on real inputs, the way onnxruntime.quantization's
//! `quantize_static(QuantFormat.QDQ, per_channel=True)` does it: uint8
//! asymmetric activations, int8 symmetric per-output-channel weights, int32
//! biases, QuantizeLinear→DequantizeLinear pairs where ONNX Runtime's graph
//! optimiser turns each DQ→op→Q group into an integer kernel (QLinearConv,
//! QLinearAdd, QGemm, uint8 MaxPool, ...). Also lists the kernels ONNX
//! Runtime really runs and compares two backends' outputs (top-1 agreement,
//! logit differences), to judge the result.
//!
//! A tool, not part of serving: it stands on fovea-engine (to run models) and
//! fovea-onnx (to read and rewrite them), and nothing the server links
//! depends on it.
//!
//! The jobs, one module each: `plan` decides from the graph alone what to
//! quantise, `calibrate` runs the model to measure activation ranges,
//! `rewrite` applies both, `kernels` asks ONNX Runtime what it made of the
//! result and `compare` measures how closely it follows the fp32 model.

mod calibrate;
mod compare;
mod error;
mod kernels;
mod plan;
mod rewrite;

use std::collections::BTreeMap;

use fovea_core::Tensor;
use fovea_onnx::{GraphProto, ModelProto};
use prost::Message;

pub use calibrate::Calibration;
pub use compare::{Agreement, compare_backends};
pub use error::QuantizeError;
pub use kernels::ort_kernels;

use crate::plan::Plan;

/// The smallest default-domain opset that has per-axis DequantizeLinear.
const MIN_OPSET: i64 = 13;

/// Settings of one quantisation run.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantizeOptions {
    /// How activation ranges are chosen.
    pub calibration: Calibration,
    /// Intra-op threads of the calibration session.
    pub threads: usize,
    /// Calibration inputs per run (lowered to 1 when the model's batch is fixed at 1).
    pub batch_size: usize,
}

impl Default for QuantizeOptions {
    fn default() -> Self {
        Self {
            calibration: Calibration::MinMax,
            threads: fovea_core::available_cores(),
            batch_size: 8,
        }
    }
}

/// The quantised model and what was done to it.
#[derive(Debug, Clone)]
pub struct QuantizedModel {
    /// The encoded QDQ ONNX model.
    pub bytes: Vec<u8>,
    /// What was quantised.
    pub summary: QuantizeSummary,
}

/// Counts describing a quantisation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QuantizeSummary {
    /// Quantised nodes by operator type.
    pub nodes: BTreeMap<String, usize>,
    /// Activation tensors given a QuantizeLinear→DequantizeLinear pair.
    pub activations: usize,
    /// Of those, how many had their own calibrated range (the rest reuse their input's).
    pub calibrated: usize,
    /// Weight tensors stored as per-channel int8.
    pub weights: usize,
    /// Biases stored as int32.
    pub biases: usize,
    /// ReLU/Clip nodes absorbed into the quantisation of their producer's output.
    pub folded_activations: usize,
    /// Calibration inputs run.
    pub calibration_items: usize,
}

/// Quantises `model` (an encoded fp32 ONNX model with one input), calibrating
/// activation ranges by running it with ONNX Runtime over `calibration`
/// (each tensor `[n, ...item]`, preprocessed exactly like serving input).
pub fn quantize(
    model: &[u8],
    calibration: &[Tensor],
    options: &QuantizeOptions,
) -> Result<QuantizedModel, QuantizeError> {
    let model = ModelProto::decode(model)?;
    let graph = model
        .graph
        .as_ref()
        .ok_or_else(|| QuantizeError::Unsupported("the model has no graph".into()))?;
    if graph_is_quantized(graph) {
        return Err(QuantizeError::AlreadyQuantized);
    }
    check_opset(&model)?;
    let plan = Plan::build(graph)?;
    if calibration.is_empty() {
        return Err(QuantizeError::NoCalibrationData);
    }
    let targets: Vec<String> = plan.calibrated_tensors().map(str::to_string).collect();
    let ranges = calibrate::calibrate(&model, &targets, calibration, options)?;
    let items = calibration.iter().map(Tensor::batch_size).sum();
    let (model, mut summary) = rewrite::rewrite(model, &plan, &ranges)?;
    summary.calibration_items = items;
    Ok(QuantizedModel {
        bytes: model.encode_to_vec(),
        summary,
    })
}

/// Whether an encoded model is quantised already (QDQ or QOperator form),
/// so that a caller can pick the fp32 version to start from.
pub fn is_quantized(model: &[u8]) -> Result<bool, QuantizeError> {
    let model = ModelProto::decode(model)?;
    Ok(model.graph.as_ref().is_some_and(graph_is_quantized))
}

fn graph_is_quantized(graph: &GraphProto) -> bool {
    graph.node.iter().any(|n| {
        matches!(
            n.op_type.as_str(),
            "QuantizeLinear" | "DequantizeLinear" | "DynamicQuantizeLinear"
        ) || n.op_type.starts_with("QLinear")
            || n.op_type.ends_with("Integer")
    })
}

fn check_opset(model: &ModelProto) -> Result<(), QuantizeError> {
    let opset = model
        .opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map(|o| o.version);
    match opset {
        Some(v) if v >= MIN_OPSET => Ok(()),
        other => Err(QuantizeError::Unsupported(format!(
            "the model uses opset {}; per-channel int8 weights need opset {MIN_OPSET} or later (re-export it with a newer opset)",
            other.map_or_else(|| "none".to_string(), |v| v.to_string())
        ))),
    }
}

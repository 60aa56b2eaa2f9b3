//! Static int8 quantisation of an fp32 ONNX classifier into the QDQ format,
//! calibrated on real inputs, the way onnxruntime.quantization's
//! `quantize_static(QuantFormat.QDQ, per_channel=True)` does it: uint8
//! asymmetric activations, int8 symmetric per-output-channel weights, int32
//! biases, QuantizeLinear→DequantizeLinear pairs where ONNX Runtime's graph
//! optimiser turns each DQ→op→Q group into an integer kernel (QLinearConv,
//! QLinearAdd, QGemm, uint8 MaxPool, ...). Also compares two backends' outputs
//! (top-1 agreement, logit differences), to judge the result.

use std::collections::{BTreeMap, HashMap, HashSet};

use fovea_core::Tensor;
use fovea_proto::ProtoError;
use fovea_proto::onnx::{
    AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto, ValueInfoProto,
    attribute_proto::AttributeType, data_type,
};
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::TensorRef;
use prost::Message;

use crate::backend::{Backend, ort_environment};
use crate::error::BackendError;

/// The smallest default-domain opset that has per-axis DequantizeLinear.
const MIN_OPSET: i64 = 13;

/// How activation ranges are read from the calibration outputs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Calibration {
    /// The smallest and largest value seen (onnxruntime's default).
    MinMax,
    /// The given percentile of |x| on each side (e.g. 99.99): clips rare
    /// outliers, finer steps for everything else.
    Percentile(f64),
}

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

/// Why a model could not be quantised.
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
    Tensor(#[from] ProtoError),
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
    Calibration(#[from] BackendError),
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
    let ranges = calibrate(&model, &targets, calibration, options)?;
    let items = calibration.iter().map(Tensor::batch_size).sum();
    let (model, mut summary) = rewrite(model, &plan, &ranges)?;
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

/// A closed range of real values an activation takes.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Range {
    min: f32,
    max: f32,
}

/// uint8 asymmetric parameters for `range`, widened to include 0 so that
/// zero (padding, ReLU's floor) is exact, as onnxruntime computes them.
fn activation_params(range: Range) -> (f32, u8) {
    let min = range.min.min(0.0);
    let max = range.max.max(0.0);
    if !(max - min).is_finite() || max - min <= f32::EPSILON {
        return (1.0, 0);
    }
    let scale = (max - min) / 255.0;
    let zero_point = (-min / scale).round().clamp(0.0, 255.0) as u8;
    (scale, zero_point)
}

/// Symmetric int8 weights along `axis`: one scale per channel, |q| ≤ 127.
fn quantize_per_channel(values: &[f32], dims: &[usize], axis: usize) -> (Vec<i8>, Vec<f32>) {
    let channels = dims[axis];
    let inner: usize = dims[axis + 1..].iter().product();
    let channel_of = |i: usize| (i / inner.max(1)) % channels.max(1);
    let mut absmax = vec![0f32; channels];
    for (i, v) in values.iter().enumerate() {
        let c = channel_of(i);
        absmax[c] = absmax[c].max(v.abs());
    }
    let scales: Vec<f32> = absmax
        .iter()
        .map(|&m| {
            if m > 0.0 && m.is_finite() {
                m / 127.0
            } else {
                1.0
            }
        })
        .collect();
    let quantized = values
        .iter()
        .enumerate()
        .map(|(i, v)| (v / scales[channel_of(i)]).round().clamp(-127.0, 127.0) as i8)
        .collect();
    (quantized, scales)
}

/// A weight input to store as int8.
#[derive(Debug, Clone)]
struct WeightPlan {
    node: usize,
    input: usize,
    tensor: String,
    axis: usize,
}

/// A bias input to store as int32 with scale = input scale × weight scale.
#[derive(Debug, Clone)]
struct BiasPlan {
    node: usize,
    input: usize,
    tensor: String,
    activation: String,
    weight: WeightPlan,
}

/// What to quantise, decided from the graph alone (before calibration).
#[derive(Debug, Default)]
struct Plan {
    /// Activations to Q/DQ, in the order they were chosen.
    activations: Vec<String>,
    /// Activation → the activation whose range (and parameters) it reuses.
    shared: HashMap<String, String>,
    weights: Vec<WeightPlan>,
    biases: Vec<BiasPlan>,
    /// ReLU/Clip nodes removed: their producer writes their output directly.
    folded: HashSet<usize>,
    /// Producer output renamed to the folded activation's output.
    renamed: HashMap<String, String>,
    nodes: BTreeMap<String, usize>,
}

/// Index of a graph: producers, consumers, constants and element types.
struct Index<'g> {
    graph: &'g GraphProto,
    initializers: HashMap<&'g str, &'g TensorProto>,
    producer: HashMap<&'g str, usize>,
    consumers: HashMap<&'g str, Vec<usize>>,
    outputs: HashSet<&'g str>,
    types: HashMap<&'g str, i32>,
}

impl<'g> Index<'g> {
    fn new(graph: &'g GraphProto) -> Self {
        let initializers: HashMap<&str, &TensorProto> = graph
            .initializer
            .iter()
            .map(|t| (t.name.as_str(), t))
            .collect();
        let mut producer = HashMap::new();
        let mut consumers: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, node) in graph.node.iter().enumerate() {
            for output in node.output.iter().filter(|o| !o.is_empty()) {
                producer.insert(output.as_str(), i);
            }
            for input in node.input.iter().filter(|o| !o.is_empty()) {
                let list = consumers.entry(input.as_str()).or_default();
                // A node reading one tensor twice (Add(x, x)) is one consumer.
                if list.last() != Some(&i) {
                    list.push(i);
                }
            }
        }
        let outputs = graph.output.iter().map(|o| o.name.as_str()).collect();
        let mut index = Self {
            graph,
            initializers,
            producer,
            consumers,
            outputs,
            types: HashMap::new(),
        };
        index.infer_types();
        index
    }

    /// Element types, enough to tell float activations from shape arithmetic:
    /// declared inputs and initializers, then a forward pass where most
    /// operators keep their first input's type.
    fn infer_types(&mut self) {
        let graph = self.graph;
        for info in graph.input.iter().chain(&graph.value_info) {
            if let Some(t) = tensor_elem_type(info) {
                self.types.insert(info.name.as_str(), t);
            }
        }
        for t in &graph.initializer {
            self.types.insert(t.name.as_str(), t.data_type);
        }
        for node in &graph.node {
            let first = node
                .input
                .first()
                .and_then(|i| self.types.get(i.as_str()).copied());
            let out = match node.op_type.as_str() {
                "Shape" | "Size" | "NonZero" | "ArgMax" | "ArgMin" => Some(data_type::INT64),
                "Equal" | "Less" | "Greater" | "LessOrEqual" | "GreaterOrEqual" | "Not" | "And"
                | "Or" | "Xor" | "IsNaN" | "IsInf" => Some(BOOL),
                "Cast" => node.int_attribute("to").and_then(|t| i32::try_from(t).ok()),
                "Constant" => node
                    .attribute
                    .iter()
                    .find_map(|a| a.t.as_ref())
                    .map(|t| t.data_type),
                "ConstantOfShape" => Some(
                    node.attribute
                        .iter()
                        .find_map(|a| a.t.as_ref())
                        .map_or(data_type::FLOAT, |t| t.data_type),
                ),
                "Where" => node
                    .input
                    .get(1)
                    .and_then(|i| self.types.get(i.as_str()).copied()),
                _ => first,
            };
            if let Some(t) = out {
                for (k, output) in node.output.iter().enumerate() {
                    // TopK, MaxPool, Unique: later outputs are indices.
                    let t = if k > 0 && node.op_type != "Split" {
                        data_type::INT64
                    } else {
                        t
                    };
                    self.types.insert(output.as_str(), t);
                }
            }
        }
    }

    /// The constant a tensor holds: an initializer, a Constant node's value,
    /// or either passed through Identity (PyTorch shares equal weights that way).
    fn constant(&self, name: &str) -> Option<&'g TensorProto> {
        if let Some(t) = self.initializers.get(name) {
            return Some(t);
        }
        let node = &self.graph.node[*self.producer.get(name)?];
        match node.op_type.as_str() {
            "Identity" => self.constant(node.input.first()?),
            "Constant" => node
                .attribute
                .iter()
                .find(|a| a.name == "value")
                .and_then(|a| a.t.as_ref()),
            _ => None,
        }
    }

    fn is_float_activation(&self, name: &str) -> bool {
        !name.is_empty()
            && self.constant(name).is_none()
            && !self.outputs.contains(name)
            && self.types.get(name).is_some_and(|&t| t == data_type::FLOAT)
    }

    fn float_weight(&self, name: &str, rank: usize) -> Option<&'g TensorProto> {
        self.constant(name)
            .filter(|t| t.data_type == data_type::FLOAT && t.dims.len() == rank)
    }
}

/// `TensorProto.DataType.BOOL`.
const BOOL: i32 = 9;

fn tensor_elem_type(info: &ValueInfoProto) -> Option<i32> {
    match info.r#type.as_ref()?.value.as_ref()? {
        fovea_proto::onnx::type_proto::Value::TensorType(t) => Some(t.elem_type),
        _ => None,
    }
}

fn float_attribute(node: &NodeProto, name: &str) -> Option<f32> {
    node.attribute
        .iter()
        .find(|a| a.name == name && a.r#type == AttributeType::Float as i32)
        .map(|a| a.f)
}

impl Plan {
    fn build(graph: &GraphProto) -> Result<Self, QuantizeError> {
        let index = Index::new(graph);
        let mut plan = Plan::default();
        for (i, node) in graph.node.iter().enumerate() {
            let input = |k: usize| node.input.get(k).map_or("", String::as_str);
            // An empty name is never a float activation, so a malformed node
            // without outputs is simply left alone.
            let out = node.output.first().map_or("", String::as_str);
            match node.op_type.as_str() {
                "Conv" => {
                    let Some(weight) = index.float_weight(input(1), 4) else {
                        continue;
                    };
                    if !index.is_float_activation(input(0)) {
                        continue;
                    }
                    plan.weighted(&index, i, node, weight, 0);
                }
                "Gemm" => {
                    let Some(weight) = index.float_weight(input(1), 2) else {
                        continue;
                    };
                    if !index.is_float_activation(input(0))
                        || float_attribute(node, "alpha").is_some_and(|a| a != 1.0)
                    {
                        continue;
                    }
                    // B is [N, K] with transB, else [K, N]; N is the output channel.
                    let axis = if node.int_attribute("transB") == Some(1) {
                        0
                    } else {
                        1
                    };
                    plan.weighted(&index, i, node, weight, axis);
                }
                "MatMul" => {
                    let Some(weight) = index.float_weight(input(1), 2) else {
                        continue;
                    };
                    if !index.is_float_activation(input(0)) {
                        continue;
                    }
                    plan.weighted(&index, i, node, weight, 1);
                }
                "Relu" | "Clip" => plan.activation_fn(&index, i, node),
                "Add" => {
                    let (a, b) = (input(0), input(1));
                    if index.is_float_activation(a)
                        && index.is_float_activation(b)
                        && index.is_float_activation(out)
                    {
                        plan.mark(a);
                        plan.mark(b);
                        plan.mark_output(&index, out);
                        plan.count("Add");
                    }
                }
                "GlobalAveragePool"
                    if index.is_float_activation(input(0)) && index.is_float_activation(out) =>
                {
                    plan.mark(input(0));
                    plan.mark_output(&index, out);
                    plan.count("GlobalAveragePool");
                }
                // The output's range lies within the input's: the same
                // parameters let ONNX Runtime run these on uint8 directly.
                "MaxPool" | "AveragePool"
                    if node.output.len() == 1
                        && index.is_float_activation(input(0))
                        && index.is_float_activation(out) =>
                {
                    plan.mark(input(0));
                    plan.share(out, input(0));
                    plan.count(&node.op_type);
                }
                // Data movement keeps int8 chains int8, but only where the
                // input is quantised anyway.
                "Flatten" | "Reshape" | "Squeeze" | "Unsqueeze" | "Transpose"
                    if plan.is_marked(input(0)) && index.is_float_activation(out) =>
                {
                    plan.share(out, input(0));
                    plan.count(&node.op_type);
                }
                _ => {}
            }
        }
        if plan.weights.is_empty() {
            return Err(QuantizeError::NothingToQuantize);
        }
        Ok(plan)
    }

    fn weighted(
        &mut self,
        index: &Index<'_>,
        i: usize,
        node: &NodeProto,
        weight: &TensorProto,
        axis: usize,
    ) {
        let activation = node.input.first().cloned().unwrap_or_default();
        self.mark(&activation);
        let weight_plan = WeightPlan {
            node: i,
            input: 1,
            tensor: weight.name.clone(),
            axis,
        };
        // The bias is added in int32 only when it is a plain per-channel
        // vector added once (Gemm's beta = 1).
        let channels = weight.dims.get(axis).copied();
        let bias = node
            .input
            .get(2)
            .filter(|b| !b.is_empty())
            .and_then(|b| index.float_weight(b, 1))
            .filter(|b| Some(b.dims[0]) == channels)
            .filter(|_| float_attribute(node, "beta").is_none_or(|b| b == 1.0));
        if let Some(bias) = bias {
            self.biases.push(BiasPlan {
                node: i,
                input: 2,
                tensor: bias.name.clone(),
                activation,
                weight: weight_plan.clone(),
            });
        }
        self.weights.push(weight_plan);
        self.count(&node.op_type);
    }

    /// Marks an operator's output, unless a ReLU that will fold reads it:
    /// then the ReLU's output, quantised, takes its place.
    fn mark_output(&mut self, index: &Index<'_>, output: &str) {
        let folds = index
            .consumers
            .get(output)
            .and_then(|c| match c[..] {
                [only] => Some(&index.graph.node[only]),
                _ => None,
            })
            .is_some_and(|next| folds_into_producer(index, next));
        if !folds {
            self.mark(output);
        }
    }

    /// ReLU, or Clip to [0, max]: when it is its producer's only reader, it is
    /// removed and its output quantised with zero point 0, which clamps at 0
    /// exactly as it did (onnxruntime's quantiser does the same).
    fn activation_fn(&mut self, index: &Index<'_>, i: usize, node: &NodeProto) {
        let input = node.input.first().map_or("", String::as_str);
        let output = node.output.first().map_or("", String::as_str);
        if !index.is_float_activation(input) || !index.is_float_activation(output) {
            return;
        }
        if folds_into_producer(index, node) && !self.is_marked(input) {
            self.folded.insert(i);
            self.renamed.insert(input.to_string(), output.to_string());
            self.mark(output);
            self.count(&node.op_type);
        } else {
            self.mark(input);
            self.mark(output);
        }
    }

    fn mark(&mut self, tensor: &str) {
        if !self.is_marked(tensor) {
            self.activations.push(tensor.to_string());
        }
    }

    fn share(&mut self, tensor: &str, source: &str) {
        if !self.is_marked(tensor) {
            self.activations.push(tensor.to_string());
            self.shared.insert(tensor.to_string(), source.to_string());
        }
    }

    fn is_marked(&self, tensor: &str) -> bool {
        self.activations.iter().any(|a| a == tensor)
    }

    fn count(&mut self, op: &str) {
        *self.nodes.entry(op.to_string()).or_default() += 1;
    }

    /// The tensor whose calibrated range `tensor` uses.
    fn range_source<'a>(&'a self, mut tensor: &'a str) -> &'a str {
        while let Some(source) = self.shared.get(tensor) {
            tensor = source;
        }
        tensor
    }

    fn calibrated_tensors(&self) -> impl Iterator<Item = &str> {
        self.activations
            .iter()
            .filter(|a| !self.shared.contains_key(*a))
            .map(String::as_str)
    }
}

/// Whether `node` is a ReLU (or Clip with floor 0) that can be removed: its
/// input comes from another node, which nothing else reads.
fn folds_into_producer(index: &Index<'_>, node: &NodeProto) -> bool {
    let floor_is_zero = match node.op_type.as_str() {
        "Relu" => true,
        "Clip" => clip_min(index, node) == Some(0.0),
        _ => false,
    };
    let (Some(input), Some(output)) = (node.input.first(), node.output.first()) else {
        return false;
    };
    floor_is_zero
        && index.is_float_activation(input)
        && index.is_float_activation(output)
        && index.producer.contains_key(input.as_str())
        && index
            .consumers
            .get(input.as_str())
            .is_some_and(|c| c.len() == 1)
}

/// Clip's lower bound: the `min` input (opset 11+) or attribute (before).
fn clip_min(index: &Index<'_>, node: &NodeProto) -> Option<f32> {
    if let Some(min) = node.input.get(1).filter(|m| !m.is_empty()) {
        let values = index.constant(min)?.f32_values().ok()?;
        return values.first().copied();
    }
    float_attribute(node, "min")
}

/// Runs the model with every tensor in `targets` added to its outputs over
/// the calibration inputs and returns each tensor's range.
fn calibrate(
    model: &ModelProto,
    targets: &[String],
    inputs: &[Tensor],
    options: &QuantizeOptions,
) -> Result<HashMap<String, Range>, QuantizeError> {
    let mut augmented = model.clone();
    let graph = augmented
        .graph
        .as_mut()
        .ok_or_else(|| QuantizeError::Unsupported("the model has no graph".into()))?;
    let existing: HashSet<String> = graph.output.iter().map(|o| o.name.clone()).collect();
    for name in targets.iter().filter(|t| !existing.contains(*t)) {
        graph.output.push(ValueInfoProto::tensor_of_unknown_shape(
            name,
            data_type::FLOAT,
        ));
    }
    let initializers: HashSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let input_names: Vec<&ValueInfoProto> = graph
        .input
        .iter()
        .filter(|i| !initializers.contains(i.name.as_str()))
        .collect();
    let [input] = input_names[..] else {
        return Err(QuantizeError::Unsupported(format!(
            "fovea quantises models with one input; this one has {}",
            input_names.len()
        )));
    };
    let input_name = input.name.clone();
    let fixed_batch = match input.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(fovea_proto::onnx::type_proto::Value::TensorType(t)) => t
            .shape
            .as_ref()
            .and_then(|s| s.dim.first())
            .and_then(|d| match d.value {
                Some(fovea_proto::onnx::tensor_shape_proto::dimension::Value::DimValue(v)) => {
                    Some(v)
                }
                _ => None,
            }),
        _ => None,
    };
    let bytes = augmented.encode_to_vec();
    let mut session = calibration_session(&bytes, options.threads)?;
    let batch_size = match fixed_batch {
        Some(n) => usize::try_from(n).unwrap_or(1).max(1),
        None => options.batch_size.max(1),
    };
    let items: Vec<Tensor> = inputs
        .iter()
        .flat_map(|t| {
            (0..t.batch_size()).filter_map(move |i| {
                let mut shape = t.shape().to_vec();
                *shape.first_mut()? = 1;
                Tensor::new(shape, t.item(i)?.to_vec()).ok()
            })
        })
        .collect();
    let mut ranges: HashMap<String, Range> = HashMap::new();
    let mut observer = Observer::new(options.calibration, targets);
    for chunk in items.chunks(batch_size) {
        let batch = Tensor::concat(chunk).map_err(|e| {
            QuantizeError::Calibration(BackendError::Run(format!(
                "calibration inputs differ in shape: {e}"
            )))
        })?;
        let run = |e: ort::Error| BackendError::Run(e.to_string());
        let value = TensorRef::from_array_view((batch.shape(), batch.data())).map_err(run)?;
        let outputs = session
            .run(ort::inputs![input_name.as_str() => value])
            .map_err(run)?;
        for name in targets {
            let output = outputs.get(name).ok_or_else(|| {
                BackendError::Run(format!("calibration output `{name}` is missing"))
            })?;
            let (_, data) = output.try_extract_tensor::<f32>().map_err(run)?;
            observer.observe(name, data);
        }
    }
    for name in targets {
        if let Some(range) = observer.range(name) {
            ranges.insert(name.clone(), range);
        }
    }
    Ok(ranges)
}

fn calibration_session(model: &[u8], threads: usize) -> Result<Session, BackendError> {
    let (environment, _) = ort_environment().map_err(BackendError::RuntimeUnavailable)?;
    let load = |message: String| BackendError::Load {
        path: "calibration model".into(),
        message,
    };
    // Basic optimisations only: the extended ones would rewrite the graph
    // into fused kernels for nothing, since every tensor is read back anyway.
    Session::builder(environment)
        .map_err(|e| load(e.to_string()))?
        .with_optimization_level(GraphOptimizationLevel::Level1)
        .map_err(|e| load(e.to_string()))?
        .with_intra_threads(threads.max(1))
        .map_err(|e| load(e.to_string()))?
        .with_inter_threads(1)
        .map_err(|e| load(e.to_string()))?
        .commit_from_memory(model)
        .map_err(|e| load(e.to_string()))
}

/// The operators ONNX Runtime runs for `model` after its full graph
/// optimisation, with how many of each: QDQ groups it fused into integer
/// kernels show up as QLinearConv, QLinearAdd, QGemm and so on, float ones
/// as Conv or FusedConv. This is how to tell an int8 model that is fast from
/// one that only looks quantised.
pub fn ort_kernels(model: &[u8], threads: usize) -> Result<BTreeMap<String, usize>, BackendError> {
    static RUN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let (environment, _) = ort_environment().map_err(BackendError::RuntimeUnavailable)?;
    let path = std::env::temp_dir().join(format!(
        "fovea-ort-optimized-{}-{}.onnx",
        std::process::id(),
        RUN.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let load = |message: String| BackendError::Load {
        path: path.clone(),
        message,
    };
    let session = Session::builder(environment)
        .map_err(|e| load(e.to_string()))?
        .with_optimization_level(GraphOptimizationLevel::All)
        .map_err(|e| load(e.to_string()))?
        .with_intra_threads(threads.max(1))
        .map_err(|e| load(e.to_string()))?
        .with_optimized_model_path(&path)
        .map_err(|e| load(e.to_string()))?
        // Saving an NCHWc-optimised graph warns that it is hardware specific;
        // this one is read once, here, and deleted.
        .with_log_level(ort::logging::LogLevel::Error)
        .map_err(|e| load(e.to_string()))?
        .commit_from_memory(model)
        .map_err(|e| load(e.to_string()));
    let written = std::fs::read(&path);
    // The file is only a report; it goes whatever happened.
    let _ = std::fs::remove_file(&path);
    drop(session?);
    let written = written.map_err(|e| BackendError::Load {
        path: path.clone(),
        message: format!("ONNX Runtime wrote no optimised model: {e}"),
    })?;
    let optimised = ModelProto::decode(written.as_slice()).map_err(|e| BackendError::Load {
        path: path.clone(),
        message: format!("cannot read the optimised model: {e}"),
    })?;
    let mut counts = BTreeMap::new();
    for node in optimised.graph.iter().flat_map(|g| &g.node) {
        *counts.entry(node.op_type.clone()).or_default() += 1;
    }
    Ok(counts)
}

/// Accumulates each tensor's range over the calibration batches.
struct Observer {
    method: Calibration,
    min_max: HashMap<String, Range>,
    /// Percentile: a histogram of |x| per tensor, rebuilt wider as needed.
    histograms: HashMap<String, Histogram>,
}

/// Bins of |x| over [0, limit], plus the sign-aware extremes.
struct Histogram {
    limit: f32,
    bins: Vec<u64>,
}

const HISTOGRAM_BINS: usize = 2048;

impl Histogram {
    fn add(&mut self, data: &[f32]) {
        let largest = data
            .iter()
            .fold(0f32, |m, v| if v.is_finite() { m.max(v.abs()) } else { m });
        if largest > self.limit {
            // Widen to a power-of-two multiple and merge old bins into the new ones.
            let mut limit = self.limit.max(f32::MIN_POSITIVE);
            while limit < largest {
                limit *= 2.0;
            }
            let mut bins = vec![0u64; HISTOGRAM_BINS];
            for (i, &count) in self.bins.iter().enumerate() {
                let centre = (i as f32 + 0.5) * self.limit / HISTOGRAM_BINS as f32;
                bins[Self::bin(centre, limit)] += count;
            }
            self.limit = limit;
            self.bins = bins;
        }
        for v in data.iter().filter(|v| v.is_finite()) {
            self.bins[Self::bin(v.abs(), self.limit)] += 1;
        }
    }

    fn bin(value: f32, limit: f32) -> usize {
        if limit <= 0.0 {
            return 0;
        }
        ((value / limit * HISTOGRAM_BINS as f32) as usize).min(HISTOGRAM_BINS - 1)
    }

    /// The |x| below which `percentile` % of the values lie.
    fn percentile(&self, percentile: f64) -> f32 {
        let total: u64 = self.bins.iter().sum();
        let wanted = (total as f64 * percentile / 100.0).ceil() as u64;
        let mut seen = 0;
        for (i, &count) in self.bins.iter().enumerate() {
            seen += count;
            if seen >= wanted {
                return (i + 1) as f32 * self.limit / HISTOGRAM_BINS as f32;
            }
        }
        self.limit
    }
}

impl Observer {
    fn new(method: Calibration, targets: &[String]) -> Self {
        let histograms = match method {
            Calibration::MinMax => HashMap::new(),
            Calibration::Percentile(_) => targets
                .iter()
                .map(|t| {
                    (
                        t.clone(),
                        Histogram {
                            limit: 0.0,
                            bins: vec![0; HISTOGRAM_BINS],
                        },
                    )
                })
                .collect(),
        };
        Self {
            method,
            min_max: HashMap::new(),
            histograms,
        }
    }

    fn observe(&mut self, name: &str, data: &[f32]) {
        let (lo, hi) = data
            .iter()
            .filter(|v| v.is_finite())
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
                (lo.min(v), hi.max(v))
            });
        if lo > hi {
            return;
        }
        let range = self
            .min_max
            .entry(name.to_string())
            .or_insert(Range { min: lo, max: hi });
        range.min = range.min.min(lo);
        range.max = range.max.max(hi);
        if let Some(histogram) = self.histograms.get_mut(name) {
            histogram.add(data);
        }
    }

    fn range(&self, name: &str) -> Option<Range> {
        let seen = *self.min_max.get(name)?;
        match (self.method, self.histograms.get(name)) {
            (Calibration::Percentile(p), Some(histogram)) => {
                let bound = histogram.percentile(p);
                // Symmetric clipping of |x|; a side that never reaches the
                // bound keeps its true extreme (ReLU outputs stay at min 0).
                Some(Range {
                    min: seen.min.max(-bound),
                    max: seen.max.min(bound),
                })
            }
            _ => Some(seen),
        }
    }
}

/// Allocates names not yet used anywhere in the graph.
struct Names(HashSet<String>);

impl Names {
    fn new(graph: &GraphProto) -> Self {
        let mut used = HashSet::new();
        for node in &graph.node {
            used.insert(node.name.clone());
            used.extend(node.input.iter().cloned());
            used.extend(node.output.iter().cloned());
        }
        used.extend(graph.initializer.iter().map(|t| t.name.clone()));
        used.extend(graph.input.iter().map(|t| t.name.clone()));
        used.extend(graph.output.iter().map(|t| t.name.clone()));
        Self(used)
    }

    fn fresh(&mut self, base: String) -> String {
        let mut name = base.clone();
        let mut n = 1;
        while self.0.contains(&name) {
            name = format!("{base}_{n}");
            n += 1;
        }
        self.0.insert(name.clone());
        name
    }
}

fn qdq_node(
    op: &str,
    name: String,
    inputs: [&str; 3],
    output: &str,
    axis: Option<usize>,
) -> NodeProto {
    NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.to_string()],
        name,
        op_type: op.into(),
        attribute: axis
            .map(|a| vec![AttributeProto::int("axis", a as i64)])
            .unwrap_or_default(),
        ..Default::default()
    }
}

/// Scale and zero-point initializer names of a quantised activation.
#[derive(Debug, Clone)]
struct ActivationQuant {
    scale_name: String,
    zero_name: String,
    scale: f32,
}

/// Applies `plan` with the calibrated `ranges`: new initializers, Q/DQ nodes
/// in topological order, folded activations removed, dead nodes and
/// initializers dropped.
fn rewrite(
    mut model: ModelProto,
    plan: &Plan,
    ranges: &HashMap<String, Range>,
) -> Result<(ModelProto, QuantizeSummary), QuantizeError> {
    let Some(mut graph) = model.graph.take() else {
        return Err(QuantizeError::Unsupported("the model has no graph".into()));
    };
    let index = Index::new(&graph);
    let mut names = Names::new(&graph);
    let mut summary = QuantizeSummary {
        nodes: plan.nodes.clone(),
        folded_activations: plan.folded.len(),
        ..Default::default()
    };
    let mut initializers: Vec<TensorProto> = Vec::new();
    let mut head: Vec<NodeProto> = Vec::new();

    // Activation parameters, calibrated tensors first so shared ones can reuse them.
    let mut params: HashMap<String, ActivationQuant> = HashMap::new();
    for tensor in plan.calibrated_tensors() {
        let range = ranges.get(tensor).copied().ok_or_else(|| {
            QuantizeError::Calibration(BackendError::Run(format!(
                "no calibrated range for `{tensor}`"
            )))
        })?;
        let (scale, zero_point) = activation_params(range);
        let scale_name = names.fresh(format!("{tensor}_scale"));
        let zero_name = names.fresh(format!("{tensor}_zero_point"));
        initializers.push(TensorProto::float(&scale_name, &[], &[scale]));
        initializers.push(TensorProto::uint8(&zero_name, &[], &[zero_point]));
        params.insert(
            tensor.to_string(),
            ActivationQuant {
                scale_name,
                zero_name,
                scale,
            },
        );
        summary.calibrated += 1;
    }
    for tensor in &plan.activations {
        if let Some(source) = params.get(plan.range_source(tensor)).cloned() {
            params.entry(tensor.clone()).or_insert(source);
        }
    }

    // Activation tensor → its DequantizeLinear output.
    let mut dequantized: HashMap<String, String> = HashMap::new();
    let mut qdq_pairs: HashMap<String, Vec<NodeProto>> = HashMap::new();
    for tensor in &plan.activations {
        let Some(p) = params.get(tensor) else {
            continue;
        };
        let q_out = names.fresh(format!("{tensor}_QuantizeLinear_Output"));
        let dq_out = names.fresh(format!("{tensor}_DequantizeLinear_Output"));
        let q = qdq_node(
            "QuantizeLinear",
            names.fresh(format!("{tensor}_QuantizeLinear")),
            [tensor, &p.scale_name, &p.zero_name],
            &q_out,
            None,
        );
        let dq = qdq_node(
            "DequantizeLinear",
            names.fresh(format!("{tensor}_DequantizeLinear")),
            [&q_out, &p.scale_name, &p.zero_name],
            &dq_out,
            None,
        );
        dequantized.insert(tensor.clone(), dq_out);
        qdq_pairs.insert(tensor.clone(), vec![q, dq]);
        summary.activations += 1;
    }

    // Weights: int8 per channel, one DequantizeLinear each, shared by every user.
    let mut weight_dq: HashMap<(String, usize), (String, Vec<f32>)> = HashMap::new();
    let mut input_overrides: HashMap<(usize, usize), String> = HashMap::new();
    for w in &plan.weights {
        let key = (w.tensor.clone(), w.axis);
        if !weight_dq.contains_key(&key) {
            let tensor = index.constant(&w.tensor).ok_or_else(|| {
                QuantizeError::Unsupported(format!("weight `{}` vanished", w.tensor))
            })?;
            let dims = tensor.shape()?;
            let (q, scales) = quantize_per_channel(&tensor.f32_values()?, &dims, w.axis);
            let q_name = names.fresh(format!("{}_quantized", w.tensor));
            let scale_name = names.fresh(format!("{}_scale", w.tensor));
            let zero_name = names.fresh(format!("{}_zero_point", w.tensor));
            let dq_out = names.fresh(format!("{}_DequantizeLinear_Output", w.tensor));
            let channels = dims[w.axis];
            initializers.push(TensorProto::int8(&q_name, &dims, &q));
            initializers.push(TensorProto::float(&scale_name, &[channels], &scales));
            initializers.push(TensorProto::int8(
                &zero_name,
                &[channels],
                &vec![0; channels],
            ));
            head.push(qdq_node(
                "DequantizeLinear",
                names.fresh(format!("{}_DequantizeLinear", w.tensor)),
                [&q_name, &scale_name, &zero_name],
                &dq_out,
                Some(w.axis),
            ));
            weight_dq.insert(key.clone(), (dq_out, scales));
            summary.weights += 1;
        }
        if let Some((dq_out, _)) = weight_dq.get(&key) {
            input_overrides.insert((w.node, w.input), dq_out.clone());
        }
    }

    // Biases: int32 at scale = input scale × weight scale, so the integer
    // kernel adds them to its int32 accumulator directly.
    for b in &plan.biases {
        let (Some(act), Some((_, w_scales))) = (
            params.get(&b.activation),
            weight_dq.get(&(b.weight.tensor.clone(), b.weight.axis)),
        ) else {
            continue;
        };
        let tensor = index
            .constant(&b.tensor)
            .ok_or_else(|| QuantizeError::Unsupported(format!("bias `{}` vanished", b.tensor)))?;
        let values = tensor.f32_values()?;
        if values.len() != w_scales.len() {
            continue;
        }
        let scales: Vec<f32> = w_scales.iter().map(|w| w * act.scale).collect();
        let q: Vec<i32> = values
            .iter()
            .zip(&scales)
            .map(|(v, s)| {
                if *s > 0.0 {
                    (f64::from(*v) / f64::from(*s))
                        .round()
                        .clamp(f64::from(i32::MIN), f64::from(i32::MAX)) as i32
                } else {
                    0
                }
            })
            .collect();
        let n = q.len();
        let q_name = names.fresh(format!("{}_quantized", b.tensor));
        let scale_name = names.fresh(format!("{}_scale", q_name));
        let zero_name = names.fresh(format!("{}_zero_point", q_name));
        let dq_out = names.fresh(format!("{}_DequantizeLinear_Output", q_name));
        initializers.push(TensorProto::int32(&q_name, &[n], &q));
        initializers.push(TensorProto::float(&scale_name, &[n], &scales));
        initializers.push(TensorProto::int32(&zero_name, &[n], &vec![0; n]));
        head.push(qdq_node(
            "DequantizeLinear",
            names.fresh(format!("{q_name}_DequantizeLinear")),
            [&q_name, &scale_name, &zero_name],
            &dq_out,
            Some(0),
        ));
        input_overrides.insert((b.node, b.input), dq_out);
        summary.biases += 1;
    }

    // Graph inputs that are quantised get their pair first.
    let mut nodes = head;
    for input in &graph.input {
        if let Some(pair) = qdq_pairs.remove(&input.name) {
            nodes.extend(pair);
        }
    }
    for (i, mut node) in std::mem::take(&mut graph.node).into_iter().enumerate() {
        if plan.folded.contains(&i) {
            continue;
        }
        for (k, input) in node.input.iter_mut().enumerate() {
            if let Some(over) = input_overrides.get(&(i, k)) {
                *input = over.clone();
            } else if let Some(dq) = dequantized.get(input.as_str()) {
                *input = dq.clone();
            }
        }
        for output in node.output.iter_mut() {
            if let Some(renamed) = plan.renamed.get(output.as_str()) {
                *output = renamed.clone();
            }
        }
        let outputs = node.output.clone();
        nodes.push(node);
        for output in &outputs {
            if let Some(pair) = qdq_pairs.remove(output) {
                nodes.extend(pair);
            }
        }
    }
    graph.node = nodes;
    graph.initializer.extend(initializers);
    remove_dead(&mut graph);
    model.graph = Some(graph);
    Ok((model, summary))
}

/// Drops nodes whose outputs nobody reads (the float weights' Identity
/// copies), then initializers, inputs and value_info entries nothing refers to.
fn remove_dead(graph: &mut GraphProto) {
    let outputs: HashSet<String> = graph.output.iter().map(|o| o.name.clone()).collect();
    loop {
        let read: HashSet<&str> = graph
            .node
            .iter()
            .flat_map(|n| n.input.iter().map(String::as_str))
            .chain(outputs.iter().map(String::as_str))
            .collect();
        let live: Vec<bool> = graph
            .node
            .iter()
            .map(|n| n.output.iter().any(|o| read.contains(o.as_str())))
            .collect();
        if live.iter().all(|l| *l) {
            break;
        }
        let mut keep = live.into_iter();
        graph.node.retain(|_| keep.next().unwrap_or(true));
    }
    let read: HashSet<String> = graph
        .node
        .iter()
        .flat_map(|n| n.input.iter().cloned())
        .chain(outputs.iter().cloned())
        .collect();
    let initializers: HashSet<String> = graph.initializer.iter().map(|t| t.name.clone()).collect();
    graph.initializer.retain(|t| read.contains(&t.name));
    graph
        .input
        .retain(|i| !initializers.contains(&i.name) || read.contains(&i.name));
    let produced: HashSet<String> = graph
        .node
        .iter()
        .flat_map(|n| n.output.iter().cloned())
        .collect();
    graph.value_info.retain(|v| produced.contains(&v.name));
}

/// How closely a candidate backend's outputs follow a reference's.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Agreement {
    /// Items compared.
    pub items: usize,
    /// Items whose arg-max class is the same.
    pub top1_same: usize,
    /// Largest |reference − candidate| over all outputs.
    pub max_abs_diff: f32,
    /// Mean |reference − candidate| over all outputs.
    pub mean_abs_diff: f32,
}

impl Agreement {
    /// Share of items with the same top-1 class, in [0, 1].
    pub fn top1_rate(&self) -> f64 {
        if self.items == 0 {
            return 0.0;
        }
        self.top1_same as f64 / self.items as f64
    }
}

/// Runs every input through both backends and compares their outputs.
pub fn compare_backends(
    reference: &mut dyn Backend,
    candidate: &mut dyn Backend,
    inputs: &[Tensor],
) -> Result<Agreement, BackendError> {
    let mut agreement = Agreement::default();
    let mut sum = 0f64;
    let mut count = 0usize;
    for input in inputs {
        let a = reference.run(input)?;
        let b = candidate.run(input)?;
        if a.shape() != b.shape() {
            return Err(BackendError::Run(format!(
                "outputs differ in shape: {:?} and {:?}",
                a.shape(),
                b.shape()
            )));
        }
        for item in 0..a.batch_size() {
            let (Some(x), Some(y)) = (a.item(item), b.item(item)) else {
                continue;
            };
            agreement.items += 1;
            if argmax(x) == argmax(y) {
                agreement.top1_same += 1;
            }
            for (p, q) in x.iter().zip(y) {
                let d = (p - q).abs();
                agreement.max_abs_diff = agreement.max_abs_diff.max(d);
                sum += f64::from(d);
                count += 1;
            }
        }
    }
    agreement.mean_abs_diff = if count > 0 {
        (sum / count as f64) as f32
    } else {
        0.0
    };
    Ok(agreement)
}

fn argmax(values: &[f32]) -> Option<usize> {
    values
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activation_ranges_always_contain_zero() {
        let (scale, zero) = activation_params(Range { min: 1.0, max: 2.0 });
        assert_eq!(zero, 0);
        assert!((scale - 2.0 / 255.0).abs() < 1e-7);
        let (scale, zero) = activation_params(Range {
            min: -1.0,
            max: 3.0,
        });
        assert!((scale - 4.0 / 255.0).abs() < 1e-7);
        assert_eq!(zero, 64);
        assert_eq!(activation_params(Range { min: 0.0, max: 0.0 }), (1.0, 0));
    }

    #[test]
    fn weights_are_symmetric_int8_per_channel_along_the_axis() {
        // [2, 3]: axis 0 has channels of 3 values, axis 1 of 2.
        let w = [1.0, -0.5, 0.25, 0.0, 2.0, -4.0];
        let (q, scales) = quantize_per_channel(&w, &[2, 3], 0);
        assert_eq!(scales, vec![1.0 / 127.0, 4.0 / 127.0]);
        assert_eq!(q, vec![127, -64, 32, 0, 64, -127]);
        let (q, scales) = quantize_per_channel(&w, &[2, 3], 1);
        assert_eq!(scales, vec![1.0 / 127.0, 2.0 / 127.0, 4.0 / 127.0]);
        assert_eq!(q[..3], [127, -32, 8]);
        let (_, scales) = quantize_per_channel(&[0.0, 0.0], &[2, 1], 0);
        assert_eq!(
            scales,
            vec![1.0, 1.0],
            "an all-zero channel must not divide by zero"
        );
    }

    #[test]
    fn percentiles_clip_rare_outliers_but_keep_a_zero_floor() {
        let mut observer = Observer::new(Calibration::Percentile(99.0), &["x".to_string()]);
        let mut data: Vec<f32> = (0..1000).map(|i| i as f32 / 1000.0).collect();
        data.push(100.0);
        observer.observe("x", &data);
        let range = observer.range("x").unwrap();
        assert_eq!(range.min, 0.0);
        assert!(range.max < 1.1 && range.max > 0.9, "{range:?}");
        let mut minmax = Observer::new(Calibration::MinMax, &["x".to_string()]);
        minmax.observe("x", &data);
        minmax.observe("x", &[-2.0]);
        assert_eq!(
            minmax.range("x"),
            Some(Range {
                min: -2.0,
                max: 100.0
            })
        );
    }

    #[test]
    fn top1_agreement_counts_items_with_the_same_argmax() {
        assert_eq!(argmax(&[0.1, 0.7, 0.2]), Some(1));
        let a = Agreement {
            items: 4,
            top1_same: 3,
            ..Default::default()
        };
        assert_eq!(a.top1_rate(), 0.75);
    }
}

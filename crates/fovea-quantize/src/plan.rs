//! Planning: what to quantise, decided from the graph alone before any
//! calibration run. Conv/Gemm/MatMul with constant weights get int8 weights
//! and int32 biases; their inputs, Add, pooling and the data movement between
//! them get activation Q/DQ pairs; a ReLU that is its producer's only reader
//! is folded into the producer's output quantisation.

use std::collections::{BTreeMap, HashMap, HashSet};

use fovea_onnx::{
    GraphProto, NodeProto, TensorProto, ValueInfoProto, attribute_proto::AttributeType, data_type,
    type_proto,
};

use crate::QuantizeError;

/// A weight input to store as int8.
#[derive(Debug, Clone)]
pub(crate) struct WeightPlan {
    pub(crate) node: usize,
    pub(crate) input: usize,
    pub(crate) tensor: String,
    pub(crate) axis: usize,
}

/// A bias input to store as int32 with scale = input scale × weight scale.
#[derive(Debug, Clone)]
pub(crate) struct BiasPlan {
    pub(crate) node: usize,
    pub(crate) input: usize,
    pub(crate) tensor: String,
    pub(crate) activation: String,
    pub(crate) weight: WeightPlan,
}

/// What to quantise, decided from the graph alone (before calibration).
#[derive(Debug, Default)]
pub(crate) struct Plan {
    /// Activations to Q/DQ, in the order they were chosen.
    pub(crate) activations: Vec<String>,
    /// Activation → the activation whose range (and parameters) it reuses.
    shared: HashMap<String, String>,
    pub(crate) weights: Vec<WeightPlan>,
    pub(crate) biases: Vec<BiasPlan>,
    /// ReLU/Clip nodes removed: their producer writes their output directly.
    pub(crate) folded: HashSet<usize>,
    /// Producer output renamed to the folded activation's output.
    pub(crate) renamed: HashMap<String, String>,
    pub(crate) nodes: BTreeMap<String, usize>,
}

/// Index of a graph: producers, consumers, constants and element types.
pub(crate) struct Index<'g> {
    graph: &'g GraphProto,
    initializers: HashMap<&'g str, &'g TensorProto>,
    producer: HashMap<&'g str, usize>,
    consumers: HashMap<&'g str, Vec<usize>>,
    outputs: HashSet<&'g str>,
    types: HashMap<&'g str, i32>,
}

impl<'g> Index<'g> {
    pub(crate) fn new(graph: &'g GraphProto) -> Self {
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
    pub(crate) fn constant(&self, name: &str) -> Option<&'g TensorProto> {
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
        type_proto::Value::TensorType(t) => Some(t.elem_type),
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
    pub(crate) fn build(graph: &GraphProto) -> Result<Self, QuantizeError> {
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
    pub(crate) fn range_source<'a>(&'a self, mut tensor: &'a str) -> &'a str {
        while let Some(source) = self.shared.get(tensor) {
            tensor = source;
        }
        tensor
    }

    pub(crate) fn calibrated_tensors(&self) -> impl Iterator<Item = &str> {
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

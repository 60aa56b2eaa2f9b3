//! The rewrite: applies a plan with the calibrated ranges. Weights become
//! int8 per channel and biases int32 behind DequantizeLinear, each planned
//! activation gets a QuantizeLinear→DequantizeLinear pair, folded ReLUs go,
//! and whatever the float graph no longer reads is dropped.

use std::collections::{HashMap, HashSet};

use fovea_engine::BackendError;
use fovea_onnx::{AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto};

use crate::calibrate::Range;
use crate::plan::{Index, Plan};
use crate::{QuantizeError, QuantizeSummary};

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
pub(crate) fn rewrite(
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
}

//! Calibration: runs the fp32 model on ONNX Runtime with every activation to
//! be quantised made a graph output, and reads each one's range (min/max or
//! a percentile of |x|) over the calibration inputs.

use std::collections::{HashMap, HashSet};

use fovea_core::Tensor;
use fovea_engine::{BackendError, ort_environment};
use fovea_onnx::{ModelProto, ValueInfoProto, data_type, tensor_shape_proto, type_proto};
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::TensorRef;
use prost::Message;

use crate::{QuantizeError, QuantizeOptions};

/// How activation ranges are read from the calibration outputs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Calibration {
    /// The smallest and largest value seen (onnxruntime's default).
    MinMax,
    /// The given percentile of |x| on each side (e.g. 99.99): clips rare
    /// outliers, finer steps for everything else.
    Percentile(f64),
}

/// A closed range of real values an activation takes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Range {
    pub(crate) min: f32,
    pub(crate) max: f32,
}

/// Runs the model with every tensor in `targets` added to its outputs over
/// the calibration inputs and returns each tensor's range.
pub(crate) fn calibrate(
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
        Some(type_proto::Value::TensorType(t)) => t
            .shape
            .as_ref()
            .and_then(|s| s.dim.first())
            .and_then(|d| match d.value {
                Some(tensor_shape_proto::dimension::Value::DimValue(v)) => Some(v),
                _ => None,
            }),
        _ => None,
    };
    let bytes = augmented.encode_to_vec();
    let mut session =
        calibration_session(&bytes, options.threads).map_err(QuantizeError::Calibration)?;
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
        let run = |e: ort::Error| QuantizeError::Calibration(BackendError::Run(e.to_string()));
        let value = TensorRef::from_array_view((batch.shape(), batch.data())).map_err(run)?;
        let outputs = session
            .run(ort::inputs![input_name.as_str() => value])
            .map_err(run)?;
        for name in targets {
            let output = outputs.get(name).ok_or_else(|| {
                QuantizeError::Calibration(BackendError::Run(format!(
                    "calibration output `{name}` is missing"
                )))
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
    let environment = ort_environment()?;
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

#[cfg(test)]
mod tests {
    use super::*;

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
}

//! Measuring a backend's throughput and latency at a fixed batch size; shared
//! by the `engine_bench` example and `fovea bench --engine`.

use std::time::{Duration, Instant};

use fovea_core::Tensor;

use crate::backend::Backend;
use crate::error::BackendError;

/// What one `bench_backend` run measured.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchResult {
    /// Backend name.
    pub backend: &'static str,
    /// Items per run.
    pub batch: usize,
    /// Timed runs (after two untimed warm-up runs).
    pub iterations: usize,
    /// Wall time of all timed runs.
    pub total: Duration,
    /// Median time of one run.
    pub p50: Duration,
    /// 90th percentile time of one run.
    pub p90: Duration,
}

impl BenchResult {
    /// Throughput in items per second.
    pub fn images_per_second(&self) -> f64 {
        (self.batch * self.iterations) as f64 / self.total.as_secs_f64().max(f64::MIN_POSITIVE)
    }
}

/// Runs `backend` `iterations` times on a deterministic batch of `batch` items
/// shaped like its input, after two warm-up runs, and times each run.
pub fn bench_backend(
    backend: &mut dyn Backend,
    batch: usize,
    iterations: usize,
) -> Result<BenchResult, BackendError> {
    let item = backend.signature().input_item_shape().ok_or_else(|| {
        BackendError::Run(format!(
            "the input shape {:?} has unknown dimensions besides the batch",
            backend.signature().input_shape
        ))
    })?;
    let mut shape = vec![batch.max(1)];
    shape.extend(item);
    let mut input = Tensor::zeros(shape);
    // Varied values: an all-zero input could take faster paths than real images.
    for (i, x) in input.data_mut().iter_mut().enumerate() {
        *x = ((i % 251) as f32 / 125.0) - 1.0;
    }
    for _ in 0..2 {
        backend.run(&input)?;
    }
    let mut times = Vec::with_capacity(iterations);
    let started = Instant::now();
    for _ in 0..iterations.max(1) {
        let run = Instant::now();
        backend.run(&input)?;
        times.push(run.elapsed());
    }
    let total = started.elapsed();
    times.sort_unstable();
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    Ok(BenchResult {
        backend: backend.name(),
        batch: batch.max(1),
        iterations: times.len(),
        total,
        p50: at(0.5),
        p90: at(0.9),
    })
}

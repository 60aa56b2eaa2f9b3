//! `fovea bench --engine`: raw in-process throughput per batch size, the
//! model's FLOPs (from tract's per-node cost model) and this machine's sgemm
//! peak, so that the engine's achieved GFLOP/s can be read against the ceiling.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use fovea_engine::{bench_backend, open_backend};
use serde_json::json;
use tract_onnx::prelude::*;

use super::BenchArgs;

/// One batch size's measurement.
#[derive(Debug, serde::Serialize)]
struct Row {
    backend: &'static str,
    batch: usize,
    iterations: usize,
    images_per_second: f64,
    ms_per_batch_p50: f64,
    ms_per_batch_p90: f64,
    gflops: Option<f64>,
}

pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let model = PathBuf::from(
        args.model
            .as_deref()
            .context("--engine needs --model FILE.onnx (or FOVEA_MODEL)")?,
    );
    let threads = args.threads.unwrap_or_else(fovea_core::available_cores);
    let per_batch = Duration::from_secs_f64(args.duration_secs.unwrap_or(10.0).max(0.1));
    let mut backend = open_backend(args.backend, &model, threads)
        .with_context(|| format!("opening {}", model.display()))?;
    let item = backend
        .signature()
        .input_item_shape()
        .context("the model's input has unknown dimensions besides the batch")?;
    let flops = match model_flops(&model, &item) {
        Ok(f) => Some(f),
        Err(e) => {
            tracing::warn!("could not count the model's FLOPs: {e:#}");
            None
        }
    };
    let mut rows = Vec::new();
    for &batch in &args.batch_sizes {
        // A short calibration run sizes the timed run to the requested duration.
        let probe = bench_backend(backend.as_mut(), batch, 3)?;
        let per_run = probe.total.as_secs_f64() / probe.iterations as f64;
        let iterations = ((per_batch.as_secs_f64() / per_run.max(1e-6)) as usize).max(3);
        let r = bench_backend(backend.as_mut(), batch, iterations)?;
        let ips = r.images_per_second();
        let row = Row {
            backend: r.backend,
            batch: r.batch,
            iterations: r.iterations,
            images_per_second: ips,
            ms_per_batch_p50: r.p50.as_secs_f64() * 1e3,
            ms_per_batch_p90: r.p90.as_secs_f64() * 1e3,
            gflops: flops.map(|f| f * ips / 1e9),
        };
        if !args.json {
            println!(
                "{:<12} batch {:>3}: {:>8.1} img/s  {:>8.2} ms/batch p50  {:>8.2} p90  {}",
                row.backend,
                row.batch,
                row.images_per_second,
                row.ms_per_batch_p50,
                row.ms_per_batch_p90,
                row.gflops
                    .map(|g| format!("{g:.1} GFLOP/s"))
                    .unwrap_or_default()
            );
        }
        rows.push(row);
    }
    let peak = if args.peak {
        let mut levels = vec![1];
        if threads > 1 {
            levels.push(threads);
        }
        levels
            .into_iter()
            .map(|t| (t, sgemm_peak(t, Duration::from_secs(2))))
            .collect()
    } else {
        Vec::new()
    };
    if args.json {
        let peak_json: serde_json::Map<String, serde_json::Value> = peak
            .iter()
            .map(|(t, g)| (t.to_string(), json!(g)))
            .collect();
        println!(
            "{}",
            json!({
                "model": model.display().to_string(),
                "threads": threads,
                "gflop_per_image": flops.map(|f| f / 1e9),
                "rows": rows,
                "sgemm_peak_gflops_by_threads": peak_json,
            })
        );
    } else {
        if let Some(f) = flops {
            println!(
                "model: {:.3} GFLOP per image ({} multiply-adds × 2)",
                f / 1e9,
                f / 2.0
            );
        }
        for (t, g) in &peak {
            println!("sgemm peak, {t} thread(s): {g:.1} GFLOP/s");
        }
    }
    Ok(())
}

/// FLOPs of one item (batch 1): twice the multiply-adds tract's cost model
/// reports for every node (convolutions and matrix products dominate; the
/// rest is counted as zero).
fn model_flops(path: &Path, item: &[usize]) -> anyhow::Result<f64> {
    let mut shape = vec![1];
    shape.extend_from_slice(item);
    let model = tract_onnx::onnx()
        .model_for_path(path)?
        .with_input_fact(0, f32::fact(&shape).into())?
        .into_typed()?
        .into_decluttered()?;
    let mut fma: i64 = 0;
    for node in model.nodes() {
        let inputs = model.node_input_facts(node.id)?;
        for (cost, count) in node.op.cost(&inputs)? {
            if matches!(cost, tract_onnx::tract_core::ops::Cost::FMA(_)) {
                fma += count.to_i64()?;
            }
        }
    }
    anyhow::ensure!(fma > 0, "tract's cost model reported no multiply-adds");
    Ok(2.0 * fma as f64)
}

/// Aggregate single-precision matrix-multiply GFLOP/s with `threads` threads
/// each multiplying its own 512×512 matrices for `duration`: the practical
/// ceiling a convolution network can reach on this machine.
fn sgemm_peak(threads: usize, duration: Duration) -> f64 {
    use tract_onnx::prelude::tract_ndarray::Array2;
    const N: usize = 512;
    let flops: f64 = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    let a =
                        Array2::from_shape_fn((N, N), |(i, j)| ((i * 7 + j + t) % 13) as f32 * 0.1);
                    let b = Array2::from_shape_fn((N, N), |(i, j)| ((i + j * 3) % 11) as f32 * 0.1);
                    let mut c = Array2::<f32>::zeros((N, N));
                    // Warm-up: page in the buffers and let the clock ramp.
                    tract_onnx::prelude::tract_ndarray::linalg::general_mat_mul(
                        1.0, &a, &b, 0.0, &mut c,
                    );
                    let started = Instant::now();
                    let mut runs = 0u64;
                    while started.elapsed() < duration {
                        tract_onnx::prelude::tract_ndarray::linalg::general_mat_mul(
                            1.0, &a, &b, 0.0, &mut c,
                        );
                        runs += 1;
                    }
                    (2.0 * (N * N * N) as f64 * runs as f64) / started.elapsed().as_secs_f64()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(0.0)).sum()
    });
    flops / 1e9
}

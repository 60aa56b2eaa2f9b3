//! Throughput of each backend on one model, side by side in one run: ONNX
//! Runtime with intra-op spinning off and on, tract with 1 and N threads, at
//! batch 1 and 8.
//!
//! cargo run -p fovea-engine --example engine_bench --release -- \
//!     [MODEL.onnx (default ../shared/models/resnet18-imagenet-random.onnx)] [THREADS (2)] [RUNS AT BATCH 1 (40)]

use std::path::PathBuf;

use fovea_engine::{
    BackendChoice, BackendTuning, bench_backend, open_backend_tuned, ort_runtime_status,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let model = args.next().map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/models/resnet18-imagenet-random.onnx")
    });
    let threads: usize = args.next().map_or(Ok(2), |a| a.parse())?;
    let runs: usize = args.next().map_or(Ok(40), |a| a.parse())?;

    let mut configs = Vec::new();
    match ort_runtime_status() {
        Ok(path) => {
            println!("ONNX Runtime: {}", path.display());
            for spinning in [false, true] {
                configs.push((BackendChoice::Ort, threads, spinning));
            }
        }
        Err(reason) => println!("ONNX Runtime skipped: {reason}"),
    }
    configs.push((BackendChoice::Tract, 1, false));
    configs.push((BackendChoice::Tract, threads, false));

    println!("model: {}", model.display());
    println!(
        "{:<12} {:>7} {:>8} {:>5} {:>10} {:>10} {:>10}",
        "backend", "threads", "spinning", "batch", "img/s", "p50 ms", "p90 ms"
    );
    for (choice, threads, spinning) in configs {
        let tuning = BackendTuning {
            intra_op_spinning: spinning,
        };
        let mut backend = open_backend_tuned(choice, &model, threads, tuning)?;
        for batch in [1, 8] {
            let result = bench_backend(backend.as_mut(), batch, (runs / batch).max(5))?;
            println!(
                "{:<12} {:>7} {:>8} {:>5} {:>10.1} {:>10.2} {:>10.2}",
                result.backend,
                threads,
                if choice == BackendChoice::Ort {
                    spinning.to_string()
                } else {
                    "-".into()
                },
                batch,
                result.images_per_second(),
                result.p50.as_secs_f64() * 1e3,
                result.p90.as_secs_f64() * 1e3
            );
        }
    }
    Ok(())
}

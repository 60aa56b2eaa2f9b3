//! Kernel census: which operators ONNX Runtime really runs for a model after
//! its own graph optimisation. ONNX Runtime only reports that through an
//! optimised model file it writes, so the census goes through a temporary
//! file, read back and deleted.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use fovea_engine::{BackendError, ort_environment};
use fovea_onnx::ModelProto;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use prost::Message;

use crate::QuantizeError;

/// The operators ONNX Runtime runs for `model` after its full graph
/// optimisation, with how many of each: QDQ groups it fused into integer
/// kernels show up as QLinearConv, QLinearAdd, QGemm and so on, float ones
/// as Conv or FusedConv. This is how to tell an int8 model that is fast from
/// one that only looks quantised.
pub fn ort_kernels(model: &[u8], threads: usize) -> Result<BTreeMap<String, usize>, QuantizeError> {
    census(model, threads).map_err(QuantizeError::KernelCensus)
}

fn census(model: &[u8], threads: usize) -> Result<BTreeMap<String, usize>, BackendError> {
    // One file per census, so that concurrent ones in a process never share it.
    static RUN: AtomicUsize = AtomicUsize::new(0);
    let environment = ort_environment()?;
    let path = std::env::temp_dir().join(format!(
        "fovea-ort-optimized-{}-{}.onnx",
        std::process::id(),
        RUN.fetch_add(1, Ordering::Relaxed)
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

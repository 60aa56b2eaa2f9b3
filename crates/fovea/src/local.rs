//! Turning `ModelArgs` into a running engine: a repository, or one ONNX file
//! with a preset (its input and output names read from the model itself).

use std::path::Path;

use anyhow::{Context, bail};
use fovea_core::{BatchingOverrides, Labels, ModelConfig};
use fovea_engine::{Engine, EngineOptions, ModelSource, ModelState, open_backend};

use crate::cli::{ModelArgs, Preset};

/// Builds the model source `args` describe. `model_is_file` says whether
/// `--model` names a file to serve (true for serve; for predict --local only
/// when that path exists).
pub fn model_source(args: &ModelArgs, model_is_file: bool) -> anyhow::Result<ModelSource> {
    match &args.model {
        Some(path) if model_is_file => single_file(args, path),
        _ => Ok(ModelSource::Repository(args.models.clone())),
    }
}

fn single_file(args: &ModelArgs, path: &Path) -> anyhow::Result<ModelSource> {
    // The preset supplies preprocessing only; names and shapes come from the
    // graph, so any single-input classifier can be served without a config.
    let backend = open_backend(args.backend, path, 1)
        .with_context(|| format!("cannot open {}", path.display()))?;
    let signature = backend.signature().clone();
    drop(backend);
    let item = signature.input_item_shape();
    let preset = args.preset.unwrap_or(match item.as_deref() {
        Some([3, 32, 32]) => Preset::Cifar10,
        _ => Preset::Imagenet,
    });
    let mut config = ModelConfig::image_classifier(
        &signature.input_name,
        &signature.output_name,
        preset.preprocess(),
    );
    if let Some(item) = item
        && item != config.input.shape
    {
        bail!(
            "{} takes input {:?} but preset {preset:?} produces {:?}; choose another --preset",
            path.display(),
            item,
            config.input.shape
        );
    }
    let name = args.model_name.clone().unwrap_or_else(|| {
        path.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".to_string())
    });
    config.name = Some(name);
    config.output.classes = signature.num_classes();
    let labels = match (&args.labels, preset.labels()) {
        (Some(file), _) => Labels::load(file)?,
        (None, Some(labels)) => labels,
        (None, None) => Labels::default(),
    };
    config.validate(path)?;
    tracing::info!(
        model = %path.display(),
        preset = ?preset,
        input = %signature.input_name,
        output = %signature.output_name,
        labels = labels.len(),
        "serving a single ONNX file"
    );
    Ok(ModelSource::SingleFile {
        path: path.to_path_buf(),
        config,
        labels,
    })
}

/// Engine options from the flags.
pub fn engine_options(args: &ModelArgs, poll_interval_secs: u64) -> EngineOptions {
    EngineOptions {
        backend: args.backend,
        poll_interval: (poll_interval_secs > 0)
            .then(|| std::time::Duration::from_secs(poll_interval_secs)),
        batching: BatchingOverrides {
            max_batch_size: args.max_batch_size,
            max_queue_delay_us: args.max_queue_delay_us,
            queue_capacity: args.queue_capacity,
            timeout_ms: args.request_timeout_ms,
        },
        instances: args.instances,
        threads: args.thread_budget(),
    }
}

/// Logs what the engine loaded (and what failed, with why).
pub fn log_statuses(engine: &Engine) {
    tracing::info!(backend = engine.backend_name(), "inference backend");
    for status in engine.statuses() {
        match &status.state {
            ModelState::Failed(reason) => tracing::error!(
                model = %status.name,
                version = status.version,
                "model failed to load: {reason}"
            ),
            state => tracing::info!(
                model = %status.name,
                version = status.version,
                state = ?state,
                "model"
            ),
        }
    }
}

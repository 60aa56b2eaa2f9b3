//! `fovea models list`: what a repository holds and whether each config is
//! valid, read from disk without loading any model.

use std::path::Path;

use anyhow::{Context, bail};
use fovea_core::{Labels, ModelConfig, PreprocessConfig, Resize};

/// Prints one block per model; fails (exit 1) when any model is invalid, so
/// the command doubles as a repository check in CI.
pub fn list(args: &crate::cli::RepositoryArgs) -> anyhow::Result<()> {
    let root = &args.models;
    let mut dirs: Vec<_> = std::fs::read_dir(root)
        .with_context(|| format!("cannot read model repository {}", root.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    if dirs.is_empty() {
        println!("{}: no models", root.display());
        return Ok(());
    }
    let mut invalid = 0;
    for dir in &dirs {
        match describe(dir) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                invalid += 1;
                let name = dir.file_name().unwrap_or_default().to_string_lossy();
                println!("{name}\n  INVALID: {e:#}");
            }
        }
    }
    if invalid > 0 {
        bail!("{invalid} of {} models are invalid", dirs.len());
    }
    Ok(())
}

fn describe(dir: &Path) -> anyhow::Result<String> {
    let config = ModelConfig::load(&dir.join("config.toml"))?;
    let dir_name = dir.file_name().unwrap_or_default().to_string_lossy();
    let name = config.name.clone().unwrap_or_else(|| dir_name.into_owned());
    let versions = fovea_engine::model_versions(dir)?;
    if versions.is_empty() {
        bail!(
            "no version directory with a model.onnx (expected {}/1/model.onnx)",
            dir.display()
        );
    }
    let served = config.version_policy.select(&versions);
    if served.is_empty() {
        bail!(
            "version_policy {:?} selects none of {versions:?}",
            config.version_policy
        );
    }
    let labels = match &config.output.labels {
        Some(file) => {
            let labels = Labels::load(&dir.join(file))?;
            if let Some(classes) = config.output.classes
                && classes != labels.len()
            {
                bail!(
                    "output.classes is {classes} but {} has {} labels",
                    file.display(),
                    labels.len()
                );
            }
            format!("{} ({})", labels.len(), file.display())
        }
        None => "none (indices)".to_string(),
    };
    Ok(format!(
        "{name}\n  versions: {versions:?}, serving {served:?}\n  input: {} {:?} {}\n  preprocess: {}\n  labels: {labels}\n  batching: max {} per batch, {} µs delay, queue {}\n  config: valid",
        config.input.name,
        config.input.shape,
        config.input.dtype,
        summarise(&config.preprocess),
        config.batching.max_batch_size,
        config.batching.max_queue_delay_us,
        config.batching.queue_capacity,
    ))
}

fn summarise(p: &PreprocessConfig) -> String {
    let resize = match p.resize {
        Resize::ShorterSide(s) => format!("shorter side {s}"),
        Resize::Exact([h, w]) => format!("exact {h}×{w}"),
        Resize::None => "no resize".to_string(),
    };
    let crop = p
        .crop
        .map(|[h, w]| format!(", centre crop {h}×{w}"))
        .unwrap_or_default();
    format!(
        "{resize}{crop}, mean {:?}, std {:?}, {:?}",
        p.mean, p.std, p.color
    )
}

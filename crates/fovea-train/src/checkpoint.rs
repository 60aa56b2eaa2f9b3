//! Checkpoints on disk: a directory holding the network (`model.bpk`), the
//! optimiser state (`optim.bpk`, keyed by parameter id, which burnpack
//! preserves) and `state.json` (configuration, progress, metrics history).
//! The data-order and augmentation random streams are derived from
//! `(seed, epoch)`, so the seed and the epoch count are the whole RNG state.

use std::fs;
use std::path::{Path, PathBuf};

use burn::optim::ModuleOptimizer;
use burn::store::{BurnpackStore, ModuleSnapshot};
use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};
use crate::model::{ResNet, ResNetConfig};
use crate::train::{EpochMetrics, TrainConfig};

/// File holding the network inside a checkpoint directory.
pub const MODEL_FILE: &str = "model.bpk";
/// File holding the optimiser state inside a checkpoint directory.
pub const OPTIM_FILE: &str = "optim.bpk";
/// File holding [`RunState`] inside a checkpoint directory.
pub const STATE_FILE: &str = "state.json";

/// Everything about a run except tensors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunState {
    pub config: TrainConfig,
    pub model: ResNetConfig,
    pub classes: Vec<String>,
    /// Epochs completed; the next epoch to run is this number (0-based).
    pub epochs_done: usize,
    /// Optimiser steps taken; the schedule position.
    pub global_step: usize,
    pub best_val_acc: f64,
    /// 1-based epoch that produced `best_val_acc` (0 before any).
    pub best_epoch: usize,
    pub history: Vec<EpochMetrics>,
}

fn checkpoint_error(path: &Path, message: impl std::fmt::Display) -> TrainError {
    TrainError::Checkpoint {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// Writes a checkpoint to `dir` atomically: into a sibling temporary
/// directory first, then renamed over `dir`, so a crash never leaves half a
/// checkpoint where `--resume` would find it.
pub fn save(
    dir: &Path,
    model: &ResNet,
    optim: Option<&ModuleOptimizer>,
    state: &RunState,
) -> Result<()> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "checkpoint".into());
    let tmp = dir.with_file_name(format!(".{name}.tmp"));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(TrainError::io(&tmp))?;
    }
    fs::create_dir_all(&tmp).map_err(TrainError::io(&tmp))?;
    let mut store = BurnpackStore::from_file(tmp.join(MODEL_FILE)).overwrite(true);
    model
        .save_into(&mut store)
        .map_err(|e| checkpoint_error(dir, e))?;
    if let Some(optim) = optim {
        optim
            .save(tmp.join(OPTIM_FILE))
            .map_err(|e| checkpoint_error(dir, format!("optimiser: {e:?}")))?;
    }
    let json = serde_json::to_string_pretty(state).map_err(|e| checkpoint_error(dir, e))?;
    let state_path = tmp.join(STATE_FILE);
    fs::write(&state_path, json).map_err(TrainError::io(&state_path))?;
    if dir.exists() {
        fs::remove_dir_all(dir).map_err(TrainError::io(dir))?;
    }
    fs::rename(&tmp, dir).map_err(TrainError::io(dir))
}

/// Reads `state.json` of a checkpoint directory.
pub fn load_state(dir: &Path) -> Result<RunState> {
    let path = dir.join(STATE_FILE);
    let text = fs::read_to_string(&path).map_err(TrainError::io(&path))?;
    serde_json::from_str(&text).map_err(|e| checkpoint_error(&path, e))
}

/// Loads the network of a checkpoint directory onto `device`.
pub fn load_model(dir: &Path, device: &Device) -> Result<(ResNet, RunState)> {
    let state = load_state(dir)?;
    let model = load_weights(state.model.init(device), &dir.join(MODEL_FILE))?;
    Ok((model, state))
}

/// Loads a `model.bpk` into a network of the same shape.
pub fn load_weights(model: ResNet, file: &Path) -> Result<ResNet> {
    let mut model = model;
    let mut store = BurnpackStore::from_file(file).auto_extension(false);
    model
        .load_from(&mut store)
        .map_err(|e| checkpoint_error(file, e))?;
    Ok(model)
}

/// Loads everything but the classifier from a `model.bpk` (fine-tuning to a
/// different set of classes keeps `model`'s own `fc`).
pub fn load_backbone(model: ResNet, file: &Path) -> Result<ResNet> {
    let mut model = model;
    let mut store = BurnpackStore::from_file(file)
        .auto_extension(false)
        .with_regex(r"^(conv1|bn1|layer\d)\.")
        .allow_partial(true);
    let result = model
        .load_from(&mut store)
        .map_err(|e| checkpoint_error(file, e))?;
    if !result.errors.is_empty() {
        let errors: Vec<String> = result.errors.iter().map(|e| e.to_string()).collect();
        return Err(checkpoint_error(file, errors.join("; ")));
    }
    Ok(model)
}

/// Loads the optimiser state saved next to a checkpoint's network.
pub fn load_optim(dir: &Path, optim: ModuleOptimizer) -> Result<ModuleOptimizer> {
    let path = dir.join(OPTIM_FILE);
    optim
        .load(&path)
        .map_err(|e| checkpoint_error(&path, format!("{e:?}")))
}

/// The network file a `--init` or `eval`/`export` argument names: a
/// checkpoint directory or a `model.bpk` inside one.
pub fn model_dir(path: &Path) -> PathBuf {
    if path.is_dir() {
        path.to_path_buf()
    } else {
        path.parent().map(Path::to_path_buf).unwrap_or_default()
    }
}

//! Checkpoints on disk: a directory holding the network (`model.safetensors`,
//! every variable under torchvision's name, BatchNorm running statistics
//! included), the optimiser's momentum buffers (`optim.safetensors`, keyed by
//! the same names) and `state.json` (configuration, progress, metrics
//! history). The data-order and augmentation random streams are derived from
//! `(seed, epoch)`, so the seed and the epoch count are the whole RNG state.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tch::{Device, Tensor, nn};

use crate::error::{Result, TrainError};
use crate::model::{ResNet, ResNetConfig, is_head};
use crate::train::{EpochMetrics, TrainConfig};

/// File holding the network inside a checkpoint directory.
pub const MODEL_FILE: &str = "model.safetensors";
/// File holding the optimiser state inside a checkpoint directory.
pub const OPTIM_FILE: &str = "optim.safetensors";
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

pub(crate) fn checkpoint_error(path: &Path, message: impl std::fmt::Display) -> TrainError {
    TrainError::Checkpoint {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// Named tensors in a stable (sorted) order, contiguous, on the CPU.
fn for_saving(tensors: impl IntoIterator<Item = (String, Tensor)>) -> Vec<(String, Tensor)> {
    let mut named: Vec<(String, Tensor)> = tensors
        .into_iter()
        .map(|(name, t)| (name, t.to_device(Device::Cpu).contiguous()))
        .collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    named
}

/// Writes a checkpoint to `dir` atomically: into a sibling temporary
/// directory first, then renamed over `dir`, so a crash never leaves half a
/// checkpoint where `--resume` would find it.
pub fn save(
    dir: &Path,
    vs: &nn::VarStore,
    optim: Option<Vec<(String, Tensor)>>,
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
    Tensor::write_safetensors(&for_saving(vs.variables()), tmp.join(MODEL_FILE))
        .map_err(|e| checkpoint_error(dir, e))?;
    if let Some(buffers) = optim {
        Tensor::write_safetensors(&for_saving(buffers), tmp.join(OPTIM_FILE))
            .map_err(|e| checkpoint_error(dir, format!("optimiser: {e}")))?;
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

/// A network and the store holding its variables.
pub struct Network {
    pub vs: nn::VarStore,
    pub model: ResNet,
}

impl Network {
    /// A freshly initialised network of shape `config` on `device`, its
    /// initial weights drawn from libtorch's generator seeded with `seed`.
    pub fn init(config: ResNetConfig, device: Device, seed: u64) -> Self {
        // libtorch's generator is process-wide: two runs in one process (the
        // tests) must not interleave their draws, or neither is reproducible.
        static SEEDED_INIT: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _only_us = SEEDED_INIT
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        tch::manual_seed(seed as i64);
        let vs = nn::VarStore::new(device);
        let model = config.build(&vs.root());
        Self { vs, model }
    }

    /// Copies `tensors` into same-named variables. Every variable must be
    /// present unless `backbone_only`, which skips the classifier (`fc.*`).
    /// Names outside the network (e.g. `num_batches_tracked`) are ignored.
    pub fn load_named(
        &mut self,
        tensors: &[(String, Tensor)],
        backbone_only: bool,
        file: &Path,
    ) -> Result<()> {
        let source: std::collections::HashMap<&str, &Tensor> =
            tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
        let mut variables: Vec<(String, Tensor)> = self.vs.variables().into_iter().collect();
        variables.sort_by(|a, b| a.0.cmp(&b.0));
        let mut missing = Vec::new();
        for (name, mut var) in variables {
            if backbone_only && is_head(&name) {
                continue;
            }
            let Some(src) = source.get(name.as_str()) else {
                missing.push(name);
                continue;
            };
            if src.size() != var.size() {
                return Err(checkpoint_error(
                    file,
                    format!(
                        "`{name}` has shape {:?}, the network needs {:?}",
                        src.size(),
                        var.size()
                    ),
                ));
            }
            tch::no_grad(|| var.f_copy_(src))
                .map_err(|e| checkpoint_error(file, format!("`{name}`: {e}")))?;
        }
        if !missing.is_empty() {
            return Err(checkpoint_error(
                file,
                format!("missing tensors: {}", missing.join(", ")),
            ));
        }
        Ok(())
    }
}

/// Reads a safetensors file of named tensors.
pub fn read_tensors(file: &Path) -> Result<Vec<(String, Tensor)>> {
    if !file.is_file() {
        return Err(TrainError::io(file)(std::io::Error::from(
            std::io::ErrorKind::NotFound,
        )));
    }
    Tensor::read_safetensors(file).map_err(|e| checkpoint_error(file, e))
}

/// Loads the network of a checkpoint directory onto `device`.
pub fn load_model(dir: &Path, device: Device) -> Result<(Network, RunState)> {
    let state = load_state(dir)?;
    let mut network = Network::init(state.model, device, 0);
    let file = dir.join(MODEL_FILE);
    network.load_named(&read_tensors(&file)?, false, &file)?;
    Ok((network, state))
}

/// The directory a `--init` or `eval`/`export` argument names: a
/// checkpoint directory or a file inside one.
pub fn model_dir(path: &Path) -> PathBuf {
    if path.is_dir() {
        path.to_path_buf()
    } else {
        path.parent().map(Path::to_path_buf).unwrap_or_default()
    }
}

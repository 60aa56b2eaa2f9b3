//! The training loop: SGD (momentum, Nesterov, weight decay) on burn's
//! autodiff, learning-rate schedule, label smoothing, per-epoch validation,
//! metrics CSV and curves, checkpoints every epoch with exact resume, best
//! checkpoint and early stopping.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::{Module, ParamGroup};
use burn::nn::loss::{CrossEntropyLoss, CrossEntropyLossConfig};
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{GradientsParams, ModuleOptimizer, SgdConfig};
use burn::tensor::{Device, Int, Tensor, TensorData};
use indicatif::{ProgressBar, ProgressStyle};
use rand::SeedableRng;
use rand::rngs::ChaCha8Rng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use crate::augment::{Augment, Batch, Normalize, make_batch};
use crate::checkpoint::{self, RunState};
use crate::data::Splits;
use crate::error::{Result, TrainError};
use crate::eval::{cross_entropy_row, evaluate, fit_input};
use crate::model::{Arch, ResNet, ResNetConfig};
use crate::pth;
use crate::schedule::{Schedule, ScheduleKind};
use crate::svg::{Series, training_curves};

/// Every setting that shapes a run's result. A resumed run must have the same.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub arch: Arch,
    /// First-stage channels (64 = torchvision's ResNet-18).
    pub width: usize,
    /// Side of the square the network sees; images are resized to it when it
    /// differs from the data (224 for the torchvision stem on CIFAR).
    pub input_size: usize,
    pub epochs: usize,
    pub batch_size: usize,
    /// Peak learning rate.
    pub lr: f64,
    pub momentum: f64,
    pub nesterov: bool,
    pub weight_decay: f64,
    pub label_smoothing: f64,
    pub schedule: ScheduleKind,
    /// Warm-up length in epochs (fractional allowed).
    pub warmup_epochs: f64,
    pub augment: Augment,
    pub normalize: Normalize,
    /// Seeds initialisation, the validation split, the data order and augmentation.
    pub seed: u64,
    /// Training images held out for validation.
    pub val_size: usize,
    /// Stop after this many epochs without a better validation accuracy.
    pub patience: Option<usize>,
    /// Train only `fc`; every other layer (including BatchNorm statistics) stays fixed.
    pub freeze_backbone: bool,
    /// Cap on optimiser steps per epoch (smoke runs, throughput measurements).
    pub max_steps_per_epoch: Option<usize>,
    pub eval_batch_size: usize,
}

impl TrainConfig {
    /// The usual CIFAR-10 recipe for `arch`: batch 128, one-cycle to 0.1,
    /// Nesterov momentum 0.9, weight decay 5e-4, label smoothing 0.1.
    pub fn cifar(arch: Arch, epochs: usize) -> Self {
        Self {
            arch,
            width: 64,
            input_size: arch.native_size(),
            epochs,
            batch_size: 128,
            lr: 0.1,
            momentum: 0.9,
            nesterov: true,
            weight_decay: 5e-4,
            label_smoothing: 0.1,
            schedule: ScheduleKind::OneCycle,
            warmup_epochs: 0.3 * epochs as f64,
            augment: Augment::cifar(),
            normalize: Normalize::cifar10(),
            seed: 0,
            val_size: 5000,
            patience: None,
            freeze_backbone: false,
            max_steps_per_epoch: None,
            eval_batch_size: 256,
        }
    }

    /// Optimiser steps in one epoch over `train_len` images; the last partial
    /// batch is dropped so every step sees `batch_size` images.
    pub fn steps_per_epoch(&self, train_len: usize) -> usize {
        let full = (train_len / self.batch_size.max(1)).max(1);
        self.max_steps_per_epoch.map_or(full, |cap| full.min(cap))
    }

    /// The learning-rate curve over the whole run.
    pub fn schedule(&self, train_len: usize) -> Schedule {
        let steps = self.steps_per_epoch(train_len);
        Schedule {
            kind: self.schedule,
            max_lr: self.lr,
            total_steps: steps * self.epochs,
            warmup_steps: (self.warmup_epochs * steps as f64).round() as usize,
        }
    }

    fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(TrainError::Invalid(m.into()));
        if self.batch_size < 2 {
            return bad("batch size must be at least 2 (BatchNorm needs a batch)");
        }
        if self.epochs == 0 || self.width == 0 || self.input_size == 0 {
            return bad("epochs, width and input size must be positive");
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad("learning rate must be positive");
        }
        if !(0.0..1.0).contains(&self.label_smoothing) {
            return bad("label smoothing must be in [0, 1)");
        }
        Ok(())
    }
}

/// Metrics of one finished epoch, as written to `metrics.csv`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    /// 1-based.
    pub epoch: usize,
    pub train_loss: f64,
    pub train_acc: f64,
    pub val_loss: f64,
    pub val_acc: f64,
    /// Learning rate at the epoch's last step.
    pub lr: f64,
    pub seconds: f64,
}

/// Loss and correct predictions of one step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepStats {
    /// Mean training loss (with label smoothing) over the batch.
    pub loss: f64,
    pub correct: usize,
}

/// A network with its optimiser and loss, stepping on batches.
pub struct Trainer {
    pub model: ResNet,
    pub optim: ModuleOptimizer,
    loss: CrossEntropyLoss,
    device: Device,
    input_size: [usize; 2],
}

impl Trainer {
    /// Prepares `model` (already on an autodiff `device`) for training under `config`.
    pub fn new(model: ResNet, config: &TrainConfig, device: &Device) -> Self {
        let model = if config.freeze_backbone {
            let head = ParamGroup::ids_from_module(model.fc.clone());
            model.freeze().unfreeze_group(head)
        } else {
            model
        };
        let optim = SgdConfig::new()
            .with_momentum(Some(MomentumConfig {
                momentum: config.momentum,
                dampening: 0.0,
                nesterov: config.nesterov,
            }))
            .with_weight_decay((config.weight_decay > 0.0).then_some(WeightDecayConfig {
                penalty: config.weight_decay as f32,
            }))
            .init();
        let smoothing = (config.label_smoothing > 0.0).then_some(config.label_smoothing as f32);
        Self {
            model,
            optim,
            loss: CrossEntropyLossConfig::new()
                .with_smoothing(smoothing)
                .init(device),
            device: device.clone(),
            input_size: [config.input_size; 2],
        }
    }

    /// One forward/backward pass and optimiser update at learning rate `lr`.
    pub fn step(&mut self, batch: &Batch, lr: f64) -> StepStats {
        let n = batch.len();
        let x = Tensor::<4>::from_data(
            TensorData::new(batch.images.clone(), [n, 3, batch.height, batch.width]),
            &self.device,
        );
        let targets =
            Tensor::<1, Int>::from_data(TensorData::new(batch.labels.clone(), [n]), &self.device);
        let logits = self.model.forward(fit_input(x, self.input_size));
        let loss = self.loss.forward(logits.clone(), targets);
        let loss_value = scalar(&loss);
        let grads = GradientsParams::from_grads(loss.backward(), &self.model);
        self.model = self.optim.step(lr, self.model.clone(), grads);
        let classes = logits.dims()[1];
        let logits = logits
            .detach()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap_or_default();
        let correct = logits
            .chunks(classes)
            .zip(&batch.labels)
            .filter(|(row, label)| cross_entropy_row(row, **label as usize).1 == **label as usize)
            .count();
        StepStats {
            loss: loss_value,
            correct,
        }
    }
}

fn scalar(t: &Tensor<1>) -> f64 {
    t.clone()
        .into_data()
        .try_to_vec::<f32>()
        .ok()
        .and_then(|v| v.first().copied())
        .map_or(f64::NAN, f64::from)
}

/// Where the starting weights of a fresh run come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Init {
    /// A fovea checkpoint directory (or the `model.bpk` inside one).
    Checkpoint(PathBuf),
    /// A PyTorch `state_dict` `.pth` file.
    Pth(PathBuf),
}

impl Init {
    /// `.pth`/`.pt` files are PyTorch, anything else a fovea checkpoint.
    pub fn from_path(path: &Path) -> Self {
        match path.extension().and_then(|e| e.to_str()) {
            Some("pth" | "pt") => Init::Pth(path.to_path_buf()),
            _ => Init::Checkpoint(path.to_path_buf()),
        }
    }

    /// Loads these weights into `model`; the classifier too when its class count matches.
    pub fn load(&self, model: ResNet) -> Result<ResNet> {
        match self {
            Init::Pth(path) => pth::import_backbone(model, path),
            Init::Checkpoint(path) => {
                let dir = checkpoint::model_dir(path);
                let source = checkpoint::load_state(&dir)?.model;
                let own = model.config();
                if (source.arch, source.width) != (own.arch, own.width) {
                    return Err(TrainError::Invalid(format!(
                        "{} holds a {} of width {}; this run trains a {} of width {}",
                        dir.display(),
                        source.arch,
                        source.width,
                        own.arch,
                        own.width
                    )));
                }
                let file = dir.join(checkpoint::MODEL_FILE);
                if source.num_classes == own.num_classes {
                    checkpoint::load_weights(model, &file)
                } else {
                    checkpoint::load_backbone(model, &file)
                }
            }
        }
    }
}

/// How one invocation runs (none of this changes the result).
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Run directory: `checkpoint/`, `best/`, `metrics.csv`, `training.svg`, `labels.txt`.
    pub out_dir: PathBuf,
    /// Continue from `out_dir/checkpoint` when it exists.
    pub resume: bool,
    /// Starting weights of a fresh run.
    pub init: Option<Init>,
    /// Return after this many epochs in this invocation (resume later).
    pub stop_after: Option<usize>,
    /// Show a progress bar on the terminal.
    pub progress: bool,
    /// Print one summary line per epoch to stderr.
    pub log_epochs: bool,
}

/// What a run ended with.
pub struct Outcome {
    pub state: RunState,
    /// The network as it is after the last epoch run.
    pub model: ResNet,
    /// True when early stopping ended the run.
    pub stopped_early: bool,
}

/// Paths inside a run directory.
pub fn checkpoint_dir(out: &Path) -> PathBuf {
    out.join("checkpoint")
}

/// The best-validation checkpoint inside a run directory.
pub fn best_dir(out: &Path) -> PathBuf {
    out.join("best")
}

/// Trains (or resumes training) on `splits` under `config`.
pub fn run(config: &TrainConfig, splits: &Splits, options: &RunOptions) -> Result<Outcome> {
    config.validate()?;
    let out = &options.out_dir;
    fs::create_dir_all(out).map_err(TrainError::io(out))?;
    let classes = splits.train.classes().to_vec();
    let device = Device::flex().autodiff();
    let shape = ResNetConfig {
        arch: config.arch,
        num_classes: classes.len(),
        width: config.width,
    };
    let last = checkpoint_dir(out);
    let resuming = options.resume && last.join(checkpoint::STATE_FILE).is_file();
    let (model, mut state) = if resuming {
        let state = checkpoint::load_state(&last)?;
        if state.config != *config || state.classes != classes {
            return Err(TrainError::Invalid(format!(
                "{} was written with different settings or classes; resume with the same flags (saved: {:?})",
                last.display(),
                state.config
            )));
        }
        let model =
            checkpoint::load_weights(shape.init(&device), &last.join(checkpoint::MODEL_FILE))?;
        (model, state)
    } else {
        // burn's generator is per device, shared by the whole process: two runs
        // in one process (the tests) must not interleave their draws, or
        // neither initialisation is reproducible.
        static SEEDED_INIT: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let mut model = {
            let _only_us = SEEDED_INIT
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            device.seed(config.seed);
            shape.init(&device)
        };
        if let Some(init) = &options.init {
            model = init.load(model)?;
        }
        let state = RunState {
            config: config.clone(),
            model: shape,
            classes: classes.clone(),
            epochs_done: 0,
            global_step: 0,
            best_val_acc: -1.0,
            best_epoch: 0,
            history: Vec::new(),
        };
        (model, state)
    };
    let labels_path = out.join("labels.txt");
    fs::write(&labels_path, classes.join("\n") + "\n").map_err(TrainError::io(&labels_path))?;

    let mut trainer = Trainer::new(model, config, &device);
    if resuming {
        trainer.optim = checkpoint::load_optim(&last, trainer.optim)?;
    }
    let train = &splits.train;
    let steps = config.steps_per_epoch(train.len());
    let batch = config.batch_size.min(train.len());
    let schedule = config.schedule(train.len());
    let mut stopped_early = false;
    let mut ran = 0;
    while state.epochs_done < config.epochs {
        if options.stop_after.is_some_and(|n| ran >= n) {
            break;
        }
        let epoch = state.epochs_done;
        let started = Instant::now();
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        rng.set_stream(epoch as u64 + 1);
        let mut order: Vec<usize> = (0..train.len()).collect();
        order.shuffle(&mut rng);
        let bar = progress_bar(
            options.progress,
            (steps * batch) as u64,
            epoch + 1,
            config.epochs,
        );
        let (mut loss_sum, mut correct, mut lr) = (0.0, 0usize, 0.0);
        for (step, indices) in order.chunks_exact(batch).take(steps).enumerate() {
            let images = make_batch(train, indices, &config.augment, &config.normalize, &mut rng);
            lr = schedule.lr(state.global_step);
            let stats = trainer.step(&images, lr);
            state.global_step += 1;
            loss_sum += stats.loss;
            correct += stats.correct;
            bar.inc(batch as u64);
            bar.set_message(format!(
                "loss {:.3} acc {:.1}% lr {lr:.4}",
                loss_sum / (step + 1) as f64,
                100.0 * correct as f64 / ((step + 1) * batch) as f64
            ));
        }
        bar.finish_and_clear();
        let val = evaluate(
            &trainer.model,
            &splits.val,
            &config.normalize,
            [config.input_size; 2],
            config.eval_batch_size,
            &device,
        );
        let metrics = EpochMetrics {
            epoch: epoch + 1,
            train_loss: loss_sum / steps as f64,
            train_acc: correct as f64 / (steps * batch) as f64,
            val_loss: val.loss,
            val_acc: val.accuracy(),
            lr,
            seconds: started.elapsed().as_secs_f64(),
        };
        if options.log_epochs {
            eprintln!(
                "epoch {}/{}: train loss {:.4} acc {:.2}%, val loss {:.4} acc {:.2}%, {:.0} img/s, {:.0} s",
                metrics.epoch,
                config.epochs,
                metrics.train_loss,
                100.0 * metrics.train_acc,
                metrics.val_loss,
                100.0 * metrics.val_acc,
                (steps * batch) as f64 / metrics.seconds,
                metrics.seconds
            );
        }
        state.history.push(metrics.clone());
        state.epochs_done += 1;
        ran += 1;
        let improved = metrics.val_acc > state.best_val_acc;
        if improved {
            state.best_val_acc = metrics.val_acc;
            state.best_epoch = metrics.epoch;
        }
        write_metrics(out, &state.history)?;
        if improved {
            checkpoint::save(&best_dir(out), &trainer.model, None, &state)?;
        }
        let patience_spent = config
            .patience
            .is_some_and(|p| state.epochs_done - state.best_epoch >= p);
        if patience_spent && state.epochs_done < config.epochs {
            stopped_early = true;
            // Record the stop so that --resume does not train past it.
            state.epochs_done = config.epochs;
        }
        checkpoint::save(&last, &trainer.model, Some(&trainer.optim), &state)?;
        if stopped_early {
            break;
        }
    }
    Ok(Outcome {
        state,
        model: trainer.model,
        stopped_early,
    })
}

fn progress_bar(visible: bool, len: u64, epoch: usize, epochs: usize) -> ProgressBar {
    if !visible {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    let style = ProgressStyle::with_template(
        "{prefix} [{bar:30}] {pos}/{len} img  {per_sec}  ETA {eta}  {msg}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    bar.set_prefix(format!("epoch {epoch}/{epochs}"));
    bar
}

/// Rewrites `metrics.csv` and `training.svg` from the full history.
pub fn write_metrics(out: &Path, history: &[EpochMetrics]) -> Result<()> {
    let mut csv = String::from("epoch,train_loss,train_acc,val_loss,val_acc,lr,seconds\n");
    for m in history {
        let _ = writeln!(
            csv,
            "{},{:.6},{:.6},{:.6},{:.6},{:.8},{:.2}",
            m.epoch, m.train_loss, m.train_acc, m.val_loss, m.val_acc, m.lr, m.seconds
        );
    }
    let csv_path = out.join("metrics.csv");
    fs::write(&csv_path, csv).map_err(TrainError::io(&csv_path))?;
    let series = |name, color, f: fn(&EpochMetrics) -> f64| Series {
        name,
        color,
        values: history.iter().map(f).collect(),
    };
    let svg = training_curves(
        &[
            series("train", "#d62728", |m| m.train_loss),
            series("validation", "#1f77b4", |m| m.val_loss),
        ],
        &[
            series("train", "#d62728", |m| m.train_acc),
            series("validation", "#1f77b4", |m| m.val_acc),
        ],
    );
    let svg_path = out.join("training.svg");
    fs::write(&svg_path, svg).map_err(TrainError::io(&svg_path))
}

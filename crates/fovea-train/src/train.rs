//! The training loop: SGD (momentum, Nesterov, weight decay) on libtorch's
//! autograd, mixed precision, learning-rate schedule, label smoothing,
//! per-epoch validation, metrics CSV and curves, checkpoints every epoch with
//! exact resume, best checkpoint and early stopping.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use rand::SeedableRng;
use rand::rngs::ChaCha8Rng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Reduction, Tensor};

use crate::augment::{Augment, Normalize, augment_batch, to_tensors};
use crate::checkpoint::{self, Network, RunState};
use crate::data::Splits;
use crate::error::{Result, TrainError};
use crate::eval::{evaluate, fit_input};
use crate::model::{ResNetConfig, is_head};
use crate::pth;
use crate::schedule::{Schedule, ScheduleKind};
use crate::svg::{Series, training_curves};
use crate::torch::{Precision, channels_last, with_precision};

/// Every setting that shapes a run's result. A resumed run must have the same.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub arch: crate::model::Arch,
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
    /// Compute precision (master weights are always fp32).
    pub precision: Precision,
}

impl TrainConfig {
    /// The usual CIFAR-10 recipe for `arch`: batch 128, one-cycle to 0.1,
    /// Nesterov momentum 0.9, weight decay 5e-4, label smoothing 0.1.
    pub fn cifar(arch: crate::model::Arch, epochs: usize) -> Self {
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
            precision: Precision::Fp32,
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

/// SGD with momentum (Nesterov optional) and L2 weight decay, exactly
/// `torch.optim.SGD`'s update with dampening 0. Its state is one momentum
/// buffer per trainable variable, named like the variable.
pub struct Sgd {
    pub momentum: f64,
    pub nesterov: bool,
    pub weight_decay: f64,
    /// (name, variable, momentum buffer), sorted by name.
    params: Vec<(String, Tensor, Tensor)>,
}

impl Sgd {
    /// Optimises the variables of `vs` that require gradients.
    pub fn new(vs: &tch::nn::VarStore, momentum: f64, nesterov: bool, weight_decay: f64) -> Self {
        let mut params: Vec<(String, Tensor, Tensor)> = vs
            .variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .map(|(name, t)| {
                let buffer = t.zeros_like();
                (name, t, buffer)
            })
            .collect();
        params.sort_by(|a, b| a.0.cmp(&b.0));
        Self {
            momentum,
            nesterov,
            weight_decay,
            params,
        }
    }

    /// Clears the gradients of every optimised variable.
    pub fn zero_grad(&mut self) {
        for (_, p, _) in &mut self.params {
            p.zero_grad();
        }
    }

    /// One update at learning rate `lr` from the gradients of the last backward pass.
    pub fn step(&mut self, lr: f64) {
        tch::no_grad(|| {
            for (_, p, buffer) in &mut self.params {
                let grad = p.grad();
                if !grad.defined() {
                    continue;
                }
                let mut d = if self.weight_decay > 0.0 {
                    &grad + &*p * self.weight_decay
                } else {
                    grad
                };
                if self.momentum > 0.0 {
                    let _ = buffer.g_mul_scalar_(self.momentum).g_add_(&d);
                    d = if self.nesterov {
                        d + &*buffer * self.momentum
                    } else {
                        buffer.shallow_clone()
                    };
                }
                let _ = p.g_sub_(&(d * lr));
            }
        });
    }

    /// The momentum buffers, named like their variables (for checkpoints).
    pub fn state(&self) -> Vec<(String, Tensor)> {
        self.params
            .iter()
            .map(|(name, _, buffer)| (name.clone(), buffer.shallow_clone()))
            .collect()
    }

    /// Restores buffers saved by [`Sgd::state`]; every optimised variable must have one.
    pub fn load_state(&mut self, saved: &[(String, Tensor)], file: &Path) -> Result<()> {
        for (name, _, buffer) in &mut self.params {
            let Some((_, src)) = saved.iter().find(|(n, _)| n == name) else {
                return Err(checkpoint::checkpoint_error(
                    file,
                    format!("no momentum buffer for `{name}`"),
                ));
            };
            tch::no_grad(|| buffer.f_copy_(src))
                .map_err(|e| checkpoint::checkpoint_error(file, format!("`{name}`: {e}")))?;
        }
        Ok(())
    }
}

/// A network with its optimiser and loss, stepping on batches.
pub struct Trainer {
    pub net: Network,
    pub optim: Sgd,
    label_smoothing: f64,
    input_size: [usize; 2],
    precision: Precision,
    train_backbone: bool,
}

impl Trainer {
    /// Prepares `net` for training under `config`. With a frozen backbone
    /// only `fc` requires gradients and BatchNorm stays in inference mode.
    pub fn new(net: Network, config: &TrainConfig) -> Self {
        if config.freeze_backbone {
            for (name, t) in net.vs.variables() {
                if !is_head(&name) {
                    let _ = t.set_requires_grad(false);
                }
            }
        }
        let optim = Sgd::new(
            &net.vs,
            config.momentum,
            config.nesterov,
            config.weight_decay,
        );
        Self {
            net,
            optim,
            label_smoothing: config.label_smoothing,
            input_size: [config.input_size; 2],
            precision: config.precision,
            train_backbone: !config.freeze_backbone,
        }
    }

    /// One forward/backward pass and optimiser update at learning rate `lr`
    /// on normalised `images` `[n, 3, h, w]` and int64 `labels` `[n]`.
    pub fn step(&mut self, images: &Tensor, labels: &Tensor, lr: f64) -> Result<StepStats> {
        let device = self.net.vs.device();
        let x = fit_input(images, self.input_size);
        // Channels-last is oneDNN's native layout for convolutions on CPU.
        let x = if device == Device::Cpu {
            channels_last(&x).map_err(TrainError::Torch)?
        } else {
            x
        };
        let model = &self.net.model;
        let train_backbone = self.train_backbone;
        let logits = with_precision(self.precision, device, || model.forward(&x, train_backbone))
            .map_err(TrainError::Torch)?;
        let loss = logits
            .f_cross_entropy_loss::<Tensor>(
                labels,
                None,
                Reduction::Mean,
                -100,
                self.label_smoothing,
            )
            .map_err(|e| TrainError::Torch(e.to_string()))?;
        self.optim.zero_grad();
        loss.f_backward()
            .map_err(|e| TrainError::Torch(e.to_string()))?;
        self.optim.step(lr);
        let correct = logits
            .detach()
            .argmax(1, false)
            .eq_tensor(labels)
            .sum(Kind::Int64)
            .int64_value(&[]);
        Ok(StepStats {
            loss: loss.double_value(&[]),
            correct: correct as usize,
        })
    }
}

/// Where the starting weights of a fresh run come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Init {
    /// A fovea checkpoint directory (or a file inside one).
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

    /// Loads these weights into `net`. With `reset_head`, everything but the
    /// classifier (`net` keeps its freshly initialised `fc`, whatever the
    /// source's class count); otherwise the class counts must agree.
    pub fn load(&self, net: &mut Network, reset_head: bool) -> Result<()> {
        let own = net.model.config;
        let (file, source, tensors) = match self {
            Init::Pth(path) => {
                let (source, tensors) = pth::read(path)?;
                (path.clone(), source, tensors)
            }
            Init::Checkpoint(path) => {
                let dir = checkpoint::model_dir(path);
                let source = checkpoint::load_state(&dir)?.model;
                let file = dir.join(checkpoint::MODEL_FILE);
                let tensors = checkpoint::read_tensors(&file)?;
                (file, source, tensors)
            }
        };
        if (source.arch, source.width) != (own.arch, own.width) {
            return Err(TrainError::Invalid(format!(
                "{} holds a {} of width {}; this run trains a {} of width {}",
                file.display(),
                source.arch,
                source.width,
                own.arch,
                own.width
            )));
        }
        if source.num_classes != own.num_classes && !reset_head {
            return Err(TrainError::Invalid(format!(
                "{} has {} classes; this run trains {} (pass --reset-head to start a new classifier on its backbone)",
                file.display(),
                source.num_classes,
                own.num_classes
            )));
        }
        net.load_named(&tensors, reset_head, &file)
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
    /// Load everything but the classifier from `init`.
    pub reset_head: bool,
    /// Return after this many epochs in this invocation (resume later).
    pub stop_after: Option<usize>,
    /// Show a progress bar on the terminal.
    pub progress: bool,
    /// Print one summary line per epoch to stderr.
    pub log_epochs: bool,
    /// Where the tensors live and the arithmetic runs.
    pub device: Device,
}

/// What a run ended with.
pub struct Outcome {
    pub state: RunState,
    /// The network as it is after the last epoch run.
    pub net: Network,
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

/// The data order and augmentation stream of one epoch.
fn epoch_rng(seed: u64, epoch: usize) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(epoch as u64 + 1);
    rng
}

/// Trains (or resumes training) on `splits` under `config`.
pub fn run(config: &TrainConfig, splits: &Splits, options: &RunOptions) -> Result<Outcome> {
    config.validate()?;
    let out = &options.out_dir;
    fs::create_dir_all(out).map_err(TrainError::io(out))?;
    let classes = splits.train.classes().to_vec();
    let device = options.device;
    let shape = ResNetConfig {
        arch: config.arch,
        num_classes: classes.len(),
        width: config.width,
    };
    let last = checkpoint_dir(out);
    let resuming = options.resume && last.join(checkpoint::STATE_FILE).is_file();
    let mut net = Network::init(shape, device, config.seed);
    let mut state = if resuming {
        let state = checkpoint::load_state(&last)?;
        if state.config != *config || state.classes != classes {
            return Err(TrainError::Invalid(format!(
                "{} was written with different settings or classes; resume with the same flags (saved: {:?})",
                last.display(),
                state.config
            )));
        }
        let file = last.join(checkpoint::MODEL_FILE);
        net.load_named(&checkpoint::read_tensors(&file)?, false, &file)?;
        state
    } else {
        if let Some(init) = &options.init {
            init.load(&mut net, options.reset_head)?;
        }
        RunState {
            config: config.clone(),
            model: shape,
            classes: classes.clone(),
            epochs_done: 0,
            global_step: 0,
            best_val_acc: -1.0,
            best_epoch: 0,
            history: Vec::new(),
        }
    };
    let labels_path = out.join("labels.txt");
    fs::write(&labels_path, classes.join("\n") + "\n").map_err(TrainError::io(&labels_path))?;

    let mut trainer = Trainer::new(net, config);
    if resuming {
        let file = last.join(checkpoint::OPTIM_FILE);
        trainer
            .optim
            .load_state(&checkpoint::read_tensors(&file)?, &file)?;
    }
    let train = &splits.train;
    let (train_images, train_labels) = to_tensors(train, device);
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
        let mut rng = epoch_rng(config.seed, epoch);
        let mut order: Vec<i64> = (0..train.len() as i64).collect();
        order.shuffle(&mut rng);
        let bar = progress_bar(
            options.progress,
            (steps * batch) as u64,
            epoch + 1,
            config.epochs,
        );
        let (mut loss_sum, mut correct, mut lr) = (0.0, 0usize, 0.0);
        for (step, indices) in order.chunks_exact(batch).take(steps).enumerate() {
            let indices = Tensor::from_slice(indices).to_device(device);
            let images = augment_batch(
                &train_images.index_select(0, &indices),
                &config.augment,
                &config.normalize,
                &mut rng,
            );
            lr = schedule.lr(state.global_step);
            let stats = trainer.step(&images, &train_labels.index_select(0, &indices), lr)?;
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
            &trainer.net.model,
            &splits.val,
            &config.normalize,
            [config.input_size; 2],
            config.eval_batch_size,
            false,
        )?;
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
                "epoch {}/{}: train loss {:.4} acc {:.2}%, val loss {:.4} acc {:.2}%, {:.1} img/s, {:.0} s",
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
            checkpoint::save(&best_dir(out), &trainer.net.vs, None, &state)?;
        }
        let patience_spent = config
            .patience
            .is_some_and(|p| state.epochs_done - state.best_epoch >= p);
        if patience_spent && state.epochs_done < config.epochs {
            stopped_early = true;
            // Record the stop so that --resume does not train past it.
            state.epochs_done = config.epochs;
        }
        checkpoint::save(&last, &trainer.net.vs, Some(trainer.optim.state()), &state)?;
        if stopped_early {
            break;
        }
    }
    Ok(Outcome {
        state,
        net: trainer.net,
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

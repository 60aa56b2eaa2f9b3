//! The `fovea train`, `fovea eval` and `fovea export` command lines: clap
//! arguments and the functions that run them (anyhow at this edge only).

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use fovea_core::Labels;

use crate::augment::{Augment, Normalize};
use crate::checkpoint::Network;
use crate::checkpoint::{self, RunState};
use crate::data::{self, Dataset};
use crate::eval::evaluate;
use crate::export::{serving_config, to_onnx, write_repository_entry};
use crate::model::Arch;
use crate::pth;
use crate::quantize::quantize_int8;
use crate::schedule::ScheduleKind;
use crate::svg::confusion_heat_map;
use crate::torch::{Precision, parse_device};
use crate::train::{self, Init, RunOptions, TrainConfig};

/// `fovea train`: train a ResNet-18 on CIFAR-10 (binary or ImageFolder).
#[derive(Debug, Clone, Args)]
pub struct TrainArgs {
    /// Data directory: CIFAR-10 binary batches (data_batch_N.bin, test_batch.bin) or an ImageFolder tree (train/<class>/*.jpg, test/<class>/...).
    #[arg(long, env = "FOVEA_DATA")]
    pub data: PathBuf,
    /// Run directory for checkpoints, metrics.csv, training.svg and labels.txt.
    #[arg(long, env = "FOVEA_TRAIN_OUT", default_value = "runs/resnet18-cifar10")]
    pub out: PathBuf,
    /// Network: resnet18-cifar (3×3 stem, 32×32) or resnet18 (torchvision 7×7 stem + max-pool, 224×224).
    #[arg(long, env = "FOVEA_ARCH", default_value = "resnet18-cifar")]
    pub arch: Arch,
    /// Channels of the first stage; 64 is ResNet-18, smaller trains faster and worse.
    #[arg(long, env = "FOVEA_WIDTH", default_value_t = 64)]
    pub width: usize,
    /// Side of the network input; images are resized to it (default: 32 for resnet18-cifar, 224 for resnet18).
    #[arg(long, env = "FOVEA_INPUT_SIZE")]
    pub input_size: Option<usize>,
    /// Epochs to train.
    #[arg(long, env = "FOVEA_EPOCHS", default_value_t = 30)]
    pub epochs: usize,
    /// Images per optimiser step.
    #[arg(long, env = "FOVEA_BATCH_SIZE", default_value_t = 128)]
    pub batch_size: usize,
    /// Peak learning rate (use about 0.01 for fine-tuning).
    #[arg(long, env = "FOVEA_LR", default_value_t = 0.1)]
    pub lr: f64,
    /// SGD momentum.
    #[arg(long, env = "FOVEA_MOMENTUM", default_value_t = 0.9)]
    pub momentum: f64,
    /// Plain momentum instead of Nesterov's.
    #[arg(long, env = "FOVEA_NO_NESTEROV")]
    pub no_nesterov: bool,
    /// L2 weight decay.
    #[arg(long, env = "FOVEA_WEIGHT_DECAY", default_value_t = 5e-4)]
    pub weight_decay: f64,
    /// Label smoothing of the cross-entropy loss.
    #[arg(long, env = "FOVEA_LABEL_SMOOTHING", default_value_t = 0.1)]
    pub label_smoothing: f64,
    /// Learning-rate schedule: one-cycle (cosine up and down), linear (up over the warm-up, then down to 0), cosine (with linear warm-up) or constant.
    #[arg(long, env = "FOVEA_SCHEDULE", default_value = "one-cycle")]
    pub schedule: ScheduleKind,
    /// Warm-up length in epochs (default: 30% of the run for one-cycle, 20% for linear, 1 epoch for cosine).
    #[arg(long, env = "FOVEA_WARMUP_EPOCHS")]
    pub warmup_epochs: Option<f64>,
    /// Training images held out for validation (model selection, early stopping).
    #[arg(long, env = "FOVEA_VAL_SIZE", default_value_t = 5000)]
    pub val_size: usize,
    /// Seed for initialisation, the validation split, data order and augmentation.
    #[arg(long, env = "FOVEA_SEED", default_value_t = 0)]
    pub seed: u64,
    /// Zero padding before the random crop; 0 disables cropping.
    #[arg(long, env = "FOVEA_CROP_PADDING", default_value_t = 4)]
    pub crop_padding: usize,
    /// Disable random horizontal flips.
    #[arg(long, env = "FOVEA_NO_FLIP")]
    pub no_flip: bool,
    /// Side of the cutout square (0 = off; 16 is usual for CIFAR).
    #[arg(long, env = "FOVEA_CUTOUT", default_value_t = 0)]
    pub cutout: usize,
    /// Stop after this many epochs without a better validation accuracy.
    #[arg(long, env = "FOVEA_PATIENCE")]
    pub patience: Option<usize>,
    /// Continue from <out>/checkpoint with the same flags.
    #[arg(long, env = "FOVEA_RESUME")]
    pub resume: bool,
    /// Return after this many epochs (continue later with --resume).
    #[arg(long, env = "FOVEA_STOP_AFTER")]
    pub stop_after: Option<usize>,
    /// Start from these weights: a checkpoint directory (or a file in it), or a PyTorch .pth state_dict.
    #[arg(long, env = "FOVEA_INIT")]
    pub init: Option<PathBuf>,
    /// With --init: take only the backbone and start a new classifier (needed when the class counts differ).
    #[arg(long, env = "FOVEA_RESET_HEAD")]
    pub reset_head: bool,
    /// Train only the classifier (fine-tuning a pretrained backbone).
    #[arg(long, env = "FOVEA_FREEZE_BACKBONE")]
    pub freeze_backbone: bool,
    /// Cap on steps per epoch (smoke runs and throughput measurements).
    #[arg(long, env = "FOVEA_MAX_STEPS_PER_EPOCH")]
    pub max_steps_per_epoch: Option<usize>,
    /// Compute threads (default: all cores). Fewer leaves room for other work.
    #[arg(long, env = "FOVEA_TRAIN_THREADS")]
    pub threads: Option<usize>,
    /// cpu, cuda or cuda:N.
    #[arg(long, env = "FOVEA_DEVICE", default_value = "cpu", value_parser = parse_device)]
    pub device: tch::Device,
    /// Compute precision: fp32, or bf16 (autocast: bfloat16 convolutions on fp32 master weights).
    /// Default: bf16 where the CPU has native bfloat16 (AVX512-BF16/AMX) or on CUDA, else fp32.
    #[arg(long, env = "FOVEA_PRECISION")]
    pub precision: Option<Precision>,
    /// No progress bar (logs one line per epoch instead).
    #[arg(long, env = "FOVEA_NO_PROGRESS")]
    pub no_progress: bool,
}

/// `fovea eval`: top-1, per-class precision/recall and the confusion matrix.
#[derive(Debug, Clone, Args)]
pub struct EvalArgs {
    /// Weights: a checkpoint directory (e.g. runs/x/best) or a .pth state_dict.
    #[arg(long, env = "FOVEA_CHECKPOINT")]
    pub checkpoint: PathBuf,
    /// Test-time augmentation: none, or flip (mean of the logits of each image and its mirror).
    #[arg(long, env = "FOVEA_TTA", default_value = "none", value_parser = ["none", "flip"])]
    pub tta: String,
    /// cpu, cuda or cuda:N.
    #[arg(long, env = "FOVEA_DEVICE", default_value = "cpu", value_parser = parse_device)]
    pub device: tch::Device,
    /// Data directory, as for `fovea train`.
    #[arg(long, env = "FOVEA_DATA")]
    pub data: PathBuf,
    /// Which part to evaluate: test, val or train.
    #[arg(long, env = "FOVEA_EVAL_SPLIT", default_value = "test")]
    pub split: String,
    /// Validation size and seed of the split (default: the checkpoint's own).
    #[arg(long, env = "FOVEA_VAL_SIZE")]
    pub val_size: Option<usize>,
    /// Directory for report.txt, confusion.svg and report.json.
    #[arg(long, env = "FOVEA_EVAL_OUT")]
    pub out: Option<PathBuf>,
    /// Images per forward pass.
    #[arg(long, env = "FOVEA_EVAL_BATCH_SIZE", default_value_t = 256)]
    pub batch_size: usize,
    /// Compute threads (default: all cores).
    #[arg(long, env = "FOVEA_TRAIN_THREADS")]
    pub threads: Option<usize>,
}

/// `fovea export`: write a model-repository entry (ONNX + config.toml + labels.txt).
#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    /// Weights: a checkpoint directory (e.g. runs/x/best) or a .pth state_dict.
    #[arg(long, env = "FOVEA_CHECKPOINT")]
    pub checkpoint: PathBuf,
    /// Model repository root.
    #[arg(long, env = "FOVEA_MODEL_REPOSITORY", default_value = "models")]
    pub repo: PathBuf,
    /// Model name (the directory under the repository).
    #[arg(long, env = "FOVEA_MODEL_NAME", default_value = "resnet18-cifar10")]
    pub name: String,
    /// Version number (default: one above the highest present).
    #[arg(long, env = "FOVEA_MODEL_VERSION")]
    pub version: Option<u64>,
    /// Labels file (default: the checkpoint's classes; CIFAR-10's for a 10-class .pth).
    #[arg(long, env = "FOVEA_LABELS")]
    pub labels: Option<PathBuf>,
    /// Network input side (default: the checkpoint's; 32 for a .pth).
    #[arg(long, env = "FOVEA_INPUT_SIZE")]
    pub input_size: Option<usize>,
    /// `int8`: static QDQ quantisation calibrated on --data training images.
    #[arg(long, env = "FOVEA_QUANTIZE")]
    pub quantize: Option<String>,
    /// Data directory for calibration (required with --quantize int8).
    #[arg(long, env = "FOVEA_DATA")]
    pub data: Option<PathBuf>,
    /// Training images used for calibration.
    #[arg(long, env = "FOVEA_CALIBRATION_IMAGES", default_value_t = 512)]
    pub calibration_images: usize,
}

/// Settings every command that runs libtorch needs before its first tensor.
fn set_threads(threads: Option<usize>) {
    crate::torch::keep_freed_tensor_memory();
    if let Some(n) = threads {
        tch::set_num_threads(n.max(1) as i32);
    }
}

/// A network and what is known about how it was trained.
struct Loaded {
    net: Network,
    classes: Vec<String>,
    normalize: Normalize,
    input_size: usize,
    state: Option<RunState>,
}

fn load_weights(path: &Path, device: tch::Device) -> anyhow::Result<Loaded> {
    match Init::from_path(path) {
        Init::Pth(path) => {
            let net = pth::import(&path, device)?;
            let classes = net.model.config.num_classes;
            let names = if classes == 10 {
                Labels::cifar10().as_slice().to_vec()
            } else {
                (0..classes).map(|i| i.to_string()).collect()
            };
            Ok(Loaded {
                input_size: 32,
                net,
                classes: names,
                normalize: Normalize::cifar10(),
                state: None,
            })
        }
        Init::Checkpoint(path) => {
            let dir = checkpoint::model_dir(&path);
            let (net, state) = checkpoint::load_model(&dir, device)?;
            Ok(Loaded {
                net,
                classes: state.classes.clone(),
                normalize: state.config.normalize,
                input_size: state.config.input_size,
                state: Some(state),
            })
        }
    }
}

/// Runs `fovea train`.
pub fn run_train(args: TrainArgs) -> anyhow::Result<()> {
    set_threads(args.threads);
    let input_size = args.input_size.unwrap_or(args.arch.native_size());
    let warmup = args.warmup_epochs.unwrap_or(match args.schedule {
        ScheduleKind::OneCycle => 0.3 * args.epochs as f64,
        ScheduleKind::Linear => 0.2 * args.epochs as f64,
        ScheduleKind::Cosine => 1.0,
        ScheduleKind::Constant => 0.0,
    });
    let config = TrainConfig {
        arch: args.arch,
        width: args.width,
        input_size,
        epochs: args.epochs,
        batch_size: args.batch_size,
        lr: args.lr,
        momentum: args.momentum,
        nesterov: !args.no_nesterov,
        weight_decay: args.weight_decay,
        label_smoothing: args.label_smoothing,
        schedule: args.schedule,
        warmup_epochs: warmup,
        augment: Augment {
            crop_padding: args.crop_padding,
            flip: !args.no_flip,
            cutout: args.cutout,
        },
        normalize: Normalize::cifar10(),
        seed: args.seed,
        val_size: args.val_size,
        patience: args.patience,
        freeze_backbone: args.freeze_backbone,
        max_steps_per_epoch: args.max_steps_per_epoch,
        eval_batch_size: 256,
        precision: args
            .precision
            .unwrap_or_else(|| Precision::default_for(args.device)),
    };
    let loading = std::time::Instant::now();
    let splits = data::load(&args.data, args.val_size, args.seed, [32, 32])?;
    eprintln!(
        "data: {} training, {} validation, {} test images of {} classes from {} ({:.1} s)",
        splits.train.len(),
        splits.val.len(),
        splits.test.as_ref().map_or(0, Dataset::len),
        splits.train.classes().len(),
        args.data.display(),
        loading.elapsed().as_secs_f64()
    );
    let options = RunOptions {
        out_dir: args.out.clone(),
        resume: args.resume,
        init: args.init.as_deref().map(Init::from_path),
        reset_head: args.reset_head,
        stop_after: args.stop_after,
        progress: !args.no_progress,
        log_epochs: true,
        device: args.device,
    };
    eprintln!(
        "training {} (width {}) on {:?} in {}, {} compute threads",
        config.arch,
        config.width,
        args.device,
        config.precision,
        tch::get_num_threads()
    );
    let outcome = train::run(&config, &splits, &options)?;
    let s = &outcome.state;
    eprintln!(
        "{} epochs done{}; best validation accuracy {:.2}% at epoch {} → {}",
        s.epochs_done.min(s.history.len()),
        if outcome.stopped_early {
            " (stopped early)"
        } else {
            ""
        },
        100.0 * s.best_val_acc,
        s.best_epoch,
        train::best_dir(&args.out).display()
    );
    Ok(())
}

/// Runs `fovea eval`.
pub fn run_eval(args: EvalArgs) -> anyhow::Result<()> {
    set_threads(args.threads);
    let loaded = load_weights(&args.checkpoint, args.device)?;
    let (val_size, seed) = match &loaded.state {
        Some(s) => (args.val_size.unwrap_or(s.config.val_size), s.config.seed),
        None => (args.val_size.unwrap_or(5000), 0),
    };
    let splits = data::load(&args.data, val_size, seed, [32, 32])?;
    let data = match args.split.as_str() {
        "test" => splits.test.context("the data directory has no test set")?,
        "val" => splits.val,
        "train" => splits.train,
        other => bail!("unknown split `{other}`; use test, val or train"),
    };
    if data.classes() != loaded.classes.as_slice() {
        bail!(
            "the data's classes {:?} differ from the model's {:?}",
            data.classes(),
            loaded.classes
        );
    }
    let run = |flip_tta| {
        evaluate(
            &loaded.net.model,
            &data,
            &loaded.normalize,
            [loaded.input_size; 2],
            args.batch_size,
            flip_tta,
        )
    };
    let plain = run(false)?;
    let (report, mut text) = if args.tta == "flip" {
        let flipped = run(true)?;
        let header = format!(
            "test-time augmentation: flip (mean logits of each image and its mirror): top-1 {:.2}% (without: {:.2}%)\n\n",
            100.0 * flipped.accuracy(),
            100.0 * plain.accuracy()
        );
        (flipped, header)
    } else {
        (plain, String::new())
    };
    text.push_str(&report.to_text());
    print!("{text}");
    if let Some(out) = &args.out {
        fs::create_dir_all(out).with_context(|| out.display().to_string())?;
        fs::write(out.join("report.txt"), &text)?;
        fs::write(out.join("confusion.svg"), confusion_heat_map(&report))?;
        fs::write(
            out.join("report.json"),
            serde_json::to_string_pretty(&report)?,
        )?;
        eprintln!(
            "wrote report.txt, confusion.svg, report.json to {}",
            out.display()
        );
    }
    Ok(())
}

/// Runs `fovea export`.
pub fn run_export(args: ExportArgs) -> anyhow::Result<()> {
    let loaded = load_weights(&args.checkpoint, tch::Device::Cpu)?;
    let input_size = args.input_size.unwrap_or(loaded.input_size);
    let classes = match &args.labels {
        Some(path) => Labels::load(path)?.as_slice().to_vec(),
        None => loaded.classes.clone(),
    };
    let num_classes = loaded.net.model.config.num_classes;
    if classes.len() != num_classes {
        bail!(
            "{} labels for a network with {num_classes} outputs",
            classes.len()
        );
    }
    let fp32 = to_onnx(&loaded.net.model, [input_size; 2])?;
    let (onnx, int8) = match args.quantize.as_deref() {
        None | Some("none") => (fp32, false),
        Some("int8") => {
            let dir = args
                .data
                .as_ref()
                .context("--quantize int8 needs --data for calibration")?;
            // Calibrate on the run's own training images, never validation or test.
            let (val_size, seed) = loaded
                .state
                .as_ref()
                .map_or((5000, 0), |s| (s.config.val_size, s.config.seed));
            let splits = data::load(dir, val_size, seed, [32, 32])?;
            let int8 = quantize_int8(
                &fp32,
                &splits.train,
                &loaded.normalize,
                [input_size; 2],
                args.calibration_images,
            )?;
            (int8, true)
        }
        Some(other) => bail!("unknown --quantize `{other}`; use int8"),
    };
    let version = match args.version {
        Some(v) => v,
        None => fovea_engine::next_version(&args.repo.join(&args.name)),
    };
    let description = format!(
        "{} ({} classes, {}×{} input{}), exported by fovea-train from {}",
        loaded.net.model.config.arch,
        num_classes,
        input_size,
        input_size,
        if int8 { ", int8 QDQ" } else { "" },
        args.checkpoint.display()
    );
    let config = serving_config(
        &args.name,
        input_size,
        num_classes,
        loaded.normalize.mean,
        loaded.normalize.std,
        description,
    );
    let entry = write_repository_entry(&args.repo, &args.name, version, &onnx, &config, &classes)?;
    eprintln!(
        "wrote {} ({} bytes) with config.toml and labels.txt in {}",
        entry.onnx.display(),
        onnx.len(),
        entry.model_dir.display()
    );
    Ok(())
}

//! The training loop: steps help, small sets are learnt, resume is exact,
//! early stopping and the run directory's files.

mod common;

use std::path::Path;

use fovea_train::Network;
use fovea_train::augment::{Augment, Normalize, to_tensors};
use fovea_train::data::{Dataset, Splits};
use fovea_train::model::{Arch, ResNetConfig};
use fovea_train::schedule::ScheduleKind;
use fovea_train::torch::Precision;
use fovea_train::train::{self, RunOptions, TrainConfig, Trainer};
use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};
use tch::Device;

/// `n` noisy 8×8 images of `classes` classes, each class a different tint.
fn toy_dataset(n: usize, classes: usize, seed: u64) -> Dataset {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut pixels = Vec::with_capacity(n * 192);
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let label = i % classes;
        for c in 0..3 {
            let base = if c == label % 3 { 170 } else { 60 } + if label >= 3 { 40 } else { 0 };
            for _ in 0..64 {
                pixels.push((base + rng.random_range(0..60)) as u8);
            }
        }
        labels.push(label as u32);
    }
    let names = (0..classes).map(|c| format!("class{c}")).collect();
    Dataset::new(names, [8, 8], pixels, labels).unwrap()
}

fn toy_config(epochs: usize) -> TrainConfig {
    TrainConfig {
        width: 4,
        input_size: 8,
        batch_size: 8,
        lr: 0.05,
        label_smoothing: 0.0,
        schedule: ScheduleKind::Cosine,
        warmup_epochs: 0.5,
        seed: 3,
        eval_batch_size: 16,
        ..TrainConfig::cifar(Arch::Resnet18Cifar, epochs)
    }
}

fn splits(train: usize, val: usize) -> Splits {
    Splits {
        train: toy_dataset(train, 4, 1),
        val: toy_dataset(val, 4, 2),
        test: None,
    }
}

fn options(out: &Path) -> RunOptions {
    RunOptions {
        out_dir: out.to_path_buf(),
        resume: false,
        init: None,
        reset_head: false,
        stop_after: None,
        progress: false,
        log_epochs: false,
        device: Device::Cpu,
    }
}

#[test]
fn one_step_changes_the_weights_and_lowers_the_loss_on_that_batch() {
    let config = toy_config(1);
    let shape = ResNetConfig::new(Arch::Resnet18Cifar, 4).with_width(4);
    let data = toy_dataset(16, 4, 0);
    let (images, labels) = to_tensors(&data, Device::Cpu);
    let images = Normalize::cifar10().apply(&images);
    let mut trainer = Trainer::new(Network::init(shape, Device::Cpu, 1), &config);
    let before = common::variable(&trainer.net, "conv1.weight");
    let first = trainer.step(&images, &labels, 0.05).unwrap();
    let after = common::variable(&trainer.net, "conv1.weight");
    assert!(
        common::max_abs_diff(&before, &after) > 0.0,
        "weights did not move"
    );
    // The second step's loss is measured before its update: after the first.
    let second = trainer.step(&images, &labels, 0.05).unwrap();
    assert!(
        second.loss < first.loss,
        "{} -> {}",
        first.loss,
        second.loss
    );
}

#[test]
fn a_small_network_overfits_a_small_training_set() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = toy_config(40);
    config.augment = Augment::none();
    config.lr = 0.1;
    let data = splits(32, 16);
    let splits = Splits {
        val: data.train.clone(),
        ..data
    };
    let outcome = train::run(&config, &splits, &options(dir.path())).unwrap();
    let last = outcome.state.history.last().unwrap();
    let first = &outcome.state.history[0];
    assert!(
        last.train_loss < first.train_loss / 4.0,
        "{first:?} -> {last:?}"
    );
    assert!(last.val_acc >= 0.95, "{last:?}");
}

#[test]
fn resuming_from_a_checkpoint_gives_the_same_weights_as_an_uninterrupted_run() {
    let config = toy_config(4);
    let data = splits(32, 8);
    let straight_dir = tempfile::tempdir().unwrap();
    let straight = train::run(&config, &data, &options(straight_dir.path())).unwrap();

    let split_dir = tempfile::tempdir().unwrap();
    let mut first_half = options(split_dir.path());
    first_half.stop_after = Some(2);
    let half = train::run(&config, &data, &first_half).unwrap();
    assert_eq!(half.state.epochs_done, 2);
    let mut second_half = options(split_dir.path());
    second_half.resume = true;
    let resumed = train::run(&config, &data, &second_half).unwrap();

    assert_eq!(resumed.state.global_step, straight.state.global_step);
    assert_eq!(resumed.state.history.len(), 4);
    for name in [
        "conv1.weight",
        "layer4.1.conv2.weight",
        "fc.bias",
        "bn1.running_mean",
    ] {
        let diff = common::max_abs_diff(
            &common::variable(&straight.net, name),
            &common::variable(&resumed.net, name),
        );
        assert!(diff <= 1e-6, "{name} differs by {diff}");
    }
    for (a, b) in straight.state.history.iter().zip(&resumed.state.history) {
        assert!((a.train_loss - b.train_loss).abs() < 1e-6, "{a:?} vs {b:?}");
    }
}

#[test]
fn resuming_with_different_settings_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = splits(16, 8);
    let mut first = options(dir.path());
    first.stop_after = Some(1);
    train::run(&toy_config(2), &data, &first).unwrap();
    let mut changed = toy_config(2);
    changed.lr = 0.5;
    let mut again = options(dir.path());
    again.resume = true;
    let message = train::run(&changed, &data, &again)
        .err()
        .unwrap()
        .to_string();
    assert!(message.contains("different settings"), "{message}");
}

#[test]
fn a_run_writes_metrics_curves_labels_and_the_best_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let outcome = train::run(&toy_config(2), &splits(16, 8), &options(dir.path())).unwrap();
    let csv = std::fs::read_to_string(dir.path().join("metrics.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "epoch,train_loss,train_acc,val_loss,val_acc,lr,seconds"
    );
    assert_eq!(lines.len(), 3);
    assert!(lines[2].starts_with("2,"));
    let svg = std::fs::read_to_string(dir.path().join("training.svg")).unwrap();
    assert_eq!(svg.matches("<polyline").count(), 4);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("labels.txt")).unwrap(),
        "class0\nclass1\nclass2\nclass3\n"
    );
    let best = fovea_train::checkpoint::load_state(&train::best_dir(dir.path())).unwrap();
    assert_eq!(best.best_epoch, outcome.state.best_epoch);
    assert!(
        train::checkpoint_dir(dir.path())
            .join(fovea_train::checkpoint::OPTIM_FILE)
            .is_file()
    );
}

#[test]
fn early_stopping_ends_the_run_once_patience_is_spent() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = toy_config(30);
    // A learning rate too small to move validation accuracy.
    config.lr = 1e-9;
    config.patience = Some(2);
    let outcome = train::run(&config, &splits(16, 8), &options(dir.path())).unwrap();
    assert!(outcome.stopped_early);
    assert_eq!(outcome.state.history.len(), 3);
    // A resumed run does not train past the stop.
    let mut again = options(dir.path());
    again.resume = true;
    let resumed = train::run(&config, &splits(16, 8), &again).unwrap();
    assert_eq!(resumed.state.history.len(), 3);
}

fn best_val_acc(outcome: &train::Outcome) -> f64 {
    outcome
        .state
        .history
        .iter()
        .map(|epoch| epoch.val_acc)
        .fold(0.0, f64::max)
}

/// Trains the toy network for one epoch at a learning rate too small to learn
/// much, and returns the run's best validation accuracy.
fn weak_model(out: &Path, data: &Splits) -> f64 {
    let mut config = toy_config(1);
    config.lr = 1e-3;
    let outcome = train::run(&config, data, &options(out)).unwrap();
    outcome.state.history[0].val_acc
}

#[test]
fn fine_tuning_a_weak_model_improves_its_validation_accuracy() {
    let dir = tempfile::tempdir().unwrap();
    let data = splits(64, 32);
    let weak = weak_model(&dir.path().join("weak"), &data);
    assert!(weak < 0.9, "the starting model is already good: {weak}");

    let mut tune = options(&dir.path().join("tuned"));
    tune.init = Some(train::Init::Checkpoint(train::best_dir(
        &dir.path().join("weak"),
    )));
    let mut config = toy_config(6);
    config.lr = 0.02;
    let tuned = train::run(&config, &data, &tune).unwrap();
    let best = best_val_acc(&tuned);
    eprintln!("fine-tuning: validation accuracy {weak} -> {best}");
    assert!(best > weak, "fine-tuning {weak} gave at best {best}");
    // Four classes: chance is 0.25.
    assert!(best >= 0.5, "{:?}", tuned.state.history);
}

#[test]
fn a_frozen_backbone_keeps_its_weights_while_the_head_learns() {
    let dir = tempfile::tempdir().unwrap();
    let data = splits(64, 32);
    let weak_dir = dir.path().join("weak");
    let weak = weak_model(&weak_dir, &data);

    let (start, _) =
        fovea_train::checkpoint::load_model(&train::best_dir(&weak_dir), Device::Cpu).unwrap();
    let mut tune = options(&dir.path().join("head"));
    tune.init = Some(train::Init::Checkpoint(train::best_dir(&weak_dir)));
    let mut config = toy_config(6);
    config.lr = 0.05;
    config.freeze_backbone = true;
    let tuned = train::run(&config, &data, &tune).unwrap();

    let unchanged = |before: Vec<f32>, after: Vec<f32>, what: &str| {
        assert_eq!(before, after, "{what} moved with a frozen backbone");
    };
    for name in [
        "conv1.weight",
        "layer3.0.bn1.running_mean",
        "layer4.1.bn2.weight",
    ] {
        unchanged(
            common::variable(&start, name),
            common::variable(&tuned.net, name),
            name,
        );
    }
    assert!(
        common::max_abs_diff(
            &common::variable(&start, "fc.weight"),
            &common::variable(&tuned.net, "fc.weight")
        ) > 0.0,
        "fc did not learn"
    );
    let best = best_val_acc(&tuned);
    eprintln!("head-only fine-tuning: validation accuracy {weak} -> {best}");
    assert!(
        best > weak,
        "head-only fine-tuning {weak} gave at best {best}"
    );
}

#[test]
fn bf16_mixed_precision_learns_as_well_as_fp32() {
    let data = splits(32, 16);
    let data = Splits {
        val: data.train.clone(),
        ..data
    };
    let best = |precision| {
        let dir = tempfile::tempdir().unwrap();
        let mut config = toy_config(20);
        config.augment = Augment::none();
        config.lr = 0.1;
        config.precision = precision;
        let outcome = train::run(&config, &data, &options(dir.path())).unwrap();
        best_val_acc(&outcome)
    };
    let (fp32, bf16) = (best(Precision::Fp32), best(Precision::Bf16));
    eprintln!("best accuracy on the training set: fp32 {fp32}, bf16 {bf16}");
    assert!(fp32 >= 0.9, "fp32 {fp32}");
    assert!(bf16 >= 0.9, "bf16 {bf16}");
}

#[test]
fn initialising_from_a_checkpoint_with_another_class_count_needs_reset_head() {
    let dir = tempfile::tempdir().unwrap();
    let four = dir.path().join("four");
    weak_model(&four, &splits(16, 8));
    let three = Splits {
        train: toy_dataset(24, 3, 1),
        val: toy_dataset(9, 3, 2),
        test: None,
    };
    let mut tune = options(&dir.path().join("three"));
    tune.init = Some(train::Init::Checkpoint(train::best_dir(&four)));
    let message = train::run(&toy_config(1), &three, &tune)
        .err()
        .unwrap()
        .to_string();
    assert!(message.contains("model.safetensors"), "{message}");
    assert!(message.contains("4 classes"), "{message}");
    tune.reset_head = true;
    let tuned = train::run(&toy_config(1), &three, &tune).unwrap();
    assert_eq!(tuned.state.model.num_classes, 3);
}

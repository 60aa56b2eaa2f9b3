//! Training throughput of each CPU backend this build has, on the same
//! network and batch: burn's `flex` always, `ndarray` with
//! `--features ndarray-bench`. Random 32×32 images (the cost of a step does
//! not depend on the pixels); two untimed warm-up steps, then `STEPS` timed.
//!
//! `cargo run --release -p fovea-train --example train_speed [--features ndarray-bench] -- [WIDTH] [STEPS] [BATCH]`

use std::time::Instant;

use burn::tensor::Device;
use fovea_train::augment::Batch;
use fovea_train::model::{Arch, ResNetConfig};
use fovea_train::train::{TrainConfig, Trainer};

fn steps_per_second(device: Device, width: usize, steps: usize, batch: usize) -> f64 {
    device.seed(0);
    let config = TrainConfig {
        width,
        batch_size: batch,
        ..TrainConfig::cifar(Arch::Resnet18Cifar, 1)
    };
    let model = ResNetConfig::new(Arch::Resnet18Cifar, 10)
        .with_width(width)
        .init(&device);
    let mut trainer = Trainer::new(model, &config, &device);
    let images = (0..batch * 3 * 32 * 32)
        .map(|i| ((i * 7919) % 255) as f32 / 127.5 - 1.0)
        .collect();
    let labels = (0..batch).map(|i| (i % 10) as i64).collect();
    let batch_data = Batch {
        images,
        labels,
        height: 32,
        width: 32,
    };
    for _ in 0..2 {
        trainer.step(&batch_data, 0.01);
    }
    let started = Instant::now();
    for _ in 0..steps {
        trainer.step(&batch_data, 0.01);
    }
    steps as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<usize>());
    let mut next = |default| args.next().and_then(Result::ok).unwrap_or(default);
    let (width, steps, batch) = (next(64), next(5), next(128));
    let mut backends: Vec<(&str, Device)> = vec![("flex", Device::flex().autodiff())];
    #[cfg(feature = "ndarray-bench")]
    #[allow(deprecated)]
    backends.push(("ndarray", Device::ndarray().autodiff()));
    for (name, device) in backends {
        let rate = steps_per_second(device, width, steps, batch);
        let images = rate * batch as f64;
        // 45,000 training images per CIFAR-10 epoch (5,000 held out), plus evaluation ignored.
        println!(
            "{name:8} width {width:3} batch {batch}: {images:7.1} img/s, {:.2} epochs/hour",
            images * 3600.0 / 45_000.0
        );
    }
}

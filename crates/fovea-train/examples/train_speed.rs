//! Training throughput of fovea's trainer: full training steps (forward,
//! backward, SGD update) of ResNet-18 (CIFAR stem) on random 32×32 batches
//! (the cost of a step does not depend on the pixels). Warm-up steps are not
//! timed. Prints one JSON line, the same shape as
//! `bench/baselines/train_pytorch.py`, which measures PyTorch on the same
//! network, batch and precision (`bench/train_speed.sh` runs both).
//!
//! `cargo run --release -p fovea-train --example train_speed -- [--precision fp32|bf16] [--batch 128] [--steps 10] [--warmup 3] [--width 64]`

use std::time::Instant;

use fovea_train::Network;
use fovea_train::model::{Arch, ResNetConfig};
use fovea_train::torch::Precision;
use fovea_train::train::{TrainConfig, Trainer};
use tch::{Device, Kind, Tensor};

fn main() -> anyhow::Result<()> {
    let mut precision = Precision::default_for(Device::Cpu);
    let (mut batch, mut steps, mut warmup, mut width) = (128i64, 10usize, 3usize, 64usize);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .ok_or_else(|| anyhow::anyhow!("{flag} needs a value"))?;
        match flag.as_str() {
            "--precision" => precision = value.parse().map_err(anyhow::Error::msg)?,
            "--batch" => batch = value.parse()?,
            "--steps" => steps = value.parse()?,
            "--warmup" => warmup = value.parse()?,
            "--width" => width = value.parse()?,
            other => anyhow::bail!("unknown flag {other}"),
        }
    }
    let config = TrainConfig {
        width,
        batch_size: batch as usize,
        precision,
        ..TrainConfig::cifar(Arch::Resnet18Cifar, 1)
    };
    let shape = ResNetConfig::new(Arch::Resnet18Cifar, 10).with_width(width);
    let mut trainer = Trainer::new(Network::init(shape, Device::Cpu, 0), &config);
    tch::manual_seed(1);
    let images = Tensor::randn([batch, 3, 32, 32], (Kind::Float, Device::Cpu));
    let labels = Tensor::randint(10, [batch], (Kind::Int64, Device::Cpu));
    for _ in 0..warmup {
        trainer.step(&images, &labels, 0.01)?;
    }
    let started = Instant::now();
    for _ in 0..steps {
        trainer.step(&images, &labels, 0.01)?;
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{{\"engine\": \"fovea (tch 0.24)\", \"precision\": \"{precision}\", \"batch\": {batch}, \"width\": {width}, \"steps\": {steps}, \"threads\": {}, \"img_per_s\": {:.2}}}",
        tch::get_num_threads(),
        (steps as f64 * batch as f64) / seconds
    );
    Ok(())
}

//! A stand-alone front end for the training commands while the `fovea`
//! binary wires them in: `cargo run -p fovea-train --example cli -- train --data DIR`.

use clap::{Parser, Subcommand};
use fovea_train::cli::{EvalArgs, ExportArgs, TrainArgs, run_eval, run_export, run_train};

#[derive(Parser)]
#[command(about = "fovea training commands")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train (or fine-tune, or resume) a ResNet-18.
    Train(TrainArgs),
    /// Evaluate a checkpoint: top-1, per-class precision/recall, confusion matrix.
    Eval(EvalArgs),
    /// Export a checkpoint to a model-repository entry.
    Export(ExportArgs),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Train(args) => run_train(args),
        Command::Eval(args) => run_eval(args),
        Command::Export(args) => run_export(args),
    }
}

//! The `fovea` command line: argument parsing and dispatch to the libraries.
//! `anyhow` lives here and nowhere else; every subcommand is a thin edge.

mod bench;
mod cli;
mod client;
mod doctor;
mod local;
mod models;
mod predict;
mod quantize;
mod serve;
mod stream_client;

use clap::Parser;

use crate::cli::{Cli, Command, LogFormat, ModelsCommand};

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,ort=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    // Training is synchronous compute with its own thread pool: it runs outside the async runtime.
    let command = match cli.command {
        #[cfg(feature = "train")]
        Command::Train(args) => return fovea_train::cli::run_train(args),
        #[cfg(feature = "train")]
        Command::Eval(args) => return fovea_train::cli::run_eval(args),
        #[cfg(feature = "train")]
        Command::Export(args) => return fovea_train::cli::run_export(args),
        // Calibration is synchronous compute too.
        Command::Quantize(args) => return quantize::run(args),
        Command::Doctor(args) => return doctor::run(&args),
        other => other,
    };
    if let Command::Serve(args) = &command {
        serve::bound_malloc_arenas(args.model.thread_budget());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match command {
            Command::Serve(args) => serve::run(*args).await,
            Command::Predict(args) => predict::run(args).await,
            Command::Models(ModelsCommand::List(args)) => models::list(&args),
            Command::Models(ModelsCommand::Reload(args)) => models::reload(&args).await,
            Command::Bench(args) => bench::run(args).await,
            Command::Quantize(_) | Command::Doctor(_) => Ok(()),
            #[cfg(feature = "train")]
            Command::Train(_) | Command::Eval(_) | Command::Export(_) => Ok(()),
        }
    })
}

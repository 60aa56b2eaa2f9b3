//! `fovea bench`: the load generator that measures a running server over any
//! of its protocols, and `--engine`, the in-process ceiling it is measured
//! against. Owns the flags; the work lives in the submodules.

mod engine;
mod load;
mod stream;
mod target;

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use fovea_engine::BackendChoice;

use crate::cli::Preset;

/// `fovea bench`
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Measure the in-process engine per batch size instead of a server.
    #[arg(long)]
    pub engine: bool,
    /// With --engine: the ONNX file. Otherwise: the served model's name
    /// (required by every protocol but `simple`, which defaults to the server's default).
    #[arg(long, env = "FOVEA_MODEL")]
    pub model: Option<String>,
    /// With --engine: the inference backend (auto, ort, tract).
    #[arg(long, default_value = "auto")]
    pub backend: BackendChoice,
    /// With --engine: batch sizes to measure.
    #[arg(long, value_delimiter = ',', default_value = "1,8")]
    pub batch_sizes: Vec<usize>,
    /// With --engine: intra-op threads; defaults to the available cores.
    #[arg(long)]
    pub threads: Option<usize>,
    /// With --engine: also measure this machine's sgemm peak (one thread and all).
    #[arg(long)]
    pub peak: bool,
    /// How long to measure (per batch size with --engine). Default 10 s, or
    /// until --requests have completed.
    #[arg(long, conflicts_with = "requests")]
    pub duration_secs: Option<f64>,
    /// Server base URL (for the gRPC protocols, the gRPC listener).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    #[command(flatten)]
    pub key: crate::client::ApiKeyArgs,
    /// Wire protocol.
    #[arg(long, value_enum, default_value_t = Protocol::Simple)]
    pub protocol: Protocol,
    /// The image every request carries.
    #[arg(long)]
    pub image: Option<PathBuf>,
    /// Send the image preprocessed here, as an f32 tensor (TF/V2 protocols only).
    #[arg(long)]
    pub tensor: bool,
    /// Preprocessing for --tensor.
    #[arg(long, value_enum, default_value_t = Preset::Imagenet)]
    pub preset: Preset,
    /// Simple protocol: send the image as multipart field `image` instead of a raw body.
    #[arg(long)]
    pub multipart: bool,
    /// Closed loop: workers sending back to back. Open loop: most requests in flight (default 256).
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Stop after this many measured requests.
    #[arg(long)]
    pub requests: Option<u64>,
    /// Open loop: issue requests at this rate (per second) whatever the
    /// completions; latency counts from each request's scheduled time.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Open loop: arrival process.
    #[arg(long, value_enum, default_value_t = Arrivals::Poisson)]
    pub arrivals: Arrivals,
    /// The model's input name (V2 and TF gRPC protocols); asked of the server when absent.
    #[arg(long)]
    pub input_name: Option<String>,
    /// Per-request timeout in seconds (a timed-out request counts as an error).
    #[arg(long, default_value_t = 30.0)]
    pub timeout_secs: f64,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Stream mode: this many WebSocket streams to /api/v1/stream, each
    /// sending --image at --fps for --duration-secs (cameras, not requests).
    #[arg(long, conflicts_with_all = ["engine", "rate", "concurrency", "requests"])]
    pub streams: Option<usize>,
    /// Stream mode: frames per second each stream sends.
    #[arg(long, default_value_t = 15.0)]
    pub fps: f64,
    /// Stream mode: ask for every frame to be answered (policy `all`)
    /// instead of the freshest (`latest`).
    #[arg(long)]
    pub all_frames: bool,
}

/// The wire protocols `fovea bench` can speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    /// POST /api/v1/predict (raw body or multipart).
    Simple,
    /// TF Serving REST: POST /v1/models/NAME:predict.
    TfRest,
    /// KServe V2 REST: POST /v2/models/NAME/infer (binary tensor extension for --tensor).
    V2Rest,
    /// KServe V2 gRPC: ModelInfer.
    V2Grpc,
    /// TF Serving gRPC: PredictionService/Predict.
    TfGrpc,
}

/// When open-loop requests are issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Arrivals {
    /// Exponential gaps (a Poisson process), like independent users.
    Poisson,
    /// A fixed gap of 1/rate.
    Fixed,
}

/// Runs `fovea bench`.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    if args.engine {
        // Inference is blocking compute: keep it off the async workers.
        tokio::task::spawn_blocking(move || engine::run(&args)).await?
    } else if let Some(streams) = args.streams {
        stream::run(&args, streams.max(1)).await
    } else {
        load::run(&args).await
    }
}

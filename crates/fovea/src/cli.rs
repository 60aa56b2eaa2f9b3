//! Every flag of every subcommand, with its `FOVEA_*` environment variable.
//! `train`, `eval`, `export` and `bench` join `Command` from their own crates.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::builder::TypedValueParser;
use clap::{Args, Parser, Subcommand, ValueEnum};
use fovea_core::{Labels, PreprocessConfig, defaults};
use fovea_engine::BackendChoice;

use crate::client::ApiKeyArgs;

/// fovea: real-time image classification.
#[derive(Debug, Parser)]
#[command(name = "fovea", version, about)]
pub struct Cli {
    /// Log format: human-readable text or one JSON object per line (for log shippers).
    #[arg(long, env = "FOVEA_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve models over HTTP (simple API, health, metrics, demo page).
    /// (Boxed: its many flags make it by far the largest variant.)
    Serve(Box<ServeArgs>),
    /// Classify images, through a running server or in-process with --local.
    Predict(PredictArgs),
    /// Inspect a model repository.
    #[command(subcommand)]
    Models(ModelsCommand),
    /// Load-test a server (any protocol, closed or open loop) or, with --engine, the raw engine.
    Bench(crate::bench::BenchArgs),
    /// Make a static int8 (QDQ) version of an fp32 model, calibrated on real images.
    Quantize(crate::quantize::QuantizeArgs),
    /// What this machine gives fovea: backends and their libraries, CPU features, thread budget, the repository's models.
    Doctor(RepositoryArgs),
    /// Train a ResNet-18 (CIFAR or torchvision stem) with checkpoints and resume.
    #[cfg(feature = "train")]
    Train(fovea_train::cli::TrainArgs),
    /// Evaluate a checkpoint or .pth: top-1, per-class precision/recall, confusion matrix.
    #[cfg(feature = "train")]
    Eval(fovea_train::cli::EvalArgs),
    /// Export a checkpoint or .pth into a model-repository entry (ONNX, config.toml, labels).
    #[cfg(feature = "train")]
    Export(fovea_train::cli::ExportArgs),
}

/// `fovea models ...`
#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// List each model: versions, input, preprocessing, labels, and whether its config is valid.
    List(RepositoryArgs),
    /// Make a running server rescan its repository now (new, changed and removed versions), and
    /// print its models afterwards; fails when a version could not be loaded.
    Reload(ReloadArgs),
}

/// `fovea models reload`
#[derive(Debug, Args)]
pub struct ReloadArgs {
    /// Server to ask (its HTTP address).
    #[arg(long, env = "FOVEA_SERVER", default_value = "http://127.0.0.1:8080")]
    pub server: String,
    #[command(flatten)]
    pub key: ApiKeyArgs,
    /// Print the server's JSON answer instead of a summary.
    #[arg(long)]
    pub json: bool,
}

/// A repository path on its own.
#[derive(Debug, Args)]
pub struct RepositoryArgs {
    /// Model repository directory.
    #[arg(long, env = "FOVEA_MODELS", default_value = "models")]
    pub models: PathBuf,
}

/// Preprocessing (and labels) for a bare ONNX file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Preset {
    /// Shorter side 256, centre crop 224, ImageNet mean/std.
    Imagenet,
    /// Squash to 32×32, CIFAR-10 mean/std, the ten CIFAR-10 labels.
    Cifar10,
}

impl Preset {
    /// The preprocessing this preset stands for.
    pub fn preprocess(self) -> PreprocessConfig {
        match self {
            Preset::Imagenet => PreprocessConfig::imagenet(),
            Preset::Cifar10 => PreprocessConfig::cifar10(),
        }
    }

    /// The labels the preset brings, if any.
    pub fn labels(self) -> Option<Labels> {
        match self {
            Preset::Imagenet => None,
            Preset::Cifar10 => Some(Labels::cifar10()),
        }
    }
}

/// Which models to load and how to run them (shared by `serve` and `predict --local`).
#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// Model repository directory (DESIGN.md §4).
    #[arg(long, env = "FOVEA_MODELS", default_value = "models")]
    pub models: PathBuf,
    /// Serve one ONNX file instead of a repository; the model is named after the file stem unless --model-name says otherwise.
    #[arg(long, env = "FOVEA_MODEL")]
    pub model: Option<PathBuf>,
    /// The name --model is served under (KServe's storage initializer always writes `model.onnx`; the InferenceService's name is what clients ask for).
    #[arg(long, env = "FOVEA_MODEL_NAME", requires = "model")]
    pub model_name: Option<String>,
    /// Preprocessing for --model; guessed from the input size when absent (32×32 → cifar10, else imagenet).
    #[arg(long, env = "FOVEA_PRESET", value_enum, requires = "model")]
    pub preset: Option<Preset>,
    /// Labels file (one per line) for --model; cifar10 brings its own.
    #[arg(long, env = "FOVEA_LABELS", requires = "model")]
    pub labels: Option<PathBuf>,
    /// Inference backend: auto (ONNX Runtime when its library loads, else tract), ort, tract.
    #[arg(long, env = "FOVEA_BACKEND", default_value = "auto")]
    pub backend: BackendChoice,
    /// The process's thread budget (default: the available cores): inference
    /// runs on this many intra-op threads, and `serve` decodes images on
    /// --decode-threads of them (default: half, at least one).
    #[arg(long, env = "FOVEA_THREADS", value_parser = clap::value_parser!(u16).range(1..).map(usize::from))]
    pub threads: Option<usize>,
    /// Largest batch handed to the backend (overrides every config.toml).
    #[arg(long, env = "FOVEA_MAX_BATCH_SIZE", value_parser = clap::value_parser!(u32).range(1..).map(|n| n as usize))]
    pub max_batch_size: Option<usize>,
    /// How long the first request of a batch waits for company, in µs (overrides every config.toml).
    #[arg(long, env = "FOVEA_MAX_QUEUE_DELAY_US")]
    pub max_queue_delay_us: Option<u64>,
    /// Requests admitted per model version, decoding or queued; beyond it 503 at once (overrides every config.toml).
    #[arg(long, env = "FOVEA_QUEUE_CAPACITY", value_parser = clap::value_parser!(u32).range(1..).map(|n| n as usize))]
    pub queue_capacity: Option<usize>,
    /// Deadline of a request from its arrival, in ms; past it 504 (overrides every config.toml).
    #[arg(long, env = "FOVEA_REQUEST_TIMEOUT_MS", value_parser = clap::value_parser!(u64).range(1..))]
    pub request_timeout_ms: Option<u64>,
    /// Copies of each model version serving its queue side by side, sharing
    /// --threads between them (overrides every config.toml's runtime.instances;
    /// default 1). More instances: more throughput under load, slower lone requests.
    #[arg(long, env = "FOVEA_INSTANCES", value_parser = clap::value_parser!(u32).range(1..).map(|n| n as usize))]
    pub instances: Option<usize>,
}

impl ModelArgs {
    /// `--threads`, or the available cores when it is not given.
    pub fn thread_budget(&self) -> usize {
        self.threads.unwrap_or_else(fovea_core::available_cores)
    }
}

/// `fovea serve`
#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// HTTP listen address.
    #[arg(long, env = "FOVEA_HTTP", default_value_t = SocketAddr::from((defaults::LISTEN_IP, defaults::HTTP_PORT)))]
    pub http: SocketAddr,
    /// gRPC listen address (TF Serving and KServe V2 services), or `off`.
    #[arg(long, env = "FOVEA_GRPC", default_value_t = GrpcAddr::At(SocketAddr::from((defaults::LISTEN_IP, defaults::GRPC_PORT))), value_parser = parse_grpc_addr)]
    pub grpc: GrpcAddr,
    /// Largest request body in bytes (also the largest encoded image).
    #[arg(long, env = "FOVEA_MAX_BODY_BYTES", default_value_t = defaults::MAX_BODY_BYTES)]
    pub max_body_bytes: usize,
    /// Largest image in pixels, checked from the header before decoding.
    #[arg(long, env = "FOVEA_MAX_PIXELS", default_value_t = defaults::MAX_PIXELS)]
    pub max_pixels: u64,
    /// Most images in one multipart batch request.
    #[arg(long, env = "FOVEA_MAX_IMAGES_PER_REQUEST", default_value_t = defaults::MAX_IMAGES_PER_REQUEST)]
    pub max_images_per_request: usize,
    /// Accept {"url": ...} requests. Off by default: the server would fetch on the client's behalf.
    #[arg(long, env = "FOVEA_ALLOW_URL_FETCH")]
    pub allow_url_fetch: bool,
    /// Let URL fetches reach loopback and private networks (tests, intranets). Link-local
    /// (cloud metadata) stays refused.
    #[arg(long, env = "FOVEA_ALLOW_PRIVATE_URLS")]
    pub allow_private_urls: bool,
    /// Total time for one URL fetch, redirects included.
    #[arg(long, env = "FOVEA_URL_TIMEOUT_MS", default_value_t = defaults::URL_TIMEOUT_MS)]
    pub url_timeout_ms: u64,
    /// Largest body a URL fetch may return.
    #[arg(long, env = "FOVEA_URL_MAX_BYTES", default_value_t = defaults::URL_MAX_BYTES)]
    pub url_max_bytes: usize,
    /// How long in-flight requests may run once SIGINT/SIGTERM arrives (a second signal stops at once).
    #[arg(long, env = "FOVEA_SHUTDOWN_TIMEOUT_SECS", default_value_t = defaults::SHUTDOWN_TIMEOUT_SECS)]
    pub shutdown_timeout_secs: u64,
    /// Re-scan the repository for new, changed or removed versions every N seconds (0 = off).
    #[arg(long, env = "FOVEA_POLL_INTERVAL_SECS", default_value_t = defaults::POLL_INTERVAL_SECS)]
    pub poll_interval_secs: u64,
    /// Images decoded and preprocessed at once (default: half of --threads, at least one).
    #[arg(long, env = "FOVEA_DECODE_THREADS", value_parser = clap::value_parser!(u16).range(1..).map(usize::from))]
    pub decode_threads: Option<usize>,
    /// Frame streams open at once (WebSocket /api/v1/stream and gRPC ModelStreamInfer together).
    #[arg(long, env = "FOVEA_MAX_STREAMS", default_value_t = defaults::MAX_STREAMS)]
    pub max_streams: usize,
    /// Largest frame of a stream in bytes (one encoded image, or one gRPC request).
    #[arg(long, env = "FOVEA_MAX_FRAME_BYTES", default_value_t = defaults::MAX_FRAME_BYTES)]
    pub max_frame_bytes: usize,
    /// A stream that receives nothing for this long is closed.
    #[arg(long, env = "FOVEA_STREAM_IDLE_TIMEOUT_SECS", default_value_t = defaults::STREAM_IDLE_TIMEOUT_SECS, value_parser = clap::value_parser!(u64).range(1..))]
    pub stream_idle_timeout_secs: u64,
    /// A stream is closed after this long, however busy.
    #[arg(long, env = "FOVEA_MAX_STREAM_DURATION_SECS", default_value_t = defaults::MAX_STREAM_DURATION_SECS, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_stream_duration_secs: u64,
    /// Frames of one stream in flight or waiting at once under the `all` policy (and gRPC streams).
    #[arg(long, env = "FOVEA_STREAM_WINDOW", default_value_t = defaults::STREAM_WINDOW, value_parser = clap::value_parser!(u32).range(1..).map(|n| n as usize))]
    pub stream_window: usize,
    /// API keys, one per line or `name:key` (the name is what logs and
    /// metrics show); `#` starts a comment. Every request then needs
    /// `Authorization: Bearer KEY` or `X-API-Key: KEY` (gRPC: `authorization`
    /// metadata). Reloaded on SIGHUP and when the file changes.
    #[arg(long, env = "FOVEA_API_KEYS_FILE")]
    pub api_keys_file: Option<PathBuf>,
    /// With --api-keys-file: let /metrics answer without a key.
    #[arg(long, env = "FOVEA_PUBLIC_METRICS")]
    pub public_metrics: bool,
    /// With --api-keys-file: let the demo page and /openapi.json answer without a key.
    #[arg(long, env = "FOVEA_PUBLIC_DEMO")]
    pub public_demo: bool,
    /// Requests per second per client (its key's name, or its address when
    /// keys are off); beyond it 429 with Retry-After. 0 = no limit.
    #[arg(long, env = "FOVEA_RATE_LIMIT", default_value_t = 0)]
    pub rate_limit: u32,
    /// Requests a client may make at once before --rate-limit applies.
    #[arg(long, env = "FOVEA_RATE_BURST", default_value_t = defaults::RATE_BURST, value_parser = clap::value_parser!(u32).range(1..))]
    pub rate_burst: u32,
    /// Proxies (addresses or CIDRs, comma-separated) whose X-Forwarded-For
    /// names the client, e.g. the nginx in front. Nobody else's is believed.
    #[arg(long, env = "FOVEA_TRUSTED_PROXIES", value_delimiter = ',', value_parser = parse_net)]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Requests (HTTP requests and gRPC calls) in flight at once, all clients
    /// together; beyond it 503 / UNAVAILABLE with Retry-After.
    #[arg(long, env = "FOVEA_MAX_CONCURRENT_REQUESTS", default_value_t = defaults::MAX_CONCURRENT_REQUESTS, value_parser = clap::value_parser!(u32).range(1..).map(|n| n as usize))]
    pub max_concurrent_requests: usize,
    /// Requests one client (its key's name, or its address when keys are
    /// off) may have in flight at once, so that one client cannot take every
    /// slot; beyond it 429 / RESOURCE_EXHAUSTED with Retry-After. 0 = no cap
    /// but --max-concurrent-requests.
    #[arg(long, env = "FOVEA_MAX_CONCURRENT_PER_CLIENT", default_value_t = 0)]
    pub max_concurrent_per_client: usize,
    /// Open connections per listener (HTTP and gRPC each); more wait to be accepted.
    #[arg(long, env = "FOVEA_MAX_CONNECTIONS", default_value_t = defaults::MAX_CONNECTIONS, value_parser = clap::value_parser!(u32).range(1..).map(|n| n as usize))]
    pub max_connections: usize,
    /// A request's headers must arrive within this many seconds; also how long
    /// an idle keep-alive connection is kept (slow-loris headers, idle floods).
    #[arg(long, env = "FOVEA_HEADER_READ_TIMEOUT_SECS", default_value_t = defaults::HEADER_READ_TIMEOUT_SECS, value_parser = clap::value_parser!(u64).range(1..))]
    pub header_read_timeout_secs: u64,
    /// A request's whole body must arrive within this many seconds (slow-loris bodies).
    #[arg(long, env = "FOVEA_BODY_READ_TIMEOUT_SECS", default_value_t = defaults::BODY_READ_TIMEOUT_SECS, value_parser = clap::value_parser!(u64).range(1..))]
    pub body_read_timeout_secs: u64,
    /// gRPC calls one HTTP/2 connection may have open at once (more wait in the client).
    #[arg(long, env = "FOVEA_GRPC_MAX_CONCURRENT_STREAMS", default_value_t = defaults::GRPC_MAX_CONCURRENT_STREAMS, value_parser = clap::value_parser!(u32).range(1..))]
    pub grpc_max_concurrent_streams: u32,
    /// TLS for HTTP and gRPC: this PEM certificate chain (the server's
    /// certificate first) with --tls-key. Reloaded on SIGHUP and when the
    /// files change; connections accepted after a reload get the new one.
    #[arg(long, env = "FOVEA_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "FOVEA_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// With --tls-cert: PEM CA certificates; every client (HTTP and gRPC)
    /// must then present a certificate one of them signed (mutual TLS).
    #[arg(long, env = "FOVEA_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
}

/// Where gRPC listens, if anywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrpcAddr {
    /// Listen here.
    At(SocketAddr),
    /// No gRPC server.
    Off,
}

impl std::fmt::Display for GrpcAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GrpcAddr::At(addr) => addr.fmt(f),
            GrpcAddr::Off => f.write_str("off"),
        }
    }
}

/// An address (a /32 or /128) or a CIDR network.
fn parse_net(text: &str) -> Result<ipnet::IpNet, String> {
    let text = text.trim();
    text.parse::<ipnet::IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("`{text}` is neither an IP address nor a CIDR network"))
}

fn parse_grpc_addr(text: &str) -> Result<GrpcAddr, String> {
    if text.eq_ignore_ascii_case("off") {
        return Ok(GrpcAddr::Off);
    }
    text.parse()
        .map(GrpcAddr::At)
        .map_err(|e| format!("expected ADDR:PORT or `off`: {e}"))
}

/// `fovea predict`
#[derive(Debug, Args)]
pub struct PredictArgs {
    /// Image files to classify.
    #[arg(required_unless_present_any = ["video", "frames"], conflicts_with_all = ["video", "frames"])]
    pub images: Vec<PathBuf>,
    /// Stream a video file (decoded by the system `ffmpeg`) to the server's
    /// /api/v1/stream at its own frame rate, printing each frame's answer.
    #[arg(long, conflicts_with_all = ["frames", "local"])]
    pub video: Option<PathBuf>,
    /// Stream the images of a directory, in name order, as video frames.
    #[arg(long, conflicts_with = "local")]
    pub frames: Option<PathBuf>,
    /// Frames per second to send (--frames: default 30; --video: resample to this rate).
    #[arg(long)]
    pub fps: Option<f64>,
    /// Send frames as fast as the socket takes them, ignoring the frame rate.
    #[arg(long, conflicts_with = "fps")]
    pub as_fast_as_possible: bool,
    /// Which frames the server answers when they come faster than it can:
    /// `latest` (the freshest, dropping the rest) or `all` (every one, slowing the sender).
    #[arg(long, value_enum, default_value_t = StreamPolicy::Latest)]
    pub policy: StreamPolicy,
    /// Server to ask.
    #[arg(long, env = "FOVEA_SERVER", default_value = "http://127.0.0.1:8080")]
    pub server: String,
    #[command(flatten)]
    pub key: ApiKeyArgs,
    /// Run in-process (engine and preprocessing here) instead of asking a server.
    #[arg(long)]
    pub local: bool,
    /// Classes to print per image.
    #[arg(long, env = "FOVEA_TOP_K", default_value_t = defaults::TOP_K)]
    pub top_k: usize,
    /// Print the JSON answers instead of a table.
    #[arg(long)]
    pub json: bool,
    /// `--model NAME` picks a served model (default: the server's default model);
    /// with --local, `--model FILE.onnx` runs one file and `--model NAME` picks
    /// a model from --models.
    #[command(flatten)]
    pub engine: ModelArgs,
}

/// `fovea predict --policy`: the server's stream freshness policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StreamPolicy {
    /// Answer the freshest frame; drop older waiting ones.
    Latest,
    /// Answer every frame, in order.
    All,
}

impl StreamPolicy {
    /// The name the server's `policy` parameter takes.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Latest => "latest",
            Self::All => "all",
        }
    }
}

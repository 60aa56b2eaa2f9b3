//! Test harness: a temporary model repository holding the engine's tiny
//! CIFAR-shaped model, a fovea server on 127.0.0.1:0 serving it in-process,
//! synthetic images in every supported format, and a reqwest client.

#![allow(dead_code)]

use std::io::Cursor;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use fovea_engine::{BackendChoice, Engine, EngineOptions, ModelSource};
use fovea_server::{AppState, ServerConfig, ServerError};
use image::{ImageFormat, Rgb, RgbImage};
use reqwest::StatusCode;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The engine engineer's tiny model: input `input` [N,3,32,32], output `logits` [N,10].
pub fn fixture_model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fovea-engine/tests/fixtures/tiny-cifar.onnx")
}

/// `../shared` next to the repository, when this machine has it (the reason
/// printed when not; a failure in CI, `fovea_testkit`).
pub fn shared_dir() -> Option<PathBuf> {
    fovea_testkit::shared("")
}

const CIFAR_LABELS: &str = "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n";

/// A repository with model `tiny` (versions 1 and 2, both served) and model
/// `tiny-b` (version 1), all the same graph.
pub fn make_repository() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    for (name, versions, policy) in [
        ("tiny", &[1u64, 2][..], "\"all\""),
        ("tiny-b", &[1][..], "{ latest = 1 }"),
    ] {
        let dir = root.path().join(name);
        for v in versions {
            std::fs::create_dir_all(dir.join(v.to_string())).unwrap();
            std::fs::copy(fixture_model(), dir.join(v.to_string()).join("model.onnx")).unwrap();
        }
        std::fs::write(dir.join("labels.txt"), CIFAR_LABELS).unwrap();
        std::fs::write(
            dir.join("config.toml"),
            format!(
                r#"version_policy = {policy}
[input]
name = "input"
shape = [3, 32, 32]
[output]
name = "logits"
labels = "labels.txt"
[preprocess]
resize = {{ exact = [32, 32] }}
mean = [0.4914, 0.4822, 0.4465]
std = [0.2470, 0.2435, 0.2616]
[batching]
max_batch_size = 8
max_queue_delay_us = 2000
"#
            ),
        )
        .unwrap();
    }
    root
}

/// Starts an engine over `repo` with `backend`.
pub async fn start_engine(repo: &Path, backend: BackendChoice) -> Engine {
    let options = EngineOptions {
        backend,
        threads: 1,
        poll_interval: None,
        ..EngineOptions::default()
    };
    let engine = Engine::start(ModelSource::Repository(repo.to_path_buf()), options)
        .await
        .unwrap();
    assert!(engine.is_ready(), "statuses: {:?}", engine.statuses());
    engine
}

/// An engine serving `gate`'s backend as the CIFAR-shaped model `gated`,
/// 10 classes with the CIFAR labels; the gate is left for the test to hold.
pub async fn start_gated_engine(gate: &fovea_testkit::Gate) -> Engine {
    let mut config = fovea_core::ModelConfig::image_classifier(
        "input",
        "logits",
        fovea_core::PreprocessConfig::cifar10(),
    );
    config.name = Some("gated".into());
    let source = ModelSource::Backend {
        config,
        labels: fovea_core::Labels::cifar10(),
        factory: gate.factory(),
    };
    let engine = Engine::start(source, EngineOptions::default())
        .await
        .unwrap();
    assert!(engine.is_ready(), "statuses: {:?}", engine.statuses());
    engine
}

/// A reqwest client (reqwest is built without a default TLS provider).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .tls_backend_preconfigured(fovea_server::tls_client_config().unwrap())
        .build()
        .unwrap()
}

/// A fovea server running in this test's runtime.
pub struct TestServer {
    pub addr: SocketAddr,
    pub base: String,
    pub state: AppState,
    pub client: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    /// Fires when the server has taken the shutdown signal.
    shutdown_begun: Option<oneshot::Receiver<()>>,
    pub task: Option<JoinHandle<Result<(), ServerError>>>,
    _repo: Option<tempfile::TempDir>,
}

impl TestServer {
    /// Serves `state` on 127.0.0.1:0.
    pub async fn serve(
        state: AppState,
        repo: Option<tempfile::TempDir>,
        shutdown_timeout: Duration,
    ) -> Self {
        let listener = fovea_server::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let (begun_tx, begun_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(fovea_server::serve_on(
            listener,
            state.clone(),
            shutdown_timeout,
            async move {
                let _ = rx.await;
                let _ = begun_tx.send(());
            },
        ));
        Self {
            addr,
            base: format!("http://{addr}"),
            state,
            client: client(),
            shutdown: Some(tx),
            shutdown_begun: Some(begun_rx),
            task: Some(task),
            _repo: repo,
        }
    }

    /// A tract-backed server over a fresh repository, with `configure` applied.
    pub async fn start(configure: impl FnOnce(&mut ServerConfig)) -> Self {
        Self::start_with(BackendChoice::Tract, configure).await
    }

    /// As `start`, with the given backend.
    pub async fn start_with(
        backend: BackendChoice,
        configure: impl FnOnce(&mut ServerConfig),
    ) -> Self {
        // Before the engine, as `fovea serve` does: versions register their metrics when they load.
        let metrics = fovea_server::telemetry::install_metrics().unwrap();
        let repo = make_repository();
        let engine = start_engine(repo.path(), backend).await;
        let mut config = ServerConfig::default();
        configure(&mut config);
        let state = AppState::with_engine(engine, &config)
            .unwrap()
            .with_metrics(metrics);
        Self::serve(state, Some(repo), config.shutdown_timeout).await
    }

    /// A server over `gate`'s backend (`start_gated_engine`), with
    /// `configure` applied and metrics installed; the gate already holds
    /// every batch, so the test decides when each one finishes.
    pub async fn start_gated(
        gate: &fovea_testkit::Gate,
        configure: impl FnOnce(&mut ServerConfig),
    ) -> Self {
        let metrics = fovea_server::telemetry::install_metrics().unwrap();
        let engine = start_gated_engine(gate).await;
        gate.hold();
        let mut config = ServerConfig::default();
        configure(&mut config);
        let state = AppState::with_engine(engine, &config)
            .unwrap()
            .with_metrics(metrics);
        Self::serve(state, None, config.shutdown_timeout).await
    }

    /// Serves gRPC (both services) over this server's state on
    /// 127.0.0.1:0, until the test ends; returns its address.
    pub async fn serve_grpc(&self) -> SocketAddr {
        let listener = fovea_server::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(fovea_server::serve_grpc_on(
            listener,
            self.state.clone(),
            Duration::from_secs(1),
            std::future::pending(),
        ));
        addr
    }

    /// As `serve_grpc`, and returns a plain-text channel to it.
    pub async fn grpc(&self) -> tonic::transport::Channel {
        let addr = self.serve_grpc().await;
        tonic::transport::Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    /// The Prometheus exposition text of `/metrics`.
    pub async fn scrape_metrics(&self) -> String {
        self.client
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Begins graceful shutdown.
    pub fn begin_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Begins graceful shutdown and returns once the server has taken the
    /// signal: from then on it accepts no connection and drains the others.
    pub async fn shut_down(&mut self) {
        self.begin_shutdown();
        if let Some(begun) = self.shutdown_begun.take() {
            let _ = begun.await;
        }
    }

    /// POSTs `body` with `content_type` to /api/v1/predict{query}.
    pub async fn post(
        &self,
        query: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> Reply {
        let response = self
            .client
            .post(self.url(&format!("/api/v1/predict{query}")))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        Reply::read(response).await
    }

    /// POSTs a multipart form with one `image` part per entry.
    pub async fn post_images(&self, query: &str, images: &[Vec<u8>]) -> Reply {
        let mut form = reqwest::multipart::Form::new();
        for (i, bytes) in images.iter().enumerate() {
            form = form.part(
                "image",
                reqwest::multipart::Part::bytes(bytes.clone()).file_name(format!("{i}.png")),
            );
        }
        let response = self
            .client
            .post(self.url(&format!("/api/v1/predict{query}")))
            .multipart(form)
            .send()
            .await
            .unwrap();
        Reply::read(response).await
    }

    /// POSTs a JSON body.
    pub async fn post_json(&self, body: &Value) -> Reply {
        self.post("", "application/json", serde_json::to_vec(body).unwrap())
            .await
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.begin_shutdown();
    }
}

/// Status, headers and parsed JSON body of an answer.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Reply {
    pub async fn read(response: reqwest::Response) -> Self {
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.unwrap();
        let body = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!(
                "{status}: body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&bytes)
            )
        });
        Self {
            status,
            headers,
            body,
        }
    }

    /// The `error.code` of an error answer.
    pub fn code(&self) -> &str {
        self.body["error"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("not an error body: {}", self.body))
    }

    /// Asserts the status and the JSON error shape, returning the code.
    pub fn expect_error(&self, status: u16) -> &str {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.body);
        assert!(
            self.body["error"]["message"].is_string(),
            "body: {}",
            self.body
        );
        self.code()
    }
}

/// A deterministic test picture, different for each `seed`.
pub fn picture(seed: u32, width: u32, height: u32) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| {
        let s = seed.wrapping_mul(73);
        Rgb([
            ((x * 255 / width.max(1)) ^ s) as u8,
            ((y * 255 / height.max(1)).wrapping_add(s * 3)) as u8,
            ((x + y + s * 11) % 256) as u8,
        ])
    })
}

/// `image` encoded as `format`.
pub fn encode(image: &RgbImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(image.clone())
        .write_to(&mut out, format)
        .unwrap();
    out.into_inner()
}

/// A PNG of the `seed` picture.
pub fn png(seed: u32) -> Vec<u8> {
    encode(&picture(seed, 48, 40), ImageFormat::Png)
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut chunk = (data.len() as u32).to_be_bytes().to_vec();
    chunk.extend_from_slice(kind);
    chunk.extend_from_slice(data);
    let mut crc_input = kind.to_vec();
    crc_input.extend_from_slice(data);
    chunk.extend_from_slice(&crc32(&crc_input).to_be_bytes());
    chunk
}

/// A well-formed PNG header claiming `width × height` RGB pixels, followed by
/// a tiny IDAT and IEND: decoding it for real would need width×height×3 bytes.
pub fn png_header_only(width: u32, height: u32) -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = width.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    png.extend(png_chunk(b"IHDR", &ihdr));
    png.extend(png_chunk(
        b"IDAT",
        &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    ));
    png.extend(png_chunk(b"IEND", &[]));
    png
}

/// The scores of an answer's predictions.
pub fn scores(answer: &Value) -> Vec<f64> {
    answer["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["score"].as_f64().unwrap())
        .collect()
}

/// Asserts two answers name the same classes with the same scores (within
/// float noise from batching differently).
pub fn assert_same_answer(a: &Value, b: &Value) {
    assert_eq!(a["class"], b["class"], "{a} vs {b}");
    let labels = |v: &Value| -> Vec<Value> {
        v["predictions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["index"].clone())
            .collect()
    };
    assert_eq!(labels(a), labels(b), "{a} vs {b}");
    for (x, y) in scores(a).iter().zip(scores(b)) {
        assert!((x - y).abs() < 1e-4, "{a} vs {b}");
    }
}

//! Hot reload under load, over real sockets on loopback: clients loop
//! requests on every protocol (simple API, TF Serving REST and gRPC, KServe
//! V2 REST and gRPC) while version 2 of their model is added to the
//! repository and version 1 removed from it. The versions run on gated
//! backends (fovea-testkit's `GatedRepository`), so the test holds a batch
//! of version 1 in flight, and a URL-fetching request admitted to it, across
//! its removal; no request fails, answers move to version 2, and version 1
//! unloads only once what it took is answered.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use common::{Reply, TestServer, client, png};
use fovea_core::Tensor;
use fovea_engine::{Engine, EngineOptions, ModelState};
use fovea_proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use fovea_proto::inference::model_infer_request::InferInputTensor;
use fovea_proto::inference::{InferTensorContents, ModelInferRequest};
use fovea_proto::tensorflow::serving::model_spec::VersionChoice;
use fovea_proto::tensorflow::serving::prediction_service_client::PredictionServiceClient;
use fovea_proto::tensorflow::serving::{ModelSpec, PredictRequest};
use fovea_proto::{BytesTensor, TensorValue, binary, tf};
use fovea_server::{AppState, ServerConfig};
use fovea_testkit::{Gate, GatedRepository};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tonic::transport::Channel;

const MODEL: &str = "gated";

/// The five ways in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Protocol {
    Simple,
    TfRest,
    TfGrpc,
    KserveRest,
    KserveGrpc,
}

impl Protocol {
    const ALL: [Protocol; 5] = [
        Protocol::Simple,
        Protocol::TfRest,
        Protocol::TfGrpc,
        Protocol::KserveRest,
        Protocol::KserveGrpc,
    ];

    /// TF Serving's REST answer names no version; every other one does.
    fn names_version(self) -> bool {
        self != Protocol::TfRest
    }
}

/// One answered request of a load client.
#[derive(Debug)]
struct Outcome {
    protocol: Protocol,
    client: usize,
    /// The version that answered (`None` where the protocol does not say),
    /// or why the request failed.
    answer: Result<Option<u64>, String>,
}

/// What a load client needs to send its protocol's requests.
#[derive(Clone)]
struct Target {
    base: String,
    http: reqwest::Client,
    grpc: Channel,
}

fn tensor(seed: usize) -> Tensor {
    Tensor::new(
        vec![1, 3, 32, 32],
        fovea_testkit::tiny_cifar_values(1, seed),
    )
    .unwrap()
}

impl Target {
    /// Sends one request of `protocol`; the version that answered, if it says.
    async fn send(&self, protocol: Protocol, seed: usize) -> Result<Option<u64>, String> {
        match protocol {
            Protocol::Simple => {
                let reply = self
                    .post(&format!("/api/v1/predict?model={MODEL}"), png(seed as u32))
                    .await?;
                Ok(reply.body["version"].as_u64())
            }
            Protocol::TfRest => {
                let b64 = base64::engine::general_purpose::STANDARD.encode(png(seed as u32));
                let body = json!({"instances": [{"b64": b64}]}).to_string();
                self.post(&format!("/v1/models/{MODEL}:predict"), body)
                    .await?;
                Ok(None)
            }
            Protocol::KserveRest => {
                let inputs = [("input".to_string(), TensorValue::F32(tensor(seed)))];
                let encoded = binary::encode_infer_request(&inputs, &[], true);
                let response = self
                    .http
                    .post(format!("{}/v2/models/{MODEL}/infer", self.base))
                    .header(
                        binary::HEADER_LENGTH_HEADER,
                        encoded.header_length.unwrap_or_default().to_string(),
                    )
                    .body(encoded.body)
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                let reply = Reply::read(response).await;
                if reply.status != 200 {
                    return Err(format!("{}: {}", reply.status, reply.body));
                }
                Ok(reply.body["model_version"]
                    .as_str()
                    .and_then(|v| v.parse().ok()))
            }
            Protocol::KserveGrpc => {
                let mut client = GrpcInferenceServiceClient::new(self.grpc.clone());
                let request = ModelInferRequest {
                    model_name: MODEL.into(),
                    inputs: vec![InferInputTensor {
                        name: "input".into(),
                        datatype: "BYTES".into(),
                        shape: vec![1],
                        contents: Some(InferTensorContents {
                            bytes_contents: vec![Bytes::from(png(seed as u32))],
                            ..Default::default()
                        }),
                        ..Default::default()
                    }],
                    ..Default::default()
                };
                let answer = client
                    .model_infer(request)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(answer.into_inner().model_version.parse().ok())
            }
            Protocol::TfGrpc => {
                let mut client = PredictionServiceClient::new(self.grpc.clone());
                let input = if seed.is_multiple_of(2) {
                    tf::tensor_to_proto(&tensor(seed))
                } else {
                    tf::bytes_to_proto(&BytesTensor {
                        shape: vec![1],
                        items: vec![Bytes::from(png(seed as u32))],
                    })
                };
                let request = PredictRequest {
                    model_spec: Some(ModelSpec {
                        name: MODEL.into(),
                        ..Default::default()
                    }),
                    inputs: HashMap::from([("input".to_string(), input)]),
                    output_filter: vec![],
                };
                let answer = client.predict(request).await.map_err(|e| e.to_string())?;
                Ok(
                    match answer
                        .into_inner()
                        .model_spec
                        .and_then(|s| s.version_choice)
                    {
                        Some(VersionChoice::Version(v)) => Some(v as u64),
                        _ => None,
                    },
                )
            }
        }
    }

    async fn post(&self, path: &str, body: impl Into<reqwest::Body>) -> Result<Reply, String> {
        let content_type = if path.starts_with("/api/") {
            "image/png"
        } else {
            "application/json"
        };
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let reply = Reply::read(response).await;
        if reply.status != 200 {
            return Err(format!("{}: {}", reply.status, reply.body));
        }
        Ok(reply)
    }
}

/// Starts `per_protocol` clients on every protocol, each looping requests
/// until `stop` is set and reporting each answer.
fn start_load(
    target: &Target,
    per_protocol: usize,
    stop: &Arc<AtomicBool>,
) -> (
    mpsc::UnboundedReceiver<Outcome>,
    Vec<tokio::task::JoinHandle<()>>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut tasks = Vec::new();
    for (index, protocol) in Protocol::ALL
        .into_iter()
        .flat_map(|p| std::iter::repeat_n(p, per_protocol))
        .enumerate()
    {
        let (target, stop, tx) = (target.clone(), stop.clone(), tx.clone());
        tasks.push(tokio::spawn(async move {
            let mut seed = index * 1000;
            while !stop.load(Ordering::Acquire) {
                seed += 1;
                let answer = target.send(protocol, seed).await;
                let outcome = Outcome {
                    protocol,
                    client: index,
                    answer,
                };
                if tx.send(outcome).is_err() {
                    return;
                }
            }
        }));
    }
    (rx, tasks)
}

/// Every outcome seen so far, read from the clients as they answer.
struct Outcomes {
    receiver: mpsc::UnboundedReceiver<Outcome>,
    seen: Vec<Outcome>,
}

impl Outcomes {
    /// Reads answers until every protocol that names versions has been
    /// answered by `version` (counting answers from `since` on), and every
    /// other protocol answered at all.
    async fn until_every_protocol_answers(&mut self, since: usize, version: u64) {
        let done = |seen: &[Outcome]| {
            Protocol::ALL.iter().all(|protocol| {
                seen[since.min(seen.len())..].iter().any(|o| {
                    o.protocol == *protocol
                        && match o.answer {
                            Ok(Some(v)) => v == version,
                            Ok(None) => !protocol.names_version(),
                            Err(_) => false,
                        }
                })
            })
        };
        // A generous bound: the clients answer within milliseconds here.
        let bound = tokio::time::sleep(Duration::from_secs(60));
        tokio::pin!(bound);
        while !done(&self.seen) {
            tokio::select! {
                outcome = self.receiver.recv() => match outcome {
                    Some(outcome) => self.seen.push(outcome),
                    None => panic!("the load clients stopped: {:?}", self.failures()),
                },
                () = &mut bound => panic!(
                    "not every protocol was answered by version {version}: {:?}",
                    self.summary()
                ),
            }
        }
    }

    fn failures(&self) -> Vec<&Outcome> {
        self.seen.iter().filter(|o| o.answer.is_err()).collect()
    }

    /// Answers per protocol and version.
    fn summary(&self) -> BTreeMap<(Protocol, Option<u64>), usize> {
        let mut counts = BTreeMap::new();
        for outcome in &self.seen {
            if let Ok(version) = outcome.answer {
                *counts.entry((outcome.protocol, version)).or_default() += 1;
            }
        }
        counts
    }
}

/// An upstream for one URL fetch, which answers only when the test says:
/// returns its address, a signal that the fetch has arrived, and the
/// release that lets the answer (a PNG) go.
async fn held_upstream() -> (SocketAddr, oneshot::Receiver<()>, oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (arrived_tx, arrived_rx) = oneshot::channel();
    let (release_tx, release_rx) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut request = Vec::new();
        let mut buffer = [0u8; 1024];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = socket.read(&mut buffer).await.unwrap();
            assert!(n > 0, "the fetch ended before its request was read");
            request.extend_from_slice(&buffer[..n]);
        }
        let _ = arrived_tx.send(());
        let _ = release_rx.await;
        let image = png(77);
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: image/png\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            image.len()
        );
        socket.write_all(head.as_bytes()).await.unwrap();
        socket.write_all(&image).await.unwrap();
    });
    (addr, arrived_rx, release_tx)
}

fn state_of(engine: &Engine, version: u64) -> Option<ModelState> {
    engine
        .statuses()
        .into_iter()
        .find(|s| s.name == MODEL && s.version == version)
        .map(|s| s.state)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_replaced_under_load_on_every_protocol_fails_no_request() {
    let root = tempfile::tempdir().unwrap();
    // Held batches must not expire while the test holds them.
    let repo = GatedRepository::new(
        root.path(),
        MODEL,
        "\"all\"",
        "max_batch_size = 8\ntimeout_ms = 120000",
    );
    let (mut v1, v2) = (Gate::new(&[3, 32, 32], 10), Gate::new(&[3, 32, 32], 10));
    repo.add_version(1, &v1);
    let options = EngineOptions {
        threads: 1,
        ..EngineOptions::default()
    };
    let engine = Engine::start(repo.source(), options).await.unwrap();
    assert!(engine.is_ready(), "{:?}", engine.statuses());
    let mut config = ServerConfig::default();
    config.url_fetch.enabled = true;
    config.url_fetch.allow_private = true;
    let state = AppState::with_engine(engine.clone(), &config).unwrap();
    let server = TestServer::serve(state, None, config.shutdown_timeout).await;
    let target = Target {
        base: server.base.clone(),
        http: client(),
        grpc: server.grpc().await,
    };

    // Load on every protocol, answered by version 1.
    let stop = Arc::new(AtomicBool::new(false));
    let (receiver, clients) = start_load(&target, 2, &stop);
    let mut outcomes = Outcomes {
        receiver,
        seen: Vec::new(),
    };
    outcomes.until_every_protocol_answers(0, 1).await;

    // A batch of version 1 held in flight, the clients' next requests queued
    // behind it, and a request admitted to version 1 still fetching its image.
    v1.hold();
    v1.started().await;
    let (upstream, fetching, release_fetch) = held_upstream().await;
    let fetched = tokio::spawn({
        let target = target.clone();
        async move {
            let body = json!({ "url": format!("http://{upstream}/held.png") });
            let response = target
                .http
                .post(format!("{}/api/v1/predict?model={MODEL}", target.base))
                .json(&body)
                .send()
                .await
                .unwrap();
            Reply::read(response).await
        }
    });
    fetching.await.unwrap();

    // Version 2 joins and takes every new request; then version 1 leaves,
    // through the operator's endpoint, while its batch is still running.
    repo.add_version(2, &v2);
    engine.reload().await;
    assert_eq!(engine.model(MODEL, None).unwrap().version(), 2);
    repo.remove_version(1);
    let listing = Reply::read(
        server
            .client
            .post(server.url("/api/v1/models/reload"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(listing.status, 200, "{}", listing.body);
    assert_eq!(
        listing.body["models"][0]["versions"],
        json!([{"version": 1, "state": "unloading"}, {"version": 2, "state": "available"}]),
    );
    assert_eq!(v1.instances(), 1, "version 1 unloaded under its batch");

    // The fetch completes: its request goes to the version that admitted it.
    release_fetch.send(()).unwrap();
    let since = outcomes.seen.len();
    v1.open();
    let fetched = fetched.await.unwrap();
    assert_eq!(fetched.status, 200, "{}", fetched.body);
    assert_eq!(fetched.body["version"], 1);
    outcomes.until_every_protocol_answers(since, 2).await;

    // Version 1 unloads once everything it took is answered. Its drain is
    // the engine's background task: poll it, with a generous bound.
    let until = Instant::now() + Duration::from_secs(60);
    while state_of(&engine, 1).is_some() || v1.instances() > 0 {
        assert!(
            Instant::now() < until,
            "version 1 never unloaded: {:?}",
            engine.statuses()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    stop.store(true, Ordering::Release);
    for client in clients {
        client.await.unwrap();
    }
    while let Ok(outcome) = outcomes.receiver.try_recv() {
        outcomes.seen.push(outcome);
    }
    assert!(
        outcomes.failures().is_empty(),
        "failed requests: {:?}",
        outcomes.failures()
    );
    // Each client moved from version 1 to version 2 once, never back.
    let mut last: HashMap<usize, u64> = HashMap::new();
    for outcome in &outcomes.seen {
        if let Ok(Some(version)) = outcome.answer {
            let before = last.insert(outcome.client, version).unwrap_or(1);
            assert!(
                version >= before,
                "client {} went back from version {before} to {version}",
                outcome.client
            );
        }
    }
    eprintln!("answers: {:?}", outcomes.summary());
}

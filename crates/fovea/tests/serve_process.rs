//! `fovea serve` as an operator runs it: the built binary in a process of
//! its own (the tiny model on tract, JSON logs read from its stderr),
//! stopped by real signals, reloaded by `fovea models reload`.
//!
//! To have requests in flight when the signal arrives without relying on
//! timing, the test holds them itself, at points where the server has
//! verifiably accepted them: an HTTP upload sent with `Expect:
//! 100-continue`, whose body goes only after the server's `100 Continue`
//! (the handler is reading it); a gRPC call whose message is sent in two
//! parts on a raw HTTP/2 connection, the second after a PING the server has
//! answered (frames are read in order, so it has the call's headers); a
//! request whose image is a URL the test's own upstream answers when told.
//! A slow model would need `../shared` and guesswork about how slow is
//! slow enough on a loaded machine; these hold as long as the test wants.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{fixture_model, make_repository, png};
use fovea_proto::inference::model_infer_request::InferInputTensor;
use fovea_proto::inference::{InferTensorContents, ModelInferRequest, ModelInferResponse};
use fovea_proto::tensorflow::serving::model_spec::VersionChoice;
use fovea_proto::tensorflow::serving::{ModelSpec, PredictRequest, PredictResponse};
use fovea_proto::{BytesTensor, tf};
use prost::Message;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot};

/// Bound on anything the test waits for: generous, as a loaded CI machine
/// may be slow; reached only when the awaited thing never happens.
const PATIENCE: Duration = Duration::from_secs(60);

/// A running `fovea serve`, killed if the test ends before it exits.
struct Served {
    child: Child,
    http: SocketAddr,
    grpc: SocketAddr,
    /// Each log line's message as it is printed.
    messages: mpsc::UnboundedReceiver<String>,
    /// The messages read from `messages` so far.
    read: Vec<String>,
    /// Every log line so far, for failure reports and later checks.
    log: Arc<Mutex<Vec<String>>>,
    _repo: tempfile::TempDir,
}

impl Served {
    /// Starts `fovea serve` over a fresh `make_repository()` on free
    /// loopback ports, with `args` added, and returns once it serves.
    async fn start(args: &[&str]) -> Self {
        let repo = make_repository();
        let mut child = Command::new(env!("CARGO_BIN_EXE_fovea"))
            .args(["--log-format", "json", "serve", "--models"])
            .arg(repo.path())
            .args(["--backend", "tract", "--threads", "1"])
            .args(["--http", "127.0.0.1:0", "--grpc", "127.0.0.1:0"])
            .args(["--poll-interval-secs", "0"])
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, messages) = mpsc::unbounded_channel();
        let log = Arc::new(Mutex::new(Vec::new()));
        tokio::spawn({
            let log = log.clone();
            async move {
                let mut lines = BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let message = serde_json::from_str::<Value>(&line)
                        .ok()
                        .and_then(|v| v["fields"]["message"].as_str().map(str::to_owned))
                        .unwrap_or_else(|| line.clone());
                    log.lock().unwrap().push(line);
                    let _ = tx.send(message);
                }
            }
        });
        let mut served = Self {
            child,
            http: SocketAddr::from(([0, 0, 0, 0], 0)),
            grpc: SocketAddr::from(([0, 0, 0, 0], 0)),
            messages,
            read: Vec::new(),
            log,
            _repo: repo,
        };
        let http = served.wait_for_log("listening on http://").await;
        served.http = http["listening on http://".len()..].parse().unwrap();
        let grpc = served.wait_for_log("gRPC listening on ").await;
        served.grpc = grpc["gRPC listening on ".len()..].parse().unwrap();
        served.wait_for_log("serving on").await;
        served
    }

    fn repository(&self) -> &Path {
        self._repo.path()
    }

    /// The first logged message that contains `needle`, once it is logged.
    async fn wait_for_log(&mut self, needle: &str) -> String {
        if let Some(message) = self.read.iter().find(|m| m.contains(needle)) {
            return message.clone();
        }
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            match tokio::time::timeout_at(deadline, self.messages.recv()).await {
                Ok(Some(message)) => {
                    self.read.push(message.clone());
                    if message.contains(needle) {
                        return message;
                    }
                }
                Ok(None) => panic!("fovea exited before logging `{needle}`:\n{}", self.logs()),
                Err(_) => panic!("fovea did not log `{needle}`:\n{}", self.logs()),
            }
        }
    }

    fn logs(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    fn signal(&self, name: &str) {
        let pid = self.child.id().expect("fovea is running").to_string();
        let status = std::process::Command::new("kill")
            .args(["-s", name, &pid])
            .status()
            .unwrap();
        assert!(status.success(), "kill -s {name} {pid}");
    }

    fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// The exit code, once the process has exited on its own.
    async fn exit_code(&mut self) -> Option<i32> {
        match tokio::time::timeout(PATIENCE, self.child.wait()).await {
            Ok(status) => status.unwrap().code(),
            Err(_) => panic!("fovea did not exit:\n{}", self.logs()),
        }
    }
}

/// Connects to `addr` until the connection is refused: the listener is
/// closed. Connections accepted meanwhile (shutdown not begun yet) are
/// dropped at once.
async fn until_refused(addr: SocketAddr) {
    let until = Instant::now() + PATIENCE;
    loop {
        match TcpStream::connect(addr).await {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return,
            Err(e) => panic!("connecting to {addr}: {e}"),
            Ok(_) => {
                assert!(Instant::now() < until, "{addr} still accepts connections");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// An HTTP/1.1 POST whose headers the server has read and whose body it is
/// waiting for (it answered `100 Continue`).
struct HeldUpload {
    stream: TcpStream,
    body: Vec<u8>,
}

impl HeldUpload {
    async fn start(addr: SocketAddr, path: &str, content_type: &str, body: Vec<u8>) -> Self {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: {content_type}\r\n\
             content-length: {}\r\nexpect: 100-continue\r\nconnection: close\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let interim = read_head(&mut stream).await;
        assert!(
            interim.starts_with("HTTP/1.1 100 Continue"),
            "not a 100 Continue: {interim}"
        );
        Self { stream, body }
    }

    /// Sends the body and reads the answer: its status and JSON body.
    async fn finish(mut self) -> (u16, Value) {
        self.stream.write_all(&self.body).await.unwrap();
        let mut answer = Vec::new();
        self.stream.read_to_end(&mut answer).await.unwrap();
        let text = String::from_utf8_lossy(&answer);
        let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP answer");
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status in {head}"));
        let body = serde_json::from_str(body).unwrap_or(Value::String(body.to_string()));
        (status, body)
    }
}

/// Reads an HTTP head, up to its blank line.
async fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8];
        let n = stream.read(&mut byte).await.unwrap();
        assert!(n == 1, "connection closed in the head: {head:?}");
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// A unary gRPC call whose headers and first message bytes the server has
/// read, the rest of the message still to come.
struct HeldCall {
    _client: h2::client::SendRequest<Bytes>,
    send: h2::SendStream<Bytes>,
    response: h2::client::ResponseFuture,
    rest: Bytes,
}

impl HeldCall {
    async fn start(addr: SocketAddr, path: &str, message: Vec<u8>) -> Self {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let (client, mut connection) = h2::client::handshake(tcp).await.unwrap();
        let mut ping_pong = connection
            .ping_pong()
            .expect("the connection's ping handle");
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let mut client = client.ready().await.unwrap();
        let request = http::Request::builder()
            .method("POST")
            .uri(format!("http://{addr}{path}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .unwrap();
        let (response, mut send) = client.send_request(request, false).unwrap();
        // gRPC framing: uncompressed, the length, the message.
        let mut framed = vec![0u8];
        framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
        framed.extend_from_slice(&message);
        let mut framed = Bytes::from(framed);
        let rest = framed.split_off(framed.len() / 2);
        send.send_data(framed, false).unwrap();
        ping_pong.ping(h2::Ping::opaque()).await.unwrap();
        Self {
            _client: client,
            send,
            response,
            rest,
        }
    }

    /// Sends the rest of the message; the answer's `grpc-status` and message.
    async fn finish(mut self) -> (String, Bytes) {
        self.send.send_data(self.rest, true).unwrap();
        let response = self.response.await.unwrap();
        assert_eq!(response.status(), 200);
        // A call that fails at once answers with trailers only: its status
        // is in the headers.
        if let Some(status) = response.headers().get("grpc-status") {
            let message = response
                .headers()
                .get("grpc-message")
                .map(|m| String::from_utf8_lossy(m.as_bytes()).into_owned())
                .unwrap_or_default();
            return (
                format!("{} {message}", status.to_str().unwrap()),
                Bytes::new(),
            );
        }
        let mut body = response.into_body();
        let mut message = Vec::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.unwrap();
            let _ = body.flow_control().release_capacity(chunk.len());
            message.extend_from_slice(&chunk);
        }
        let trailers = body.trailers().await.unwrap().unwrap_or_default();
        let status = trailers
            .get("grpc-status")
            .map_or("none".to_string(), |v| v.to_str().unwrap().to_string());
        let message = Bytes::from(message);
        (status, message.slice(5.min(message.len())..))
    }
}

fn kserve_infer(image: Vec<u8>) -> Vec<u8> {
    ModelInferRequest {
        model_name: "tiny".into(),
        inputs: vec![InferInputTensor {
            name: "input".into(),
            datatype: "BYTES".into(),
            shape: vec![1],
            contents: Some(InferTensorContents {
                bytes_contents: vec![Bytes::from(image)],
                ..Default::default()
            }),
            ..Default::default()
        }],
        ..Default::default()
    }
    .encode_to_vec()
}

fn tf_predict(image: Vec<u8>) -> Vec<u8> {
    PredictRequest {
        model_spec: Some(ModelSpec {
            name: "tiny".into(),
            ..Default::default()
        }),
        inputs: [(
            "input".to_string(),
            tf::bytes_to_proto(&BytesTensor {
                shape: vec![1],
                items: vec![Bytes::from(image)],
            }),
        )]
        .into(),
        output_filter: vec![],
    }
    .encode_to_vec()
}

/// An upstream for one URL fetch that answers (a PNG) only when released;
/// its signal fires once the fetch's request has arrived.
async fn held_upstream() -> (SocketAddr, oneshot::Receiver<()>, oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (arrived_tx, arrived_rx) = oneshot::channel();
    let (release_tx, release_rx) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        read_head(&mut socket).await;
        let _ = arrived_tx.send(());
        let _ = release_rx.await;
        let image = png(9);
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: image/png\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            image.len()
        );
        socket.write_all(head.as_bytes()).await.unwrap();
        socket.write_all(&image).await.unwrap();
    });
    (addr, arrived_rx, release_tx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_answers_every_accepted_request_refuses_new_connections_and_exits_0() {
    let mut fovea = Served::start(&[
        "--allow-url-fetch",
        "--allow-private-urls",
        "--shutdown-timeout-secs",
        "120",
    ])
    .await;

    // In flight on every front: an upload being read, a request admitted
    // to its model and fetching its image, and two gRPC calls being read.
    let upload = HeldUpload::start(
        fovea.http,
        "/api/v1/predict?model=tiny",
        "image/png",
        png(1),
    )
    .await;
    let (upstream, fetching, release_fetch) = held_upstream().await;
    let fetched = tokio::spawn({
        let http = fovea.http;
        async move {
            let body = serde_json::json!({ "url": format!("http://{upstream}/held.png") });
            let response = common::client()
                .post(format!("http://{http}/api/v1/predict?model=tiny"))
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap())
        }
    });
    fetching.await.unwrap();
    let kserve = HeldCall::start(
        fovea.grpc,
        "/inference.GRPCInferenceService/ModelInfer",
        kserve_infer(png(2)),
    )
    .await;
    let tfserving = HeldCall::start(
        fovea.grpc,
        "/tensorflow.serving.PredictionService/Predict",
        tf_predict(png(3)),
    )
    .await;

    fovea.signal("TERM");
    fovea.wait_for_log("shutting down").await;
    // Both listeners close while the held requests keep the process alive.
    until_refused(fovea.http).await;
    until_refused(fovea.grpc).await;
    assert!(fovea.is_running(), "fovea exited with requests in flight");

    let (status, answer) = upload.finish().await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        (&answer["model"], &answer["version"]),
        (&Value::from("tiny"), &Value::from(2))
    );
    release_fetch.send(()).unwrap();
    let (status, answer) = fetched.await.unwrap();
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["version"], 2);
    let (status, message) = kserve.finish().await;
    assert_eq!(status, "0", "{}", fovea.logs());
    let inferred = ModelInferResponse::decode(message).unwrap();
    assert_eq!(
        (
            inferred.model_name.as_str(),
            inferred.model_version.as_str()
        ),
        ("tiny", "2")
    );
    let (status, message) = tfserving.finish().await;
    assert_eq!(status, "0", "{}", fovea.logs());
    let predicted = PredictResponse::decode(message).unwrap();
    assert_eq!(
        predicted.model_spec.and_then(|s| s.version_choice),
        Some(VersionChoice::Version(2))
    );

    assert_eq!(fovea.exit_code().await, Some(0), "{}", fovea.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_still_running_at_the_shutdown_timeout_does_not_keep_the_process() {
    let mut fovea = Served::start(&["--shutdown-timeout-secs", "1"]).await;
    // Never finished: its body never comes.
    let _stuck = HeldUpload::start(
        fovea.http,
        "/api/v1/predict?model=tiny",
        "image/png",
        png(1),
    )
    .await;
    fovea.signal("TERM");
    fovea.wait_for_log("still running after").await;
    assert_eq!(fovea.exit_code().await, Some(0), "{}", fovea.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_exits_at_once_with_its_status() {
    // A drain that would last ten minutes, held up by an upload.
    let mut fovea = Served::start(&["--shutdown-timeout-secs", "600"]).await;
    let _stuck = HeldUpload::start(
        fovea.http,
        "/api/v1/predict?model=tiny",
        "image/png",
        png(1),
    )
    .await;
    fovea.signal("TERM");
    fovea.wait_for_log("shutting down").await;
    fovea.signal("INT");
    // 128 + SIGINT's number, as a shell reports a process killed by it.
    assert_eq!(fovea.exit_code().await, Some(130), "{}", fovea.logs());
    let logs = fovea.logs();
    assert!(
        logs.contains("SIGINT received during the graceful shutdown: exiting now"),
        "{logs}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_version_is_logged_by_the_server_and_reported_by_the_reload_command() {
    let mut fovea = Served::start(&[]).await;
    let model = std::fs::read(fixture_model()).unwrap();
    let version = fovea.repository().join("tiny/3");
    std::fs::create_dir_all(&version).unwrap();
    std::fs::write(version.join("model.onnx"), &model[..model.len() / 2]).unwrap();

    let server = format!("http://{}", fovea.http);
    let reload = Command::new(env!("CARGO_BIN_EXE_fovea"))
        .args(["models", "reload", "--server", &server])
        .env_remove("FOVEA_API_KEY")
        .output()
        .await
        .unwrap();
    assert_eq!(reload.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&reload.stdout);
    assert!(stdout.contains("  version 3 failed: "), "{stdout}");

    let logged = fovea.wait_for_log("failed to load").await;
    assert!(logged.contains("3/model.onnx"), "{logged}");
    let line = fovea
        .logs()
        .lines()
        .find(|l| l.contains("failed to load"))
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .unwrap();
    assert_eq!(line["level"], "ERROR", "{line}");
    assert_eq!(
        (&line["fields"]["model"], &line["fields"]["version"]),
        (&Value::from("tiny"), &Value::from(3)),
        "{line}"
    );
    fovea.signal("TERM");
    assert_eq!(fovea.exit_code().await, Some(0), "{}", fovea.logs());
}

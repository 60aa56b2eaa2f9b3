//! The model listings over real HTTP on loopback: `GET /api/v1/models`,
//! `GET /v1/models`, `GET /v2/models`, `POST /v2/repository/index`, and
//! `GET /openapi.json`; with the bundled `models/` repository on ONNX Runtime
//! (skipped with the reason printed where its library is missing, a failure
//! when FOVEA_REQUIRE_ORT=1), with failed versions (tract, the engine's tiny
//! model; also TF Serving's status of one version, over REST and gRPC), and
//! before the engine is set (models still loading).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use fovea_engine::{BackendChoice, Engine, EngineOptions, ModelSource};
use fovea_proto::tensorflow::serving::model_service_client::ModelServiceClient;
use fovea_proto::tensorflow::serving::model_spec::VersionChoice;
use fovea_proto::tensorflow::serving::model_version_status::State;
use fovea_proto::tensorflow::serving::{GetModelStatusRequest, ModelSpec, ModelVersionStatus};
use fovea_server::{AppState, ServerConfig};
use serde_json::{Value, json};
use tokio::sync::oneshot;

/// A fovea HTTP server on 127.0.0.1:0, stopped when dropped.
struct Server {
    base: String,
    client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
}

impl Server {
    async fn start(state: AppState) -> Self {
        let listener = fovea_server::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(fovea_server::serve_on(
            listener,
            state,
            Duration::from_secs(5),
            async {
                let _ = stopped.await;
            },
        ));
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(fovea_server::tls_client_config().unwrap())
            .build()
            .unwrap();
        Self {
            base,
            client,
            stop: Some(stop),
        }
    }

    async fn with_engine(engine: Engine) -> Self {
        Self::start(AppState::with_engine(engine, &ServerConfig::default()).unwrap()).await
    }

    /// Status, Content-Type and JSON body of `method path` with `body`.
    async fn call(&self, method: &str, path: &str, body: &str) -> (u16, String, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let response = self
            .client
            .request(method, format!("{}{path}", self.base))
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let bytes = response.bytes().await.unwrap();
        let value = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!(
                "{path}: {status}, not JSON ({e}): {:?}",
                String::from_utf8_lossy(&bytes)
            )
        });
        (status, content_type, value)
    }

    async fn get(&self, path: &str) -> Value {
        let (status, content_type, value) = self.call("GET", path, "").await;
        assert_eq!(status, 200, "GET {path}: {value}");
        assert_eq!(content_type, "application/json", "GET {path}");
        value
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

async fn start_engine(source: ModelSource, backend: BackendChoice) -> Engine {
    let options = EngineOptions {
        backend,
        threads: 1,
        poll_interval: None,
        ..EngineOptions::default()
    };
    Engine::start(source, options).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bundled_repository_is_listed_by_every_protocol() {
    let status = fovea_engine::ort_runtime_status().map(|_| ());
    if fovea_testkit::available(fovea_testkit::REQUIRE_ORT, "ONNX Runtime", status).is_none() {
        return;
    }
    let engine = start_engine(
        ModelSource::Repository(workspace().join("models")),
        BackendChoice::Ort,
    )
    .await;
    assert!(engine.is_ready(), "{:?}", engine.statuses());
    let server = Server::with_engine(engine).await;

    // Exactly the form the demo page reads.
    assert_eq!(
        server.get("/api/v1/models").await,
        json!({"backend": "onnxruntime", "models": [{
            "name": "resnet18-cifar10", "default": true, "default_version": 6,
            "versions": [{"version": 5, "state": "available"}, {"version": 6, "state": "available"}]
        }]})
    );
    let ok = json!({"error_code": "OK", "error_message": ""});
    assert_eq!(
        server.get("/v1/models").await,
        json!({"models": [{"name": "resnet18-cifar10", "model_version_status": [
            {"version": "5", "state": "AVAILABLE", "status": ok},
            {"version": "6", "state": "AVAILABLE", "status": ok},
        ]}]})
    );
    // The per-model status endpoint answers the same entries as the listing.
    assert_eq!(
        server.get("/v1/models/resnet18-cifar10").await["model_version_status"],
        server.get("/v1/models").await["models"][0]["model_version_status"]
    );
    assert_eq!(
        server.get("/v2/models").await,
        json!({"models": [{"name": "resnet18-cifar10", "versions": ["5", "6"], "state": "READY"}]})
    );
    let index = json!([
        {"name": "resnet18-cifar10", "version": "5", "state": "READY", "reason": ""},
        {"name": "resnet18-cifar10", "version": "6", "state": "READY", "reason": ""},
    ]);
    // tritonclient sends no body; Triton's `ready` filter is accepted too.
    for body in ["", "null", "{}", "{\"ready\": true}", "{\"ready\": false}"] {
        let (status, _, value) = server.call("POST", "/v2/repository/index", body).await;
        assert_eq!((status, &value), (200, &index), "body {body:?}");
    }
    for body in ["{", "[]", "{\"ready\": 1}", "{\"other\": true}"] {
        let (status, _, value) = server.call("POST", "/v2/repository/index", body).await;
        assert_eq!(status, 400, "body {body:?}: {value}");
        assert!(value["error"].is_string(), "KServe error shape: {value}");
    }
}

const LABELS: &str = "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n";

/// `tiny`: version 1 the engine's tiny model, version 2 not a model;
/// `zz-broken`: its only version not a model.
fn repository_with_failures() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    let fixture = workspace().join("crates/fovea-engine/tests/fixtures/tiny-cifar.onnx");
    for (name, versions) in [("tiny", &[1u64, 2][..]), ("zz-broken", &[1][..])] {
        let dir = root.path().join(name);
        for &version in versions {
            let version_dir = dir.join(version.to_string());
            std::fs::create_dir_all(&version_dir).unwrap();
            let model = version_dir.join("model.onnx");
            if name == "tiny" && version == 1 {
                std::fs::copy(&fixture, model).unwrap();
            } else {
                std::fs::write(model, b"not an ONNX model").unwrap();
            }
        }
        std::fs::write(dir.join("labels.txt"), LABELS).unwrap();
        std::fs::write(
            dir.join("config.toml"),
            r#"version_policy = "all"
[input]
name = "input"
shape = [3, 32, 32]
[output]
name = "logits"
labels = "labels.txt"
[preprocess]
resize = { exact = [32, 32] }
mean = [0.5, 0.5, 0.5]
std = [0.25, 0.25, 0.25]
"#,
        )
        .unwrap();
    }
    root
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_versions_are_listed_with_their_reason() {
    let repo = repository_with_failures();
    let engine = start_engine(
        ModelSource::Repository(repo.path().to_path_buf()),
        BackendChoice::Tract,
    )
    .await;
    let server = Server::with_engine(engine).await;

    let simple = server.get("/api/v1/models").await;
    assert_eq!(simple["backend"], "tract");
    let models = simple["models"].as_array().unwrap();
    let names: Vec<&str> = models.iter().map(|m| m["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["tiny", "zz-broken"]);
    let (tiny, broken) = (&models[0], &models[1]);
    assert_eq!(
        (&tiny["default"], &tiny["default_version"]),
        (&json!(true), &json!(1))
    );
    assert_eq!(
        tiny["versions"][0],
        json!({"version": 1, "state": "available"})
    );
    assert_eq!(tiny["versions"][1]["state"], "failed");
    assert!(
        tiny["versions"][1]["reason"]
            .as_str()
            .unwrap()
            .contains("model.onnx"),
        "the reason names the file: {simple}"
    );
    assert_eq!(
        (&broken["default"], &broken["default_version"]),
        (&json!(false), &Value::Null)
    );
    assert_eq!(broken["versions"][0]["state"], "failed");

    let tf = server.get("/v1/models").await;
    let failed = &tf["models"][0]["model_version_status"][1];
    assert_eq!(
        (&failed["version"], &failed["state"]),
        (&json!("2"), &json!("END"))
    );
    assert_eq!(failed["status"]["error_code"], "UNKNOWN");
    assert_eq!(
        failed["status"]["error_message"],
        tiny["versions"][1]["reason"]
    );

    assert_eq!(
        server.get("/v2/models").await,
        json!({"models": [
            {"name": "tiny", "versions": ["1", "2"], "state": "READY"},
            {"name": "zz-broken", "versions": ["1"], "state": "UNAVAILABLE"},
        ]})
    );
    let (status, _, index) = server.call("POST", "/v2/repository/index", "").await;
    assert_eq!(status, 200);
    let states: Vec<(&str, &str, &str)> = index
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap(),
                e["version"].as_str().unwrap(),
                e["state"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        states,
        [
            ("tiny", "1", "READY"),
            ("tiny", "2", "UNAVAILABLE"),
            ("zz-broken", "1", "UNAVAILABLE")
        ]
    );
    assert_eq!(index[0]["reason"], "");
    assert_eq!(index[1]["reason"], tiny["versions"][1]["reason"]);
    let (_, _, ready_only) = server
        .call("POST", "/v2/repository/index", "{\"ready\": true}")
        .await;
    assert_eq!(ready_only.as_array().unwrap().len(), 1, "{ready_only}");
}

/// A gRPC server over `state` on 127.0.0.1:0, and a ModelService client of it.
async fn model_service(state: AppState) -> ModelServiceClient<tonic::transport::Channel> {
    let listener = fovea_server::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(fovea_server::serve_grpc_on(
        listener,
        state,
        Duration::from_secs(1),
        std::future::pending(),
    ));
    ModelServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap()
}

/// GetModelStatus of `name` at `version` (every version when `None`).
async fn grpc_status(
    client: &mut ModelServiceClient<tonic::transport::Channel>,
    name: &str,
    version: Option<i64>,
) -> Result<Vec<ModelVersionStatus>, tonic::Status> {
    let request = GetModelStatusRequest {
        model_spec: Some(ModelSpec {
            name: name.into(),
            version_choice: version.map(VersionChoice::Version),
            ..Default::default()
        }),
    };
    let answer = client.get_model_status(request).await?;
    Ok(answer.into_inner().model_version_status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_version_reports_its_state_by_version_over_rest_and_grpc() {
    let repo = repository_with_failures();
    let engine = start_engine(
        ModelSource::Repository(repo.path().to_path_buf()),
        BackendChoice::Tract,
    )
    .await;
    let state = AppState::with_engine(engine, &ServerConfig::default()).unwrap();
    let server = Server::start(state.clone()).await;
    let mut grpc = model_service(state).await;

    // TF Serving reports a version that failed to load as END, with the
    // load error as its status, whether asked by number or label.
    let failed = server.get("/v1/models/tiny/versions/2").await;
    let entry = &failed["model_version_status"][0];
    assert_eq!(failed["model_version_status"].as_array().unwrap().len(), 1);
    assert_eq!(
        (
            &entry["version"],
            &entry["state"],
            &entry["status"]["error_code"]
        ),
        (&json!("2"), &json!("END"), &json!("UNKNOWN"))
    );
    let reason = entry["status"]["error_message"].as_str().unwrap();
    assert!(
        reason.contains("model.onnx"),
        "the reason names the file: {failed}"
    );
    assert_eq!(server.get("/v1/models/tiny/labels/2").await, failed);
    // A model with no available version at all answers the same way.
    let broken = server.get("/v1/models/zz-broken/versions/1").await;
    assert_eq!(broken["model_version_status"][0]["state"], "END");
    let available = server.get("/v1/models/tiny/versions/1").await;
    assert_eq!(
        available["model_version_status"],
        json!([{"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}])
    );

    let statuses = grpc_status(&mut grpc, "tiny", Some(2)).await.unwrap();
    assert_eq!(statuses.len(), 1);
    assert_eq!(
        (statuses[0].version, statuses[0].state),
        (2, State::End as i32)
    );
    let status = statuses[0].status.clone().unwrap();
    // tensorflow.error.Code UNKNOWN, with the same reason as REST.
    assert_eq!(
        (status.error_code, status.error_message.as_str()),
        (2, reason)
    );
    let broken = grpc_status(&mut grpc, "zz-broken", Some(1)).await.unwrap();
    assert_eq!(broken[0].state, State::End as i32);
    let ok = grpc_status(&mut grpc, "tiny", Some(1)).await.unwrap();
    assert_eq!(
        (ok[0].state, ok[0].status.clone().unwrap().error_code),
        (State::Available as i32, 0)
    );
    let all = grpc_status(&mut grpc, "tiny", None).await.unwrap();
    let versions: Vec<(i64, i32)> = all.iter().map(|s| (s.version, s.state)).collect();
    assert_eq!(
        versions,
        [(1, State::Available as i32), (2, State::End as i32)]
    );

    // Unknown models and versions stay NOT_FOUND.
    for path in [
        "/v1/models/tiny/versions/3",
        "/v1/models/tiny/labels/stable",
        "/v1/models/nope/versions/1",
        "/v1/models/nope",
    ] {
        let (status, _, body) = server.call("GET", path, "").await;
        assert_eq!(status, 404, "{path}: {body}");
        assert!(body["error"].is_string(), "{path}: {body}");
    }
    for (name, version) in [("tiny", Some(3)), ("nope", Some(1)), ("nope", None)] {
        let err = grpc_status(&mut grpc, name, version).await.unwrap_err();
        assert_eq!(
            err.code(),
            tonic::Code::NotFound,
            "{name} {version:?}: {err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_are_empty_while_models_load() {
    let server = Server::start(AppState::new(&ServerConfig::default()).unwrap()).await;
    assert_eq!(
        server.get("/api/v1/models").await,
        json!({"backend": null, "models": []})
    );
    assert_eq!(server.get("/v1/models").await, json!({"models": []}));
    assert_eq!(server.get("/v2/models").await, json!({"models": []}));
    let (status, _, index) = server.call("POST", "/v2/repository/index", "").await;
    assert_eq!((status, index), (200, json!([])));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_json_is_served() {
    let server = Server::start(AppState::new(&ServerConfig::default()).unwrap()).await;
    let doc = server.get("/openapi.json").await;
    assert_eq!(doc["openapi"], "3.1.0");
    for path in [
        "/api/v1/models",
        "/v1/models",
        "/v2/models",
        "/v2/repository/index",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} undocumented");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_body_gets_each_protocols_error_shape() {
    let mut config = ServerConfig::default();
    config.limits.max_body_bytes = 1024;
    let server = Server::start(AppState::new(&config).unwrap()).await;
    let big = "x".repeat(200 * 1024);
    let (status, _, simple) = server.call("POST", "/api/v1/predict", &big).await;
    assert_eq!(status, 413);
    assert_eq!(simple["error"]["code"], "body_too_large", "{simple}");
    for path in [
        "/v1/models/m:predict",
        "/v2/models/m/infer",
        "/v2/repository/index",
    ] {
        let (status, _, value) = server.call("POST", path, &big).await;
        assert_eq!(status, 413, "{path}");
        assert!(value["error"].is_string(), "{path}: {value}");
    }
}

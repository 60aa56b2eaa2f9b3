//! The operator's reload triggers, `POST /api/v1/models/reload` and TF
//! Serving's gRPC `HandleReloadConfigRequest`, over real sockets on
//! loopback, and `fovea models reload` (the built binary) calling the first:
//! behind the access guard like every route, it loads what was added to
//! the repository, and a broken new version is reported (the answer, the
//! command's exit status, `/metrics`) while the version before it keeps
//! serving.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{Reply, TestServer, fixture_model, make_repository, png, start_engine};
use fovea_engine::BackendChoice;
use fovea_proto::tensorflow::serving::model_server_config::Config;
use fovea_proto::tensorflow::serving::model_service_client::ModelServiceClient;
use fovea_proto::tensorflow::serving::{
    ModelConfig, ModelConfigList, ModelServerConfig, ReloadConfigRequest,
};
use fovea_server::{AppState, ServerConfig};
use serde_json::Value;

/// A tract server over a fresh `make_repository()` (model `tiny`, versions
/// 1 and 2, every version served), with the repository's path.
async fn server(configure: impl FnOnce(&mut ServerConfig)) -> (TestServer, PathBuf) {
    let metrics = fovea_server::telemetry::install_metrics().unwrap();
    let repo = make_repository();
    let root = repo.path().to_path_buf();
    let engine = start_engine(&root, BackendChoice::Tract).await;
    let mut config = ServerConfig::default();
    configure(&mut config);
    let state = AppState::with_engine(engine, &config)
        .unwrap()
        .with_metrics(metrics);
    let server = TestServer::serve(state, Some(repo), config.shutdown_timeout).await;
    (server, root)
}

/// Writes `model_dir/<version>/model.onnx` with `bytes`.
fn write_version(model_dir: &Path, version: u64, bytes: &[u8]) {
    let dir = model_dir.join(version.to_string());
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("model.onnx"), bytes).unwrap();
}

async fn reload(server: &TestServer, key: Option<&str>) -> Reply {
    let mut request = server.client.post(server.url("/api/v1/models/reload"));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    Reply::read(request.send().await.unwrap()).await
}

/// Runs `fovea models reload --server <server> ARGS` without blocking the server's runtime.
async fn reload_command(server: &TestServer, args: &[&str]) -> Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_fovea"));
    command
        .args(["models", "reload", "--server", &server.base])
        .args(args)
        .env_remove("FOVEA_API_KEY");
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

/// The listing's entry for `version` of `model`.
fn version_of<'a>(listing: &'a Value, model: &str, version: u64) -> Option<&'a Value> {
    listing["models"]
        .as_array()?
        .iter()
        .find(|m| m["name"] == model)?["versions"]
        .as_array()?
        .iter()
        .find(|v| v["version"] == version)
}

/// The sum of the samples of `name` whose labels include `label`.
fn sample(metrics: &str, name: &str, label: &str) -> f64 {
    metrics
        .lines()
        .filter(|line| line.starts_with(&format!("{name}{{")) && line.contains(label))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reload_needs_a_key_like_every_route_and_then_loads_what_was_added() {
    let keys = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(keys.path(), "ops:ops-secret-1\n").unwrap();
    let (server, root) = server(|config| {
        config.access.api_keys_file = Some(keys.path().to_path_buf());
    })
    .await;
    write_version(
        &root.join("tiny"),
        3,
        &std::fs::read(fixture_model()).unwrap(),
    );

    let refused = reload(&server, None).await;
    assert_eq!(refused.expect_error(401), "unauthenticated");
    let wrong = reload(&server, Some("guess")).await;
    assert_eq!(wrong.expect_error(401), "invalid_api_key");
    // Refused before the handler: the repository was not rescanned.
    let engine = server.state.engine().unwrap();
    assert_eq!(engine.model("tiny", None).unwrap().version(), 2);

    let reloaded = reload(&server, Some("ops-secret-1")).await;
    assert_eq!(reloaded.status, 200, "{}", reloaded.body);
    assert_eq!(
        version_of(&reloaded.body, "tiny", 3).map(|v| &v["state"]),
        Some(&Value::from("available")),
        "{}",
        reloaded.body
    );
    let answer = server
        .client
        .post(server.url("/api/v1/predict?model=tiny"))
        .bearer_auth("ops-secret-1")
        .header("content-type", "image/png")
        .body(png(1))
        .send()
        .await
        .unwrap();
    let answer = Reply::read(answer).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["version"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_new_version_is_reported_and_counted_and_the_old_one_keeps_serving() {
    let (server, root) = server(|_| {}).await;
    let before = server.scrape_metrics().await;
    let model = std::fs::read(fixture_model()).unwrap();
    write_version(&root.join("tiny"), 3, &model[..model.len() / 2]);

    let reloaded = reload(&server, None).await;
    assert_eq!(reloaded.status, 200, "{}", reloaded.body);
    let failed = version_of(&reloaded.body, "tiny", 3).expect("version 3 listed");
    assert_eq!(failed["state"], "failed", "{failed}");
    let reason = failed["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("3/model.onnx"), "{reason}");
    let tiny = &reloaded.body["models"][0];
    assert_eq!(
        (&tiny["name"], &tiny["default_version"]),
        (&Value::from("tiny"), &Value::from(2))
    );

    let after = server.scrape_metrics().await;
    let counted =
        |metrics: &str| sample(metrics, "fovea_model_load_failures_total", "model=\"tiny\"");
    assert_eq!(counted(&after) - counted(&before), 1.0, "{after}");
    // A second scan meets the same broken file: nothing new to count.
    assert_eq!(reload(&server, None).await.status, 200);
    assert_eq!(
        counted(&server.scrape_metrics().await) - counted(&before),
        1.0
    );

    let answer = server.post("?model=tiny", "image/png", png(1)).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["version"], 2);
    let ready = server
        .client
        .get(server.url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fovea_models_reload_prints_the_models_and_fails_on_a_refused_version() {
    let keys = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(keys.path(), "ops:ops-secret-1\n").unwrap();
    let (server, root) = server(|config| {
        config.access.api_keys_file = Some(keys.path().to_path_buf());
    })
    .await;
    let model = std::fs::read(fixture_model()).unwrap();
    write_version(&root.join("tiny"), 3, &model);

    let refused = reload_command(&server, &[]).await;
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("401") && stderr.contains("unauthenticated"),
        "{stderr}"
    );

    let reloaded = reload_command(&server, &["--api-key", "ops-secret-1"]).await;
    let stdout = String::from_utf8_lossy(&reloaded.stdout);
    assert!(
        reloaded.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&reloaded.stderr)
    );
    assert!(stdout.contains("tiny: default version 3"), "{stdout}");
    assert!(stdout.contains("  version 3 available"), "{stdout}");

    write_version(&root.join("tiny"), 4, &model[..model.len() / 2]);
    let failed = reload_command(&server, &["--api-key", "ops-secret-1"]).await;
    assert_eq!(failed.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&failed.stdout);
    assert!(stdout.contains("tiny: default version 3"), "{stdout}");
    assert!(
        stdout.contains("  version 4 failed: ") && stdout.contains("4/model.onnx"),
        "{stdout}"
    );
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(
        stderr.contains("1 model version(s) failed to load"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tf_serving_reload_with_no_config_rescans_and_one_naming_models_is_refused() {
    let keys = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(keys.path(), "ops:ops-secret-1\n").unwrap();
    let (server, root) = server(|config| {
        config.access.api_keys_file = Some(keys.path().to_path_buf());
    })
    .await;
    let mut client = ModelServiceClient::new(server.grpc().await);
    let keyed = |request: ReloadConfigRequest| {
        let mut request = tonic::Request::new(request);
        request
            .metadata_mut()
            .insert("authorization", "Bearer ops-secret-1".parse().unwrap());
        request
    };
    let model = std::fs::read(fixture_model()).unwrap();
    write_version(&root.join("tiny"), 3, &model);
    let engine = server.state.engine().unwrap().clone();

    let unkeyed = client
        .handle_reload_config_request(ReloadConfigRequest::default())
        .await
        .unwrap_err();
    assert_eq!(unkeyed.code(), tonic::Code::Unauthenticated);
    // A config naming models is refused whole, and nothing is rescanned.
    let listed = ModelServerConfig {
        config: Some(Config::ModelConfigList(ModelConfigList {
            config: vec![ModelConfig {
                name: "tiny".into(),
                base_path: "/models/tiny".into(),
                ..Default::default()
            }],
        })),
    };
    let refused = client
        .handle_reload_config_request(keyed(ReloadConfigRequest {
            config: Some(listed),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unimplemented, "{refused}");
    assert_eq!(engine.model("tiny", None).unwrap().version(), 2);

    // Absent and empty configs alike rescan the repository.
    let reloaded = client
        .handle_reload_config_request(keyed(ReloadConfigRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reloaded.status.map(|s| s.error_code), Some(0));
    assert_eq!(engine.model("tiny", None).unwrap().version(), 3);
    write_version(&root.join("tiny"), 4, &model[..model.len() / 2]);
    let failed = client
        .handle_reload_config_request(keyed(ReloadConfigRequest {
            config: Some(ModelServerConfig::default()),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap_or_default();
    assert_eq!(failed.error_code, 2, "{failed:?}");
    assert!(
        failed.error_message.contains("tiny version 4: ")
            && failed.error_message.contains("4/model.onnx"),
        "{failed:?}"
    );
    assert_eq!(engine.model("tiny", None).unwrap().version(), 3);
}

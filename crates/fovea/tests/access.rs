//! API keys, rate limits and the caps on requests and connections, over real
//! HTTP and gRPC on loopback.

mod common;

use std::num::{NonZeroU32, NonZeroUsize};
use std::time::Duration;

use bytes::Bytes;
use common::{Reply, TestServer, png};
use fovea_proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use fovea_proto::inference::model_infer_request::InferInputTensor;
use fovea_proto::inference::{InferTensorContents, ModelInferRequest, ServerLiveRequest};
use fovea_proto::tensorflow::serving::model_service_client::ModelServiceClient;
use fovea_proto::tensorflow::serving::{GetModelStatusRequest, ModelSpec};
use fovea_testkit::Gate;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic::Code;

const KEYS: &str = "# test keys\nalice:alice-secret-1\nbob:bob-secret-2\n";

/// Replaces the file at `path` the way an operator should: a new file
/// renamed over it, so the watcher never reads it half-written.
fn replace(path: &std::path::Path, text: &str) {
    let new = path.with_extension("new");
    std::fs::write(&new, text).unwrap();
    std::fs::rename(&new, path).unwrap();
}

fn keys_file(text: &str) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), text).unwrap();
    file
}

async fn get(server: &TestServer, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = server.client.get(server.url(path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

fn status_request() -> tonic::Request<GetModelStatusRequest> {
    tonic::Request::new(GetModelStatusRequest {
        model_spec: Some(ModelSpec {
            name: "tiny".into(),
            ..Default::default()
        }),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_required_everywhere_but_the_probes_in_each_protocols_form() {
    let keys = keys_file(KEYS);
    let server = TestServer::start(|config| {
        config.access.api_keys_file = Some(keys.path().to_path_buf());
    })
    .await;

    // No key: 401, a Bearer challenge, and each API's own error body.
    let simple = Reply::read(get(&server, "/api/v1/models", &[]).await).await;
    assert_eq!(simple.expect_error(401), "unauthenticated");
    assert_eq!(simple.headers["www-authenticate"], "Bearer realm=\"fovea\"");
    let tf = Reply::read(get(&server, "/v1/models/tiny", &[]).await).await;
    assert_eq!(tf.status.as_u16(), 401);
    assert!(tf.body["error"].is_string(), "{}", tf.body);
    let upload = server.post_images("", &[png(1)]).await;
    assert_eq!(upload.expect_error(401), "unauthenticated");

    // A wrong key is told apart from a missing one.
    let wrong = get(
        &server,
        "/api/v1/models",
        &[("authorization", "Bearer nope")],
    )
    .await;
    assert_eq!(
        Reply::read(wrong).await.expect_error(401),
        "invalid_api_key"
    );

    // Either header carries a valid key.
    for header in [
        ("authorization", "Bearer alice-secret-1"),
        ("x-api-key", "bob-secret-2"),
    ] {
        let answer = get(&server, "/api/v1/models", &[header]).await;
        assert_eq!(answer.status(), 200, "{header:?}");
    }
    let predicted = server
        .client
        .post(server.url("/api/v1/predict"))
        .header("authorization", "Bearer alice-secret-1")
        .header("content-type", "image/png")
        .body(png(2))
        .send()
        .await
        .unwrap();
    assert_eq!(predicted.status(), 200);

    // Probes answer without a key; metrics and the demo page by default do not.
    for path in ["/healthz", "/readyz"] {
        assert_eq!(get(&server, path, &[]).await.status(), 200, "{path}");
    }
    for path in ["/metrics", "/", "/openapi.json"] {
        assert_eq!(get(&server, path, &[]).await.status(), 401, "{path}");
    }

    // gRPC: both services check the `authorization` metadata.
    let grpc = server.grpc().await;
    let mut kserve = GrpcInferenceServiceClient::new(grpc.clone());
    let refused = kserve.server_live(ServerLiveRequest {}).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    let mut live = tonic::Request::new(ServerLiveRequest {});
    live.metadata_mut()
        .insert("authorization", "Bearer bob-secret-2".parse().unwrap());
    assert!(kserve.server_live(live).await.unwrap().into_inner().live);

    let mut tf = ModelServiceClient::new(grpc);
    let refused = tf.get_model_status(status_request()).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    let mut request = status_request();
    request
        .metadata_mut()
        .insert("authorization", "Bearer wrong".parse().unwrap());
    assert_eq!(
        tf.get_model_status(request).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    let mut request = status_request();
    request
        .metadata_mut()
        .insert("authorization", "Bearer alice-secret-1".parse().unwrap());
    assert!(tf.get_model_status(request).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_the_demo_page_can_be_made_public() {
    let keys = keys_file(KEYS);
    let server = TestServer::start(|config| {
        config.access.api_keys_file = Some(keys.path().to_path_buf());
        config.access.public_metrics = true;
        config.access.public_demo = true;
    })
    .await;
    for path in ["/metrics", "/", "/openapi.json"] {
        assert_eq!(get(&server, path, &[]).await.status(), 200, "{path}");
    }
    assert_eq!(get(&server, "/api/v1/models", &[]).await.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_reload_on_request_and_when_the_file_changes_and_a_bad_file_changes_nothing() {
    let keys = keys_file("alice:alice-secret-1\n");
    let server = TestServer::start(|config| {
        config.access.api_keys_file = Some(keys.path().to_path_buf());
        config.access.keys_poll_interval = Duration::from_millis(20);
    })
    .await;
    let as_carol = [("authorization", "Bearer carol-secret-3")];
    assert_eq!(
        get(&server, "/api/v1/models", &as_carol).await.status(),
        401
    );

    // What SIGHUP does.
    replace(keys.path(), "alice:alice-secret-1\ncarol:carol-secret-3\n");
    server.state.access().reload().unwrap();
    assert_eq!(
        get(&server, "/api/v1/models", &as_carol).await.status(),
        200
    );

    // A broken file is refused and the keys in force stay.
    replace(keys.path(), "carol:\n");
    assert!(server.state.access().reload().is_err());
    assert_eq!(
        get(&server, "/api/v1/models", &as_carol).await.status(),
        200
    );

    // Without any signal, the watcher notices the file changed.
    replace(keys.path(), "alice:alice-secret-1\n");
    let mut revoked = false;
    for _ in 0..500 {
        if get(&server, "/api/v1/models", &as_carol).await.status() == 401 {
            revoked = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(revoked, "carol's key still works after the file dropped it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_key_has_its_own_bucket_and_overdrawing_it_is_429_with_retry_after() {
    let keys = keys_file(KEYS);
    let server = TestServer::start(|config| {
        config.access.api_keys_file = Some(keys.path().to_path_buf());
        config.access.rate_limit = NonZeroU32::new(1);
        config.access.rate_burst = NonZeroU32::new(2).unwrap();
    })
    .await;
    let alice = [("x-api-key", "alice-secret-1")];
    let bob = [("x-api-key", "bob-secret-2")];
    // A bucket of two refills at one per second: the third request within
    // the same second is refused whatever the machine's speed.
    assert_eq!(get(&server, "/api/v1/models", &alice).await.status(), 200);
    assert_eq!(get(&server, "/api/v1/models", &alice).await.status(), 200);
    let limited = Reply::read(get(&server, "/api/v1/models", &alice).await).await;
    assert_eq!(limited.expect_error(429), "rate_limited");
    let retry: u64 = limited.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    let tf = Reply::read(get(&server, "/v2/models/tiny", &alice).await).await;
    assert_eq!(tf.status.as_u16(), 429);
    assert!(tf.body["error"].is_string());
    // Bob's bucket is untouched.
    assert_eq!(get(&server, "/api/v1/models", &bob).await.status(), 200);

    // gRPC draws from the same bucket: RESOURCE_EXHAUSTED.
    let grpc = server.grpc().await;
    let mut kserve = GrpcInferenceServiceClient::new(grpc.clone());
    let mut live = tonic::Request::new(ServerLiveRequest {});
    live.metadata_mut()
        .insert("authorization", "Bearer alice-secret-1".parse().unwrap());
    assert_eq!(
        kserve.server_live(live).await.unwrap_err().code(),
        Code::ResourceExhausted
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_keys_the_client_address_is_limited_and_only_a_trusted_proxy_names_it() {
    let rate = |config: &mut fovea_server::ServerConfig| {
        config.access.rate_limit = NonZeroU32::new(1);
        config.access.rate_burst = NonZeroU32::new(1).unwrap();
    };
    let behind_proxy = TestServer::start(|config| {
        rate(config);
        config.access.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    let ok = |s: &TestServer, ip| {
        let s = s
            .client
            .get(s.url("/api/v1/models"))
            .header("x-forwarded-for", ip);
        async move { s.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(ok(&behind_proxy, "198.51.100.1").await, 200);
    assert_eq!(ok(&behind_proxy, "198.51.100.1").await, 429);
    assert_eq!(ok(&behind_proxy, "198.51.100.2").await, 200);

    // Not behind a trusted proxy, a client's own X-Forwarded-For changes nothing.
    let direct = TestServer::start(rate).await;
    assert_eq!(ok(&direct, "198.51.100.1").await, 200);
    assert_eq!(ok(&direct, "198.51.100.2").await, 429);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_beyond_the_concurrency_cap_get_503_and_the_probes_still_answer() {
    let server = TestServer::start(|config| {
        config.access.max_concurrent_requests = 1;
    })
    .await;
    // A request whose body never finishes holds the one slot.
    let mut held = TcpStream::connect(server.addr).await.unwrap();
    held.write_all(
        b"POST /api/v1/predict HTTP/1.1\r\nhost: x\r\ncontent-type: image/png\r\ncontent-length: 100000\r\n\r\npartial",
    )
    .await
    .unwrap();
    // Once the server has taken it in, the next request finds no slot.
    let mut busy = None;
    for _ in 0..500 {
        let reply = Reply::read(get(&server, "/api/v1/models", &[]).await).await;
        if reply.status.as_u16() == 503 {
            busy = Some(reply);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let busy = busy.expect("a second request was admitted beside the held one");
    assert_eq!(busy.expect_error(503), "server_busy");
    assert_eq!(busy.headers["retry-after"], "1");
    assert_eq!(get(&server, "/healthz", &[]).await.status(), 200);
    // The held request ending frees the slot.
    drop(held);
    let mut freed = false;
    for _ in 0..500 {
        if get(&server, "/api/v1/models", &[]).await.status() == 200 {
            freed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(freed);
}

/// Sends a keep-alive GET /healthz on `stream` and reads the answer's status line.
async fn healthz(stream: &mut TcpStream) -> String {
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buffer = vec![0; 4096];
    let n = stream.read(&mut buffer).await.unwrap();
    String::from_utf8_lossy(&buffer[..n])
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_wait_until_one_closes() {
    let server = TestServer::start(|config| {
        config.access.max_connections = 1;
    })
    .await;
    let mut first = TcpStream::connect(server.addr).await.unwrap();
    assert_eq!(healthz(&mut first).await, "HTTP/1.1 200 OK");
    // The kernel completes the second handshake, but fovea does not take the
    // connection while the first stays open: its request goes unanswered.
    let mut second = TcpStream::connect(server.addr).await.unwrap();
    let waiting = tokio::time::timeout(Duration::from_millis(300), healthz(&mut second)).await;
    assert!(waiting.is_err(), "answered beyond the connection cap");
    drop(first);
    let mut buffer = vec![0; 4096];
    let n = tokio::time::timeout(Duration::from_secs(30), second.read(&mut buffer))
        .await
        .expect("the waiting connection is served once the first closes")
        .unwrap();
    assert!(String::from_utf8_lossy(&buffer[..n]).starts_with("HTTP/1.1 200 OK"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_connection_is_told_how_many_calls_it_may_have_open() {
    let server = TestServer::start(|config| {
        config.access.grpc_max_concurrent_streams = 3;
    })
    .await;
    let addr = server.serve_grpc().await;
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (_client, mut connection) = h2::client::handshake(tcp).await.unwrap();
    // The server's SETTINGS come before its answer to a PING.
    let mut ping_pong = connection
        .ping_pong()
        .expect("the connection's ping handle");
    tokio::select! {
        pong = ping_pong.ping(h2::Ping::opaque()) => {
            pong.unwrap();
        }
        ended = &mut connection => panic!("the connection ended: {ended:?}"),
    }
    // A client opening more waits for one to finish (h2 queues it): one
    // connection cannot flood the server with calls.
    assert_eq!(connection.max_concurrent_send_streams(), 3);
}

/// A KServe ModelInfer of one PNG for the gated model, as `key`.
fn gated_infer(key: &str) -> tonic::Request<ModelInferRequest> {
    let mut request = tonic::Request::new(ModelInferRequest {
        model_name: "gated".into(),
        inputs: vec![InferInputTensor {
            name: "input".into(),
            datatype: "BYTES".into(),
            shape: vec![1],
            contents: Some(InferTensorContents {
                bytes_contents: vec![Bytes::from(png(7))],
                ..Default::default()
            }),
            ..Default::default()
        }],
        ..Default::default()
    });
    if !key.is_empty() {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {key}").parse().unwrap());
    }
    request
}

fn live_as(key: &str) -> tonic::Request<ServerLiveRequest> {
    let mut request = tonic::Request::new(ServerLiveRequest {});
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {key}").parse().unwrap());
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_at_its_own_cap_gets_429_on_both_protocols_while_others_are_served() {
    let keys = keys_file(KEYS);
    let mut gate = Gate::new(&[3, 32, 32], 10);
    let server = TestServer::start_gated(&gate, |config| {
        config.access.api_keys_file = Some(keys.path().to_path_buf());
        config.access.max_concurrent_per_client = NonZeroUsize::new(1);
    })
    .await;
    let grpc = server.grpc().await;
    let alice = [("x-api-key", "alice-secret-1")];
    let bob = [("x-api-key", "bob-secret-2")];

    // Alice's one gRPC call waits in the backend, holding her one slot.
    let mut kserve = GrpcInferenceServiceClient::new(grpc.clone());
    let held = tokio::spawn({
        let mut kserve = kserve.clone();
        async move { kserve.model_infer(gated_infer("alice-secret-1")).await }
    });
    assert_eq!(gate.started().await.size(), 1);

    let busy = Reply::read(get(&server, "/api/v1/models", &alice).await).await;
    assert_eq!(busy.expect_error(429), "client_busy");
    assert_eq!(busy.headers["retry-after"], "1");
    let v2 = Reply::read(get(&server, "/v2/models/gated", &alice).await).await;
    assert_eq!(v2.status.as_u16(), 429);
    assert!(v2.body["error"].is_string(), "{}", v2.body);
    let refused = kserve.server_live(live_as("alice-secret-1")).await;
    assert_eq!(refused.unwrap_err().code(), Code::ResourceExhausted);

    // Bob is not held back by Alice.
    assert_eq!(get(&server, "/api/v1/models", &bob).await.status(), 200);
    assert!(
        kserve
            .server_live(live_as("bob-secret-2"))
            .await
            .unwrap()
            .into_inner()
            .live
    );

    // Her call answered, her slot is free again: the slot is released
    // before the answer leaves, so no wait is needed here.
    gate.open();
    let answered = held.await.unwrap().unwrap().into_inner();
    assert_eq!(answered.model_name, "gated");
    assert_eq!(get(&server, "/api/v1/models", &alice).await.status(), 200);
    let metrics = get(&server, "/metrics", &bob).await.text().await.unwrap();
    assert!(
        metrics.contains("fovea_requests_refused_busy_total{scope=\"client\"} 3"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_calls_count_against_the_servers_concurrency_cap() {
    let mut gate = Gate::new(&[3, 32, 32], 10);
    let server = TestServer::start_gated(&gate, |config| {
        config.access.max_concurrent_requests = 1;
    })
    .await;
    let grpc = server.grpc().await;
    let mut kserve = GrpcInferenceServiceClient::new(grpc);
    let held = tokio::spawn({
        let mut kserve = kserve.clone();
        async move { kserve.model_infer(gated_infer("")).await }
    });
    assert_eq!(gate.started().await.size(), 1);

    // The one slot is the gRPC call's: HTTP and other gRPC calls are turned away.
    let busy = Reply::read(get(&server, "/api/v1/models", &[]).await).await;
    assert_eq!(busy.expect_error(503), "server_busy");
    let refused = kserve.server_live(ServerLiveRequest {}).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable);
    assert_eq!(get(&server, "/healthz", &[]).await.status(), 200);

    gate.open();
    assert!(held.await.unwrap().is_ok());
    assert_eq!(get(&server, "/api/v1/models", &[]).await.status(), 200);
}

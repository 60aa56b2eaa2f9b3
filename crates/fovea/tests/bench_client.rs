//! `fovea bench` as a user runs it: the real binary against an in-process
//! server (the tiny model on tract), checking the request count, the status
//! accounting and the latency summary of its JSON report; and every client
//! command (`predict`, its streams, `bench`) against a server with keys on.

mod common;

use common::*;
use serde_json::Value;

/// Runs `fovea bench ARGS --json` without blocking the server's runtime.
async fn bench(args: Vec<String>) -> Value {
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_fovea"))
            .arg("bench")
            .args(&args)
            .arg("--json")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "fovea bench failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

fn image_file(dir: &tempfile::TempDir) -> String {
    let path = dir.path().join("img.png");
    std::fs::write(&path, png(3)).unwrap();
    path.to_string_lossy().into_owned()
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn assert_ordered_latencies(report: &Value) {
    let l = &report["latency_ms"];
    let v = |k: &str| l[k].as_f64().unwrap();
    assert!(v("min") > 0.0, "{l}");
    assert!(v("min") <= v("p50") && v("p50") <= v("p90"), "{l}");
    assert!(v("p90") <= v("p99") && v("p99") <= v("max"), "{l}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_loop_sends_exactly_the_requested_count_and_all_succeed() {
    let server = TestServer::start(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let image = image_file(&dir);
    let report = bench(args(&[
        "--url",
        &server.base,
        "--image",
        &image,
        "--concurrency",
        "3",
        "--requests",
        "17",
    ]))
    .await;
    assert_eq!(report["mode"], "closed");
    assert_eq!(report["requests"], 17);
    assert_eq!(report["ok"], 17);
    assert_eq!(report["errors"], serde_json::json!({}));
    assert!(report["requests_per_second"].as_f64().unwrap() > 0.0);
    assert_ordered_latencies(&report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_requests_are_counted_by_http_status_not_as_successes() {
    let server = TestServer::start(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let image = image_file(&dir);
    let report = bench(args(&[
        "--url",
        &server.base,
        "--image",
        &image,
        "--model",
        "no-such-model",
        "--concurrency",
        "2",
        "--requests",
        "5",
    ]))
    .await;
    assert_eq!(report["requests"], 5);
    assert_eq!(report["ok"], 0);
    assert_eq!(report["errors"], serde_json::json!({ "404": 5 }));
    assert_eq!(report["requests_per_second"], 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_and_open_loop_requests_are_answered_and_counted() {
    let server = TestServer::start(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let image = image_file(&dir);
    let multipart = bench(args(&[
        "--url",
        &server.base,
        "--image",
        &image,
        "--multipart",
        "--requests",
        "4",
    ]))
    .await;
    assert_eq!(multipart["ok"], 4, "{multipart}");
    let open = bench(args(&[
        "--url",
        &server.base,
        "--image",
        &image,
        "--rate",
        "200",
        "--arrivals",
        "fixed",
        "--requests",
        "12",
    ]))
    .await;
    assert_eq!(open["mode"], "open");
    assert_eq!(open["requests"], 12);
    assert_eq!(open["ok"], 12, "{open}");
    assert_ordered_latencies(&open);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tensor_protocols_reach_the_model_by_name() {
    let server = TestServer::start(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let image = image_file(&dir);
    for protocol in ["tf-rest", "v2-rest"] {
        for tensor in [false, true] {
            let mut list = args(&[
                "--url",
                &server.base,
                "--image",
                &image,
                "--protocol",
                protocol,
                "--model",
                "tiny",
                "--preset",
                "cifar10",
                "--requests",
                "3",
            ]);
            if tensor {
                list.push("--tensor".into());
            }
            let report = bench(list).await;
            assert_eq!(report["ok"], 3, "{protocol} tensor={tensor}: {report}");
        }
    }
}

/// Runs `fovea ARGS` with no key in the environment; the exit status is the caller's to check.
async fn fovea(args: Vec<String>) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_fovea"))
            .args(&args)
            .env_remove("FOVEA_API_KEY")
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_command_sends_the_api_key_to_a_server_with_keys_on() {
    let keys = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(keys.path(), "ops:ops-secret-1\n").unwrap();
    let server = TestServer::start(|config| {
        config.access.api_keys_file = Some(keys.path().to_path_buf());
    })
    .await;
    let grpc = format!("http://{}", server.serve_grpc().await);
    let dir = tempfile::tempdir().unwrap();
    let image = image_file(&dir);
    let frames = tempfile::tempdir().unwrap();
    for i in 0..3u32 {
        std::fs::write(frames.path().join(format!("{i:03}.png")), png(i)).unwrap();
    }
    let frames = frames.path().to_string_lossy().into_owned();
    let key = ["--api-key", "ops-secret-1"];

    let predict = ["predict", "--server", &server.base, "--json", &image];
    let refused = fovea(args(&predict)).await;
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && stderr.contains("401") && stderr.contains("unauthenticated"),
        "{stderr}"
    );
    let answered = fovea(args(&[&predict[..], &key].concat())).await;
    assert!(
        answered.status.success(),
        "{}",
        String::from_utf8_lossy(&answered.stderr)
    );
    let answer: Value = serde_json::from_slice(&answered.stdout).unwrap();
    assert!(
        answer["class"].as_str().is_some_and(|c| !c.is_empty()),
        "{answer}"
    );

    let streamed = [
        "predict",
        "--server",
        &server.base,
        "--frames",
        &frames,
        "--policy",
        "all",
        "--json",
    ];
    let refused = fovea(args(&streamed)).await;
    assert!(!refused.status.success());
    let answered = fovea(args(&[&streamed[..], &key].concat())).await;
    assert!(
        answered.status.success(),
        "{}",
        String::from_utf8_lossy(&answered.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&answered.stdout).lines().count(), 3);

    for (url, protocol) in [
        (&server.base, "simple"),
        (&server.base, "v2-rest"),
        (&grpc, "v2-grpc"),
        (&grpc, "tf-grpc"),
    ] {
        let run = [
            "--url",
            url,
            "--protocol",
            protocol,
            "--model",
            "tiny",
            "--image",
            &image,
            "--requests",
            "4",
        ];
        let report = bench(args(&[&run[..], &key].concat())).await;
        assert_eq!(report["ok"], 4, "{protocol}: {report}");
    }
    let unkeyed = bench(args(&[
        "--url",
        &server.base,
        "--model",
        "tiny",
        "--image",
        &image,
        "--requests",
        "2",
    ]))
    .await;
    assert_eq!(unkeyed["ok"], 0, "{unkeyed}");
    assert_eq!(unkeyed["errors"]["401"], 2, "{unkeyed}");
    let streams = bench(args(&[
        "--url",
        &server.base,
        "--model",
        "tiny",
        "--image",
        &image,
        "--streams",
        "2",
        "--fps",
        "20",
        "--duration-secs",
        "0.5",
        "--api-key",
        "ops-secret-1",
    ]))
    .await;
    assert!(streams["answered"].as_u64().unwrap() > 0, "{streams}");
    assert_eq!(streams["failed"], 0, "{streams}");
}

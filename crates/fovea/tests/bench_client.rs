//! `fovea bench` as a user runs it: the real binary against an in-process
//! server (the tiny model on tract), checking the request count, the status
//! accounting and the latency summary of its JSON report.

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

//! Admission control under a flood, and the bundled model on real images.
//! Its own test binary: the flood test reads process-wide metrics.

mod common;

use std::io::Cursor;
use std::path::Path;

use common::{Reply, TestServer, make_repository, shared_dir, start_engine};
use fovea_engine::BackendChoice;
use fovea_server::{AppState, ServerConfig};
use image::{ImageFormat, Rgb, RgbImage};

/// A photo-sized JPEG whose decode takes long enough to hold a decode thread
/// while the rest of the flood arrives.
fn large_jpeg(seed: u32) -> Vec<u8> {
    let image = RgbImage::from_fn(2400, 1800, |x, y| {
        let v = x.wrapping_mul(31) ^ y.wrapping_mul(17) ^ seed;
        Rgb([v as u8, (v >> 3) as u8, (v >> 5) as u8])
    });
    let mut bytes = Cursor::new(Vec::new());
    image.write_to(&mut bytes, ImageFormat::Jpeg).unwrap();
    bytes.into_inner()
}

/// The `fovea_preprocess_seconds_count` samples of model `tiny` in a scrape.
fn preprocess_count(scrape: &str) -> u64 {
    preprocess_count_of(scrape, "tiny")
}

/// The `fovea_preprocess_seconds_count` samples of `model` in a scrape (each
/// test of this binary uses its own model: the metrics are process-wide).
fn preprocess_count_of(scrape: &str, model: &str) -> u64 {
    let label = format!("model=\"{model}\"");
    scrape
        .lines()
        .filter(|line| line.starts_with("fovea_preprocess_seconds_count") && line.contains(&label))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_beyond_the_queue_is_refused_with_503_before_any_decoding() {
    let repo = make_repository();
    let config_path = repo.path().join("tiny/config.toml");
    let config = std::fs::read_to_string(&config_path).unwrap();
    std::fs::write(&config_path, format!("{config}queue_capacity = 2\n")).unwrap();
    // Before the engine, as `fovea serve` does: versions register their metrics when they load.
    let metrics = fovea_server::telemetry::install_metrics().unwrap();
    let engine = start_engine(repo.path(), BackendChoice::Tract).await;
    let config = ServerConfig {
        decode_threads: 1,
        ..ServerConfig::default()
    };
    let state = AppState::with_engine(engine, &config)
        .unwrap()
        .with_metrics(metrics);
    let server = TestServer::serve(state, Some(repo), config.shutdown_timeout).await;

    let jpeg = large_jpeg(7);
    let flood = 32;
    let replies = futures_util::future::join_all((0..flood).map(|_| {
        let server = &server;
        let jpeg = jpeg.clone();
        async move { server.post("?model=tiny", "image/jpeg", jpeg).await }
    }))
    .await;

    let ok: Vec<&Reply> = replies.iter().filter(|r| r.status == 200).collect();
    let refused: Vec<&Reply> = replies.iter().filter(|r| r.status == 503).collect();
    assert_eq!(ok.len() + refused.len(), flood, "only 200s and 503s");
    assert!(!ok.is_empty(), "admitted requests are answered");
    assert!(
        !refused.is_empty(),
        "a flood of {flood} overflows a queue of 2"
    );
    for reply in &refused {
        assert_eq!(reply.expect_error(503), "queue_full");
        assert_eq!(reply.headers["retry-after"], "1");
    }
    let first = &ok[0].body["predictions"];
    assert!(ok.iter().all(|r| &r.body["predictions"] == first));

    // Refused requests were never decoded: one preprocessing per answer.
    let scrape = server.scrape_metrics().await;
    assert_eq!(preprocess_count(&scrape), ok.len() as u64, "{scrape}");
    let stats = server
        .state
        .engine()
        .unwrap()
        .model("tiny", None)
        .unwrap()
        .stats();
    assert_eq!(stats.refused_queue_full, refused.len() as u64);

    // The room is given back: once the flood is over, requests are admitted again.
    for _ in 0..3 {
        let reply = server.post("?model=tiny", "image/jpeg", jpeg.clone()).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bundled_model_recognises_real_cifar10_test_images() {
    let Some(shared) = shared_dir() else {
        return;
    };
    let test_dir = shared.join("data/cifar10/test");
    let bundled = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models");
    let engine = start_engine(&bundled, BackendChoice::Tract).await;
    let state = AppState::with_engine(engine, &ServerConfig::default()).unwrap();
    let server = TestServer::serve(state, None, ServerConfig::default().shutdown_timeout).await;

    let classes = fovea_core::Labels::cifar10();
    // Version 5 is fp32; the default, version 6, is its int8 quantisation.
    for query in [
        "?model=resnet18-cifar10&version=5",
        "?model=resnet18-cifar10",
    ] {
        let (mut correct, mut total) = (0, 0);
        for class in classes.as_slice() {
            let mut files: Vec<_> = std::fs::read_dir(test_dir.join(class))
                .unwrap()
                .map(|entry| entry.unwrap().path())
                .collect();
            files.sort();
            for file in files.iter().take(20) {
                let reply = server
                    .post(query, "image/jpeg", std::fs::read(file).unwrap())
                    .await;
                assert_eq!(reply.status, 200, "{}: {}", file.display(), reply.body);
                total += 1;
                if reply.body["class"] == class.as_str() {
                    correct += 1;
                }
            }
        }
        let accuracy = f64::from(correct) / f64::from(total);
        println!("bundled model {query}: {correct}/{total} CIFAR-10 test images right");
        // Both score about 88.7% on all 10,000 (models/resnet18-cifar10/README.md);
        // 200 images vary by a few points.
        assert!(accuracy >= 0.82, "{query}: {correct}/{total}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_classify_larger_than_the_queue_is_refused_before_any_example_is_decoded() {
    use base64::Engine as _;
    let repo = make_repository();
    let config_path = repo.path().join("tiny-b/config.toml");
    let config = std::fs::read_to_string(&config_path).unwrap();
    std::fs::write(&config_path, format!("{config}queue_capacity = 2\n")).unwrap();
    let metrics = fovea_server::telemetry::install_metrics().unwrap();
    let engine = start_engine(repo.path(), BackendChoice::Tract).await;
    let config = ServerConfig::default();
    let state = AppState::with_engine(engine, &config)
        .unwrap()
        .with_metrics(metrics);
    let server = TestServer::serve(state, Some(repo), config.shutdown_timeout).await;
    let before = preprocess_count_of(&server.scrape_metrics().await, "tiny-b");

    // Three examples for a queue of two can never fit: 413, not a 503 that
    // invites a retry, and none is decoded.
    let b64 = base64::engine::general_purpose::STANDARD.encode(large_jpeg(3));
    let examples: Vec<_> = (0..3)
        .map(|_| serde_json::json!({"image": {"b64": b64}}))
        .collect();
    let response = server
        .client
        .post(server.url("/v1/models/tiny-b:classify"))
        .json(&serde_json::json!({ "examples": examples }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413, "{:?}", response.text().await);
    assert_eq!(
        preprocess_count_of(&server.scrape_metrics().await, "tiny-b"),
        before
    );

    // Two fit, and are answered.
    let response = server
        .client
        .post(server.url("/v1/models/tiny-b:classify"))
        .json(&serde_json::json!({ "examples": &examples[..2] }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        preprocess_count_of(&server.scrape_metrics().await, "tiny-b"),
        before + 2
    );
}

//! The engine with the real tiny model on tract: repository scanning and
//! version policy, the dynamic batcher's guarantees, hot reload, shutdown.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use fovea_core::{ErrorKind, FoveaError, Labels, ModelConfig, PreprocessConfig, Tensor};
use fovea_engine::{
    BackendChoice, Engine, EngineError, EngineOptions, ModelSource, ModelState, open_backend,
};

fn options() -> EngineOptions {
    EngineOptions {
        backend: BackendChoice::Tract,
        threads: 1,
        poll_interval: None,
        ..EngineOptions::default()
    }
}

async fn start(root: &Path) -> Engine {
    Engine::start(ModelSource::Repository(root.to_path_buf()), options())
        .await
        .unwrap()
}

/// One repository with a single tiny model configured with `batching`.
async fn engine_with(batching: &str) -> (tempfile::TempDir, Engine) {
    let root = tempfile::tempdir().unwrap();
    add_model(root.path(), "tiny", &tiny_config(batching), &[1]);
    let engine = start(root.path()).await;
    assert!(engine.is_ready(), "{:?}", engine.statuses());
    (root, engine)
}

fn later(ms: u64) -> Instant {
    Instant::now() + Duration::from_millis(ms)
}

fn state_of(engine: &Engine, name: &str, version: u64) -> Option<ModelState> {
    engine
        .statuses()
        .into_iter()
        .find(|s| s.name == name && s.version == version)
        .map(|s| s.state)
}

fn failure_of(engine: &Engine, name: &str, version: u64) -> String {
    match state_of(engine, name, version) {
        Some(ModelState::Failed(reason)) => reason,
        other => panic!("{name} v{version}: expected Failed, got {other:?}"),
    }
}

/// Sends every input to `model` at once and checks each answer against the
/// tiny model run directly, row for row.
async fn infer_all_at_once_and_compare(model: &fovea_engine::ModelHandle, inputs: Vec<Tensor>) {
    let mut reference = open_backend(BackendChoice::Tract, &tiny_model(), 1).unwrap();
    let expected: Vec<Tensor> = inputs.iter().map(|x| reference.run(x).unwrap()).collect();
    let tasks: Vec<_> = inputs
        .into_iter()
        .map(|input| {
            let model = model.clone();
            tokio::spawn(async move { model.infer(input, later(5000)).await })
        })
        .collect();
    for (task, expected) in tasks.into_iter().zip(expected) {
        let output = task.await.unwrap().unwrap();
        assert_eq!(output.shape(), expected.shape());
        assert!(max_abs_diff(output.data(), expected.data()) < 1e-4);
    }
}

#[tokio::test]
async fn concurrent_requests_get_their_own_rows_back() {
    let (_root, engine) =
        engine_with("[batching]\nmax_batch_size = 8\nmax_queue_delay_us = 20000").await;
    let model = engine.model("tiny", None).unwrap();
    let inputs: Vec<Tensor> = (0..12).map(|i| tiny_input(1 + i % 2, i)).collect();
    infer_all_at_once_and_compare(&model, inputs).await;
    let stats = model.stats();
    assert_eq!(stats.items, 18);
    assert!(stats.batches < 12, "requests were not batched: {stats:?}");
}

/// Names of this process's threads (Linux truncates them to 15 bytes).
#[cfg(target_os = "linux")]
fn thread_names() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .map(|name| name.trim().to_string())
        .collect()
}

#[tokio::test]
async fn two_instances_serve_one_queue_and_stop_with_the_engine() {
    // A name no other test uses, so that its threads are this test's alone.
    let root = tempfile::tempdir().unwrap();
    let config = tiny_config("[batching]\nmax_batch_size = 4\n\n[runtime]\ninstances = 2");
    add_model(root.path(), "twin", &config, &[1]);
    let engine = start(root.path()).await;
    assert!(engine.is_ready(), "{:?}", engine.statuses());
    let model = engine.model("twin", None).unwrap();
    // The second instance runs on a thread of its own, named after the version;
    // it is started just after the version reports ready.
    #[cfg(target_os = "linux")]
    {
        let started = Instant::now();
        while !thread_names().iter().any(|n| n == "fovea-twin-v1-1") {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "{:?}",
                thread_names()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    infer_all_at_once_and_compare(&model, (0..40).map(|i| tiny_input(1, i)).collect()).await;
    let stats = model.stats();
    assert_eq!(stats.items, 40);
    assert!(stats.largest_batch <= 4, "{stats:?}");
    drop(model);
    engine.shutdown().await;
    // A scoped thread counts as joined when its closure returns; the OS thread
    // leaves /proc a moment later, so its disappearance is waited for (bounded).
    #[cfg(target_os = "linux")]
    {
        let stopped = Instant::now();
        while thread_names().iter().any(|n| n.starts_with("fovea-twin")) {
            assert!(
                stopped.elapsed() < Duration::from_secs(5),
                "inference threads outlived the engine: {:?}",
                thread_names()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

#[tokio::test]
async fn zero_instances_is_a_config_error_naming_the_field() {
    let root = tempfile::tempdir().unwrap();
    add_model(
        root.path(),
        "tiny",
        &tiny_config("[runtime]\ninstances = 0"),
        &[1],
    );
    let engine = start(root.path()).await;
    let reason = failure_of(&engine, "tiny", 1);
    assert!(reason.contains("runtime.instances"), "{reason}");
}

#[tokio::test]
async fn max_batch_size_is_never_exceeded() {
    let (_root, engine) =
        engine_with("[batching]\nmax_batch_size = 4\nmax_queue_delay_us = 50000").await;
    let model = engine.model("tiny", None).unwrap();
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let model = model.clone();
            tokio::spawn(async move { model.infer(tiny_input(1, i), later(5000)).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let stats = model.stats();
    assert_eq!(stats.items, 20);
    assert_eq!(stats.largest_batch, 4, "{stats:?}");
    assert!(stats.batches >= 5, "{stats:?}");
}

#[tokio::test]
async fn a_request_larger_than_max_batch_runs_alone_and_unsplit() {
    let (_root, engine) =
        engine_with("[batching]\nmax_batch_size = 4\nmax_queue_delay_us = 50000").await;
    let model = engine.model("tiny", None).unwrap();
    let big = {
        let model = model.clone();
        tokio::spawn(async move { model.infer(tiny_input(6, 1), later(5000)).await })
    };
    let small: Vec<_> = (0..3)
        .map(|i| {
            let model = model.clone();
            tokio::spawn(async move { model.infer(tiny_input(1, i), later(5000)).await })
        })
        .collect();
    assert_eq!(big.await.unwrap().unwrap().shape(), &[6, 10]);
    for task in small {
        assert_eq!(task.await.unwrap().unwrap().shape(), &[1, 10]);
    }
    let stats = model.stats();
    assert_eq!(stats.items, 9);
    // 6 with any companion would make a batch of at least 7.
    assert_eq!(stats.largest_batch, 6, "{stats:?}");
}

#[tokio::test]
async fn preferred_batch_size_cuts_the_batch_before_the_delay() {
    let (_root, engine) = engine_with(
        "[batching]\nmax_batch_size = 8\npreferred_batch_sizes = [2]\nmax_queue_delay_us = 2000000",
    )
    .await;
    let model = engine.model("tiny", None).unwrap();
    let started = Instant::now();
    let (a, b) = tokio::join!(
        model.infer(tiny_input(1, 0), later(5000)),
        model.infer(tiny_input(1, 1), later(5000))
    );
    a.unwrap();
    b.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "waited for the full delay"
    );
    assert_eq!(model.stats().largest_batch, 2);
}

#[tokio::test]
async fn a_full_queue_refuses_at_once() {
    let (_root, engine) = engine_with(
        "[batching]\nmax_batch_size = 8\nqueue_capacity = 4\nmax_queue_delay_us = 1000000",
    )
    .await;
    let model = engine.model("tiny", None).unwrap();
    let waiting: Vec<_> = (0..4)
        .map(|i| {
            let model = model.clone();
            tokio::spawn(async move { model.infer(tiny_input(1, i), later(10_000)).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let asked = Instant::now();
    let error = model
        .infer(tiny_input(1, 9), later(10_000))
        .await
        .unwrap_err();
    assert!(
        asked.elapsed() < Duration::from_millis(50),
        "the refusal waited"
    );
    assert!(
        matches!(error, EngineError::QueueFull { capacity: 4, .. }),
        "{error}"
    );
    assert_eq!(error.kind(), ErrorKind::Unavailable);
    for task in waiting {
        task.await.unwrap().unwrap();
    }
    assert_eq!(model.stats().refused_queue_full, 1);
}

#[tokio::test]
async fn a_request_bigger_than_the_queue_is_too_large() {
    let (_root, engine) = engine_with("[batching]\nqueue_capacity = 4").await;
    let model = engine.model("tiny", None).unwrap();
    let error = model
        .infer(tiny_input(5, 0), later(5000))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::TooLarge, "{error}");
}

#[tokio::test]
async fn a_past_deadline_is_answered_without_running() {
    let (_root, engine) = engine_with("").await;
    let model = engine.model("tiny", None).unwrap();
    let error = model
        .infer(tiny_input(1, 0), Instant::now())
        .await
        .unwrap_err();
    assert!(matches!(error, EngineError::DeadlineExceeded));
    assert_eq!(error.kind(), ErrorKind::Timeout);
    let stats = model.stats();
    assert_eq!((stats.batches, stats.dropped_deadline), (0, 1));
}

#[tokio::test]
async fn a_deadline_that_passes_in_the_queue_is_dropped_before_inference() {
    let (_root, engine) = engine_with("[batching]\nmax_queue_delay_us = 300000").await;
    let model = engine.model("tiny", None).unwrap();
    let error = model.infer(tiny_input(1, 0), later(50)).await.unwrap_err();
    assert!(matches!(error, EngineError::DeadlineExceeded), "{error}");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let stats = model.stats();
    assert_eq!(stats.batches, 0, "the expired request ran: {stats:?}");
    assert_eq!((stats.dropped_deadline, stats.dropped_cancelled), (1, 0));
}

#[tokio::test]
async fn an_abandoned_request_is_dropped_before_inference_and_counted() {
    let (_root, engine) = engine_with("[batching]\nmax_queue_delay_us = 300000").await;
    let model = engine.model("tiny", None).unwrap();
    let caller = {
        let model = model.clone();
        tokio::spawn(async move { model.infer(tiny_input(1, 0), later(5000)).await })
    };
    tokio::time::sleep(Duration::from_millis(30)).await;
    caller.abort();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let stats = model.stats();
    assert_eq!(
        (stats.batches, stats.dropped_cancelled),
        (0, 1),
        "{stats:?}"
    );
}

#[tokio::test]
async fn a_wrong_input_shape_is_refused_before_queueing() {
    let (_root, engine) = engine_with("").await;
    let model = engine.model("tiny", None).unwrap();
    for shape in [vec![1, 3, 32, 31], vec![3, 32, 32], vec![0, 3, 32, 32]] {
        let input = Tensor::zeros(shape.clone());
        let error = model.infer(input, later(5000)).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::InvalidInput, "{shape:?}: {error}");
    }
    assert_eq!(model.stats().batches, 0);
}

#[tokio::test]
async fn unknown_models_and_versions_are_not_found() {
    let (_root, engine) = engine_with("").await;
    let error = engine.model("nope", None).unwrap_err();
    assert!(matches!(error, EngineError::ModelNotFound(_)));
    let error = engine.model("tiny", Some(7)).unwrap_err();
    assert!(matches!(
        error,
        EngineError::VersionNotFound { version: 7, .. }
    ));
    assert_eq!(error.kind(), ErrorKind::NotFound);
    assert_eq!(engine.model("tiny", Some(1)).unwrap().version(), 1);
    assert_eq!(engine.default_model().unwrap().name(), "tiny");
    assert_eq!(engine.backend_name(), "tract");
}

#[tokio::test]
async fn a_bad_config_fails_that_model_only_and_names_the_file() {
    let root = tempfile::tempdir().unwrap();
    add_model(root.path(), "good", &tiny_config(""), &[1]);
    add_model(root.path(), "broken", "[input]\nname = 3\n", &[1]);
    let engine = start(root.path()).await;
    let reason = failure_of(&engine, "broken", 1);
    assert!(reason.contains("broken/config.toml"), "{reason}");
    assert_eq!(state_of(&engine, "good", 1), Some(ModelState::Available));
    assert!(engine.model("good", None).is_ok());
    assert!(
        !engine.is_ready(),
        "a failed model must keep the engine unready"
    );
}

#[tokio::test]
async fn a_missing_model_file_fails_that_version_naming_it() {
    let root = tempfile::tempdir().unwrap();
    let dir = add_model(
        root.path(),
        "tiny",
        &tiny_config("version_policy = \"all\""),
        &[1],
    );
    std::fs::create_dir(dir.join("2")).unwrap();
    let engine = start(root.path()).await;
    let reason = failure_of(&engine, "tiny", 2);
    assert!(reason.contains("2/model.onnx"), "{reason}");
    assert_eq!(state_of(&engine, "tiny", 1), Some(ModelState::Available));
    assert_eq!(engine.model("tiny", None).unwrap().version(), 1);
    assert!(matches!(
        engine.model("tiny", Some(2)).unwrap_err(),
        EngineError::NotReady(_)
    ));
}

#[tokio::test]
async fn labels_that_disagree_with_the_model_fail_the_load() {
    let root = tempfile::tempdir().unwrap();
    let dir = add_model(root.path(), "tiny", &tiny_config(""), &[1]);
    std::fs::write(dir.join("labels.txt"), "cat\ndog\n").unwrap();
    let engine = start(root.path()).await;
    let reason = failure_of(&engine, "tiny", 1);
    assert!(
        reason.contains("labels.txt") && reason.contains("10 classes"),
        "{reason}"
    );
}

#[tokio::test]
async fn an_input_shape_that_disagrees_with_the_model_fails_the_load() {
    let root = tempfile::tempdir().unwrap();
    let config = tiny_config("").replace("[3, 32, 32]", "[3, 64, 64]");
    add_model(root.path(), "tiny", &config, &[1]);
    let engine = start(root.path()).await;
    let reason = failure_of(&engine, "tiny", 1);
    assert!(
        reason.contains("input.shape") && reason.contains("model.onnx"),
        "{reason}"
    );
}

#[tokio::test]
async fn version_policy_selects_the_served_versions() {
    let root = tempfile::tempdir().unwrap();
    add_model(
        root.path(),
        "latest",
        &tiny_config("version_policy = { latest = 2 }"),
        &[1, 2, 3],
    );
    add_model(
        root.path(),
        "specific",
        &tiny_config("version_policy = { specific = [1, 3] }"),
        &[1, 2, 3],
    );
    std::fs::create_dir(root.path().join("latest/not-a-version")).unwrap();
    let engine = start(root.path()).await;
    let served = |name: &str| -> Vec<u64> {
        engine
            .statuses()
            .into_iter()
            .filter(|s| s.name == name && s.state == ModelState::Available)
            .map(|s| s.version)
            .collect()
    };
    assert_eq!(served("latest"), vec![2, 3]);
    assert_eq!(served("specific"), vec![1, 3]);
    assert_eq!(engine.model("latest", None).unwrap().version(), 3);
    assert!(engine.is_ready());
}

#[tokio::test]
async fn a_single_file_is_served_as_version_one_named_after_the_file() {
    let config = ModelConfig::image_classifier("x", "y", PreprocessConfig::cifar10());
    let source = ModelSource::SingleFile {
        path: tiny_model(),
        config,
        labels: Labels::cifar10(),
    };
    let engine = Engine::start(source, options()).await.unwrap();
    let model = engine.model("tiny-cifar", None).unwrap();
    assert_eq!(model.version(), 1);
    assert_eq!(
        model.config().input.name,
        "input",
        "the model's own names win"
    );
    assert_eq!(model.num_classes(), 10);
    let output = model.infer(tiny_input(2, 0), later(5000)).await.unwrap();
    assert_eq!(output.shape(), &[2, 10]);
}

#[tokio::test]
async fn a_missing_repository_is_an_error() {
    let result = Engine::start(
        ModelSource::Repository("/nonexistent/models".into()),
        options(),
    )
    .await;
    assert!(matches!(result, Err(EngineError::Load(m)) if m.contains("/nonexistent/models")));
}

async fn wait_for(engine: &Engine, what: &str, done: impl Fn(&Engine) -> bool) {
    let until = Instant::now() + Duration::from_secs(20);
    while !done(engine) {
        assert!(
            Instant::now() < until,
            "timed out waiting for {what}: {:?}",
            engine.statuses()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn hot_reload_serves_a_new_version_then_unloads_the_old_one() {
    let root = tempfile::tempdir().unwrap();
    let dir = add_model(root.path(), "tiny", &tiny_config(""), &[1]);
    let engine = Engine::start(
        ModelSource::Repository(root.path().to_path_buf()),
        EngineOptions {
            poll_interval: Some(Duration::from_millis(100)),
            ..options()
        },
    )
    .await
    .unwrap();
    let v1 = engine.model("tiny", None).unwrap();
    assert_eq!(v1.version(), 1);

    add_version(&dir, 2);
    wait_for(&engine, "version 2 to replace version 1", |e| {
        e.model("tiny", None).is_ok_and(|m| m.version() == 2) && state_of(e, "tiny", 1).is_none()
    })
    .await;
    let output = engine
        .model("tiny", None)
        .unwrap()
        .infer(tiny_input(1, 0), later(5000))
        .await
        .unwrap();
    assert_eq!(output.shape(), &[1, 10]);
    // The unloaded version refuses new work instead of hanging.
    let error = v1.infer(tiny_input(1, 0), later(5000)).await.unwrap_err();
    assert!(
        matches!(error, EngineError::Unloading { version: 1, .. }),
        "{error}"
    );

    std::fs::write(
        dir.join("labels.txt"),
        CIFAR_LABELS.replace("cat", "kitten"),
    )
    .unwrap();
    wait_for(&engine, "the changed labels to reload", |e| {
        e.model("tiny", None)
            .is_ok_and(|m| m.labels().name(3) == "kitten")
    })
    .await;

    std::fs::remove_dir_all(root.path().join("tiny")).unwrap();
    wait_for(&engine, "the removed model to unload", |e| {
        e.statuses().is_empty()
    })
    .await;
    engine.shutdown().await;
}

#[tokio::test]
async fn shutdown_answers_queued_requests_first() {
    let (_root, engine) = engine_with("[batching]\nmax_queue_delay_us = 200000").await;
    let model = engine.model("tiny", None).unwrap();
    let queued = {
        let model = model.clone();
        tokio::spawn(async move { model.infer(tiny_input(1, 0), later(5000)).await })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    engine.shutdown().await;
    assert_eq!(queued.await.unwrap().unwrap().shape(), &[1, 10]);
    assert!(!engine.is_ready());
    assert!(engine.model("tiny", None).is_err());
    let error = model
        .infer(tiny_input(1, 0), later(5000))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unavailable);
}

#[tokio::test]
async fn the_bundled_model_loads_with_cifar10_labels_and_preprocessing() {
    // Copied alone, so that models added to models/ later do not slow this down.
    let bundled = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/resnet18-cifar10");
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("resnet18-cifar10");
    for file in ["config.toml", "labels.txt", "5/model.onnx", "6/model.onnx"] {
        let to = dir.join(file);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(bundled.join(file), to).unwrap();
    }
    let engine = start(root.path()).await;
    assert!(engine.is_ready(), "{:?}", engine.statuses());
    // Version 5 is fp32, version 6 its int8 quantisation; both load, 6 is the default.
    assert!(engine.model("resnet18-cifar10", Some(5)).is_ok());
    let model = engine.model("resnet18-cifar10", None).unwrap();
    assert_eq!(model.version(), 6);
    assert_eq!(model.labels().name(0), "airplane");
    assert_eq!(model.labels().name(9), "truck");
    assert_eq!(model.config().preprocess, PreprocessConfig::cifar10());
}

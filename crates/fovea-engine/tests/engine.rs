//! The engine with the real tiny model on tract: repository scanning and
//! version policy, hot reload, answers row for row. The dynamic batcher's
//! guarantees (batch sizes, admission, deadlines, shutdown) are checked on
//! fovea-testkit's gated backend, which the test lets run batch by batch, so
//! they order events by hand instead of sleeping.

mod common;

use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use common::*;
use fovea_core::{
    BatchingConfig, ErrorKind, FoveaError, Labels, ModelConfig, PreprocessConfig, Tensor,
};
use fovea_engine::{
    BackendChoice, Engine, EngineError, EngineOptions, ModelHandle, ModelSource, ModelState,
    open_backend,
};
use fovea_testkit::{Gate, GatedBackend, GatedRepository};

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

/// A deadline no test reaches: the request must not expire.
fn far() -> Instant {
    later(600_000)
}

/// Classes the gated model answers (as many as the CIFAR labels).
const CLASSES: usize = 10;

/// An engine serving the gated backend as model `gated` with `batching` and
/// `instances`, its gate held (every batch waits for the test) once the
/// engine has warmed it up.
async fn gated_engine(batching: BatchingConfig, instances: usize) -> (Engine, ModelHandle, Gate) {
    let gate = Gate::new(&[3, 32, 32], CLASSES);
    let mut config = ModelConfig::image_classifier("input", "logits", PreprocessConfig::cifar10());
    config.name = Some("gated".into());
    config.batching = batching;
    config.runtime.instances = Some(instances);
    let source = ModelSource::Backend {
        config,
        labels: Labels::cifar10(),
        factory: gate.factory(),
    };
    let engine = Engine::start(source, options()).await.unwrap();
    assert!(engine.is_ready(), "{:?}", engine.statuses());
    gate.hold();
    let model = engine.model("gated", None).unwrap();
    (engine, model, gate)
}

/// A request's answer, to await later.
type Answer = Pin<Box<dyn Future<Output = Result<Tensor, EngineError>> + Send>>;

/// A request for `input`, not yet sent.
fn request(model: &ModelHandle, input: Tensor, deadline: Instant) -> Answer {
    let model = model.clone();
    Box::pin(async move { model.infer(input, deadline).await })
}

/// Polls `future` once, without a waker: what it does before it first
/// waits is done when this returns.
fn poll_once<F: Future + Unpin>(future: &mut F) -> Poll<F::Output> {
    Pin::new(future).poll(&mut Context::from_waker(Waker::noop()))
}

/// Sends `input` to `model` and returns its pending answer. `infer` queues
/// the request on its first poll, so it is in the queue when this returns,
/// in the order of the calls, with no scheduler in between.
fn queue(model: &ModelHandle, input: Tensor, deadline: Instant) -> Answer {
    let mut answer = request(model, input, deadline);
    if let Poll::Ready(refused) = poll_once(&mut answer) {
        panic!("the request was answered instead of queued: {refused:?}");
    }
    answer
}

/// Awaits `answer` and checks it is the gated backend's answer to `input`.
async fn assert_answers(answer: Answer, input: &Tensor) {
    assert_eq!(
        answer.await.unwrap(),
        GatedBackend::logits(input, CLASSES),
        "another caller's rows, or none"
    );
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
    assert_eq!(model.stats().items, 18);
}

#[tokio::test]
async fn queued_requests_are_batched_in_order_and_each_gets_its_own_rows() {
    let batching = BatchingConfig {
        max_batch_size: 8,
        ..BatchingConfig::default()
    };
    let (_engine, model, mut gate) = gated_engine(batching, 1).await;
    let running = queue(&model, tiny_input(1, 100), far());
    assert_eq!(gate.started().await.size(), 1);
    // Requests of 1, 2, 1, 2, ... rows queue behind the running batch.
    let inputs: Vec<Tensor> = (0..12).map(|i| tiny_input(1 + i % 2, i)).collect();
    let answers: Vec<Answer> = inputs
        .iter()
        .map(|input| queue(&model, input.clone(), far()))
        .collect();
    gate.open();
    running.await.unwrap();
    // Greedy batches of at most 8 rows, a request never split: 1+2+1+2+1
    // (the next 2 would make 9), then 2+1+2+1+2, then 1+2.
    let mut consumed = 0;
    for requests in [5, 5, 2] {
        let batch = gate.started().await;
        let expected: Vec<f32> = inputs[consumed..consumed + requests]
            .iter()
            .flat_map(|input| input.data().iter().copied())
            .collect();
        assert_eq!(
            batch.input.data(),
            &expected[..],
            "batch of requests {consumed}.."
        );
        consumed += requests;
    }
    for (answer, input) in answers.into_iter().zip(&inputs) {
        assert_answers(answer, input).await;
    }
    let stats = model.stats();
    assert_eq!(
        (stats.batches, stats.items, stats.largest_batch),
        (4, 19, 8)
    );
}

#[tokio::test]
async fn two_instances_serve_one_queue_and_stop_with_the_engine() {
    let batching = BatchingConfig {
        max_batch_size: 4,
        ..BatchingConfig::default()
    };
    let (engine, model, mut gate) = gated_engine(batching, 2).await;
    assert_eq!(gate.instances(), 2);
    let (a, b) = (tiny_input(1, 0), tiny_input(1, 1));
    let first = queue(&model, a.clone(), far());
    let first_batch = gate.started().await;
    // The first batch is still running: only a second instance can start this one.
    let second = queue(&model, b.clone(), far());
    let second_batch = gate.started().await;
    // Each instance runs on a thread of its own, named after the version.
    let mut threads = [first_batch.thread, second_batch.thread];
    threads.sort();
    assert_eq!(
        threads,
        [
            Some("fovea-gated-v1".into()),
            Some("fovea-gated-v1-1".into())
        ]
    );
    gate.open();
    assert_answers(first, &a).await;
    assert_answers(second, &b).await;
    assert_eq!(model.stats().items, 2);
    engine.shutdown().await;
    // An instance drops its backend when it stops, so none outlived shutdown.
    assert_eq!(gate.instances(), 0, "an instance outlived the engine");
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
    let batching = BatchingConfig {
        max_batch_size: 4,
        ..BatchingConfig::default()
    };
    let (_engine, model, mut gate) = gated_engine(batching, 1).await;
    let inputs: Vec<Tensor> = (0..20).map(|i| tiny_input(1, i)).collect();
    let first = queue(&model, inputs[0].clone(), far());
    assert_eq!(gate.started().await.size(), 1);
    let rest: Vec<Answer> = inputs[1..]
        .iter()
        .map(|input| queue(&model, input.clone(), far()))
        .collect();
    gate.open();
    // The 19 queued behind the first run as full batches of 4, then the 3 left.
    for (index, size) in [4, 4, 4, 4, 3].into_iter().enumerate() {
        assert_eq!(gate.started().await.size(), size, "batch {}", index + 1);
    }
    assert_answers(first, &inputs[0]).await;
    for (answer, input) in rest.into_iter().zip(&inputs[1..]) {
        assert_answers(answer, input).await;
    }
    let stats = model.stats();
    assert_eq!(
        (stats.batches, stats.items, stats.largest_batch),
        (6, 20, 4)
    );
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
    // A batcher that ignored the preferred size would wait out this delay
    // and then run everything queued together; that size fails the test.
    let batching = BatchingConfig {
        max_batch_size: 8,
        preferred_batch_sizes: vec![2],
        max_queue_delay_us: 10_000_000,
        ..BatchingConfig::default()
    };
    let (engine, model, mut gate) = gated_engine(batching, 1).await;
    // Two rows make the preferred size alone: this batch starts at once.
    let running = queue(&model, tiny_input(2, 0), far());
    assert_eq!(gate.started().await.size(), 2);
    let inputs: Vec<Tensor> = (1..4).map(|i| tiny_input(1, i)).collect();
    let answers: Vec<Answer> = inputs
        .iter()
        .map(|input| queue(&model, input.clone(), far()))
        .collect();
    gate.release();
    running.await.unwrap();
    // Of the three queued, the next batch takes two and does not wait for the third.
    assert_eq!(gate.started().await.size(), 2);
    assert_eq!(model.stats().largest_batch, 2);
    // The third waits for company until the delay ends; shutdown runs it now.
    gate.open();
    engine.shutdown().await;
    assert_eq!(gate.started().await.size(), 1);
    for (answer, input) in answers.into_iter().zip(&inputs) {
        assert_answers(answer, input).await;
    }
}

#[tokio::test]
async fn a_full_queue_refuses_at_once() {
    let batching = BatchingConfig {
        max_batch_size: 8,
        queue_capacity: 4,
        ..BatchingConfig::default()
    };
    let (_engine, model, mut gate) = gated_engine(batching, 1).await;
    let running = queue(&model, tiny_input(1, 0), far());
    assert_eq!(gate.started().await.size(), 1);
    // A running batch has left the queue: four more requests fill it.
    let waiting: Vec<Answer> = (1..5)
        .map(|i| queue(&model, tiny_input(1, i), far()))
        .collect();
    let mut refused = request(&model, tiny_input(1, 9), far());
    // Answered on its first poll: the refusal waits for nothing.
    let Poll::Ready(Err(error)) = poll_once(&mut refused) else {
        panic!("a request beyond the queue's capacity was not refused at once");
    };
    assert!(
        matches!(error, EngineError::QueueFull { capacity: 4, .. }),
        "{error}"
    );
    assert_eq!(error.kind(), ErrorKind::Unavailable);
    gate.open();
    running.await.unwrap();
    for answer in waiting {
        answer.await.unwrap();
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
    let (_engine, model, mut gate) = gated_engine(BatchingConfig::default(), 1).await;
    let running = queue(&model, tiny_input(1, 0), far());
    assert_eq!(gate.started().await.size(), 1);
    // Admission refuses a deadline already past, so this one leaves time to
    // be admitted (200 ms for the next statement), then passes while the
    // request waits behind the running batch.
    let expiring = queue(&model, tiny_input(1, 1), later(200));
    let error = expiring.await.unwrap_err();
    assert!(matches!(error, EngineError::DeadlineExceeded), "{error}");
    let next = tiny_input(1, 2);
    let after = queue(&model, next.clone(), far());
    gate.open();
    running.await.unwrap();
    // Both were collected into the next batch; the expired one was dropped from it.
    assert_eq!(
        gate.started().await.input,
        next,
        "the expired request reached the backend"
    );
    assert_answers(after, &next).await;
    let stats = model.stats();
    assert_eq!(stats.batches, 2, "{stats:?}");
    // Counted once, when its caller stopped waiting, and not as cancelled.
    assert_eq!((stats.dropped_deadline, stats.dropped_cancelled), (1, 0));
}

#[tokio::test]
async fn an_abandoned_request_is_dropped_before_inference_and_counted() {
    let (_engine, model, mut gate) = gated_engine(BatchingConfig::default(), 1).await;
    let running = queue(&model, tiny_input(1, 0), far());
    assert_eq!(gate.started().await.size(), 1);
    let abandoned = queue(&model, tiny_input(1, 1), far());
    // The caller goes away while its request waits in the queue.
    drop(abandoned);
    let next = tiny_input(1, 2);
    let after = queue(&model, next.clone(), far());
    gate.open();
    running.await.unwrap();
    assert_eq!(
        gate.started().await.input,
        next,
        "the abandoned request reached the backend"
    );
    assert_answers(after, &next).await;
    let stats = model.stats();
    assert_eq!(stats.batches, 2, "{stats:?}");
    assert_eq!((stats.dropped_cancelled, stats.dropped_deadline), (1, 0));
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

/// `x` with every row of every channel reversed (a left-right mirror).
fn mirrored(x: &Tensor) -> Tensor {
    let width = x.shape()[3];
    let data = x
        .data()
        .chunks_exact(width)
        .flat_map(|row| row.iter().rev().copied())
        .collect();
    Tensor::new(x.shape().to_vec(), data).unwrap()
}

#[tokio::test]
async fn flip_tta_answers_the_mean_of_the_image_and_its_mirror() {
    let root = tempfile::tempdir().unwrap();
    add_model(root.path(), "plain", &tiny_config(""), &[1]);
    add_model(
        root.path(),
        "flip",
        &tiny_config("[runtime]\ntta = \"flip\""),
        &[1],
    );
    let engine = start(root.path()).await;
    assert!(engine.is_ready(), "{:?}", engine.statuses());
    let (plain, flip) = (
        engine.model("plain", None).unwrap(),
        engine.model("flip", None).unwrap(),
    );
    let input = tiny_input(3, 7);
    let answer = flip.infer(input.clone(), far()).await.unwrap();
    let original = plain.infer(input.clone(), far()).await.unwrap();
    let mirror = plain.infer(mirrored(&input), far()).await.unwrap();
    let expected: Vec<f32> = original
        .data()
        .iter()
        .zip(mirror.data())
        .map(|(a, b)| (a + b) / 2.0)
        .collect();
    assert_eq!(answer.shape(), [3, 10]);
    assert!(max_abs_diff(answer.data(), &expected) < 1e-5);
    // The tiny model is not mirror-symmetric: the test would notice a no-op.
    assert!(max_abs_diff(answer.data(), original.data()) > 1e-3);
    assert_eq!(
        flip.stats().items,
        3,
        "a request is counted once, not per view"
    );
}

#[tokio::test]
async fn flip_tta_on_an_input_that_is_not_an_image_fails_that_model_naming_the_field() {
    let root = tempfile::tempdir().unwrap();
    let config = tiny_config("[runtime]\ntta = \"flip\"").replace("[3, 32, 32]", "[3072]");
    add_model(root.path(), "tiny", &config, &[1]);
    let engine = start(root.path()).await;
    let reason = failure_of(&engine, "tiny", 1);
    assert!(
        reason.contains("runtime.tta") && reason.contains("config.toml"),
        "{reason}"
    );
}

#[tokio::test]
async fn caller_built_backends_are_served_as_version_one_under_their_own_name() {
    let (engine, model, gate) = gated_engine(BatchingConfig::default(), 1).await;
    assert_eq!((model.name(), model.version()), ("gated", 1));
    assert_eq!(model.num_classes(), CLASSES);
    assert_eq!(model.backend_name(), "gated");
    assert_eq!(engine.backend_name(), "gated");
    gate.open();
    let input = tiny_input(2, 0);
    let output = model.infer(input.clone(), far()).await.unwrap();
    assert_eq!(output, GatedBackend::logits(&input, CLASSES));
}

#[tokio::test]
async fn a_caller_built_backend_is_checked_against_its_config() {
    let gate = Gate::new(&[3, 32, 32], CLASSES);
    let mut config = ModelConfig::image_classifier("input", "logits", PreprocessConfig::cifar10());
    config.input.shape = vec![3, 64, 64];
    let source = ModelSource::Backend {
        config,
        labels: Labels::cifar10(),
        factory: gate.factory(),
    };
    let engine = Engine::start(source, options()).await.unwrap();
    // Without a name in its config the model is called `model`.
    let reason = failure_of(&engine, "model", 1);
    assert!(
        reason.contains("input.shape") && reason.contains("caller-built"),
        "{reason}"
    );
    assert_eq!(engine.backend_name(), "none");
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
    // The test keeps version 1's handle past its retirement: the version
    // unloads anyway once its request timeout has passed.
    let dir = add_model(
        root.path(),
        "tiny",
        &tiny_config("[batching]\ntimeout_ms = 200"),
        &[1],
    );
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

/// An engine over `repo`, its versions on gated backends; the repository is
/// scanned only when the test calls `reload`.
async fn gated_repository_engine(repo: &GatedRepository) -> Engine {
    let engine = Engine::start(repo.source(), options()).await.unwrap();
    assert!(engine.is_ready(), "{:?}", engine.statuses());
    engine
}

#[tokio::test]
async fn a_retired_version_answers_every_request_that_resolved_it_before_it_unloads() {
    let root = tempfile::tempdir().unwrap();
    let repo = GatedRepository::new(root.path(), "gated", "\"all\"", "max_batch_size = 4");
    let (mut v1, v2) = (
        Gate::new(&[3, 32, 32], CLASSES),
        Gate::new(&[3, 32, 32], CLASSES),
    );
    repo.add_version(1, &v1);
    let engine = gated_repository_engine(&repo).await;
    v1.hold();
    let inputs: Vec<Tensor> = (0..4).map(|i| tiny_input(1, i)).collect();
    // Four requests of version 1 at four stages: one resolved the version
    // and has not asked for room yet, one was admitted and is still being
    // decoded, one is in the running batch, one waits in the queue.
    let resolved = engine.model("gated", None).unwrap();
    assert_eq!(resolved.version(), 1);
    let admitted = resolved.admit(1, far()).unwrap();
    let running = queue(&resolved, inputs[0].clone(), far());
    assert_eq!(v1.started().await.input, inputs[0]);
    let queued = queue(&resolved, inputs[1].clone(), far());

    repo.add_version(2, &v2);
    engine.reload().await;
    assert_eq!(engine.model("gated", None).unwrap().version(), 2);
    repo.remove_version(1);
    engine.reload().await;
    assert_eq!(state_of(&engine, "gated", 1), Some(ModelState::Unloading));
    assert!(matches!(
        engine.model("gated", Some(1)),
        Err(EngineError::VersionNotFound { version: 1, .. })
    ));

    // Retired, the version still takes the work of requests that found it
    // before: the decoded image, and the request that only now asks for room.
    let mut decoded = {
        let input = inputs[2].clone();
        Box::pin(async move { admitted.infer(input).await }) as Answer
    };
    if let Poll::Ready(refused) = poll_once(&mut decoded) {
        panic!("an admitted request was refused by its retired version: {refused:?}");
    }
    let late = queue(&resolved, inputs[3].clone(), far());
    assert_eq!(v1.instances(), 1, "version 1 unloaded under its requests");
    v1.open();
    for (answer, input) in [running, queued, decoded, late].into_iter().zip(&inputs) {
        assert_answers(answer, input).await;
    }
    // Its last request gone, the version unloads without waiting for its timeout.
    drop(resolved);
    wait_for(&engine, "version 1 to unload", |e| {
        state_of(e, "gated", 1).is_none() && v1.instances() == 0
    })
    .await;
    engine.shutdown().await;
}

#[tokio::test]
async fn the_engine_stays_ready_while_a_new_version_loads() {
    let root = tempfile::tempdir().unwrap();
    let repo = GatedRepository::new(root.path(), "gated", "\"all\"", "max_batch_size = 4");
    let (v1, mut v2) = (
        Gate::new(&[3, 32, 32], CLASSES),
        Gate::new(&[3, 32, 32], CLASSES),
    );
    repo.add_version(1, &v1);
    let engine = gated_repository_engine(&repo).await;
    // Held before version 2 loads, its gate holds its warm-up too.
    v2.hold();
    repo.add_version(2, &v2);
    let reload = tokio::spawn({
        let engine = engine.clone();
        async move { engine.reload().await }
    });
    v2.started().await;
    assert_eq!(state_of(&engine, "gated", 2), Some(ModelState::Loading));
    assert!(
        engine.is_ready(),
        "a reload took the engine out of readiness: {:?}",
        engine.statuses()
    );
    assert_eq!(engine.model("gated", None).unwrap().version(), 1);
    v2.open();
    reload.await.unwrap();
    assert_eq!(engine.model("gated", None).unwrap().version(), 2);
    assert!(engine.is_ready());
}

#[tokio::test]
async fn a_corrupt_new_version_fails_alone_and_the_old_one_keeps_serving() {
    let root = tempfile::tempdir().unwrap();
    let dir = add_model(root.path(), "tiny", &tiny_config(""), &[1]);
    let engine = start(root.path()).await;
    // A copy cut short, as an interrupted upload leaves it.
    let model = std::fs::read(tiny_model()).unwrap();
    std::fs::create_dir(dir.join("2")).unwrap();
    std::fs::write(dir.join("2/model.onnx"), &model[..model.len() / 2]).unwrap();
    engine.reload().await;
    let reason = failure_of(&engine, "tiny", 2);
    assert!(reason.contains("2/model.onnx"), "{reason}");
    assert_eq!(state_of(&engine, "tiny", 1), Some(ModelState::Available));
    let serving = engine.model("tiny", None).unwrap();
    assert_eq!(serving.version(), 1);
    let output = serving.infer(tiny_input(1, 0), later(5000)).await.unwrap();
    assert_eq!(output.shape(), &[1, 10]);
    assert!(
        engine.is_ready(),
        "a refused new version took a serving model out of readiness"
    );
}

#[tokio::test]
async fn shutdown_answers_queued_requests_first() {
    let (engine, model, mut gate) = gated_engine(BatchingConfig::default(), 1).await;
    let running = queue(&model, tiny_input(1, 0), far());
    assert_eq!(gate.started().await.size(), 1);
    let queued = queue(&model, tiny_input(1, 1), far());
    let mut stopping = Box::pin(engine.shutdown());
    assert!(
        poll_once(&mut stopping).is_pending(),
        "shutdown returned while a batch was running"
    );
    // Shutdown has begun: new work is refused, the queued request is still there.
    let Poll::Ready(Err(error)) = poll_once(&mut request(&model, tiny_input(1, 2), far())) else {
        panic!("a request was admitted after shutdown began");
    };
    assert!(matches!(error, EngineError::Unloading { .. }), "{error}");
    assert_eq!(error.kind(), ErrorKind::Unavailable);
    gate.open();
    stopping.await;
    running.await.unwrap();
    assert_eq!(queued.await.unwrap().shape(), &[1, CLASSES]);
    assert!(!engine.is_ready());
    assert!(engine.model("gated", None).is_err());
    let error = model.infer(tiny_input(1, 0), far()).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unavailable);
}

#[tokio::test]
async fn a_request_admitted_before_its_version_closes_is_still_answered() {
    // Admitted while decoding (as the pipeline does): the version closing
    // meanwhile (a reload unloading it, or shutdown) must not fail it.
    let (engine, model, gate) = gated_engine(BatchingConfig::default(), 1).await;
    gate.open();
    let admitted = model.admit(1, far()).unwrap();
    let mut stopping = Box::pin(engine.shutdown());
    assert!(
        poll_once(&mut stopping).is_pending(),
        "shutdown returned while an admitted request was still decoding"
    );
    let Poll::Ready(Err(error)) = poll_once(&mut request(&model, tiny_input(1, 2), far())) else {
        panic!("a request was admitted after shutdown began");
    };
    assert!(matches!(error, EngineError::Unloading { .. }), "{error}");
    let input = tiny_input(1, 1);
    assert_eq!(
        admitted.infer(input.clone()).await.unwrap(),
        GatedBackend::logits(&input, CLASSES)
    );
    stopping.await;
    assert!(!engine.is_ready());
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

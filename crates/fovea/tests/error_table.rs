//! The one table from error kind to HTTP status and gRPC code
//! (`fovea_server::error`), row by row, through real requests: each row is
//! provoked on the simple API over HTTP and on KServe's ModelInfer over gRPC
//! (where a gRPC request can provoke it at all), on loopback.

mod common;

use std::num::NonZeroU32;

use bytes::Bytes;
use common::{Reply, TestServer, png};
use fovea_core::{Labels, ModelConfig, PreprocessConfig, Tensor};
use fovea_engine::{
    Backend, BackendError, BackendFactory, Engine, EngineOptions, ModelSource, Signature,
};
use fovea_proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use fovea_proto::inference::model_infer_request::InferInputTensor;
use fovea_proto::inference::{InferTensorContents, ModelInferRequest};
use fovea_server::{AppState, ServerConfig};
use fovea_testkit::Gate;
use tonic::Code;
use tonic::transport::Channel;

const CLASSES: usize = 10;

async fn grpc_of(server: &TestServer) -> GrpcInferenceServiceClient<Channel> {
    GrpcInferenceServiceClient::new(server.grpc().await)
}

/// A ModelInfer of encoded images as one BYTES input.
fn infer_images(model: &str, images: &[&[u8]]) -> tonic::Request<ModelInferRequest> {
    tonic::Request::new(ModelInferRequest {
        model_name: model.into(),
        inputs: vec![InferInputTensor {
            name: "input".into(),
            datatype: "BYTES".into(),
            shape: vec![images.len() as i64],
            contents: Some(InferTensorContents {
                bytes_contents: images.iter().map(|i| Bytes::copy_from_slice(i)).collect(),
                ..Default::default()
            }),
            ..Default::default()
        }],
        ..Default::default()
    })
}

async fn grpc_code(
    client: &mut GrpcInferenceServiceClient<Channel>,
    request: tonic::Request<ModelInferRequest>,
) -> Code {
    client.model_infer(request).await.unwrap_err().code()
}

/// A PNG whose header is sound and whose pixel data is not.
fn corrupt_png() -> Vec<u8> {
    let mut bytes = png(1);
    let len = bytes.len();
    bytes.truncate(len - 30);
    bytes.extend_from_slice(&[0xAB; 12]);
    bytes
}

async fn served(source: ModelSource, configure: impl FnOnce(&mut ServerConfig)) -> TestServer {
    let engine = Engine::start(source, EngineOptions::default())
        .await
        .unwrap();
    assert!(engine.is_ready(), "{:?}", engine.statuses());
    let mut config = ServerConfig::default();
    configure(&mut config);
    let state = AppState::with_engine(engine, &config).unwrap();
    TestServer::serve(state, None, config.shutdown_timeout).await
}

fn image_model(name: &str) -> ModelConfig {
    let mut config = ModelConfig::image_classifier("input", "logits", PreprocessConfig::cifar10());
    config.name = Some(name.into());
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_mistakes_map_to_their_status_and_code() {
    let server = TestServer::start(|config| config.limits.max_images_per_request = 1).await;
    let mut grpc = grpc_of(&server).await;

    // InvalidInput: 400 / INVALID_ARGUMENT.
    let reply = server.post("", "image/png", corrupt_png()).await;
    assert_eq!(reply.status.as_u16(), 400, "{}", reply.body);
    let corrupt = corrupt_png();
    assert_eq!(
        grpc_code(&mut grpc, infer_images("tiny", &[&corrupt])).await,
        Code::InvalidArgument
    );

    // TooLarge: 413 / RESOURCE_EXHAUSTED.
    let reply = server.post_images("", &[png(1), png(2)]).await;
    assert_eq!(reply.expect_error(413), "too_many_images");
    let (a, b) = (png(1), png(2));
    assert_eq!(
        grpc_code(&mut grpc, infer_images("tiny", &[&a, &b])).await,
        Code::ResourceExhausted
    );

    // UnsupportedMediaType: 415 over HTTP; gRPC has no media types, so a
    // body in no known image format is INVALID_ARGUMENT there.
    let reply = server.post("", "image/png", b"plain words".to_vec()).await;
    assert_eq!(reply.status.as_u16(), 415, "{}", reply.body);
    assert_eq!(
        grpc_code(&mut grpc, infer_images("tiny", &[b"plain words"])).await,
        Code::InvalidArgument
    );

    // NotFound: 404 / NOT_FOUND.
    let reply = server.post("?model=nope", "image/png", png(1)).await;
    assert_eq!(reply.expect_error(404), "model_not_found");
    let one = png(1);
    assert_eq!(
        grpc_code(&mut grpc, infer_images("nope", &[&one])).await,
        Code::NotFound
    );

    // Refused: 422 (URL fetching is off). No gRPC request names a URL, so
    // its INVALID_ARGUMENT row is reached only through the shared table.
    let reply = server
        .post_json(&serde_json::json!({"url": "https://example.com/cat.jpg"}))
        .await;
    assert_eq!(reply.status.as_u16(), 422, "{}", reply.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_refusals_map_to_401_and_429() {
    let keys = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(keys.path(), "tester:secret-key-1\n").unwrap();
    let server = TestServer::start(|config| {
        config.access.api_keys_file = Some(keys.path().to_path_buf());
        config.access.rate_limit = NonZeroU32::new(1);
        config.access.rate_burst = NonZeroU32::new(1).unwrap();
    })
    .await;
    let mut grpc = grpc_of(&server).await;

    // Unauthenticated: 401 / UNAUTHENTICATED.
    let reply = server.post("", "image/png", png(1)).await;
    assert_eq!(reply.expect_error(401), "unauthenticated");
    let one = png(1);
    assert_eq!(
        grpc_code(&mut grpc, infer_images("tiny", &[&one])).await,
        Code::Unauthenticated
    );

    // RateLimited: 429 / RESOURCE_EXHAUSTED (a bucket of one, refilled each second).
    let with_key = |request: tonic::Request<ModelInferRequest>| {
        let mut request = request;
        request
            .metadata_mut()
            .insert("authorization", "Bearer secret-key-1".parse().unwrap());
        request
    };
    assert!(
        grpc.model_infer(with_key(infer_images("tiny", &[&one])))
            .await
            .is_ok()
    );
    assert_eq!(
        grpc_code(&mut grpc, with_key(infer_images("tiny", &[&one]))).await,
        Code::ResourceExhausted
    );
    let response = server
        .client
        .post(server.url("/api/v1/predict"))
        .header("x-api-key", "secret-key-1")
        .header("content-type", "image/png")
        .body(png(1))
        .send()
        .await
        .unwrap();
    assert_eq!(
        Reply::read(response).await.expect_error(429),
        "rate_limited"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_still_loading_is_503_and_unavailable() {
    // State with no engine yet: what every request meets while models load.
    let config = ServerConfig::default();
    let server = TestServer::serve(
        AppState::new(&config).unwrap(),
        None,
        config.shutdown_timeout,
    )
    .await;
    let mut grpc = grpc_of(&server).await;
    let reply = server.post("", "image/png", png(1)).await;
    assert_eq!(reply.expect_error(503), "not_ready");
    assert_eq!(reply.headers["retry-after"], "1");
    let one = png(1);
    assert_eq!(
        grpc_code(&mut grpc, infer_images("tiny", &[&one])).await,
        Code::Unavailable
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_passing_in_a_held_batch_is_504_and_deadline_exceeded() {
    let gate = Gate::new(&[3, 32, 32], CLASSES);
    let mut config = image_model("gated");
    config.batching.timeout_ms = 300;
    let source = ModelSource::Backend {
        config,
        labels: Labels::cifar10(),
        factory: gate.factory(),
    };
    let server = served(source, |_| {}).await;
    gate.hold();
    let mut grpc = grpc_of(&server).await;

    // Every batch is held, so each request can only end at its deadline
    // (wherever it is by then: waiting to decode, queued or in the batch).
    let reply = server.post("?model=gated", "image/png", png(1)).await;
    assert_eq!(reply.expect_error(504), "deadline_exceeded");
    let one = png(1);
    assert_eq!(
        grpc_code(&mut grpc, infer_images("gated", &[&one])).await,
        Code::DeadlineExceeded
    );
    gate.open();
}

/// A backend that answers warm-up (all-zero input) and fails on anything else.
struct FailingBackend {
    signature: Signature,
}

impl Backend for FailingBackend {
    fn name(&self) -> &'static str {
        "failing"
    }

    fn run(&mut self, input: &Tensor) -> Result<Tensor, BackendError> {
        if input.data().iter().all(|v| *v == 0.0) {
            return Ok(Tensor::zeros(vec![input.batch_size(), CLASSES]));
        }
        Err(BackendError::Run("the device fell over".into()))
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_failure_is_500_and_internal() {
    let signature = Signature {
        input_name: "input".into(),
        input_shape: vec![None, Some(3), Some(32), Some(32)],
        output_name: "logits".into(),
        output_shape: vec![None, Some(CLASSES)],
    };
    let source = ModelSource::Backend {
        config: image_model("failing"),
        labels: Labels::cifar10(),
        factory: BackendFactory::new(move || {
            Ok(Box::new(FailingBackend {
                signature: signature.clone(),
            }))
        }),
    };
    let server = served(source, |_| {}).await;
    let mut grpc = grpc_of(&server).await;
    let reply = server.post("?model=failing", "image/png", png(1)).await;
    assert_eq!(reply.expect_error(500), "inference_failed");
    let one = png(1);
    assert_eq!(
        grpc_code(&mut grpc, infer_images("failing", &[&one])).await,
        Code::Internal
    );
}

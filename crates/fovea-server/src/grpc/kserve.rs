//! KServe's `inference.GRPCInferenceService`, translated onto [`crate::kserve`].
//! Raw input contents are decoded once, straight from the received buffers.
//! `ModelStreamInfer` (Triton's streaming extension) runs each request of a
//! stream as `ModelInfer` would, under the stream limits of [`crate::stream`].

use std::pin::Pin;
use std::time::Instant;

use futures_util::stream::FuturesOrdered;
use futures_util::{Stream, StreamExt};
use prost::Message as _;
use tokio::sync::mpsc;

use fovea_pipeline::Timings;
use fovea_proto::inference::grpc_inference_service_server::GrpcInferenceService;
use fovea_proto::inference::{
    ModelInferRequest, ModelInferResponse, ModelMetadataRequest, ModelMetadataResponse,
    ModelReadyRequest, ModelReadyResponse, ModelStreamInferResponse, ServerLiveRequest,
    ServerLiveResponse, ServerMetadataRequest, ServerMetadataResponse, ServerReadyRequest,
    ServerReadyResponse,
};
use fovea_proto::kserve as proto;
use tonic::{Request, Response, Status, Streaming};

use crate::error::ApiError;
use crate::kserve::{self, RequestedOutput};
use crate::state::AppState;
use crate::stream;
use crate::timing::grpc_timed;

/// `inference.GRPCInferenceService`.
#[derive(Clone)]
pub struct KServe {
    state: AppState,
}

impl KServe {
    /// The service over `state`.
    pub fn new(state: AppState) -> Self {
        Self { state }
    }

    /// `ModelInfer`'s work for one request, arriving at `arrival`; also
    /// where its time went.
    async fn infer_one(
        &self,
        request: ModelInferRequest,
        arrival: Instant,
    ) -> Result<(ModelInferResponse, Timings), Status> {
        let model = kserve::model(&self.state, &request.model_name, &request.model_version)?;
        let inputs = proto::infer_inputs(&request, self.state.pipeline().max_elements())
            .map_err(ApiError::from)?;
        let requested = request
            .outputs
            .iter()
            .map(|o| {
                Ok(RequestedOutput {
                    name: o.name.clone(),
                    classes: proto::class_count(&o.parameters)?,
                })
            })
            .collect::<Result<Vec<_>, fovea_proto::ProtoError>>()
            .map_err(ApiError::from)?;
        let (outputs, timings) =
            kserve::infer(&self.state, &model, inputs, &requested, arrival).await?;
        let response = proto::infer_response(
            model.name(),
            &model.version().to_string(),
            &request.id,
            &outputs,
            proto::uses_raw_inputs(&request),
        );
        Ok((response, timings))
    }

    /// One stream's loop: up to `window` requests in flight, answered in
    /// order into `answers` (bounded, so a client that stops reading stops
    /// this loop from taking more requests). Ends when the client half-closes
    /// and everything is answered, or with a status when a limit or shutdown
    /// ends the stream.
    async fn run_stream(
        self,
        mut requests: Streaming<ModelInferRequest>,
        answers: mpsc::Sender<Result<ModelStreamInferResponse, Status>>,
        _slot: stream::StreamSlot,
    ) {
        let limits = self.state.stream_limits().clone();
        let closes_at = tokio::time::Instant::now() + limits.max_duration;
        let mut idle_since = tokio::time::Instant::now();
        let mut shutdown = self.state.shutdown_signal();
        let mut in_flight = FuturesOrdered::new();
        let mut inbound_open = true;
        let end = loop {
            if !inbound_open && in_flight.is_empty() {
                return;
            }
            tokio::select! {
                biased;
                () = stream::stopping(&mut shutdown) => {
                    break Status::unavailable("the server is shutting down");
                }
                _ = tokio::time::sleep_until(closes_at) => {
                    stream::count_refusal("grpc", "max_duration");
                    break Status::resource_exhausted(format!(
                        "the stream reached its maximum duration of {} s",
                        limits.max_duration.as_secs()
                    ));
                }
                Some(answer) = in_flight.next(), if !in_flight.is_empty() => {
                    if answers.send(Ok(answer)).await.is_err() {
                        return; // the client is gone
                    }
                }
                next = requests.message(), if inbound_open && in_flight.len() < limits.window => {
                    idle_since = tokio::time::Instant::now();
                    match next {
                        Ok(Some(request)) => {
                            if request.encoded_len() > limits.max_frame_bytes {
                                stream::count_refusal("grpc", "frame_too_large");
                                break Status::resource_exhausted(format!(
                                    "a request of {} bytes exceeds the stream frame limit of {} bytes",
                                    request.encoded_len(),
                                    limits.max_frame_bytes
                                ));
                            }
                            let service = self.clone();
                            in_flight.push_back(async move {
                                let answer = service.infer_one(request, Instant::now()).await;
                                stream::count_frame("grpc", if answer.is_ok() { "answered" } else { "failed" });
                                match answer {
                                    Ok((response, _timings)) => ModelStreamInferResponse {
                                        error_message: String::new(),
                                        infer_response: Some(response),
                                    },
                                    Err(status) => ModelStreamInferResponse {
                                        error_message: status.message().to_string(),
                                        infer_response: None,
                                    },
                                }
                            });
                        }
                        Ok(None) => inbound_open = false,
                        // A message over the decoding limit, or a broken stream.
                        Err(status) => break status,
                    }
                }
                _ = tokio::time::sleep_until(idle_since + limits.idle_timeout), if inbound_open => {
                    stream::count_refusal("grpc", "idle");
                    break Status::deadline_exceeded(format!(
                        "nothing received for {} s",
                        limits.idle_timeout.as_secs()
                    ));
                }
            }
        };
        let _ = answers.send(Err(end)).await;
    }
}

/// The response stream of `ModelStreamInfer`.
pub type ModelStreamInferStream =
    Pin<Box<dyn Stream<Item = Result<ModelStreamInferResponse, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl GrpcInferenceService for KServe {
    async fn server_live(
        &self,
        _request: Request<ServerLiveRequest>,
    ) -> Result<Response<ServerLiveResponse>, Status> {
        Ok(Response::new(ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        _request: Request<ServerReadyRequest>,
    ) -> Result<Response<ServerReadyResponse>, Status> {
        let ready = self.state.engine().is_some_and(|e| e.is_ready());
        Ok(Response::new(ServerReadyResponse { ready }))
    }

    async fn model_ready(
        &self,
        request: Request<ModelReadyRequest>,
    ) -> Result<Response<ModelReadyResponse>, Status> {
        let request = request.into_inner();
        let ready = match kserve::model(&self.state, &request.name, &request.version) {
            Ok(_) => true,
            Err(e) if e.kind == fovea_core::ErrorKind::InvalidInput => return Err(e.into()),
            Err(_) => false,
        };
        Ok(Response::new(ModelReadyResponse { ready }))
    }

    async fn server_metadata(
        &self,
        _request: Request<ServerMetadataRequest>,
    ) -> Result<Response<ServerMetadataResponse>, Status> {
        Ok(Response::new(ServerMetadataResponse {
            name: kserve::SERVER_NAME.to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            extensions: kserve::EXTENSIONS.iter().map(ToString::to_string).collect(),
        }))
    }

    async fn model_metadata(
        &self,
        request: Request<ModelMetadataRequest>,
    ) -> Result<Response<ModelMetadataResponse>, Status> {
        let request = request.into_inner();
        let model = kserve::model(&self.state, &request.name, &request.version)?;
        Ok(Response::new(kserve::metadata(&self.state, &model)))
    }

    async fn model_infer(
        &self,
        request: Request<ModelInferRequest>,
    ) -> Result<Response<ModelInferResponse>, Status> {
        let arrival = Instant::now();
        let (response, timings) = self.infer_one(request.into_inner(), arrival).await?;
        Ok(grpc_timed(response, &timings, arrival))
    }

    type ModelStreamInferStream = ModelStreamInferStream;

    async fn model_stream_infer(
        &self,
        request: Request<Streaming<ModelInferRequest>>,
    ) -> Result<Response<Self::ModelStreamInferStream>, Status> {
        let Some(slot) = self.state.stream_slots().try_open() else {
            stream::count_refusal("grpc", "too_many_streams");
            return Err(Status::resource_exhausted(format!(
                "{} streams are open, the limit",
                self.state.stream_limits().max_streams
            )));
        };
        let (answers, receiver) = mpsc::channel(self.state.stream_limits().window.max(1));
        tokio::spawn(self.clone().run_stream(request.into_inner(), answers, slot));
        let responses = futures_util::stream::unfold(receiver, |mut receiver| async move {
            receiver.recv().await.map(|item| (item, receiver))
        });
        Ok(Response::new(Box::pin(responses)))
    }
}

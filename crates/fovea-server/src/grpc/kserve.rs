//! KServe's `inference.GRPCInferenceService`, translated onto [`crate::kserve`].
//! Raw input contents are decoded once, straight from the received buffers.

use std::time::Instant;

use fovea_proto::inference::grpc_inference_service_server::GrpcInferenceService;
use fovea_proto::inference::{
    ModelInferRequest, ModelInferResponse, ModelMetadataRequest, ModelMetadataResponse,
    ModelReadyRequest, ModelReadyResponse, ServerLiveRequest, ServerLiveResponse,
    ServerMetadataRequest, ServerMetadataResponse, ServerReadyRequest, ServerReadyResponse,
};
use fovea_proto::kserve as proto;
use tonic::{Request, Response, Status};

use crate::engine_path;
use crate::error::ApiError;
use crate::kserve::{self, RequestedOutput};
use crate::state::AppState;

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
}

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
        let request = request.into_inner();
        let model = kserve::model(&self.state, &request.model_name, &request.model_version)?;
        let inputs = proto::infer_inputs(&request, engine_path::max_elements(&self.state))
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
        let outputs = kserve::infer(&self.state, &model, inputs, &requested, arrival).await?;
        Ok(Response::new(proto::infer_response(
            model.name(),
            &model.version().to_string(),
            &request.id,
            &outputs,
            proto::uses_raw_inputs(&request),
        )))
    }
}

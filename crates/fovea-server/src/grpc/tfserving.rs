//! TF Serving's gRPC services: Predict, Classify, GetModelMetadata and
//! GetModelStatus, translated onto [`crate::tfserving`].

use std::collections::HashMap;
use std::time::Instant;

use fovea_engine::{ModelHandle, ModelState};
use fovea_proto::tensorflow::serving::model_service_server::ModelService;
use fovea_proto::tensorflow::serving::prediction_service_server::PredictionService;
use fovea_proto::tensorflow::serving::{
    ClassificationRequest, ClassificationResponse, GetModelMetadataRequest,
    GetModelMetadataResponse, GetModelStatusRequest, GetModelStatusResponse, ModelSpec,
    ModelVersionStatus, MultiInferenceRequest, MultiInferenceResponse, PredictRequest,
    PredictResponse, RegressionRequest, RegressionResponse, ReloadConfigRequest,
    ReloadConfigResponse, StatusProto,
};
use fovea_proto::tf;
use tonic::{Request, Response, Status};

use crate::error::ApiError;
use crate::state::AppState;
use crate::tfserving;
use crate::timing::grpc_timed;

/// `tensorflow.serving.PredictionService`.
#[derive(Clone)]
pub struct TfPredictionService {
    state: AppState,
}

impl TfPredictionService {
    /// The service over `state`.
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

/// The model a `model_spec` names, and its signature (checked).
fn spec_model(
    state: &AppState,
    spec: Option<&ModelSpec>,
) -> Result<(ModelHandle, String), ApiError> {
    let spec =
        spec.ok_or_else(|| ApiError::invalid("missing_model_spec", "model_spec is required"))?;
    let signature = tf::signature_name(spec).to_string();
    tfserving::check_signature(&signature)?;
    let model = tfserving::model(state, &spec.name, &tf::requested_version(spec)?)?;
    Ok((model, signature))
}

#[tonic::async_trait]
impl PredictionService for TfPredictionService {
    async fn classify(
        &self,
        request: Request<ClassificationRequest>,
    ) -> Result<Response<ClassificationResponse>, Status> {
        let arrival = Instant::now();
        let request = request.into_inner();
        let (model, signature) = spec_model(&self.state, request.model_spec.as_ref())?;
        let input = request.input.unwrap_or_default();
        let keys = ["image", model.config().input.name.as_str(), "inputs"];
        let max = self.state.pipeline().max_elements();
        let examples = tf::example_values(&input, &keys, max).map_err(ApiError::from)?;
        let (rows, timings) =
            tfserving::classify_examples(&self.state, &model, examples, arrival).await?;
        let result = tf::classification_result(
            rows.into_iter()
                .map(|row| row.into_iter().map(|p| (p.label, p.score))),
        );
        let response = ClassificationResponse {
            model_spec: Some(tfserving::answered_spec(&model, &signature)),
            result: Some(result),
        };
        Ok(grpc_timed(response, &timings, arrival))
    }

    async fn regress(
        &self,
        _request: Request<RegressionRequest>,
    ) -> Result<Response<RegressionResponse>, Status> {
        Err(Status::unimplemented(
            "fovea serves classifiers; Regress is not supported",
        ))
    }

    async fn predict(
        &self,
        request: Request<PredictRequest>,
    ) -> Result<Response<PredictResponse>, Status> {
        let arrival = Instant::now();
        let request = request.into_inner();
        let (model, signature) = spec_model(&self.state, request.model_spec.as_ref())?;
        let output_name = &model.config().output.name;
        if let Some(unknown) = request.output_filter.iter().find(|o| *o != output_name) {
            return Err(ApiError::invalid(
                "unknown_output",
                format!("output tensor alias `{unknown}` not found in signature `{signature}`"),
            )
            .into());
        }
        let max = self.state.pipeline().max_elements();
        let inputs = tf::tensors_from_map(&request.inputs, max).map_err(ApiError::from)?;
        let (output, timings) = tfserving::predict(&self.state, &model, inputs, arrival).await?;
        let response = PredictResponse {
            model_spec: Some(tfserving::answered_spec(&model, &signature)),
            outputs: HashMap::from([(output_name.clone(), tf::tensor_to_proto(&output))]),
        };
        Ok(grpc_timed(response, &timings, arrival))
    }

    async fn multi_inference(
        &self,
        _request: Request<MultiInferenceRequest>,
    ) -> Result<Response<MultiInferenceResponse>, Status> {
        Err(Status::unimplemented("MultiInference is not supported"))
    }

    async fn get_model_metadata(
        &self,
        request: Request<GetModelMetadataRequest>,
    ) -> Result<Response<GetModelMetadataResponse>, Status> {
        let request = request.into_inner();
        let (model, _) = spec_model(&self.state, request.model_spec.as_ref())?;
        if let Some(field) = request
            .metadata_field
            .iter()
            .find(|f| *f != "signature_def")
        {
            return Err(ApiError::invalid(
                "unknown_metadata_field",
                format!("metadata field `{field}` is not supported; only `signature_def` is"),
            )
            .into());
        }
        let map = tfserving::signature_def_map(&model);
        Ok(Response::new(GetModelMetadataResponse {
            model_spec: Some(tfserving::answered_spec(&model, "")),
            metadata: HashMap::from([(
                "signature_def".to_string(),
                tf::signature_def_map_any(&map),
            )]),
        }))
    }
}

/// `tensorflow.serving.ModelService`.
#[derive(Clone)]
pub struct TfModelService {
    state: AppState,
}

impl TfModelService {
    /// The service over `state`.
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

#[tonic::async_trait]
impl ModelService for TfModelService {
    async fn get_model_status(
        &self,
        request: Request<GetModelStatusRequest>,
    ) -> Result<Response<GetModelStatusResponse>, Status> {
        let spec = request.into_inner().model_spec.unwrap_or_default();
        let requested = tf::requested_version(&spec).map_err(ApiError::from)?;
        let version = tfserving::version_number(&spec.name, &requested)?;
        let statuses = tfserving::status(&self.state, &spec.name, version)?;
        Ok(Response::new(GetModelStatusResponse {
            model_version_status: statuses
                .into_iter()
                .map(|s| ModelVersionStatus {
                    version: s.version as i64,
                    state: s.state as i32,
                    status: Some(StatusProto {
                        // tensorflow.error.Code: OK = 0, UNKNOWN = 2.
                        error_code: if s.error.is_empty() { 0 } else { 2 },
                        error_message: s.error,
                    }),
                })
                .collect(),
        }))
    }

    /// fovea has no model config list to replace: what its repository
    /// holds is what it serves. An empty or absent config (TF Serving itself
    /// takes no action on one) is therefore read as "rescan the repository
    /// now", the `POST /api/v1/models/reload` of the REST side; a config
    /// naming models asks for what fovea cannot do and is refused whole
    /// (UNIMPLEMENTED), never half-applied. The reply's status is OK, or
    /// UNKNOWN listing the versions that failed to load (those they would
    /// have replaced keep serving), as `GetModelStatus` reports them.
    async fn handle_reload_config_request(
        &self,
        request: Request<ReloadConfigRequest>,
    ) -> Result<Response<ReloadConfigResponse>, Status> {
        let request = request.into_inner();
        if request.config.is_some_and(|c| c.config.is_some()) {
            return Err(Status::unimplemented(
                "fovea serves the models of its repository (--models) and takes no ModelServerConfig: \
                 change the repository, then send a ReloadConfigRequest without a config to rescan it",
            ));
        }
        let engine = self.state.ready_engine()?;
        tracing::info!("repository reload requested (TF Serving HandleReloadConfigRequest)");
        engine.reload().await;
        let failed: Vec<String> = engine
            .statuses()
            .into_iter()
            .filter_map(|s| match s.state {
                ModelState::Failed(reason) => {
                    Some(format!("{} version {}: {reason}", s.name, s.version))
                }
                _ => None,
            })
            .collect();
        Ok(Response::new(ReloadConfigResponse {
            status: Some(StatusProto {
                // tensorflow.error.Code: OK = 0, UNKNOWN = 2.
                error_code: if failed.is_empty() { 0 } else { 2 },
                error_message: failed.join("; "),
            }),
        }))
    }
}

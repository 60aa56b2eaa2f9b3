//! KServe V2 (Open Inference Protocol, Triton's dialect): the REST endpoints
//! under `/v2` including the binary tensor extension, and the translation both
//! the REST and the gRPC front end share (model metadata, which outputs to
//! return, Triton's classification extension) on top of [`engine_path`].

use std::time::Instant;

use axum::Json;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use fovea_engine::ModelHandle;
use fovea_proto::binary::{self, HEADER_LENGTH_HEADER, RestOutput};
use fovea_proto::inference::ModelMetadataResponse;
use fovea_proto::inference::model_metadata_response::TensorMetadata;
use fovea_proto::{TensorValue, kserve};
use serde::Deserialize;
use serde_json::json;

use crate::engine_path;
use crate::error::{ApiError, ProtocolError};
use crate::state::AppState;

/// Server name reported by server metadata.
pub const SERVER_NAME: &str = "fovea";
/// Protocol extensions fovea implements, as Triton names them.
pub const EXTENSIONS: &[&str] = &["binary_tensor_data", "classification"];

/// An entry of a request's output list: which output, and whether it is to
/// be answered as top-k classification strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestedOutput {
    /// Output tensor name.
    pub name: String,
    /// The `classification` count, if asked for.
    pub classes: Option<usize>,
}

/// Parses a KServe version string: empty means the highest available.
pub fn parse_version(version: &str) -> Result<Option<u64>, ApiError> {
    if version.is_empty() {
        return Ok(None);
    }
    version.parse().map(Some).map_err(|_| {
        ApiError::invalid(
            "invalid_version",
            format!("model version `{version}` is not a non-negative integer"),
        )
    })
}

/// The model at a KServe (name, version string).
pub fn model(state: &AppState, name: &str, version: &str) -> Result<ModelHandle, ApiError> {
    engine_path::lookup(state, name, parse_version(version)?)
}

/// Model metadata: the served versions, and input/output tensors with a
/// variable batch dimension.
pub fn metadata(state: &AppState, model: &ModelHandle) -> ModelMetadataResponse {
    let versions = state
        .engine()
        .map(|engine| {
            engine
                .statuses()
                .into_iter()
                .filter(|s| s.name == model.name())
                .map(|s| s.version.to_string())
                .collect()
        })
        .unwrap_or_default();
    let config = model.config();
    let input_shape = std::iter::once(-1)
        .chain(config.input.shape.iter().map(|&d| d as i64))
        .collect();
    ModelMetadataResponse {
        name: model.name().to_string(),
        versions,
        platform: "onnxruntime_onnx".to_string(),
        inputs: vec![TensorMetadata {
            name: config.input.name.clone(),
            // Image models also take BYTES (encoded images), but the
            // model's own tensor, which clients size their data by, is FP32.
            datatype: "FP32".to_string(),
            shape: input_shape,
        }],
        outputs: vec![TensorMetadata {
            name: config.output.name.clone(),
            datatype: "FP32".to_string(),
            shape: vec![-1, model.num_classes() as i64],
        }],
    }
}

/// Runs one inference: exactly one input, named as the model's input (FP32
/// numbers, or BYTES encoded images for image models); returns the requested
/// outputs (all when none are named), classification ones as BYTES strings.
pub async fn infer(
    state: &AppState,
    model: &ModelHandle,
    inputs: Vec<(String, TensorValue)>,
    requested: &[RequestedOutput],
    arrival: Instant,
) -> Result<Vec<(String, TensorValue)>, ApiError> {
    let output_name = &model.config().output.name;
    if let Some(unknown) = requested.iter().find(|o| &o.name != output_name) {
        return Err(ApiError::invalid(
            "unknown_output",
            format!(
                "model `{}` has no output `{}`; its output is `{output_name}`",
                model.name(),
                unknown.name
            ),
        ));
    }
    let input = engine_path::single_input(model, inputs)?;
    let deadline = engine_path::deadline(model, arrival);
    let scores = engine_path::run(state, model, input, deadline).await?;
    if requested.is_empty() {
        return Ok(vec![(output_name.clone(), TensorValue::F32(scores))]);
    }
    Ok(requested
        .iter()
        .map(|o| {
            let value = match o.classes {
                Some(k) => TensorValue::Bytes(kserve::classification(&scores, model.labels(), k)),
                None => TensorValue::F32(scores.clone()),
            };
            (o.name.clone(), value)
        })
        .collect())
}

/// `/v2/models/{name}[/versions/{version}]...` path parameters.
#[derive(Debug, Deserialize)]
pub struct ModelPath {
    name: String,
    #[serde(default)]
    version: Option<String>,
}

impl ModelPath {
    fn model(&self, state: &AppState) -> Result<ModelHandle, ApiError> {
        model(state, &self.name, self.version.as_deref().unwrap_or(""))
    }
}

/// `GET /v2`: server metadata.
pub async fn server_metadata() -> Json<serde_json::Value> {
    Json(json!({
        "name": SERVER_NAME,
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": EXTENSIONS,
    }))
}

/// `GET /v2/health/live`.
pub async fn live() -> StatusCode {
    StatusCode::OK
}

/// `GET /v2/health/ready`: every configured model version is available.
pub async fn ready(State(state): State<AppState>) -> StatusCode {
    if state.engine().is_some_and(|e| e.is_ready()) {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

/// `GET /v2/models/{name}[/versions/{v}]/ready`.
pub async fn model_ready(
    State(state): State<AppState>,
    path: Result<Path<ModelPath>, PathRejection>,
) -> Result<StatusCode, ProtocolError> {
    path?.model(&state)?;
    Ok(StatusCode::OK)
}

/// `GET /v2/models/{name}[/versions/{v}]`: model metadata.
pub async fn model_metadata(
    State(state): State<AppState>,
    path: Result<Path<ModelPath>, PathRejection>,
) -> Result<Json<serde_json::Value>, ProtocolError> {
    let model = path?.model(&state)?;
    let meta = metadata(&state, &model);
    let tensors = |list: &[TensorMetadata]| {
        list.iter()
            .map(|t| json!({ "name": t.name, "datatype": t.datatype, "shape": t.shape }))
            .collect::<Vec<_>>()
    };
    Ok(Json(json!({
        "name": meta.name,
        "versions": meta.versions,
        "platform": meta.platform,
        "inputs": tensors(&meta.inputs),
        "outputs": tensors(&meta.outputs),
    })))
}

/// `POST /v2/models/{name}[/versions/{v}]/infer`, JSON or with binary tensors.
pub async fn model_infer(
    State(state): State<AppState>,
    path: Result<Path<ModelPath>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ProtocolError> {
    let arrival = Instant::now();
    let model = path?.model(&state)?;
    let body = body?;
    let header_length = match headers.get(HEADER_LENGTH_HEADER) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .ok_or_else(|| {
                    ApiError::invalid(
                        "invalid_header",
                        format!("{HEADER_LENGTH_HEADER} must be a byte count"),
                    )
                })?,
        ),
    };
    let request = binary::parse_infer_request(&body, header_length)?;
    let max = engine_path::max_elements(&state);
    let inputs = request
        .inputs
        .iter()
        .map(|t| Ok((t.name.clone(), binary::decode_tensor(t, max)?)))
        .collect::<Result<Vec<_>, ApiError>>()?;
    let requested = request
        .outputs
        .iter()
        .map(|o| {
            Ok(RequestedOutput {
                name: o.name.clone(),
                classes: binary::class_count(o)?,
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let values = infer(&state, &model, inputs, &requested, arrival).await?;
    let outputs: Vec<RestOutput> = values
        .into_iter()
        .map(|(name, value)| RestOutput {
            binary: binary::wants_binary(&request, &name),
            name,
            value,
        })
        .collect();
    let encoded = binary::encode_infer_response(
        model.name(),
        &model.version().to_string(),
        request.id.as_deref(),
        &outputs,
    );
    let mut response = encoded.body.into_response();
    let headers = response.headers_mut();
    match encoded.header_length {
        Some(length) => {
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            headers.insert(HEADER_LENGTH_HEADER, HeaderValue::from(length));
        }
        None => {
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
    }
    Ok(response)
}

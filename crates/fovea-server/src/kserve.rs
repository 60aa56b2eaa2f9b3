//! KServe V2 (Open Inference Protocol, Triton's dialect): the REST endpoints
//! under `/v2` including the binary tensor extension, and the translation both
//! the REST and the gRPC front end share (model metadata, which outputs to
//! return, Triton's classification extension) on top of the pipeline ([`fovea_pipeline`]).

use std::time::Instant;

use axum::Json;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use fovea_engine::{Engine, ModelHandle, ModelState};
use fovea_pipeline::{Pipeline, Timings};
use fovea_proto::binary::{self, HEADER_LENGTH_HEADER, RestOutput};
use fovea_proto::inference::ModelMetadataResponse;
use fovea_proto::inference::model_metadata_response::TensorMetadata;
use fovea_proto::{TensorValue, kserve};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::error::{ApiError, ProtocolError, ProtocolErrorBody};
use crate::openapi::Binary;
use crate::state::AppState;
use crate::tensor_input;
use crate::timing::timed;

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
    Ok(state.pipeline().model(name, parse_version(version)?)?)
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
) -> Result<(Vec<(String, TensorValue)>, Timings), ApiError> {
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
    let input = tensor_input::single_input(model, inputs)?;
    let inference = state
        .pipeline()
        .infer(model, input, Pipeline::deadline(model, arrival))
        .await?;
    let scores = inference.concat()?;
    if requested.is_empty() {
        return Ok((
            vec![(output_name.clone(), TensorValue::F32(scores))],
            inference.timings,
        ));
    }
    let outputs = requested
        .iter()
        .map(|o| {
            let value = match o.classes {
                Some(k) => TensorValue::Bytes(kserve::classification(&scores, model.labels(), k)),
                None => TensorValue::F32(scores.clone()),
            };
            (o.name.clone(), value)
        })
        .collect();
    Ok((outputs, inference.timings))
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

/// `GET /v2`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[schema(example = json!({"name": "fovea", "version": "0.1.0", "extensions": ["binary_tensor_data", "classification"]}))]
pub struct ServerMetadataJson {
    /// Always `fovea`.
    pub name: &'static str,
    /// fovea's version.
    pub version: &'static str,
    /// Protocol extensions, as Triton names them.
    pub extensions: &'static [&'static str],
}

/// `GET /v2`: server metadata.
#[utoipa::path(
    get,
    path = "/v2",
    tag = "kserve",
    summary = "Server metadata",
    responses((status = 200, description = "Server name, version and extensions", body = ServerMetadataJson)),
)]
pub async fn server_metadata() -> Json<ServerMetadataJson> {
    Json(ServerMetadataJson {
        name: SERVER_NAME,
        version: env!("CARGO_PKG_VERSION"),
        extensions: EXTENSIONS,
    })
}

/// `GET /v2/health/live`.
#[utoipa::path(
    get,
    path = "/v2/health/live",
    tag = "kserve",
    summary = "Server liveness",
    responses((status = 200, description = "The server is alive (empty body)")),
)]
pub async fn live() -> StatusCode {
    StatusCode::OK
}

/// `GET /v2/health/ready`: every model has an available version (as `/readyz`).
#[utoipa::path(
    get,
    path = "/v2/health/ready",
    tag = "kserve",
    summary = "Server readiness",
    responses(
        (status = 200, description = "Every model has an available version (empty body)"),
        (status = 503, description = "Models are loading, or a model has no version that loaded (empty body)"),
    ),
)]
pub async fn ready(State(state): State<AppState>) -> StatusCode {
    if state.engine().is_some_and(|e| e.is_ready()) {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

/// `GET /v2/models/{name}[/versions/{v}]/ready`.
#[utoipa::path(
    get,
    path = "/v2/models/{name}/ready",
    tag = "kserve",
    summary = "Model readiness",
    params(("name" = String, Path, description = "Model name")),
    responses(
        (status = 200, description = "The model has an available version (empty body)"),
        (status = 400, description = "Malformed path", body = ProtocolErrorBody),
        (status = 404, description = "No such model", body = ProtocolErrorBody),
        (status = 503, description = "Models are loading, or the model has no available version",
            body = ProtocolErrorBody, headers(("Retry-After" = u32, description = "Seconds"))),
    ),
)]
pub async fn model_ready(
    State(state): State<AppState>,
    path: Result<Path<ModelPath>, PathRejection>,
) -> Result<StatusCode, ProtocolError> {
    path?.model(&state)?;
    Ok(StatusCode::OK)
}

/// `GET /v2/models/{name}/versions/{version}/ready` (served by [`model_ready`]).
#[utoipa::path(
    get,
    path = "/v2/models/{name}/versions/{version}/ready",
    tag = "kserve",
    summary = "Model version readiness",
    params(
        ("name" = String, Path, description = "Model name"),
        ("version" = String, Path, pattern = "^[0-9]+$", description = "Version number"),
    ),
    responses(
        (status = 200, description = "The version is available (empty body)"),
        (status = 400, description = "The version is not a non-negative integer", body = ProtocolErrorBody),
        (status = 404, description = "No such model or version", body = ProtocolErrorBody),
        (status = 503, description = "Models are loading, or the version is not available",
            body = ProtocolErrorBody, headers(("Retry-After" = u32, description = "Seconds"))),
    ),
)]
#[allow(dead_code)]
pub(crate) fn model_version_ready() {}

/// A tensor of model metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct TensorMetadataJson {
    /// Tensor name.
    pub name: String,
    /// KServe datatype, e.g. `FP32`.
    pub datatype: String,
    /// Shape; -1 is the variable batch dimension.
    pub shape: Vec<i64>,
}

impl From<&TensorMetadata> for TensorMetadataJson {
    fn from(t: &TensorMetadata) -> Self {
        Self {
            name: t.name.clone(),
            datatype: t.datatype.clone(),
            shape: t.shape.clone(),
        }
    }
}

/// `GET /v2/models/{name}[/versions/{v}]`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[schema(example = json!({
    "name": "resnet18-cifar10", "versions": ["5", "6"], "platform": "onnxruntime_onnx",
    "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 3, 32, 32]}],
    "outputs": [{"name": "logits", "datatype": "FP32", "shape": [-1, 10]}]
}))]
pub struct ModelMetadataJson {
    /// Model name.
    pub name: String,
    /// Every version the engine knows of the model.
    pub versions: Vec<String>,
    /// Always `onnxruntime_onnx` (Triton's name for ONNX models).
    pub platform: String,
    /// The model's input (image models also take BYTES: encoded images).
    pub inputs: Vec<TensorMetadataJson>,
    /// The model's output.
    pub outputs: Vec<TensorMetadataJson>,
}

/// `GET /v2/models/{name}[/versions/{v}]`: model metadata.
#[utoipa::path(
    get,
    path = "/v2/models/{name}",
    tag = "kserve",
    summary = "Model metadata",
    params(("name" = String, Path, description = "Model name")),
    responses(
        (status = 200, description = "The model's versions and tensors", body = ModelMetadataJson),
        (status = 400, description = "Malformed path", body = ProtocolErrorBody),
        (status = 404, description = "No such model", body = ProtocolErrorBody),
        (status = 503, description = "Models are loading, or the model has no available version",
            body = ProtocolErrorBody, headers(("Retry-After" = u32, description = "Seconds"))),
    ),
)]
pub async fn model_metadata(
    State(state): State<AppState>,
    path: Result<Path<ModelPath>, PathRejection>,
) -> Result<Json<ModelMetadataJson>, ProtocolError> {
    let model = path?.model(&state)?;
    let meta = metadata(&state, &model);
    Ok(Json(ModelMetadataJson {
        name: meta.name,
        versions: meta.versions,
        platform: meta.platform,
        inputs: meta.inputs.iter().map(TensorMetadataJson::from).collect(),
        outputs: meta.outputs.iter().map(TensorMetadataJson::from).collect(),
    }))
}

/// `GET /v2/models/{name}/versions/{version}` (served by [`model_metadata`]).
#[utoipa::path(
    get,
    path = "/v2/models/{name}/versions/{version}",
    tag = "kserve",
    summary = "Model version metadata",
    params(
        ("name" = String, Path, description = "Model name"),
        ("version" = String, Path, pattern = "^[0-9]+$", description = "Version number"),
    ),
    responses(
        (status = 200, description = "The model's versions and tensors", body = ModelMetadataJson),
        (status = 400, description = "The version is not a non-negative integer", body = ProtocolErrorBody),
        (status = 404, description = "No such model or version", body = ProtocolErrorBody),
        (status = 503, description = "Models are loading, or the version is not available",
            body = ProtocolErrorBody, headers(("Retry-After" = u32, description = "Seconds"))),
    ),
)]
#[allow(dead_code)]
pub(crate) fn model_version_metadata() {}

/// One model of the `GET /v2/models` listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct V2ModelListEntry {
    /// Model name.
    pub name: String,
    /// Every version the engine knows, ascending.
    pub versions: Vec<String>,
    /// `READY` when a request without a version would be served, else `UNAVAILABLE`.
    pub state: &'static str,
}

/// `GET /v2/models`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[schema(example = json!({"models": [{"name": "resnet18-cifar10", "versions": ["5", "6"], "state": "READY"}]}))]
pub struct V2ModelList {
    /// Sorted by name; empty while models are still loading.
    pub models: Vec<V2ModelListEntry>,
}

/// `GET /v2/models`: every model, its versions and whether it is ready.
#[utoipa::path(
    get,
    path = "/v2/models",
    operation_id = "kserve_list_models",
    tag = "kserve",
    summary = "List the served models",
    description = "fovea's addition to the Open Inference Protocol. While models are still \
        loading: 200 with no models.",
    responses((status = 200, description = "The models", body = V2ModelList)),
)]
pub async fn list_models(State(state): State<AppState>) -> Json<V2ModelList> {
    let mut models: Vec<V2ModelListEntry> = Vec::new();
    if let Some(engine) = state.engine() {
        // Sorted by name then version: each model's versions are adjacent.
        for status in engine.statuses() {
            if models.last().is_none_or(|m| m.name != status.name) {
                let ready = engine.model(&status.name, None).is_ok();
                models.push(V2ModelListEntry {
                    name: status.name.clone(),
                    versions: Vec::new(),
                    state: if ready { READY } else { UNAVAILABLE },
                });
            }
            if let Some(model) = models.last_mut() {
                model.versions.push(status.version.to_string());
            }
        }
    }
    Json(V2ModelList { models })
}

const READY: &str = "READY";
const LOADING: &str = "LOADING";
const UNAVAILABLE: &str = "UNAVAILABLE";

/// One model version of Triton's repository index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[schema(example = json!({"name": "resnet18-cifar10", "version": "6", "state": "READY", "reason": ""}))]
pub struct RepositoryIndexEntry {
    /// Model name.
    pub name: String,
    /// Version number.
    pub version: String,
    /// `READY`, `LOADING` or `UNAVAILABLE` (failed to load, or unloading).
    pub state: &'static str,
    /// Why the version is unavailable; empty otherwise.
    pub reason: String,
}

/// `POST /v2/repository/index`'s optional body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RepositoryIndexRequest {
    /// Only the versions that are ready (Triton's option).
    #[serde(default)]
    pub ready: bool,
}

/// `POST /v2/repository/index`: Triton's model repository extension, for
/// tritonclient's `get_model_repository_index()`: one entry per version.
#[utoipa::path(
    post,
    path = "/v2/repository/index",
    tag = "kserve",
    summary = "Model repository index (Triton)",
    description = "One entry per model version. The body is optional (tritonclient sends none); \
        `{\"ready\": true}` lists only the ready versions. While models are still loading: 200 \
        with an empty list.",
    request_body(content = Option<RepositoryIndexRequest>, content_type = "application/json"),
    responses(
        (status = 200, description = "The versions", body = [RepositoryIndexEntry]),
        (status = 400, description = "The body is not `{\"ready\": bool}`", body = ProtocolErrorBody),
        (status = 413, description = "Body over the limit", body = ProtocolErrorBody),
    ),
)]
pub async fn repository_index(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Vec<RepositoryIndexEntry>>, ProtocolError> {
    let body = body?;
    let malformed = |reason: String| {
        ApiError::invalid(
            "malformed_json",
            format!("the body must be {{\"ready\": true|false}}, null or empty: {reason}"),
        )
    };
    let request: Option<RepositoryIndexRequest> = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        // Through `Value` first: serde would also read a struct from a JSON array.
        match serde_json::from_slice(&body).map_err(|e| malformed(e.to_string()))? {
            Value::Null => None,
            object @ Value::Object(_) => {
                Some(serde_json::from_value(object).map_err(|e| malformed(e.to_string()))?)
            }
            other => return Err(malformed(format!("got {other}")).into()),
        }
    };
    let only_ready = request.is_some_and(|r| r.ready);
    let statuses = state.engine().map(Engine::statuses).unwrap_or_default();
    let entries = statuses
        .into_iter()
        .map(|status| {
            let (state, reason) = match status.state {
                ModelState::Available => (READY, String::new()),
                ModelState::Loading => (LOADING, String::new()),
                ModelState::Failed(reason) => (UNAVAILABLE, reason),
                ModelState::Unloading => (UNAVAILABLE, "unloading".to_string()),
            };
            RepositoryIndexEntry {
                name: status.name,
                version: status.version.to_string(),
                state,
                reason,
            }
        })
        .filter(|entry| !only_ready || entry.state == READY)
        .collect();
    Ok(Json(entries))
}

/// `POST /v2/models/{name}[/versions/{v}]/infer`, JSON or with binary tensors.
#[utoipa::path(
    post,
    path = "/v2/models/{name}/infer",
    tag = "kserve",
    summary = "Inference",
    params(
        ("name" = String, Path, description = "Model name"),
        ("Inference-Header-Content-Length" = Option<u64>, Header,
            description = "Binary tensor extension: the length of the JSON header; binary tensor data follows it"),
    ),
    request_body(
        description = "A JSON inference request, or (binary tensor extension) that JSON followed by \
            the tensors' bytes, with `Inference-Header-Content-Length`",
        content(
            (InferRequestJson = "application/json"),
            (Binary = "application/octet-stream"),
        ),
    ),
    responses(
        (status = 200, description = "The outputs; `application/octet-stream` with \
            `Inference-Header-Content-Length` when an output was asked for as binary data",
            content((InferResponseJson = "application/json"), (Binary = "application/octet-stream")),
            headers(("Inference-Header-Content-Length" = u64, description = "Binary responses only: the JSON header's length"))),
        (status = 400, description = "Malformed request, unknown input or output, wrong shape or \
            datatype, undecodable image", body = ProtocolErrorBody),
        (status = 404, description = "No such model or version", body = ProtocolErrorBody),
        (status = 413, description = "Body, tensor or image over the limits", body = ProtocolErrorBody),
        (status = 415, description = "BYTES input that is not a supported image format", body = ProtocolErrorBody),
        (status = 503, description = "Models are loading, the model is unavailable, or its queue is full",
            body = ProtocolErrorBody, headers(("Retry-After" = u32, description = "Seconds"))),
        (status = 504, description = "The request's deadline passed before it ran", body = ProtocolErrorBody),
        (status = 500, description = "Inference failed", body = ProtocolErrorBody),
    ),
)]
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
    let max = state.pipeline().max_elements();
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
    let (values, timings) = infer(&state, &model, inputs, &requested, arrival).await?;
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
    let mut response = timed(encoded.body, timings);
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

/// `POST /v2/models/{name}/versions/{version}/infer` (served by [`model_infer`]).
#[utoipa::path(
    post,
    path = "/v2/models/{name}/versions/{version}/infer",
    tag = "kserve",
    summary = "Inference on a model version",
    params(
        ("name" = String, Path, description = "Model name"),
        ("version" = String, Path, pattern = "^[0-9]+$", description = "Version number"),
        ("Inference-Header-Content-Length" = Option<u64>, Header,
            description = "Binary tensor extension: the length of the JSON header; binary tensor data follows it"),
    ),
    request_body(
        description = "As for `/v2/models/{name}/infer`",
        content(
            (InferRequestJson = "application/json"),
            (Binary = "application/octet-stream"),
        ),
    ),
    responses(
        (status = 200, description = "The outputs",
            content((InferResponseJson = "application/json"), (Binary = "application/octet-stream")),
            headers(("Inference-Header-Content-Length" = u64, description = "Binary responses only: the JSON header's length"))),
        (status = 400, description = "Malformed request or version, unknown input or output, wrong \
            shape or datatype, undecodable image", body = ProtocolErrorBody),
        (status = 404, description = "No such model or version", body = ProtocolErrorBody),
        (status = 413, description = "Body, tensor or image over the limits", body = ProtocolErrorBody),
        (status = 415, description = "BYTES input that is not a supported image format", body = ProtocolErrorBody),
        (status = 503, description = "Models are loading, the version is unavailable, or its queue is full",
            body = ProtocolErrorBody, headers(("Retry-After" = u32, description = "Seconds"))),
        (status = 504, description = "The request's deadline passed before it ran", body = ProtocolErrorBody),
        (status = 500, description = "Inference failed", body = ProtocolErrorBody),
    ),
)]
#[allow(dead_code)]
pub(crate) fn model_version_infer() {}

/// A KServe V2 inference request (parsed by `fovea_proto::binary`; this
/// type only describes it).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct InferRequestJson {
    /// Echoed in the response.
    id: Option<String>,
    /// e.g. `binary_data_output`.
    parameters: Option<serde_json::Map<String, serde_json::Value>>,
    /// Exactly one: the model's input (FP32 numbers, or BYTES encoded images for image models).
    inputs: Vec<InferInputJson>,
    /// Outputs to return (all when absent); `parameters.classification: k` answers the top k as `score:index:label`.
    outputs: Option<Vec<InferRequestedOutputJson>>,
}

/// An input tensor of an inference request.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct InferInputJson {
    /// Input name.
    name: String,
    /// Shape.
    shape: Vec<i64>,
    /// `FP32` or `BYTES`.
    datatype: String,
    /// e.g. `binary_data_size` (binary tensor extension).
    parameters: Option<serde_json::Map<String, serde_json::Value>>,
    /// Row-major data, flat or nested; absent when sent as binary data.
    data: Option<serde_json::Value>,
}

/// A requested output.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct InferRequestedOutputJson {
    /// Output name.
    name: String,
    /// `binary_data` (bool), `classification` (top-k count).
    parameters: Option<serde_json::Map<String, serde_json::Value>>,
}

/// A KServe V2 inference response (JSON form).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct InferResponseJson {
    /// Model name.
    model_name: String,
    /// The version that ran.
    model_version: String,
    /// The request's id, when it had one.
    id: Option<String>,
    /// The outputs.
    outputs: Vec<InferOutputJson>,
}

/// An output tensor of an inference response.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct InferOutputJson {
    /// Output name.
    name: String,
    /// `FP32`, or `BYTES` for classification strings.
    datatype: String,
    /// Shape.
    shape: Vec<i64>,
    /// `binary_data_size` when the data follows the JSON header.
    parameters: Option<serde_json::Map<String, serde_json::Value>>,
    /// Flat row-major data; absent when sent as binary data.
    #[schema(value_type = Option<Vec<serde_json::Value>>)]
    data: Option<serde_json::Value>,
}

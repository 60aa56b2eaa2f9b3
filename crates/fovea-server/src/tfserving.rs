//! TF Serving: the REST API under `/v1/models` (status, metadata, :predict in
//! row and columnar form, :classify; their JSON becomes tensors in
//! [`fovea_proto::tf_json`]) and the translation the REST and gRPC front ends
//! share (version selection, status, signature, predict, classify) on top of
//! the pipeline ([`fovea_pipeline`]).

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use axum::Json;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use fovea_core::{ErrorKind, Tensor};
use fovea_engine::{Engine, ModelHandle, ModelState, ModelStatus, Prediction};
use fovea_pipeline::{ImageInput, Item, Pipeline, Timings, require_images};
use fovea_proto::tensorflow::serving::model_version_status::State as VersionState;
use fovea_proto::tensorflow::serving::{SignatureDefMap, model_spec};
use fovea_proto::tensorflow::{DataType, SignatureDef};
use fovea_proto::tf::{DEFAULT_SIGNATURE, ExampleValue, VersionRequest};
use fovea_proto::{TensorValue, tf, tf_json};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::error::{ApiError, ProtocolError, ProtocolErrorBody};
use crate::state::AppState;
use crate::tensor_input;
use crate::timing::timed;

/// `method_name` of the predict signature.
pub const PREDICT_METHOD: &str = "tensorflow/serving/predict";

/// The version number a TF Serving request names (None: the latest). fovea
/// has no version labels of its own: a label that is a version number
/// selects that version.
pub fn version_number(name: &str, version: &VersionRequest) -> Result<Option<u64>, ApiError> {
    match version {
        VersionRequest::Latest => Ok(None),
        VersionRequest::Number(n) => Ok(Some(*n)),
        VersionRequest::Label(label) => label.parse().map(Some).map_err(|_| {
            ApiError::new(
                ErrorKind::NotFound,
                "version_label_not_found",
                format!("model `{name}` has no version label `{label}`"),
            )
        }),
    }
}

/// The serving handle of the model a TF Serving request names.
pub fn model(
    state: &AppState,
    name: &str,
    version: &VersionRequest,
) -> Result<ModelHandle, ApiError> {
    Ok(state
        .pipeline()
        .model(name, version_number(name, version)?)?)
}

/// Refuses signatures other than `serving_default`, the only one fovea has.
pub fn check_signature(signature: &str) -> Result<(), ApiError> {
    if signature.is_empty() || signature == DEFAULT_SIGNATURE {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "unknown_signature",
            format!(
                "serving signature `{signature}` not found; the only one is `{DEFAULT_SIGNATURE}`"
            ),
        ))
    }
}

/// One served version's state, as TF Serving reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionStatus {
    /// Version number.
    pub version: u64,
    /// TF Serving's state.
    pub state: VersionState,
    /// Why loading failed; empty otherwise.
    pub error: String,
}

impl From<ModelStatus> for VersionStatus {
    /// TF Serving has no "failed" state: a version that failed to load is
    /// END with the reason as its error, as TF Serving reports it.
    fn from(status: ModelStatus) -> Self {
        let (state, error) = match status.state {
            ModelState::Loading => (VersionState::Loading, String::new()),
            ModelState::Available => (VersionState::Available, String::new()),
            ModelState::Failed(e) => (VersionState::End, e),
            ModelState::Unloading => (VersionState::Unloading, String::new()),
        };
        Self {
            version: status.version,
            state,
            error,
        }
    }
}

/// A version's status in TF Serving's REST JSON (GetModelStatus's answer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[schema(example = json!({"version": "6", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}))]
pub struct VersionStatusJson {
    /// Version number, as a string (proto3 JSON of an int64).
    pub version: String,
    /// `LOADING`, `AVAILABLE`, `UNLOADING` or `END` (unloaded, or failed to load).
    pub state: &'static str,
    /// `OK`, or `UNKNOWN` with the reason a version failed to load.
    pub status: StatusJson,
}

/// TF Serving's `StatusProto` in JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct StatusJson {
    /// `OK` or `UNKNOWN`.
    pub error_code: &'static str,
    /// Empty when OK.
    pub error_message: String,
}

impl From<&VersionStatus> for VersionStatusJson {
    fn from(status: &VersionStatus) -> Self {
        Self {
            version: status.version.to_string(),
            state: status.state.as_str_name(),
            status: StatusJson {
                error_code: if status.error.is_empty() {
                    "OK"
                } else {
                    "UNKNOWN"
                },
                error_message: status.error.clone(),
            },
        }
    }
}

/// `GET /v1/models/{name}[/versions/{v}|/labels/{l}]`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ModelStatusJson {
    /// The model's versions (or the one asked for).
    pub model_version_status: Vec<VersionStatusJson>,
}

/// One model of the `GET /v1/models` listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct TfModelListEntry {
    /// Model name.
    pub name: String,
    /// Its versions, ascending, as `GET /v1/models/{name}` gives them.
    pub model_version_status: Vec<VersionStatusJson>,
}

/// `GET /v1/models`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct TfModelList {
    /// Sorted by name; empty while models are still loading.
    pub models: Vec<TfModelListEntry>,
}

/// `GET /v1/models`: every model with its version statuses. TF Serving has no
/// such REST endpoint; fovea adds it in TF Serving's own status form.
#[utoipa::path(
    get,
    path = "/v1/models",
    operation_id = "tf_list_models",
    tag = "tfserving",
    summary = "List the served models (TF Serving status form)",
    description = "fovea's addition to TF Serving's REST API: each model with the \
        `model_version_status` list `GET /v1/models/{name}` answers. While models are still \
        loading: 200 with no models.",
    responses((status = 200, description = "The models", body = TfModelList)),
)]
pub async fn list(State(state): State<AppState>) -> Json<TfModelList> {
    let mut models: Vec<TfModelListEntry> = Vec::new();
    let statuses = state.engine().map(Engine::statuses).unwrap_or_default();
    // Sorted by name then version: each model's versions are adjacent.
    for status in statuses {
        if models.last().is_none_or(|m| m.name != status.name) {
            models.push(TfModelListEntry {
                name: status.name.clone(),
                model_version_status: Vec::new(),
            });
        }
        if let Some(model) = models.last_mut() {
            model
                .model_version_status
                .push(VersionStatusJson::from(&VersionStatus::from(status)));
        }
    }
    Json(TfModelList { models })
}

/// Every version of `name` (or only `version`) in whatever state it is, from
/// the engine's catalogue rather than a serving handle: a version that is
/// loading or failed to load reports that state (as TF Serving does) instead
/// of the 503 a request to it gets. NOT_FOUND when the model or the version
/// is unknown.
pub fn status(
    state: &AppState,
    name: &str,
    version: Option<u64>,
) -> Result<Vec<VersionStatus>, ApiError> {
    let engine = state.ready_engine()?;
    let versions: Vec<ModelStatus> = engine
        .statuses()
        .into_iter()
        .filter(|s| s.name == name)
        .collect();
    if versions.is_empty() {
        return Err(ApiError::new(
            ErrorKind::NotFound,
            "model_not_found",
            format!("model `{name}` not found"),
        ));
    }
    let found: Vec<VersionStatus> = versions
        .into_iter()
        .filter(|s| version.is_none_or(|v| v == s.version))
        .map(VersionStatus::from)
        .collect();
    match version {
        Some(v) if found.is_empty() => Err(ApiError::new(
            ErrorKind::NotFound,
            "version_not_found",
            format!("model `{name}` has no version {v}"),
        )),
        _ => Ok(found),
    }
}

/// The `serving_default` signature: the model's input and output, batch dimension variable.
pub fn signature_def_map(model: &ModelHandle) -> SignatureDefMap {
    let config = model.config();
    let input_dims: Vec<i64> = std::iter::once(-1)
        .chain(config.input.shape.iter().map(|&d| d as i64))
        .collect();
    let signature = SignatureDef {
        inputs: HashMap::from([(
            config.input.name.clone(),
            tf::tensor_info(&config.input.name, DataType::DtFloat, &input_dims),
        )]),
        outputs: HashMap::from([(
            config.output.name.clone(),
            tf::tensor_info(
                &config.output.name,
                DataType::DtFloat,
                &[-1, model.num_classes() as i64],
            ),
        )]),
        method_name: PREDICT_METHOD.to_string(),
    };
    SignatureDefMap {
        signature_def: HashMap::from([(DEFAULT_SIGNATURE.to_string(), signature)]),
    }
}

/// Runs a Predict: the inputs must be exactly the model's one input.
pub async fn predict(
    state: &AppState,
    model: &ModelHandle,
    inputs: Vec<(String, TensorValue)>,
    arrival: Instant,
) -> Result<(Tensor, Timings), ApiError> {
    let input = tensor_input::single_input(model, inputs)?;
    let inference = state
        .pipeline()
        .infer(model, input, Pipeline::deadline(model, arrival))
        .await?;
    Ok((inference.concat()?, inference.timings))
}

/// Runs a Classify: each example on its own (images and float lists may be
/// mixed); returns the top classes with softmax scores, best first. Every
/// example is admitted to the model's queue before any is decoded or
/// inferred (all or none, as for a multi-image predict), so a Classify the
/// server has no room for costs no work.
pub async fn classify_examples(
    state: &AppState,
    model: &ModelHandle,
    examples: Vec<ExampleValue>,
    arrival: Instant,
) -> Result<(Vec<Vec<Prediction>>, Timings), ApiError> {
    let top_k = state.pipeline().top_k(model, None)?;
    let item_shape = &model.config().input.shape;
    let items = examples
        .into_iter()
        .enumerate()
        .map(|(index, example)| match example {
            ExampleValue::Image(bytes) => {
                require_images(model)?;
                Ok(Item::Image(ImageInput::Bytes(bytes)))
            }
            ExampleValue::Floats(values) => {
                let shape = std::iter::once(1)
                    .chain(item_shape.iter().copied())
                    .collect();
                Tensor::new(shape, values).map(Item::Tensor).map_err(|e| {
                    ApiError::invalid("shape_mismatch", format!("example {index}: {e}"))
                })
            }
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let classified = state
        .pipeline()
        .classify(model, items, top_k, Pipeline::deadline(model, arrival))
        .await?;
    Ok((classified.items, classified.timings))
}

// ---- REST ------------------------------------------------------------------

/// What a `/v1/models/...` path names.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    name: String,
    version: VersionRequest,
    metadata: bool,
    verb: Option<String>,
}

fn parse_target(rest: &str) -> Result<Target, ApiError> {
    let not_found = || {
        ApiError::new(
            ErrorKind::NotFound,
            "not_found",
            format!("no such path: /v1/models/{rest}"),
        )
    };
    let (path, verb) = match rest.rsplit_once(':') {
        Some((path, verb)) if !verb.contains('/') => (path, Some(verb.to_string())),
        _ => (rest, None),
    };
    let mut segments: Vec<&str> = path.split('/').collect();
    let metadata = segments.last() == Some(&"metadata") && segments.len() > 1;
    if metadata {
        segments.pop();
    }
    let version = match segments.as_slice() {
        [_] => VersionRequest::Latest,
        [_, "versions", v] => VersionRequest::Number(v.parse().map_err(|_| {
            ApiError::invalid(
                "invalid_version",
                format!("model version `{v}` is not a non-negative integer"),
            )
        })?),
        [_, "labels", l] => VersionRequest::Label((*l).to_string()),
        _ => return Err(not_found()),
    };
    match segments.first() {
        Some(name) if !name.is_empty() => Ok(Target {
            name: (*name).to_string(),
            version,
            metadata,
            verb,
        }),
        _ => Err(not_found()),
    }
}

/// `GET /v1/models/{name}[/versions/{v}|/labels/{l}][/metadata]`.
pub async fn get(
    State(state): State<AppState>,
    rest: Result<Path<String>, PathRejection>,
) -> Result<Response, ProtocolError> {
    let Path(rest) = rest?;
    let target = parse_target(&rest)?;
    if target.verb.is_some() {
        return Err(ApiError::new(
            ErrorKind::NotFound,
            "not_found",
            format!("no such path: /v1/models/{rest}"),
        )
        .into());
    }
    if target.metadata {
        let model = model(&state, &target.name, &target.version)?;
        return Ok(Json(metadata_json(&model)).into_response());
    }
    let version = version_number(&target.name, &target.version)?;
    let statuses = status(&state, &target.name, version)?;
    let answer = ModelStatusJson {
        model_version_status: statuses.iter().map(VersionStatusJson::from).collect(),
    };
    Ok(Json(answer).into_response())
}

/// GetModelMetadata's answer in proto3 JSON, as TF Serving's REST API gives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct MetadataJson {
    /// The model and the version that answered.
    pub model_spec: ModelSpecJson,
    /// The signatures.
    pub metadata: MetadataFieldJson,
}

/// `model_spec` of an answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ModelSpecJson {
    /// Model name.
    pub name: String,
    /// Empty.
    pub signature_name: String,
    /// The version that answered.
    pub version: String,
}

/// `metadata` of GetModelMetadata's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct MetadataFieldJson {
    /// The `signature_def` entry (a `SignatureDefMap`).
    pub signature_def: SignatureDefMapJson,
}

/// A `SignatureDefMap`: only `serving_default`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct SignatureDefMapJson {
    /// Signatures by name.
    pub signature_def: BTreeMap<String, SignatureDefJson>,
}

/// One signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct SignatureDefJson {
    /// Inputs by name.
    pub inputs: BTreeMap<String, TensorInfoJson>,
    /// Outputs by name.
    pub outputs: BTreeMap<String, TensorInfoJson>,
    /// `tensorflow/serving/predict`.
    pub method_name: String,
}

/// A `TensorInfo`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct TensorInfoJson {
    /// e.g. `DT_FLOAT`.
    pub dtype: &'static str,
    /// Dimensions; size -1 is the variable batch dimension.
    pub tensor_shape: TensorShapeJson,
    /// Tensor name.
    pub name: String,
}

/// A `TensorShapeProto`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct TensorShapeJson {
    /// The dimensions.
    pub dim: Vec<DimJson>,
    /// Always false.
    pub unknown_rank: bool,
}

/// One dimension.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct DimJson {
    /// Size as a string (proto3 JSON of an int64); -1 when variable.
    pub size: String,
    /// Empty.
    pub name: String,
}

fn metadata_json(model: &ModelHandle) -> MetadataJson {
    let map = signature_def_map(model);
    let tensors = |infos: &HashMap<String, fovea_proto::tensorflow::TensorInfo>| {
        infos
            .iter()
            .map(|(key, info)| {
                let dim = info
                    .tensor_shape
                    .iter()
                    .flat_map(|s| &s.dim)
                    .map(|d| DimJson {
                        size: d.size.to_string(),
                        name: d.name.clone(),
                    })
                    .collect();
                let dtype =
                    DataType::try_from(info.dtype).map_or("DT_INVALID", |d| d.as_str_name());
                let info = TensorInfoJson {
                    dtype,
                    tensor_shape: TensorShapeJson {
                        dim,
                        unknown_rank: false,
                    },
                    name: key.clone(),
                };
                (key.clone(), info)
            })
            .collect()
    };
    let signature_def = map
        .signature_def
        .iter()
        .map(|(key, sig)| {
            let def = SignatureDefJson {
                inputs: tensors(&sig.inputs),
                outputs: tensors(&sig.outputs),
                method_name: sig.method_name.clone(),
            };
            (key.clone(), def)
        })
        .collect();
    MetadataJson {
        model_spec: ModelSpecJson {
            name: model.name().to_string(),
            signature_name: String::new(),
            version: model.version().to_string(),
        },
        metadata: MetadataFieldJson {
            signature_def: SignatureDefMapJson { signature_def },
        },
    }
}

/// `:predict`'s answer: `predictions` for a row-format request, `outputs` for a columnar one.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(untagged)]
pub enum PredictResponseJson {
    /// Row format: one list of scores per instance.
    Row {
        /// The model's output, one row per instance.
        predictions: Vec<Vec<f32>>,
    },
    /// Columnar format.
    Columnar {
        /// The model's output, one row per batch item.
        outputs: Vec<Vec<f32>>,
    },
}

/// `:classify`'s answer: per example, the top classes as `[label, score]`, best first.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[schema(example = json!({"result": [[["cat", 0.91], ["dog", 0.05]]]}))]
pub struct ClassifyResponseJson {
    /// One list per example.
    #[schema(schema_with = classify_result)]
    pub result: Vec<Vec<(String, f32)>>,
}

/// `[[[label, score], ...], ...]`. The pair is described as a two-item array
/// of strings or numbers rather than a `prefixItems` tuple, which some
/// OpenAPI tools (schemathesis 4.32 among them) cannot validate against.
fn classify_result() -> utoipa::openapi::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, SchemaType, Type};
    let value =
        ObjectBuilder::new().schema_type(SchemaType::from_iter([Type::String, Type::Number]));
    let pair = ArrayBuilder::new()
        .items(value)
        .min_items(Some(2))
        .max_items(Some(2))
        .description(Some("`[label, score]`"));
    ArrayBuilder::new()
        .items(
            ArrayBuilder::new()
                .items(pair)
                .description(Some("Best first")),
        )
        .description(Some("One list per example"))
        .build()
}

/// `POST /v1/models/{name}[/versions/{v}|/labels/{l}]:predict|:classify|:regress`.
pub async fn post(
    State(state): State<AppState>,
    rest: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ProtocolError> {
    let arrival = Instant::now();
    let Path(rest) = rest?;
    let target = parse_target(&rest)?;
    let verb = target.verb.as_deref().unwrap_or("");
    if target.metadata || !matches!(verb, "predict" | "classify" | "regress") {
        return Err(ApiError::new(
            ErrorKind::NotFound,
            "not_found",
            format!("no such path: /v1/models/{rest}"),
        )
        .into());
    }
    let model = model(&state, &target.name, &target.version)?;
    if verb == "regress" {
        // What TF Serving answers for a model whose signature is not a
        // regression one (INVALID_ARGUMENT, 400); every fovea model is a classifier.
        return Err(ApiError::invalid(
            "regress_unsupported",
            format!(
                "model `{}` has no regression signature: its `{DEFAULT_SIGNATURE}` method is \
                 {PREDICT_METHOD}; use :predict or :classify",
                model.name()
            ),
        )
        .into());
    }
    let body: Value = serde_json::from_slice(&body?)
        .map_err(|e| ApiError::invalid("malformed_json", format!("malformed JSON body: {e}")))?;
    let Value::Object(body) = body else {
        return Err(
            ApiError::invalid("malformed_request", "the body must be a JSON object").into(),
        );
    };
    // proto3 JSON reads null as the field's default, the empty name.
    if let Some(signature) = body.get("signature_name").filter(|v| !v.is_null()) {
        check_signature(signature.as_str().unwrap_or("\u{0}"))?;
    }
    if verb == "classify" {
        let max = state.pipeline().max_elements();
        let examples = tf_json::examples(&body, &model.config().input.name, max)?;
        let (rows, timings) = classify_examples(&state, &model, examples, arrival).await?;
        let result = rows
            .into_iter()
            .map(|row| row.into_iter().map(|p| (p.label, p.score)).collect())
            .collect();
        return Ok(timed(Json(ClassifyResponseJson { result }), timings));
    }
    let input_name = model.config().input.name.clone();
    let max = state.pipeline().max_elements();
    let (value, columnar) = match (body.get("instances"), body.get("inputs")) {
        (Some(instances), None) => (tf_json::row_input(instances, &input_name, max)?, false),
        (None, Some(inputs)) => (tf_json::columnar_input(inputs, &input_name, max)?, true),
        _ => {
            return Err(ApiError::invalid(
                "malformed_request",
                "the body must have exactly one of \"instances\" (row format) or \"inputs\" (columnar format)",
            )
            .into());
        }
    };
    let (output, timings) = predict(&state, &model, vec![(input_name, value)], arrival).await?;
    let rows: Vec<Vec<f32>> = (0..output.batch_size())
        .filter_map(|i| output.item(i).map(<[f32]>::to_vec))
        .collect();
    let answer = if columnar {
        PredictResponseJson::Columnar { outputs: rows }
    } else {
        PredictResponseJson::Row { predictions: rows }
    };
    Ok(timed(Json(answer), timings))
}

/// `model_spec` of an answer: the version that actually ran.
pub fn answered_spec(
    model: &ModelHandle,
    signature: &str,
) -> fovea_proto::tensorflow::serving::ModelSpec {
    fovea_proto::tensorflow::serving::ModelSpec {
        name: model.name().to_string(),
        signature_name: signature.to_string(),
        version_choice: Some(model_spec::VersionChoice::Version(model.version() as i64)),
    }
}

// ---- OpenAPI ---------------------------------------------------------------
//
// `get` and `post` serve every `/v1/models/...` path through one wildcard
// route (TF Serving's `:verb` suffix cannot be an axum path segment), so each
// documented path is described by a stub below rather than by the handler.

/// `:predict`'s body (described here, parsed by [`post`]): exactly one of
/// `instances` (row format) or `inputs` (columnar format).
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum PredictRequestJson {
    /// Row format.
    Row(RowPredictRequest),
    /// Columnar format.
    Columnar(ColumnarPredictRequest),
}

/// Row format: a list of instances, each `{"b64": "<base64 image>"}`, a
/// nested number list of the model's item shape, or either under the input's
/// name (`{"input": ...}`).
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"instances": [{"b64": crate::openapi::EXAMPLE_PNG_BASE64}]}))]
#[allow(dead_code)]
pub struct RowPredictRequest {
    /// Only `serving_default` (or empty).
    signature_name: Option<String>,
    /// The batch, one instance per item.
    instances: Vec<Value>,
}

/// Columnar format: the whole batch, bare or as `{"<input>": batch}`.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct ColumnarPredictRequest {
    /// Only `serving_default` (or empty).
    signature_name: Option<String>,
    /// The batch.
    #[schema(schema_with = array_or_object)]
    inputs: Value,
}

fn array_or_object() -> utoipa::openapi::Object {
    use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Array, Type::Object]))
        .build()
}

/// `:classify`'s (and `:regress`'s) body: TF Serving's `Example`s in JSON.
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"examples": [{"image": {"b64": crate::openapi::EXAMPLE_PNG_BASE64}}]}))]
#[allow(dead_code)]
pub struct ClassifyRequestJson {
    /// Only `serving_default` (or empty).
    signature_name: Option<String>,
    /// Features shared by every example.
    context: Option<Map<String, Value>>,
    /// One object per example: the feature `image` (or the input's name, or
    /// `inputs`, or the only one) holding `{"b64": ...}` or a number list.
    #[schema(min_items = 1)]
    examples: Vec<Map<String, Value>>,
}

/// The three forms of a TF Serving model path: latest version, a version
/// number, a version label. Generates one documented stub per form.
macro_rules! tf_paths {
    (
        $method:ident,
        [$latest:ident = $latest_path:tt, $version:ident = $version_path:tt, $label:ident = $label_path:tt],
        $($common:tt)*
    ) => {
        #[utoipa::path($method, path = $latest_path, tag = "tfserving",
            params(("name" = String, Path, description = "Model name")),
            $($common)*)]
        #[allow(dead_code)]
        fn $latest() {}

        #[utoipa::path($method, path = $version_path, tag = "tfserving",
            params(
                ("name" = String, Path, description = "Model name"),
                ("version" = u64, Path, description = "Version number"),
            ),
            $($common)*)]
        #[allow(dead_code)]
        fn $version() {}

        #[utoipa::path($method, path = $label_path, tag = "tfserving",
            params(
                ("name" = String, Path, description = "Model name"),
                ("label" = String, Path, description = "Version label: fovea has none of its own, a version number is one"),
            ),
            $($common)*)]
        #[allow(dead_code)]
        fn $label() {}
    };
}

tf_paths!(
    get,
    [
        tf_status = "/v1/models/{name}",
        tf_version_status = "/v1/models/{name}/versions/{version}",
        tf_label_status = "/v1/models/{name}/labels/{label}"
    ],
    summary = "Model status (GetModelStatus)",
    responses(
        (
            status = 200,
            description = "The versions' states, whatever they are: a version still loading \
            is `LOADING`, one that failed to load `END` with the reason in `status`",
            body = ModelStatusJson
        ),
        (
            status = 400,
            description = "Malformed version number",
            body = ProtocolErrorBody
        ),
        (
            status = 404,
            description = "No such model, version or label",
            body = ProtocolErrorBody
        ),
        (
            status = 503,
            description = "Models are still loading (the engine has not started yet)",
            body = ProtocolErrorBody,
            headers(("Retry-After" = u32, description = "Seconds"))
        ),
    ),
);

tf_paths!(
    get,
    [
        tf_metadata = "/v1/models/{name}/metadata",
        tf_version_metadata = "/v1/models/{name}/versions/{version}/metadata",
        tf_label_metadata = "/v1/models/{name}/labels/{label}/metadata"
    ],
    summary = "Model metadata (GetModelMetadata)",
    responses(
        (
            status = 200,
            description = "The `serving_default` signature",
            body = MetadataJson
        ),
        (
            status = 400,
            description = "Malformed version number",
            body = ProtocolErrorBody
        ),
        (
            status = 404,
            description = "No such model, version or label",
            body = ProtocolErrorBody
        ),
        (
            status = 503,
            description = "Models are still loading, or the version is not available",
            body = ProtocolErrorBody,
            headers(("Retry-After" = u32, description = "Seconds"))
        ),
    ),
);

tf_paths!(
    post,
    [
        tf_predict = "/v1/models/{name}:predict",
        tf_version_predict = "/v1/models/{name}/versions/{version}:predict",
        tf_label_predict = "/v1/models/{name}/labels/{label}:predict"
    ],
    summary = "Predict",
    request_body(
        content = PredictRequestJson,
        content_type = "application/json"
    ),
    responses(
        (
            status = 200,
            description = "The model's output per item",
            body = PredictResponseJson
        ),
        (
            status = 400,
            description = "Malformed JSON or version, unknown signature or input, \
            ragged or wrongly shaped instances, undecodable image",
            body = ProtocolErrorBody
        ),
        (
            status = 404,
            description = "No such model, version or label",
            body = ProtocolErrorBody
        ),
        (
            status = 413,
            description = "Body, tensor or image over the limits",
            body = ProtocolErrorBody
        ),
        (
            status = 415,
            description = "An image in a format fovea does not decode",
            body = ProtocolErrorBody
        ),
        (
            status = 503,
            description =
                "Models are still loading, the version is not available, or its queue is full",
            body = ProtocolErrorBody,
            headers(("Retry-After" = u32, description = "Seconds"))
        ),
        (
            status = 504,
            description = "The request's deadline passed before it ran",
            body = ProtocolErrorBody
        ),
        (
            status = 500,
            description = "Inference failed",
            body = ProtocolErrorBody
        ),
    ),
);

tf_paths!(
    post,
    [
        tf_classify = "/v1/models/{name}:classify",
        tf_version_classify = "/v1/models/{name}/versions/{version}:classify",
        tf_label_classify = "/v1/models/{name}/labels/{label}:classify"
    ],
    summary = "Classify",
    request_body(
        content = ClassifyRequestJson,
        content_type = "application/json"
    ),
    responses(
        (
            status = 200,
            description = "The top classes per example",
            body = ClassifyResponseJson
        ),
        (
            status = 400,
            description = "Malformed JSON or version, unknown signature, an example \
            without a usable feature, wrongly shaped numbers, undecodable image",
            body = ProtocolErrorBody
        ),
        (
            status = 404,
            description = "No such model, version or label",
            body = ProtocolErrorBody
        ),
        (
            status = 413,
            description = "Body or image over the limits",
            body = ProtocolErrorBody
        ),
        (
            status = 415,
            description = "An image in a format fovea does not decode",
            body = ProtocolErrorBody
        ),
        (
            status = 503,
            description =
                "Models are still loading, the version is not available, or its queue is full",
            body = ProtocolErrorBody,
            headers(("Retry-After" = u32, description = "Seconds"))
        ),
        (
            status = 504,
            description = "The request's deadline passed before it ran",
            body = ProtocolErrorBody
        ),
        (
            status = 500,
            description = "Inference failed",
            body = ProtocolErrorBody
        ),
    ),
);

tf_paths!(
    post,
    [
        tf_regress = "/v1/models/{name}:regress",
        tf_version_regress = "/v1/models/{name}/versions/{version}:regress",
        tf_label_regress = "/v1/models/{name}/labels/{label}:regress"
    ],
    summary = "Regress (refused: every fovea model is a classifier)",
    description = "Answers 400 for any served model, as TF Serving does for a model without a \
        regression signature; use `:predict` or `:classify`.",
    request_body(
        content = ClassifyRequestJson,
        content_type = "application/json"
    ),
    responses(
        (
            status = 400,
            description = "The model has no regression signature, or a malformed version",
            body = ProtocolErrorBody
        ),
        (
            status = 404,
            description = "No such model, version or label",
            body = ProtocolErrorBody
        ),
        (
            status = 413,
            description = "Body over the limit",
            body = ProtocolErrorBody
        ),
        (
            status = 503,
            description = "Models are still loading, or the version is not available",
            body = ProtocolErrorBody,
            headers(("Retry-After" = u32, description = "Seconds"))
        ),
    ),
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_model_version_label_metadata_and_verb() {
        let t = parse_target("tiny/versions/3:predict").unwrap();
        assert_eq!(
            (
                t.name.as_str(),
                t.version.clone(),
                t.metadata,
                t.verb.as_deref()
            ),
            ("tiny", VersionRequest::Number(3), false, Some("predict"))
        );
        let t = parse_target("tiny/labels/stable/metadata").unwrap();
        assert_eq!(
            (t.version, t.metadata, t.verb),
            (VersionRequest::Label("stable".into()), true, None)
        );
        assert_eq!(
            parse_target("tiny").unwrap().version,
            VersionRequest::Latest
        );
        assert_eq!(
            parse_target("tiny/versions/x").unwrap_err().code,
            "invalid_version"
        );
        assert_eq!(
            parse_target("tiny/other/1").unwrap_err().kind,
            ErrorKind::NotFound
        );
    }
}

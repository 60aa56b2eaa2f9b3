//! TF Serving: the REST API under `/v1/models` (status, metadata, :predict in
//! row and columnar form, :classify) and the translation the REST and gRPC
//! front ends share (version selection, status, signature, predict, classify)
//! on top of [`engine_path`].

use std::collections::HashMap;
use std::time::Instant;

use axum::Json;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use bytes::Bytes;
use fovea_core::{ErrorKind, Tensor};
use fovea_engine::{ModelHandle, ModelState, Prediction, classify};
use fovea_proto::tensorflow::serving::model_version_status::State as VersionState;
use fovea_proto::tensorflow::serving::{SignatureDefMap, model_spec};
use fovea_proto::tensorflow::{DataType, SignatureDef};
use fovea_proto::tf::{DEFAULT_SIGNATURE, ExampleValue, VersionRequest};
use fovea_proto::{BytesTensor, TensorValue, tf};
use serde_json::{Map, Value, json};

use crate::engine_path::{self, ModelInput};
use crate::error::{ApiError, ProtocolError};
use crate::state::AppState;

/// `method_name` of the predict signature.
pub const PREDICT_METHOD: &str = "tensorflow/serving/predict";

/// The model a TF Serving request names. fovea has no version labels of its
/// own: a label that is a version number selects that version.
pub fn model(
    state: &AppState,
    name: &str,
    version: &VersionRequest,
) -> Result<ModelHandle, ApiError> {
    let number = match version {
        VersionRequest::Latest => None,
        VersionRequest::Number(n) => Some(*n),
        VersionRequest::Label(label) => Some(label.parse().map_err(|_| {
            ApiError::new(
                ErrorKind::NotFound,
                "version_label_not_found",
                format!("model `{name}` has no version label `{label}`"),
            )
        })?),
    };
    engine_path::lookup(state, name, number)
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

/// Every version of `name` (or only `version`), NOT_FOUND when there is none.
pub fn status(
    state: &AppState,
    name: &str,
    version: Option<u64>,
) -> Result<Vec<VersionStatus>, ApiError> {
    let engine = state.ready_engine()?;
    let found: Vec<VersionStatus> = engine
        .statuses()
        .into_iter()
        .filter(|s| s.name == name && version.is_none_or(|v| v == s.version))
        .map(|s| {
            let (state, error) = match s.state {
                ModelState::Loading => (VersionState::Loading, String::new()),
                ModelState::Available => (VersionState::Available, String::new()),
                ModelState::Failed(e) => (VersionState::End, e),
                ModelState::Unloading => (VersionState::Unloading, String::new()),
            };
            VersionStatus {
                version: s.version,
                state,
                error,
            }
        })
        .collect();
    if found.is_empty() {
        let message = match version {
            Some(v) => format!("model `{name}` has no version {v}"),
            None => format!("model `{name}` not found"),
        };
        return Err(ApiError::new(
            ErrorKind::NotFound,
            "model_not_found",
            message,
        ));
    }
    Ok(found)
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
) -> Result<Tensor, ApiError> {
    let input = engine_path::single_input(model, inputs)?;
    engine_path::run(state, model, input, engine_path::deadline(model, arrival)).await
}

/// Runs a Classify: each example on its own (images and float lists may be
/// mixed); returns the top classes with softmax scores, best first.
pub async fn classify_examples(
    state: &AppState,
    model: &ModelHandle,
    examples: Vec<ExampleValue>,
    arrival: Instant,
) -> Result<Vec<Vec<Prediction>>, ApiError> {
    let deadline = engine_path::deadline(model, arrival);
    let top_k = state.limits().default_top_k.min(model.num_classes());
    let item_shape = &model.config().input.shape;
    let answers = futures_util::future::join_all(examples.into_iter().enumerate().map(
        |(index, example)| async move {
            let input = match example {
                ExampleValue::Image(bytes) => engine_path::model_input(
                    model,
                    TensorValue::Bytes(BytesTensor {
                        shape: vec![1],
                        items: vec![bytes],
                    }),
                )?,
                ExampleValue::Floats(values) => {
                    let shape = std::iter::once(1)
                        .chain(item_shape.iter().copied())
                        .collect();
                    ModelInput::Tensor(Tensor::new(shape, values).map_err(|e| {
                        ApiError::invalid("shape_mismatch", format!("example {index}: {e}"))
                    })?)
                }
            };
            let output = engine_path::run(state, model, input, deadline)
                .await
                .map_err(|e| engine_path::numbered(index, e))?;
            Ok::<_, ApiError>(classify(output.data(), model.labels(), top_k))
        },
    ))
    .await;
    answers.into_iter().collect()
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
) -> Result<Json<Value>, ProtocolError> {
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
        return Ok(Json(metadata_json(&model)));
    }
    let version = match &target.version {
        VersionRequest::Latest => None,
        other => Some(model(&state, &target.name, other)?.version()),
    };
    let statuses = status(&state, &target.name, version)?;
    let list: Vec<Value> = statuses
        .iter()
        .map(|s| {
            json!({
                "version": s.version.to_string(),
                "state": s.state.as_str_name(),
                "status": {
                    "error_code": if s.error.is_empty() { "OK" } else { "UNKNOWN" },
                    "error_message": s.error,
                },
            })
        })
        .collect();
    Ok(Json(json!({ "model_version_status": list })))
}

/// The proto3 JSON form of GetModelMetadata's answer, as TF Serving's REST API gives it.
fn metadata_json(model: &ModelHandle) -> Value {
    let map = signature_def_map(model);
    let tensors = |infos: &HashMap<String, fovea_proto::tensorflow::TensorInfo>| {
        infos
            .iter()
            .map(|(key, info)| {
                let dims: Vec<Value> = info
                    .tensor_shape
                    .iter()
                    .flat_map(|s| &s.dim)
                    .map(|d| json!({ "size": d.size.to_string(), "name": d.name }))
                    .collect();
                let dtype = DataType::try_from(info.dtype).map_or("DT_INVALID", |d| d.as_str_name());
                (key.clone(), json!({ "dtype": dtype, "tensor_shape": { "dim": dims, "unknown_rank": false }, "name": key }))
            })
            .collect::<Map<String, Value>>()
    };
    let signatures: Map<String, Value> = map
        .signature_def
        .iter()
        .map(|(key, sig)| {
            (key.clone(), json!({ "inputs": tensors(&sig.inputs), "outputs": tensors(&sig.outputs), "method_name": sig.method_name }))
        })
        .collect();
    json!({
        "model_spec": { "name": model.name(), "signature_name": "", "version": model.version().to_string() },
        "metadata": { "signature_def": { "signature_def": signatures } },
    })
}

/// `POST /v1/models/{name}[/versions/{v}|/labels/{l}]:predict|:classify`.
pub async fn post(
    State(state): State<AppState>,
    rest: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ProtocolError> {
    let arrival = Instant::now();
    let Path(rest) = rest?;
    let target = parse_target(&rest)?;
    let verb = target.verb.as_deref().unwrap_or("");
    if target.metadata || !matches!(verb, "predict" | "classify") {
        return Err(ApiError::new(
            ErrorKind::NotFound,
            "not_found",
            format!("no such path: /v1/models/{rest}"),
        )
        .into());
    }
    let model = model(&state, &target.name, &target.version)?;
    let body: Value = serde_json::from_slice(&body?)
        .map_err(|e| ApiError::invalid("malformed_json", format!("malformed JSON body: {e}")))?;
    let Value::Object(body) = body else {
        return Err(
            ApiError::invalid("malformed_request", "the body must be a JSON object").into(),
        );
    };
    if let Some(signature) = body.get("signature_name") {
        check_signature(signature.as_str().unwrap_or("\u{0}"))?;
    }
    if verb == "classify" {
        let examples = rest_examples(&body, &model.config().input.name)?;
        let rows = classify_examples(&state, &model, examples, arrival).await?;
        let result: Vec<Vec<(String, f32)>> = rows
            .into_iter()
            .map(|row| row.into_iter().map(|p| (p.label, p.score)).collect())
            .collect();
        return Ok(Json(json!({ "result": result })).into_response());
    }
    let input_name = model.config().input.name.clone();
    let max = engine_path::max_elements(&state);
    let (value, columnar) = match (body.get("instances"), body.get("inputs")) {
        (Some(instances), None) => (row_input(instances, &input_name, max)?, false),
        (None, Some(inputs)) => (columnar_input(inputs, &input_name, max)?, true),
        _ => {
            return Err(ApiError::invalid(
                "malformed_request",
                "the body must have exactly one of \"instances\" (row format) or \"inputs\" (columnar format)",
            )
            .into());
        }
    };
    let output = predict(&state, &model, vec![(input_name, value)], arrival).await?;
    let rows: Vec<&[f32]> = (0..output.batch_size())
        .filter_map(|i| output.item(i))
        .collect();
    let key = if columnar { "outputs" } else { "predictions" };
    Ok(Json(json!({ key: rows })).into_response())
}

/// `{"b64": "..."}` → its bytes; None when `v` is not such an object.
fn b64_value(v: &Value) -> Option<Result<Bytes, ApiError>> {
    let object = v.as_object()?;
    let text = object.get("b64").filter(|_| object.len() == 1)?;
    Some(
        text.as_str()
            .and_then(|t| base64::engine::general_purpose::STANDARD.decode(t).ok())
            .map(Bytes::from)
            .ok_or_else(|| {
                ApiError::invalid("invalid_base64", "\"b64\" must hold a base64 string")
            }),
    )
}

/// An instance `{"<input>": value}` is that value; `{"b64": ...}` and plain values stay.
fn unnamed<'a>(instance: &'a Value, input: &str) -> Result<&'a Value, ApiError> {
    match instance.as_object() {
        Some(object) if !(object.len() == 1 && object.contains_key("b64")) => {
            match (object.get(input), object.len()) {
                (Some(v), 1) => Ok(v),
                _ => Err(ApiError::invalid(
                    "unknown_input",
                    format!(
                        "an instance must name only the input `{input}`; got keys {:?}",
                        object.keys().collect::<Vec<_>>()
                    ),
                )),
            }
        }
        _ => Ok(instance),
    }
}

/// Row format: a list of instances, each an encoded image or an item tensor.
fn row_input(instances: &Value, input: &str, max: usize) -> Result<TensorValue, ApiError> {
    let Value::Array(list) = instances else {
        return Err(ApiError::invalid(
            "malformed_request",
            "\"instances\" must be a list",
        ));
    };
    let items = list
        .iter()
        .map(|i| unnamed(i, input))
        .collect::<Result<Vec<_>, _>>()?;
    batch(&items, max)
}

/// Columnar format: the input's whole batch, bare or under the input's name.
fn columnar_input(inputs: &Value, input: &str, max: usize) -> Result<TensorValue, ApiError> {
    let value = unnamed(inputs, input)?;
    match value {
        Value::Array(list) => batch(&list.iter().collect::<Vec<_>>(), max),
        single => batch(&[single], max),
    }
}

/// Stacks items into one batch: all `{"b64"}` images, or all numeric arrays of one shape.
fn batch(items: &[&Value], max: usize) -> Result<TensorValue, ApiError> {
    if items.iter().any(|v| b64_value(v).is_some()) {
        let images = items
            .iter()
            .map(|v| {
                b64_value(v).unwrap_or_else(|| {
                    Err(ApiError::invalid(
                        "mixed_instances",
                        "instances mix images with numbers",
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(TensorValue::Bytes(BytesTensor {
            shape: vec![images.len()],
            items: images,
        }));
    }
    let item_shape = nested_shape(items.first().copied().unwrap_or(&Value::Null));
    let mut shape = vec![items.len()];
    shape.extend(&item_shape);
    let total = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= max)
        .ok_or_else(|| {
            ApiError::new(
                ErrorKind::TooLarge,
                "tensor_too_large",
                format!("a tensor of shape {shape:?} exceeds the limit of {max} elements"),
            )
        })?;
    let mut data = Vec::with_capacity(total);
    for item in items {
        flatten_numbers(item, &item_shape, &mut data)?;
    }
    Tensor::new(shape, data)
        .map(TensorValue::F32)
        .map_err(|e| ApiError::invalid("shape_mismatch", e.to_string()))
}

/// The shape of a nested array, following first elements.
fn nested_shape(v: &Value) -> Vec<usize> {
    let mut shape = Vec::new();
    let mut at = v;
    while let Value::Array(list) = at {
        shape.push(list.len());
        match list.first() {
            Some(first) => at = first,
            None => break,
        }
    }
    shape
}

/// Appends the numbers of `v`, which must have exactly `shape` (no ragged lists).
fn flatten_numbers(v: &Value, shape: &[usize], out: &mut Vec<f32>) -> Result<(), ApiError> {
    match (v, shape.split_first()) {
        (Value::Array(list), Some((&len, rest))) if list.len() == len => list
            .iter()
            .try_for_each(|item| flatten_numbers(item, rest, out)),
        (Value::Number(n), None) => {
            let f = n.as_f64().unwrap_or(f64::NAN);
            out.push(f as f32);
            Ok(())
        }
        (Value::Array(_), _) | (Value::Number(_), Some(_)) => Err(ApiError::invalid(
            "ragged_instances",
            "instances are ragged: every instance must have the same shape",
        )),
        (other, _) => Err(ApiError::invalid(
            "invalid_tensor_data",
            format!("expected numbers for a float input, got {other}"),
        )),
    }
}

/// `:classify` examples: `{"<feature>": {"b64"} | number list}` objects.
fn rest_examples(body: &Map<String, Value>, input: &str) -> Result<Vec<ExampleValue>, ApiError> {
    let Some(Value::Array(examples)) = body.get("examples") else {
        return Err(ApiError::invalid(
            "malformed_request",
            "\"examples\" must be a list",
        ));
    };
    if examples.is_empty() {
        return Err(ApiError::invalid(
            "malformed_request",
            "\"examples\" is empty",
        ));
    }
    let context = body.get("context").and_then(Value::as_object);
    examples
        .iter()
        .enumerate()
        .map(|(i, example)| {
            let own = example.as_object();
            let lookup = |key: &str| {
                own.and_then(|m| m.get(key))
                    .or_else(|| context.and_then(|c| c.get(key)))
            };
            let value = ["image", input, "inputs"]
                .iter()
                .find_map(|k| lookup(k))
                .or_else(|| match own {
                    Some(m) if m.len() == 1 => m.values().next(),
                    _ => None,
                })
                .ok_or_else(|| {
                    ApiError::invalid(
                        "missing_feature",
                        format!("example {i} has no input feature"),
                    )
                })?;
            if let Some(image) = b64_value(value) {
                return image.map(ExampleValue::Image);
            }
            let item = std::iter::once(value).collect::<Vec<_>>();
            match batch(&item, usize::MAX)? {
                TensorValue::F32(t) => Ok(ExampleValue::Floats(t.into_data())),
                TensorValue::Bytes(_) => Err(ApiError::invalid(
                    "invalid_feature",
                    format!("example {i}: unsupported feature"),
                )),
            }
        })
        .collect()
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

    #[test]
    fn ragged_instances_are_refused() {
        let rows = json!([[1.0, 2.0], [3.0]]);
        assert_eq!(
            row_input(&rows, "x", 100).unwrap_err().code,
            "ragged_instances"
        );
        let deep = json!([[1.0, 2.0], [3.0, [4.0]]]);
        assert_eq!(
            row_input(&deep, "x", 100).unwrap_err().code,
            "ragged_instances"
        );
    }

    #[test]
    fn row_instances_stack_into_one_batch() {
        let rows = json!([{"x": [1.0, 2.0]}, {"x": [3.0, 4.0]}]);
        let TensorValue::F32(t) = row_input(&rows, "x", 100).unwrap() else {
            panic!("not numeric")
        };
        assert_eq!(t.shape(), &[2, 2]);
        assert_eq!(t.data(), &[1.0, 2.0, 3.0, 4.0]);
    }

    #[test]
    fn b64_instances_become_images_and_bad_base64_is_refused() {
        let rows = json!([{"b64": "aGk="}]);
        let TensorValue::Bytes(b) = row_input(&rows, "x", 100).unwrap() else {
            panic!("not bytes")
        };
        assert_eq!(b.items, vec![Bytes::from_static(b"hi")]);
        assert_eq!(
            row_input(&json!([{"b64": "***"}]), "x", 100)
                .unwrap_err()
                .code,
            "invalid_base64"
        );
    }

    #[test]
    fn oversized_instances_are_refused_before_flattening() {
        let rows = json!([[1.0, 2.0, 3.0]]);
        assert_eq!(
            row_input(&rows, "x", 2).unwrap_err().kind,
            ErrorKind::TooLarge
        );
    }
}

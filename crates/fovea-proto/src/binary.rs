//! KServe V2 REST bodies, including the binary tensor data extension: a JSON
//! header of `Inference-Header-Content-Length` bytes followed by the raw
//! tensors, in tensor order, of every tensor whose parameters carry
//! `binary_data_size`. Pure functions over bytes; fovea-server owns the HTTP.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::kserve::{self, Kind, positive_count};
use crate::value::{RawType, checked_shape, exact_f32, f32_tensor, json_f32};
use crate::{BytesTensor, ProtoError, TensorValue};

/// HTTP header giving the length of the JSON part of a binary-extension body.
pub const HEADER_LENGTH_HEADER: &str = "Inference-Header-Content-Length";
/// Tensor parameter: the byte length of this tensor's binary segment.
pub const BINARY_DATA_SIZE: &str = "binary_data_size";
/// Requested-output parameter: return this output as binary.
pub const BINARY_DATA: &str = "binary_data";
/// Request parameter: return every output as binary unless the output says otherwise.
pub const BINARY_DATA_OUTPUT: &str = "binary_data_output";

/// A tensor's data: inline JSON, or its segment of the binary payload.
#[derive(Debug, Clone, PartialEq)]
pub enum RestData {
    /// The tensor's `data` member (flat or nested array).
    Json(Value),
    /// The tensor's segment of the binary payload.
    Binary(Bytes),
}

/// One input (or, in a response, output) tensor of a REST body.
#[derive(Debug, Clone, PartialEq)]
pub struct RestTensor {
    /// Tensor name.
    pub name: String,
    /// Declared shape, unchecked until decoded.
    pub shape: Vec<i64>,
    /// KServe datatype name, e.g. "FP32" or "BYTES".
    pub datatype: String,
    /// The tensor's `parameters` object.
    pub parameters: Map<String, Value>,
    /// Inline or binary data.
    pub data: RestData,
}

/// An entry of the request's `outputs` list.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct RestRequestedOutput {
    /// Output tensor name.
    pub name: String,
    /// E.g. `binary_data`, `classification`.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub parameters: Map<String, Value>,
}

/// A parsed `POST /v2/models/{name}/infer` body.
#[derive(Debug, Clone, PartialEq)]
pub struct RestInferRequest {
    /// Request id, echoed in the response.
    pub id: Option<String>,
    /// Request-level parameters, e.g. `binary_data_output`.
    pub parameters: Map<String, Value>,
    /// Inputs in request order.
    pub inputs: Vec<RestTensor>,
    /// Requested outputs; empty means all.
    pub outputs: Vec<RestRequestedOutput>,
}

/// An encoded body and, when it carries binary data, the value for
/// `Inference-Header-Content-Length`.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedBody {
    /// JSON header followed by any binary segments.
    pub body: Vec<u8>,
    /// Length of the JSON header when binary segments follow.
    pub header_length: Option<usize>,
}

/// One output to encode into a response.
#[derive(Debug, Clone, PartialEq)]
pub struct RestOutput {
    /// Output tensor name.
    pub name: String,
    /// The output's data.
    pub value: TensorValue,
    /// Send as a binary segment instead of JSON `data`.
    pub binary: bool,
}

#[derive(Deserialize)]
struct WireTensor {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    parameters: Map<String, Value>,
    #[serde(default)]
    data: Option<Value>,
}

#[derive(Deserialize)]
struct WireRequest {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    parameters: Map<String, Value>,
    inputs: Vec<WireTensor>,
    #[serde(default)]
    outputs: Vec<RestRequestedOutput>,
}

#[derive(Deserialize)]
struct WireResponse {
    outputs: Vec<WireTensor>,
}

/// Splits and parses a request body. `header_length` is the value of
/// `Inference-Header-Content-Length` (None: the whole body is JSON). Binary
/// segments are slices of `body`, not copies.
pub fn parse_infer_request(
    body: &Bytes,
    header_length: Option<usize>,
) -> Result<RestInferRequest, ProtoError> {
    let (json, mut binary) = split_body(body, header_length)?;
    let wire: WireRequest =
        serde_json::from_slice(&json).map_err(|e| ProtoError::MalformedJson(e.to_string()))?;
    let inputs = wire
        .inputs
        .into_iter()
        .map(|t| attach_data(t, &mut binary, "input"))
        .collect::<Result<Vec<_>, _>>()?;
    ensure_consumed(&binary)?;
    Ok(RestInferRequest {
        id: wire.id,
        parameters: wire.parameters,
        inputs,
        outputs: wire.outputs,
    })
}

/// Parses a response body into its outputs (the client side, used by tests
/// and tools).
pub fn parse_infer_response(
    body: &Bytes,
    header_length: Option<usize>,
) -> Result<Vec<RestTensor>, ProtoError> {
    let (json, mut binary) = split_body(body, header_length)?;
    let wire: WireResponse =
        serde_json::from_slice(&json).map_err(|e| ProtoError::MalformedJson(e.to_string()))?;
    let outputs = wire
        .outputs
        .into_iter()
        .map(|t| attach_data(t, &mut binary, "output"))
        .collect::<Result<Vec<_>, _>>()?;
    ensure_consumed(&binary)?;
    Ok(outputs)
}

fn split_body(body: &Bytes, header_length: Option<usize>) -> Result<(Bytes, Bytes), ProtoError> {
    match header_length {
        None => Ok((body.clone(), Bytes::new())),
        Some(h) if h > body.len() => Err(ProtoError::Truncated {
            what: format!("JSON header ({HEADER_LENGTH_HEADER})"),
            needed: h,
            available: body.len(),
        }),
        Some(h) => Ok((body.slice(..h), body.slice(h..))),
    }
}

fn attach_data(t: WireTensor, binary: &mut Bytes, role: &str) -> Result<RestTensor, ProtoError> {
    let size = match t.parameters.get(BINARY_DATA_SIZE) {
        None => None,
        Some(v) => Some(
            v.as_u64()
                .and_then(|s| usize::try_from(s).ok())
                .ok_or_else(|| ProtoError::InvalidData {
                    name: t.name.clone(),
                    reason: format!("{BINARY_DATA_SIZE} must be a non-negative integer, got {v}"),
                })?,
        ),
    };
    let data = match (size, t.data) {
        (Some(_), Some(_)) => {
            return Err(ProtoError::InvalidData {
                name: t.name,
                reason: format!("both \"data\" and {BINARY_DATA_SIZE} are given"),
            });
        }
        (Some(n), None) => {
            if n > binary.len() {
                return Err(ProtoError::Truncated {
                    what: format!("{role} '{}' binary data", t.name),
                    needed: n,
                    available: binary.len(),
                });
            }
            RestData::Binary(binary.split_to(n))
        }
        (None, Some(v)) => RestData::Json(v),
        (None, None) => {
            return Err(ProtoError::InvalidData {
                name: t.name,
                reason: format!("neither \"data\" nor {BINARY_DATA_SIZE} is given"),
            });
        }
    };
    Ok(RestTensor {
        name: t.name,
        shape: t.shape,
        datatype: t.datatype,
        parameters: t.parameters,
        data,
    })
}

fn ensure_consumed(rest: &Bytes) -> Result<(), ProtoError> {
    if rest.is_empty() {
        Ok(())
    } else {
        Err(ProtoError::InvalidRequest(format!(
            "{} bytes of binary data follow the last binary tensor",
            rest.len()
        )))
    }
}

/// Decodes a REST tensor: binary segments like gRPC raw contents, JSON `data`
/// as a flat or nested array of exactly one value per element (numbers, or
/// strings for BYTES).
pub fn decode_tensor(tensor: &RestTensor, max_elements: usize) -> Result<TensorValue, ProtoError> {
    let name = tensor.name.as_str();
    let json = match &tensor.data {
        RestData::Binary(raw) => {
            return kserve::decode_raw_tensor(
                name,
                &tensor.datatype,
                &tensor.shape,
                raw,
                max_elements,
            );
        }
        RestData::Json(v) => v,
    };
    let (shape, n) = checked_shape(name, &tensor.shape, max_elements)?;
    let kind = kserve::kind_of(name, &tensor.datatype)?;
    // The declared shape is only a claim: the values are counted before any
    // buffer is sized by it, so a few bytes declaring a huge shape cost no
    // memory (the count stops one past `n`).
    let given = count_leaves(json, n);
    if given > n {
        return Err(ProtoError::InvalidData {
            name: name.to_string(),
            reason: format!("more than {n} values for the declared shape"),
        });
    }
    if given < n {
        return Err(ProtoError::ElementCount {
            name: name.to_string(),
            shape,
            expected: n,
            actual: given,
        });
    }
    let mut flat = Vec::with_capacity(n);
    flatten(json, &mut flat);
    let wrong = |v: &Value, want: &str| ProtoError::InvalidData {
        name: name.to_string(),
        reason: format!("{} data must be {want}, got {v}", tensor.datatype),
    };
    match kind {
        Kind::Bytes => {
            let items = flat
                .into_iter()
                .map(|v| match v {
                    Value::String(s) => Ok(Bytes::from(s.clone().into_bytes())),
                    other => Err(wrong(other, "strings")),
                })
                .collect::<Result<_, _>>()?;
            Ok(TensorValue::Bytes(BytesTensor { shape, items }))
        }
        Kind::Numeric(ty) => {
            let float = matches!(
                ty,
                RawType::F32 | RawType::F64 | RawType::F16 | RawType::Bf16
            );
            let data = flat
                .into_iter()
                .map(|v| match v {
                    // A number in a float tensor follows the one f32 rule
                    // (crate::value): integer literals exactly, others rounded.
                    Value::Number(number) if float => json_f32(name, number),
                    _ if float => Err(wrong(v, "numbers")),
                    _ => {
                        if let Some(i) = v.as_i64() {
                            exact_f32(name, i)
                        } else if let Some(u) = v.as_u64() {
                            exact_f32(name, u)
                        } else {
                            Err(wrong(v, "integers"))
                        }
                    }
                })
                .collect::<Result<Vec<f32>, _>>()?;
            f32_tensor(name, shape, data)
        }
    }
}

/// The number of leaves of a (possibly nested) JSON array, counting no
/// further than `limit + 1`: enough to tell "exactly `limit`" from "more"
/// without walking oversized data.
fn count_leaves(v: &Value, limit: usize) -> usize {
    match v {
        Value::Array(items) => {
            let mut count = 0usize;
            for item in items {
                count += count_leaves(item, limit - count);
                if count > limit {
                    break;
                }
            }
            count
        }
        _ => 1,
    }
}

/// Collects the leaves of a (possibly nested) JSON array in row-major order.
fn flatten<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    match v {
        Value::Array(items) => items.iter().for_each(|item| flatten(item, out)),
        leaf => out.push(leaf),
    }
}

/// Whether an output should be returned binary: its own `binary_data`
/// parameter if given, else the request's `binary_data_output`.
pub fn wants_binary(request: &RestInferRequest, output_name: &str) -> bool {
    request
        .outputs
        .iter()
        .find(|o| o.name == output_name)
        .and_then(|o| o.parameters.get(BINARY_DATA))
        .or_else(|| request.parameters.get(BINARY_DATA_OUTPUT))
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// The `classification` count an output asks for, if any.
pub fn class_count(output: &RestRequestedOutput) -> Result<Option<usize>, ProtoError> {
    match output.parameters.get(kserve::CLASSIFICATION_PARAMETER) {
        None => Ok(None),
        Some(v) => {
            let n = v
                .as_i64()
                .map(i128::from)
                .or_else(|| v.as_u64().map(i128::from))
                .unwrap_or(-1);
            positive_count(n).map(Some)
        }
    }
}

/// Encodes a response: JSON outputs in order, binary ones as segments after
/// the JSON header.
pub fn encode_infer_response(
    model_name: &str,
    model_version: &str,
    id: Option<&str>,
    outputs: &[RestOutput],
) -> EncodedBody {
    let mut header = Map::new();
    header.insert("model_name".into(), json!(model_name));
    header.insert("model_version".into(), json!(model_version));
    if let Some(id) = id {
        header.insert("id".into(), json!(id));
    }
    let tensors: Vec<(&str, &TensorValue, bool)> = outputs
        .iter()
        .map(|o| (o.name.as_str(), &o.value, o.binary))
        .collect();
    encode_tensors(header, "outputs", &tensors)
}

/// Encodes a request (the client side, used by tests and tools); `binary`
/// sends every input as a binary segment.
pub fn encode_infer_request(
    inputs: &[(String, TensorValue)],
    outputs: &[RestRequestedOutput],
    binary: bool,
) -> EncodedBody {
    let mut header = Map::new();
    if !outputs.is_empty() {
        header.insert("outputs".into(), json!(outputs));
    }
    let tensors: Vec<(&str, &TensorValue, bool)> = inputs
        .iter()
        .map(|(n, v)| (n.as_str(), v, binary))
        .collect();
    encode_tensors(header, "inputs", &tensors)
}

fn encode_tensors(
    mut header: Map<String, Value>,
    key: &str,
    tensors: &[(&str, &TensorValue, bool)],
) -> EncodedBody {
    let mut segments: Vec<Bytes> = Vec::new();
    let list: Vec<Value> = tensors
        .iter()
        .map(|&(name, value, binary)| {
            let mut t = Map::new();
            t.insert("name".into(), json!(name));
            t.insert("datatype".into(), json!(value.kserve_datatype()));
            t.insert("shape".into(), json!(value.shape()));
            if binary {
                let seg = match value {
                    TensorValue::F32(x) => kserve::f32_le_bytes(x.data()),
                    TensorValue::Bytes(b) => kserve::join_bytes_elements(&b.items),
                };
                t.insert("parameters".into(), json!({ BINARY_DATA_SIZE: seg.len() }));
                segments.push(seg);
            } else {
                let data = match value {
                    TensorValue::F32(x) => json!(x.data()),
                    TensorValue::Bytes(b) => Value::Array(
                        b.items
                            .iter()
                            .map(|i| Value::String(String::from_utf8_lossy(i).into_owned()))
                            .collect(),
                    ),
                };
                t.insert("data".into(), data);
            }
            Value::Object(t)
        })
        .collect();
    header.insert(key.into(), Value::Array(list));
    // Serialising a Value built from strings and finite-or-null numbers cannot fail.
    let mut body = serde_json::to_vec(&Value::Object(header)).unwrap_or_default();
    if segments.is_empty() {
        return EncodedBody {
            body,
            header_length: None,
        };
    }
    let header_length = body.len();
    for seg in segments {
        body.extend_from_slice(&seg);
    }
    EncodedBody {
        body,
        header_length: Some(header_length),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fovea_core::{FoveaError, Tensor};

    const MAX: usize = 1 << 20;

    fn body(json: &str, binary: &[u8]) -> (Bytes, Option<usize>) {
        let mut b = json.as_bytes().to_vec();
        b.extend_from_slice(binary);
        (Bytes::from(b), Some(json.len()))
    }

    fn f32_bytes(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn binary_inputs_are_sliced_in_input_order() {
        let json = r#"{"inputs":[
            {"name":"a","shape":[1,2],"datatype":"FP32","parameters":{"binary_data_size":8}},
            {"name":"b","shape":[1],"datatype":"FP32","data":[3.5]},
            {"name":"img","shape":[1],"datatype":"BYTES","parameters":{"binary_data_size":7}}],
            "outputs":[{"name":"out","parameters":{"binary_data":true,"classification":3}}]}"#;
        let mut bin = f32_bytes(&[1.0, 2.0]);
        bin.extend_from_slice(&[3, 0, 0, 0, b'j', b'p', b'g']);
        let (b, h) = body(json, &bin);
        let req = parse_infer_request(&b, h).unwrap();
        assert_eq!(req.inputs.len(), 3);
        assert_eq!(
            decode_tensor(&req.inputs[0], MAX).unwrap(),
            TensorValue::F32(Tensor::new(vec![1, 2], vec![1.0, 2.0]).unwrap())
        );
        assert_eq!(
            decode_tensor(&req.inputs[1], MAX).unwrap(),
            TensorValue::F32(Tensor::new(vec![1], vec![3.5]).unwrap())
        );
        assert_eq!(
            decode_tensor(&req.inputs[2], MAX).unwrap(),
            TensorValue::Bytes(BytesTensor {
                shape: vec![1],
                items: vec![Bytes::from_static(b"jpg")]
            })
        );
        assert!(wants_binary(&req, "out"));
        assert_eq!(class_count(&req.outputs[0]).unwrap(), Some(3));
    }

    #[test]
    fn a_truncated_binary_payload_is_refused_with_what_is_missing() {
        let json = r#"{"inputs":[{"name":"a","shape":[1,2],"datatype":"FP32","parameters":{"binary_data_size":8}}]}"#;
        let (b, h) = body(json, &f32_bytes(&[1.0])[..]);
        let err = parse_infer_request(&b, h).unwrap_err();
        assert_eq!(
            err.to_string(),
            "binary payload truncated: input 'a' binary data needs 8 bytes, only 4 remain"
        );
        assert_eq!(err.code(), "truncated_payload");
        assert_eq!(err.kind(), fovea_core::ErrorKind::InvalidInput);
    }

    #[test]
    fn a_header_length_beyond_the_body_is_truncation() {
        let b = Bytes::from_static(b"{\"inputs\":[]}");
        let err = parse_infer_request(&b, Some(100)).unwrap_err();
        assert!(
            matches!(
                err,
                ProtoError::Truncated {
                    needed: 100,
                    available: 13,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn binary_size_disagreeing_with_the_shape_is_refused() {
        let json = r#"{"inputs":[{"name":"a","shape":[1,3],"datatype":"FP32","parameters":{"binary_data_size":8}}]}"#;
        let (b, h) = body(json, &f32_bytes(&[1.0, 2.0]));
        let req = parse_infer_request(&b, h).unwrap();
        let err = decode_tensor(&req.inputs[0], MAX).unwrap_err();
        assert!(
            matches!(
                err,
                ProtoError::ByteLength {
                    expected: 12,
                    actual: 8,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn trailing_binary_bytes_are_refused() {
        let json = r#"{"inputs":[{"name":"a","shape":[1],"datatype":"FP32","parameters":{"binary_data_size":4}}]}"#;
        let (b, h) = body(json, &f32_bytes(&[1.0, 2.0]));
        assert!(matches!(
            parse_infer_request(&b, h),
            Err(ProtoError::InvalidRequest(_))
        ));
    }

    #[test]
    fn malformed_json_and_missing_data_are_refused() {
        let err = parse_infer_request(&Bytes::from_static(b"{\"inputs\": [}"), None).unwrap_err();
        assert!(matches!(err, ProtoError::MalformedJson(_)));
        assert_eq!(err.code(), "malformed_json");
        let no_data =
            Bytes::from_static(br#"{"inputs":[{"name":"a","shape":[1],"datatype":"FP32"}]}"#);
        assert!(matches!(
            parse_infer_request(&no_data, None),
            Err(ProtoError::InvalidData { .. })
        ));
        let both = br#"{"inputs":[{"name":"a","shape":[1],"datatype":"FP32","data":[1],"parameters":{"binary_data_size":4}}]}"#;
        let (b, h) = body(std::str::from_utf8(both).unwrap(), &f32_bytes(&[1.0]));
        assert!(matches!(
            parse_infer_request(&b, h),
            Err(ProtoError::InvalidData { .. })
        ));
        let bad_size = Bytes::from_static(br#"{"inputs":[{"name":"a","shape":[1],"datatype":"FP32","parameters":{"binary_data_size":-4}}]}"#);
        assert!(matches!(
            parse_infer_request(&bad_size, None),
            Err(ProtoError::InvalidData { .. })
        ));
    }

    #[test]
    fn json_data_may_be_nested_and_must_fill_the_shape_exactly() {
        let ok = Bytes::from_static(
            br#"{"inputs":[{"name":"a","shape":[2,2],"datatype":"FP32","data":[[1,2],[3,4.5]]}]}"#,
        );
        let req = parse_infer_request(&ok, None).unwrap();
        assert_eq!(
            decode_tensor(&req.inputs[0], MAX).unwrap(),
            TensorValue::F32(Tensor::new(vec![2, 2], vec![1.0, 2.0, 3.0, 4.5]).unwrap())
        );
        let short = Bytes::from_static(
            br#"{"inputs":[{"name":"a","shape":[2,2],"datatype":"FP32","data":[1,2,3]}]}"#,
        );
        let req = parse_infer_request(&short, None).unwrap();
        assert!(matches!(
            decode_tensor(&req.inputs[0], MAX),
            Err(ProtoError::ElementCount {
                expected: 4,
                actual: 3,
                ..
            })
        ));
        let long = Bytes::from_static(
            br#"{"inputs":[{"name":"a","shape":[1],"datatype":"FP32","data":[1,2]}]}"#,
        );
        let req = parse_infer_request(&long, None).unwrap();
        assert!(decode_tensor(&req.inputs[0], MAX).is_err());
    }

    fn json_input(json: &'static str) -> RestTensor {
        let req = parse_infer_request(&Bytes::from_static(json.as_bytes()), None).unwrap();
        req.inputs.into_iter().next().unwrap()
    }

    #[test]
    fn a_huge_declared_shape_with_few_values_is_refused_before_allocating() {
        // 2^40 elements: a buffer sized by the shape (8 TiB of value
        // references) would abort the process; counting the one value first
        // refuses the request for what it is.
        let t = json_input(
            r#"{"inputs":[{"name":"a","shape":[1099511627776],"datatype":"FP32","data":[1]}]}"#,
        );
        let err = decode_tensor(&t, usize::MAX).unwrap_err();
        assert!(
            matches!(
                err,
                ProtoError::ElementCount {
                    expected: 1_099_511_627_776,
                    actual: 1,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(err.code(), "shape_mismatch");
    }

    #[test]
    fn values_beyond_the_declared_shape_are_refused() {
        let t = json_input(
            r#"{"inputs":[{"name":"a","shape":[2],"datatype":"FP32","data":[[1,2],[3,4],[5]]}]}"#,
        );
        let err = decode_tensor(&t, MAX).unwrap_err();
        assert!(
            matches!(&err, ProtoError::InvalidData { reason, .. } if reason.contains("more than 2")),
            "{err}"
        );
    }

    #[test]
    fn fp32_json_integer_literals_must_be_exact_in_f32() {
        let t = json_input(
            r#"{"inputs":[{"name":"a","shape":[1],"datatype":"FP32","data":[16777217]}]}"#,
        );
        let err = decode_tensor(&t, MAX).unwrap_err();
        assert!(matches!(err, ProtoError::NotRepresentable { .. }), "{err}");
        assert_eq!(err.code(), "value_not_representable");
        let t = json_input(
            r#"{"inputs":[{"name":"a","shape":[1],"datatype":"FP64","data":[18446744073709551615]}]}"#,
        );
        assert!(matches!(
            decode_tensor(&t, MAX),
            Err(ProtoError::NotRepresentable { .. })
        ));
        let t = json_input(
            r#"{"inputs":[{"name":"a","shape":[2],"datatype":"FP32","data":[33554432,-255]}]}"#,
        );
        assert_eq!(
            decode_tensor(&t, MAX).unwrap(),
            TensorValue::F32(Tensor::new(vec![2], vec![33_554_432.0, -255.0]).unwrap())
        );
    }

    #[test]
    fn fp32_json_decimals_are_rounded_and_refused_only_outside_f32_range() {
        let t = json_input(
            r#"{"inputs":[{"name":"a","shape":[2],"datatype":"FP32","data":[16777217.0,0.1]}]}"#,
        );
        assert_eq!(
            decode_tensor(&t, MAX).unwrap(),
            TensorValue::F32(Tensor::new(vec![2], vec![16_777_216.0, 0.1]).unwrap())
        );
        let t =
            json_input(r#"{"inputs":[{"name":"a","shape":[1],"datatype":"FP16","data":[1e39]}]}"#);
        assert!(matches!(
            decode_tensor(&t, MAX),
            Err(ProtoError::NotRepresentable { .. })
        ));
    }

    #[test]
    fn json_values_of_the_wrong_type_are_refused() {
        let s = Bytes::from_static(
            br#"{"inputs":[{"name":"a","shape":[1],"datatype":"FP32","data":["x"]}]}"#,
        );
        let req = parse_infer_request(&s, None).unwrap();
        assert!(matches!(
            decode_tensor(&req.inputs[0], MAX),
            Err(ProtoError::InvalidData { .. })
        ));
        let f = Bytes::from_static(
            br#"{"inputs":[{"name":"a","shape":[1],"datatype":"INT32","data":[1.5]}]}"#,
        );
        let req = parse_infer_request(&f, None).unwrap();
        assert!(matches!(
            decode_tensor(&req.inputs[0], MAX),
            Err(ProtoError::InvalidData { .. })
        ));
        let b = Bytes::from_static(
            br#"{"inputs":[{"name":"a","shape":[1],"datatype":"BOOL","data":[true]}]}"#,
        );
        let req = parse_infer_request(&b, None).unwrap();
        assert!(matches!(
            decode_tensor(&req.inputs[0], MAX),
            Err(ProtoError::UnsupportedDtype { .. })
        ));
    }

    #[test]
    fn binary_output_follows_the_output_parameter_then_the_request_default() {
        let req = parse_infer_request(
            &Bytes::from_static(br#"{"parameters":{"binary_data_output":true},"inputs":[],"outputs":[{"name":"x","parameters":{"binary_data":false}}]}"#),
            None,
        )
        .unwrap();
        assert!(!wants_binary(&req, "x"));
        assert!(wants_binary(&req, "y"));
    }

    #[test]
    fn responses_round_trip_with_mixed_json_and_binary_outputs() {
        let logits = TensorValue::F32(Tensor::new(vec![1, 3], vec![0.5, -1.25, 3.0]).unwrap());
        let classes = TensorValue::Bytes(BytesTensor {
            shape: vec![1, 1],
            items: vec![Bytes::from_static(b"3.000000:2:bird")],
        });
        let enc = encode_infer_response(
            "tiny",
            "1",
            Some("req-1"),
            &[
                RestOutput {
                    name: "logits".into(),
                    value: logits.clone(),
                    binary: true,
                },
                RestOutput {
                    name: "classes".into(),
                    value: classes.clone(),
                    binary: false,
                },
            ],
        );
        let h = enc.header_length.unwrap();
        let header: Value = serde_json::from_slice(&enc.body[..h]).unwrap();
        assert_eq!(header["id"], "req-1");
        assert_eq!(header["outputs"][0]["parameters"]["binary_data_size"], 12);
        assert_eq!(header["outputs"][1]["data"][0], "3.000000:2:bird");
        let outs = parse_infer_response(&Bytes::from(enc.body), Some(h)).unwrap();
        assert_eq!(decode_tensor(&outs[0], MAX).unwrap(), logits);
        assert_eq!(decode_tensor(&outs[1], MAX).unwrap(), classes);
    }

    #[test]
    fn json_only_responses_have_no_header_length() {
        let v = TensorValue::F32(Tensor::new(vec![1], vec![1.0]).unwrap());
        let enc = encode_infer_response(
            "m",
            "1",
            None,
            &[RestOutput {
                name: "o".into(),
                value: v,
                binary: false,
            }],
        );
        assert_eq!(enc.header_length, None);
        let header: Value = serde_json::from_slice(&enc.body).unwrap();
        assert!(header.get("id").is_none());
    }

    #[test]
    fn encoded_requests_parse_back_identically() {
        let inputs = vec![
            (
                "x".to_string(),
                TensorValue::F32(Tensor::new(vec![1, 2], vec![1.0, 2.0]).unwrap()),
            ),
            (
                "img".to_string(),
                TensorValue::Bytes(BytesTensor {
                    shape: vec![1],
                    items: vec![Bytes::from_static(b"\x89PNG")],
                }),
            ),
        ];
        for binary in [true, false] {
            let enc = encode_infer_request(&inputs, &[], binary);
            assert_eq!(enc.header_length.is_some(), binary);
            let req = parse_infer_request(&Bytes::from(enc.body), enc.header_length).unwrap();
            let back: Vec<TensorValue> = req
                .inputs
                .iter()
                .map(|t| decode_tensor(t, MAX).unwrap())
                .collect();
            // JSON carries BYTES as UTF-8 strings, so only valid UTF-8 survives that path.
            if binary {
                assert_eq!(back[1], inputs[1].1);
            }
            assert_eq!(back[0], inputs[0].1);
        }
    }
}

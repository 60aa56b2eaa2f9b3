//! KServe V2 (Open Inference Protocol) conversions shared by gRPC and REST:
//! datatype names, raw little-endian and BYTES framing, `ModelInferRequest`
//! inputs → fovea tensors, outputs → `ModelInferResponse`, and Triton's
//! classification extension.

use std::collections::HashMap;

use bytes::{BufMut, Bytes, BytesMut};
use fovea_core::{Labels, Tensor};

use crate::inference::model_infer_request::InferInputTensor;
use crate::inference::model_infer_response::InferOutputTensor;
use crate::inference::{
    InferParameter, InferTensorContents, ModelInferRequest, ModelInferResponse, infer_parameter,
};
use crate::value::{RawType, checked_shape, decode_raw, exact_f32, f32_tensor, narrow_f64};
use crate::{BytesTensor, ProtoError, TensorValue};

/// Output parameter (and REST output parameter) asking for the top-N classes.
pub const CLASSIFICATION_PARAMETER: &str = "classification";

/// How a KServe datatype is carried.
pub(crate) enum Kind {
    Numeric(RawType),
    Bytes,
}

pub(crate) fn kind_of(name: &str, datatype: &str) -> Result<Kind, ProtoError> {
    let raw = match datatype {
        "FP32" => RawType::F32,
        "FP64" => RawType::F64,
        "FP16" => RawType::F16,
        "BF16" => RawType::Bf16,
        "INT8" => RawType::I8,
        "INT16" => RawType::I16,
        "INT32" => RawType::I32,
        "INT64" => RawType::I64,
        "UINT8" => RawType::U8,
        "UINT16" => RawType::U16,
        "UINT32" => RawType::U32,
        "UINT64" => RawType::U64,
        "BYTES" => return Ok(Kind::Bytes),
        _ => {
            return Err(ProtoError::UnsupportedDtype {
                name: name.to_string(),
                dtype: datatype.to_string(),
            });
        }
    };
    Ok(Kind::Numeric(raw))
}

/// Decodes one tensor sent as raw bytes (gRPC `raw_input_contents[i]` or a
/// REST binary-extension segment): little-endian elements with the exact
/// length, or for BYTES a 4-byte little-endian length before each element.
pub fn decode_raw_tensor(
    name: &str,
    datatype: &str,
    dims: &[i64],
    raw: &Bytes,
    max_elements: usize,
) -> Result<TensorValue, ProtoError> {
    let (shape, n) = checked_shape(name, dims, max_elements)?;
    match kind_of(name, datatype)? {
        Kind::Numeric(ty) => {
            let data = decode_raw(name, datatype, ty, &shape, n, raw)?;
            f32_tensor(name, shape, data)
        }
        Kind::Bytes => {
            let items = split_bytes_elements(name, raw, n)?;
            Ok(TensorValue::Bytes(BytesTensor { shape, items }))
        }
    }
}

/// Splits length-prefixed BYTES elements without copying them; exactly
/// `count` elements must fill the buffer.
pub fn split_bytes_elements(
    name: &str,
    raw: &Bytes,
    count: usize,
) -> Result<Vec<Bytes>, ProtoError> {
    let mut items = Vec::with_capacity(count.min(raw.len() / 4));
    let mut at = 0usize;
    while at < raw.len() {
        let truncated = |needed: usize| ProtoError::Truncated {
            what: format!("tensor '{name}' BYTES element {}", items.len()),
            needed,
            available: raw.len() - at,
        };
        let Some(prefix) = raw.get(at..at + 4) else {
            return Err(truncated(4));
        };
        let len = u32::from_le_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
        let start = at + 4;
        let end = start
            .checked_add(len)
            .filter(|&e| e <= raw.len())
            .ok_or_else(|| truncated(4 + len))?;
        items.push(raw.slice(start..end));
        at = end;
    }
    if items.len() != count {
        return Err(ProtoError::ElementCount {
            name: name.to_string(),
            shape: vec![count],
            expected: count,
            actual: items.len(),
        });
    }
    Ok(items)
}

/// Frames byte strings as KServe raw BYTES (4-byte little-endian length each).
pub fn join_bytes_elements(items: &[Bytes]) -> Bytes {
    let mut out = BytesMut::with_capacity(items.iter().map(|b| b.len() + 4).sum());
    for item in items {
        // Elements over 4 GiB cannot be framed; fovea never produces them.
        out.put_u32_le(u32::try_from(item.len()).unwrap_or(u32::MAX));
        out.put_slice(item);
    }
    out.freeze()
}

/// Little-endian f32 bytes of a tensor.
pub fn f32_le_bytes(data: &[f32]) -> Bytes {
    let mut out = BytesMut::with_capacity(data.len() * 4);
    for v in data {
        out.put_f32_le(*v);
    }
    out.freeze()
}

/// Decodes one tensor sent in the typed `contents` fields; the count must match
/// the shape exactly (KServe has no fill rule). FP16/BF16 have no typed field
/// and must be raw.
pub fn decode_contents(
    name: &str,
    datatype: &str,
    dims: &[i64],
    contents: &InferTensorContents,
    max_elements: usize,
) -> Result<TensorValue, ProtoError> {
    let (shape, n) = checked_shape(name, dims, max_elements)?;
    let exact = |len: usize| {
        if len == n {
            Ok(())
        } else if len == 0 {
            Err(ProtoError::MissingData {
                name: name.to_string(),
                shape: shape.clone(),
            })
        } else {
            Err(ProtoError::ElementCount {
                name: name.to_string(),
                shape: shape.clone(),
                expected: n,
                actual: len,
            })
        }
    };
    let ty = match kind_of(name, datatype)? {
        Kind::Bytes => {
            exact(contents.bytes_contents.len())?;
            return Ok(TensorValue::Bytes(BytesTensor {
                shape,
                items: contents.bytes_contents.clone(),
            }));
        }
        Kind::Numeric(ty) => ty,
    };
    let data: Vec<f32> = match ty {
        RawType::F32 => {
            exact(contents.fp32_contents.len())?;
            contents.fp32_contents.clone()
        }
        RawType::F64 => {
            exact(contents.fp64_contents.len())?;
            contents
                .fp64_contents
                .iter()
                .map(|&v| narrow_f64(name, v))
                .collect::<Result<_, _>>()?
        }
        RawType::I8 | RawType::I16 | RawType::I32 => {
            exact(contents.int_contents.len())?;
            contents
                .int_contents
                .iter()
                .map(|&v| exact_f32(name, v))
                .collect::<Result<_, _>>()?
        }
        RawType::I64 => {
            exact(contents.int64_contents.len())?;
            contents
                .int64_contents
                .iter()
                .map(|&v| exact_f32(name, v))
                .collect::<Result<_, _>>()?
        }
        RawType::U8 | RawType::U16 | RawType::U32 => {
            exact(contents.uint_contents.len())?;
            contents
                .uint_contents
                .iter()
                .map(|&v| exact_f32(name, v))
                .collect::<Result<_, _>>()?
        }
        RawType::U64 => {
            exact(contents.uint64_contents.len())?;
            contents
                .uint64_contents
                .iter()
                .map(|&v| exact_f32(name, v))
                .collect::<Result<_, _>>()?
        }
        RawType::F16 | RawType::Bf16 => {
            return Err(ProtoError::InvalidData {
                name: name.to_string(),
                reason: format!(
                    "{datatype} has no typed contents field; send it in raw_input_contents"
                ),
            });
        }
    };
    f32_tensor(name, shape, data)
}

/// True when the request carries its data in `raw_input_contents` (tritonclient
/// always does); the response then uses `raw_output_contents`, as Triton does.
pub fn uses_raw_inputs(request: &ModelInferRequest) -> bool {
    !request.raw_input_contents.is_empty()
}

/// Decodes every input of a ModelInferRequest, in request order.
pub fn infer_inputs(
    request: &ModelInferRequest,
    max_elements: usize,
) -> Result<Vec<(String, TensorValue)>, ProtoError> {
    if uses_raw_inputs(request) {
        if request.raw_input_contents.len() != request.inputs.len() {
            return Err(ProtoError::InvalidRequest(format!(
                "raw_input_contents has {} entries for {} inputs",
                request.raw_input_contents.len(),
                request.inputs.len()
            )));
        }
        if let Some(input) = request.inputs.iter().find(|i| i.contents.is_some()) {
            return Err(ProtoError::InvalidRequest(format!(
                "input '{}' sets contents while raw_input_contents is used",
                input.name
            )));
        }
        return request
            .inputs
            .iter()
            .zip(&request.raw_input_contents)
            .map(|(input, raw)| {
                let value = decode_raw_tensor(
                    &input.name,
                    &input.datatype,
                    &input.shape,
                    raw,
                    max_elements,
                )?;
                Ok((input.name.clone(), value))
            })
            .collect();
    }
    request
        .inputs
        .iter()
        .map(|input| decode_input(input, max_elements))
        .collect()
}

fn decode_input(
    input: &InferInputTensor,
    max_elements: usize,
) -> Result<(String, TensorValue), ProtoError> {
    let empty = InferTensorContents::default();
    let contents = input.contents.as_ref().unwrap_or(&empty);
    let value = decode_contents(
        &input.name,
        &input.datatype,
        &input.shape,
        contents,
        max_elements,
    )?;
    Ok((input.name.clone(), value))
}

/// An output tensor, with its data either inline (`contents`) or returned
/// separately for `raw_output_contents`.
pub fn output_tensor(
    name: &str,
    value: &TensorValue,
    raw: bool,
) -> (InferOutputTensor, Option<Bytes>) {
    let mut out = InferOutputTensor {
        name: name.to_string(),
        datatype: value.kserve_datatype().to_string(),
        shape: value.shape().iter().map(|&d| d as i64).collect(),
        ..Default::default()
    };
    let bytes = match (value, raw) {
        (TensorValue::F32(t), true) => Some(f32_le_bytes(t.data())),
        (TensorValue::Bytes(b), true) => Some(join_bytes_elements(&b.items)),
        (TensorValue::F32(t), false) => {
            out.contents = Some(InferTensorContents {
                fp32_contents: t.data().to_vec(),
                ..Default::default()
            });
            None
        }
        (TensorValue::Bytes(b), false) => {
            out.contents = Some(InferTensorContents {
                bytes_contents: b.items.clone(),
                ..Default::default()
            });
            None
        }
    };
    (out, bytes)
}

/// A complete ModelInferResponse; `raw` selects `raw_output_contents`.
pub fn infer_response(
    model_name: &str,
    model_version: &str,
    id: &str,
    outputs: &[(String, TensorValue)],
    raw: bool,
) -> ModelInferResponse {
    let mut response = ModelInferResponse {
        model_name: model_name.to_string(),
        model_version: model_version.to_string(),
        id: id.to_string(),
        ..Default::default()
    };
    for (name, value) in outputs {
        let (tensor, bytes) = output_tensor(name, value, raw);
        response.outputs.push(tensor);
        response.raw_output_contents.extend(bytes);
    }
    response
}

/// The `classification` count requested in gRPC parameters, if any; it must
/// be a positive integer.
pub fn class_count(
    parameters: &HashMap<String, InferParameter>,
) -> Result<Option<usize>, ProtoError> {
    let Some(param) = parameters.get(CLASSIFICATION_PARAMETER) else {
        return Ok(None);
    };
    let count = match param.parameter_choice {
        Some(infer_parameter::ParameterChoice::Int64Param(v)) => i128::from(v),
        Some(infer_parameter::ParameterChoice::Uint64Param(v)) => i128::from(v),
        _ => -1,
    };
    positive_count(count).map(Some)
}

pub(crate) fn positive_count(count: i128) -> Result<usize, ProtoError> {
    usize::try_from(count)
        .ok()
        .filter(|&c| c > 0)
        .ok_or_else(|| {
            ProtoError::InvalidRequest(format!(
                "'{CLASSIFICATION_PARAMETER}' must be a positive integer class count"
            ))
        })
}

/// Triton's classification extension: for each item of `scores` ([n, classes]
/// or [classes]), the top `k` entries as "value:index:label" strings (value
/// with six decimals like Triton; ":label" only when the model has one), in
/// descending order of value (`fovea_core::top_k`: NaN last). Output shape [n, k] or [k]; k is clamped to the
/// class count.
pub fn classification(scores: &Tensor, labels: &Labels, k: usize) -> BytesTensor {
    let rank1 = scores.shape().len() <= 1;
    let (rows, classes) = if rank1 {
        (1, scores.data().len())
    } else {
        (scores.batch_size(), scores.item_len())
    };
    let k = k.min(classes);
    let mut items = Vec::with_capacity(rows * k);
    for row in scores.data().chunks(classes.max(1)).take(rows) {
        for i in fovea_core::top_k(row, k) {
            let text = match labels.as_slice().get(i) {
                Some(label) => format!("{:.6}:{i}:{label}", row[i]),
                None => format!("{:.6}:{i}", row[i]),
            };
            items.push(Bytes::from(text));
        }
    }
    let shape = if rank1 { vec![k] } else { vec![rows, k] };
    BytesTensor { shape, items }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inference::model_infer_request::InferRequestedOutputTensor;
    use fovea_core::FoveaError;
    use prost::Message;

    const MAX: usize = 1 << 20;

    // tritonclient 2.73.0 `_get_inference_request(model_name="tiny", model_version="1",
    // request_id="r1", inputs=[FP32 [1,2] = [1.5, -2.0], BYTES [1] = [b"\xff\xd8ab"]],
    // outputs=[InferRequestedOutput("output", class_count=2)])`.SerializeToString().
    const TRITONCLIENT_REQUEST: &[u8] = b"\n\x04tiny\x12\x011\x1a\x02r1*\x11\n\x05input\x12\x04FP32\x1a\x02\x01\x02*\x11\n\x05image\x12\x05BYTES\x1a\x01\x012\x1e\n\x06output\x12\x14\n\x0eclassification\x12\x02\x10\x02:\x08\x00\x00\xc0?\x00\x00\x00\xc0:\x08\x04\x00\x00\x00\xff\xd8ab";

    fn input(name: &str, datatype: &str, shape: &[i64]) -> InferInputTensor {
        InferInputTensor {
            name: name.into(),
            datatype: datatype.into(),
            shape: shape.to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn tritonclient_requests_decode_with_raw_fp32_and_bytes() {
        let request = ModelInferRequest::decode(TRITONCLIENT_REQUEST).unwrap();
        assert!(uses_raw_inputs(&request));
        let inputs = infer_inputs(&request, MAX).unwrap();
        assert_eq!(inputs[0].0, "input");
        assert_eq!(
            inputs[0].1,
            TensorValue::F32(Tensor::new(vec![1, 2], vec![1.5, -2.0]).unwrap())
        );
        assert_eq!(
            inputs[1].1,
            TensorValue::Bytes(BytesTensor {
                shape: vec![1],
                items: vec![Bytes::from_static(b"\xff\xd8ab")]
            })
        );
        assert_eq!(
            class_count(&request.outputs[0].parameters).unwrap(),
            Some(2)
        );
    }

    #[test]
    fn raw_fp32_of_the_wrong_length_is_refused() {
        let raw = Bytes::from(vec![0u8; 7]);
        let err = decode_raw_tensor("x", "FP32", &[1, 2], &raw, MAX).unwrap_err();
        assert!(
            matches!(
                err,
                ProtoError::ByteLength {
                    expected: 8,
                    actual: 7,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(err.code(), "byte_length_mismatch");
    }

    #[test]
    fn raw_contents_must_match_the_inputs_one_to_one() {
        let mut request = ModelInferRequest {
            inputs: vec![input("a", "FP32", &[1]), input("b", "FP32", &[1])],
            raw_input_contents: vec![f32_le_bytes(&[1.0])],
            ..Default::default()
        };
        assert!(matches!(
            infer_inputs(&request, MAX),
            Err(ProtoError::InvalidRequest(_))
        ));
        request.raw_input_contents.push(f32_le_bytes(&[2.0]));
        request.inputs[1].contents = Some(InferTensorContents {
            fp32_contents: vec![2.0],
            ..Default::default()
        });
        let err = infer_inputs(&request, MAX).unwrap_err();
        assert!(err.to_string().contains("sets contents"), "{err}");
    }

    #[test]
    fn truncated_bytes_elements_are_refused() {
        let framed = join_bytes_elements(&[Bytes::from_static(b"abcdef")]);
        let cut = framed.slice(..framed.len() - 1);
        let err = split_bytes_elements("img", &cut, 1).unwrap_err();
        assert!(
            matches!(
                err,
                ProtoError::Truncated {
                    needed: 10,
                    available: 9,
                    ..
                }
            ),
            "{err}"
        );
        let err = split_bytes_elements("img", &framed.slice(..3), 1).unwrap_err();
        assert!(
            matches!(err, ProtoError::Truncated { needed: 4, .. }),
            "{err}"
        );
    }

    #[test]
    fn bytes_element_count_must_match_the_shape() {
        let framed = join_bytes_elements(&[Bytes::from_static(b"a"), Bytes::from_static(b"b")]);
        let err = decode_raw_tensor("img", "BYTES", &[1], &framed, MAX).unwrap_err();
        assert!(
            matches!(
                err,
                ProtoError::ElementCount {
                    expected: 1,
                    actual: 2,
                    ..
                }
            ),
            "{err}"
        );
        let ok = decode_raw_tensor("img", "BYTES", &[2], &framed, MAX).unwrap();
        assert_eq!(ok.shape(), &[2]);
    }

    #[test]
    fn typed_contents_need_exactly_one_value_per_element() {
        let contents = InferTensorContents {
            fp32_contents: vec![1.0, 2.0, 3.0],
            ..Default::default()
        };
        let err = decode_contents("x", "FP32", &[2, 2], &contents, MAX).unwrap_err();
        assert!(
            matches!(
                err,
                ProtoError::ElementCount {
                    expected: 4,
                    actual: 3,
                    ..
                }
            ),
            "{err}"
        );
        let ok = decode_contents("x", "FP32", &[3], &contents, MAX).unwrap();
        assert_eq!(
            ok,
            TensorValue::F32(Tensor::new(vec![3], vec![1.0, 2.0, 3.0]).unwrap())
        );
        let err = decode_contents("x", "INT64", &[3], &contents, MAX).unwrap_err();
        assert!(matches!(err, ProtoError::MissingData { .. }), "{err}");
    }

    #[test]
    fn integer_and_double_contents_become_f32() {
        let contents = InferTensorContents {
            int_contents: vec![-3, 4],
            uint_contents: vec![255],
            int64_contents: vec![9],
            fp64_contents: vec![0.5],
            ..Default::default()
        };
        let get = |dt: &str, dims: &[i64]| match decode_contents("x", dt, dims, &contents, MAX)
            .unwrap()
        {
            TensorValue::F32(t) => t.into_data(),
            other => panic!("{other:?}"),
        };
        assert_eq!(get("INT32", &[2]), vec![-3.0, 4.0]);
        assert_eq!(get("UINT8", &[1]), vec![255.0]);
        assert_eq!(get("INT64", &[1]), vec![9.0]);
        assert_eq!(get("FP64", &[1]), vec![0.5]);
    }

    #[test]
    fn unknown_and_typeless_datatypes_are_refused() {
        let contents = InferTensorContents::default();
        let err = decode_contents("x", "BOOL", &[1], &contents, MAX).unwrap_err();
        assert_eq!(
            err.to_string(),
            "tensor 'x': data type BOOL is not supported"
        );
        let err = decode_contents("x", "FP16", &[1], &contents, MAX).unwrap_err();
        assert!(err.to_string().contains("raw_input_contents"), "{err}");
        let err = decode_raw_tensor("x", "fp32", &[1], &f32_le_bytes(&[1.0]), MAX).unwrap_err();
        assert!(matches!(err, ProtoError::UnsupportedDtype { .. }));
    }

    #[test]
    fn fp16_raw_inputs_are_widened() {
        let raw = Bytes::copy_from_slice(&half::f16::from_f32(-0.5).to_le_bytes());
        let v = decode_raw_tensor("x", "FP16", &[1], &raw, MAX).unwrap();
        assert_eq!(
            v,
            TensorValue::F32(Tensor::new(vec![1], vec![-0.5]).unwrap())
        );
    }

    #[test]
    fn responses_use_raw_outputs_when_asked_and_contents_otherwise() {
        let logits = TensorValue::F32(Tensor::new(vec![1, 2], vec![0.25, -1.0]).unwrap());
        let raw = infer_response(
            "tiny",
            "1",
            "r1",
            &[("output".into(), logits.clone())],
            true,
        );
        assert_eq!(raw.outputs[0].datatype, "FP32");
        assert_eq!(raw.outputs[0].shape, vec![1, 2]);
        assert!(raw.outputs[0].contents.is_none());
        let back =
            decode_raw_tensor("output", "FP32", &[1, 2], &raw.raw_output_contents[0], MAX).unwrap();
        assert_eq!(back, logits);

        let typed = infer_response("tiny", "1", "", &[("output".into(), logits)], false);
        assert!(typed.raw_output_contents.is_empty());
        assert_eq!(
            typed.outputs[0].contents.as_ref().unwrap().fp32_contents,
            vec![0.25, -1.0]
        );
    }

    #[test]
    fn classification_formats_like_triton_in_descending_order() {
        let scores = Tensor::new(vec![2, 3], vec![0.1, 0.7, 0.2, 5.0, -1.0, 5.0]).unwrap();
        let labels = Labels::new(vec!["cat".into(), "dog".into()]);
        let out = classification(&scores, &labels, 2);
        assert_eq!(out.shape, vec![2, 2]);
        let text: Vec<&[u8]> = out.items.iter().map(|b| b.as_ref()).collect();
        assert_eq!(
            text,
            [
                &b"0.700000:1:dog"[..],
                b"0.200000:2",
                b"5.000000:0:cat",
                b"5.000000:2"
            ]
        );
        let clamped = classification(&Tensor::new(vec![2], vec![1.0, 2.0]).unwrap(), &labels, 5);
        assert_eq!(clamped.shape, vec![2]);
    }

    #[test]
    fn a_nan_score_is_never_ranked_first() {
        let scores = Tensor::new(vec![3], vec![f32::NAN, 0.5, 0.25]).unwrap();
        let out = classification(&scores, &Labels::new(vec![]), 1);
        assert_eq!(out.items, vec![Bytes::from("0.500000:1")]);
    }

    #[test]
    fn class_count_must_be_positive() {
        let mut output = InferRequestedOutputTensor::default();
        assert_eq!(class_count(&output.parameters).unwrap(), None);
        output.parameters.insert(
            CLASSIFICATION_PARAMETER.into(),
            InferParameter {
                parameter_choice: Some(infer_parameter::ParameterChoice::Int64Param(0)),
            },
        );
        assert!(class_count(&output.parameters).is_err());
        output.parameters.insert(
            CLASSIFICATION_PARAMETER.into(),
            InferParameter {
                parameter_choice: Some(infer_parameter::ParameterChoice::StringParam("3".into())),
            },
        );
        assert!(class_count(&output.parameters).is_err());
    }
}

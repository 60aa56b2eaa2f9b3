//! TF Serving conversions: `TensorProto` ⇄ fovea tensors (TensorFlow's own
//! decoding rules), `ModelSpec` version selection, Classify's `Example`
//! inputs and results, and the `SignatureDefMap` that GetModelMetadata packs
//! into an `Any`.

use bytes::Bytes;
use fovea_core::Tensor;
use prost::Message;

use crate::tensorflow::serving::{
    Class, ClassificationResult, Classifications, Input, ModelSpec, SignatureDefMap, input,
    model_spec,
};
use crate::tensorflow::{
    DataType, Example, Feature, TensorInfo, TensorProto, TensorShapeProto, feature, tensor_info,
    tensor_shape_proto,
};
use crate::value::{RawType, checked_shape, decode_raw, exact_f32, f32_tensor, narrow_f64};
use crate::{BytesTensor, ProtoError, SIGNATURE_DEF_MAP_TYPE_URL, TensorValue};

/// The signature TF Serving uses when `ModelSpec.signature_name` is empty.
pub const DEFAULT_SIGNATURE: &str = "serving_default";

/// Decodes a `TensorProto` the way TensorFlow's `Tensor::FromProto` does, with
/// two deliberate refusals where TensorFlow silently guesses.
///
/// - Numeric dtypes (FLOAT, DOUBLE, HALF, BFLOAT16, INT8/16/32/64,
///   UINT8/16/32/64) become f32 by the rule REST JSON shares (see
///   [`crate::value`]): integers must be exactly representable, doubles
///   within f32's range. STRING becomes a [`BytesTensor`].
/// - `tensor_content` (little-endian) must be exactly elements × size bytes.
/// - Typed values (`float_val`, ...): fewer values than elements repeat the
///   last value (TensorFlow's documented rule, so one value fills a tensor);
///   more values than elements are refused (TensorFlow drops the extras) and
///   no values at all for a non-empty shape are refused (TensorFlow zero-fills).
/// - Both `tensor_content` and typed values set is refused as ambiguous.
/// - A missing `tensor_shape` is a scalar; `unknown_rank` or -1 dims are refused.
pub fn tensor_from_proto(
    name: &str,
    proto: &TensorProto,
    max_elements: usize,
) -> Result<TensorValue, ProtoError> {
    let dims = proto_dims(name, proto.tensor_shape.as_ref())?;
    let (shape, n) = checked_shape(name, &dims, max_elements)?;
    let dtype = DataType::try_from(proto.dtype).map_err(|_| ProtoError::UnsupportedDtype {
        name: name.to_string(),
        dtype: format!("enum value {}", proto.dtype),
    })?;
    let dtype_name = dtype.as_str_name();
    let content = &proto.tensor_content;

    if dtype == DataType::DtString {
        if !content.is_empty() {
            return Err(invalid(
                name,
                "DT_STRING values must be in string_val, not tensor_content",
            ));
        }
        let items = fill_last(name, &shape, n, &proto.string_val, |b| Ok(b.clone()))?;
        return Ok(TensorValue::Bytes(BytesTensor { shape, items }));
    }

    let (raw, typed_len) = match dtype {
        DataType::DtFloat => (RawType::F32, proto.float_val.len()),
        DataType::DtDouble => (RawType::F64, proto.double_val.len()),
        DataType::DtHalf => (RawType::F16, proto.half_val.len()),
        DataType::DtBfloat16 => (RawType::Bf16, proto.half_val.len()),
        DataType::DtInt8 => (RawType::I8, proto.int_val.len()),
        DataType::DtInt16 => (RawType::I16, proto.int_val.len()),
        DataType::DtInt32 => (RawType::I32, proto.int_val.len()),
        DataType::DtUint8 => (RawType::U8, proto.int_val.len()),
        DataType::DtUint16 => (RawType::U16, proto.int_val.len()),
        DataType::DtInt64 => (RawType::I64, proto.int64_val.len()),
        DataType::DtUint32 => (RawType::U32, proto.uint32_val.len()),
        DataType::DtUint64 => (RawType::U64, proto.uint64_val.len()),
        _ => {
            return Err(ProtoError::UnsupportedDtype {
                name: name.to_string(),
                dtype: dtype_name.to_string(),
            });
        }
    };

    if !content.is_empty() {
        if typed_len > 0 {
            return Err(invalid(
                name,
                "both tensor_content and typed values are set; send exactly one",
            ));
        }
        let data = decode_raw(name, dtype_name, raw, &shape, n, content)?;
        return f32_tensor(name, shape, data);
    }

    let data = match raw {
        RawType::F32 => fill_last(name, &shape, n, &proto.float_val, |&v| Ok(v))?,
        RawType::F64 => fill_last(name, &shape, n, &proto.double_val, |&v| narrow_f64(name, v))?,
        // half_val carries the 16-bit pattern in the low bits of an int32.
        RawType::F16 => fill_last(name, &shape, n, &proto.half_val, |&v| {
            Ok(half::f16::from_bits(v as u16).to_f32())
        })?,
        RawType::Bf16 => fill_last(name, &shape, n, &proto.half_val, |&v| {
            Ok(half::bf16::from_bits(v as u16).to_f32())
        })?,
        RawType::I8 | RawType::I16 | RawType::I32 | RawType::U8 | RawType::U16 => {
            fill_last(name, &shape, n, &proto.int_val, |&v| exact_f32(name, v))?
        }
        RawType::I64 => fill_last(name, &shape, n, &proto.int64_val, |&v| exact_f32(name, v))?,
        RawType::U32 => fill_last(name, &shape, n, &proto.uint32_val, |&v| exact_f32(name, v))?,
        RawType::U64 => fill_last(name, &shape, n, &proto.uint64_val, |&v| exact_f32(name, v))?,
    };
    f32_tensor(name, shape, data)
}

/// Decodes every input of a PredictRequest-style map, in name order. The
/// element limit holds for all inputs together: TensorFlow's fill rule lets
/// a few bytes declare a full tensor, so a request of many small inputs
/// would otherwise expand each of them to the limit.
pub fn tensors_from_map<'a>(
    inputs: impl IntoIterator<Item = (&'a String, &'a TensorProto)>,
    max_elements: usize,
) -> Result<Vec<(String, TensorValue)>, ProtoError> {
    let mut inputs: Vec<_> = inputs.into_iter().collect();
    // Name order also makes which input is refused independent of the map's order.
    inputs.sort_by(|a, b| a.0.cmp(b.0));
    let mut total = 0usize;
    inputs
        .into_iter()
        .map(|(name, proto)| {
            // Counted from the shape before the values are expanded.
            let dims = proto_dims(name, proto.tensor_shape.as_ref())?;
            let (_, n) = checked_shape(name, &dims, max_elements)?;
            total = total.saturating_add(n);
            if total > max_elements {
                return Err(ProtoError::TooManyElementsInTotal {
                    elements: total,
                    limit: max_elements,
                });
            }
            Ok((name.clone(), tensor_from_proto(name, proto, max_elements)?))
        })
        .collect()
}

/// Encodes an f32 tensor as `DT_FLOAT` with `float_val`, exactly as TF Serving
/// answers Predict (`Tensor::AsProtoField`): clients that read `.float_val`
/// directly keep working, `tf.make_ndarray` reads it too, and packed floats
/// cost the same 4 bytes per element on the wire as `tensor_content`.
pub fn tensor_to_proto(tensor: &Tensor) -> TensorProto {
    TensorProto {
        dtype: DataType::DtFloat as i32,
        tensor_shape: Some(shape_to_proto(tensor.shape().iter().map(|&d| d as i64))),
        float_val: tensor.data().to_vec(),
        ..Default::default()
    }
}

/// Encodes byte strings (e.g. class labels) as `DT_STRING`.
pub fn bytes_to_proto(tensor: &BytesTensor) -> TensorProto {
    TensorProto {
        dtype: DataType::DtString as i32,
        tensor_shape: Some(shape_to_proto(tensor.shape.iter().map(|&d| d as i64))),
        string_val: tensor.items.clone(),
        ..Default::default()
    }
}

/// A shape proto from dimensions; -1 marks a variable dimension (signatures).
pub fn shape_to_proto(dims: impl IntoIterator<Item = i64>) -> TensorShapeProto {
    TensorShapeProto {
        dim: dims
            .into_iter()
            .map(|size| tensor_shape_proto::Dim {
                size,
                name: String::new(),
            })
            .collect(),
        unknown_rank: false,
    }
}

/// A signature entry: tensor name, dtype and shape (-1 for variable dims).
pub fn tensor_info(name: &str, dtype: DataType, dims: &[i64]) -> TensorInfo {
    TensorInfo {
        encoding: Some(tensor_info::Encoding::Name(name.to_string())),
        dtype: dtype as i32,
        tensor_shape: Some(shape_to_proto(dims.iter().copied())),
    }
}

/// GetModelMetadata's `metadata["signature_def"]` value.
pub fn signature_def_map_any(map: &SignatureDefMap) -> prost_types::Any {
    prost_types::Any {
        type_url: SIGNATURE_DEF_MAP_TYPE_URL.to_string(),
        value: map.encode_to_vec(),
    }
}

/// Which version a `ModelSpec` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionRequest {
    /// No version given: the highest available one.
    Latest,
    /// `version { value: N }`.
    Number(u64),
    /// `version_label: "..."`; fovea has no labels of its own, the server decides.
    Label(String),
}

/// Reads the version choice of a `ModelSpec`, refusing negative numbers.
pub fn requested_version(spec: &ModelSpec) -> Result<VersionRequest, ProtoError> {
    match &spec.version_choice {
        None => Ok(VersionRequest::Latest),
        Some(model_spec::VersionChoice::Version(v)) => u64::try_from(*v)
            .map(VersionRequest::Number)
            .map_err(|_| ProtoError::InvalidRequest(format!("model version {v} is negative"))),
        Some(model_spec::VersionChoice::VersionLabel(l)) => Ok(VersionRequest::Label(l.clone())),
    }
}

/// The signature a `ModelSpec` names, with TF Serving's default.
pub fn signature_name(spec: &ModelSpec) -> &str {
    if spec.signature_name.is_empty() {
        DEFAULT_SIGNATURE
    } else {
        &spec.signature_name
    }
}

/// One Classify example's model input: an encoded image or ready numbers.
#[derive(Debug, Clone, PartialEq)]
pub enum ExampleValue {
    /// A single `bytes_list` value: an encoded image.
    Image(Bytes),
    /// A `float_list` (or exactly representable `int64_list`): a flat tensor.
    Floats(Vec<f32>),
}

/// Extracts one value per Classify/Regress example. The feature is the first
/// of `keys` present (example first, then the shared context); when none is
/// present and the example has exactly one feature, that one is used. At
/// most `max_elements` values in all (an image counts as one): a context
/// feature is copied into every example that uses it, so a small request
/// could otherwise ask for examples × context values.
pub fn example_values(
    input: &Input,
    keys: &[&str],
    max_elements: usize,
) -> Result<Vec<ExampleValue>, ProtoError> {
    let (examples, context) = match &input.kind {
        Some(input::Kind::ExampleList(l)) => (&l.examples, None),
        Some(input::Kind::ExampleListWithContext(l)) => (&l.examples, l.context.as_ref()),
        None => {
            return Err(ProtoError::InvalidRequest(
                "Classify input has no examples".into(),
            ));
        }
    };
    if examples.is_empty() {
        return Err(ProtoError::InvalidRequest(
            "Classify input has no examples".into(),
        ));
    }
    let mut total = 0usize;
    examples
        .iter()
        .enumerate()
        .map(|(i, example)| {
            let (key, feature) = example_feature(i, example, context, keys)?;
            let count = match &feature.kind {
                Some(feature::Kind::FloatList(f)) => f.value.len(),
                Some(feature::Kind::Int64List(l)) => l.value.len(),
                _ => 1,
            };
            total = total.saturating_add(count);
            if total > max_elements {
                return Err(ProtoError::TooManyElementsInTotal {
                    elements: total,
                    limit: max_elements,
                });
            }
            feature_value(&format!("examples[{i}].{key}"), feature)
        })
        .collect()
}

/// The feature one example's value comes from (see [`example_values`]).
fn example_feature<'a>(
    index: usize,
    example: &'a Example,
    context: Option<&'a Example>,
    keys: &[&'a str],
) -> Result<(&'a str, &'a Feature), ProtoError> {
    let own = example.features.as_ref().map(|f| &f.feature);
    let shared = context
        .and_then(|c| c.features.as_ref())
        .map(|f| &f.feature);
    let lookup = |key: &str| {
        own.and_then(|m| m.get(key))
            .or_else(|| shared.and_then(|m| m.get(key)))
    };
    let chosen: Option<(&str, &Feature)> = keys
        .iter()
        .find_map(|k| lookup(k).map(|f| (*k, f)))
        .or_else(|| {
            let own_len = own.map_or(0, |m| m.len());
            let shared_len = shared.map_or(0, |m| m.len());
            match (own_len + shared_len, own, shared) {
                (1, Some(m), _) | (1, None, Some(m)) => {
                    m.iter().next().map(|(k, f)| (k.as_str(), f))
                }
                _ => None,
            }
        });
    chosen.ok_or_else(|| {
        let mut available: Vec<&str> = own
            .into_iter()
            .chain(shared)
            .flat_map(|m| m.keys().map(String::as_str))
            .collect();
        available.sort_unstable();
        ProtoError::InvalidData {
            name: format!("examples[{index}]"),
            reason: format!("no input feature; expected one of {keys:?}, found {available:?}"),
        }
    })
}

/// A feature's value: one encoded image, or numbers.
fn feature_value(name: &str, feature: &Feature) -> Result<ExampleValue, ProtoError> {
    match &feature.kind {
        Some(feature::Kind::BytesList(b)) => match b.value.as_slice() {
            [one] => Ok(ExampleValue::Image(one.clone())),
            other => Err(ProtoError::InvalidData {
                name: name.to_string(),
                reason: format!(
                    "expected exactly one encoded image, got {} values",
                    other.len()
                ),
            }),
        },
        Some(feature::Kind::FloatList(f)) => Ok(ExampleValue::Floats(f.value.clone())),
        Some(feature::Kind::Int64List(l)) => l
            .value
            .iter()
            .map(|&v| exact_f32(name, v))
            .collect::<Result<_, _>>()
            .map(ExampleValue::Floats),
        None => Err(ProtoError::MissingData {
            name: name.to_string(),
            shape: vec![],
        }),
    }
}

/// Builds a ClassificationResult: one list of (label, score) per example.
pub fn classification_result<R, C>(rows: R) -> ClassificationResult
where
    R: IntoIterator<Item = C>,
    C: IntoIterator<Item = (String, f32)>,
{
    ClassificationResult {
        classifications: rows
            .into_iter()
            .map(|classes| Classifications {
                classes: classes
                    .into_iter()
                    .map(|(label, score)| Class { label, score })
                    .collect(),
            })
            .collect(),
    }
}

fn proto_dims(name: &str, shape: Option<&TensorShapeProto>) -> Result<Vec<i64>, ProtoError> {
    let Some(shape) = shape else {
        return Ok(Vec::new());
    };
    if shape.unknown_rank {
        return Err(ProtoError::InvalidShape {
            name: name.to_string(),
            shape: vec![],
            reason: "unknown_rank is not allowed in a request",
        });
    }
    Ok(shape.dim.iter().map(|d| d.size).collect())
}

fn invalid(name: &str, reason: &str) -> ProtoError {
    ProtoError::InvalidData {
        name: name.to_string(),
        reason: reason.to_string(),
    }
}

/// Applies TensorFlow's value-count rule (see [`tensor_from_proto`]) and
/// converts each value.
fn fill_last<T, U>(
    name: &str,
    shape: &[usize],
    n: usize,
    values: &[T],
    convert: impl Fn(&T) -> Result<U, ProtoError>,
) -> Result<Vec<U>, ProtoError> {
    let given = values.len();
    if given > n || (given == 0 && n > 0) {
        if given == 0 {
            return Err(ProtoError::MissingData {
                name: name.to_string(),
                shape: shape.to_vec(),
            });
        }
        return Err(ProtoError::ElementCount {
            name: name.to_string(),
            shape: shape.to_vec(),
            expected: n,
            actual: given,
        });
    }
    let Some(last) = values.last() else {
        return Ok(Vec::new());
    };
    values
        .iter()
        .chain(std::iter::repeat_n(last, n - given))
        .map(convert)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensorflow::serving::{ExampleList, ExampleListWithContext};
    use crate::tensorflow::{BytesList, Features, FloatList, Int64List};
    use fovea_core::FoveaError;
    use std::collections::HashMap;

    const MAX: usize = 1 << 20;

    fn shaped(dtype: DataType, dims: &[i64]) -> TensorProto {
        TensorProto {
            dtype: dtype as i32,
            tensor_shape: Some(shape_to_proto(dims.iter().copied())),
            ..Default::default()
        }
    }

    fn f32s(v: TensorValue) -> (Vec<usize>, Vec<f32>) {
        match v {
            TensorValue::F32(t) => t.into_parts(),
            TensorValue::Bytes(_) => panic!("expected numbers"),
        }
    }

    #[test]
    fn float_val_fills_the_shape_row_major() {
        let mut p = shaped(DataType::DtFloat, &[2, 2]);
        p.float_val = vec![1.0, 2.0, 3.0, 4.0];
        let (shape, data) = f32s(tensor_from_proto("x", &p, MAX).unwrap());
        assert_eq!((shape, data), (vec![2, 2], vec![1.0, 2.0, 3.0, 4.0]));
    }

    #[test]
    fn fewer_values_than_elements_repeat_the_last_value_like_tensorflow() {
        let mut p = shaped(DataType::DtFloat, &[1, 4]);
        p.float_val = vec![0.5, 7.0];
        let (_, data) = f32s(tensor_from_proto("x", &p, MAX).unwrap());
        assert_eq!(data, vec![0.5, 7.0, 7.0, 7.0]);
    }

    #[test]
    fn more_values_than_elements_are_refused() {
        let mut p = shaped(DataType::DtFloat, &[2]);
        p.float_val = vec![1.0, 2.0, 3.0];
        let err = tensor_from_proto("x", &p, MAX).unwrap_err();
        assert!(
            matches!(
                err,
                ProtoError::ElementCount {
                    expected: 2,
                    actual: 3,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(err.code(), "shape_mismatch");
    }

    #[test]
    fn a_shape_without_values_is_refused() {
        let p = shaped(DataType::DtFloat, &[1, 3]);
        let err = tensor_from_proto("x", &p, MAX).unwrap_err();
        assert!(matches!(err, ProtoError::MissingData { .. }), "{err}");
    }

    #[test]
    fn a_zero_sized_shape_needs_no_values() {
        let p = shaped(DataType::DtFloat, &[0, 3]);
        let (shape, data) = f32s(tensor_from_proto("x", &p, MAX).unwrap());
        assert_eq!((shape, data.len()), (vec![0, 3], 0));
    }

    #[test]
    fn a_missing_shape_is_a_scalar() {
        let mut p = TensorProto {
            dtype: DataType::DtFloat as i32,
            ..Default::default()
        };
        p.float_val = vec![3.5];
        let (shape, data) = f32s(tensor_from_proto("x", &p, MAX).unwrap());
        assert_eq!((shape, data), (vec![], vec![3.5]));
    }

    #[test]
    fn broadcasting_one_value_cannot_exceed_the_element_limit() {
        let mut p = shaped(DataType::DtFloat, &[1_000_000, 1_000_000]);
        p.float_val = vec![1.0];
        let err = tensor_from_proto("x", &p, MAX).unwrap_err();
        assert!(matches!(err, ProtoError::TooManyElements { .. }), "{err}");
        assert_eq!(err.kind(), fovea_core::ErrorKind::TooLarge);
    }

    #[test]
    fn tensor_content_is_little_endian_with_an_exact_length() {
        let mut p = shaped(DataType::DtFloat, &[3]);
        p.tensor_content = [1.0f32, -0.5, 2.25]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let (_, data) = f32s(tensor_from_proto("x", &p, MAX).unwrap());
        assert_eq!(data, vec![1.0, -0.5, 2.25]);

        p.tensor_content = p.tensor_content.slice(..11);
        let err = tensor_from_proto("x", &p, MAX).unwrap_err();
        assert!(
            matches!(
                err,
                ProtoError::ByteLength {
                    expected: 12,
                    actual: 11,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn tensor_content_together_with_float_val_is_refused() {
        let mut p = shaped(DataType::DtFloat, &[1]);
        p.tensor_content = Bytes::from_static(&[0, 0, 128, 63]);
        p.float_val = vec![1.0];
        let err = tensor_from_proto("x", &p, MAX).unwrap_err();
        assert!(matches!(err, ProtoError::InvalidData { .. }), "{err}");
    }

    #[test]
    fn double_int_and_half_values_become_f32() {
        let mut d = shaped(DataType::DtDouble, &[2]);
        d.double_val = vec![0.25, -1.0];
        assert_eq!(
            f32s(tensor_from_proto("x", &d, MAX).unwrap()).1,
            vec![0.25, -1.0]
        );

        let mut i = shaped(DataType::DtUint8, &[3]);
        i.int_val = vec![0, 128, 255];
        assert_eq!(
            f32s(tensor_from_proto("x", &i, MAX).unwrap()).1,
            vec![0.0, 128.0, 255.0]
        );

        let mut l = shaped(DataType::DtInt64, &[1]);
        l.int64_val = vec![-42];
        assert_eq!(
            f32s(tensor_from_proto("x", &l, MAX).unwrap()).1,
            vec![-42.0]
        );

        let mut h = shaped(DataType::DtHalf, &[2]);
        h.half_val = vec![
            i32::from(half::f16::from_f32(1.5).to_bits()),
            i32::from(half::f16::from_f32(-2.0).to_bits()),
        ];
        assert_eq!(
            f32s(tensor_from_proto("x", &h, MAX).unwrap()).1,
            vec![1.5, -2.0]
        );

        let mut hc = shaped(DataType::DtHalf, &[1]);
        hc.tensor_content = Bytes::copy_from_slice(&half::f16::from_f32(0.75).to_le_bytes());
        assert_eq!(
            f32s(tensor_from_proto("x", &hc, MAX).unwrap()).1,
            vec![0.75]
        );

        let mut ic = shaped(DataType::DtInt32, &[2]);
        ic.tensor_content = [7i32, -9].iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(
            f32s(tensor_from_proto("x", &ic, MAX).unwrap()).1,
            vec![7.0, -9.0]
        );
    }

    #[test]
    fn int64_values_that_f32_would_round_are_refused() {
        let mut l = shaped(DataType::DtInt64, &[1]);
        l.int64_val = vec![(1 << 40) + 1];
        let err = tensor_from_proto("x", &l, MAX).unwrap_err();
        assert!(matches!(err, ProtoError::NotRepresentable { .. }), "{err}");
    }

    #[test]
    fn unsupported_and_unknown_dtypes_are_refused_by_name() {
        let mut b = shaped(DataType::DtBool, &[1]);
        b.bool_val = vec![true];
        let err = tensor_from_proto("x", &b, MAX).unwrap_err();
        assert_eq!(
            err.to_string(),
            "tensor 'x': data type DT_BOOL is not supported"
        );

        let unknown = TensorProto {
            dtype: 999,
            ..Default::default()
        };
        let err = tensor_from_proto("x", &unknown, MAX).unwrap_err();
        assert!(matches!(err, ProtoError::UnsupportedDtype { .. }), "{err}");
        assert_eq!(err.code(), "unsupported_dtype");
    }

    #[test]
    fn unknown_rank_and_negative_dims_are_refused() {
        let mut p = shaped(DataType::DtFloat, &[]);
        p.tensor_shape = Some(TensorShapeProto {
            dim: vec![],
            unknown_rank: true,
        });
        p.float_val = vec![1.0];
        assert!(matches!(
            tensor_from_proto("x", &p, MAX),
            Err(ProtoError::InvalidShape { .. })
        ));

        let mut n = shaped(DataType::DtFloat, &[-1, 3]);
        n.float_val = vec![1.0];
        assert!(matches!(
            tensor_from_proto("x", &n, MAX),
            Err(ProtoError::InvalidShape { .. })
        ));
    }

    #[test]
    fn string_val_becomes_byte_strings_without_copying() {
        let jpeg = Bytes::from_static(b"\xff\xd8\xff fake jpeg");
        let mut p = shaped(DataType::DtString, &[1]);
        p.string_val = vec![jpeg.clone()];
        match tensor_from_proto("images", &p, MAX).unwrap() {
            TensorValue::Bytes(b) => {
                assert_eq!(b.shape, vec![1]);
                assert_eq!(b.items[0].as_ptr(), jpeg.as_ptr());
            }
            other => panic!("expected bytes, got {other:?}"),
        }
        p.tensor_content = Bytes::from_static(b"abc");
        assert!(matches!(
            tensor_from_proto("images", &p, MAX),
            Err(ProtoError::InvalidData { .. })
        ));
    }

    #[test]
    fn output_round_trips_through_float_val_and_the_wire() {
        let t = Tensor::new(vec![1, 3], vec![0.1, 0.2, 0.7]).unwrap();
        let proto = tensor_to_proto(&t);
        assert!(proto.tensor_content.is_empty());
        let wire = proto.encode_to_vec();
        let back = TensorProto::decode(wire.as_slice()).unwrap();
        assert_eq!(
            tensor_from_proto("y", &back, MAX).unwrap(),
            TensorValue::F32(t)
        );
    }

    #[test]
    fn labels_encode_as_dt_string() {
        let b = BytesTensor {
            shape: vec![2],
            items: vec![Bytes::from_static(b"cat"), Bytes::from_static(b"dog")],
        };
        let proto = bytes_to_proto(&b);
        assert_eq!(proto.dtype, DataType::DtString as i32);
        assert_eq!(
            tensor_from_proto("l", &proto, MAX).unwrap(),
            TensorValue::Bytes(b)
        );
    }

    #[test]
    fn predict_maps_decode_in_name_order() {
        let mut a = shaped(DataType::DtFloat, &[1]);
        a.float_val = vec![1.0];
        let mut map = HashMap::new();
        map.insert("b".to_string(), a.clone());
        map.insert("a".to_string(), a);
        let out = tensors_from_map(&map, MAX).unwrap();
        assert_eq!(
            out.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
    }

    #[test]
    fn filled_inputs_share_one_element_limit() {
        // Each input alone is within the limit; the fill rule would expand
        // these few bytes to twice the limit if each had its own.
        let mut one = shaped(DataType::DtFloat, &[600]);
        one.float_val = vec![1.0];
        let map = HashMap::from([("a".to_string(), one.clone()), ("b".to_string(), one)]);
        let err = tensors_from_map(&map, 1000).unwrap_err();
        assert!(
            matches!(
                err,
                ProtoError::TooManyElementsInTotal {
                    elements: 1200,
                    limit: 1000
                }
            ),
            "{err}"
        );
        assert_eq!(err.code(), "tensor_too_large");
        assert_eq!(err.kind(), fovea_core::ErrorKind::TooLarge);
        assert_eq!(tensors_from_map(&map, 1200).unwrap().len(), 2);
    }

    #[test]
    fn model_spec_versions_and_labels_are_read() {
        let mut spec = ModelSpec::default();
        assert_eq!(requested_version(&spec).unwrap(), VersionRequest::Latest);
        assert_eq!(signature_name(&spec), "serving_default");
        spec.version_choice = Some(model_spec::VersionChoice::Version(3));
        assert_eq!(requested_version(&spec).unwrap(), VersionRequest::Number(3));
        spec.version_choice = Some(model_spec::VersionChoice::Version(-1));
        assert!(requested_version(&spec).is_err());
        spec.version_choice = Some(model_spec::VersionChoice::VersionLabel("stable".into()));
        assert_eq!(
            requested_version(&spec).unwrap(),
            VersionRequest::Label("stable".into())
        );
    }

    #[test]
    fn model_spec_decodes_the_official_wire_bytes() {
        // PredictRequest(model_spec=ModelSpec(name="tiny", version=Int64Value(value=2),
        // signature_name="serving_default")).SerializeToString() from
        // tensorflow-serving-api 2.21.0.
        let wire = b"\n\x1b\n\x04tiny\x12\x02\x08\x02\x1a\x0fserving_default";
        let req = crate::tensorflow::serving::PredictRequest::decode(&wire[..]).unwrap();
        let spec = req.model_spec.unwrap();
        assert_eq!(spec.name, "tiny");
        assert_eq!(requested_version(&spec).unwrap(), VersionRequest::Number(2));
        assert_eq!(signature_name(&spec), "serving_default");
    }

    fn example(features: &[(&str, feature::Kind)]) -> Example {
        Example {
            features: Some(Features {
                feature: features
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.to_string(),
                            Feature {
                                kind: Some(v.clone()),
                            },
                        )
                    })
                    .collect(),
            }),
        }
    }

    fn image(b: &'static [u8]) -> feature::Kind {
        feature::Kind::BytesList(BytesList {
            value: vec![Bytes::from_static(b)],
        })
    }

    #[test]
    fn classify_examples_yield_images_by_preferred_key() {
        let input = Input {
            kind: Some(input::Kind::ExampleList(ExampleList {
                examples: vec![
                    example(&[
                        ("image/encoded", image(b"a")),
                        ("id", feature::Kind::Int64List(Int64List { value: vec![1] })),
                    ]),
                    example(&[("image/encoded", image(b"b"))]),
                ],
            })),
        };
        let values = example_values(&input, &["image/encoded"], MAX).unwrap();
        assert_eq!(
            values,
            vec![
                ExampleValue::Image(Bytes::from_static(b"a")),
                ExampleValue::Image(Bytes::from_static(b"b"))
            ]
        );
    }

    #[test]
    fn a_single_feature_is_used_whatever_its_name_and_context_is_merged() {
        let input = Input {
            kind: Some(input::Kind::ExampleListWithContext(
                ExampleListWithContext {
                    examples: vec![Example::default()],
                    context: Some(example(&[(
                        "x",
                        feature::Kind::FloatList(FloatList {
                            value: vec![0.5, 1.0],
                        }),
                    )])),
                },
            )),
        };
        assert_eq!(
            example_values(&input, &["image"], MAX).unwrap(),
            vec![ExampleValue::Floats(vec![0.5, 1.0])]
        );
    }

    #[test]
    fn a_context_shared_by_many_examples_counts_once_per_example() {
        // 1000 empty examples and a 1000-value context: a few kilobytes that
        // would decode to a million values.
        let input = Input {
            kind: Some(input::Kind::ExampleListWithContext(
                ExampleListWithContext {
                    examples: vec![Example::default(); 1000],
                    context: Some(example(&[(
                        "inputs",
                        feature::Kind::FloatList(FloatList {
                            value: vec![0.5; 1000],
                        }),
                    )])),
                },
            )),
        };
        let err = example_values(&input, &["inputs"], 100_000).unwrap_err();
        assert!(
            matches!(
                err,
                ProtoError::TooManyElementsInTotal {
                    elements: 101_000,
                    limit: 100_000
                }
            ),
            "{err}"
        );
        assert_eq!(
            example_values(&input, &["inputs"], 1_000_000)
                .unwrap()
                .len(),
            1000
        );
    }

    #[test]
    fn ambiguous_or_empty_examples_are_refused() {
        let two = Input {
            kind: Some(input::Kind::ExampleList(ExampleList {
                examples: vec![example(&[("a", image(b"1")), ("b", image(b"2"))])],
            })),
        };
        let err = example_values(&two, &["image"], MAX).unwrap_err();
        assert!(err.to_string().contains("found [\"a\", \"b\"]"), "{err}");
        let empty = Input {
            kind: Some(input::Kind::ExampleList(ExampleList { examples: vec![] })),
        };
        assert!(matches!(
            example_values(&empty, &[], MAX),
            Err(ProtoError::InvalidRequest(_))
        ));
        let two_images = Input {
            kind: Some(input::Kind::ExampleList(ExampleList {
                examples: vec![example(&[(
                    "image",
                    feature::Kind::BytesList(BytesList {
                        value: vec![Bytes::from_static(b"1"), Bytes::from_static(b"2")],
                    }),
                )])],
            })),
        };
        assert!(matches!(
            example_values(&two_images, &["image"], MAX),
            Err(ProtoError::InvalidData { .. })
        ));
    }

    #[test]
    fn signature_map_is_packed_with_the_official_type_url() {
        let mut map = SignatureDefMap::default();
        let mut sig = crate::tensorflow::SignatureDef {
            method_name: "tensorflow/serving/predict".into(),
            ..Default::default()
        };
        sig.inputs.insert(
            "input".into(),
            tensor_info("input", DataType::DtFloat, &[-1, 3, 32, 32]),
        );
        map.signature_def.insert(DEFAULT_SIGNATURE.into(), sig);
        let any = signature_def_map_any(&map);
        assert_eq!(
            any.type_url,
            "type.googleapis.com/tensorflow.serving.SignatureDefMap"
        );
        let back = SignatureDefMap::decode(any.value.as_slice()).unwrap();
        assert_eq!(back, map);
    }

    #[test]
    fn classification_results_keep_example_order() {
        let r = classification_result(vec![
            vec![("cat".to_string(), 0.9), ("dog".to_string(), 0.1)],
            vec![("ship".to_string(), 1.0)],
        ]);
        assert_eq!(r.classifications.len(), 2);
        assert_eq!(r.classifications[0].classes[1].label, "dog");
        assert_eq!(r.classifications[1].classes[0].score, 1.0);
    }
}

//! What a protocol tensor decodes to: numbers (a fovea Tensor) or a list of
//! byte strings (encoded images), plus the shape and element decoding shared
//! by the TF Serving and KServe paths.
//!
//! # Numbers become f32 by one rule
//!
//! fovea computes in f32. Every wire number reaches it through the same two
//! conversions, so a value is accepted or refused alike whether it came as a
//! `TensorProto` (gRPC) or as JSON (REST):
//!
//! - an **integer** (`int_val`, `int64_val`, integer `tensor_content`, a JSON
//!   number written without fraction or exponent) must be exactly
//!   representable in f32 ([`exact_f32`]): ids and counts are never silently
//!   rounded, so 16777217 (2^24 + 1) is refused while 2^25 is accepted;
//! - a **double** (`double_val`, DT_DOUBLE content, any other JSON number) is
//!   rounded to the nearest f32, and refused only when it is finite and
//!   outside f32's range ([`narrow_f64`]): a decimal such as 0.1 has no exact
//!   binary form in f64 either, so rounding it loses nothing the client had,
//!   whereas an overflow to infinity would replace the value entirely.
//!
//! TF Serving's REST API draws nearly the same line (its `IsLosslessDecimal`:
//! integers up to 2^24 − 1, decimals within f32's range).

use bytes::Bytes;
use fovea_core::Tensor;

use crate::ProtoError;

/// A tensor of byte strings (TF `DT_STRING`, KServe `BYTES`), row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct BytesTensor {
    /// Dimensions; their product is `items.len()`.
    pub shape: Vec<usize>,
    /// The elements, row-major; slices of the received buffer where possible.
    pub items: Vec<Bytes>,
}

/// A decoded protocol tensor.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorValue {
    /// Numeric data, converted to f32 (fovea's only numeric element type).
    F32(Tensor),
    /// Byte strings, typically encoded images.
    Bytes(BytesTensor),
}

impl TensorValue {
    /// The tensor's shape.
    pub fn shape(&self) -> &[usize] {
        match self {
            TensorValue::F32(t) => t.shape(),
            TensorValue::Bytes(b) => &b.shape,
        }
    }

    /// The KServe datatype name of this value ("FP32" or "BYTES").
    pub fn kserve_datatype(&self) -> &'static str {
        match self {
            TensorValue::F32(_) => "FP32",
            TensorValue::Bytes(_) => "BYTES",
        }
    }
}

/// Converts wire dimensions to a shape, refusing negative sizes and element
/// counts that overflow or exceed `max_elements`; returns the shape and its
/// element count.
pub fn checked_shape(
    name: &str,
    dims: &[i64],
    max_elements: usize,
) -> Result<(Vec<usize>, usize), ProtoError> {
    let invalid = |reason| ProtoError::InvalidShape {
        name: name.to_string(),
        shape: dims.to_vec(),
        reason,
    };
    let mut shape = Vec::with_capacity(dims.len());
    let mut elements: usize = 1;
    for &d in dims {
        let d = usize::try_from(d).map_err(|_| invalid("dimensions must be >= 0"))?;
        elements = elements
            .checked_mul(d)
            .ok_or_else(|| invalid("element count overflows"))?;
        shape.push(d);
    }
    if elements > max_elements {
        return Err(ProtoError::TooManyElements {
            name: name.to_string(),
            elements,
            limit: max_elements,
        });
    }
    Ok((shape, elements))
}

/// Converts an integer to f32 only when the conversion is exact, so that ids
/// or counts are never silently rounded.
pub(crate) fn exact_f32<T>(name: &str, v: T) -> Result<f32, ProtoError>
where
    T: Copy + Into<i128> + std::fmt::Display,
{
    let wide: i128 = v.into();
    // Every integer that f32 holds exactly survives the round trip; f32 from
    // a 64-bit integer is finite, so the cast back cannot saturate wrongly.
    let f = wide as f32;
    if f as i128 == wide {
        Ok(f)
    } else {
        Err(ProtoError::NotRepresentable {
            name: name.to_string(),
            value: v.to_string(),
        })
    }
}

/// Narrows a double, refusing finite values outside f32's range (they would
/// become infinities); NaN and infinities pass through as they are.
pub(crate) fn narrow_f64(name: &str, v: f64) -> Result<f32, ProtoError> {
    let f = v as f32;
    if v.is_finite() && !f.is_finite() {
        return Err(ProtoError::NotRepresentable {
            name: name.to_string(),
            value: v.to_string(),
        });
    }
    Ok(f)
}

/// A JSON number as f32 by the module's rule: an integer literal is an
/// integer ([`exact_f32`]), any other number a double ([`narrow_f64`]).
/// serde_json reads an integer literal beyond 64 bits as a double, so such a
/// literal is rounded like one.
pub(crate) fn json_f32(name: &str, n: &serde_json::Number) -> Result<f32, ProtoError> {
    if let Some(i) = n.as_i64() {
        exact_f32(name, i)
    } else if let Some(u) = n.as_u64() {
        exact_f32(name, u)
    } else if let Some(f) = n.as_f64() {
        narrow_f64(name, f)
    } else {
        // Only reachable with serde_json's arbitrary_precision feature.
        Err(ProtoError::NotRepresentable {
            name: name.to_string(),
            value: n.to_string(),
        })
    }
}

/// Element types a raw little-endian buffer can hold, with their decoders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RawType {
    F32,
    F64,
    F16,
    Bf16,
    I8,
    I16,
    I32,
    I64,
    U8,
    U16,
    U32,
    U64,
}

impl RawType {
    pub(crate) fn size(self) -> usize {
        match self {
            RawType::I8 | RawType::U8 => 1,
            RawType::F16 | RawType::Bf16 | RawType::I16 | RawType::U16 => 2,
            RawType::F32 | RawType::I32 | RawType::U32 => 4,
            RawType::F64 | RawType::I64 | RawType::U64 => 8,
        }
    }
}

/// Decodes `count` little-endian elements of `ty` into f32, after checking
/// that the buffer is exactly `count × size` bytes. This is the single copy
/// of the tensor data that the protocols allow.
pub(crate) fn decode_raw(
    name: &str,
    dtype: &str,
    ty: RawType,
    shape: &[usize],
    count: usize,
    raw: &[u8],
) -> Result<Vec<f32>, ProtoError> {
    let expected = count.saturating_mul(ty.size());
    if raw.len() != expected {
        return Err(ProtoError::ByteLength {
            name: name.to_string(),
            dtype: dtype.to_string(),
            shape: shape.to_vec(),
            expected,
            actual: raw.len(),
        });
    }
    fn each<const N: usize>(
        raw: &[u8],
        mut f: impl FnMut([u8; N]) -> Result<f32, ProtoError>,
    ) -> Result<Vec<f32>, ProtoError> {
        raw.chunks_exact(N)
            .map(|c| {
                let mut b = [0u8; N];
                b.copy_from_slice(c);
                f(b)
            })
            .collect()
    }
    match ty {
        RawType::F32 => Ok(raw
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()),
        RawType::F64 => each(raw, |b| narrow_f64(name, f64::from_le_bytes(b))),
        RawType::F16 => each(raw, |b| Ok(half::f16::from_le_bytes(b).to_f32())),
        RawType::Bf16 => each(raw, |b| Ok(half::bf16::from_le_bytes(b).to_f32())),
        RawType::I8 => each(raw, |b| Ok(f32::from(i8::from_le_bytes(b)))),
        RawType::U8 => each(raw, |b: [u8; 1]| Ok(f32::from(b[0]))),
        RawType::I16 => each(raw, |b| Ok(f32::from(i16::from_le_bytes(b)))),
        RawType::U16 => each(raw, |b| Ok(f32::from(u16::from_le_bytes(b)))),
        RawType::I32 => each(raw, |b| exact_f32(name, i32::from_le_bytes(b))),
        RawType::U32 => each(raw, |b| exact_f32(name, u32::from_le_bytes(b))),
        RawType::I64 => each(raw, |b| exact_f32(name, i64::from_le_bytes(b))),
        RawType::U64 => each(raw, |b| exact_f32(name, u64::from_le_bytes(b))),
    }
}

/// Builds the f32 tensor, mapping a (theoretically impossible) shape mismatch
/// to an error rather than a panic.
pub(crate) fn f32_tensor(
    name: &str,
    shape: Vec<usize>,
    data: Vec<f32>,
) -> Result<TensorValue, ProtoError> {
    checked_tensor(name, shape, data).map(TensorValue::F32)
}

/// [`f32_tensor`] without the [`TensorValue`] wrapper.
pub(crate) fn checked_tensor(
    name: &str,
    shape: Vec<usize>,
    data: Vec<f32>,
) -> Result<Tensor, ProtoError> {
    Tensor::new(shape, data).map_err(|e| ProtoError::ElementCount {
        name: name.to_string(),
        shape: e.shape,
        expected: e.expected,
        actual: e.actual,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negative_and_overflowing_dimensions_are_refused() {
        let neg = checked_shape("x", &[1, -1], usize::MAX).unwrap_err();
        assert!(matches!(neg, ProtoError::InvalidShape { .. }));
        let huge = checked_shape("x", &[i64::MAX, i64::MAX, 4], usize::MAX).unwrap_err();
        assert!(
            matches!(huge, ProtoError::InvalidShape { reason, .. } if reason.contains("overflow"))
        );
    }

    #[test]
    fn shapes_beyond_the_element_limit_are_too_large() {
        let err = checked_shape("x", &[2, 3, 4], 23).unwrap_err();
        assert!(matches!(
            err,
            ProtoError::TooManyElements {
                elements: 24,
                limit: 23,
                ..
            }
        ));
        assert_eq!(
            checked_shape("x", &[2, 3, 4], 24).unwrap(),
            (vec![2, 3, 4], 24)
        );
        assert_eq!(checked_shape("x", &[], 1).unwrap(), (vec![], 1));
    }

    #[test]
    fn integers_beyond_f32_precision_are_refused() {
        assert_eq!(exact_f32("x", 16_777_216_i64).unwrap(), 16_777_216.0);
        assert!(exact_f32("x", 16_777_217_i64).is_err());
        assert!(exact_f32("x", i64::MAX).is_err());
        assert!(exact_f32("x", u64::MAX).is_err());
        assert_eq!(exact_f32("x", -255_i32).unwrap(), -255.0);
    }

    #[test]
    fn doubles_outside_f32_range_are_refused_but_nan_passes() {
        assert!(narrow_f64("x", 1e300).is_err());
        assert!(narrow_f64("x", f64::NAN).unwrap().is_nan());
        assert_eq!(narrow_f64("x", 0.5).unwrap(), 0.5);
    }

    fn json(text: &str) -> serde_json::Number {
        match serde_json::from_str(text).unwrap() {
            serde_json::Value::Number(n) => n,
            other => panic!("not a number: {other}"),
        }
    }

    #[test]
    fn json_integer_literals_follow_the_integer_rule() {
        assert_eq!(json_f32("x", &json("16777216")).unwrap(), 16_777_216.0);
        assert_eq!(json_f32("x", &json("33554432")).unwrap(), 33_554_432.0);
        assert_eq!(json_f32("x", &json("-255")).unwrap(), -255.0);
        let err = json_f32("x", &json("16777217")).unwrap_err();
        assert!(matches!(err, ProtoError::NotRepresentable { .. }), "{err}");
        assert!(json_f32("x", &json("18446744073709551615")).is_err());
    }

    #[test]
    fn json_decimals_follow_the_double_rule() {
        assert_eq!(json_f32("x", &json("0.1")).unwrap(), 0.1_f32);
        assert_eq!(json_f32("x", &json("-2.5e3")).unwrap(), -2500.0);
        // Written as a decimal, a value beyond 2^24 is a double: rounded.
        assert_eq!(json_f32("x", &json("16777217.0")).unwrap(), 16_777_216.0);
        let err = json_f32("x", &json("1e39")).unwrap_err();
        assert!(matches!(err, ProtoError::NotRepresentable { .. }), "{err}");
        assert!(json_f32("x", &json("-3.5e38")).is_err());
        assert_eq!(json_f32("x", &json("1e-50")).unwrap(), 0.0);
    }

    #[test]
    fn raw_decoding_checks_the_exact_byte_length() {
        let raw: Vec<u8> = [1.5f32, -2.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        assert_eq!(
            decode_raw("x", "FP32", RawType::F32, &[2], 2, &raw).unwrap(),
            vec![1.5, -2.0]
        );
        let err = decode_raw("x", "FP32", RawType::F32, &[2], 2, &raw[..7]).unwrap_err();
        assert!(matches!(
            err,
            ProtoError::ByteLength {
                expected: 8,
                actual: 7,
                ..
            }
        ));
        let err = decode_raw("x", "FP32", RawType::F32, &[1], 1, &raw).unwrap_err();
        assert!(matches!(
            err,
            ProtoError::ByteLength {
                expected: 4,
                actual: 8,
                ..
            }
        ));
    }

    #[test]
    fn raw_decoding_covers_every_integer_and_half_type() {
        let f16 = half::f16::from_f32(0.25).to_le_bytes();
        assert_eq!(
            decode_raw("x", "FP16", RawType::F16, &[1], 1, &f16).unwrap(),
            vec![0.25]
        );
        let bf16 = half::bf16::from_f32(-3.0).to_le_bytes();
        assert_eq!(
            decode_raw("x", "BF16", RawType::Bf16, &[1], 1, &bf16).unwrap(),
            vec![-3.0]
        );
        assert_eq!(
            decode_raw("x", "UINT8", RawType::U8, &[2], 2, &[0, 255]).unwrap(),
            vec![0.0, 255.0]
        );
        assert_eq!(
            decode_raw("x", "INT8", RawType::I8, &[1], 1, &[0x80]).unwrap(),
            vec![-128.0]
        );
        let i64s = (-7i64).to_le_bytes();
        assert_eq!(
            decode_raw("x", "INT64", RawType::I64, &[1], 1, &i64s).unwrap(),
            vec![-7.0]
        );
        let big = (1u64 << 60 | 1).to_le_bytes();
        assert!(decode_raw("x", "UINT64", RawType::U64, &[1], 1, &big).is_err());
        let f64s = 0.125f64.to_le_bytes();
        assert_eq!(
            decode_raw("x", "FP64", RawType::F64, &[1], 1, &f64s).unwrap(),
            vec![0.125]
        );
    }
}

//! TF Serving's REST JSON → tensors: `:predict`'s row (`instances`) and
//! columnar (`inputs`) formats, `{"b64": "..."}` binary values, and
//! `:classify`'s examples. Numbers become f32 by the same rule as gRPC's
//! `TensorProto` values (see [`crate::value`]), so REST and gRPC accept and
//! refuse the same values.

use base64::Engine as _;
use bytes::Bytes;
use serde_json::{Map, Value};

use fovea_core::Tensor;

use crate::tf::ExampleValue;
use crate::value::{checked_tensor, json_f32};
use crate::{BytesTensor, ProtoError, TensorValue};

/// The features a Classify example is looked up by, before the input's own
/// name: TF Serving's conventional image feature.
const IMAGE_FEATURE: &str = "image";
/// The last feature name tried: TF Serving's columnar key.
const INPUTS_FEATURE: &str = "inputs";

/// `:predict`'s row format: `instances` lists one item per batch element,
/// each an encoded image `{"b64": ...}`, a number or nested number list of
/// the model's item shape, or either under the input's name
/// (`{"<input>": ...}`). Images stack into a `[n]` [`BytesTensor`], numbers
/// into an `[n, ...item shape]` tensor of at most `max_elements`.
pub fn row_input(
    instances: &Value,
    input: &str,
    max_elements: usize,
) -> Result<TensorValue, ProtoError> {
    let Value::Array(list) = instances else {
        return Err(ProtoError::MalformedRequest(
            "\"instances\" must be a list".into(),
        ));
    };
    let items = list
        .iter()
        .map(|i| unnamed(i, input))
        .collect::<Result<Vec<_>, _>>()?;
    stack(input, &items, max_elements)
}

/// `:predict`'s columnar format: `inputs` holds the whole batch, bare or as
/// `{"<input>": batch}`; a value that is not a list is a batch of one.
pub fn columnar_input(
    inputs: &Value,
    input: &str,
    max_elements: usize,
) -> Result<TensorValue, ProtoError> {
    match unnamed(inputs, input)? {
        Value::Array(list) => stack(input, &list.iter().collect::<Vec<_>>(), max_elements),
        single => stack(input, &[single], max_elements),
    }
}

/// `:classify`'s (and `:regress`'s) `examples`, one value per example. The
/// feature used is the first present of `image`, the input's name and
/// `inputs`, in the example and then in the shared `context`; failing those,
/// the example's only feature. Its value is `{"b64": ...}` (an image) or a
/// number list (flattened). At most `max_elements` values in all, an image
/// counting as one: a context feature is every example's value, so a small
/// body could otherwise ask for examples × context values. A context image
/// is decoded once and shared.
pub fn examples(
    body: &Map<String, Value>,
    input: &str,
    max_elements: usize,
) -> Result<Vec<ExampleValue>, ProtoError> {
    let Some(Value::Array(examples)) = body.get("examples") else {
        return Err(ProtoError::MalformedRequest(
            "\"examples\" must be a list".into(),
        ));
    };
    if examples.is_empty() {
        return Err(ProtoError::MalformedRequest("\"examples\" is empty".into()));
    }
    let context = match body.get("context") {
        // proto3 JSON reads null as the field's default: no context.
        None | Some(Value::Null) => None,
        Some(Value::Object(context)) => Some(context),
        Some(_) => {
            return Err(ProtoError::MalformedRequest(
                "\"context\" must be an object of features".into(),
            ));
        }
    };
    let keys = [IMAGE_FEATURE, input, INPUTS_FEATURE];
    // Context values by key, decoded the first time an example uses them.
    let mut shared: Vec<(&str, ExampleValue)> = Vec::new();
    let mut total = 0usize;
    examples
        .iter()
        .enumerate()
        .map(|(index, example)| {
            let own = example.as_object();
            let (key, value, from_context) = keys
                .iter()
                .find_map(|k| {
                    own.and_then(|m| m.get_key_value(*k))
                        .map(|(k, v)| (k, v, false))
                        .or_else(|| {
                            context
                                .and_then(|c| c.get_key_value(*k))
                                .map(|(k, v)| (k, v, true))
                        })
                })
                .or_else(|| match own {
                    Some(m) if m.len() == 1 => m.iter().next().map(|(k, v)| (k, v, false)),
                    _ => None,
                })
                .ok_or_else(|| ProtoError::MissingFeature {
                    index,
                    expected: keys.iter().map(|k| (*k).to_string()).collect(),
                })?;
            let cached = shared
                .iter()
                .find(|(k, _)| from_context && *k == key.as_str());
            let value = match cached {
                Some((_, decoded)) => decoded.clone(),
                None => {
                    let decoded = feature_value(index, key, value, max_elements)?;
                    if from_context {
                        shared.push((key.as_str(), decoded.clone()));
                    }
                    decoded
                }
            };
            total = total.saturating_add(match &value {
                ExampleValue::Image(_) => 1,
                ExampleValue::Floats(f) => f.len(),
            });
            if total > max_elements {
                return Err(ProtoError::TooManyElementsInTotal {
                    elements: total,
                    limit: max_elements,
                });
            }
            Ok(value)
        })
        .collect()
}

/// One example's feature value: `{"b64": ...}` (an image) or numbers.
fn feature_value(
    index: usize,
    key: &str,
    value: &Value,
    max_elements: usize,
) -> Result<ExampleValue, ProtoError> {
    let name = format!("examples[{index}].{key}");
    if let Some(image) = b64_value(&name, value) {
        return image.map(ExampleValue::Image);
    }
    match value {
        Value::Number(_) | Value::Array(_) => {
            numbers(&name, &[value], max_elements).map(|t| ExampleValue::Floats(t.into_data()))
        }
        _ => Err(ProtoError::InvalidFeature {
            index,
            key: key.to_string(),
        }),
    }
}

/// `{"b64": "..."}` → its bytes; None when `v` is not such an object (an
/// object with other members is not one, as in TF Serving).
fn b64_value(name: &str, v: &Value) -> Option<Result<Bytes, ProtoError>> {
    let object = v.as_object()?;
    let text = object.get("b64").filter(|_| object.len() == 1)?;
    Some(
        text.as_str()
            .and_then(|t| base64::engine::general_purpose::STANDARD.decode(t).ok())
            .map(Bytes::from)
            .ok_or_else(|| ProtoError::InvalidBase64 {
                name: name.to_string(),
            }),
    )
}

/// An item `{"<input>": value}` is that value; `{"b64": ...}` and values
/// that are not objects stay as they are.
fn unnamed<'a>(item: &'a Value, input: &str) -> Result<&'a Value, ProtoError> {
    match item.as_object() {
        Some(object) if !(object.len() == 1 && object.contains_key("b64")) => {
            match (object.get(input), object.len()) {
                (Some(v), 1) => Ok(v),
                _ => Err(ProtoError::UnknownInput {
                    expected: input.to_string(),
                    got: object.keys().cloned().collect(),
                }),
            }
        }
        _ => Ok(item),
    }
}

/// Stacks items into one batch: all `{"b64"}` images, or all numbers of one shape.
fn stack(name: &str, items: &[&Value], max_elements: usize) -> Result<TensorValue, ProtoError> {
    if !items.iter().any(|v| b64_value(name, v).is_some()) {
        return numbers(name, items, max_elements).map(TensorValue::F32);
    }
    let images = items
        .iter()
        .map(|v| {
            b64_value(name, v).unwrap_or_else(|| {
                Err(ProtoError::MixedInstances {
                    name: name.to_string(),
                })
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(TensorValue::Bytes(BytesTensor {
        shape: vec![images.len()],
        items: images,
    }))
}

/// Stacks numeric items (numbers or nested lists) into an `[n, ...]` tensor.
///
/// The item shape is read off the first item's first elements, which a body
/// can make claim far more than it holds: `[[0, 0, ... 1000 zeros], [], ...]`
/// claims 1000 × 1000 elements in a few kilobytes. So every item is checked
/// against that shape before the buffer is allocated, and a tensor that
/// passes holds exactly as many numbers as the body carries.
fn numbers(name: &str, items: &[&Value], max_elements: usize) -> Result<Tensor, ProtoError> {
    let item_shape = nested_shape(items.first().copied().unwrap_or(&Value::Null));
    for item in items {
        conforms(name, item, &item_shape)?;
    }
    let mut shape = Vec::with_capacity(item_shape.len() + 1);
    shape.push(items.len());
    shape.extend(&item_shape);
    let elements = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    let elements = match elements {
        Some(n) if n <= max_elements => n,
        // Unreachable after `conforms` (every element was seen), kept so
        // that no arithmetic on client-declared sizes can wrap.
        n => {
            return Err(ProtoError::TooManyElements {
                name: name.to_string(),
                elements: n.unwrap_or(usize::MAX),
                limit: max_elements,
            });
        }
    };
    let mut data = Vec::with_capacity(elements);
    for item in items {
        push_numbers(name, item, &mut data)?;
    }
    checked_tensor(name, shape, data)
}

/// The shape of a nested list, following first elements (as TF Serving does).
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

/// Checks that `v` has exactly `shape`, with numbers as its leaves.
fn conforms(name: &str, v: &Value, shape: &[usize]) -> Result<(), ProtoError> {
    match (v, shape.split_first()) {
        (Value::Array(list), Some((&len, rest))) if list.len() == len => {
            list.iter().try_for_each(|item| conforms(name, item, rest))
        }
        (Value::Number(_), None) => Ok(()),
        (Value::Array(_), _) | (Value::Number(_), Some(_)) => Err(ProtoError::Ragged {
            name: name.to_string(),
            shape: shape.to_vec(),
        }),
        (other, _) => Err(ProtoError::InvalidData {
            name: name.to_string(),
            reason: format!("expected numbers for a float input, got {other}"),
        }),
    }
}

/// Appends the numbers of `v` (already checked by [`conforms`]) in row-major order.
fn push_numbers(name: &str, v: &Value, out: &mut Vec<f32>) -> Result<(), ProtoError> {
    match v {
        Value::Array(list) => list
            .iter()
            .try_for_each(|item| push_numbers(name, item, out)),
        Value::Number(n) => {
            out.push(json_f32(name, n)?);
            Ok(())
        }
        other => Err(ProtoError::InvalidData {
            name: name.to_string(),
            reason: format!("expected numbers for a float input, got {other}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use fovea_core::{ErrorKind, FoveaError};
    use serde_json::json;

    use super::*;

    const MAX: usize = 1 << 20;

    fn f32s(v: TensorValue) -> (Vec<usize>, Vec<f32>) {
        match v {
            TensorValue::F32(t) => t.into_parts(),
            TensorValue::Bytes(b) => panic!("expected numbers, got {b:?}"),
        }
    }

    fn body(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            other => panic!("not an object: {other}"),
        }
    }

    #[test]
    fn row_instances_stack_into_one_batch() {
        let rows = json!([[[1.0, 2.0], [3.0, 4.0]], [[5.0, 6.0], [7.0, 8.0]]]);
        let (shape, data) = f32s(row_input(&rows, "x", MAX).unwrap());
        assert_eq!(shape, vec![2, 2, 2]);
        assert_eq!(data, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]);
    }

    #[test]
    fn row_instances_may_name_the_input() {
        let rows = json!([{"x": [1.0, 2.0]}, {"x": [3.0, 4.0]}]);
        let (shape, data) = f32s(row_input(&rows, "x", MAX).unwrap());
        assert_eq!((shape, data), (vec![2, 2], vec![1.0, 2.0, 3.0, 4.0]));
    }

    #[test]
    fn row_instances_naming_another_input_are_refused() {
        for rows in [json!([{"y": [1.0]}]), json!([{"x": [1.0], "y": [2.0]}])] {
            let err = row_input(&rows, "x", MAX).unwrap_err();
            assert!(matches!(err, ProtoError::UnknownInput { .. }), "{err}");
            assert_eq!(err.code(), "unknown_input");
        }
    }

    #[test]
    fn scalar_instances_make_a_vector() {
        let (shape, data) = f32s(row_input(&json!([1, 2.5]), "x", MAX).unwrap());
        assert_eq!((shape, data), (vec![2], vec![1.0, 2.5]));
    }

    #[test]
    fn instances_must_be_a_list() {
        let err = row_input(&json!({"x": [1.0]}), "x", MAX).unwrap_err();
        assert_eq!(err.code(), "malformed_request");
    }

    #[test]
    fn columnar_inputs_are_the_batch_bare_or_named() {
        let batch = json!([[1.0, 2.0], [3.0, 4.0]]);
        let bare = f32s(columnar_input(&batch, "x", MAX).unwrap());
        let named = f32s(columnar_input(&json!({ "x": batch }), "x", MAX).unwrap());
        assert_eq!(bare, (vec![2, 2], vec![1.0, 2.0, 3.0, 4.0]));
        assert_eq!(named, bare);
        let err = columnar_input(&json!({"y": batch}), "x", MAX).unwrap_err();
        assert_eq!(err.code(), "unknown_input");
    }

    #[test]
    fn a_columnar_value_that_is_not_a_list_is_a_batch_of_one() {
        assert_eq!(
            f32s(columnar_input(&json!(0.5), "x", MAX).unwrap()),
            (vec![1], vec![0.5])
        );
        let TensorValue::Bytes(b) = columnar_input(&json!({"b64": "aGk="}), "x", MAX).unwrap()
        else {
            panic!("not bytes")
        };
        assert_eq!(b.shape, vec![1]);
    }

    #[test]
    fn b64_instances_become_images_bare_or_named() {
        let rows = json!([{"b64": "aGk="}, {"x": {"b64": "aG8="}}]);
        let TensorValue::Bytes(b) = row_input(&rows, "x", MAX).unwrap() else {
            panic!("not bytes")
        };
        assert_eq!(b.shape, vec![2]);
        assert_eq!(
            b.items,
            vec![Bytes::from_static(b"hi"), Bytes::from_static(b"ho")]
        );
    }

    #[test]
    fn bad_base64_is_refused() {
        for rows in [json!([{"b64": "***"}]), json!([{"b64": 5}])] {
            let err = row_input(&rows, "x", MAX).unwrap_err();
            assert!(matches!(err, ProtoError::InvalidBase64 { .. }), "{err}");
            assert_eq!(err.code(), "invalid_base64");
            assert_eq!(err.kind(), ErrorKind::InvalidInput);
        }
    }

    #[test]
    fn images_mixed_with_numbers_are_refused() {
        let rows = json!([{"b64": "aGk="}, [1.0]]);
        let err = row_input(&rows, "x", MAX).unwrap_err();
        assert_eq!(err.code(), "mixed_instances");
    }

    #[test]
    fn ragged_instances_are_refused() {
        for rows in [
            json!([[1.0, 2.0], [3.0]]),
            json!([[1.0, 2.0], [3.0, [4.0]]]),
            json!([[1.0], 2.0]),
            json!([1.0, [2.0]]),
        ] {
            let err = row_input(&rows, "x", MAX).unwrap_err();
            assert!(matches!(err, ProtoError::Ragged { .. }), "{rows}: {err}");
            assert_eq!(err.code(), "ragged_instances");
        }
    }

    #[test]
    fn values_that_are_not_numbers_are_refused() {
        for rows in [json!([["a", "b"]]), json!([[1.0, null]]), json!([[true]])] {
            let err = row_input(&rows, "x", MAX).unwrap_err();
            assert!(
                matches!(err, ProtoError::InvalidData { .. }),
                "{rows}: {err}"
            );
            assert_eq!(err.code(), "invalid_tensor_data");
        }
    }

    #[test]
    fn numbers_follow_the_grpc_rounding_rule() {
        // Decimals round to the nearest f32, as double_val does...
        let (_, data) = f32s(row_input(&json!([[0.1, 16777217.0]]), "x", MAX).unwrap());
        assert_eq!(data, vec![0.1_f32, 16_777_216.0]);
        // ...integers must be exact, as int64_val must...
        let (_, data) = f32s(row_input(&json!([[16777216, 33554432]]), "x", MAX).unwrap());
        assert_eq!(data, vec![16_777_216.0, 33_554_432.0]);
        let err = row_input(&json!([[16777217]]), "x", MAX).unwrap_err();
        assert!(matches!(err, ProtoError::NotRepresentable { .. }), "{err}");
        assert_eq!(err.code(), "value_not_representable");
        // ...and nothing overflows to infinity.
        let err = columnar_input(&json!([1e39]), "x", MAX).unwrap_err();
        assert!(matches!(err, ProtoError::NotRepresentable { .. }), "{err}");
    }

    #[test]
    fn too_many_elements_are_too_large() {
        let err = row_input(&json!([[1.0, 2.0, 3.0]]), "x", 2).unwrap_err();
        assert!(
            matches!(
                err,
                ProtoError::TooManyElements {
                    elements: 3,
                    limit: 2,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(err.kind(), ErrorKind::TooLarge);
        assert_eq!(err.code(), "tensor_too_large");
    }

    /// `[[[0 × n] , 0 × (n-1)], 0 × (n-1)]`: its first elements claim an
    /// `[n, n, n]` item, but it holds about 3n numbers.
    fn claims_a_cube(n: usize) -> Value {
        let mut level = Value::Array(vec![json!(0); n]);
        for _ in 0..2 {
            let mut list = vec![level];
            list.extend(std::iter::repeat_n(json!(0), n - 1));
            level = Value::Array(list);
        }
        level
    }

    #[test]
    fn a_huge_claimed_shape_in_a_small_body_is_refused_before_allocating() {
        // 10^4 instances of a claimed 10^4 × 10^4 × 10^4 item: 10^16 f32s
        // (40 PB) if the claim were allocated, which would abort this test.
        let n = 10_000;
        let mut instances = vec![claims_a_cube(n)];
        instances.extend(std::iter::repeat_n(json!(0), n - 1));
        let rows = Value::Array(instances);
        assert!(rows.to_string().len() < 200_000);
        let err = row_input(&rows, "x", usize::MAX).unwrap_err();
        assert!(matches!(err, ProtoError::Ragged { .. }), "{err}");
        let err = columnar_input(&rows, "x", usize::MAX).unwrap_err();
        assert!(matches!(err, ProtoError::Ragged { .. }), "{err}");
        let body = body(json!({"examples": [{"image": claims_a_cube(n)}]}));
        let err = examples(&body, "x", usize::MAX).unwrap_err();
        assert!(matches!(err, ProtoError::Ragged { .. }), "{err}");
    }

    #[test]
    fn classify_examples_yield_images_and_flattened_numbers() {
        let body = body(json!({"examples": [
            {"image": {"b64": "aGk="}, "id": [7]},
            {"x": [[0.5, 1.0], [1.5, 2.0]]},
            {"anything": 3},
        ]}));
        assert_eq!(
            examples(&body, "x", MAX).unwrap(),
            vec![
                ExampleValue::Image(Bytes::from_static(b"hi")),
                ExampleValue::Floats(vec![0.5, 1.0, 1.5, 2.0]),
                ExampleValue::Floats(vec![3.0]),
            ]
        );
    }

    #[test]
    fn classify_context_supplies_missing_features_and_must_be_an_object() {
        let example = json!([{"other": 1, "more": 2}]);
        let with_context = body(json!({"examples": example, "context": {"inputs": [1.0]}}));
        assert_eq!(
            examples(&with_context, "x", MAX).unwrap(),
            vec![ExampleValue::Floats(vec![1.0])]
        );
        let null = body(json!({"examples": [{"image": {"b64": "aGk="}}], "context": null}));
        assert_eq!(examples(&null, "x", MAX).unwrap().len(), 1);
        let list = body(json!({"examples": example, "context": [null]}));
        assert_eq!(
            examples(&list, "x", MAX).unwrap_err().code(),
            "malformed_request"
        );
    }

    #[test]
    fn a_context_shared_by_many_examples_counts_once_per_example() {
        // A few kilobytes asking for 1000 examples × 1000 context values.
        let many = body(json!({
            "examples": vec![json!({}); 1000],
            "context": {"inputs": vec![0.5; 1000]},
        }));
        let err = examples(&many, "x", 100_000).unwrap_err();
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
        assert_eq!(err.kind(), ErrorKind::TooLarge);
        assert_eq!(examples(&many, "x", 1_000_000).unwrap().len(), 1000);
    }

    #[test]
    fn a_context_image_is_decoded_once_for_every_example() {
        let shared = body(json!({
            "examples": [{}, {}, {"image": {"b64": "aGk="}}],
            "context": {"image": {"b64": "aGk="}},
        }));
        let values = examples(&shared, "x", MAX).unwrap();
        let [
            ExampleValue::Image(a),
            ExampleValue::Image(b),
            ExampleValue::Image(own),
        ] = values.as_slice()
        else {
            panic!("expected three images, got {values:?}");
        };
        assert_eq!((a, b, own), (&Bytes::from_static(b"hi"), b, b));
        assert_eq!(a.as_ptr(), b.as_ptr(), "one decoded buffer, shared");
        assert_ne!(
            a.as_ptr(),
            own.as_ptr(),
            "an example's own image is its own"
        );
    }

    #[test]
    fn classify_examples_without_a_usable_feature_are_refused() {
        let none = body(json!({"examples": [{"a": 1, "b": 2}]}));
        assert_eq!(
            examples(&none, "x", MAX).unwrap_err().code(),
            "missing_feature"
        );
        for value in [json!("text"), json!(null), json!({"not": "b64"})] {
            let odd = body(json!({"examples": [{ "image": value }]}));
            let err = examples(&odd, "x", MAX).unwrap_err();
            assert_eq!(err.code(), "invalid_feature", "{err}");
        }
        for bad in [json!({"examples": []}), json!({"examples": {}}), json!({})] {
            assert_eq!(
                examples(&body(bad), "x", MAX).unwrap_err().code(),
                "malformed_request"
            );
        }
    }

    #[test]
    fn classify_numbers_obey_the_element_limit_and_the_rounding_rule() {
        let big = body(json!({"examples": [{"image": [1.0, 2.0, 3.0]}]}));
        assert_eq!(
            examples(&big, "x", 2).unwrap_err().kind(),
            ErrorKind::TooLarge
        );
        let inexact = body(json!({"examples": [{"image": [16777217]}]}));
        assert_eq!(
            examples(&inexact, "x", MAX).unwrap_err().code(),
            "value_not_representable"
        );
    }
}

//! TF Serving REST JSON bodies (`:predict` row and columnar, `:classify`
//! examples) through `fovea_proto::tf_json`, parsed as the handler parses
//! them, with the server's default element limit and a small one.
#![no_main]

use fovea_core::defaults::MAX_BODY_BYTES;
use fovea_proto::TensorValue;
use fovea_proto::tf::ExampleValue;
use fovea_proto::tf_json;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// What `Pipeline::max_elements` allows by default.
const MAX_ELEMENTS: usize = MAX_BODY_BYTES / 4;
/// Small enough for a fuzz input's shared Classify context to exceed it.
const SMALL_LIMIT: usize = 1 << 10;
const INPUT: &str = "input";

fn elements(value: &TensorValue) -> usize {
    match value {
        TensorValue::F32(t) => t.data().len(),
        TensorValue::Bytes(b) => b.items.len(),
    }
}

fuzz_target!(|data: &[u8]| {
    // As the handler reads the body (serde_json's default recursion limit).
    let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    for limit in [MAX_ELEMENTS, SMALL_LIMIT] {
        // Every number or image of a predict body is at least one byte of
        // it: a tensor larger than the body was sized by something else.
        for (member, row) in [("instances", true), ("inputs", false)] {
            let Some(batch) = body.get(member) else {
                continue;
            };
            let decoded = if row {
                tf_json::row_input(batch, INPUT, limit)
            } else {
                tf_json::columnar_input(batch, INPUT, limit)
            };
            if let Ok(value) = decoded {
                let n = elements(&value);
                assert!(n <= data.len().min(limit), "{member}: {n} elements");
            }
        }
        // A shared `context` feature is every example's value, so only the
        // limit bounds the examples together.
        if let Ok(examples) = tf_json::examples(&body, INPUT, limit) {
            let n: usize = examples
                .iter()
                .map(|e| match e {
                    ExampleValue::Image(_) => 1,
                    ExampleValue::Floats(f) => f.len(),
                })
                .sum();
            assert!(n <= limit, "examples: {n} values, limit {limit}");
        }
    }
});

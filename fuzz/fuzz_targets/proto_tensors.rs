//! gRPC tensor decoding after prost: TF Serving `PredictRequest` inputs
//! (`tf::tensors_from_map`) and `ClassificationRequest` examples
//! (`tf::example_values`), and KServe `ModelInferRequest` inputs
//! (`kserve::infer_inputs`). The first byte picks the message.
#![no_main]

use fovea_proto::inference::ModelInferRequest;
use fovea_proto::tensorflow::serving::{ClassificationRequest, PredictRequest};
use fovea_proto::tf::ExampleValue;
use fovea_proto::{TensorValue, kserve, tf};
use libfuzzer_sys::fuzz_target;
use prost::Message;

/// Small, so that a fuzz input can reach it: TensorFlow's fill rule and a
/// shared Classify context let a few bytes declare many values, and no
/// request may decode to more than the limit in total.
const MAX_ELEMENTS: usize = 1 << 10;

fn elements(value: &TensorValue) -> usize {
    match value {
        TensorValue::F32(t) => t.data().len(),
        TensorValue::Bytes(b) => b.items.len(),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, message)) = data.split_first() else {
        return;
    };
    match selector % 3 {
        0 => {
            let Ok(request) = PredictRequest::decode(message) else {
                return;
            };
            if let Ok(inputs) = tf::tensors_from_map(&request.inputs, MAX_ELEMENTS) {
                let total: usize = inputs.iter().map(|(_, v)| elements(v)).sum();
                assert!(total <= MAX_ELEMENTS, "{total} elements decoded");
            }
        }
        1 => {
            let Ok(request) = ModelInferRequest::decode(message) else {
                return;
            };
            if let Ok(inputs) = kserve::infer_inputs(&request, MAX_ELEMENTS) {
                let total: usize = inputs.iter().map(|(_, v)| elements(v)).sum();
                // No fill rule in KServe: every element is on the wire.
                assert!(
                    total <= message.len(),
                    "{total} elements from {} bytes",
                    message.len()
                );
            }
        }
        _ => {
            let Ok(request) = ClassificationRequest::decode(message) else {
                return;
            };
            let input = request.input.unwrap_or_default();
            if let Ok(examples) =
                tf::example_values(&input, &["image", "input", "inputs"], MAX_ELEMENTS)
            {
                let numbers: usize = examples
                    .iter()
                    .map(|e| match e {
                        ExampleValue::Image(_) => 1,
                        ExampleValue::Floats(f) => f.len(),
                    })
                    .sum();
                // A shared context feature counts once per example that uses it.
                assert!(numbers <= MAX_ELEMENTS, "{numbers} values decoded");
            }
        }
    }
});

//! KServe V2 REST infer bodies, JSON and the binary extension, through
//! `fovea_proto::binary::{parse_infer_request, decode_tensor}` with the
//! server's default element limit. The first two bytes are the
//! `Inference-Header-Content-Length` (little-endian; 0xFFFF: no header).
#![no_main]

use bytes::Bytes;
use fovea_core::defaults::MAX_BODY_BYTES;
use fovea_proto::TensorValue;
use fovea_proto::binary;
use libfuzzer_sys::fuzz_target;

/// What `Pipeline::max_elements` allows by default.
const MAX_ELEMENTS: usize = MAX_BODY_BYTES / 4;

fuzz_target!(|data: &[u8]| {
    let Some((length, body)) = data.split_first_chunk::<2>() else {
        return;
    };
    let header_length = match u16::from_le_bytes(*length) {
        u16::MAX => None,
        n => Some(usize::from(n)),
    };
    let body = Bytes::copy_from_slice(body);
    let Ok(request) = binary::parse_infer_request(&body, header_length) else {
        return;
    };
    let mut total = 0;
    for tensor in &request.inputs {
        if let Ok(value) = binary::decode_tensor(tensor, MAX_ELEMENTS) {
            total += match &value {
                TensorValue::F32(t) => t.data().len(),
                TensorValue::Bytes(b) => b.items.len(),
            };
        }
    }
    // KServe has no fill rule: every element is at least one byte of the body.
    assert!(
        total <= body.len(),
        "{total} elements from {} bytes",
        body.len()
    );
    // The same tensors claiming 2^24 times as many elements as they carry:
    // coverage gives the fuzzer no reason to grow a shape by itself, so the
    // target asks directly that such a claim is refused without costing an
    // allocation of its size (-malloc_limit_mb catches one).
    for tensor in &request.inputs {
        let mut claim = tensor.clone();
        claim.shape.insert(0, 1 << 24);
        let claimed = claim
            .shape
            .iter()
            .try_fold(1i64, |acc, &d| acc.checked_mul(d));
        if claimed.is_some_and(|n| n > 0) {
            assert!(binary::decode_tensor(&claim, usize::MAX).is_err());
        }
    }
    for output in &request.outputs {
        let _ = binary::class_count(output);
        let _ = binary::wants_binary(&request, &output.name);
    }
});

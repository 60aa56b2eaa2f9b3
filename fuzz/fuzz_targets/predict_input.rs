//! `POST /api/v1/predict` body parsing (`fovea_server::input::parse`) on an
//! axum request built from the fuzz input. The first byte picks the content
//! type, so one corpus covers every body form the endpoint accepts.
#![no_main]

use std::sync::LazyLock;

use axum::body::Body;
use axum::extract::Request;
use axum::http::header::CONTENT_TYPE;
use fovea_server::input::{self, ImageSource, PredictOptions};
use libfuzzer_sys::fuzz_target;

static RUNTIME: LazyLock<tokio::runtime::Runtime> =
    LazyLock::new(
        || match tokio::runtime::Builder::new_current_thread().build() {
            Ok(runtime) => runtime,
            Err(e) => panic!("no tokio runtime: {e}"),
        },
    );

const MAX_IMAGES: usize = 4;

/// Where a request's Content-Type comes from.
enum ContentType {
    Fixed(&'static str),
    Absent,
    /// The input's first line: media-type and boundary parsing see arbitrary values too.
    FirstLine,
}

/// The content type for selector byte `b`.
fn content_type(b: u8) -> ContentType {
    match b % 6 {
        // A fixed boundary lets the fuzzer build well-formed forms.
        0 => ContentType::Fixed("multipart/form-data; boundary=XX"),
        1 => ContentType::Fixed("application/json"),
        2 => ContentType::Fixed("image/png"),
        3 => ContentType::Fixed("application/octet-stream"),
        4 => ContentType::Absent,
        _ => ContentType::FirstLine,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let mut builder = Request::builder().method("POST").uri("/api/v1/predict");
    let mut body = rest;
    match content_type(selector) {
        ContentType::FirstLine => {
            let line_end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
            builder = builder.header(CONTENT_TYPE, &rest[..line_end]);
            body = rest.get(line_end + 1..).unwrap_or_default();
        }
        ContentType::Fixed(value) => builder = builder.header(CONTENT_TYPE, value),
        ContentType::Absent => {}
    }
    // A header value the http crate refuses never reaches the handler.
    let Ok(request) = builder.body(Body::from(body.to_vec())) else {
        return;
    };
    let parsed = RUNTIME.block_on(input::parse(request, PredictOptions::default(), MAX_IMAGES));
    if let Ok(parsed) = parsed {
        assert!(!parsed.images.is_empty() && parsed.images.len() <= MAX_IMAGES);
        assert_eq!(parsed.batch, parsed.images.len() > 1);
        for image in &parsed.images {
            if let ImageSource::Bytes(bytes) = image {
                assert!(bytes.len() <= body.len());
            }
        }
    }
});

//! Per-request stage timings on every protocol's answers: handlers attach
//! the pipeline's [`Timings`] to the response, and one middleware renders
//! them, with the total since the request arrived, as `Server-Timing`.
//! gRPC answers carry the same value as `server-timing` metadata.

use std::time::Instant;

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use fovea_pipeline::Timings;

/// The header (and gRPC metadata key) the timings travel in.
pub const SERVER_TIMING: &str = "server-timing";

/// `body` as a response carrying `timings` for [`render`].
pub fn timed(body: impl IntoResponse, timings: Timings) -> Response {
    let mut response = body.into_response();
    response.extensions_mut().insert(timings);
    response
}

/// Middleware: a response that went through the pipeline gets its
/// `Server-Timing` header, ending with the total from the request's arrival.
pub async fn render(request: Request, next: Next) -> Response {
    let arrival = Instant::now();
    let mut response = next.run(request).await;
    if let Some(timings) = response.extensions_mut().remove::<Timings>() {
        let value = timings.server_timing(Some(arrival.elapsed()));
        if let Ok(value) = HeaderValue::from_str(&value) {
            response.headers_mut().insert(SERVER_TIMING, value);
        }
    }
    response
}

/// `message` as a gRPC response carrying `timings` (and the total from `arrival`).
pub fn grpc_timed<T>(message: T, timings: &Timings, arrival: Instant) -> tonic::Response<T> {
    let mut response = tonic::Response::new(message);
    if let Ok(value) = timings.server_timing(Some(arrival.elapsed())).parse() {
        response.metadata_mut().insert(SERVER_TIMING, value);
    }
    response
}

//! Observability of the HTTP layer: the Prometheus recorder (installed once
//! per process), per-request counters and latency histograms by route and
//! status, and the span every request is traced in.

use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::error::ServerError;

/// Request counter, labelled by method, route and status.
pub const REQUESTS_TOTAL: &str = "fovea_http_requests_total";
/// Request latency histogram in seconds, labelled by method, route and status.
pub const REQUEST_DURATION: &str = "fovea_http_request_duration_seconds";

/// Latency buckets in seconds: geometric (×2) from 0.5 ms to about 16 s, so
/// sub-millisecond health checks and multi-second batches both resolve.
pub fn duration_buckets() -> Vec<f64> {
    (0..16).map(|i| 0.0005 * f64::from(1u32 << i)).collect()
}

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
/// Serialises installation: without it two threads could both see no handle,
/// and the loser's `install_recorder` would fail before the winner had
/// published its handle.
static INSTALLING: Mutex<()> = Mutex::new(());

/// Installs the process-wide Prometheus recorder the first time it is called
/// and returns its handle every time (the global recorder can be set once).
pub fn install_metrics() -> Result<PrometheusHandle, ServerError> {
    if let Some(handle) = HANDLE.get() {
        return Ok(handle.clone());
    }
    let _installing = INSTALLING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(handle) = HANDLE.get() {
        return Ok(handle.clone());
    }
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &duration_buckets())
        .map_err(|e| ServerError::Metrics(e.to_string()))?
        .set_buckets_for_metric(
            Matcher::Suffix("_batch_size".into()),
            &(0..8).map(|i| f64::from(1u32 << i)).collect::<Vec<_>>(),
        )
        .map_err(|e| ServerError::Metrics(e.to_string()))?
        .install_recorder()
        .map_err(|e| ServerError::Metrics(e.to_string()))?;
    Ok(HANDLE.get_or_init(|| handle).clone())
}

/// Drains histogram samples into their buckets now and then so memory stays
/// bounded between scrapes (the exporter's own HTTP listener would do this).
pub fn spawn_upkeep(handle: PrometheusHandle) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            handle.run_upkeep();
        }
    })
}

/// Middleware recording one count and one latency sample per request.
pub async fn record(request: Request, next: Next) -> Response {
    let started = Instant::now();
    // The route template, not the path, keeps label cardinality bounded.
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let method = request.method().as_str().to_string();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    let labels = [("method", method), ("route", route), ("status", status)];
    metrics::counter!(REQUESTS_TOTAL, &labels).increment(1);
    metrics::histogram!(REQUEST_DURATION, &labels).record(started.elapsed().as_secs_f64());
    response
}

/// How a failed response is logged. 503 is fovea working as designed (not
/// ready yet during warm-up, which readiness probes ask about every few
/// seconds; or a full queue refused at admission): DEBUG, since metrics count
/// it. 504 (a deadline passed) is a WARNING; any other 5xx, or a failure
/// without a response, is an ERROR.
pub fn log_failure(
    class: tower_http::classify::ServerErrorsFailureClass,
    latency: std::time::Duration,
    _span: &tracing::Span,
) {
    use tower_http::classify::ServerErrorsFailureClass::{Error, StatusCode};
    let ms = latency.as_secs_f64() * 1000.0;
    match class {
        StatusCode(code) if code.as_u16() == 503 => {
            tracing::debug!(status = code.as_u16(), latency_ms = ms, "unavailable")
        }
        StatusCode(code) if code.as_u16() == 504 => {
            tracing::warn!(status = code.as_u16(), latency_ms = ms, "deadline passed")
        }
        StatusCode(code) => {
            tracing::error!(status = code.as_u16(), latency_ms = ms, "server error")
        }
        Error(error) => tracing::error!(latency_ms = ms, "response failed: {error}"),
    }
}

/// The tracing span for one request, carrying its request id.
pub fn make_span(request: &Request) -> tracing::Span {
    let id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    tracing::info_span!(
        "request",
        id = %id,
        method = %request.method(),
        path = %request.uri().path(),
        client = tracing::field::Empty,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duration_buckets_are_geometric_and_increasing() {
        let buckets = duration_buckets();
        assert_eq!(buckets[0], 0.0005);
        assert!(
            buckets
                .windows(2)
                .all(|w| (w[1] / w[0] - 2.0).abs() < 1e-12)
        );
        assert!(*buckets.last().unwrap() > 10.0);
    }
}

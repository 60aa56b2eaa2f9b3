//! Operational endpoints: liveness, readiness, Prometheus metrics, the demo
//! page, and the JSON answers for unknown routes and wrong methods.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use fovea_core::ErrorKind;
use serde_json::json;

use crate::error::{ApiError, json_error};
use crate::state::AppState;

/// `GET /healthz`: the process is alive and serving HTTP.
pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /readyz`: 200 only when every configured model is loaded and warm.
pub async fn readyz(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    match state.engine() {
        Some(engine) if engine.is_ready() => Ok(Json(json!({ "ready": true }))),
        Some(_) => Err(ApiError::new(
            ErrorKind::Unavailable,
            "not_ready",
            "not every configured model is loaded yet",
        )),
        None => Err(ApiError::new(
            ErrorKind::Unavailable,
            "not_ready",
            "models are still loading",
        )),
    }
}

/// `GET /metrics`: Prometheus text exposition.
pub async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let handle = state.metrics().ok_or_else(|| {
        ApiError::new(
            ErrorKind::NotFound,
            "metrics_disabled",
            "no metrics recorder is installed",
        )
    })?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        handle.render(),
    )
        .into_response())
}

/// `GET /`: the demo page (drop an image, see the top-5 as bars).
pub async fn index() -> Html<&'static str> {
    Html(include_str!("../static/index.html"))
}

/// Any unknown route.
pub async fn not_found() -> ApiError {
    ApiError::new(ErrorKind::NotFound, "route_not_found", "no such route")
}

/// A known route called with the wrong method.
pub async fn method_not_allowed() -> Response {
    json_error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not accept that method",
    )
}

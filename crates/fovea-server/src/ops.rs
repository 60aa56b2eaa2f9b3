//! Operational endpoints: liveness, readiness, Prometheus metrics, the demo
//! page, and the JSON answers for unknown routes and wrong methods.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use fovea_core::ErrorKind;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{ApiError, ErrorBody, json_error};
use crate::state::AppState;

/// `GET /healthz`'s answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    pub status: &'static str,
}

/// `GET /readyz`'s answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// Always true (not ready is a 503).
    pub ready: bool,
}

/// `GET /healthz`: the process is alive and serving HTTP.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "ops",
    summary = "Liveness",
    responses((status = 200, description = "The process serves HTTP (also while models load)", body = Health)),
)]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// `GET /readyz`: 200 only when every model has a version loaded, warm and
/// taking traffic (`Engine::is_ready`: a reload does not take it away).
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "ops",
    summary = "Readiness",
    responses(
        (status = 200, description = "Every model has a version loaded, warm and taking traffic", body = Readiness),
        (status = 503, description = "Models are loading, or a model has no version that loaded", body = ErrorBody,
            headers(("Retry-After" = u32, description = "Seconds"))),
    ),
)]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Readiness>, ApiError> {
    match state.engine() {
        Some(engine) if engine.is_ready() => Ok(Json(Readiness { ready: true })),
        Some(_) => Err(ApiError::new(
            ErrorKind::Unavailable,
            "not_ready",
            "a model has no version available (see /api/v1/models)",
        )),
        None => Err(ApiError::new(
            ErrorKind::Unavailable,
            "not_ready",
            "models are still loading",
        )),
    }
}

/// `GET /metrics`: Prometheus text exposition.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "ops",
    summary = "Prometheus metrics",
    responses(
        (status = 200, description = "Prometheus text exposition (docs/METRICS.md)",
            body = String, content_type = "text/plain"),
        (status = 404, description = "No metrics recorder is installed (embedded use)", body = ErrorBody),
    ),
)]
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
#[utoipa::path(
    get,
    path = "/",
    tag = "ops",
    summary = "Demo page",
    responses((status = 200, description = "The demo web page", body = String, content_type = "text/html")),
)]
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

//! The one table from [`ErrorKind`] to HTTP status, the JSON error body every
//! failure is answered with, and the conversion of axum's extractor rejections
//! into that body (so no plain-text rejection ever reaches a client).

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use fovea_core::{ErrorKind, FoveaError};
use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The HTTP status for each kind of failure; the only place this mapping lives.
pub fn status_for(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::InvalidInput => StatusCode::BAD_REQUEST,
        ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Refused => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorKind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A failed request: what the client is told, and how it is logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// Whose fault; decides the status.
    pub kind: ErrorKind,
    /// Stable snake_case code for clients to branch on.
    pub code: &'static str,
    /// Human-readable explanation.
    pub message: String,
    /// Seconds a client should wait before retrying, for the kinds that
    /// invite a retry (Unavailable: 1 unless set; RateLimited: until the
    /// client's bucket has a token again).
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error of the given kind and code.
    pub fn new(kind: ErrorKind, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            kind,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// The same error, telling the client to retry after `seconds`.
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// A malformed request (400).
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, code, message)
    }

    /// Converts any layer's error through its [`FoveaError`] classification.
    pub fn from_fovea<E: FoveaError + ?Sized>(error: &E) -> Self {
        Self::new(error.kind(), error.code(), error.to_string())
    }

    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        status_for(self.kind)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

impl From<fovea_pipeline::PipelineError> for ApiError {
    fn from(error: fovea_pipeline::PipelineError) -> Self {
        Self::from_fovea(&error)
    }
}

impl FoveaError for ApiError {
    fn kind(&self) -> ErrorKind {
        self.kind
    }
    fn code(&self) -> &'static str {
        self.code
    }
}

/// The simple API's (and the operational endpoints') error body.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"error": {"code": "model_not_found", "message": "model `x` not found"}}))]
pub struct ErrorBody<'a> {
    /// What went wrong.
    #[serde(borrow)]
    pub error: ErrorDetail<'a>,
}

/// The `error` of an [`ErrorBody`]. Borrowed when answering; owned when a
/// client (`fovea predict`) reads an escaped message back.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail<'a> {
    /// Stable snake_case code for clients to branch on (README, "Error codes").
    #[serde(borrow)]
    #[schema(value_type = String)]
    pub code: Cow<'a, str>,
    /// Human-readable explanation.
    #[serde(borrow)]
    #[schema(value_type = String)]
    pub message: Cow<'a, str>,
}

/// The TF Serving and KServe REST error body: the message alone, as both
/// protocols' own servers answer it.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"error": "model `x` not found"}))]
pub struct ProtocolErrorBody<'a> {
    /// Human-readable explanation.
    pub error: &'a str,
}

impl ApiError {
    fn log(&self) {
        // Client mistakes are routine traffic; only fovea's own faults (and
        // overload/timeouts an operator must see) are logged loudly.
        match self.kind {
            ErrorKind::Internal => tracing::error!(code = self.code, "{}", self.message),
            kind if kind.is_client_error() => {
                tracing::debug!(code = self.code, "{}", self.message)
            }
            _ => tracing::warn!(code = self.code, "{}", self.message),
        }
    }

    fn finish(&self, mut response: Response) -> Response {
        let retry_after = match self.kind {
            ErrorKind::Unavailable => Some(self.retry_after.unwrap_or(1)),
            ErrorKind::RateLimited => Some(self.retry_after.unwrap_or(1).max(1)),
            _ => None,
        };
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.kind == ErrorKind::Unauthenticated {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"fovea\""),
            );
        }
        response
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.log();
        let response = json_error(self.status(), self.code, &self.message);
        self.finish(response)
    }
}

impl From<fovea_proto::ProtoError> for ApiError {
    fn from(error: fovea_proto::ProtoError) -> Self {
        Self::from_fovea(&error)
    }
}

/// An error answered in the TF Serving / KServe REST form `{"error": "message"}`
/// (both protocols use it), with the status from [`status_for`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError(pub ApiError);

impl<E: Into<ApiError>> From<E> for ProtocolError {
    fn from(error: E) -> Self {
        Self(error.into())
    }
}

impl IntoResponse for ProtocolError {
    fn into_response(self) -> Response {
        let error = self.0;
        error.log();
        let body = ProtocolErrorBody {
            error: &error.message,
        };
        let response = (error.status(), Json(body)).into_response();
        error.finish(response)
    }
}

/// Whether `path` belongs to TF Serving's or KServe's REST API, whose
/// errors have their protocols' `{"error": "message"}` body.
pub fn is_protocol_path(path: &str) -> bool {
    path.starts_with("/v1/") || path == "/v1" || path == "/v2" || path.starts_with("/v2/")
}

/// `error` in the body shape of the API `path` belongs to, for answers made
/// before any handler runs (a layer knows the path, not the protocol).
pub fn for_path(path: &str, error: ApiError) -> Response {
    if is_protocol_path(path) {
        ProtocolError(error).into_response()
    } else {
        error.into_response()
    }
}

/// The gRPC status for each kind of failure (TF Serving's and Triton's
/// choices: NOT_FOUND, INVALID_ARGUMENT, UNAVAILABLE when overloaded).
pub fn grpc_code_for(kind: ErrorKind) -> tonic::Code {
    match kind {
        ErrorKind::InvalidInput | ErrorKind::UnsupportedMediaType | ErrorKind::Refused => {
            tonic::Code::InvalidArgument
        }
        ErrorKind::TooLarge | ErrorKind::RateLimited => tonic::Code::ResourceExhausted,
        ErrorKind::Unauthenticated => tonic::Code::Unauthenticated,
        ErrorKind::NotFound => tonic::Code::NotFound,
        ErrorKind::Unavailable => tonic::Code::Unavailable,
        ErrorKind::Timeout => tonic::Code::DeadlineExceeded,
        ErrorKind::Internal => tonic::Code::Internal,
    }
}

impl From<ApiError> for tonic::Status {
    fn from(error: ApiError) -> Self {
        error.log();
        tonic::Status::new(grpc_code_for(error.kind), error.message)
    }
}

/// The `{"error": {"code", "message"}}` body with an explicit status, for the
/// few answers no [`ErrorKind`] describes (405).
pub fn json_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = ErrorBody {
        error: ErrorDetail {
            code: code.into(),
            message: message.into(),
        },
    };
    (status, Json(body)).into_response()
}

/// Converts an axum extractor rejection (bad JSON, body too large, multipart
/// framing, bad query string, ...) into the JSON error shape, keeping the
/// status class axum chose but never letting a client mistake become a 5xx.
pub fn from_rejection(status: StatusCode, message: String) -> ApiError {
    // The body deadline (lib.rs, limit_body_time) surfaces as a body that
    // failed to arrive; its error is known only by its text.
    if message.contains(BODY_DEADLINE_MESSAGE) {
        return ApiError::new(
            ErrorKind::InvalidInput,
            "body_timeout",
            "the request body did not arrive in time (--body-read-timeout-secs)",
        );
    }
    match status {
        StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(ErrorKind::TooLarge, "body_too_large", message)
        }
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::new(
            ErrorKind::UnsupportedMediaType,
            "unsupported_content_type",
            message,
        ),
        // A body that fails to arrive is the client's problem too (it hung up
        // or sent broken framing); axum reports some of these as 500.
        _ => ApiError::invalid("invalid_request", message),
    }
}

/// What tower-http's body deadline says when it fires.
const BODY_DEADLINE_MESSAGE: &str = "data was not received within the designated timeout";

macro_rules! rejection_into_api_error {
    ($($rejection:ty),* $(,)?) => {$(
        impl From<$rejection> for ApiError {
            fn from(rejection: $rejection) -> Self {
                from_rejection(rejection.status(), rejection.body_text())
            }
        }
    )*};
}

rejection_into_api_error!(
    axum::extract::rejection::BytesRejection,
    axum::extract::rejection::JsonRejection,
    axum::extract::rejection::QueryRejection,
    axum::extract::rejection::PathRejection,
    axum::extract::multipart::MultipartRejection,
    axum::extract::multipart::MultipartError,
);

/// Failures of the server itself (binding, TLS setup), as opposed to requests.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    /// Accepting or serving connections failed.
    #[error("HTTP server failed: {0}")]
    Serve(std::io::Error),
    /// The URL-fetch HTTP client could not be built.
    #[error("cannot build the URL-fetch client: {0}")]
    HttpClient(String),
    /// The Prometheus recorder could not be installed.
    #[error("cannot install the metrics recorder: {0}")]
    Metrics(String),
    /// The gRPC server failed.
    #[error("gRPC server failed: {0}")]
    Grpc(String),
    /// The API keys file or the TLS files could not be used.
    #[error(transparent)]
    Access(#[from] crate::access::AccessError),
}

impl FoveaError for ServerError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Internal
    }
    fn code(&self) -> &'static str {
        match self {
            ServerError::Bind { .. } => "bind_failed",
            ServerError::Serve(_) => "serve_failed",
            ServerError::HttpClient(_) => "http_client_failed",
            ServerError::Metrics(_) => "metrics_failed",
            ServerError::Grpc(_) => "grpc_failed",
            ServerError::Access(crate::access::AccessError::Keys(_)) => "api_keys_invalid",
            ServerError::Access(crate::access::AccessError::Tls(_)) => "tls_invalid",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn protocol_errors_are_a_bare_message_string() {
        let error = ApiError::new(ErrorKind::NotFound, "model_not_found", "no model x");
        let response = ProtocolError(error).into_response();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        let body = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .unwrap();
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value, serde_json::json!({ "error": "no model x" }));
    }

    #[test]
    fn unavailable_answers_carry_retry_after() {
        let response = ApiError::new(ErrorKind::Unavailable, "queue_full", "busy").into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
    }

    #[test]
    fn a_rejection_axum_calls_a_server_error_is_still_a_client_error() {
        let error = from_rejection(StatusCode::INTERNAL_SERVER_ERROR, "body broke".into());
        assert_eq!(error.status(), StatusCode::BAD_REQUEST);
    }
}

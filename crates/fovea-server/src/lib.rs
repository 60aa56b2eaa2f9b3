//! fovea's HTTP front end: the routes, the layers every request passes
//! through (request id, tracing, metrics, panic catching, body limit), and
//! serving with graceful shutdown. Handlers translate protocol ↔ engine only.

pub mod access;
pub mod error;
pub mod error_codes;
pub mod fetch;
pub mod grpc;
pub mod input;
pub mod kserve;
mod listener;
pub mod models;
pub mod openapi;
mod ops;
pub mod predict;
mod state;
pub mod stream;
pub mod telemetry;
pub mod tensor_input;
pub mod tfserving;
pub mod timing;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, StatusCode};
use axum::response::Response;
use axum::routing::{MethodRouter, get, post};
use fovea_core::defaults;
use fovea_engine::Engine;
use futures_util::StreamExt;
use tokio::net::TcpListener;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

pub use access::{AccessConfig, Client};
pub use error::{ApiError, ProtocolError, ServerError, grpc_code_for, status_for};
pub use fetch::{FetchError, UrlFetchConfig, UrlFetcher, tls_client_config};
pub use grpc::{serve_grpc, serve_grpc_on};
pub use state::AppState;
pub use stream::StreamLimits;

pub use fovea_pipeline::RequestLimits;

/// Everything `serve` needs besides the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Where the HTTP server listens.
    pub http_addr: SocketAddr,
    /// Request limits.
    pub limits: RequestLimits,
    /// URL fetching policy.
    pub url_fetch: UrlFetchConfig,
    /// How long in-flight requests may take to finish once shutdown begins.
    pub shutdown_timeout: Duration,
    /// Images decoded and preprocessed at once (the decode share of the
    /// process's thread budget, see [`decode_threads_for`]).
    pub decode_threads: usize,
    /// Limits on streams of frames (WebSocket and gRPC).
    pub streams: StreamLimits,
    /// API keys, rate limits and caps on requests and connections.
    pub access: AccessConfig,
}

/// The decode share of a budget of `threads` cores when inference runs on all
/// of them. Decoding a photo costs a few core-milliseconds against tens for
/// ResNet-18 inference, so one decoder per two cores keeps the batcher fed
/// while leaving inference almost every core; more decoders only preempt the
/// inference threads (measured in BENCHMARKS.md, "thread budget").
pub fn decode_threads_for(threads: usize) -> usize {
    (threads / 2).max(1)
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            http_addr: SocketAddr::from((defaults::LISTEN_IP, defaults::HTTP_PORT)),
            limits: RequestLimits::default(),
            url_fetch: UrlFetchConfig::default(),
            shutdown_timeout: Duration::from_secs(defaults::SHUTDOWN_TIMEOUT_SECS),
            decode_threads: decode_threads_for(fovea_core::available_cores()),
            streams: StreamLimits::default(),
            access: AccessConfig::default(),
        }
    }
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// TF Serving's REST paths: one route, because its `:predict`-style verbs
/// cannot be told apart by axum's path syntax (tfserving.rs parses them).
pub(crate) const WILDCARD_TF_ROUTE: &str = "/v1/models/{*rest}";

/// Every route the application serves, in one place: [`router`] is built
/// from it, and the OpenAPI tests check the document against it.
fn routes() -> Vec<(&'static str, MethodRouter<AppState>)> {
    vec![
        ("/", get(ops::index)),
        ("/healthz", get(ops::healthz)),
        ("/readyz", get(ops::readyz)),
        ("/metrics", get(ops::metrics)),
        ("/openapi.json", get(openapi::openapi_json)),
        ("/api/v1/models", get(models::list)),
        ("/api/v1/models/reload", post(models::reload)),
        ("/api/v1/predict", post(predict::predict)),
        ("/api/v1/stream", get(stream::websocket)),
        ("/v1/models", get(tfserving::list)),
        (WILDCARD_TF_ROUTE, get(tfserving::get).post(tfserving::post)),
        ("/v2", get(kserve::server_metadata)),
        ("/v2/health/live", get(kserve::live)),
        ("/v2/health/ready", get(kserve::ready)),
        ("/v2/models", get(kserve::list_models)),
        ("/v2/repository/index", post(kserve::repository_index)),
        ("/v2/models/{name}", get(kserve::model_metadata)),
        (
            "/v2/models/{name}/versions/{version}",
            get(kserve::model_metadata),
        ),
        ("/v2/models/{name}/ready", get(kserve::model_ready)),
        (
            "/v2/models/{name}/versions/{version}/ready",
            get(kserve::model_ready),
        ),
        ("/v2/models/{name}/infer", post(kserve::model_infer)),
        (
            "/v2/models/{name}/versions/{version}/infer",
            post(kserve::model_infer),
        ),
    ]
}

/// The paths of [`routes`].
#[cfg(test)]
pub(crate) fn route_paths() -> Vec<&'static str> {
    routes().into_iter().map(|(path, _)| path).collect()
}

/// The complete HTTP application for `state` (used by `serve` and by tests).
pub fn router(state: AppState) -> Router {
    // Multipart and JSON bodies carry base64/boundaries around the image, so
    // the body limit leaves a little room over the image limit.
    let body_limit = state.limits().max_body_bytes.saturating_add(64 * 1024);
    routes()
        .into_iter()
        .fold(Router::new(), |app, (path, methods)| {
            app.route(path, methods)
        })
        .fallback(ops::not_found)
        .method_not_allowed_fallback(ops::method_not_allowed)
        .with_state(state.clone())
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(telemetry::make_span)
                        .on_failure(telemetry::log_failure),
                )
                .layer(PropagateRequestIdLayer::new(REQUEST_ID))
                .layer(axum::middleware::from_fn(telemetry::record))
                .layer(axum::middleware::from_fn(timing::render))
                .layer(CatchPanicLayer::custom(panic_response))
                // Keys and rates before the body is read: an unknown client
                // cannot make fovea drain a large body.
                .layer(axum::middleware::from_fn_with_state(
                    state.clone(),
                    access::guard,
                ))
                .layer(axum::middleware::from_fn_with_state(
                    body_limit,
                    refuse_oversized_body,
                ))
                .layer(axum::middleware::from_fn_with_state(
                    state.access().body_read_timeout(),
                    limit_body_time,
                ))
                .layer(DefaultBodyLimit::max(body_limit)),
        )
}

/// Bodies up to this size are read and discarded before a 413 is sent.
const DRAIN_CAP: u64 = 64 * 1024 * 1024;

/// Answers 413 to a declared Content-Length over `limit` before any handler
/// runs. The body is first read and discarded (up to [`DRAIN_CAP`], for at
/// most 5 s): a client still writing when the server closes the connection
/// gets a broken pipe instead of the answer.
async fn refuse_oversized_body(
    axum::extract::State(limit): axum::extract::State<usize>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let declared = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(length) if length > limit as u64 => {
            let path = request.uri().path().to_string();
            if length <= DRAIN_CAP {
                let mut body = request.into_body().into_data_stream();
                let drain = async { while let Some(Ok(_)) = body.next().await {} };
                let _ = tokio::time::timeout(Duration::from_secs(5), drain).await;
            }
            let error = ApiError::new(
                fovea_core::ErrorKind::TooLarge,
                "body_too_large",
                format!("request body of {length} bytes exceeds the limit of {limit} bytes"),
            );
            error::for_path(&path, error)
        }
        _ => next.run(request).await,
    }
}

/// Gives a request's whole body `timeout` to arrive: a client trickling it
/// byte by byte (slow-loris) is cut off, its handler answering
/// `body_timeout`, instead of holding a connection and a request slot for ever.
async fn limit_body_time(
    axum::extract::State(timeout): axum::extract::State<Duration>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let request = request
        .map(|body| axum::body::Body::new(tower_http::timeout::DeadlineBody::new(timeout, body)));
    next.run(request).await
}

fn panic_response(_panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    error::json_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal_error",
        "internal error",
    )
}

/// Binds the HTTP listener.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { addr, source })
}

/// Binds `config.http_addr` and serves `engine` until `shutdown` resolves.
pub async fn serve(
    engine: Engine,
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let state = AppState::with_engine(engine, &config)?;
    let listener = bind(config.http_addr).await?;
    serve_on(listener, state, config.shutdown_timeout, shutdown).await
}

/// Serves `state` on an already bound listener until `shutdown` resolves;
/// then stops accepting, lets in-flight requests finish (for at most
/// `shutdown_timeout`), and drains the engine unless another front end
/// (gRPC) still serves the same state, in which case the last to stop does.
pub async fn serve_on(
    listener: TcpListener,
    state: AppState,
    shutdown_timeout: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let addr = listener.local_addr().map_err(ServerError::Serve)?;
    let scheme = if state.access().tls().is_some() {
        "https"
    } else {
        "http"
    };
    tracing::info!("listening on {scheme}://{addr}");
    state.front_end_started();
    let app = router(state.clone());
    let upkeep = state.access().spawn_upkeep();
    let stopping = state.clone();
    let (signal, deadline) = shutdown_with_deadline(
        async move {
            shutdown.await;
            tracing::info!("shutting down: no new connections; finishing in-flight requests");
            // Streams never finish on their own: tell them to close.
            stopping.begin_shutdown();
        },
        shutdown_timeout,
    );
    let listener = listener::Limited::new(listener, state.access().max_connections());
    let timeouts = state.access().connection_timeouts();
    tokio::select! {
        () = listener::serve_http(listener, app, state.access().tls().cloned(), timeouts, signal) => {}
        () = deadline => tracing::warn!(
            "in-flight requests still running after {shutdown_timeout:?}; stopping anyway"
        ),
    }
    upkeep.abort();
    tracing::info!("HTTP server stopped");
    state.front_end_stopped().await;
    Ok(())
}

/// Splits `shutdown` into the signal a server stops accepting on and a
/// deadline that resolves `timeout` after that signal fired (never, if it
/// did not), so a server's drain can be bounded.
pub(crate) fn shutdown_with_deadline(
    shutdown: impl Future<Output = ()> + Send + 'static,
    timeout: Duration,
) -> (
    impl Future<Output = ()> + Send + 'static,
    impl Future<Output = ()> + Send + 'static,
) {
    let (began_tx, began_rx) = tokio::sync::oneshot::channel::<()>();
    let signal = async move {
        shutdown.await;
        let _ = began_tx.send(());
    };
    let deadline = async move {
        // Only a started shutdown arms the timer; a dropped sender means
        // the server ended on its own and the select has resolved already.
        if began_rx.await.is_ok() {
            tokio::time::sleep(timeout).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    (signal, deadline)
}

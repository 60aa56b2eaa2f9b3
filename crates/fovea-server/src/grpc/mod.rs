//! The gRPC server: TF Serving's PredictionService and ModelService and
//! KServe's GRPCInferenceService on one port, with the request limits of the
//! HTTP side and the same graceful shutdown.

mod kserve;
mod tfserving;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use fovea_proto::inference::grpc_inference_service_server::GrpcInferenceServiceServer;
use fovea_proto::tensorflow::serving::model_service_server::ModelServiceServer;
use fovea_proto::tensorflow::serving::prediction_service_server::PredictionServiceServer;
use tokio::net::TcpListener;

pub use kserve::KServe;
pub use tfserving::{TfModelService, TfPredictionService};

use crate::error::ServerError;
use crate::state::AppState;

/// Binds `addr` and serves gRPC for `state` until `shutdown` resolves.
pub async fn serve_grpc(
    addr: SocketAddr,
    state: AppState,
    shutdown_timeout: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let listener = crate::bind(addr).await?;
    serve_grpc_on(listener, state, shutdown_timeout, shutdown).await
}

/// Serves gRPC on a bound listener until `shutdown` resolves; in-flight calls
/// then get at most `shutdown_timeout` to finish. The last front end of
/// `state` to stop (this or the HTTP server) drains the engine.
pub async fn serve_grpc_on(
    listener: TcpListener,
    state: AppState,
    shutdown_timeout: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let addr = listener.local_addr().map_err(ServerError::Serve)?;
    let tls = if state.access().tls().is_some() {
        " (TLS)"
    } else {
        ""
    };
    tracing::info!("gRPC listening on {addr}{tls}");
    state.front_end_started();
    // Raw tensors need their bytes plus a little framing, like HTTP bodies.
    let limit = state.limits().max_body_bytes.saturating_add(64 * 1024);
    let predictions = PredictionServiceServer::new(TfPredictionService::new(state.clone()))
        .max_decoding_message_size(limit)
        .max_encoding_message_size(usize::MAX);
    let models = ModelServiceServer::new(TfModelService::new(state.clone()))
        .max_decoding_message_size(limit);
    let stopping = state.clone();
    let stopping_state = state.clone();
    let state_access = state.access().clone();
    let shutdown = async move {
        shutdown.await;
        // Streams never finish on their own: tell them to end.
        stopping.begin_shutdown();
    };
    let kserve = GrpcInferenceServiceServer::new(KServe::new(state))
        .max_decoding_message_size(limit)
        .max_encoding_message_size(usize::MAX);
    let access = state_access.clone();
    let incoming = crate::listener::incoming(
        listener,
        state_access.max_connections(),
        state_access.tls().cloned(),
        state_access.connection_timeouts().header_read,
    );
    let (signal, deadline) = crate::shutdown_with_deadline(shutdown, shutdown_timeout);
    let server = tonic::transport::Server::builder()
        .max_concurrent_streams(Some(state_access.grpc_max_concurrent_streams()))
        // A client that stops answering HTTP/2 pings is gone: its connection
        // (and permit) is released rather than held for ever.
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        .layer(crate::access::GrpcGuardLayer::new(access))
        .add_service(predictions)
        .add_service(models)
        .add_service(kserve)
        .serve_with_incoming_shutdown(incoming, signal);
    let result = tokio::select! {
        result = server => result.map_err(|e| ServerError::Grpc(e.to_string())),
        () = deadline => {
            tracing::warn!("gRPC calls still running after {shutdown_timeout:?}; stopping anyway");
            Ok(())
        }
    };
    tracing::info!("gRPC server stopped");
    stopping_state.front_end_stopped().await;
    result
}

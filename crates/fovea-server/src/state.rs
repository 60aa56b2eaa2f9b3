//! What every handler shares: the inference pipeline (whose engine is set
//! once it has loaded, so the server can answer health checks while models
//! load), the URL fetcher, the stream slots and the metrics handle.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use fovea_engine::Engine;
use fovea_pipeline::Pipeline;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::access::Access;
use crate::error::{ApiError, ServerError};
use crate::fetch::UrlFetcher;
use crate::stream::{StreamLimits, StreamSlots};
use crate::{RequestLimits, ServerConfig};

/// Shared handler state; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Shared>,
}

struct Shared {
    pipeline: Pipeline,
    access: Arc<Access>,
    fetcher: UrlFetcher,
    metrics: Option<PrometheusHandle>,
    stream_limits: StreamLimits,
    stream_slots: StreamSlots,
    /// Becomes true when the server begins shutting down, so that streams,
    /// which never end on their own, close.
    stopping: tokio::sync::watch::Sender<bool>,
    /// Front ends (the HTTP and gRPC servers) serving this state and not
    /// stopped yet. The last one to stop drains the engine: the HTTP server
    /// finishing its drain first must not take the models from under gRPC
    /// calls still in flight.
    front_ends: AtomicUsize,
}

impl AppState {
    /// State without an engine yet: `/healthz` answers, everything needing
    /// models answers 503 until [`AppState::set_engine`].
    pub fn new(config: &ServerConfig) -> Result<Self, ServerError> {
        Ok(Self {
            inner: Arc::new(Shared {
                pipeline: Pipeline::new(config.limits.clone(), config.decode_threads),
                access: Arc::new(Access::new(config.access.clone())?),
                fetcher: UrlFetcher::new(config.url_fetch.clone())?,
                metrics: None,
                stream_limits: config.streams.clone(),
                stream_slots: StreamSlots::new(config.streams.max_streams),
                stopping: tokio::sync::watch::Sender::new(false),
                front_ends: AtomicUsize::new(0),
            }),
        })
    }

    /// State serving an engine that has already started.
    pub fn with_engine(engine: Engine, config: &ServerConfig) -> Result<Self, ServerError> {
        let state = Self::new(config)?;
        state.set_engine(engine);
        Ok(state)
    }

    /// Adds the Prometheus handle `/metrics` renders. Call before cloning.
    pub fn with_metrics(mut self, handle: PrometheusHandle) -> Self {
        if let Some(shared) = Arc::get_mut(&mut self.inner) {
            shared.metrics = Some(handle);
        }
        self
    }

    /// Hands the loaded engine to the server; false if one was set already.
    pub fn set_engine(&self, engine: Engine) -> bool {
        self.inner.pipeline.set_engine(engine)
    }

    /// The engine, once set.
    pub fn engine(&self) -> Option<&Engine> {
        self.inner.pipeline.engine()
    }

    /// The engine, or the 503 a request gets while models are loading.
    pub(crate) fn ready_engine(&self) -> Result<&Engine, ApiError> {
        Ok(self.inner.pipeline.ready_engine()?)
    }

    /// The inference path every protocol hands its requests to.
    pub fn pipeline(&self) -> &Pipeline {
        &self.inner.pipeline
    }

    /// Who may call, and how often.
    pub fn access(&self) -> &Arc<Access> {
        &self.inner.access
    }

    /// The request limits in force.
    pub fn limits(&self) -> &RequestLimits {
        self.inner.pipeline.limits()
    }

    pub(crate) fn fetcher(&self) -> &UrlFetcher {
        &self.inner.fetcher
    }

    pub(crate) fn metrics(&self) -> Option<&PrometheusHandle> {
        self.inner.metrics.as_ref()
    }

    /// The limits on streams.
    pub fn stream_limits(&self) -> &StreamLimits {
        &self.inner.stream_limits
    }

    /// The open streams' slots.
    pub fn stream_slots(&self) -> &StreamSlots {
        &self.inner.stream_slots
    }

    /// Tells every open stream to close (the server is shutting down).
    pub fn begin_shutdown(&self) {
        self.inner.stopping.send_replace(true);
    }

    /// A front end starts serving this state.
    pub(crate) fn front_end_started(&self) {
        self.inner.front_ends.fetch_add(1, Ordering::AcqRel);
    }

    /// A front end has stopped, its in-flight requests answered (or cut off
    /// at the shutdown timeout); the last one drains the engine.
    pub(crate) async fn front_end_stopped(&self) {
        let before = self.inner.front_ends.fetch_sub(1, Ordering::AcqRel);
        if before == 1
            && let Some(engine) = self.engine()
        {
            engine.shutdown().await;
        }
    }

    /// Watches for [`AppState::begin_shutdown`].
    pub(crate) fn shutdown_signal(&self) -> tokio::sync::watch::Receiver<bool> {
        self.inner.stopping.subscribe()
    }
}

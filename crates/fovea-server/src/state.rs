//! What every handler shares: the engine (set once it has loaded, so the
//! server can answer health checks while models load), the request limits,
//! the URL fetcher and the metrics handle.

use std::sync::{Arc, OnceLock};

use fovea_engine::Engine;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::Semaphore;

use crate::error::{ApiError, ServerError};
use crate::fetch::UrlFetcher;
use crate::stream::{StreamLimits, StreamSlots};
use crate::{RequestLimits, ServerConfig};
use fovea_core::ErrorKind;

/// Shared handler state; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Shared>,
}

struct Shared {
    engine: OnceLock<Engine>,
    limits: RequestLimits,
    fetcher: UrlFetcher,
    metrics: Option<PrometheusHandle>,
    /// Bounds concurrent image decodes to the decode share of the thread
    /// budget, so decoding never oversubscribes the cores inference uses and
    /// admitted requests wait cheaply, still encoded.
    decode_permits: Semaphore,
    stream_limits: StreamLimits,
    stream_slots: StreamSlots,
    /// Becomes true when the server begins shutting down, so that streams,
    /// which never end on their own, close.
    stopping: tokio::sync::watch::Sender<bool>,
}

impl AppState {
    /// State without an engine yet: `/healthz` answers, everything needing
    /// models answers 503 until [`AppState::set_engine`].
    pub fn new(config: &ServerConfig) -> Result<Self, ServerError> {
        Ok(Self {
            inner: Arc::new(Shared {
                engine: OnceLock::new(),
                limits: config.limits.clone(),
                fetcher: UrlFetcher::new(config.url_fetch.clone())?,
                metrics: None,
                decode_permits: Semaphore::new(config.decode_threads.max(1)),
                stream_limits: config.streams.clone(),
                stream_slots: StreamSlots::new(config.streams.max_streams),
                stopping: tokio::sync::watch::Sender::new(false),
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
        self.inner.engine.set(engine).is_ok()
    }

    /// The engine, once set.
    pub fn engine(&self) -> Option<&Engine> {
        self.inner.engine.get()
    }

    /// The engine, or the 503 a request gets while models are loading.
    pub(crate) fn ready_engine(&self) -> Result<&Engine, ApiError> {
        self.engine().ok_or_else(|| {
            ApiError::new(
                ErrorKind::Unavailable,
                "not_ready",
                "models are still loading",
            )
        })
    }

    /// The request limits in force.
    pub fn limits(&self) -> &RequestLimits {
        &self.inner.limits
    }

    pub(crate) fn fetcher(&self) -> &UrlFetcher {
        &self.inner.fetcher
    }

    pub(crate) fn metrics(&self) -> Option<&PrometheusHandle> {
        self.inner.metrics.as_ref()
    }

    pub(crate) fn decode_permits(&self) -> &Semaphore {
        &self.inner.decode_permits
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

    /// Watches for [`AppState::begin_shutdown`].
    pub(crate) fn shutdown_signal(&self) -> tokio::sync::watch::Receiver<bool> {
        self.inner.stopping.subscribe()
    }
}

//! Streams of frames: `GET /api/v1/stream` (a WebSocket of encoded images)
//! and, through [`FrameQueue`], Triton's `ModelStreamInfer` over gRPC.
//!
//! A stream is a sequence of single-image requests on the one engine path:
//! every frame is admitted to the model's queue, decoded under the decode
//! permits and batched with everything else, with the model's deadline. What
//! a stream adds is freshness: under the `latest` policy at most one frame is
//! in flight and one waits, and a newer frame replaces the waiting one (the
//! replaced one is counted as dropped), so a camera sending faster than the
//! model answers gets answers about recent frames instead of a growing
//! backlog. Under `all`, every frame is answered; a bounded window of frames
//! is in flight and the socket is not read while the window is full, so a
//! fast sender is held back by TCP instead of buffered.
//!
//! Each stream holds one of `max_streams` slots for its lifetime, and each of
//! its frames holds a queue slot like any request, so streams and single
//! requests share the model's queue: a `latest` stream never occupies more
//! than one slot per model, however fast it sends.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::rejection::QueryRejection;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{Query, State};
use axum::response::Response;
use bytes::Bytes;
use fovea_core::defaults;
use fovea_engine::{ModelHandle, Prediction};
use fovea_pipeline::{ImageInput, Item, Pipeline};
use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;
use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::ApiError;
use crate::state::AppState;

/// Limits on streams; each is a `fovea serve` flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamLimits {
    /// Streams open at once, WebSocket and gRPC together.
    pub max_streams: usize,
    /// Largest frame (one encoded image, or one gRPC request) in bytes.
    pub max_frame_bytes: usize,
    /// A stream that receives nothing for this long is closed.
    pub idle_timeout: Duration,
    /// A stream is closed after this long, however busy.
    pub max_duration: Duration,
    /// Frames of one `all` stream in flight or waiting at once.
    pub window: usize,
}

impl Default for StreamLimits {
    fn default() -> Self {
        Self {
            max_streams: defaults::MAX_STREAMS,
            max_frame_bytes: defaults::MAX_FRAME_BYTES,
            idle_timeout: Duration::from_secs(defaults::STREAM_IDLE_TIMEOUT_SECS),
            max_duration: Duration::from_secs(defaults::MAX_STREAM_DURATION_SECS),
            window: defaults::STREAM_WINDOW,
        }
    }
}

/// Which frames get answered when they arrive faster than they are processed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// The freshest frame: one in flight, one waiting, older waiting ones dropped.
    #[default]
    Latest,
    /// Every frame, in order, with backpressure on the sender.
    All,
}

/// The stream's slots, shared by the WebSocket and gRPC streams.
#[derive(Debug, Clone)]
pub struct StreamSlots {
    slots: Arc<Semaphore>,
}

impl StreamSlots {
    /// `max` streams at once.
    pub fn new(max: usize) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(max)),
        }
    }

    /// A slot for a new stream, or `None` when `max` are open.
    pub fn try_open(&self) -> Option<StreamSlot> {
        let permit = self.slots.clone().try_acquire_owned().ok()?;
        metrics::gauge!(STREAMS_OPEN).increment(1.0);
        Some(StreamSlot { _permit: permit })
    }

    /// Slots free right now (tests check that dropped streams give theirs back).
    pub fn available(&self) -> usize {
        self.slots.available_permits()
    }
}

/// An open stream's claim on [`StreamSlots`]; released on drop.
#[derive(Debug)]
pub struct StreamSlot {
    _permit: OwnedSemaphorePermit,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        metrics::gauge!(STREAMS_OPEN).decrement(1.0);
    }
}

const STREAMS_OPEN: &str = "fovea_streams_open";
const STREAM_FRAMES: &str = "fovea_stream_frames_total";
const STREAMS_REFUSED: &str = "fovea_streams_refused_total";

/// Resolves once the server begins shutting down ([`AppState::begin_shutdown`]).
pub(crate) async fn stopping(signal: &mut tokio::sync::watch::Receiver<bool>) {
    // The guard `wait_for` returns is not Send: drop it before any other await.
    let _ = signal.wait_for(|stopping| *stopping).await;
}

/// Counts a frame by what became of it: answered, failed or dropped.
pub(crate) fn count_frame(protocol: &'static str, outcome: &'static str) {
    metrics::counter!(STREAM_FRAMES, "protocol" => protocol, "outcome" => outcome).increment(1);
}

/// Counts a stream refused at its start or closed by a limit.
pub(crate) fn count_refusal(protocol: &'static str, reason: &'static str) {
    metrics::counter!(STREAMS_REFUSED, "protocol" => protocol, "reason" => reason).increment(1);
}

/// Stream options: query parameters of the upgrade request, or a JSON text
/// message sent before the first frame.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamOptions {
    /// Model name; the default model when absent.
    pub model: Option<String>,
    /// Model version; the model's default when absent.
    pub version: Option<u64>,
    /// Classes per answer.
    pub top_k: Option<usize>,
    /// Freshness policy.
    pub policy: Option<Policy>,
}

/// What a stream's frames go to, resolved from [`StreamOptions`].
#[derive(Debug, Clone)]
struct Target {
    model: String,
    version: Option<u64>,
    top_k: usize,
    policy: Policy,
}

impl Target {
    /// Checks the options against the loaded models: an unknown model or a
    /// bad `top_k` is refused before any frame is sent.
    fn resolve(state: &AppState, options: &StreamOptions) -> Result<Self, ApiError> {
        let pipeline = state.pipeline();
        let model = pipeline.image_model(options.model.as_deref(), options.version)?;
        let top_k = pipeline.top_k(&model, options.top_k)?;
        Ok(Self {
            model: model.name().to_string(),
            version: options.version,
            top_k,
            policy: options.policy.unwrap_or_default(),
        })
    }

    /// The model handle for a frame now: a version loaded since the stream
    /// started serves its next frames.
    fn model(&self, state: &AppState) -> Result<ModelHandle, ApiError> {
        Ok(state.pipeline().model(&self.model, self.version)?)
    }
}

/// One received frame.
struct Frame {
    sequence: u64,
    bytes: Bytes,
    arrival: Instant,
}

/// A frame's answer, as the WebSocket sends it.
#[derive(Debug, Serialize)]
pub struct FrameAnswer {
    /// The frame's sequence number: its position among the binary messages
    /// received on this stream, from 0.
    pub frame: u64,
    /// The top-1 label.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    /// The top-1 score.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<f32>,
    /// The top-k classes, best first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub predictions: Option<Vec<Prediction>>,
    /// Model that answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Its version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// Why this frame has no answer; the stream goes on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<FrameError>,
    /// From the frame's arrival to its answer.
    pub latency_ms: f64,
    /// Frames dropped on this stream so far (`latest` policy).
    pub dropped: u64,
}

/// The error of one frame, in the simple API's error shape.
#[derive(Debug, Serialize)]
pub struct FrameError {
    /// Stable snake_case code, as in the simple API.
    pub code: &'static str,
    /// Human-readable explanation.
    pub message: String,
}

/// Processes one frame on the engine path; returns the model that answered
/// and its top-k.
async fn classify_frame(
    state: &AppState,
    target: &Target,
    frame: &Frame,
) -> Result<(ModelHandle, Vec<Prediction>), ApiError> {
    let model = target.model(state)?;
    let deadline = Pipeline::deadline(&model, frame.arrival);
    let image = Item::Image(ImageInput::Bytes(frame.bytes.clone()));
    let mut classified = state
        .pipeline()
        .classify(&model, vec![image], target.top_k, deadline)
        .await?;
    let predictions = classified.items.pop().unwrap_or_default();
    Ok((model, predictions))
}

/// `GET /api/v1/stream`: upgrades to a WebSocket of frames. Bad options and
/// unknown models are refused here, with the simple API's JSON error; limits
/// met later close the socket with a close code and reason.
#[utoipa::path(
    get,
    path = "/api/v1/stream",
    tag = "simple",
    summary = "Classify a stream of frames (WebSocket)",
    description = "Upgrades to a WebSocket. Each binary message is one encoded image (a video \
        frame); a JSON text message before the first frame may set the options instead of the \
        query. Every processed frame is answered, in order, with a JSON text message `{\"frame\", \
        \"class\", \"score\", \"predictions\", \"model\", \"version\", \"latency_ms\", \"dropped\"}`, or \
        `{\"frame\", \"error\": {\"code\", \"message\"}, ...}` for a frame that failed (the stream goes \
        on). Policy `latest` (default) answers the freshest frames and counts the others in \
        `dropped`; `all` answers every frame and slows the sender. Limits close the socket: 1013 \
        too many streams, 1009 frame too large, 1000 idle, 1008 maximum duration or bad options, \
        1001 server shutting down.",
    params(
        ("model" = Option<String>, Query, description = "Model name; the default model when absent"),
        ("version" = Option<u64>, Query, description = "Model version; the highest available when absent"),
        ("top_k" = Option<usize>, Query, minimum = 1, description = "Classes per answer (default 5)"),
        ("policy" = Option<String>, Query, description = "`latest` (default) or `all`"),
    ),
    responses(
        (status = 101, description = "Switched to the WebSocket protocol"),
        (status = 400, description = "Not a WebSocket upgrade request, or bad options", body = crate::error::ErrorBody),
        (status = 404, description = "No such model or version", body = crate::error::ErrorBody),
        (status = 503, description = "Models are still loading", body = crate::error::ErrorBody,
            headers(("Retry-After" = u32, description = "Seconds"))),
    ),
)]
pub async fn websocket(
    State(state): State<AppState>,
    query: Result<Query<StreamOptions>, QueryRejection>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let Query(options) = query?;
    let target = Target::resolve(&state, &options)?;
    let upgrade = upgrade.map_err(|e| {
        ApiError::invalid(
            "not_a_websocket",
            format!(
                "/api/v1/stream takes a WebSocket upgrade request: {}",
                e.body_text()
            ),
        )
    })?;
    let limits = state.stream_limits().clone();
    let slot = state.stream_slots().try_open();
    Ok(upgrade
        .max_message_size(limits.max_frame_bytes)
        .max_frame_size(limits.max_frame_bytes)
        .on_upgrade(move |socket| async move {
            match slot {
                Some(slot) => {
                    WebSocketStream::new(socket, state, target, limits, slot)
                        .run()
                        .await
                }
                None => {
                    count_refusal("websocket", "too_many_streams");
                    close(
                        socket,
                        close_code::AGAIN,
                        format!("{} streams are open, the limit", limits.max_streams),
                    )
                    .await;
                }
            }
        }))
}

/// Closes `socket` with `code` and `reason` (cut to the 123 bytes a close
/// frame allows).
async fn close(mut socket: WebSocket, code: u16, reason: String) {
    let mut reason = reason;
    if reason.len() > 123 {
        let mut end = 123;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason.truncate(end);
    }
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        })))
        .await;
}

struct WebSocketStream {
    socket: WebSocket,
    state: AppState,
    target: Target,
    limits: StreamLimits,
    _slot: StreamSlot,
    received: u64,
    dropped: u64,
}

/// How a stream ended, for the close frame.
enum End {
    /// The client closed or vanished: nothing to send.
    Gone,
    /// Close with this code and reason.
    Close(u16, String),
}

impl WebSocketStream {
    fn new(
        socket: WebSocket,
        state: AppState,
        target: Target,
        limits: StreamLimits,
        slot: StreamSlot,
    ) -> Self {
        Self {
            socket,
            state,
            target,
            limits,
            _slot: slot,
            received: 0,
            dropped: 0,
        }
    }

    async fn run(mut self) {
        let end = self.serve().await;
        if let End::Close(code, reason) = end {
            close(self.socket, code, reason).await;
        }
    }

    /// The stream's loop: read frames, keep the policy's window in flight,
    /// send answers in order. Returning drops every frame still in flight,
    /// which gives their queue slots back at once.
    async fn serve(&mut self) -> End {
        let started = Instant::now();
        let closes_at = tokio::time::Instant::from_std(started + self.limits.max_duration);
        let mut idle_since = Instant::now();
        let mut shutdown = self.state.shutdown_signal();
        let mut waiting: VecDeque<Frame> = VecDeque::new();
        let mut in_flight = FuturesOrdered::new();
        loop {
            let window = match self.target.policy {
                Policy::Latest => 1,
                Policy::All => self.limits.window,
            };
            while in_flight.len() < window {
                let Some(frame) = waiting.pop_front() else {
                    break;
                };
                let (state, target) = (self.state.clone(), self.target.clone());
                in_flight.push_back(async move {
                    let result = classify_frame(&state, &target, &frame).await;
                    (frame, result)
                });
            }
            // Under `all`, a full window stops reading: the sender waits on TCP.
            let may_read = self.target.policy == Policy::Latest
                || waiting.len() + in_flight.len() < self.limits.window;
            let idle_until = tokio::time::Instant::from_std(idle_since + self.limits.idle_timeout);
            tokio::select! {
                biased;
                () = stopping(&mut shutdown) => {
                    return End::Close(close_code::AWAY, "the server is shutting down".into());
                }
                _ = tokio::time::sleep_until(closes_at) => {
                    count_refusal("websocket", "max_duration");
                    return End::Close(
                        close_code::POLICY,
                        format!("the stream reached its maximum duration of {} s", self.limits.max_duration.as_secs()),
                    );
                }
                Some((frame, result)) = in_flight.next(), if !in_flight.is_empty() => {
                    if !self.answer(frame, result).await {
                        return End::Gone;
                    }
                }
                message = self.socket.recv(), if may_read => {
                    idle_since = Instant::now();
                    match message {
                        None => return End::Gone,
                        Some(Err(e)) => return self.read_error(&e),
                        Some(Ok(Message::Binary(bytes))) => {
                            let frame = Frame { sequence: self.received, bytes, arrival: Instant::now() };
                            self.received += 1;
                            if self.target.policy == Policy::Latest
                                && !in_flight.is_empty()
                                && waiting.pop_front().is_some()
                            {
                                self.dropped += 1;
                                count_frame("websocket", "dropped");
                            }
                            waiting.push_back(frame);
                        }
                        Some(Ok(Message::Text(text))) => {
                            if let Some(end) = self.options(text.as_str()).await {
                                return end;
                            }
                        }
                        Some(Ok(Message::Close(_))) => return End::Gone,
                        // axum answers pings itself.
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    }
                }
                _ = tokio::time::sleep_until(idle_until) => {
                    count_refusal("websocket", "idle");
                    return End::Close(
                        close_code::NORMAL,
                        format!("nothing received for {} s", self.limits.idle_timeout.as_secs()),
                    );
                }
            }
        }
    }

    /// Sends a frame's answer; false when the client is gone.
    async fn answer(
        &mut self,
        frame: Frame,
        result: Result<(ModelHandle, Vec<Prediction>), ApiError>,
    ) -> bool {
        let latency_ms = frame.arrival.elapsed().as_secs_f64() * 1000.0;
        let answer = match result {
            Ok((model, predictions)) => {
                count_frame("websocket", "answered");
                FrameAnswer {
                    frame: frame.sequence,
                    class: predictions.first().map(|p| p.label.clone()),
                    score: predictions.first().map(|p| p.score),
                    predictions: Some(predictions),
                    model: Some(model.name().to_string()),
                    version: Some(model.version()),
                    error: None,
                    latency_ms,
                    dropped: self.dropped,
                }
            }
            Err(error) => {
                count_frame("websocket", "failed");
                FrameAnswer {
                    frame: frame.sequence,
                    class: None,
                    score: None,
                    predictions: None,
                    model: None,
                    version: None,
                    error: Some(FrameError {
                        code: error.code,
                        message: error.message,
                    }),
                    latency_ms,
                    dropped: self.dropped,
                }
            }
        };
        let text = match serde_json::to_string(&answer) {
            Ok(text) => text,
            Err(e) => {
                tracing::error!("cannot serialise a frame answer: {e}");
                return true;
            }
        };
        self.socket.send(Message::Text(text.into())).await.is_ok()
    }

    /// A JSON options message: allowed before the first frame only.
    async fn options(&mut self, text: &str) -> Option<End> {
        if self.received > 0 {
            return Some(End::Close(
                close_code::POLICY,
                "options must come before the first frame".into(),
            ));
        }
        let options: StreamOptions = match serde_json::from_str(text) {
            Ok(options) => options,
            Err(e) => {
                return Some(End::Close(
                    close_code::INVALID,
                    format!("options are not valid JSON: {e}"),
                ));
            }
        };
        match Target::resolve(&self.state, &options) {
            Ok(target) => {
                self.target = target;
                None
            }
            Err(e) => Some(End::Close(close_code::POLICY, e.message)),
        }
    }

    fn read_error(&self, error: &axum::Error) -> End {
        // tungstenite reports a message over max_message_size as a capacity
        // error ("Space limit exceeded: Message too long"); anything else is
        // a broken connection.
        if error.to_string().contains("Space limit exceeded") {
            count_refusal("websocket", "frame_too_large");
            End::Close(
                close_code::SIZE,
                format!(
                    "a frame exceeds the limit of {} bytes",
                    self.limits.max_frame_bytes
                ),
            )
        } else {
            End::Gone
        }
    }
}

//! The dynamic batcher of one model version (DESIGN.md §6): admission into a
//! bounded queue counted in items, and the inference thread's loop that cuts
//! batches, drops expired or abandoned requests, runs the backend and hands
//! each caller its own rows.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, TryRecvError};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use fovea_core::{BatchingConfig, Tensor};
use metrics::{Counter, Gauge, Histogram};
use tokio::sync::oneshot;

use crate::backend::Backend;
use crate::error::{BackendError, EngineError};

/// What a caller gets back through its oneshot.
pub(crate) type Reply = Result<Inferred, EngineError>;

/// A request's rows of a batch's output, and where its time in the batcher went.
#[derive(Debug, Clone, PartialEq)]
pub struct Inferred {
    /// The output rows of this request, `[n, ...]`.
    pub output: Tensor,
    /// From entering the queue to its batch being cut.
    pub queue_wait: Duration,
    /// The backend's run of the whole batch this request rode in.
    pub inference: Duration,
    /// Items in that batch (this request's and others').
    pub batch_size: usize,
}

/// One queued request: `input` is [n, ...item] and is never split.
pub(crate) struct Request {
    input: Tensor,
    deadline: Instant,
    enqueued: Instant,
    reply: oneshot::Sender<Reply>,
}

/// Counters of what a batcher has done, for tests and diagnostics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchStats {
    /// Batches handed to the backend.
    pub batches: u64,
    /// Items (rows) handed to the backend.
    pub items: u64,
    /// The largest batch run so far, in items.
    pub largest_batch: usize,
    /// Requests refused because the queue was full.
    pub refused_queue_full: u64,
    /// Requests dropped because their deadline passed before inference.
    pub dropped_deadline: u64,
    /// Requests dropped because their caller had gone before inference.
    pub dropped_cancelled: u64,
    /// Items admitted now and not yet cut into a batch (decoding or queued):
    /// what `fovea_queue_depth` reports.
    pub queued: usize,
}

/// State shared by the async side and the inference thread.
struct Shared {
    model: String,
    version: u64,
    capacity: usize,
    /// Items admitted and not yet cut into a batch.
    queued: AtomicUsize,
    batches: AtomicU64,
    items: AtomicU64,
    largest_batch: AtomicUsize,
    refused_queue_full: AtomicU64,
    dropped_deadline: AtomicU64,
    dropped_cancelled: AtomicU64,
    metrics: Metrics,
    entry: Mutex<Entry>,
}

/// The way into the queue. Closing a version stops admissions at once but
/// keeps the way open for requests admitted already (still decoding): they
/// are queued and answered, and the sender goes, letting the thread drain
/// and exit, only when the last of them is queued or gives up. Otherwise a
/// request admitted just before a reload unloads its version would fail.
struct Entry {
    sender: Option<mpsc::Sender<Request>>,
    closing: bool,
    /// Slots handed out and neither submitted nor dropped.
    admitted: usize,
}

/// Metric handles, labelled once with model and version when the version
/// loads: the process's recorder must be installed by then (`fovea serve`
/// installs it before starting the engine).
struct Metrics {
    /// Filled by the caller (the server decodes before submitting), through [`Slot`].
    decode_wait: Histogram,
    preprocess: Histogram,
    queue_wait: Histogram,
    inference: Histogram,
    batch_size: Histogram,
    queue_depth: Gauge,
    dropped_queue_full: Counter,
    dropped_deadline: Counter,
    dropped_cancelled: Counter,
}

impl Metrics {
    fn new(model: &str, version: u64) -> Self {
        let labels = [
            ("model", model.to_string()),
            ("version", version.to_string()),
        ];
        let dropped = |reason: &'static str| {
            let mut labels = labels.to_vec();
            labels.push(("reason", reason.to_string()));
            metrics::counter!("fovea_requests_dropped_total", &labels)
        };
        Self {
            decode_wait: metrics::histogram!("fovea_decode_wait_seconds", &labels),
            preprocess: metrics::histogram!("fovea_preprocess_seconds", &labels),
            queue_wait: metrics::histogram!("fovea_queue_wait_seconds", &labels),
            inference: metrics::histogram!("fovea_inference_seconds", &labels),
            batch_size: metrics::histogram!("fovea_batch_size", &labels),
            queue_depth: metrics::gauge!("fovea_queue_depth", &labels),
            dropped_queue_full: dropped("queue_full"),
            dropped_deadline: dropped("deadline"),
            dropped_cancelled: dropped("cancelled"),
        }
    }
}

impl Shared {
    fn release(&self, items: usize) {
        let left = self.queued.fetch_sub(items, Ordering::AcqRel) - items;
        self.metrics.queue_depth.set(left as f64);
    }

    fn count_deadline(&self) {
        self.dropped_deadline.fetch_add(1, Ordering::Relaxed);
        self.metrics.dropped_deadline.increment(1);
    }

    fn entry(&self) -> std::sync::MutexGuard<'_, Entry> {
        self.entry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A slot was submitted or dropped: the version may now finish closing.
    fn end_admission(&self) {
        let mut entry = self.entry();
        entry.admitted -= 1;
        if entry.closing && entry.admitted == 0 {
            entry.sender = None;
        }
    }

    fn unloading(&self) -> EngineError {
        EngineError::Unloading {
            model: self.model.clone(),
            version: self.version,
        }
    }
}

/// Room in a version's queue held for a request that is still being
/// prepared (decoded, preprocessed); dropping it unused gives the room back.
pub(crate) struct Slot {
    shared: std::sync::Arc<Shared>,
    items: usize,
}

impl Slot {
    /// Records how long the admitted request waited for a decode thread.
    pub(crate) fn record_decode_wait(&self, waited: Duration) {
        self.shared.metrics.decode_wait.record(waited.as_secs_f64());
    }

    /// Records how long decoding and preprocessing the request took.
    pub(crate) fn record_preprocess(&self, took: Duration) {
        self.shared.metrics.preprocess.record(took.as_secs_f64());
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.items > 0 {
            self.shared.release(self.items);
        }
        self.shared.end_admission();
    }
}

/// The async side of a batcher: admits requests into the queue.
pub(crate) struct Batcher {
    shared: std::sync::Arc<Shared>,
}

/// The version's last handle is gone: nothing can be queued any more, so
/// the queue closes (once admitted slots are given back) and the thread,
/// which shares the way in through `Shared`, drains and exits.
impl Drop for Batcher {
    fn drop(&mut self) {
        self.close();
    }
}

/// An inference thread's side: the receiving end and the shared counters.
/// Clones serve the same queue (one per model instance); whoever holds the
/// receiver collects the next batch, and lets go of it before running it.
#[derive(Clone)]
pub(crate) struct Worker {
    shared: std::sync::Arc<Shared>,
    receiver: std::sync::Arc<Mutex<mpsc::Receiver<Request>>>,
}

/// A connected batcher and worker for one model version.
pub(crate) fn channel(model: &str, version: u64, capacity: usize) -> (Batcher, Worker) {
    let (sender, receiver) = mpsc::channel();
    let shared = std::sync::Arc::new(Shared {
        model: model.to_string(),
        version,
        capacity,
        queued: AtomicUsize::new(0),
        batches: AtomicU64::new(0),
        items: AtomicU64::new(0),
        largest_batch: AtomicUsize::new(0),
        refused_queue_full: AtomicU64::new(0),
        dropped_deadline: AtomicU64::new(0),
        dropped_cancelled: AtomicU64::new(0),
        metrics: Metrics::new(model, version),
        entry: Mutex::new(Entry {
            sender: Some(sender),
            closing: false,
            admitted: 0,
        }),
    });
    (
        Batcher {
            shared: shared.clone(),
        },
        Worker {
            shared,
            receiver: std::sync::Arc::new(Mutex::new(receiver)),
        },
    )
}

impl Batcher {
    /// Holds room for `items` in the queue, or refuses at once: never blocks
    /// the caller. Admission happens before a request's images are decoded,
    /// so a flood is refused before it costs any decoding.
    pub(crate) fn reserve(&self, items: usize, deadline: Instant) -> Result<Slot, EngineError> {
        let shared = &self.shared;
        if items > shared.capacity {
            return Err(EngineError::BatchTooLarge {
                items,
                capacity: shared.capacity,
            });
        }
        if Instant::now() >= deadline {
            shared.count_deadline();
            return Err(EngineError::DeadlineExceeded);
        }
        let admitted = shared
            .queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |queued| {
                (queued + items <= shared.capacity).then_some(queued + items)
            });
        match admitted {
            Ok(before) => {
                let mut entry = shared.entry();
                if entry.closing || entry.sender.is_none() {
                    drop(entry);
                    shared.release(items);
                    return Err(shared.unloading());
                }
                entry.admitted += 1;
                drop(entry);
                shared.metrics.queue_depth.set((before + items) as f64);
                Ok(Slot {
                    shared: shared.clone(),
                    items,
                })
            }
            Err(_) => {
                shared.refused_queue_full.fetch_add(1, Ordering::Relaxed);
                shared.metrics.dropped_queue_full.increment(1);
                Err(EngineError::QueueFull {
                    model: shared.model.clone(),
                    version: shared.version,
                    capacity: shared.capacity,
                })
            }
        }
    }

    /// Queues `input` in the room `slot` holds; `input` must have exactly
    /// the slot's number of items.
    pub(crate) fn submit(
        &self,
        mut slot: Slot,
        input: Tensor,
        deadline: Instant,
    ) -> Result<oneshot::Receiver<Reply>, EngineError> {
        let items = input.batch_size();
        if items != slot.items {
            return Err(EngineError::InvalidInput(format!(
                "{items} items submitted into room for {}",
                slot.items
            )));
        }
        let (reply, receiver) = oneshot::channel();
        let request = Request {
            input,
            deadline,
            enqueued: Instant::now(),
            reply,
        };
        let entry = self.shared.entry();
        let sent = entry.sender.as_ref().map(|s| s.send(request));
        // The slot's drop (below, or the caller's) takes the entry lock.
        drop(entry);
        match sent {
            Some(Ok(())) => {
                // The worker releases the room when it cuts the batch.
                slot.items = 0;
                Ok(receiver)
            }
            // Dropping the slot gives its room back.
            _ => Err(self.unloading()),
        }
    }

    /// Stops admitting; requests admitted already are still queued, and the
    /// thread finishes everything queued, then exits.
    pub(crate) fn close(&self) {
        let mut entry = self.shared.entry();
        entry.closing = true;
        if entry.admitted == 0 {
            entry.sender = None;
        }
    }

    /// The error for a request that the version can no longer serve.
    pub(crate) fn unloading(&self) -> EngineError {
        self.shared.unloading()
    }

    /// Counts a request that expired while its caller waited for the reply.
    pub(crate) fn count_deadline(&self) {
        self.shared.count_deadline();
    }

    /// A snapshot of the counters.
    pub(crate) fn stats(&self) -> BatchStats {
        let s = &self.shared;
        BatchStats {
            batches: s.batches.load(Ordering::Relaxed),
            items: s.items.load(Ordering::Relaxed),
            largest_batch: s.largest_batch.load(Ordering::Relaxed),
            refused_queue_full: s.refused_queue_full.load(Ordering::Relaxed),
            dropped_deadline: s.dropped_deadline.load(Ordering::Relaxed),
            dropped_cancelled: s.dropped_cancelled.load(Ordering::Relaxed),
            queued: s.queued.load(Ordering::Acquire),
        }
    }
}

impl Worker {
    /// Serves batches until the batcher is closed and the queue is drained.
    pub(crate) fn run(self, backend: &mut dyn Backend, batching: &BatchingConfig) {
        let max = batching.max_batch_size.max(1);
        // Collecting stops at the largest preferred size (a size the backend
        // runs well) or at the maximum; a request that would overflow the
        // maximum waits for the next batch rather than being split.
        let cut_at = batching
            .preferred_batch_sizes
            .iter()
            .copied()
            .filter(|s| *s <= max)
            .max()
            .unwrap_or(max);
        let delay = Duration::from_micros(batching.max_queue_delay_us);
        let mut carried: Option<Request> = None;
        let mut buffer: Vec<f32> = Vec::new();
        loop {
            let receiver = self.receiver.lock().unwrap_or_else(PoisonError::into_inner);
            let first = match carried.take() {
                Some(request) => request,
                None => match receiver.recv() {
                    Ok(request) => request,
                    Err(_) => return,
                },
            };
            // The window is measured from the first request's arrival, so a
            // request that already waited behind a running batch waits no more.
            let window_end = first.enqueued + delay;
            let mut items = first.input.batch_size();
            let mut batch = vec![first];
            while items < cut_at {
                let now = Instant::now();
                let next = if now >= window_end {
                    receiver.try_recv().map_err(|e| match e {
                        TryRecvError::Empty => RecvTimeoutError::Timeout,
                        TryRecvError::Disconnected => RecvTimeoutError::Disconnected,
                    })
                } else {
                    receiver.recv_timeout(window_end - now)
                };
                let Ok(request) = next else { break };
                let n = request.input.batch_size();
                if items + n > max {
                    carried = Some(request);
                    break;
                }
                items += n;
                batch.push(request);
            }
            drop(receiver);
            self.shared.release(items);
            self.run_batch(backend, batch, &mut buffer);
        }
    }

    fn run_batch(&self, backend: &mut dyn Backend, batch: Vec<Request>, buffer: &mut Vec<f32>) {
        let shared = &self.shared;
        let now = Instant::now();
        let mut waiters = Vec::with_capacity(batch.len());
        let mut item_shape: Option<Vec<usize>> = None;
        buffer.clear();
        for request in batch {
            let expired = request.deadline <= now;
            if request.reply.is_closed() {
                // A caller that stopped waiting at its deadline was counted there.
                if !expired {
                    shared.dropped_cancelled.fetch_add(1, Ordering::Relaxed);
                    shared.metrics.dropped_cancelled.increment(1);
                }
                continue;
            }
            if expired {
                shared.count_deadline();
                let _ = request.reply.send(Err(EngineError::DeadlineExceeded));
                continue;
            }
            let queue_wait = now.duration_since(request.enqueued);
            shared.metrics.queue_wait.record(queue_wait.as_secs_f64());
            item_shape.get_or_insert_with(|| request.input.shape()[1..].to_vec());
            buffer.extend_from_slice(request.input.data());
            waiters.push(Waiter {
                items: request.input.batch_size(),
                queue_wait,
                reply: request.reply,
            });
        }
        let Some(item_shape) = item_shape else { return };
        let total: usize = waiters.iter().map(|w| w.items).sum();
        let mut shape = vec![total];
        shape.extend(&item_shape);
        let input = match Tensor::new(shape, std::mem::take(buffer)) {
            Ok(input) => input,
            Err(e) => {
                // Inputs are validated before queueing, so this is our bug.
                fail_all(waiters, &format!("batch assembly: {e}"));
                return;
            }
        };
        let started = Instant::now();
        let result = catch_unwind(AssertUnwindSafe(|| backend.run(&input)))
            .unwrap_or_else(|_| Err(BackendError::Run("the backend panicked".into())));
        let inference = started.elapsed();
        shared.metrics.inference.record(inference.as_secs_f64());
        shared.metrics.batch_size.record(total as f64);
        shared.batches.fetch_add(1, Ordering::Relaxed);
        shared.items.fetch_add(total as u64, Ordering::Relaxed);
        shared.largest_batch.fetch_max(total, Ordering::Relaxed);
        *buffer = input.into_data();
        match result {
            Ok(output) if output.batch_size() == total && !output.shape().is_empty() => {
                split_rows(&output, waiters, inference)
            }
            Ok(output) => fail_all(
                waiters,
                &format!(
                    "the model returned shape {:?} for a batch of {total}",
                    output.shape()
                ),
            ),
            Err(e) => fail_all(waiters, &e.to_string()),
        }
    }
}

/// A request of the batch being run, waiting for its rows.
struct Waiter {
    items: usize,
    queue_wait: Duration,
    reply: oneshot::Sender<Reply>,
}

/// Sends each waiter its own consecutive rows of `output`.
fn split_rows(output: &Tensor, waiters: Vec<Waiter>, inference: Duration) {
    let row_len = output.item_len();
    let tail = &output.shape()[1..];
    let batch_size = output.batch_size();
    let mut offset = 0;
    for waiter in waiters {
        let n = waiter.items;
        let rows = output.data()[offset * row_len..(offset + n) * row_len].to_vec();
        offset += n;
        let mut shape = vec![n];
        shape.extend(tail);
        let answer = Tensor::new(shape, rows)
            .map(|output| Inferred {
                output,
                queue_wait: waiter.queue_wait,
                inference,
                batch_size,
            })
            .map_err(|e| BackendError::Run(e.to_string()).into());
        // A caller that gave up meanwhile simply does not read its answer.
        let _ = waiter.reply.send(answer);
    }
}

fn fail_all(waiters: Vec<Waiter>, message: &str) {
    tracing::error!("batch failed: {message}");
    for waiter in waiters {
        let _ = waiter
            .reply
            .send(Err(BackendError::Run(message.to_string()).into()));
    }
}

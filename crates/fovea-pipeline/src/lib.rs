//! The one inference path every protocol and `fovea predict --local` take:
//! model resolution, admission of a whole request before any work, image
//! decoding and preprocessing on the blocking pool under the decode permits,
//! the model's batcher, and top-k. Protocols only translate their wire form
//! into [`Item`]s and the answers back; none of them touches the engine.

mod error;
mod timings;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use fovea_core::{FoveaError, InputFormat, Tensor, defaults};
use fovea_engine::{Admission, Engine, ModelHandle, Prediction};
use fovea_vision::ImageLimits;
use tokio::sync::Semaphore;

pub use error::PipelineError;
pub use timings::Timings;

/// Limits applied to every request before any expensive work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestLimits {
    /// Largest request body (and largest encoded image) in bytes.
    pub max_body_bytes: usize,
    /// Largest image, in pixels, read from its header before decoding.
    pub max_pixels: u64,
    /// Most images (or items) in one request.
    pub max_images_per_request: usize,
    /// Classes returned when the request names no `top_k`.
    pub default_top_k: usize,
}

impl Default for RequestLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: defaults::MAX_BODY_BYTES,
            max_pixels: defaults::MAX_PIXELS,
            max_images_per_request: defaults::MAX_IMAGES_PER_REQUEST,
            default_top_k: defaults::TOP_K,
        }
    }
}

/// Where an image's bytes come from: already in hand, or still to be fetched
/// (a URL), which happens only after the request is admitted.
pub enum ImageInput {
    /// The encoded image.
    Bytes(Bytes),
    /// A fetch that yields the encoded image; its error is answered as is.
    Deferred(Pin<Box<dyn Future<Output = Result<Bytes, SourceError>> + Send>>),
}

/// Why a deferred image could not be obtained, classified by its own layer.
pub type SourceError = Box<dyn FoveaError + Send + Sync>;

impl From<Bytes> for ImageInput {
    fn from(bytes: Bytes) -> Self {
        ImageInput::Bytes(bytes)
    }
}

impl std::fmt::Debug for ImageInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ImageInput::Bytes(bytes) => write!(f, "Bytes({} bytes)", bytes.len()),
            ImageInput::Deferred(_) => f.write_str("Deferred"),
        }
    }
}

/// One item of a request: it is admitted, and runs, as one unit.
#[derive(Debug)]
pub enum Item {
    /// An encoded image: one row once preprocessed.
    Image(ImageInput),
    /// A ready tensor `[n, ...input shape]`, never split.
    Tensor(Tensor),
}

/// What a protocol request hands a model: encoded images or a ready batch.
#[derive(Debug)]
pub enum ModelInput {
    /// Encoded images, one batch item each; fovea preprocesses them.
    Images(Vec<Bytes>),
    /// A preprocessed batch `[n, ...input shape]`.
    Tensor(Tensor),
}

impl ModelInput {
    fn into_items(self) -> Vec<Item> {
        match self {
            ModelInput::Images(images) => images
                .into_iter()
                .map(|bytes| Item::Image(ImageInput::Bytes(bytes)))
                .collect(),
            ModelInput::Tensor(tensor) => vec![Item::Tensor(tensor)],
        }
    }
}

/// A request's outputs, one per item in request order, and where its time went.
#[derive(Debug, Clone)]
pub struct Inference {
    /// Each item's output rows `[n, classes]`.
    pub outputs: Vec<Tensor>,
    /// The request's stage timings.
    pub timings: Timings,
}

impl Inference {
    /// The outputs as one tensor `[total rows, classes]`.
    pub fn concat(&self) -> Result<Tensor, PipelineError> {
        Tensor::concat(&self.outputs).map_err(|e| PipelineError::OutputMismatch(e.to_string()))
    }
}

/// The top-k of each item's first row, in request order, and where the time went.
#[derive(Debug, Clone)]
pub struct Classification {
    /// Per item, its best classes first.
    pub items: Vec<Vec<Prediction>>,
    /// The request's stage timings.
    pub timings: Timings,
}

/// The inference pipeline. Cheap to clone.
#[derive(Clone)]
pub struct Pipeline {
    inner: Arc<Inner>,
}

struct Inner {
    engine: OnceLock<Engine>,
    limits: RequestLimits,
    /// Bounds concurrent image decodes to the decode share of the thread
    /// budget, so decoding never oversubscribes the cores inference uses and
    /// admitted requests wait cheaply, still encoded.
    decode_permits: Semaphore,
}

impl Pipeline {
    /// A pipeline without an engine yet: every request is refused as
    /// `not_ready` until [`Pipeline::set_engine`].
    pub fn new(limits: RequestLimits, decode_threads: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                engine: OnceLock::new(),
                limits,
                decode_permits: Semaphore::new(decode_threads.max(1)),
            }),
        }
    }

    /// Hands the loaded engine to the pipeline; false if one was set already.
    pub fn set_engine(&self, engine: Engine) -> bool {
        self.inner.engine.set(engine).is_ok()
    }

    /// The engine, once set.
    pub fn engine(&self) -> Option<&Engine> {
        self.inner.engine.get()
    }

    /// The engine, or `not_ready` while models are loading.
    pub fn ready_engine(&self) -> Result<&Engine, PipelineError> {
        self.engine().ok_or(PipelineError::NotReady)
    }

    /// The limits in force.
    pub fn limits(&self) -> &RequestLimits {
        &self.inner.limits
    }

    /// Stops decoding: requests waiting for a decode permit, and later
    /// ones, fail with `shutting_down`.
    pub fn close(&self) {
        self.inner.decode_permits.close();
    }

    /// The handle of `name` at `version` (the highest available when `None`).
    pub fn model(&self, name: &str, version: Option<u64>) -> Result<ModelHandle, PipelineError> {
        Ok(self.ready_engine()?.model(name, version)?)
    }

    /// The model a request names, or the default model when it names none,
    /// which must take encoded images.
    pub fn image_model(
        &self,
        name: Option<&str>,
        version: Option<u64>,
    ) -> Result<ModelHandle, PipelineError> {
        let model = match name {
            Some(name) => self.model(name, version)?,
            None => {
                let default = self
                    .ready_engine()?
                    .default_model()
                    .ok_or(PipelineError::NoModel)?;
                match version {
                    None => default,
                    Some(v) => self.model(default.name(), Some(v))?,
                }
            }
        };
        require_images(&model)?;
        Ok(model)
    }

    /// The classes to answer with: the request's `top_k` (at least 1) or the
    /// default, at most the model's class count.
    pub fn top_k(&self, model: &ModelHandle, asked: Option<usize>) -> Result<usize, PipelineError> {
        let k = match asked {
            Some(0) => return Err(PipelineError::InvalidTopK),
            Some(k) => k,
            None => self.limits().default_top_k,
        };
        Ok(k.min(model.num_classes()))
    }

    /// When a request that arrived at `arrival` stops waiting for `model`.
    pub fn deadline(model: &ModelHandle, arrival: Instant) -> Instant {
        arrival + Duration::from_millis(model.config().batching.timeout_ms)
    }

    /// Most elements a protocol tensor may declare: a body cannot carry more
    /// f32 values than it has 4-byte groups, and fill rules must not expand past that.
    pub fn max_elements(&self) -> usize {
        self.limits().max_body_bytes / 4
    }

    /// Runs a protocol request's input through `model`; one output per item
    /// (per image, or the one tensor).
    pub async fn infer(
        &self,
        model: &ModelHandle,
        input: ModelInput,
        deadline: Instant,
    ) -> Result<Inference, PipelineError> {
        // `run` refuses an empty request and images for a tensor model.
        self.run(model, input.into_items(), deadline).await
    }

    /// Runs `items` through `model` and ranks each item's first row: the top
    /// `top_k` classes by softmax score.
    pub async fn classify(
        &self,
        model: &ModelHandle,
        items: Vec<Item>,
        top_k: usize,
        deadline: Instant,
    ) -> Result<Classification, PipelineError> {
        let inference = self.run(model, items, deadline).await?;
        let items = inference
            .outputs
            .iter()
            .map(|output| {
                output
                    .item(0)
                    .map(|logits| fovea_engine::classify(logits, model.labels(), top_k))
                    .ok_or_else(|| PipelineError::EmptyOutput(model.name().to_string()))
            })
            .collect::<Result<_, _>>()?;
        Ok(Classification {
            items,
            timings: inference.timings,
        })
    }

    /// Admits every item, all or none, before any is fetched, decoded or
    /// inferred, then runs them side by side: each enters the batcher on its
    /// own, so a request's items batch with each other and with other
    /// requests' alike.
    pub async fn run(
        &self,
        model: &ModelHandle,
        items: Vec<Item>,
        deadline: Instant,
    ) -> Result<Inference, PipelineError> {
        let limit = self.limits().max_images_per_request;
        if items.is_empty() {
            return Err(PipelineError::NoImage);
        }
        if items.len() > limit {
            return Err(PipelineError::TooManyImages {
                count: items.len(),
                limit,
            });
        }
        // Room for each item is reserved on its own, so a request larger than
        // the whole queue would read as "full, retry"; it can never fit.
        let rows: usize = items
            .iter()
            .map(|item| match item {
                Item::Tensor(tensor) => tensor.batch_size(),
                Item::Image(_) => 1,
            })
            .sum();
        let capacity = model.config().batching.queue_capacity;
        if rows > capacity {
            return Err(fovea_engine::EngineError::BatchTooLarge {
                items: rows,
                capacity,
            }
            .into());
        }
        for item in &items {
            match item {
                Item::Tensor(tensor) => model.validate_input(tensor)?,
                Item::Image(_) => require_images(model)?,
            }
        }
        let admissions = items
            .iter()
            .map(|item| match item {
                Item::Tensor(tensor) => model.admit(tensor.batch_size(), deadline),
                Item::Image(_) => model.admit(1, deadline),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let several = items.len() > 1;
        let results =
            futures_util::future::join_all(items.into_iter().zip(admissions).enumerate().map(
                |(index, (item, admission))| async move {
                    self.run_item(model, admission, item)
                        .await
                        .map_err(|e| if several { e.numbered(index) } else { e })
                },
            ))
            .await;
        let mut outputs = Vec::with_capacity(results.len());
        let mut timings = Timings::default();
        for result in results {
            let (output, item_timings) = result?;
            timings.merge(&item_timings);
            outputs.push(output);
        }
        Ok(Inference { outputs, timings })
    }

    async fn run_item(
        &self,
        model: &ModelHandle,
        admission: Admission,
        item: Item,
    ) -> Result<(Tensor, Timings), PipelineError> {
        let mut timings = Timings::default();
        let tensor = match item {
            Item::Tensor(tensor) => tensor,
            Item::Image(source) => {
                let bytes = match source {
                    ImageInput::Bytes(bytes) => bytes,
                    ImageInput::Deferred(fetch) => {
                        let started = Instant::now();
                        let bytes = fetch.await.map_err(PipelineError::Source)?;
                        timings.fetch = Some(started.elapsed());
                        bytes
                    }
                };
                self.preprocess(model, &admission, bytes, &mut timings)
                    .await?
            }
        };
        let inferred = admission.infer_timed(tensor).await?;
        timings.queue = Some(inferred.queue_wait);
        timings.inference = Some(inferred.inference);
        Ok((inferred.output, timings))
    }

    /// Decodes and preprocesses one admitted image on the blocking pool,
    /// once a decode permit is free (or its deadline passes first).
    async fn preprocess(
        &self,
        model: &ModelHandle,
        admission: &Admission,
        bytes: Bytes,
        timings: &mut Timings,
    ) -> Result<Tensor, PipelineError> {
        let limits = ImageLimits {
            max_bytes: self.limits().max_body_bytes,
            max_pixels: self.limits().max_pixels,
        };
        let waiting = Instant::now();
        let permit = match tokio::time::timeout_at(
            admission.deadline().into(),
            self.inner.decode_permits.acquire(),
        )
        .await
        {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) => return Err(PipelineError::ShuttingDown),
            Err(_) => return Err(fovea_engine::EngineError::DeadlineExceeded.into()),
        };
        let waited = waiting.elapsed();
        admission.record_decode_wait(waited);
        timings.decode_wait = Some(waited);
        let spec = model.config().preprocess.clone();
        let started = Instant::now();
        let tensor =
            tokio::task::spawn_blocking(move || fovea_vision::preprocess(&bytes, &spec, &limits))
                .await
                .map_err(|e| PipelineError::Panicked(e.to_string()))??;
        let took = started.elapsed();
        admission.record_preprocess(took);
        timings.preprocess = Some(took);
        drop(permit);
        Ok(tensor)
    }
}

/// Refuses encoded images for a model that takes numeric tensors.
pub fn require_images(model: &ModelHandle) -> Result<(), PipelineError> {
    if model.config().input.format != InputFormat::Image {
        return Err(PipelineError::ModelTakesTensors(model.name().to_string()));
    }
    Ok(())
}

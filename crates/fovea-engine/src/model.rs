//! One loaded model version: its inference thread (open, check against the
//! config, warm up, then serve the batcher) and the `ModelHandle` callers use.

use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use fovea_core::{Labels, ModelConfig, Tensor, TestTimeAugmentation};
use tokio::sync::oneshot;

use crate::backend::{
    Backend, BackendChoice, BackendFactory, BackendTuning, FileOpener, FlipAveraged, Signature,
    open_backend_tuned,
};
use crate::batcher::{self, BatchStats, Batcher, Inferred, Slot};
use crate::error::EngineError;

/// Everything needed to load one model version.
#[derive(Debug, Clone)]
pub(crate) struct VersionSpec {
    pub name: String,
    pub version: u64,
    pub opener: Opener,
    /// The config file, for error messages; `None` when the caller gave the
    /// config (a single file, caller-built backends).
    pub config_path: Option<PathBuf>,
    pub config: ModelConfig,
    pub labels: Labels,
    /// Intra-op threads of the whole version, shared out among its instances.
    pub threads: usize,
    /// Sessions serving the version's queue side by side (`runtime.instances`).
    pub instances: usize,
}

/// Where a version's backend instances come from.
#[derive(Debug, Clone)]
pub(crate) enum Opener {
    /// An ONNX file, opened with the library resolved at start-up.
    File {
        path: PathBuf,
        choice: BackendChoice,
        tuning: BackendTuning,
    },
    /// Backends the caller builds (`ModelSource::Backend`).
    Factory(BackendFactory),
    /// A repository's model file, opened by the caller (`ModelSource::RepositoryWith`).
    Custom { path: PathBuf, opener: FileOpener },
}

impl VersionSpec {
    /// What error messages name as the model at fault.
    pub(crate) fn origin(&self) -> String {
        match &self.opener {
            Opener::File { path, .. } | Opener::Custom { path, .. } => path.display().to_string(),
            Opener::Factory(_) => format!("model `{}` (a caller-built backend)", self.name),
        }
    }

    /// Opens one instance on `threads` intra-op threads, wrapped in the
    /// test-time augmentation the config asks for.
    fn open(&self, threads: usize) -> Result<Box<dyn Backend>, String> {
        let backend = self.open_plain(threads)?;
        Ok(match self.config.runtime.tta {
            TestTimeAugmentation::None => backend,
            TestTimeAugmentation::Flip => Box::new(FlipAveraged::new(backend)),
        })
    }

    fn open_plain(&self, threads: usize) -> Result<Box<dyn Backend>, String> {
        match &self.opener {
            // The error names the file already.
            Opener::File {
                path,
                choice,
                tuning,
            } => open_backend_tuned(*choice, path, threads, *tuning).map_err(|e| e.to_string()),
            // A caller-built backend sets its own threading.
            Opener::Factory(factory) => factory
                .open()
                .map_err(|e| format!("{}: {e}", self.origin())),
            Opener::Custom { path, opener } => opener
                .open(path)
                .map_err(|e| format!("{}: {e}", self.origin())),
        }
    }
}

/// A loaded, warmed-up version and its inference thread (which runs any
/// further instances on threads of its own and returns when they all have).
pub(crate) struct LoadedVersion {
    pub handle: ModelHandle,
    pub thread: JoinHandle<()>,
}

/// A served model version. Cheap to clone; requests go through its batcher.
#[derive(Clone)]
pub struct ModelHandle(Arc<VersionInner>);

struct VersionInner {
    name: String,
    version: u64,
    config: ModelConfig,
    labels: Labels,
    num_classes: usize,
    backend: &'static str,
    batcher: Batcher,
}

impl std::fmt::Debug for ModelHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelHandle")
            .field("name", &self.0.name)
            .field("version", &self.0.version)
            .finish_non_exhaustive()
    }
}

impl ModelHandle {
    /// The model's name.
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// The version number.
    pub fn version(&self) -> u64 {
        self.0.version
    }

    /// The model's configuration (input and output names as the model has them).
    pub fn config(&self) -> &ModelConfig {
        &self.0.config
    }

    /// The class names.
    pub fn labels(&self) -> &Labels {
        &self.0.labels
    }

    /// Number of output classes.
    pub fn num_classes(&self) -> usize {
        self.0.num_classes
    }

    /// The backend running this version (`"onnxruntime"`, `"tract"`, or the
    /// name a caller-built backend reports).
    pub fn backend_name(&self) -> &'static str {
        self.0.backend
    }

    /// What the batcher has done so far.
    pub fn stats(&self) -> BatchStats {
        self.0.batcher.stats()
    }

    /// Checks that `input` is [n, ...config.input.shape] with n ≥ 1.
    pub fn validate_input(&self, input: &Tensor) -> Result<(), EngineError> {
        let expected = &self.0.config.input.shape;
        let shape = input.shape();
        if shape.len() != expected.len() + 1 || shape[1..] != expected[..] || shape[0] == 0 {
            return Err(EngineError::InvalidInput(format!(
                "model `{}` takes [n, {}] with n ≥ 1; got {shape:?}",
                self.0.name,
                expected
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        Ok(())
    }

    /// input: [n, ...config.input.shape]; returns the output [n, classes].
    /// Goes through the model's dynamic batcher; refuses at once when the
    /// queue is full and gives up at `deadline`. The request is admitted and
    /// queued (or refused) when the future is first polled.
    pub async fn infer(&self, input: Tensor, deadline: Instant) -> Result<Tensor, EngineError> {
        Ok(self.infer_timed(input, deadline).await?.output)
    }

    /// [`ModelHandle::infer`], also telling where the time went.
    pub async fn infer_timed(
        &self,
        input: Tensor,
        deadline: Instant,
    ) -> Result<Inferred, EngineError> {
        self.validate_input(&input)?;
        self.admit(input.batch_size(), deadline)?
            .infer_timed(input)
            .await
    }

    /// Admits a request of `items` rows before its input exists: the room
    /// in the queue is held while the caller decodes and preprocesses, so
    /// `queue_capacity` bounds all the work accepted for this version, and
    /// requests beyond it are refused before any of it is done.
    pub fn admit(&self, items: usize, deadline: Instant) -> Result<Admission, EngineError> {
        let slot = self.0.batcher.reserve(items, deadline)?;
        Ok(Admission {
            model: self.clone(),
            slot,
            deadline,
        })
    }
    /// Stops taking requests; queued ones are still answered.
    pub(crate) fn close(&self) {
        self.0.batcher.close();
    }

    /// A reference that does not keep the version open (see [`WeakHandle`]).
    pub(crate) fn downgrade(&self) -> WeakHandle {
        WeakHandle(Arc::downgrade(&self.0))
    }
}

/// A retired version as the engine keeps it while it drains. The batcher's
/// queue closes when the last [`ModelHandle`] goes (every request that
/// resolved the version has been answered or gave up), so the engine holds
/// only this, to close the queue itself at shutdown or after the grace.
#[derive(Clone)]
pub(crate) struct WeakHandle(std::sync::Weak<VersionInner>);

impl WeakHandle {
    /// Stops the version taking requests, if any caller still holds it.
    pub(crate) fn close(&self) {
        if let Some(inner) = self.0.upgrade() {
            inner.batcher.close();
        }
    }
}

/// A request admitted to a model version's queue (see [`ModelHandle::admit`]).
pub struct Admission {
    model: ModelHandle,
    slot: Slot,
    deadline: Instant,
}

impl Admission {
    /// When the request stops waiting.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Records, in the version's `fovea_decode_wait_seconds`, how long the
    /// request waited for a decode thread.
    pub fn record_decode_wait(&self, waited: Duration) {
        self.slot.record_decode_wait(waited);
    }

    /// Records, in the version's `fovea_preprocess_seconds`, how long
    /// decoding and preprocessing took.
    pub fn record_preprocess(&self, took: Duration) {
        self.slot.record_preprocess(took);
    }

    /// Runs `input` ([n, ...], n = the admitted rows) through the batcher.
    pub async fn infer(self, input: Tensor) -> Result<Tensor, EngineError> {
        Ok(self.infer_timed(input).await?.output)
    }

    /// [`Admission::infer`], also telling where the time went.
    pub async fn infer_timed(self, input: Tensor) -> Result<Inferred, EngineError> {
        let Self {
            model,
            slot,
            deadline,
        } = self;
        model.validate_input(&input)?;
        let batcher = &model.0.batcher;
        let reply = batcher.submit(slot, input, deadline)?;
        match tokio::time::timeout_at(deadline.into(), reply).await {
            Ok(Ok(answer)) => answer,
            // The thread exited without answering: the version was unloaded.
            Ok(Err(_)) => Err(batcher.unloading()),
            Err(_) => {
                batcher.count_deadline();
                Err(EngineError::DeadlineExceeded)
            }
        }
    }
}

/// Loads `spec` on its own inference thread: opens the backend, checks it
/// against the config, warms it up at batch 1 and at the maximum batch size,
/// and only then returns the handle. Errors name the model file (or the
/// caller-built model) at fault.
pub(crate) async fn load_version(spec: VersionSpec) -> Result<LoadedVersion, String> {
    let capacity = spec.config.batching.queue_capacity;
    let (batcher, worker) = batcher::channel(&spec.name, spec.version, capacity);
    let (ready_tx, ready_rx) =
        oneshot::channel::<Result<(ModelConfig, usize, &'static str), String>>();
    let thread_spec = spec.clone();
    let thread = std::thread::Builder::new()
        .name(format!("fovea-{}-v{}", spec.name, spec.version))
        .spawn(move || {
            let spec = thread_spec;
            let instances = spec.instances.max(1);
            let threads = (spec.threads / instances).max(1);
            // Every instance is checked and warmed up before the version is ready.
            let prepared = prepare_instance(&spec, threads).and_then(|(own, config, classes)| {
                let others = (1..instances)
                    .map(|_| prepare_instance(&spec, threads).map(|(backend, ..)| backend))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok((own, others, config, classes))
            });
            let (mut own, others, config, classes) = match prepared {
                Ok(prepared) => prepared,
                Err(reason) => {
                    let _ = ready_tx.send(Err(reason));
                    return;
                }
            };
            let batching = config.batching.clone();
            if ready_tx.send(Ok((config, classes, own.name()))).is_err() {
                return;
            }
            std::thread::scope(|scope| {
                for (index, mut backend) in others.into_iter().enumerate() {
                    let (worker, batching) = (worker.clone(), &batching);
                    let spawned = std::thread::Builder::new()
                        .name(format!("fovea-{}-v{}-{}", spec.name, spec.version, index + 1))
                        .spawn_scoped(scope, move || worker.run(backend.as_mut(), batching));
                    if let Err(e) = spawned {
                        tracing::warn!(model = %spec.name, version = spec.version, "cannot start instance {}: {e}", index + 1);
                    }
                }
                worker.run(own.as_mut(), &batching);
            });
        })
        .map_err(|e| format!("cannot start an inference thread: {e}"))?;
    let (config, num_classes, backend) = match ready_rx.await {
        Ok(Ok(ready)) => ready,
        Ok(Err(reason)) => return Err(reason),
        Err(_) => {
            return Err(format!("{}: the loader thread died", spec.origin()));
        }
    };
    tracing::info!(model = %spec.name, version = spec.version, backend, instances = spec.instances, "model version available");
    let handle = ModelHandle(Arc::new(VersionInner {
        name: spec.name,
        version: spec.version,
        config,
        labels: spec.labels,
        num_classes,
        backend,
        batcher,
    }));
    Ok(LoadedVersion { handle, thread })
}

/// Opens one instance of `spec` on `threads` intra-op threads, checks it
/// against the config and warms it up at batch 1 and at the maximum batch size.
fn prepare_instance(
    spec: &VersionSpec,
    threads: usize,
) -> Result<(Box<dyn Backend>, ModelConfig, usize), String> {
    let mut backend = spec.open(threads)?;
    let (config, classes) = check_signature(spec, backend.signature())?;
    for batch in [1, config.batching.max_batch_size] {
        let mut shape = vec![batch];
        shape.extend(&config.input.shape);
        backend
            .run(&Tensor::zeros(shape))
            .map_err(|e| format!("{}: warm-up at batch {batch} failed: {e}", spec.origin()))?;
    }
    Ok((backend, config, classes))
}

/// Checks the model against its config where the backend can tell, and
/// returns the config to serve with and the number of classes. For a model
/// served without a config file (a single file, caller-built backends) the
/// model's own input/output names win.
fn check_signature(
    spec: &VersionSpec,
    signature: &Signature,
) -> Result<(ModelConfig, usize), String> {
    let model = spec.origin();
    let source = spec
        .config_path
        .as_ref()
        .map_or("the configuration".to_string(), |p| p.display().to_string());
    let mut config = spec.config.clone();
    let show = |dims: &[Option<usize>]| {
        let dims: Vec<String> = dims
            .iter()
            .map(|d| d.map_or("?".to_string(), |d| d.to_string()))
            .collect();
        format!("[{}]", dims.join(", "))
    };

    for (what, field, ours, theirs) in [
        (
            "input",
            "input.name",
            &mut config.input.name,
            &signature.input_name,
        ),
        (
            "output",
            "output.name",
            &mut config.output.name,
            &signature.output_name,
        ),
    ] {
        if ours != theirs {
            if spec.config_path.is_some() {
                return Err(format!(
                    "{model}: the model's {what} is `{theirs}` but {source} says {field} = `{ours}`"
                ));
            }
            *ours = theirs.clone();
        }
    }

    let expected = &config.input.shape;
    let actual = &signature.input_shape;
    let agrees = actual.len() == expected.len() + 1
        && actual[1..]
            .iter()
            .zip(expected)
            .all(|(a, e)| a.is_none_or(|a| a == *e));
    if !agrees {
        return Err(format!(
            "{model}: the model's input `{}` has shape {} but {source} says input.shape = {:?} (plus the batch dimension)",
            signature.input_name,
            show(actual),
            expected
        ));
    }

    if signature.output_shape.len() != 2 {
        return Err(format!(
            "{model}: fovea classifies [batch, classes] outputs; `{}` has shape {}",
            signature.output_name,
            show(&signature.output_shape)
        ));
    }
    let from_labels = (!spec.labels.is_empty()).then(|| spec.labels.len());
    let classes = signature
        .num_classes()
        .or(config.output.classes)
        .or(from_labels)
        .ok_or_else(|| {
            format!("{model}: the number of classes is unknown: give output.classes or a labels file in {source}")
        })?;
    if let Some(declared) = config.output.classes.filter(|c| *c != classes) {
        return Err(format!(
            "{model}: the model outputs {classes} classes but {source} says output.classes = {declared}"
        ));
    }
    if let Some(labelled) = from_labels.filter(|n| *n != classes) {
        let labels = config
            .output
            .labels
            .as_ref()
            .map_or("the labels".to_string(), |p| p.display().to_string());
        return Err(format!(
            "{model}: the model outputs {classes} classes but {labels} has {labelled} labels"
        ));
    }
    Ok((config, classes))
}

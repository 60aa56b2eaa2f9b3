//! The engine: which model versions exist and in what state, routing a
//! (model, version) to its handle, and reconciling with the repository on
//! disk (load new versions, reload changed ones, drain and unload removed ones).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use fovea_core::{BatchingOverrides, Labels, ModelConfig};
use serde::Serialize;

use crate::backend::{BackendChoice, BackendFactory, BackendTuning, FileOpener, name_of, probe};
use crate::error::EngineError;
use crate::model::{LoadedVersion, ModelHandle, Opener, VersionSpec, WeakHandle, load_version};
use crate::repository::{self, Fingerprint};

/// How the engine runs models.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineOptions {
    /// Which inference library to use.
    pub backend: BackendChoice,
    /// Intra-op threads for inference (per model version; `runtime.threads` in a config overrides it).
    pub threads: usize,
    /// How often to re-scan the repository for new, changed or removed versions; `None` = never.
    pub poll_interval: Option<Duration>,
    /// Batching settings that replace every model's own (command-line overrides).
    pub batching: BatchingOverrides,
    /// Instances per model version, replacing every config's `runtime.instances`.
    pub instances: Option<usize>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            backend: BackendChoice::Auto,
            threads: fovea_core::available_cores(),
            poll_interval: None,
            batching: BatchingOverrides::default(),
            instances: None,
        }
    }
}

/// Where the models come from.
// Built once at start-up, so the inline config's size does not matter, and
// callers construct `SingleFile { .. }` directly.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum ModelSource {
    /// A model repository directory (DESIGN.md §4).
    Repository(PathBuf),
    /// One ONNX file served as version 1 of the model `config.name` (by default the file stem).
    SingleFile {
        path: PathBuf,
        config: ModelConfig,
        labels: Labels,
    },
    /// Backends the caller builds, served as version 1 of the model
    /// `config.name` (by default `model`) exactly as a single file is:
    /// `factory` opens each instance, which is checked against `config` (its
    /// own input and output names win), warmed up and fed by the batcher.
    /// No model file and no ONNX Runtime are involved, so the engine skips
    /// its backend probe, and the backend sets its own threading; tests use
    /// it to serve a backend they control.
    Backend {
        config: ModelConfig,
        labels: Labels,
        factory: BackendFactory,
    },
    /// A model repository exactly as `Repository` (layout, scan, version
    /// policy, polling, reload), whose versions' model files `opener` opens
    /// instead of ONNX Runtime or tract. Tests use it to serve backends they
    /// control as repository versions, so hot reload is tested on the real
    /// repository path.
    RepositoryWith { root: PathBuf, opener: FileOpener },
}

/// The state of one (model, version).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelStatus {
    /// Model name.
    pub name: String,
    /// Version number (0 when a broken model has no version directory).
    pub version: u64,
    /// Where it stands.
    pub state: ModelState,
}

/// Life cycle of a model version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum ModelState {
    /// Being loaded and warmed up; not taking traffic yet.
    Loading,
    /// Taking traffic.
    Available,
    /// Could not be loaded; the reason names the file at fault.
    Failed(String),
    /// Finishing queued work before it is dropped.
    Unloading,
}

/// The inference engine: a catalogue of served model versions. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    source: ModelSource,
    /// The library model files open with, resolved and probed at start-up
    /// (left as requested, and unused, when the backends are caller-built).
    choice: BackendChoice,
    threads: usize,
    tuning: BackendTuning,
    batching: BatchingOverrides,
    instances: Option<usize>,
    catalog: RwLock<Catalog>,
    /// Serialises reconciliation passes with each other and with shutdown.
    reconciling: tokio::sync::Mutex<()>,
    poller: Mutex<Option<tokio::task::JoinHandle<()>>>,
    drains: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    stopped: AtomicBool,
    /// Stray repository entries already warned about, so polling does not repeat it.
    warned: Mutex<HashSet<PathBuf>>,
}

#[derive(Default)]
struct Catalog {
    models: BTreeMap<String, BTreeMap<u64, Slot>>,
    draining: Vec<Draining>,
    next_drain: u64,
}

struct Draining {
    id: u64,
    name: String,
    version: u64,
    /// Closes its queue at shutdown, whoever still holds the version.
    handle: WeakHandle,
}

/// One (model, version). `serving` is set exactly when it takes traffic.
struct Slot {
    state: ModelState,
    serving: Option<Serving>,
    fingerprint: Option<Fingerprint>,
}

struct Serving {
    handle: ModelHandle,
    thread: JoinHandle<()>,
}

/// What the source says a model should be.
enum ModelPlan {
    Serve(Vec<VersionPlan>),
    /// The model cannot be served as configured; loaded versions keep serving.
    Broken {
        reason: String,
        versions: Vec<u64>,
    },
}

/// A load in flight, or its outcome once awaited.
struct Load<T> {
    name: String,
    version: u64,
    fingerprint: Option<Fingerprint>,
    result: T,
}

struct VersionPlan {
    version: u64,
    fingerprint: Option<Fingerprint>,
    /// `Err` when the version cannot even be attempted (missing model file).
    spec: Result<VersionSpec, String>,
}

/// Counts, in `fovea_model_load_failures_total{model}`, a version (or a
/// whole model, for a broken config) that could not be loaded. Each failure
/// is counted once, when it is first seen: polling an unchanged repository
/// counts nothing more.
fn count_load_failure(model: &str) {
    load_failures(model).increment(1);
}

fn load_failures(model: &str) -> metrics::Counter {
    metrics::counter!("fovea_model_load_failures_total", "model" => model.to_string())
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Engine {
    /// Loads every model of `source`; returns once each is loaded and warmed
    /// up or has failed (a failure is recorded in `statuses`, not returned).
    /// Errors only when nothing could ever work: an unreadable repository, a
    /// backend this build lacks, or ONNX Runtime chosen (or the only one
    /// built) without its library.
    pub async fn start(source: ModelSource, options: EngineOptions) -> Result<Engine, EngineError> {
        Self::start_tuned(source, options, BackendTuning::default()).await
    }

    /// `start` with explicit backend tuning (e.g. ONNX Runtime intra-op spinning).
    pub async fn start_tuned(
        source: ModelSource,
        options: EngineOptions,
        tuning: BackendTuning,
    ) -> Result<Engine, EngineError> {
        let requested = options.backend;
        let choice = match &source {
            ModelSource::Backend { .. } | ModelSource::RepositoryWith { .. } => requested,
            // Probing ONNX Runtime runs python3 and dlopen: keep it off the async workers.
            ModelSource::Repository(_) | ModelSource::SingleFile { .. } => {
                tokio::task::spawn_blocking(move || probe(requested))
                    .await
                    .map_err(|e| EngineError::Load(format!("backend probe failed: {e}")))??
            }
        };
        if let ModelSource::Repository(root) | ModelSource::RepositoryWith { root, .. } = &source
            && !root.is_dir()
        {
            return Err(EngineError::Load(format!(
                "model repository {} is not a directory",
                root.display()
            )));
        }
        let poll = match &source {
            ModelSource::Repository(_) | ModelSource::RepositoryWith { .. } => {
                options.poll_interval
            }
            ModelSource::SingleFile { .. } | ModelSource::Backend { .. } => None,
        };
        let inner = Arc::new(Inner {
            source,
            choice,
            threads: options.threads.max(1),
            tuning,
            batching: options.batching.clone(),
            instances: options.instances,
            catalog: RwLock::new(Catalog::default()),
            reconciling: tokio::sync::Mutex::new(()),
            poller: Mutex::new(None),
            drains: Mutex::new(Vec::new()),
            stopped: AtomicBool::new(false),
            warned: Mutex::new(HashSet::new()),
        });
        Inner::reconcile(&inner).await;
        if let Some(interval) = poll {
            let poller = tokio::spawn(poll_repository(Arc::downgrade(&inner), interval));
            *lock(&inner.poller) = Some(poller);
        }
        Ok(Engine { inner })
    }

    /// True when every model has a version taking traffic. A version still
    /// loading, or one that failed, beside an available one does not count
    /// against readiness: during a reload, or after a broken new version was
    /// refused, the model answers every request, and a readiness probe that
    /// failed then would take a serving replica out of its load balancer.
    /// Before `start` returns every version has loaded or failed, so at
    /// start-up this means every model has at least one version that loaded.
    pub fn is_ready(&self) -> bool {
        if self.inner.stopped.load(Ordering::Acquire) {
            return false;
        }
        let catalog = self.inner.read();
        !catalog.models.is_empty()
            && catalog
                .models
                .values()
                .all(|versions| versions.values().any(|slot| slot.serving.is_some()))
    }

    /// `"onnxruntime"` or `"tract"`; for caller-built backends
    /// ([`ModelSource::Backend`], [`ModelSource::RepositoryWith`]), the name
    /// the default model's backend reports (`"none"` while none is available).
    pub fn backend_name(&self) -> &'static str {
        match self.inner.source {
            ModelSource::Backend { .. } | ModelSource::RepositoryWith { .. } => self
                .default_model()
                .map_or("none", |model| model.backend_name()),
            ModelSource::Repository(_) | ModelSource::SingleFile { .. } => {
                name_of(self.inner.choice)
            }
        }
    }

    /// The handle of `name` at `version`, or at its highest available version when `None`.
    pub fn model(&self, name: &str, version: Option<u64>) -> Result<ModelHandle, EngineError> {
        let catalog = self.inner.read();
        let versions = catalog
            .models
            .get(name)
            .ok_or_else(|| EngineError::ModelNotFound(name.to_string()))?;
        let not_ready = || EngineError::NotReady(name.to_string());
        match version {
            Some(version) => {
                let slot = versions
                    .get(&version)
                    .ok_or_else(|| EngineError::VersionNotFound {
                        model: name.to_string(),
                        version,
                    })?;
                slot.serving
                    .as_ref()
                    .map(|s| s.handle.clone())
                    .ok_or_else(not_ready)
            }
            None => versions
                .values()
                .rev()
                .find_map(|slot| slot.serving.as_ref().map(|s| s.handle.clone()))
                .ok_or_else(not_ready),
        }
    }

    /// The only model, or the first by name that has an available version.
    pub fn default_model(&self) -> Option<ModelHandle> {
        let catalog = self.inner.read();
        catalog.models.values().find_map(|versions| {
            versions
                .values()
                .rev()
                .find_map(|slot| slot.serving.as_ref().map(|s| s.handle.clone()))
        })
    }

    /// One status per (model, version), sorted by name then version.
    pub fn statuses(&self) -> Vec<ModelStatus> {
        let catalog = self.inner.read();
        let mut statuses: Vec<ModelStatus> = catalog
            .models
            .iter()
            .flat_map(|(name, versions)| {
                versions.iter().map(|(version, slot)| ModelStatus {
                    name: name.clone(),
                    version: *version,
                    state: slot.state.clone(),
                })
            })
            .chain(catalog.draining.iter().map(|d| ModelStatus {
                name: d.name.clone(),
                version: d.version,
                state: ModelState::Unloading,
            }))
            .collect();
        statuses.sort_by(|a, b| (&a.name, a.version).cmp(&(&b.name, b.version)));
        statuses
    }

    /// Re-scans the repository now, as the poller does (useful after deploying a version).
    pub async fn reload(&self) {
        Inner::reconcile(&self.inner).await;
    }

    /// Stops polling, stops admitting requests, answers everything queued,
    /// then stops the inference threads.
    pub async fn shutdown(&self) {
        let inner = &self.inner;
        inner.stopped.store(true, Ordering::Release);
        if let Some(poller) = lock(&inner.poller).take() {
            poller.abort();
        }
        let _reconciling = inner.reconciling.lock().await;
        let serving: Vec<Serving> = {
            let mut catalog = inner.write();
            // Versions still draining stop waiting for their callers too.
            for draining in &catalog.draining {
                draining.handle.close();
            }
            std::mem::take(&mut catalog.models)
                .into_values()
                .flat_map(BTreeMap::into_values)
                .filter_map(|slot| slot.serving)
                .collect()
        };
        for s in &serving {
            s.handle.close();
        }
        for s in serving {
            let _ = tokio::task::spawn_blocking(move || s.thread.join()).await;
        }
        let drains = std::mem::take(&mut *lock(&inner.drains));
        for drain in drains {
            let _ = drain.await;
        }
    }
}

async fn poll_repository(inner: Weak<Inner>, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        if inner.stopped.load(Ordering::Acquire) {
            return;
        }
        Inner::reconcile(&inner).await;
    }
}

impl Inner {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Catalog> {
        self.catalog.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Catalog> {
        self.catalog.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// What the source wants served now; `None` when the repository cannot be read.
    async fn plans(self: &Arc<Self>) -> Option<BTreeMap<String, ModelPlan>> {
        let spec = |name: String, version, opener, config_path, mut config: ModelConfig, labels| {
            let threads = config.runtime.threads.unwrap_or(self.threads);
            let instances = self.instances.or(config.runtime.instances).unwrap_or(1);
            config.batching = self.batching.apply(config.batching);
            VersionSpec {
                name,
                version,
                opener,
                config_path,
                config,
                labels,
                threads,
                instances,
            }
        };
        let file = |path: PathBuf| match &self.source {
            ModelSource::RepositoryWith { opener, .. } => Opener::Custom {
                path,
                opener: opener.clone(),
            },
            _ => Opener::File {
                path,
                choice: self.choice,
                tuning: self.tuning,
            },
        };
        // A single file and caller-built backends are version 1, with no
        // fingerprint: a reload finds it unchanged.
        let single = |name: String, opener, config: &ModelConfig, labels: &Labels| {
            let version = VersionPlan {
                version: 1,
                fingerprint: None,
                spec: Ok(spec(
                    name.clone(),
                    1,
                    opener,
                    None,
                    config.clone(),
                    labels.clone(),
                )),
            };
            Some(BTreeMap::from([(name, ModelPlan::Serve(vec![version]))]))
        };
        let root = match &self.source {
            ModelSource::SingleFile {
                path,
                config,
                labels,
            } => {
                let name = config.name.clone().unwrap_or_else(|| {
                    path.file_stem()
                        .map_or("model".into(), |s| s.to_string_lossy().into_owned())
                });
                return single(name, file(path.clone()), config, labels);
            }
            ModelSource::Backend {
                config,
                labels,
                factory,
            } => {
                let name = config.name.clone().unwrap_or_else(|| "model".into());
                return single(name, Opener::Factory(factory.clone()), config, labels);
            }
            ModelSource::Repository(root) | ModelSource::RepositoryWith { root, .. } => {
                root.clone()
            }
        };
        let scan = match tokio::task::spawn_blocking(move || repository::scan(&root)).await {
            Ok(Ok(scan)) => scan,
            Ok(Err(reason)) => {
                tracing::warn!("{reason}; keeping the models as they are");
                return None;
            }
            Err(e) => {
                tracing::error!("repository scan failed: {e}");
                return None;
            }
        };
        {
            let mut warned = lock(&self.warned);
            for path in scan.ignored {
                if warned.insert(path.clone()) {
                    tracing::warn!(path = %path.display(), "not a version directory (a positive integer); ignored");
                }
            }
        }
        let mut plans = BTreeMap::new();
        for model in scan.models {
            let plan = match model.entry {
                Err(reason) => ModelPlan::Broken {
                    reason,
                    versions: model.version_dirs,
                },
                Ok(entry) if entry.versions.is_empty() => ModelPlan::Broken {
                    reason: format!(
                        "{}: no version directory with a model.onnx (like {0}/1/model.onnx) matches the version policy {:?}",
                        model.dir.display(),
                        entry.config.version_policy
                    ),
                    versions: Vec::new(),
                },
                Ok(entry) => ModelPlan::Serve(
                    entry
                        .versions
                        .into_iter()
                        .map(|v| VersionPlan {
                            version: v.version,
                            fingerprint: Some(v.fingerprint),
                            spec: match v.missing {
                                Some(reason) => Err(reason),
                                None => Ok(spec(
                                    model.name.clone(),
                                    v.version,
                                    file(v.model_path),
                                    Some(entry.config_path.clone()),
                                    entry.config.clone(),
                                    entry.labels.clone(),
                                )),
                            },
                        })
                        .collect(),
                ),
            };
            plans.insert(model.name, plan);
        }
        Some(plans)
    }

    /// Brings the catalogue in line with the source: new and changed versions
    /// load and warm up while the old ones keep serving, then versions no
    /// longer wanted drain and unload, but only once the model has another
    /// version available (or the model itself is gone).
    async fn reconcile(self: &Arc<Self>) {
        let _reconciling = self.reconciling.lock().await;
        if self.stopped.load(Ordering::Acquire) {
            return;
        }
        let Some(plans) = self.plans().await else {
            return;
        };
        let loads = self.start_loading(&plans);
        let mut results = Vec::with_capacity(loads.len());
        for Load {
            name,
            version,
            fingerprint,
            result: task,
        } in loads
        {
            let result = task
                .await
                .unwrap_or_else(|e| Err(format!("the loader task failed: {e}")));
            results.push(Load {
                name,
                version,
                fingerprint,
                result,
            });
        }
        let retired = self.finish_loading(results, &plans);
        self.drain(retired);
    }

    /// Marks what must load as `Loading` (or keeps it serving) and spawns the loads.
    fn start_loading(
        &self,
        plans: &BTreeMap<String, ModelPlan>,
    ) -> Vec<Load<tokio::task::JoinHandle<Result<LoadedVersion, String>>>> {
        let mut loads = Vec::new();
        let mut catalog = self.write();
        for (name, plan) in plans {
            if !catalog.models.contains_key(name) {
                // At 0 from the model's first sight, as the per-version
                // series are from its load: a rate over it needs a start.
                load_failures(name).increment(0);
            }
            let slots = catalog.models.entry(name.clone()).or_default();
            match plan {
                ModelPlan::Broken { reason, versions } => {
                    if slots.values().any(|s| s.serving.is_some()) {
                        continue;
                    }
                    let failed = ModelState::Failed(reason.clone());
                    if slots.values().any(|s| s.state != failed) || slots.is_empty() {
                        tracing::error!(model = %name, "cannot serve: {reason}");
                        count_load_failure(name);
                    }
                    slots.clear();
                    let versions = if versions.is_empty() {
                        &[0][..]
                    } else {
                        versions
                    };
                    for version in versions {
                        slots.insert(*version, Slot::idle(failed.clone(), None));
                    }
                }
                ModelPlan::Serve(versions) => {
                    for plan in versions {
                        let existing = slots.get(&plan.version);
                        if existing.is_some_and(|s| s.fingerprint == plan.fingerprint) {
                            continue;
                        }
                        let serving = existing.is_some_and(|s| s.serving.is_some());
                        match &plan.spec {
                            Err(reason) if !serving => {
                                tracing::error!(model = %name, version = plan.version, "cannot serve: {reason}");
                                count_load_failure(name);
                                let state = ModelState::Failed(reason.clone());
                                slots.insert(
                                    plan.version,
                                    Slot::idle(state, plan.fingerprint.clone()),
                                );
                            }
                            Err(_) => {}
                            Ok(spec) => {
                                if !serving {
                                    slots.insert(
                                        plan.version,
                                        Slot::idle(ModelState::Loading, None),
                                    );
                                }
                                tracing::info!(model = %name, version = plan.version, from = %spec.origin(), "loading");
                                loads.push(Load {
                                    name: name.clone(),
                                    version: plan.version,
                                    fingerprint: plan.fingerprint.clone(),
                                    result: tokio::spawn(load_version(spec.clone())),
                                });
                            }
                        }
                    }
                }
            }
        }
        loads
    }

    /// Records load outcomes and removes versions no longer wanted; returns
    /// the instances to drain.
    fn finish_loading(
        &self,
        loads: Vec<Load<Result<LoadedVersion, String>>>,
        plans: &BTreeMap<String, ModelPlan>,
    ) -> Vec<(String, u64, Serving)> {
        let mut retired = Vec::new();
        let mut catalog = self.write();
        for Load {
            name,
            version,
            fingerprint,
            result,
        } in loads
        {
            let slot = catalog
                .models
                .entry(name.clone())
                .or_default()
                .entry(version)
                .or_insert_with(|| Slot::idle(ModelState::Loading, None));
            slot.fingerprint = fingerprint;
            match result {
                Ok(loaded) => {
                    let serving = Serving {
                        handle: loaded.handle,
                        thread: loaded.thread,
                    };
                    if let Some(old) = slot.serving.replace(serving) {
                        retired.push((name, version, old));
                    }
                    slot.state = ModelState::Available;
                }
                Err(reason) if slot.serving.is_some() => {
                    tracing::error!(model = %name, version, "reload failed, the loaded instance keeps serving: {reason}");
                    count_load_failure(&name);
                }
                Err(reason) => {
                    tracing::error!(model = %name, version, "failed to load: {reason}");
                    count_load_failure(&name);
                    slot.state = ModelState::Failed(reason);
                }
            }
        }
        for (name, slots) in catalog.models.iter_mut() {
            let wanted: BTreeSet<u64> = match plans.get(name) {
                None => BTreeSet::new(),
                Some(ModelPlan::Serve(versions)) => versions.iter().map(|v| v.version).collect(),
                // Nothing is known to replace what is loaded: keep it all.
                Some(ModelPlan::Broken { .. }) => continue,
            };
            let replaced = plans.get(name).is_none()
                || slots
                    .iter()
                    .any(|(v, s)| wanted.contains(v) && s.serving.is_some());
            slots.retain(|version, slot| {
                if wanted.contains(version) {
                    return true;
                }
                match slot.serving.take() {
                    None => false,
                    Some(serving) if replaced => {
                        retired.push((name.clone(), *version, serving));
                        false
                    }
                    Some(serving) => {
                        slot.serving = Some(serving);
                        true
                    }
                }
            });
        }
        catalog.models.retain(|_, slots| !slots.is_empty());
        retired
    }

    /// Unloads each retired version once the requests that resolved it are
    /// answered. It has left the catalogue, so no new request finds it; but
    /// a request may have resolved it just before, and be between resolving
    /// and queueing (decoding its images, fetching a URL): closing the queue
    /// now would fail that request. So the queue closes when the last handle
    /// to the version is dropped, that is when every such request has been
    /// answered or has given up, and at the latest after the version's
    /// request timeout: each of them arrived before the retirement, so its
    /// deadline has passed by then, and a caller that keeps a handle for
    /// longer cannot keep the version loaded. Queued requests are answered
    /// before the thread exits.
    fn drain(self: &Arc<Self>, retired: Vec<(String, u64, Serving)>) {
        for (name, version, serving) in retired {
            let Serving { handle, thread } = serving;
            let weak = handle.downgrade();
            let grace = Duration::from_millis(handle.config().batching.timeout_ms);
            drop(handle);
            let id = {
                let mut catalog = self.write();
                catalog.next_drain += 1;
                let id = catalog.next_drain;
                catalog.draining.push(Draining {
                    id,
                    name: name.clone(),
                    version,
                    handle: weak.clone(),
                });
                id
            };
            tracing::info!(model = %name, version, "draining");
            let inner = Arc::downgrade(self);
            let task = tokio::spawn(async move {
                let mut joined = tokio::task::spawn_blocking(move || thread.join());
                tokio::select! {
                    _ = &mut joined => {}
                    () = tokio::time::sleep(grace) => {
                        weak.close();
                        let _ = joined.await;
                    }
                }
                if let Some(inner) = inner.upgrade() {
                    inner.write().draining.retain(|d| d.id != id);
                }
                tracing::info!(model = %name, version, "unloaded");
            });
            let mut drains = lock(&self.drains);
            drains.retain(|t| !t.is_finished());
            drains.push(task);
        }
    }
}

impl Slot {
    fn idle(state: ModelState, fingerprint: Option<Fingerprint>) -> Self {
        Self {
            state,
            serving: None,
            fingerprint,
        }
    }
}

//! `GET /api/v1/models`: the simple API's model listing (which models and
//! versions are served, in what state, and what a request that names none
//! gets). The demo page and the start banner read the same [`catalog`].
//! `POST /api/v1/models/reload`: the operator's trigger for a rescan of the
//! repository, answered with the listing once it is done.

use axum::Json;
use axum::extract::State;
use fovea_engine::{Engine, ModelState, ModelStatus};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::state::AppState;

/// Every served model, with the backend running them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[schema(example = json!({
    "backend": "onnxruntime",
    "models": [{
        "name": "resnet18-cifar10", "default": true, "default_version": 6,
        "versions": [{"version": 5, "state": "available"}, {"version": 6, "state": "available"}]
    }]
}))]
pub struct ModelList {
    /// `onnxruntime` or `tract`; null while models are still loading.
    pub backend: Option<&'static str>,
    /// Sorted by name; empty while models are still loading.
    pub models: Vec<ModelEntry>,
}

/// One model and its versions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ModelEntry {
    /// Model name, as requests name it.
    pub name: String,
    /// Whether `/api/v1/predict` uses this model when the request names none.
    pub default: bool,
    /// The version a request without a version gets; null when none is available.
    pub default_version: Option<u64>,
    /// Every version the engine knows, ascending.
    pub versions: Vec<VersionEntry>,
}

/// One version of a model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct VersionEntry {
    /// Version number (the directory name in the repository).
    pub version: u64,
    /// Where the version stands.
    pub state: VersionState,
    /// Why the version failed to load; only present when `state` is `failed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Life cycle of a model version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum VersionState {
    /// Being loaded and warmed up; not taking traffic yet.
    Loading,
    /// Taking traffic.
    Available,
    /// Could not be loaded.
    Failed,
    /// Finishing queued work before it is dropped.
    Unloading,
}

impl VersionEntry {
    fn new(status: ModelStatus) -> Self {
        let (state, reason) = match status.state {
            ModelState::Loading => (VersionState::Loading, None),
            ModelState::Available => (VersionState::Available, None),
            ModelState::Failed(reason) => (VersionState::Failed, Some(reason)),
            ModelState::Unloading => (VersionState::Unloading, None),
        };
        Self {
            version: status.version,
            state,
            reason,
        }
    }
}

/// The listing of `engine`, or the empty one while models load (no engine yet).
pub fn catalog(engine: Option<&Engine>) -> ModelList {
    let Some(engine) = engine else {
        return ModelList {
            backend: None,
            models: Vec::new(),
        };
    };
    let default = engine.default_model();
    let mut models: Vec<ModelEntry> = Vec::new();
    // `statuses` is sorted by name then version, so each model's versions are adjacent.
    for status in engine.statuses() {
        if models.last().is_none_or(|m| m.name != status.name) {
            models.push(ModelEntry {
                default: default.as_ref().is_some_and(|d| d.name() == status.name),
                // The same choice a request without a version gets.
                default_version: engine.model(&status.name, None).ok().map(|m| m.version()),
                name: status.name.clone(),
                versions: Vec::new(),
            });
        }
        if let Some(model) = models.last_mut() {
            model.versions.push(VersionEntry::new(status));
        }
    }
    ModelList {
        backend: Some(engine.backend_name()),
        models,
    }
}

/// `GET /api/v1/models`.
#[utoipa::path(
    get,
    path = "/api/v1/models",
    operation_id = "list_models",
    tag = "simple",
    summary = "List the served models",
    description = "Every model the engine knows with its versions and their states, which \
        model `/api/v1/predict` uses when the request names none, and which version a request \
        without a version gets. While models are still loading: 200 with no models.",
    responses((status = 200, description = "The models", body = ModelList)),
)]
pub async fn list(State(state): State<AppState>) -> Json<ModelList> {
    Json(catalog(state.engine()))
}

/// `POST /api/v1/models/reload`.
///
/// fovea's own endpoint rather than Triton's `POST
/// /v2/repository/models/{name}/load`: Triton's load and unload act on one
/// model, in its EXPLICIT control mode, and may carry a config to serve it
/// with, where fovea's repository is declarative (what is on disk is what is
/// served, as in Triton's POLL mode, which refuses load and unload). So this
/// does what the poller does, now: one pass over the whole repository.
#[utoipa::path(
    post,
    path = "/api/v1/models/reload",
    operation_id = "reload_models",
    tag = "simple",
    summary = "Rescan the model repository now",
    description = "Does at once what `--poll-interval-secs` does periodically: loads and warms up \
        every new or changed version beside the serving ones, then retires the versions the \
        repository no longer selects (each unloads once the requests that found it are \
        answered). Answers when the loads are done, with the listing of `GET /api/v1/models`: \
        a version that could not be loaded is `failed` with its `reason`, and the versions it \
        would have replaced keep serving. The body is ignored. A server serving one file \
        (`--model`) has nothing to rescan and answers the listing.",
    responses(
        (status = 200, description = "The models after the rescan", body = ModelList),
        (status = 503, description = "Models are still loading", body = crate::error::ErrorBody,
            headers(("Retry-After" = u32, description = "Seconds"))),
    ),
)]
pub async fn reload(State(state): State<AppState>) -> Result<Json<ModelList>, ApiError> {
    let engine = state.ready_engine()?;
    tracing::info!("repository reload requested");
    engine.reload().await;
    Ok(Json(catalog(Some(engine))))
}

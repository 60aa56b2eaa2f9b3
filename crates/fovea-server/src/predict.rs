//! `POST /api/v1/predict`: the simple API. Translates the request into
//! images → preprocessing (blocking pool) → the model's batcher → top-k, and
//! the result back into JSON. No inference logic lives here.

use std::time::Instant;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use fovea_core::{ErrorKind, InputFormat};
use fovea_engine::{Admission, ModelHandle, Prediction, classify};
use serde::Serialize;

use crate::engine_path;
use crate::error::ApiError;
use crate::input::{self, ImageSource, PredictOptions};
use crate::state::AppState;

/// One image's answer.
#[derive(Debug, Serialize)]
pub struct PredictResponse {
    /// The top-1 label.
    pub class: String,
    /// The top-1 softmax score.
    pub score: f32,
    /// The top-k classes, best first.
    pub predictions: Vec<Prediction>,
    /// Model name that answered.
    pub model: String,
    /// Model version that answered.
    pub version: u64,
    /// Time from the request's arrival to its answer.
    pub latency_ms: f64,
}

/// The handler.
pub async fn predict(
    State(state): State<AppState>,
    query: Result<Query<PredictOptions>, QueryRejection>,
    request: Request,
) -> Result<Response, ApiError> {
    let arrival = Instant::now();
    let Query(query) = query?;
    let engine = state.ready_engine()?;
    let limits = state.limits();
    let parsed = input::parse(request, query, limits.max_images_per_request).await?;
    let options = &parsed.options;
    let model = match (&options.model, options.version) {
        (Some(name), version) => engine_path::lookup(&state, name, version)?,
        (None, version) => {
            let default = engine.default_model().ok_or_else(|| {
                ApiError::new(ErrorKind::Unavailable, "no_model", "no model is loaded")
            })?;
            match version {
                None => default,
                Some(v) => engine_path::lookup(&state, default.name(), Some(v))?,
            }
        }
    };
    if model.config().input.format != InputFormat::Image {
        return Err(ApiError::invalid(
            "model_takes_tensors",
            format!("model `{}` takes tensors, not images", model.name()),
        ));
    }
    let top_k = match options.top_k {
        Some(0) => {
            return Err(ApiError::invalid(
                "invalid_option",
                "top_k must be at least 1",
            ));
        }
        Some(k) => k,
        None => limits.default_top_k,
    }
    .min(model.num_classes());
    let deadline = engine_path::deadline(&model, arrival);

    let admissions = engine_path::admit_each(&model, parsed.images.len(), deadline)?;
    let several = parsed.images.len() > 1;
    // Each image enters the model's batcher on its own, so a request's
    // images batch with each other and with other requests' images alike.
    let answers =
        futures_util::future::join_all(parsed.images.into_iter().zip(admissions).enumerate().map(
            |(index, (source, admission))| {
                let (state, model) = (&state, &model);
                async move {
                    let logits = run_one(state, model, admission, source)
                        .await
                        .map_err(|e| {
                            if several {
                                engine_path::numbered(index, e)
                            } else {
                                e
                            }
                        })?;
                    Ok::<_, ApiError>(classify(&logits, model.labels(), top_k))
                }
            },
        ))
        .await;

    let latency_ms = arrival.elapsed().as_secs_f64() * 1000.0;
    let mut responses = Vec::with_capacity(answers.len());
    for answer in answers {
        let predictions = answer?;
        let (class, score) = predictions
            .first()
            .map(|p| (p.label.clone(), p.score))
            .unwrap_or_default();
        responses.push(PredictResponse {
            class,
            score,
            predictions,
            model: model.name().to_string(),
            version: model.version(),
            latency_ms,
        });
    }
    if parsed.batch {
        Ok(Json(responses).into_response())
    } else {
        let single = responses.pop().ok_or_else(|| {
            ApiError::new(
                ErrorKind::Internal,
                "no_answer",
                "no image produced an answer",
            )
        })?;
        Ok(Json(single).into_response())
    }
}

/// Fetches (if a URL), preprocesses and infers one admitted image; returns its logits.
async fn run_one(
    state: &AppState,
    model: &ModelHandle,
    admission: Admission,
    source: ImageSource,
) -> Result<Vec<f32>, ApiError> {
    let bytes: Bytes = match source {
        ImageSource::Bytes(bytes) => bytes,
        ImageSource::Url(url) => state
            .fetcher()
            .fetch(&url)
            .await
            .map_err(|e| ApiError::from_fovea(&e))?,
    };
    let output = engine_path::image(state, model, admission, bytes).await?;
    output.item(0).map(<[f32]>::to_vec).ok_or_else(|| {
        ApiError::new(
            ErrorKind::Internal,
            "empty_output",
            format!("model `{}` returned no output for the image", model.name()),
        )
    })
}

//! `POST /api/v1/predict`: the simple API. Translates the request into
//! images → preprocessing (blocking pool) → the model's batcher → top-k, and
//! the result back into JSON. No inference logic lives here.

use std::time::Instant;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, Request, State};
use axum::response::Response;
use fovea_core::ErrorKind;
use fovea_engine::Prediction;
use fovea_pipeline::{ImageInput, Item, Pipeline, SourceError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{ApiError, ErrorBody};
use crate::input::{self, ImageSource, PredictOptions};
use crate::state::AppState;
use crate::timing::timed;

/// One image's answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "class": "cat", "score": 0.93,
    "predictions": [{"label": "cat", "index": 3, "score": 0.93}, {"label": "dog", "index": 5, "score": 0.04}],
    "model": "resnet18-cifar10", "version": 6, "latency_ms": 4.1
}))]
pub struct PredictResponse {
    /// The top-1 label.
    pub class: String,
    /// The top-1 softmax score.
    pub score: f32,
    /// The top-k classes, best first.
    #[schema(value_type = Vec<PredictionJson>)]
    pub predictions: Vec<Prediction>,
    /// Model name that answered.
    pub model: String,
    /// Model version that answered.
    pub version: u64,
    /// Time from the request's arrival to its answer.
    pub latency_ms: f64,
}

/// How fovea-engine's [`Prediction`] serialises (it has no schema of its
/// own: the engine knows nothing of HTTP); a test keeps the two in step.
#[derive(ToSchema)]
#[schema(as = Prediction)]
#[allow(dead_code)]
pub struct PredictionJson {
    /// Class name from the labels file.
    label: String,
    /// Output index of the class.
    index: usize,
    /// Softmax probability.
    score: f32,
}

/// The answer: one object for one image, a list (in request order) for several.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum PredictAnswer {
    /// One image was sent.
    One(PredictResponse),
    /// Several images were sent (a multipart batch).
    Batch(Vec<PredictResponse>),
}

/// The multipart form (described here, parsed by `input::parse`).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct PredictForm {
    /// One or more image files (JPEG, PNG, WebP, GIF, BMP, TIFF); several make a batch.
    #[schema(schema_with = image_files)]
    image: Vec<Vec<u8>>,
    // Form fields are text and have no null: absent is the only "none".
    /// Model name; overrides the query string.
    #[schema(required = false)]
    model: String,
    /// Model version; overrides the query string.
    #[schema(required = false)]
    version: u64,
    /// Classes to return; overrides the query string.
    #[schema(required = false, minimum = 1)]
    top_k: usize,
}

fn image_files() -> utoipa::openapi::Array {
    use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
    let file = ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)));
    utoipa::openapi::ArrayBuilder::new()
        .items(file)
        .min_items(Some(1))
        .build()
}

/// The JSON body: exactly one of `image_base64` and `url`, plus options.
#[derive(ToSchema)]
#[schema(example = json!({"image_base64": crate::openapi::EXAMPLE_PNG_BASE64, "top_k": 3}))]
#[allow(dead_code)]
pub struct PredictJson {
    /// The image, base64 (standard or URL-safe, padded or not, or a `data:image/...;base64,` URL).
    image_base64: Option<String>,
    /// An http(s) URL the server fetches (only with `serve --allow-url-fetch`; 422 otherwise).
    url: Option<String>,
    /// Model name; overrides the query string.
    model: Option<String>,
    /// Model version; overrides the query string.
    version: Option<u64>,
    /// Classes to return; overrides the query string.
    #[schema(minimum = 1)]
    top_k: Option<usize>,
}

/// The handler.
#[utoipa::path(
    post,
    path = "/api/v1/predict",
    tag = "simple",
    summary = "Classify images",
    description = "The image comes as a multipart form (field `image`, repeated for a batch), as \
        JSON (`image_base64` or `url`), or as the raw body with an image content type. Options \
        come from the query string or the body (the body wins). Without `model`, the default \
        model of `GET /api/v1/models` answers.",
    params(
        ("model" = Option<String>, Query, description = "Model name; the default model when absent"),
        ("version" = Option<u64>, Query, description = "Model version; the highest available when absent"),
        ("top_k" = Option<usize>, Query, minimum = 1, description = "Classes to return (default 5, at most the model's classes)"),
    ),
    request_body(
        description = "The image(s); raw image bodies take any of the listed image types",
        content(
            (PredictForm = "multipart/form-data"),
            (PredictJson = "application/json"),
        ),
    ),
    responses(
        (status = 200, description = "Top-k classes: one object per image, a list for a batch", body = PredictAnswer),
        (status = 400, description = "Malformed body or options, undecodable image", body = ErrorBody),
        (status = 404, description = "No such model or version", body = ErrorBody),
        (status = 413, description = "Body, image or batch over the limits", body = ErrorBody),
        (status = 415, description = "Missing or unsupported Content-Type, or an image format fovea does not decode", body = ErrorBody),
        (status = 422, description = "URL fetching refused (disabled, private address, upstream error)", body = ErrorBody),
        (status = 503, description = "Models are still loading, the model is unavailable, or its queue is full",
            body = ErrorBody, headers(("Retry-After" = u32, description = "Seconds"))),
        (status = 504, description = "The deadline passed, or the URL's server did not answer in time", body = ErrorBody),
        (status = 500, description = "Inference failed", body = ErrorBody),
    ),
)]
pub async fn predict(
    State(state): State<AppState>,
    query: Result<Query<PredictOptions>, QueryRejection>,
    request: Request,
) -> Result<Response, ApiError> {
    let arrival = Instant::now();
    let Query(query) = query?;
    let pipeline = state.pipeline();
    pipeline.ready_engine()?;
    let parsed = input::parse(request, query, pipeline.limits().max_images_per_request).await?;
    let options = &parsed.options;
    let model = pipeline.image_model(options.model.as_deref(), options.version)?;
    let top_k = pipeline.top_k(&model, options.top_k)?;
    let items = parsed
        .images
        .into_iter()
        .map(|source| Item::Image(image_input(&state, source)))
        .collect();
    let classified = pipeline
        .classify(&model, items, top_k, Pipeline::deadline(&model, arrival))
        .await?;

    let latency_ms = arrival.elapsed().as_secs_f64() * 1000.0;
    let mut responses: Vec<PredictResponse> = classified
        .items
        .into_iter()
        .map(|predictions| {
            let (class, score) = predictions
                .first()
                .map(|p| (p.label.clone(), p.score))
                .unwrap_or_default();
            PredictResponse {
                class,
                score,
                predictions,
                model: model.name().to_string(),
                version: model.version(),
                latency_ms,
            }
        })
        .collect();
    let answer = if parsed.batch {
        PredictAnswer::Batch(responses)
    } else {
        PredictAnswer::One(responses.pop().ok_or_else(|| {
            ApiError::new(
                ErrorKind::Internal,
                "no_answer",
                "no image produced an answer",
            )
        })?)
    };
    Ok(timed(Json(answer), classified.timings))
}

/// An image of the request as the pipeline takes it: a URL is fetched only
/// once the request has been admitted.
fn image_input(state: &AppState, source: ImageSource) -> ImageInput {
    match source {
        ImageSource::Bytes(bytes) => ImageInput::Bytes(bytes),
        ImageSource::Url(url) => {
            let fetcher = state.fetcher().clone();
            ImageInput::Deferred(Box::pin(async move {
                fetcher
                    .fetch(&url)
                    .await
                    .map_err(|e| Box::new(e) as SourceError)
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_prediction_has_the_engines_fields() {
        let prediction = Prediction {
            label: "cat".into(),
            index: 3,
            score: 0.5,
        };
        let value = serde_json::to_value(&prediction).unwrap();
        let mut keys: Vec<&str> = value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        let schema =
            serde_json::to_value(<PredictionJson as utoipa::PartialSchema>::schema()).unwrap();
        let mut documented: Vec<&str> = schema["properties"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        documented.sort_unstable();
        assert_eq!(keys, documented);
    }
}

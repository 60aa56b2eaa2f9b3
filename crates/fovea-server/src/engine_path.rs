//! The one path from a decoded request to the engine, shared by the simple
//! API, TF Serving and KServe (REST and gRPC): model lookup, encoded images →
//! preprocessing on the blocking pool under the decode permits, numeric
//! tensors → the model's shape check, then the model's batcher.

use std::time::{Duration, Instant};

use bytes::Bytes;
use fovea_core::{ErrorKind, InputFormat, Tensor};
use fovea_engine::{Admission, EngineError, ModelHandle};
use fovea_proto::TensorValue;
use fovea_vision::ImageLimits;

use crate::error::ApiError;
use crate::state::AppState;

/// What a request hands the model: encoded images or a ready batch.
#[derive(Debug)]
pub enum ModelInput {
    /// Encoded images, one batch item each; fovea preprocesses them.
    Images(Vec<Bytes>),
    /// A preprocessed batch `[n, ...input shape]`.
    Tensor(Tensor),
}

/// The handle of `name` at `version` (highest available when `None`).
pub fn lookup(state: &AppState, name: &str, version: Option<u64>) -> Result<ModelHandle, ApiError> {
    state
        .ready_engine()?
        .model(name, version)
        .map_err(|e| ApiError::from_fovea(&e))
}

/// The model a simple-API request or a stream names (the default model when
/// it names none), which must take encoded images.
pub fn image_model(
    state: &AppState,
    name: Option<&str>,
    version: Option<u64>,
) -> Result<ModelHandle, ApiError> {
    let model = match name {
        Some(name) => lookup(state, name, version)?,
        None => {
            let default = state.ready_engine()?.default_model().ok_or_else(|| {
                ApiError::new(ErrorKind::Unavailable, "no_model", "no model is loaded")
            })?;
            match version {
                None => default,
                Some(v) => lookup(state, default.name(), Some(v))?,
            }
        }
    };
    if model.config().input.format != InputFormat::Image {
        return Err(ApiError::invalid(
            "model_takes_tensors",
            format!("model `{}` takes tensors, not images", model.name()),
        ));
    }
    Ok(model)
}

/// The classes to answer with: the request's `top_k` (at least 1) or the
/// server's default, at most the model's class count.
pub fn top_k(
    state: &AppState,
    model: &ModelHandle,
    asked: Option<usize>,
) -> Result<usize, ApiError> {
    let k = match asked {
        Some(0) => {
            return Err(ApiError::invalid(
                "invalid_option",
                "top_k must be at least 1",
            ));
        }
        Some(k) => k,
        None => state.limits().default_top_k,
    };
    Ok(k.min(model.num_classes()))
}

/// When a request that arrived at `arrival` stops waiting for `model`.
pub fn deadline(model: &ModelHandle, arrival: Instant) -> Instant {
    arrival + Duration::from_millis(model.config().batching.timeout_ms)
}

/// Most elements a protocol tensor may declare: a body cannot carry more
/// f32 values than it has 4-byte groups, and fill rules must not expand past that.
pub fn max_elements(state: &AppState) -> usize {
    state.limits().max_body_bytes / 4
}

/// Classifies a decoded protocol tensor: byte strings are encoded images
/// (accepted only by image models), numbers a ready tensor.
pub fn model_input(model: &ModelHandle, value: TensorValue) -> Result<ModelInput, ApiError> {
    match value {
        TensorValue::F32(tensor) => Ok(ModelInput::Tensor(tensor)),
        TensorValue::Bytes(bytes) => {
            if model.config().input.format != InputFormat::Image {
                return Err(ApiError::invalid(
                    "model_takes_tensors",
                    format!(
                        "model `{}` takes numeric tensors, not encoded images",
                        model.name()
                    ),
                ));
            }
            Ok(ModelInput::Images(bytes.items))
        }
    }
}

/// The model input of a request that must carry exactly the model's one
/// input tensor, under its name.
pub fn single_input(
    model: &ModelHandle,
    inputs: Vec<(String, TensorValue)>,
) -> Result<ModelInput, ApiError> {
    let input_name = &model.config().input.name;
    let count = inputs.len();
    let Some((name, value)) = inputs.into_iter().next().filter(|_| count == 1) else {
        return Err(ApiError::invalid(
            "wrong_input_count",
            format!(
                "model `{}` takes exactly one input `{input_name}`, got {count}",
                model.name()
            ),
        ));
    };
    if &name != input_name {
        return Err(ApiError::invalid(
            "unknown_input",
            format!(
                "model `{}` has no input `{name}`; its input is `{input_name}`",
                model.name()
            ),
        ));
    }
    model_input(model, value)
}

/// Runs `input` through `model`; returns the output `[n, classes]`.
pub async fn run(
    state: &AppState,
    model: &ModelHandle,
    input: ModelInput,
    deadline: Instant,
) -> Result<Tensor, ApiError> {
    match input {
        ModelInput::Tensor(tensor) => model
            .infer(tensor, deadline)
            .await
            .map_err(|e| ApiError::from_fovea(&e)),
        ModelInput::Images(images) => {
            let limit = state.limits().max_images_per_request;
            if images.is_empty() {
                return Err(ApiError::invalid("no_image", "the request holds no image"));
            }
            if images.len() > limit {
                return Err(ApiError::new(
                    ErrorKind::TooLarge,
                    "too_many_images",
                    format!(
                        "{} images exceed the limit of {limit} per request",
                        images.len()
                    ),
                ));
            }
            let admissions = admit_each(model, images.len(), deadline)?;
            let several = images.len() > 1;
            // Each image enters the batcher on its own, so a request's images
            // batch with each other and with other requests' images alike.
            let outputs =
                futures_util::future::join_all(images.into_iter().zip(admissions).enumerate().map(
                    |(index, (bytes, admission))| async move {
                        image(state, model, admission, bytes)
                            .await
                            .map_err(|e| if several { numbered(index, e) } else { e })
                    },
                ))
                .await
                .into_iter()
                .collect::<Result<Vec<_>, _>>()?;
            Tensor::concat(&outputs)
                .map_err(|e| ApiError::new(ErrorKind::Internal, "output_mismatch", e.to_string()))
        }
    }
}

/// Admits `count` single images to `model`'s queue, all or none, before
/// any of them is decoded: a request the server has no room for is refused
/// at once and costs no decoding.
pub fn admit_each(
    model: &ModelHandle,
    count: usize,
    deadline: Instant,
) -> Result<Vec<Admission>, ApiError> {
    (0..count)
        .map(|_| model.admit(1, deadline))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ApiError::from_fovea(&e))
}

/// Preprocesses one admitted encoded image and infers it; returns the output `[1, classes]`.
pub async fn image(
    state: &AppState,
    model: &ModelHandle,
    admission: Admission,
    bytes: Bytes,
) -> Result<Tensor, ApiError> {
    let limits = ImageLimits {
        max_bytes: state.limits().max_body_bytes,
        max_pixels: state.limits().max_pixels,
    };
    let waiting = Instant::now();
    let permit = match tokio::time::timeout_at(
        admission.deadline().into(),
        state.decode_permits().acquire(),
    )
    .await
    {
        Ok(Ok(permit)) => permit,
        Ok(Err(_)) => {
            return Err(ApiError::new(
                ErrorKind::Unavailable,
                "shutting_down",
                "server is shutting down",
            ));
        }
        Err(_) => return Err(ApiError::from_fovea(&EngineError::DeadlineExceeded)),
    };
    admission.record_decode_wait(waiting.elapsed());
    let spec = model.config().preprocess.clone();
    let started = Instant::now();
    let tensor =
        tokio::task::spawn_blocking(move || fovea_vision::preprocess(&bytes, &spec, &limits))
            .await
            .map_err(|e| ApiError::new(ErrorKind::Internal, "preprocess_panicked", e.to_string()))?
            .map_err(|e| ApiError::from_fovea(&e))?;
    admission.record_preprocess(started.elapsed());
    drop(permit);
    admission
        .infer(tensor)
        .await
        .map_err(|e| ApiError::from_fovea(&e))
}

/// Names the failing image of a batch in the message.
pub fn numbered(index: usize, mut error: ApiError) -> ApiError {
    error.message = format!("image {index}: {}", error.message);
    error
}

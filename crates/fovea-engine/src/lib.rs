//! fovea's inference engine: backends (ONNX Runtime, tract) behind one
//! synchronous trait, the model repository with versions and hot reload, one
//! dynamic batcher per model version, classification postprocessing, and
//! static int8 quantisation of fp32 models (`quantize`).
//! It knows nothing about HTTP.

mod backend;
mod batcher;
mod bench;
mod engine;
mod error;
mod model;
mod postprocess;
pub mod quantize;
mod repository;

pub use backend::{
    Backend, BackendChoice, BackendTuning, ORT_WHEEL, OrtBackend, Signature, TractBackend,
    backend_name, open_backend, open_backend_tuned, ort_library_path, ort_runtime_status,
    resolve_choice,
};
pub use batcher::BatchStats;
pub use bench::{BenchResult, bench_backend};
pub use engine::{Engine, EngineOptions, ModelSource, ModelState, ModelStatus};
pub use error::{BackendError, EngineError};
pub use model::{Admission, ModelHandle};
pub use postprocess::{Prediction, classify, softmax};
pub use repository::model_versions;

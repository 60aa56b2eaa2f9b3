//! fovea's inference engine: backends (ONNX Runtime, tract; each a cargo
//! feature) behind one synchronous trait, the model repository with versions
//! and hot reload, one dynamic batcher per model version, and classification
//! postprocessing. It knows nothing about HTTP, wire protocols or the ONNX
//! file format (int8 quantisation is fovea-quantize's).

mod backend;
mod batcher;
mod bench;
mod engine;
mod error;
mod model;
mod postprocess;
mod repository;

#[cfg(feature = "tract")]
pub use backend::TractBackend;
pub use backend::{
    Backend, BackendChoice, BackendFactory, BackendTuning, FileOpener, ORT_WHEEL, Signature,
    backend_name, open_backend, open_backend_tuned, ort_runtime_status, resolve_choice,
};
#[cfg(feature = "onnxruntime")]
pub use backend::{OrtBackend, ort_environment, ort_library_path};
pub use batcher::{BatchStats, Inferred};
pub use bench::{BenchResult, bench_backend};
pub use engine::{Engine, EngineOptions, ModelSource, ModelState, ModelStatus};
pub use error::{BackendError, EngineError, WriteModelError};
pub use model::{Admission, ModelHandle};
pub use postprocess::{Prediction, classify, softmax};
pub use repository::{
    Fingerprint, Scan, ScannedEntry, ScannedModel, ScannedVersion, next_version,
    scan as scan_repository, version_dirs, version_model_path, write_new_model,
};

//! Plain data shared by every fovea crate: tensors, the model configuration
//! schema, label sets, and the classification of errors into client and server
//! faults. No I/O beyond reading a config or label file, no heavy dependencies.

pub mod config;
pub mod error;
pub mod labels;
pub mod tensor;

pub use config::{
    BatchingConfig, BatchingOverrides, ColorOrder, ConfigError, InputConfig, InputFormat,
    ModelConfig, OutputConfig, PreprocessConfig, Resize, RuntimeConfig, VersionPolicy,
};
pub use error::{ErrorKind, FoveaError};
pub use labels::{LabelError, Labels};
pub use tensor::{Tensor, TensorError};

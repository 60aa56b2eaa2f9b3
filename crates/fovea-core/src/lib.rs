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

/// The cores this process may use: the default thread budget everywhere a
/// `--threads` flag is left unset (1 when the platform cannot tell).
pub fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

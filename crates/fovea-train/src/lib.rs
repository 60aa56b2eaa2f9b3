//! fovea-train: ResNet-18 definitions on libtorch (`tch`), CIFAR-10 and ImageFolder data,
//! the training loop with checkpoints, evaluation, PyTorch `.pth` import and
//! ONNX export into a fovea model repository.

pub mod augment;
pub mod checkpoint;
pub mod cli;
pub mod data;
pub mod error;
pub mod eval;
pub mod export;
pub mod model;
/// The ONNX model format the export writes (fovea-onnx, shared with the
/// quantiser).
pub use fovea_onnx as onnx;
pub mod pth;
pub mod quantize;
pub mod schedule;
pub mod svg;
pub mod torch;
pub mod train;

pub use checkpoint::Network;
pub use error::{Result, TrainError};
pub use model::{Arch, ResNet, ResNetConfig};
pub use torch::Precision;

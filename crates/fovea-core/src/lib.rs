//! Plain data shared by every fovea crate: tensors, the model configuration
//! schema, label sets, and the classification of errors into client and server
//! faults. No I/O beyond reading a config or label file, no heavy dependencies.

pub mod config;
pub mod defaults;
pub mod error;
pub mod labels;
pub mod tensor;

pub use config::{
    BatchingConfig, BatchingOverrides, ColorOrder, ConfigError, InputConfig, InputFormat,
    ModelConfig, OutputConfig, PreprocessConfig, Resize, RuntimeConfig, TestTimeAugmentation,
    VersionPolicy,
};
pub use error::{ErrorKind, FoveaError};
pub use labels::{LabelError, Labels};
pub use tensor::{Tensor, TensorError};

/// Indices of the `k` largest of `values`, largest first; ties go to the
/// lower index, and NaN ranks below every number (a model that emits NaN for
/// a class never has it reported as its best guess). The one ranking behind
/// every protocol's top-k.
pub fn top_k(values: &[f32], k: usize) -> Vec<usize> {
    let key = |v: f32| if v.is_nan() { f32::NEG_INFINITY } else { v };
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| {
        key(values[b])
            .total_cmp(&key(values[a]))
            .then(values[a].is_nan().cmp(&values[b].is_nan()))
            .then(a.cmp(&b))
    });
    order.truncate(k);
    order
}

/// The cores this process may use: the default thread budget everywhere a
/// `--threads` flag is left unset (1 when the platform cannot tell).
pub fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_ranks_largest_first_ties_by_index_and_nan_last() {
        assert_eq!(top_k(&[0.1, 0.7, 0.2, 0.7], 3), vec![1, 3, 2]);
        assert_eq!(top_k(&[f32::NAN, 0.5, f32::NEG_INFINITY], 3), vec![1, 2, 0]);
        assert_eq!(top_k(&[1.0, 2.0], 5), vec![1, 0]);
        assert!(top_k(&[], 3).is_empty());
    }
}

//! Flip test-time augmentation (`runtime.tta = "flip"`) as a backend around
//! the model's own: every batch runs once more mirrored left-right, in the
//! same call, and each item's answer is the mean of its two outputs. Wrapping
//! the backend keeps batching, admission and every protocol unaware of it: a
//! request of n images is still n items everywhere but inside this call.

use fovea_core::Tensor;

use super::{Backend, Signature};
use crate::error::BackendError;

/// Runs `inner` on `[x; mirror(x)]` and averages the two halves of its output.
pub(crate) struct FlipAveraged {
    inner: Box<dyn Backend>,
}

impl FlipAveraged {
    pub(crate) fn new(inner: Box<dyn Backend>) -> Self {
        Self { inner }
    }
}

/// `input` (`[n, c, h, w]`) followed by each item mirrored along `w`: `[2n, c, h, w]`.
fn with_mirrors(input: &Tensor) -> Result<Tensor, BackendError> {
    let shape = input.shape();
    let &[n, _, _, width] = shape else {
        return Err(BackendError::Run(format!(
            "flip test-time augmentation needs [batch, channels, height, width] inputs, got {shape:?}"
        )));
    };
    let data = input.data();
    let mut doubled = Vec::with_capacity(2 * data.len());
    doubled.extend_from_slice(data);
    if width > 0 {
        for row in data.chunks_exact(width) {
            doubled.extend(row.iter().rev());
        }
    }
    let mut doubled_shape = shape.to_vec();
    doubled_shape[0] = 2 * n;
    Tensor::new(doubled_shape, doubled).map_err(|e| BackendError::Run(e.to_string()))
}

/// The mean of the first and second half of `output` (`[2n, ...]` → `[n, ...]`).
fn mean_of_halves(output: Tensor, n: usize) -> Result<Tensor, BackendError> {
    let (mut shape, data) = output.into_parts();
    if shape.first() != Some(&(2 * n)) {
        return Err(BackendError::Run(format!(
            "the model answered {shape:?} for a flip-augmented batch of {}",
            2 * n
        )));
    }
    let (plain, mirrored) = data.split_at(data.len() / 2);
    let mean = plain
        .iter()
        .zip(mirrored)
        .map(|(a, b)| (a + b) / 2.0)
        .collect();
    shape[0] = n;
    Tensor::new(shape, mean).map_err(|e| BackendError::Run(e.to_string()))
}

impl Backend for FlipAveraged {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn run(&mut self, input: &Tensor) -> Result<Tensor, BackendError> {
        let output = self.inner.run(&with_mirrors(input)?)?;
        mean_of_halves(output, input.batch_size())
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_row_of_each_channel_is_mirrored_after_the_originals() {
        // Two 2-channel 2×3 images numbered 0..24.
        let input = Tensor::new(vec![2, 2, 2, 3], (0..24).map(|v| v as f32).collect()).unwrap();
        let doubled = with_mirrors(&input).unwrap();
        assert_eq!(doubled.shape(), [4, 2, 2, 3]);
        assert_eq!(&doubled.data()[..24], input.data());
        assert_eq!(
            doubled.item(2).unwrap(),
            [2., 1., 0., 5., 4., 3., 8., 7., 6., 11., 10., 9.]
        );
        assert_eq!(doubled.item(3).unwrap()[..3], [14., 13., 12.]);
    }

    #[test]
    fn the_answer_is_the_mean_of_each_item_and_its_mirror() {
        let output = Tensor::new(vec![4, 2], vec![1., 2., 3., 4., 3., 6., 5., 0.]).unwrap();
        let mean = mean_of_halves(output, 2).unwrap();
        assert_eq!(mean.shape(), [2, 2]);
        assert_eq!(mean.data(), [2., 4., 4., 2.]);
    }

    #[test]
    fn inputs_that_are_not_images_and_short_answers_are_errors() {
        let flat = Tensor::new(vec![2, 6], vec![0.; 12]).unwrap();
        assert!(matches!(with_mirrors(&flat), Err(BackendError::Run(m)) if m.contains("[2, 6]")));
        let short = Tensor::new(vec![3, 2], vec![0.; 6]).unwrap();
        assert!(
            matches!(mean_of_halves(short, 2), Err(BackendError::Run(m)) if m.contains("[3, 2]"))
        );
    }
}

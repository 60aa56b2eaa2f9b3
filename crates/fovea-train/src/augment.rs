//! Turning stored 8-bit images into normalised float batches, with the
//! training-time augmentation (padded random crop, horizontal flip, cutout).

use fovea_core::PreprocessConfig;
use rand::RngExt;
use serde::{Deserialize, Serialize};

use crate::data::Dataset;

/// Training-time augmentation; `Augment::none()` for evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Augment {
    /// Zero padding (in pixels) around the image before a random crop back to
    /// the original size; 0 disables the crop.
    pub crop_padding: usize,
    /// Mirror left-right with probability ½.
    pub flip: bool,
    /// Side of a square zeroed (after normalisation, i.e. set to the mean) at a
    /// random centre; 0 disables it.
    pub cutout: usize,
}

impl Augment {
    /// The standard CIFAR recipe: 4-pixel padded crop and flip.
    pub fn cifar() -> Self {
        Self {
            crop_padding: 4,
            flip: true,
            cutout: 0,
        }
    }

    /// No augmentation (validation, test, export calibration).
    pub fn none() -> Self {
        Self {
            crop_padding: 0,
            flip: false,
            cutout: 0,
        }
    }
}

/// Per-channel normalisation, `(x/255 - mean) / std`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Normalize {
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl Normalize {
    /// CIFAR-10's training-set statistics, as fovea serves CIFAR models.
    pub fn cifar10() -> Self {
        let p = PreprocessConfig::cifar10();
        Self {
            mean: p.mean,
            std: p.std,
        }
    }
}

/// A batch ready for the network: NCHW floats and class indices.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// `n × 3 × height × width` normalised values.
    pub images: Vec<f32>,
    pub labels: Vec<i64>,
    pub height: usize,
    pub width: usize,
}

impl Batch {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True for a batch without images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// Builds the batch of images `indices` from `data`, augmenting with `rng`.
pub fn make_batch(
    data: &Dataset,
    indices: &[usize],
    augment: &Augment,
    normalize: &Normalize,
    rng: &mut impl RngExt,
) -> Batch {
    let [h, w] = data.size();
    let plane = h * w;
    let mut images = vec![0f32; indices.len() * 3 * plane];
    for (slot, &index) in indices.iter().enumerate() {
        let src = data.image(index);
        let dst = &mut images[slot * 3 * plane..(slot + 1) * 3 * plane];
        let pad = augment.crop_padding as i32;
        let (dy, dx) = if pad > 0 {
            (
                rng.random_range(-pad..=pad) as isize,
                rng.random_range(-pad..=pad) as isize,
            )
        } else {
            (0, 0)
        };
        let flip = augment.flip && rng.random_bool(0.5);
        for c in 0..3 {
            let (mean, std) = (normalize.mean[c], normalize.std[c]);
            for y in 0..h {
                for x in 0..w {
                    let sx = if flip { w - 1 - x } else { x } as isize + dx;
                    let sy = y as isize + dy;
                    // Padding is black in pixel space, as torchvision's
                    // RandomCrop(padding=4) pads before ToTensor/Normalize.
                    let value = if sy >= 0 && sx >= 0 && (sy as usize) < h && (sx as usize) < w {
                        src[c * plane + sy as usize * w + sx as usize]
                    } else {
                        0
                    };
                    dst[c * plane + y * w + x] = (f32::from(value) / 255.0 - mean) / std;
                }
            }
        }
        if augment.cutout > 0 {
            let cy = rng.random_range(0..h) as isize;
            let cx = rng.random_range(0..w) as isize;
            let half = (augment.cutout / 2) as isize;
            let rows = (cy - half).max(0) as usize
                ..((cy - half + augment.cutout as isize).min(h as isize)) as usize;
            let cols = (cx - half).max(0) as usize
                ..((cx - half + augment.cutout as isize).min(w as isize)) as usize;
            for c in 0..3 {
                for y in rows.clone() {
                    dst[c * plane + y * w + cols.start..c * plane + y * w + cols.end].fill(0.0);
                }
            }
        }
    }
    Batch {
        images,
        labels: indices.iter().map(|&i| data.label(i) as i64).collect(),
        height: h,
        width: w,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::ChaCha8Rng;

    fn gradient_image() -> Dataset {
        // One 4×4 image whose red plane counts 0..16 so positions are visible.
        let mut pixels: Vec<u8> = (0..16).collect();
        pixels.extend([100; 16]);
        pixels.extend([200; 16]);
        Dataset::new(vec!["a".into()], [4, 4], pixels, vec![0]).unwrap()
    }

    const IDENTITY: Normalize = Normalize {
        mean: [0.0; 3],
        std: [1.0 / 255.0; 3],
    };

    #[test]
    fn without_augmentation_pixels_are_normalised_in_place() {
        let data = gradient_image();
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let batch = make_batch(
            &data,
            &[0],
            &Augment::none(),
            &Normalize::cifar10(),
            &mut rng,
        );
        assert_eq!(batch.images.len(), 48);
        let expected = (5.0 / 255.0 - 0.4914) / 0.2470;
        assert!((batch.images[5] - expected).abs() < 1e-6);
        assert_eq!(batch.labels, vec![0]);
    }

    #[test]
    fn padded_crop_shifts_content_and_fills_with_black() {
        let data = gradient_image();
        let augment = Augment {
            crop_padding: 2,
            flip: false,
            cutout: 0,
        };
        let mut shifted = false;
        for seed in 0..20 {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let batch = make_batch(&data, &[0], &augment, &IDENTITY, &mut rng);
            let red: Vec<f32> = batch.images[..16].iter().map(|v| v.round()).collect();
            // Every value is either black padding or a pixel of the source,
            // and the source's row-major order is preserved along each row.
            assert!(red.iter().all(|v| *v >= 0.0 && *v < 16.0));
            shifted |= red != (0..16).map(|v| v as f32).collect::<Vec<_>>();
        }
        assert!(shifted, "20 random crops never moved the image");
    }

    #[test]
    fn flip_mirrors_rows() {
        let data = gradient_image();
        let augment = Augment {
            crop_padding: 0,
            flip: true,
            cutout: 0,
        };
        let flipped = (0..20).any(|seed| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let batch = make_batch(&data, &[0], &augment, &IDENTITY, &mut rng);
            batch.images[..4]
                .iter()
                .map(|v| v.round())
                .collect::<Vec<_>>()
                == [3.0, 2.0, 1.0, 0.0]
        });
        assert!(flipped);
    }

    #[test]
    fn cutout_zeroes_a_square_in_every_channel() {
        let data = gradient_image();
        let augment = Augment {
            crop_padding: 0,
            flip: false,
            cutout: 2,
        };
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let batch = make_batch(&data, &[0], &augment, &IDENTITY, &mut rng);
        let green_zeros = batch.images[16..32].iter().filter(|v| **v == 0.0).count();
        let blue_zeros = batch.images[32..].iter().filter(|v| **v == 0.0).count();
        assert!((1..=4).contains(&green_zeros), "{green_zeros}");
        assert_eq!(green_zeros, blue_zeros);
    }
}

//! Turning stored 8-bit images into normalised float batches, with the
//! training-time augmentation (padded random translate, horizontal flip,
//! cutout) done batch-wide on tensors. The random choices (a few numbers per
//! image) come from a seeded `ChaCha8Rng`, so a batch is a pure function of
//! (seed, epoch, position) and independent of libtorch's global generator.

use fovea_core::PreprocessConfig;
use rand::RngExt;
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

/// Training-time augmentation; `Augment::none()` for evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Augment {
    /// Zero padding (in pixels) around the image before a random crop back to
    /// the original size, i.e. a random translate by up to this many pixels;
    /// 0 disables it.
    pub crop_padding: usize,
    /// Mirror left-right with probability ½.
    pub flip: bool,
    /// Side of a square zeroed (after normalisation, i.e. set to the mean) at a
    /// random centre; 0 disables it.
    pub cutout: usize,
}

impl Augment {
    /// The CIFAR recipe: 4-pixel padded crop and flip.
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

    /// `[n, 3, h, w]` bytes → normalised float32 on the same device.
    pub fn apply(&self, images: &Tensor) -> Tensor {
        let device = images.device();
        let channel = |v: [f32; 3]| Tensor::from_slice(&v).view([1, 3, 1, 1]).to_device(device);
        (images.to_kind(Kind::Float) / 255.0 - channel(self.mean)) / channel(self.std)
    }
}

/// `[n, 3, h, w]` bytes → augmented, normalised float32 `[n, 3, h, w]`.
pub fn augment_batch(
    images: &Tensor,
    augment: &Augment,
    normalize: &Normalize,
    rng: &mut impl RngExt,
) -> Tensor {
    let size = images.size();
    let (n, h, w) = (size[0], size[2], size[3]);
    let device = images.device();
    let pad = augment.crop_padding as i64;
    let mut rows = Vec::with_capacity(n as usize);
    let mut cols = Vec::with_capacity(n as usize);
    let mut flips = Vec::with_capacity(n as usize);
    for _ in 0..n {
        rows.push(if pad > 0 {
            rng.random_range(0..=2 * pad)
        } else {
            0
        });
        cols.push(if pad > 0 {
            rng.random_range(0..=2 * pad)
        } else {
            0
        });
        flips.push(augment.flip && rng.random_bool(0.5));
    }
    let mut x = images.shallow_clone();
    if pad > 0 || flips.iter().any(|f| *f) {
        // One gather per axis: output row y of image i reads padded row
        // y + rows[i]; column x reads padded column (flipped x) + cols[i].
        let padded = if pad > 0 {
            images.constant_pad_nd([pad, pad, pad, pad])
        } else {
            images.shallow_clone()
        };
        let along = |len: i64| Tensor::arange(len, (Kind::Int64, device)).view([1, len]);
        let offsets = |v: &[i64]| Tensor::from_slice(v).to_device(device).view([n, 1]);
        let flip = Tensor::from_slice(&flips).to_device(device).view([n, 1]);
        let ys = along(h) + offsets(&rows);
        let xs =
            along(w).where_self(&flip.logical_not(), &(along(w).neg() + (w - 1))) + offsets(&cols);
        let padded_w = padded.size()[3];
        x = padded
            .gather(
                2,
                &ys.view([n, 1, h, 1]).expand([n, 3, h, padded_w], false),
                false,
            )
            .gather(3, &xs.view([n, 1, 1, w]).expand([n, 3, h, w], false), false);
    }
    let mut x = normalize.apply(&x);
    if augment.cutout > 0 {
        let side = augment.cutout as i64;
        let (mut top, mut left) = (
            Vec::with_capacity(n as usize),
            Vec::with_capacity(n as usize),
        );
        for _ in 0..n {
            top.push(rng.random_range(0..h) - side / 2);
            left.push(rng.random_range(0..w) - side / 2);
        }
        let inside = |len: i64, starts: &[i64]| {
            let at = Tensor::arange(len, (Kind::Int64, device)).view([1, len]);
            let start = Tensor::from_slice(starts).to_device(device).view([n, 1]);
            at.ge_tensor(&start)
                .logical_and(&at.lt_tensor(&(start + side)))
        };
        let mask = inside(h, &top)
            .view([n, 1, h, 1])
            .logical_and(&inside(w, &left).view([n, 1, 1, w]));
        x = x.masked_fill(&mask, 0.0);
    }
    x
}

/// The whole dataset as one `[n, 3, h, w]` byte tensor on `device`, and its
/// labels as int64.
pub fn to_tensors(data: &crate::data::Dataset, device: Device) -> (Tensor, Tensor) {
    let [h, w] = data.size();
    let images = Tensor::from_slice(data.pixels())
        .view([data.len() as i64, 3, h as i64, w as i64])
        .to_device(device);
    let labels: Vec<i64> = data.labels().iter().map(|&l| i64::from(l)).collect();
    (images, Tensor::from_slice(&labels).to_device(device))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::ChaCha8Rng;

    /// One 4×4 image whose red plane counts 0..16 so positions are visible.
    fn gradient_image() -> Tensor {
        let mut pixels: Vec<u8> = (0..16).collect();
        pixels.extend([100; 16]);
        pixels.extend([200; 16]);
        Tensor::from_slice(&pixels).view([1, 3, 4, 4])
    }

    const IDENTITY: Normalize = Normalize {
        mean: [0.0; 3],
        std: [1.0 / 255.0; 3],
    };

    fn red(batch: &Tensor) -> Vec<f32> {
        Vec::<f32>::try_from(batch.get(0).get(0).flatten(0, -1).round()).unwrap()
    }

    #[test]
    fn without_augmentation_pixels_are_normalised_in_place() {
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let batch = augment_batch(
            &gradient_image(),
            &Augment::none(),
            &Normalize::cifar10(),
            &mut rng,
        );
        assert_eq!(batch.size(), [1, 3, 4, 4]);
        let expected = (5.0 / 255.0 - 0.4914) / 0.2470;
        let got = batch.get(0).get(0).get(1).get(1).double_value(&[]);
        assert!((got - expected).abs() < 1e-6, "{got}");
    }

    #[test]
    fn padded_crop_shifts_content_and_fills_with_black() {
        let augment = Augment {
            crop_padding: 2,
            flip: false,
            cutout: 0,
        };
        let mut shifted = false;
        for seed in 0..20 {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let values = red(&augment_batch(
                &gradient_image(),
                &augment,
                &IDENTITY,
                &mut rng,
            ));
            // Every value is black padding or a source pixel, and rows keep
            // the source's left-to-right order.
            assert!(values.iter().all(|v| (0.0..16.0).contains(v)));
            for row in values.chunks(4) {
                let real: Vec<f32> = row.iter().copied().filter(|v| *v > 0.0).collect();
                assert!(real.windows(2).all(|p| p[1] == p[0] + 1.0), "{values:?}");
            }
            shifted |= values != (0..16).map(|v| v as f32).collect::<Vec<_>>();
        }
        assert!(shifted, "20 random crops never moved the image");
    }

    #[test]
    fn flip_mirrors_rows() {
        let augment = Augment {
            crop_padding: 0,
            flip: true,
            cutout: 0,
        };
        let flipped = (0..20).any(|seed| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            red(&augment_batch(
                &gradient_image(),
                &augment,
                &IDENTITY,
                &mut rng,
            ))[..4]
                == [3.0, 2.0, 1.0, 0.0]
        });
        assert!(flipped);
    }

    #[test]
    fn cutout_zeroes_a_square_in_every_channel() {
        let augment = Augment {
            crop_padding: 0,
            flip: false,
            cutout: 2,
        };
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let batch = augment_batch(&gradient_image(), &augment, &IDENTITY, &mut rng);
        let zeros = |c: i64| {
            batch
                .get(0)
                .get(c)
                .eq(0.0)
                .sum(Kind::Int64)
                .int64_value(&[])
        };
        assert!((1..=4).contains(&zeros(1)), "{}", zeros(1));
        assert_eq!(zeros(1), zeros(2));
    }

    #[test]
    fn the_same_seed_gives_the_same_batch() {
        let augment = Augment {
            crop_padding: 2,
            flip: true,
            cutout: 2,
        };
        let images = Tensor::cat(&[gradient_image(), gradient_image().flip([3])], 0);
        let batch = |seed| {
            augment_batch(
                &images,
                &augment,
                &IDENTITY,
                &mut ChaCha8Rng::seed_from_u64(seed),
            )
        };
        assert!(batch(7).equal(&batch(7)));
        assert!(!batch(7).equal(&batch(8)));
    }
}

//! Size arithmetic of the resize and centre-crop steps, reproducing
//! torchvision's integer truncation and Python's round-half-to-even exactly,
//! so that fovea feeds a model the same pixels its training pipeline did.

use fovea_core::{PreprocessConfig, Resize};

use crate::error::VisionError;

/// `(width, height)` after the resize step; torchvision's `Resize(n)` keeps
/// the aspect ratio with the longer side `int(n * long / short)`.
pub fn resized_size(width: u32, height: u32, resize: &Resize) -> (u64, u64) {
    match *resize {
        Resize::None => (u64::from(width), u64::from(height)),
        Resize::Exact([h, w]) => (u64::from(w), u64::from(h)),
        Resize::ShorterSide(n) => {
            let n = u64::from(n);
            let (w, h) = (u64::from(width), u64::from(height));
            // Integer floor equals Python's int() of the float quotient here:
            // a non-integer quotient is at least 1/short away from an integer.
            if w <= h {
                (n, (n * h).checked_div(w).unwrap_or(0))
            } else {
                ((n * w).checked_div(h).unwrap_or(0), n)
            }
        }
    }
}

/// Checks the parts of a spec that would otherwise divide by zero or produce
/// an empty tensor; `ModelConfig::validate` checks the same for loaded configs.
pub fn validate_spec(spec: &PreprocessConfig) -> Result<(), VisionError> {
    let zero_size = matches!(
        spec.resize,
        Resize::ShorterSide(0) | Resize::Exact([0, _] | [_, 0])
    ) || matches!(spec.crop, Some([0, _] | [_, 0]));
    if zero_size {
        return Err(VisionError::InvalidSpec("sizes must be positive".into()));
    }
    if spec.std.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
        return Err(VisionError::InvalidSpec(format!(
            "std {:?} must be finite and positive",
            spec.std
        )));
    }
    if spec.mean.iter().any(|m| !m.is_finite()) {
        return Err(VisionError::InvalidSpec(format!(
            "mean {:?} must be finite",
            spec.mean
        )));
    }
    Ok(())
}

/// How one axis of the cropped output maps onto the resized image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CropAxis {
    /// First source row/column copied.
    pub src_start: u32,
    /// Where it lands in the output; the output before it is zero padding.
    pub dst_start: u32,
    /// Number of rows/columns copied; the output after them is zero padding.
    pub len: u32,
}

/// torchvision's `CenterCrop` along one axis: when the image is smaller than
/// the crop it is padded with zeros (`(crop - size) // 2` before), otherwise
/// the offset is `int(round((size - crop) / 2.0))` with Python's rounding.
pub fn crop_axis(size: u32, crop: u32) -> CropAxis {
    if crop > size {
        CropAxis {
            src_start: 0,
            dst_start: (crop - size) / 2,
            len: size,
        }
    } else {
        let excess = size - crop;
        let half = excess / 2;
        // round() of an exact .5 goes to the even neighbour.
        let offset = if excess % 2 == 1 && half % 2 == 1 {
            half + 1
        } else {
            half
        };
        CropAxis {
            src_start: offset,
            dst_start: 0,
            len: crop,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shorter_side_resize_truncates_the_longer_side_like_torchvision() {
        let r = Resize::ShorterSide(256);
        assert_eq!(resized_size(640, 480, &r), (341, 256)); // 341.33
        assert_eq!(resized_size(480, 640, &r), (256, 341));
        assert_eq!(resized_size(1546, 1213, &r), (326, 256)); // 326.29
        assert_eq!(resized_size(450, 664, &r), (256, 377)); // 377.74, truncated not rounded
        assert_eq!(resized_size(720, 720, &r), (256, 256));
        assert_eq!(resized_size(100, 50, &r), (512, 256)); // upscaling too
    }

    #[test]
    fn exact_resize_takes_height_then_width() {
        assert_eq!(resized_size(640, 480, &Resize::Exact([32, 64])), (64, 32));
        assert_eq!(resized_size(640, 480, &Resize::None), (640, 480));
    }

    #[test]
    fn centre_crop_offset_rounds_half_to_even_like_python() {
        // (341 - 224) / 2 = 58.5 → 58; (343 - 224) / 2 = 59.5 → 60.
        assert_eq!(crop_axis(341, 224).src_start, 58);
        assert_eq!(crop_axis(343, 224).src_start, 60);
        assert_eq!(crop_axis(256, 224).src_start, 16);
        assert_eq!(crop_axis(225, 224).src_start, 0); // 0.5 → 0
        assert_eq!(crop_axis(227, 224).src_start, 2); // 1.5 → 2
        assert_eq!(
            crop_axis(224, 224),
            CropAxis {
                src_start: 0,
                dst_start: 0,
                len: 224
            }
        );
    }

    #[test]
    fn a_crop_larger_than_the_image_pads_more_after_than_before() {
        // torchvision pads (crop - size) // 2 before and the rest after.
        assert_eq!(
            crop_axis(221, 224),
            CropAxis {
                src_start: 0,
                dst_start: 1,
                len: 221
            }
        );
    }

    #[test]
    fn zero_sizes_and_bad_std_are_refused() {
        let mut spec = PreprocessConfig::imagenet();
        assert!(validate_spec(&spec).is_ok());
        spec.crop = Some([0, 224]);
        assert!(validate_spec(&spec).is_err());
        let mut spec = PreprocessConfig::imagenet();
        spec.std[1] = 0.0;
        assert!(validate_spec(&spec).is_err());
        let mut spec = PreprocessConfig::cifar10();
        spec.resize = Resize::ShorterSide(0);
        assert!(validate_spec(&spec).is_err());
    }
}

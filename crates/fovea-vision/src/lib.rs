//! Image bytes → model input. Owns format detection, resource limits,
//! decoding, EXIF orientation, RGB conversion, resize, centre crop and
//! normalisation into NCHW f32, reproducing torchvision's PIL evaluation
//! transform. Knows nothing about HTTP or models.

pub mod decode;
pub mod error;
pub mod format;
pub mod geometry;
pub mod normalize;
pub mod resize;

use fovea_core::{PreprocessConfig, Tensor};

pub use decode::{ImageInfo, ImageLimits, RgbImage, decode_rgb, probe};
pub use error::VisionError;
pub use format::ImageFormat;
pub use geometry::resized_size;
pub use normalize::crop_normalize_into;
pub use resize::resize_rgb;

/// Decodes (limits checked from the header before decoding), orients,
/// converts to RGB, resizes, crops and normalises one image into `out`,
/// which must hold `3 × H × W` for the spec's fixed output size `[H, W]`.
pub fn preprocess_into(
    bytes: &[u8],
    spec: &PreprocessConfig,
    limits: &ImageLimits,
    out: &mut [f32],
) -> Result<(), VisionError> {
    geometry::validate_spec(spec)?;
    let [height, width] = spec.output_size().ok_or(VisionError::NoFixedSize)?;
    let expected = 3 * height as usize * width as usize;
    // Checked before decoding so a caller's bug costs no decoding work.
    if out.len() != expected {
        return Err(VisionError::OutputSize {
            expected,
            actual: out.len(),
        });
    }
    let image = decode_rgb(bytes, limits)?;
    let resized = resize_step(image, spec, limits)?;
    crop_normalize_into(&resized, [height, width], spec, out)
}

/// Like [`preprocess_into`], returning a `[1, 3, H, W]` tensor. Without a
/// fixed output size (no crop, no exact resize) `H × W` is the resized image's size.
pub fn preprocess(
    bytes: &[u8],
    spec: &PreprocessConfig,
    limits: &ImageLimits,
) -> Result<Tensor, VisionError> {
    geometry::validate_spec(spec)?;
    let image = decode_rgb(bytes, limits)?;
    let resized = resize_step(image, spec, limits)?;
    let [height, width] = spec.crop.unwrap_or([resized.height, resized.width]);
    let (h, w) = (height as usize, width as usize);
    let mut data = vec![0.0; 3 * h * w];
    crop_normalize_into(&resized, [height, width], spec, &mut data)?;
    Tensor::new(vec![1, 3, h, w], data).map_err(|e| VisionError::OutputSize {
        expected: e.expected,
        actual: e.actual,
    })
}

/// Resizes per the spec, refusing sizes beyond the pixel limit: a 1×40000
/// image is small, but its shorter side scaled to 256 would be 10 million
/// pixels long.
fn resize_step(
    image: RgbImage,
    spec: &PreprocessConfig,
    limits: &ImageLimits,
) -> Result<RgbImage, VisionError> {
    let (width, height) = resized_size(image.width, image.height, &spec.resize);
    let too_large = width.saturating_mul(height) > limits.max_pixels
        || u32::try_from(width).is_err()
        || u32::try_from(height).is_err();
    if too_large {
        return Err(VisionError::ResizedTooLarge {
            width,
            height,
            max: limits.max_pixels,
        });
    }
    resize_rgb(image, width as u32, height as u32)
}

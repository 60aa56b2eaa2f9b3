//! The one error type of fovea-vision and its mapping onto fovea's error kinds:
//! what the client sent is a 400/413/415, a bad preprocessing spec or buffer is ours.

use fovea_core::{ErrorKind, FoveaError};

/// Why an image could not be turned into a tensor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VisionError {
    /// The request carried no image bytes at all.
    #[error("the image is empty (0 bytes)")]
    Empty,
    /// The encoded image is larger than `ImageLimits::max_bytes`.
    #[error("the image is {size} bytes; the limit is {max} bytes")]
    TooManyBytes { size: usize, max: usize },
    /// The header announces more pixels than `ImageLimits::max_pixels`.
    #[error("the image is {width}×{height} pixels; the limit is {max} pixels")]
    TooManyPixels { width: u32, height: u32, max: u64 },
    /// Resizing a small but extremely elongated image would exceed `ImageLimits::max_pixels`.
    #[error("resizing the image would give {width}×{height} pixels; the limit is {max} pixels")]
    ResizedTooLarge { width: u64, height: u64, max: u64 },
    /// The magic bytes are not those of JPEG, PNG, WebP, GIF, BMP or TIFF.
    #[error("unsupported image format: send JPEG, PNG, WebP, GIF, BMP or TIFF")]
    UnsupportedFormat,
    /// The image is truncated, corrupt, or uses a feature the decoder lacks.
    #[error("cannot decode the image: {0}")]
    Decode(String),
    /// The decoder's own memory budget (second line of defence behind the pixel limit) ran out.
    #[error("decoding the image needs more memory than allowed: {0}")]
    DecodeLimit(String),
    /// `preprocess_into` needs a spec whose output size does not depend on the image.
    #[error(
        "the preprocessing has no fixed output size: set `crop` or `resize = {{ exact = [h, w] }}`"
    )]
    NoFixedSize,
    /// The caller's output buffer does not have `3 × height × width` elements.
    #[error("the output buffer holds {actual} values but the preprocessing produces {expected}")]
    OutputSize { expected: usize, actual: usize },
    /// The preprocessing spec itself is unusable (zero size, non-positive std).
    #[error("invalid preprocessing: {0}")]
    InvalidSpec(String),
    /// The resizer refused buffers fovea built: a fovea bug, not the client's.
    #[error("resizing failed: {0}")]
    Resize(String),
}

impl FoveaError for VisionError {
    fn kind(&self) -> ErrorKind {
        match self {
            VisionError::Empty | VisionError::Decode(_) => ErrorKind::InvalidInput,
            VisionError::TooManyBytes { .. }
            | VisionError::TooManyPixels { .. }
            | VisionError::ResizedTooLarge { .. }
            | VisionError::DecodeLimit(_) => ErrorKind::TooLarge,
            VisionError::UnsupportedFormat => ErrorKind::UnsupportedMediaType,
            VisionError::NoFixedSize
            | VisionError::OutputSize { .. }
            | VisionError::InvalidSpec(_)
            | VisionError::Resize(_) => ErrorKind::Internal,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            VisionError::Empty => "empty_image",
            VisionError::TooManyBytes { .. } => "image_too_large",
            VisionError::TooManyPixels { .. } => "image_too_many_pixels",
            VisionError::ResizedTooLarge { .. } => "image_aspect_ratio_too_extreme",
            VisionError::UnsupportedFormat => "unsupported_image_format",
            VisionError::Decode(_) => "invalid_image",
            VisionError::DecodeLimit(_) => "image_decode_limit",
            VisionError::NoFixedSize => "no_fixed_output_size",
            VisionError::OutputSize { .. } => "output_size_mismatch",
            VisionError::InvalidSpec(_) => "invalid_preprocess",
            VisionError::Resize(_) => "resize_failed",
        }
    }
}

impl From<image::ImageError> for VisionError {
    fn from(error: image::ImageError) -> Self {
        match error {
            image::ImageError::Limits(e) => VisionError::DecodeLimit(e.to_string()),
            other => VisionError::Decode(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_faults_and_server_faults_are_told_apart() {
        assert_eq!(VisionError::Empty.kind(), ErrorKind::InvalidInput);
        assert_eq!(
            VisionError::Decode("eof".into()).kind(),
            ErrorKind::InvalidInput
        );
        assert_eq!(VisionError::Decode("eof".into()).code(), "invalid_image");
        assert_eq!(
            VisionError::TooManyBytes { size: 2, max: 1 }.kind(),
            ErrorKind::TooLarge
        );
        assert_eq!(
            VisionError::UnsupportedFormat.kind(),
            ErrorKind::UnsupportedMediaType
        );
        assert!(!VisionError::NoFixedSize.kind().is_client_error());
        assert!(
            !VisionError::OutputSize {
                expected: 3,
                actual: 2
            }
            .kind()
            .is_client_error()
        );
    }
}

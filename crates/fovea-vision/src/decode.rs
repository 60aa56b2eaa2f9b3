//! Untrusted bytes → an upright 8-bit RGB image, with every limit checked
//! before the decoder is allowed to allocate pixel memory.

use std::io::Cursor;
use std::panic::{AssertUnwindSafe, catch_unwind};

use image::{DynamicImage, ImageDecoder, ImageReader};

use crate::error::VisionError;
use crate::format::ImageFormat;

/// Resource limits applied to every image before it is decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageLimits {
    /// Largest encoded image accepted, checked before anything else.
    pub max_bytes: usize,
    /// Largest `width × height` accepted, read from the header before decoding;
    /// also caps the size an image may be resized to.
    pub max_pixels: u64,
}

impl Default for ImageLimits {
    fn default() -> Self {
        Self {
            max_bytes: 20 * 1024 * 1024,
            max_pixels: 40_000_000,
        }
    }
}

impl ImageLimits {
    /// The `image` crate's allocation budget: the largest output buffer the
    /// pixel limit allows (RGBA at 16 bits = 8 bytes per pixel) plus room for
    /// metadata such as ICC profiles and EXIF blocks.
    fn decoder_limits(&self) -> image::Limits {
        const METADATA_ALLOWANCE: u64 = 64 * 1024 * 1024;
        let mut limits = image::Limits::default();
        limits.max_alloc = Some(
            self.max_pixels
                .saturating_mul(8)
                .saturating_add(METADATA_ALLOWANCE),
        );
        limits
    }
}

/// What the header says about an image, learned without decoding pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageInfo {
    pub format: ImageFormat,
    pub width: u32,
    pub height: u32,
}

/// A decoded, upright, 8-bit RGB image: row-major, 3 bytes per pixel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbImage {
    pub width: u32,
    pub height: u32,
    pub pixels: Vec<u8>,
}

/// Reads the format and stored dimensions (before EXIF orientation) from the
/// header only; no pixel data is decoded.
pub fn probe(bytes: &[u8]) -> Result<ImageInfo, VisionError> {
    let format = detect(bytes)?;
    let limits = ImageLimits::default();
    guard_panics(|| {
        let decoder = open_decoder(bytes, format, &limits)?;
        let (width, height) = decoder.dimensions();
        Ok(ImageInfo {
            format,
            width,
            height,
        })
    })
}

/// Decodes to upright RGB: byte limit first, then the pixel limit from the
/// header, then decoding (first frame of a GIF), EXIF orientation and colour
/// conversion. Alpha is discarded without compositing (transparent pixels keep
/// their stored colour, as PIL's `convert("RGB")` does); greyscale is
/// replicated into the three channels; 16-bit samples are scaled to 8 bits.
pub fn decode_rgb(bytes: &[u8], limits: &ImageLimits) -> Result<RgbImage, VisionError> {
    if bytes.len() > limits.max_bytes {
        return Err(VisionError::TooManyBytes {
            size: bytes.len(),
            max: limits.max_bytes,
        });
    }
    let format = detect(bytes)?;
    if format == ImageFormat::Jpeg && !jpeg_has_end_marker(bytes) {
        return Err(VisionError::Decode(
            "truncated JPEG: no end-of-image marker after the image data".into(),
        ));
    }
    guard_panics(|| {
        let mut decoder = open_decoder(bytes, format, limits)?;
        let (width, height) = decoder.dimensions();
        if u64::from(width) * u64::from(height) > limits.max_pixels {
            return Err(VisionError::TooManyPixels {
                width,
                height,
                max: limits.max_pixels,
            });
        }
        if width == 0 || height == 0 {
            return Err(VisionError::Decode(format!(
                "the header says the image is {width}×{height}"
            )));
        }
        // A damaged EXIF block should not cost the client its prediction:
        // the pixels are still good, only their orientation is unknown.
        let orientation = decoder
            .orientation()
            .unwrap_or(image::metadata::Orientation::NoTransforms);
        let mut image = DynamicImage::from_decoder(decoder)?;
        if !matches!(image, DynamicImage::ImageRgb8(_)) {
            // Converting first means a rotation moves 3 bytes per pixel, not 4 or 8.
            image = DynamicImage::ImageRgb8(image.into_rgb8());
        }
        image.apply_orientation(orientation);
        let rgb = image.into_rgb8();
        Ok(RgbImage {
            width: rgb.width(),
            height: rgb.height(),
            pixels: rgb.into_raw(),
        })
    })
}

fn detect(bytes: &[u8]) -> Result<ImageFormat, VisionError> {
    if bytes.is_empty() {
        return Err(VisionError::Empty);
    }
    ImageFormat::detect(bytes).ok_or(VisionError::UnsupportedFormat)
}

/// zune-jpeg (as the `image` crate configures it) pads a truncated JPEG with
/// grey instead of failing, which would classify half an upload; PIL refuses
/// such files ("image file is truncated"), and so does fovea. Walks the
/// marker segments up to the first scan (an EXIF thumbnail's own end marker
/// lies inside a segment and is skipped), then looks for EOI (FF D9) after it;
/// entropy-coded data cannot contain FF D9 because FF bytes are stuffed.
fn jpeg_has_end_marker(bytes: &[u8]) -> bool {
    let mut at = 2; // after SOI
    loop {
        // Markers may be preceded by any number of FF fill bytes.
        while bytes.get(at) == Some(&0xFF) && bytes.get(at + 1) == Some(&0xFF) {
            at += 1;
        }
        match (bytes.get(at), bytes.get(at + 1)) {
            (Some(0xFF), Some(0xDA)) => {
                let scan = &bytes[at..];
                return scan.windows(2).rev().any(|w| w == [0xFF, 0xD9]);
            }
            (Some(0xFF), Some(0xD9)) => return true,
            (Some(0xFF), Some(0x01 | 0xD0..=0xD7)) => at += 2,
            (Some(0xFF), Some(_)) => {
                let Some(length) = bytes.get(at + 2..at + 4) else {
                    return false;
                };
                at += 2 + usize::from(u16::from_be_bytes([length[0], length[1]]));
            }
            // Not a marker where one must be: leave the diagnosis to the decoder.
            _ => return at < bytes.len(),
        }
    }
}

/// The `tiff` crate sizes a tag's value buffer from the count its directory
/// entry declares (32 bytes a value) before reading the values, and the
/// `image` crate hands fovea's limits to it only after the first directory
/// has been read, under the `tiff` crate's own default budget of 256 MiB: a
/// 220-byte file declaring 7 million image heights cost 223 MB. A tag cannot
/// hold more data than the whole file, so refusing one that claims to keeps
/// that buffer proportional to the bytes received. Only the first directory
/// is read before the limits apply; anything the walk cannot follow is left
/// to the decoder to diagnose.
fn tiff_tags_fit(bytes: &[u8]) -> Result<(), VisionError> {
    let big_endian = bytes.starts_with(b"MM");
    let uint = |at: usize, len: usize| -> Option<u64> {
        let field = bytes.get(at..at.checked_add(len)?)?;
        Some(field.iter().enumerate().fold(0u64, |acc, (i, &b)| {
            let shift = if big_endian { len - 1 - i } else { i };
            acc | u64::from(b) << (8 * shift)
        }))
    };
    // Classic TIFF: 16-bit entry count, 12-byte entries, 32-bit counts;
    // BigTIFF (version 43): 64-bit count, 20-byte entries, 64-bit counts.
    let big = uint(2, 2) == Some(43);
    let (count_size, entry_size, field_size) = if big { (8, 20, 8) } else { (2, 12, 4) };
    let Some(directory) =
        (if big { uint(8, 8) } else { uint(4, 4) }).and_then(|offset| usize::try_from(offset).ok())
    else {
        return Ok(());
    };
    let Some(entries) = uint(directory, count_size) else {
        return Ok(());
    };
    let first = directory.saturating_add(count_size);
    for i in 0..entries {
        let Some(at) = usize::try_from(i)
            .ok()
            .and_then(|i| i.checked_mul(entry_size))
            .and_then(|offset| first.checked_add(offset))
        else {
            return Ok(());
        };
        let (Some(tag), Some(kind), Some(values)) = (
            uint(at, 2),
            uint(at.saturating_add(2), 2),
            uint(at.saturating_add(4), field_size),
        ) else {
            // Past the end of the file: the decoder reports the truncation.
            return Ok(());
        };
        // Bytes per value of each TIFF field type; the `tiff` crate skips
        // entries of any other type without reading them.
        let value_size: u64 = match kind {
            1 | 2 | 6 | 7 => 1,
            3 | 8 => 2,
            4 | 9 | 11 | 13 => 4,
            5 | 10 | 12 | 16 | 17 | 18 => 8,
            _ => continue,
        };
        if values.saturating_mul(value_size) > bytes.len() as u64 {
            return Err(VisionError::Decode(format!(
                "TIFF tag {tag} declares {values} values, more than the {}-byte file holds",
                bytes.len()
            )));
        }
    }
    Ok(())
}

/// Parses the header. The `image` crate's decoders read only the header here
/// and keep its allocation budget for the pixel pass.
fn open_decoder<'a>(
    bytes: &'a [u8],
    format: ImageFormat,
    limits: &ImageLimits,
) -> Result<impl ImageDecoder + 'a, VisionError> {
    if format == ImageFormat::Tiff {
        tiff_tags_fit(bytes)?;
    }
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format.to_image_crate());
    reader.limits(limits.decoder_limits());
    Ok(reader.into_decoder()?)
}

/// Third-party decoders parse hostile input; should one of them panic on a
/// malformed file, the request gets an `invalid_image` answer instead of
/// taking its worker thread down.
fn guard_panics<T>(decode: impl FnOnce() -> Result<T, VisionError>) -> Result<T, VisionError> {
    catch_unwind(AssertUnwindSafe(decode)).unwrap_or_else(|_| {
        Err(VisionError::Decode(
            "the decoder failed on malformed data".into(),
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 26-byte big-endian classic TIFF whose directory has one entry,
    /// ImageLength with `values` values of field type `kind`.
    fn classic_be(kind: u16, values: u32) -> Vec<u8> {
        let mut file = b"MM\0\x2a\0\0\0\x08".to_vec();
        file.extend(1u16.to_be_bytes());
        file.extend(257u16.to_be_bytes());
        file.extend(kind.to_be_bytes());
        file.extend(values.to_be_bytes());
        file.extend(0u32.to_be_bytes());
        file.extend(0u32.to_be_bytes()); // no next directory
        file
    }

    #[test]
    fn tiff_tags_may_not_claim_more_data_than_the_file_holds() {
        assert!(tiff_tags_fit(&classic_be(3, 13)).is_ok()); // 26 bytes of SHORTs
        let err = tiff_tags_fit(&classic_be(3, 14)).unwrap_err();
        assert!(
            matches!(&err, VisionError::Decode(m) if m.contains("tag 257 declares 14 values")),
            "{err}"
        );
        // The decoder skips entries of unknown types without reading them.
        assert!(tiff_tags_fit(&classic_be(99, u32::MAX)).is_ok());
    }

    #[test]
    fn tiff_directories_the_walk_cannot_follow_are_left_to_the_decoder() {
        let huge = classic_be(4, u32::MAX);
        assert!(tiff_tags_fit(&huge[..16]).is_ok(), "entry cut short");
        let mut elsewhere = huge.clone();
        elsewhere[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(tiff_tags_fit(&elsewhere).is_ok(), "directory past the end");
        assert!(tiff_tags_fit(&huge).is_err());
    }
}

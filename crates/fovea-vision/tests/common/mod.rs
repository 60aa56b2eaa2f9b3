//! Helpers shared by the integration tests: locating ../shared and building
//! small encoded images in memory with the `image` crate's encoders.
#![allow(dead_code)] // each test binary uses a different subset

use std::io::Cursor;
use std::path::PathBuf;

use image::{DynamicImage, ImageEncoder, ImageFormat, RgbImage};

/// `../shared/data/images` next to the repository, if present (the reason
/// printed when not; a failure in CI, `fovea_testkit`).
pub fn shared_images() -> Option<PathBuf> {
    fovea_testkit::shared("data/images")
}

/// Encodes with the `image` crate in the given container format.
pub fn encode(image: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut bytes = Cursor::new(Vec::new());
    image.write_to(&mut bytes, format).unwrap();
    bytes.into_inner()
}

/// An RGB image from a list of pixels, row-major.
pub fn rgb(width: u32, height: u32, pixels: &[[u8; 3]]) -> RgbImage {
    RgbImage::from_raw(width, height, pixels.concat()).unwrap()
}

/// A minimal big-endian EXIF (TIFF) block holding only an Orientation tag.
pub fn exif_orientation(orientation: u16) -> Vec<u8> {
    let mut exif = b"MM\0\x2a\0\0\0\x08".to_vec(); // header, first IFD at 8
    exif.extend([0, 1]); // one entry
    exif.extend([0x01, 0x12, 0, 3, 0, 0, 0, 1]); // tag 274, SHORT, count 1
    exif.extend(orientation.to_be_bytes());
    exif.extend([0, 0, 0, 0, 0, 0]); // value padding, no next IFD
    exif
}

/// A PNG carrying an eXIf chunk with the given orientation.
pub fn png_with_orientation(image: &RgbImage, orientation: u16) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut encoder = image::codecs::png::PngEncoder::new(&mut bytes);
    encoder
        .set_exif_metadata(exif_orientation(orientation))
        .unwrap();
    encoder
        .write_image(
            image.as_raw(),
            image.width(),
            image.height(),
            image::ExtendedColorType::Rgb8,
        )
        .unwrap();
    bytes
}

/// A JPEG (quality 100) whose APP1 segment carries the given orientation.
pub fn jpeg_with_orientation(image: &RgbImage, orientation: u16) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 100);
    encoder
        .set_exif_metadata(exif_orientation(orientation))
        .unwrap();
    encoder
        .write_image(
            image.as_raw(),
            image.width(),
            image.height(),
            image::ExtendedColorType::Rgb8,
        )
        .unwrap();
    bytes
}

/// CRC-32 (IEEE) as PNG chunks use it, for crafting headers by hand.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for byte in bytes {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A PNG that is only a signature, an IHDR claiming `width × height` RGB
/// pixels, an empty IDAT and IEND: the shape of a decompression bomb's header.
pub fn png_header_only(width: u32, height: u32) -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut chunk = |kind: &[u8; 4], data: &[u8]| {
        png.extend((data.len() as u32).to_be_bytes());
        let mut body = kind.to_vec();
        body.extend(data);
        png.extend(&body);
        png.extend(crc32(&body).to_be_bytes());
    };
    let mut ihdr = Vec::new();
    ihdr.extend(width.to_be_bytes());
    ihdr.extend(height.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]); // 8-bit RGB, deflate, no filter, no interlace
    chunk(b"IHDR", &ihdr);
    chunk(b"IDAT", &[]);
    chunk(b"IEND", &[]);
    png
}

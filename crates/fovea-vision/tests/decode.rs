//! Decoding behaviour on images generated in the test itself (no ../shared
//! needed): every accepted format, EXIF orientation, greyscale, alpha,
//! 16-bit samples, animation, and the errors a client can provoke.

mod common;

use fovea_core::{ErrorKind, FoveaError};
use fovea_vision::{ImageFormat, ImageInfo, ImageLimits, VisionError, decode_rgb, probe};
use image::{DynamicImage, GrayAlphaImage, GrayImage, ImageBuffer, Rgb, RgbaImage};

const A: [u8; 3] = [250, 10, 10];
const B: [u8; 3] = [10, 10, 250];

/// 3×2 image with six distinct colours, so any reordering shows.
fn six_colours() -> image::RgbImage {
    common::rgb(
        3,
        2,
        &[
            [255, 0, 0],
            [0, 255, 0],
            [0, 0, 255],
            [255, 255, 0],
            [0, 255, 255],
            [40, 80, 120],
        ],
    )
}

fn decode(bytes: &[u8]) -> Result<fovea_vision::RgbImage, VisionError> {
    decode_rgb(bytes, &ImageLimits::default())
}

#[test]
fn lossless_formats_decode_to_the_exact_pixels() {
    let original = DynamicImage::ImageRgb8(six_colours());
    for (format, ours) in [
        (image::ImageFormat::Png, ImageFormat::Png),
        (image::ImageFormat::Bmp, ImageFormat::Bmp),
        (image::ImageFormat::Tiff, ImageFormat::Tiff),
        (image::ImageFormat::WebP, ImageFormat::Webp),
        (image::ImageFormat::Gif, ImageFormat::Gif),
    ] {
        let bytes = common::encode(&original, format);
        assert_eq!(
            probe(&bytes).unwrap(),
            ImageInfo {
                format: ours,
                width: 3,
                height: 2
            },
            "{format:?}"
        );
        let decoded = decode(&bytes).unwrap();
        assert_eq!((decoded.width, decoded.height), (3, 2), "{format:?}");
        assert_eq!(decoded.pixels, six_colours().into_raw(), "{format:?}");
    }
}

#[test]
fn jpeg_decodes_close_to_the_original_colours() {
    let image = ImageBuffer::from_pixel(16, 16, Rgb([200u8, 120, 40]));
    let bytes = common::encode(&DynamicImage::ImageRgb8(image), image::ImageFormat::Jpeg);
    assert_eq!(probe(&bytes).unwrap().format, ImageFormat::Jpeg);
    let decoded = decode(&bytes).unwrap();
    assert_eq!((decoded.width, decoded.height), (16, 16));
    for (got, want) in decoded.pixels.iter().zip([200u8, 120, 40].iter().cycle()) {
        assert!(got.abs_diff(*want) <= 3, "{got} vs {want}");
    }
}

#[test]
fn png_orientation_tags_are_applied_exactly() {
    // Stored 2×1 as [A, B]; what a viewer shows for each EXIF orientation.
    let stored = common::rgb(2, 1, &[A, B]);
    let cases = [
        (1, (2, 1), [A, B]),
        (2, (2, 1), [B, A]), // mirrored
        (3, (2, 1), [B, A]), // rotated 180°
        (6, (1, 2), [A, B]), // rotated 90° clockwise: left pixel on top
        (8, (1, 2), [B, A]), // rotated 90° anticlockwise
    ];
    for (orientation, size, pixels) in cases {
        let bytes = common::png_with_orientation(&stored, orientation);
        // probe reports the stored size: orientation is applied when decoding.
        assert_eq!(probe(&bytes).unwrap().width, 2);
        let decoded = decode(&bytes).unwrap();
        assert_eq!(
            (decoded.width, decoded.height),
            size,
            "orientation {orientation}"
        );
        assert_eq!(decoded.pixels, pixels.concat(), "orientation {orientation}");
    }
}

#[test]
fn jpeg_exif_orientation_6_turns_a_wide_image_upright() {
    // 16×8: left 8×8 block A, right block B. Orientation 6 means "rotate 90°
    // clockwise to display": the result is 8×16 with A on top.
    let mut stored = image::RgbImage::new(16, 8);
    for (x, _, px) in stored.enumerate_pixels_mut() {
        *px = Rgb(if x < 8 { A } else { B });
    }
    let bytes = common::jpeg_with_orientation(&stored, 6);
    let decoded = decode(&bytes).unwrap();
    assert_eq!((decoded.width, decoded.height), (8, 16));
    let pixel = |x: usize, y: usize| &decoded.pixels[(y * 8 + x) * 3..][..3];
    for (y, want) in [(2, A), (13, B)] {
        let got = pixel(4, y);
        let close = got.iter().zip(want).all(|(g, w)| g.abs_diff(w) <= 24);
        assert!(close, "row {y}: {got:?} vs {want:?}");
    }
}

#[test]
fn greyscale_is_replicated_into_three_channels() {
    let grey = GrayImage::from_raw(2, 1, vec![7, 200]).unwrap();
    let bytes = common::encode(&DynamicImage::ImageLuma8(grey), image::ImageFormat::Png);
    assert_eq!(decode(&bytes).unwrap().pixels, vec![7, 7, 7, 200, 200, 200]);

    let grey_alpha = GrayAlphaImage::from_raw(1, 1, vec![90, 0]).unwrap();
    let bytes = common::encode(
        &DynamicImage::ImageLumaA8(grey_alpha),
        image::ImageFormat::Png,
    );
    assert_eq!(decode(&bytes).unwrap().pixels, vec![90, 90, 90]);
}

#[test]
fn alpha_is_dropped_without_compositing() {
    // A fully transparent pixel keeps its stored colour, like PIL's convert("RGB").
    let rgba = RgbaImage::from_raw(2, 1, vec![200, 10, 30, 0, 1, 2, 3, 255]).unwrap();
    let bytes = common::encode(&DynamicImage::ImageRgba8(rgba), image::ImageFormat::Png);
    assert_eq!(decode(&bytes).unwrap().pixels, vec![200, 10, 30, 1, 2, 3]);
}

#[test]
fn sixteen_bit_samples_are_scaled_to_eight_bits() {
    let deep: ImageBuffer<Rgb<u16>, Vec<u16>> =
        ImageBuffer::from_raw(1, 1, vec![65535, 257 * 100, 0]).unwrap();
    let bytes = common::encode(&DynamicImage::ImageRgb16(deep), image::ImageFormat::Png);
    assert_eq!(decode(&bytes).unwrap().pixels, vec![255, 100, 0]);
}

#[test]
fn an_animated_gif_yields_its_first_frame() {
    use image::codecs::gif::GifEncoder;
    use image::{Delay, Frame};
    let frame = |colour: [u8; 4]| {
        Frame::from_parts(
            RgbaImage::from_pixel(4, 4, image::Rgba(colour)),
            0,
            0,
            Delay::from_numer_denom_ms(100, 1),
        )
    };
    let mut bytes = Vec::new();
    GifEncoder::new(&mut bytes)
        .encode_frames([frame([255, 0, 0, 255]), frame([0, 0, 255, 255])])
        .unwrap();
    let decoded = decode(&bytes).unwrap();
    assert_eq!(decoded.pixels, [255, 0, 0].repeat(16));
}

#[test]
fn empty_input_is_invalid_input() {
    let err = decode(&[]).unwrap_err();
    assert_eq!(err, VisionError::Empty);
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert_eq!(probe(&[]).unwrap_err(), VisionError::Empty);
}

#[test]
fn unknown_formats_are_unsupported_media_type() {
    for bytes in [
        &b"<svg xmlns='http://www.w3.org/2000/svg'/>"[..],
        b"hello",
        b"\0\0\0\x0cjP  ",
    ] {
        let err = decode(bytes).unwrap_err();
        assert_eq!(err, VisionError::UnsupportedFormat);
        assert_eq!(err.kind(), ErrorKind::UnsupportedMediaType);
        assert_eq!(err.code(), "unsupported_image_format");
    }
}

#[test]
fn a_png_without_pixel_data_is_a_decode_error() {
    let bytes = common::png_header_only(8, 8);
    assert_eq!(probe(&bytes).unwrap().width, 8);
    let err = decode(&bytes).unwrap_err();
    assert!(matches!(err, VisionError::Decode(_)), "{err:?}");
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert_eq!(err.code(), "invalid_image");
}

#[test]
fn a_corrupted_png_crc_is_a_decode_error() {
    let mut bytes = common::encode(
        &DynamicImage::ImageRgb8(six_colours()),
        image::ImageFormat::Png,
    );
    let ihdr_crc = 8 + 8 + 13; // signature, chunk length+type, IHDR data
    bytes[ihdr_crc] ^= 0xFF;
    let err = decode(&bytes).unwrap_err();
    assert!(matches!(err, VisionError::Decode(_)), "{err:?}");
}

#[test]
fn a_truncated_jpeg_is_a_decode_error_not_a_grey_image() {
    let image = DynamicImage::ImageRgb8(ImageBuffer::from_fn(64, 64, |x, y| {
        Rgb([(x * 4) as u8, (y * 4) as u8, 77])
    }));
    let bytes = common::encode(&image, image::ImageFormat::Jpeg);
    let err = decode(&bytes[..bytes.len() * 7 / 10]).unwrap_err();
    assert!(matches!(err, VisionError::Decode(_)), "{err:?}");
    assert_eq!(err.code(), "invalid_image");
    // Without only its end marker it is truncated as well, as PIL sees it.
    assert!(decode(&bytes[..bytes.len() - 2]).is_err());
}

#[test]
fn bytes_after_the_jpeg_end_marker_are_ignored() {
    let image = DynamicImage::ImageRgb8(ImageBuffer::from_pixel(8, 8, Rgb([9u8, 99, 199])));
    let mut bytes = common::encode(&image, image::ImageFormat::Jpeg);
    let clean = decode(&bytes).unwrap();
    bytes.extend(b"trailing data some cameras append");
    assert_eq!(decode(&bytes).unwrap(), clean);
}

#[test]
fn an_exif_thumbnail_end_marker_does_not_hide_truncation() {
    // An APP1 segment whose payload contains FF D9 (as an embedded
    // thumbnail's end does) must not count as the main image's end.
    let image = DynamicImage::ImageRgb8(ImageBuffer::from_pixel(32, 32, Rgb([1u8, 2, 3])));
    let bytes = common::encode(&image, image::ImageFormat::Jpeg);
    let mut with_app1 = bytes[..2].to_vec();
    with_app1.extend([0xFF, 0xE1, 0x00, 0x06, b'x', b'x', 0xFF, 0xD9]);
    with_app1.extend(&bytes[2..]);
    assert!(decode(&with_app1).is_ok());
    let truncated = &with_app1[..with_app1.len() - 40];
    assert!(matches!(decode(truncated), Err(VisionError::Decode(_))));
}

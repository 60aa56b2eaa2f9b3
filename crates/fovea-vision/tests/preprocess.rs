//! End-to-end preprocessing on generated images (no ../shared needed):
//! output shapes for each resize mode, normalised values, channel order, and
//! the checks `preprocess_into` makes before decoding.

mod common;

use fovea_core::{ColorOrder, ErrorKind, FoveaError, PreprocessConfig, Resize};
use fovea_vision::{ImageLimits, RgbImage, VisionError, preprocess, preprocess_into, resize_rgb};
use image::{DynamicImage, ImageBuffer, Rgb};
use serde_json::Value;

fn solid_png(width: u32, height: u32, colour: [u8; 3]) -> Vec<u8> {
    let image = ImageBuffer::from_pixel(width, height, Rgb(colour));
    common::encode(&DynamicImage::ImageRgb8(image), image::ImageFormat::Png)
}

fn spec(resize: Resize, crop: Option<[u32; 2]>) -> PreprocessConfig {
    PreprocessConfig {
        resize,
        crop,
        ..PreprocessConfig::imagenet()
    }
}

#[test]
fn output_shape_follows_the_resize_and_crop() {
    let png = solid_png(64, 48, [1, 2, 3]);
    let limits = ImageLimits::default();
    let cases = [
        (PreprocessConfig::imagenet(), [224, 224]),
        (PreprocessConfig::cifar10(), [32, 32]),
        (spec(Resize::ShorterSide(32), None), [32, 42]), // 64·32/48 = 42.67
        (spec(Resize::Exact([10, 20]), None), [10, 20]),
        (spec(Resize::None, None), [48, 64]),
        (spec(Resize::None, Some([16, 16])), [16, 16]),
    ];
    for (spec, [h, w]) in cases {
        let tensor = preprocess(&png, &spec, &limits).unwrap();
        assert_eq!(tensor.shape(), &[1, 3, h, w], "{spec:?}");
    }
}

#[test]
fn a_flat_colour_becomes_the_normalised_constant_in_each_plane() {
    let colour = [10u8, 128, 250];
    let spec = PreprocessConfig::imagenet();
    let mut out = vec![f32::NAN; 3 * 224 * 224];
    preprocess_into(
        &solid_png(50, 40, colour),
        &spec,
        &ImageLimits::default(),
        &mut out,
    )
    .unwrap();
    for (c, plane) in out.chunks(224 * 224).enumerate() {
        let expected = (f32::from(colour[c]) / 255.0 - spec.mean[c]) / spec.std[c];
        assert!(plane.iter().all(|v| *v == expected), "channel {c}");
    }
    // 50×40 → 320×256 → centre 224×224: no padding involved.
    assert!((out[0] - (-1.946_657)).abs() < 1e-5, "{}", out[0]);
}

#[test]
fn a_small_image_under_resize_none_is_padded_black_around_the_centre() {
    let spec = spec(Resize::None, Some([4, 4]));
    let tensor = preprocess(
        &solid_png(2, 2, [255, 255, 255]),
        &spec,
        &ImageLimits::default(),
    )
    .unwrap();
    let red = &tensor.data()[..16];
    let white = (1.0 - spec.mean[0]) / spec.std[0];
    let black = -spec.mean[0] / spec.std[0];
    #[rustfmt::skip]
    let expected = [
        black, black, black, black,
        black, white, white, black,
        black, white, white, black,
        black, black, black, black,
    ];
    assert_eq!(red, expected);
}

#[test]
fn bgr_models_receive_blue_first() {
    let mut spec = PreprocessConfig::cifar10();
    spec.color = ColorOrder::Bgr;
    spec.mean = [0.0; 3];
    spec.std = [1.0; 3];
    let tensor = preprocess(
        &solid_png(8, 8, [255, 0, 51]),
        &spec,
        &ImageLimits::default(),
    )
    .unwrap();
    let planes: Vec<f32> = tensor.data().chunks(32 * 32).map(|p| p[0]).collect();
    assert_eq!(planes, vec![0.2, 0.0, 1.0]);
}

#[test]
fn preprocess_into_requires_a_fixed_output_size() {
    let mut out = vec![0.0; 3 * 48 * 64];
    let err = preprocess_into(
        &solid_png(64, 48, [0, 0, 0]),
        &spec(Resize::ShorterSide(48), None),
        &ImageLimits::default(),
        &mut out,
    )
    .unwrap_err();
    assert_eq!(err, VisionError::NoFixedSize);
    assert_eq!(err.kind(), ErrorKind::Internal);
}

#[test]
fn a_wrong_output_buffer_is_refused_before_decoding() {
    // Garbage bytes would be a decode error; the buffer check comes first.
    let mut out = vec![0.0; 100];
    let err = preprocess_into(
        b"\x89PNG\r\n\x1a\ngarbage",
        &PreprocessConfig::cifar10(),
        &ImageLimits::default(),
        &mut out,
    )
    .unwrap_err();
    assert_eq!(
        err,
        VisionError::OutputSize {
            expected: 3 * 32 * 32,
            actual: 100
        }
    );
}

#[test]
fn an_invalid_spec_is_our_fault_not_the_clients() {
    let mut spec = PreprocessConfig::cifar10();
    spec.std = [0.2, 0.0, 0.2];
    let err = preprocess(&solid_png(4, 4, [0, 0, 0]), &spec, &ImageLimits::default()).unwrap_err();
    assert!(matches!(err, VisionError::InvalidSpec(_)), "{err:?}");
    assert!(!err.kind().is_client_error());
    assert_eq!(err.code(), "invalid_preprocess");
}

/// The pattern scripts/vision_reference.py builds with numpy, byte for byte.
fn synthetic(width: u32, height: u32) -> RgbImage {
    let mut pixels = Vec::with_capacity((width * height * 3) as usize);
    for y in 0..u64::from(height) {
        for x in 0..u64::from(width) {
            for c in 0..3 {
                pixels.push(((x * 7 + y * 13 + c * 50 + (x * y) % 31) % 256) as u8);
            }
        }
    }
    RgbImage {
        width,
        height,
        pixels,
    }
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn resize_matches_pil_bilinear_without_any_jpeg_decoder_involved() {
    let reference: Value =
        serde_json::from_str(include_str!("reference/imagenet_preprocess.json")).unwrap();
    for case in reference["synthetic_resize"].as_array().unwrap() {
        let size = |key: &str| -> (u32, u32) {
            let v: Vec<u32> = serde_json::from_value(case[key].clone()).unwrap();
            (v[0], v[1])
        };
        let ((sw, sh), (w, h)) = (size("source"), size("resized"));
        let ours = resize_rgb(synthetic(sw, sh), w, h).unwrap();
        let pil = hex(case["rgb_hex"].as_str().unwrap());
        let differing = ours.pixels.iter().zip(&pil).filter(|(a, b)| a != b).count();
        let max = ours
            .pixels
            .iter()
            .zip(&pil)
            .map(|(a, b)| a.abs_diff(*b))
            .max()
            .unwrap();
        eprintln!(
            "{sw}×{sh} → {w}×{h}: {differing} of {} bytes differ from PIL, by at most {max}",
            pil.len()
        );
        assert!(max <= 1, "{sw}×{sh} → {w}×{h}: max diff {max}");
    }
}

//! Hostile and damaged input: every prefix of a real image and a spread of
//! corrupted copies must give `Ok` or a client error, and no decoder may
//! panic — not even one that fovea would catch.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};

use fovea_core::{FoveaError, PreprocessConfig};
use fovea_vision::{ImageLimits, preprocess};
use image::{DynamicImage, ImageBuffer, Rgb};

static PANICS: AtomicUsize = AtomicUsize::new(0);

/// Counts panics, including ones caught inside fovea-vision.
fn count_panics() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.fetch_add(1, Ordering::SeqCst);
        previous(info);
    }));
}

fn textured(width: u32, height: u32) -> DynamicImage {
    DynamicImage::ImageRgb8(ImageBuffer::from_fn(width, height, |x, y| {
        Rgb([
            (x * 9 % 256) as u8,
            (y * 5 % 256) as u8,
            ((x ^ y) % 256) as u8,
        ])
    }))
}

/// Feeds strict prefixes (about 50, plus every length up to 40 to cover the
/// header) and byte-flipped copies; returns how many prefixes decoded.
fn hammer(name: &str, bytes: &[u8]) -> usize {
    let spec = PreprocessConfig::cifar10();
    let limits = ImageLimits::default();
    let step = (bytes.len() / 50).max(1);
    let mut lengths: Vec<usize> = (0..bytes.len()).step_by(step).collect();
    lengths.extend(0..bytes.len().min(40)); // every header-sized prefix
    let mut decoded = 0;
    for len in lengths {
        match preprocess(&bytes[..len], &spec, &limits) {
            Ok(tensor) => {
                assert_eq!(tensor.shape(), &[1, 3, 32, 32]);
                decoded += 1;
            }
            Err(err) => assert!(err.kind().is_client_error(), "{name}[..{len}]: {err:?}"),
        }
    }
    for i in 0..64 {
        let mut corrupt = bytes.to_vec();
        let at = (i * 7919) % corrupt.len();
        corrupt[at] ^= 0x5A;
        if let Err(err) = preprocess(&corrupt, &spec, &limits) {
            assert!(err.kind().is_client_error(), "{name} flip at {at}: {err:?}");
        }
    }
    decoded
}

#[test]
fn truncated_or_corrupt_images_never_panic() {
    count_panics();
    let image = textured(96, 64);
    for format in [
        image::ImageFormat::Jpeg,
        image::ImageFormat::Png,
        image::ImageFormat::Gif,
        image::ImageFormat::Bmp,
        image::ImageFormat::Tiff,
        image::ImageFormat::WebP,
    ] {
        let bytes = common::encode(&image, format);
        let decoded = hammer(&format!("{format:?}"), &bytes);
        assert_eq!(decoded, 0, "{format:?}: a truncated image was accepted");
    }
    if let Some(dir) = common::shared_images() {
        for name in ["puppy.jpg", "bird.jpg"] {
            let bytes = std::fs::read(dir.join(name)).unwrap();
            let decoded = hammer(name, &bytes);
            assert_eq!(decoded, 0, "{name}: a truncated image was accepted");
        }
    }
    assert_eq!(PANICS.load(Ordering::SeqCst), 0, "a decoder panicked");
}

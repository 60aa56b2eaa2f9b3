//! Resource limits: oversized inputs are refused from their header before
//! the decoder allocates pixel memory, and an animation costs its first
//! frame only. A counting allocator measures the largest single allocation
//! and the total each call makes on its thread.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use fovea_core::{ErrorKind, FoveaError, PreprocessConfig, Resize};
use fovea_vision::{ImageLimits, VisionError, decode_rgb, preprocess};
use image::{DynamicImage, ImageBuffer, Rgb};

struct LargestAllocation;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
    static TOTAL: Cell<usize> = const { Cell::new(0) };
}

fn record(size: usize) {
    LARGEST.with(|l| l.set(l.get().max(size)));
    TOTAL.with(|t| t.set(t.get().saturating_add(size)));
}

// SAFETY: delegates to the system allocator; only records sizes.
unsafe impl GlobalAlloc for LargestAllocation {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        record(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: LargestAllocation = LargestAllocation;

/// Runs `f` and returns its result with the largest allocation it made.
fn largest_allocation<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LARGEST.with(|l| l.set(0));
    let result = f();
    (result, LARGEST.with(Cell::get))
}

/// Runs `f` and returns its result with the bytes it allocated in all.
fn total_allocation<T>(f: impl FnOnce() -> T) -> (T, usize) {
    TOTAL.with(|t| t.set(0));
    let result = f();
    (result, TOTAL.with(Cell::get))
}

const ONE_MIB: usize = 1 << 20;

fn encoded(format: image::ImageFormat, width: u32, height: u32) -> Vec<u8> {
    let image = ImageBuffer::from_pixel(width, height, Rgb([90u8, 60, 30]));
    common::encode(&DynamicImage::ImageRgb8(image), format)
}

#[test]
fn oversized_png_is_refused_before_decoding() {
    // 100000 × 100000 RGB would be 30 GB; the file is 57 bytes.
    let bytes = common::png_header_only(100_000, 100_000);
    let (result, largest) = largest_allocation(|| decode_rgb(&bytes, &ImageLimits::default()));
    assert_eq!(
        result.unwrap_err(),
        VisionError::TooManyPixels {
            width: 100_000,
            height: 100_000,
            max: 40_000_000
        }
    );
    assert!(largest < ONE_MIB, "largest allocation {largest} bytes");
}

/// Rewrites the dimensions a real encoder wrote, so that everything after
/// the header is a valid small image but the header lies.
fn with_huge_dimensions(format: image::ImageFormat) -> Vec<u8> {
    let mut bytes = encoded(format, 16, 16);
    match format {
        image::ImageFormat::Jpeg => {
            // SOF0: FF C0, length (2), precision (1), height (2), width (2).
            let sof = bytes.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
            bytes[sof + 5..sof + 9].copy_from_slice(&[0xEA, 0x60, 0xEA, 0x60]); // 60000²
        }
        image::ImageFormat::Gif => {
            // Logical screen descriptor right after "GIF89a": width, height (LE).
            bytes[6..10].copy_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF]); // 65535²
        }
        image::ImageFormat::Bmp => {
            // BITMAPINFOHEADER width and height (LE i32) at offsets 18 and 22.
            bytes[18..26].copy_from_slice(&[0x50, 0xC3, 0, 0, 0x50, 0xC3, 0, 0]); // 50000²
        }
        other => panic!("no header patch for {other:?}"),
    }
    bytes
}

#[test]
fn huge_jpeg_gif_and_bmp_headers_are_refused_before_decoding() {
    for format in [
        image::ImageFormat::Jpeg,
        image::ImageFormat::Gif,
        image::ImageFormat::Bmp,
    ] {
        let bytes = with_huge_dimensions(format);
        let (result, largest) = largest_allocation(|| decode_rgb(&bytes, &ImageLimits::default()));
        let err = result.unwrap_err();
        assert!(
            matches!(err, VisionError::TooManyPixels { width, .. } if width >= 50_000),
            "{format:?}: {err:?}"
        );
        assert_eq!(err.kind(), ErrorKind::TooLarge);
        assert_eq!(err.code(), "image_too_many_pixels");
        assert!(
            largest < ONE_MIB,
            "{format:?}: largest allocation {largest} bytes"
        );
    }
}

#[test]
fn the_byte_limit_is_checked_first() {
    let bytes = encoded(image::ImageFormat::Png, 64, 64);
    let limits = ImageLimits {
        max_bytes: bytes.len() - 1,
        ..ImageLimits::default()
    };
    let err = decode_rgb(&bytes, &limits).unwrap_err();
    assert_eq!(
        err,
        VisionError::TooManyBytes {
            size: bytes.len(),
            max: bytes.len() - 1
        }
    );
    assert_eq!(err.kind(), ErrorKind::TooLarge);
    // Even unrecognisable bytes get the size answer, not a format one.
    let junk = vec![0u8; 200];
    let limits = ImageLimits {
        max_bytes: 100,
        ..ImageLimits::default()
    };
    assert!(matches!(
        decode_rgb(&junk, &limits),
        Err(VisionError::TooManyBytes { .. })
    ));
}

#[test]
fn the_pixel_limit_is_inclusive() {
    let bytes = encoded(image::ImageFormat::Png, 10, 10);
    let at = ImageLimits {
        max_pixels: 100,
        ..ImageLimits::default()
    };
    assert!(decode_rgb(&bytes, &at).is_ok());
    let below = ImageLimits {
        max_pixels: 99,
        ..ImageLimits::default()
    };
    assert!(matches!(
        decode_rgb(&bytes, &below),
        Err(VisionError::TooManyPixels {
            width: 10,
            height: 10,
            max: 99
        })
    ));
}

#[test]
fn an_extreme_aspect_ratio_cannot_blow_up_the_resize() {
    // 1 × 200000 is 200k pixels, fine to decode; scaling its shorter side to
    // 256 would make it 256 × 51.2 million (39 GB of RGB).
    let bytes = encoded(image::ImageFormat::Png, 1, 200_000);
    let spec = PreprocessConfig {
        resize: Resize::ShorterSide(256),
        crop: Some([224, 224]),
        ..PreprocessConfig::imagenet()
    };
    let (result, largest) =
        largest_allocation(|| preprocess(&bytes, &spec, &ImageLimits::default()));
    let err = result.unwrap_err();
    assert!(
        matches!(
            err,
            VisionError::ResizedTooLarge {
                width: 256,
                height: 51_200_000,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.kind(), ErrorKind::TooLarge);
    assert!(largest < 4 * ONE_MIB, "largest allocation {largest} bytes");
}

/// An animated GIF of `frames` different 128×128 frames.
fn animated_gif(frames: usize) -> Vec<u8> {
    let mut bytes = Vec::new();
    {
        let mut encoder = image::codecs::gif::GifEncoder::new(&mut bytes);
        encoder
            .set_repeat(image::codecs::gif::Repeat::Infinite)
            .unwrap();
        let frames = (0..frames).map(|i| {
            let shade = (i * 37 % 251) as u8;
            let pixels = image::RgbaImage::from_fn(128, 128, |x, y| {
                image::Rgba([shade, (x as u8).wrapping_add(shade), y as u8, 255])
            });
            image::Frame::new(pixels)
        });
        encoder.encode_frames(frames).unwrap();
    }
    bytes
}

#[test]
fn an_animation_costs_one_frame_however_many_it_holds() {
    // Only the first frame is decoded: 400 frames allocate what one does,
    // where decoding them all would allocate (and take) 400 times as much.
    let (one, one_total) =
        total_allocation(|| decode_rgb(&animated_gif(1), &ImageLimits::default()));
    let many_bytes = animated_gif(400);
    let (many, many_total) = total_allocation(|| decode_rgb(&many_bytes, &ImageLimits::default()));
    let (one, many) = (one.unwrap(), many.unwrap());
    assert_eq!((one.width, one.height), (many.width, many.height));
    assert!(one.pixels == many.pixels, "not the first frame");
    assert!(
        many_total < 3 * one_total,
        "400 frames allocated {many_total} bytes, one frame {one_total}"
    );
}

//! The resize step: separable bilinear convolution with antialiasing on 8-bit
//! RGB, the filter PIL's `Image.resize(BILINEAR)` applies (and therefore what
//! torchvision does to PIL images), vectorised by `fast_image_resize`.

use std::cell::RefCell;

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};

use crate::decode::RgbImage;
use crate::error::VisionError;

/// Scratch kept between calls: enough for the intermediate pass of any
/// photo-sized image (a 4000×3000 source resized to 256 needs about 4 MB).
const MAX_RETAINED_SCRATCH: usize = 16 * 1024 * 1024;

thread_local! {
    // The resizer keeps its intermediate (horizontal-pass) buffer between
    // calls; preprocessing runs on a fixed blocking pool, so one per thread
    // is reused for every request that thread serves.
    static RESIZER: RefCell<Resizer> = RefCell::new(Resizer::new());
}

/// Resizes to `width × height`; the image is handed back untouched when it
/// already has that size (as PIL and torchvision do).
pub fn resize_rgb(image: RgbImage, width: u32, height: u32) -> Result<RgbImage, VisionError> {
    if (image.width, image.height) == (width, height) {
        return Ok(image);
    }
    let fail = |e: &dyn std::fmt::Display| VisionError::Resize(e.to_string());
    let src = ImageRef::new(image.width, image.height, &image.pixels, PixelType::U8x3)
        .map_err(|e| fail(&e))?;
    let len = width as usize * height as usize * 3;
    let mut dst =
        Image::from_vec_u8(width, height, vec![0; len], PixelType::U8x3).map_err(|e| fail(&e))?;
    let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear));
    RESIZER
        .with_borrow_mut(|resizer| {
            let result = resizer.resize(&src, &mut dst, &options);
            // One huge image must not pin its scratch memory to the thread forever.
            if resizer.size_of_internal_buffers() > MAX_RETAINED_SCRATCH {
                resizer.reset_internal_buffers();
            }
            result
        })
        .map_err(|e| fail(&e))?;
    Ok(RgbImage {
        width,
        height,
        pixels: dst.into_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn solid(width: u32, height: u32, rgb: [u8; 3]) -> RgbImage {
        RgbImage {
            width,
            height,
            pixels: rgb.repeat((width * height) as usize),
        }
    }

    #[test]
    fn a_flat_colour_stays_flat_at_any_size() {
        for (w, h) in [(7, 3), (1, 1), (300, 41)] {
            let out = resize_rgb(solid(64, 48, [10, 200, 255]), w, h).unwrap();
            assert_eq!((out.width, out.height), (w, h));
            assert_eq!(out.pixels, [10, 200, 255].repeat((w * h) as usize));
        }
    }

    #[test]
    fn same_size_is_returned_without_resampling() {
        let mut image = solid(5, 4, [1, 2, 3]);
        image.pixels[7] = 99;
        let out = resize_rgb(image.clone(), 5, 4).unwrap();
        assert_eq!(out, image);
    }

    #[test]
    fn halving_averages_neighbouring_pixels() {
        // Two columns, black and white: halving the width to 1 with the
        // antialiased bilinear filter weights both equally.
        let image = RgbImage {
            width: 2,
            height: 1,
            pixels: vec![0, 0, 0, 255, 255, 255],
        };
        let out = resize_rgb(image, 1, 1).unwrap();
        assert_eq!(out.pixels, vec![128, 128, 128]);
    }
}

//! The last, per-request hot step: centre crop (or zero padding), scaling to
//! [0, 1], per-channel normalisation and the HWC → CHW transpose, fused into
//! one pass over the output through a 256-entry lookup table per channel.

use fovea_core::{ColorOrder, PreprocessConfig};

use crate::decode::RgbImage;
use crate::error::VisionError;
use crate::geometry::crop_axis;

/// For each of the image's R, G and B bytes: the normalised value and the
/// output plane it goes to. Entries are computed with torchvision's own f32
/// operations, `(v / 255 - mean) / std`, so the table is bit-identical to it.
struct ChannelTables {
    lut: [[f32; 256]; 3],
    plane: [usize; 3],
}

impl ChannelTables {
    /// `mean` and `std` are indexed by output channel, i.e. in the model's
    /// channel order (B, G, R for a `bgr` model).
    fn new(spec: &PreprocessConfig) -> Self {
        let plane = match spec.color {
            ColorOrder::Rgb => [0, 1, 2],
            ColorOrder::Bgr => [2, 1, 0],
        };
        let mut lut = [[0.0; 256]; 3];
        for (source, table) in lut.iter_mut().enumerate() {
            let out = plane[source];
            for (value, entry) in table.iter_mut().enumerate() {
                *entry = (value as f32 / 255.0 - spec.mean[out]) / spec.std[out];
            }
        }
        Self { lut, plane }
    }
}

/// Centre-crops `image` to `[height, width]` (padding with black like
/// torchvision when it is smaller), normalises, and writes the three channel
/// planes (NCHW for one image) into `out`, which must hold `3 × height × width`.
pub fn crop_normalize_into(
    image: &RgbImage,
    crop: [u32; 2],
    spec: &PreprocessConfig,
    out: &mut [f32],
) -> Result<(), VisionError> {
    let [crop_h, crop_w] = crop;
    let plane_len = crop_h as usize * crop_w as usize;
    if out.len() != 3 * plane_len {
        return Err(VisionError::OutputSize {
            expected: 3 * plane_len,
            actual: out.len(),
        });
    }
    let src_w = image.width as usize;
    if image.pixels.len() != src_w * image.height as usize * 3 {
        return Err(VisionError::Decode(format!(
            "{}×{} RGB image with {} bytes",
            image.width,
            image.height,
            image.pixels.len()
        )));
    }
    let tables = ChannelTables::new(spec);
    let y = crop_axis(image.height, crop_h);
    let x = crop_axis(image.width, crop_w);

    let (first, rest) = out.split_at_mut(plane_len);
    let (second, third) = rest.split_at_mut(plane_len);
    let mut planes = [first, second, third];
    if y.len < crop_h || x.len < crop_w {
        for (source, table) in tables.lut.iter().enumerate() {
            planes[tables.plane[source]].fill(table[0]);
        }
    }
    let [p0, p1, p2] = &mut planes;
    // Reorder the planes by source channel once, outside the loop.
    let [r_plane, g_plane, b_plane] = match spec.color {
        ColorOrder::Rgb => [p0, p1, p2],
        ColorOrder::Bgr => [p2, p1, p0],
    };
    let [r_lut, g_lut, b_lut] = &tables.lut;
    let (sx, dx, row_len) = (x.src_start as usize, x.dst_start as usize, x.len as usize);
    let crop_w = crop_w as usize;
    for row in 0..y.len as usize {
        let src_start = ((y.src_start as usize + row) * src_w + sx) * 3;
        let src = &image.pixels[src_start..src_start + row_len * 3];
        let dst_start = (y.dst_start as usize + row) * crop_w + dx;
        let dst = dst_start..dst_start + row_len;
        let pixels = src
            .chunks_exact(3)
            .zip(&mut r_plane[dst.clone()])
            .zip(&mut g_plane[dst.clone()])
            .zip(&mut b_plane[dst]);
        for (((px, r), g), b) in pixels {
            *r = r_lut[usize::from(px[0])];
            *g = g_lut[usize::from(px[1])];
            *b = b_lut[usize::from(px[2])];
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 4×2 image whose pixel (x, y) is (10x + y, 100 + 10x + y, 200 + y).
    fn gradient() -> RgbImage {
        let mut pixels = Vec::new();
        for y in 0..2u8 {
            for x in 0..4u8 {
                pixels.extend([10 * x + y, 100 + 10 * x + y, 200 + y]);
            }
        }
        RgbImage {
            width: 4,
            height: 2,
            pixels,
        }
    }

    fn identity_spec(color: ColorOrder) -> PreprocessConfig {
        PreprocessConfig {
            mean: [0.0; 3],
            std: [1.0 / 255.0; 3],
            color,
            ..PreprocessConfig::default()
        }
    }

    fn close(a: &[f32], b: &[f32]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-3)
    }

    #[test]
    fn output_is_channel_planes_of_the_centre_crop() {
        let mut out = vec![0.0; 3 * 2 * 2];
        crop_normalize_into(
            &gradient(),
            [2, 2],
            &identity_spec(ColorOrder::Rgb),
            &mut out,
        )
        .unwrap();
        // (4 - 2) / 2 = 1: columns 1 and 2.
        let expected = [
            10.0, 20.0, 11.0, 21.0, // R
            110.0, 120.0, 111.0, 121.0, // G
            200.0, 200.0, 201.0, 201.0, // B
        ];
        assert!(close(&out, &expected), "{out:?}");
    }

    #[test]
    fn bgr_models_get_the_blue_plane_first() {
        let mut out = vec![0.0; 3 * 2 * 4];
        crop_normalize_into(
            &gradient(),
            [2, 4],
            &identity_spec(ColorOrder::Bgr),
            &mut out,
        )
        .unwrap();
        assert!(close(&out[..4], &[200.0; 4]), "{out:?}");
        assert!(close(&out[16..20], &[0.0, 10.0, 20.0, 30.0]), "{out:?}");
    }

    #[test]
    fn normalisation_matches_torchvision_arithmetic_bit_for_bit() {
        let spec = PreprocessConfig::imagenet();
        let image = RgbImage {
            width: 1,
            height: 1,
            pixels: vec![0, 128, 255],
        };
        let mut out = vec![0.0; 3];
        crop_normalize_into(&image, [1, 1], &spec, &mut out).unwrap();
        let expected: Vec<f32> = [0u8, 128, 255]
            .iter()
            .enumerate()
            .map(|(c, v)| (f32::from(*v) / 255.0 - spec.mean[c]) / spec.std[c])
            .collect();
        assert_eq!(out, expected);
        assert!((out[0] - (-2.117_904)).abs() < 1e-5, "{}", out[0]);
        assert!((out[2] - 2.64).abs() < 1e-5, "{}", out[2]);
    }

    #[test]
    fn a_crop_larger_than_the_image_is_padded_with_black() {
        let spec = PreprocessConfig::imagenet();
        let mut out = vec![f32::NAN; 3 * 4 * 6];
        crop_normalize_into(&gradient(), [4, 6], &spec, &mut out).unwrap();
        let black: Vec<f32> = (0..3).map(|c| -spec.mean[c] / spec.std[c]).collect();
        for c in 0..3 {
            let plane = &out[c * 24..(c + 1) * 24];
            // Rows 1-2 and columns 1-4 hold the image; the rest is padding.
            for (i, v) in plane.iter().enumerate() {
                let (row, col) = (i / 6, i % 6);
                let inside = (1..3).contains(&row) && (1..5).contains(&col);
                if !inside {
                    assert!((v - black[c]).abs() < 1e-6, "c{c} ({row},{col}) = {v}");
                } else if c == 0 {
                    let original = f32::from(10 * (col as u8 - 1) + (row as u8 - 1));
                    let expected = (original / 255.0 - spec.mean[0]) / spec.std[0];
                    assert_eq!(*v, expected, "({row},{col})");
                }
            }
        }
    }

    #[test]
    fn a_wrongly_sized_output_buffer_is_refused() {
        let mut out = vec![0.0; 11];
        let err = crop_normalize_into(&gradient(), [2, 2], &PreprocessConfig::imagenet(), &mut out)
            .unwrap_err();
        assert_eq!(
            err,
            VisionError::OutputSize {
                expected: 12,
                actual: 11
            }
        );
    }
}

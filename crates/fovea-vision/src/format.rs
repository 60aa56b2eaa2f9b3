//! Which image formats fovea accepts, recognised from their magic bytes only:
//! a client's Content-Type or file name is never trusted.

use std::fmt;

/// An accepted image container format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImageFormat {
    Jpeg,
    Png,
    Webp,
    /// Only the first frame of an animation is used.
    Gif,
    Bmp,
    Tiff,
}

impl ImageFormat {
    /// Recognises the format from the first bytes of the file; `None` when it is none of ours.
    pub fn detect(bytes: &[u8]) -> Option<ImageFormat> {
        const PNG: &[u8] = b"\x89PNG\r\n\x1a\n";
        match bytes {
            [0xFF, 0xD8, 0xFF, ..] => Some(ImageFormat::Jpeg),
            b if b.starts_with(PNG) => Some(ImageFormat::Png),
            [
                b'R',
                b'I',
                b'F',
                b'F',
                _,
                _,
                _,
                _,
                b'W',
                b'E',
                b'B',
                b'P',
                ..,
            ] => Some(ImageFormat::Webp),
            [b'G', b'I', b'F', b'8', b'7' | b'9', b'a', ..] => Some(ImageFormat::Gif),
            [b'B', b'M', ..] => Some(ImageFormat::Bmp),
            // Classic TIFF (42) and BigTIFF (43), little- and big-endian.
            [b'I', b'I', 42 | 43, 0, ..] | [b'M', b'M', 0, 42 | 43, ..] => Some(ImageFormat::Tiff),
            _ => None,
        }
    }

    /// The IANA media type, e.g. for a response header or a log line.
    pub fn mime_type(self) -> &'static str {
        match self {
            ImageFormat::Jpeg => "image/jpeg",
            ImageFormat::Png => "image/png",
            ImageFormat::Webp => "image/webp",
            ImageFormat::Gif => "image/gif",
            ImageFormat::Bmp => "image/bmp",
            ImageFormat::Tiff => "image/tiff",
        }
    }

    /// The `image` crate's name for the format.
    pub(crate) fn to_image_crate(self) -> image::ImageFormat {
        match self {
            ImageFormat::Jpeg => image::ImageFormat::Jpeg,
            ImageFormat::Png => image::ImageFormat::Png,
            ImageFormat::Webp => image::ImageFormat::WebP,
            ImageFormat::Gif => image::ImageFormat::Gif,
            ImageFormat::Bmp => image::ImageFormat::Bmp,
            ImageFormat::Tiff => image::ImageFormat::Tiff,
        }
    }
}

impl fmt::Display for ImageFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ImageFormat::Jpeg => "jpeg",
            ImageFormat::Png => "png",
            ImageFormat::Webp => "webp",
            ImageFormat::Gif => "gif",
            ImageFormat::Bmp => "bmp",
            ImageFormat::Tiff => "tiff",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_format_is_recognised_by_its_magic_bytes() {
        let cases: [(&[u8], ImageFormat); 8] = [
            (b"\xFF\xD8\xFF\xE0\0\x10JFIF", ImageFormat::Jpeg),
            (b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", ImageFormat::Png),
            (b"RIFF\x24\0\0\0WEBPVP8 ", ImageFormat::Webp),
            (b"GIF89a\x01\0\x01\0", ImageFormat::Gif),
            (b"GIF87a\x01\0\x01\0", ImageFormat::Gif),
            (b"BM\x3a\0\0\0", ImageFormat::Bmp),
            (b"II*\0\x08\0\0\0", ImageFormat::Tiff),
            (b"MM\0*\0\0\0\x08", ImageFormat::Tiff),
        ];
        for (bytes, format) in cases {
            assert_eq!(ImageFormat::detect(bytes), Some(format), "{bytes:?}");
        }
    }

    #[test]
    fn other_content_is_not_mistaken_for_an_image() {
        for bytes in [
            &b""[..],
            b"\xFF\xD8",
            b"\x89PNG\r\n",
            b"RIFF\x24\0\0\0WAVEfmt ",
            b"GIF88a",
            b"<svg xmlns=",
            b"%PDF-1.7",
            b"{\"image\": 1}",
        ] {
            assert_eq!(ImageFormat::detect(bytes), None, "{bytes:?}");
        }
    }
}

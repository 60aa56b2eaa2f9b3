//! Turns the three body forms of `POST /api/v1/predict` (multipart, JSON,
//! raw image bytes) into one [`PredictInput`]: the images, where to get them,
//! and the options. Nothing here decodes an image or knows about models.

use axum::extract::{FromRequest, Multipart, Request};
use axum::http::header::CONTENT_TYPE;
use base64::Engine as _;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use bytes::Bytes;
use serde::Deserialize;

use crate::error::ApiError;
use fovea_core::ErrorKind;

/// Where one image comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum ImageSource {
    /// Encoded image bytes sent by the client.
    Bytes(Bytes),
    /// A URL the server is asked to fetch.
    Url(String),
}

/// Options that select the model and shape the answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PredictOptions {
    /// Model name; the default model when absent.
    pub model: Option<String>,
    /// Model version; the highest loaded one when absent.
    pub version: Option<u64>,
    /// How many classes to return.
    pub top_k: Option<usize>,
}

impl PredictOptions {
    /// Fills the fields `self` leaves empty from `fallback`.
    fn or(self, fallback: &PredictOptions) -> PredictOptions {
        PredictOptions {
            model: self.model.or_else(|| fallback.model.clone()),
            version: self.version.or(fallback.version),
            top_k: self.top_k.or(fallback.top_k),
        }
    }
}

/// A parsed predict request.
#[derive(Debug, Clone, PartialEq)]
pub struct PredictInput {
    /// The images, in the order the client sent them.
    pub images: Vec<ImageSource>,
    /// Options from the query string, overridden by body fields.
    pub options: PredictOptions,
    /// Several images were sent, so the answer is a list, one entry per image.
    pub batch: bool,
}

/// JSON body: one image as base64 or URL, plus options.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonBody {
    image_base64: Option<String>,
    url: Option<String>,
    model: Option<String>,
    version: Option<u64>,
    top_k: Option<usize>,
}

/// Content types accepted as a raw image body. The format itself is always
/// detected from the bytes; the type only says "this body is an image".
pub const RAW_IMAGE_TYPES: &[&str] = &[
    "image/jpeg",
    "image/jpg",
    "image/png",
    "image/webp",
    "image/gif",
    "image/bmp",
    "image/x-ms-bmp",
    "image/tiff",
    "application/octet-stream",
];

/// The media type without parameters, lower-cased.
fn media_type(request: &Request) -> Option<String> {
    let value = request.headers().get(CONTENT_TYPE)?.to_str().ok()?;
    let essence = value.split(';').next().unwrap_or_default().trim();
    Some(essence.to_ascii_lowercase())
}

/// Parses a predict request body according to its content type.
pub async fn parse(
    request: Request,
    query: PredictOptions,
    max_images: usize,
) -> Result<PredictInput, ApiError> {
    let Some(media) = media_type(&request) else {
        return Err(ApiError::new(
            ErrorKind::UnsupportedMediaType,
            "missing_content_type",
            "set Content-Type: multipart/form-data, application/json or image/*",
        ));
    };
    match media.as_str() {
        "multipart/form-data" => {
            let multipart = Multipart::from_request(request, &()).await?;
            parse_multipart(multipart, query, max_images).await
        }
        "application/json" => {
            let body = Bytes::from_request(request, &()).await?;
            parse_json(&body, query)
        }
        raw if RAW_IMAGE_TYPES.contains(&raw) => {
            let body = Bytes::from_request(request, &()).await?;
            Ok(PredictInput {
                images: vec![ImageSource::Bytes(body)],
                options: query,
                batch: false,
            })
        }
        other => Err(ApiError::new(
            ErrorKind::UnsupportedMediaType,
            "unsupported_content_type",
            format!(
                "Content-Type `{other}` is not accepted; use multipart/form-data, \
                 application/json or one of {}",
                RAW_IMAGE_TYPES.join(", ")
            ),
        )),
    }
}

async fn parse_multipart(
    mut multipart: Multipart,
    query: PredictOptions,
    max_images: usize,
) -> Result<PredictInput, ApiError> {
    let mut images = Vec::new();
    let mut form = PredictOptions::default();
    while let Some(field) = multipart.next_field().await? {
        let name = field.name().unwrap_or_default().to_string();
        match name.as_str() {
            "image" => {
                if images.len() == max_images {
                    return Err(ApiError::new(
                        ErrorKind::TooLarge,
                        "too_many_images",
                        format!("at most {max_images} images per request"),
                    ));
                }
                images.push(ImageSource::Bytes(field.bytes().await?));
            }
            "model" => form.model = Some(field.text().await?),
            "version" => form.version = Some(parse_number(&field.text().await?, "version")?),
            "top_k" => form.top_k = Some(parse_number(&field.text().await?, "top_k")?),
            other => {
                return Err(ApiError::invalid(
                    "unknown_field",
                    format!("unknown form field `{other}`; expected image, model, version, top_k"),
                ));
            }
        }
    }
    if images.is_empty() {
        return Err(ApiError::invalid(
            "missing_image",
            "the form has no `image` file field",
        ));
    }
    let batch = images.len() > 1;
    Ok(PredictInput {
        images,
        options: form.or(&query),
        batch,
    })
}

fn parse_number<T: std::str::FromStr>(text: &str, field: &str) -> Result<T, ApiError> {
    text.trim().parse().map_err(|_| {
        ApiError::invalid(
            "invalid_option",
            format!("form field `{field}` must be a non-negative integer, got `{text}`"),
        )
    })
}

fn parse_json(body: &[u8], query: PredictOptions) -> Result<PredictInput, ApiError> {
    let json: JsonBody = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid("invalid_json", format!("invalid JSON body: {e}")))?;
    let image = match (json.image_base64, json.url) {
        (Some(data), None) => ImageSource::Bytes(decode_base64(&data)?),
        (None, Some(url)) => ImageSource::Url(url),
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(
                "ambiguous_image",
                "give either `image_base64` or `url`, not both",
            ));
        }
        (None, None) => {
            return Err(ApiError::invalid(
                "missing_image",
                "the JSON body needs `image_base64` or `url`",
            ));
        }
    };
    let body_options = PredictOptions {
        model: json.model,
        version: json.version,
        top_k: json.top_k,
    };
    Ok(PredictInput {
        images: vec![image],
        options: body_options.or(&query),
        batch: false,
    })
}

const INDIFFERENT: GeneralPurposeConfig =
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
const STANDARD: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::STANDARD, INDIFFERENT);
const URL_SAFE: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::URL_SAFE, INDIFFERENT);

/// Decodes base64 in the standard or URL-safe alphabet, padded or not, with
/// an optional `data:image/...;base64,` prefix and ignoring line breaks.
pub fn decode_base64(text: &str) -> Result<Bytes, ApiError> {
    let payload = match text.strip_prefix("data:") {
        Some(rest) => {
            let (meta, data) = rest.split_once(',').ok_or_else(|| {
                ApiError::invalid("invalid_base64", "data URL without a `,` before the data")
            })?;
            if !meta.ends_with(";base64") {
                return Err(ApiError::invalid(
                    "invalid_base64",
                    "data URL must be base64-encoded (`data:image/...;base64,`)",
                ));
            }
            data
        }
        None => text,
    };
    let compact: String = payload
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    if compact.is_empty() {
        return Err(ApiError::invalid(
            "invalid_base64",
            "`image_base64` is empty",
        ));
    }
    STANDARD
        .decode(&compact)
        .or_else(|_| URL_SAFE.decode(&compact))
        .map(Bytes::from)
        .map_err(|e| ApiError::invalid("invalid_base64", format!("invalid base64: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;

    fn request(content_type: &str, body: impl Into<Body>) -> Request {
        Request::builder()
            .method("POST")
            .uri("/api/v1/predict")
            .header(CONTENT_TYPE, content_type)
            .body(body.into())
            .unwrap()
    }

    #[test]
    fn base64_is_accepted_in_both_alphabets_with_or_without_padding_and_prefix() {
        let bytes: Vec<u8> = (0..=255u8).collect();
        let standard = base64::engine::general_purpose::STANDARD.encode(&bytes);
        let url_safe = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&bytes);
        assert_ne!(standard, url_safe);
        for text in [
            standard.clone(),
            url_safe.clone(),
            format!("data:image/png;base64,{standard}"),
            format!("data:image/jpeg;base64,{url_safe}"),
            standard
                .as_bytes()
                .chunks(76)
                .map(|c| std::str::from_utf8(c).unwrap())
                .collect::<Vec<_>>()
                .join("\r\n"),
        ] {
            assert_eq!(decode_base64(&text).unwrap(), bytes.as_slice(), "{text}");
        }
    }

    #[test]
    fn malformed_base64_is_a_client_error() {
        for text in [
            "not base64!",
            "",
            "data:image/png,abc",
            "data:image/png;base64",
        ] {
            let err = decode_base64(text).unwrap_err();
            assert_eq!(err.code, "invalid_base64", "{text}");
            assert_eq!(err.kind, ErrorKind::InvalidInput);
        }
    }

    #[tokio::test]
    async fn json_body_options_override_query_options() {
        let body = r#"{"image_base64": "AAAA", "top_k": 3}"#;
        let query = PredictOptions {
            model: Some("m".into()),
            version: None,
            top_k: Some(9),
        };
        let input = parse(request("application/json", body), query, 8)
            .await
            .unwrap();
        assert_eq!(input.options.model.as_deref(), Some("m"));
        assert_eq!(input.options.top_k, Some(3));
        assert_eq!(
            input.images,
            vec![ImageSource::Bytes(Bytes::from_static(&[0, 0, 0]))]
        );
    }

    #[tokio::test]
    async fn json_without_an_image_names_the_missing_field() {
        let err = parse(
            request("application/json", r#"{"top_k": 3}"#),
            PredictOptions::default(),
            8,
        )
        .await
        .unwrap_err();
        assert_eq!(err.code, "missing_image");
    }

    #[tokio::test]
    async fn unknown_json_fields_are_refused() {
        let err = parse(
            request("application/json", r#"{"image_b64": "AAAA"}"#),
            PredictOptions::default(),
            8,
        )
        .await
        .unwrap_err();
        assert_eq!(err.code, "invalid_json");
        assert!(err.message.contains("image_b64"), "{}", err.message);
    }

    #[tokio::test]
    async fn content_type_parameters_and_case_are_ignored() {
        let input = parse(
            request("Image/PNG; charset=binary", "xyz"),
            PredictOptions::default(),
            8,
        )
        .await
        .unwrap();
        assert_eq!(
            input.images,
            vec![ImageSource::Bytes(Bytes::from_static(b"xyz"))]
        );
    }

    #[tokio::test]
    async fn svg_and_text_bodies_are_unsupported_media() {
        for content_type in ["image/svg+xml", "text/plain"] {
            let err = parse(request(content_type, "x"), PredictOptions::default(), 8)
                .await
                .unwrap_err();
            assert_eq!(err.kind, ErrorKind::UnsupportedMediaType, "{content_type}");
        }
    }

    fn multipart(parts: &[(&str, &[u8])]) -> Request {
        let mut body = Vec::new();
        for (name, data) in parts {
            body.extend_from_slice(
                format!(
                    "--XX\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"f\"\r\n\r\n"
                )
                .as_bytes(),
            );
            body.extend_from_slice(data);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(b"--XX--\r\n");
        request("multipart/form-data; boundary=XX", body)
    }

    #[tokio::test]
    async fn several_image_parts_form_an_ordered_batch() {
        let input = parse(
            multipart(&[("image", b"one"), ("top_k", b"2"), ("image", b"two")]),
            PredictOptions::default(),
            8,
        )
        .await
        .unwrap();
        assert!(input.batch);
        assert_eq!(input.options.top_k, Some(2));
        assert_eq!(
            input.images,
            vec![
                ImageSource::Bytes(Bytes::from_static(b"one")),
                ImageSource::Bytes(Bytes::from_static(b"two"))
            ]
        );
    }

    #[tokio::test]
    async fn a_form_without_an_image_part_is_refused() {
        let err = parse(
            multipart(&[("picture", b"x")]),
            PredictOptions::default(),
            8,
        )
        .await
        .unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidInput);
        let err = parse(multipart(&[("model", b"m")]), PredictOptions::default(), 8)
            .await
            .unwrap_err();
        assert_eq!(err.code, "missing_image");
    }

    #[tokio::test]
    async fn more_images_than_allowed_is_too_large() {
        let err = parse(
            multipart(&[("image", b"1"), ("image", b"2"), ("image", b"3")]),
            PredictOptions::default(),
            2,
        )
        .await
        .unwrap_err();
        assert_eq!(
            (err.kind, err.code),
            (ErrorKind::TooLarge, "too_many_images")
        );
    }
}

//! Every error `code` fovea can answer (or log), in one table: the README's
//! "Error codes" section is generated from it, and a test
//! (`tests/error_codes.rs`) checks it against the codes the sources of every
//! crate actually use, so a new code cannot go undocumented.

use fovea_core::ErrorKind::{
    self, Internal, InvalidInput, NotFound, RateLimited, Refused, Timeout, TooLarge,
    Unauthenticated, Unavailable, UnsupportedMediaType,
};

use crate::error::{grpc_code_for, status_for};

/// How an error reaches a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Answered with the status (and gRPC code) of its kind.
    Kind(ErrorKind),
    /// Answered with a fixed HTTP status that no kind describes (405).
    Http(u16),
    /// A start-up failure: logged by `fovea serve`, never in a response.
    StartUp,
}

/// One error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorCode {
    /// The `code` value (simple API bodies and logs; TF Serving and KServe bodies carry only the message).
    pub code: &'static str,
    /// How it is answered.
    pub answer: Answer,
    /// When it happens.
    pub meaning: &'static str,
}

const fn code(code: &'static str, kind: ErrorKind, meaning: &'static str) -> ErrorCode {
    ErrorCode {
        code,
        answer: Answer::Kind(kind),
        meaning,
    }
}

/// Every code, grouped by where it arises.
pub const ERROR_CODES: &[ErrorCode] = &[
    // Access (keys, rates, capacity), before any other work.
    code(
        "unauthenticated",
        Unauthenticated,
        "Keys are on (`--api-keys-file`) and the request carries none (`Authorization: Bearer`, `X-API-Key`, gRPC `authorization` metadata)",
    ),
    code(
        "invalid_api_key",
        Unauthenticated,
        "The API key presented is not one of the keys file's",
    ),
    code(
        "rate_limited",
        RateLimited,
        "The client (its key, or its address when keys are off) exceeded `--rate-limit`; retry after `Retry-After`",
    ),
    code(
        "server_busy",
        Unavailable,
        "`--max-concurrent-requests` requests (HTTP and gRPC) are in flight already; retry after `Retry-After`",
    ),
    code(
        "client_busy",
        RateLimited,
        "The client (its key, or its address when keys are off) has `--max-concurrent-per-client` requests in flight already; retry after `Retry-After`",
    ),
    // Requests in general.
    code(
        "invalid_request",
        InvalidInput,
        "The request could not be read: bad query string or path, broken body framing, or a protocol request of the wrong structure",
    ),
    code(
        "body_too_large",
        TooLarge,
        "The body exceeds `--max-body-bytes`",
    ),
    code(
        "body_timeout",
        InvalidInput,
        "The request body did not arrive within `--body-read-timeout-secs` (a client trickling it)",
    ),
    code("route_not_found", NotFound, "No such route"),
    ErrorCode {
        code: "method_not_allowed",
        answer: Answer::Http(405),
        meaning: "The route does not serve that method",
    },
    code(
        "not_ready",
        Unavailable,
        "Models are still loading (`/readyz`: or a model has no version that loaded)",
    ),
    code("internal_error", Internal, "A handler panicked"),
    code(
        "metrics_disabled",
        NotFound,
        "`/metrics` without a metrics recorder (fovea-server embedded)",
    ),
    code(
        "openapi_failed",
        Internal,
        "The OpenAPI document could not be serialised",
    ),
    // The simple API's body forms.
    code(
        "missing_content_type",
        UnsupportedMediaType,
        "`/api/v1/predict` without a Content-Type",
    ),
    code(
        "unsupported_content_type",
        UnsupportedMediaType,
        "A Content-Type `/api/v1/predict` does not take",
    ),
    code(
        "invalid_json",
        InvalidInput,
        "The JSON body does not parse or has an unknown field",
    ),
    code(
        "missing_image",
        InvalidInput,
        "No `image` form field, or neither `image_base64` nor `url`",
    ),
    code(
        "ambiguous_image",
        InvalidInput,
        "Both `image_base64` and `url`",
    ),
    code(
        "invalid_base64",
        InvalidInput,
        "`image_base64` (or a TF Serving `b64` value) is not base64",
    ),
    code(
        "unknown_field",
        InvalidInput,
        "A form field other than `image`, `model`, `version`, `top_k`",
    ),
    code(
        "invalid_option",
        InvalidInput,
        "`version` or `top_k` is not a non-negative integer, or `top_k` is 0",
    ),
    code(
        "too_many_images",
        TooLarge,
        "More images than `--max-images-per-request`",
    ),
    code(
        "no_image",
        InvalidInput,
        "A TF Serving or KServe request holding no image",
    ),
    code(
        "model_takes_tensors",
        InvalidInput,
        "Encoded images for a model whose input is a tensor",
    ),
    code(
        "no_model",
        Unavailable,
        "No model is available to be the default",
    ),
    code(
        "not_a_websocket",
        InvalidInput,
        "`GET /api/v1/stream` without a WebSocket upgrade (the stream's later failures are close codes)",
    ),
    // Fetching an image URL.
    code(
        "url_fetch_disabled",
        Refused,
        "A `url` while `serve --allow-url-fetch` is off",
    ),
    code("invalid_url", InvalidInput, "The `url` does not parse"),
    code(
        "url_scheme_refused",
        Refused,
        "A scheme other than http or https",
    ),
    code(
        "url_address_refused",
        Refused,
        "The host resolves to a refused address (private, link-local, ...)",
    ),
    code("url_too_many_redirects", Refused, "More than 3 redirects"),
    code(
        "url_bad_redirect",
        Refused,
        "A redirect without a usable Location",
    ),
    code(
        "url_upstream_status",
        Refused,
        "The URL's server answered a non-2xx status",
    ),
    code(
        "url_unreachable",
        Refused,
        "The URL's server cannot be reached",
    ),
    code(
        "url_timeout",
        Timeout,
        "The URL's server did not answer within `--url-timeout-ms`",
    ),
    code(
        "url_body_too_large",
        TooLarge,
        "The URL's body exceeds `--url-max-bytes`",
    ),
    // Images.
    code("empty_image", InvalidInput, "An image of 0 bytes"),
    code(
        "invalid_image",
        InvalidInput,
        "The image is corrupt or truncated",
    ),
    code(
        "unsupported_image_format",
        UnsupportedMediaType,
        "Not JPEG, PNG, WebP, GIF, BMP or TIFF",
    ),
    code(
        "image_too_large",
        TooLarge,
        "The encoded image exceeds the byte limit",
    ),
    code(
        "image_too_many_pixels",
        TooLarge,
        "The image exceeds `--max-pixels` (read from its header)",
    ),
    code(
        "image_aspect_ratio_too_extreme",
        TooLarge,
        "Resizing the image would exceed `--max-pixels`",
    ),
    code(
        "image_decode_limit",
        TooLarge,
        "The decoder's own memory limit was reached",
    ),
    code(
        "no_fixed_output_size",
        Internal,
        "The model's preprocessing gives no fixed size (a config error)",
    ),
    code(
        "output_size_mismatch",
        Internal,
        "Preprocessing did not give the model's input size (a config error)",
    ),
    code(
        "invalid_preprocess",
        Internal,
        "The model's `[preprocess]` is invalid",
    ),
    code("resize_failed", Internal, "Resizing failed"),
    code(
        "preprocess_panicked",
        Internal,
        "Preprocessing an image panicked",
    ),
    // Models and the engine.
    code("model_not_found", NotFound, "No model of that name"),
    code(
        "version_not_found",
        NotFound,
        "The model has no such version",
    ),
    code(
        "version_label_not_found",
        NotFound,
        "A TF Serving version label that is not a version number",
    ),
    code(
        "model_not_ready",
        Unavailable,
        "The model has no available version (loading or failed)",
    ),
    code(
        "model_unloading",
        Unavailable,
        "The version stopped taking work while the request waited",
    ),
    code(
        "queue_full",
        Unavailable,
        "The version's queue is full (`queue_capacity`); retry after `Retry-After`",
    ),
    code(
        "batch_too_large",
        TooLarge,
        "One request holds more items than the queue can ever take",
    ),
    code(
        "deadline_exceeded",
        Timeout,
        "The request's deadline (`timeout_ms`) passed before it ran",
    ),
    code("shutting_down", Unavailable, "The server is shutting down"),
    code(
        "invalid_input",
        InvalidInput,
        "The tensor does not fit the model's input",
    ),
    code(
        "runtime_unavailable",
        Unavailable,
        "ONNX Runtime is not available",
    ),
    code(
        "backend_not_compiled",
        Unavailable,
        "The requested backend is not compiled into this binary",
    ),
    code(
        "model_load_failed",
        Internal,
        "A model file could not be loaded",
    ),
    code(
        "model_unsupported",
        Internal,
        "The model is not a single-input, single-output f32 model",
    ),
    code(
        "inference_failed",
        Internal,
        "The backend failed to run a batch",
    ),
    code(
        "empty_output",
        Internal,
        "The model returned no output for an image",
    ),
    code("no_answer", Internal, "No image produced an answer"),
    code(
        "output_mismatch",
        Internal,
        "The outputs of a request's images do not stack",
    ),
    // TF Serving and KServe requests.
    code(
        "not_found",
        NotFound,
        "A `/v1/models/...` path TF Serving does not have",
    ),
    code(
        "invalid_version",
        InvalidInput,
        "A version in the path is not a non-negative integer",
    ),
    code(
        "unknown_signature",
        InvalidInput,
        "A signature other than `serving_default`",
    ),
    code(
        "missing_model_spec",
        InvalidInput,
        "A TF Serving gRPC request without `model_spec`",
    ),
    code(
        "unknown_metadata_field",
        InvalidInput,
        "GetModelMetadata for a field other than `signature_def`",
    ),
    code(
        "regress_unsupported",
        InvalidInput,
        "`:regress`: fovea's models are classifiers",
    ),
    code(
        "malformed_json",
        InvalidInput,
        "The JSON body does not parse",
    ),
    code(
        "malformed_request",
        InvalidInput,
        "The JSON body has the wrong structure (TF Serving)",
    ),
    code(
        "unknown_input",
        InvalidInput,
        "An input other than the model's",
    ),
    code("wrong_input_count", InvalidInput, "Not exactly one input"),
    code(
        "unknown_output",
        InvalidInput,
        "An output other than the model's",
    ),
    code(
        "mixed_instances",
        InvalidInput,
        "Instances mix images with numbers",
    ),
    code(
        "ragged_instances",
        InvalidInput,
        "Instances of different shapes",
    ),
    code(
        "missing_feature",
        InvalidInput,
        "A `:classify` example without an input feature",
    ),
    code(
        "invalid_feature",
        InvalidInput,
        "A `:classify` feature that is neither an image nor numbers",
    ),
    code(
        "invalid_header",
        InvalidInput,
        "`Inference-Header-Content-Length` is not a byte count",
    ),
    code(
        "unsupported_dtype",
        InvalidInput,
        "A tensor datatype fovea does not take",
    ),
    code(
        "invalid_shape",
        InvalidInput,
        "A negative or overflowing shape",
    ),
    code(
        "shape_mismatch",
        InvalidInput,
        "The data does not fill the declared shape, or the model's",
    ),
    code(
        "byte_length_mismatch",
        InvalidInput,
        "Raw tensor bytes of the wrong length",
    ),
    code(
        "value_not_representable",
        InvalidInput,
        "A value that does not fit f32",
    ),
    code(
        "tensor_too_large",
        TooLarge,
        "A tensor, or a request's tensors or Classify examples together, of more elements than the body limit allows",
    ),
    code("missing_tensor_data", InvalidInput, "A tensor without data"),
    code(
        "invalid_tensor_data",
        InvalidInput,
        "Tensor data of the wrong type",
    ),
    code(
        "truncated_payload",
        InvalidInput,
        "Binary tensor data shorter than declared",
    ),
    // Start-up (logged by `fovea serve`, never answered).
    ErrorCode {
        code: "api_keys_invalid",
        answer: Answer::StartUp,
        meaning: "The `--api-keys-file` cannot be read, holds no key, or a line is not a key (at start-up; on a reload the previous keys stay in force)",
    },
    ErrorCode {
        code: "tls_invalid",
        answer: Answer::StartUp,
        meaning: "`--tls-cert`, `--tls-key` or `--tls-client-ca` cannot be read, holds no PEM of its kind, or the key does not match the certificate (at start-up; on a reload the certificate in force stays)",
    },
    ErrorCode {
        code: "bind_failed",
        answer: Answer::StartUp,
        meaning: "The HTTP or gRPC address cannot be bound",
    },
    ErrorCode {
        code: "serve_failed",
        answer: Answer::StartUp,
        meaning: "Accepting connections failed",
    },
    ErrorCode {
        code: "http_client_failed",
        answer: Answer::StartUp,
        meaning: "The URL-fetch client cannot be built",
    },
    ErrorCode {
        code: "metrics_failed",
        answer: Answer::StartUp,
        meaning: "The metrics recorder cannot be installed",
    },
    ErrorCode {
        code: "grpc_failed",
        answer: Answer::StartUp,
        meaning: "The gRPC server failed",
    },
];

impl ErrorCode {
    /// The HTTP status column: `400`, or `—` for start-up errors.
    pub fn http(&self) -> String {
        match self.answer {
            Answer::Kind(kind) => status_for(kind).as_u16().to_string(),
            Answer::Http(status) => status.to_string(),
            Answer::StartUp => "—".to_string(),
        }
    }

    /// The gRPC status column, e.g. `INVALID_ARGUMENT`.
    pub fn grpc(&self) -> String {
        match self.answer {
            Answer::Kind(kind) => grpc_name(grpc_code_for(kind)).to_string(),
            Answer::Http(_) | Answer::StartUp => "—".to_string(),
        }
    }
}

fn grpc_name(code: tonic::Code) -> &'static str {
    match code {
        tonic::Code::InvalidArgument => "INVALID_ARGUMENT",
        tonic::Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        tonic::Code::NotFound => "NOT_FOUND",
        tonic::Code::Unavailable => "UNAVAILABLE",
        tonic::Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        tonic::Code::Internal => "INTERNAL",
        tonic::Code::Unauthenticated => "UNAUTHENTICATED",
        _ => "UNKNOWN",
    }
}

/// The README's table, rows ordered by HTTP status then code.
pub fn markdown_table() -> String {
    let mut rows: Vec<&ErrorCode> = ERROR_CODES.iter().collect();
    rows.sort_by_key(|c| (c.answer == Answer::StartUp, c.http(), c.code));
    let mut table = String::from("| code | HTTP | gRPC | when |\n|---|---|---|---|\n");
    for row in rows {
        table.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            row.code,
            row.http(),
            row.grpc(),
            row.meaning
        ));
    }
    table
}

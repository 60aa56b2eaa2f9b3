//! One vocabulary for "whose fault is it": every layer's error maps onto an
//! [`ErrorKind`], and each front end maps kinds onto its own status codes in
//! exactly one table.

/// What went wrong, from the client's point of view. Front ends map this to
/// HTTP statuses (400, 401, 413, 415, 404, 422, 429, 503, 504, 500) and gRPC codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The request is malformed: undecodable image, bad base64, bad JSON, wrong shape.
    InvalidInput,
    /// A body, image or batch exceeds a configured limit.
    TooLarge,
    /// The content type (or image format) is not one fovea accepts.
    UnsupportedMediaType,
    /// Unknown model, version or route.
    NotFound,
    /// Well-formed but refused by policy (e.g. a URL pointing at a private address).
    Refused,
    /// No valid API key was presented.
    Unauthenticated,
    /// The client (key or address) exceeded its request rate; retry later.
    RateLimited,
    /// Not ready, or overloaded (queue full): try again later.
    Unavailable,
    /// A deadline passed, or an upstream (URL fetch) timed out.
    Timeout,
    /// fovea's own fault.
    Internal,
}

impl ErrorKind {
    /// True when the client caused it (it must never be logged as a server error).
    pub fn is_client_error(self) -> bool {
        !matches!(
            self,
            ErrorKind::Internal | ErrorKind::Unavailable | ErrorKind::Timeout
        )
    }
}

/// Implemented by every layer's error enum so that front ends can answer with
/// the right status and a stable machine-readable code without knowing the layer.
pub trait FoveaError: std::error::Error {
    /// Whose fault, and therefore which status code.
    fn kind(&self) -> ErrorKind;
    /// A stable snake_case code for the JSON error body, e.g. `image_too_large`.
    fn code(&self) -> &'static str;
}

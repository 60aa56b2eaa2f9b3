//! What fovea's client commands (`predict`, `models reload`, `bench`) share
//! when they talk to a server: the API key, the HTTP client with fovea's TLS
//! roots, and reading an answer that may be one of the server's errors.

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Args;
use fovea_server::error::ErrorBody;
use tonic::metadata::AsciiMetadataValue;

/// `--api-key`, for a server started with `--api-keys-file`.
#[derive(Debug, Clone, Default, Args)]
pub struct ApiKeyArgs {
    /// API key, when the server has keys on (sent as `Authorization: Bearer`,
    /// gRPC `authorization` metadata).
    #[arg(long, env = "FOVEA_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
}

impl ApiKeyArgs {
    /// The `Authorization` value to send, when a key was given.
    pub fn authorization(&self) -> Option<String> {
        self.api_key.as_ref().map(|key| format!("Bearer {key}"))
    }

    /// The same as gRPC metadata, checked once so that every request can carry it.
    pub fn grpc_authorization(&self) -> anyhow::Result<Option<AsciiMetadataValue>> {
        self.authorization()
            .map(|value| {
                value
                    .parse()
                    .context("--api-key holds characters a header cannot carry")
            })
            .transpose()
    }
}

/// `message` as a gRPC request carrying `authorization` (from
/// [`ApiKeyArgs::grpc_authorization`]) when there is one.
pub fn grpc_request<T>(
    message: T,
    authorization: &Option<AsciiMetadataValue>,
) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(value) = authorization {
        request
            .metadata_mut()
            .insert("authorization", value.clone());
    }
    request
}

/// An HTTP client builder that trusts what fovea's TLS client trusts.
pub fn http_client() -> anyhow::Result<reqwest::ClientBuilder> {
    Ok(reqwest::Client::builder().tls_backend_preconfigured(fovea_server::tls_client_config()?))
}

/// The body of a successful answer; otherwise an error with the status and,
/// when the body is one of fovea's error bodies, its message and code.
pub async fn success_body(response: reqwest::Response) -> anyhow::Result<Bytes> {
    let status = response.status();
    let body = response.bytes().await?;
    if status.is_success() {
        return Ok(body);
    }
    match serde_json::from_slice::<ErrorBody>(&body) {
        Ok(e) => bail!(
            "server answered {status}: {} ({})",
            e.error.message,
            e.error.code
        ),
        Err(_) => bail!(
            "server answered {status}: {}",
            String::from_utf8_lossy(&body)
        ),
    }
}

/// A WebSocket handshake request for `url`, carrying the API key when there is one.
pub fn websocket_request(
    url: &str,
    key: &ApiKeyArgs,
) -> anyhow::Result<tokio_tungstenite::tungstenite::handshake::client::Request> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = url
        .into_client_request()
        .with_context(|| format!("{url} is not a WebSocket address"))?;
    if let Some(value) = key.authorization() {
        let value = value
            .parse()
            .context("--api-key holds characters a header cannot carry")?;
        request.headers_mut().insert("authorization", value);
    }
    Ok(request)
}

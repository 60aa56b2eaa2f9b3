//! Who may call fovea, and how often: optional API keys (HTTP `Authorization:
//! Bearer` or `X-API-Key`; gRPC `authorization` metadata), a token bucket per
//! client (the key's name, or the client address when keys are off), a cap on
//! requests in flight (all clients together, and optionally per client). One
//! [`Access`] serves both the HTTP middleware ([`guard`]) and the gRPC layer
//! ([`GrpcGuardLayer`]).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::num::{NonZeroU32, NonZeroUsize};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use fovea_core::{ErrorKind, defaults};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use ipnet::IpNet;
use subtle::ConstantTimeEq;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::{self, ApiError};
use crate::state::AppState;
use crate::tls::{Tls, TlsError, TlsFiles};

/// Access policy; each field is a `fovea serve` flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessConfig {
    /// Keys file: one key per line, or `name:key`; `#` comments. None: no keys.
    pub api_keys_file: Option<PathBuf>,
    /// `/metrics` answers without a key.
    pub public_metrics: bool,
    /// The demo page (`/`) and `/openapi.json` answer without a key.
    pub public_demo: bool,
    /// Requests per second per client, with `rate_burst` at once; None: unlimited.
    pub rate_limit: Option<NonZeroU32>,
    /// Requests a client may make at once before the rate applies.
    pub rate_burst: NonZeroU32,
    /// Proxies whose `X-Forwarded-For` names the client (e.g. the nginx in front).
    pub trusted_proxies: Vec<IpNet>,
    /// Requests (HTTP requests and gRPC calls) in flight at once, all
    /// clients together; beyond it 503 / UNAVAILABLE.
    pub max_concurrent_requests: usize,
    /// Requests one client (key, or address when keys are off) may have in
    /// flight at once; beyond it 429 / RESOURCE_EXHAUSTED. None: no cap but
    /// the global one.
    pub max_concurrent_per_client: Option<NonZeroUsize>,
    /// Open connections per listener (HTTP, gRPC); more wait to be accepted.
    pub max_connections: usize,
    /// How often the keys file (and the TLS files) are checked for changes.
    pub keys_poll_interval: Duration,
    /// A request's headers must arrive within this (also the idle time after
    /// which a keep-alive connection is closed).
    pub header_read_timeout: Duration,
    /// A request's whole body must arrive within this.
    pub body_read_timeout: Duration,
    /// gRPC calls one HTTP/2 connection may have open at once (streams
    /// beyond it wait in the client: what stops one connection's flood).
    pub grpc_max_concurrent_streams: u32,
    /// TLS on both listeners (and client certificates when it names a CA);
    /// None: plain text. Its files are watched like the keys file.
    pub tls: Option<TlsFiles>,
}

impl Default for AccessConfig {
    fn default() -> Self {
        Self {
            api_keys_file: None,
            public_metrics: false,
            public_demo: false,
            rate_limit: None,
            rate_burst: NonZeroU32::new(defaults::RATE_BURST).unwrap_or(NonZeroU32::MIN),
            trusted_proxies: Vec::new(),
            max_concurrent_requests: defaults::MAX_CONCURRENT_REQUESTS,
            max_concurrent_per_client: None,
            max_connections: defaults::MAX_CONNECTIONS,
            keys_poll_interval: Duration::from_secs(defaults::KEYS_POLL_SECS),
            header_read_timeout: Duration::from_secs(defaults::HEADER_READ_TIMEOUT_SECS),
            body_read_timeout: Duration::from_secs(defaults::BODY_READ_TIMEOUT_SECS),
            grpc_max_concurrent_streams: defaults::GRPC_MAX_CONCURRENT_STREAMS,
            tls: None,
        }
    }
}

/// Why the keys file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    /// The file could not be read.
    #[error("cannot read API keys file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file holds no key: every request would be refused.
    #[error(
        "{path} holds no API key, which would refuse every request (to serve without keys, leave out --api-keys-file)"
    )]
    Empty { path: PathBuf },
    /// A line is not a key.
    #[error("{path}:{line}: {reason}")]
    Line {
        path: PathBuf,
        line: usize,
        reason: String,
    },
}

/// Why the access policy's files could not be used.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// The API keys file.
    #[error(transparent)]
    Keys(#[from] KeysError),
    /// The TLS certificate, key or client CA.
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// The accepted keys, held as SHA-256 digests: the secrets themselves are
/// never kept in memory after loading, and a presented key is compared with
/// every digest in constant time (subtle), so timing says nothing about
/// which key, or how much of one, matched.
#[derive(Debug, Default)]
struct KeySet {
    entries: Vec<(String, [u8; 32])>,
}

fn digest(key: &str) -> [u8; 32] {
    let hash = ring::digest::digest(&ring::digest::SHA256, key.as_bytes());
    let mut out = [0; 32];
    out.copy_from_slice(hash.as_ref());
    out
}

impl KeySet {
    fn parse(path: &Path, text: &str) -> Result<Self, KeysError> {
        let mut entries: Vec<(String, [u8; 32])> = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let refuse = |reason: &str| KeysError::Line {
                path: path.to_path_buf(),
                line: index + 1,
                reason: reason.to_string(),
            };
            let (name, key) = match line.split_once(':') {
                Some((name, key)) => (name.trim().to_string(), key.trim()),
                None => (String::new(), line),
            };
            if key.is_empty() || key.chars().any(char::is_whitespace) {
                return Err(refuse("a key must be non-empty and hold no spaces"));
            }
            let hash = digest(key);
            // An unnamed key is named by the start of its digest: stable,
            // and says nothing usable about the secret.
            let name = if name.is_empty() {
                format!("key-{}", hex(&hash[..4]))
            } else {
                name
            };
            if entries.iter().any(|(n, _)| *n == name) {
                return Err(refuse(&format!("the name `{name}` is used twice")));
            }
            entries.push((name, hash));
        }
        // Also what a reader sees of a file rewritten in place, between its
        // truncation and the write: refusing it keeps the keys in force
        // instead of locking every client out.
        if entries.is_empty() {
            return Err(KeysError::Empty {
                path: path.to_path_buf(),
            });
        }
        Ok(Self { entries })
    }

    /// The name of `key`, comparing against every entry in constant time.
    fn name_of(&self, key: &str) -> Option<&str> {
        let presented = digest(key);
        let mut found = None;
        for (name, hash) in &self.entries {
            if bool::from(presented.ct_eq(hash)) {
                found = Some(name.as_str());
            }
        }
        found
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The probes: never behind a key, so an orchestrator needs none.
pub(crate) const ALWAYS_PUBLIC: [&str; 2] = ["/healthz", "/readyz"];

/// The caller a request was admitted as: the key's name, or the client
/// address when keys are off. Handlers and logs read it from the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client(pub String);

/// The access policy in force, with its reloadable keys.
pub struct Access {
    config: AccessConfig,
    keys: RwLock<Option<Arc<KeySet>>>,
    /// The keys file's modification time when last loaded.
    loaded: RwLock<Option<SystemTime>>,
    limiter: Option<DefaultKeyedRateLimiter<String>>,
    in_flight: Arc<Semaphore>,
    /// Each client's own slots, with `max_concurrent_per_client`; a client
    /// holding none is forgotten by the upkeep task.
    in_flight_per_client: Mutex<HashMap<String, Arc<Semaphore>>>,
    tls: Option<Arc<Tls>>,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Access {
    /// The policy of `config`, with its keys and TLS files read now.
    pub fn new(config: AccessConfig) -> Result<Self, AccessError> {
        let limiter = config
            .rate_limit
            .map(|rate| RateLimiter::keyed(Quota::per_second(rate).allow_burst(config.rate_burst)));
        let tls = config.tls.clone().map(Tls::load).transpose()?.map(Arc::new);
        let access = Self {
            tls,
            in_flight: Arc::new(Semaphore::new(config.max_concurrent_requests.max(1))),
            in_flight_per_client: Mutex::new(HashMap::new()),
            config,
            keys: RwLock::new(None),
            loaded: RwLock::new(None),
            limiter,
        };
        access.reload_keys()?;
        Ok(access)
    }

    /// Open connections allowed per listener.
    pub fn max_connections(&self) -> usize {
        self.config.max_connections.max(1)
    }

    /// The timeouts of HTTP connections.
    pub fn connection_timeouts(&self) -> crate::listener::ConnectionTimeouts {
        crate::listener::ConnectionTimeouts {
            header_read: self
                .config
                .header_read_timeout
                .max(Duration::from_millis(1)),
        }
    }

    /// gRPC calls one connection may have open at once.
    pub fn grpc_max_concurrent_streams(&self) -> u32 {
        self.config.grpc_max_concurrent_streams.max(1)
    }

    /// How long a request's body may take to arrive.
    pub fn body_read_timeout(&self) -> Duration {
        self.config.body_read_timeout.max(Duration::from_millis(1))
    }

    /// Whether API keys are required.
    pub fn keys_required(&self) -> bool {
        self.config.api_keys_file.is_some()
    }

    /// TLS for the listeners, when it is on.
    pub fn tls(&self) -> Option<&Arc<Tls>> {
        self.tls.as_ref()
    }

    /// Reads the keys file and the TLS files again (SIGHUP); on error what
    /// is in force stays. Both are tried whatever the other's outcome.
    pub fn reload(&self) -> Result<(), AccessError> {
        let keys = self.reload_keys();
        let tls = self.tls.as_ref().map_or(Ok(()), |tls| tls.reload());
        keys?;
        Ok(tls?)
    }

    /// Reads the keys file again; on error the keys in force stay.
    fn reload_keys(&self) -> Result<(), KeysError> {
        let Some(path) = &self.config.api_keys_file else {
            return Ok(());
        };
        let read = |source| KeysError::Read {
            path: path.clone(),
            source,
        };
        let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
        let text = std::fs::read_to_string(path).map_err(read)?;
        let keys = KeySet::parse(path, &text)?;
        tracing::info!(file = %path.display(), keys = keys.entries.len(), "API keys loaded");
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(keys));
        *self.loaded.write().unwrap_or_else(|e| e.into_inner()) = modified;
        Ok(())
    }

    /// Reloads the keys when the file changed since they were loaded.
    fn reload_if_changed(&self) {
        let Some(path) = &self.config.api_keys_file else {
            return;
        };
        let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
        if modified == *self.loaded.read().unwrap_or_else(|e| e.into_inner()) {
            return;
        }
        if let Err(e) = self.reload_keys() {
            tracing::error!("API keys not reloaded, the previous ones stay in force: {e}");
            // Said once per change of the file, not at every check.
            *self.loaded.write().unwrap_or_else(|e| e.into_inner()) = modified;
        }
    }

    /// Watches the keys and TLS files and forgets idle clients' rate buckets, until
    /// the returned task is aborted or the policy dropped.
    pub fn spawn_upkeep(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let interval = self
            .config
            .keys_poll_interval
            .max(Duration::from_millis(10));
        let access = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(access) = access.upgrade() else {
                    return;
                };
                access.reload_if_changed();
                if let Some(tls) = &access.tls {
                    tls.reload_if_changed();
                }
                if let Some(limiter) = &access.limiter {
                    limiter.retain_recent();
                }
                access.forget_idle_clients();
            }
        })
    }

    fn authenticate(&self, presented: Option<&str>) -> Result<Option<String>, ApiError> {
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner()).clone();
        let Some(keys) = keys else {
            return Ok(None);
        };
        let presented = presented.ok_or_else(|| {
            ApiError::new(
                ErrorKind::Unauthenticated,
                "unauthenticated",
                "an API key is required: send `Authorization: Bearer <key>` or `X-API-Key: <key>`",
            )
        })?;
        keys.name_of(presented)
            .map(|name| Some(name.to_string()))
            .ok_or_else(|| {
                ApiError::new(
                    ErrorKind::Unauthenticated,
                    "invalid_api_key",
                    "the API key is not valid",
                )
            })
    }

    fn rate(&self, client: &str) -> Result<(), ApiError> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        limiter.check_key(&client.to_string()).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            metrics::counter!("fovea_requests_rate_limited_total").increment(1);
            ApiError::new(
                ErrorKind::RateLimited,
                "rate_limited",
                format!(
                    "too many requests from `{client}`: the limit is {} per second",
                    self.config.rate_limit.map_or(0, NonZeroU32::get)
                ),
            )
            // ApiError answers at least 1 s for a rate limit.
            .retry_after(seconds)
        })
    }

    /// Admits a request: its key (when keys are on), then its client's rate.
    /// `peer` is the connection's address, `forwarded` its `X-Forwarded-For`.
    fn admit(
        &self,
        presented: Option<&str>,
        peer: Option<IpAddr>,
        forwarded: Option<&str>,
    ) -> Result<Client, ApiError> {
        let client = match self.authenticate(presented)? {
            Some(name) => name,
            None => self
                .client_address(peer, forwarded)
                .map_or_else(|| "unknown".to_string(), |ip| ip.to_string()),
        };
        self.rate(&client)?;
        Ok(Client(client))
    }

    /// Takes a request slot of the server's and, with a per-client cap, one
    /// of `client`'s, held until the returned [`Slots`] drop; 429 when the
    /// client has its cap in flight, 503 when the server has.
    fn occupy(&self, client: &Client) -> Result<Slots, ApiError> {
        let client_slot = match self.config.max_concurrent_per_client {
            None => None,
            Some(cap) => {
                let slots = {
                    let mut clients = self
                        .in_flight_per_client
                        .lock()
                        .unwrap_or_else(|e| e.into_inner());
                    // A busy client is found without allocating its name again.
                    match clients.get(&client.0) {
                        Some(slots) => slots.clone(),
                        None => clients
                            .entry(client.0.clone())
                            .or_insert_with(|| Arc::new(Semaphore::new(cap.get())))
                            .clone(),
                    }
                };
                let slot = slots.try_acquire_owned().map_err(|_| {
                    metrics::counter!("fovea_requests_refused_busy_total", "scope" => "client")
                        .increment(1);
                    ApiError::new(
                        ErrorKind::RateLimited,
                        "client_busy",
                        format!(
                            "`{}` has {cap} requests in flight already (--max-concurrent-per-client)",
                            client.0
                        ),
                    )
                })?;
                Some(slot)
            }
        };
        let server_slot = self.in_flight.clone().try_acquire_owned().map_err(|_| {
            metrics::counter!("fovea_requests_refused_busy_total", "scope" => "server")
                .increment(1);
            ApiError::new(
                ErrorKind::Unavailable,
                "server_busy",
                format!(
                    "{} requests are in flight already (--max-concurrent-requests)",
                    self.config.max_concurrent_requests
                ),
            )
        })?;
        Ok(Slots {
            _server: server_slot,
            _client: client_slot,
        })
    }

    /// Drops the per-client slots of clients with nothing in flight (a held
    /// slot keeps its semaphore referenced), so that the map stays as small
    /// as the set of busy clients.
    fn forget_idle_clients(&self) {
        self.in_flight_per_client
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, slots| Arc::strong_count(slots) > 1);
    }

    /// The client's address: the peer's, or, when the peer is a trusted
    /// proxy, the right-most address of `X-Forwarded-For` that is not one
    /// (the left part of that header is whatever the client claimed).
    fn client_address(&self, peer: Option<IpAddr>, forwarded: Option<&str>) -> Option<IpAddr> {
        let mut client = peer?;
        if !self.is_trusted(client) {
            return Some(client);
        }
        let Some(forwarded) = forwarded else {
            return Some(client);
        };
        for hop in forwarded.rsplit(',') {
            let Ok(hop) = hop.trim().parse::<IpAddr>() else {
                break;
            };
            client = hop;
            if !self.is_trusted(hop) {
                break;
            }
        }
        Some(client)
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.config
            .trusted_proxies
            .iter()
            .any(|net| net.contains(&ip))
    }

    fn is_public(&self, path: &str) -> bool {
        match path {
            path if ALWAYS_PUBLIC.contains(&path) => true,
            "/metrics" => self.config.public_metrics,
            "/" | "/openapi.json" => self.config.public_demo,
            _ => false,
        }
    }

    /// The gRPC side of [`guard`]: the key from `authorization` (or
    /// `x-api-key`) metadata, the rate, then the slots; `UNAUTHENTICATED`,
    /// `RESOURCE_EXHAUSTED` or `UNAVAILABLE` otherwise.
    #[allow(clippy::result_large_err)]
    fn admit_grpc<B>(&self, request: &http::Request<B>) -> Result<(Client, Slots), tonic::Status> {
        let headers = request.headers();
        let forwarded = headers.get("x-forwarded-for").and_then(|v| v.to_str().ok());
        let peer = request
            .extensions()
            .get::<tonic::transport::server::TcpConnectInfo>()
            .and_then(|info| info.remote_addr())
            .map(|addr| addr.ip());
        let client = self.admit(presented_key(headers), peer, forwarded)?;
        let slots = self.occupy(&client)?;
        Ok((client, slots))
    }
}

/// The request slots a request holds while it is answered: one of the
/// server's and, with a per-client cap, one of its client's.
#[derive(Debug)]
pub struct Slots {
    _server: OwnedSemaphorePermit,
    _client: Option<OwnedSemaphorePermit>,
}

/// Keys, rates and request slots on every gRPC call of every service,
/// before its message is decoded. A tower layer rather than tonic's
/// interceptor because the slots must be held until the call is answered;
/// a streaming call holds them until its response stream starts (streams
/// have limits of their own).
#[derive(Debug, Clone)]
pub struct GrpcGuardLayer {
    access: Arc<Access>,
}

impl GrpcGuardLayer {
    pub fn new(access: Arc<Access>) -> Self {
        Self { access }
    }
}

impl<S> tower::Layer<S> for GrpcGuardLayer {
    type Service = GrpcGuard<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcGuard {
            access: self.access.clone(),
            inner,
        }
    }
}

/// The service [`GrpcGuardLayer`] wraps around the gRPC routes.
#[derive(Debug, Clone)]
pub struct GrpcGuard<S> {
    access: Arc<Access>,
    inner: S,
}

impl<S, B> tower::Service<http::Request<B>> for GrpcGuard<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = futures_util::future::BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        match self.access.admit_grpc(&request) {
            Err(refusal) => Box::pin(std::future::ready(Ok(refusal.into_http()))),
            Ok((client, slots)) => {
                request.extensions_mut().insert(client);
                let answer = self.inner.call(request);
                Box::pin(async move {
                    let answer = answer.await;
                    drop(slots);
                    answer
                })
            }
        }
    }
}

/// The key of an `Authorization: Bearer <key>` value.
fn bearer(value: &str) -> Option<&str> {
    let (scheme, key) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| key.trim())
}

fn presented_key(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer)
        .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()))
}

/// HTTP middleware: public paths pass; every other request needs a valid key
/// (when keys are on), a token from its client's bucket (when a rate is
/// set) and free request slots (the server's and its client's), or is
/// answered 401, 429 or 503 in its protocol's error shape before its body
/// is read.
pub async fn guard(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let access = state.access();
    let path = request.uri().path().to_string();
    if access.is_public(&path) {
        return next.run(request).await;
    }
    let forwarded = request
        .headers()
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok());
    // Present when served over a socket; absent when a test calls the router directly.
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    let admitted = access.admit(presented_key(request.headers()), peer, forwarded);
    let client = match admitted {
        Ok(client) => client,
        Err(refusal) => return error::for_path(&path, refusal),
    };
    let _slots = match access.occupy(&client) {
        Ok(slots) => slots,
        Err(busy) => return error::for_path(&path, busy),
    };
    tracing::Span::current().record("client", client.0.as_str());
    request.extensions_mut().insert(client);
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(keys: Option<&str>, trusted: &[&str]) -> (Access, Option<tempfile::NamedTempFile>) {
        let file = keys.map(|text| {
            let file = tempfile::NamedTempFile::new().unwrap();
            std::fs::write(file.path(), text).unwrap();
            file
        });
        let config = AccessConfig {
            api_keys_file: file.as_ref().map(|f| f.path().to_path_buf()),
            trusted_proxies: trusted.iter().map(|t| t.parse().unwrap()).collect(),
            ..AccessConfig::default()
        };
        (Access::new(config).unwrap(), file)
    }

    #[test]
    fn a_file_without_keys_is_refused_rather_than_refusing_everyone() {
        for text in ["", "# all revoked\n\n"] {
            let refused = KeySet::parse(Path::new("k"), text);
            assert!(
                matches!(refused, Err(KeysError::Empty { .. })),
                "{text:?}: {refused:?}"
            );
        }
    }

    #[test]
    fn keys_are_named_or_named_by_their_digest_and_never_kept_in_clear() {
        let keys = KeySet::parse(Path::new("k"), "# ops\nalice:s3cret-a\n\nb-secret\n").unwrap();
        assert_eq!(keys.name_of("s3cret-a"), Some("alice"));
        let unnamed = keys.name_of("b-secret").unwrap();
        assert!(unnamed.starts_with("key-") && !unnamed.contains("secret"));
        assert_eq!(keys.name_of("s3cret-b"), None);
        assert!(!format!("{keys:?}").contains("s3cret"));
    }

    #[test]
    fn a_bad_keys_file_names_its_line() {
        let error = KeySet::parse(Path::new("keys.txt"), "a:one\na:two\n").unwrap_err();
        assert_eq!(error.to_string(), "keys.txt:2: the name `a` is used twice");
        let error = KeySet::parse(Path::new("keys.txt"), "ok\nname:\n").unwrap_err();
        assert!(error.to_string().starts_with("keys.txt:2: "), "{error}");
    }

    #[test]
    fn bearer_takes_the_scheme_in_any_case_and_nothing_else() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("abc"), None);
    }

    #[test]
    fn forwarded_for_counts_only_behind_a_trusted_proxy() {
        let (access, _) = access(None, &["10.0.0.0/8"]);
        let proxy: IpAddr = "10.1.2.3".parse().unwrap();
        let stranger: IpAddr = "203.0.113.9".parse().unwrap();
        // A client claiming an address of its own choosing is not believed...
        assert_eq!(
            access.client_address(Some(stranger), Some("198.51.100.1")),
            Some(stranger)
        );
        // ...but the proxy's right-most untrusted hop is, whatever the client prepended.
        assert_eq!(
            access.client_address(Some(proxy), Some("1.1.1.1, 198.51.100.7, 10.9.9.9")),
            Some("198.51.100.7".parse().unwrap())
        );
        // IPv4-mapped peers are the same proxy.
        assert_eq!(
            access.client_address(
                Some("::ffff:10.1.2.3".parse().unwrap()),
                Some("198.51.100.8")
            ),
            Some("198.51.100.8".parse().unwrap())
        );
    }
}

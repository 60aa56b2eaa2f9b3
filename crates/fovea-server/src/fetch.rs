//! Fetching an image from a client-supplied URL without becoming an SSRF
//! proxy: off by default; http(s) only; every hop's address is checked; the
//! address checked is the address connected (the check sits in the DNS
//! resolver), so DNS rebinding cannot slip a private address past it;
//! redirects are followed by hand so each one is checked; bytes are capped
//! while streaming.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use fovea_core::{ErrorKind, FoveaError, defaults};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::{StatusCode, Url, header};

use crate::error::ServerError;

/// How (and whether) `{"url": ...}` requests are fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlFetchConfig {
    /// Off by default: a server that fetches URLs is a proxy into its own network.
    pub enabled: bool,
    /// Also allow loopback, RFC 1918, unique-local and CGNAT addresses (tests,
    /// intranets). Link-local (cloud metadata), multicast, broadcast and
    /// unspecified addresses stay refused even then.
    pub allow_private: bool,
    /// Time to establish a TCP (and TLS) connection.
    pub connect_timeout: Duration,
    /// Time for the whole fetch, redirects and body included.
    pub timeout: Duration,
    /// Largest body accepted; larger ones are cut off while streaming.
    pub max_bytes: usize,
    /// Redirects followed before giving up.
    pub max_redirects: usize,
    /// Host names answered from this table instead of DNS and exempt from
    /// the address policy, as if the operator vouched for them. Not on the
    /// command line: it is the seam that lets tests stand an allowed
    /// upstream on loopback while private addresses stay refused (the first
    /// hop of a redirect to a refused address, a slow upstream). Only names
    /// match, so an IP-literal URL is always checked. Empty by default.
    pub trusted_hosts: Vec<(String, IpAddr)>,
}

impl Default for UrlFetchConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            allow_private: false,
            connect_timeout: Duration::from_millis(defaults::URL_CONNECT_TIMEOUT_MS),
            timeout: Duration::from_millis(defaults::URL_TIMEOUT_MS),
            max_bytes: defaults::URL_MAX_BYTES,
            max_redirects: defaults::URL_MAX_REDIRECTS,
            trusted_hosts: Vec::new(),
        }
    }
}

/// Why a URL could not be turned into image bytes.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The server was started without `--allow-url-fetch`.
    #[error("fetching images from URLs is disabled on this server")]
    Disabled,
    /// Not an absolute http(s) URL.
    #[error("invalid URL `{0}`")]
    InvalidUrl(String),
    /// A scheme other than http or https.
    #[error("URL scheme `{0}` is not allowed; use http or https")]
    Scheme(String),
    /// The host is, or resolves only to, an address the policy forbids;
    /// `reason` names the rule and the address.
    #[error("URL host `{host}`: {reason}")]
    ForbiddenAddress { host: String, reason: String },
    /// More redirects than allowed.
    #[error("more than {0} redirects")]
    TooManyRedirects(usize),
    /// A redirect without a usable Location header.
    #[error("redirect without a valid Location header")]
    BadRedirect,
    /// The upstream answered with a non-success status.
    #[error("upstream answered {0}")]
    UpstreamStatus(StatusCode),
    /// The host name did not resolve, or the connection failed.
    #[error("cannot reach upstream: {0}")]
    Unreachable(String),
    /// The upstream did not answer in time.
    #[error("upstream did not answer within {0:?}")]
    Timeout(Duration),
    /// The body exceeded the byte limit.
    #[error("upstream body exceeds {limit} bytes")]
    TooLarge { limit: usize },
}

impl FoveaError for FetchError {
    fn kind(&self) -> ErrorKind {
        match self {
            FetchError::InvalidUrl(_) => ErrorKind::InvalidInput,
            FetchError::Timeout(_) => ErrorKind::Timeout,
            FetchError::TooLarge { .. } => ErrorKind::TooLarge,
            // Upstream failures are answered 422 rather than 502: fovea is
            // not a gateway, the client named a resource that cannot be used.
            FetchError::Disabled
            | FetchError::Scheme(_)
            | FetchError::ForbiddenAddress { .. }
            | FetchError::TooManyRedirects(_)
            | FetchError::BadRedirect
            | FetchError::UpstreamStatus(_)
            | FetchError::Unreachable(_) => ErrorKind::Refused,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            FetchError::Disabled => "url_fetch_disabled",
            FetchError::InvalidUrl(_) => "invalid_url",
            FetchError::Scheme(_) => "url_scheme_refused",
            FetchError::ForbiddenAddress { .. } => "url_address_refused",
            FetchError::TooManyRedirects(_) => "url_too_many_redirects",
            FetchError::BadRedirect => "url_bad_redirect",
            FetchError::UpstreamStatus(_) => "url_upstream_status",
            FetchError::Unreachable(_) => "url_unreachable",
            FetchError::Timeout(_) => "url_timeout",
            FetchError::TooLarge { .. } => "url_body_too_large",
        }
    }
}

/// Why an address may not be fetched from: the rule that refuses it and,
/// for an IPv6 address that carries an IPv4 one, the address it was judged by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// The address as it would be connected to.
    pub addr: IpAddr,
    /// The refusing rule, e.g. "loopback" or "link-local".
    pub rule: &'static str,
    /// How the IPv4 address is carried (e.g. "IPv4-mapped") and which it is.
    pub embedded: Option<(&'static str, Ipv4Addr)>,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.embedded {
            None => write!(f, "{} address {} is refused", self.rule, self.addr),
            Some((how, v4)) => write!(
                f,
                "{} address {v4} ({how} as {}) is refused",
                self.rule, self.addr
            ),
        }
    }
}

/// Why `ip` may not be fetched from, or `None` when it may.
pub fn forbidden_reason(ip: IpAddr, allow_private: bool) -> Option<Refusal> {
    let (rule, embedded) = match ip {
        IpAddr::V4(v4) => (forbidden_v4(v4, allow_private)?, None),
        // An address that reaches an IPv4 host is judged as that host, or
        // [::ffff:127.0.0.1] would be loopback under another name.
        IpAddr::V6(v6) => match embedded_v4(v6) {
            Some((how, v4)) => (forbidden_v4(v4, allow_private)?, Some((how, v4))),
            None => (forbidden_v6(v6, allow_private)?, None),
        },
    };
    Some(Refusal {
        addr: ip,
        rule,
        embedded,
    })
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], prefix: u32) -> bool {
    let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
    u32::from(ip) & mask == u32::from(Ipv4Addr::from(net)) & mask
}

fn forbidden_v4(ip: Ipv4Addr, allow_private: bool) -> Option<&'static str> {
    // Always refused: never a legitimate image host, and 169.254.169.254 is
    // the cloud metadata service, the classic SSRF target. 0.0.0.0 comes
    // before 0/8 because connecting to it reaches this host.
    const ALWAYS: &[([u8; 4], u32, &str)] = &[
        ([0, 0, 0, 0], 32, "unspecified"),
        ([0, 0, 0, 0], 8, "this-network (0.0.0.0/8)"),
        ([169, 254, 0, 0], 16, "link-local"),
        ([224, 0, 0, 0], 4, "multicast"),
        ([240, 0, 0, 0], 4, "reserved or broadcast"),
        ([192, 0, 0, 0], 24, "IETF protocol assignment"),
        ([192, 0, 2, 0], 24, "documentation"),
        ([198, 51, 100, 0], 24, "documentation"),
        ([203, 0, 113, 0], 24, "documentation"),
        ([198, 18, 0, 0], 15, "benchmarking"),
    ];
    const PRIVATE: &[([u8; 4], u32, &str)] = &[
        ([127, 0, 0, 0], 8, "loopback"),
        ([10, 0, 0, 0], 8, "private (RFC 1918)"),
        ([172, 16, 0, 0], 12, "private (RFC 1918)"),
        ([192, 168, 0, 0], 16, "private (RFC 1918)"),
        ([100, 64, 0, 0], 10, "carrier-grade NAT"),
    ];
    if let Some((_, _, why)) = ALWAYS.iter().find(|(n, p, _)| in_v4(ip, *n, *p)) {
        return Some(why);
    }
    if allow_private {
        return None;
    }
    PRIVATE
        .iter()
        .find(|(n, p, _)| in_v4(ip, *n, *p))
        .map(|(_, _, why)| *why)
}

/// The IPv4 address an IPv6 address leads to, and the form that carries it:
/// the kernel connects IPv4-mapped ones over IPv4, translators (NAT64,
/// SIIT) and tunnels (6to4, IPv4-compatible) deliver the others there.
fn embedded_v4(ip: Ipv6Addr) -> Option<(&'static str, Ipv4Addr)> {
    let segments = ip.segments();
    let octets = ip.octets();
    let last32 = Ipv4Addr::new(octets[12], octets[13], octets[14], octets[15]);
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(("IPv4-mapped", v4));
    }
    match segments[..6] {
        [0, 0, 0, 0, 0xffff, 0] => return Some(("IPv4-translated", last32)),
        [0x64, 0xff9b, 0, 0, 0, 0] => return Some(("NAT64", last32)),
        // :: and ::1 are IPv6's own unspecified and loopback addresses.
        [0, 0, 0, 0, 0, 0] if !ip.is_unspecified() && !ip.is_loopback() => {
            return Some(("IPv4-compatible", last32));
        }
        _ => {}
    }
    if segments[0] == 0x2002 {
        let v4 = Ipv4Addr::new(octets[2], octets[3], octets[4], octets[5]);
        return Some(("6to4", v4));
    }
    None
}

fn forbidden_v6(ip: Ipv6Addr, allow_private: bool) -> Option<&'static str> {
    let segments = ip.segments();
    if ip.is_unspecified() {
        return Some("unspecified");
    }
    if segments[..3] == [0x64, 0xff9b, 1] {
        // Local-use NAT64 (RFC 8215) puts the IPv4 address wherever the
        // operator's prefix length says, so it cannot be located and checked
        // (it may be the metadata service): refused even for intranets.
        return Some("local-use NAT64 (64:ff9b:1::/48)");
    }
    if segments[0] & 0xffc0 == 0xfe80 {
        return Some("link-local");
    }
    if segments[0] & 0xffc0 == 0xfec0 {
        return Some("site-local (deprecated)");
    }
    if segments[0] & 0xff00 == 0xff00 {
        return Some("multicast");
    }
    if segments[0] == 0x2001 && segments[1] == 0x0db8 {
        return Some("documentation");
    }
    if segments[0] == 0x2001 && segments[1] == 0 {
        // Teredo hides an (obfuscated) IPv4 address; no image host needs it.
        return Some("Teredo tunnel");
    }
    if allow_private {
        return None;
    }
    if ip.is_loopback() {
        return Some("loopback");
    }
    if segments[0] & 0xfe00 == 0xfc00 {
        return Some("unique local (fc00::/7)");
    }
    None
}

/// The resolver reqwest connects through: it resolves with the system
/// resolver and keeps only allowed addresses, so the address that was checked
/// is the one connected to.
#[derive(Debug, Clone)]
struct GuardedResolver {
    allow_private: bool,
    trusted: Arc<[(String, IpAddr)]>,
}

/// Marker error from [`GuardedResolver`], found again in reqwest's error chain.
#[derive(Debug, thiserror::Error)]
#[error("URL host `{host}`: {reason}")]
struct Blocked {
    host: String,
    reason: String,
}

/// Keeps the allowed addresses; refuses when none is left.
fn filter_addresses(
    host: &str,
    addrs: impl IntoIterator<Item = SocketAddr>,
    allow_private: bool,
) -> Result<Vec<SocketAddr>, Blocked> {
    let mut allowed = Vec::new();
    let mut reasons = Vec::new();
    for addr in addrs {
        match forbidden_reason(addr.ip(), allow_private) {
            None => allowed.push(addr),
            Some(refusal) => reasons.push(refusal.to_string()),
        }
    }
    if allowed.is_empty() {
        let reason = if reasons.is_empty() {
            "it resolves to no address".to_string()
        } else {
            format!(
                "every address it resolves to is refused ({})",
                reasons.join(", ")
            )
        };
        return Err(Blocked {
            host: host.to_string(),
            reason,
        });
    }
    Ok(allowed)
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        let host = name.as_str().to_string();
        let trusted: Vec<SocketAddr> = self
            .trusted
            .iter()
            .filter(|(trusted, _)| trusted.eq_ignore_ascii_case(&host))
            .map(|(_, ip)| SocketAddr::new(*ip, 0))
            .collect();
        Box::pin(async move {
            if !trusted.is_empty() {
                let addrs: Addrs = Box::new(trusted.into_iter());
                return Ok(addrs);
            }
            let resolved = tokio::net::lookup_host((host.as_str(), 0)).await?;
            let allowed = filter_addresses(&host, resolved, allow_private)?;
            let addrs: Addrs = Box::new(allowed.into_iter());
            Ok(addrs)
        })
    }
}

/// A rustls client configuration with the ring provider and the webpki
/// roots: no system OpenSSL, no process-global crypto provider. Hand it to
/// `reqwest::ClientBuilder::tls_backend_preconfigured`.
pub fn tls_client_config() -> Result<rustls::ClientConfig, ServerError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ServerError::HttpClient(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Fetches image bytes from URLs under a [`UrlFetchConfig`] policy.
#[derive(Debug, Clone)]
pub struct UrlFetcher {
    config: UrlFetchConfig,
    client: reqwest::Client,
}

impl UrlFetcher {
    /// Builds the HTTP client (rustls with webpki roots, no proxies, no
    /// automatic redirects, the guarded resolver).
    pub fn new(config: UrlFetchConfig) -> Result<Self, ServerError> {
        let tls = tls_client_config()?;
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .dns_resolver(GuardedResolver {
                allow_private: config.allow_private,
                trusted: config.trusted_hosts.clone().into(),
            })
            // A proxy would connect on our behalf to an address we never checked.
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(config.connect_timeout)
            .timeout(config.timeout)
            .user_agent(concat!("fovea/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ServerError::HttpClient(e.to_string()))?;
        Ok(Self { config, client })
    }

    /// The policy this fetcher applies.
    pub fn config(&self) -> &UrlFetchConfig {
        &self.config
    }

    /// Fetches `url`, following at most `max_redirects` redirects, each hop
    /// checked, the whole bounded by the total timeout.
    pub async fn fetch(&self, url: &str) -> Result<Bytes, FetchError> {
        if !self.config.enabled {
            return Err(FetchError::Disabled);
        }
        let url = Url::parse(url).map_err(|e| FetchError::InvalidUrl(format!("{url}: {e}")))?;
        let total = self.config.timeout;
        tokio::time::timeout(total, self.fetch_following(url))
            .await
            .unwrap_or(Err(FetchError::Timeout(total)))
    }

    async fn fetch_following(&self, mut url: Url) -> Result<Bytes, FetchError> {
        let mut redirects = 0;
        loop {
            check_url(&url, self.config.allow_private)?;
            let response = self
                .client
                .get(url.clone())
                .header(header::ACCEPT, "image/*")
                .send()
                .await
                .map_err(|e| self.classify(&url, e))?;
            let status = response.status();
            if status.is_redirection() {
                redirects += 1;
                if redirects > self.config.max_redirects {
                    return Err(FetchError::TooManyRedirects(self.config.max_redirects));
                }
                let location = response
                    .headers()
                    .get(header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .ok_or(FetchError::BadRedirect)?;
                url = url.join(location).map_err(|_| FetchError::BadRedirect)?;
                continue;
            }
            if !status.is_success() {
                return Err(FetchError::UpstreamStatus(status));
            }
            return self.read_capped(&url, response).await;
        }
    }

    async fn read_capped(
        &self,
        url: &Url,
        mut response: reqwest::Response,
    ) -> Result<Bytes, FetchError> {
        let limit = self.config.max_bytes;
        if response
            .content_length()
            .is_some_and(|len| len > limit as u64)
        {
            return Err(FetchError::TooLarge { limit });
        }
        let mut body = BytesMut::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| self.classify(url, e))? {
            if body.len() + chunk.len() > limit {
                return Err(FetchError::TooLarge { limit });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    }

    fn classify(&self, url: &Url, error: reqwest::Error) -> FetchError {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&error);
        while let Some(inner) = source {
            if let Some(blocked) = inner.downcast_ref::<Blocked>() {
                return FetchError::ForbiddenAddress {
                    host: blocked.host.clone(),
                    reason: blocked.reason.clone(),
                };
            }
            source = inner.source();
        }
        if error.is_timeout() {
            return FetchError::Timeout(self.config.timeout);
        }
        let host = url.host_str().unwrap_or_default();
        FetchError::Unreachable(format!("{host}: {}", error_chain(&error)))
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

/// The per-hop checks that need no DNS: scheme, and IP-literal hosts (which
/// reqwest connects to without asking the resolver).
pub fn check_url(url: &Url, allow_private: bool) -> Result<(), FetchError> {
    match url.scheme() {
        "http" | "https" => {}
        other => return Err(FetchError::Scheme(other.to_string())),
    }
    let ip = match url.host() {
        None => return Err(FetchError::InvalidUrl(format!("{url}: no host"))),
        Some(url::Host::Domain(_)) => return Ok(()),
        Some(url::Host::Ipv4(v4)) => IpAddr::V4(v4),
        Some(url::Host::Ipv6(v6)) => IpAddr::V6(v6),
    };
    match forbidden_reason(ip, allow_private) {
        None => Ok(()),
        Some(reason) => Err(FetchError::ForbiddenAddress {
            host: ip.to_string(),
            reason: reason.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn private_and_special_addresses_are_refused_by_default() {
        for addr in [
            "127.0.0.1",
            "127.255.0.9",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:10.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::",
            "0.1.2.3",
            "::7f00:1",
            "::ffff:0:7f00:1",
            "64:ff9b:1::7f00:1",
            "64:ff9b:1:ff::808:808",
        ] {
            assert!(forbidden_reason(ip(addr), false).is_some(), "{addr}");
        }
    }

    #[test]
    fn public_addresses_are_allowed() {
        for addr in [
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "::ffff:0:808:808",
            "64:ff9b::808:808",
            "2002:808:808::",
        ] {
            assert_eq!(forbidden_reason(ip(addr), false), None, "{addr}");
        }
    }

    #[test]
    fn allow_private_opens_private_ranges_but_never_link_local() {
        for addr in [
            "127.0.0.1",
            "10.0.0.1",
            "192.168.0.1",
            "::1",
            "fd00::1",
            "::ffff:127.0.0.1",
        ] {
            assert_eq!(forbidden_reason(ip(addr), true), None, "{addr}");
        }
        for addr in [
            "169.254.169.254",
            "fe80::1",
            "0.0.0.0",
            "::ffff:169.254.169.254",
        ] {
            assert!(forbidden_reason(ip(addr), true).is_some(), "{addr}");
        }
    }

    #[test]
    fn ipv6_forms_that_carry_an_ipv4_address_are_judged_by_it() {
        for (addr, how) in [
            ("::ffff:127.0.0.1", "IPv4-mapped"),
            ("::ffff:7f00:1", "IPv4-mapped"),
            ("::ffff:0:7f00:1", "IPv4-translated"),
            ("64:ff9b::7f00:1", "NAT64"),
            ("::7f00:1", "IPv4-compatible"),
            ("2002:7f00:1::", "6to4"),
        ] {
            let refusal = forbidden_reason(ip(addr), false).expect(addr);
            assert_eq!(refusal.rule, "loopback", "{addr}");
            assert_eq!(refusal.embedded, Some((how, Ipv4Addr::LOCALHOST)), "{addr}");
        }
        // The IPv4 rule decides, so the private-address switch applies as
        // it does to the IPv4 address itself.
        assert_eq!(forbidden_reason(ip("64:ff9b::a00:1"), true), None);
        assert!(forbidden_reason(ip("64:ff9b::a9fe:a9fe"), true).is_some());
    }

    #[test]
    fn local_use_nat64_is_refused_even_for_intranets() {
        // Its embedded address cannot be located, so a public-looking tail
        // proves nothing.
        for addr in ["64:ff9b:1::808:808", "64:ff9b:1::7f00:1"] {
            let refusal = forbidden_reason(ip(addr), true).expect(addr);
            assert_eq!(refusal.rule, "local-use NAT64 (64:ff9b:1::/48)");
        }
    }

    #[test]
    fn refusals_name_the_rule_and_the_address() {
        let cases = [
            ("127.0.0.1", "loopback address 127.0.0.1 is refused"),
            ("0.0.0.0", "unspecified address 0.0.0.0 is refused"),
            ("::", "unspecified address :: is refused"),
            (
                "169.254.169.254",
                "link-local address 169.254.169.254 is refused",
            ),
            (
                "::ffff:7f00:1",
                "loopback address 127.0.0.1 (IPv4-mapped as ::ffff:127.0.0.1) is refused",
            ),
            (
                "64:ff9b::a9fe:a9fe",
                "link-local address 169.254.169.254 (NAT64 as 64:ff9b::a9fe:a9fe) is refused",
            ),
        ];
        for (addr, message) in cases {
            let refusal = forbidden_reason(ip(addr), false).expect(addr);
            assert_eq!(refusal.to_string(), message);
        }
    }

    #[test]
    fn resolver_keeps_only_allowed_addresses() {
        let addrs = [
            SocketAddr::new(ip("10.0.0.5"), 80),
            SocketAddr::new(ip("93.184.216.34"), 80),
        ];
        let kept = filter_addresses("mixed.example", addrs, false).unwrap();
        assert_eq!(kept, vec![SocketAddr::new(ip("93.184.216.34"), 80)]);
    }

    #[test]
    fn resolver_refuses_a_host_that_resolves_only_to_private_addresses() {
        // What DNS rebinding looks like: a public-looking name answering with
        // the metadata address. The check runs on the answer, not the name.
        let addrs = [SocketAddr::new(ip("169.254.169.254"), 80)];
        let blocked = filter_addresses("rebind.example", addrs, false).unwrap_err();
        assert_eq!(
            blocked.to_string(),
            "URL host `rebind.example`: every address it resolves to is refused \
             (link-local address 169.254.169.254 is refused)"
        );
    }

    #[tokio::test]
    async fn a_trusted_name_is_answered_unfiltered_and_other_names_are_not() {
        let resolver = GuardedResolver {
            allow_private: false,
            trusted: vec![("upstream.test".to_string(), ip("127.0.0.1"))].into(),
        };
        let resolve = |name: &str| resolver.resolve(name.parse().unwrap());
        let addrs: Vec<SocketAddr> = resolve("Upstream.test").await.unwrap().collect();
        assert_eq!(addrs, vec![SocketAddr::new(ip("127.0.0.1"), 0)]);
        // localhost is in every hosts file: resolved by the system, filtered.
        let err = resolve("localhost").await.err().unwrap();
        let blocked = err.downcast_ref::<Blocked>().expect("a Blocked error");
        assert!(
            blocked
                .reason
                .contains("loopback address 127.0.0.1 is refused"),
            "{blocked}"
        );
    }

    #[test]
    fn ip_literal_hosts_are_checked_without_dns() {
        for url in [
            "http://127.0.0.1:8080/a.jpg",
            "http://[::1]/a.jpg",
            "http://169.254.169.254/latest/meta-data",
            "http://[::ffff:7f00:1]/",
            "http://[64:ff9b::7f00:1]/",
            "http://[::]/",
            "http://0.0.0.0/",
        ] {
            let url = Url::parse(url).unwrap();
            assert!(
                matches!(
                    check_url(&url, false),
                    Err(FetchError::ForbiddenAddress { .. })
                ),
                "{url}"
            );
        }
    }

    #[test]
    fn every_spelling_of_an_ipv4_host_is_checked_as_the_address_it_names() {
        // The WHATWG parser reads these as IPv4 (not as domain names that
        // would skip the literal check), and reqwest connects to the
        // address parsed, so the address checked is the one connected.
        for text in [
            "http://2130706433/",
            "http://0x7f000001/",
            "http://0x7f.1/",
            "http://017700000001/",
            "http://0177.0.0.1/",
            "http://127.1/",
            "http://127.0.0.1./",
            "http://%31%32%37.0.0.1/",
            "http://127\u{3002}0\u{3002}0\u{3002}1/",
            "http://public@127.0.0.1/",
            "http://public:pw@127.0.0.1/",
            "http://127.0.0.1#@public/",
        ] {
            let url = Url::parse(text).unwrap();
            assert_eq!(
                url.host(),
                Some(url::Host::Ipv4(Ipv4Addr::LOCALHOST)),
                "{text}"
            );
            let err = check_url(&url, false).unwrap_err();
            assert_eq!(
                err.to_string(),
                "URL host `127.0.0.1`: loopback address 127.0.0.1 is refused",
                "{text}"
            );
        }
        // A backslash ends the authority in http(s) URLs: the host is
        // `public`, and `@127.0.0.1` is path, so it is `public` that is
        // resolved, checked and connected.
        let url = Url::parse("http://public\\@127.0.0.1/").unwrap();
        assert_eq!(url.host_str(), Some("public"));
        assert_eq!(url.path(), "/@127.0.0.1/");
    }

    #[test]
    fn only_http_and_https_are_fetched() {
        for url in [
            "file:///etc/passwd",
            "ftp://example.com/a.jpg",
            "gopher://example.com/",
        ] {
            let url = Url::parse(url).unwrap();
            assert!(
                matches!(check_url(&url, true), Err(FetchError::Scheme(_))),
                "{url}"
            );
        }
    }

    #[test]
    fn a_redirect_hop_to_a_forbidden_host_fails_the_hop_check() {
        // fetch_following runs check_url on every hop, including the joined
        // Location; this is that check applied to a typical redirect chain.
        let first = Url::parse("https://images.example.com/cat.jpg").unwrap();
        assert!(check_url(&first, false).is_ok());
        let hop = first
            .join("http://169.254.169.254/latest/meta-data/")
            .unwrap();
        assert!(check_url(&hop, false).is_err());
        let relative = Url::parse("http://10.0.0.1/").unwrap().join("/x").unwrap();
        assert!(check_url(&relative, false).is_err());
    }

    #[tokio::test]
    async fn disabled_fetching_refuses_before_any_network_access() {
        let fetcher = UrlFetcher::new(UrlFetchConfig::default()).unwrap();
        let err = fetcher
            .fetch("https://example.com/cat.jpg")
            .await
            .unwrap_err();
        assert!(matches!(err, FetchError::Disabled));
        assert_eq!(err.kind(), ErrorKind::Refused);
    }
}

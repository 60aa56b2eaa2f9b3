//! TLS on both listeners (rustls with ring): a certificate chain and key,
//! optionally a CA whose certificates clients must present (mutual TLS).
//! The files are read again on SIGHUP and when they change on disk; a new
//! configuration applies to connections accepted after it, and one that
//! does not load leaves the one in force serving.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio_rustls::TlsAcceptor;

/// The files of `--tls-cert`, `--tls-key` and `--tls-client-ca`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain, the server's own certificate first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM CA certificates; when set, every client must present a
    /// certificate that one of them signed.
    pub client_ca: Option<PathBuf>,
}

/// Why a TLS configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read the TLS {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// A file was read but holds no usable PEM of the kind expected.
    #[error("the TLS {what} {path}: {reason}")]
    Invalid {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    /// rustls refused the combination (e.g. a key that does not match the certificate).
    #[error("TLS configuration refused: {0}")]
    Refused(String),
}

/// Which protocols a listener offers through ALPN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// HTTP/2 and HTTP/1.1 (REST, WebSockets, the demo page).
    Http,
    /// HTTP/2 only: gRPC.
    Grpc,
}

/// The TLS configuration in force, reloadable.
pub struct Tls {
    files: TlsFiles,
    configs: RwLock<Configs>,
    /// The files' modification times when last loaded (or last refused).
    loaded: RwLock<[Option<SystemTime>; 3]>,
}

#[derive(Clone)]
struct Configs {
    http: Arc<ServerConfig>,
    grpc: Arc<ServerConfig>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// Reads `files` now; fails if they do not make a configuration.
    pub fn load(files: TlsFiles) -> Result<Self, TlsError> {
        let stamps = modification_times(&files);
        let configs = build(&files)?;
        Ok(Self {
            files,
            configs: RwLock::new(configs),
            loaded: RwLock::new(stamps),
        })
    }

    /// Whether clients must present a certificate.
    pub fn client_auth(&self) -> bool {
        self.files.client_ca.is_some()
    }

    /// The acceptor for a connection accepted now.
    pub fn acceptor(&self, listener: Listener) -> TlsAcceptor {
        let configs = self.configs.read().unwrap_or_else(|e| e.into_inner());
        TlsAcceptor::from(match listener {
            Listener::Http => configs.http.clone(),
            Listener::Grpc => configs.grpc.clone(),
        })
    }

    /// Reads the files again; on error the configuration in force stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let stamps = modification_times(&self.files);
        let built = build(&self.files);
        // Remembered even on failure: a broken file is reported once per
        // change, not at every check.
        *self.loaded.write().unwrap_or_else(|e| e.into_inner()) = stamps;
        let result = if built.is_ok() { "ok" } else { "failed" };
        metrics::counter!("fovea_tls_reloads_total", "result" => result).increment(1);
        *self.configs.write().unwrap_or_else(|e| e.into_inner()) = built?;
        tracing::info!(cert = %self.files.cert.display(), "TLS certificate loaded");
        Ok(())
    }

    /// Reloads when any of the files changed since the last load.
    pub fn reload_if_changed(&self) {
        let stamps = modification_times(&self.files);
        if stamps == *self.loaded.read().unwrap_or_else(|e| e.into_inner()) {
            return;
        }
        if let Err(e) = self.reload() {
            tracing::error!("TLS not reloaded, the certificate in force stays: {e}");
        }
    }
}

fn modification_times(files: &TlsFiles) -> [Option<SystemTime>; 3] {
    let stamp = |path: &Path| std::fs::metadata(path).and_then(|m| m.modified()).ok();
    [
        stamp(&files.cert),
        stamp(&files.key),
        files.client_ca.as_deref().and_then(stamp),
    ]
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}

fn certificates(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let invalid = |reason: String| TlsError::Invalid {
        what,
        path: path.to_path_buf(),
        reason,
    };
    let pem = read(what, path)?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(format!("not PEM certificates: {e}")))?;
    if chain.is_empty() {
        return Err(invalid("holds no `BEGIN CERTIFICATE` block".into()));
    }
    Ok(chain)
}

fn build(files: &TlsFiles) -> Result<Configs, TlsError> {
    let chain = certificates("certificate", &files.cert)?;
    let key_pem = read("key", &files.key)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::Invalid {
        what: "key",
        path: files.key.clone(),
        reason: format!("no private key: {e}"),
    })?;
    // ring explicitly: the process installs no default provider, and reqwest
    // (URL fetching) uses the same one.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let refused = |e: rustls::Error| TlsError::Refused(e.to_string());
    let config = |alpn: &[&[u8]]| -> Result<Arc<ServerConfig>, TlsError> {
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(refused)?;
        let builder = match &files.client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => builder.with_client_cert_verifier(client_verifier(ca, &provider)?),
        };
        let mut config = builder
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(refused)?;
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    };
    Ok(Configs {
        http: config(&[b"h2", b"http/1.1"])?,
        grpc: config(&[b"h2"])?,
    })
}

fn client_verifier(
    ca: &Path,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in certificates("client CA", ca)? {
        roots.add(certificate).map_err(|e| TlsError::Invalid {
            what: "client CA",
            path: ca.to_path_buf(),
            reason: e.to_string(),
        })?;
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| TlsError::Refused(e.to_string()))
}

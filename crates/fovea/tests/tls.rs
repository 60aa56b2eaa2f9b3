//! TLS on both listeners with certificates made here (rcgen): HTTPS through
//! reqwest and curl, gRPC through a TLS channel, plain text refused, client
//! certificates required with `--tls-client-ca` (none, or one from another
//! CA, is refused), and a new certificate served after a reload without a
//! restart, while a broken one leaves the one in force serving.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::{TestServer, png};
use fovea_proto::inference::ServerLiveRequest;
use fovea_proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use fovea_server::tls::TlsFiles;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

type Ca = CertifiedIssuer<'static, KeyPair>;

fn ca(name: &str) -> Ca {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

/// A certificate and key (PEM) that `ca` signed, for the server (valid for
/// 127.0.0.1 and localhost) or for a client.
fn leaf(ca: &Ca, server: bool) -> (String, String) {
    let names = if server {
        vec!["127.0.0.1".to_string(), "localhost".to_string()]
    } else {
        Vec::new()
    };
    let mut params = CertificateParams::new(names).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, if server { "fovea" } else { "client" });
    params.extended_key_usages = vec![if server {
        ExtendedKeyUsagePurpose::ServerAuth
    } else {
        ExtendedKeyUsagePurpose::ClientAuth
    }];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, ca).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn ca_pem(ca: &Ca) -> String {
    let certificate: &rcgen::Certificate = ca.as_ref();
    certificate.pem()
}

/// The server's files in a directory of their own.
struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new(ca: &Ca, client_ca: Option<&Ca>) -> Self {
        let files = Self {
            dir: tempfile::tempdir().unwrap(),
        };
        files.install(ca);
        if let Some(client_ca) = client_ca {
            std::fs::write(files.path("clients.pem"), ca_pem(client_ca)).unwrap();
        }
        files
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes a server certificate from `ca` over the current one.
    fn install(&self, ca: &Ca) {
        let (cert, key) = leaf(ca, true);
        std::fs::write(self.path("server.pem"), cert).unwrap();
        std::fs::write(self.path("server.key"), key).unwrap();
    }

    fn tls(&self, client_auth: bool) -> TlsFiles {
        TlsFiles {
            cert: self.path("server.pem"),
            key: self.path("server.key"),
            client_ca: client_auth.then(|| self.path("clients.pem")),
        }
    }
}

async fn start(files: &Files, client_auth: bool) -> TestServer {
    let tls = files.tls(client_auth);
    TestServer::start(|config| {
        config.access.tls = Some(tls);
        config.access.keys_poll_interval = Duration::from_millis(20);
    })
    .await
}

/// A rustls client trusting `ca`, presenting `identity` (a certificate and
/// key in PEM) when given, offering `alpn`.
fn client_config(
    ca: &Ca,
    identity: Option<&(String, String)>,
    alpn: &[&[u8]],
) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let mut config = match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}

fn https(ca: &Ca, identity: Option<&(String, String)>) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_backend_preconfigured(client_config(ca, identity, &[b"h2", b"http/1.1"]))
        .build()
        .unwrap()
}

/// `GET /api/v1/models` over HTTPS: the status, or the error's text.
async fn models(client: &reqwest::Client, server: &TestServer) -> Result<u16, String> {
    client
        .get(format!("https://{}/api/v1/models", server.addr))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .map_err(|e| format!("{e:?}"))
}

/// A gRPC channel to `addr` through TLS with `config`.
async fn grpc_channel(
    addr: SocketAddr,
    config: rustls::ClientConfig,
) -> Result<tonic::transport::Channel, tonic::transport::Error> {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    // http://: the TLS is the connector's, tonic only speaks HTTP/2 over it.
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_| {
            let connector = connector.clone();
            async move {
                let tcp = tokio::net::TcpStream::connect(addr).await?;
                let name = ServerName::IpAddress(addr.ip().into());
                let tls = connector.connect(name, tcp).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
            }
        }))
        .await
}

async fn grpc_live(
    server: &TestServer,
    grpc: SocketAddr,
    config: rustls::ClientConfig,
) -> Result<bool, String> {
    let _ = server;
    let channel = grpc_channel(grpc, config)
        .await
        .map_err(|e| format!("{e:?}"))?;
    GrpcInferenceServiceClient::new(channel)
        .server_live(ServerLiveRequest {})
        .await
        .map(|r| r.into_inner().live)
        .map_err(|e| format!("{e:?}"))
}

/// curl's exit status and the HTTP status it printed.
async fn curl(url: &str, args: &[&str]) -> (i32, String) {
    let output = tokio::process::Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{http_version}",
        ])
        .args(args)
        .arg(url)
        .output()
        .await
        .expect("curl runs (apt-get install curl)");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_and_grpc_answer_over_tls_and_plain_text_is_refused() {
    let authority = ca("fovea test CA");
    let files = Files::new(&authority, None);
    let server = start(&files, false).await;
    let client = https(&authority, None);

    // HTTP/2 by ALPN, and a prediction through it.
    let listed = client
        .get(format!("https://{}/api/v1/models", server.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 200);
    assert_eq!(listed.version(), reqwest::Version::HTTP_2);
    let predicted = client
        .post(format!("https://{}/api/v1/predict?model=tiny", server.addr))
        .header("content-type", "image/png")
        .body(png(1))
        .send()
        .await
        .unwrap();
    assert_eq!(predicted.status(), 200);

    // A client that does not trust the CA refuses the server.
    let stranger = https(&ca("another CA"), None);
    assert!(models(&stranger, &server).await.is_err());
    // Plain HTTP on the TLS port gets no answer.
    let plain = server
        .client
        .get(format!("http://{}/api/v1/models", server.addr))
        .send()
        .await;
    assert!(plain.is_err(), "{plain:?}");

    // curl, HTTP/1.1 and HTTP/2.
    let ca_file = files.path("ca.pem");
    std::fs::write(&ca_file, ca_pem(&authority)).unwrap();
    let url = format!("https://127.0.0.1:{}/api/v1/models", server.addr.port());
    for (version, expected) in [("--http1.1", "200 1.1"), ("--http2", "200 2")] {
        let (code, printed) = curl(&url, &["--cacert", path_str(&ca_file), version]).await;
        assert_eq!((code, printed.as_str()), (0, expected), "curl {version}");
    }
    let (code, _) = curl(&url, &[]).await;
    assert_ne!(code, 0, "curl must refuse a certificate it cannot verify");

    // gRPC through TLS; plain-text gRPC on the TLS port fails.
    let grpc = server.serve_grpc().await;
    let live = grpc_live(&server, grpc, client_config(&authority, None, &[b"h2"])).await;
    assert_eq!(live, Ok(true));
    let plain = async {
        let channel = tonic::transport::Channel::from_shared(format!("http://{grpc}"))
            .unwrap()
            .connect()
            .await
            .map_err(|e| e.to_string())?;
        GrpcInferenceServiceClient::new(channel)
            .server_live(ServerLiveRequest {})
            .await
            .map_err(|e| e.to_string())
    }
    .await;
    assert!(plain.is_err(), "{plain:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_ca_admits_only_clients_with_a_certificate_it_signed() {
    let authority = ca("fovea test CA");
    let clients = ca("fovea clients CA");
    let files = Files::new(&authority, Some(&clients));
    let server = start(&files, true).await;
    let good = leaf(&clients, false);
    let forged = leaf(&ca("someone else's CA"), false);

    assert_eq!(
        models(&https(&authority, Some(&good)), &server).await,
        Ok(200)
    );
    for (who, client) in [
        ("no certificate", https(&authority, None)),
        (
            "a certificate of another CA",
            https(&authority, Some(&forged)),
        ),
    ] {
        let answer = models(&client, &server).await;
        assert!(answer.is_err(), "{who}: {answer:?}");
    }

    let grpc = server.serve_grpc().await;
    let with = grpc_live(
        &server,
        grpc,
        client_config(&authority, Some(&good), &[b"h2"]),
    )
    .await;
    assert_eq!(with, Ok(true));
    let without = grpc_live(&server, grpc, client_config(&authority, None, &[b"h2"])).await;
    assert!(without.is_err(), "{without:?}");

    // curl with and without its certificate.
    std::fs::write(files.path("ca.pem"), ca_pem(&authority)).unwrap();
    std::fs::write(files.path("client.pem"), &good.0).unwrap();
    std::fs::write(files.path("client.key"), &good.1).unwrap();
    let url = format!("https://127.0.0.1:{}/api/v1/models", server.addr.port());
    let ca_file = files.path("ca.pem");
    let ca_arg = ["--cacert", path_str(&ca_file)];
    let (code, printed) = curl(
        &url,
        &[
            ca_arg[0],
            ca_arg[1],
            "--cert",
            path_str(&files.path("client.pem")),
            "--key",
            path_str(&files.path("client.key")),
        ],
    )
    .await;
    assert_eq!(code, 0, "{printed}");
    assert!(printed.starts_with("200"), "{printed}");
    let (code, _) = curl(&url, &ca_arg).await;
    assert_ne!(code, 0, "curl without a client certificate must fail");

    // Refused handshakes are counted.
    let metrics = https(&authority, Some(&good))
        .get(format!("https://{}/metrics", server.addr))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let failures: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("fovea_tls_handshake_failures_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(failures >= 3.0, "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_certificate_is_served_after_a_reload_and_a_broken_one_is_not() {
    let first = ca("first CA");
    let second = ca("second CA");
    let third = ca("third CA");
    let files = Files::new(&first, None);
    let server = start(&files, false).await;
    assert_eq!(models(&https(&first, None), &server).await, Ok(200));

    // SIGHUP's path: an explicit reload.
    files.install(&second);
    server.state.access().reload().unwrap();
    assert_eq!(models(&https(&second, None), &server).await, Ok(200));
    assert!(models(&https(&first, None), &server).await.is_err());

    // A change on disk alone is picked up (the files are watched).
    files.install(&third);
    let picked_up = async {
        while models(&https(&third, None), &server).await != Ok(200) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), picked_up)
        .await
        .expect("the new certificate is served once the files change");

    // A broken key is refused; the certificate in force keeps serving.
    std::fs::write(files.path("server.key"), "not a key").unwrap();
    let refused = server.state.access().reload();
    assert!(refused.is_err(), "{refused:?}");
    assert_eq!(models(&https(&third, None), &server).await, Ok(200));
}

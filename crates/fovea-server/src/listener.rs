//! Connections: listeners that hold at most `--max-connections` open (each
//! accepted connection carries a permit until it closes, and while none is
//! free the listener stops accepting, so further clients wait in the
//! kernel's accept queue instead of costing fovea memory and descriptors),
//! and the HTTP connection loop with the timeouts hostile clients need
//! (axum::serve has none: a client trickling its headers, or idling on a
//! keep-alive connection, would hold its connection for ever). With TLS on,
//! each connection's handshake runs in a task of its own, bounded by the
//! header-read timeout, so a client that stalls it holds only its own
//! connection.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use std::time::Duration;

use futures_util::Stream;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::ServiceExt;

use crate::tls::{self, Tls};

/// A connection holding one of its listener's permits.
pub struct Permitted {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
}

impl AsyncRead for Permitted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Permitted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

impl tonic::transport::server::Connected for Permitted {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}

/// An accepted connection, in plain text or after its TLS handshake.
pub enum Connection {
    Plain(Permitted),
    Tls(Box<tokio_rustls::server::TlsStream<Permitted>>),
}

impl Connection {
    /// `io` as it is when `tls` is off; otherwise after a handshake that
    /// must finish within `timeout`. A failed handshake is counted.
    pub async fn accept(
        io: Permitted,
        tls: Option<&Tls>,
        listener: tls::Listener,
        timeout: Duration,
    ) -> io::Result<Self> {
        let Some(tls) = tls else {
            return Ok(Connection::Plain(io));
        };
        let handshake = tls.acceptor(listener).accept(io);
        let outcome = match tokio::time::timeout(timeout, handshake).await {
            Ok(outcome) => outcome,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "TLS handshake not finished in time",
            )),
        };
        outcome
            .map(|stream| Connection::Tls(Box::new(stream)))
            .inspect_err(|_| {
                let listener = match listener {
                    tls::Listener::Http => "http",
                    tls::Listener::Grpc => "grpc",
                };
                metrics::counter!("fovea_tls_handshake_failures_total", "listener" => listener)
                    .increment(1);
            })
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Connection::Plain(io) => Pin::new(io).poll_read(cx, buf),
            Connection::Tls(io) => Pin::new(io.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Connection::Plain(io) => Pin::new(io).poll_write(cx, buf),
            Connection::Tls(io) => Pin::new(io.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Connection::Plain(io) => Pin::new(io).poll_flush(cx),
            Connection::Tls(io) => Pin::new(io.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Connection::Plain(io) => Pin::new(io).poll_shutdown(cx),
            Connection::Tls(io) => Pin::new(io.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Connection::Plain(io) => Pin::new(io).poll_write_vectored(cx, bufs),
            Connection::Tls(io) => Pin::new(io.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Connection::Plain(io) => io.is_write_vectored(),
            Connection::Tls(io) => io.is_write_vectored(),
        }
    }
}

impl tonic::transport::server::Connected for Connection {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        match self {
            Connection::Plain(io) => io.connect_info(),
            Connection::Tls(io) => io.get_ref().0.connect_info(),
        }
    }
}

/// The HTTP listener with a connection cap.
pub struct Limited {
    inner: TcpListener,
    permits: Arc<Semaphore>,
}

impl Limited {
    /// `inner`, accepting at most `max` connections at once.
    pub fn new(inner: TcpListener, max: usize) -> Self {
        Self {
            inner,
            permits: Arc::new(Semaphore::new(max.max(1))),
        }
    }
}

impl axum::serve::Listener for Limited {
    type Io = Permitted;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        // The semaphore is never closed, so acquiring only waits.
        let permit = loop {
            if let Ok(permit) = self.permits.clone().acquire_owned().await {
                break permit;
            }
        };
        // TcpListener's own accept retries transient errors (EMFILE, ...).
        let (stream, addr) = axum::serve::Listener::accept(&mut self.inner).await;
        let _ = stream.set_nodelay(true);
        (
            Permitted {
                stream,
                _permit: permit,
            },
            addr,
        )
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// The gRPC server's incoming connections, at most `max` open at once,
/// through TLS when `tls` is on. Accepting runs in a task that ends when the
/// stream is dropped (the server stopped), which closes the socket.
pub fn incoming(
    listener: TcpListener,
    max: usize,
    tls: Option<Arc<Tls>>,
    handshake_timeout: Duration,
) -> impl Stream<Item = io::Result<Connection>> + Send + 'static {
    let (ready, connections) = tokio::sync::mpsc::channel::<Connection>(max.clamp(1, 64));
    let permits = Arc::new(Semaphore::new(max.max(1)));
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                () = ready.closed() => return,
                accepted = accept_permitted(&listener, &permits) => accepted,
            };
            let ready = ready.clone();
            let secured = tls.is_some();
            let tls = tls.clone();
            let handshake = async move {
                let tls = tls.as_deref();
                match Connection::accept(accepted, tls, tls::Listener::Grpc, handshake_timeout)
                    .await
                {
                    Ok(connection) => {
                        let _ = ready.send(connection).await;
                    }
                    Err(e) => tracing::debug!("gRPC connection refused: {e}"),
                }
            };
            if secured {
                tokio::spawn(handshake);
            } else {
                handshake.await;
            }
        }
    });
    futures_util::stream::unfold(connections, |mut connections| async move {
        let connection = connections.recv().await?;
        Some((Ok(connection), connections))
    })
}

/// The next connection, once one of `permits` is free.
async fn accept_permitted(listener: &TcpListener, permits: &Arc<Semaphore>) -> Permitted {
    // The semaphore is never closed, so acquiring only waits.
    let permit = loop {
        if let Ok(permit) = permits.clone().acquire_owned().await {
            break permit;
        }
    };
    // As axum's listener does: an accept error (EMFILE, a reset before
    // accept) is transient, so wait a little and go on rather than end the
    // server.
    let stream = loop {
        match listener.accept().await {
            Ok((stream, _)) => break stream,
            Err(e) => {
                tracing::warn!("gRPC accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let _ = stream.set_nodelay(true);
    Permitted {
        stream,
        _permit: permit,
    }
}

/// Timeouts on HTTP connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionTimeouts {
    /// A request's headers must arrive within this, counted from when the
    /// connection is ready for the request: so it also closes keep-alive
    /// connections idle for this long.
    pub header_read: Duration,
}

/// Serves `app` on `listener` (through TLS when `tls` is on) until `signal`
/// resolves; then stops accepting (new connections are refused), closes idle
/// connections, lets the others finish their requests and returns when they
/// have.
pub async fn serve_http(
    mut listener: Limited,
    app: axum::Router,
    tls: Option<Arc<Tls>>,
    timeouts: ConnectionTimeouts,
    signal: impl std::future::Future<Output = ()> + Send,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(timeouts.header_read)
        .keep_alive(true);
    // CONNECT is how WebSockets travel over HTTP/2.
    builder
        .http2()
        .timer(TokioTimer::new())
        .enable_connect_protocol();
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    let mut signal = std::pin::pin!(signal);
    loop {
        let (io, peer) = tokio::select! {
            accepted = axum::serve::Listener::accept(&mut listener) => accepted,
            () = &mut signal => break,
        };
        let service =
            app.clone()
                .map_request(move |request: http::Request<hyper::body::Incoming>| {
                    let mut request = request.map(axum::body::Body::new);
                    request
                        .extensions_mut()
                        .insert(axum::extract::ConnectInfo(peer));
                    request
                });
        let builder = builder.clone();
        let tls = tls.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let io = match Connection::accept(
                io,
                tls.as_deref(),
                tls::Listener::Http,
                timeouts.header_read,
            )
            .await
            {
                Ok(io) => io,
                Err(e) => {
                    tracing::debug!(%peer, "TLS handshake failed: {e}");
                    return;
                }
            };
            let connection = builder
                .serve_connection_with_upgrades(TokioIo::new(io), TowerToHyperService::new(service))
                .into_owned();
            if let Err(e) = watcher.watch(connection).await {
                tracing::debug!(%peer, "connection ended: {e}");
            }
        });
    }
    // Dropping the listener closes the socket: new connections are refused.
    drop(listener);
    graceful.shutdown().await;
}

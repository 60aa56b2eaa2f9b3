//! Hostile clients over real sockets: slow-loris headers and bodies, idle
//! keep-alive connections, clients that vanish mid-upload or while their
//! request waits for inference. Each timeout test would hang (and fail at
//! its generous bound) without the timeout it checks.

mod common;

use std::time::Duration;

use common::{TestServer, png};
use fovea_testkit::Gate;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Far above every timeout these tests configure: reaching it means the
/// server never cut the client off.
const BOUND: Duration = Duration::from_secs(30);

async fn server() -> TestServer {
    TestServer::start(|config| {
        config.access.header_read_timeout = Duration::from_millis(300);
        config.access.body_read_timeout = Duration::from_millis(300);
    })
    .await
}

/// Reads until the server closes the connection; returns what it sent.
async fn until_closed(stream: &mut TcpStream) -> String {
    let mut received = Vec::new();
    tokio::time::timeout(BOUND, stream.read_to_end(&mut received))
        .await
        .expect("the server kept the connection open")
        .ok();
    String::from_utf8_lossy(&received).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_that_never_finish_lose_the_connection() {
    let server = server().await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-slow: ")
        .await
        .unwrap();
    let answer = until_closed(&mut stream).await;
    // hyper may say 408 before closing, or just close; never a 200.
    assert!(!answer.contains("200 OK"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed() {
    let server = server().await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let answer = until_closed(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_trickles_is_cut_off_with_body_timeout() {
    let server = server().await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(
            b"POST /api/v1/predict HTTP/1.1\r\nhost: x\r\ncontent-type: image/png\r\ncontent-length: 100000\r\n\r\n\x89PNG",
        )
        .await
        .unwrap();
    let answer = until_closed(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("\"body_timeout\""), "{answer}");
}

/// A whole `POST /api/v1/predict` of a PNG, as a client would write it.
fn upload(image: &[u8]) -> Vec<u8> {
    let mut request = format!(
        "POST /api/v1/predict HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-type: image/png\r\ncontent-length: {}\r\n\r\n",
        image.len()
    )
    .into_bytes();
    request.extend_from_slice(image);
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_vanish_mid_upload_or_while_queued_cost_no_inference() {
    let mut gate = Gate::new(&[3, 32, 32], 10);
    let server = TestServer::start_gated(&gate, |_| {}).await;
    let model = server
        .state
        .engine()
        .and_then(|engine| engine.model("gated", None).ok())
        .unwrap();

    // A request whose batch the backend holds.
    let mut running = TcpStream::connect(server.addr).await.unwrap();
    running.write_all(&upload(&png(1))).await.unwrap();
    assert_eq!(gate.started().await.size(), 1);

    // A client that sends its whole request, which is decoded and queued
    // behind the held batch, and then goes away.
    let mut queued = TcpStream::connect(server.addr).await.unwrap();
    queued.write_all(&upload(&png(2))).await.unwrap();
    let waited = async {
        while model.stats().queued == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(BOUND, waited)
        .await
        .expect("the second request never reached the queue");
    // Its end of the connection closed; once the server closes the other
    // (it does not wait for an answer to a client that said it is done
    // sending), the request's handler is gone.
    queued.shutdown().await.unwrap();
    let said = until_closed(&mut queued).await;
    assert!(said.is_empty(), "answered a vanished client: {said}");

    // A client that stops half-way through its upload and goes away.
    let whole = upload(&png(3));
    let mut partial = TcpStream::connect(server.addr).await.unwrap();
    partial.write_all(&whole[..whole.len() / 2]).await.unwrap();
    partial.shutdown().await.unwrap();
    until_closed(&mut partial).await;
    assert_eq!(model.stats().queued, 1, "the partial upload was admitted");

    gate.open();
    let mut answer = Vec::new();
    running.read_to_end(&mut answer).await.ok();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let after = server.post("", "image/png", png(4)).await;
    assert_eq!(after.status, 200, "{}", after.body);

    let stats = model.stats();
    // The held batch and the last request: neither vanished client's image ran.
    assert_eq!((stats.batches, stats.items), (2, 2), "{stats:?}");
    assert_eq!(stats.dropped_cancelled, 1, "{stats:?}");
    assert_eq!(stats.queued, 0, "{stats:?}");
}

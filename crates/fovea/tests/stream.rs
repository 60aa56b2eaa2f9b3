//! `GET /api/v1/stream`: frames over a real WebSocket on loopback, through
//! the real engine path (tract, the tiny CIFAR-shaped model).

mod common;

use std::time::Duration;

use common::{TestServer, encode, picture, png};
use futures_util::{SinkExt, StreamExt};
use image::ImageFormat;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Generous bound on any single wait, so that a broken server fails the test
/// instead of hanging it; never a timing assertion.
const WAIT: Duration = Duration::from_secs(60);

async fn open(server: &TestServer, query: &str) -> Socket {
    let url = format!("ws://{}/api/v1/stream{query}", server.addr);
    let (socket, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("the upgrade");
    socket
}

async fn send_frame(socket: &mut Socket, bytes: Vec<u8>) {
    socket
        .send(Message::Binary(bytes.into()))
        .await
        .expect("send a frame");
}

/// The next message: a JSON answer, or the close frame's (code, reason).
enum Next {
    Answer(Value),
    Closed(CloseCode, String),
}

async fn next(socket: &mut Socket) -> Next {
    loop {
        let message = tokio::time::timeout(WAIT, socket.next())
            .await
            .expect("an answer in time")
            .expect("the stream is open")
            .expect("a message");
        match message {
            Message::Text(text) => {
                return Next::Answer(serde_json::from_str(text.as_str()).expect("JSON"));
            }
            Message::Close(Some(frame)) => {
                return Next::Closed(frame.code, frame.reason.to_string());
            }
            Message::Close(None) => return Next::Closed(CloseCode::Status, String::new()),
            _ => {}
        }
    }
}

async fn answer(socket: &mut Socket) -> Value {
    match next(socket).await {
        Next::Answer(value) => value,
        Next::Closed(code, reason) => panic!("closed ({code}) {reason} instead of answering"),
    }
}

async fn closed(socket: &mut Socket) -> (CloseCode, String) {
    match next(socket).await {
        Next::Closed(code, reason) => (code, reason),
        Next::Answer(value) => panic!("answered {value} instead of closing"),
    }
}

/// An image that takes the decoder a while (tens of milliseconds), so a
/// burst of them outruns the model.
fn big_jpeg(seed: u32) -> Vec<u8> {
    encode(&picture(seed, 1600, 1200), ImageFormat::Jpeg)
}

#[tokio::test]
async fn every_frame_is_answered_in_order_under_the_all_policy() {
    let server = TestServer::start(|_| {}).await;
    let mut socket = open(&server, "?policy=all&top_k=3").await;
    for seed in 0..12 {
        send_frame(&mut socket, png(seed)).await;
    }
    // The same image through the simple API answers the same.
    let direct = server.post_images("?top_k=3", &[png(5)]).await;
    for frame in 0..12u64 {
        let answer = answer(&mut socket).await;
        assert_eq!(answer["frame"], frame, "{answer}");
        assert_eq!(answer["dropped"], 0);
        assert_eq!(
            answer["predictions"].as_array().map(Vec::len),
            Some(3),
            "{answer}"
        );
        assert_eq!(answer["model"], "tiny");
        if frame == 5 {
            assert_eq!(answer["class"], direct.body["class"]);
            assert_eq!(answer["predictions"], direct.body["predictions"]);
        }
    }
}

#[tokio::test]
async fn a_fast_sender_gets_the_latest_frames_and_a_dropped_count() {
    let server = TestServer::start(|_| {}).await;
    let mut socket = open(&server, "").await;
    let sent = 20u64;
    for seed in 0..sent as u32 {
        send_frame(&mut socket, big_jpeg(seed)).await;
    }
    let mut last = None::<u64>;
    let mut answered = 0u64;
    loop {
        let answer = answer(&mut socket).await;
        let frame = answer["frame"].as_u64().expect("a frame number");
        assert!(
            last.is_none_or(|l| frame > l),
            "answers out of order: {frame} after {last:?}"
        );
        assert!(answer["error"].is_null(), "{answer}");
        last = Some(frame);
        answered += 1;
        let dropped = answer["dropped"].as_u64().expect("a dropped count");
        if frame == sent - 1 {
            // The newest frame is always answered; every other one was either
            // answered or counted as dropped.
            assert_eq!(answered + dropped, sent, "{answer}");
            assert!(dropped > 0, "a burst of {sent} large frames dropped none");
            break;
        }
    }
    let metrics = server.scrape_metrics().await;
    assert!(
        metrics.contains(r#"fovea_stream_frames_total{protocol="websocket",outcome="dropped"}"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_bad_frame_gets_an_error_and_the_stream_goes_on() {
    let server = TestServer::start(|_| {}).await;
    let mut socket = open(&server, "?policy=all").await;
    send_frame(&mut socket, png(1)).await;
    send_frame(&mut socket, b"this is not an image".to_vec()).await;
    send_frame(&mut socket, png(2)).await;
    let first = answer(&mut socket).await;
    assert_eq!(first["frame"], 0);
    assert!(first["class"].is_string(), "{first}");
    let bad = answer(&mut socket).await;
    assert_eq!(bad["frame"], 1);
    assert!(bad["class"].is_null(), "{bad}");
    assert!(
        bad["error"]["code"].is_string() && bad["error"]["message"].is_string(),
        "{bad}"
    );
    let third = answer(&mut socket).await;
    assert_eq!(third["frame"], 2);
    assert!(third["class"].is_string(), "{third}");
}

#[tokio::test]
async fn options_may_come_as_a_first_text_message_only() {
    let server = TestServer::start(|_| {}).await;
    let mut socket = open(&server, "").await;
    socket
        .send(Message::Text(
            r#"{"model": "tiny-b", "top_k": 2, "policy": "all"}"#.into(),
        ))
        .await
        .unwrap();
    send_frame(&mut socket, png(3)).await;
    let first = answer(&mut socket).await;
    assert_eq!(first["model"], "tiny-b");
    assert_eq!(first["predictions"].as_array().map(Vec::len), Some(2));
    socket
        .send(Message::Text(r#"{"top_k": 1}"#.into()))
        .await
        .unwrap();
    let (code, reason) = closed(&mut socket).await;
    assert_eq!(code, CloseCode::Policy);
    assert!(reason.contains("before the first frame"), "{reason}");

    let mut socket = open(&server, "").await;
    socket
        .send(Message::Text(r#"{"model": "nope"}"#.into()))
        .await
        .unwrap();
    let (code, reason) = closed(&mut socket).await;
    assert_eq!(code, CloseCode::Policy);
    assert!(reason.contains("nope"), "{reason}");

    let mut socket = open(&server, "").await;
    socket
        .send(Message::Text("{not json".into()))
        .await
        .unwrap();
    assert_eq!(closed(&mut socket).await.0, CloseCode::Invalid);
}

#[tokio::test]
async fn bad_query_options_are_refused_before_the_upgrade() {
    let server = TestServer::start(|_| {}).await;
    for (query, status) in [
        ("?model=nope", 404),
        ("?top_k=0", 400),
        ("?policy=sometimes", 400),
    ] {
        let url = format!("ws://{}/api/v1/stream{query}", server.addr);
        let error = tokio_tungstenite::connect_async(url)
            .await
            .expect_err(query);
        let tokio_tungstenite::tungstenite::Error::Http(response) = error else {
            panic!("{query}: {error}");
        };
        assert_eq!(response.status().as_u16(), status, "{query}");
        let body: Value = serde_json::from_slice(response.body().as_deref().unwrap_or_default())
            .expect("a JSON error");
        assert!(body["error"]["code"].is_string(), "{query}: {body}");
    }
    // Without an upgrade: the simple API's JSON error, not axum's plain text.
    let plain = server
        .client
        .get(server.url("/api/v1/stream"))
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), 400);
    let body: Value = plain.json().await.expect("the simple API's JSON error");
    assert_eq!(body["error"]["code"], "not_a_websocket", "{body}");
}

#[tokio::test]
async fn limits_close_the_stream_with_their_code() {
    let server = TestServer::start(|config| {
        config.streams.max_streams = 2;
        config.streams.max_frame_bytes = 64 * 1024;
        config.streams.idle_timeout = Duration::from_millis(300);
    })
    .await;
    let mut a = open(&server, "").await;
    let _b = open(&server, "").await;
    let mut c = open(&server, "").await;
    let (code, reason) = closed(&mut c).await;
    assert_eq!(code, CloseCode::Again, "{reason}");

    send_frame(&mut a, vec![0u8; 100 * 1024]).await;
    let (code, reason) = closed(&mut a).await;
    assert_eq!(code, CloseCode::Size, "{reason}");

    let mut d = open(&server, "").await;
    let (code, reason) = closed(&mut d).await;
    assert_eq!(code, CloseCode::Normal, "{reason}");
    assert!(reason.contains("nothing received"), "{reason}");
}

#[tokio::test]
async fn the_maximum_duration_closes_a_busy_stream() {
    let server =
        TestServer::start(|config| config.streams.max_duration = Duration::from_millis(500)).await;
    let mut socket = open(&server, "?policy=all").await;
    loop {
        send_frame(&mut socket, png(1)).await;
        match next(&mut socket).await {
            Next::Answer(_) => continue,
            Next::Closed(code, reason) => {
                assert_eq!(code, CloseCode::Policy, "{reason}");
                assert!(reason.contains("maximum duration"), "{reason}");
                break;
            }
        }
    }
}

#[tokio::test]
async fn vanished_clients_free_their_slots_at_once() {
    let server = TestServer::start(|config| config.streams.max_streams = 128).await;
    let slots = server.state.stream_slots().clone();
    let mut sockets = Vec::new();
    for seed in 0..100 {
        let mut socket = open(&server, "").await;
        send_frame(&mut socket, big_jpeg(seed)).await;
        sockets.push(socket);
    }
    // Every stream holds its slot while open.
    let deadline = tokio::time::Instant::now() + WAIT;
    while slots.available() > 28 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "streams never took their slots"
        );
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(sockets); // TCP resets, no close handshake
    let deadline = tokio::time::Instant::now() + WAIT;
    while slots.available() < 128 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} slots still held",
            128 - slots.available()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // And the model's queue is free again: a full batch request is admitted.
    let reply = server
        .post_images("", &(0..8).map(png).collect::<Vec<_>>())
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let metrics = server.scrape_metrics().await;
    assert!(metrics.contains("fovea_streams_open 0"), "{metrics}");
}

#[tokio::test]
async fn shutdown_closes_open_streams_as_going_away() {
    let mut server = TestServer::start(|_| {}).await;
    let mut socket = open(&server, "").await;
    send_frame(&mut socket, png(1)).await;
    let _ = answer(&mut socket).await;
    server.begin_shutdown();
    let (code, _) = closed(&mut socket).await;
    assert_eq!(code, CloseCode::Away);
}

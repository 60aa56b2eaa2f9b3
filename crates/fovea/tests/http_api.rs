//! The simple API over real HTTP on loopback: every input form, the options,
//! every error status, URL fetching, concurrency, readiness and graceful
//! shutdown, against the tiny model served by tract (and ONNX Runtime where
//! its library is present).

mod common;

use std::collections::HashMap;
use std::io::ErrorKind as IoErrorKind;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use axum::extract::Query;
use axum::response::{IntoResponse, Redirect};
use axum::routing::get;
use base64::Engine as _;
use common::*;
use fovea_engine::BackendChoice;
use fovea_server::{AppState, ServerConfig};
use fovea_testkit::Gate;
use image::ImageFormat;
use serde_json::{Value, json};

/// A local upstream for URL fetching: images, redirects, errors and a large
/// answer.
async fn upstream() -> SocketAddr {
    let image = png(7);
    let app = axum::Router::new()
        .route(
            "/img.png",
            get(move || async move { ([("content-type", "image/png")], image) }),
        )
        .route("/to-img", get(|| async { Redirect::temporary("/img.png") }))
        .route(
            "/to-metadata",
            get(|| async { Redirect::temporary("http://169.254.169.254/latest/meta-data/") }),
        )
        .route(
            "/to-mapped-metadata",
            get(|| async {
                Redirect::temporary("http://[::ffff:169.254.169.254]/latest/meta-data/")
            }),
        )
        .route(
            "/redirect",
            get(|Query(query): Query<HashMap<String, String>>| async move {
                Redirect::temporary(query.get("to").map_or("/", String::as_str))
            }),
        )
        .route("/loop", get(|| async { Redirect::temporary("/loop") }))
        .route(
            "/missing",
            get(|| async { axum::http::StatusCode::NOT_FOUND.into_response() }),
        )
        .route("/big", get(|| async { vec![0u8; 2 * 1024 * 1024] }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// A TCP server that accepts connections and never answers.
async fn black_hole() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    addr
}

/// Listeners on 127.0.0.1 and [::1], on one port, that fovea must never
/// reach while private addresses are refused. Nothing accepts in a task: the
/// kernel queues every completed handshake, and `connections` drains that
/// queue, so a connection made before an answer was sent is always counted.
struct Tripwire {
    v4: std::net::TcpListener,
    v6: std::net::TcpListener,
}

impl Tripwire {
    fn new() -> Self {
        loop {
            let v4 = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
            let port = v4.local_addr().unwrap().port();
            let v6 = match std::net::TcpListener::bind((Ipv6Addr::LOCALHOST, port)) {
                Ok(v6) => v6,
                // Another socket holds this port on ::1; draw another.
                Err(e) if e.kind() == IoErrorKind::AddrInUse => continue,
                Err(e) => panic!("binding [::1]:{port}: {e}"),
            };
            v4.set_nonblocking(true).unwrap();
            v6.set_nonblocking(true).unwrap();
            return Self { v4, v6 };
        }
    }

    fn port(&self) -> u16 {
        self.v4.local_addr().unwrap().port()
    }

    /// Connections made to either listener since the last call.
    fn connections(&self) -> usize {
        let mut count = 0;
        for listener in [&self.v4, &self.v6] {
            loop {
                match listener.accept() {
                    Ok(_) => count += 1,
                    Err(e) if e.kind() == IoErrorKind::WouldBlock => break,
                    Err(e) => panic!("accept: {e}"),
                }
            }
        }
        count
    }
}

/// URL fetching under the default policy (private addresses refused, as
/// without `--allow-private-urls`), with `trusted` names answered as the
/// given addresses: the only way to stand an allowed upstream on loopback.
fn default_url_policy(trusted: &[(&str, IpAddr)]) -> impl FnOnce(&mut ServerConfig) {
    let trusted = trusted
        .iter()
        .map(|(name, ip)| (name.to_string(), *ip))
        .collect();
    move |config| {
        config.url_fetch.enabled = true;
        config.url_fetch.timeout = Duration::from_millis(300);
        config.url_fetch.trusted_hosts = trusted;
    }
}

const LOOPBACK_V4: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const LOOPBACK_V6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);

/// Asserts a policy refusal whose message names the rule and the address.
fn assert_refused_by(reply: &Reply, url: &str, rule: &str) {
    assert_eq!(reply.expect_error(422), "url_address_refused", "{url}");
    let message = reply.body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(rule), "{url}: {message}");
}

fn url_fetch_on(config: &mut ServerConfig) {
    config.url_fetch.enabled = true;
    config.url_fetch.allow_private = true;
    config.url_fetch.timeout = Duration::from_millis(300);
    config.url_fetch.max_bytes = 1024 * 1024;
}

fn assert_valid_answer(answer: &Value, k: usize) {
    let predictions = answer["predictions"].as_array().unwrap();
    assert_eq!(predictions.len(), k, "{answer}");
    assert_eq!(answer["class"], predictions[0]["label"], "{answer}");
    assert_eq!(answer["score"], predictions[0]["score"], "{answer}");
    let s = scores(answer);
    assert!(
        s.windows(2).all(|w| w[0] >= w[1]),
        "not descending: {answer}"
    );
    assert!(s.iter().all(|x| (0.0..=1.0).contains(x)), "{answer}");
    assert!(answer["latency_ms"].as_f64().unwrap() > 0.0, "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_single_image_gets_top5_from_the_highest_version() {
    let server = TestServer::start(|_| {}).await;
    let reply = server.post_images("?model=tiny", &[png(1)]).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_valid_answer(&reply.body, 5);
    assert_eq!(reply.body["model"], "tiny");
    assert_eq!(reply.body["version"], 2);
    let labels = fovea_core::Labels::cifar10();
    for p in reply.body["predictions"].as_array().unwrap() {
        let index = p["index"].as_u64().unwrap() as usize;
        assert_eq!(p["label"], labels.as_slice()[index].as_str());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_batch_of_three_answers_a_list_in_order() {
    let server = TestServer::start(|_| {}).await;
    let images = [png(1), png(2), png(3)];
    let batch = server.post_images("?model=tiny&top_k=10", &images).await;
    assert_eq!(batch.status, 200, "{}", batch.body);
    let answers = batch.body.as_array().unwrap();
    assert_eq!(answers.len(), 3);
    let mut singles = Vec::new();
    for (image, answer) in images.iter().zip(answers) {
        let single = server
            .post_images("?model=tiny&top_k=10", std::slice::from_ref(image))
            .await;
        assert_same_answer(answer, &single.body);
        singles.push(single.body);
    }
    // The three pictures differ, so order mistakes cannot go unnoticed.
    assert!(
        scores(&singles[0]) != scores(&singles[1]) && scores(&singles[1]) != scores(&singles[2])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn base64_json_with_and_without_data_prefix_matches_multipart() {
    let server = TestServer::start(|_| {}).await;
    let image = png(4);
    let reference = server
        .post_images("", std::slice::from_ref(&image))
        .await
        .body;
    let standard = base64::engine::general_purpose::STANDARD.encode(&image);
    let url_safe = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&image);
    for encoded in [
        standard.clone(),
        format!("data:image/png;base64,{standard}"),
        url_safe,
    ] {
        let reply = server.post_json(&json!({ "image_base64": encoded })).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_same_answer(&reply.body, &reference);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_bodies_are_accepted_for_every_image_content_type() {
    let server = TestServer::start(|_| {}).await;
    let picture = picture(5, 40, 30);
    for (content_type, format) in [
        ("image/png", ImageFormat::Png),
        ("image/jpeg", ImageFormat::Jpeg),
        ("image/webp", ImageFormat::WebP),
        ("image/gif", ImageFormat::Gif),
        ("image/bmp", ImageFormat::Bmp),
        ("image/tiff", ImageFormat::Tiff),
    ] {
        let reply = server
            .post("", content_type, encode(&picture, format))
            .await;
        assert_eq!(reply.status, 200, "{content_type}: {}", reply.body);
        assert_valid_answer(&reply.body, 5);
    }
    // Lossless formats decode to the same pixels, so the answers agree.
    let png_answer = server
        .post("", "image/png", encode(&picture, ImageFormat::Png))
        .await
        .body;
    let bmp_answer = server
        .post("", "image/bmp", encode(&picture, ImageFormat::Bmp))
        .await
        .body;
    assert_same_answer(&png_answer, &bmp_answer);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_version_and_top_k_options_are_honoured_from_query_and_json() {
    let server = TestServer::start(|_| {}).await;
    let image = png(6);
    let reply = server
        .post("?model=tiny&version=1&top_k=3", "image/png", image.clone())
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        (reply.body["model"].clone(), reply.body["version"].clone()),
        (json!("tiny"), json!(1))
    );
    assert_valid_answer(&reply.body, 3);

    let encoded = base64::engine::general_purpose::STANDARD.encode(&image);
    let reply = server
        .post_json(&json!({ "image_base64": encoded, "model": "tiny-b", "top_k": 2 }))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["model"], "tiny-b");
    assert_valid_answer(&reply.body, 2);

    // More classes than the model has: all of them.
    let reply = server
        .post("?model=tiny&top_k=50", "image/png", image.clone())
        .await;
    assert_valid_answer(&reply.body, 10);
    let total: f64 = scores(&reply.body).iter().sum();
    assert!((total - 1.0).abs() < 1e-4, "{total}");

    assert_eq!(
        server
            .post("?model=nope", "image/png", image.clone())
            .await
            .expect_error(404),
        "model_not_found"
    );
    assert_eq!(
        server
            .post("?model=tiny&version=9", "image/png", image.clone())
            .await
            .expect_error(404),
        "version_not_found"
    );
    assert_eq!(
        server
            .post("?top_k=0", "image/png", image.clone())
            .await
            .expect_error(400),
        "invalid_option"
    );
    assert_eq!(
        server
            .post("?top_k=many", "image/png", image)
            .await
            .expect_error(400),
        "invalid_request"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_mistake_gets_its_status_and_a_json_error_and_the_server_carries_on() {
    let server = TestServer::start(|c| c.limits.max_body_bytes = 1024 * 1024).await;
    let good = png(8);
    let mut corrupt = good.clone();
    for byte in corrupt.iter_mut().skip(40) {
        *byte ^= 0x5a;
    }
    let truncated = good[..good.len() / 2].to_vec();

    // 400
    server
        .post("", "image/png", corrupt)
        .await
        .expect_error(400);
    server
        .post("", "image/png", truncated)
        .await
        .expect_error(400);
    assert_eq!(
        server
            .post("", "image/png", Vec::new())
            .await
            .expect_error(400),
        "empty_image"
    );
    assert_eq!(
        server
            .post_json(&json!({ "image_base64": "%%%not base64%%%" }))
            .await
            .expect_error(400),
        "invalid_base64"
    );
    assert_eq!(
        server
            .post("", "application/json", "{\"image_base64\": ")
            .await
            .expect_error(400),
        "invalid_json"
    );
    assert_eq!(
        server
            .post_json(&json!({ "top_k": 3 }))
            .await
            .expect_error(400),
        "missing_image"
    );
    let form = reqwest::multipart::Form::new().text("model", "tiny");
    let reply = Reply::read(
        server
            .client
            .post(server.url("/api/v1/predict"))
            .multipart(form)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(reply.expect_error(400), "missing_image");
    assert_eq!(
        server
            .post("", "multipart/form-data; boundary=X", "garbage")
            .await
            .expect_error(400),
        "invalid_request"
    );

    // 413
    let oversized = vec![0u8; 2 * 1024 * 1024];
    assert_eq!(
        server
            .post("", "image/png", oversized.clone())
            .await
            .expect_error(413),
        "body_too_large"
    );
    assert_eq!(
        server.post_images("", &[oversized]).await.expect_error(413),
        "body_too_large"
    );
    // A 100000×100000 PNG header: refused from the header, never allocated.
    let huge = png_header_only(100_000, 100_000);
    assert_eq!(
        server.post("", "image/png", huge).await.expect_error(413),
        "image_too_many_pixels"
    );

    // 415
    assert_eq!(
        server
            .post("", "text/plain", "hello")
            .await
            .expect_error(415),
        "unsupported_content_type"
    );
    let reply = Reply::read(
        server
            .client
            .post(server.url("/api/v1/predict"))
            .body("x")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(reply.expect_error(415), "missing_content_type");
    server
        .post("", "image/png", b"definitely not an image".to_vec())
        .await
        .expect_error(415);

    // 404 and 405
    let reply = Reply::read(
        server
            .client
            .get(server.url("/no/such/route"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(reply.expect_error(404), "route_not_found");
    let reply = Reply::read(
        server
            .client
            .get(server.url("/api/v1/predict"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(reply.expect_error(405), "method_not_allowed");

    // 422: URL fetching is off on this server.
    let reply = server
        .post_json(&json!({ "url": "http://example.com/cat.jpg" }))
        .await;
    assert_eq!(reply.expect_error(422), "url_fetch_disabled");

    // Still serving.
    let reply = server.post("", "image/png", good).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn urls_are_fetched_from_allowed_hosts_following_checked_redirects() {
    let upstream = upstream().await;
    let server = TestServer::start(url_fetch_on).await;
    let direct = server
        .post_json(&json!({ "url": format!("http://{upstream}/img.png") }))
        .await;
    assert_eq!(direct.status, 200, "{}", direct.body);
    let reference = server.post_images("", &[png(7)]).await.body;
    assert_same_answer(&direct.body, &reference);

    let redirected = server
        .post_json(&json!({ "url": format!("http://{upstream}/to-img") }))
        .await;
    assert_eq!(redirected.status, 200, "{}", redirected.body);
    assert_same_answer(&redirected.body, &reference);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_fetch_failures_are_refused_with_their_own_codes() {
    let upstream = upstream().await;
    let hole = black_hole().await;
    let server = TestServer::start(url_fetch_on).await;
    let fetch = |path: String| {
        let server = &server;
        async move { server.post_json(&json!({ "url": path })).await }
    };
    // A redirect from an allowed host to the metadata service is checked and refused.
    assert_eq!(
        fetch(format!("http://{upstream}/to-metadata"))
            .await
            .expect_error(422),
        "url_address_refused"
    );
    assert_eq!(
        fetch(format!("http://{upstream}/to-mapped-metadata"))
            .await
            .expect_error(422),
        "url_address_refused"
    );
    assert_eq!(
        fetch(format!("http://{upstream}/loop"))
            .await
            .expect_error(422),
        "url_too_many_redirects"
    );
    assert_eq!(
        fetch(format!("http://{upstream}/missing"))
            .await
            .expect_error(422),
        "url_upstream_status"
    );
    assert_eq!(
        fetch(format!("http://{upstream}/big"))
            .await
            .expect_error(413),
        "url_body_too_large"
    );
    assert_eq!(
        fetch("file:///etc/passwd".into()).await.expect_error(422),
        "url_scheme_refused"
    );
    assert_eq!(
        fetch("not a url".into()).await.expect_error(400),
        "invalid_url"
    );
    let started = std::time::Instant::now();
    assert_eq!(
        fetch(format!("http://{hole}/never.png"))
            .await
            .expect_error(504),
        "url_timeout"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let reply = server.post_images("", &[png(1)]).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_private_and_metadata_urls_are_refused_by_default() {
    let upstream = upstream().await;
    let server = TestServer::start(|c| c.url_fetch.enabled = true).await;
    let port = upstream.port();
    for url in [
        format!("http://127.0.0.1:{port}/img.png"),
        format!("http://localhost:{port}/img.png"),
        format!("http://[::1]:{port}/img.png"),
        format!("http://2130706433:{port}/img.png"),
        "http://10.0.0.1/img.png".to_string(),
        "http://192.168.1.1/img.png".to_string(),
        "http://169.254.169.254/latest/meta-data/".to_string(),
        "http://[fe80::1]/img.png".to_string(),
        "http://[::ffff:127.0.0.1]/img.png".to_string(),
    ] {
        let reply = server.post_json(&json!({ "url": url })).await;
        assert_eq!(reply.expect_error(422), "url_address_refused", "{url}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tripwire_counts_a_connection_fovea_is_allowed_to_make() {
    // The control for the tests below: were fovea to connect, they would see it.
    let tripwire = Tripwire::new();
    let port = tripwire.port();
    let server = TestServer::start(default_url_policy(&[
        ("tripwire.test", LOOPBACK_V4),
        ("tripwire6.test", LOOPBACK_V6),
    ]))
    .await;
    for host in ["tripwire.test", "tripwire6.test"] {
        let url = format!("http://{host}:{port}/img.png");
        let reply = server.post_json(&json!({ "url": url })).await;
        // The tripwire never answers, so the fetch runs out of time.
        assert_eq!(reply.expect_error(504), "url_timeout", "{url}");
    }
    assert_eq!(tripwire.connections(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_spelling_of_a_refused_address_is_refused_without_a_connection() {
    let tripwire = Tripwire::new();
    let port = tripwire.port();
    // `public` is trusted and leads to the tripwire: a check fooled into
    // judging it, rather than the host the URL really names, would pass and
    // connect.
    let server = TestServer::start(default_url_policy(&[("public", LOOPBACK_V4)])).await;
    let loopback = "loopback address 127.0.0.1 is refused";
    let mapped = "loopback address 127.0.0.1 (IPv4-mapped as ::ffff:127.0.0.1) is refused";
    let cases = [
        (format!("http://2130706433:{port}/"), loopback),
        (format!("http://0x7f.1:{port}/"), loopback),
        (format!("http://017700000001:{port}/"), loopback),
        (format!("http://127.1:{port}/"), loopback),
        (format!("http://[::ffff:127.0.0.1]:{port}/"), mapped),
        (format!("http://[::ffff:7f00:1]:{port}/"), mapped),
        (
            format!("http://[::ffff:0:7f00:1]:{port}/"),
            "loopback address 127.0.0.1 (IPv4-translated as ::ffff:0:7f00:1) is refused",
        ),
        (
            format!("http://[64:ff9b::7f00:1]:{port}/"),
            "loopback address 127.0.0.1 (NAT64 as 64:ff9b::7f00:1) is refused",
        ),
        (
            format!("http://[64:ff9b:1::7f00:1]:{port}/"),
            "local-use NAT64 (64:ff9b:1::/48) address 64:ff9b:1::7f00:1 is refused",
        ),
        (
            format!("http://[::]:{port}/"),
            "unspecified address :: is refused",
        ),
        (
            format!("http://0.0.0.0:{port}/"),
            "unspecified address 0.0.0.0 is refused",
        ),
        (
            format!("http://[::1]:{port}/"),
            "loopback address ::1 is refused",
        ),
        (format!("http://public@127.0.0.1:{port}/"), loopback),
        (format!("http://127.0.0.1:{port}#@public/"), loopback),
    ];
    for (url, rule) in cases {
        let reply = server.post_json(&json!({ "url": url })).await;
        assert_refused_by(&reply, &url, rule);
    }
    assert_eq!(tripwire.connections(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_that_resolves_to_loopback_is_refused_without_a_connection() {
    let tripwire = Tripwire::new();
    let url = format!("http://localhost:{}/img.png", tripwire.port());
    let server = TestServer::start(default_url_policy(&[])).await;
    let reply = server.post_json(&json!({ "url": url })).await;
    assert_refused_by(
        &reply,
        &url,
        "URL host `localhost`: every address it resolves to is refused",
    );
    assert_refused_by(&reply, &url, "loopback address 127.0.0.1 is refused");
    assert_eq!(tripwire.connections(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backslash_ends_the_host_so_the_host_before_it_is_the_one_fetched() {
    // `\` is `/` in an http URL: the host is `public` (the upstream here)
    // and `@127.0.0.1:…` is path. A parser that read it as userinfo would
    // send the fetch to the tripwire instead.
    let tripwire = Tripwire::new();
    let upstream = upstream().await;
    let server = TestServer::start(default_url_policy(&[("public", LOOPBACK_V4)])).await;
    let url = format!(
        "http://public:{}\\@127.0.0.1:{}/",
        upstream.port(),
        tripwire.port()
    );
    let reply = server.post_json(&json!({ "url": url })).await;
    // The upstream has no `/@127.0.0.1:…/`: its 404 proves where the fetch went.
    assert_eq!(reply.expect_error(422), "url_upstream_status", "{url}");
    assert_eq!(
        reply.body["error"]["message"],
        "upstream answered 404 Not Found"
    );
    assert_eq!(tripwire.connections(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_from_an_allowed_host_to_a_refused_one_is_refused_without_a_connection() {
    let tripwire = Tripwire::new();
    let port = tripwire.port();
    let upstream = upstream().await;
    let server = TestServer::start(default_url_policy(&[("allowed.test", LOOPBACK_V4)])).await;
    let via_allowed = |to: &str| {
        let mut url =
            reqwest::Url::parse(&format!("http://allowed.test:{}/redirect", upstream.port()))
                .unwrap();
        url.query_pairs_mut().append_pair("to", to);
        url.to_string()
    };
    // The first hop is allowed, and so is a redirect that stays on it.
    let reply = server
        .post_json(&json!({ "url": via_allowed("/img.png") }))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);

    let loopback = "loopback address 127.0.0.1 is refused";
    for (to, rule) in [
        (format!("http://127.0.0.1:{port}/"), loopback),
        (format!("http://0x7f.1:{port}/"), loopback),
        (format!("http://public@127.0.0.1:{port}/"), loopback),
        (
            format!("http://[::ffff:7f00:1]:{port}/"),
            "loopback address 127.0.0.1 (IPv4-mapped as ::ffff:127.0.0.1) is refused",
        ),
        (
            format!("http://localhost:{port}/"),
            "URL host `localhost`: every address it resolves to is refused (loopback address 127.0.0.1 is refused",
        ),
    ] {
        let url = via_allowed(&to);
        let reply = server.post_json(&json!({ "url": url })).await;
        assert_refused_by(&reply, &url, rule);
    }
    assert_eq!(tripwire.connections(), 0);
}

/// An allowed upstream that answers headers at once, then a body of which
/// it sends one byte every 10 ms: never idle, never finished.
async fn trickle() -> SocketAddr {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                // The whole request first: an answer that arrives before
                // the request is sent is refused by fovea's HTTP client
                // ("unexpected message"), which is not the fault tested here.
                let mut request = Vec::new();
                let mut buffer = [0; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buffer[..n]),
                    }
                }
                let head =
                    "HTTP/1.1 200 OK\r\ncontent-type: image/png\r\ncontent-length: 100000\r\n\r\n";
                if socket.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let mut ticks = tokio::time::interval(Duration::from_millis(10));
                // Until fovea gives up and closes the connection.
                loop {
                    ticks.tick().await;
                    if socket.write_all(&[0]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_upstream_is_cut_off_at_the_total_time_cap() {
    // An idle or per-read timeout would never fire on a body that keeps
    // arriving; only a cap on the whole fetch ends it.
    let slow = trickle().await;
    let server = TestServer::start(default_url_policy(&[("slow.test", LOOPBACK_V4)])).await;
    let url = format!("http://slow.test:{}/img.png", slow.port());
    let started = Instant::now();
    let reply = tokio::time::timeout(
        Duration::from_secs(5),
        server.post_json(&json!({ "url": url })),
    )
    .await
    .expect("the fetch was not cut off");
    assert_eq!(reply.expect_error(504), "url_timeout");
    assert_eq!(
        reply.body["error"]["message"],
        "upstream did not answer within 300ms"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_concurrent_requests_get_the_same_answers_as_sequential_ones() {
    let server = TestServer::start(|_| {}).await;
    let images: Vec<Vec<u8>> = (0..8).map(png).collect();
    let mut sequential = Vec::new();
    for image in &images {
        let reply = server.post("?top_k=10", "image/png", image.clone()).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        sequential.push(reply.body);
    }
    let replies = futures_util::future::join_all((0..64).map(|i| {
        let server = &server;
        let image = images[i % images.len()].clone();
        async move { (i, server.post("?top_k=10", "image/png", image).await) }
    }))
    .await;
    for (i, reply) in replies {
        assert_eq!(reply.status, 200, "request {i}: {}", reply.body);
        assert_same_answer(&reply.body, &sequential[i % images.len()]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_is_503_until_the_engine_is_set_and_health_is_always_200() {
    let repo = make_repository();
    let config = ServerConfig::default();
    let state = AppState::new(&config).unwrap();
    let server = TestServer::serve(state.clone(), None, config.shutdown_timeout).await;

    let health = Reply::read(
        server
            .client
            .get(server.url("/healthz"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(health.status, 200);
    let ready = Reply::read(
        server
            .client
            .get(server.url("/readyz"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(ready.expect_error(503), "not_ready");
    assert_eq!(ready.headers["retry-after"], "1");
    let predict = server.post("", "image/png", png(1)).await;
    assert_eq!(predict.expect_error(503), "not_ready");

    state.set_engine(start_engine(repo.path(), BackendChoice::Tract).await);
    let ready = Reply::read(
        server
            .client
            .get(server.url("/readyz"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(ready.status, 200);
    assert_eq!(ready.body, json!({ "ready": true }));
    assert_eq!(server.post("", "image/png", png(1)).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_in_flight_when_shutdown_begins_completes() {
    let mut gate = Gate::new(&[3, 32, 32], 10);
    let mut server = TestServer::start_gated(&gate, |config| {
        // Longer than the test: the drain must end because the request
        // finished, not because its time ran out.
        config.shutdown_timeout = Duration::from_secs(600);
    })
    .await;
    let engine = server.state.engine().cloned().unwrap();
    let request = {
        let client = server.client.clone();
        let url = server.url("/api/v1/predict");
        tokio::spawn(async move {
            let sent = client
                .post(url)
                .header("content-type", "image/png")
                .body(png(1))
                .send();
            Reply::read(sent.await.unwrap()).await
        })
    };
    // Its batch has reached the backend and waits there: the request is in flight.
    assert_eq!(gate.started().await.size(), 1);
    server.shut_down().await;
    gate.release();
    let reply = request.await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["model"], "gated");
    let result = server.task.take().unwrap().await.unwrap();
    assert!(result.is_ok(), "{result:?}");
    assert!(
        tokio::net::TcpStream::connect(server.addr).await.is_err(),
        "still accepting after shutdown"
    );
    assert!(!engine.is_ready(), "the engine outlived the server");
    assert_eq!(
        gate.instances(),
        0,
        "an inference thread outlived the server"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_are_generated_or_echoed_and_metrics_count_requests_by_route() {
    let server = TestServer::start(|_| {}).await;
    let reply = server
        .client
        .get(server.url("/healthz"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(reply.headers()["x-request-id"], "abc-123");
    let reply = server
        .client
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    let generated = reply.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(generated.len(), 36, "{generated}");
    server.post("", "image/png", png(1)).await;

    let metrics = server.scrape_metrics().await;
    let line = metrics
        .lines()
        .find(|l| {
            l.starts_with("fovea_http_requests_total")
                && l.contains("route=\"/api/v1/predict\"")
                && l.contains("status=\"200\"")
        })
        .unwrap_or_else(|| panic!("no predict counter in:\n{metrics}"));
    assert!(
        line.split_whitespace()
            .last()
            .unwrap()
            .parse::<f64>()
            .unwrap()
            >= 1.0,
        "{line}"
    );
    assert!(
        metrics.contains("fovea_http_request_duration_seconds_bucket"),
        "{metrics}"
    );
    assert!(metrics.contains("le=\"0.0005\""), "{metrics}");

    let page = server.client.get(server.url("/")).send().await.unwrap();
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(page.text().await.unwrap().contains("/api/v1/predict"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_real_photo_gets_ten_predictions_that_sum_to_one() {
    let Some(shared) = shared_dir() else {
        return;
    };
    let server = TestServer::start(|_| {}).await;
    let mut photos: Vec<_> = std::fs::read_dir(shared.join("data/images"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    photos.sort();
    assert!(!photos.is_empty());
    for photo in photos {
        let reply = server
            .post("?top_k=10", "image/jpeg", std::fs::read(&photo).unwrap())
            .await;
        assert_eq!(reply.status, 200, "{}: {}", photo.display(), reply.body);
        assert_valid_answer(&reply.body, 10);
        let total: f64 = scores(&reply.body).iter().sum();
        assert!((total - 1.0).abs() < 1e-4, "{}: {total}", photo.display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onnx_runtime_and_tract_servers_give_the_same_answers() {
    let status = fovea_engine::ort_runtime_status().map(|_| ());
    if fovea_testkit::available(fovea_testkit::REQUIRE_ORT, "ONNX Runtime", status).is_none() {
        return;
    }
    let ort = TestServer::start_with(BackendChoice::Ort, |_| {}).await;
    let tract = TestServer::start(|_| {}).await;
    for seed in 0..4 {
        let a = ort.post("?top_k=10", "image/png", png(seed)).await;
        let b = tract.post("?top_k=10", "image/png", png(seed)).await;
        assert_eq!((a.status.as_u16(), b.status.as_u16()), (200, 200));
        assert_same_answer(&a.body, &b.body);
    }
}

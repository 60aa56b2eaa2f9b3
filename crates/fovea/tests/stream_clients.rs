//! The stream clients as a user runs them: the real `fovea` binary streaming
//! to an in-process server (the tiny model on tract) — `predict --video`
//! (through the system ffmpeg), `predict --frames` and `bench --streams`.

mod common;

use std::path::Path;
use std::process::Output;

use common::*;
use serde_json::Value;

/// Runs `fovea ARGS` without blocking the server's runtime.
async fn fovea(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_fovea"))
            .args(&args)
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// Frame answers printed by `--json`, one per line.
fn answers(output: &Output) -> Vec<Value> {
    assert!(
        output.status.success(),
        "fovea failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON answer per line"))
        .collect()
}

/// The system ffmpeg, or a skip (a failure when FOVEA_REQUIRE_FFMPEG is set).
fn ffmpeg() -> Option<()> {
    let found = std::process::Command::new("ffmpeg")
        .arg("-version")
        .output()
        .map_err(|e| e.to_string())
        .and_then(|o| {
            o.status
                .success()
                .then_some(())
                .ok_or_else(|| "ffmpeg -version failed".to_string())
        });
    fovea_testkit::available(
        "FOVEA_REQUIRE_FFMPEG",
        "ffmpeg (apt-get install ffmpeg)",
        found,
    )
}

fn make_video(dir: &Path) -> String {
    let still = dir.join("still.png");
    std::fs::write(&still, png(4)).unwrap();
    let video = dir.join("clip.mp4");
    let status = std::process::Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-loop",
            "1",
            "-i",
        ])
        .arg(&still)
        .args([
            "-t",
            "1",
            "-r",
            "10",
            "-vf",
            "scale=64:48",
            "-pix_fmt",
            "yuv420p",
        ])
        .arg(&video)
        .status()
        .unwrap();
    assert!(status.success(), "ffmpeg could not make the test video");
    video.to_string_lossy().into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn predict_video_streams_every_frame_of_a_real_video() {
    if ffmpeg().is_none() {
        return;
    }
    let server = TestServer::start(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let video = make_video(dir.path());
    let output = fovea(strings(&[
        "predict",
        "--server",
        &server.base,
        "--video",
        &video,
        "--policy",
        "all",
        "--json",
    ]))
    .await;
    let answers = answers(&output);
    // One second at 10 fps.
    assert_eq!(answers.len(), 10, "{answers:?}");
    for (i, answer) in answers.iter().enumerate() {
        assert_eq!(answer["frame"], i as u64, "{answer}");
        assert!(answer["class"].is_string(), "{answer}");
    }
    let summary = String::from_utf8_lossy(&output.stderr);
    assert!(
        summary.contains("10 sent, 10 answered, 0 failed, 0 dropped"),
        "{summary}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_video_is_a_clear_error() {
    if ffmpeg().is_none() {
        return;
    }
    let server = TestServer::start(|_| {}).await;
    let output = fovea(strings(&[
        "predict",
        "--server",
        &server.base,
        "--video",
        "/no/such/clip.mp4",
    ]))
    .await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("/no/such/clip.mp4"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn predict_frames_answers_each_image_like_the_simple_api() {
    let server = TestServer::start(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    for i in 0..4u32 {
        std::fs::write(dir.path().join(format!("{i:03}.png")), png(i)).unwrap();
    }
    let frames = dir.path().to_string_lossy().into_owned();
    let output = fovea(strings(&[
        "predict",
        "--server",
        &server.base,
        "--frames",
        &frames,
        "--fps",
        "50",
        "--policy",
        "all",
        "--json",
    ]))
    .await;
    let answers = answers(&output);
    assert_eq!(answers.len(), 4);
    for (i, answer) in answers.iter().enumerate() {
        let direct = server.post_images("", &[png(i as u32)]).await;
        assert_eq!(answer["class"], direct.body["class"], "frame {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_streams_reports_every_frame_sent() {
    let server = TestServer::start(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("img.png");
    std::fs::write(&image, png(2)).unwrap();
    let output = fovea(strings(&[
        "bench",
        "--url",
        &server.base,
        "--streams",
        "3",
        "--fps",
        "20",
        "--duration-secs",
        "1",
        "--image",
        &image.to_string_lossy(),
        "--json",
    ]))
    .await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let n = |k: &str| report[k].as_u64().unwrap();
    assert_eq!(report["streams"], 3);
    assert!(n("sent") > 0, "{report}");
    assert_eq!(
        n("answered") + n("failed") + n("dropped"),
        n("sent"),
        "{report}"
    );
    assert_eq!(n("failed"), 0, "{report}");
}

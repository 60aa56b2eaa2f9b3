//! `fovea predict --video FILE | --frames DIR`: streams frames to a server's
//! `/api/v1/stream` WebSocket and prints the answers as they come.
//!
//! A video is decoded by the system `ffmpeg`, spawned as a process that
//! writes MJPEG to a pipe (no video codec is linked into fovea); `-re` makes
//! it emit frames at the video's own rate. A directory of images is sent in
//! name order at `--fps` (default 30). With `--as-fast-as-possible` frames go
//! out as fast as the socket takes them, which, under the server's `latest`
//! policy, shows how many it drops.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::cli::PredictArgs;

/// How long the last answers may take once every frame is sent.
const DRAIN: Duration = Duration::from_secs(10);

/// Where the frames come from.
enum Source {
    Video(PathBuf),
    Frames(PathBuf),
}

/// One frame's answer, as the server sends it.
#[derive(Debug, Serialize, Deserialize)]
struct FrameAnswer {
    frame: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    class: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    score: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<FrameError>,
    latency_ms: f64,
    dropped: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct FrameError {
    code: String,
    message: String,
}

/// Runs `fovea predict --video/--frames`.
pub async fn run(args: &PredictArgs) -> anyhow::Result<()> {
    let source = match (&args.video, &args.frames) {
        (Some(video), None) => Source::Video(video.clone()),
        (None, Some(dir)) => Source::Frames(dir.clone()),
        _ => bail!("give one of --video FILE or --frames DIR"),
    };
    let url = stream_url(args)?;
    let request = crate::client::websocket_request(&url, &args.key)?;
    let (socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .with_context(|| format!("cannot open the stream at {url}"))?;
    let (mut sink, mut answers) = socket.split();

    // Frames flow from the reader task through a one-frame channel: when the
    // socket is slow to take them the reader waits, and a paced source keeps
    // its own clock (ffmpeg -re or the --fps ticker).
    let (frames_tx, mut frames_rx) = mpsc::channel::<Vec<u8>>(1);
    let reader = match source {
        Source::Video(path) => tokio::spawn(read_video(
            path,
            args.fps,
            args.as_fast_as_possible,
            frames_tx,
        )),
        Source::Frames(dir) => tokio::spawn(read_frames(
            dir,
            args.fps,
            args.as_fast_as_possible,
            frames_tx,
        )),
    };

    let sent_at: Arc<Mutex<HashMap<u64, Instant>>> = Arc::default();
    // The sender reports how many frames it sent once the source is
    // exhausted; the receiver stops when every one is answered or dropped.
    let (sent_tx, mut sent_rx) = tokio::sync::watch::channel::<Option<u64>>(None);
    let started = Instant::now();
    let sender = {
        let sent_at = sent_at.clone();
        async move {
            let mut sent = 0u64;
            let mut result = Ok(());
            while let Some(frame) = frames_rx.recv().await {
                if let Ok(mut map) = sent_at.lock() {
                    map.insert(sent, Instant::now());
                }
                if let Err(e) = sink.send(Message::Binary(frame.into())).await {
                    result = Err(anyhow::Error::new(e).context("the server closed the stream"));
                    break;
                }
                sent += 1;
            }
            let _ = sent_tx.send(Some(sent));
            (result, sink)
        }
    };

    let live = std::io::stderr().is_terminal() && !args.json;
    let receiver = async {
        let mut summary = Summary::default();
        loop {
            if summary.finished() {
                break;
            }
            // Once everything is sent, the last answers get a bounded wait.
            let drain = async {
                if summary.sent.is_some() {
                    tokio::time::sleep(DRAIN).await;
                } else {
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                changed = sent_rx.changed() => {
                    if changed.is_ok() {
                        summary.sent = *sent_rx.borrow();
                    }
                }
                message = answers.next() => {
                    let Some(message) = message else { break };
                    match message.context("the stream broke")? {
                        Message::Text(text) => {
                            let answer: FrameAnswer = serde_json::from_str(text.as_str())
                                .with_context(|| format!("unexpected message from the server: {text}"))?;
                            let sent = sent_at.lock().ok().and_then(|mut m| m.remove(&answer.frame));
                            summary.record(&answer, sent.map(|t| t.elapsed()));
                            print_answer(&answer, args.json, live, &summary);
                        }
                        Message::Close(frame) => {
                            if let Some(frame) = frame
                                && frame.code != CloseCode::Normal
                            {
                                summary.closed = Some(format!("{} ({})", frame.reason, u16::from(frame.code)));
                            }
                            break;
                        }
                        _ => {}
                    }
                }
                () = drain => break,
            }
        }
        anyhow::Ok(summary)
    };

    let ((sent, mut sink), summary) = tokio::join!(sender, receiver);
    let mut summary = summary?;
    let _ = sink.send(Message::Close(None)).await;
    if live {
        eprintln!();
    }
    summary.print(started.elapsed());
    if let Some(reason) = &summary.closed {
        bail!("the server closed the stream: {reason}");
    }
    sent?;
    reader.await.context("the frame reader failed")??;
    Ok(())
}

/// `ws://HOST/api/v1/stream?...` from `--server` and the options.
fn stream_url(args: &PredictArgs) -> anyhow::Result<String> {
    let server = args.server.trim_end_matches('/');
    let base = if let Some(rest) = server.strip_prefix("http://") {
        format!("ws://{rest}")
    } else if server.starts_with("ws://") {
        server.to_string()
    } else {
        bail!("--server {server}: streaming needs an http:// (plain WebSocket) address");
    };
    let mut query = vec![
        format!("top_k={}", args.top_k),
        format!("policy={}", args.policy.as_str()),
    ];
    if let Some(model) = &args.engine.model {
        query.push(format!(
            "model={}",
            percent_encode(&model.to_string_lossy())
        ));
    }
    Ok(format!("{base}/api/v1/stream?{}", query.join("&")))
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Decodes `path` with ffmpeg into JPEG frames.
async fn read_video(
    path: PathBuf,
    fps: Option<f64>,
    fast: bool,
    frames: mpsc::Sender<Vec<u8>>,
) -> anyhow::Result<()> {
    if !path.is_file() {
        bail!("{}: no such video file", path.display());
    }
    let mut command = tokio::process::Command::new("ffmpeg");
    command.args(["-hide_banner", "-loglevel", "error", "-nostdin"]);
    if !fast {
        command.arg("-re");
    }
    command.arg("-i").arg(&path);
    if let Some(fps) = fps {
        command.args(["-vf", &format!("fps={fps}")]);
    }
    command
        .args(["-f", "image2pipe", "-c:v", "mjpeg", "-q:v", "3", "pipe:1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command
        .spawn()
        .context("cannot run ffmpeg (install it: apt-get install ffmpeg)")?;
    let mut stdout = child.stdout.take().context("ffmpeg has no stdout")?;
    let mut splitter = JpegSplitter::default();
    let mut buffer = vec![0u8; 256 * 1024];
    loop {
        let n = stdout.read(&mut buffer).await?;
        if n == 0 {
            break;
        }
        for frame in splitter.push(&buffer[..n]) {
            if frames.send(frame).await.is_err() {
                return Ok(()); // the stream ended first
            }
        }
    }
    let output = child.wait_with_output().await?;
    if !output.status.success() {
        bail!(
            "ffmpeg could not decode {}: {}",
            path.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// Sends the images of `dir`, in name order, at `fps` (30 by default).
async fn read_frames(
    dir: PathBuf,
    fps: Option<f64>,
    fast: bool,
    frames: mpsc::Sender<Vec<u8>>,
) -> anyhow::Result<()> {
    let files = image_files(&dir)?;
    if files.is_empty() {
        bail!("{}: no .jpg, .jpeg, .png or .webp files", dir.display());
    }
    let fps = fps.unwrap_or(30.0);
    if !(fps > 0.0 && fps.is_finite()) {
        bail!("--fps must be a positive number");
    }
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / fps));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for file in files {
        if !fast {
            ticker.tick().await;
        }
        let bytes = tokio::fs::read(&file)
            .await
            .with_context(|| format!("cannot read {}", file.display()))?;
        if frames.send(bytes).await.is_err() {
            break;
        }
    }
    Ok(())
}

fn image_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read the directory {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| {
            path.extension().and_then(|e| e.to_str()).is_some_and(|e| {
                matches!(
                    e.to_ascii_lowercase().as_str(),
                    "jpg" | "jpeg" | "png" | "webp"
                )
            })
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Cuts a concatenation of JPEG files (ffmpeg's MJPEG pipe) into frames by
/// walking each file's marker segments: header segments are skipped by their
/// length, and entropy-coded data ends at the first 0xFF that is neither
/// stuffing (0xFF 0x00) nor a restart marker. So a 0xFF 0xD9 inside a table
/// or in APP data never cuts a frame short.
#[derive(Default)]
struct JpegSplitter {
    pending: Vec<u8>,
}

impl JpegSplitter {
    fn push(&mut self, bytes: &[u8]) -> Vec<Vec<u8>> {
        self.pending.extend_from_slice(bytes);
        let mut frames = Vec::new();
        loop {
            // Resynchronise on the next SOI (skips garbage between frames).
            match self.pending.windows(2).position(|w| w == [0xFF, 0xD8]) {
                Some(0) => {}
                Some(at) => {
                    self.pending.drain(..at);
                }
                None => {
                    let keep = usize::from(self.pending.last() == Some(&0xFF));
                    self.pending.drain(..self.pending.len() - keep);
                    return frames;
                }
            }
            match jpeg_end(&self.pending) {
                Some(Some(end)) => frames.push(self.pending.drain(..end).collect()),
                // Malformed: drop this SOI and look for the next one.
                Some(None) => {
                    self.pending.drain(..2);
                }
                None => return frames,
            }
        }
    }
}

/// The length of the JPEG file at the start of `data` (which begins with
/// SOI): `None` when more bytes are needed, `Some(None)` when malformed.
fn jpeg_end(data: &[u8]) -> Option<Option<usize>> {
    let mut i = 2;
    loop {
        let (&first, &marker) = (data.get(i)?, data.get(i + 1)?);
        if first != 0xFF {
            return Some(None);
        }
        match marker {
            0xFF => i += 1, // fill byte before a marker
            0xD9 => return Some(Some(i + 2)),
            0x01 | 0xD0..=0xD7 => i += 2,
            _ => {
                let length =
                    usize::from(u16::from_be_bytes([*data.get(i + 2)?, *data.get(i + 3)?]));
                if length < 2 {
                    return Some(None);
                }
                i += 2 + length;
                if marker == 0xDA {
                    // Entropy-coded data up to the next real marker.
                    loop {
                        let (&byte, &next) = (data.get(i)?, data.get(i + 1)?);
                        if byte == 0xFF && next != 0x00 && !(0xD0..=0xD7).contains(&next) {
                            break;
                        }
                        i += 1;
                    }
                }
            }
        }
    }
}

/// What the stream did, for the closing summary.
#[derive(Default)]
struct Summary {
    sent: Option<u64>,
    answered: u64,
    failed: u64,
    dropped: u64,
    latencies_ms: Vec<f64>,
    closed: Option<String>,
}

impl Summary {
    fn record(&mut self, answer: &FrameAnswer, round_trip: Option<Duration>) {
        if answer.error.is_some() {
            self.failed += 1;
        } else {
            self.answered += 1;
        }
        self.dropped = self.dropped.max(answer.dropped);
        if let Some(rtt) = round_trip {
            self.latencies_ms.push(rtt.as_secs_f64() * 1000.0);
        }
    }

    /// Every sent frame is accounted for: answered, failed or dropped.
    fn finished(&self) -> bool {
        self.sent
            .is_some_and(|sent| self.answered + self.failed + self.dropped >= sent)
    }

    fn print(&mut self, elapsed: Duration) {
        self.latencies_ms.sort_by(f64::total_cmp);
        let quantile = |q: f64| -> f64 {
            if self.latencies_ms.is_empty() {
                return f64::NAN;
            }
            let index = ((self.latencies_ms.len() - 1) as f64 * q).round() as usize;
            self.latencies_ms[index]
        };
        let seconds = elapsed.as_secs_f64().max(1e-9);
        eprintln!(
            "frames: {} sent, {} answered, {} failed, {} dropped; {:.1} answered/s over {:.1} s; \
             frame latency p50 {:.1} ms, p99 {:.1} ms",
            self.sent.unwrap_or(0),
            self.answered,
            self.failed,
            self.dropped,
            self.answered as f64 / seconds,
            seconds,
            quantile(0.5),
            quantile(0.99),
        );
    }
}

fn print_answer(answer: &FrameAnswer, json: bool, live: bool, summary: &Summary) {
    if json {
        if let Ok(text) = serde_json::to_string(answer) {
            println!("{text}");
        }
        return;
    }
    let line = match (&answer.class, &answer.error) {
        (_, Some(error)) => format!(
            "frame {}: error {} ({})",
            answer.frame, error.message, error.code
        ),
        (Some(class), None) => format!(
            "frame {}: {} {:.1}%  {:.1} ms  (answered {}, dropped {})",
            answer.frame,
            class,
            answer.score.unwrap_or(0.0) * 100.0,
            answer.latency_ms,
            summary.answered,
            answer.dropped
        ),
        (None, None) => format!("frame {}: no answer", answer.frame),
    };
    if live {
        let mut err = std::io::stderr();
        let _ = write!(err, "\r\x1b[2K{line}");
        let _ = err.flush();
    } else {
        println!("{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SOI, an APP segment whose payload holds 0xFF 0xD9, SOS, entropy data
    /// with stuffing and a restart marker, EOI.
    fn jpeg(entropy: &[u8]) -> Vec<u8> {
        [
            &[0xFF, 0xD8][..],
            &[0xFF, 0xE0, 0x00, 0x06, 0xFF, 0xD9, 0x01, 0x02],
            &[0xFF, 0xDA, 0x00, 0x03, 0x01],
            entropy,
            &[0xFF, 0xD0, 0x07, 0xFF, 0xD9],
        ]
        .concat()
    }

    #[test]
    fn splits_concatenated_jpegs_across_reads() {
        let a = jpeg(&[1, 0xFF, 0x00, 2]);
        let b = jpeg(&[3, 4, 5]);
        let stream = [&b"junk"[..], &a, &b].concat();
        for cut in 0..=stream.len() {
            let mut splitter = JpegSplitter::default();
            let mut frames = splitter.push(&stream[..cut]);
            frames.extend(splitter.push(&stream[cut..]));
            assert_eq!(frames, vec![a.clone(), b.clone()], "cut at {cut}");
        }
    }

    #[test]
    fn splits_real_jpeg_files() {
        let Some(photos) = fovea_testkit::shared("data/images") else {
            return;
        };
        let mut paths: Vec<PathBuf> = std::fs::read_dir(&photos)
            .expect("the photo directory")
            .map(|e| e.expect("a directory entry").path())
            .collect();
        paths.sort();
        let files: Vec<Vec<u8>> = paths
            .iter()
            .map(|p| std::fs::read(p).expect("a photo"))
            .collect();
        assert!(files.len() >= 2);
        let mut splitter = JpegSplitter::default();
        let frames: Vec<Vec<u8>> = files
            .concat()
            .chunks(4096)
            .flat_map(|c| splitter.push(c))
            .collect();
        assert_eq!(frames, files);
    }

    #[test]
    fn a_stream_is_finished_only_when_every_frame_is_accounted_for() {
        let mut summary = Summary {
            sent: Some(3),
            ..Summary::default()
        };
        let answer = |frame, dropped| FrameAnswer {
            frame,
            class: Some("cat".into()),
            score: Some(0.9),
            error: None,
            latency_ms: 1.0,
            dropped,
        };
        summary.record(&answer(0, 0), None);
        assert!(!summary.finished());
        summary.record(&answer(2, 1), None);
        assert!(summary.finished());
    }
}

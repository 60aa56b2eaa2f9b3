//! `fovea bench --streams N --fps F`: N WebSocket streams to `/api/v1/stream`,
//! each sending the same encoded image F times a second (like N cameras),
//! for the run's duration. Reports, over all streams: frames sent, answered,
//! failed and dropped, the answered rate per stream, and the frame latency
//! from the moment a frame was sent to its answer (answers to dropped frames
//! never come, so they do not count).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::client::Request;

use super::BenchArgs;
use super::load::{Latency, latency};

/// What a stream run measured; `--json` prints exactly this.
#[derive(Debug, Serialize)]
pub struct StreamReport {
    pub url: String,
    pub streams: usize,
    pub fps: f64,
    pub policy: &'static str,
    pub elapsed_s: f64,
    pub sent: u64,
    pub answered: u64,
    pub failed: u64,
    pub dropped: u64,
    pub dropped_fraction: f64,
    pub answered_fps_per_stream: f64,
    pub errors: BTreeMap<String, u64>,
    pub frame_latency_ms: Latency,
}

#[derive(Debug, Deserialize)]
struct Answer {
    frame: u64,
    #[serde(default)]
    error: Option<AnswerError>,
    dropped: u64,
}

#[derive(Debug, Deserialize)]
struct AnswerError {
    code: String,
}

/// One stream's counts.
struct StreamTally {
    sent: u64,
    answered: u64,
    failed: u64,
    dropped: u64,
    errors: BTreeMap<String, u64>,
    latencies: Histogram<u64>,
}

pub async fn run(args: &BenchArgs, streams: usize) -> anyhow::Result<()> {
    let report = measure(args, streams).await?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "{} streams x {:.1} fps ({}) for {:.1} s: {} frames sent, {} answered, {} failed, {} dropped ({:.1}%)",
            report.streams,
            report.fps,
            report.policy,
            report.elapsed_s,
            report.sent,
            report.answered,
            report.failed,
            report.dropped,
            report.dropped_fraction * 100.0
        );
        println!(
            "answered per stream: {:.2} fps; frame latency ms: p50 {:.1}, p90 {:.1}, p99 {:.1}, max {:.1}",
            report.answered_fps_per_stream,
            report.frame_latency_ms.p50,
            report.frame_latency_ms.p90,
            report.frame_latency_ms.p99,
            report.frame_latency_ms.max
        );
        for (code, n) in &report.errors {
            println!("  {n} frames failed with {code}");
        }
    }
    Ok(())
}

/// Runs `streams` streams for the run's duration and merges their counts.
pub async fn measure(args: &BenchArgs, streams: usize) -> anyhow::Result<StreamReport> {
    let fps = args.fps;
    anyhow::ensure!(
        fps.is_finite() && fps > 0.0,
        "--fps must be a positive number"
    );
    let image = match &args.image {
        Some(path) => tokio::fs::read(path)
            .await
            .with_context(|| format!("cannot read {}", path.display()))?,
        None => bail!("--streams needs --image FILE (the frame every stream sends)"),
    };
    let duration = Duration::from_secs_f64(args.duration_secs.unwrap_or(10.0).max(0.1));
    let url = stream_url(args)?;
    let policy = if args.all_frames { "all" } else { "latest" };
    let started = Instant::now();
    let tasks: Vec<_> = (0..streams)
        .map(|_| {
            let image = image.clone();
            let request = crate::client::websocket_request(&url, &args.key);
            tokio::spawn(async move { one_stream(request?, image, fps, duration).await })
        })
        .collect();
    let mut total = StreamTally::new()?;
    for task in tasks {
        let tally = task.await.context("a stream task failed")??;
        total.merge(tally)?;
    }
    let elapsed = started.elapsed().as_secs_f64().max(1e-9);
    Ok(StreamReport {
        url,
        streams,
        fps,
        policy,
        elapsed_s: elapsed,
        sent: total.sent,
        answered: total.answered,
        failed: total.failed,
        dropped: total.dropped,
        dropped_fraction: total.dropped as f64 / total.sent.max(1) as f64,
        answered_fps_per_stream: total.answered as f64 / elapsed / streams.max(1) as f64,
        errors: total.errors,
        frame_latency_ms: latency(&total.latencies),
    })
}

fn stream_url(args: &BenchArgs) -> anyhow::Result<String> {
    let base = args.url.trim_end_matches('/');
    let Some(host) = base.strip_prefix("http://") else {
        bail!("--url {base}: streams need an http:// server address");
    };
    let mut url = format!(
        "ws://{host}/api/v1/stream?policy={}",
        if args.all_frames { "all" } else { "latest" }
    );
    if let Some(model) = &args.model {
        url.push_str(&format!("&model={model}"));
    }
    Ok(url)
}

/// One camera: sends `image` every 1/fps seconds for `duration`, reads the
/// answers concurrently, then waits (a little) for the last answers.
async fn one_stream(
    request: Request,
    image: Vec<u8>,
    fps: f64,
    duration: Duration,
) -> anyhow::Result<StreamTally> {
    let url = request.uri().to_string();
    let (socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .with_context(|| format!("cannot open {url}"))?;
    let (mut sink, mut answers) = socket.split();
    let mut tally = StreamTally::new()?;
    let mut sent_at: HashMap<u64, Instant> = HashMap::new();
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / fps));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let end = tokio::time::Instant::now() + duration;
    let image = bytes::Bytes::from(image);
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(end) => break,
            _ = ticker.tick() => {
                sent_at.insert(tally.sent, Instant::now());
                sink.send(Message::Binary(image.clone())).await.context("sending a frame")?;
                tally.sent += 1;
            }
            message = answers.next() => {
                let Some(message) = message else { bail!("the server closed a stream") };
                tally.read(message?, &mut sent_at)?;
            }
        }
    }
    // Frames still in flight get a grace period to be answered or dropped.
    let grace = tokio::time::Instant::now() + Duration::from_secs(10);
    while tally.answered + tally.failed + tally.dropped < tally.sent {
        match tokio::time::timeout_at(grace, answers.next()).await {
            Ok(Some(message)) => tally.read(message?, &mut sent_at)?,
            _ => break,
        }
    }
    let _ = sink.send(Message::Close(None)).await;
    Ok(tally)
}

impl StreamTally {
    fn new() -> anyhow::Result<Self> {
        Ok(Self {
            sent: 0,
            answered: 0,
            failed: 0,
            dropped: 0,
            errors: BTreeMap::new(),
            latencies: Histogram::new_with_bounds(1, 3_600_000_000, 3)
                .context("creating the latency histogram")?,
        })
    }

    fn read(
        &mut self,
        message: Message,
        sent_at: &mut HashMap<u64, Instant>,
    ) -> anyhow::Result<()> {
        let Message::Text(text) = message else {
            return Ok(());
        };
        let answer: Answer = serde_json::from_str(text.as_str())
            .with_context(|| format!("unexpected answer {text}"))?;
        self.dropped = self.dropped.max(answer.dropped);
        let sent = sent_at.remove(&answer.frame);
        // Frames below this one were answered or dropped: forget them.
        sent_at.retain(|frame, _| *frame > answer.frame);
        match answer.error {
            Some(error) => {
                self.failed += 1;
                *self.errors.entry(error.code).or_default() += 1;
            }
            None => {
                self.answered += 1;
                if let Some(sent) = sent {
                    self.latencies
                        .saturating_record((sent.elapsed().as_micros() as u64).max(1));
                }
            }
        }
        Ok(())
    }

    fn merge(&mut self, other: StreamTally) -> anyhow::Result<()> {
        self.sent += other.sent;
        self.answered += other.answered;
        self.failed += other.failed;
        self.dropped += other.dropped;
        for (k, v) in other.errors {
            *self.errors.entry(k).or_default() += v;
        }
        self.latencies
            .add(&other.latencies)
            .context("merging latency histograms")
    }
}

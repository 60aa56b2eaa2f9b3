//! The load generator: closed loop (N workers sending back to back over
//! keep-alive) and open loop (requests issued on a schedule whatever the
//! completions, latency counted from the scheduled time so that a slow server
//! cannot hide its queueing: no coordinated omission), with the report.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use rand::Rng;
use serde::Serialize;
use tokio::sync::{Semaphore, mpsc};

use super::target::{Outcome, Target};
use super::{Arrivals, BenchArgs, Protocol};

/// Latencies are kept in microseconds, up to an hour, to 3 significant digits.
const MAX_LATENCY_US: u64 = 3_600_000_000;
/// Most requests in flight in open loop when --concurrency is absent.
const DEFAULT_OPEN_LOOP_IN_FLIGHT: usize = 256;

/// What one run measured; `--json` prints exactly this.
#[derive(Debug, Serialize)]
pub struct Report {
    pub protocol: Protocol,
    pub url: String,
    pub mode: &'static str,
    pub concurrency: usize,
    pub rate: Option<f64>,
    pub elapsed_s: f64,
    pub requests: u64,
    pub ok: u64,
    pub errors: BTreeMap<String, u64>,
    pub requests_per_second: f64,
    pub latency_ms: Latency,
}

/// Latency percentiles of the successful requests, in milliseconds.
#[derive(Debug, Serialize, PartialEq)]
pub struct Latency {
    pub min: f64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

/// Counts and latencies, merged from every worker at the end.
struct Tally {
    latencies: Histogram<u64>,
    errors: BTreeMap<String, u64>,
    requests: u64,
}

impl Tally {
    fn new() -> anyhow::Result<Self> {
        Ok(Self {
            latencies: Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)
                .context("creating the latency histogram")?,
            errors: BTreeMap::new(),
            requests: 0,
        })
    }

    fn record(&mut self, latency: Duration, outcome: Outcome) {
        self.requests += 1;
        match outcome {
            Ok(()) => self
                .latencies
                .saturating_record((latency.as_micros() as u64).max(1)),
            Err(status) => *self.errors.entry(status).or_default() += 1,
        }
    }

    fn merge(&mut self, other: Tally) -> anyhow::Result<()> {
        self.latencies
            .add(&other.latencies)
            .context("merging latency histograms")?;
        for (k, v) in other.errors {
            *self.errors.entry(k).or_default() += v;
        }
        self.requests += other.requests;
        Ok(())
    }
}

/// Percentiles of a histogram of microseconds, in milliseconds (all zero when empty).
pub(super) fn latency(h: &Histogram<u64>) -> Latency {
    let ms = |us: u64| us as f64 / 1e3;
    if h.is_empty() {
        return Latency {
            min: 0.0,
            mean: 0.0,
            p50: 0.0,
            p90: 0.0,
            p99: 0.0,
            max: 0.0,
        };
    }
    Latency {
        min: ms(h.min()),
        mean: h.mean() / 1e3,
        p50: ms(h.value_at_quantile(0.5)),
        p90: ms(h.value_at_quantile(0.9)),
        p99: ms(h.value_at_quantile(0.99)),
        max: ms(h.max()),
    }
}

pub async fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let report = measure(args).await?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_text(&report);
    }
    Ok(())
}

/// Runs the load `args` describe and returns the report.
pub async fn measure(args: &BenchArgs) -> anyhow::Result<Report> {
    if let Some(rate) = args.rate {
        anyhow::ensure!(
            rate.is_finite() && rate > 0.0,
            "--rate must be a positive number"
        );
    }
    let concurrency = args
        .concurrency
        .unwrap_or(if args.rate.is_some() {
            DEFAULT_OPEN_LOOP_IN_FLIGHT
        } else {
            1
        })
        .max(1);
    let target = Target::prepare(args, concurrency).await?;
    let duration = match (args.duration_secs, args.requests) {
        (Some(d), _) => Some(Duration::from_secs_f64(d.max(0.0))),
        (None, Some(_)) => None,
        (None, None) => Some(Duration::from_secs(10)),
    };
    let (tally, elapsed) = match args.rate {
        None => closed_loop(target, concurrency, duration, args.requests).await?,
        Some(rate) => {
            open_loop(
                target,
                concurrency,
                duration,
                args.requests,
                rate,
                args.arrivals,
            )
            .await?
        }
    };
    let errors: u64 = tally.errors.values().sum();
    Ok(Report {
        protocol: args.protocol,
        url: args.url.clone(),
        mode: if args.rate.is_some() {
            "open"
        } else {
            "closed"
        },
        concurrency,
        rate: args.rate,
        elapsed_s: elapsed.as_secs_f64(),
        requests: tally.requests,
        ok: tally.requests - errors,
        requests_per_second: (tally.requests - errors) as f64 / elapsed.as_secs_f64().max(1e-9),
        latency_ms: latency(&tally.latencies),
        errors: tally.errors,
    })
}

/// Takes one request from the budget; false once it is spent.
fn take(budget: &Option<AtomicU64>) -> bool {
    budget.as_ref().is_none_or(|b| {
        b.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |r| r.checked_sub(1))
            .is_ok()
    })
}

async fn closed_loop(
    target: Target,
    concurrency: usize,
    duration: Option<Duration>,
    requests: Option<u64>,
) -> anyhow::Result<(Tally, Duration)> {
    // Each worker opens its connection with one untimed request first.
    let mut warm = Vec::new();
    for _ in 0..concurrency {
        let mut t = target.clone();
        warm.push(tokio::spawn(async move {
            let _ = t.send().await;
            t
        }));
    }
    let mut targets = Vec::with_capacity(concurrency);
    for w in warm {
        targets.push(w.await?);
    }
    let budget = Arc::new(requests.map(AtomicU64::new));
    let started = Instant::now();
    let deadline = duration.map(|d| started + d);
    let mut workers = Vec::with_capacity(concurrency);
    for mut t in targets {
        let budget = budget.clone();
        let mut tally = Tally::new()?;
        workers.push(tokio::spawn(async move {
            while deadline.is_none_or(|d| Instant::now() < d) && take(&budget) {
                let sent = Instant::now();
                let outcome = t.send().await;
                tally.record(sent.elapsed(), outcome);
            }
            tally
        }));
    }
    let mut total = Tally::new()?;
    for w in workers {
        total.merge(w.await?)?;
    }
    Ok((total, started.elapsed()))
}

async fn open_loop(
    target: Target,
    max_in_flight: usize,
    duration: Option<Duration>,
    requests: Option<u64>,
    rate: f64,
    arrivals: Arrivals,
) -> anyhow::Result<(Tally, Duration)> {
    let _ = target.clone().send().await;
    let permits = Arc::new(Semaphore::new(max_in_flight));
    let (tx, mut rx) = mpsc::unbounded_channel::<(Duration, Outcome)>();
    let started = tokio::time::Instant::now();
    let deadline = duration.map(|d| started + d);
    let mut scheduled = started;
    let mut issued = 0u64;
    let mut rng = rand::rng();
    while deadline.is_none_or(|d| scheduled < d) && requests.is_none_or(|n| issued < n) {
        tokio::time::sleep_until(scheduled).await;
        let mut t = target.clone();
        let permits = permits.clone();
        let tx = tx.clone();
        let at = scheduled;
        tokio::spawn(async move {
            // Waiting for a permit is part of the latency: it is counted from `at`.
            let outcome = match permits.acquire_owned().await {
                Ok(_permit) => t.send().await,
                Err(_) => Err("client closed".to_string()),
            };
            let _ = tx.send((at.elapsed(), outcome));
        });
        issued += 1;
        let gap = match arrivals {
            Arrivals::Fixed => 1.0 / rate,
            // Inverse transform of a uniform draw in (0, 1]: exponential gaps.
            Arrivals::Poisson => -(1.0 - rng.random::<f64>()).ln() / rate,
        };
        scheduled += Duration::from_secs_f64(gap);
    }
    drop(tx);
    let mut tally = Tally::new()?;
    while let Some((latency, outcome)) = rx.recv().await {
        tally.record(latency, outcome);
    }
    Ok((tally, started.elapsed()))
}

fn print_text(r: &Report) {
    let load = match r.rate {
        Some(rate) => format!(
            "open loop at {rate} req/s, at most {} in flight",
            r.concurrency
        ),
        None => format!("closed loop, concurrency {}", r.concurrency),
    };
    println!("{:?} {} ({load}), {:.1} s", r.protocol, r.url, r.elapsed_s);
    println!(
        "requests {}  ok {}  errors {}",
        r.requests,
        r.ok,
        r.requests - r.ok
    );
    for (status, n) in &r.errors {
        println!("  {status}: {n}");
    }
    println!("throughput {:.1} req/s", r.requests_per_second);
    let l = &r.latency_ms;
    println!(
        "latency ms  p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}  (min {:.2}, mean {:.2})",
        l.p50, l.p90, l.p99, l.max, l.min, l.mean
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_the_recorded_latencies() {
        let mut t = Tally::new().unwrap();
        for ms in 1..=100u64 {
            t.record(Duration::from_millis(ms), Ok(()));
        }
        t.record(Duration::from_millis(5), Err("503".into()));
        let l = latency(&t.latencies);
        // hdrhistogram keeps 3 significant digits: allow 0.1%.
        let close = |a: f64, b: f64| (a - b).abs() <= b * 1e-3 + 1e-9;
        assert!(close(l.p50, 50.0), "{l:?}");
        assert!(close(l.p90, 90.0), "{l:?}");
        assert!(close(l.p99, 99.0), "{l:?}");
        assert!(close(l.max, 100.0), "{l:?}");
        assert!(close(l.min, 1.0), "{l:?}");
        assert_eq!(t.requests, 101);
        assert_eq!(t.errors.get("503"), Some(&1));
    }

    #[test]
    fn merged_tallies_add_counts_and_errors_by_status() {
        let mut a = Tally::new().unwrap();
        a.record(Duration::from_millis(2), Ok(()));
        a.record(Duration::from_millis(2), Err("429".into()));
        let mut b = Tally::new().unwrap();
        b.record(Duration::from_millis(4), Err("429".into()));
        b.record(Duration::from_millis(4), Err("grpc Unavailable".into()));
        a.merge(b).unwrap();
        assert_eq!(a.requests, 4);
        assert_eq!(a.latencies.len(), 1);
        assert_eq!(a.errors.get("429"), Some(&2));
        assert_eq!(a.errors.get("grpc Unavailable"), Some(&1));
    }

    #[test]
    fn the_request_budget_runs_out_exactly() {
        let budget = Some(AtomicU64::new(3));
        assert!((0..3).all(|_| take(&budget)));
        assert!(!take(&budget));
        assert!(take(&None));
    }
}

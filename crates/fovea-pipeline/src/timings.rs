//! Where a request's time went, stage by stage, for the `Server-Timing`
//! header (HTTP) and response metadata (gRPC) of every protocol.

use std::fmt::Write;
use std::time::Duration;

/// A request's time per stage; a stage it did not pass through is `None`.
/// For a request of several items each stage is its slowest item's, since
/// items run side by side.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timings {
    /// Fetching the image (a URL).
    pub fetch: Option<Duration>,
    /// Waiting for a decode permit.
    pub decode_wait: Option<Duration>,
    /// Decoding and preprocessing.
    pub preprocess: Option<Duration>,
    /// Waiting in the model's queue for a batch.
    pub queue: Option<Duration>,
    /// The backend's run of the batch.
    pub inference: Option<Duration>,
}

impl Timings {
    /// Takes, stage by stage, the longer of `self` and `other`.
    pub fn merge(&mut self, other: &Timings) {
        for (mine, theirs) in [
            (&mut self.fetch, other.fetch),
            (&mut self.decode_wait, other.decode_wait),
            (&mut self.preprocess, other.preprocess),
            (&mut self.queue, other.queue),
            (&mut self.inference, other.inference),
        ] {
            *mine = match (*mine, theirs) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
        }
    }

    /// The stages passed through, in order, as `(name, duration)`.
    pub fn stages(&self) -> impl Iterator<Item = (&'static str, Duration)> {
        [
            ("fetch", self.fetch),
            ("decode_wait", self.decode_wait),
            ("preprocess", self.preprocess),
            ("queue", self.queue),
            ("inference", self.inference),
        ]
        .into_iter()
        .filter_map(|(name, took)| Some((name, took?)))
    }

    /// The W3C `Server-Timing` value: `stage;dur=<ms>` per stage, then
    /// `total` (from the request's arrival) when given. Browsers show it in
    /// their developer tools; clients read it without parsing bodies.
    pub fn server_timing(&self, total: Option<Duration>) -> String {
        let mut value = String::new();
        for (name, took) in self.stages().chain(total.map(|t| ("total", t))) {
            if !value.is_empty() {
                value.push_str(", ");
            }
            let _ = write!(value, "{name};dur={:.3}", took.as_secs_f64() * 1000.0);
        }
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_keeps_each_stages_longest_and_any_stage_either_had() {
        let mut a = Timings {
            queue: Some(Duration::from_millis(3)),
            inference: Some(Duration::from_millis(10)),
            ..Timings::default()
        };
        let b = Timings {
            preprocess: Some(Duration::from_millis(2)),
            queue: Some(Duration::from_millis(5)),
            inference: Some(Duration::from_millis(10)),
            ..Timings::default()
        };
        a.merge(&b);
        assert_eq!(a.preprocess, Some(Duration::from_millis(2)));
        assert_eq!(a.queue, Some(Duration::from_millis(5)));
        assert_eq!(a.inference, Some(Duration::from_millis(10)));
        assert_eq!(a.fetch, None);
    }

    #[test]
    fn server_timing_lists_the_stages_passed_in_order_then_the_total() {
        let timings = Timings {
            preprocess: Some(Duration::from_micros(2500)),
            inference: Some(Duration::from_millis(7)),
            ..Timings::default()
        };
        assert_eq!(
            timings.server_timing(Some(Duration::from_millis(12))),
            "preprocess;dur=2.500, inference;dur=7.000, total;dur=12.000"
        );
        assert_eq!(Timings::default().server_timing(None), "");
    }
}

//! Learning-rate schedules as pure functions of the global step, so that a
//! resumed run continues on exactly the same curve.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Shape of the learning-rate curve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScheduleKind {
    /// PyTorch's `OneCycleLR` (cosine): from `max/25` up to `max` over the
    /// warm-up, then down to `max/25/1e4`.
    OneCycle,
    /// Linear from 0 to `max` over the warm-up, then linearly to 0 (the
    /// triangular one-cycle of the fast CIFAR-10 recipes).
    Linear,
    /// Linear warm-up from 0 to `max`, then cosine decay to 0.
    Cosine,
    /// `max` throughout (fine-tuning a head, tests).
    Constant,
}

impl fmt::Display for ScheduleKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ScheduleKind::OneCycle => "one-cycle",
            ScheduleKind::Linear => "linear",
            ScheduleKind::Cosine => "cosine",
            ScheduleKind::Constant => "constant",
        })
    }
}

impl FromStr for ScheduleKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "one-cycle" => Ok(ScheduleKind::OneCycle),
            "linear" => Ok(ScheduleKind::Linear),
            "cosine" => Ok(ScheduleKind::Cosine),
            "constant" => Ok(ScheduleKind::Constant),
            other => Err(format!(
                "unknown schedule `{other}`; use one-cycle, linear, cosine or constant"
            )),
        }
    }
}

/// A learning-rate schedule over a whole run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    pub kind: ScheduleKind,
    pub max_lr: f64,
    pub total_steps: usize,
    pub warmup_steps: usize,
}

impl Schedule {
    /// The learning rate for step `step` (0-based).
    pub fn lr(&self, step: usize) -> f64 {
        let cos = |from: f64, to: f64, t: f64| {
            to + (from - to) * (1.0 + (std::f64::consts::PI * t.clamp(0.0, 1.0)).cos()) / 2.0
        };
        let warmup = self.warmup_steps.min(self.total_steps);
        let decay_len = self.total_steps.saturating_sub(warmup).max(1) as f64;
        match self.kind {
            ScheduleKind::Constant => self.max_lr,
            ScheduleKind::OneCycle => {
                let initial = self.max_lr / 25.0;
                if step < warmup {
                    cos(initial, self.max_lr, step as f64 / warmup as f64)
                } else {
                    cos(
                        self.max_lr,
                        initial / 1e4,
                        (step - warmup) as f64 / decay_len,
                    )
                }
            }
            ScheduleKind::Linear => {
                if step < warmup {
                    self.max_lr * (step + 1) as f64 / warmup as f64
                } else {
                    self.max_lr * (1.0 - (step - warmup) as f64 / decay_len).max(0.0)
                }
            }
            ScheduleKind::Cosine => {
                if step < warmup {
                    self.max_lr * (step + 1) as f64 / warmup as f64
                } else {
                    cos(self.max_lr, 0.0, (step - warmup) as f64 / decay_len)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(kind: ScheduleKind) -> Schedule {
        Schedule {
            kind,
            max_lr: 0.1,
            total_steps: 100,
            warmup_steps: 30,
        }
    }

    #[test]
    fn one_cycle_rises_to_the_peak_at_the_end_of_warmup_then_anneals() {
        let s = schedule(ScheduleKind::OneCycle);
        assert!((s.lr(0) - 0.004).abs() < 1e-12);
        assert!((s.lr(30) - 0.1).abs() < 1e-12);
        assert!(s.lr(15) > s.lr(10) && s.lr(60) < s.lr(40));
        assert!(s.lr(100) < 1e-6);
    }

    #[test]
    fn linear_rises_to_the_peak_then_falls_to_zero_in_straight_lines() {
        let s = schedule(ScheduleKind::Linear);
        assert!((s.lr(14) - 0.05).abs() < 1e-12);
        assert!((s.lr(29) - 0.1).abs() < 1e-12);
        assert!((s.lr(65) - 0.05).abs() < 1e-12);
        assert!(s.lr(100).abs() < 1e-12);
    }

    #[test]
    fn cosine_warms_up_linearly_and_reaches_zero() {
        let s = schedule(ScheduleKind::Cosine);
        assert!((s.lr(14) - 0.05).abs() < 1e-12);
        assert!((s.lr(30) - 0.1).abs() < 1e-12);
        assert!(s.lr(100).abs() < 1e-12);
    }
}

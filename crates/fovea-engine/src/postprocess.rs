//! Turning a row of logits into ranked, labelled class probabilities.

use fovea_core::Labels;
use serde::{Deserialize, Serialize};

/// One ranked class of a classification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// Class name from the labels file (the index as text when unlabelled).
    pub label: String,
    /// Output index of the class.
    pub index: usize,
    /// Softmax probability.
    pub score: f32,
}

/// Numerically stable softmax: subtracts the maximum before exponentiating so
/// large logits cannot overflow.
pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits
        .iter()
        .copied()
        .filter(|x| !x.is_nan())
        .fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() {
        // All NaN, empty, or an infinite logit: nothing meaningful to normalise;
        // put all the mass on the +inf entries, if any.
        let hits = logits.iter().filter(|x| **x == f32::INFINITY).count();
        return logits
            .iter()
            .map(|x| {
                if *x == f32::INFINITY {
                    1.0 / hits as f32
                } else {
                    0.0
                }
            })
            .collect();
    }
    let mut out: Vec<f32> = logits.iter().map(|x| (x - max).exp()).collect();
    let sum: f32 = out.iter().filter(|x| !x.is_nan()).sum();
    for p in &mut out {
        *p = if p.is_nan() { 0.0 } else { *p / sum };
    }
    out
}

/// Softmax, then the `top_k` most probable classes in descending order of
/// score, ties broken by the lower index (`fovea_core::top_k`).
pub fn classify(logits: &[f32], labels: &Labels, top_k: usize) -> Vec<Prediction> {
    let probabilities = softmax(logits);
    fovea_core::top_k(&probabilities, top_k)
        .into_iter()
        .map(|index| Prediction {
            label: labels.name(index),
            index,
            score: probabilities[index],
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_sums_to_one_and_survives_huge_logits() {
        let p = softmax(&[1000.0, 1001.0, 999.0]);
        assert!(p.iter().all(|x| x.is_finite()));
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(p[1] > p[0] && p[0] > p[2]);
    }

    #[test]
    fn softmax_matches_the_textbook_formula_on_small_logits() {
        let logits = [0.5f32, -1.0, 2.0];
        let denominator: f32 = logits.iter().map(|x| x.exp()).sum();
        for (p, x) in softmax(&logits).iter().zip(logits) {
            assert!((p - x.exp() / denominator).abs() < 1e-6);
        }
    }

    #[test]
    fn softmax_of_nothing_is_nothing() {
        assert!(softmax(&[]).is_empty());
    }

    #[test]
    fn nan_logits_get_zero_probability() {
        let p = softmax(&[f32::NAN, 0.0, 0.0]);
        assert_eq!(p, vec![0.0, 0.5, 0.5]);
    }

    #[test]
    fn classify_ranks_descending_and_breaks_ties_by_index() {
        let labels = Labels::parse("a\nb\nc\nd");
        let top = classify(&[1.0, 3.0, 1.0, 2.0], &labels, 3);
        let indices: Vec<usize> = top.iter().map(|p| p.index).collect();
        assert_eq!(indices, vec![1, 3, 0]);
        assert_eq!(top[0].label, "b");
        assert!(top[0].score > top[1].score);
    }

    #[test]
    fn classify_returns_every_class_when_top_k_is_larger() {
        let top = classify(&[0.0, 1.0], &Labels::default(), 10);
        assert_eq!(top.len(), 2);
        assert_eq!(top[0].label, "1");
    }
}

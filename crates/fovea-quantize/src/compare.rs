//! Backend comparison: how closely one model (or backend) follows another on
//! the same inputs, by top-1 agreement and logit differences.

use fovea_core::Tensor;
use fovea_engine::Backend;

use crate::QuantizeError;

/// How closely a candidate backend's outputs follow a reference's.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Agreement {
    /// Items compared.
    pub items: usize,
    /// Items whose arg-max class is the same.
    pub top1_same: usize,
    /// Largest |reference − candidate| over all outputs.
    pub max_abs_diff: f32,
    /// Mean |reference − candidate| over all outputs.
    pub mean_abs_diff: f32,
}

impl Agreement {
    /// Share of items with the same top-1 class, in [0, 1].
    pub fn top1_rate(&self) -> f64 {
        if self.items == 0 {
            return 0.0;
        }
        self.top1_same as f64 / self.items as f64
    }
}

/// Runs every input through both backends and compares their outputs.
pub fn compare_backends(
    reference: &mut dyn Backend,
    candidate: &mut dyn Backend,
    inputs: &[Tensor],
) -> Result<Agreement, QuantizeError> {
    let mut agreement = Agreement::default();
    let mut sum = 0f64;
    let mut count = 0usize;
    for input in inputs {
        let a = reference.run(input).map_err(QuantizeError::Comparison)?;
        let b = candidate.run(input).map_err(QuantizeError::Comparison)?;
        if a.shape() != b.shape() {
            return Err(QuantizeError::OutputShapes {
                reference: a.shape().to_vec(),
                candidate: b.shape().to_vec(),
            });
        }
        for item in 0..a.batch_size() {
            let (Some(x), Some(y)) = (a.item(item), b.item(item)) else {
                continue;
            };
            agreement.items += 1;
            if argmax(x) == argmax(y) {
                agreement.top1_same += 1;
            }
            for (p, q) in x.iter().zip(y) {
                let d = (p - q).abs();
                agreement.max_abs_diff = agreement.max_abs_diff.max(d);
                sum += f64::from(d);
                count += 1;
            }
        }
    }
    agreement.mean_abs_diff = if count > 0 {
        (sum / count as f64) as f32
    } else {
        0.0
    };
    Ok(agreement)
}

fn argmax(values: &[f32]) -> Option<usize> {
    values
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top1_agreement_counts_items_with_the_same_argmax() {
        assert_eq!(argmax(&[0.1, 0.7, 0.2]), Some(1));
        let a = Agreement {
            items: 4,
            top1_same: 3,
            ..Default::default()
        };
        assert_eq!(a.top1_rate(), 0.75);
    }
}

//! Evaluation: running a network over a dataset without augmentation, and the
//! report (top-1, loss, per-class precision/recall, confusion matrix).

use std::fmt::Write as _;

use serde::Serialize;
use tch::{Kind, Tensor};

use crate::augment::{Normalize, to_tensors};
use crate::data::Dataset;
use crate::error::{Result, TrainError};
use crate::model::ResNet;

/// Resizes a batch to the network's input size when they differ (CIFAR
/// images fed to the 224×224 torchvision stem); bilinear, half-pixel centres.
pub fn fit_input(x: &Tensor, [h, w]: [usize; 2]) -> Tensor {
    let size = x.size();
    if size[2..] == [h as i64, w as i64] {
        return x.shallow_clone();
    }
    x.upsample_bilinear2d([h as i64, w as i64], false, None, None)
}

/// Logits of `model` in inference mode for normalised `x`; with `flip_tta`,
/// the mean of the logits of `x` and of its mirror image.
pub fn predict(model: &ResNet, x: &Tensor, input_size: [usize; 2], flip_tta: bool) -> Tensor {
    tch::no_grad(|| {
        let x = fit_input(x, input_size);
        let logits = model.forward(&x, false);
        if flip_tta {
            (logits + model.forward(&x.flip([3]), false)) / 2.0
        } else {
            logits
        }
    })
}

/// Outcome of evaluating a classifier on a labelled set.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvalReport {
    pub classes: Vec<String>,
    /// `confusion[true][predicted]` counts.
    pub confusion: Vec<Vec<u64>>,
    /// Mean cross-entropy (no label smoothing).
    pub loss: f64,
}

impl EvalReport {
    /// Number of evaluated images.
    pub fn total(&self) -> u64 {
        self.confusion.iter().flatten().sum()
    }

    /// Fraction whose highest logit is the true class.
    pub fn accuracy(&self) -> f64 {
        let correct: u64 = (0..self.confusion.len())
            .map(|i| self.confusion[i][i])
            .sum();
        correct as f64 / self.total().max(1) as f64
    }

    /// Of the images predicted as class `c`, the fraction that are `c` (0 when none were).
    pub fn precision(&self, c: usize) -> f64 {
        let predicted: u64 = self.confusion.iter().map(|row| row[c]).sum();
        self.confusion[c][c] as f64 / predicted.max(1) as f64
    }

    /// Of the images of class `c`, the fraction predicted as `c`.
    pub fn recall(&self, c: usize) -> f64 {
        let actual: u64 = self.confusion[c].iter().sum();
        self.confusion[c][c] as f64 / actual.max(1) as f64
    }

    /// Human-readable summary: top-1, a per-class table and the confusion matrix.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let n = self.classes.len();
        let name_width = self
            .classes
            .iter()
            .map(|c| c.len())
            .max()
            .unwrap_or(5)
            .max(5);
        let _ = writeln!(
            out,
            "top-1 accuracy {:.2}% on {} images, mean loss {:.4}\n",
            100.0 * self.accuracy(),
            self.total(),
            self.loss
        );
        let _ = writeln!(out, "{:name_width$}  precision  recall  support", "class");
        for c in 0..n {
            let support: u64 = self.confusion[c].iter().sum();
            let _ = writeln!(
                out,
                "{:name_width$}  {:>8.2}%  {:>5.2}%  {support:>7}",
                self.classes[c],
                100.0 * self.precision(c),
                100.0 * self.recall(c)
            );
        }
        let _ = writeln!(
            out,
            "\nconfusion matrix (rows: true class, columns: predicted)"
        );
        let cell = self
            .confusion
            .iter()
            .flatten()
            .max()
            .map_or(1, |m| m.to_string().len())
            .max(3);
        // Row labels are "<name> <index>", so the index column lines up with the header.
        let label_width = name_width + 1 + n.saturating_sub(1).to_string().len();
        let _ = write!(out, "{:label_width$}", "");
        for c in 0..n {
            let _ = write!(out, " {:>cell$}", c);
        }
        out.push('\n');
        for (c, row) in self.confusion.iter().enumerate() {
            let _ = write!(out, "{:>label_width$}", format!("{} {c}", self.classes[c]));
            for v in row {
                let _ = write!(out, " {v:>cell$}");
            }
            out.push('\n');
        }
        out
    }
}

/// Evaluates `model` on all of `data` in inference mode (running BatchNorm
/// statistics, no autodiff), feeding it `input_size` images.
/// Runs `model` over `data` without augmentation (in inference mode), in
/// batches of `batch_size` on the model's device; `flip_tta` averages each
/// image's logits with its mirror image's.
pub fn evaluate(
    model: &ResNet,
    data: &Dataset,
    normalize: &Normalize,
    input_size: [usize; 2],
    batch_size: usize,
    flip_tta: bool,
) -> Result<EvalReport> {
    let n = data.classes().len();
    let mut confusion = vec![vec![0u64; n]; n];
    let mut loss_sum = 0f64;
    let device = model.fc.ws.device();
    let (images, labels) = to_tensors(data, device);
    let batch = batch_size.max(1) as i64;
    for start in (0..data.len() as i64).step_by(batch as usize) {
        let len = batch.min(data.len() as i64 - start);
        let x = normalize.apply(&images.narrow(0, start, len));
        let logits = predict(model, &x, input_size, flip_tta)
            .to_kind(Kind::Float)
            .to_device(tch::Device::Cpu);
        // A failed read would silently empty the confusion matrix: report it instead.
        let torch =
            |e: tch::TchError| TrainError::Torch(format!("reading evaluation results: {e}"));
        let rows = Vec::<f32>::try_from(logits.flatten(0, -1)).map_err(torch)?;
        let truth = Vec::<i64>::try_from(labels.narrow(0, start, len).to_device(tch::Device::Cpu))
            .map_err(torch)?;
        for (row, &label) in rows.chunks(n).zip(&truth) {
            let (loss, predicted) = cross_entropy_row(row, label as usize);
            loss_sum += loss;
            confusion[label as usize][predicted] += 1;
        }
    }
    Ok(EvalReport {
        classes: data.classes().to_vec(),
        confusion,
        loss: loss_sum / data.len().max(1) as f64,
    })
}

/// Cross-entropy of one logit row against `label`, and the argmax.
pub fn cross_entropy_row(row: &[f32], label: usize) -> (f64, usize) {
    let (mut best, mut max) = (0, f32::NEG_INFINITY);
    for (i, &v) in row.iter().enumerate() {
        if v > max {
            (best, max) = (i, v);
        }
    }
    let log_sum: f64 = row
        .iter()
        .map(|&v| f64::from(v - max).exp())
        .sum::<f64>()
        .ln();
    let loss = log_sum - f64::from(row.get(label).copied().unwrap_or(max) - max);
    (loss, best)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> EvalReport {
        EvalReport {
            classes: vec!["cat".into(), "dog".into()],
            confusion: vec![vec![8, 2], vec![4, 6]],
            loss: 0.5,
        }
    }

    #[test]
    fn accuracy_precision_and_recall_come_from_the_confusion_matrix() {
        let r = report();
        assert_eq!(r.total(), 20);
        assert!((r.accuracy() - 0.7).abs() < 1e-12);
        assert!((r.precision(0) - 8.0 / 12.0).abs() < 1e-12);
        assert!((r.recall(1) - 0.6).abs() < 1e-12);
        let text = r.to_text();
        assert!(text.contains("top-1 accuracy 70.00%"), "{text}");
        assert!(text.contains("dog 1"), "{text}");
    }

    #[test]
    fn cross_entropy_of_a_confident_right_answer_is_small() {
        let (loss, arg) = cross_entropy_row(&[10.0, 0.0, 0.0], 0);
        assert_eq!(arg, 0);
        assert!(loss < 1e-3);
        let (uniform, _) = cross_entropy_row(&[1.0, 1.0], 1);
        assert!((uniform - 2f64.ln()).abs() < 1e-9);
    }
}

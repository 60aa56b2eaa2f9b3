//! Small hand-written SVG charts: training curves (loss and accuracy per
//! epoch) and the confusion-matrix heat map. Plain text, no plotting crate.

use std::fmt::Write as _;

use crate::eval::EvalReport;

/// One line on a chart.
pub struct Series<'a> {
    pub name: &'a str,
    pub color: &'a str,
    pub values: Vec<f64>,
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Draws one panel of series against epoch at `(x0, y0)` of size `w × h`.
fn panel(out: &mut String, title: &str, series: &[Series], (x0, y0, w, h): (f64, f64, f64, f64)) {
    let points = series.iter().map(|s| s.values.len()).max().unwrap_or(0);
    let finite = series
        .iter()
        .flat_map(|s| s.values.iter().copied())
        .filter(|v| v.is_finite());
    let (lo, hi) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    let (lo, hi) = if lo.is_finite() && hi > lo {
        (lo.min(0.0), hi)
    } else {
        (0.0, 1.0)
    };
    let x_of = |i: usize| x0 + w * (i as f64) / ((points.max(2) - 1) as f64);
    let y_of = |v: f64| y0 + h - h * (v - lo) / (hi - lo);
    let _ = writeln!(
        out,
        r##"<rect x="{x0}" y="{y0}" width="{w}" height="{h}" fill="none" stroke="#999"/><text x="{}" y="{}" font-size="14" text-anchor="middle">{}</text>"##,
        x0 + w / 2.0,
        y0 - 8.0,
        escape(title)
    );
    for k in 0..=4 {
        let v = lo + (hi - lo) * f64::from(k) / 4.0;
        let _ = writeln!(
            out,
            r##"<line x1="{x0}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#eee"/><text x="{}" y="{:.1}" font-size="10" text-anchor="end">{v:.3}</text>"##,
            x0 + w,
            x0 - 4.0,
            y_of(v) + 3.0,
            y = y_of(v)
        );
    }
    let _ = writeln!(
        out,
        r#"<text x="{}" y="{}" font-size="11" text-anchor="middle">epoch (1..{points})</text>"#,
        x0 + w / 2.0,
        y0 + h + 16.0
    );
    for (k, s) in series.iter().enumerate() {
        let path: Vec<String> = s
            .values
            .iter()
            .enumerate()
            .filter(|(_, v)| v.is_finite())
            .map(|(i, v)| format!("{:.1},{:.1}", x_of(i), y_of(*v)))
            .collect();
        let _ = writeln!(
            out,
            r#"<polyline fill="none" stroke="{}" stroke-width="2" points="{}"/><text x="{}" y="{}" font-size="11" fill="{}">{}</text>"#,
            s.color,
            path.join(" "),
            x0 + 8.0,
            y0 + 14.0 + 13.0 * k as f64,
            s.color,
            escape(s.name)
        );
    }
}

/// Two panels side by side: losses and accuracies per epoch.
pub fn training_curves(losses: &[Series], accuracies: &[Series]) -> String {
    let mut out = String::from(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="900" height="360" font-family="sans-serif"><rect width="900" height="360" fill="white"/>"#,
    );
    out.push('\n');
    panel(&mut out, "loss", losses, (60.0, 40.0, 360.0, 280.0));
    panel(
        &mut out,
        "accuracy",
        accuracies,
        (510.0, 40.0, 360.0, 280.0),
    );
    out.push_str("</svg>\n");
    out
}

/// The confusion matrix as a heat map, each row shaded by its own total so
/// that rows of different support compare (the cell shows the count).
pub fn confusion_heat_map(report: &EvalReport) -> String {
    let n = report.classes.len();
    let cell = (560.0 / n.max(1) as f64).clamp(12.0, 48.0);
    let margin = 120.0;
    let size = margin + cell * n as f64 + 20.0;
    let mut out = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}" font-family="sans-serif"><rect width="{size}" height="{size}" fill="white"/>"#
    );
    let _ = writeln!(
        out,
        r#"<text x="{}" y="16" font-size="13" text-anchor="middle">predicted →   (top-1 {:.2}%)</text>"#,
        margin + cell * n as f64 / 2.0,
        100.0 * report.accuracy()
    );
    for (i, name) in report.classes.iter().enumerate() {
        let name = escape(name);
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{:.1}" font-size="10" text-anchor="end">{name}</text><text x="{:.1}" y="{}" font-size="10" text-anchor="start" transform="rotate(-60 {:.1} {})">{name}</text>"#,
            margin - 4.0,
            margin + cell * (i as f64 + 0.5) + 3.0,
            margin + cell * (i as f64 + 0.5),
            margin - 4.0,
            margin + cell * (i as f64 + 0.5),
            margin - 4.0,
        );
    }
    for (i, row) in report.confusion.iter().enumerate() {
        let total = row.iter().sum::<u64>().max(1) as f64;
        for (j, &count) in row.iter().enumerate() {
            let share = count as f64 / total;
            let shade = (255.0 * (1.0 - share)).round() as u8;
            let (x, y) = (margin + cell * j as f64, margin + cell * i as f64);
            let text = if share > 0.5 { "white" } else { "black" };
            let _ = writeln!(
                out,
                r#"<rect x="{x:.1}" y="{y:.1}" width="{cell:.1}" height="{cell:.1}" fill="rgb({shade},{shade},255)" stroke="white"><title>{} → {}: {count}</title></rect><text x="{:.1}" y="{:.1}" font-size="{:.0}" text-anchor="middle" fill="{text}">{count}</text>"#,
                escape(&report.classes[i]),
                escape(&report.classes[j]),
                x + cell / 2.0,
                y + cell / 2.0 + 3.0,
                (cell / 3.5).min(11.0)
            );
        }
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curves_have_one_polyline_per_series() {
        let svg = training_curves(
            &[Series {
                name: "train",
                color: "red",
                values: vec![2.0, 1.0, 0.5],
            }],
            &[
                Series {
                    name: "train",
                    color: "red",
                    values: vec![0.1, 0.5, 0.7],
                },
                Series {
                    name: "val <x>",
                    color: "blue",
                    values: vec![0.1, 0.4, 0.6],
                },
            ],
        );
        assert_eq!(svg.matches("<polyline").count(), 3);
        assert!(svg.contains("val &lt;x&gt;"));
        assert!(svg.ends_with("</svg>\n"));
    }

    #[test]
    fn heat_map_has_a_cell_per_pair_and_darkest_on_the_dominant_cell() {
        let report = EvalReport {
            classes: vec!["a".into(), "b".into()],
            confusion: vec![vec![9, 1], vec![0, 5]],
            loss: 0.1,
        };
        let svg = confusion_heat_map(&report);
        assert_eq!(svg.matches("<rect x=").count(), 4);
        assert!(svg.contains("rgb(0,0,255)"), "{svg}");
        assert!(svg.contains("a → b: 1"));
    }
}

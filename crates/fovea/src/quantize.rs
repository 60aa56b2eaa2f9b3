//! `fovea quantize`: turns an fp32 model of the repository (or a bare ONNX
//! file) into a static int8 QDQ model calibrated on real images, preprocessed
//! exactly as the server preprocesses them, written as a new version; then
//! measures how closely it follows the fp32 model and how fast both run.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Args;
use fovea_core::{ModelConfig, PreprocessConfig, Tensor};
use fovea_engine::{
    BackendChoice, BenchResult, WriteModelError, bench_backend, open_backend, version_model_path,
    write_new_model,
};
use fovea_quantize::{Agreement, Calibration, QuantizeOptions, compare_backends};
use fovea_vision::ImageLimits;

use crate::cli::Preset;

/// File extensions taken as images when walking the calibration folder.
const IMAGE_EXTENSIONS: [&str; 9] = [
    "jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff", "jfif",
];

/// `fovea quantize`
#[derive(Debug, Args)]
pub struct QuantizeArgs {
    /// Model repository directory.
    #[arg(long, env = "FOVEA_MODELS", default_value = "models")]
    pub models: PathBuf,
    /// The repository model to quantise (its directory name).
    #[arg(long, required_unless_present = "onnx", conflicts_with = "onnx")]
    pub model: Option<String>,
    /// The fp32 version to start from; defaults to the highest one that is
    /// not quantised already.
    #[arg(long, requires = "model")]
    pub version: Option<u64>,
    /// The version to write; defaults to one above the highest. An existing
    /// version is never overwritten.
    #[arg(long, requires = "model")]
    pub out_version: Option<u64>,
    /// A bare fp32 ONNX file to quantise instead of a repository model.
    #[arg(long, requires_all = ["preset", "output"])]
    pub onnx: Option<PathBuf>,
    /// Preprocessing for --onnx.
    #[arg(long, value_enum, requires = "onnx")]
    pub preset: Option<Preset>,
    /// Where --onnx's quantised model is written.
    #[arg(long, requires = "onnx")]
    pub output: Option<PathBuf>,
    /// Folder of calibration images, searched recursively (an ImageFolder
    /// train/ tree works: images are taken evenly across it).
    #[arg(long)]
    pub calibrate: PathBuf,
    /// Calibration images. More gives steadier ranges; 256 is plenty for CNNs.
    #[arg(long, default_value_t = 256)]
    pub images: usize,
    /// Images, distinct from the calibration ones, on which int8 is compared
    /// with fp32 (all of them are reused when the folder has no others).
    #[arg(long, default_value_t = 256)]
    pub eval_images: usize,
    /// Activation ranges: `minmax` (onnxruntime's default) or a percentile of
    /// |x| such as `99.99`, which ignores rare outliers.
    #[arg(long, default_value = "minmax", value_parser = parse_calibration)]
    pub calibration: Calibration,
    /// Intra-op threads for calibration and measurement; defaults to the available cores.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Batch sizes at which both models' raw engine speed is measured (empty: skip).
    #[arg(long, value_delimiter = ',', default_value = "1,8")]
    pub bench_batch_sizes: Vec<usize>,
    /// Timed runs per batch size.
    #[arg(long, default_value_t = 40)]
    pub bench_iterations: usize,
}

fn parse_calibration(text: &str) -> Result<Calibration, String> {
    if text.eq_ignore_ascii_case("minmax") {
        return Ok(Calibration::MinMax);
    }
    match text.parse::<f64>() {
        Ok(p) if p > 50.0 && p <= 100.0 => Ok(Calibration::Percentile(p)),
        _ => Err(format!(
            "expected `minmax` or a percentile in (50, 100] such as 99.99, got `{text}`"
        )),
    }
}

/// What to read, how to preprocess, where to write.
struct Job {
    source: PathBuf,
    preprocess: PreprocessConfig,
    output: PathBuf,
}

/// Runs `fovea quantize`.
pub fn run(args: QuantizeArgs) -> anyhow::Result<()> {
    let threads = args
        .threads
        .unwrap_or_else(fovea_core::available_cores)
        .max(1);
    let job = job(&args)?;
    tracing::info!(
        source = %job.source.display(),
        output = %job.output.display(),
        "quantising"
    );

    let started = Instant::now();
    let files = image_files(&args.calibrate)?;
    let (calibration_files, eval_files) = split(&files, args.images, args.eval_images);
    let calibration = preprocess_all(&calibration_files, &job.preprocess);
    if calibration.is_empty() {
        bail!(
            "none of the {} files chosen under {} could be decoded",
            calibration_files.len(),
            args.calibrate.display()
        );
    }
    tracing::info!(
        found = files.len(),
        calibration = calibration.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "calibration images decoded and preprocessed"
    );

    let started = Instant::now();
    let model = std::fs::read(&job.source)
        .with_context(|| format!("cannot read {}", job.source.display()))?;
    let options = QuantizeOptions {
        calibration: args.calibration,
        threads,
        ..QuantizeOptions::default()
    };
    let quantized = fovea_quantize::quantize(&model, &calibration, &options)
        .with_context(|| format!("cannot quantise {}", job.source.display()))?;
    let s = &quantized.summary;
    tracing::info!(
        nodes = ?s.nodes,
        activations = s.activations,
        calibrated = s.calibrated,
        weights = s.weights,
        biases = s.biases,
        folded = s.folded_activations,
        items = s.calibration_items,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "calibrated and rewritten"
    );

    write_new(&job.output, &quantized.bytes)?;
    tracing::info!(
        path = %job.output.display(),
        fp32_bytes = model.len(),
        int8_bytes = quantized.bytes.len(),
        "written"
    );

    match fovea_quantize::ort_kernels(&quantized.bytes, threads) {
        Ok(kernels) => {
            let list: Vec<String> = kernels.iter().map(|(op, n)| format!("{op} {n}")).collect();
            println!("ONNX Runtime runs the int8 model as: {}", list.join(", "));
        }
        Err(e) => tracing::warn!("{e}"),
    }

    let (eval, eval_note) = if eval_files.is_empty() {
        (calibration, "the calibration images (no others were found)")
    } else {
        (
            preprocess_all(&eval_files, &job.preprocess),
            "images not used for calibration",
        )
    };
    let mut fp32 = open_backend(BackendChoice::Ort, &job.source, threads)
        .with_context(|| format!("cannot open {}", job.source.display()))?;
    let mut int8 = open_backend(BackendChoice::Ort, &job.output, threads)
        .with_context(|| format!("cannot open {}", job.output.display()))?;
    let agreement = compare_backends(fp32.as_mut(), int8.as_mut(), &eval)?;
    print_agreement(&agreement, eval_note);

    for &batch in &args.bench_batch_sizes {
        let a = bench_backend(fp32.as_mut(), batch, args.bench_iterations)?;
        let b = bench_backend(int8.as_mut(), batch, args.bench_iterations)?;
        print_speed(batch, threads, &a, &b);
    }
    Ok(())
}

fn job(args: &QuantizeArgs) -> anyhow::Result<Job> {
    if let Some(onnx) = &args.onnx {
        let (Some(preset), Some(output)) = (args.preset, &args.output) else {
            bail!("--onnx needs --preset and --output");
        };
        return Ok(Job {
            source: onnx.clone(),
            preprocess: preset.preprocess(),
            output: output.clone(),
        });
    }
    let Some(name) = &args.model else {
        bail!("give --model NAME (a repository model) or --onnx FILE");
    };
    let dir = args.models.join(name);
    let config = ModelConfig::load(&dir.join("config.toml"))
        .with_context(|| format!("`{name}` is not a valid model of {}", args.models.display()))?;
    let versions = fovea_engine::version_dirs(&dir)
        .with_context(|| format!("cannot read {}", dir.display()))?;
    let Some(&latest) = versions.last() else {
        bail!(
            "{} has no version directory (expected {}/1/model.onnx)",
            dir.display(),
            dir.display()
        );
    };
    let model_of = |v: u64| version_model_path(&dir, v);
    let version = match args.version {
        Some(v) if versions.contains(&v) => v,
        Some(v) => bail!("{name} has no version {v}; it has {versions:?}"),
        None => highest_fp32(&versions, &model_of)?.with_context(|| {
            format!("every version of {name} ({versions:?}) is quantised already")
        })?,
    };
    let out_version = args.out_version.unwrap_or(latest + 1);
    if out_version == 0 {
        bail!("versions start at 1");
    }
    Ok(Job {
        source: model_of(version),
        preprocess: config.preprocess,
        output: version_model_path(&dir, out_version),
    })
}

/// The highest of `versions` whose model is not quantised yet.
fn highest_fp32(
    versions: &[u64],
    model_of: &dyn Fn(u64) -> PathBuf,
) -> anyhow::Result<Option<u64>> {
    for &v in versions.iter().rev() {
        let path = model_of(v);
        let bytes =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let quantized = fovea_quantize::is_quantized(&bytes)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if !quantized {
            return Ok(Some(v));
        }
        tracing::info!(version = v, "skipping version {v}: quantised already");
    }
    Ok(None)
}

/// Writes `bytes` to `path` with the repository's one writer: atomically,
/// never replacing an existing model (a version the server may be serving
/// must not change under it).
fn write_new(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    write_new_model(path, bytes).map_err(|e| match e {
        WriteModelError::Exists(path) => anyhow::anyhow!(
            "{} exists already; choose another --out-version or --output",
            path.display()
        ),
        other => other.into(),
    })
}

/// Every image file under `dir`, recursively, in path order.
fn image_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries =
            std::fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))?;
        for entry in entries.filter_map(Result::ok) {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
            {
                files.push(path);
            }
        }
    }
    if files.is_empty() {
        bail!(
            "no images ({}) under {}",
            IMAGE_EXTENSIONS.join(", "),
            dir.display()
        );
    }
    files.sort();
    Ok(files)
}

/// Picks `calibration` files spread evenly over the sorted list (so an
/// ImageFolder tree gives every class its share) and up to `eval` others,
/// spread the same way.
fn split(files: &[PathBuf], calibration: usize, eval: usize) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let chosen = spread(files.len(), calibration);
    let rest: Vec<PathBuf> = files
        .iter()
        .enumerate()
        .filter(|(i, _)| chosen.binary_search(i).is_err())
        .map(|(_, f)| f.clone())
        .collect();
    let calibration = chosen.iter().map(|&i| files[i].clone()).collect();
    let eval = spread(rest.len(), eval)
        .into_iter()
        .map(|i| rest[i].clone())
        .collect();
    (calibration, eval)
}

/// `count` indices in `0..len`, evenly spaced, ascending, distinct.
fn spread(len: usize, count: usize) -> Vec<usize> {
    let count = count.min(len);
    (0..count).map(|i| i * len / count).collect()
}

/// Decodes and preprocesses each file as the server would; files that
/// cannot be read or decoded are skipped with a warning.
fn preprocess_all(files: &[PathBuf], spec: &PreprocessConfig) -> Vec<Tensor> {
    let limits = ImageLimits::default();
    files
        .iter()
        .filter_map(|path| {
            let bytes = std::fs::read(path)
                .map_err(|e| tracing::warn!(path = %path.display(), "skipped: {e}"))
                .ok()?;
            fovea_vision::preprocess(&bytes, spec, &limits)
                .map_err(|e| tracing::warn!(path = %path.display(), "skipped: {e}"))
                .ok()
        })
        .collect()
}

fn print_agreement(a: &Agreement, what: &str) {
    println!("int8 vs fp32 over {} {what}:", a.items);
    println!(
        "  top-1 agreement {:.2}% ({}/{}), logits |diff| max {:.4}, mean {:.4}",
        100.0 * a.top1_rate(),
        a.top1_same,
        a.items,
        a.max_abs_diff,
        a.mean_abs_diff
    );
}

fn print_speed(batch: usize, threads: usize, fp32: &BenchResult, int8: &BenchResult) {
    let (a, b) = (fp32.images_per_second(), int8.images_per_second());
    println!(
        "raw engine, batch {batch}, {threads} threads: fp32 {a:.1} img/s (p50 {:.2} ms), int8 {b:.1} img/s (p50 {:.2} ms), {:.2}x",
        fp32.p50.as_secs_f64() * 1e3,
        int8.p50.as_secs_f64() * 1e3,
        b / a.max(f64::MIN_POSITIVE)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calibration_images_are_spread_evenly_and_kept_out_of_evaluation() {
        let files: Vec<PathBuf> = (0..10).map(|i| PathBuf::from(format!("{i}.jpg"))).collect();
        let (calibration, eval) = split(&files, 5, 3);
        let names = |v: &[PathBuf]| {
            v.iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(&calibration),
            ["0.jpg", "2.jpg", "4.jpg", "6.jpg", "8.jpg"]
        );
        assert_eq!(eval.len(), 3);
        assert!(eval.iter().all(|e| !calibration.contains(e)));
        let (all, none) = split(&files, 50, 3);
        assert_eq!(all.len(), 10);
        assert!(none.is_empty());
    }

    #[test]
    fn calibration_method_is_minmax_or_a_percentile() {
        assert_eq!(parse_calibration("MinMax"), Ok(Calibration::MinMax));
        assert_eq!(
            parse_calibration("99.99"),
            Ok(Calibration::Percentile(99.99))
        );
        assert!(parse_calibration("entropy").is_err());
        assert!(parse_calibration("100.5").is_err());
    }

    #[test]
    fn an_existing_version_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("2").join("model.onnx");
        write_new(&path, b"first").unwrap();
        assert!(write_new(&path, b"second").is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"first");
    }
}

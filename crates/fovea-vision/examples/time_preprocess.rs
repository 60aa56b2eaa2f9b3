//! Times `preprocess` with the ImageNet preset on one image (default:
//! ../shared/data/images/puppy.jpg), median of 50 runs, and the split
//! between decoding, resizing and crop+normalise.
//!
//! `cargo run -p fovea-vision --example time_preprocess [IMAGE] [RUNS]`

use std::time::{Duration, Instant};

use fovea_core::PreprocessConfig;
use fovea_vision::{
    ImageLimits, crop_normalize_into, decode_rgb, preprocess_into, resize_rgb, resized_size,
};

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn time<T>(runs: usize, mut f: impl FnMut() -> T) -> Duration {
    f(); // warm caches, thread-local buffers and lazily chosen SIMD paths
    median(
        (0..runs)
            .map(|_| {
                let start = Instant::now();
                std::hint::black_box(f());
                start.elapsed()
            })
            .collect(),
    )
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args.next().unwrap_or_else(|| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/data/images/puppy.jpg"
        )
        .into()
    });
    let runs: usize = args.next().map(|r| r.parse()).transpose()?.unwrap_or(50);
    let bytes = std::fs::read(&path)?;
    let spec = PreprocessConfig::imagenet();
    let limits = ImageLimits::default();
    let mut out = vec![0.0; 3 * 224 * 224];

    let decoded = decode_rgb(&bytes, &limits)?;
    let (w, h) = resized_size(decoded.width, decoded.height, &spec.resize);
    let resized = resize_rgb(decoded.clone(), w as u32, h as u32)?;

    let total = time(runs, || preprocess_into(&bytes, &spec, &limits, &mut out));
    let decode = time(runs, || decode_rgb(&bytes, &limits));
    let resize = time(runs, || resize_rgb(decoded.clone(), w as u32, h as u32));
    let clone = time(runs, || decoded.clone());
    let normalise = time(runs, || {
        crop_normalize_into(&resized, [224, 224], &spec, &mut out)
    });

    println!(
        "{path}: {}×{} → {w}×{h} → 224×224, median of {runs} runs",
        decoded.width, decoded.height
    );
    println!("preprocess_into   {:>8.3} ms", total.as_secs_f64() * 1e3);
    println!("  decode          {:>8.3} ms", decode.as_secs_f64() * 1e3);
    println!(
        "  resize          {:>8.3} ms",
        resize.saturating_sub(clone).as_secs_f64() * 1e3
    );
    println!(
        "  crop+normalise  {:>8.3} ms",
        normalise.as_secs_f64() * 1e3
    );
    Ok(())
}

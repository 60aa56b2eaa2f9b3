//! Untrusted image bytes through decoding and preprocessing, as the pipeline
//! runs them for every image protocol: `fovea_vision::preprocess` with the
//! bundled model's own preprocessing and limits small enough that an input
//! can never legitimately need much memory or time.
#![no_main]

use std::path::Path;
use std::sync::LazyLock;

use fovea_core::{ModelConfig, PreprocessConfig};
use fovea_vision::ImageLimits;
use libfuzzer_sys::fuzz_target;

static SPEC: LazyLock<PreprocessConfig> = LazyLock::new(|| {
    let path = Path::new("models/resnet18-cifar10/config.toml");
    let text = include_str!("../../models/resnet18-cifar10/config.toml");
    match ModelConfig::parse(text, path) {
        Ok(config) => config.preprocess,
        Err(e) => panic!("the bundled model's config does not parse: {e}"),
    }
});

/// 1 MiB and 1024 × 1024 pixels: the real photos of the seed corpus fit, and
/// a header claiming more is refused before decoding, as in production.
const LIMITS: ImageLimits = ImageLimits {
    max_bytes: 1 << 20,
    max_pixels: 1 << 20,
};

fuzz_target!(|data: &[u8]| {
    if let Ok(tensor) = fovea_vision::preprocess(data, &SPEC, &LIMITS) {
        // The model's fixed input, whatever the image was.
        assert_eq!(tensor.shape(), [1, 3, 32, 32]);
    }
});

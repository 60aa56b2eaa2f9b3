//! The `config.toml` schema of a model-repository entry: everything needed to
//! serve a model (input, preprocessing, output labels, batching, versions).
//!
//! ```toml
//! platform = "onnx"
//! [input]
//! name = "input"
//! shape = [3, 224, 224]          # one item, without the batch dimension
//! format = "image"               # "image": fovea decodes and preprocesses; "tensor": raw floats
//! [output]
//! name = "logits"
//! labels = "labels.txt"
//! [preprocess]
//! resize = { shorter_side = 256 } # or { exact = [32, 32] } (height, width), or "none"
//! crop = [224, 224]              # optional centre crop (height, width)
//! mean = [0.485, 0.456, 0.406]
//! std = [0.229, 0.224, 0.225]
//! [batching]
//! max_batch_size = 8
//! max_queue_delay_us = 0
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A config file that cannot be read or is invalid; the message names the file
/// and the offending field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: field `{field}`: {message}")]
    Invalid {
        path: PathBuf,
        field: &'static str,
        message: String,
    },
}

/// One model-repository entry's `config.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Defaults to the directory name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Only `onnx` is served today.
    #[serde(default = "default_platform")]
    pub platform: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub input: InputConfig,
    pub output: OutputConfig,
    #[serde(default)]
    pub preprocess: PreprocessConfig,
    #[serde(default)]
    pub batching: BatchingConfig,
    #[serde(default)]
    pub version_policy: VersionPolicy,
    #[serde(default)]
    pub runtime: RuntimeConfig,
}

fn default_platform() -> String {
    "onnx".into()
}

/// The model's single input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputConfig {
    pub name: String,
    /// Shape of one item, without the batch dimension, e.g. `[3, 224, 224]`.
    pub shape: Vec<usize>,
    #[serde(default = "default_dtype")]
    pub dtype: String,
    #[serde(default)]
    pub format: InputFormat,
}

fn default_dtype() -> String {
    "fp32".into()
}

/// Whether clients send encoded images (fovea preprocesses) or ready tensors.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputFormat {
    #[default]
    Image,
    Tensor,
}

/// The model's classification output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputConfig {
    pub name: String,
    /// Labels file relative to the model directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<PathBuf>,
    /// Number of classes; checked against the labels when both are given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classes: Option<usize>,
}

/// How an image becomes the input tensor. Applied in this order: orient,
/// convert to RGB, resize, centre crop, scale to [0, 1], normalise, lay out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreprocessConfig {
    #[serde(default)]
    pub resize: Resize,
    /// Centre crop `[height, width]` after resizing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crop: Option<[u32; 2]>,
    #[serde(default = "default_mean")]
    pub mean: [f32; 3],
    #[serde(default = "default_std")]
    pub std: [f32; 3],
    #[serde(default)]
    pub color: ColorOrder,
}

impl Default for PreprocessConfig {
    fn default() -> Self {
        Self {
            resize: Resize::default(),
            crop: None,
            mean: default_mean(),
            std: default_std(),
            color: ColorOrder::default(),
        }
    }
}

impl PreprocessConfig {
    /// torchvision's ImageNet evaluation transform: shorter side 256, centre crop 224.
    pub fn imagenet() -> Self {
        Self {
            resize: Resize::ShorterSide(256),
            crop: Some([224, 224]),
            mean: [0.485, 0.456, 0.406],
            std: [0.229, 0.224, 0.225],
            color: ColorOrder::Rgb,
        }
    }

    /// CIFAR-10: squash to 32×32, CIFAR-10 training-set mean/std.
    pub fn cifar10() -> Self {
        Self {
            resize: Resize::Exact([32, 32]),
            crop: None,
            mean: [0.4914, 0.4822, 0.4465],
            std: [0.2470, 0.2435, 0.2616],
            color: ColorOrder::Rgb,
        }
    }

    /// `[height, width]` of the tensor this produces, when it is fixed.
    pub fn output_size(&self) -> Option<[u32; 2]> {
        match (self.crop, &self.resize) {
            (Some(crop), _) => Some(crop),
            (None, Resize::Exact(size)) => Some(*size),
            _ => None,
        }
    }
}

fn default_mean() -> [f32; 3] {
    [0.485, 0.456, 0.406]
}

fn default_std() -> [f32; 3] {
    [0.229, 0.224, 0.225]
}

/// Resize step. TOML: `{ shorter_side = 256 }`, `{ exact = [32, 32] }` or `"none"`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resize {
    /// Scale so the shorter side has this length, keeping the aspect ratio (torchvision `Resize(int)`).
    ShorterSide(u32),
    /// Scale to exactly `[height, width]`, ignoring the aspect ratio.
    Exact([u32; 2]),
    #[default]
    None,
}

/// Channel order the model expects.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColorOrder {
    #[default]
    Rgb,
    Bgr,
}

/// Dynamic batching for one model version (DESIGN.md §6).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchingConfig {
    /// Largest batch handed to the backend.
    #[serde(default = "default_max_batch_size")]
    pub max_batch_size: usize,
    /// How long the first request of a batch waits for company.
    #[serde(default = "default_max_queue_delay_us")]
    pub max_queue_delay_us: u64,
    /// Batch sizes the backend runs best at; a batch is cut at the largest one reached.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub preferred_batch_sizes: Vec<usize>,
    /// Requests waiting beyond this are refused at once with 503.
    #[serde(default = "default_queue_capacity")]
    pub queue_capacity: usize,
    /// Default deadline for a request, from arrival; past it the request is dropped and answered 504.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

/// Batching settings given on the command line; each one that is set
/// replaces the value from every model's `config.toml`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchingOverrides {
    pub max_batch_size: Option<usize>,
    pub max_queue_delay_us: Option<u64>,
    pub queue_capacity: Option<usize>,
    pub timeout_ms: Option<u64>,
}

impl BatchingOverrides {
    /// `batching` with the overrides applied. Preferred sizes above a
    /// lowered maximum are dropped, as the batcher could never reach them.
    pub fn apply(&self, mut batching: BatchingConfig) -> BatchingConfig {
        if let Some(n) = self.max_batch_size {
            batching.max_batch_size = n.max(1);
            batching
                .preferred_batch_sizes
                .retain(|&size| size <= batching.max_batch_size);
        }
        if let Some(us) = self.max_queue_delay_us {
            batching.max_queue_delay_us = us;
        }
        if let Some(n) = self.queue_capacity {
            batching.queue_capacity = n.max(1);
        }
        if let Some(ms) = self.timeout_ms {
            batching.timeout_ms = ms.max(1);
        }
        batching
    }
}

impl Default for BatchingConfig {
    fn default() -> Self {
        Self {
            max_batch_size: default_max_batch_size(),
            max_queue_delay_us: default_max_queue_delay_us(),
            preferred_batch_sizes: Vec::new(),
            queue_capacity: default_queue_capacity(),
            timeout_ms: default_timeout_ms(),
        }
    }
}

fn default_max_batch_size() -> usize {
    8
}
/// No waiting for company by default: on CPU a batch still forms from the
/// requests that queued while the previous one ran, and a deliberate wait
/// buys little (ResNet-18 on ONNX Runtime is ~13% faster per image at batch
/// 16 than at 1) while costing every lone request the whole delay.
fn default_max_queue_delay_us() -> u64 {
    0
}
fn default_queue_capacity() -> usize {
    128
}
fn default_timeout_ms() -> u64 {
    10_000
}

/// Which versions found on disk are served. TOML: `{ latest = 1 }`,
/// `{ specific = [1, 3] }` or `"all"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VersionPolicy {
    Latest(usize),
    Specific(Vec<u64>),
    All,
}

impl Default for VersionPolicy {
    fn default() -> Self {
        VersionPolicy::Latest(1)
    }
}

impl VersionPolicy {
    /// The versions to serve out of those present, in ascending order.
    pub fn select(&self, available: &[u64]) -> Vec<u64> {
        let mut versions = available.to_vec();
        versions.sort_unstable();
        versions.dedup();
        match self {
            VersionPolicy::All => versions,
            VersionPolicy::Latest(n) => {
                let skip = versions.len().saturating_sub(*n);
                versions.split_off(skip)
            }
            VersionPolicy::Specific(wanted) => {
                versions.retain(|v| wanted.contains(v));
                versions
            }
        }
    }
}

/// Per-model execution settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Intra-op threads for this model; defaults to the server's inference budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads: Option<usize>,
    /// Copies of the model (sessions) serving this version's queue side by side,
    /// each on `threads / instances` intra-op threads (Triton's instance count;
    /// default 1). Instances never wait for each other, so under load they waste
    /// less than one session's threads stalled by decoding; a lone request runs
    /// on fewer threads and takes longer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instances: Option<usize>,
    /// Test-time augmentation done by the server (`"flip"`); none by default.
    #[serde(default, skip_serializing_if = "TestTimeAugmentation::is_none")]
    pub tta: TestTimeAugmentation,
}

/// Extra views of every input the server runs and averages (TOML `tta = "flip"`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TestTimeAugmentation {
    #[default]
    None,
    /// Each image also runs mirrored left-right and the answer is the mean of
    /// both logits: twice the inference per image, for the accuracy a model
    /// trained with flip augmentation gains from it (its README says how much).
    Flip,
}

impl TestTimeAugmentation {
    pub fn is_none(&self) -> bool {
        *self == TestTimeAugmentation::None
    }
}

impl ModelConfig {
    /// Reads and validates `path`. Errors name the file and the field.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses and validates TOML text; `path` is only used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let config: ModelConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        config.validate(path)?;
        Ok(config)
    }

    /// Serialises back to TOML (used by `fovea export`).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }

    /// Checks the relations serde cannot express.
    pub fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |field: &'static str, message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            field,
            message,
        };
        if self.platform != "onnx" {
            return Err(invalid(
                "platform",
                format!("`{}` is not supported; use \"onnx\"", self.platform),
            ));
        }
        if self.input.dtype != "fp32" {
            return Err(invalid(
                "input.dtype",
                format!("`{}` is not supported; use \"fp32\"", self.input.dtype),
            ));
        }
        if self.input.shape.is_empty() || self.input.shape.contains(&0) {
            return Err(invalid(
                "input.shape",
                format!(
                    "{:?} must be non-empty with no zero dimension",
                    self.input.shape
                ),
            ));
        }
        if self.input.format == InputFormat::Image {
            let [channels, height, width] = self.input.shape[..] else {
                return Err(invalid(
                    "input.shape",
                    format!(
                        "{:?}: an image input is [channels, height, width]",
                        self.input.shape
                    ),
                ));
            };
            if channels != 3 {
                return Err(invalid(
                    "input.shape",
                    format!("{channels} channels: image inputs are RGB (3)"),
                ));
            }
            match self.preprocess.output_size() {
                Some([h, w]) if (h as usize, w as usize) != (height, width) => {
                    return Err(invalid(
                        "preprocess",
                        format!("produces {h}×{w} but input.shape is {height}×{width}"),
                    ));
                }
                None => {
                    return Err(invalid(
                        "preprocess",
                        "an image input needs a fixed output size: set `crop` or `resize = { exact = [h, w] }`".into(),
                    ));
                }
                _ => {}
            }
        }
        if let Resize::ShorterSide(0) | Resize::Exact([0, _] | [_, 0]) = self.preprocess.resize {
            return Err(invalid(
                "preprocess.resize",
                "sizes must be positive".into(),
            ));
        }
        if self
            .preprocess
            .std
            .iter()
            .any(|s| *s <= 0.0 || !s.is_finite())
        {
            return Err(invalid(
                "preprocess.std",
                "every entry must be positive".into(),
            ));
        }
        let batching = &self.batching;
        if batching.max_batch_size == 0 {
            return Err(invalid(
                "batching.max_batch_size",
                "must be at least 1".into(),
            ));
        }
        if batching.queue_capacity == 0 {
            return Err(invalid(
                "batching.queue_capacity",
                "must be at least 1".into(),
            ));
        }
        if let Some(bad) = batching
            .preferred_batch_sizes
            .iter()
            .find(|s| **s == 0 || **s > batching.max_batch_size)
        {
            return Err(invalid(
                "batching.preferred_batch_sizes",
                format!("{bad} is outside 1..={}", batching.max_batch_size),
            ));
        }
        if let VersionPolicy::Latest(0) = self.version_policy {
            return Err(invalid(
                "version_policy",
                "latest must be at least 1".into(),
            ));
        }
        if self.runtime.threads == Some(0) {
            return Err(invalid("runtime.threads", "must be at least 1".into()));
        }
        if self.runtime.instances == Some(0) {
            return Err(invalid("runtime.instances", "must be at least 1".into()));
        }
        if self.runtime.tta == TestTimeAugmentation::Flip && self.input.shape.len() != 3 {
            return Err(invalid(
                "runtime.tta",
                format!(
                    "flip mirrors images, so input.shape must be [channels, height, width], not {:?}",
                    self.input.shape
                ),
            ));
        }
        Ok(())
    }

    /// A config for a single image classifier with the given preprocessing,
    /// as `fovea serve --model FILE --preset ...` builds it.
    pub fn image_classifier(
        input_name: &str,
        output_name: &str,
        preprocess: PreprocessConfig,
    ) -> Self {
        let [h, w] = preprocess.output_size().unwrap_or([224, 224]);
        Self {
            name: None,
            platform: default_platform(),
            description: None,
            input: InputConfig {
                name: input_name.into(),
                shape: vec![3, h as usize, w as usize],
                dtype: default_dtype(),
                format: InputFormat::Image,
            },
            output: OutputConfig {
                name: output_name.into(),
                labels: None,
                classes: None,
            },
            preprocess,
            batching: BatchingConfig::default(),
            version_policy: VersionPolicy::default(),
            runtime: RuntimeConfig::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batching_overrides_replace_only_what_they_set() {
        let base = BatchingConfig {
            preferred_batch_sizes: vec![4, 8],
            ..BatchingConfig::default()
        };
        assert_eq!(BatchingOverrides::default().apply(base.clone()), base);
        let applied = BatchingOverrides {
            max_batch_size: Some(4),
            queue_capacity: Some(0),
            ..BatchingOverrides::default()
        }
        .apply(base.clone());
        assert_eq!(applied.max_batch_size, 4);
        assert_eq!(applied.preferred_batch_sizes, vec![4]);
        assert_eq!(
            applied.queue_capacity, 1,
            "a queue holds at least one request"
        );
        assert_eq!(applied.timeout_ms, base.timeout_ms);
        assert_eq!(applied.max_queue_delay_us, base.max_queue_delay_us);
    }

    const IMAGENET: &str = r#"
        version_policy = { latest = 2 }
        [input]
        name = "input"
        shape = [3, 224, 224]
        [output]
        name = "logits"
        labels = "labels.txt"
        [preprocess]
        resize = { shorter_side = 256 }
        crop = [224, 224]
        [batching]
        max_batch_size = 4
    "#;

    fn parse(text: &str) -> Result<ModelConfig, ConfigError> {
        ModelConfig::parse(text, Path::new("models/m/config.toml"))
    }

    #[test]
    fn a_full_config_parses_with_defaults_filled_in() {
        let config = parse(IMAGENET).unwrap();
        assert_eq!(config.preprocess.resize, Resize::ShorterSide(256));
        assert_eq!(config.batching.max_batch_size, 4);
        assert_eq!(config.batching.queue_capacity, 128);
        assert_eq!(config.input.format, InputFormat::Image);
    }

    #[test]
    fn round_trips_through_toml() {
        let config = parse(IMAGENET).unwrap();
        assert_eq!(parse(&config.to_toml()).unwrap(), config);
    }

    #[test]
    fn a_crop_that_disagrees_with_the_input_shape_names_the_field() {
        let text = IMAGENET.replace("crop = [224, 224]", "crop = [200, 224]");
        let message = parse(&text).unwrap_err().to_string();
        assert!(message.contains("models/m/config.toml"), "{message}");
        assert!(message.contains("preprocess"), "{message}");
    }

    #[test]
    fn unknown_fields_are_refused() {
        let text = IMAGENET.replace("[batching]", "[batching]\nmax_batch = 3");
        let message = parse(&text).unwrap_err().to_string();
        assert!(message.contains("max_batch"), "{message}");
    }

    #[test]
    fn zero_batch_size_is_refused() {
        let text = IMAGENET.replace("max_batch_size = 4", "max_batch_size = 0");
        assert!(
            parse(&text)
                .unwrap_err()
                .to_string()
                .contains("batching.max_batch_size")
        );
    }

    #[test]
    fn version_policy_selects_from_what_exists() {
        assert_eq!(VersionPolicy::Latest(2).select(&[3, 1, 7]), vec![3, 7]);
        assert_eq!(
            VersionPolicy::Specific(vec![1, 9]).select(&[3, 1, 7]),
            vec![1]
        );
        assert_eq!(VersionPolicy::All.select(&[3, 1]), vec![1, 3]);
    }
}

//! ResNet-18 on libtorch, in the two stems fovea trains (CIFAR 3×3 and
//! torchvision 7×7 + max-pool). Variables live in a `VarStore` under
//! torchvision's names (`layer2.0.downsample.0.weight`, `bn1.running_mean`,
//! `fc.bias`), so a PyTorch `state_dict` maps onto it name for name.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use tch::nn::{self, ModuleT};
use tch::{Kind, Tensor};

/// Which stem (first layers) the network has; everything after it is identical.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Arch {
    /// `resnet18-cifar`: 3×3 stride-1 stem conv, no max-pool, made for 32×32 inputs.
    #[serde(rename = "resnet18-cifar")]
    Resnet18Cifar,
    /// `resnet18`: torchvision's 7×7 stride-2 stem conv and 3×3 stride-2 max-pool, 224×224.
    #[serde(rename = "resnet18")]
    Resnet18,
}

impl Arch {
    /// The name used on the command line and in checkpoints.
    pub fn name(self) -> &'static str {
        match self {
            Arch::Resnet18Cifar => "resnet18-cifar",
            Arch::Resnet18 => "resnet18",
        }
    }

    /// The input side length the stem is designed for.
    pub fn native_size(self) -> usize {
        match self {
            Arch::Resnet18Cifar => 32,
            Arch::Resnet18 => 224,
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Arch {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "resnet18-cifar" => Ok(Arch::Resnet18Cifar),
            "resnet18" => Ok(Arch::Resnet18),
            other => Err(format!(
                "unknown architecture `{other}`; use resnet18-cifar or resnet18"
            )),
        }
    }
}

/// Everything needed to rebuild a network's shape (not its weights).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResNetConfig {
    pub arch: Arch,
    pub num_classes: usize,
    /// Channels of the first stage; torchvision uses 64. Smaller widths make
    /// tests fast while exercising the same code.
    pub width: usize,
}

impl ResNetConfig {
    /// ResNet-18 at torchvision's width.
    pub fn new(arch: Arch, num_classes: usize) -> Self {
        Self {
            arch,
            num_classes,
            width: 64,
        }
    }

    /// Same network with `width` channels in the first stage (2×, 4×, 8× later).
    pub fn with_width(self, width: usize) -> Self {
        Self { width, ..self }
    }

    /// Creates the network's variables under `root`, initialised the way
    /// torchvision does: Kaiming normal (fan-out, ReLU gain) convolutions,
    /// BatchNorm γ=1 β=0, PyTorch's default `Linear` initialisation. The
    /// draws come from libtorch's generator (`tch::manual_seed`).
    pub fn build(&self, root: &nn::Path) -> ResNet {
        let w = self.width as i64;
        let (stem_kernel, stem_stride, stem_pad) = match self.arch {
            Arch::Resnet18Cifar => (3, 1, 1),
            Arch::Resnet18 => (7, 2, 3),
        };
        ResNet {
            config: *self,
            stem: ConvBn::new(
                &(root / "conv1"),
                &(root / "bn1"),
                [3, w, stem_kernel],
                stem_stride,
                stem_pad,
            ),
            layer1: stage(&(root / "layer1"), w, w, 1),
            layer2: stage(&(root / "layer2"), w, 2 * w, 2),
            layer3: stage(&(root / "layer3"), 2 * w, 4 * w, 2),
            layer4: stage(&(root / "layer4"), 4 * w, 8 * w, 2),
            fc: nn::linear(
                root / "fc",
                8 * w,
                self.num_classes as i64,
                Default::default(),
            ),
        }
    }
}

/// BatchNorm's ε, PyTorch's default (the export folds it into the convolution).
pub const BN_EPS: f64 = 1e-5;

/// A bias-free convolution followed by its BatchNorm, the unit ResNet is
/// made of (and the unit the ONNX export folds into one `Conv`).
#[derive(Debug)]
pub struct ConvBn {
    pub conv: nn::Conv2D,
    pub bn: nn::BatchNorm,
    pub stride: i64,
    pub pad: i64,
}

impl ConvBn {
    fn new(
        conv_path: &nn::Path,
        bn_path: &nn::Path,
        [input, output, kernel]: [i64; 3],
        stride: i64,
        pad: i64,
    ) -> Self {
        let config = nn::ConvConfig {
            stride,
            padding: pad,
            bias: false,
            ws_init: nn::Init::Kaiming {
                dist: nn::init::NormalOrUniform::Normal,
                fan: nn::init::FanInOut::FanOut,
                non_linearity: nn::init::NonLinearity::ReLU,
            },
            ..Default::default()
        };
        let bn_config = nn::BatchNormConfig {
            eps: BN_EPS,
            ..Default::default()
        };
        Self {
            conv: nn::conv2d(conv_path, input, output, kernel, config),
            bn: nn::batch_norm2d(bn_path, output, bn_config),
            stride,
            pad,
        }
    }

    fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        x.apply(&self.conv).apply_t(&self.bn, train)
    }
}

fn stage(path: &nn::Path, input: i64, output: i64, stride: i64) -> Vec<BasicBlock> {
    vec![
        BasicBlock::new(&(path / 0), input, output, stride),
        BasicBlock::new(&(path / 1), output, output, 1),
    ]
}

/// torchvision's `BasicBlock`: two 3×3 convs with a residual connection;
/// `downsample` (a 1×1 strided conv and its BatchNorm, `downsample.0/1`)
/// where the shape changes.
#[derive(Debug)]
pub struct BasicBlock {
    pub conv1: ConvBn,
    pub conv2: ConvBn,
    pub downsample: Option<ConvBn>,
}

impl BasicBlock {
    fn new(path: &nn::Path, input: i64, output: i64, stride: i64) -> Self {
        let downsample = (stride != 1 || input != output).then(|| {
            let d = path / "downsample";
            ConvBn::new(&(&d / 0), &(&d / 1), [input, output, 1], stride, 0)
        });
        Self {
            conv1: ConvBn::new(
                &(path / "conv1"),
                &(path / "bn1"),
                [input, output, 3],
                stride,
                1,
            ),
            conv2: ConvBn::new(
                &(path / "conv2"),
                &(path / "bn2"),
                [output, output, 3],
                1,
                1,
            ),
            downsample,
        }
    }

    fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let identity = match &self.downsample {
            Some(d) => d.forward(x, train),
            None => x.shallow_clone(),
        };
        let out = self.conv1.forward(x, train).relu();
        (self.conv2.forward(&out, train) + identity).relu()
    }
}

/// ResNet-18 whose variables live in the `VarStore` it was built in.
#[derive(Debug)]
pub struct ResNet {
    pub config: ResNetConfig,
    /// `conv1` + `bn1`.
    pub stem: ConvBn,
    pub layer1: Vec<BasicBlock>,
    pub layer2: Vec<BasicBlock>,
    pub layer3: Vec<BasicBlock>,
    pub layer4: Vec<BasicBlock>,
    pub fc: nn::Linear,
}

impl ResNet {
    /// `[n, 3, h, w]` normalised images → `[n, classes]` logits (fp32 whatever
    /// the compute precision). `train_backbone` puts BatchNorm in training
    /// mode (batch statistics, running averages updated).
    pub fn forward(&self, input: &Tensor, train_backbone: bool) -> Tensor {
        let mut x = self.stem.forward(input, train_backbone).relu();
        if self.config.arch == Arch::Resnet18 {
            x = x.max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false);
        }
        for block in self.blocks() {
            x = block.forward(&x, train_backbone);
        }
        let pooled = x.adaptive_avg_pool2d([1, 1]).flatten(1, -1);
        pooled.apply(&self.fc).to_kind(Kind::Float)
    }

    /// The eight residual blocks in order, `layer1.0` first.
    pub fn blocks(&self) -> impl Iterator<Item = &BasicBlock> {
        self.layer1
            .iter()
            .chain(&self.layer2)
            .chain(&self.layer3)
            .chain(&self.layer4)
    }

    /// The four stages in order (`layer1` … `layer4`).
    pub fn stages(&self) -> [&[BasicBlock]; 4] {
        [&self.layer1, &self.layer2, &self.layer3, &self.layer4]
    }
}

impl ModuleT for ResNet {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.forward(xs, train)
    }
}

/// Variable names that belong to the classifier rather than the backbone.
pub fn is_head(name: &str) -> bool {
    name.starts_with("fc.")
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn both_stems_map_an_image_batch_to_one_logit_row_per_image() {
        for (arch, size) in [(Arch::Resnet18Cifar, 32), (Arch::Resnet18, 64)] {
            let vs = nn::VarStore::new(Device::Cpu);
            let model = ResNetConfig::new(arch, 7).with_width(4).build(&vs.root());
            let input = Tensor::zeros([2, 3, size, size], (Kind::Float, Device::Cpu));
            assert_eq!(model.forward(&input, false).size(), [2, 7], "{arch}");
        }
    }

    #[test]
    fn resnet18_has_torchvisions_parameters_under_torchvisions_names() {
        let vs = nn::VarStore::new(Device::Cpu);
        ResNetConfig::new(Arch::Resnet18, 10).build(&vs.root());
        // torchvision.models.resnet18(num_classes=10): 11,181,642 trainable
        // parameters; its running means and variances are buffers here too.
        let trainable: i64 = vs
            .trainable_variables()
            .iter()
            .map(Tensor::numel)
            .map(|n| n as i64)
            .sum();
        assert_eq!(trainable, 11_181_642);
        let names = vs.variables();
        for name in [
            "conv1.weight",
            "bn1.running_var",
            "layer2.0.downsample.0.weight",
            "layer2.0.downsample.1.bias",
            "layer4.1.conv2.weight",
            "fc.weight",
        ] {
            assert!(names.contains_key(name), "{name} missing");
        }
        assert_eq!(names["fc.weight"].size(), [10, 512]);
    }
}

//! ResNet-18 in burn, in the two stems fovea trains (CIFAR 3×3 and torchvision
//! 7×7 + max-pool), with torchvision's structure so that a PyTorch
//! `state_dict` maps onto it parameter for parameter.

use std::fmt;
use std::str::FromStr;

use burn::module::{Initializer, Module};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig, MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

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

    /// Builds a freshly initialised network the way torchvision does: Kaiming
    /// normal (fan-out, ReLU gain) convolutions, BatchNorm γ=1 β=0.
    pub fn init(&self, device: &Device) -> ResNet {
        let w = self.width;
        let (conv1, maxpool) = match self.arch {
            Arch::Resnet18Cifar => (conv(3, w, 3, 1, 1, device), None),
            Arch::Resnet18 => (
                conv(3, w, 7, 2, 3, device),
                Some(
                    MaxPool2dConfig::new([3, 3])
                        .with_strides([2, 2])
                        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                        .init(),
                ),
            ),
        };
        ResNet {
            conv1,
            bn1: bn(w, device),
            maxpool,
            layer1: stage(w, w, 1, device),
            layer2: stage(w, 2 * w, 2, device),
            layer3: stage(2 * w, 4 * w, 2, device),
            layer4: stage(4 * w, 8 * w, 2, device),
            avgpool: AdaptiveAvgPool2dConfig::new([1, 1]).init(),
            fc: LinearConfig::new(8 * w, self.num_classes).init(device),
        }
    }
}

fn conv(
    input: usize,
    output: usize,
    kernel: usize,
    stride: usize,
    pad: usize,
    device: &Device,
) -> Conv2d {
    Conv2dConfig::new([input, output], [kernel, kernel])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
        .with_bias(false)
        .with_initializer(Initializer::KaimingNormal {
            gain: std::f64::consts::SQRT_2,
            fan_out_only: true,
        })
        .init(device)
}

fn bn(channels: usize, device: &Device) -> BatchNorm {
    BatchNormConfig::new(channels).init(device)
}

fn stage(input: usize, output: usize, stride: usize, device: &Device) -> Vec<BasicBlock> {
    vec![
        BasicBlock::new(input, output, stride, device),
        BasicBlock::new(output, output, 1, device),
    ]
}

/// torchvision's `downsample`: a 1×1 strided conv and its BatchNorm. A PyTorch
/// `Sequential` names them `0` and `1`; the importer renames those to `conv`/`bn`.
#[derive(Module, Debug)]
pub struct Downsample {
    pub conv: Conv2d,
    pub bn: BatchNorm,
}

/// torchvision's `BasicBlock`: two 3×3 convs with a residual connection.
#[derive(Module, Debug)]
pub struct BasicBlock {
    pub conv1: Conv2d,
    pub bn1: BatchNorm,
    pub conv2: Conv2d,
    pub bn2: BatchNorm,
    pub downsample: Option<Downsample>,
}

impl BasicBlock {
    fn new(input: usize, output: usize, stride: usize, device: &Device) -> Self {
        let downsample = (stride != 1 || input != output).then(|| Downsample {
            conv: conv(input, output, 1, stride, 0, device),
            bn: bn(output, device),
        });
        Self {
            conv1: conv(input, output, 3, stride, 1, device),
            bn1: bn(output, device),
            conv2: conv(output, output, 3, 1, 1, device),
            bn2: bn(output, device),
            downsample,
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let identity = match &self.downsample {
            Some(d) => d.bn.forward(d.conv.forward(x.clone())),
            None => x.clone(),
        };
        let out = relu(self.bn1.forward(self.conv1.forward(x)));
        let out = self.bn2.forward(self.conv2.forward(out));
        relu(out + identity)
    }
}

/// ResNet-18; field names are torchvision's so parameter paths match a `state_dict`.
#[derive(Module, Debug)]
pub struct ResNet {
    pub conv1: Conv2d,
    pub bn1: BatchNorm,
    pub maxpool: Option<MaxPool2d>,
    pub layer1: Vec<BasicBlock>,
    pub layer2: Vec<BasicBlock>,
    pub layer3: Vec<BasicBlock>,
    pub layer4: Vec<BasicBlock>,
    pub avgpool: AdaptiveAvgPool2d,
    pub fc: Linear,
}

impl ResNet {
    /// `[n, 3, h, w]` normalised images → `[n, classes]` logits.
    pub fn forward(&self, input: Tensor<4>) -> Tensor<2> {
        let mut x = relu(self.bn1.forward(self.conv1.forward(input)));
        if let Some(pool) = &self.maxpool {
            x = pool.forward(x);
        }
        for block in self.blocks() {
            x = block.forward(x);
        }
        let x = self.avgpool.forward(x);
        let [n, c, _, _] = x.dims();
        self.fc.forward(x.reshape([n, c]))
    }

    /// The eight residual blocks in order, `layer1.0` first.
    pub fn blocks(&self) -> impl Iterator<Item = &BasicBlock> {
        self.layer1
            .iter()
            .chain(&self.layer2)
            .chain(&self.layer3)
            .chain(&self.layer4)
    }

    /// Recovers the shape of this network (used to check imports and exports).
    pub fn config(&self) -> ResNetConfig {
        let [width, _, kernel, _] = self.conv1.weight.dims();
        let [_, num_classes] = self.fc.weight.dims();
        let arch = if kernel == 7 {
            Arch::Resnet18
        } else {
            Arch::Resnet18Cifar
        };
        ResNetConfig {
            arch,
            num_classes,
            width,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_stems_map_an_image_batch_to_one_logit_row_per_image() {
        let device = Device::flex();
        for (arch, size) in [(Arch::Resnet18Cifar, 32), (Arch::Resnet18, 64)] {
            let model = ResNetConfig::new(arch, 7).with_width(4).init(&device);
            let input = Tensor::<4>::zeros([2, 3, size, size], &device);
            assert_eq!(model.forward(input).dims(), [2, 7], "{arch}");
        }
    }

    #[test]
    fn resnet18_has_torchvisions_parameter_count() {
        // torchvision.models.resnet18(num_classes=10) has 11,181,642 parameters;
        // burn also counts BatchNorm running mean and variance, which torchvision
        // keeps as buffers: 2 × 4,800 channels.
        let model = ResNetConfig::new(Arch::Resnet18, 10).init(&Device::flex());
        assert_eq!(model.num_params(), 11_181_642 + 9_600);
        assert_eq!(model.config(), ResNetConfig::new(Arch::Resnet18, 10));
    }
}

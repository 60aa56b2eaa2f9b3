//! Export of a trained network as an ONNX graph (BatchNorm folded into the
//! convolutions, inference mode) and as a fovea model-repository entry:
//! `<repo>/<name>/<version>/model.onnx`, `<repo>/<name>/config.toml`,
//! `<repo>/<name>/labels.txt`.

use std::fs;
use std::path::{Path, PathBuf};

use fovea_core::{ModelConfig, OutputConfig, PreprocessConfig, Resize};
use fovea_engine::{WriteModelError, version_model_path, write_new_model};
use fovea_onnx::{
    AttributeProto, Dim, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    ValueInfoProto,
};
use prost::Message;
use tch::{Device, Kind, Tensor};

use crate::error::{Result, TrainError};
use crate::model::{BN_EPS, ConvBn, ResNet};

/// ONNX operator set the graph targets.
pub const OPSET: i64 = 17;
/// Name of the graph input, `[N, 3, H, W]`.
pub const INPUT: &str = "input";
/// Name of the graph output, `[N, classes]`.
pub const OUTPUT: &str = "logits";

fn values(t: &Tensor) -> Result<Vec<f32>> {
    Vec::<f32>::try_from(
        t.detach()
            .to_device(Device::Cpu)
            .to_kind(Kind::Float)
            .flatten(0, -1),
    )
    .map_err(|e| TrainError::Export(format!("reading weights: {e}")))
}

/// A convolution with its BatchNorm folded in: `W' = W·s`, `b' = β - μ·s`
/// with `s = γ / sqrt(σ² + ε)`, exactly the inference-mode composition.
pub struct FoldedConv {
    /// `[out, in, k, k]`.
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
    pub shape: [usize; 4],
    pub stride: usize,
    pub pad: usize,
}

/// Folds a convolution's BatchNorm into it.
pub fn fold(unit: &ConvBn) -> Result<FoldedConv> {
    let (conv, bn) = (&unit.conv, &unit.bn);
    let dims = conv.ws.size();
    let [o, i, kh, kw] = dims[..] else {
        return Err(TrainError::Export(format!(
            "convolution weight of shape {dims:?}"
        )));
    };
    let shape = [o as usize, i as usize, kh as usize, kw as usize];
    let mut weight = values(&conv.ws)?;
    let (Some(gamma), Some(beta)) = (&bn.ws, &bn.bs) else {
        return Err(TrainError::Export(
            "BatchNorm without affine parameters".into(),
        ));
    };
    let gamma = values(gamma)?;
    let beta = values(beta)?;
    let mean = values(&bn.running_mean)?;
    let var = values(&bn.running_var)?;
    let per_out = weight.len() / shape[0];
    let mut bias = Vec::with_capacity(shape[0]);
    for o in 0..shape[0] {
        let scale = f64::from(gamma[o]) / (f64::from(var[o]) + BN_EPS).sqrt();
        for w in &mut weight[o * per_out..(o + 1) * per_out] {
            *w = (f64::from(*w) * scale) as f32;
        }
        bias.push((f64::from(beta[o]) - f64::from(mean[o]) * scale) as f32);
    }
    Ok(FoldedConv {
        weight,
        bias,
        shape,
        stride: unit.stride as usize,
        pad: unit.pad as usize,
    })
}

/// Builds the graph node by node; names follow torchvision's parameters.
struct Builder {
    graph: GraphProto,
}

impl Builder {
    fn node(
        &mut self,
        op: &str,
        name: &str,
        inputs: &[&str],
        attributes: Vec<AttributeProto>,
    ) -> String {
        let output = format!("{name}.out");
        self.graph.node.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.clone()],
            name: name.into(),
            op_type: op.into(),
            attribute: attributes,
            ..Default::default()
        });
        output
    }

    fn conv(&mut self, name: &str, input: &str, c: &FoldedConv) -> String {
        let [_, _, k, _] = c.shape;
        let weight_name = format!("{name}.weight");
        let bias_name = format!("{name}.bias");
        self.graph
            .initializer
            .push(TensorProto::float(&weight_name, &c.shape, &c.weight));
        self.graph
            .initializer
            .push(TensorProto::float(&bias_name, &c.shape[..1], &c.bias));
        let attributes = vec![
            AttributeProto::ints("kernel_shape", &[k as i64, k as i64]),
            AttributeProto::ints("strides", &[c.stride as i64; 2]),
            AttributeProto::ints("pads", &[c.pad as i64; 4]),
        ];
        self.node("Conv", name, &[input, &weight_name, &bias_name], attributes)
    }
}

/// The network as an ONNX model: input `input` `[N, 3, H, W]` (dynamic N),
/// output `logits` `[N, classes]`, opset 17 (int8: [`crate::quantize`]).
pub fn to_onnx(model: &ResNet, input_size: [usize; 2]) -> Result<Vec<u8>> {
    let mut b = Builder {
        graph: GraphProto {
            name: "resnet18".into(),
            ..Default::default()
        },
    };
    let stem = fold(&model.stem)?;
    let mut x = b.conv("conv1", INPUT, &stem);
    x = b.node("Relu", "relu", &[&x], vec![]);
    if model.config.arch == crate::model::Arch::Resnet18 {
        x = b.node(
            "MaxPool",
            "maxpool",
            &[&x],
            vec![
                AttributeProto::ints("kernel_shape", &[3, 3]),
                AttributeProto::ints("strides", &[2, 2]),
                AttributeProto::ints("pads", &[1, 1, 1, 1]),
            ],
        );
    }
    for (layer, blocks) in [&model.layer1, &model.layer2, &model.layer3, &model.layer4]
        .into_iter()
        .enumerate()
    {
        for (i, block) in blocks.iter().enumerate() {
            let p = format!("layer{}.{i}", layer + 1);
            let identity = match &block.downsample {
                Some(d) => b.conv(&format!("{p}.downsample.0"), &x, &fold(d)?),
                None => x.clone(),
            };
            let y = b.conv(&format!("{p}.conv1"), &x, &fold(&block.conv1)?);
            let y = b.node("Relu", &format!("{p}.relu1"), &[&y], vec![]);
            let y = b.conv(&format!("{p}.conv2"), &y, &fold(&block.conv2)?);
            let y = b.node("Add", &format!("{p}.add"), &[&y, &identity], vec![]);
            x = b.node("Relu", &format!("{p}.relu2"), &[&y], vec![]);
        }
    }
    x = b.node("GlobalAveragePool", "avgpool", &[&x], vec![]);
    x = b.node(
        "Flatten",
        "flatten",
        &[&x],
        vec![AttributeProto::int("axis", 1)],
    );
    // `fc.weight` is [out, in], as torchvision's: Gemm reads it with transB.
    let fc_dims = model.fc.ws.size();
    let (classes, inputs) = (fc_dims[0] as usize, fc_dims[1] as usize);
    let fc_weight = values(&model.fc.ws)?;
    let bias = match &model.fc.bs {
        Some(bias) => values(bias)?,
        None => vec![0.0; classes],
    };
    b.graph.initializer.push(TensorProto::float(
        "fc.weight",
        &[classes, inputs],
        &fc_weight,
    ));
    b.graph
        .initializer
        .push(TensorProto::float("fc.bias", &[classes], &bias));
    b.node(
        "Gemm",
        "fc",
        &[&x, "fc.weight", "fc.bias"],
        vec![
            AttributeProto::int("transB", 1),
            AttributeProto::float("alpha", 1.0),
            AttributeProto::float("beta", 1.0),
        ],
    );
    // The last node writes the graph output under its public name.
    if let Some(last) = b.graph.node.last_mut() {
        last.output = vec![OUTPUT.into()];
    }
    let [h, w] = input_size;
    b.graph.input = vec![ValueInfoProto::float_tensor(
        INPUT,
        &[Dim::Named("N"), Dim::Fixed(3), Dim::Fixed(h), Dim::Fixed(w)],
    )];
    b.graph.output = vec![ValueInfoProto::float_tensor(
        OUTPUT,
        &[Dim::Named("N"), Dim::Fixed(classes)],
    )];
    let proto = ModelProto {
        ir_version: 8,
        producer_name: "fovea-train".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        graph: Some(b.graph),
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
        }],
        ..Default::default()
    };
    Ok(proto.encode_to_vec())
}

/// What `export_to_repository` writes.
#[derive(Debug, Clone)]
pub struct RepositoryEntry {
    pub model_dir: PathBuf,
    pub onnx: PathBuf,
    pub config: ModelConfig,
}

/// The serving configuration matching training: CIFAR-sized models squash the
/// image to the training size, then normalise with the training statistics.
pub fn serving_config(
    name: &str,
    input_size: usize,
    classes: usize,
    mean: [f32; 3],
    std: [f32; 3],
    description: String,
) -> ModelConfig {
    let preprocess = PreprocessConfig {
        resize: Resize::Exact([input_size as u32; 2]),
        crop: None,
        mean,
        std,
        ..PreprocessConfig::cifar10()
    };
    let mut config = ModelConfig::image_classifier(INPUT, OUTPUT, preprocess);
    config.name = Some(name.to_string());
    config.description = Some(description);
    config.output = OutputConfig {
        name: OUTPUT.into(),
        labels: Some(PathBuf::from("labels.txt")),
        classes: Some(classes),
    };
    config
}

/// Writes `onnx` as version `version` of model `name` under `repo`, with its
/// `config.toml` and `labels.txt`. An existing version is never overwritten.
pub fn write_repository_entry(
    repo: &Path,
    name: &str,
    version: u64,
    onnx: &[u8],
    config: &ModelConfig,
    classes: &[String],
) -> Result<RepositoryEntry> {
    let model_dir = repo.join(name);
    let onnx_path = version_model_path(&model_dir, version);
    let exists = |path: &Path| {
        TrainError::Invalid(format!(
            "{} already exists; choose another --version",
            path.display()
        ))
    };
    // Checked before the config and labels are touched; the writer checks
    // again, atomically, when it places the model.
    if onnx_path.exists() {
        return Err(exists(&onnx_path));
    }
    config
        .validate(&model_dir.join("config.toml"))
        .map_err(|e| TrainError::Export(e.to_string()))?;
    fs::create_dir_all(&model_dir).map_err(TrainError::io(&model_dir))?;
    let config_path = model_dir.join("config.toml");
    fs::write(&config_path, config.to_toml()).map_err(TrainError::io(&config_path))?;
    let labels_path = model_dir.join("labels.txt");
    fs::write(&labels_path, classes.join("\n") + "\n").map_err(TrainError::io(&labels_path))?;
    // The model comes last, so a polling server finds its config and labels
    // in place when the new version appears.
    write_new_model(&onnx_path, onnx).map_err(|e| match e {
        WriteModelError::Exists(path) => exists(&path),
        WriteModelError::Io { path, source } => TrainError::Io { path, source },
    })?;
    Ok(RepositoryEntry {
        model_dir,
        onnx: onnx_path,
        config: config.clone(),
    })
}

//! Importing PyTorch `state_dict` files (`torch.save(model.state_dict(), p)`)
//! into [`ResNet`], through burn-store's PyTorch reader. The network's shape
//! (stem, width, classes) is read from the file itself.

use std::path::Path;

use burn::store::{ModuleSnapshot, ModuleStore, PytorchStore};
use burn::tensor::Device;

use crate::error::{Result, TrainError};
use crate::model::{Arch, ResNet, ResNetConfig};

/// Opens `path` with torchvision's `downsample.0/1` renamed to this crate's
/// `downsample.conv/bn` (a Rust field cannot be named `0`).
fn store(path: &Path) -> PytorchStore {
    PytorchStore::from_file(path)
        .with_key_remapping(r"\.downsample\.0\.", ".downsample.conv.")
        .with_key_remapping(r"\.downsample\.1\.", ".downsample.bn.")
}

fn import_error(path: &Path, message: impl std::fmt::Display) -> TrainError {
    TrainError::Import {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// Reads the network shape a torchvision ResNet-18 `state_dict` describes.
pub fn read_config(path: &Path) -> Result<ResNetConfig> {
    let mut store = store(path);
    let mut dims = |name: &str| -> Result<Vec<usize>> {
        let tensor = store
            .get_tensor(name)
            .map_err(|e| import_error(path, e))?
            .ok_or_else(|| {
                import_error(
                    path,
                    format!("no `{name}`: not a torchvision ResNet state_dict"),
                )
            })?;
        Ok(tensor.shape.to_vec())
    };
    let conv1 = dims("conv1.weight")?;
    let fc = dims("fc.weight")?;
    let (Some(&width), Some(&kernel), Some(&num_classes)) =
        (conv1.first(), conv1.get(2), fc.first())
    else {
        return Err(import_error(
            path,
            format!("unexpected shapes conv1.weight {conv1:?}, fc.weight {fc:?}"),
        ));
    };
    let arch = match kernel {
        7 => Arch::Resnet18,
        3 => Arch::Resnet18Cifar,
        k => {
            return Err(import_error(
                path,
                format!("{k}×{k} stem conv is neither ResNet stem"),
            ));
        }
    };
    Ok(ResNetConfig {
        arch,
        num_classes,
        width,
    })
}

/// Loads every parameter and running statistic of `path` into `model`.
/// A tensor the network has but the file lacks, or one whose shape differs, is
/// an error naming it; `num_batches_tracked` counters are ignored.
pub fn load_into(model: ResNet, path: &Path) -> Result<ResNet> {
    let mut model = model;
    let mut store = store(path).allow_partial(true);
    let result = model
        .load_from(&mut store)
        .map_err(|e| import_error(path, e))?;
    if !result.errors.is_empty() {
        let errors: Vec<String> = result.errors.iter().map(|e| e.to_string()).collect();
        return Err(import_error(path, errors.join("; ")));
    }
    if !result.missing.is_empty() {
        let missing: Vec<&str> = result.missing.iter().map(|(p, _)| p.as_str()).collect();
        return Err(import_error(
            path,
            format!("missing tensors: {}", missing.join(", ")),
        ));
    }
    Ok(model)
}

/// Builds the network a `.pth` file describes and loads its weights.
pub fn import(path: &Path, device: &Device) -> Result<ResNet> {
    let config = read_config(path)?;
    load_into(config.init(device), path)
}

/// Loads a `.pth` into a network of the given shape; the classifier may differ
/// (fine-tuning to a new class count), in which case `fc` keeps `model`'s own
/// freshly initialised weights.
pub fn import_backbone(model: ResNet, path: &Path) -> Result<ResNet> {
    let file = read_config(path)?;
    let own = model.config();
    if file.width != own.width || file.arch != own.arch {
        return Err(import_error(
            path,
            format!(
                "holds a {} of width {}, the network is a {} of width {}",
                file.arch, file.width, own.arch, own.width
            ),
        ));
    }
    if file.num_classes == own.num_classes {
        return load_into(model, path);
    }
    let mut model = model;
    let mut store = store(path)
        .with_regex(r"^(conv1|bn1|layer\d)\.")
        .allow_partial(true);
    let result = model
        .load_from(&mut store)
        .map_err(|e| import_error(path, e))?;
    let missing: Vec<&str> = result
        .missing
        .iter()
        .map(|(p, _)| p.as_str())
        .filter(|p| !p.starts_with("fc."))
        .collect();
    if !result.errors.is_empty() || !missing.is_empty() {
        let errors: Vec<String> = result.errors.iter().map(|e| e.to_string()).collect();
        return Err(import_error(
            path,
            format!(
                "errors: {}; missing: {}",
                errors.join("; "),
                missing.join(", ")
            ),
        ));
    }
    Ok(model)
}

//! PyTorch `state_dict` import: a `torch.save(model.state_dict(), path)`
//! archive of a torchvision-style ResNet-18, read by libtorch's own unpickler.
//! The stem, width and class count are read from the tensors' shapes; the
//! names are already the network's own (`downsample.0/1`, `fc`), and
//! `num_batches_tracked` (which fovea does not keep) is ignored.

use std::path::Path;

use tch::{Device, Tensor};

use crate::checkpoint::Network;
use crate::error::{Result, TrainError};
use crate::model::{Arch, ResNetConfig};
use crate::torch;

fn import_error(path: &Path, message: impl std::fmt::Display) -> TrainError {
    TrainError::Import {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// Reads a `.pth` file: the network shape it holds and its named tensors.
pub fn read(path: &Path) -> Result<(ResNetConfig, Vec<(String, Tensor)>)> {
    if !path.is_file() {
        return Err(TrainError::io(path)(std::io::Error::from(
            std::io::ErrorKind::NotFound,
        )));
    }
    let tensors = torch::load_state_dict(path).map_err(|e| import_error(path, e))?;
    let dims = |name: &str| -> Result<Vec<i64>> {
        tensors
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t.size())
            .ok_or_else(|| {
                import_error(
                    path,
                    format!("no `{name}`: not a torchvision ResNet state_dict"),
                )
            })
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
    let config = ResNetConfig {
        arch,
        num_classes: num_classes as usize,
        width: width as usize,
    };
    Ok((config, tensors))
}

/// The network's shape as stored in a `.pth` file.
pub fn read_config(path: &Path) -> Result<ResNetConfig> {
    read(path).map(|(config, _)| config)
}

/// Builds the network a `.pth` file describes on `device`, with its weights.
pub fn import(path: &Path, device: Device) -> Result<Network> {
    let (config, tensors) = read(path)?;
    let mut net = Network::init(config, device, 0);
    load(&mut net, &tensors, path)?;
    Ok(net)
}

/// Loads a `.pth` file's tensors into an existing network of the same shape.
pub fn load_into(net: &mut Network, path: &Path) -> Result<()> {
    let (_, tensors) = read(path)?;
    load(net, &tensors, path)
}

fn load(net: &mut Network, tensors: &[(String, Tensor)], path: &Path) -> Result<()> {
    net.load_named(tensors, false, path).map_err(|e| match e {
        TrainError::Checkpoint { message, .. } => import_error(path, message),
        other => other,
    })
}

//! Reading a model repository from disk: `<root>/<name>/config.toml`, the
//! labels file it names, and `<root>/<name>/<version>/model.onnx`, with the
//! version policy applied. Pure file reading; loading is the engine's job.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use fovea_core::{Labels, ModelConfig};

/// Size and modification time of a file, to notice that it changed.
pub(crate) type Stamp = Option<(u64, SystemTime)>;

/// Identifies the on-disk state of one version: any change reloads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fingerprint {
    config: Stamp,
    labels: Stamp,
    model: Stamp,
}

/// One model directory as found on disk.
#[derive(Debug)]
pub(crate) struct ScannedModel {
    pub name: String,
    pub dir: PathBuf,
    /// Version directories present (positive integers), ascending.
    pub version_dirs: Vec<u64>,
    /// The config and versions to serve, or why the model cannot be served.
    pub entry: Result<ScannedEntry, String>,
}

/// A model whose config and labels were read.
#[derive(Debug)]
pub(crate) struct ScannedEntry {
    pub config_path: PathBuf,
    pub config: ModelConfig,
    pub labels: Labels,
    /// The versions the policy selects.
    pub versions: Vec<ScannedVersion>,
}

/// One version selected for serving.
#[derive(Debug)]
pub(crate) struct ScannedVersion {
    pub version: u64,
    pub model_path: PathBuf,
    pub fingerprint: Fingerprint,
    /// Set when `model.onnx` is missing: the reason the version cannot load.
    pub missing: Option<String>,
}

/// The result of one scan: models by directory order, and entries that are
/// neither model nor version directories (to warn about once).
#[derive(Debug, Default)]
pub(crate) struct Scan {
    pub models: Vec<ScannedModel>,
    pub ignored: Vec<PathBuf>,
}

fn stamp(path: &Path) -> Stamp {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.len(), meta.modified().ok()?))
}

/// Scans `root`. Only an unreadable root is an error; a broken model is a
/// `ScannedModel` with an `Err` entry naming the file at fault.
pub(crate) fn scan(root: &Path) -> Result<Scan, String> {
    let entries = std::fs::read_dir(root)
        .map_err(|e| format!("cannot read model repository {}: {e}", root.display()))?;
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir() && !is_hidden(p))
        .collect();
    dirs.sort();
    let mut scan = Scan::default();
    for dir in dirs {
        let model = scan_model(&dir, &mut scan.ignored);
        if scan.models.iter().any(|m| m.name == model.name) {
            tracing::warn!(dir = %dir.display(), "another directory already serves model `{}`; ignored", model.name);
            continue;
        }
        scan.models.push(model);
    }
    Ok(scan)
}

fn is_hidden(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_none_or(|n| n.starts_with('.'))
}

/// The versions of the model in `dir` that hold a `model.onnx`, ascending.
pub fn model_versions(dir: &Path) -> std::io::Result<Vec<u64>> {
    let mut versions: Vec<u64> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .filter(|e| e.path().join("model.onnx").is_file())
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|v| *v > 0)
        .collect();
    versions.sort_unstable();
    Ok(versions)
}

fn scan_model(dir: &Path, ignored: &mut Vec<PathBuf>) -> ScannedModel {
    let dir_name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut version_dirs = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
            if !path.is_dir() || is_hidden(&path) {
                continue;
            }
            match path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.parse::<u64>().ok())
            {
                Some(version) if version > 0 => version_dirs.push(version),
                _ => ignored.push(path),
            }
        }
    }
    version_dirs.sort_unstable();

    let config_path = dir.join("config.toml");
    let config = match ModelConfig::load(&config_path) {
        Ok(config) => config,
        Err(e) => {
            return ScannedModel {
                name: dir_name,
                dir: dir.to_path_buf(),
                version_dirs,
                entry: Err(e.to_string()),
            };
        }
    };
    let name = config.name.clone().unwrap_or(dir_name);
    let labels_path = config.output.labels.as_ref().map(|p| dir.join(p));
    let labels = match &labels_path {
        Some(path) => match Labels::load(path) {
            Ok(labels) => labels,
            Err(e) => {
                return ScannedModel {
                    name,
                    dir: dir.to_path_buf(),
                    version_dirs,
                    entry: Err(e.to_string()),
                };
            }
        },
        None => Labels::default(),
    };
    let (config_stamp, labels_stamp) =
        (stamp(&config_path), labels_path.as_deref().and_then(stamp));
    let versions = config
        .version_policy
        .select(&version_dirs)
        .into_iter()
        .map(|version| {
            let model_path = dir.join(version.to_string()).join("model.onnx");
            let model_stamp = stamp(&model_path);
            ScannedVersion {
                version,
                missing: model_stamp
                    .is_none()
                    .then(|| format!("{}: not found", model_path.display())),
                model_path,
                fingerprint: Fingerprint {
                    config: config_stamp,
                    labels: labels_stamp,
                    model: model_stamp,
                },
            }
        })
        .collect();
    ScannedModel {
        name,
        dir: dir.to_path_buf(),
        version_dirs,
        entry: Ok(ScannedEntry {
            config_path,
            config,
            labels,
            versions,
        }),
    }
}

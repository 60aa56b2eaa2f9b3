//! Reading a model repository from disk: `<root>/<name>/config.toml`, the
//! labels file it names, and `<root>/<name>/<version>/model.onnx`, with the
//! version policy applied; and the one way tools write a new version's model
//! into it. Pure file work; loading is the engine's job.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use fovea_core::{Labels, ModelConfig};

use crate::error::WriteModelError;

/// The file name of every version's model.
const MODEL_FILE: &str = "model.onnx";

/// Size and modification time of a file, to notice that it changed.
pub(crate) type Stamp = Option<(u64, SystemTime)>;

/// Identifies the on-disk state of one version: any change reloads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    config: Stamp,
    labels: Stamp,
    model: Stamp,
}

/// One model directory as found on disk.
#[derive(Debug)]
pub struct ScannedModel {
    pub name: String,
    pub dir: PathBuf,
    /// Version directories present (positive integers), ascending.
    pub version_dirs: Vec<u64>,
    /// The config and versions to serve, or why the model cannot be served.
    pub entry: Result<ScannedEntry, String>,
}

/// A model whose config and labels were read.
#[derive(Debug)]
pub struct ScannedEntry {
    pub config_path: PathBuf,
    pub config: ModelConfig,
    pub labels: Labels,
    /// The versions the policy selects.
    pub versions: Vec<ScannedVersion>,
}

/// One version selected for serving.
#[derive(Debug)]
pub struct ScannedVersion {
    pub version: u64,
    pub model_path: PathBuf,
    pub(crate) fingerprint: Fingerprint,
    /// Set when `model.onnx` is missing: the reason the version cannot load.
    pub missing: Option<String>,
}

/// The result of one scan: models by directory order, and entries that are
/// neither model nor version directories (to warn about once).
#[derive(Debug, Default)]
pub struct Scan {
    pub models: Vec<ScannedModel>,
    pub ignored: Vec<PathBuf>,
}

fn stamp(path: &Path) -> Stamp {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.len(), meta.modified().ok()?))
}

/// Scans `root` as `fovea serve` reads it (and `fovea models list` reports
/// it). Only an unreadable root is an error; a broken model is a
/// `ScannedModel` with an `Err` entry naming the file at fault.
pub fn scan(root: &Path) -> Result<Scan, String> {
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

/// `<model_dir>/<version>/model.onnx`: where the repository keeps a version's model.
pub fn version_model_path(model_dir: &Path, version: u64) -> PathBuf {
    model_dir.join(version.to_string()).join(MODEL_FILE)
}

/// A model's versions: the positive-integer directories in `model_dir`,
/// ascending. The one definition `fovea serve`, `fovea models list`,
/// `quantize` and `export` share; a version whose `model.onnx` is missing is
/// still a version (one that cannot load, and is reported as such).
pub fn version_dirs(model_dir: &Path) -> std::io::Result<Vec<u64>> {
    let mut versions = Vec::new();
    for path in std::fs::read_dir(model_dir)?.filter_map(|e| e.ok().map(|e| e.path())) {
        if let Some(version) = version_of(&path) {
            versions.push(version);
        }
    }
    versions.sort_unstable();
    Ok(versions)
}

/// The version a path of a model directory names, if it is a version directory.
fn version_of(path: &Path) -> Option<u64> {
    if !path.is_dir() || is_hidden(path) {
        return None;
    }
    path.file_name()?
        .to_str()?
        .parse::<u64>()
        .ok()
        .filter(|v| *v > 0)
}

/// The version a tool writes next into `model_dir`: one above its highest
/// (1 for a new or unreadable model directory).
pub fn next_version(model_dir: &Path) -> u64 {
    version_dirs(model_dir)
        .ok()
        .and_then(|versions| versions.last().copied())
        .unwrap_or(0)
        + 1
}

fn scan_model(dir: &Path, ignored: &mut Vec<PathBuf>) -> ScannedModel {
    let dir_name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut version_dirs = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
            match version_of(&path) {
                Some(version) => version_dirs.push(version),
                None if path.is_dir() && !is_hidden(&path) => ignored.push(path),
                None => {}
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
    if let (Some(classes), Some(path)) = (config.output.classes, &labels_path)
        && classes != labels.len()
    {
        return ScannedModel {
            name,
            dir: dir.to_path_buf(),
            version_dirs,
            entry: Err(format!(
                "{}: output.classes is {classes} but {} has {} labels",
                config_path.display(),
                path.display(),
                labels.len()
            )),
        };
    }
    let (config_stamp, labels_stamp) =
        (stamp(&config_path), labels_path.as_deref().and_then(stamp));
    let versions = config
        .version_policy
        .select(&version_dirs)
        .into_iter()
        .map(|version| {
            let model_path = version_model_path(dir, version);
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

/// Writes `bytes` as the model file `path` (a new version's `model.onnx`, see
/// [`version_model_path`], or any file a tool is asked for), creating its
/// directory. Never replaces an existing file: a version a server may be
/// serving must not change under it. The bytes go to a hidden file beside
/// `path` first and appear under `path` complete, so a polling server never
/// loads half a model.
pub fn write_new_model(path: &Path, bytes: &[u8]) -> Result<(), WriteModelError> {
    // Checked first as well, so that the common mistake costs no writing.
    if path.exists() {
        return Err(WriteModelError::Exists(path.to_path_buf()));
    }
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| WriteModelError::Io { path, source }
    };
    let Some(name) = path.file_name() else {
        return Err(io(path)(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a file name",
        )));
    };
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    // Unique per process and call: two tools writing versions at once must
    // not share a partial file.
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let partial = dir.join(format!(
        ".{}.{}-{}.partial",
        name.to_string_lossy(),
        std::process::id(),
        WRITES.fetch_add(1, Ordering::Relaxed)
    ));
    let written = write_synced(&partial, bytes).map_err(io(&partial));
    let placed = written.and_then(|()| place(&partial, path));
    // After a hard link the partial name is a second name for the file; after
    // a failure it is debris. Either way it goes; a rename left nothing.
    let _ = std::fs::remove_file(&partial);
    placed
}

/// Writes and flushes to disk, so that a crash after the file is placed
/// cannot leave an empty model under the final name.
fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = File::create(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Gives the complete file at `partial` the name `path` unless that exists.
/// A hard link refuses an existing name atomically, where a rename would
/// replace it; a filesystem without hard links gets a rename after a second
/// check, as close as it allows.
fn place(partial: &Path, path: &Path) -> Result<(), WriteModelError> {
    match std::fs::hard_link(partial, path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            Err(WriteModelError::Exists(path.to_path_buf()))
        }
        Err(_) if path.exists() => Err(WriteModelError::Exists(path.to_path_buf())),
        Err(_) => std::fs::rename(partial, path).map_err(|source| WriteModelError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_new_version_is_written_whole_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = version_model_path(dir.path(), 2);
        assert_eq!(path, dir.path().join("2").join("model.onnx"));
        write_new_model(&path, b"first").unwrap();
        assert!(matches!(
            write_new_model(&path, b"second"),
            Err(WriteModelError::Exists(p)) if p == path
        ));
        assert_eq!(std::fs::read(&path).unwrap(), b"first");
        assert_eq!(
            listing(&dir.path().join("2")),
            ["model.onnx"],
            "no partial file left"
        );
        assert_eq!(version_dirs(dir.path()).unwrap(), [2]);
    }

    #[test]
    fn missing_directories_are_created_and_a_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/out.onnx");
        write_new_model(&path, b"x").unwrap();
        assert_eq!(listing(&dir.path().join("nested")), ["out.onnx"]);
        assert!(write_new_model(Path::new("/"), b"x").is_err());
    }

    #[test]
    fn versions_are_positive_integer_directories_with_or_without_a_model() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["3", "1", "0", "x", ".7", "12"] {
            std::fs::create_dir(dir.path().join(name)).unwrap();
        }
        std::fs::write(dir.path().join("9"), b"a file, not a version").unwrap();
        std::fs::write(version_model_path(dir.path(), 3), b"model").unwrap();
        assert_eq!(version_dirs(dir.path()).unwrap(), [1, 3, 12]);
        assert_eq!(next_version(dir.path()), 13);
        assert_eq!(next_version(&dir.path().join("absent")), 1);
    }
}

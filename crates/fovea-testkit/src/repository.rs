//! A model repository on disk whose versions run on gated backends: the
//! engine scans, polls, reloads and retires its versions exactly as it does
//! a real repository's, while the test decides when each version's batches
//! (warm-up included, once its gate holds) may run.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use fovea_engine::{BackendError, BackendFactory, FileOpener, ModelSource};

use crate::gated::Gate;

/// The ten CIFAR-10 class names, one per line, as a repository's labels file.
const CIFAR_LABELS: &str = "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n";

/// One model of a repository in a directory the test owns; each version
/// directory holds a placeholder `model.onnx` (never read) and is served by
/// the [`Gate`] it was added with.
pub struct GatedRepository {
    root: PathBuf,
    dir: PathBuf,
    gates: Arc<Mutex<HashMap<u64, BackendFactory>>>,
}

impl GatedRepository {
    /// Writes `<root>/<name>/config.toml`, a CIFAR-shaped image classifier
    /// (`[3, 32, 32]` in, ten classes out, CIFAR preprocessing and labels)
    /// with `version_policy = <policy>` and `batching` as its `[batching]`
    /// table; no version yet.
    pub fn new(root: &Path, name: &str, policy: &str, batching: &str) -> Self {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).expect("model directory");
        std::fs::write(dir.join("labels.txt"), CIFAR_LABELS).expect("labels.txt");
        let config = format!(
            r#"version_policy = {policy}
[input]
name = "input"
shape = [3, 32, 32]
[output]
name = "logits"
labels = "labels.txt"
[preprocess]
resize = {{ exact = [32, 32] }}
mean = [0.4914, 0.4822, 0.4465]
std = [0.2470, 0.2435, 0.2616]
[batching]
{batching}
"#
        );
        std::fs::write(dir.join("config.toml"), config).expect("config.toml");
        Self {
            root: root.to_path_buf(),
            dir,
            gates: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Adds version `version`, served by `gate`'s backends. It is on disk
    /// when this returns; the engine loads it at its next scan.
    pub fn add_version(&self, version: u64, gate: &Gate) {
        self.lock().insert(version, gate.factory());
        let dir = self.dir.join(version.to_string());
        std::fs::create_dir_all(&dir).expect("version directory");
        std::fs::write(dir.join("model.onnx"), b"served by a gate").expect("model.onnx");
    }

    /// Removes version `version` from disk; the engine retires it at its next scan.
    pub fn remove_version(&self, version: u64) {
        std::fs::remove_dir_all(self.dir.join(version.to_string())).expect("version removed");
    }

    /// The engine's source: the repository at `root`, each version opened
    /// by its gate (a version added without one fails to load, naming it).
    pub fn source(&self) -> ModelSource {
        let gates = self.gates.clone();
        let opener = FileOpener::new(move |path: &Path| {
            let version = path
                .parent()
                .and_then(Path::file_name)
                .and_then(|name| name.to_str())
                .and_then(|name| name.parse::<u64>().ok());
            let factory = version.and_then(|v| {
                gates
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .get(&v)
                    .cloned()
            });
            match factory {
                Some(factory) => factory.open(),
                None => Err(BackendError::Load {
                    path: path.to_path_buf(),
                    message: "no gate was added for this version".into(),
                }),
            }
        });
        ModelSource::RepositoryWith {
            root: self.root.clone(),
            opener,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, BackendFactory>> {
        self.gates.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

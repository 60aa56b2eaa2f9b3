//! Class names for a model's output indices, read from `labels.txt` (one per line).

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum LabelError {
    #[error("cannot read labels file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("labels file {path} is empty")]
    Empty { path: PathBuf },
}

/// Ordered class names; index `i` names output `i`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Labels(Vec<String>);

impl Labels {
    pub fn new(names: Vec<String>) -> Self {
        Self(names)
    }

    /// Parses one label per line; blank trailing lines are ignored, a final
    /// newline is optional.
    pub fn parse(text: &str) -> Self {
        let mut names: Vec<String> = text.lines().map(|l| l.trim().to_string()).collect();
        while names.last().is_some_and(|l| l.is_empty()) {
            names.pop();
        }
        Self(names)
    }

    pub fn load(path: &Path) -> Result<Self, LabelError> {
        let text = std::fs::read_to_string(path).map_err(|source| LabelError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let labels = Self::parse(&text);
        if labels.0.is_empty() {
            return Err(LabelError::Empty {
                path: path.to_path_buf(),
            });
        }
        Ok(labels)
    }

    /// The name of class `index`, or its number when the model has more
    /// outputs than labels.
    pub fn name(&self, index: usize) -> String {
        self.0
            .get(index)
            .cloned()
            .unwrap_or_else(|| index.to_string())
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn as_slice(&self) -> &[String] {
        &self.0
    }

    /// The CIFAR-10 classes in label order.
    pub fn cifar10() -> Self {
        Self(
            [
                "airplane",
                "automobile",
                "bird",
                "cat",
                "deer",
                "dog",
                "frog",
                "horse",
                "ship",
                "truck",
            ]
            .map(String::from)
            .to_vec(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_drops_trailing_blank_lines_only() {
        let labels = Labels::parse("cat\n\ndog\n\n");
        assert_eq!(labels.as_slice(), &["cat", "", "dog"]);
    }

    #[test]
    fn unknown_index_is_named_by_its_number() {
        assert_eq!(Labels::parse("a\nb").name(7), "7");
    }
}

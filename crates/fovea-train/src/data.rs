//! Datasets held in memory as 8-bit CHW planes: the CIFAR-10 binary format and
//! ImageFolder trees (`train/<class>/*.jpg`), detected from the directory
//! layout, plus the seeded train/validation split.

use std::fs;
use std::path::{Path, PathBuf};

use fovea_core::labels::Labels;
use rand::SeedableRng;
use rand::rngs::ChaCha8Rng;
use rand::seq::SliceRandom;
use rayon::prelude::*;

use crate::error::{Result, TrainError};

/// Bytes of one CIFAR-10 binary record: a label byte, then 1024 R, 1024 G, 1024 B.
pub const CIFAR_RECORD: usize = 1 + 3 * 32 * 32;

/// Images of one size and their class indices, decoded once into memory.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    classes: Vec<String>,
    height: usize,
    width: usize,
    /// `len × 3 × height × width` bytes, each image as R, G, B planes.
    pixels: Vec<u8>,
    labels: Vec<u32>,
}

impl Dataset {
    /// Wraps decoded images; `pixels` holds `labels.len()` CHW images.
    pub fn new(
        classes: Vec<String>,
        [height, width]: [usize; 2],
        pixels: Vec<u8>,
        labels: Vec<u32>,
    ) -> Result<Self> {
        if pixels.len() != labels.len() * 3 * height * width {
            return Err(TrainError::Invalid(format!(
                "{} pixel bytes for {} images of {height}×{width}",
                pixels.len(),
                labels.len()
            )));
        }
        if let Some(bad) = labels.iter().find(|l| **l as usize >= classes.len()) {
            return Err(TrainError::Invalid(format!(
                "label {bad} but only {} classes",
                classes.len()
            )));
        }
        Ok(Self {
            classes,
            height,
            width,
            pixels,
            labels,
        })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Class names in label order.
    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    /// `[height, width]` of every image.
    pub fn size(&self) -> [usize; 2] {
        [self.height, self.width]
    }

    /// Image `i` as R, G, B planes.
    pub fn image(&self, i: usize) -> &[u8] {
        let n = 3 * self.height * self.width;
        &self.pixels[i * n..(i + 1) * n]
    }

    /// Class index of image `i`.
    pub fn label(&self, i: usize) -> usize {
        self.labels[i] as usize
    }

    /// All images' bytes, `len × 3 × height × width`, image after image.
    pub fn pixels(&self) -> &[u8] {
        &self.pixels
    }

    /// All class indices in order.
    pub fn labels(&self) -> &[u32] {
        &self.labels
    }

    /// A new dataset of the images at `indices`, in that order.
    pub fn subset(&self, indices: &[usize]) -> Dataset {
        let mut pixels = Vec::with_capacity(indices.len() * 3 * self.height * self.width);
        for &i in indices {
            pixels.extend_from_slice(self.image(i));
        }
        Dataset {
            classes: self.classes.clone(),
            height: self.height,
            width: self.width,
            pixels,
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
        }
    }

    /// Splits off `val_size` images chosen by a seeded shuffle; returns (train, validation).
    /// The same seed always gives the same split.
    pub fn split(&self, val_size: usize, seed: u64) -> Result<(Dataset, Dataset)> {
        if val_size >= self.len() {
            return Err(TrainError::Invalid(format!(
                "validation size {val_size} leaves nothing to train on ({} images)",
                self.len()
            )));
        }
        let mut order: Vec<usize> = (0..self.len()).collect();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
        let (val, train) = order.split_at(val_size);
        Ok((self.subset(train), self.subset(val)))
    }
}

/// The three parts a training run uses.
#[derive(Debug, Clone)]
pub struct Splits {
    pub train: Dataset,
    pub val: Dataset,
    /// Never used for training or model selection.
    pub test: Option<Dataset>,
}

/// Which on-disk layout a data directory has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// CIFAR-10 binary batches in this directory.
    CifarBinary(PathBuf),
    /// `train/<class>/…` and optionally `test/<class>/…` under this directory.
    ImageFolder(PathBuf),
}

/// Recognises `dir` (or `dir/cifar-10-batches-bin`) as CIFAR binary, or
/// `dir/train` as an ImageFolder root.
pub fn detect(dir: &Path) -> Result<Layout> {
    let is_cifar =
        |d: &Path| d.join("test_batch.bin").is_file() || d.join("data_batch_1.bin").is_file();
    if is_cifar(dir) {
        return Ok(Layout::CifarBinary(dir.to_path_buf()));
    }
    let nested = dir.join("cifar-10-batches-bin");
    if is_cifar(&nested) {
        return Ok(Layout::CifarBinary(nested));
    }
    if dir.join("train").is_dir() {
        return Ok(Layout::ImageFolder(dir.to_path_buf()));
    }
    Err(TrainError::Data {
        path: dir.to_path_buf(),
        message: "neither CIFAR-10 binary batches (data_batch_N.bin, test_batch.bin) nor an ImageFolder tree (train/<class>/...)".into(),
    })
}

/// Loads the training data and test set from `dir` and splits `val_size`
/// training images off for validation. ImageFolder images are resized to `size`.
pub fn load(dir: &Path, val_size: usize, seed: u64, size: [usize; 2]) -> Result<Splits> {
    let (train, test) = match detect(dir)? {
        Layout::CifarBinary(dir) => {
            let classes = cifar_classes(&dir)?;
            let train_files = cifar_train_files(&dir);
            if train_files.is_empty() {
                return Err(TrainError::Data {
                    path: dir,
                    message: "no data_batch_N.bin files".into(),
                });
            }
            let train = read_cifar_binary(&train_files, &classes)?;
            let test_file = dir.join("test_batch.bin");
            let test = test_file
                .is_file()
                .then(|| read_cifar_binary(&[test_file], &classes))
                .transpose()?;
            (train, test)
        }
        Layout::ImageFolder(root) => {
            let train_dir = root.join("train");
            let classes = folder_classes(&train_dir)?;
            let train = read_image_folder(&train_dir, &classes, size)?;
            let test_dir = root.join("test");
            let test = test_dir
                .is_dir()
                .then(|| read_image_folder(&test_dir, &classes, size))
                .transpose()?;
            (train, test)
        }
    };
    let (train, val) = train.split(val_size, seed)?;
    Ok(Splits { train, val, test })
}

/// The class names from `batches.meta.txt`, or CIFAR-10's when it is absent.
pub fn cifar_classes(dir: &Path) -> Result<Vec<String>> {
    let meta = dir.join("batches.meta.txt");
    if !meta.is_file() {
        return Ok(Labels::cifar10().as_slice().to_vec());
    }
    let text = fs::read_to_string(&meta).map_err(TrainError::io(&meta))?;
    let labels = Labels::parse(&text);
    if labels.is_empty() || labels.len() > 256 {
        return Err(TrainError::Data {
            path: meta,
            message: format!("{} class names; expected 1 to 256", labels.len()),
        });
    }
    Ok(labels.as_slice().to_vec())
}

/// `data_batch_1.bin` … `data_batch_5.bin`, whichever exist, in order.
pub fn cifar_train_files(dir: &Path) -> Vec<PathBuf> {
    (1..=5)
        .map(|i| dir.join(format!("data_batch_{i}.bin")))
        .filter(|p| p.is_file())
        .collect()
}

/// Reads CIFAR-10 binary batch files. A file whose length is not a whole
/// number of records, or a label outside the class list, is an error naming
/// the file and the byte offset.
pub fn read_cifar_binary(files: &[PathBuf], classes: &[String]) -> Result<Dataset> {
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for path in files {
        let bytes = fs::read(path).map_err(TrainError::io(path))?;
        let whole = bytes.len() / CIFAR_RECORD * CIFAR_RECORD;
        if whole != bytes.len() || bytes.is_empty() {
            return Err(TrainError::Data {
                path: path.clone(),
                message: format!(
                    "truncated record at byte offset {whole}: the file has {} bytes, not a positive multiple of the {CIFAR_RECORD}-byte record",
                    bytes.len()
                ),
            });
        }
        pixels.reserve(bytes.len());
        for (i, record) in bytes.chunks_exact(CIFAR_RECORD).enumerate() {
            let label = record[0];
            if label as usize >= classes.len() {
                return Err(TrainError::Data {
                    path: path.clone(),
                    message: format!(
                        "label {label} at byte offset {} but only {} classes",
                        i * CIFAR_RECORD,
                        classes.len()
                    ),
                });
            }
            labels.push(u32::from(label));
            pixels.extend_from_slice(&record[1..]);
        }
    }
    Dataset::new(classes.to_vec(), [32, 32], pixels, labels)
}

/// The sorted sub-directory names of an ImageFolder split.
pub fn folder_classes(dir: &Path) -> Result<Vec<String>> {
    let mut classes = Vec::new();
    for entry in fs::read_dir(dir).map_err(TrainError::io(dir))? {
        let entry = entry.map_err(TrainError::io(dir))?;
        if entry.path().is_dir() {
            classes.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    classes.sort();
    if classes.is_empty() {
        return Err(TrainError::Data {
            path: dir.to_path_buf(),
            message: "no class directories".into(),
        });
    }
    Ok(classes)
}

fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "jpg" | "jpeg" | "png"))
}

/// Decodes every `<class>/*.jpg|png` under `dir` in parallel, resizing to
/// `[height, width]` where an image differs. `classes` fixes the label order;
/// a directory not in it is an error (a test split must not invent classes).
pub fn read_image_folder(dir: &Path, classes: &[String], size: [usize; 2]) -> Result<Dataset> {
    let mut files = Vec::new();
    for class in folder_classes(dir)? {
        let Some(label) = classes.iter().position(|c| *c == class) else {
            return Err(TrainError::Data {
                path: dir.join(&class),
                message: "class directory not among the training classes".into(),
            });
        };
        let class_dir = dir.join(&class);
        let mut entries: Vec<PathBuf> = fs::read_dir(&class_dir)
            .map_err(TrainError::io(&class_dir))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| is_image(p))
            .collect();
        entries.sort();
        files.extend(entries.into_iter().map(|p| (p, label as u32)));
    }
    if files.is_empty() {
        return Err(TrainError::Data {
            path: dir.to_path_buf(),
            message: "no .jpg or .png images".into(),
        });
    }
    let decoded: Vec<Vec<u8>> = files
        .par_iter()
        .map(|(path, _)| decode_chw(path, size))
        .collect::<Result<_>>()?;
    let labels = files.iter().map(|(_, l)| *l).collect();
    Dataset::new(classes.to_vec(), size, decoded.concat(), labels)
}

/// One image file → RGB planes of exactly `[height, width]`.
fn decode_chw(path: &Path, [height, width]: [usize; 2]) -> Result<Vec<u8>> {
    let image_error = |message: String| TrainError::Image {
        path: path.to_path_buf(),
        message,
    };
    let bytes = fs::read(path).map_err(TrainError::io(path))?;
    let mut rgb = image::load_from_memory(&bytes)
        .map_err(|e| image_error(e.to_string()))?
        .into_rgb8();
    let (h, w) = (height as u32, width as u32);
    if rgb.dimensions() != (w, h) {
        rgb = image::imageops::resize(&rgb, w, h, image::imageops::FilterType::Triangle);
    }
    let plane = height * width;
    let mut chw = vec![0u8; 3 * plane];
    for (i, px) in rgb.pixels().enumerate() {
        chw[i] = px[0];
        chw[plane + i] = px[1];
        chw[2 * plane + i] = px[2];
    }
    Ok(chw)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classes(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("c{i}")).collect()
    }

    #[test]
    fn split_is_seeded_disjoint_and_complete() {
        let n = 20;
        let pixels: Vec<u8> = (0..n).flat_map(|i| vec![i as u8; 3 * 4]).collect();
        let labels = (0..n).map(|i| (i % 2) as u32).collect();
        let ds = Dataset::new(classes(2), [2, 2], pixels, labels).unwrap();
        let (train, val) = ds.split(5, 7).unwrap();
        let (train2, val2) = ds.split(5, 7).unwrap();
        assert_eq!((train.len(), val.len()), (15, 5));
        assert_eq!((&train, &val), (&train2, &val2));
        let mut seen: Vec<u8> = (0..15)
            .map(|i| train.image(i)[0])
            .chain((0..5).map(|i| val.image(i)[0]))
            .collect();
        seen.sort();
        assert_eq!(seen, (0..n as u8).collect::<Vec<_>>());
        let (_, other_val) = ds.split(5, 8).unwrap();
        assert_ne!(val, other_val);
    }

    #[test]
    fn a_label_beyond_the_class_list_is_refused() {
        assert!(Dataset::new(classes(2), [1, 1], vec![0; 3], vec![2]).is_err());
    }
}

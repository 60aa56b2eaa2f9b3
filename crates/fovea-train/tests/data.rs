//! CIFAR-10 binary and ImageFolder loading, on files written here in the real
//! formats and on the real data set when it is present.

mod common;

use std::path::Path;

use common::{shared, write_cifar};
use fovea_train::data::{self, CIFAR_RECORD, Layout};

#[test]
fn cifar_binary_batches_load_with_labels_planes_and_a_seeded_split() {
    let dir = tempfile::tempdir().unwrap();
    write_cifar(&dir.path().join("data_batch_1.bin"), 30);
    write_cifar(&dir.path().join("data_batch_2.bin"), 20);
    write_cifar(&dir.path().join("test_batch.bin"), 10);
    assert_eq!(
        data::detect(dir.path()).unwrap(),
        Layout::CifarBinary(dir.path().to_path_buf())
    );
    let splits = data::load(dir.path(), 5, 1, [32, 32]).unwrap();
    assert_eq!(splits.train.len(), 45);
    assert_eq!(splits.val.len(), 5);
    let test = splits.test.unwrap();
    assert_eq!(test.len(), 10);
    assert_eq!(test.classes()[3], "cat");
    for i in 0..10 {
        let image = test.image(i);
        assert_eq!(test.label(i), i % 10);
        assert_eq!((image[0], image[1024], image[2048]), (i as u8, 1, 2));
    }
}

#[test]
fn a_truncated_cifar_file_is_named_with_the_offset_of_the_broken_record() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data_batch_1.bin");
    write_cifar(&path, 3);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.truncate(2 * CIFAR_RECORD + 100);
    std::fs::write(&path, bytes).unwrap();
    let message = data::load(dir.path(), 1, 0, [32, 32])
        .unwrap_err()
        .to_string();
    assert!(message.contains("data_batch_1.bin"), "{message}");
    assert!(
        message.contains(&format!("offset {}", 2 * CIFAR_RECORD)),
        "{message}"
    );
}

#[test]
fn a_cifar_label_beyond_the_classes_is_named_with_its_offset() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data_batch_1.bin");
    write_cifar(&path, 3);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[CIFAR_RECORD] = 42;
    std::fs::write(&path, bytes).unwrap();
    let message = data::load(dir.path(), 1, 0, [32, 32])
        .unwrap_err()
        .to_string();
    assert!(message.contains("label 42"), "{message}");
    assert!(
        message.contains(&format!("offset {CIFAR_RECORD}")),
        "{message}"
    );
}

fn write_png(path: &Path, rgb: [u8; 3], size: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::RgbImage::from_pixel(size, size, image::Rgb(rgb))
        .save(path)
        .unwrap();
}

#[test]
fn image_folders_load_sorted_classes_and_resize_to_the_training_size() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write_png(&root.join("train/zebra/a.png"), [10, 20, 30], 8);
    write_png(&root.join("train/zebra/b.png"), [10, 20, 30], 8);
    write_png(&root.join("train/ant/a.png"), [200, 100, 0], 16);
    write_png(&root.join("train/ant/b.png"), [200, 100, 0], 8);
    write_png(&root.join("test/ant/c.png"), [200, 100, 0], 8);
    assert_eq!(
        data::detect(root).unwrap(),
        Layout::ImageFolder(root.to_path_buf())
    );
    let splits = data::load(root, 1, 0, [8, 8]).unwrap();
    assert_eq!(splits.train.classes(), ["ant", "zebra"]);
    assert_eq!(splits.train.len() + splits.val.len(), 4);
    let test = splits.test.unwrap();
    assert_eq!((test.len(), test.label(0)), (1, 0));
    let image = test.image(0);
    assert_eq!((image[0], image[64], image[128]), (200, 100, 0));
}

#[test]
fn an_undecodable_image_is_named() {
    let dir = tempfile::tempdir().unwrap();
    write_png(&dir.path().join("train/cat/ok.png"), [1, 2, 3], 4);
    std::fs::write(
        dir.path().join("train/cat/bad.jpg"),
        b"\xff\xd8\xff garbage",
    )
    .unwrap();
    let message = data::load(dir.path(), 0, 0, [4, 4])
        .unwrap_err()
        .to_string();
    assert!(message.contains("bad.jpg"), "{message}");
}

#[test]
fn a_test_class_missing_from_training_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    write_png(&dir.path().join("train/cat/a.png"), [1, 2, 3], 4);
    write_png(&dir.path().join("train/cat/b.png"), [1, 2, 3], 4);
    write_png(&dir.path().join("test/dog/a.png"), [1, 2, 3], 4);
    let message = data::load(dir.path(), 1, 0, [4, 4])
        .unwrap_err()
        .to_string();
    assert!(message.contains("dog"), "{message}");
}

#[test]
fn a_directory_of_neither_layout_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    assert!(data::detect(dir.path()).is_err());
}

#[test]
fn real_cifar_binary_files_load_with_balanced_test_labels() {
    let Some(dir) = shared("data/cifar-10-batches-bin") else {
        return;
    };
    let splits = data::load(&dir, 5000, 0, [32, 32]).unwrap();
    assert_eq!(splits.train.len() + splits.val.len(), 10_000);
    assert_eq!(splits.val.len(), 5000);
    let test = splits.test.unwrap();
    let mut counts = [0usize; 10];
    for &l in test.labels() {
        counts[l as usize] += 1;
    }
    assert_eq!(counts, [1000; 10]);
    assert_eq!(test.classes()[9], "truck");
}

#[test]
fn real_cifar_jpeg_test_folder_decodes_and_agrees_with_the_binary_copy_on_classes() {
    let Some(dir) = shared("data/cifar10/test") else {
        return;
    };
    let classes = data::folder_classes(&dir).unwrap();
    assert_eq!(classes, fovea_core::labels::Labels::cifar10().as_slice());
    let test = data::read_image_folder(&dir, &classes, [32, 32]).unwrap();
    assert_eq!(test.len(), 10_000);
    // The binary copy was decoded from these JPEGs: the mean pixel agrees.
    let Some(bin) = shared("data/cifar-10-batches-bin/test_batch.bin") else {
        return;
    };
    let binary = data::read_cifar_binary(&[bin], &classes).unwrap();
    let mean = |d: &data::Dataset| {
        (0..d.len())
            .map(|i| d.image(i).iter().map(|&v| v as f64).sum::<f64>())
            .sum::<f64>()
            / (d.len() * 3072) as f64
    };
    let (a, b) = (mean(&test), mean(&binary));
    assert!((a - b).abs() < 0.5, "{a} vs {b}");
}

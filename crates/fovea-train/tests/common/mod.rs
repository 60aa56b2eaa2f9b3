//! Helpers shared by the integration tests: the shared data directory and
//! raw little-endian f32 files.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use tch::{Device, Tensor};

/// `../shared/<sub>`, or `None` with the reason printed when this checkout
/// has none; a failure in CI (`fovea_testkit`).
pub fn shared(sub: &str) -> Option<PathBuf> {
    fovea_testkit::shared(sub)
}

/// The committed fixtures directory.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Reads a raw little-endian f32 file.
pub fn read_f32(path: &Path) -> Vec<f32> {
    std::fs::read(path)
        .unwrap()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// A `[n, 3, h, w]` tensor from a raw f32 file.
pub fn read_input(path: &Path, shape: [i64; 4]) -> Tensor {
    Tensor::from_slice(&read_f32(path)).view(shape)
}

/// Largest absolute element-wise difference.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// A tensor's values as a flat vector.
pub fn values(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(t.detach().to_device(Device::Cpu).flatten(0, -1)).unwrap()
}

/// The current values of the variable `name` of a network.
pub fn variable(net: &fovea_train::Network, name: &str) -> Vec<f32> {
    values(&net.vs.variables()[name])
}

/// Writes `n` CIFAR-10 binary records whose label is `i % 10` and whose red plane is `i`.
pub fn write_cifar(path: &Path, n: usize) {
    let mut bytes = Vec::with_capacity(n * fovea_train::data::CIFAR_RECORD);
    for i in 0..n {
        bytes.push((i % 10) as u8);
        bytes.extend(std::iter::repeat_n(i as u8, 1024));
        bytes.extend(std::iter::repeat_n(1u8, 1024));
        bytes.extend(std::iter::repeat_n(2u8, 1024));
    }
    std::fs::write(path, bytes).unwrap();
}

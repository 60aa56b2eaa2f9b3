//! The largest single allocation decoding makes, measured by a global
//! allocator that records it: a header's claims may not make fovea-vision,
//! or a decoder under it, allocate more than the bytes received and the
//! limits justify. One test per behaviour, serialised, since the record is
//! process-wide.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use fovea_core::{FoveaError, PreprocessConfig};
use fovea_vision::{ImageLimits, preprocess};

struct RecordLargest;

static LARGEST: AtomicUsize = AtomicUsize::new(0);
static SERIAL: Mutex<()> = Mutex::new(());

// SAFETY: every call is forwarded unchanged to the system allocator; the
// only addition is an atomic maximum.
unsafe impl GlobalAlloc for RecordLargest {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: RecordLargest = RecordLargest;

/// Found by fuzzing (`fuzz/fuzz_targets/preprocess.rs`): a 220-byte TIFF
/// whose ImageLength (tag 257) entry declares 6,982,025 LONG values. The
/// `tiff` crate reserved 32 bytes for each, 223 MB, before reading them.
const TIFF_CLAIMING_MILLIONS_OF_HEIGHTS: [u8; 220] = [
    0x49, 0x49, 0x2a, 0x00, 0x08, 0x00, 0x00, 0x00, 0x0a, 0x00, 0x00, 0x01, 0x04, 0x00, 0x01, 0x00,
    0x00, 0x00, 0x06, 0x00, 0x00, 0x00, 0x01, 0x01, 0x04, 0x00, 0x89, 0x89, 0x6a, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x02, 0x01, 0x03, 0x00, 0x03, 0x00,
    0x00, 0x00, 0x86, 0x00, 0x00, 0x00, 0x03, 0x01, 0x03, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x00,
    0x00, 0x00, 0x06, 0x01, 0x03, 0x3b, 0x01, 0x00, 0x00, 0x00, 0x02, 0x00, 0x3c, 0x6b, 0x86, 0x7f,
    0xde, 0xe3, 0xcc, 0x00, 0x00, 0x00, 0x8c, 0x00, 0x00, 0x00, 0x15, 0x01, 0x03, 0x00, 0x01, 0x00,
    0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x16, 0x01, 0x04, 0x00, 0x01, 0x00, 0x00, 0x00, 0x04, 0x00,
    0x00, 0x00, 0x17, 0x01, 0x04, 0x00, 0x01, 0x00, 0x00, 0x00, 0x48, 0x00, 0x00, 0x00, 0x1c, 0x01,
    0x03, 0x00, 0x01, 0x00, 0x50, 0xb4, 0x80, 0x78, 0xb4, 0x00, 0x00, 0x00, 0x00, 0x00, 0x09, 0x00,
    0x08, 0x00, 0x08, 0x00, 0x00, 0x00, 0x80, 0x28, 0x00, 0x80, 0x50, 0x00, 0x78, 0x81, 0x00, 0x80,
    0xa0, 0x00, 0x80, 0xc8, 0x00, 0x80, 0x00, 0x3c, 0x80, 0x28, 0x3c, 0x80, 0x50, 0x3c, 0x80, 0x78,
    0x3c, 0x80, 0xa0, 0x3c, 0x80, 0xc8, 0x3c, 0x80, 0x00, 0x78, 0x80, 0x28, 0x78, 0x80, 0x50, 0x78,
    0x80, 0x78, 0x78, 0x80, 0xa0, 0x78, 0x80, 0xc8, 0x78, 0x80, 0x00, 0xb4, 0x80, 0x28, 0xb4, 0x80,
    0x50, 0xb4, 0x80, 0x78, 0xb4, 0x80, 0xa0, 0xb4, 0x80, 0xc8, 0xb4, 0x80,
];

#[test]
fn a_tiff_declaring_millions_of_tag_values_is_refused_before_they_are_allocated() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    LARGEST.store(0, Ordering::Relaxed);
    let err = preprocess(
        &TIFF_CLAIMING_MILLIONS_OF_HEIGHTS,
        &PreprocessConfig::cifar10(),
        &ImageLimits::default(),
    )
    .unwrap_err();
    let largest = LARGEST.load(Ordering::Relaxed);
    assert!(
        largest < 1 << 20,
        "a 220-byte file cost a {largest}-byte allocation"
    );
    assert!(err.kind().is_client_error(), "{err:?}");
    assert!(err.to_string().contains("TIFF tag 257"), "{err}");
}

/// A big-endian BigTIFF: ImageWidth 1, then ImageLength as `values` LONG8s.
fn bigtiff_claiming_heights(values: u64) -> Vec<u8> {
    let mut file = b"MM\0\x2b\0\x08\0\0".to_vec();
    file.extend(16u64.to_be_bytes()); // first directory
    file.extend(2u64.to_be_bytes()); // two entries
    for (tag, count) in [(256u16, 1u64), (257, values)] {
        file.extend(tag.to_be_bytes());
        file.extend(16u16.to_be_bytes()); // LONG8
        file.extend(count.to_be_bytes());
        file.extend(1u64.to_be_bytes()); // the value, or an offset
    }
    file.extend(0u64.to_be_bytes()); // no next directory
    file
}

#[test]
fn a_bigtiff_declaring_millions_of_tag_values_is_refused_before_they_are_allocated() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let file = bigtiff_claiming_heights(5_000_000);
    LARGEST.store(0, Ordering::Relaxed);
    let err = preprocess(&file, &PreprocessConfig::cifar10(), &ImageLimits::default()).unwrap_err();
    let largest = LARGEST.load(Ordering::Relaxed);
    assert!(
        largest < 1 << 20,
        "a {}-byte file cost a {largest}-byte allocation",
        file.len()
    );
    assert!(err.kind().is_client_error(), "{err:?}");
    assert!(err.to_string().contains("TIFF tag 257"), "{err}");
}

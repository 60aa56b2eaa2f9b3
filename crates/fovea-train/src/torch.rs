//! The libtorch pieces `tch` does not expose, through `torch_shim.cpp`: CPU
//! autocast (mixed precision), channels-last memory format and reading a
//! PyTorch-pickled `state_dict`; plus the device and precision choices.

use std::ffi::{CStr, CString, c_char, c_void};
use std::fmt;
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use tch::{Device, Tensor};

unsafe extern "C" {
    fn fovea_free_error(error: *mut c_char);
    fn fovea_autocast_bf16(cuda: i32, enabled: i32) -> *mut c_char;
    fn fovea_channels_last(input: *const c_void, output: *mut *mut c_void) -> *mut c_char;
    fn fovea_load_state_dict(
        path: *const c_char,
        context: *mut c_void,
        each: unsafe extern "C" fn(*mut c_void, *const c_char, *mut c_void),
    ) -> *mut c_char;
}

/// Turns a message returned by the shim into a `Result`.
fn checked(error: *mut c_char) -> Result<(), String> {
    if error.is_null() {
        return Ok(());
    }
    // SAFETY: a non-null return is a NUL-terminated string the shim malloc'd.
    let message = unsafe { CStr::from_ptr(error) }
        .to_string_lossy()
        .into_owned();
    // SAFETY: freed once, by the allocator that made it.
    unsafe { fovea_free_error(error) };
    // libtorch appends a C++ backtrace after the first line; the first line says it.
    Err(message.lines().next().unwrap_or_default().to_string())
}

/// Makes glibc's malloc keep freed memory instead of handing it back to the
/// kernel. A training step allocates and frees activations of tens of MB
/// (ResNet-18, batch 256: 34 MB per bf16 feature map of the first stage); glibc
/// serves every block above 32 MiB with its own `mmap` and unmaps it on free,
/// so each step faulted in and zeroed gigabytes of fresh pages: a third of the
/// trainer's CPU time was spent in the kernel. Without mmap and trimming, the
/// freed blocks are reused: 1.33x the img/s on the 2-core machine, for about
/// 0.7 GB more peak RSS (BENCHMARKS.md, "Training throughput"). An explicit
/// `MALLOC_MMAP_MAX_` or `MALLOC_TRIM_THRESHOLD_` in the environment wins.
pub fn keep_freed_tensor_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let set_by_user = ["MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_"]
            .iter()
            .any(|name| std::env::var_os(name).is_some());
        if set_by_user {
            return;
        }
        // SAFETY: mallopt only retunes the allocator's thresholds; glibc
        // takes its own lock, so calling it while other threads allocate is sound.
        unsafe {
            libc::mallopt(libc::M_MMAP_MAX, 0);
            libc::mallopt(libc::M_TRIM_THRESHOLD, libc::c_int::MAX);
        }
    }
}

/// Arithmetic precision of training.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Precision {
    /// Everything in float32.
    Fp32,
    /// libtorch's autocast: convolutions and matrix products in bfloat16 on
    /// fp32 master weights; BatchNorm statistics, the loss and the optimiser
    /// in fp32.
    Bf16,
}

impl Precision {
    /// bf16 where the CPU has native bfloat16 dot products (AVX512-BF16 or
    /// AMX), fp32 elsewhere; bf16 on CUDA.
    pub fn default_for(device: Device) -> Self {
        if device.is_cuda() || cpu_has_native_bf16() {
            Precision::Bf16
        } else {
            Precision::Fp32
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Precision::Fp32 => "fp32",
            Precision::Bf16 => "bf16",
        })
    }
}

impl FromStr for Precision {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "fp32" => Ok(Precision::Fp32),
            "bf16" => Ok(Precision::Bf16),
            other => Err(format!("unknown precision `{other}`; use fp32 or bf16")),
        }
    }
}

fn cpu_has_native_bf16() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::fs::read_to_string("/proc/cpuinfo").is_ok_and(|info| {
            info.lines()
                .find(|l| l.starts_with("flags"))
                .is_some_and(|flags| {
                    flags
                        .split_whitespace()
                        .any(|f| f == "avx512_bf16" || f == "amx_bf16")
                })
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Parses `cpu`, `cuda` or `cuda:N`.
pub fn parse_device(s: &str) -> Result<Device, String> {
    match s {
        "cpu" => Ok(Device::Cpu),
        "cuda" => Ok(Device::Cuda(0)),
        other => other
            .strip_prefix("cuda:")
            .and_then(|n| n.parse().ok())
            .map(Device::Cuda)
            .ok_or_else(|| format!("unknown device `{other}`; use cpu, cuda or cuda:N")),
    }
}

/// Runs `f` under `precision`: for bf16, inside libtorch's autocast region
/// for `device` (with bfloat16, also on CUDA, where a float16 region would
/// need loss scaling), which casts the inputs of convolutions and matrix
/// products to bfloat16 and leaves everything else in its own type.
pub fn with_precision<T>(
    precision: Precision,
    device: Device,
    f: impl FnOnce() -> T,
) -> Result<T, String> {
    if precision == Precision::Fp32 {
        return Ok(f());
    }
    let cuda = i32::from(device.is_cuda());
    checked(unsafe { fovea_autocast_bf16(cuda, 1) })?;
    struct Leave(i32);
    impl Drop for Leave {
        fn drop(&mut self) {
            // Turning autocast off cannot fail; a message would only repeat one already reported.
            let _ = checked(unsafe { fovea_autocast_bf16(self.0, 0) });
        }
    }
    let _leave = Leave(cuda);
    Ok(f())
}

/// `t` with channels-last (NHWC) strides: oneDNN's convolutions read and
/// write that layout without reordering, and the rest of the network
/// follows the input's layout.
pub fn channels_last(t: &Tensor) -> Result<Tensor, String> {
    let mut out: *mut c_void = std::ptr::null_mut();
    checked(unsafe { fovea_channels_last(t.as_ptr() as *const c_void, &mut out) })?;
    // SAFETY: on success the shim stored a new heap tensor that we now own.
    Ok(unsafe { Tensor::from_ptr(out as *mut _) })
}

unsafe extern "C" fn collect_tensor(
    context: *mut c_void,
    name: *const c_char,
    tensor: *mut c_void,
) {
    // SAFETY: `context` is the Vec passed to fovea_load_state_dict below;
    // `name` is a NUL-terminated string valid for this call; `tensor` is a
    // new heap tensor whose ownership passes to us.
    unsafe {
        let out = &mut *(context as *mut Vec<(String, Tensor)>);
        let name = CStr::from_ptr(name).to_string_lossy().into_owned();
        out.push((name, Tensor::from_ptr(tensor as *mut _)));
    }
}

/// The string-keyed tensors of a `torch.save(state_dict)` file, in file order.
pub fn load_state_dict(path: &Path) -> Result<Vec<(String, Tensor)>, String> {
    let c_path = CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| "the path contains a NUL byte".to_string())?;
    let mut tensors: Vec<(String, Tensor)> = Vec::new();
    checked(unsafe {
        fovea_load_state_dict(
            c_path.as_ptr(),
            &mut tensors as *mut Vec<(String, Tensor)> as *mut c_void,
            collect_tensor,
        )
    })?;
    Ok(tensors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    #[test]
    fn channels_last_keeps_values_and_changes_strides() {
        let t = Tensor::arange(2 * 3 * 4 * 5, (Kind::Float, Device::Cpu)).view([2, 3, 4, 5]);
        let nhwc = channels_last(&t).unwrap();
        assert_eq!(nhwc.stride(), [60, 1, 15, 3]);
        assert!(nhwc.equal(&t));
    }

    #[test]
    fn autocast_runs_convolutions_in_bf16_and_ends_with_the_region() {
        let x = Tensor::ones([1, 2, 4, 4], (Kind::Float, Device::Cpu));
        let w = Tensor::ones([3, 2, 3, 3], (Kind::Float, Device::Cpu));
        let conv = || x.conv2d(&w, None::<Tensor>, [1, 1], [1, 1], [1, 1], 1);
        let inside = with_precision(Precision::Bf16, Device::Cpu, conv).unwrap();
        assert_eq!(inside.kind(), Kind::BFloat16);
        assert_eq!(conv().kind(), Kind::Float);
    }

    #[test]
    fn a_missing_state_dict_file_is_an_error() {
        let message = load_state_dict(Path::new("/nonexistent/model.pth")).unwrap_err();
        assert!(message.contains("open"), "{message}");
    }
}

//! `fovea doctor`: what this machine gives fovea, in one screen — the
//! inference backends and where their libraries were found, the CPU features
//! the kernels use, the thread budget, and each model of the repository with
//! whether it would load. Read-only; nothing is served.

use std::path::Path;

/// Prints the report; fails (exit 1) when a model of the repository is invalid.
pub fn run(args: &crate::cli::RepositoryArgs) -> anyhow::Result<()> {
    println!("fovea {}", env!("CARGO_PKG_VERSION"));
    println!("\nbackends");
    match fovea_engine::ort_runtime_status() {
        Ok(path) => println!(
            "  ONNX Runtime: {} ({}), used by --backend auto",
            library_version(&path).unwrap_or("version unknown"),
            path.display()
        ),
        Err(reason) => println!(
            "  ONNX Runtime: NOT FOUND: {reason}\n    fix: python3 -m venv .venv && .venv/bin/pip install onnxruntime=={} (or set ORT_DYLIB_PATH)",
            fovea_engine::ORT_WHEEL
        ),
    }
    println!("  tract: built in (pure Rust), the fallback");
    println!("\ncpu");
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |name: &str| {
        info.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
    };
    println!(
        "  {}",
        field("model name").unwrap_or_else(|| "unknown model".into())
    );
    let flags = field("flags").unwrap_or_default();
    let has = |flag: &str| flags.split_whitespace().any(|f| f == flag);
    let features: Vec<String> = [
        ("avx2", "AVX2"),
        ("avx512f", "AVX-512"),
        ("avx512_vnni", "AVX-512 VNNI (int8)"),
        ("avx512_bf16", "AVX-512 BF16"),
        ("amx_bf16", "AMX"),
    ]
    .iter()
    .map(|(flag, name)| format!("{name} {}", if has(flag) { "yes" } else { "no" }))
    .collect();
    println!("  {}", features.join(", "));
    let cores = fovea_core::available_cores();
    println!(
        "  thread budget: {cores} (serve --threads default), decode threads {} (--decode-threads default)",
        fovea_server::decode_threads_for(cores)
    );
    println!("\nmodels ({})", args.models.display());
    crate::models::list(args)
}

/// `1.32.0` from `…/libonnxruntime.so.1.32.0`.
fn library_version(path: &Path) -> Option<&str> {
    path.file_name()?
        .to_str()?
        .strip_prefix("libonnxruntime.so.")
}

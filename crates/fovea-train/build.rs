//! Compiles `src/torch_shim.cpp`: the few libtorch calls the `tch` crate does
//! not expose (CPU autocast, reading a pickled `state_dict`, channels-last),
//! against the libtorch that torch-sys found (`DEP_TCH_LIBTORCH_LIB`).

use std::env;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=src/torch_shim.cpp");
    let lib = PathBuf::from(
        env::var("DEP_TCH_LIBTORCH_LIB")
            .expect("torch-sys did not report where libtorch is (DEP_TCH_LIBTORCH_LIB)"),
    );
    let root = lib.parent().expect("libtorch's lib directory has a parent");
    let include = root.join("include");
    cc::Build::new()
        .cpp(true)
        .file("src/torch_shim.cpp")
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag_if_supported("-Wno-unused-parameter")
        .flag_if_supported("-Wno-deprecated-declarations")
        .define(
            "_GLIBCXX_USE_CXX11_ABI",
            env::var("LIBTORCH_CXX11_ABI").as_deref().unwrap_or("1"),
        )
        .warnings(false)
        .compile("fovea_torch_shim");
    println!("cargo:rustc-link-search=native={}", lib.display());
    println!("cargo:rustc-link-lib=torch_cpu");
    println!("cargo:rustc-link-lib=c10");
}

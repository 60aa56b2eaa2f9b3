//! Compiles the .proto files under proto/ with protox (pure Rust, so no system
//! protoc is needed) and generates prost messages plus tonic clients and
//! servers. The encoded descriptor set is kept for gRPC reflection.

use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "tensorflow_serving/apis/prediction_service.proto",
    "tensorflow_serving/apis/model_service.proto",
    "inference/grpc_service.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let fds = protox::compile(PROTOS, ["proto"])?;
    std::fs::write(
        out_dir.join("fovea_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure()
        // Bytes fields borrow from the received buffer instead of copying,
        // which matters for raw_input_contents and encoded images.
        .bytes(".")
        .compile_fds(fds)?;
    Ok(())
}

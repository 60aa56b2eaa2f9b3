//! Compiles proto/onnx.proto with protox (pure Rust, so no system protoc is
//! needed) into prost messages. Byte fields stay plain `Vec<u8>`: model
//! tensors are rewritten in place, not borrowed from a receive buffer.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    prost_build::Config::new().compile_fds(protox::compile(["onnx.proto"], ["proto"])?)?;
    Ok(())
}

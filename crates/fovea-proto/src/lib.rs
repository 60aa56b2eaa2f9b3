//! Wire protocols fovea speaks besides its own API: the TF Serving and KServe V2
//! (Triton) gRPC messages and services generated from `proto/`, and pure
//! conversions between those messages (and the KServe REST binary extension,
//! and TF Serving's REST JSON) and fovea tensors. No networking here:
//! fovea-server owns the endpoints. The ONNX model format is fovea-onnx's,
//! not a wire protocol.

pub mod binary;
pub mod error;
pub mod kserve;
pub mod tf;
pub mod tf_json;
pub mod value;

pub use error::ProtoError;
pub use value::{BytesTensor, TensorValue};

/// Generated TensorFlow and TF Serving messages and services.
#[allow(clippy::all, clippy::pedantic)]
pub mod tensorflow {
    include!(concat!(env!("OUT_DIR"), "/tensorflow.rs"));

    /// TensorFlow's error codes (used by TF Serving's `StatusProto`).
    pub mod error {
        include!(concat!(env!("OUT_DIR"), "/tensorflow.error.rs"));
    }

    /// TF Serving's `PredictionService` and `ModelService` with their messages.
    pub mod serving {
        include!(concat!(env!("OUT_DIR"), "/tensorflow.serving.rs"));
    }
}

/// Generated KServe V2 / Triton `inference.GRPCInferenceService` and messages.
#[allow(clippy::all, clippy::pedantic)]
pub mod inference {
    include!(concat!(env!("OUT_DIR"), "/inference.rs"));
}

/// Encoded `FileDescriptorSet` of every fovea proto, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/fovea_descriptor.bin"));

/// `type_url` of the `SignatureDefMap` packed into GetModelMetadata's `Any`.
pub const SIGNATURE_DEF_MAP_TYPE_URL: &str =
    "type.googleapis.com/tensorflow.serving.SignatureDefMap";

//! The ONNX model format (`onnx.ModelProto` and everything it holds),
//! generated from proto/onnx.proto, plus the few constructors and readers
//! that code writing or rewriting graphs needs. Decoding a model and encoding
//! it again keeps every field onnx defines.
//!
//! Its own crate, apart from the wire protocols (fovea-proto) and the serving
//! engine: the exporter and the quantiser read and write model files without
//! pulling in gRPC or inference.

mod error;

pub use error::OnnxError;

#[allow(clippy::all, clippy::pedantic)]
mod generated {
    include!(concat!(env!("OUT_DIR"), "/onnx.rs"));
}

pub use generated::*;

/// `TensorProto.DataType` values as the `i32` the messages carry.
pub mod data_type {
    use super::tensor_proto::DataType;

    /// float32.
    pub const FLOAT: i32 = DataType::Float as i32;
    /// uint8.
    pub const UINT8: i32 = DataType::Uint8 as i32;
    /// int8.
    pub const INT8: i32 = DataType::Int8 as i32;
    /// int32.
    pub const INT32: i32 = DataType::Int32 as i32;
    /// int64.
    pub const INT64: i32 = DataType::Int64 as i32;
}

/// One dimension of a graph input or output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dim {
    /// A fixed size.
    Fixed(usize),
    /// Symbolic (dynamic), e.g. the batch `N`.
    Named(&'static str),
}

fn dims_i64(dims: &[usize]) -> Vec<i64> {
    // Tensor dimensions come from in-memory buffers, far below i64::MAX.
    dims.iter().map(|&d| d as i64).collect()
}

impl TensorProto {
    /// A float32 tensor with its values in `raw_data`.
    pub fn float(name: &str, dims: &[usize], values: &[f32]) -> Self {
        Self::raw(
            name,
            dims,
            data_type::FLOAT,
            values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        )
    }

    /// An int8 tensor.
    pub fn int8(name: &str, dims: &[usize], values: &[i8]) -> Self {
        Self::raw(
            name,
            dims,
            data_type::INT8,
            values.iter().map(|v| v.to_le_bytes()[0]).collect(),
        )
    }

    /// A uint8 tensor.
    pub fn uint8(name: &str, dims: &[usize], values: &[u8]) -> Self {
        Self::raw(name, dims, data_type::UINT8, values.to_vec())
    }

    /// An int32 tensor.
    pub fn int32(name: &str, dims: &[usize], values: &[i32]) -> Self {
        Self::raw(
            name,
            dims,
            data_type::INT32,
            values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        )
    }

    fn raw(name: &str, dims: &[usize], data_type: i32, raw_data: Vec<u8>) -> Self {
        Self {
            dims: dims_i64(dims),
            data_type,
            name: name.into(),
            raw_data,
            ..Default::default()
        }
    }

    /// The dimensions as sizes; an error names the tensor when one is negative.
    pub fn shape(&self) -> Result<Vec<usize>, OnnxError> {
        self.dims
            .iter()
            .map(|&d| usize::try_from(d))
            .collect::<Result<_, _>>()
            .map_err(|_| OnnxError::InvalidShape {
                name: self.name.clone(),
                shape: self.dims.clone(),
                reason: "dimensions must be >= 0",
            })
    }

    /// The values of a float32 tensor, from `raw_data` or `float_data`.
    /// Tensors stored in external files are refused (their bytes are not
    /// in the message).
    pub fn f32_values(&self) -> Result<Vec<f32>, OnnxError> {
        if self.data_type != data_type::FLOAT {
            return Err(OnnxError::UnsupportedDtype {
                name: self.name.clone(),
                dtype: tensor_proto::DataType::try_from(self.data_type)
                    .map(|t| t.as_str_name().to_string())
                    .unwrap_or_else(|_| self.data_type.to_string()),
            });
        }
        if self.data_location == tensor_proto::DataLocation::External as i32 {
            return Err(OnnxError::InvalidData {
                name: self.name.clone(),
                reason: "stored in an external file; only self-contained models are supported"
                    .into(),
            });
        }
        let shape = self.shape()?;
        let count = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
        let values: Vec<f32> = if self.raw_data.is_empty() {
            self.float_data.clone()
        } else {
            if !self.raw_data.len().is_multiple_of(4) {
                return Err(OnnxError::InvalidData {
                    name: self.name.clone(),
                    reason: format!(
                        "raw_data of {} bytes is not whole floats",
                        self.raw_data.len()
                    ),
                });
            }
            self.raw_data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        };
        match count {
            Some(n) if n == values.len() => Ok(values),
            _ => Err(OnnxError::ElementCount {
                name: self.name.clone(),
                shape,
                expected: count.unwrap_or(usize::MAX),
                actual: values.len(),
            }),
        }
    }
}

impl AttributeProto {
    /// An `INT` attribute.
    pub fn int(name: &str, i: i64) -> Self {
        Self {
            name: name.into(),
            i,
            r#type: attribute_proto::AttributeType::Int as i32,
            ..Default::default()
        }
    }

    /// An `INTS` attribute.
    pub fn ints(name: &str, ints: &[i64]) -> Self {
        Self {
            name: name.into(),
            ints: ints.to_vec(),
            r#type: attribute_proto::AttributeType::Ints as i32,
            ..Default::default()
        }
    }

    /// A `FLOAT` attribute.
    pub fn float(name: &str, f: f32) -> Self {
        Self {
            name: name.into(),
            f,
            r#type: attribute_proto::AttributeType::Float as i32,
            ..Default::default()
        }
    }
}

impl NodeProto {
    /// The integer attribute `name`, if the node has it.
    pub fn int_attribute(&self, name: &str) -> Option<i64> {
        self.attribute
            .iter()
            .find(|a| a.name == name && a.r#type == attribute_proto::AttributeType::Int as i32)
            .map(|a| a.i)
    }
}

impl ValueInfoProto {
    /// A float tensor whose dimensions are fixed sizes or symbolic names.
    pub fn float_tensor(name: &str, dims: &[Dim]) -> Self {
        let dim = dims
            .iter()
            .map(|d| tensor_shape_proto::Dimension {
                value: Some(match d {
                    Dim::Fixed(v) => tensor_shape_proto::dimension::Value::DimValue(*v as i64),
                    Dim::Named(n) => tensor_shape_proto::dimension::Value::DimParam((*n).into()),
                }),
                ..Default::default()
            })
            .collect();
        Self::tensor(name, data_type::FLOAT, Some(TensorShapeProto { dim }))
    }

    /// A tensor of `elem_type` (a `TensorProto.DataType`) whose shape is left
    /// for the runtime to infer.
    pub fn tensor_of_unknown_shape(name: &str, elem_type: i32) -> Self {
        Self::tensor(name, elem_type, None)
    }

    fn tensor(name: &str, elem_type: i32, shape: Option<TensorShapeProto>) -> Self {
        Self {
            name: name.into(),
            r#type: Some(TypeProto {
                value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                    elem_type,
                    shape,
                })),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    #[test]
    fn a_model_round_trips_through_the_wire_format() {
        let graph = GraphProto {
            name: "g".into(),
            node: vec![NodeProto {
                input: vec!["x".into(), "w".into()],
                output: vec!["y".into()],
                op_type: "Conv".into(),
                attribute: vec![
                    AttributeProto::ints("pads", &[1, 1, 1, 1]),
                    AttributeProto::int("group", 1),
                ],
                doc_string: "kept".into(),
                ..Default::default()
            }],
            initializer: vec![TensorProto::float("w", &[1, 1, 1, 1], &[0.5])],
            input: vec![ValueInfoProto::float_tensor(
                "x",
                &[Dim::Named("N"), Dim::Fixed(1), Dim::Fixed(4), Dim::Fixed(4)],
            )],
            output: vec![ValueInfoProto::tensor_of_unknown_shape(
                "y",
                data_type::FLOAT,
            )],
            ..Default::default()
        };
        let model = ModelProto {
            ir_version: 8,
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: 17,
            }],
            metadata_props: vec![StringStringEntryProto {
                key: "k".into(),
                value: "v".into(),
            }],
            graph: Some(graph),
            ..Default::default()
        };
        let back = ModelProto::decode(model.encode_to_vec().as_slice()).unwrap();
        assert_eq!(back, model);
        let node = &back.graph.as_ref().unwrap().node[0];
        assert_eq!(node.int_attribute("group"), Some(1));
        assert_eq!(node.int_attribute("pads"), None);
    }

    #[test]
    fn an_exported_model_decodes_and_round_trips() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../fovea-engine/tests/fixtures/tiny-cifar.onnx"
        );
        let bytes = std::fs::read(path).unwrap();
        let model = ModelProto::decode(bytes.as_slice()).unwrap();
        let graph = model.graph.as_ref().unwrap();
        assert_eq!(graph.input[0].name, "input");
        assert_eq!(graph.node[0].op_type, "Conv");
        let weight = graph
            .initializer
            .iter()
            .find(|t| t.name == "conv_w")
            .unwrap();
        assert_eq!(
            weight.f32_values().unwrap().len(),
            weight.shape().unwrap().iter().product::<usize>()
        );
        let again = ModelProto::decode(model.encode_to_vec().as_slice()).unwrap();
        assert_eq!(again, model);
    }

    #[test]
    fn float_values_come_from_raw_data_or_float_data() {
        let raw = TensorProto::float("w", &[2], &[1.5, -2.0]);
        assert_eq!(raw.f32_values().unwrap(), vec![1.5, -2.0]);
        let typed = TensorProto {
            name: "w".into(),
            dims: vec![2],
            data_type: data_type::FLOAT,
            float_data: vec![3.0, 4.0],
            ..Default::default()
        };
        assert_eq!(typed.f32_values().unwrap(), vec![3.0, 4.0]);
    }

    #[test]
    fn float_values_refuse_other_types_short_data_and_external_files() {
        let int8 = TensorProto::int8("q", &[1], &[-3]);
        assert!(matches!(
            int8.f32_values(),
            Err(OnnxError::UnsupportedDtype { dtype, .. }) if dtype == "INT8"
        ));
        let short = TensorProto::float("w", &[3], &[1.0, 2.0]);
        assert!(matches!(
            short.f32_values(),
            Err(OnnxError::ElementCount {
                expected: 3,
                actual: 2,
                ..
            })
        ));
        let external = TensorProto {
            data_location: tensor_proto::DataLocation::External as i32,
            ..TensorProto::float("w", &[0], &[])
        };
        assert!(matches!(
            external.f32_values(),
            Err(OnnxError::InvalidData { .. })
        ));
    }

    #[test]
    fn int8_tensors_store_twos_complement_bytes() {
        assert_eq!(
            TensorProto::int8("q", &[3], &[-128, -1, 127]).raw_data,
            vec![0x80, 0xff, 0x7f]
        );
        assert_eq!(
            TensorProto::int32("b", &[1], &[-2]).raw_data,
            (-2i32).to_le_bytes().to_vec()
        );
    }
}

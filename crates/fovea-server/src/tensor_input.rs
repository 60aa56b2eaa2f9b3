//! From a protocol's decoded input tensors (TF Serving, KServe V2; REST and
//! gRPC alike) to what the pipeline runs: byte strings are encoded images,
//! numbers a ready tensor, and a request must carry exactly the model's one
//! input under its name.

use fovea_engine::ModelHandle;
use fovea_pipeline::{ModelInput, require_images};
use fovea_proto::TensorValue;

use crate::error::ApiError;

/// Classifies a decoded protocol tensor: byte strings are encoded images
/// (accepted only by image models), numbers a ready tensor.
pub fn model_input(model: &ModelHandle, value: TensorValue) -> Result<ModelInput, ApiError> {
    match value {
        TensorValue::F32(tensor) => Ok(ModelInput::Tensor(tensor)),
        TensorValue::Bytes(bytes) => {
            require_images(model)?;
            Ok(ModelInput::Images(bytes.items))
        }
    }
}

/// The model input of a request that must carry exactly the model's one
/// input tensor, under its name.
pub fn single_input(
    model: &ModelHandle,
    inputs: Vec<(String, TensorValue)>,
) -> Result<ModelInput, ApiError> {
    let input_name = &model.config().input.name;
    let count = inputs.len();
    let Some((name, value)) = inputs.into_iter().next().filter(|_| count == 1) else {
        return Err(ApiError::invalid(
            "wrong_input_count",
            format!(
                "model `{}` takes exactly one input `{input_name}`, got {count}",
                model.name()
            ),
        ));
    };
    if &name != input_name {
        return Err(ApiError::invalid(
            "unknown_input",
            format!(
                "model `{}` has no input `{name}`; its input is `{input_name}`",
                model.name()
            ),
        ));
    }
    model_input(model, value)
}

//! tract (pure Rust): always available, the fallback when ONNX Runtime is not.

use std::path::Path;
use std::sync::Arc;

use fovea_core::Tensor;
use tract_linalg::multithread::Executor;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::plan::SimpleState;
use tract_onnx::tract_core::runtime::RunOptions;
use tract_onnx::tract_hir::internal::DimLike;

use super::{Backend, Signature};
use crate::error::BackendError;

type Plan = TypedSimplePlan;

/// An optimised tract plan with a reusable state (its buffers survive between runs).
pub struct TractBackend {
    state: SimpleState<TypedFact, Box<dyn TypedOp>>,
    signature: Signature,
}

impl TractBackend {
    /// The name reported by [`Backend::name`].
    pub const NAME: &'static str = super::TRACT_NAME;

    /// Loads and optimises `path`, keeping the batch dimension symbolic. With
    /// `threads > 1` matrix products run on a private rayon pool of that size.
    pub fn open(path: &Path, threads: usize) -> Result<Self, BackendError> {
        let load = |e: TractError| BackendError::Load {
            path: path.to_path_buf(),
            message: format!("{e:#}"),
        };
        let model = tract_onnx::onnx()
            .model_for_path(path)
            .and_then(|m| m.into_optimized())
            .map_err(load)?;
        let signature = signature(&model, path)?;
        let executor = if threads > 1 {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .thread_name(|i| format!("tract-{i}"))
                .build()
                .map_err(|e| BackendError::Load {
                    path: path.to_path_buf(),
                    message: format!("cannot start {threads} tract threads: {e}"),
                })?;
            Some(Executor::MultiThread(Arc::new(pool)))
        } else {
            None
        };
        let options = RunOptions {
            executor,
            ..RunOptions::default()
        };
        let plan: Arc<Plan> = model.into_runnable_with_options(&options).map_err(load)?;
        let state = plan.spawn().map_err(load)?;
        Ok(Self { state, signature })
    }
}

fn signature(model: &TypedModel, path: &Path) -> Result<Signature, BackendError> {
    let unsupported = |message: String| BackendError::Unsupported {
        path: path.to_path_buf(),
        message,
    };
    let (inputs, outputs) = (model.input_outlets(), model.output_outlets());
    let (Ok([input]), Ok([output, ..])) = (inputs, outputs) else {
        return Err(unsupported(
            "fovea serves models with one input and at least one output".into(),
        ));
    };
    let describe = |outlet: OutletId| -> Result<(String, Vec<Option<usize>>), BackendError> {
        let name = model
            .outlet_label(outlet)
            .unwrap_or(&model.node(outlet.node).name)
            .to_string();
        let fact = model
            .outlet_fact(outlet)
            .map_err(|e| unsupported(format!("{e:#}")))?;
        if fact.datum_type != f32::datum_type() {
            return Err(unsupported(format!(
                "`{name}` is {:?}; fovea needs float32 tensors",
                fact.datum_type
            )));
        }
        let dims = fact.shape.iter().map(|d| d.to_usize().ok()).collect();
        Ok((name, dims))
    };
    let (input_name, input_shape) = describe(*input)?;
    let (output_name, output_shape) = describe(*output)?;
    Ok(Signature {
        input_name,
        input_shape,
        output_name,
        output_shape,
    })
}

impl Backend for TractBackend {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn run(&mut self, input: &Tensor) -> Result<Tensor, BackendError> {
        let run = |e: TractError| BackendError::Run(format!("{e:#}"));
        let tensor =
            tract_onnx::prelude::Tensor::from_shape(input.shape(), input.data()).map_err(run)?;
        let outputs = self.state.run(tvec!(tensor.into())).map_err(run)?;
        let output = outputs
            .first()
            .ok_or_else(|| BackendError::Run("the model produced no output".into()))?;
        let data = output
            .try_as_plain_ram()
            .and_then(|view| view.as_slice::<f32>().map(<[f32]>::to_vec))
            .map_err(run)?;
        Tensor::new(output.shape().to_vec(), data).map_err(|e| BackendError::Run(e.to_string()))
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }
}

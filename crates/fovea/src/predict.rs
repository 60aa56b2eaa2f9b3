//! `fovea predict`: classify image files through a running server (one
//! multipart batch request) or in-process with `--local`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use bytes::Bytes;
use fovea_engine::{Engine, ModelHandle};
use fovea_pipeline::{ImageInput, Item, Pipeline, RequestLimits};
use fovea_server::predict::{PredictAnswer, PredictResponse as Answer};

use crate::cli::PredictArgs;
use crate::local;

/// Runs `fovea predict`.
pub async fn run(args: PredictArgs) -> anyhow::Result<()> {
    if args.video.is_some() || args.frames.is_some() {
        return crate::stream_client::run(&args).await;
    }
    let answers = if args.local {
        predict_local(&args).await?
    } else {
        predict_remote(&args).await?
    };
    print_answers(&args.images, &answers, args.json)
}

fn print_answers(images: &[PathBuf], answers: &[Answer], json: bool) -> anyhow::Result<()> {
    if json {
        let value = if let [single] = answers {
            serde_json::to_string_pretty(single)?
        } else {
            serde_json::to_string_pretty(answers)?
        };
        println!("{value}");
        return Ok(());
    }
    for (path, answer) in images.iter().zip(answers) {
        println!(
            "{}: {} ({:.1}%)  [{} v{}, {:.1} ms]",
            path.display(),
            answer.class,
            answer.score * 100.0,
            answer.model,
            answer.version,
            answer.latency_ms
        );
        for p in &answer.predictions {
            println!("  {:>6.2}%  {:>4}  {}", p.score * 100.0, p.index, p.label);
        }
    }
    Ok(())
}

async fn predict_remote(args: &PredictArgs) -> anyhow::Result<Vec<Answer>> {
    let client = crate::client::http_client()?.build()?;
    let mut form = reqwest::multipart::Form::new();
    for path in &args.images {
        let bytes = tokio::fs::read(path)
            .await
            .with_context(|| format!("cannot read {}", path.display()))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        form = form.part(
            "image",
            reqwest::multipart::Part::bytes(bytes).file_name(name),
        );
    }
    let mut query = vec![("top_k", args.top_k.to_string())];
    if let Some(model) = &args.engine.model {
        query.push(("model", model.to_string_lossy().into_owned()));
    }
    let url = format!("{}/api/v1/predict", args.server.trim_end_matches('/'));
    let mut request = client.post(&url).query(&query).multipart(form);
    if let Some(authorization) = args.key.authorization() {
        request = request.header("authorization", authorization);
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    let body = crate::client::success_body(response).await?;
    Ok(match serde_json::from_slice(&body)? {
        PredictAnswer::One(answer) => vec![answer],
        PredictAnswer::Batch(answers) => answers,
    })
}

/// Runs the images through the same pipeline `fovea serve` uses, in this
/// process, one request per image.
async fn predict_local(args: &PredictArgs) -> anyhow::Result<Vec<Answer>> {
    let model_is_file = args.engine.model.as_ref().is_some_and(|p| p.is_file());
    let source = local::model_source(&args.engine, model_is_file)?;
    let engine = Engine::start(source, local::engine_options(&args.engine, 0)).await?;
    local::log_statuses(&engine);
    let pipeline = Pipeline::new(RequestLimits::default(), 1);
    pipeline.set_engine(engine.clone());
    let name = match (&args.engine.model, model_is_file) {
        (Some(name), false) => Some(name.to_string_lossy().into_owned()),
        _ => None,
    };
    let model = pipeline
        .image_model(name.as_deref(), None)
        .context("no model could be loaded (see the log above)")?;
    let top_k = pipeline.top_k(&model, Some(args.top_k))?;
    let mut answers = Vec::with_capacity(args.images.len());
    for path in &args.images {
        answers.push(predict_one(&pipeline, &model, path, top_k).await?);
    }
    engine.shutdown().await;
    Ok(answers)
}

async fn predict_one(
    pipeline: &Pipeline,
    model: &ModelHandle,
    path: &Path,
    top_k: usize,
) -> anyhow::Result<Answer> {
    let started = Instant::now();
    let bytes = tokio::fs::read(path)
        .await
        .with_context(|| format!("cannot read {}", path.display()))?;
    let image = Item::Image(ImageInput::Bytes(Bytes::from(bytes)));
    let mut classified = pipeline
        .classify(
            model,
            vec![image],
            top_k,
            Pipeline::deadline(model, started),
        )
        .await
        .with_context(|| format!("cannot classify {}", path.display()))?;
    let predictions = classified.items.pop().unwrap_or_default();
    let (class, score) = predictions
        .first()
        .map(|p| (p.label.clone(), p.score))
        .unwrap_or_default();
    Ok(Answer {
        class,
        score,
        predictions,
        model: model.name().to_string(),
        version: model.version(),
        latency_ms: started.elapsed().as_secs_f64() * 1000.0,
    })
}

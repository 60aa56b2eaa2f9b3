//! `fovea predict`: classify image files through a running server (one
//! multipart batch request) or in-process with `--local`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use fovea_engine::{Engine, ModelHandle, classify};
use fovea_vision::ImageLimits;
use serde::{Deserialize, Serialize};

use crate::cli::PredictArgs;
use crate::local;

/// One image's answer, as the server sends it.
#[derive(Debug, Serialize, Deserialize)]
struct Answer {
    class: String,
    score: f32,
    predictions: Vec<Scored>,
    model: String,
    version: u64,
    latency_ms: f64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Scored {
    label: String,
    index: usize,
    score: f32,
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Debug, Deserialize)]
struct ErrorDetail {
    code: String,
    message: String,
}

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
    let client = reqwest::Client::builder()
        .tls_backend_preconfigured(fovea_server::tls_client_config()?)
        .build()?;
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
    let response = client
        .post(&url)
        .query(&query)
        .multipart(form)
        .send()
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    let status = response.status();
    let body = response.bytes().await?;
    if !status.is_success() {
        match serde_json::from_slice::<ErrorBody>(&body) {
            Ok(e) => bail!(
                "server answered {status}: {} ({})",
                e.error.message,
                e.error.code
            ),
            Err(_) => bail!(
                "server answered {status}: {}",
                String::from_utf8_lossy(&body)
            ),
        }
    }
    if args.images.len() == 1 {
        Ok(vec![serde_json::from_slice(&body)?])
    } else {
        Ok(serde_json::from_slice(&body)?)
    }
}

async fn predict_local(args: &PredictArgs) -> anyhow::Result<Vec<Answer>> {
    let model_is_file = args.engine.model.as_ref().is_some_and(|p| p.is_file());
    let source = local::model_source(&args.engine, model_is_file)?;
    let engine = Engine::start(source, local::engine_options(&args.engine, 0)).await?;
    local::log_statuses(&engine);
    let handle = match (&args.engine.model, model_is_file) {
        (Some(name), false) => engine.model(&name.to_string_lossy(), None)?,
        _ => engine
            .default_model()
            .context("no model could be loaded (see the log above)")?,
    };
    let mut answers = Vec::with_capacity(args.images.len());
    for path in &args.images {
        answers.push(predict_one(&handle, path, args.top_k).await?);
    }
    engine.shutdown().await;
    Ok(answers)
}

async fn predict_one(handle: &ModelHandle, path: &PathBuf, top_k: usize) -> anyhow::Result<Answer> {
    let started = Instant::now();
    let bytes = tokio::fs::read(path)
        .await
        .with_context(|| format!("cannot read {}", path.display()))?;
    let spec = handle.config().preprocess.clone();
    let tensor = tokio::task::spawn_blocking(move || {
        fovea_vision::preprocess(&bytes, &spec, &ImageLimits::default())
    })
    .await?
    .with_context(|| format!("cannot preprocess {}", path.display()))?;
    let deadline = Instant::now() + Duration::from_millis(handle.config().batching.timeout_ms);
    let output = handle.infer(tensor, deadline).await?;
    let logits = output.item(0).context("the model returned no output")?;
    let predictions: Vec<Scored> =
        classify(logits, handle.labels(), top_k.min(handle.num_classes()))
            .into_iter()
            .map(|p| Scored {
                label: p.label,
                index: p.index,
                score: p.score,
            })
            .collect();
    let (class, score) = predictions
        .first()
        .map(|p| (p.label.clone(), p.score))
        .unwrap_or_default();
    Ok(Answer {
        class,
        score,
        predictions,
        model: handle.name().to_string(),
        version: handle.version(),
        latency_ms: started.elapsed().as_secs_f64() * 1000.0,
    })
}

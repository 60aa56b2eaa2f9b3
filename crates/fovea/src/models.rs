//! `fovea models list`: what a repository holds and whether each config is
//! valid, read from disk without loading any model. `fovea models reload`:
//! a running server's rescan, through its `POST /api/v1/models/reload`.

use anyhow::{Context, bail};
use fovea_core::{PreprocessConfig, Resize, TestTimeAugmentation};
use fovea_engine::ScannedModel;
use serde_json::Value;

/// Prints one block per model; fails (exit 1) when any model is invalid, so
/// the command doubles as a repository check in CI. The repository is read by
/// the engine's own scan, so this reports exactly what `fovea serve` would
/// try to serve.
pub fn list(args: &crate::cli::RepositoryArgs) -> anyhow::Result<()> {
    let root = &args.models;
    let scan = fovea_engine::scan_repository(root).map_err(anyhow::Error::msg)?;
    if scan.models.is_empty() {
        println!("{}: no models", root.display());
        return Ok(());
    }
    let mut invalid = 0;
    for model in &scan.models {
        match describe(model) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                invalid += 1;
                println!("{}\n  INVALID: {e:#}", model.name);
            }
        }
    }
    if invalid > 0 {
        bail!("{invalid} of {} models are invalid", scan.models.len());
    }
    Ok(())
}

fn describe(model: &ScannedModel) -> anyhow::Result<String> {
    let entry = model.entry.as_ref().map_err(|e| anyhow::anyhow!("{e}"))?;
    let versions = &model.version_dirs;
    if versions.is_empty() {
        bail!(
            "no version directory (expected {}/1/model.onnx)",
            model.dir.display()
        );
    }
    let served: Vec<u64> = entry.versions.iter().map(|v| v.version).collect();
    if served.is_empty() {
        bail!(
            "version_policy {:?} selects none of {versions:?}",
            entry.config.version_policy
        );
    }
    if let Some(missing) = entry.versions.iter().find_map(|v| v.missing.as_ref()) {
        bail!("version to serve has no model: {missing}");
    }
    let config = &entry.config;
    let labels = match &config.output.labels {
        Some(file) => format!("{} ({})", entry.labels.len(), file.display()),
        None => "none (indices)".to_string(),
    };
    let tta = match config.runtime.tta {
        TestTimeAugmentation::None => "",
        TestTimeAugmentation::Flip => {
            "\n  test-time augmentation: flip (each image and its mirror: twice the inference)"
        }
    };
    Ok(format!(
        "{}\n  versions: {versions:?}, serving {served:?}\n  input: {} {:?} {}\n  preprocess: {}\n  labels: {labels}\n  batching: max {} per batch, {} µs delay, queue {}{tta}\n  config: valid",
        model.name,
        config.input.name,
        config.input.shape,
        config.input.dtype,
        summarise(&config.preprocess),
        config.batching.max_batch_size,
        config.batching.max_queue_delay_us,
        config.batching.queue_capacity,
    ))
}

fn summarise(p: &PreprocessConfig) -> String {
    let resize = match p.resize {
        Resize::ShorterSide(s) => format!("shorter side {s}"),
        Resize::Exact([h, w]) => format!("exact {h}×{w}"),
        Resize::None => "no resize".to_string(),
    };
    let crop = p
        .crop
        .map(|[h, w]| format!(", centre crop {h}×{w}"))
        .unwrap_or_default();
    format!(
        "{resize}{crop}, mean {:?}, std {:?}, {:?}",
        p.mean, p.std, p.color
    )
}

/// Asks the server at `args.server` to rescan its repository and prints its
/// models afterwards. Fails (exit 1) when the server refuses, or when a
/// version could not be loaded, so a deployment script stops there; the
/// versions that version would have replaced are still serving.
pub async fn reload(args: &crate::cli::ReloadArgs) -> anyhow::Result<()> {
    let client = crate::client::http_client()?.build()?;
    let url = format!("{}/api/v1/models/reload", args.server.trim_end_matches('/'));
    let mut request = client.post(&url);
    if let Some(authorization) = args.key.authorization() {
        request = request.header("authorization", authorization);
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    let body = crate::client::success_body(response).await?;
    let listing: Value = serde_json::from_slice(&body)
        .with_context(|| format!("{url} answered something other than a model listing"))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&listing)?);
    } else {
        print!("{}", summary(&listing));
    }
    let failed = failures(&listing);
    if failed > 0 {
        bail!("{failed} model version(s) failed to load; the versions serving before still serve");
    }
    Ok(())
}

/// One line per model and one per version of the listing.
fn summary(listing: &Value) -> String {
    let mut text = String::new();
    let models = listing["models"].as_array().map_or(&[][..], Vec::as_slice);
    if models.is_empty() {
        text.push_str("no models\n");
    }
    for model in models {
        let default = match model["default_version"].as_u64() {
            Some(version) => format!("default version {version}"),
            None => "no version available".to_string(),
        };
        text.push_str(&format!(
            "{}: {default}\n",
            model["name"].as_str().unwrap_or("?")
        ));
        for version in model["versions"].as_array().map_or(&[][..], Vec::as_slice) {
            let state = version["state"].as_str().unwrap_or("?");
            let reason = version["reason"]
                .as_str()
                .map(|r| format!(": {r}"))
                .unwrap_or_default();
            text.push_str(&format!(
                "  version {} {state}{reason}\n",
                version["version"]
            ));
        }
    }
    text
}

/// Versions of the listing whose state is `failed`.
fn failures(listing: &Value) -> usize {
    listing["models"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|model| model["versions"].as_array().into_iter().flatten())
        .filter(|version| version["state"] == "failed")
        .count()
}

//! `fovea serve`: bind first (so /healthz answers while models load), start
//! the engine, hand it to the server, and shut down gracefully on SIGINT or
//! SIGTERM (at once on a second one).

use std::net::{IpAddr, SocketAddr};
use std::num::{NonZeroU32, NonZeroUsize};
use std::time::Duration;

use anyhow::Context;
use fovea_engine::Engine;
use fovea_server::models::{ModelList, VersionState};
use fovea_server::{
    AccessConfig, AppState, RequestLimits, ServerConfig, StreamLimits, UrlFetchConfig,
    decode_threads_for, telemetry, tls::TlsFiles,
};

use crate::cli::{GrpcAddr, ServeArgs};
use crate::local;

fn server_config(args: &ServeArgs) -> ServerConfig {
    ServerConfig {
        http_addr: args.http,
        limits: RequestLimits {
            max_body_bytes: args.max_body_bytes,
            max_pixels: args.max_pixels,
            max_images_per_request: args.max_images_per_request,
            ..RequestLimits::default()
        },
        url_fetch: UrlFetchConfig {
            enabled: args.allow_url_fetch,
            allow_private: args.allow_private_urls,
            timeout: Duration::from_millis(args.url_timeout_ms),
            max_bytes: args.url_max_bytes,
            ..UrlFetchConfig::default()
        },
        shutdown_timeout: Duration::from_secs(args.shutdown_timeout_secs),
        decode_threads: args
            .decode_threads
            .unwrap_or_else(|| decode_threads_for(args.model.thread_budget())),
        streams: StreamLimits {
            max_streams: args.max_streams,
            max_frame_bytes: args.max_frame_bytes,
            idle_timeout: Duration::from_secs(args.stream_idle_timeout_secs),
            max_duration: Duration::from_secs(args.max_stream_duration_secs),
            window: args.stream_window,
        },
        access: AccessConfig {
            api_keys_file: args.api_keys_file.clone(),
            public_metrics: args.public_metrics,
            public_demo: args.public_demo,
            rate_limit: NonZeroU32::new(args.rate_limit),
            rate_burst: NonZeroU32::new(args.rate_burst).unwrap_or(NonZeroU32::MIN),
            trusted_proxies: args.trusted_proxies.clone(),
            max_concurrent_requests: args.max_concurrent_requests,
            max_concurrent_per_client: NonZeroUsize::new(args.max_concurrent_per_client),
            max_connections: args.max_connections,
            header_read_timeout: Duration::from_secs(args.header_read_timeout_secs),
            body_read_timeout: Duration::from_secs(args.body_read_timeout_secs),
            grpc_max_concurrent_streams: args.grpc_max_concurrent_streams,
            tls: args
                .tls_cert
                .clone()
                .zip(args.tls_key.clone())
                .map(|(cert, key)| TlsFiles {
                    cert,
                    key,
                    client_ca: args.tls_client_ca.clone(),
                }),
            ..AccessConfig::default()
        },
    }
}

/// Caps glibc's malloc arenas at the thread budget (at least two). By default every
/// thread that allocates may get its own arena (up to eight per core), and ONNX
/// Runtime's workers, the batcher and tokio's workers each kept tens of MiB freed
/// after warm-up: serving ResNet-18 at concurrency 16, peak RSS fell from 428 to
/// 271 MiB with unchanged throughput (BENCHMARKS.md, "Memory"). Must run before the runtime
/// starts its threads. An explicit `MALLOC_ARENA_MAX` in the environment wins.
pub fn bound_malloc_arenas(threads: usize) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
            return;
        }
        let arenas = libc::c_int::try_from(threads.max(2)).unwrap_or(libc::c_int::MAX);
        // SAFETY: mallopt only retunes the allocator; it is called before any other thread exists.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, arenas);
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = threads;
}

/// The signals that stop the server: the first begins the graceful drain,
/// a second ends the process at once. Both listeners are registered once,
/// at start-up, so a second signal that comes while the first is being
/// handled is not lost (a listener sees only signals after it exists).
struct StopSignals {
    #[cfg(unix)]
    interrupt: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    terminate: Option<tokio::signal::unix::Signal>,
}

impl StopSignals {
    fn new() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let listen = |kind: SignalKind, name: &str| {
                signal(kind)
                    .map_err(|e| tracing::warn!("cannot listen for {name}: {e}"))
                    .ok()
            };
            Self {
                interrupt: listen(SignalKind::interrupt(), "SIGINT"),
                terminate: listen(SignalKind::terminate(), "SIGTERM"),
            }
        }
        #[cfg(not(unix))]
        Self {}
    }

    /// The next SIGINT or SIGTERM: its name and the exit status a process
    /// killed by it reports (128 + its number), as shells expect.
    async fn next(&mut self) -> (&'static str, i32) {
        #[cfg(unix)]
        {
            async fn on(signal: &mut Option<tokio::signal::unix::Signal>) {
                match signal {
                    Some(signal) => {
                        if signal.recv().await.is_none() {
                            std::future::pending::<()>().await;
                        }
                    }
                    None => std::future::pending::<()>().await,
                }
            }
            tokio::select! {
                () = on(&mut self.interrupt) => ("SIGINT", 130),
                () = on(&mut self.terminate) => ("SIGTERM", 143),
            }
        }
        #[cfg(not(unix))]
        {
            if let Err(e) = tokio::signal::ctrl_c().await {
                tracing::warn!("cannot listen for Ctrl-C: {e}");
                std::future::pending::<()>().await;
            }
            ("Ctrl-C", 130)
        }
    }
}

/// Fires `stop` on the first SIGINT or SIGTERM, which begins the graceful
/// drain; a second one ends the process at once with its signal's exit
/// status, for an operator who will not wait for in-flight requests (the
/// drain may last up to `--shutdown-timeout-secs`).
fn stop_on_signals(stop: tokio::sync::watch::Sender<bool>) {
    let mut signals = StopSignals::new();
    tokio::spawn(async move {
        let (first, _) = signals.next().await;
        tracing::info!(
            "{first} received: finishing in-flight requests; a second signal stops at once"
        );
        let _ = stop.send(true);
        let (second, status) = signals.next().await;
        tracing::warn!(
            "{second} received during the graceful shutdown: exiting now, in-flight requests unanswered"
        );
        std::process::exit(status);
    });
}

/// Re-reads the API keys file and the TLS files on every SIGHUP (they are
/// also re-read when they change); a bad file is logged and what is in
/// force stays.
fn reload_keys_on_sighup(state: AppState) {
    #[cfg(unix)]
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hangup = match signal(SignalKind::hangup()) {
            Ok(hangup) => hangup,
            Err(e) => {
                tracing::warn!("cannot listen for SIGHUP: {e}");
                return;
            }
        };
        while hangup.recv().await.is_some() {
            tracing::info!("SIGHUP received: reloading the API keys and TLS files");
            if let Err(e) = state.access().reload() {
                tracing::error!("not reloaded, what was in force stays: {e}");
            }
        }
    });
    #[cfg(not(unix))]
    let _ = state;
}

/// What `serve` says once the models are loaded: version, backend, models,
/// where to reach it. One log line each, so it stays readable (and valid) in
/// the JSON log format too.
fn banner(list: &ModelList, http: SocketAddr, grpc: Option<SocketAddr>, tls: bool) -> Vec<String> {
    let mut lines = vec![format!(
        "fovea {} serving on {}",
        env!("CARGO_PKG_VERSION"),
        list.backend.unwrap_or("no backend")
    )];
    for model in &list.models {
        let versions: Vec<String> = model
            .versions
            .iter()
            .map(|v| match v.state {
                VersionState::Available => v.version.to_string(),
                state => format!("{} ({})", v.version, state_name(state)),
            })
            .collect();
        let default_version = model
            .default_version
            .map_or_else(|| "none available".to_string(), |v| v.to_string());
        lines.push(format!(
            "  model {}{}: versions {}; default version {default_version}",
            model.name,
            if model.default { " (default)" } else { "" },
            versions.join(", "),
        ));
    }
    if list.models.is_empty() {
        lines.push("  no models".to_string());
    }
    let base = browsable(http, tls);
    let secured = if tls { ", TLS" } else { "" };
    lines.push(format!("  HTTP  {base}  (REST: /api/v1, /v1, /v2)"));
    lines.push(match grpc {
        Some(addr) => format!("  gRPC  {addr}  (TF Serving, KServe V2{secured})"),
        None => "  gRPC  off".to_string(),
    });
    lines.push(format!("  demo  {base}/   API  {base}/openapi.json"));
    lines
}

fn state_name(state: VersionState) -> &'static str {
    match state {
        VersionState::Loading => "loading",
        VersionState::Available => "available",
        VersionState::Failed => "failed",
        VersionState::Unloading => "unloading",
    }
}

/// `http://addr` (`https://` with TLS), with a wildcard listen address shown
/// as localhost: a browser cannot open 0.0.0.0 or [::], but the server
/// answers on loopback.
fn browsable(addr: SocketAddr, tls: bool) -> String {
    let host = match addr.ip() {
        ip if ip.is_unspecified() => "localhost".to_string(),
        IpAddr::V6(ip) => format!("[{ip}]"),
        IpAddr::V4(ip) => ip.to_string(),
    };
    let scheme = if tls { "https" } else { "http" };
    format!("{scheme}://{host}:{}", addr.port())
}

/// Runs the server until a signal; returns after in-flight requests finish.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let config = server_config(&args);
    let source = local::model_source(&args.model, true)?;
    let options = local::engine_options(&args.model, args.poll_interval_secs);

    let metrics = telemetry::install_metrics()?;
    telemetry::spawn_upkeep(metrics.clone());
    let state = AppState::new(&config)?.with_metrics(metrics);
    reload_keys_on_sighup(state.clone());
    let listener = fovea_server::bind(config.http_addr).await?;
    // One signal stops both servers: the watch fans it out.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    stop_on_signals(stop_tx);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|&stop| stop).await;
        }
    };
    let http_addr = listener.local_addr()?;
    let mut grpc_addr = None;
    let grpc = match args.grpc {
        GrpcAddr::At(addr) => {
            let listener = fovea_server::bind(addr).await?;
            grpc_addr = Some(listener.local_addr()?);
            Some(tokio::spawn(fovea_server::serve_grpc_on(
                listener,
                state.clone(),
                config.shutdown_timeout,
                stopped(),
            )))
        }
        GrpcAddr::Off => None,
    };
    let server = tokio::spawn(fovea_server::serve_on(
        listener,
        state.clone(),
        config.shutdown_timeout,
        stopped(),
    ));

    tracing::info!(backend = %options.backend, threads = options.threads, "loading models");
    let engine = Engine::start(source, options)
        .await
        .context("cannot start the inference engine")?;
    local::log_statuses(&engine);
    if engine.default_model().is_none() {
        tracing::warn!("no model could be loaded; /readyz answers 503 and predictions fail");
    }
    state.set_engine(engine.clone());
    if !engine.is_ready() {
        tracing::warn!("some models failed to load; /readyz answers 503");
    }
    for line in banner(
        &fovea_server::models::catalog(Some(&engine)),
        http_addr,
        grpc_addr,
        config.access.tls.is_some(),
    ) {
        tracing::info!("{line}");
    }

    server.await.context("server task failed")??;
    if let Some(grpc) = grpc {
        grpc.await.context("gRPC server task failed")??;
    }
    // The last server to stop drained the engine if it saw it; a shutdown
    // that raced the engine's start-up is drained here (shutdown is idempotent).
    engine.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use fovea_server::models::{ModelEntry, VersionEntry};

    use super::*;

    #[test]
    fn the_banner_names_version_backend_models_and_addresses() {
        let version = |version, state| VersionEntry {
            version,
            state,
            reason: None,
        };
        let list = ModelList {
            backend: Some("onnxruntime"),
            models: vec![ModelEntry {
                name: "resnet18-cifar10".into(),
                default: true,
                default_version: Some(6),
                versions: vec![
                    version(5, VersionState::Available),
                    version(6, VersionState::Available),
                    version(7, VersionState::Failed),
                ],
            }],
        };
        let lines = banner(
            &list,
            "0.0.0.0:8080".parse().unwrap(),
            Some("127.0.0.1:8500".parse().unwrap()),
            false,
        );
        let text = lines.join("\n");
        assert!(
            text.starts_with(&format!(
                "fovea {} serving on onnxruntime",
                env!("CARGO_PKG_VERSION")
            )),
            "{text}"
        );
        assert!(
            text.contains(
                "model resnet18-cifar10 (default): versions 5, 6, 7 (failed); default version 6"
            ),
            "{text}"
        );
        assert!(text.contains("HTTP  http://localhost:8080"), "{text}");
        assert!(text.contains("gRPC  127.0.0.1:8500"), "{text}");
        assert!(text.contains("demo  http://localhost:8080/ "), "{text}");
        let off = banner(&list, "[::1]:9000".parse().unwrap(), None, false).join("\n");
        assert!(
            off.contains("http://[::1]:9000/openapi.json") && off.contains("gRPC  off"),
            "{off}"
        );
        let tls = banner(
            &list,
            "0.0.0.0:8443".parse().unwrap(),
            Some("0.0.0.0:8500".parse().unwrap()),
            true,
        )
        .join("\n");
        assert!(
            tls.contains("HTTP  https://localhost:8443")
                && tls.contains("(TF Serving, KServe V2, TLS)"),
            "{tls}"
        );
    }
}

//! What every binary shares at run time: logging, one shutdown token fed by SIGTERM and SIGINT, and
//! the admin endpoints `/healthz`, `/readyz` and `/metrics`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::registry::Registry;
use thiserror::Error;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::util::SubscriberInitExt;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Plain,
    Json,
}

/// Logging flags every binary flattens into its CLI.
#[derive(Debug, Clone, clap::Args)]
pub struct LogArgs {
    /// Log filter, e.g. `info` or `realload=debug,kube=warn` (tracing EnvFilter syntax).
    #[arg(long, env = "REALLOAD_LOG", default_value = "info", global = true)]
    pub log_level: String,
    /// Log format.
    #[arg(long, env = "REALLOAD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Plain, global = true)]
    pub log_format: LogFormat,
}

#[derive(Debug, Error)]
pub enum RuntimeError {
    #[error("invalid log filter {filter:?}: {message}")]
    LogFilter { filter: String, message: String },
    #[error("could not install the log subscriber: {0}")]
    LogInit(String),
    #[error("could not install signal handlers: {0}")]
    Signals(#[from] std::io::Error),
}

/// Installs the global tracing subscriber. Logs go to stderr so that stdout stays clean for
/// machine-readable output (`--output json`).
pub fn init_tracing(args: &LogArgs) -> Result<(), RuntimeError> {
    let filter = EnvFilter::try_new(&args.log_level).map_err(|e| RuntimeError::LogFilter {
        filter: args.log_level.clone(),
        message: e.to_string(),
    })?;
    use std::io::IsTerminal as _;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Colour codes only for a person at a terminal, never in files or log collectors.
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let result = match args.log_format {
        LogFormat::Plain => builder.finish().try_init(),
        LogFormat::Json => builder.json().flatten_event(true).finish().try_init(),
    };
    result.map_err(|e| RuntimeError::LogInit(e.to_string()))
}

/// A token cancelled on the first SIGTERM or SIGINT. Must be called inside a Tokio runtime.
pub fn shutdown_token() -> Result<CancellationToken, RuntimeError> {
    let token = CancellationToken::new();
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let cancel = token.clone();
    tokio::spawn(async move {
        let signal = tokio::select! {
            _ = sigterm.recv() => "SIGTERM",
            _ = sigint.recv() => "SIGINT",
            _ = cancel.cancelled() => return,
        };
        tracing::info!(signal, "shutdown requested");
        cancel.cancel();
    });
    Ok(token)
}

/// Whether the process is ready to serve; cheap to clone and share.
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn set(&self, ready: bool) {
        let was = self.0.swap(ready, Ordering::SeqCst);
        if was != ready {
            tracing::info!(ready, "readiness changed");
        }
    }

    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

#[derive(Clone)]
struct AdminState {
    readiness: Readiness,
    registry: Arc<Registry>,
}

/// `/healthz` (the process answers), `/readyz` (200 only when `readiness` says so) and `/metrics`
/// (the registry in Prometheus text format). Merge it into a server's router or serve it alone.
pub fn admin_router(readiness: Readiness, registry: Arc<Registry>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(AdminState {
            readiness,
            registry,
        })
}

async fn readyz(State(state): State<AdminState>) -> Response {
    if state.readiness.is_ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

async fn metrics(State(state): State<AdminState>) -> Response {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &state.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("metrics encoding failed: {e}\n"),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use prometheus_client::metrics::counter::Counter;
    use tower::ServiceExt;

    async fn get_path(router: &Router, path: &str) -> (StatusCode, String) {
        let response = router
            .clone()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn admin_endpoints_follow_readiness_and_expose_metrics() {
        let readiness = Readiness::default();
        let mut registry = Registry::with_prefix("realload");
        let counter: Counter = Counter::default();
        registry.register("test_events", "events seen by the test", counter.clone());
        counter.inc();
        let router = admin_router(readiness.clone(), Arc::new(registry));

        assert_eq!(get_path(&router, "/healthz").await.0, StatusCode::OK);
        assert_eq!(
            get_path(&router, "/readyz").await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        readiness.set(true);
        assert_eq!(get_path(&router, "/readyz").await.0, StatusCode::OK);
        readiness.set(false);
        assert_eq!(
            get_path(&router, "/readyz").await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        let (status, body) = get_path(&router, "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("realload_test_events_total 1"), "{body}");
    }

    #[tokio::test]
    async fn sigterm_cancels_the_shutdown_token() {
        let token = shutdown_token().unwrap();
        assert!(!token.is_cancelled());
        // Signal ourselves through the kill(1) command: no unsafe code needed.
        let status = std::process::Command::new("kill")
            .args(["-TERM", &std::process::id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        tokio::time::timeout(std::time::Duration::from_secs(5), token.cancelled())
            .await
            .expect("SIGTERM did not cancel the token");
    }

    #[test]
    fn bad_log_filters_are_named() {
        let args = LogArgs {
            log_level: "realload=loud".into(),
            log_format: LogFormat::Plain,
        };
        let e = init_tracing(&args).unwrap_err();
        assert!(e.to_string().contains("realload=loud"), "{e}");
    }
}

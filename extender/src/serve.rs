//! `realload-extender serve`: wires state, watches (or a snapshot), policy reload, TLS and the
//! HTTP server together, and shuts down gracefully.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum_server::tls_rustls::RustlsConfig;
use realload_common::cli::{load_policy, load_snapshot};
use realload_common::policy::Policy;
use realload_common::reading::Quality;
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio_util::sync::CancellationToken;
use tower_http::timeout::TimeoutLayer;
use tracing::{Instrument, error, info, info_span, warn};

use crate::cli::ServeArgs;
use crate::metrics::{MetricQuality, Metrics, ResultLabel};
use crate::server::{AppState, Binder, router};
use crate::state::{Clock, State};
use crate::watch::{spawn_node_watch, spawn_pod_watch};

/// Builds a kube client from the environment (in-cluster or KUBECONFIG). Retries of 429/503/504
/// stay on: the extender only reads, and a Binding is idempotent enough to retry.
pub async fn kube_client() -> anyhow::Result<kube::Client> {
    let config = kube::Config::infer()
        .await
        .context("no Kubernetes configuration (in-cluster or KUBECONFIG)")?;
    kube::Client::try_from(config).context("building the Kubernetes client")
}

/// Sets up state from a snapshot or from live watches.
pub async fn build_state(
    policy: Policy,
    snapshot: Option<&Path>,
    now: Option<jiff::Timestamp>,
    shutdown: &CancellationToken,
) -> anyhow::Result<(Arc<State>, Option<kube::Client>)> {
    let clock = now.map_or(Clock::System, Clock::Fixed);
    let state = Arc::new(State::new(policy, clock, Metrics::new()));
    match snapshot {
        Some(path) => {
            let snap = load_snapshot(path)?;
            state.load_snapshot(&snap.nodes, &snap.pods);
            info!(nodes = snap.nodes.len(), pods = snap.pods.len(), snapshot = %path.display(), "loaded snapshot");
            Ok((state, None))
        }
        None => {
            let client = kube_client().await?;
            spawn_node_watch(state.clone(), client.clone(), shutdown.clone());
            spawn_pod_watch(state.clone(), client.clone(), shutdown.clone());
            Ok((state, Some(client)))
        }
    }
}

/// Re-reads the policy file when its content changes; an invalid file is rejected and the
/// policy in force stays.
pub fn spawn_policy_reload(
    state: Arc<State>,
    path: PathBuf,
    period: Duration,
    shutdown: CancellationToken,
) {
    // Read now, not when the task first runs: a change in between must not be missed.
    let mut last = std::fs::read(&path).ok();
    tokio::spawn(
        async move {
            let mut tick = tokio::time::interval(period);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let current = match std::fs::read(&path) {
                    Ok(bytes) => bytes,
                    Err(e) => {
                        warn!(path = %path.display(), error = %e, "policy file unreadable; keeping the policy in force");
                        continue;
                    }
                };
                if last.as_deref() == Some(current.as_slice()) {
                    continue;
                }
                last = Some(current.clone());
                let result = String::from_utf8(current)
                    .map_err(|e| e.to_string())
                    .and_then(|text| Policy::from_yaml(&text).map_err(|e| e.to_string()));
                match result {
                    Ok(policy) => {
                        state.set_policy(policy);
                        state.metrics.policy_reloads.get_or_create(&ResultLabel { result: "ok".into() }).inc();
                        info!(path = %path.display(), "policy reloaded");
                    }
                    Err(e) => {
                        state.metrics.policy_reloads.get_or_create(&ResultLabel { result: "invalid".into() }).inc();
                        error!(path = %path.display(), error = %e, "new policy rejected; keeping the policy in force");
                    }
                }
            }
        }
        .instrument(info_span!("policy_reload")),
    );
}

/// Refreshes the gauges (nodes by reading quality, ledger size) and prunes the ledger.
pub fn housekeeping(state: &State) {
    let ledger = state.prune();
    state.metrics.ledger_pods.set(ledger as i64);
    let policy = state.policy();
    let now = state.clock.now();
    let index = state.index();
    let mut counts = std::collections::HashMap::<(usize, Quality), i64>::new();
    for view in index.nodes.values() {
        for (i, (spec, r)) in policy.metrics.iter().zip(&view.readings).enumerate() {
            *counts
                .entry((i, r.classify(now, spec.max_age, spec.floor).quality()))
                .or_default() += 1;
        }
    }
    drop(index);
    for (i, spec) in policy.metrics.iter().enumerate() {
        for q in Quality::ALL {
            state
                .metrics
                .nodes_by_quality
                .get_or_create(&MetricQuality {
                    metric: spec.name.clone(),
                    quality: q.as_str().into(),
                })
                .set(counts.get(&(i, q)).copied().unwrap_or(0));
        }
    }
}

fn read_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("reading certificates from {}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing certificates in {}", path.display()))?;
    anyhow::ensure!(
        !certs.is_empty(),
        "{} holds no PEM certificate",
        path.display()
    );
    Ok(certs)
}

/// The rustls server configuration: our certificate, and client-certificate verification
/// against `client_ca` when given (so that only kube-scheduler can call).
pub fn tls_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = read_certs(cert)?;
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("reading the private key {}", key.display()))?;
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for c in read_certs(ca)? {
                roots
                    .add(c)
                    .with_context(|| format!("adding a CA certificate from {}", ca.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .context("building the client-certificate verifier")?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .context("certificate and key do not match")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn files_fingerprint(paths: &[PathBuf]) -> Vec<Option<Vec<u8>>> {
    paths.iter().map(|p| std::fs::read(p).ok()).collect()
}

/// Reloads the certificate (and CA) when the files change, e.g. when cert-manager rotates them.
fn spawn_tls_reload(
    config: RustlsConfig,
    cert: PathBuf,
    key: PathBuf,
    ca: Option<PathBuf>,
    shutdown: CancellationToken,
) {
    let mut watched = vec![cert.clone(), key.clone()];
    watched.extend(ca.clone());
    // Read now, not when the task first runs: a change in between must not be missed.
    let mut last = files_fingerprint(&watched);
    tokio::spawn(
        async move {
            let mut tick = tokio::time::interval(Duration::from_secs(10));
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let now = files_fingerprint(&watched);
                if now == last {
                    continue;
                }
                last = now;
                match tls_config(&cert, &key, ca.as_deref()) {
                    Ok(c) => {
                        config.reload_from_config(c);
                        info!("TLS certificate reloaded");
                    }
                    Err(e) => error!(error = %format!("{e:#}"), "new TLS files rejected; keeping the certificate in force"),
                }
            }
        }
        .instrument(info_span!("tls_reload")),
    );
}

const SHUTDOWN_GRACE: Duration = Duration::from_secs(25);

/// Connections that do not send their request headers in time are closed.
fn limit_header_reads(
    builder: &mut hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor>,
    timeout: Duration,
) {
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(timeout);
}

pub async fn run(args: &ServeArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let policy = load_policy(args.policy.policy.as_deref())?;
    let (state, client) = build_state(
        policy,
        args.snapshot.snapshot.as_deref(),
        args.snapshot.now,
        &shutdown,
    )
    .await?;
    if let Some(path) = &args.policy.policy {
        spawn_policy_reload(
            state.clone(),
            path.clone(),
            Duration::from_secs(2),
            shutdown.clone(),
        );
    }
    {
        let state = state.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tick.tick() => housekeeping(&state),
                }
            }
        });
    }
    let app = AppState {
        state: state.clone(),
        body_limit: args.body_limit,
        binder: args.bind.then(|| Binder {
            client: client.clone(),
        }),
    };
    #[allow(deprecated)] // TimeoutLayer::new is the plain 408 timeout we want
    let router = router(app, &args.path_prefix).layer(TimeoutLayer::new(args.request_timeout));

    let handle = axum_server::Handle::new();
    {
        let handle = handle.clone();
        let state = state.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            shutdown.cancelled().await;
            state.readiness.set(false);
            info!("shutting down: finishing in-flight requests");
            handle.graceful_shutdown(Some(SHUTDOWN_GRACE));
        });
    }
    {
        let handle = handle.clone();
        tokio::spawn(async move {
            if let Some(addr) = handle.listening().await {
                info!(%addr, "serving the extender API");
            }
        });
    }
    let service = router.into_make_service();
    match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            let config =
                RustlsConfig::from_config(tls_config(cert, key, args.client_ca.as_deref())?);
            spawn_tls_reload(
                config.clone(),
                cert.clone(),
                key.clone(),
                args.client_ca.clone(),
                shutdown.clone(),
            );
            // TCP_NODELAY: a response written in pieces must not wait on the client's delayed ACK.
            let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(config)
                .acceptor(axum_server::accept::NoDelayAcceptor::new());
            let mut server = axum_server::bind(args.listen)
                .acceptor(acceptor)
                .handle(handle);
            limit_header_reads(server.http_builder(), args.header_read_timeout);
            server.serve(service).await.context("extender server")?;
        }
        _ => {
            let mut server = axum_server::bind(args.listen)
                .acceptor(axum_server::accept::NoDelayAcceptor::new())
                .handle(handle);
            limit_header_reads(server.http_builder(), args.header_read_timeout);
            server.serve(service).await.context("extender server")?;
        }
    }
    info!("extender stopped");
    Ok(())
}

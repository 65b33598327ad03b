//! `realload-extender serve`: wires state, watches (or a snapshot), policy reload, TLS and the
//! two HTTP listeners together, and shuts down gracefully.
//!
//! - The API listener (`--listen`) serves only what kube-scheduler calls, behind client-certificate
//!   auth when `--client-ca` is set.
//! - The admin listener (`--admin-listen`) serves probes, metrics and `/debug/nodes` to the
//!   kubelet, Prometheus and operators, who present no client certificate.
//!
//! On SIGTERM readiness goes false at once, the API keeps answering for `--drain-period` (until
//! the Service has stopped sending requests here), then in-flight requests finish and the
//! process exits.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use realload_common::cli::{load_policy, load_snapshot};
use realload_common::client::{self, Throttled};
use realload_common::policy::Policy;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tower_http::timeout::TimeoutLayer;
use tracing::{Instrument, error, info, info_span};

use crate::cli::ServeArgs;
use crate::limits;
use crate::metrics::Metrics;
use crate::server::{AppState, Binder, admin_router, api_router, with_not_found};
use crate::state::{Clock, State};
use crate::tls::{TlsFiles, reloading_config};
use crate::watch::{spawn_node_watch, spawn_pod_watch, spawn_usage_watch};

/// The state and the tasks that keep it current.
pub struct Running {
    pub state: Arc<State>,
    pub client: Option<kube::Client>,
    /// Background tasks that must run as long as the process serves.
    pub tasks: Vec<(&'static str, JoinHandle<()>)>,
}

/// Sets up state from a snapshot or from live watches.
pub async fn build_state(
    policy: Policy,
    snapshot: Option<&Path>,
    now: Option<jiff::Timestamp>,
    namespace: &str,
    shutdown: &CancellationToken,
) -> anyhow::Result<Running> {
    let clock = now.map_or(Clock::System, Clock::Fixed);
    let state = Arc::new(State::new(policy, clock, Metrics::new()));
    match snapshot {
        Some(path) => {
            let snap = load_snapshot(path)?;
            // the usage ConfigMap is looked for in realload's namespace, as a live run watches it
            let ours: Vec<_> = snap
                .config_maps
                .iter()
                .filter(|c| c.metadata.namespace.as_deref() == Some(namespace))
                .cloned()
                .collect();
            state.load_snapshot(&snap.nodes, &snap.pods, &ours);
            info!(nodes = snap.nodes.len(), pods = snap.pods.len(), snapshot = %path.display(), "loaded snapshot");
            Ok(Running {
                state,
                client: None,
                tasks: Vec::new(),
            })
        }
        None => {
            let client = client::build(Throttled::Retry).await?;
            let usage = &state.policy().workload_usage;
            let mut tasks = vec![
                (
                    "node watch",
                    spawn_node_watch(state.clone(), client.clone(), shutdown.clone()),
                ),
                (
                    "pod watch",
                    spawn_pod_watch(state.clone(), client.clone(), shutdown.clone()),
                ),
            ];
            if usage.enabled {
                tasks.push((
                    "workload usage watch",
                    spawn_usage_watch(
                        state.clone(),
                        client.clone(),
                        namespace,
                        &usage.config_map,
                        shutdown.clone(),
                    ),
                ));
            }
            Ok(Running {
                state,
                client: Some(client),
                tasks,
            })
        }
    }
}

/// Re-reads the policy file when its content changes; an invalid file is rejected and the
/// policy in force stays.
pub fn spawn_policy_reload(
    state: Arc<State>,
    path: std::path::PathBuf,
    period: Duration,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    let reloads = state.metrics.policy_reloads.clone();
    crate::reload::spawn_policy_reload(path, period, shutdown, reloads, move |policy| {
        state.set_policy(policy)
    })
}

/// Housekeeping every 5 s, and at once whenever the index (re)syncs, so the gauges never show
/// an empty cluster after start.
fn spawn_housekeeping(state: Arc<State>, shutdown: CancellationToken) -> JoinHandle<()> {
    tokio::spawn(
        async move {
            let mut synced = state.index.subscribe_synced();
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tick.tick() => {}
                    changed = synced.changed() => {
                        if changed.is_err() {
                            return;
                        }
                    }
                }
                state.housekeep();
            }
        }
        .instrument(info_span!("housekeeping")),
    )
}

/// Watches the background tasks: one that ends while the process is not shutting down (a
/// panic included) is logged and takes readiness down for good, since the index would no longer
/// follow the cluster.
fn spawn_task_monitor(
    state: Arc<State>,
    tasks: Vec<(&'static str, JoinHandle<()>)>,
    shutdown: CancellationToken,
) {
    for (name, handle) in tasks {
        let state = state.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let result = handle.await;
            if shutdown.is_cancelled() {
                return;
            }
            match result {
                Ok(()) => error!(
                    task = name,
                    "background task ended; marking the extender unready"
                ),
                Err(e) => {
                    error!(task = name, error = %e, "background task died; marking the extender unready")
                }
            }
            state.mark_broken();
        });
    }
}

/// HTTP/1 connections that do not send their request headers in time are closed; HTTP/2
/// connections are pinged and closed when the peer stops answering, with a bounded number of
/// streams each.
fn limit_connections(
    builder: &mut hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor>,
    timeout: Duration,
) {
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(timeout);
    builder
        .http2()
        .timer(hyper_util::rt::TokioTimer::new())
        .keep_alive_interval(Some(limits::H2_KEEP_ALIVE))
        .keep_alive_timeout(limits::H2_PING_TIMEOUT)
        .max_concurrent_streams(limits::H2_MAX_STREAMS);
}

/// Serves `router` on `addr`, over TLS when `tls` is given, until `handle` shuts it down.
async fn serve_on(
    what: &'static str,
    addr: SocketAddr,
    router: axum::Router,
    tls: Option<axum_server::tls_rustls::RustlsConfig>,
    handle: axum_server::Handle<SocketAddr>,
    header_read_timeout: Duration,
    max_connections: usize,
) -> anyhow::Result<()> {
    {
        let handle = handle.clone();
        tokio::spawn(async move {
            if let Some(addr) = handle.listening().await {
                info!(%addr, listener = what, "listening");
            }
        });
    }
    let service = router.into_make_service();
    // TCP_NODELAY: a response written in pieces must not wait on the client's delayed ACK.
    let nodelay = axum_server::accept::NoDelayAcceptor::new();
    match tls {
        Some(config) => {
            let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(config).acceptor(nodelay);
            let acceptor = limits::CappedAcceptor::new(acceptor, max_connections, what);
            let mut server = axum_server::bind(addr).acceptor(acceptor).handle(handle);
            limit_connections(server.http_builder(), header_read_timeout);
            server.serve(service).await
        }
        None => {
            let acceptor = limits::CappedAcceptor::new(nodelay, max_connections, what);
            let mut server = axum_server::bind(addr).acceptor(acceptor).handle(handle);
            limit_connections(server.http_builder(), header_read_timeout);
            server.serve(service).await
        }
    }
    .with_context(|| format!("{what} listener on {addr}"))
}

/// How long in-flight requests get to finish after the drain period.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

pub async fn run(args: &ServeArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let policy = load_policy(args.policy.policy.as_deref())?;
    // The servers stop on their own schedule (after the drain period), not at the signal.
    let stop_serving = CancellationToken::new();
    let Running {
        state,
        client,
        mut tasks,
    } = build_state(
        policy,
        args.snapshot.snapshot.as_deref(),
        args.snapshot.now,
        &args.namespace,
        &stop_serving,
    )
    .await?;
    if let Some(path) = &args.policy.policy {
        tasks.push((
            "policy reload",
            spawn_policy_reload(
                state.clone(),
                path.clone(),
                Duration::from_secs(2),
                stop_serving.clone(),
            ),
        ));
    }
    tasks.push((
        "housekeeping",
        spawn_housekeeping(state.clone(), stop_serving.clone()),
    ));
    let api_tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            let files = TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: args.client_ca.clone(),
            };
            let (config, task) = reloading_config(&files, stop_serving.clone())?;
            tasks.push(("tls reload", task));
            let admin = if args.admin_tls {
                let files = TlsFiles {
                    client_ca: None,
                    ..files
                };
                let (config, task) = reloading_config(&files, stop_serving.clone())?;
                tasks.push(("admin tls reload", task));
                Some(config)
            } else {
                None
            };
            Some((config, admin))
        }
        _ => None,
    };
    spawn_task_monitor(state.clone(), tasks, shutdown.clone());
    let app = AppState {
        state: state.clone(),
        body_limit: args.body_limit,
        binder: args.bind.then(|| Binder {
            client: client.clone(),
        }),
    };
    #[allow(deprecated)] // TimeoutLayer::new is the plain 408 timeout we want
    let api = with_not_found(api_router(app.clone(), &args.path_prefix))
        .layer(TimeoutLayer::new(args.request_timeout))
        .layer(axum::middleware::from_fn_with_state(
            limits::InFlightLimit::new(usize::try_from(args.max_in_flight).unwrap_or(usize::MAX)),
            limits::shed_over_limit,
        ));
    let admin = with_not_found(admin_router(app));

    let api_handle = axum_server::Handle::new();
    let admin_handle = axum_server::Handle::new();
    {
        let (api_handle, admin_handle) = (api_handle.clone(), admin_handle.clone());
        let state = state.clone();
        let shutdown = shutdown.clone();
        let drain = args.drain_period;
        let stop_serving = stop_serving.clone();
        tokio::spawn(async move {
            shutdown.cancelled().await;
            state.start_draining();
            info!(drain = ?drain, "shutting down: unready now, still answering during the drain period");
            tokio::time::sleep(drain).await;
            info!("drain period over: finishing in-flight requests");
            api_handle.graceful_shutdown(Some(SHUTDOWN_GRACE));
            admin_handle.graceful_shutdown(Some(SHUTDOWN_GRACE));
            stop_serving.cancel();
        });
    }
    let (api_tls, admin_tls) = match api_tls {
        Some((api, admin)) => (Some(api), admin),
        None => (None, None),
    };
    let caps =
        limits::fit_connection_caps(usize::try_from(args.max_connections).unwrap_or(usize::MAX));
    let api_server = serve_on(
        "api",
        args.listen,
        api,
        api_tls,
        api_handle,
        args.header_read_timeout,
        caps.api,
    );
    let admin_server = serve_on(
        "admin",
        args.admin_listen,
        admin,
        admin_tls,
        admin_handle,
        args.header_read_timeout,
        caps.admin,
    );
    let result = tokio::try_join!(api_server, admin_server);
    stop_serving.cancel();
    result?;
    info!("extender stopped");
    Ok(())
}

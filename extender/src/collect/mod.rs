//! `realload-extender collect`: node utilisation from Prometheus (or straight from node-exporter)
//! into Node annotations, writing only readings it can trust.

pub mod exporter;
pub mod lease;
pub mod plan;
pub mod prometheus;
pub mod usage;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::{ConfigMap, Node};
use kube::Api;
use kube::api::{Patch, PatchParams};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use realload_common::cli::{OutputFormat, load_policy};
use realload_common::client::{self, Throttled};
use realload_common::objects::NodeView;
use realload_common::policy::Policy;
use realload_common::runtime::{Readiness, admin_router};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};

use crate::cli::{CollectArgs, Source};
use crate::state::Clock;
use crate::watch::NodeStore;
use exporter::ExporterSource;
use lease::LeaderElector;
use plan::{MetricResult, Plan, SkipReason};
use prometheus::PrometheusClient;

/// The field manager the collector's patches are recorded under.
pub const FIELD_MANAGER: &str = "realload-collector";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MetricLabel {
    pub metric: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SkipLabel {
    pub metric: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PatchResult {
    pub result: String,
}

#[derive(Clone)]
pub struct CollectorMetrics {
    pub registry: Arc<Registry>,
    pub coverage: Family<MetricLabel, Gauge>,
    pub query_seconds: Family<MetricLabel, Histogram>,
    pub patches: Family<PatchResult, Counter>,
    pub suppressed: Counter,
    pub skips: Family<SkipLabel, Counter>,
    pub leader: Gauge,
    pub cycles: Counter,
    pub policy_reloads: Family<crate::metrics::ResultLabel, Counter>,
    pub usage_publishes: Family<PatchResult, Counter>,
    pub usage_workloads: Gauge,
    pub usage_published: Gauge,
}

impl CollectorMetrics {
    pub fn new() -> Self {
        let mut r = Registry::with_prefix("realload_collector");
        let coverage = Family::<MetricLabel, Gauge>::default();
        r.register(
            "coverage_nodes",
            "Nodes with a valid reading in the last cycle, by metric",
            coverage.clone(),
        );
        let query_seconds = Family::<MetricLabel, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ])
        });
        r.register(
            "query_duration_seconds",
            "Time to get one metric for all nodes",
            query_seconds.clone(),
        );
        let patches = Family::<PatchResult, Counter>::default();
        r.register(
            "patches",
            "Node patches by result (sent, failed)",
            patches.clone(),
        );
        let suppressed = Counter::default();
        r.register(
            "writes_suppressed",
            "Valid readings not written: within the deadband and still fresh",
            suppressed.clone(),
        );
        let skips = Family::<SkipLabel, Counter>::default();
        r.register(
            "skips",
            "Readings not written, by metric and reason",
            skips.clone(),
        );
        let leader = Gauge::default();
        r.register(
            "leader",
            "Whether this replica holds the lease and writes (1) or stands by (0)",
            leader.clone(),
        );
        let cycles = Counter::default();
        r.register("cycles", "Collection cycles run", cycles.clone());
        let policy_reloads = Family::<crate::metrics::ResultLabel, Counter>::default();
        r.register(
            "policy_reloads",
            "Policy file reloads by result",
            policy_reloads.clone(),
        );
        let usage_publishes = Family::<PatchResult, Counter>::default();
        r.register(
            "workload_usage_publishes",
            "Learned workload usage tables by result (sent; failed: a query, the pod list or the write failed, nothing published)",
            usage_publishes.clone(),
        );
        let usage_workloads = Gauge::default();
        r.register(
            "workload_usage_workloads",
            "Workloads in the last published usage table",
            usage_workloads.clone(),
        );
        let usage_published = Gauge::default();
        r.register(
            "workload_usage_published_timestamp_seconds",
            "When the last usage table was published (0: never)",
            usage_published.clone(),
        );
        CollectorMetrics {
            usage_publishes,
            usage_workloads,
            usage_published,
            registry: Arc::new(r),
            coverage,
            query_seconds,
            patches,
            suppressed,
            skips,
            leader,
            cycles,
            policy_reloads,
        }
    }

    /// Creates every series at zero for the policy's metrics, so each family is exported from
    /// the first scrape rather than after its first event.
    pub fn prime(&self, policy: &realload_common::policy::Policy) {
        for result in ["sent", "failed"] {
            let _ = self.patches.get_or_create(&PatchResult {
                result: result.into(),
            });
            let _ = self.usage_publishes.get_or_create(&PatchResult {
                result: result.into(),
            });
        }
        for result in ["ok", "invalid"] {
            let _ = self
                .policy_reloads
                .get_or_create(&crate::metrics::ResultLabel {
                    result: result.into(),
                });
        }
        for spec in &policy.metrics {
            let metric = MetricLabel {
                metric: spec.name.clone(),
            };
            let _ = self.coverage.get_or_create(&metric);
            let _ = self.query_seconds.get_or_create(&metric);
            for reason in plan::SkipReason::ALL {
                let _ = self.skips.get_or_create(&SkipLabel {
                    metric: spec.name.clone(),
                    reason: reason.as_str().into(),
                });
            }
        }
    }

    fn record(&self, plan: &Plan) {
        for (metric, n) in &plan.coverage {
            self.coverage
                .get_or_create(&MetricLabel {
                    metric: metric.clone(),
                })
                .set(*n as i64);
        }
        self.suppressed.inc_by(plan.suppressed as u64);
        for s in &plan.skipped {
            self.skips
                .get_or_create(&SkipLabel {
                    metric: s.metric.clone(),
                    reason: s.reason.as_str().into(),
                })
                .inc();
        }
        self.cycles.inc();
    }
}

impl Default for CollectorMetrics {
    fn default() -> Self {
        Self::new()
    }
}

enum SourceImpl {
    Prometheus(PrometheusClient),
    Exporter(ExporterSource),
}

/// Gets this cycle's results for the metrics that are due.
async fn collect_results(
    source: &SourceImpl,
    policy: &Policy,
    nodes: &[NodeView],
    due: &[String],
    now: Timestamp,
    metrics: &CollectorMetrics,
) -> BTreeMap<String, MetricResult> {
    let mut results = BTreeMap::new();
    if let SourceImpl::Exporter(e) = source {
        e.scrape(nodes).await;
    }
    for spec in policy.metrics.iter().filter(|m| due.contains(&m.name)) {
        let started = Instant::now();
        let result = match source {
            SourceImpl::Prometheus(p) => {
                p.query(&spec.query, now, &policy.node_identity.label).await
            }
            SourceImpl::Exporter(e) => e.result(&spec.name, nodes),
        };
        metrics
            .query_seconds
            .get_or_create(&MetricLabel {
                metric: spec.name.clone(),
            })
            .observe(started.elapsed().as_secs_f64());
        results.insert(spec.name.clone(), result);
    }
    results
}

/// One collection cycle: the due metrics' results, then the plan against the nodes' current
/// annotations, with the next cycle one period away.
async fn cycle(
    source: &SourceImpl,
    policy: &Policy,
    nodes: &[NodeView],
    due: &[String],
    now: Timestamp,
    metrics: &CollectorMetrics,
) -> Plan {
    let results = collect_results(source, policy, nodes, due, now, metrics).await;
    plan::plan(policy, nodes, &current_annotations(nodes), &results, now)
}

/// Sends the plan's patches: one JSON merge patch per node touching only its reading keys, at
/// most `qps` per second. Returns how many were sent.
pub async fn write_patches(
    api: &Api<Node>,
    plan: &Plan,
    qps: f64,
    metrics: &CollectorMetrics,
    shutdown: &CancellationToken,
) -> usize {
    let gap = if qps > 0.0 {
        Duration::from_secs_f64(1.0 / qps)
    } else {
        Duration::ZERO
    };
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PatchParams::default()
    };
    let mut sent = 0;
    for (i, p) in plan.patches.iter().enumerate() {
        if shutdown.is_cancelled() {
            break;
        }
        if i > 0 && !gap.is_zero() {
            tokio::time::sleep(gap).await;
        }
        let body = serde_json::json!({"metadata": {"annotations": p.annotations}});
        match api.patch(&p.node, &params, &Patch::Merge(&body)).await {
            Ok(_) => {
                sent += 1;
                metrics
                    .patches
                    .get_or_create(&PatchResult {
                        result: "sent".into(),
                    })
                    .inc();
            }
            Err(e) => {
                warn!(node = %p.node, error = %e, "annotation patch failed");
                metrics
                    .patches
                    .get_or_create(&PatchResult {
                        result: "failed".into(),
                    })
                    .inc();
            }
        }
    }
    sent
}

fn current_annotations(nodes: &[NodeView]) -> HashMap<String, BTreeMap<String, String>> {
    nodes
        .iter()
        .map(|n| (n.name.clone(), n.annotations.clone()))
        .collect()
}

fn print_plan(plan: &Plan, output: OutputFormat, written: bool) -> anyhow::Result<()> {
    use std::fmt::Write as _;
    let mut text = String::new();
    match output {
        OutputFormat::Json => text = serde_json::to_string_pretty(plan)?,
        OutputFormat::Table => {
            let verb = if written { "patched" } else { "would patch" };
            writeln!(
                text,
                "{verb} {} node(s); {} reading(s) within the deadband not rewritten; {} reading(s) skipped",
                plan.patches.len(),
                plan.suppressed,
                plan.skipped.len()
            )?;
            for p in &plan.patches {
                for (k, v) in &p.annotations {
                    writeln!(text, "  {}  {k}={v}", p.node)?;
                }
            }
            let mut by_reason: BTreeMap<(&str, &str), Vec<&str>> = BTreeMap::new();
            for s in &plan.skipped {
                by_reason
                    .entry((s.metric.as_str(), s.reason.as_str()))
                    .or_default()
                    .push(&s.node);
            }
            for ((metric, reason), nodes) in by_reason {
                writeln!(text, "  skipped {metric} ({reason}): {}", nodes.join(", "))?;
            }
        }
    }
    realload_common::cli::write_stdout(&text).context("writing to stdout")
}

fn build_source(args: &CollectArgs) -> anyhow::Result<SourceImpl> {
    Ok(match args.source {
        Source::Prometheus => {
            let Some(url) = &args.prometheus_url else {
                bail!("--prometheus-url is required with --source prometheus");
            };
            let mut client = PrometheusClient::new(
                url,
                args.bearer_token_file.as_deref(),
                args.prometheus_ca.as_deref(),
                args.query_timeout,
            )?;
            client.attempts = args.query_attempts.max(1);
            SourceImpl::Prometheus(client)
        }
        Source::NodeExporter => {
            let mut e = ExporterSource::new(
                args.node_exporter_port,
                args.query_timeout,
                args.scrape_concurrency,
            );
            e.host_override = args.node_exporter_host.clone();
            if let Some(now) = args.snapshot.now {
                e.clock_offset = now.duration_since(Timestamp::now());
            }
            SourceImpl::Exporter(e)
        }
    })
}

/// Runs the collector: `--once` (one cycle, then exit) or the leader-elected loop.
pub async fn run(args: &CollectArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let mut policy = load_policy(args.policy.policy.as_deref())?;
    let source = build_source(args)?;
    let metrics = CollectorMetrics::new();
    metrics.prime(&policy);
    let clock = args.snapshot.now.map_or(Clock::System, Clock::Fixed);
    let mut period = plan::cycle_period(&policy);

    if let Some(path) = &args.snapshot.snapshot {
        if !args.once {
            bail!("--snapshot runs one cycle: add --once");
        }
        let snap = realload_common::cli::load_snapshot(path)?;
        let nodes: Vec<NodeView> = snap
            .nodes
            .iter()
            .map(|n| NodeView::from_node(n, &policy))
            .collect();
        let due: Vec<String> = policy.metrics.iter().map(|m| m.name.clone()).collect();
        let now = clock.now();
        let plan = cycle(&source, &policy, &nodes, &due, now, &metrics).await;
        // A snapshot is never written back: always a dry run.
        return print_plan(&plan, args.output, false);
    }

    let client = client::build(Throttled::Retry).await?;
    let store = NodeStore::new(Arc::new(policy.clone()));
    store.watch(client.clone(), shutdown.clone());
    let nodes_api: Api<Node> = Api::all(client.clone());
    tokio::select! {
        _ = shutdown.cancelled() => return Ok(()),
        r = tokio::time::timeout(Duration::from_secs(60), store.wait_synced()) => {
            if r.is_err() {
                bail!("the node watch did not sync within 60s");
            }
        }
    }
    let snapshot_nodes = || store.nodes();

    if args.once {
        let nodes = snapshot_nodes();
        let due: Vec<String> = policy.metrics.iter().map(|m| m.name.clone()).collect();
        if let SourceImpl::Exporter(e) = &source {
            // Rates need two scrapes: take one now, the cycle's own is the second.
            e.scrape(&nodes).await;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let plan = cycle(&source, &policy, &nodes, &due, clock.now(), &metrics).await;
        metrics.record(&plan);
        if !args.dry_run {
            write_patches(&nodes_api, &plan, args.patch_qps, &metrics, &shutdown).await;
        }
        shutdown.cancel();
        return print_plan(&plan, args.output, !args.dry_run);
    }

    // Long-running: admin endpoints, leader election, a cycle every period.
    let readiness = Readiness::default();
    readiness.set(true);
    let admin = admin_router(readiness.clone(), metrics.registry.clone());
    let listener = tokio::net::TcpListener::bind(args.admin_listen)
        .await
        .with_context(|| format!("binding the admin endpoints on {}", args.admin_listen))?;
    {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, admin)
                .with_graceful_shutdown(shutdown.cancelled_owned())
                .await;
        });
    }
    let identity = args.identity.clone().unwrap_or_else(default_identity);
    let elector = LeaderElector::new(
        client.clone(),
        &args.lease_namespace,
        &args.lease_name,
        &identity,
        args.lease_duration,
    );
    info!(identity = %identity, lease = %format!("{}/{}", args.lease_namespace, args.lease_name), "collector started");
    // The policy file is re-read when it changes (a ConfigMap edit), as the extender and the
    // descheduler do: an invalid file is rejected and the policy in force stays.
    let (policy_tx, mut policy_rx) = tokio::sync::watch::channel(Arc::new(policy.clone()));
    if let Some(path) = &args.policy.policy {
        crate::reload::spawn_policy_reload(
            path.clone(),
            Duration::from_secs(2),
            shutdown.clone(),
            metrics.policy_reloads.clone(),
            move |p| {
                let _ = policy_tx.send(Arc::new(p));
            },
        );
    }
    let mut last_queried: HashMap<String, Timestamp> = HashMap::new();
    let mut next_cycle = tokio::time::Instant::now();
    let mut next_usage = tokio::time::Instant::now();
    let mut leading = false;
    let running = Arc::new(usage::RunningPods::default());
    // Started when learning is first on (at start, or by a policy edit), then kept.
    let mut running_watched = false;
    let usage_api: Api<ConfigMap> = Api::namespaced(client.clone(), &args.lease_namespace);
    if policy.workload_usage.enabled && !matches!(source, SourceImpl::Prometheus(_)) {
        info!(
            "workload usage is learned from Prometheus only; with --source node-exporter the hot-spot factors apply"
        );
    }
    loop {
        if policy_rx.has_changed().unwrap_or(false) {
            let next = policy_rx.borrow_and_update().clone();
            store.set_policy(next.clone());
            policy = (*next).clone();
            metrics.prime(&policy);
            period = plan::cycle_period(&policy);
            last_queried.retain(|name, _| policy.metrics.iter().any(|m| &m.name == name));
            info!(metrics = policy.metrics.len(), "policy reloaded");
        }
        // Renew (or try to take) the lease often enough that it never lapses while leading.
        match elector.try_acquire().await {
            Ok(l) => {
                if l != leading {
                    info!(leader = l, "leadership changed");
                }
                leading = l;
            }
            Err(e) => {
                warn!(error = %e, "lease check failed; not writing until it succeeds");
                leading = false;
            }
        }
        metrics.leader.set(i64::from(leading));
        if leading && tokio::time::Instant::now() >= next_cycle {
            let now = clock.now();
            let due: Vec<String> = policy
                .metrics
                .iter()
                .filter(|m| {
                    last_queried.get(&m.name).is_none_or(|t| {
                        now.duration_since(*t) >= m.period - SignedDuration::from_secs(1)
                    })
                })
                .map(|m| m.name.clone())
                .collect();
            let nodes = snapshot_nodes();
            let plan = cycle(&source, &policy, &nodes, &due, now, &metrics)
                .instrument(info_span!(
                    "cycle",
                    metrics = due.len(),
                    nodes = nodes.len()
                ))
                .await;
            for m in &due {
                last_queried.insert(m.clone(), now);
            }
            metrics.record(&plan);
            let sent = write_patches(&nodes_api, &plan, args.patch_qps, &metrics, &shutdown).await;
            info!(
                patched = sent,
                suppressed = plan.suppressed,
                skipped = plan.skipped.len(),
                "cycle done"
            );
            next_cycle = tokio::time::Instant::now()
                + Duration::try_from(period).unwrap_or(Duration::from_secs(60));
        }
        if !running_watched
            && policy.workload_usage.enabled
            && matches!(source, SourceImpl::Prometheus(_))
        {
            running.watch(client.clone(), shutdown.clone());
            running_watched = true;
        }
        // The first round waits for the pod watch's first list (a round before it would only
        // fail), then one every period.
        if leading
            && policy.workload_usage.enabled
            && tokio::time::Instant::now() >= next_usage
            && running.is_synced()
            && let SourceImpl::Prometheus(prometheus) = &source
        {
            let usage = &policy.workload_usage;
            learn_usage(
                prometheus,
                &running,
                &usage_api,
                usage,
                clock.now(),
                &metrics,
            )
            .instrument(info_span!("workload_usage", config_map = %usage.config_map))
            .await;
            next_usage = tokio::time::Instant::now()
                + Duration::try_from(usage.period).unwrap_or(Duration::from_secs(300));
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(elector.renew_period()) => {}
        }
    }
    readiness.set(false);
    if leading {
        elector.release().await;
    }
    metrics.leader.set(0);
    info!("collector stopped");
    Ok(())
}

/// One learning round, published when it measured something; failures are logged and counted,
/// and the table in the ConfigMap stays until it ages out.
async fn learn_usage(
    prometheus: &PrometheusClient,
    running: &usage::RunningPods,
    usage_api: &Api<ConfigMap>,
    usage: &realload_common::policy::WorkloadUsage,
    now: Timestamp,
    metrics: &CollectorMetrics,
) {
    let result = match usage::measure(prometheus, running, usage, now).await {
        Ok(learned) => usage::publish(usage_api, &usage.config_map, &learned.table)
            .await
            .map(|()| learned),
        Err(e) => Err(e),
    };
    let outcome = match result {
        Ok(learned) => {
            info!(
                workloads = learned.table.workloads.len(),
                pods = learned.pods,
                measured = learned.measured,
                dropped = learned.dropped,
                "workload usage published"
            );
            metrics
                .usage_workloads
                .set(i64::try_from(learned.table.workloads.len()).unwrap_or(i64::MAX));
            metrics.usage_published.set(now.as_second());
            "sent"
        }
        Err(e) => {
            warn!(error = %e, "workload usage not published");
            "failed"
        }
    };
    metrics
        .usage_publishes
        .get_or_create(&PatchResult {
            result: outcome.into(),
        })
        .inc();
}

fn default_identity() -> String {
    std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| format!("realload-collector-{}", std::process::id()))
}

/// Skip reasons as JSON strings (for docs and tests).
pub fn skip_reasons() -> Vec<&'static str> {
    SkipReason::ALL.iter().map(|r| r.as_str()).collect()
}

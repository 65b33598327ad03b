//! The extender's Prometheus metrics (`/metrics`).

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerbOutcome {
    pub verb: &'static str,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerbLabel {
    pub verb: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MetricQuality {
    pub metric: String,
    pub quality: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WatchLabel {
    pub watch: String,
}

#[derive(Clone)]
pub struct Metrics {
    pub registry: Arc<Registry>,
    pub requests: Family<VerbOutcome, Counter>,
    pub latency: Family<VerbLabel, Histogram>,
    pub nodes_by_quality: Family<MetricQuality, Gauge>,
    pub breaker_trips: Counter,
    pub filter_rejections: Family<ReasonLabel, Counter>,
    pub ledger_pods: Gauge,
    pub unsynced_requests: Counter,
    pub policy_reloads: Family<ResultLabel, Counter>,
    pub watch_restarts: Family<WatchLabel, Counter>,
    pub usage_loads: Family<ResultLabel, Counter>,
    pub usage_workloads: Gauge,
    pub usage_updated: Gauge,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("realload_extender");
        let requests = Family::<VerbOutcome, Counter>::default();
        registry.register(
            "requests",
            "Extender requests by verb and outcome",
            requests.clone(),
        );
        let latency = Family::<VerbLabel, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1.0, 1.5, 2.0, 5.0,
            ])
        });
        registry.register(
            "request_duration_seconds",
            "Time to answer a request, by verb",
            latency.clone(),
        );
        let nodes_by_quality = Family::<MetricQuality, Gauge>::default();
        registry.register(
            "nodes",
            "Indexed nodes by metric and reading quality",
            nodes_by_quality.clone(),
        );
        let breaker_trips = Counter::default();
        registry.register(
            "breaker_trips",
            "Requests where too many candidates were unknown and load-awareness was suspended",
            breaker_trips.clone(),
        );
        let filter_rejections = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "filter_rejections",
            "Nodes filtered out, by metric",
            filter_rejections.clone(),
        );
        let ledger_pods = Gauge::default();
        registry.register(
            "ledger_pods",
            "Recently bound pods counted in the hot-spot estimate",
            ledger_pods.clone(),
        );
        let unsynced_requests = Counter::default();
        registry.register(
            "unsynced_requests",
            "Requests answered neutrally because the node index had not synced",
            unsynced_requests.clone(),
        );
        let policy_reloads = Family::<ResultLabel, Counter>::default();
        registry.register(
            "policy_reloads",
            "Policy file reloads by result",
            policy_reloads.clone(),
        );
        let watch_restarts = Family::<WatchLabel, Counter>::default();
        registry.register(
            "watch_restarts",
            "Watch errors after which the watch restarted with backoff",
            watch_restarts.clone(),
        );
        let usage_loads = Family::<ResultLabel, Counter>::default();
        registry.register(
            "workload_usage_loads",
            "Learned workload usage tables read from the ConfigMap, by result (ok, refused)",
            usage_loads.clone(),
        );
        let usage_workloads = Gauge::default();
        registry.register(
            "workload_usage_workloads",
            "Workloads in the learned usage table in force",
            usage_workloads.clone(),
        );
        let usage_updated = Gauge::default();
        registry.register(
            "workload_usage_updated_timestamp_seconds",
            "When the collector measured the usage table in force (0: none loaded)",
            usage_updated.clone(),
        );
        // Every family is exported from the first scrape, at zero, so rules and dashboards see
        // the series before the first event (a family with no series is not exported at all).
        for verb in ["filter", "prioritize"] {
            for outcome in ["ok", "breaker", "unsynced", "bad_request"] {
                let _ = requests.get_or_create(&VerbOutcome { verb, outcome });
            }
        }
        for outcome in ["ok", "error"] {
            let _ = requests.get_or_create(&VerbOutcome {
                verb: "bind",
                outcome,
            });
        }
        for verb in ["filter", "prioritize", "bind"] {
            let _ = latency.get_or_create(&VerbLabel { verb });
        }
        for reason in [
            realload_common::scoring::UNKNOWN_CAP_REASON,
            realload_common::scoring::UNKNOWN_DEFERRED_REASON,
        ] {
            let _ = filter_rejections.get_or_create(&ReasonLabel {
                reason: reason.into(),
            });
        }
        for result in ["ok", "invalid"] {
            let _ = policy_reloads.get_or_create(&ResultLabel {
                result: result.into(),
            });
        }
        for result in ["ok", "refused"] {
            let _ = usage_loads.get_or_create(&ResultLabel {
                result: result.into(),
            });
        }
        for watch in ["nodes", "pods", "workload-usage"] {
            let _ = watch_restarts.get_or_create(&WatchLabel {
                watch: watch.into(),
            });
        }
        Metrics {
            registry: Arc::new(registry),
            requests,
            latency,
            nodes_by_quality,
            breaker_trips,
            filter_rejections,
            ledger_pods,
            unsynced_requests,
            policy_reloads,
            watch_restarts,
            usage_loads,
            usage_workloads,
            usage_updated,
        }
    }

    /// Counts a request and its latency (labels are constants: nothing allocated per request).
    pub fn request(&self, verb: &'static str, outcome: &'static str, seconds: f64) {
        self.requests
            .get_or_create(&VerbOutcome { verb, outcome })
            .inc();
        self.latency
            .get_or_create(&VerbLabel { verb })
            .observe(seconds);
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

//! Everything `serve` shares between its tasks and requests: the index (one immutable
//! generation at a time), what it remembers per pod between calls, readiness and metrics.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
use realload_common::objects::pod_requests;
use realload_common::policy::Policy;
use realload_common::reading::Quality;
use realload_common::runtime::Readiness;
use realload_common::workload::{UsageTable, WorkloadKey};
use tracing::{info, warn};

pub use crate::index::Clock;
use crate::index::{Generation, Index};
use crate::memory::{PodMemory, RecentDecisions};
use crate::metrics::{MetricQuality, Metrics, ResultLabel};

fn ok() -> ResultLabel {
    ResultLabel {
        result: "ok".into(),
    }
}

fn refused() -> ResultLabel {
    ResultLabel {
        result: "refused".into(),
    }
}

pub struct State {
    pub index: Index,
    pub clock: Clock,
    pub memory: PodMemory,
    pub recent: RecentDecisions,
    pub readiness: Readiness,
    pub metrics: Metrics,
    /// Set on shutdown: readiness stays false whatever the watches do.
    draining: AtomicBool,
    /// Set when a background task died: readiness stays false until the process restarts.
    broken: AtomicBool,
    /// True once the usage ConfigMap's watch has listed (whether or not it exists).
    pub usage_listed: tokio::sync::watch::Sender<bool>,
}

/// The key a pod is remembered under between calls: its uid, else namespace/name.
pub fn pod_key(uid: Option<&str>, namespace: Option<&str>, name: Option<&str>) -> String {
    match uid {
        Some(uid) if !uid.is_empty() => uid.to_string(),
        _ => format!(
            "{}/{}",
            namespace.unwrap_or("default"),
            name.unwrap_or_default()
        ),
    }
}

impl State {
    pub fn new(policy: Policy, clock: Clock, metrics: Metrics) -> State {
        State {
            index: Index::new(policy, clock.clone()),
            clock,
            memory: PodMemory::default(),
            recent: RecentDecisions::default(),
            readiness: Readiness::default(),
            metrics,
            draining: AtomicBool::new(false),
            broken: AtomicBool::new(false),
            usage_listed: tokio::sync::watch::Sender::new(false),
        }
    }

    pub fn policy(&self) -> Arc<Policy> {
        self.index.policy()
    }

    /// The generation in force: what a request decides on.
    pub fn generation(&self) -> Arc<Generation> {
        self.index.current()
    }

    pub fn synced(&self) -> bool {
        self.index.current().synced()
    }

    fn update_readiness(&self) {
        // The gauges describe the index before anyone is told it is ready.
        if self.synced() && !self.readiness.is_ready() {
            self.housekeep();
        }
        let ready = self.synced()
            && !self.draining.load(Ordering::SeqCst)
            && !self.broken.load(Ordering::SeqCst);
        self.readiness.set(ready);
    }

    /// Shutdown began: unready from now on, so the Service stops sending requests.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
        self.update_readiness();
    }

    /// A background task the extender needs has died: unready from now on, so the Service
    /// stops sending requests to a replica whose answers would go stale.
    pub fn mark_broken(&self) {
        self.broken.store(true, Ordering::SeqCst);
        self.update_readiness();
    }

    pub fn is_broken(&self) -> bool {
        self.broken.load(Ordering::SeqCst)
    }

    pub fn set_policy(&self, policy: Policy) {
        self.index.set_policy(policy);
    }

    // ---- watches ----------------------------------------------------------------------------

    pub fn apply_node(&self, node: &Node) {
        self.index.apply_node(node);
    }

    pub fn delete_node(&self, node: &Node) {
        self.index.delete_node(node);
    }

    pub fn nodes_init(&self) {
        self.index.nodes_init();
    }

    pub fn nodes_init_done(&self) {
        self.index.nodes_init_done();
        self.update_readiness();
    }

    /// The pod's binding is published (the current generation holds it): it leaves the memory of
    /// pods in flight, except for requests still judging with an older generation.
    fn release(&self, pod: &Pod) {
        let generation = self.index.current().id;
        let m = &pod.metadata;
        self.memory.release(
            &pod_key(m.uid.as_deref(), m.namespace.as_deref(), m.name.as_deref()),
            generation,
        );
        // A request without a uid is remembered under namespace/name.
        self.memory.release(
            &pod_key(None, m.namespace.as_deref(), m.name.as_deref()),
            generation,
        );
    }

    pub fn apply_pod(&self, pod: &Pod) {
        self.index.apply_pod(pod);
        // Its binding is in the ledger now: no longer in flight.
        self.release(pod);
    }

    pub fn delete_pod(&self, pod: &Pod) {
        self.index.delete_pod(pod);
        self.release(pod);
    }

    pub fn pods_init(&self) {
        self.index.pods_init();
    }

    pub fn pods_init_done(&self) {
        self.index.pods_init_done();
        self.update_readiness();
    }

    /// A watch stopped: not ready until it re-syncs.
    pub fn mark_unsynced(&self, nodes: bool, pods: bool) {
        self.index.mark_unsynced(nodes, pods);
        self.update_readiness();
    }

    /// Counts a pod the extender bound itself (`bindVerb`) at once, before any watch sees it.
    pub fn record_binding(&self, uid: &str, node: &str, pod: Option<&Pod>) {
        let requests = pod.map(pod_requests).unwrap_or_default();
        let learned = self
            .generation()
            .learned_for(|| pod.and_then(WorkloadKey::of), self.clock.now());
        self.index.record_binding(uid, node, requests, learned);
        self.memory.release(uid, self.index.current().id);
        if let Some(pod) = pod {
            self.release(pod);
        }
    }

    /// Loads a snapshot: the learned usage table if it holds one, then nodes and their pods,
    /// then marks everything synced.
    pub fn load_snapshot(&self, nodes: &[Node], pods: &[Pod], config_maps: &[ConfigMap]) {
        let name = self.policy().workload_usage.config_map.clone();
        if let Some(cm) = config_maps
            .iter()
            .find(|c| c.metadata.name.as_deref() == Some(name.as_str()))
        {
            self.apply_usage(cm);
        }
        self.index.load_snapshot(nodes, pods);
        self.update_readiness();
    }

    /// The usage ConfigMap changed: its table is parsed once, here. A broken table is refused
    /// with the reason logged, and the one in force stays.
    pub fn apply_usage(&self, config_map: &ConfigMap) {
        match UsageTable::from_config_map(config_map) {
            Ok(table) => {
                info!(
                    workloads = table.workloads.len(),
                    updated = ?table.updated,
                    "workload usage table loaded"
                );
                self.metrics.usage_loads.get_or_create(&ok()).inc();
                self.metrics
                    .usage_workloads
                    .set(i64::try_from(table.workloads.len()).unwrap_or(i64::MAX));
                if let Some(updated) = table.updated {
                    self.metrics.usage_updated.set(updated.as_second());
                }
                self.index.set_usage(table);
            }
            Err(e) => {
                self.metrics.usage_loads.get_or_create(&refused()).inc();
                warn!(error = %e, "workload usage table refused; the one in force stays");
            }
        }
    }

    /// The usage ConfigMap is gone: nothing is learned any more, the factors apply.
    pub fn clear_usage(&self) {
        self.metrics.usage_workloads.set(0);
        self.index.set_usage(UsageTable::default());
    }

    /// Prunes the ledger, refreshes expired judgements, forgets old in-flight pods and sets the
    /// gauges (nodes by metric and reading quality, ledger size). Returns the ledger size.
    pub fn housekeep(&self) -> usize {
        self.memory.expire();
        let ledger = self.index.housekeep();
        self.metrics
            .ledger_pods
            .set(i64::try_from(ledger).unwrap_or(i64::MAX));
        let generation = self.generation();
        let policy = &generation.policy;
        let now = self.clock.now();
        let mut counts = std::collections::HashMap::<(usize, Quality), i64>::new();
        for entry in generation.nodes.values() {
            for (i, (spec, r)) in policy.metrics.iter().zip(&entry.view.readings).enumerate() {
                *counts
                    .entry((i, r.classify(now, spec.max_age, spec.floor).quality()))
                    .or_default() += 1;
            }
        }
        for (i, spec) in policy.metrics.iter().enumerate() {
            // Exported at zero before the first rejection.
            let _ = self
                .metrics
                .filter_rejections
                .get_or_create(&crate::metrics::ReasonLabel {
                    reason: spec.name.clone(),
                });
            for q in Quality::ALL {
                self.metrics
                    .nodes_by_quality
                    .get_or_create(&MetricQuality {
                        metric: spec.name.clone(),
                        quality: q.as_str().into(),
                    })
                    .set(counts.get(&(i, q)).copied().unwrap_or(0));
            }
        }
        ledger
    }
}

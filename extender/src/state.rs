//! The extender's in-memory state: the Node index (readings parsed when a watch event arrives),
//! the ledger of recently bound pods (the hot-spot estimate), the policy in force and the clock.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::{Node, Pod};
use realload_common::objects::{NodeView, bound_pod, parse_readings, pod_requests};
use realload_common::policy::Policy;
use realload_common::reading::RawReading;
use realload_common::runtime::Readiness;
use realload_common::scoring::{self, Allocatable, BoundPod, NodeAssessment};

use crate::metrics::Metrics;

/// Where "now" comes from: the system clock, or a fixed instant (`--now`, snapshot mode).
#[derive(Debug, Clone, Copy)]
pub enum Clock {
    System,
    Fixed(Timestamp),
}

impl Clock {
    pub fn now(&self) -> Timestamp {
        match self {
            Clock::System => Timestamp::now(),
            Clock::Fixed(t) => *t,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
struct LedgerPod {
    uid: String,
    pod: BoundPod,
}

/// Pods bound to each node that its newest valid reading may not cover yet. Bounded by the
/// binding rate over the longest max age, not by cluster size.
#[derive(Debug, Default)]
pub struct Ledger {
    by_node: HashMap<String, Vec<LedgerPod>>,
    node_of: HashMap<String, String>,
}

impl Ledger {
    pub fn len(&self) -> usize {
        self.node_of.len()
    }

    pub fn is_empty(&self) -> bool {
        self.node_of.is_empty()
    }

    pub fn pods_on(&self, node: &str) -> Vec<BoundPod> {
        self.by_node
            .get(node)
            .map(|pods| pods.iter().map(|p| p.pod).collect())
            .unwrap_or_default()
    }

    pub fn insert(&mut self, uid: &str, node: &str, pod: BoundPod) {
        self.remove(uid);
        self.by_node
            .entry(node.to_string())
            .or_default()
            .push(LedgerPod {
                uid: uid.to_string(),
                pod,
            });
        self.node_of.insert(uid.to_string(), node.to_string());
    }

    pub fn remove(&mut self, uid: &str) {
        if let Some(node) = self.node_of.remove(uid)
            && let Some(pods) = self.by_node.get_mut(&node)
        {
            pods.retain(|p| p.uid != uid);
            if pods.is_empty() {
                self.by_node.remove(&node);
            }
        }
    }

    /// Drops the node's pods bound at or before `covered`.
    fn prune_node(&mut self, node: &str, covered: Timestamp) {
        if let Some(pods) = self.by_node.get_mut(node) {
            let node_of = &mut self.node_of;
            pods.retain(|p| {
                let keep = p.pod.bound_at > covered;
                if !keep {
                    node_of.remove(&p.uid);
                }
                keep
            });
            if pods.is_empty() {
                self.by_node.remove(node);
            }
        }
    }

    fn nodes(&self) -> Vec<String> {
        self.by_node.keys().cloned().collect()
    }
}

#[derive(Debug, Default)]
pub struct Index {
    pub nodes: HashMap<String, NodeView>,
    pub ledger: Ledger,
    /// Objects collected during a watcher's initial list, swapped in when it completes.
    pending_nodes: Option<HashMap<String, NodeView>>,
    pending_ledger: Option<Ledger>,
}

pub struct State {
    policy: RwLock<Arc<Policy>>,
    index: RwLock<Index>,
    pub clock: Clock,
    nodes_synced: AtomicBool,
    pods_synced: AtomicBool,
    pub readiness: Readiness,
    pub metrics: Metrics,
}

fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|p| p.into_inner())
}

/// Pods bound before `now - horizon` are covered by any valid reading (a valid reading is at
/// most `max_age` old), so the ledger never needs them.
fn horizon(policy: &Policy) -> SignedDuration {
    policy
        .metrics
        .iter()
        .map(|m| m.max_age)
        .max()
        .unwrap_or(SignedDuration::from_mins(3))
}

/// The instant up to which a node's load is known: its newest valid sample, and never earlier
/// than `now - horizon`.
fn covered_until(policy: &Policy, readings: &[RawReading], now: Timestamp) -> Timestamp {
    let floor = now - horizon(policy);
    let assessed: Vec<_> = policy
        .metrics
        .iter()
        .zip(readings)
        .map(|(spec, r)| r.classify(now, spec.max_age, spec.floor))
        .collect();
    let newest = scoring::newest_valid_sample(&assessed);
    newest.map_or(floor, |t| t.max(floor))
}

impl State {
    pub fn new(policy: Policy, clock: Clock, metrics: Metrics) -> State {
        State {
            policy: RwLock::new(Arc::new(policy)),
            index: RwLock::new(Index::default()),
            clock,
            nodes_synced: AtomicBool::new(false),
            pods_synced: AtomicBool::new(false),
            readiness: Readiness::default(),
            metrics,
        }
    }

    pub fn policy(&self) -> Arc<Policy> {
        read(&self.policy).clone()
    }

    /// Puts a new policy in force and re-parses every node's readings for it.
    pub fn set_policy(&self, policy: Policy) {
        let policy = Arc::new(policy);
        {
            let mut index = write(&self.index);
            for view in index.nodes.values_mut() {
                view.reparse(&policy);
            }
        }
        *write(&self.policy) = policy;
    }

    pub fn index(&self) -> RwLockReadGuard<'_, Index> {
        read(&self.index)
    }

    /// The node watch alone has listed everything (what the collector needs).
    pub fn index_synced(&self) -> bool {
        self.nodes_synced.load(Ordering::SeqCst)
    }

    pub fn synced(&self) -> bool {
        self.nodes_synced.load(Ordering::SeqCst) && self.pods_synced.load(Ordering::SeqCst)
    }

    fn update_readiness(&self) {
        self.readiness.set(self.synced());
    }

    /// A watch stopped (or the process is shutting down): not ready until it re-syncs.
    pub fn mark_unsynced(&self, nodes: bool, pods: bool) {
        if nodes {
            self.nodes_synced.store(false, Ordering::SeqCst);
        }
        if pods {
            self.pods_synced.store(false, Ordering::SeqCst);
        }
        self.update_readiness();
    }

    // ---- node watch -------------------------------------------------------------------------

    pub fn apply_node(&self, node: &Node) {
        let policy = self.policy();
        let view = NodeView::from_node(node, &policy);
        let now = self.clock.now();
        let mut index = write(&self.index);
        if let Some(pending) = index.pending_nodes.as_mut() {
            pending.insert(view.name.clone(), view.clone());
        }
        let covered = covered_until(&policy, &view.readings, now);
        index.ledger.prune_node(&view.name, covered);
        index.nodes.insert(view.name.clone(), view);
    }

    pub fn delete_node(&self, node: &Node) {
        if let Some(name) = node.metadata.name.as_deref() {
            let mut index = write(&self.index);
            index.nodes.remove(name);
            if let Some(pending) = index.pending_nodes.as_mut() {
                pending.remove(name);
            }
        }
    }

    pub fn nodes_init(&self) {
        write(&self.index).pending_nodes = Some(HashMap::new());
    }

    pub fn nodes_init_done(&self) {
        {
            let mut index = write(&self.index);
            if let Some(pending) = index.pending_nodes.take() {
                index.nodes = pending;
            }
        }
        self.nodes_synced.store(true, Ordering::SeqCst);
        self.update_readiness();
    }

    // ---- pod watch --------------------------------------------------------------------------

    fn ledger_entry(
        &self,
        pod: &Pod,
        policy: &Policy,
        now: Timestamp,
        index: &Index,
    ) -> Option<(String, String, BoundPod)> {
        let uid = pod.metadata.uid.clone()?;
        if pod.metadata.deletion_timestamp.is_some() {
            return None;
        }
        let (node, bound) = bound_pod(pod)?;
        let readings = index
            .nodes
            .get(node)
            .map(|v| v.readings.as_slice())
            .unwrap_or(&[]);
        (bound.bound_at > covered_until(policy, readings, now))
            .then(|| (uid, node.to_string(), bound))
    }

    pub fn apply_pod(&self, pod: &Pod) {
        let policy = self.policy();
        let now = self.clock.now();
        let mut index = write(&self.index);
        let entry = self.ledger_entry(pod, &policy, now, &index);
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let ledger = match index.pending_ledger.as_mut() {
            Some(pending) => pending,
            None => &mut index.ledger,
        };
        match entry {
            Some((uid, node, bound)) => ledger.insert(&uid, &node, bound),
            None => ledger.remove(&uid),
        }
    }

    pub fn delete_pod(&self, pod: &Pod) {
        if let Some(uid) = pod.metadata.uid.as_deref() {
            let mut index = write(&self.index);
            index.ledger.remove(uid);
            if let Some(pending) = index.pending_ledger.as_mut() {
                pending.remove(uid);
            }
        }
    }

    pub fn pods_init(&self) {
        write(&self.index).pending_ledger = Some(Ledger::default());
    }

    pub fn pods_init_done(&self) {
        {
            let mut index = write(&self.index);
            if let Some(pending) = index.pending_ledger.take() {
                index.ledger = pending;
            }
        }
        self.pods_synced.store(true, Ordering::SeqCst);
        self.update_readiness();
    }

    /// Counts a pod the extender bound itself (`bindVerb`) at once, before any watch sees it.
    pub fn record_binding(&self, uid: &str, node: &str, pod: Option<&Pod>) {
        let requests = pod.map(pod_requests).unwrap_or_default();
        let bound = BoundPod {
            bound_at: self.clock.now(),
            cpu_millis: requests.cpu_millis,
            memory_bytes: requests.memory_bytes,
        };
        write(&self.index).ledger.insert(uid, node, bound);
    }

    /// Loads a snapshot: nodes and their pods, then marks everything synced.
    pub fn load_snapshot(&self, nodes: &[Node], pods: &[Pod]) {
        self.nodes_init();
        for n in nodes {
            self.apply_node(n);
        }
        self.nodes_init_done();
        self.pods_init();
        for p in pods {
            self.apply_pod(p);
        }
        self.pods_init_done();
    }

    /// Drops ledger pods that newer readings (or time) now cover. Returns the ledger size.
    pub fn prune(&self) -> usize {
        let policy = self.policy();
        let now = self.clock.now();
        let mut index = write(&self.index);
        for node in index.ledger.nodes() {
            let readings = index
                .nodes
                .get(&node)
                .map(|v| v.readings.clone())
                .unwrap_or_default();
            let covered = covered_until(&policy, &readings, now);
            index.ledger.prune_node(&node, covered);
        }
        index.ledger.len()
    }

    // ---- decisions --------------------------------------------------------------------------

    /// Judges one node from the index; a name the index does not know is an unknown node.
    pub fn assess_known(
        &self,
        index: &Index,
        policy: &Policy,
        name: &str,
        now: Timestamp,
    ) -> NodeAssessment {
        let pods = index.ledger.pods_on(name);
        match index.nodes.get(name) {
            Some(view) => {
                scoring::assess_node(policy, &view.readings, &pods, view.allocatable, now)
            }
            None => scoring::assess_node(policy, &[], &pods, Allocatable::default(), now),
        }
    }

    /// Judges a node from readings carried in the request (non-cache mode).
    pub fn assess_carried(
        &self,
        index: &Index,
        policy: &Policy,
        name: &str,
        annotations: &std::collections::BTreeMap<String, String>,
        allocatable: Allocatable,
        now: Timestamp,
    ) -> NodeAssessment {
        let readings = parse_readings(annotations, policy);
        let pods = index.ledger.pods_on(name);
        scoring::assess_node(policy, &readings, &pods, allocatable, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, sampled: &str, cpu: f64) -> Node {
        serde_json::from_value(json!({"metadata": {"name": name, "annotations": {
            "realload.io/cpu-avg-5m": format!("{cpu},{sampled}"),
            "realload.io/cpu-max-1h": format!("{cpu},{sampled}"),
            "realload.io/mem-avg-5m": format!("0.3,{sampled}")}},
            "status": {"allocatable": {"cpu": "8", "memory": "32Gi"}}}))
        .unwrap()
    }

    fn pod(uid: &str, node: &str, bound: &str) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": uid, "uid": uid},
            "spec": {"nodeName": node, "containers": [{"name": "c", "resources": {"requests": {"cpu": "2"}}}]},
            "status": {"phase": "Running", "conditions": [{"type": "PodScheduled", "status": "True", "lastTransitionTime": bound}]}}))
        .unwrap()
    }

    fn state(now: &str) -> State {
        State::new(
            Policy::default(),
            Clock::Fixed(now.parse().unwrap()),
            Metrics::new(),
        )
    }

    #[test]
    fn ledger_keeps_only_pods_newer_than_the_reading_and_a_new_reading_clears_them() {
        let s = state("2026-11-22T01:05:00Z");
        s.load_snapshot(&[node("n1", "2026-11-22T01:04:00Z", 0.4)], &[]);
        s.apply_pod(&pod("old", "n1", "2026-11-22T01:03:00Z"));
        s.apply_pod(&pod("new", "n1", "2026-11-22T01:04:30Z"));
        assert_eq!(s.index().ledger.len(), 1);
        let policy = s.policy();
        let a = s.assess_known(&s.index(), &policy, "n1", s.clock.now());
        assert!((a.hotspot.cpu - 2000.0 * 0.85 / 8000.0).abs() < 1e-9);
        // a reading sampled after the binding covers it
        s.apply_node(&node("n1", "2026-11-22T01:04:45Z", 0.6));
        assert_eq!(s.index().ledger.len(), 0);
    }

    #[test]
    fn deleted_and_finished_pods_leave_the_ledger() {
        let s = state("2026-11-22T01:05:00Z");
        s.load_snapshot(&[node("n1", "2026-11-22T01:04:00Z", 0.4)], &[]);
        let p = pod("p", "n1", "2026-11-22T01:04:30Z");
        s.apply_pod(&p);
        assert_eq!(s.index().ledger.len(), 1);
        let mut done = p.clone();
        done.status.as_mut().unwrap().phase = Some("Succeeded".into());
        s.apply_pod(&done);
        assert_eq!(s.index().ledger.len(), 0);
        s.apply_pod(&p);
        s.delete_pod(&p);
        assert_eq!(s.index().ledger.len(), 0);
    }

    #[test]
    fn without_a_valid_reading_the_ledger_is_bounded_by_the_horizon() {
        let s = state("2026-11-22T01:05:00Z");
        s.load_snapshot(
            &[],
            &[
                pod("ancient", "ghost", "2026-11-22T00:00:00Z"),
                pod("recent", "ghost", "2026-11-22T01:04:00Z"),
            ],
        );
        assert_eq!(s.index().ledger.len(), 1);
    }

    #[test]
    fn readiness_follows_both_syncs() {
        let s = state("2026-11-22T01:05:00Z");
        assert!(!s.readiness.is_ready());
        s.nodes_init();
        s.nodes_init_done();
        assert!(!s.readiness.is_ready());
        s.pods_init();
        s.pods_init_done();
        assert!(s.readiness.is_ready());
        s.mark_unsynced(false, true);
        assert!(!s.readiness.is_ready() && !s.synced());
    }

    #[test]
    fn policy_reload_reparses_readings() {
        let s = state("2026-11-22T01:05:00Z");
        let mut n = node("n1", "2026-11-22T01:04:00Z", 0.4);
        n.metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert("cpu_usage_avg_5m".into(), "0.9,2026-11-22T01:04:00Z".into());
        s.load_snapshot(&[n], &[]);
        let p = Policy::from_yaml("metrics: [{name: cpu-avg-5m, annotation: cpu_usage_avg_5m, format: crane}, {name: cpu-sustained-10m}]").unwrap();
        s.set_policy(p);
        let policy = s.policy();
        let a = s.assess_known(&s.index(), &policy, "n1", s.clock.now());
        assert_eq!(a.metrics[0].estimated, Some(0.9));
    }
}

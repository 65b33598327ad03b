//! The extender's in-memory state: the Node index (readings parsed when a watch event arrives),
//! the ledger of recently bound pods (the hot-spot estimate), the policy in force and the clock.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::{Node, Pod};
use realload_common::objects::{NodeView, bound_pod, pod_requests};
use realload_common::policy::Policy;
use realload_common::reading::RawReading;
use realload_common::runtime::Readiness;
use realload_common::scoring::{self, Allocatable, BoundPod, NodeAssessment};

use crate::metrics::Metrics;

/// Node names are keys of the per-request lookups: a fast hash matters at 5,000 candidates.
type HashMap<K, V> = rustc_hash::FxHashMap<K, V>;

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

/// Pods bound to each node that its newest valid reading may not cover yet. Bounded by the
/// binding rate over the longest max age, not by cluster size.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Per node: the pods' uids and, in the same order, their records.
    by_node: HashMap<String, (Vec<String>, Vec<BoundPod>)>,
    node_of: HashMap<String, String>,
}

impl Ledger {
    pub fn len(&self) -> usize {
        self.node_of.len()
    }

    pub fn is_empty(&self) -> bool {
        self.node_of.is_empty()
    }

    pub fn node_of(&self, uid: &str) -> Option<&str> {
        self.node_of.get(uid).map(String::as_str)
    }

    pub fn pods_on(&self, node: &str) -> &[BoundPod] {
        self.by_node
            .get(node)
            .map_or(&[], |(_, pods)| pods.as_slice())
    }

    pub fn insert(&mut self, uid: &str, node: &str, pod: BoundPod) {
        self.remove(uid);
        let (uids, pods) = self.by_node.entry(node.to_string()).or_default();
        uids.push(uid.to_string());
        pods.push(pod);
        self.node_of.insert(uid.to_string(), node.to_string());
    }

    pub fn remove(&mut self, uid: &str) {
        if let Some(node) = self.node_of.remove(uid)
            && let Some((uids, pods)) = self.by_node.get_mut(&node)
        {
            if let Some(i) = uids.iter().position(|u| u == uid) {
                uids.swap_remove(i);
                pods.swap_remove(i);
            }
            if uids.is_empty() {
                self.by_node.remove(&node);
            }
        }
    }

    /// Drops the node's pods bound at or before `covered`.
    fn prune_node(&mut self, node: &str, covered: Timestamp) {
        let Some((uids, pods)) = self.by_node.get_mut(node) else {
            return;
        };
        let mut i = 0;
        while i < pods.len() {
            if pods[i].bound_at > covered {
                i += 1;
            } else {
                self.node_of.remove(&uids[i]);
                uids.swap_remove(i);
                pods.swap_remove(i);
            }
        }
        if uids.is_empty() {
            self.by_node.remove(node);
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
    /// Per node, its last judgement and the span of time in which it holds (no reading changes
    /// class in it). Cleared for a node whenever its readings or its ledger pods change, and for
    /// all on a policy reload.
    judged: HashMap<String, std::sync::Mutex<Option<CachedJudgement>>>,
    /// Objects collected during a watcher's initial list, swapped in when it completes.
    pending_nodes: Option<HashMap<String, NodeView>>,
    pending_ledger: Option<Ledger>,
}

#[derive(Debug, Clone)]
struct CachedJudgement {
    judgement: scoring::Judgement,
    from: Timestamp,
    until: Timestamp,
}

/// The span around `now` in which no reading of the node changes class (valid, stale, future).
fn stable_span(policy: &Policy, readings: &[RawReading], now: Timestamp) -> (Timestamp, Timestamp) {
    let one = SignedDuration::from_nanos(1);
    let (mut from, mut until) = (Timestamp::MIN, Timestamp::MAX);
    for (spec, r) in policy.metrics.iter().zip(readings) {
        let RawReading::Parsed(reading) = r else {
            continue;
        };
        let (Ok(start), Ok(end)) = (
            reading.sampled_at.checked_sub(spec.max_age),
            reading.sampled_at.checked_add(spec.max_age),
        ) else {
            continue;
        };
        if now < start {
            until = until.min(start - one);
        } else if now > end {
            from = from.max(end + one);
        } else {
            from = from.max(start);
            until = until.min(end);
        }
    }
    (from, until)
}

impl Index {
    fn forget(&mut self, node: &str) {
        if let Some(m) = self.judged.get_mut(node) {
            *m.get_mut().unwrap_or_else(|p| p.into_inner()) = None;
        }
    }
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
            for m in index.judged.values_mut() {
                *m.get_mut().unwrap_or_else(|p| p.into_inner()) = None;
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
        index
            .judged
            .insert(view.name.clone(), std::sync::Mutex::new(None));
        index.nodes.insert(view.name.clone(), view);
    }

    pub fn delete_node(&self, node: &Node) {
        if let Some(name) = node.metadata.name.as_deref() {
            let mut index = write(&self.index);
            index.nodes.remove(name);
            index.judged.remove(name);
            if let Some(pending) = index.pending_nodes.as_mut() {
                pending.remove(name);
            }
        }
    }

    pub fn nodes_init(&self) {
        write(&self.index).pending_nodes = Some(HashMap::default());
    }

    pub fn nodes_init_done(&self) {
        {
            let mut index = write(&self.index);
            if let Some(pending) = index.pending_nodes.take() {
                index.judged = pending
                    .keys()
                    .map(|k| (k.clone(), std::sync::Mutex::new(None)))
                    .collect();
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
        let before = ledger.node_of(&uid).map(str::to_string);
        match &entry {
            Some((uid, node, bound)) => ledger.insert(uid, node, *bound),
            None => ledger.remove(&uid),
        }
        for node in before.iter().chain(entry.as_ref().map(|(_, n, _)| n)) {
            index.forget(node);
        }
    }

    pub fn delete_pod(&self, pod: &Pod) {
        if let Some(uid) = pod.metadata.uid.as_deref() {
            let mut index = write(&self.index);
            if let Some(node) = index.ledger.node_of(uid).map(str::to_string) {
                index.forget(&node);
            }
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
                for m in index.judged.values_mut() {
                    *m.get_mut().unwrap_or_else(|p| p.into_inner()) = None;
                }
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
        let mut index = write(&self.index);
        index.ledger.insert(uid, node, bound);
        index.forget(node);
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
            index.forget(&node);
        }
        index.ledger.len()
    }

    // ---- decisions --------------------------------------------------------------------------

    /// The filter verdict and score of one indexed node, from its cache while no reading has
    /// changed class and neither its readings nor its ledger pods have changed.
    pub fn judge_known(
        &self,
        index: &Index,
        policy: &Policy,
        name: &str,
        now: Timestamp,
    ) -> scoring::Judgement {
        let Some(slot) = index.judged.get(name) else {
            return scoring::judge(policy, &self.assess_known(index, policy, name, now));
        };
        let mut slot = slot.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = slot.as_ref()
            && c.from <= now
            && now <= c.until
        {
            return c.judgement.clone();
        }
        let judgement = scoring::judge(policy, &self.assess_known(index, policy, name, now));
        let readings = index
            .nodes
            .get(name)
            .map_or(&[][..], |v| v.readings.as_slice());
        let (from, until) = stable_span(policy, readings, now);
        *slot = Some(CachedJudgement {
            judgement: judgement.clone(),
            from,
            until,
        });
        judgement
    }

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
            Some(view) => scoring::assess_node(policy, &view.readings, pods, view.allocatable, now),
            None => scoring::assess_node(policy, &[], pods, Allocatable::default(), now),
        }
    }

    /// Judges a node from readings carried in the request (non-cache mode).
    pub fn assess_carried(
        &self,
        index: &Index,
        policy: &Policy,
        node: &crate::protocol::NodeRead<'_>,
        allocatable: Allocatable,
        now: Timestamp,
    ) -> NodeAssessment {
        let readings: smallvec::SmallVec<[RawReading; 4]> = policy
            .metrics
            .iter()
            .map(|m| {
                RawReading::from_annotation(
                    node.annotation(&m.annotation),
                    m.format,
                    &policy.crane_timezone,
                )
            })
            .collect();
        scoring::assess_node(
            policy,
            &readings,
            index.ledger.pods_on(&node.name),
            allocatable,
            now,
        )
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
    fn cached_judgements_follow_time_readings_and_bindings() {
        let s = state("2026-11-22T01:05:00Z");
        s.load_snapshot(&[node("n1", "2026-11-22T01:04:00Z", 0.9)], &[]);
        let p = s.policy();
        let at = |t: &str| t.parse::<Timestamp>().unwrap();
        let first = s.judge_known(&s.index(), &p, "n1", at("2026-11-22T01:05:00Z"));
        assert!(!first.verdict.passes());
        // still within max age: the same answer (from the cache)
        assert_eq!(
            s.judge_known(&s.index(), &p, "n1", at("2026-11-22T01:06:30Z")),
            first
        );
        // past max age the reading is stale: the node is unknown and passes
        let later = s.judge_known(&s.index(), &p, "n1", at("2026-11-22T01:07:01Z"));
        assert!(!later.known && later.verdict.passes());
        // a binding changes the estimate at once
        s.load_snapshot(&[node("n1", "2026-11-22T01:04:00Z", 0.5)], &[]);
        let before = s.judge_known(&s.index(), &p, "n1", at("2026-11-22T01:05:00Z"));
        s.apply_pod(&pod("new", "n1", "2026-11-22T01:04:30Z"));
        let after = s.judge_known(&s.index(), &p, "n1", at("2026-11-22T01:05:00Z"));
        assert!(after.score < before.score);
        // and equals what a fresh assessment says
        assert_eq!(
            after,
            scoring::judge(
                &p,
                &s.assess_known(&s.index(), &p, "n1", at("2026-11-22T01:05:00Z"))
            )
        );
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

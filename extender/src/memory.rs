//! What the extender remembers between the calls kube-scheduler makes for one pod.
//!
//! - The circuit breaker's verdict from the pod's filter call, so that prioritize, which only
//!   sees the nodes realload's own filter let through, judges the breaker on the nodes the
//!   scheduler offered, as the filter did.
//! - The unknown nodes the filter let the pod onto, counted against each one's unknown-node cap
//!   until the pod's binding is seen (or a short time passes): kube-scheduler decides faster
//!   than a binding comes back through the watch, so without this a burst could pile onto an
//!   unknown node before the ledger saw one pod. A pod may land on only one of them, so this
//!   over-counts for a moment, never under-counts.
//! - The node realload ranked best for the pod (prioritize), where the pod is tentatively
//!   *reserved* until its binding is seen (or [`RESERVE_FOR`] passes): the next pods of a burst
//!   see its requests in that node's hot-spot estimate before any binding comes back. Where the
//!   pod really lands, the ledger counts it from its binding on.
//! - The last decisions, for `/debug/nodes`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use realload_common::scoring::BoundPod;
use serde::Serialize;
use smallvec::SmallVec;

use crate::index::HashMap;

/// How long a filter call's verdict and reservations are remembered without a binding.
pub const REMEMBER_FOR: Duration = Duration::from_secs(30);
/// How long a tentative reservation lasts without the pod's binding being seen. A binding comes
/// back through the watch in well under a second; a pod kube-scheduler did not bind (another
/// plugin said no, or it was preempted) stops weighing on the node after this.
pub const RESERVE_FOR: Duration = Duration::from_secs(5);
/// At most this many pods are remembered; beyond it, expired entries go, then everything.
const MAX_PODS: usize = 100_000;
/// How many recent decisions `/debug/nodes` shows.
const RECENT: usize = 100;

#[derive(Debug)]
struct Remembered {
    breaker_tripped: bool,
    unknown_nodes: SmallVec<[Arc<str>; 4]>,
    expires: Instant,
}

/// A pod tentatively counted on the node realload ranked best for it.
#[derive(Debug, Clone)]
struct Reservation {
    node: Arc<str>,
    pod: BoundPod,
    expires: Instant,
}

/// A pod whose binding the index has published in generation `generation`: a request still
/// judging with an older generation does not see it in the ledger, so it counts it here.
#[derive(Debug)]
struct Released {
    generation: u64,
    at: Instant,
    unknown_nodes: SmallVec<[Arc<str>; 4]>,
    reservation: Option<Reservation>,
}

/// How long a released pod is kept for requests on older generations (they last milliseconds).
const KEEP_RELEASED: Duration = Duration::from_secs(5);

#[derive(Debug, Default)]
struct Inner {
    by_pod: HashMap<String, Remembered>,
    in_flight: HashMap<Arc<str>, u32>,
    reserved: HashMap<String, Reservation>,
    released: VecDeque<Released>,
}

impl Inner {
    /// Drops the pod's filter call, returning the unknown nodes it was counted on.
    fn forget_filtered(&mut self, key: &str) -> SmallVec<[Arc<str>; 4]> {
        let Some(old) = self.by_pod.remove(key) else {
            return SmallVec::new();
        };
        for node in &old.unknown_nodes {
            if let Some(n) = self.in_flight.get_mut(node) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.in_flight.remove(node);
                }
            }
        }
        old.unknown_nodes
    }

    /// Released pods a request on `generation` does not see in its ledger yet.
    fn unseen(&self, generation: u64) -> impl Iterator<Item = &Released> {
        self.released
            .iter()
            .filter(move |r| r.generation > generation)
    }

    fn expire(&mut self, now: Instant) {
        let expired: Vec<String> = self
            .by_pod
            .iter()
            .filter(|(_, r)| r.expires <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for key in expired {
            self.forget_filtered(&key);
        }
        self.reserved.retain(|_, r| r.expires > now);
        while self
            .released
            .front()
            .is_some_and(|r| now.duration_since(r.at) > KEEP_RELEASED)
        {
            self.released.pop_front();
        }
    }
}

/// Pods tentatively reserved per node, as one request sees them.
pub type Reserved = HashMap<Arc<str>, SmallVec<[BoundPod; 2]>>;

/// Pods heading for nodes, per node, as one request sees them.
pub type InFlight = HashMap<Arc<str>, u32>;

#[derive(Debug, Default)]
pub struct PodMemory {
    inner: Mutex<Inner>,
}

impl PodMemory {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The pods in flight per node for a request judging with `generation`, leaving out the
    /// asking pod's own earlier reservation; `None` when nothing is in flight (the usual case: no
    /// allocation). Pods whose binding a newer generation holds still count: the request's
    /// ledger does not have them.
    pub fn in_flight_for(&self, key: &str, generation: u64) -> Option<InFlight> {
        let mut inner = self.lock();
        if inner.in_flight.is_empty() && inner.released.is_empty() {
            return None;
        }
        inner.expire(Instant::now());
        let mut counts = inner.in_flight.clone();
        for r in inner.unseen(generation) {
            for node in &r.unknown_nodes {
                *counts.entry(node.clone()).or_default() += 1;
            }
        }
        if counts.is_empty() {
            return None;
        }
        if let Some(own) = inner.by_pod.get(key) {
            for node in &own.unknown_nodes {
                if let Some(n) = counts.get_mut(node) {
                    *n = n.saturating_sub(1);
                }
            }
        }
        Some(counts)
    }

    /// Remembers a filter call's outcome for the pod: whether the breaker tripped, and the
    /// unknown nodes it may land on.
    pub fn remember(
        &self,
        key: &str,
        breaker_tripped: bool,
        unknown_nodes: SmallVec<[Arc<str>; 4]>,
    ) {
        let now = Instant::now();
        let mut inner = self.lock();
        inner.forget_filtered(key);
        if inner.by_pod.len() >= MAX_PODS {
            inner.expire(now);
            if inner.by_pod.len() >= MAX_PODS {
                tracing::warn!(
                    pods = inner.by_pod.len(),
                    "pod memory full; forgetting in-flight pods"
                );
                *inner = Inner::default();
            }
        }
        for node in &unknown_nodes {
            *inner.in_flight.entry(node.clone()).or_default() += 1;
        }
        inner.by_pod.insert(
            key.to_string(),
            Remembered {
                breaker_tripped,
                unknown_nodes,
                expires: now + REMEMBER_FOR,
            },
        );
    }

    /// Reserves the pod on `node` (replacing its earlier reservation, if any).
    pub fn reserve(&self, key: &str, node: Arc<str>, pod: BoundPod) {
        let now = Instant::now();
        let mut inner = self.lock();
        if inner.reserved.len() >= MAX_PODS {
            inner.expire(now);
            if inner.reserved.len() >= MAX_PODS {
                tracing::warn!(
                    pods = inner.reserved.len(),
                    "reservations full; forgetting them"
                );
                inner.reserved.clear();
            }
        }
        inner.reserved.insert(
            key.to_string(),
            Reservation {
                node,
                pod,
                expires: now + RESERVE_FOR,
            },
        );
    }

    /// The pods reserved per node, leaving out the asking pod's own reservation; `None` when
    /// nothing is reserved (the usual case outside bursts: no allocation).
    pub fn reserved_for(&self, key: &str, generation: u64) -> Option<Reserved> {
        let mut inner = self.lock();
        if inner.reserved.is_empty() && inner.released.is_empty() {
            return None;
        }
        inner.expire(Instant::now());
        let mut per_node = Reserved::default();
        for (pod, r) in &inner.reserved {
            if pod != key {
                per_node.entry(r.node.clone()).or_default().push(r.pod);
            }
        }
        // a reservation whose pod's binding the request's generation does not hold yet
        for r in inner.unseen(generation) {
            if let Some(res) = &r.reservation {
                per_node.entry(res.node.clone()).or_default().push(res.pod);
            }
        }
        (!per_node.is_empty()).then_some(per_node)
    }

    /// Per node, the pods reserved on it (for `/debug/nodes` and `explain`).
    pub fn reserved(&self) -> HashMap<Arc<str>, u32> {
        let mut inner = self.lock();
        let now = Instant::now();
        inner.reserved.retain(|_, r| r.expires > now);
        let mut per_node = HashMap::<Arc<str>, u32>::default();
        for r in inner.reserved.values() {
            *per_node.entry(r.node.clone()).or_default() += 1;
        }
        per_node
    }

    /// The breaker verdict of the pod's last filter call, if it is recent.
    pub fn breaker_of(&self, key: &str) -> Option<bool> {
        let inner = self.lock();
        inner
            .by_pod
            .get(key)
            .filter(|r| r.expires > Instant::now())
            .map(|r| r.breaker_tripped)
    }

    /// The pod was bound (the ledger counts it from `generation` on) or is gone. Requests still
    /// judging with an older generation go on counting it (see [`PodMemory::in_flight_for`]).
    pub fn release(&self, key: &str, generation: u64) {
        let mut inner = self.lock();
        if inner.by_pod.is_empty() && inner.reserved.is_empty() {
            return;
        }
        let unknown_nodes = inner.forget_filtered(key);
        let reservation = inner.reserved.remove(key);
        if !unknown_nodes.is_empty() || reservation.is_some() {
            let now = Instant::now();
            inner.expire(now);
            inner.released.push_back(Released {
                generation,
                at: now,
                unknown_nodes,
                reservation,
            });
        }
    }

    /// Drops what is too old to matter.
    pub fn expire(&self) {
        self.lock().expire(Instant::now());
    }

    /// Pods currently remembered.
    pub fn len(&self) -> usize {
        self.lock().by_pod.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Per node, the pods counted in flight (for `/debug/nodes`).
    pub fn in_flight(&self) -> InFlight {
        let mut inner = self.lock();
        inner.expire(Instant::now());
        inner.in_flight.clone()
    }
}

/// One answered request, as `/debug/nodes` reports it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DecisionRecord {
    pub at: Timestamp,
    pub verb: &'static str,
    pub pod: String,
    pub outcome: &'static str,
    pub candidates: usize,
    pub unknown: usize,
    pub breaker_tripped: bool,
    /// Filter: candidates that passed. Prioritize: candidates with the top score.
    pub passed: usize,
    /// Prioritize: the node(s) ranked best, ties included (at most 5 named).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub best: Vec<String>,
    /// Prioritize: the node the pod was tentatively reserved on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reserved_on: Option<String>,
    /// The share of its CPU request the pod was counted at, when its workload's usage was
    /// learned (absent: `hotspot.cpuFactor`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub learned_cpu_share: Option<f64>,
}

/// The last decisions, newest last.
#[derive(Debug, Default)]
pub struct RecentDecisions {
    inner: Mutex<VecDeque<DecisionRecord>>,
}

impl RecentDecisions {
    pub fn push(&self, record: DecisionRecord) {
        let mut q = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if q.len() >= RECENT {
            q.pop_front();
        }
        q.push_back(record);
    }

    pub fn list(&self) -> Vec<DecisionRecord> {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(names: &[&str]) -> SmallVec<[Arc<str>; 4]> {
        names.iter().map(|n| Arc::from(*n)).collect()
    }

    #[test]
    fn reservations_count_per_node_leave_out_the_asking_pod_and_go_on_release() {
        let m = PodMemory::default();
        assert!(m.in_flight_for("p1", 0).is_none(), "nothing in flight");
        m.remember("p1", false, nodes(&["u1", "u2"]));
        m.remember("p2", false, nodes(&["u1"]));
        let for_p3 = m.in_flight_for("p3", 0).unwrap();
        assert_eq!((for_p3.get("u1"), for_p3.get("u2")), (Some(&2), Some(&1)));
        let for_p1 = m.in_flight_for("p1", 0).unwrap();
        assert_eq!(
            for_p1.get("u1"),
            Some(&1),
            "p1's own reservation is left out"
        );
        // a second filter call for p1 replaces its reservation
        m.remember("p1", false, nodes(&["u2"]));
        assert_eq!(m.in_flight().get("u1"), Some(&1));
        assert_eq!(m.in_flight().get("u2"), Some(&1));
        m.release("p1", 0);
        m.release("p2", 0);
        assert!(m.in_flight().is_empty() && m.is_empty());
        assert_eq!(m.breaker_of("p1"), None);
    }

    fn pod(cpu_millis: u64) -> BoundPod {
        BoundPod {
            bound_at: Timestamp::UNIX_EPOCH,
            cpu_millis,
            memory_bytes: 0,
            pinned: false,
            learned: None,
        }
    }

    #[test]
    fn a_reservation_weighs_on_its_node_for_other_pods_until_released() {
        let m = PodMemory::default();
        assert!(m.reserved_for("p1", 0).is_none(), "nothing reserved");
        m.reserve("p1", Arc::from("a"), pod(1000));
        m.reserve("p2", Arc::from("a"), pod(2000));
        m.reserve("p3", Arc::from("b"), pod(500));
        let for_p4 = m.reserved_for("p4", 0).unwrap();
        let cpu = |r: &Reserved, n: &str| -> u64 {
            r.get(n).map_or(0, |p| p.iter().map(|p| p.cpu_millis).sum())
        };
        assert_eq!((cpu(&for_p4, "a"), cpu(&for_p4, "b")), (3000, 500));
        let for_p1 = m.reserved_for("p1", 0).unwrap();
        assert_eq!(
            cpu(&for_p1, "a"),
            2000,
            "the asking pod's own reservation is left out"
        );
        // prioritize again for p1 moves its reservation
        m.reserve("p1", Arc::from("b"), pod(1000));
        assert_eq!(m.reserved().get("a"), Some(&1));
        assert_eq!(m.reserved().get("b"), Some(&2));
        // a filter call does not drop the pod's reservation; its binding does
        m.remember("p1", false, nodes(&[]));
        assert_eq!(m.reserved().get("b"), Some(&2));
        for p in ["p1", "p2", "p3"] {
            m.release(p, 0);
        }
        assert!(m.reserved().is_empty() && m.reserved_for("p4", 0).is_none());
    }

    #[test]
    fn a_request_on_an_older_generation_still_counts_a_pod_released_since() {
        // p1 was filtered onto the unknown node u1 and reserved on a; its binding is published
        // in generation 7, then released here
        let m = PodMemory::default();
        m.remember("p1", false, nodes(&["u1"]));
        m.reserve("p1", Arc::from("a"), pod(1000));
        m.release("p1", 7);
        // a request that loaded generation 6 before the publication: its ledger lacks p1
        let old = m.in_flight_for("p2", 6).unwrap();
        assert_eq!(old.get("u1"), Some(&1));
        let old = m.reserved_for("p2", 6).unwrap();
        assert_eq!(old.get("a").map(|p| p.len()), Some(1));
        // a request on generation 7 or later finds p1 in its ledger: not counted twice
        assert!(m.in_flight_for("p2", 7).is_none());
        assert!(m.reserved_for("p2", 7).is_none());
        assert!(m.in_flight().is_empty() && m.is_empty());
    }

    #[test]
    fn the_filter_breaker_verdict_is_kept_for_prioritize() {
        let m = PodMemory::default();
        m.remember("p", true, SmallVec::new());
        assert_eq!(m.breaker_of("p"), Some(true));
        assert_eq!(m.breaker_of("other"), None);
    }

    #[test]
    fn recent_decisions_keep_the_last_hundred() {
        let r = RecentDecisions::default();
        for i in 0..150 {
            r.push(DecisionRecord {
                at: Timestamp::UNIX_EPOCH,
                verb: "filter",
                pod: format!("p{i}"),
                outcome: "ok",
                candidates: 1,
                unknown: 0,
                breaker_tripped: false,
                passed: 1,
                best: Vec::new(),
                reserved_on: None,
                learned_cpu_share: None,
            });
        }
        let list = r.list();
        assert_eq!(list.len(), 100);
        assert_eq!(list[0].pod, "p50");
        assert_eq!(list[99].pod, "p149");
    }
}

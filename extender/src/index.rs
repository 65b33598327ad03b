//! The extender's decision input as one immutable [`Generation`]: the policy in force, every
//! Node's parsed readings and the ledger of recently bound pods, published whole.
//!
//! Watches (and policy reloads, housekeeping, the bind handler) change the index through the
//! [`Index`]'s writer, which builds the next generation and swaps it in atomically. A request
//! loads one generation and reads only it, so it never sees one policy with another policy's
//! readings, and it takes no lock: each node's judgement is computed when the node (or its
//! ledger pods, or the policy) changes, kept in the generation with the span of time in which it
//! holds, and recomputed on the fly only outside that span.

use std::sync::{Arc, Mutex, MutexGuard};

use arc_swap::ArcSwap;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Node, Pod};
use realload_common::objects::{NodeView, bound_pod};
use realload_common::policy::Policy;
use realload_common::reading::RawReading;
use realload_common::scoring::{self, Allocatable, BoundPod, Judgement, NodeAssessment, NodeInput};
use realload_common::workload::{UsageRatios, UsageTable, WorkloadKey};
use smallvec::SmallVec;
use tokio::sync::watch;

mod dense;
mod ledger;
mod timeline;

pub use dense::Dense;
use dense::Nodes;
pub use ledger::{Ledger, NodePods};
use timeline::stable_span;
pub use timeline::{BadSince, covered_until, horizon, next_bad_since};

/// Node names and pod uids are keys of the per-request lookups: a fast hash matters at 5,000
/// candidates, and `Arc<str>` keys make publishing a generation a copy of pointers.
pub type HashMap<K, V> = rustc_hash::FxHashMap<K, V>;

/// Where "now" comes from: the system clock, a fixed instant (`--now`, snapshot mode), or an
/// instant the caller moves (tests).
#[derive(Debug, Clone)]
pub enum Clock {
    System,
    Fixed(Timestamp),
    Manual(Arc<Mutex<Timestamp>>),
}

impl Clock {
    pub fn now(&self) -> Timestamp {
        match self {
            Clock::System => Timestamp::now(),
            Clock::Fixed(t) => *t,
            Clock::Manual(t) => *t.lock().unwrap_or_else(|p| p.into_inner()),
        }
    }

    /// A clock that stands at `t` until [`Clock::set`] moves it.
    pub fn manual(t: Timestamp) -> Clock {
        Clock::Manual(Arc::new(Mutex::new(t)))
    }

    /// Moves a manual clock; other clocks ignore it.
    pub fn set(&self, t: Timestamp) {
        if let Clock::Manual(m) = self {
            *m.lock().unwrap_or_else(|p| p.into_inner()) = t;
        }
    }
}

/// One Node as the index holds it.
#[derive(Debug, Clone)]
pub struct NodeEntry {
    pub view: Arc<NodeView>,
    /// See [`NodeInput::bad_since`].
    pub bad_since: BadSince,
    cached: Option<CachedJudgement>,
}

#[derive(Debug, Clone)]
struct CachedJudgement {
    judgement: Judgement,
    from: Timestamp,
    until: Timestamp,
    /// See [`reading_fingerprint`].
    fingerprint: u64,
}

/// A fingerprint of what a node's judgement is computed from that a non-cache request also
/// carries: the values of the policy's reading annotations and the allocatable. A request whose
/// Node has the fingerprint of the indexed one is judged from the cache without touching the
/// index's copy (64 bits: two different annotation sets collide with odds of about 1 in 10^19,
/// and both would be readings of the same node).
pub fn reading_fingerprint<'a>(
    values: impl Iterator<Item = Option<&'a str>>,
    allocatable: Allocatable,
) -> u64 {
    use std::hash::Hasher;
    let mut h = rustc_hash::FxHasher::default();
    for value in values {
        match value {
            Some(v) => {
                h.write_u8(1);
                h.write(v.as_bytes());
                h.write_u8(0xff);
            }
            None => h.write_u8(0),
        }
    }
    h.write_u64(allocatable.cpu_millis);
    h.write_u64(allocatable.memory_bytes);
    h.finish()
}

/// One immutable state of the index. Requests read exactly one.
#[derive(Debug, Clone)]
pub struct Generation {
    /// Increases with every publication.
    pub id: u64,
    pub policy: Arc<Policy>,
    pub nodes: HashMap<Arc<str>, Arc<NodeEntry>>,
    /// The nodes' cached judgements, laid out for requests (see [`Dense`]).
    pub dense: Arc<Dense>,
    pub ledger: HashMap<Arc<str>, Arc<NodePods>>,
    pub ledger_len: usize,
    pub nodes_synced: bool,
    pub pods_synced: bool,
    /// Indexed nodes that were unknown when their judgement was last made (at most a
    /// housekeeping period ago): the fleet half of the circuit breaker.
    pub unknown_nodes: usize,
    /// The learned per-workload usage table (empty until one is published).
    pub usage: Arc<UsageTable>,
}

impl Generation {
    fn empty(policy: Arc<Policy>) -> Generation {
        Generation {
            id: 0,
            policy,
            nodes: HashMap::default(),
            dense: Arc::default(),
            ledger: HashMap::default(),
            ledger_len: 0,
            nodes_synced: false,
            pods_synced: false,
            unknown_nodes: 0,
            usage: Arc::default(),
        }
    }

    /// The learned usage shares of `workload`, when the policy uses learning and the table is
    /// current at `now` (else the hot-spot factors apply).
    /// `workload` is only worked out when the table is in force.
    pub fn learned_for(
        &self,
        workload: impl FnOnce() -> Option<WorkloadKey>,
        now: Timestamp,
    ) -> Option<UsageRatios> {
        learned_in(&self.policy, &self.usage, workload, now)
    }

    /// Unknown and all indexed nodes, for [`scoring::breaker_trips_for`]; `None` before any
    /// node is indexed.
    pub fn fleet(&self) -> Option<(usize, usize)> {
        (!self.nodes.is_empty()).then_some((self.unknown_nodes, self.nodes.len()))
    }

    /// Both watches have listed everything since they last started.
    pub fn synced(&self) -> bool {
        self.nodes_synced && self.pods_synced
    }

    pub fn pods_on(&self, node: &str) -> &[BoundPod] {
        self.ledger.get(node).map_or(&[], |p| p.pods())
    }

    /// Everything the decision needs of an indexed node (a name the index does not know is an
    /// unknown node without readings).
    pub fn input<'a>(&'a self, name: &str, in_flight: u32) -> NodeInput<'a> {
        let pods = self.pods_on(name);
        match self.nodes.get(name) {
            Some(entry) => NodeInput {
                readings: &entry.view.readings,
                bad_since: &entry.bad_since,
                pods,
                in_flight,
                allocatable: entry.view.allocatable,
            },
            None => NodeInput {
                pods,
                in_flight,
                ..NodeInput::default()
            },
        }
    }

    /// One indexed node, fully assessed (explain, `/debug/nodes`).
    pub fn assess(&self, name: &str, in_flight: u32, now: Timestamp) -> NodeAssessment {
        scoring::assess(&self.policy, &self.input(name, in_flight), now)
    }

    /// The judgement of one indexed node at `now`, from the generation's cache while it holds.
    /// In-flight pods are not in it: see [`Judgement::with_in_flight`].
    pub fn judge(&self, name: &str, now: Timestamp) -> Judgement {
        if let Some(judgement) = self.dense.get(name, now) {
            return judgement;
        }
        scoring::judge(&self.policy, &self.assess(name, 0, now))
    }

    /// Assesses an indexed node with pods tentatively reserved on it, counted as bound when
    /// they were reserved.
    pub fn assess_reserved(
        &self,
        name: &str,
        reserved: &[BoundPod],
        in_flight: u32,
        now: Timestamp,
    ) -> NodeAssessment {
        let mut input = self.input(name, in_flight);
        let pods: SmallVec<[BoundPod; 16]> = input.pods.iter().chain(reserved).copied().collect();
        input.pods = &pods;
        scoring::assess(&self.policy, &input, now)
    }

    /// [`Generation::assess_reserved`], judged.
    pub fn judge_reserved(
        &self,
        name: &str,
        reserved: &[BoundPod],
        in_flight: u32,
        now: Timestamp,
    ) -> Judgement {
        scoring::judge(
            &self.policy,
            &self.assess_reserved(name, reserved, in_flight, now),
        )
    }

    /// The cached judgement of a node a non-cache request carries, when the request's copy has
    /// the [`reading_fingerprint`] of the index's (the usual case: the scheduler's cache and the
    /// watch saw the same object). `None` means judge the carried copy.
    pub fn judge_carried_if_indexed(
        &self,
        node: &crate::protocol::NodeRead<'_>,
        allocatable: Allocatable,
        now: Timestamp,
    ) -> Option<Judgement> {
        let fingerprint = reading_fingerprint(
            self.policy
                .metrics
                .iter()
                .map(|m| node.annotation(&m.annotation)),
            allocatable,
        );
        self.dense.get_matching(&node.name, now, fingerprint)
    }

    /// Judges a node from readings carried in the request (non-cache mode), with the ledger's
    /// pods for its name; the index's "bad since" instants apply when it holds the same readings.
    pub fn assess_carried(
        &self,
        name: &str,
        readings: &[RawReading],
        allocatable: Allocatable,
        in_flight: u32,
        reserved: &[BoundPod],
        now: Timestamp,
    ) -> NodeAssessment {
        let bad_since: &[Option<Timestamp>] = match self.nodes.get(name) {
            Some(entry) if entry.view.readings.as_slice() == readings => &entry.bad_since,
            _ => &[],
        };
        let ledger = self.pods_on(name);
        let pods: std::borrow::Cow<'_, [BoundPod]> = if reserved.is_empty() {
            ledger.into()
        } else {
            ledger
                .iter()
                .chain(reserved)
                .copied()
                .collect::<Vec<_>>()
                .into()
        };
        scoring::assess(
            &self.policy,
            &NodeInput {
                readings,
                bad_since,
                pods: &pods,
                in_flight,
                allocatable,
            },
            now,
        )
    }
}

fn learned_in(
    policy: &Policy,
    table: &UsageTable,
    workload: impl FnOnce() -> Option<WorkloadKey>,
    now: Timestamp,
) -> Option<UsageRatios> {
    if !table.in_force(&policy.workload_usage, now) {
        return None;
    }
    table.ratios(&workload()?)
}

/// The writer's working state, from which generations are published.
#[derive(Debug)]
struct Writer {
    policy: Arc<Policy>,
    nodes: Nodes,
    ledger: Ledger,
    /// Objects collected during a watch's initial list, swapped in when it completes.
    pending_nodes: Option<HashMap<Arc<str>, Arc<NodeEntry>>>,
    pending_ledger: Option<Ledger>,
    nodes_synced: bool,
    pods_synced: bool,
    next_id: u64,
    usage: Arc<UsageTable>,
}

impl Writer {
    fn entry(&self, view: NodeView, now: Timestamp) -> NodeEntry {
        let previous = self
            .nodes
            .get(view.name.as_str())
            .map(|e| (e.view.readings.as_slice(), e.bad_since.as_slice()));
        let bad_since = next_bad_since(&self.policy, previous, &view.readings, now);
        NodeEntry {
            view: Arc::new(view),
            bad_since,
            cached: None,
        }
    }

    /// Computes the node's judgement at `now` with the ledger as it is, and the span it holds.
    fn with_judgement(&self, mut entry: NodeEntry, now: Timestamp) -> NodeEntry {
        let input = NodeInput {
            readings: &entry.view.readings,
            bad_since: &entry.bad_since,
            pods: self.ledger.pods_on(&entry.view.name),
            in_flight: 0,
            allocatable: entry.view.allocatable,
        };
        let judgement = scoring::judge(&self.policy, &scoring::assess(&self.policy, &input, now));
        let (from, until) = stable_span(&self.policy, &entry.view.readings, now);
        let view = &entry.view;
        let fingerprint = reading_fingerprint(
            self.policy
                .metrics
                .iter()
                .map(|m| view.annotations.get(&m.annotation).map(String::as_str)),
            view.allocatable,
        );
        entry.cached = Some(CachedJudgement {
            judgement,
            from,
            until,
            fingerprint,
        });
        entry
    }

    /// Recomputes a node's cached judgement (its ledger pods changed).
    fn rejudge(&mut self, node: &str, now: Timestamp) {
        if let Some(entry) = self.nodes.get(node) {
            let entry = self.with_judgement(NodeEntry::clone(entry), now);
            self.nodes
                .insert(entry.view.name.as_str().into(), Arc::new(entry));
        }
    }

    fn covered(&self, node: &str, now: Timestamp) -> Timestamp {
        match self.nodes.get(node) {
            Some(e) => covered_until(&self.policy, &e.view.readings, &e.bad_since, now),
            None => covered_until(&self.policy, &[], &[], now),
        }
    }

    fn generation(&mut self) -> Generation {
        self.next_id += 1;
        let unknown_nodes = self
            .nodes
            .map()
            .values()
            .filter(|e| e.cached.as_ref().is_none_or(|c| !c.judgement.known))
            .count();
        Generation {
            unknown_nodes,
            id: self.next_id,
            policy: self.policy.clone(),
            nodes: self.nodes.map().clone(),
            dense: self.nodes.dense(),
            ledger: self.ledger.by_node.clone(),
            ledger_len: self.ledger.len(),
            nodes_synced: self.nodes_synced,
            pods_synced: self.pods_synced,
            usage: self.usage.clone(),
        }
    }
}

/// What a pod watch event means for the ledger.
enum PodChange {
    Bound {
        uid: Arc<str>,
        node: Arc<str>,
        pod: BoundPod,
    },
    Gone {
        uid: Arc<str>,
    },
}

/// The index: the published generation, and the writer that makes the next one.
pub struct Index {
    published: ArcSwap<Generation>,
    writer: Mutex<Writer>,
    synced: watch::Sender<bool>,
    pub clock: Clock,
}

impl Index {
    pub fn new(policy: Policy, clock: Clock) -> Index {
        let policy = Arc::new(policy);
        Index {
            published: ArcSwap::from_pointee(Generation::empty(policy.clone())),
            writer: Mutex::new(Writer {
                policy,
                nodes: Nodes::default(),
                ledger: Ledger::default(),
                pending_nodes: None,
                pending_ledger: None,
                nodes_synced: false,
                pods_synced: false,
                next_id: 0,
                usage: Arc::default(),
            }),
            synced: watch::Sender::new(false),
            clock,
        }
    }

    /// The generation in force.
    pub fn current(&self) -> Arc<Generation> {
        self.published.load_full()
    }

    /// A receiver that sees `true` whenever both watches have synced.
    pub fn subscribe_synced(&self) -> watch::Receiver<bool> {
        self.synced.subscribe()
    }

    /// A receiver for the node watch alone having synced (what the collector needs) is the
    /// generation's `nodes_synced`; this waits for both.
    pub async fn wait_synced(&self) {
        let mut rx = self.subscribe_synced();
        // The sender lives as long as the index; an error cannot happen while we hold `self`.
        let _ = rx.wait_for(|synced| *synced).await;
    }

    fn write(&self) -> MutexGuard<'_, Writer> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn publish(&self, writer: &mut Writer) {
        let generation = writer.generation();
        let synced = generation.synced();
        self.published.store(Arc::new(generation));
        self.synced.send_if_modified(|s| {
            let changed = *s != synced;
            *s = synced;
            changed
        });
    }

    pub fn policy(&self) -> Arc<Policy> {
        self.current().policy.clone()
    }

    /// Puts a new policy in force: every node's readings re-parsed for it and re-judged, all in
    /// the one generation that carries the new policy.
    pub fn set_policy(&self, policy: Policy) {
        let now = self.clock.now();
        let mut w = self.write();
        w.policy = Arc::new(policy);
        let views: Vec<NodeView> = w
            .nodes
            .map()
            .values()
            .map(|e| {
                let mut view = NodeView::clone(&e.view);
                view.reparse(&w.policy);
                view
            })
            .collect();
        let mut nodes = HashMap::default();
        for view in views {
            let bad_since = next_bad_since(&w.policy, None, &view.readings, now);
            let entry = NodeEntry {
                view: Arc::new(view),
                bad_since,
                cached: None,
            };
            let entry = w.with_judgement(entry, now);
            nodes.insert(entry.view.name.as_str().into(), Arc::new(entry));
        }
        w.nodes.replace(nodes);
        self.publish(&mut w);
    }

    // ---- node watch -------------------------------------------------------------------------

    pub fn apply_node(&self, node: &Node) {
        let now = self.clock.now();
        let mut w = self.write();
        let view = NodeView::from_node(node, &w.policy);
        let entry = w.entry(view, now);
        let name: Arc<str> = entry.view.name.as_str().into();
        if let Some(pending) = w.pending_nodes.as_mut() {
            pending.insert(name.clone(), Arc::new(entry.clone()));
        }
        let covered = covered_until(&w.policy, &entry.view.readings, &entry.bad_since, now);
        w.ledger.prune_node(&name, covered);
        let entry = w.with_judgement(entry, now);
        w.nodes.insert(name, Arc::new(entry));
        // During the first list nothing is served from the index yet (requests get neutral
        // answers until it syncs): publish once at the end, not once per node.
        if w.nodes_synced || w.pending_nodes.is_none() {
            self.publish(&mut w);
        }
    }

    pub fn delete_node(&self, node: &Node) {
        let Some(name) = node.metadata.name.as_deref() else {
            return;
        };
        let mut w = self.write();
        w.nodes.remove(name);
        if let Some(pending) = w.pending_nodes.as_mut() {
            pending.remove(name);
        }
        self.publish(&mut w);
    }

    pub fn nodes_init(&self) {
        self.write().pending_nodes = Some(HashMap::default());
    }

    pub fn nodes_init_done(&self) {
        let now = self.clock.now();
        let mut w = self.write();
        if let Some(pending) = w.pending_nodes.take() {
            let judged: HashMap<Arc<str>, Arc<NodeEntry>> = pending
                .into_iter()
                .map(|(k, e)| (k, Arc::new(w.with_judgement(NodeEntry::clone(&e), now))))
                .collect();
            w.nodes.replace(judged);
        }
        w.nodes_synced = true;
        self.publish(&mut w);
    }

    // ---- pod watch --------------------------------------------------------------------------

    fn pod_change(w: &Writer, pod: &Pod, now: Timestamp) -> Option<PodChange> {
        let uid: Arc<str> = pod.metadata.uid.as_deref()?.into();
        if pod.metadata.deletion_timestamp.is_some() {
            return Some(PodChange::Gone { uid });
        }
        let Some((node, mut bound)) = bound_pod(pod) else {
            return Some(PodChange::Gone { uid });
        };
        // Learned once, when the binding is seen: the pod keeps the shares it was counted at.
        bound.learned = learned_in(&w.policy, &w.usage, || WorkloadKey::of(pod), now);
        if bound.bound_at > w.covered(node, now) {
            Some(PodChange::Bound {
                uid,
                node: node.into(),
                pod: bound,
            })
        } else {
            Some(PodChange::Gone { uid })
        }
    }

    pub fn apply_pod(&self, pod: &Pod) {
        let now = self.clock.now();
        let mut w = self.write();
        let Some(change) = Self::pod_change(&w, pod, now) else {
            return;
        };
        let mut touched: SmallVec<[Arc<str>; 2]> = SmallVec::new();
        let ledger = match w.pending_ledger.as_mut() {
            Some(pending) => pending,
            None => &mut w.ledger,
        };
        match change {
            PodChange::Bound { uid, node, pod } => {
                touched.extend(ledger.node_of(&uid));
                ledger.insert(uid, node.clone(), pod);
                touched.push(node);
            }
            PodChange::Gone { uid } => touched.extend(ledger.remove(&uid)),
        }
        if w.pending_ledger.is_none() {
            for node in &touched {
                w.rejudge(node, now);
            }
            self.publish(&mut w);
        }
    }

    pub fn delete_pod(&self, pod: &Pod) {
        let Some(uid) = pod.metadata.uid.as_deref() else {
            return;
        };
        let now = self.clock.now();
        let mut w = self.write();
        if let Some(pending) = w.pending_ledger.as_mut() {
            pending.remove(uid);
        }
        if let Some(node) = w.ledger.remove(uid) {
            w.rejudge(&node, now);
            self.publish(&mut w);
        }
    }

    pub fn pods_init(&self) {
        self.write().pending_ledger = Some(Ledger::default());
    }

    pub fn pods_init_done(&self) {
        let now = self.clock.now();
        let mut w = self.write();
        if let Some(pending) = w.pending_ledger.take() {
            w.ledger = pending;
            let names: Vec<Arc<str>> = w.nodes.map().keys().cloned().collect();
            for name in names {
                w.rejudge(&name, now);
            }
        }
        w.pods_synced = true;
        self.publish(&mut w);
    }

    /// A watch stopped (or the process is shutting down): not synced until it lists again.
    pub fn mark_unsynced(&self, nodes: bool, pods: bool) {
        let mut w = self.write();
        w.nodes_synced &= !nodes;
        w.pods_synced &= !pods;
        self.publish(&mut w);
    }

    /// Puts a newly published usage table in force. Pods already in the ledger keep the shares
    /// they were counted at; pods bound from now on, and every request, use the new table.
    pub fn set_usage(&self, table: UsageTable) {
        let mut w = self.write();
        w.usage = Arc::new(table);
        self.publish(&mut w);
    }

    /// Counts a pod the extender bound itself (`bindVerb`) at once, before any watch sees it.
    pub fn record_binding(
        &self,
        uid: &str,
        node: &str,
        requests: realload_common::objects::Requests,
        learned: Option<UsageRatios>,
    ) {
        let now = self.clock.now();
        let mut w = self.write();
        w.ledger.insert(
            uid.into(),
            node.into(),
            BoundPod {
                bound_at: now,
                cpu_millis: requests.cpu_millis,
                memory_bytes: requests.memory_bytes,
                pinned: false,
                learned,
            },
        );
        w.rejudge(node, now);
        self.publish(&mut w);
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

    /// Drops ledger pods that newer readings (or time) now cover, and re-judges nodes whose
    /// cached judgement no longer holds at `now`. Returns the ledger size.
    pub fn housekeep(&self) -> usize {
        let now = self.clock.now();
        let mut w = self.write();
        let mut changed = false;
        for node in w.ledger.nodes() {
            let covered = w.covered(&node, now);
            if w.ledger.prune_node(&node, covered) {
                w.rejudge(&node, now);
                changed = true;
            }
        }
        let expired: Vec<Arc<str>> = w
            .nodes
            .map()
            .iter()
            .filter(|(_, e)| {
                e.cached
                    .as_ref()
                    .is_none_or(|c| now < c.from || now > c.until)
            })
            .map(|(k, _)| k.clone())
            .collect();
        changed |= !expired.is_empty();
        for name in expired {
            w.rejudge(&name, now);
        }
        if changed {
            self.publish(&mut w);
        }
        w.ledger.len()
    }
}

#[cfg(test)]
mod tests;

//! The decisions, as pure functions: reading quality, the hot-spot estimate, the filter, the score
//! and the circuit breaker (docs/architecture.md, "Data flow and time").
//!
//! `assess_node` turns a node's parsed readings, the pods bound to it since its newest valid
//! reading, and the clock into a [`NodeAssessment`]; `filter_verdict`, `score` and `decide` judge a
//! set of candidates. The extender, `explain`, the descheduler and the decision-quality simulator
//! all call these, so they cannot disagree.

use std::sync::Arc;

use jiff::Timestamp;
use serde::Serialize;
use smallvec::SmallVec;

use crate::policy::{Policy, Resource};
use crate::reading::{Assessed, Quality, RawReading};
use crate::workload::{ExpectedUsage, UsageRatios};

/// kube-scheduler's extender score range (`MinExtenderPriority`..=`MaxExtenderPriority`).
pub const MIN_SCORE: i64 = 0;
pub const MAX_SCORE: i64 = 10;
/// The score every candidate gets when load-awareness is suspended (breaker, neutral pods).
pub const NEUTRAL_SCORE: i64 = MIN_SCORE;

/// A node's allocatable resources, in the units the estimate uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Allocatable {
    pub cpu_millis: u64,
    pub memory_bytes: u64,
}

/// A pod the extender saw bound to a node: its requests and when it was bound.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BoundPod {
    pub bound_at: Timestamp,
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    /// Pinned to its node whatever realload says (DaemonSet or static pod): it adds load, but
    /// does not count toward the unknown-node cap, since no placement decision brought it.
    pub pinned: bool,
    /// Its workload's learned usage shares, when known: they replace the hot-spot factors.
    pub learned: Option<UsageRatios>,
}

impl BoundPod {
    /// What the pod is expected to use (CPU millis, memory bytes): requests × learned shares,
    /// or × the hot-spot factors where nothing was learned.
    pub fn expected(&self, policy: &Policy) -> (f64, f64) {
        let e = ExpectedUsage::new(
            self.learned,
            policy.hotspot.cpu_factor,
            policy.hotspot.memory_factor,
        );
        (
            self.cpu_millis as f64 * e.cpu_share,
            self.memory_bytes as f64 * e.memory_share,
        )
    }
}

/// Load added by pods bound after the node's newest valid reading, as shares of allocatable.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct ResourceShares {
    pub cpu: f64,
    pub memory: f64,
}

impl ResourceShares {
    pub fn of(&self, resource: Resource) -> f64 {
        match resource {
            Resource::Cpu => self.cpu,
            Resource::Memory => self.memory,
        }
    }
}

/// The hot-spot estimate: each pod counted at the part of its expected usage
/// ([`BoundPod::expected`]) that the node's newest valid sample (`covered_until`) does not show
/// yet ([`unshown_part`]), as shares of allocatable. A node without any valid reading has
/// nothing to add to (it is unknown and scored at `unknownLoad`), so `None` adds nothing.
pub fn hotspot_addition<'a>(
    pods: impl IntoIterator<Item = &'a BoundPod>,
    covered_until: Option<Timestamp>,
    allocatable: Allocatable,
    policy: &Policy,
) -> ResourceShares {
    let Some(covered_until) = covered_until else {
        return ResourceShares::default();
    };
    let (mut cpu, mut memory) = (0.0, 0.0);
    for pod in pods {
        let part = unshown_part(policy, pod.bound_at, covered_until);
        if part > 0.0 {
            let (c, m) = pod.expected(policy);
            cpu += c * part;
            memory += m * part;
        }
    }
    shares_of(cpu, memory, allocatable)
}

/// The part (0..=1) of a pod bound at `bound_at` that a sample taken at `sampled_at` does not
/// show: all of it when bound after the sample; none once the sample is `hotspot.readingWindow`
/// or more after the binding; in between, linearly, as a windowed average takes a new pod in.
/// (Counting it in full only until the first sample after its binding would forget a pod a
/// 5-minute average shows at a fifth.)
pub fn unshown_part(policy: &Policy, bound_at: Timestamp, sampled_at: Timestamp) -> f64 {
    if bound_at > sampled_at {
        return 1.0;
    }
    let window = policy.hotspot.reading_window.as_secs_f64();
    if window <= 0.0 {
        return 0.0;
    }
    let since = sampled_at.duration_since(bound_at).as_secs_f64();
    (1.0 - since / window).clamp(0.0, 1.0)
}

/// Expected usage as shares of a node's allocatable.
fn shares_of(cpu: f64, memory: f64, allocatable: Allocatable) -> ResourceShares {
    let share = |used: f64, available: u64| {
        if available == 0 {
            // Nothing to divide by: such a node has no room at all and fit checks reject it.
            0.0
        } else {
            used / available as f64
        }
    };
    ResourceShares {
        cpu: share(cpu, allocatable.cpu_millis),
        memory: share(memory, allocatable.memory_bytes),
    }
}

/// The pod being placed and the policy's rules, prepared once per request for
/// [`Judgement::with_placement`].
#[derive(Debug, Clone, Copy)]
pub struct PodPlacement {
    include: bool,
    /// Expected usage: requests × learned share or hot-spot factor (divided by a node's
    /// allocatable per node).
    cpu: f64,
    memory: f64,
    metrics: [PlacementMetric; MAX_METRICS],
    len: usize,
    idle: f64,
    /// 1 / (1 − idleBelow).
    per_span: f64,
    total_weight: f64,
}

#[derive(Debug, Clone, Copy, Default)]
struct PlacementMetric {
    cpu: bool,
    /// `filterAbove`, or infinity.
    filter_above: f64,
    /// 0 for unscored metrics.
    weight: f64,
}

impl PodPlacement {
    pub fn new(
        policy: &Policy,
        cpu_millis: u64,
        memory_bytes: u64,
        learned: Option<UsageRatios>,
    ) -> PodPlacement {
        let mut metrics = [PlacementMetric::default(); MAX_METRICS];
        let mut total_weight = 0.0;
        for (slot, spec) in metrics.iter_mut().zip(&policy.metrics) {
            let weight = if spec.is_scored() { spec.weight } else { 0.0 };
            total_weight += weight;
            *slot = PlacementMetric {
                cpu: spec.resource == crate::policy::Resource::Cpu,
                filter_above: spec.filter_above.unwrap_or(f64::INFINITY),
                weight,
            };
        }
        let idle = policy.scoring.idle_below;
        let expected = ExpectedUsage::new(
            learned,
            policy.hotspot.cpu_factor,
            policy.hotspot.memory_factor,
        );
        PodPlacement {
            include: policy.hotspot.include_pod,
            cpu: expected.cpu_share * cpu_millis as f64,
            memory: expected.memory_share * memory_bytes as f64,
            metrics,
            len: policy.metrics.len().min(MAX_METRICS),
            idle,
            per_span: 1.0 / (1.0 - idle),
            total_weight,
        }
    }
}

/// What the pod being placed adds to a node's estimate (`hotspot.includePod`): its expected
/// usage, as shares of the node's allocatable. Nothing when the policy says not.
pub fn pod_shares(
    policy: &Policy,
    cpu_millis: u64,
    memory_bytes: u64,
    learned: Option<UsageRatios>,
    allocatable: Allocatable,
) -> ResourceShares {
    if !policy.hotspot.include_pod {
        return ResourceShares::default();
    }
    let e = ExpectedUsage::new(
        learned,
        policy.hotspot.cpu_factor,
        policy.hotspot.memory_factor,
    );
    shares_of(
        cpu_millis as f64 * e.cpu_share,
        memory_bytes as f64 * e.memory_share,
        allocatable,
    )
}

/// One metric of one node, judged.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricAssessment {
    pub assessed: Assessed,
    /// The hot-spot share added to this metric (by its resource).
    pub hotspot: f64,
    /// Reading plus hot-spot share; `None` unless the reading is valid.
    pub estimated: Option<f64>,
}

impl MetricAssessment {
    pub fn quality(&self) -> Quality {
        self.assessed.quality()
    }
}

/// Per-metric entries, inline for the usual handful of metrics: judging a node allocates nothing.
pub type Metrics = SmallVec<[MetricAssessment; 4]>;

/// A node judged at one instant: one entry per policy metric, in policy order.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeAssessment {
    pub metrics: Metrics,
    pub hotspot: ResourceShares,
    /// False when any scored metric lacks a valid reading: the node is *unknown*.
    pub known: bool,
    /// For an unknown node: since when it has been unknown (`None` when known, or when nothing
    /// tells: then every remembered pod counts).
    pub unknown_since: Option<Timestamp>,
    /// For an unknown node: the pods placed on it since it became unknown, in-flight ones
    /// included, that count toward `guards.unknownPodCap` (0 for a known node).
    pub unknown_pods: u32,
    /// The node's allocatable (what the pod's own share is taken of).
    pub allocatable: Allocatable,
}

/// What realload knows of one node besides the policy and the clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct NodeInput<'a> {
    /// One parsed reading per policy metric, in policy order.
    pub readings: &'a [RawReading],
    /// Per policy metric: since when its annotation has held a value that can never be valid
    /// (missing, unparsable, below the floor), as the watch saw it. Missing entries mean "as
    /// long as the caller remembers pods".
    pub bad_since: &'a [Option<Timestamp>],
    /// Pods bound to the node that no valid reading covers yet (and, while the node is
    /// unknown, those bound since it became unknown).
    pub pods: &'a [BoundPod],
    /// Pods that passed the filter onto this node and whose binding has not been seen yet.
    pub in_flight: u32,
    pub allocatable: Allocatable,
}

/// Since when a node has been unknown, if it is unknown at `now`: the earliest instant from
/// which every currently non-valid scored metric has stayed non-valid. A stale reading went
/// bad when it passed its max age; other bad values went bad when the watch first saw them
/// (`bad_since`), or, when nothing tells, at the beginning of memory (`Timestamp::MIN`).
pub fn unknown_since(
    policy: &Policy,
    readings: &[RawReading],
    bad_since: &[Option<Timestamp>],
    now: Timestamp,
) -> Option<Timestamp> {
    let mut since: Option<Timestamp> = None;
    for (i, spec) in policy.metrics.iter().enumerate() {
        if !spec.is_scored() {
            continue;
        }
        let raw = readings.get(i).unwrap_or(&RawReading::Missing);
        let went_bad = match raw.classify(now, spec.max_age, spec.floor) {
            Assessed::Valid { .. } => continue,
            Assessed::Stale { reading, .. } => reading
                .sampled_at
                .checked_add(spec.max_age)
                .unwrap_or(Timestamp::MIN),
            _ => bad_since
                .get(i)
                .copied()
                .flatten()
                .unwrap_or(Timestamp::MIN),
        };
        since = Some(since.map_or(went_bad, |s| s.min(went_bad)));
    }
    since
}

/// The pods that count toward the unknown-node cap: placed (not pinned) at or after `since`.
/// Binding times have whole-second precision, so `since` is taken down to its second: a pod
/// bound in the same second counts (the cap errs on the safe side).
pub fn pods_since(pods: &[BoundPod], since: Option<Timestamp>) -> u32 {
    let since = since.map(|t| Timestamp::from_second(t.as_second()).unwrap_or(Timestamp::MIN));
    let n = pods
        .iter()
        .filter(|p| !p.pinned && since.is_none_or(|s| p.bound_at >= s))
        .count();
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The newest sample time among a node's valid readings.
pub fn newest_valid_sample(assessed: &[Assessed]) -> Option<Timestamp> {
    assessed
        .iter()
        .filter_map(|a| match a {
            Assessed::Valid { reading, .. } => Some(reading.sampled_at),
            _ => None,
        })
        .max()
}

/// Classifies `readings` (aligned with `policy.metrics`) at `now` and adds the hot-spot estimate
/// of `bound_pods` that no valid reading covers yet. Every pod given counts toward the
/// unknown-node cap if the node is unknown; [`assess`] takes the full input.
pub fn assess_node(
    policy: &Policy,
    readings: &[RawReading],
    bound_pods: &[BoundPod],
    allocatable: Allocatable,
    now: Timestamp,
) -> NodeAssessment {
    assess(
        policy,
        &NodeInput {
            readings,
            bad_since: &[],
            pods: bound_pods,
            in_flight: 0,
            allocatable,
        },
        now,
    )
}

/// Judges one node at `now`: every reading classified, the hot-spot estimate added, and for an
/// unknown node the pods it took since it became unknown.
pub fn assess(policy: &Policy, input: &NodeInput<'_>, now: Timestamp) -> NodeAssessment {
    let assessed: SmallVec<[Assessed; 4]> = policy
        .metrics
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            input
                .readings
                .get(i)
                .unwrap_or(&RawReading::Missing)
                .classify(now, spec.max_age, spec.floor)
        })
        .collect();
    let hotspot = hotspot_addition(
        input.pods,
        newest_valid_sample(&assessed),
        input.allocatable,
        policy,
    );
    let mut node = assessment_from(policy, assessed, hotspot);
    node.allocatable = input.allocatable;
    if !node.known {
        let since = unknown_since(policy, input.readings, input.bad_since, now)
            .filter(|t| *t > Timestamp::MIN);
        node.unknown_since = since;
        node.unknown_pods = pods_since(input.pods, since).saturating_add(input.in_flight);
    }
    node
}

/// Builds an assessment from already-classified readings and a hot-spot share.
pub fn assessment_from(
    policy: &Policy,
    assessed: impl IntoIterator<Item = Assessed>,
    hotspot: ResourceShares,
) -> NodeAssessment {
    let metrics: Metrics = policy
        .metrics
        .iter()
        .zip(assessed)
        .map(|(spec, assessed)| {
            let add = hotspot.of(spec.resource);
            MetricAssessment {
                estimated: assessed.valid_ratio().map(|r| r + add),
                hotspot: add,
                assessed,
            }
        })
        .collect();
    let known = policy
        .metrics
        .iter()
        .zip(&metrics)
        .filter(|(spec, _)| spec.is_scored())
        .all(|(_, m)| m.estimated.is_some());
    NodeAssessment {
        metrics,
        hotspot,
        known,
        unknown_since: None,
        unknown_pods: 0,
        allocatable: Allocatable::default(),
    }
}

/// Whether a node passes the load filter. Small and cheap to clone (16 bytes; a rejection is
/// shared), since requests copy one per candidate node.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "verdict", rename_all = "camelCase")]
pub enum FilterVerdict {
    Pass,
    /// A valid estimated load above the metric's `filterAbove`.
    Reject(Arc<Rejection>),
    /// An unknown node that already took `guards.unknownPodCap` pods since it became unknown.
    #[serde(rename_all = "camelCase")]
    UnknownCap {
        placed: u32,
        cap: u32,
    },
    /// An unknown node held back while a node with valid readings passes
    /// (`guards.unknownLastResort`).
    UnknownDeferred,
}

/// Why a node with a valid reading is rejected.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rejection {
    pub metric: String,
    pub threshold: f64,
    pub estimated: f64,
}

impl FilterVerdict {
    pub fn reject(metric: &str, threshold: f64, estimated: f64) -> FilterVerdict {
        FilterVerdict::Reject(Arc::new(Rejection {
            metric: metric.to_string(),
            threshold,
            estimated,
        }))
    }
}

/// The filter-rejection reason of [`FilterVerdict::UnknownCap`] in metrics and logs.
pub const UNKNOWN_CAP_REASON: &str = "unknown-cap";
/// The filter-rejection reason of [`FilterVerdict::UnknownDeferred`] in metrics and logs.
pub const UNKNOWN_DEFERRED_REASON: &str = "unknown-deferred";

impl FilterVerdict {
    pub fn passes(&self) -> bool {
        matches!(self, FilterVerdict::Pass)
    }

    /// The short, constant message kube-scheduler groups in the pod's event.
    pub fn message(&self) -> Option<String> {
        match self {
            FilterVerdict::Pass => None,
            FilterVerdict::Reject(r) => Some(format!(
                "realload: node {} above {:.2}",
                r.metric, r.threshold
            )),
            FilterVerdict::UnknownCap { cap, .. } => Some(format!(
                "realload: node load unknown and it took its {cap} pod(s) allowed until a valid reading; the pod waits for a reading or a known node"
            )),
            FilterVerdict::UnknownDeferred => Some(
                "realload: node load unknown; nodes with valid readings fit the pod".to_string(),
            ),
        }
    }

    /// Why a node was rejected, as a metric label: the metric, or `unknown-cap`.
    pub fn reason(&self) -> Option<&str> {
        match self {
            FilterVerdict::Pass => None,
            FilterVerdict::Reject(r) => Some(&r.metric),
            FilterVerdict::UnknownCap { .. } => Some(UNKNOWN_CAP_REASON),
            FilterVerdict::UnknownDeferred => Some(UNKNOWN_DEFERRED_REASON),
        }
    }
}

/// The filter: a node is rejected when a valid estimate is above a metric's threshold, or when
/// it is unknown and already took `guards.unknownPodCap` pods since it became unknown. Readings
/// that are not valid never reject for load (the node is not known to be hot).
pub fn filter_verdict(policy: &Policy, node: &NodeAssessment) -> FilterVerdict {
    if let Some(rejection) = load_rejection(policy, node.metrics.iter().map(|m| m.estimated)) {
        return rejection;
    }
    let cap = policy.guards.unknown_pod_cap;
    if !node.known && node.unknown_pods >= cap {
        return FilterVerdict::UnknownCap {
            placed: node.unknown_pods,
            cap,
        };
    }
    FilterVerdict::Pass
}

/// The load filter alone: the first metric whose valid estimate is above its `filterAbove`.
fn load_rejection(
    policy: &Policy,
    estimated: impl Iterator<Item = Option<f64>>,
) -> Option<FilterVerdict> {
    for (spec, estimated) in policy.metrics.iter().zip(estimated) {
        if let (Some(threshold), Some(estimated)) = (spec.filter_above, estimated)
            && estimated > threshold
        {
            return Some(FilterVerdict::reject(&spec.name, threshold, estimated));
        }
    }
    None
}

/// A load as the score counts it: at or below `scoring.idleBelow` a node counts as idle (the
/// request-based plugins decide between such nodes); above, linearly up to full load.
fn scored_load(policy: &Policy, load: f64) -> f64 {
    let idle = policy.scoring.idle_below;
    // multiplied by the reciprocal, exactly as `PodPlacement` does
    ((load - idle) * (1.0 / (1.0 - idle))).max(0.0)
}

/// `round(10 × Σ w·(1 − scored load) / Σ w)` over the scored metrics, clamped to 0..=10, where the
/// scored load is the estimate above `scoring.idleBelow`, rescaled (see [`scored_load`]). An
/// unknown node is scored as if every scored metric were loaded at `guards.unknownLoad`.
pub fn score(policy: &Policy, node: &NodeAssessment) -> i64 {
    score_of_loads(policy, node.known, node.metrics.iter().map(|m| m.estimated))
}

fn score_of_loads(
    policy: &Policy,
    known: bool,
    estimated: impl Iterator<Item = Option<f64>>,
) -> i64 {
    let (mut weighted, mut total_weight) = (0.0, 0.0);
    for (spec, estimated) in policy.metrics.iter().zip(estimated) {
        if !spec.is_scored() {
            continue;
        }
        let load = match (known, estimated) {
            (true, Some(estimated)) => estimated,
            _ => policy.guards.unknown_load,
        };
        weighted += spec.weight * (1.0 - scored_load(policy, load));
        total_weight += spec.weight;
    }
    if total_weight <= 0.0 {
        return NEUTRAL_SCORE;
    }
    rounded_score(MAX_SCORE as f64 * weighted / total_weight)
}

/// A raw score clamped to 0..=10, then rounded half up (what `round` does for these
/// non-negative values, without its library call: this runs per node per request). NaN is 0.
fn rounded_score(raw: f64) -> i64 {
    if raw.is_nan() {
        return MIN_SCORE;
    }
    (raw.clamp(MIN_SCORE as f64, MAX_SCORE as f64) + 0.5) as i64
}

/// Whether too many candidates are unknown for load to mean anything: strictly more than
/// `guards.maxUnknownFraction` of them.
pub fn breaker_trips(policy: &Policy, unknown: usize, candidates: usize) -> bool {
    candidates > 0 && unknown as f64 > policy.guards.max_unknown_fraction * candidates as f64
}

/// The breaker for one pod: it trips when more than `guards.maxUnknownFraction` of the nodes
/// kube-scheduler offered are unknown *and* the same holds for every node realload knows of
/// (`fleet`, when known). The second condition keeps a full cluster from tripping it: as the
/// nodes with readings fill up, kube-scheduler's own fit filters offer mostly the unknown ones,
/// which receive nothing and so keep their room; the breaker is for readings broken broadly
/// (a collector or Prometheus outage), not for the last free nodes being unknown.
pub fn breaker_trips_for(
    policy: &Policy,
    offered: (usize, usize),
    fleet: Option<(usize, usize)>,
) -> bool {
    breaker_trips(policy, offered.0, offered.1)
        && fleet.is_none_or(|(unknown, total)| breaker_trips(policy, unknown, total))
}

/// The answer for a whole candidate set.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub breaker_tripped: bool,
    pub unknown: usize,
    pub verdicts: Vec<FilterVerdict>,
    pub scores: Vec<i64>,
    /// Per candidate: whether it is known (all scored readings valid).
    pub known: Vec<bool>,
}

/// What the set-level decision needs of one node: small, so a request over thousands of
/// candidates keeps no per-node assessment around.
#[derive(Debug, Clone, PartialEq)]
pub struct Judgement {
    pub known: bool,
    pub verdict: FilterVerdict,
    pub score: i64,
    /// See [`NodeAssessment::unknown_pods`].
    pub unknown_pods: u32,
    /// Per policy metric, the valid estimate the verdict and score came from (what
    /// [`Judgement::with_pod`] adds the pod to).
    pub estimated: Estimates,
    pub allocatable: Allocatable,
    /// A valid reading alone (without any estimate added) is above its metric's `filterAbove`:
    /// the node is hot by measurement, and `guards.neverStrand` never lets a pod onto it.
    pub reading_over: bool,
}

/// Per policy metric (a policy has at most [`MAX_METRICS`]), a valid estimate or none: plain
/// data, copied with a judgement and cached per node, so adding the pod costs no allocation.
#[derive(Debug, Clone, Copy)]
pub struct Estimates {
    /// NaN for none.
    values: [f32; MAX_METRICS],
    len: u8,
}

/// The most metrics a policy may have (validation refuses more).
pub const MAX_METRICS: usize = crate::policy::MAX_METRICS;

impl Estimates {
    pub fn get(&self, i: usize) -> Option<f64> {
        self.values
            .get(i)
            .filter(|_| i < usize::from(self.len))
            .filter(|v| !v.is_nan())
            .map(|v| f64::from(*v))
    }

    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl PartialEq for Estimates {
    /// Equal when they hold the same estimates (none equals none: the NaN marks compare equal).
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len
            && (0..self.len()).all(|i| self.values[i].to_bits() == other.values[i].to_bits())
    }
}

impl Default for Estimates {
    fn default() -> Self {
        std::iter::empty().collect()
    }
}

impl FromIterator<Option<f64>> for Estimates {
    fn from_iter<I: IntoIterator<Item = Option<f64>>>(iter: I) -> Self {
        let mut e = Estimates {
            values: [f32::NAN; MAX_METRICS],
            len: 0,
        };
        for (slot, value) in e.values.iter_mut().zip(iter) {
            *slot = value.map_or(f32::NAN, |v| v as f32);
            e.len += 1;
        }
        e
    }
}

pub fn judge(policy: &Policy, node: &NodeAssessment) -> Judgement {
    Judgement {
        reading_over: policy.metrics.iter().zip(&node.metrics).any(|(spec, m)| {
            matches!((spec.filter_above, m.assessed.valid_ratio()), (Some(t), Some(r)) if r > t)
        }),
        estimated: node.metrics.iter().map(|m| m.estimated).collect(),
        allocatable: node.allocatable,
        known: node.known,
        verdict: filter_verdict(policy, node),
        score: score(policy, node),
        unknown_pods: node.unknown_pods,
    }
}

impl Judgement {
    /// The judgement of the node with the pod being placed on it (`hotspot.includePod`): its
    /// expected usage added to every valid estimate, then filtered and scored by the same rules.
    /// An unknown node has no estimate to add to and stays as judged.
    pub fn with_pod(
        self,
        policy: &Policy,
        cpu_millis: u64,
        memory_bytes: u64,
        learned: Option<UsageRatios>,
    ) -> Judgement {
        self.with_placement(
            policy,
            &PodPlacement::new(policy, cpu_millis, memory_bytes, learned),
        )
    }

    /// [`Judgement::with_pod`] with the per-request part prepared once: the same rules as
    /// [`filter_verdict`] and [`score`], over compact data (this runs per node per request).
    pub fn with_placement(mut self, policy: &Policy, pod: &PodPlacement) -> Judgement {
        if !self.known || !pod.include {
            return self;
        }
        let share = |requested: f64, available: u64| {
            if available == 0 {
                0.0
            } else {
                requested / available as f64
            }
        };
        let cpu = share(pod.cpu, self.allocatable.cpu_millis);
        let memory = share(pod.memory, self.allocatable.memory_bytes);
        if cpu == 0.0 && memory == 0.0 {
            return self;
        }
        let mut rejected: Option<(usize, f64)> = None;
        let mut weighted = 0.0;
        for (i, m) in pod.metrics[..pod.len].iter().enumerate() {
            let Some(estimate) = self.estimated.get(i) else {
                continue;
            };
            let load = estimate + if m.cpu { cpu } else { memory };
            if rejected.is_none() && load > m.filter_above {
                rejected = Some((i, load));
            }
            weighted += m.weight * (1.0 - ((load - pod.idle) * pod.per_span).max(0.0));
        }
        self.verdict = match rejected {
            Some((i, load)) => {
                FilterVerdict::reject(&policy.metrics[i].name, pod.metrics[i].filter_above, load)
            }
            None => FilterVerdict::Pass,
        };
        self.score = if pod.total_weight <= 0.0 {
            NEUTRAL_SCORE
        } else {
            rounded_score(MAX_SCORE as f64 * weighted / pod.total_weight)
        };
        self
    }

    /// The same judgement with `in_flight` more pods heading for the node (filtered onto it,
    /// binding not seen yet): an unknown node may reach its cap with them.
    pub fn with_in_flight(mut self, policy: &Policy, in_flight: u32) -> Judgement {
        if self.known || in_flight == 0 {
            return self;
        }
        self.unknown_pods = self.unknown_pods.saturating_add(in_flight);
        let cap = policy.guards.unknown_pod_cap;
        if self.verdict.passes() && self.unknown_pods >= cap {
            self.verdict = FilterVerdict::UnknownCap {
                placed: self.unknown_pods,
                cap,
            };
        }
        self
    }
}

/// Filters and scores every candidate, applying the circuit breaker over the set: when it trips,
/// nothing is filtered (neither for load nor by the unknown-node cap) and every candidate gets
/// [`NEUTRAL_SCORE`].
pub fn decide_judged(policy: &Policy, judged: Vec<Judgement>) -> Decision {
    decide_judged_with(policy, judged, None)
}

/// [`decide_judged`] with the breaker's verdict given (`Some`) rather than judged over these
/// candidates: prioritize takes the verdict its filter call reached over the nodes kube-scheduler
/// offered, since realload's own filter has already removed some of them.
pub fn decide_judged_with(
    policy: &Policy,
    judged: Vec<Judgement>,
    breaker: Option<bool>,
) -> Decision {
    let unknown = judged.iter().filter(|j| !j.known).count();
    let breaker_tripped = breaker.unwrap_or_else(|| breaker_trips(policy, unknown, judged.len()));
    let known: Vec<bool> = judged.iter().map(|j| j.known).collect();
    let measured_hot: Vec<bool> = judged.iter().map(|j| j.reading_over).collect();
    let (mut verdicts, scores): (Vec<FilterVerdict>, Vec<i64>) = if breaker_tripped {
        (
            vec![FilterVerdict::Pass; judged.len()],
            vec![NEUTRAL_SCORE; judged.len()],
        )
    } else {
        judged.into_iter().map(|j| (j.verdict, j.score)).unzip()
    };
    let known_passes = |verdicts: &[FilterVerdict], known: &[bool]| {
        verdicts.iter().zip(known).any(|(v, k)| *k && v.passes())
    };
    let last_resort = policy.guards.unknown_last_resort && !breaker_tripped;
    // `guards.neverStrand`: when the load filter would leave no node at all (with
    // `guards.unknownLastResort`, no node with valid readings), it lets through the nodes it
    // rejected only for what the estimate adds (recent bindings, this pod), and the score
    // decides. Nodes hot by their reading alone and unknown nodes at their cap stay out.
    let stranded = if last_resort {
        !known_passes(&verdicts, &known)
    } else {
        !verdicts.iter().any(FilterVerdict::passes)
    };
    if policy.guards.never_strand && stranded {
        for (v, hot) in verdicts.iter_mut().zip(&measured_hot) {
            if matches!(v, FilterVerdict::Reject(_)) && !hot {
                *v = FilterVerdict::Pass;
            }
        }
    }
    // `guards.unknownLastResort`: an unknown node takes a pod only when no node with valid
    // readings can (its cap still applies then).
    if last_resort && known_passes(&verdicts, &known) {
        for (v, k) in verdicts.iter_mut().zip(&known) {
            if !k && v.passes() {
                *v = FilterVerdict::UnknownDeferred;
            }
        }
    }
    Decision {
        breaker_tripped,
        unknown,
        verdicts,
        scores,
        known,
    }
}

/// The candidate a pod is tentatively reserved on once realload has ranked the nodes: the
/// highest-scoring known candidate that passes (the first of equals), or none when the breaker
/// tripped. kube-scheduler scores a whole burst before the first binding comes back through the
/// watch (10 pods within 54 ms, the first binding seen 64 ms after the first pod was scored), so
/// without a reservation every pod of the burst sees the same cool node. Unknown nodes are never
/// reserved on: the unknown-node cap already counts pods in flight to them.
pub fn reservation_target(decision: &Decision) -> Option<usize> {
    if decision.breaker_tripped {
        return None;
    }
    let mut best: Option<(usize, i64)> = None;
    for (i, (verdict, score)) in decision.verdicts.iter().zip(&decision.scores).enumerate() {
        let known = decision.known.get(i).copied().unwrap_or(false);
        if verdict.passes() && known && best.is_none_or(|(_, s)| *score > s) {
            best = Some((i, *score));
        }
    }
    best.map(|(i, _)| i)
}

/// [`decide_judged`] over full assessments.
pub fn decide(policy: &Policy, candidates: &[NodeAssessment]) -> Decision {
    decide_judged(
        policy,
        candidates.iter().map(|c| judge(policy, c)).collect(),
    )
}

#[cfg(test)]
mod tests;

//! The decisions, as pure functions (DESIGN.md, "Reading quality", "Hot-spot accounting", "Score").
//!
//! `assess_node` turns a node's parsed readings, the pods bound to it since its newest valid
//! reading, and the clock into a [`NodeAssessment`]; `filter_verdict`, `score` and `decide` judge a
//! set of candidates. The extender, `explain`, the descheduler and the decision-quality simulator
//! all call these, so they cannot disagree.

use jiff::Timestamp;
use serde::Serialize;
use smallvec::SmallVec;

use crate::policy::{Policy, Resource};
use crate::reading::{Assessed, Quality, RawReading};

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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoundPod {
    pub bound_at: Timestamp,
    pub cpu_millis: u64,
    pub memory_bytes: u64,
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

/// The hot-spot estimate: requests × factor / allocatable, summed over the pods bound strictly
/// after `covered_until`, the node's newest valid sample time. A node without any valid reading
/// has nothing to add to (it is unknown and scored at `unknownLoad`), so `None` adds nothing.
pub fn hotspot_addition<'a>(
    pods: impl IntoIterator<Item = &'a BoundPod>,
    covered_until: Option<Timestamp>,
    allocatable: Allocatable,
    policy: &Policy,
) -> ResourceShares {
    let Some(covered_until) = covered_until else {
        return ResourceShares::default();
    };
    let (mut cpu, mut memory) = (0u64, 0u64);
    for pod in pods {
        if pod.bound_at > covered_until {
            cpu = cpu.saturating_add(pod.cpu_millis);
            memory = memory.saturating_add(pod.memory_bytes);
        }
    }
    let share = |requested: u64, available: u64, factor: f64| {
        if available == 0 {
            // Nothing to divide by: such a node has no room at all and fit checks reject it.
            0.0
        } else {
            requested as f64 * factor / available as f64
        }
    };
    ResourceShares {
        cpu: share(cpu, allocatable.cpu_millis, policy.hotspot.cpu_factor),
        memory: share(
            memory,
            allocatable.memory_bytes,
            policy.hotspot.memory_factor,
        ),
    }
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
/// of `bound_pods` that no valid reading covers yet.
pub fn assess_node(
    policy: &Policy,
    readings: &[RawReading],
    bound_pods: &[BoundPod],
    allocatable: Allocatable,
    now: Timestamp,
) -> NodeAssessment {
    let assessed: SmallVec<[Assessed; 4]> = policy
        .metrics
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            readings
                .get(i)
                .unwrap_or(&RawReading::Missing)
                .classify(now, spec.max_age, spec.floor)
        })
        .collect();
    let hotspot = hotspot_addition(
        bound_pods,
        newest_valid_sample(&assessed),
        allocatable,
        policy,
    );
    assessment_from(policy, assessed, hotspot)
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
    }
}

/// Whether a node passes the load filter.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "verdict", rename_all = "camelCase")]
pub enum FilterVerdict {
    Pass,
    /// A valid estimated load above the metric's `filterAbove`.
    Reject {
        metric: String,
        threshold: f64,
        estimated: f64,
    },
}

impl FilterVerdict {
    pub fn passes(&self) -> bool {
        matches!(self, FilterVerdict::Pass)
    }

    /// The short, constant message kube-scheduler groups in the pod's event.
    pub fn message(&self) -> Option<String> {
        match self {
            FilterVerdict::Pass => None,
            FilterVerdict::Reject {
                metric, threshold, ..
            } => Some(format!("realload: node {metric} above {threshold:.2}")),
        }
    }
}

/// The filter: a node is rejected only when a valid estimate is above a metric's threshold;
/// readings that are not valid never reject (the node is not known to be hot).
pub fn filter_verdict(policy: &Policy, node: &NodeAssessment) -> FilterVerdict {
    for (spec, m) in policy.metrics.iter().zip(&node.metrics) {
        if let (Some(threshold), Some(estimated)) = (spec.filter_above, m.estimated)
            && estimated > threshold
        {
            return FilterVerdict::Reject {
                metric: spec.name.clone(),
                threshold,
                estimated,
            };
        }
    }
    FilterVerdict::Pass
}

/// `round(10 × Σ w·(1 − load) / Σ w)` over the scored metrics, clamped to 0..=10. An unknown node
/// is scored as if every scored metric were loaded at `guards.unknownLoad`.
pub fn score(policy: &Policy, node: &NodeAssessment) -> i64 {
    let (mut weighted, mut total_weight) = (0.0, 0.0);
    for (spec, m) in policy.metrics.iter().zip(&node.metrics) {
        if !spec.is_scored() {
            continue;
        }
        let load = match (node.known, m.estimated) {
            (true, Some(estimated)) => estimated,
            _ => policy.guards.unknown_load,
        };
        weighted += spec.weight * (1.0 - load);
        total_weight += spec.weight;
    }
    if total_weight <= 0.0 {
        return NEUTRAL_SCORE;
    }
    let raw = (MAX_SCORE as f64 * weighted / total_weight).round();
    if raw.is_nan() {
        return MIN_SCORE;
    }
    (raw as i64).clamp(MIN_SCORE, MAX_SCORE)
}

/// Whether too many candidates are unknown for load to mean anything: strictly more than
/// `guards.maxUnknownFraction` of them.
pub fn breaker_trips(policy: &Policy, unknown: usize, candidates: usize) -> bool {
    candidates > 0 && unknown as f64 > policy.guards.max_unknown_fraction * candidates as f64
}

/// The answer for a whole candidate set.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub breaker_tripped: bool,
    pub unknown: usize,
    pub verdicts: Vec<FilterVerdict>,
    pub scores: Vec<i64>,
}

/// What the set-level decision needs of one node: small, so a request over thousands of
/// candidates keeps no per-node assessment around.
#[derive(Debug, Clone, PartialEq)]
pub struct Judgement {
    pub known: bool,
    pub verdict: FilterVerdict,
    pub score: i64,
}

pub fn judge(policy: &Policy, node: &NodeAssessment) -> Judgement {
    Judgement {
        known: node.known,
        verdict: filter_verdict(policy, node),
        score: score(policy, node),
    }
}

/// Filters and scores every candidate, applying the circuit breaker over the set: when it trips,
/// nothing is filtered for load and every candidate gets [`NEUTRAL_SCORE`].
pub fn decide_judged(policy: &Policy, judged: Vec<Judgement>) -> Decision {
    let unknown = judged.iter().filter(|j| !j.known).count();
    let breaker_tripped = breaker_trips(policy, unknown, judged.len());
    let (verdicts, scores) = if breaker_tripped {
        (
            vec![FilterVerdict::Pass; judged.len()],
            vec![NEUTRAL_SCORE; judged.len()],
        )
    } else {
        judged.into_iter().map(|j| (j.verdict, j.score)).unzip()
    };
    Decision {
        breaker_tripped,
        unknown,
        verdicts,
        scores,
    }
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

//! The decision for one request, against one generation of the index: neutral answers for exempt
//! pods and an unsynced index, otherwise every candidate judged and the circuit breaker applied.

use std::sync::Arc;

use realload_common::objects::NeutralPod;
use realload_common::policy::Policy;
use realload_common::reading::RawReading;
use realload_common::scoring::{self, Allocatable, FilterVerdict, NEUTRAL_SCORE};
use tracing::warn;

use crate::index::Generation;
use crate::protocol::{self, Candidates, ExtenderArgs, NodeRead};
use crate::state::State;

/// Which call kube-scheduler made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Filter,
    Prioritize,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Filter => "filter",
            Verb::Prioritize => "prioritize",
        }
    }
}

/// How a request was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Judged on the readings.
    Judged,
    /// Too many offered nodes without valid readings: load-awareness suspended for the pod.
    BreakerTripped,
    /// The watches have not listed everything yet: a neutral answer.
    Unsynced,
    /// The pod is exempt: a neutral answer.
    Neutral(NeutralPod),
}

impl Outcome {
    /// The `outcome` label of the request metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Judged => "ok",
            Outcome::BreakerTripped => "breaker",
            Outcome::Unsynced => "unsynced",
            Outcome::Neutral(n) => n.as_str(),
        }
    }
}

/// What the extender decided for one request.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub outcome: Outcome,
    pub verdicts: Vec<FilterVerdict>,
    pub scores: Vec<i64>,
    /// Candidates without valid readings (0 when the answer is neutral before judging).
    pub unknown: usize,
    /// Prioritize: the candidate the pod was tentatively reserved on.
    pub reserved_on: Option<usize>,
    /// The workload's learned CPU share the pod was counted at (`None`: the hot-spot factor).
    pub learned_cpu_share: Option<f64>,
}

fn neutral(outcome: Outcome, n: usize) -> Evaluation {
    Evaluation {
        outcome,
        verdicts: vec![FilterVerdict::Pass; n],
        scores: vec![NEUTRAL_SCORE; n],
        learned_cpu_share: None,
        unknown: 0,
        reserved_on: None,
    }
}

fn allocatable_of(node: &protocol::NodeRead<'_>) -> Allocatable {
    Allocatable {
        cpu_millis: node
            .cpu
            .as_deref()
            .and_then(|q| realload_common::quantity::cpu_millis(q).ok())
            .unwrap_or(0),
        memory_bytes: node
            .memory
            .as_deref()
            .and_then(|q| realload_common::quantity::bytes(q).ok())
            .unwrap_or(0),
    }
}

/// The readings a non-cache request carries on one Node, parsed for the policy.
fn carried_readings(policy: &Policy, node: &NodeRead<'_>) -> smallvec::SmallVec<[RawReading; 4]> {
    policy
        .metrics
        .iter()
        .map(|m| {
            RawReading::from_annotation(
                node.annotation(&m.annotation),
                m.format,
                &policy.crane_timezone,
            )
        })
        .collect()
}

/// Judges every candidate of a request against one generation of the index: neutral pods and an
/// unsynced index get neutral answers; otherwise the shared scoring decides.
///
/// The circuit breaker is judged on the nodes kube-scheduler offered: by the filter over its
/// candidates, and by prioritize with the filter's verdict for the same pod (prioritize only sees
/// what realload's own filter let through). A filter call that lets the pod onto unknown nodes
/// counts it against their cap until its binding is seen. Prioritize reserves the pod on the
/// best-ranked known candidate (see [`scoring::reservation_target`]); other pods' reservations
/// count in their nodes' hot-spot estimates until the bindings are seen.
pub fn evaluate(
    state: &State,
    generation: &Generation,
    args: &ExtenderArgs<'_>,
    verb: Verb,
) -> Evaluation {
    let n = args.candidates.len();
    if let Some(exempt) = args.pod.neutral() {
        return neutral(Outcome::Neutral(exempt), n);
    }
    if !generation.synced() {
        state.metrics.unsynced_requests.inc();
        return neutral(Outcome::Unsynced, n);
    }
    let policy = &generation.policy;
    let now = state.clock.now();
    let key = args.pod.key();
    let in_flight = state.memory.in_flight_for(&key, generation.id);
    let flying = |name: &str| {
        in_flight
            .as_ref()
            .and_then(|m| m.get(name))
            .copied()
            .unwrap_or(0)
    };
    let reserved = state.memory.reserved_for(&key, generation.id);
    let reserved_on = |name: &str| -> &[scoring::BoundPod] {
        reserved
            .as_ref()
            .and_then(|r| r.get(name))
            .map_or(&[], |p| p.as_slice())
    };
    let requests = args.pod.requests();
    let learned = generation.learned_for(|| args.pod.workload(), now);
    let placement =
        scoring::PodPlacement::new(policy, requests.cpu_millis, requests.memory_bytes, learned);
    let with_pod = |j: scoring::Judgement| j.with_placement(policy, &placement);
    // Judge each candidate as it comes: only the small judgement is kept.
    let judged: Vec<scoring::Judgement> = match &args.candidates {
        Candidates::Names(names) => match (&in_flight, &reserved) {
            // The usual case: nothing in flight or reserved, the cached judgements as they are.
            (None, None) => names
                .iter()
                .map(|name| with_pod(generation.judge(name, now)))
                .collect(),
            _ => names
                .iter()
                .map(|name| {
                    with_pod(match reserved_on(name) {
                        [] => generation
                            .judge(name, now)
                            .with_in_flight(policy, flying(name)),
                        pods => generation.judge_reserved(name, pods, flying(name), now),
                    })
                })
                .collect(),
        },
        Candidates::Nodes(nodes) => nodes
            .iter()
            .map(|(_, node)| {
                let allocatable = allocatable_of(node);
                let pods = reserved_on(&node.name);
                if pods.is_empty()
                    && let Some(cached) =
                        generation.judge_carried_if_indexed(node, allocatable, now)
                {
                    return with_pod(cached.with_in_flight(policy, flying(&node.name)));
                }
                let readings = carried_readings(policy, node);
                let assessment = generation.assess_carried(
                    &node.name,
                    &readings,
                    allocatable,
                    flying(&node.name),
                    pods,
                    now,
                );
                with_pod(scoring::judge(policy, &assessment))
            })
            .collect(),
    };
    let offered_unknown = judged.iter().filter(|j| !j.known).count();
    let judge_here =
        || scoring::breaker_trips_for(policy, (offered_unknown, n), generation.fleet());
    let breaker = match verb {
        Verb::Filter => judge_here(),
        Verb::Prioritize => state.memory.breaker_of(&key).unwrap_or_else(judge_here),
    };
    let decision = scoring::decide_judged_with(policy, judged, Some(breaker));
    if verb == Verb::Filter {
        let unknown_passed: smallvec::SmallVec<[Arc<str>; 4]> = if decision.breaker_tripped {
            smallvec::SmallVec::new()
        } else {
            (0..n)
                .filter(|&i| decision.verdicts[i].passes() && !decision.known[i])
                .map(|i| Arc::from(args.candidates.name(i)))
                .collect()
        };
        state
            .memory
            .remember(&key, decision.breaker_tripped, unknown_passed);
    }
    if decision.breaker_tripped {
        state.metrics.breaker_trips.inc();
        warn!(
            pod = %args.pod.display_name(),
            verb = verb.as_str(),
            unknown = decision.unknown,
            candidates = n,
            "circuit breaker: too many offered nodes without valid readings, load-awareness suspended for this pod"
        );
    }
    let reserved_on = match verb {
        Verb::Prioritize if policy.hotspot.reserve_ranked => scoring::reservation_target(&decision),
        _ => None,
    };
    if let Some(i) = reserved_on {
        state.memory.reserve(
            &key,
            Arc::from(args.candidates.name(i)),
            scoring::BoundPod {
                bound_at: now,
                cpu_millis: requests.cpu_millis,
                memory_bytes: requests.memory_bytes,
                pinned: false,
                learned,
            },
        );
    }
    Evaluation {
        outcome: if decision.breaker_tripped {
            Outcome::BreakerTripped
        } else {
            Outcome::Judged
        },
        verdicts: decision.verdicts,
        scores: decision.scores,
        unknown: decision.unknown,
        reserved_on,
        learned_cpu_share: learned.and_then(|l| l.cpu),
    }
}

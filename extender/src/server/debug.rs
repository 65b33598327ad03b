//! `GET /debug/nodes` on the admin listener: every indexed node as the extender judges it now,
//! and the last decisions it made.

use super::*;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DebugNode {
    name: String,
    known: bool,
    ready: bool,
    unschedulable: bool,
    readings: Vec<crate::explain::ReadingCell>,
    hotspot_cpu: f64,
    hotspot_memory: f64,
    ledger_pods: usize,
    /// Of the ledger pods, those counted at their workload's learned usage (the rest at
    /// requests × the hot-spot factors).
    ledger_pods_learned: usize,
    /// Of the ledger pods, those bound before the node's newest valid sample but less than
    /// `hotspot.readingWindow` before it: the reading shows them in part, and the hot-spot
    /// figures count the part it does not show yet.
    ledger_pods_partly_shown: usize,
    /// For an unknown node: since when, and the pods placed since (in flight included).
    #[serde(skip_serializing_if = "Option::is_none")]
    unknown_since: Option<jiff::Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    unknown_pods: Option<u32>,
    in_flight: u32,
    /// Pods tentatively reserved on the node by prioritize, binding not seen yet (their
    /// requests are in the hot-spot figures).
    reserved: usize,
    filter: FilterVerdict,
    filter_message: Option<String>,
    score: i64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DebugIndex {
    now: jiff::Timestamp,
    synced: bool,
    generation: u64,
    unknown_nodes: usize,
    unknown_pod_cap: u32,
    /// Whether the breaker would trip if every indexed node were offered. Each request judges
    /// it on its own candidates: see `recentDecisions`.
    breaker_over_all_nodes: bool,
    /// Of the recent decisions, how many had the breaker tripped.
    recent_breaker_trips: usize,
    ledger_pods: usize,
    in_flight_pods: usize,
    reserved_pods: usize,
    workload_usage: UsageSummary,
    recent_decisions: Vec<DecisionRecord>,
    nodes: Vec<DebugNode>,
}

/// The learned usage table in force.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct UsageSummary {
    enabled: bool,
    config_map: String,
    workloads: usize,
    updated: Option<jiff::Timestamp>,
    /// Whether requests use it now (enabled, and not older than `workloadUsage.maxAge`).
    current: bool,
}

/// `GET /debug/nodes`: every indexed node as filter and prioritize would judge it with all
/// indexed nodes as candidates, and the last decisions actually made, request by request.
pub(super) async fn debug_nodes(AxumState(app): AxumState<AppState>) -> Response {
    let state = &app.state;
    let generation = state.generation();
    let policy = &generation.policy;
    let now = state.clock.now();
    let in_flight = state.memory.in_flight();
    let mut names: Vec<&Arc<str>> = generation.nodes.keys().collect();
    names.sort();
    let flying = |n: &str| in_flight.get(n).copied().unwrap_or(0);
    let reserved = state
        .memory
        .reserved_for("", generation.id)
        .unwrap_or_default();
    let reserved_on = |n: &str| reserved.get(n).map_or(&[][..], |p| p.as_slice());
    let assessments: Vec<NodeAssessment> = names
        .iter()
        .map(|n| generation.assess_reserved(n, reserved_on(n), flying(n), now))
        .collect();
    let decision = scoring::decide(policy, &assessments);
    let nodes = names
        .iter()
        .zip(&assessments)
        .enumerate()
        .map(|(i, (name, a))| {
            let view = generation.nodes.get(*name).map(|e| &e.view);
            DebugNode {
                name: name.to_string(),
                known: a.known,
                ready: view.is_some_and(|v| v.ready),
                unschedulable: view.is_some_and(|v| v.unschedulable),
                readings: crate::explain::reading_cells(policy, a),
                hotspot_cpu: a.hotspot.cpu,
                hotspot_memory: a.hotspot.memory,
                ledger_pods: generation.pods_on(name).len(),
                ledger_pods_learned: generation
                    .pods_on(name)
                    .iter()
                    .filter(|p| p.learned.is_some())
                    .count(),
                ledger_pods_partly_shown: partly_shown(policy, a, generation.pods_on(name)),
                unknown_since: a.unknown_since,
                unknown_pods: (!a.known).then_some(a.unknown_pods),
                in_flight: flying(name),
                reserved: reserved_on(name).len(),
                filter_message: decision.verdicts[i].message(),
                filter: decision.verdicts[i].clone(),
                score: decision.scores[i],
            }
        })
        .collect();
    let recent = state.recent.list();
    let body = DebugIndex {
        now,
        synced: generation.synced(),
        generation: generation.id,
        unknown_nodes: decision.unknown,
        unknown_pod_cap: policy.guards.unknown_pod_cap,
        breaker_over_all_nodes: decision.breaker_tripped,
        recent_breaker_trips: recent.iter().filter(|r| r.breaker_tripped).count(),
        ledger_pods: generation.ledger_len,
        in_flight_pods: state.memory.len(),
        reserved_pods: reserved.values().map(|p| p.len()).sum(),
        workload_usage: UsageSummary {
            enabled: policy.workload_usage.enabled,
            config_map: policy.workload_usage.config_map.clone(),
            workloads: generation.usage.workloads.len(),
            updated: generation.usage.updated,
            current: policy.workload_usage.enabled
                && generation
                    .usage
                    .is_current(now, policy.workload_usage.max_age),
        },
        recent_decisions: recent,
        nodes,
    };
    match serde_json::to_string(&body) {
        Ok(text) => json(StatusCode::OK, text),
        Err(e) => json(
            StatusCode::INTERNAL_SERVER_ERROR,
            protocol::bind_response(&e.to_string()),
        ),
    }
}

/// How many of `pods` the node's newest valid sample shows in part (see `ledgerPodsPartlyShown`).
fn partly_shown(
    policy: &realload_common::policy::Policy,
    a: &scoring::NodeAssessment,
    pods: &[scoring::BoundPod],
) -> usize {
    let assessed: Vec<_> = a.metrics.iter().map(|m| m.assessed.clone()).collect();
    let Some(sampled) = scoring::newest_valid_sample(&assessed) else {
        return 0;
    };
    pods.iter()
        .filter(|p| {
            p.bound_at <= sampled && scoring::unshown_part(policy, p.bound_at, sampled) > 0.0
        })
        .count()
}

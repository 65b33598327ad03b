//! The eviction plan, as a pure function of the cluster state (the rules the README lists under
//! "The descheduler").

use std::collections::{BTreeMap, HashMap};

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use realload_common::objects::{NodeView, Requests, pod_requests};
use realload_common::policy::{DESTINATION_METRIC, Policy};
use realload_common::whitelist::Whitelist;
use realload_common::workload::{UsageTable, WorkloadKey as UsageKey};
use serde::Serialize;

/// The annotation that opts a pod out of eviction.
pub const EVICT_ANNOTATION: &str = "realload.io/evict";
/// Pods at or above this priority are system-critical (the built-in critical classes).
pub const SYSTEM_CRITICAL_PRIORITY: i32 = 2_000_000_000;

/// A workload: `Deployment/ns/name` or `StatefulSet/ns/name`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkloadKey {
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for WorkloadKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.kind, self.namespace, self.name)
    }
}

/// Everything the plan looks at.
pub struct Inputs<'a> {
    pub policy: &'a Policy,
    pub whitelist: &'a Whitelist,
    pub now: Timestamp,
    pub nodes: &'a [NodeView],
    /// Pods on the hot nodes (candidates).
    pub candidates: &'a [Pod],
    /// Requests already placed on each node whose pods were listed (possible destinations).
    pub node_requests: &'a HashMap<String, Requests>,
    pub replica_sets: &'a [ReplicaSet],
    pub deployments: &'a [Deployment],
    pub stateful_sets: &'a [StatefulSet],
    pub pdbs: &'a [PodDisruptionBudget],
    /// When each workload last lost a pod to realload (persisted across runs).
    pub last_evictions: &'a BTreeMap<WorkloadKey, Timestamp>,
    /// The learned per-workload usage (empty when none was published).
    pub usage: &'a UsageTable,
}

/// The CPU a pod is expected to use, and so to take off its node and add to its destination.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExpectedCpu {
    pub millis: u64,
    /// The learned share of its request, when the table knows its workload.
    pub learned_share: Option<f64>,
}

/// Its request × its workload's learned share while the table is current, else its full
/// request (the descheduler's rule before learning).
pub fn expected_cpu(inputs: &Inputs<'_>, pod: &Pod, requests: Requests) -> ExpectedCpu {
    let learned = inputs
        .usage
        .in_force(&inputs.policy.workload_usage, inputs.now)
        .then(|| inputs.usage.ratios(&UsageKey::of(pod)?)?.cpu)
        .flatten();
    ExpectedCpu {
        millis: learned.map_or(requests.cpu_millis, |share| {
            (requests.cpu_millis as f64 * share).round() as u64
        }),
        learned_share: learned,
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlannedEviction {
    pub namespace: String,
    pub pod: String,
    pub node: String,
    pub workload: String,
    pub reason: String,
    #[serde(skip)]
    pub workload_key: WorkloadKey,
    #[serde(skip)]
    pub destination: String,
    #[serde(skip)]
    pub hot_reading: f64,
    /// For the Events (`kubectl describe` finds them by uid).
    #[serde(skip)]
    pub pod_uid: Option<String>,
    #[serde(skip)]
    pub node_uid: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    pub namespace: String,
    pub pod: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    pub evictions: Vec<PlannedEviction>,
    pub skipped: Vec<Skipped>,
    pub hot_nodes: Vec<String>,
}

/// A hot node: its hot metric is valid and at or above `hotAbove`.
pub fn hot_reading(policy: &Policy, node: &NodeView, now: Timestamp) -> Option<f64> {
    let i = policy.metric_index(&policy.descheduler.hot_metric)?;
    let spec = &policy.metrics[i];
    let ratio = node
        .readings
        .get(i)?
        .classify(now, spec.max_age, spec.floor)
        .valid_ratio()?;
    (ratio >= policy.descheduler.hot_above).then_some(ratio)
}

/// Where an evicted pod could go: a Ready, schedulable node that is not hot, whose valid
/// `cpu-avg-5m` is below `coolBelow`; returns that load. One rule for the nodes a live run lists
/// pods on and the nodes the plan considers.
pub fn destination_load(policy: &Policy, node: &NodeView, now: Timestamp) -> Option<f64> {
    if !node.ready || node.unschedulable || hot_reading(policy, node, now).is_some() {
        return None;
    }
    let i = policy.metric_index(DESTINATION_METRIC)?;
    let spec = &policy.metrics[i];
    let load = node
        .readings
        .get(i)?
        .classify(now, spec.max_age, spec.floor)
        .valid_ratio()?;
    (load < policy.descheduler.cool_below).then_some(load)
}

mod eligibility;
mod matching;

pub use eligibility::pod_exclusion;
use eligibility::{Owners, eligibility};
use matching::{node_fits_constraints, pod_age_start, tolerates};

/// Per-destination bookkeeping during one run.
struct Destination<'a> {
    view: &'a NodeView,
    load: f64,
    used: Requests,
}

/// Builds the plan: hottest node first; on a node, the pod expected to use the most CPU first
/// ([`expected_cpu`]: learned usage where known, else the request), then youngest.
pub fn plan(inputs: &Inputs<'_>) -> Plan {
    let policy = inputs.policy;
    let d = &policy.descheduler;
    let mut out = Plan::default();
    let owners = Owners::new(inputs);

    let mut hot: Vec<(&NodeView, f64)> = inputs
        .nodes
        .iter()
        .filter_map(|n| hot_reading(policy, n, inputs.now).map(|r| (n, r)))
        .collect();
    hot.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.name.cmp(&b.0.name)));
    out.hot_nodes = hot.iter().map(|(n, _)| n.name.clone()).collect();

    let mut destinations: Vec<Destination<'_>> = inputs
        .nodes
        .iter()
        .filter_map(|n| {
            let load = destination_load(policy, n, inputs.now)?;
            let used = *inputs.node_requests.get(&n.name)?;
            Some(Destination {
                view: n,
                load,
                used,
            })
        })
        .collect();
    destinations.sort_by(|a, b| {
        a.load
            .total_cmp(&b.load)
            .then_with(|| a.view.name.cmp(&b.view.name))
    });

    let mut evicted_workloads: Vec<WorkloadKey> = Vec::new();
    for (node, reading) in &hot {
        let mut on_node: Vec<(&Pod, Requests, ExpectedCpu)> = inputs
            .candidates
            .iter()
            .filter(|p| {
                p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node.name.as_str())
            })
            .map(|p| {
                let requests = pod_requests(p);
                (p, requests, expected_cpu(inputs, p, requests))
            })
            .collect();
        // most expected CPU first (it relieves the node most), then youngest first
        on_node.sort_by(|(a, _, ea), (b, _, eb)| {
            eb.millis
                .cmp(&ea.millis)
                .then_with(|| pod_age_start(b).cmp(&pod_age_start(a)))
                .then_with(|| a.metadata.name.cmp(&b.metadata.name))
        });
        let node_whitelisted = inputs.whitelist.nodes.matching_entry(&node.name);
        let mut projected = *reading;
        let mut evicted_here = 0u32;
        for (pod, requests, expected_cpu) in on_node {
            let (expected, learned) = (expected_cpu.millis, expected_cpu.learned_share);
            let skip = |reason: String| Skipped {
                namespace: pod.metadata.namespace.clone().unwrap_or_default(),
                pod: pod.metadata.name.clone().unwrap_or_default(),
                reason,
            };
            if let Some(entry) = node_whitelisted {
                out.skipped
                    .push(skip(format!("node {} whitelisted ({entry})", node.name)));
                continue;
            }
            let workload = match eligibility(inputs, &owners, pod) {
                Ok(w) => w,
                Err(reason) => {
                    out.skipped.push(skip(reason));
                    continue;
                }
            };
            if evicted_workloads.contains(&workload) {
                out.skipped
                    .push(skip(format!("{workload} already loses a pod in this run")));
                continue;
            }
            if out.evictions.len() >= d.max_evictions_per_run as usize {
                out.skipped.push(skip(format!(
                    "maxEvictionsPerRun {} reached",
                    d.max_evictions_per_run
                )));
                continue;
            }
            if evicted_here >= d.max_evictions_per_node {
                out.skipped.push(skip(format!(
                    "maxEvictionsPerNode {} reached on {}",
                    d.max_evictions_per_node, node.name
                )));
                continue;
            }
            if projected < d.target_below {
                out.skipped.push(skip(format!(
                    "{} is projected at {:.2}, below targetBelow {:.2}",
                    node.name, projected, d.target_below
                )));
                continue;
            }
            let tolerations = pod
                .spec
                .as_ref()
                .and_then(|s| s.tolerations.clone())
                .unwrap_or_default();
            let target = destinations.iter_mut().find(|dest| {
                if dest.view.name == node.name {
                    return false;
                }
                let hard_taints_ok = dest
                    .view
                    .taints
                    .iter()
                    .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
                    .all(|t| tolerates(&tolerations, t));
                let alloc = dest.view.allocatable;
                let room = dest.used.cpu_millis + requests.cpu_millis <= alloc.cpu_millis
                    && dest.used.memory_bytes + requests.memory_bytes <= alloc.memory_bytes;
                let share = if alloc.cpu_millis == 0 {
                    f64::INFINITY
                } else {
                    expected as f64 / alloc.cpu_millis as f64
                };
                hard_taints_ok
                    && room
                    && node_fits_constraints(pod, dest.view)
                    && dest.load + share < d.cool_below
            });
            let Some(target) = target else {
                out.skipped.push(skip(format!(
                    "no destination: no other Ready, schedulable node with room whose {DESTINATION_METRIC} stays below coolBelow {:.2} with this pod",
                    d.cool_below
                )));
                continue;
            };
            let alloc_cpu = target.view.allocatable.cpu_millis.max(1) as f64;
            target.load += expected as f64 / alloc_cpu;
            target.used.cpu_millis += requests.cpu_millis;
            target.used.memory_bytes += requests.memory_bytes;
            let node_cpu = node.allocatable.cpu_millis.max(1) as f64;
            projected -= expected as f64 / node_cpu;
            let moved = match learned {
                Some(share) => format!(
                    "{expected}m CPU (learned: {share:.2} of its {}m request)",
                    requests.cpu_millis
                ),
                None => format!("{}m CPU", requests.cpu_millis),
            };
            evicted_here += 1;
            evicted_workloads.push(workload.clone());
            out.evictions.push(PlannedEviction {
                namespace: pod.metadata.namespace.clone().unwrap_or_default(),
                pod: pod.metadata.name.clone().unwrap_or_default(),
                node: node.name.clone(),
                workload: workload.to_string(),
                reason: format!(
                    "{} {} {:.2} >= hotAbove {:.2}; {moved} can move to {} ({} {:.2})",
                    node.name,
                    d.hot_metric,
                    reading,
                    d.hot_above,
                    target.view.name,
                    DESTINATION_METRIC,
                    target.load
                ),
                destination: target.view.name.clone(),
                hot_reading: *reading,
                workload_key: workload,
                pod_uid: pod.metadata.uid.clone(),
                node_uid: node.uid.clone(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests;

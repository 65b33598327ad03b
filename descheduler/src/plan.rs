//! The eviction plan, as a pure function of the cluster state (the rules the README lists under
//! "The descheduler").

use std::collections::{BTreeMap, HashMap};

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, Taint, Toleration};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use realload_common::objects::{NodeView, Requests, is_static_pod, pod_requests};
use realload_common::policy::{DESTINATION_METRIC, Policy};
use realload_common::reading::Assessed;
use realload_common::selector::{expression_matches, label_selector_matches};
use realload_common::whitelist::Whitelist;
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

/// A destination's valid `cpu-avg-5m`, if it has one.
fn destination_load(policy: &Policy, node: &NodeView, now: Timestamp) -> Option<f64> {
    let i = policy.metric_index(DESTINATION_METRIC)?;
    let spec = &policy.metrics[i];
    match node
        .readings
        .get(i)?
        .classify(now, spec.max_age, spec.floor)
    {
        Assessed::Valid { reading, .. } => Some(reading.ratio),
        _ => None,
    }
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn tolerates(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| {
        let effect_ok = t
            .effect
            .as_deref()
            .is_none_or(|e| e.is_empty() || e == taint.effect);
        let key_ok = match t.key.as_deref() {
            None | Some("") => t.operator.as_deref() == Some("Exists"),
            Some(k) => k == taint.key,
        };
        let value_ok = match t.operator.as_deref() {
            Some("Exists") => true,
            _ => t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        };
        effect_ok && key_ok && value_ok
    })
}

/// Required scheduling constraints the pod puts on a node: nodeSelector and the required
/// node-affinity terms (matchExpressions on labels).
fn node_fits_constraints(pod: &Pod, node: &NodeView) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return true;
    };
    let selector_ok = spec
        .node_selector
        .as_ref()
        .is_none_or(|sel| sel.iter().all(|(k, v)| node.labels.get(k) == Some(v)));
    let affinity_ok = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| {
            na.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .is_none_or(|req| {
            req.node_selector_terms.iter().any(|term| {
                term.match_expressions.iter().flatten().all(|e| {
                    expression_matches(
                        &e.operator,
                        e.values.as_deref().unwrap_or_default(),
                        node.labels.get(&e.key),
                    )
                })
            })
        });
    selector_ok && affinity_ok
}

fn has_local_storage(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .is_some_and(|v| {
            v.iter()
                .any(|v| v.empty_dir.is_some() || v.host_path.is_some())
        })
}

fn is_system_critical(pod: &Pod) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return false;
    };
    spec.priority.is_some_and(|p| p >= SYSTEM_CRITICAL_PRIORITY)
        || spec
            .priority_class_name
            .as_deref()
            .is_some_and(|c| c.starts_with("system-") && c.ends_with("-critical"))
}

/// The age the descheduler goes by: since the pod started, else since it was created.
fn pod_age_start(pod: &Pod) -> Option<Timestamp> {
    pod.status
        .as_ref()
        .and_then(|s| s.start_time.as_ref())
        .map(|t| t.0)
        .or_else(|| pod.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

struct Owner {
    key: WorkloadKey,
    ready_replicas: i32,
}

/// The workload objects by namespace and name, built once per plan (a cluster has tens of
/// thousands of ReplicaSets: no linear search per pod).
struct Owners<'a> {
    replica_sets: HashMap<(&'a str, &'a str), &'a ReplicaSet>,
    deployments: HashMap<(&'a str, &'a str), &'a Deployment>,
    stateful_sets: HashMap<(&'a str, &'a str), &'a StatefulSet>,
}

fn by_name<T>(items: &[T]) -> HashMap<(&str, &str), &T>
where
    T: k8s_openapi::Metadata<Ty = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>,
{
    items
        .iter()
        .filter_map(|i| {
            let m = i.metadata();
            Some(((m.namespace.as_deref()?, m.name.as_deref()?), i))
        })
        .collect()
}

impl<'a> Owners<'a> {
    fn new(inputs: &Inputs<'a>) -> Self {
        Owners {
            replica_sets: by_name(inputs.replica_sets),
            deployments: by_name(inputs.deployments),
            stateful_sets: by_name(inputs.stateful_sets),
        }
    }
}

/// Resolves a pod's workload, or why it has none realload may touch.
fn owner_of(inputs: &Inputs<'_>, owners: &Owners<'_>, pod: &Pod) -> Result<Owner, String> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let Some(controller) = pod
        .metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
    else {
        return Err("bare pod (no controller): never evicted".into());
    };
    match controller.kind.as_str() {
        "ReplicaSet" => {
            let rs = owners
                .replica_sets
                .get(&(ns.as_str(), controller.name.as_str()))
                .ok_or_else(|| format!("owner ReplicaSet {} not found", controller.name))?;
            let Some(dep_ref) = rs
                .metadata
                .owner_references
                .iter()
                .flatten()
                .find(|o| o.controller == Some(true) && o.kind == "Deployment")
            else {
                return Err(format!(
                    "ReplicaSet {} has no owning Deployment: never evicted",
                    controller.name
                ));
            };
            let dep = owners
                .deployments
                .get(&(ns.as_str(), dep_ref.name.as_str()))
                .ok_or_else(|| format!("owner Deployment {} not found", dep_ref.name))?;
            Ok(Owner {
                key: WorkloadKey {
                    kind: "Deployment".into(),
                    namespace: ns.clone(),
                    name: dep_ref.name.clone(),
                },
                ready_replicas: dep
                    .status
                    .as_ref()
                    .and_then(|s| s.ready_replicas)
                    .unwrap_or(0),
            })
        }
        "StatefulSet" => {
            if !inputs.policy.descheduler.evict_stateful_sets {
                return Err(format!(
                    "StatefulSet {} (evictStatefulSets is off)",
                    controller.name
                ));
            }
            let sts = owners
                .stateful_sets
                .get(&(ns.as_str(), controller.name.as_str()))
                .ok_or_else(|| format!("owner StatefulSet {} not found", controller.name))?;
            Ok(Owner {
                key: WorkloadKey {
                    kind: "StatefulSet".into(),
                    namespace: ns.clone(),
                    name: controller.name.clone(),
                },
                ready_replicas: sts
                    .status
                    .as_ref()
                    .and_then(|s| s.ready_replicas)
                    .unwrap_or(0),
            })
        }
        "DaemonSet" => Err("owned by a DaemonSet: never evicted".into()),
        "Job" => Err("owned by a Job: never evicted".into()),
        other => Err(format!("owned by a {other}: never evicted")),
    }
}

/// The PodDisruptionBudgets in the pod's namespace that select it.
fn covering_pdbs<'p>(pdbs: &'p [PodDisruptionBudget], pod: &Pod) -> Vec<&'p PodDisruptionBudget> {
    let empty = BTreeMap::new();
    let labels = pod.metadata.labels.as_ref().unwrap_or(&empty);
    pdbs.iter()
        .filter(|p| p.metadata.namespace == pod.metadata.namespace)
        .filter(|p| {
            p.spec
                .as_ref()
                .and_then(|s| s.selector.as_ref())
                .is_some_and(|sel| label_selector_matches(sel, labels))
        })
        .collect()
}

/// Why a pod may not be evicted, checking every rule that does not depend on the rest of the
/// plan; `Ok` carries its workload.
/// The exclusions that need nothing but the pod, checked before its owner is looked at. A live run
/// uses this to read the owners of the remaining candidates only.
pub fn pod_exclusion(
    policy: &Policy,
    whitelist: &Whitelist,
    now: Timestamp,
    pod: &Pod,
) -> Option<String> {
    let d = &policy.descheduler;
    let phase = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("");
    if pod.metadata.deletion_timestamp.is_some() {
        return Some("terminating".into());
    }
    if phase != "Running" || !is_ready(pod) {
        return Some("not Running and Ready".into());
    }
    if is_static_pod(pod) {
        return Some("mirror (static) pod: never evicted".into());
    }
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    let protected = &policy.descheduler.protected;
    if let Some(entry) = protected.namespaces.matching_entry(ns) {
        return Some(format!("protected (namespace {entry})"));
    }
    let empty = BTreeMap::new();
    let labels = pod.metadata.labels.as_ref().unwrap_or(&empty);
    if let Some(selector) = protected
        .selectors
        .iter()
        .find(|s| label_selector_matches(s, labels))
    {
        return Some(format!(
            "protected (selector {})",
            realload_common::selector::selector_text(selector)
        ));
    }
    if let Some(app) = app_labels(pod)
        .into_iter()
        .find_map(|name| protected.apps.matching_entry(name))
    {
        return Some(format!("protected (app {app})"));
    }
    if let Some(entry) = whitelist.namespaces.matching_entry(ns) {
        return Some(format!("namespace whitelisted ({entry})"));
    }
    if is_system_critical(pod) {
        return Some("system-critical priority: never evicted".into());
    }
    if pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(EVICT_ANNOTATION))
        .is_some_and(|v| v == "false")
    {
        return Some(format!("annotated {EVICT_ANNOTATION}=false"));
    }
    let requests = pod_requests(pod);
    if requests.cpu_millis < d.cpu_request_min_millis
        || requests.cpu_millis > d.cpu_request_max_millis
    {
        return Some(format!(
            "CPU request {}m outside cpuRequest [{}m, {}m]",
            requests.cpu_millis, d.cpu_request_min_millis, d.cpu_request_max_millis
        ));
    }
    if !d.evict_local_storage && has_local_storage(pod) {
        return Some("uses local storage (emptyDir/hostPath; evictLocalStorage is off)".into());
    }
    match pod_age_start(pod) {
        Some(start) if now.duration_since(start) >= d.min_pod_age => None,
        _ => Some(format!("younger than minPodAge {:#}", d.min_pod_age)),
    }
}

/// The app names a pod carries in its labels (`app`, `app.kubernetes.io/name`).
fn app_labels(pod: &Pod) -> Vec<&str> {
    let Some(labels) = pod.metadata.labels.as_ref() else {
        return Vec::new();
    };
    ["app", "app.kubernetes.io/name"]
        .iter()
        .filter_map(|k| labels.get(*k).map(String::as_str))
        .collect()
}

fn eligibility(inputs: &Inputs<'_>, owners: &Owners<'_>, pod: &Pod) -> Result<WorkloadKey, String> {
    let d = &inputs.policy.descheduler;
    if let Some(reason) = pod_exclusion(inputs.policy, inputs.whitelist, inputs.now, pod) {
        return Err(reason);
    }
    let owner = owner_of(inputs, owners, pod)?;
    if let Some(entry) = d.protected.apps.matching_entry(&owner.key.name) {
        return Err(format!("protected (app {entry})"));
    }
    let mut identities = app_labels(pod);
    identities.push(&owner.key.name);
    if let Some(name) = identities.iter().find(|n| inputs.whitelist.apps.matches(n)) {
        return Err(format!("app whitelisted ({name})"));
    }
    if owner.ready_replicas < d.min_replicas as i32 {
        return Err(format!(
            "{} has {} ready replica(s), below minReplicas {}",
            owner.key, owner.ready_replicas, d.min_replicas
        ));
    }
    let pdbs = covering_pdbs(inputs.pdbs, pod);
    if pdbs.len() > 1 {
        return Err("covered by several PodDisruptionBudgets (the Eviction API refuses)".into());
    }
    if let Some(pdb) = pdbs.first() {
        let allowed = pdb.status.as_ref().map_or(0, |s| s.disruptions_allowed);
        if allowed <= 0 {
            return Err(format!(
                "PodDisruptionBudget {} allows no disruption",
                pdb.metadata.name.as_deref().unwrap_or("")
            ));
        }
    }
    if let Some(last) = inputs.last_evictions.get(&owner.key)
        && inputs.now.duration_since(*last) < d.workload_cooldown
    {
        return Err(format!(
            "workload cooldown: {} lost a pod at {} (cooldown {:#})",
            owner.key,
            last.strftime("%Y-%m-%dT%H:%M:%SZ"),
            d.workload_cooldown
        ));
    }
    Ok(owner.key)
}

/// Per-destination bookkeeping during one run.
struct Destination<'a> {
    view: &'a NodeView,
    load: f64,
    used: Requests,
}

/// Builds the plan: hottest node first; on a node, largest CPU request first, then youngest.
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
        .filter(|n| n.ready && !n.unschedulable)
        .filter(|n| hot_reading(policy, n, inputs.now).is_none())
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
        let mut on_node: Vec<(&Pod, Requests)> = inputs
            .candidates
            .iter()
            .filter(|p| {
                p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node.name.as_str())
            })
            .map(|p| (p, pod_requests(p)))
            .collect();
        // largest CPU request first, then youngest first
        on_node.sort_by(|(a, ra), (b, rb)| {
            rb.cpu_millis
                .cmp(&ra.cpu_millis)
                .then_with(|| pod_age_start(b).cmp(&pod_age_start(a)))
                .then_with(|| a.metadata.name.cmp(&b.metadata.name))
        });
        let node_whitelisted = inputs.whitelist.nodes.matching_entry(&node.name);
        let mut projected = *reading;
        let mut evicted_here = 0u32;
        for (pod, requests) in on_node {
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
                    requests.cpu_millis as f64 / alloc.cpu_millis as f64
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
            target.load += requests.cpu_millis as f64 / alloc_cpu;
            target.used.cpu_millis += requests.cpu_millis;
            target.used.memory_bytes += requests.memory_bytes;
            let node_cpu = node.allocatable.cpu_millis.max(1) as f64;
            projected -= requests.cpu_millis as f64 / node_cpu;
            evicted_here += 1;
            evicted_workloads.push(workload.clone());
            out.evictions.push(PlannedEviction {
                namespace: pod.metadata.namespace.clone().unwrap_or_default(),
                pod: pod.metadata.name.clone().unwrap_or_default(),
                node: node.name.clone(),
                workload: workload.to_string(),
                reason: format!(
                    "{} {} {:.2} >= hotAbove {:.2}; {}m CPU can move to {} ({} {:.2})",
                    node.name,
                    d.hot_metric,
                    reading,
                    d.hot_above,
                    requests.cpu_millis,
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

//! Which pods the descheduler may evict, and the workload each belongs to.

use std::collections::{BTreeMap, HashMap};

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use realload_common::objects::{is_static_pod, pod_requests};
use realload_common::policy::Policy;
use realload_common::selector::label_selector_matches;
use realload_common::whitelist::Whitelist;

use super::matching::{
    app_labels, covering_pdbs, has_local_storage, is_ready, is_system_critical, pod_age_start,
};
use super::{EVICT_ANNOTATION, Inputs, WorkloadKey};

pub(super) struct Owner {
    key: WorkloadKey,
    ready_replicas: i32,
}

/// The workload objects by namespace and name, built once per plan (a cluster has tens of
/// thousands of ReplicaSets: no linear search per pod).
pub(super) struct Owners<'a> {
    replica_sets: HashMap<(&'a str, &'a str), &'a ReplicaSet>,
    deployments: HashMap<(&'a str, &'a str), &'a Deployment>,
    stateful_sets: HashMap<(&'a str, &'a str), &'a StatefulSet>,
}

pub(super) fn by_name<T>(items: &[T]) -> HashMap<(&str, &str), &T>
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
    pub(super) fn new(inputs: &Inputs<'a>) -> Self {
        Owners {
            replica_sets: by_name(inputs.replica_sets),
            deployments: by_name(inputs.deployments),
            stateful_sets: by_name(inputs.stateful_sets),
        }
    }
}

/// Resolves a pod's workload, or why it has none realload may touch.
pub(super) fn owner_of(
    inputs: &Inputs<'_>,
    owners: &Owners<'_>,
    pod: &Pod,
) -> Result<Owner, String> {
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
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("false"))
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

/// Why a pod may not be evicted, checking every rule that does not depend on the rest of the
/// plan; `Ok` carries its workload.
pub(super) fn eligibility(
    inputs: &Inputs<'_>,
    owners: &Owners<'_>,
    pod: &Pod,
) -> Result<WorkloadKey, String> {
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
    if i64::from(owner.ready_replicas) < i64::from(d.min_replicas) {
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

//! A run's inputs: from a snapshot file, or from the API (only what the plan needs: pods on the
//! hot nodes and on the coolest destinations, owners and budgets of the pods it could evict).

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, ListParams, ObjectList};
use realload_common::objects::{NodeView, Requests, pod_requests};
use realload_common::policy::Policy;
use realload_common::snapshot::Snapshot;
use realload_common::whitelist::Whitelist;
use realload_common::workload::UsageTable;
use tracing::{info, warn};

use crate::error::RunError;
use crate::evict::read_state;
use crate::plan::{self, Inputs, Plan};

/// `namespace/name` of a ConfigMap given on the command line (`flag` names it in errors).
pub fn split_ref(flag: &'static str, text: &str) -> Result<(String, String), RunError> {
    match text.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok((ns.into(), name.into()))
        }
        _ => Err(RunError::BadReference {
            flag,
            value: text.to_string(),
        }),
    }
}

/// Parses the whitelist, or reports what is wrong with it (or that it is missing).
pub fn whitelist_from(
    cm: Option<&ConfigMap>,
    reference: &str,
    allow_missing: bool,
) -> Result<Whitelist, RunError> {
    match cm {
        Some(cm) => Whitelist::from_configmap(cm).map_err(|source| RunError::Whitelist {
            reference: reference.to_string(),
            source,
        }),
        None if allow_missing => {
            warn!(
                configmap = reference,
                "whitelist ConfigMap missing; running without one (--allow-missing-whitelist)"
            );
            Ok(Whitelist::default())
        }
        None => Err(RunError::WhitelistMissing {
            reference: reference.to_string(),
        }),
    }
}

/// The learned usage table from its ConfigMap. It only refines which pod relieves a node most
/// and by how much, so a missing or broken table is no reason to stop: the run counts pods at
/// their requests, as before, and says why.
pub fn usage_from(cm: Option<&ConfigMap>, reference: &str) -> UsageTable {
    let Some(cm) = cm else {
        return UsageTable::default();
    };
    match UsageTable::from_config_map(cm) {
        Ok(table) => table,
        Err(e) => {
            warn!(configmap = reference, error = %e, "workload usage table refused; pods are counted at their requests");
            UsageTable::default()
        }
    }
}

/// Requests already placed on each node, from the pods bound to it.
pub fn requests_by_node<'a>(pods: impl IntoIterator<Item = &'a Pod>) -> HashMap<String, Requests> {
    let mut out: HashMap<String, Requests> = HashMap::new();
    for p in pods {
        if realload_common::objects::is_finished(p) {
            continue;
        }
        if let Some(node) = p.spec.as_ref().and_then(|s| s.node_name.clone()) {
            let r = pod_requests(p);
            let e = out.entry(node).or_default();
            e.cpu_millis += r.cpu_millis;
            e.memory_bytes += r.memory_bytes;
        }
    }
    out
}

/// Plans on a snapshot: every input comes from the file.
pub fn plan_snapshot(
    policy: &Policy,
    snapshot: &Snapshot,
    whitelist_ref: &str,
    allow_missing: bool,
    state_ref: &str,
    namespace: &str,
    now: Timestamp,
) -> Result<Plan, RunError> {
    let usage_name = &policy.workload_usage.config_map;
    let usage = usage_from(
        snapshot.config_map(namespace, usage_name),
        &format!("{namespace}/{usage_name}"),
    );
    let (wl_ns, wl_name) = split_ref("--whitelist-configmap", whitelist_ref)?;
    let whitelist = whitelist_from(
        snapshot.config_map(&wl_ns, &wl_name),
        whitelist_ref,
        allow_missing,
    )?;
    let (st_ns, st_name) = split_ref("--state-configmap", state_ref)?;
    let last = read_state(snapshot.config_map(&st_ns, &st_name));
    let nodes: Vec<NodeView> = snapshot
        .nodes
        .iter()
        .map(|n| NodeView::from_node(n, policy))
        .collect();
    let hot: HashSet<String> = nodes
        .iter()
        .filter(|n| plan::hot_reading(policy, n, now).is_some())
        .map(|n| n.name.clone())
        .collect();
    let candidates: Vec<Pod> = snapshot
        .pods
        .iter()
        .filter(|p| {
            p.spec
                .as_ref()
                .and_then(|s| s.node_name.as_ref())
                .is_some_and(|n| hot.contains(n))
        })
        .cloned()
        .collect();
    let node_requests = requests_by_node(&snapshot.pods);
    Ok(plan::plan(&Inputs {
        policy,
        whitelist: &whitelist,
        now,
        nodes: &nodes,
        candidates: &candidates,
        node_requests: &node_requests,
        replica_sets: &snapshot.replica_sets,
        deployments: &snapshot.deployments,
        stateful_sets: &snapshot.stateful_sets,
        pdbs: &snapshot.pod_disruption_budgets,
        last_evictions: &last,
        usage: &usage,
    }))
}

pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);
const PAGE: u32 = 500;

/// One API call with a deadline; its failure says what was being done.
pub async fn timed<T>(
    what: &str,
    f: impl std::future::Future<Output = Result<T, kube::Error>>,
) -> Result<T, RunError> {
    match tokio::time::timeout(CALL_TIMEOUT, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(source)) => Err(RunError::Api {
            what: what.to_string(),
            source,
        }),
        Err(_) => Err(RunError::Timeout {
            what: what.to_string(),
            after: CALL_TIMEOUT,
        }),
    }
}

/// Lists every page of a list call.
async fn list_all<K>(api: &Api<K>, params: ListParams, what: &str) -> Result<Vec<K>, RunError>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    list_mapped(api, params, what, |k| k).await
}

/// Lists page by page, keeping `map(object)` instead of the object: a page of full objects is
/// dropped before the next is read (5,000 Nodes with their image lists would be most of the RSS).
async fn list_mapped<K, T>(
    api: &Api<K>,
    params: ListParams,
    what: &str,
    mut map: impl FnMut(K) -> T,
) -> Result<Vec<T>, RunError>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut p = params.clone().limit(PAGE);
        if let Some(t) = &token {
            p = p.continue_token(t);
        }
        let page: ObjectList<K> = timed(what, api.list(&p)).await?;
        out.extend(page.items.into_iter().map(&mut map));
        token = page.metadata.continue_.filter(|t| !t.is_empty());
        if token.is_none() {
            return Ok(out);
        }
    }
}

async fn get_opt<K>(api: &Api<K>, name: &str, what: &str) -> Result<Option<K>, RunError>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    timed(what, api.get_opt(name)).await
}

/// How many of the coolest candidate destinations get their pods listed.
fn destination_budget(policy: &Policy) -> usize {
    (policy.descheduler.max_evictions_per_run as usize * 3).max(10)
}

pub struct LiveArgs<'a> {
    pub whitelist_ref: &'a str,
    pub allow_missing: bool,
    pub state_ref: &'a str,
    /// realload's namespace: where the learned usage ConfigMap is read.
    pub namespace: &'a str,
    pub dry_run: bool,
    pub now: Timestamp,
}

/// Gathers the inputs from the API (only what the plan needs) and plans.
pub async fn plan_live(
    client: &kube::Client,
    policy: &Policy,
    args: &LiveArgs<'_>,
) -> Result<Plan, RunError> {
    let (wl_ns, wl_name) = split_ref("--whitelist-configmap", args.whitelist_ref)?;
    let (st_ns, st_name) = split_ref("--state-configmap", args.state_ref)?;
    let cms_wl: Api<ConfigMap> = Api::namespaced(client.clone(), &wl_ns);
    let wl_cm = get_opt(&cms_wl, &wl_name, "reading the whitelist ConfigMap").await?;
    let whitelist = whitelist_from(wl_cm.as_ref(), args.whitelist_ref, args.allow_missing)?;
    let cms_state: Api<ConfigMap> = Api::namespaced(client.clone(), &st_ns);
    let state_cm = get_opt(&cms_state, &st_name, "reading the cooldown state").await?;
    if state_cm.is_none() && !args.dry_run {
        // Evicting without a place to record the cooldown would let a workload lose a pod on
        // every run.
        return Err(RunError::StateMissing {
            reference: args.state_ref.to_string(),
        });
    }
    let last = read_state(state_cm.as_ref());
    let usage = if policy.workload_usage.enabled {
        let name = &policy.workload_usage.config_map;
        let reference = format!("{}/{name}", args.namespace);
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), args.namespace);
        match api.get_opt(name).await {
            Ok(cm) => usage_from(cm.as_ref(), &reference),
            Err(e) => {
                warn!(configmap = %reference, error = %e, "workload usage unreadable; pods are counted at their requests");
                UsageTable::default()
            }
        }
    } else {
        UsageTable::default()
    };

    let nodes_api: Api<Node> = Api::all(client.clone());
    let views: Vec<NodeView> =
        list_mapped(&nodes_api, ListParams::default(), "listing nodes", |n| {
            NodeView::from_node(&n, policy)
        })
        .await?;
    let hot: Vec<&NodeView> = views
        .iter()
        .filter(|n| plan::hot_reading(policy, n, args.now).is_some())
        .collect();
    info!(nodes = views.len(), hot = hot.len(), "classified nodes");
    if hot.is_empty() {
        return Ok(Plan::default());
    }

    // Pods: those on the hot nodes, and those on the coolest possible destinations. Nothing else.
    let pods_api: Api<Pod> = Api::all(client.clone());
    let mut candidates = Vec::new();
    for n in &hot {
        let fs = format!("spec.nodeName={}", n.name);
        candidates.extend(
            list_all(
                &pods_api,
                ListParams::default().fields(&fs),
                "listing pods on a hot node",
            )
            .await?,
        );
    }
    let mut destinations: Vec<(&NodeView, f64)> = views
        .iter()
        .filter_map(|n| plan::destination_load(policy, n, args.now).map(|load| (n, load)))
        .collect();
    destinations.sort_by(|a, b| a.1.total_cmp(&b.1));
    destinations.truncate(destination_budget(policy));
    let mut node_requests: HashMap<String, Requests> = HashMap::new();
    for (n, _) in &destinations {
        let fs = format!("spec.nodeName={}", n.name);
        let pods = list_all(
            &pods_api,
            ListParams::default().fields(&fs),
            "listing pods on a destination",
        )
        .await?;
        let r = requests_by_node(&pods).remove(&n.name).unwrap_or_default();
        node_requests.insert(n.name.clone(), r);
    }

    // Owners, through a cache: each ReplicaSet / Deployment / StatefulSet read once, and only for
    // pods the plan could still evict on what the pod alone says (size, age, whitelists, ...).
    let mut replica_sets: Vec<ReplicaSet> = Vec::new();
    let mut deployments: Vec<Deployment> = Vec::new();
    let mut stateful_sets: Vec<StatefulSet> = Vec::new();
    let mut seen: HashSet<(String, String, String)> = HashSet::new();
    let needs_owner = |p: &&Pod| {
        let node = p.spec.as_ref().and_then(|s| s.node_name.as_deref());
        node.is_some_and(|n| whitelist.nodes.matching_entry(n).is_none())
            && plan::pod_exclusion(policy, &whitelist, args.now, p).is_none()
    };
    for p in candidates.iter().filter(needs_owner) {
        let ns = p.metadata.namespace.clone().unwrap_or_default();
        for o in p
            .metadata
            .owner_references
            .iter()
            .flatten()
            .filter(|o| o.controller == Some(true))
        {
            if !seen.insert((o.kind.clone(), ns.clone(), o.name.clone())) {
                continue;
            }
            match o.kind.as_str() {
                "ReplicaSet" => {
                    let api: Api<ReplicaSet> = Api::namespaced(client.clone(), &ns);
                    if let Some(rs) = get_opt(&api, &o.name, "reading a ReplicaSet").await? {
                        for d in rs
                            .metadata
                            .owner_references
                            .iter()
                            .flatten()
                            .filter(|d| d.kind == "Deployment")
                        {
                            if seen.insert(("Deployment".into(), ns.clone(), d.name.clone())) {
                                let api: Api<Deployment> = Api::namespaced(client.clone(), &ns);
                                if let Some(dep) =
                                    get_opt(&api, &d.name, "reading a Deployment").await?
                                {
                                    deployments.push(dep);
                                }
                            }
                        }
                        replica_sets.push(rs);
                    }
                }
                "StatefulSet" => {
                    let api: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
                    if let Some(s) = get_opt(&api, &o.name, "reading a StatefulSet").await? {
                        stateful_sets.push(s);
                    }
                }
                _ => {}
            }
        }
    }
    let namespaces: HashSet<String> = candidates
        .iter()
        .filter(needs_owner)
        .filter_map(|p| p.metadata.namespace.clone())
        .collect();
    let mut pdbs = Vec::new();
    for ns in &namespaces {
        let api: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), ns);
        pdbs.extend(list_all(&api, ListParams::default(), "listing PodDisruptionBudgets").await?);
    }
    Ok(plan::plan(&Inputs {
        policy,
        whitelist: &whitelist,
        now: args.now,
        nodes: &views,
        candidates: &candidates,
        node_requests: &node_requests,
        replica_sets: &replica_sets,
        deployments: &deployments,
        stateful_sets: &stateful_sets,
        pdbs: &pdbs,
        last_evictions: &last,
        usage: &usage,
    }))
}

pub fn load_snapshot(path: &Path) -> Result<Snapshot, RunError> {
    Ok(realload_common::cli::load_snapshot(path)?)
}

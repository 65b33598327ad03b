//! The descheduler run: gather inputs (from the API or a snapshot), plan, evict, report.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Node, ObjectReference, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, EvictParams, ListParams, ObjectList, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use realload_common::objects::{NodeView, Requests, pod_requests};
use realload_common::policy::Policy;
use realload_common::snapshot::Snapshot;
use realload_common::whitelist::Whitelist;
use serde::Serialize;
use thiserror::Error;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::plan::{self, Inputs, Plan, PlannedEviction, Skipped, WorkloadKey};

/// Exit statuses (DESIGN.md).
pub const EXIT_OK: u8 = 0;
pub const EXIT_BAD_INPUT: u8 = 1;
pub const EXIT_API_FAILED: u8 = 2;

#[derive(Debug, Error)]
pub enum RunError {
    /// Policy, whitelist or snapshot: nothing was evicted.
    #[error("{0}")]
    BadInput(String),
    /// The API failed before anything was evicted.
    #[error("{0}")]
    Api(String),
}

/// What the run did, as printed.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub evictions: Vec<PlannedEviction>,
    pub skipped: Vec<Skipped>,
    pub hot_nodes: Vec<String>,
    /// Set when the run stopped early (API failure, SIGTERM).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip)]
    pub dry_run: bool,
}

impl Report {
    pub fn from_plan(plan: Plan, dry_run: bool) -> Report {
        Report {
            evictions: plan.evictions,
            skipped: plan.skipped,
            hot_nodes: plan.hot_nodes,
            error: None,
            dry_run,
        }
    }
}

/// Key of a workload in the cooldown state ConfigMap: `Deployment.shop.web`.
pub fn state_key(w: &WorkloadKey) -> String {
    format!("{}.{}.{}", w.kind, w.namespace, w.name)
}

/// Reads the cooldown state (`data: {<kind>.<ns>.<name>: <RFC 3339>}`); unreadable entries are ignored.
pub fn read_state(cm: Option<&ConfigMap>) -> BTreeMap<WorkloadKey, Timestamp> {
    let mut out = BTreeMap::new();
    for (k, v) in cm.and_then(|c| c.data.as_ref()).into_iter().flatten() {
        let mut parts = k.splitn(3, '.');
        let (Some(kind), Some(ns), Some(name)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if let Ok(t) = v.parse::<Timestamp>() {
            out.insert(
                WorkloadKey {
                    kind: kind.into(),
                    namespace: ns.into(),
                    name: name.into(),
                },
                t,
            );
        }
    }
    out
}

pub fn split_ref(text: &str) -> Result<(String, String), RunError> {
    match text.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok((ns.into(), name.into()))
        }
        _ => Err(RunError::BadInput(format!(
            "{text:?} is not namespace/name"
        ))),
    }
}

/// Parses the whitelist, or reports what is wrong with it (or that it is missing).
pub fn whitelist_from(
    cm: Option<&ConfigMap>,
    reference: &str,
    allow_missing: bool,
) -> Result<Whitelist, RunError> {
    match cm {
        Some(cm) => Whitelist::from_configmap(cm)
            .map_err(|e| RunError::BadInput(format!("ConfigMap {reference}: {e}"))),
        None if allow_missing => {
            warn!(
                configmap = reference,
                "whitelist ConfigMap missing; running without one (--allow-missing-whitelist)"
            );
            Ok(Whitelist::default())
        }
        None => Err(RunError::BadInput(format!(
            "whitelist ConfigMap {reference} not found: create it, or pass --allow-missing-whitelist"
        ))),
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
    now: Timestamp,
) -> Result<Plan, RunError> {
    let (wl_ns, wl_name) = split_ref(whitelist_ref)?;
    let whitelist = whitelist_from(
        snapshot.config_map(&wl_ns, &wl_name),
        whitelist_ref,
        allow_missing,
    )?;
    let (st_ns, st_name) = split_ref(state_ref)?;
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
    }))
}

const CALL_TIMEOUT: Duration = Duration::from_secs(30);
const PAGE: u32 = 500;

async fn timed<T>(
    what: &str,
    f: impl std::future::Future<Output = Result<T, kube::Error>>,
) -> Result<T, String> {
    match tokio::time::timeout(CALL_TIMEOUT, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("{what}: {e}")),
        Err(_) => Err(format!("{what}: timed out after {CALL_TIMEOUT:?}")),
    }
}

/// Lists every page of a list call.
async fn list_all<K>(api: &Api<K>, params: ListParams, what: &str) -> Result<Vec<K>, String>
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
) -> Result<Vec<T>, String>
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

async fn get_opt<K>(api: &Api<K>, name: &str, what: &str) -> Result<Option<K>, String>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match tokio::time::timeout(CALL_TIMEOUT, api.get_opt(name)).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("{what}: {e}")),
        Err(_) => Err(format!("{what}: timed out")),
    }
}

/// How many of the coolest candidate destinations get their pods listed.
fn destination_budget(policy: &Policy) -> usize {
    (policy.descheduler.max_evictions_per_run as usize * 3).max(10)
}

pub struct LiveArgs<'a> {
    pub whitelist_ref: &'a str,
    pub allow_missing: bool,
    pub state_ref: &'a str,
    pub dry_run: bool,
    pub now: Timestamp,
}

/// Gathers the inputs from the API (only what the plan needs) and plans.
pub async fn plan_live(
    client: &kube::Client,
    policy: &Policy,
    args: &LiveArgs<'_>,
) -> Result<Plan, RunError> {
    let (wl_ns, wl_name) = split_ref(args.whitelist_ref)?;
    let (st_ns, st_name) = split_ref(args.state_ref)?;
    let api_err = RunError::Api;
    let cms_wl: Api<ConfigMap> = Api::namespaced(client.clone(), &wl_ns);
    let wl_cm = get_opt(&cms_wl, &wl_name, "reading the whitelist ConfigMap")
        .await
        .map_err(api_err)?;
    let whitelist = whitelist_from(wl_cm.as_ref(), args.whitelist_ref, args.allow_missing)?;
    let cms_state: Api<ConfigMap> = Api::namespaced(client.clone(), &st_ns);
    let state_cm = get_opt(&cms_state, &st_name, "reading the cooldown state")
        .await
        .map_err(api_err)?;
    let last = read_state(state_cm.as_ref());

    let nodes_api: Api<Node> = Api::all(client.clone());
    let views: Vec<NodeView> =
        list_mapped(&nodes_api, ListParams::default(), "listing nodes", |n| {
            NodeView::from_node(&n, policy)
        })
        .await
        .map_err(api_err)?;
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
            .await
            .map_err(api_err)?,
        );
    }
    let mut destinations: Vec<(&NodeView, f64)> = views
        .iter()
        .filter(|n| n.ready && !n.unschedulable && plan::hot_reading(policy, n, args.now).is_none())
        .filter_map(|n| {
            let i = policy.metric_index(realload_common::policy::DESTINATION_METRIC)?;
            let spec = &policy.metrics[i];
            let load = n
                .readings
                .get(i)?
                .classify(args.now, spec.max_age, spec.floor)
                .valid_ratio()?;
            (load < policy.descheduler.cool_below).then_some((n, load))
        })
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
        .await
        .map_err(api_err)?;
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
                    if let Some(rs) = get_opt(&api, &o.name, "reading a ReplicaSet")
                        .await
                        .map_err(api_err)?
                    {
                        for d in rs
                            .metadata
                            .owner_references
                            .iter()
                            .flatten()
                            .filter(|d| d.kind == "Deployment")
                        {
                            if seen.insert(("Deployment".into(), ns.clone(), d.name.clone())) {
                                let api: Api<Deployment> = Api::namespaced(client.clone(), &ns);
                                if let Some(dep) = get_opt(&api, &d.name, "reading a Deployment")
                                    .await
                                    .map_err(api_err)?
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
                    if let Some(s) = get_opt(&api, &o.name, "reading a StatefulSet")
                        .await
                        .map_err(api_err)?
                    {
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
        pdbs.extend(
            list_all(&api, ListParams::default(), "listing PodDisruptionBudgets")
                .await
                .map_err(api_err)?,
        );
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
    }))
}

fn object_ref(
    kind: &str,
    api_version: &str,
    namespace: Option<&str>,
    name: &str,
) -> ObjectReference {
    ObjectReference {
        api_version: Some(api_version.into()),
        kind: Some(kind.into()),
        namespace: namespace.map(str::to_string),
        name: Some(name.into()),
        ..ObjectReference::default()
    }
}

/// Records the eviction time of a workload in the state ConfigMap (created on first use).
async fn persist_cooldown(
    client: &kube::Client,
    state_ref: &str,
    workload: &WorkloadKey,
    at: Timestamp,
) -> Result<(), String> {
    let (ns, name) = split_ref(state_ref).map_err(|e| e.to_string())?;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let key = state_key(workload);
    let value = at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let patch = serde_json::json!({"data": {key.clone(): value}});
    let params = PatchParams {
        field_manager: Some("realload-descheduler".into()),
        ..PatchParams::default()
    };
    match tokio::time::timeout(
        CALL_TIMEOUT,
        api.patch(&name, &params, &Patch::Merge(&patch)),
    )
    .await
    {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(kube::Error::Api(s))) if s.code == 404 => {
            let cm: ConfigMap = serde_json::from_value(serde_json::json!({
                "metadata": {"name": name, "namespace": ns, "labels": {"app.kubernetes.io/name": "realload-descheduler"}},
                "data": {key: value}}))
            .map_err(|e| e.to_string())?;
            timed(
                "creating the cooldown state",
                api.create(&PostParams::default(), &cm),
            )
            .await
            .map(|_| ())
        }
        Ok(Err(e)) => Err(format!("recording the cooldown: {e}")),
        Err(_) => Err("recording the cooldown: timed out".into()),
    }
}

/// Reports planned evictions that were not attempted, with why.
fn skip_all(report: &mut Report, rest: impl IntoIterator<Item = PlannedEviction>, reason: &str) {
    report.skipped.extend(rest.into_iter().map(|r| Skipped {
        namespace: r.namespace,
        pod: r.pod,
        reason: reason.into(),
    }));
}

/// Carries out the plan, one eviction at a time.
pub async fn execute(
    client: &kube::Client,
    plan: Plan,
    state_ref: &str,
    shutdown: &CancellationToken,
) -> (Report, u8) {
    let mut report = Report {
        hot_nodes: plan.hot_nodes,
        skipped: plan.skipped,
        ..Report::default()
    };
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "realload-descheduler".into(),
            instance: std::env::var("POD_NAME").ok(),
        },
    );
    let mut pending = plan.evictions.into_iter();
    while let Some(e) = pending.next() {
        if shutdown.is_cancelled() {
            report.error = Some("stopped by a signal before the next eviction".into());
            skip_all(
                &mut report,
                std::iter::once(e).chain(pending.by_ref()),
                "not attempted: stopped by a signal",
            );
            return (report, EXIT_OK);
        }
        let api: Api<Pod> = Api::namespaced(client.clone(), &e.namespace);
        let result =
            tokio::time::timeout(CALL_TIMEOUT, api.evict(&e.pod, &EvictParams::default())).await;
        match result {
            Ok(Ok(_)) => {
                info!(pod = %format!("{}/{}", e.namespace, e.pod), node = %e.node, destination = %e.destination, "evicted");
                if let Err(err) =
                    persist_cooldown(client, state_ref, &e.workload_key, Timestamp::now()).await
                {
                    warn!(error = %err, "the eviction happened but its cooldown was not recorded");
                }
                let note = format!(
                    "realload evicted this pod: node {} runs hot ({:.2}); node {} can take it",
                    e.node, e.hot_reading, e.destination
                );
                let event = Event {
                    type_: EventType::Normal,
                    reason: "RealloadEvicted".into(),
                    note: Some(note),
                    action: "Evict".into(),
                    secondary: None,
                };
                let pod_ref = object_ref("Pod", "v1", Some(&e.namespace), &e.pod);
                let node_ref = object_ref("Node", "v1", None, &e.node);
                for r in [&pod_ref, &node_ref] {
                    if let Err(err) = recorder.publish(&event, r).await {
                        warn!(error = %err, "could not record an Event");
                    }
                }
                report.evictions.push(e);
            }
            Ok(Err(kube::Error::Api(s))) if s.code == 429 => {
                let detail = s
                    .details
                    .as_ref()
                    .and_then(|d| d.causes.first())
                    .map(|c| c.message.clone())
                    .unwrap_or(s.message.clone());
                report.skipped.push(Skipped {
                    namespace: e.namespace,
                    pod: e.pod,
                    reason: format!("the Eviction API refused (429): {detail}"),
                });
            }
            Ok(Err(kube::Error::Api(s))) if s.code == 404 => {
                report.skipped.push(Skipped {
                    namespace: e.namespace,
                    pod: e.pod,
                    reason: "pod already gone (404)".into(),
                });
            }
            other => {
                let why = match other {
                    Ok(Err(err)) => err.to_string(),
                    _ => format!("timed out after {CALL_TIMEOUT:?}"),
                };
                warn!(pod = %format!("{}/{}", e.namespace, e.pod), error = %why, "eviction failed; stopping");
                report.error = Some(format!("evicting {}/{} failed: {why}", e.namespace, e.pod));
                report.skipped.push(Skipped {
                    namespace: e.namespace,
                    pod: e.pod,
                    reason: format!("eviction failed: {why}"),
                });
                skip_all(
                    &mut report,
                    pending,
                    "not attempted: the API failed earlier in this run",
                );
                return (report, EXIT_API_FAILED);
            }
        }
    }
    (report, EXIT_OK)
}

/// The human-readable report.
pub fn render_table(r: &Report) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "hot nodes: {}",
        if r.hot_nodes.is_empty() {
            "none".to_string()
        } else {
            r.hot_nodes.join(", ")
        }
    );
    let verb = if r.dry_run {
        "evictions planned (dry run)"
    } else {
        "evictions"
    };
    let _ = writeln!(out, "{verb}: {}", r.evictions.len());
    for e in &r.evictions {
        let _ = writeln!(
            out,
            "  {}/{}  on {}  ({})  {}",
            e.namespace, e.pod, e.node, e.workload, e.reason
        );
    }
    let _ = writeln!(out, "skipped: {}", r.skipped.len());
    for s in &r.skipped {
        let _ = writeln!(out, "  {}/{}  {}", s.namespace, s.pod, s.reason);
    }
    if let Some(e) = &r.error {
        let _ = writeln!(out, "stopped early: {e}");
    }
    out
}

pub fn load_snapshot(path: &Path) -> Result<Snapshot, RunError> {
    realload_common::cli::load_snapshot(path).map_err(|e| RunError::BadInput(e.to_string()))
}

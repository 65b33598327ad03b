//! Carrying out a plan: one eviction at a time through the Eviction API, an Event on the pod
//! and its node for each, and the workload cooldown recorded in the state ConfigMap.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference, Pod};
use kube::api::{Api, EvictParams, Patch, PatchParams};
use kube::core::response::reason;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::error::{EXIT_API_FAILED, EXIT_OK, RunError};
use crate::gather::{CALL_TIMEOUT, split_ref, timed};
use crate::plan::{Plan, PlannedEviction, Skipped, WorkloadKey};
use crate::report::Report;

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

/// A complete reference: `kubectl describe` finds an object's Events by kind, namespace, name
/// and uid, so an Event without the uid is invisible there.
fn object_ref(
    kind: &str,
    namespace: Option<&str>,
    name: &str,
    uid: Option<&str>,
) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some(kind.into()),
        namespace: namespace.map(str::to_string),
        name: Some(name.into()),
        uid: uid.map(str::to_string),
        ..ObjectReference::default()
    }
}

/// Records the eviction on the pod (regarding it) and on its node (regarding the node, related
/// to the pod, so the node's Event names the evicted pod).
async fn record_events(recorder: &Recorder, e: &PlannedEviction) {
    let note = format!(
        "realload evicted {}/{}: node {} runs hot ({:.2}); node {} can take it",
        e.namespace, e.pod, e.node, e.hot_reading, e.destination
    );
    let pod_ref = object_ref("Pod", Some(&e.namespace), &e.pod, e.pod_uid.as_deref());
    let node_ref = object_ref("Node", None, &e.node, e.node_uid.as_deref());
    let event = |secondary: Option<ObjectReference>| Event {
        type_: EventType::Normal,
        reason: "RealloadEvicted".into(),
        note: Some(note.clone()),
        action: "Evict".into(),
        secondary,
    };
    let (on_pod, on_node) = (event(None), event(Some(pod_ref.clone())));
    for (event, regarding) in [(&on_pod, &pod_ref), (&on_node, &node_ref)] {
        if let Err(err) = recorder.publish(event, regarding).await {
            warn!(error = %err, "could not record an Event");
        }
    }
}

/// Records the eviction time of a workload in the state ConfigMap. The ConfigMap is shipped by
/// the manifests (and checked before any eviction), so the descheduler needs no right to create
/// ConfigMaps.
async fn persist_cooldown(
    client: &kube::Client,
    state_ref: &str,
    workload: &WorkloadKey,
    at: Timestamp,
) -> Result<(), RunError> {
    let (ns, name) = split_ref("--state-configmap", state_ref)?;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let key = state_key(workload);
    let value = at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let patch = serde_json::json!({"data": {key: value}});
    let params = PatchParams {
        field_manager: Some("realload-descheduler".into()),
        ..PatchParams::default()
    };
    timed(
        "recording the cooldown",
        api.patch(&name, &params, &Patch::Merge(&patch)),
    )
    .await
    .map(|_| ())
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
                record_events(&recorder, &e).await;
                report.evictions.push(e);
            }
            Ok(Err(kube::Error::Api(s)))
                if s.reason == reason::TOO_MANY_REQUESTS || s.code == 429 =>
            {
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
            Ok(Err(kube::Error::Api(s))) if s.is_not_found() => {
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

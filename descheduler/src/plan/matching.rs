//! Kubernetes matching rules the plan needs: readiness, taints and tolerations, node selectors
//! and required node affinity, budgets that select a pod, and what a pod is.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Pod, Taint, Toleration};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use realload_common::objects::NodeView;
use realload_common::selector::{expression_matches, label_selector_matches};

use super::SYSTEM_CRITICAL_PRIORITY;

pub(super) fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

pub(super) fn tolerates(tolerations: &[Toleration], taint: &Taint) -> bool {
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
pub(super) fn node_fits_constraints(pod: &Pod, node: &NodeView) -> bool {
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

pub(super) fn has_local_storage(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .is_some_and(|v| {
            v.iter()
                .any(|v| v.empty_dir.is_some() || v.host_path.is_some())
        })
}

pub(super) fn is_system_critical(pod: &Pod) -> bool {
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
pub(super) fn pod_age_start(pod: &Pod) -> Option<Timestamp> {
    pod.status
        .as_ref()
        .and_then(|s| s.start_time.as_ref())
        .map(|t| t.0)
        .or_else(|| pod.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

/// The PodDisruptionBudgets in the pod's namespace that select it.
pub(super) fn covering_pdbs<'p>(
    pdbs: &'p [PodDisruptionBudget],
    pod: &Pod,
) -> Vec<&'p PodDisruptionBudget> {
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

/// The app names a pod carries in its labels (`app`, `app.kubernetes.io/name`).
pub(super) fn app_labels(pod: &Pod) -> Vec<&str> {
    let Some(labels) = pod.metadata.labels.as_ref() else {
        return Vec::new();
    };
    ["app", "app.kubernetes.io/name"]
        .iter()
        .filter_map(|k| labels.get(*k).map(String::as_str))
        .collect()
}

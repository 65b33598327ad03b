//! What realload reads off Kubernetes objects, extracted once: a Node's readings, allocatable,
//! readiness and taints; a Pod's effective requests and binding time.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Container, Node, Pod, Taint};
use serde::Serialize;

use crate::policy::Policy;
use crate::quantity;
use crate::reading::RawReading;
use crate::scoring::{Allocatable, BoundPod};

/// Annotation values longer than this are not kept on a [`NodeView`] (no reading is this long).
pub const MAX_READING_LEN: usize = 64;

/// The parts of a Node realload uses, with its readings parsed for one policy.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeView {
    pub name: String,
    pub uid: Option<String>,
    /// One per policy metric, in policy order.
    pub readings: Vec<RawReading>,
    pub allocatable: Allocatable,
    pub ready: bool,
    pub unschedulable: bool,
    pub taints: Vec<Taint>,
    pub internal_ip: Option<String>,
    pub hostname: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// Short annotations (anything that could be a reading), kept so a policy reload can re-parse them.
    pub annotations: BTreeMap<String, String>,
}

impl NodeView {
    pub fn from_node(node: &Node, policy: &Policy) -> NodeView {
        let empty = BTreeMap::new();
        let all = node.metadata.annotations.as_ref().unwrap_or(&empty);
        // Keep only what could be a reading, so a policy reload can re-parse without a re-list:
        // readings are short ("0.4213,2026-11-22T01:02:03Z"); long annotations
        // (last-applied-configuration and the like) never are.
        let annotations: BTreeMap<String, String> = all
            .iter()
            .filter(|(k, v)| {
                v.len() <= MAX_READING_LEN || policy.metrics.iter().any(|m| &m.annotation == *k)
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let status = node.status.as_ref();
        let allocatable = status
            .and_then(|s| s.allocatable.as_ref())
            .map(|a| Allocatable {
                cpu_millis: a
                    .get("cpu")
                    .and_then(|q| quantity::cpu_millis(&q.0).ok())
                    .unwrap_or(0),
                memory_bytes: a
                    .get("memory")
                    .and_then(|q| quantity::bytes(&q.0).ok())
                    .unwrap_or(0),
            })
            .unwrap_or_default();
        let ready = status
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
            .is_some_and(|c| c.status == "True");
        let address = |kind: &str| {
            status
                .and_then(|s| s.addresses.as_ref())
                .and_then(|a| a.iter().find(|a| a.type_ == kind))
                .map(|a| a.address.clone())
        };
        let spec = node.spec.as_ref();
        let mut view = NodeView {
            name: node.metadata.name.clone().unwrap_or_default(),
            uid: node.metadata.uid.clone(),
            readings: Vec::new(),
            allocatable,
            ready,
            unschedulable: spec.and_then(|s| s.unschedulable).unwrap_or(false),
            taints: spec.and_then(|s| s.taints.clone()).unwrap_or_default(),
            internal_ip: address("InternalIP"),
            hostname: address("Hostname"),
            labels: node.metadata.labels.clone().unwrap_or_default(),
            annotations,
        };
        view.reparse(policy);
        view
    }

    /// Parses the readings again for a (possibly new) policy.
    pub fn reparse(&mut self, policy: &Policy) {
        self.readings = parse_readings(&self.annotations, policy);
    }
}

/// Parses one reading per policy metric from a Node's annotations.
pub fn parse_readings(annotations: &BTreeMap<String, String>, policy: &Policy) -> Vec<RawReading> {
    policy
        .metrics
        .iter()
        .map(|m| {
            RawReading::from_annotation(
                annotations.get(&m.annotation).map(String::as_str),
                m.format,
                &policy.crane_timezone,
            )
        })
        .collect()
}

/// A pod's effective requests, as the scheduler computes them: the larger of the sum over app
/// containers (plus restartable init "sidecar" containers) and the largest init container, plus
/// the pod overhead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Requests {
    pub cpu_millis: u64,
    pub memory_bytes: u64,
}

fn container_requests(c: &Container) -> Requests {
    let requests = c.resources.as_ref().and_then(|r| r.requests.as_ref());
    Requests {
        cpu_millis: requests
            .and_then(|r| r.get("cpu"))
            .and_then(|q| quantity::cpu_millis(&q.0).ok())
            .unwrap_or(0),
        memory_bytes: requests
            .and_then(|r| r.get("memory"))
            .and_then(|q| quantity::bytes(&q.0).ok())
            .unwrap_or(0),
    }
}

pub fn pod_requests(pod: &Pod) -> Requests {
    let Some(spec) = pod.spec.as_ref() else {
        return Requests::default();
    };
    let mut sum = Requests::default();
    for c in &spec.containers {
        let r = container_requests(c);
        sum.cpu_millis = sum.cpu_millis.saturating_add(r.cpu_millis);
        sum.memory_bytes = sum.memory_bytes.saturating_add(r.memory_bytes);
    }
    let mut init_peak = Requests::default();
    let mut sidecars = Requests::default();
    for c in spec.init_containers.iter().flatten() {
        let r = container_requests(c);
        // Running sidecars (and the init container starting after them) hold resources together.
        init_peak.cpu_millis = init_peak
            .cpu_millis
            .max(sidecars.cpu_millis.saturating_add(r.cpu_millis));
        init_peak.memory_bytes = init_peak
            .memory_bytes
            .max(sidecars.memory_bytes.saturating_add(r.memory_bytes));
        if c.restart_policy.as_deref() == Some("Always") {
            sidecars.cpu_millis = sidecars.cpu_millis.saturating_add(r.cpu_millis);
            sidecars.memory_bytes = sidecars.memory_bytes.saturating_add(r.memory_bytes);
        }
    }
    sum.cpu_millis = sum.cpu_millis.saturating_add(sidecars.cpu_millis);
    sum.memory_bytes = sum.memory_bytes.saturating_add(sidecars.memory_bytes);
    let overhead = |name: &str, parse: fn(&str) -> Result<u64, quantity::QuantityError>| {
        spec.overhead
            .as_ref()
            .and_then(|o| o.get(name))
            .and_then(|q| parse(&q.0).ok())
            .unwrap_or(0)
    };
    Requests {
        cpu_millis: sum
            .cpu_millis
            .max(init_peak.cpu_millis)
            .saturating_add(overhead("cpu", quantity::cpu_millis)),
        memory_bytes: sum
            .memory_bytes
            .max(init_peak.memory_bytes)
            .saturating_add(overhead("memory", quantity::bytes)),
    }
}

/// When a pod was bound: the PodScheduled=True condition's transition time, else its start time,
/// else its creation time.
pub fn bound_at(pod: &Pod) -> Option<Timestamp> {
    let status = pod.status.as_ref();
    status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| {
            c.iter()
                .find(|c| c.type_ == "PodScheduled" && c.status == "True")
        })
        .and_then(|c| c.last_transition_time.as_ref())
        .map(|t| t.0)
        .or_else(|| status.and_then(|s| s.start_time.as_ref()).map(|t| t.0))
        .or_else(|| pod.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

/// True for pods that no longer hold node resources.
pub fn is_finished(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded") | Some("Failed")
    )
}

/// The node a pod is bound to and its hot-spot record, for pods still holding resources.
pub fn bound_pod(pod: &Pod) -> Option<(&str, BoundPod)> {
    let node = pod.spec.as_ref()?.node_name.as_deref()?;
    if is_finished(pod) {
        return None;
    }
    let requests = pod_requests(pod);
    Some((
        node,
        BoundPod {
            bound_at: bound_at(pod)?,
            cpu_millis: requests.cpu_millis,
            memory_bytes: requests.memory_bytes,
            pinned: is_daemonset_pod(pod) || is_static_pod(pod),
            learned: None,
        },
    ))
}

/// Why the extender answers neutrally for a pod: every candidate passes with the same score.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NeutralPod {
    /// A DaemonSet's pod: pinned to its node, load is no reason to refuse it.
    DaemonSet,
    /// Annotated `realload.io/ignore: "true"`: opted out of load-awareness.
    Ignored,
}

impl NeutralPod {
    /// The rule, over the kinds of the pod's controller owner references and the value of its
    /// `realload.io/ignore` annotation; both the full Pod and the extender's request summary
    /// come through here.
    pub fn classify<'a>(
        controller_kinds: impl IntoIterator<Item = &'a str>,
        ignore_annotation: Option<&str>,
    ) -> Option<NeutralPod> {
        if controller_kinds.into_iter().any(|k| k == "DaemonSet") {
            Some(NeutralPod::DaemonSet)
        } else if ignore_annotation == Some("true") {
            Some(NeutralPod::Ignored)
        } else {
            None
        }
    }

    pub fn of(pod: &Pod) -> Option<NeutralPod> {
        let controllers = pod
            .metadata
            .owner_references
            .iter()
            .flatten()
            .filter(|o| o.controller == Some(true))
            .map(|o| o.kind.as_str());
        let ignore = pod
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(IGNORE_ANNOTATION))
            .map(String::as_str);
        NeutralPod::classify(controllers, ignore)
    }

    /// The metrics label and `/debug/nodes` outcome.
    pub fn as_str(self) -> &'static str {
        match self {
            NeutralPod::DaemonSet => "daemonset",
            NeutralPod::Ignored => "ignored",
        }
    }

    /// What `explain` tells the operator.
    pub fn explanation(self) -> &'static str {
        match self {
            NeutralPod::DaemonSet => "DaemonSet pod: all nodes pass with equal scores",
            NeutralPod::Ignored => {
                "pod annotated realload.io/ignore=true: all nodes pass with equal scores"
            }
        }
    }
}

/// A DaemonSet's pod (pinned to its node).
pub fn is_daemonset_pod(pod: &Pod) -> bool {
    NeutralPod::of(pod) == Some(NeutralPod::DaemonSet)
}

/// A static pod's mirror: the kubelet runs it from a file, whatever any scheduler says.
pub fn is_static_pod(pod: &Pod) -> bool {
    pod.metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key("kubernetes.io/config.mirror"))
        || pod
            .metadata
            .owner_references
            .iter()
            .flatten()
            .any(|o| o.kind == "Node")
}

/// `realload.io/ignore: "true"` opts a pod out of load-awareness.
pub const IGNORE_ANNOTATION: &str = "realload.io/ignore";

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(json: serde_json::Value) -> Pod {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn neutral_pods_are_daemonset_controlled_or_opted_out() {
        use NeutralPod::*;
        let cases: [(&[&str], Option<&str>, Option<NeutralPod>); 7] = [
            (&["DaemonSet"], None, Some(DaemonSet)),
            (&["DaemonSet"], Some("true"), Some(DaemonSet)),
            (&["ReplicaSet"], Some("true"), Some(Ignored)),
            (&[], Some("true"), Some(Ignored)),
            (&[], Some("True"), None),
            (&[], Some("false"), None),
            (&["ReplicaSet"], None, None),
        ];
        for (kinds, ignore, want) in cases {
            assert_eq!(
                NeutralPod::classify(kinds.iter().copied(), ignore),
                want,
                "{kinds:?} {ignore:?}"
            );
        }
        // Only the controller reference counts: a DaemonSet that merely owns the pod does not.
        let owned = pod(serde_json::json!({"metadata": {"ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "ds", "uid": "u"}]}}));
        assert_eq!(NeutralPod::of(&owned), None);
        assert_eq!(DaemonSet.as_str(), "daemonset");
        assert_eq!(Ignored.as_str(), "ignored");
    }

    #[test]
    fn node_view_reads_what_realload_uses() {
        let node: Node = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "n1", "annotations": {
                "realload.io/cpu-avg-5m": "0.4,2026-11-22T01:00:00Z",
                "unrelated": "x".repeat(100)}},
            "spec": {"unschedulable": true, "taints": [{"key": "k", "effect": "NoSchedule"}]},
            "status": {"allocatable": {"cpu": "3800m", "memory": "15Gi"},
                       "conditions": [{"type": "Ready", "status": "True"}],
                       "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}, {"type": "Hostname", "address": "host-1"}]}
        }))
        .unwrap();
        let v = NodeView::from_node(&node, &Policy::default());
        assert_eq!(v.name, "n1");
        assert_eq!(
            v.allocatable,
            Allocatable {
                cpu_millis: 3800,
                memory_bytes: 15 << 30
            }
        );
        assert!(v.ready && v.unschedulable);
        assert_eq!(v.taints.len(), 1);
        assert_eq!(v.internal_ip.as_deref(), Some("10.0.0.1"));
        assert_eq!(v.hostname.as_deref(), Some("host-1"));
        assert_eq!(v.annotations.len(), 1, "unrelated annotations are dropped");
        assert!(matches!(v.readings[0], RawReading::Parsed(_)));
        assert_eq!(v.readings[1], RawReading::Missing);
        assert_eq!(v.readings.len(), 4);
    }

    #[test]
    fn requests_follow_the_scheduler_rule() {
        let p = pod(serde_json::json!({"spec": {
            "containers": [
                {"name": "a", "resources": {"requests": {"cpu": "1", "memory": "1Gi"}}},
                {"name": "b", "resources": {"requests": {"cpu": "500m"}}}],
            "initContainers": [{"name": "init", "resources": {"requests": {"cpu": "3", "memory": "512Mi"}}}],
            "overhead": {"cpu": "100m"}}}));
        assert_eq!(
            pod_requests(&p),
            Requests {
                cpu_millis: 3100,
                memory_bytes: 1 << 30
            }
        );
        let sidecar = pod(serde_json::json!({"spec": {
            "containers": [{"name": "a", "resources": {"requests": {"cpu": "1"}}}],
            "initContainers": [{"name": "proxy", "restartPolicy": "Always", "resources": {"requests": {"cpu": "250m"}}}]}}));
        assert_eq!(pod_requests(&sidecar).cpu_millis, 1250);
        assert_eq!(
            pod_requests(&pod(serde_json::json!({}))),
            Requests::default()
        );
    }

    #[test]
    fn binding_time_and_pod_kinds() {
        let p = pod(serde_json::json!({
            "metadata": {"name": "p", "creationTimestamp": "2026-11-22T00:00:00Z",
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "ds", "uid": "u", "controller": true}],
                         "annotations": {"realload.io/ignore": "true"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "resources": {"requests": {"cpu": "2"}}}]},
            "status": {"phase": "Running", "conditions": [{"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-11-22T00:00:05Z"}]}}));
        let (node, bound) = bound_pod(&p).unwrap();
        assert_eq!(node, "n1");
        assert_eq!(
            bound.bound_at,
            "2026-11-22T00:00:05Z".parse::<Timestamp>().unwrap()
        );
        assert_eq!(bound.cpu_millis, 2000);
        assert!(is_daemonset_pod(&p));
        assert_eq!(NeutralPod::of(&p), Some(NeutralPod::DaemonSet));
        let mut done = p.clone();
        done.status.as_mut().unwrap().phase = Some("Succeeded".into());
        assert!(bound_pod(&done).is_none());
        let unbound = pod(serde_json::json!({"spec": {"containers": []}}));
        assert!(bound_pod(&unbound).is_none());
        assert!(!is_daemonset_pod(&unbound));
        assert_eq!(NeutralPod::of(&unbound), None);
    }
}

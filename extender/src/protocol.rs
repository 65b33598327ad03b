//! kube-scheduler's extender wire format (`k8s.io/kube-scheduler/extender/v1`, untagged Go structs:
//! PascalCase keys, `null` for absent values), read without copying what is only echoed back.
//!
//! Requests are parsed into borrowed slices of the body: in `nodeCacheCapable=false` mode each
//! Node object is read for the few fields realload uses, and the surviving ones are written back
//! byte-for-byte, never re-encoded.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Deserialize;
use serde_json::value::RawValue;
use thiserror::Error;

/// What is wrong with a request, worded for the scheduler's log and the pod's events.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProtocolError {
    #[error("request body is not valid extender JSON: {0}")]
    Json(String),
    #[error("request has no Pod")]
    MissingPod,
    #[error("request sets both Nodes and NodeNames; kube-scheduler sends exactly one")]
    BothNodeForms,
    #[error("request sets neither Nodes nor NodeNames")]
    NoNodes,
    #[error("Nodes.items[{index}] is not a Node: {message}")]
    BadNode { index: usize, message: String },
    #[error("Pod is not a Pod object: {0}")]
    BadPod(String),
    #[error("bind request is missing {0}")]
    BindField(&'static str),
}

/// `ExtenderArgs` as sent: `Pod`, and either `Nodes` (a NodeList) or `NodeNames`.
#[derive(Deserialize)]
struct ArgsWire<'a> {
    #[serde(rename = "Pod", alias = "pod", borrow, default)]
    pod: Option<&'a RawValue>,
    #[serde(rename = "Nodes", alias = "nodes", borrow, default)]
    nodes: Option<NodeListWire<'a>>,
    #[serde(
        rename = "NodeNames",
        alias = "nodenames",
        alias = "nodeNames",
        default
    )]
    node_names: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct NodeListWire<'a> {
    #[serde(borrow, default)]
    items: Option<Vec<&'a RawValue>>,
}

/// The parts of a Pod the extender looks at.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct PodSummary {
    pub metadata: PodMeta,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct PodMeta {
    pub name: Option<String>,
    pub namespace: Option<String>,
    pub annotations: Option<BTreeMap<String, String>>,
    pub owner_references: Option<Vec<OwnerRef>>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct OwnerRef {
    pub kind: String,
    pub controller: Option<bool>,
}

impl PodSummary {
    /// DaemonSet pods and pods annotated `realload.io/ignore: "true"` get a neutral answer.
    pub fn neutral_reason(&self) -> Option<&'static str> {
        let m = &self.metadata;
        if m.owner_references
            .iter()
            .flatten()
            .any(|o| o.kind == "DaemonSet" && o.controller == Some(true))
        {
            Some("daemonset")
        } else if m
            .annotations
            .as_ref()
            .and_then(|a| a.get(realload_common::objects::IGNORE_ANNOTATION))
            .is_some_and(|v| v == "true")
        {
            Some("ignored")
        } else {
            None
        }
    }

    pub fn display_name(&self) -> String {
        format!(
            "{}/{}",
            self.metadata.namespace.as_deref().unwrap_or("default"),
            self.metadata.name.as_deref().unwrap_or("")
        )
    }
}

/// The parts of a Node the extender reads in non-cache mode.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct NodeSummary {
    pub metadata: NodeMeta,
    pub status: NodeStatusSummary,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct NodeMeta {
    pub name: String,
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct NodeStatusSummary {
    pub allocatable: BTreeMap<String, String>,
}

/// The candidate nodes of a request, in the form they came in.
pub enum Candidates<'a> {
    /// `nodeCacheCapable=true`: names; readings come from the index.
    Names(Vec<String>),
    /// `nodeCacheCapable=false`: each Node's raw bytes (to echo) and what was read from it.
    Nodes(Vec<(&'a RawValue, NodeSummary)>),
}

impl Candidates<'_> {
    pub fn len(&self) -> usize {
        match self {
            Candidates::Names(n) => n.len(),
            Candidates::Nodes(n) => n.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn name(&self, i: usize) -> &str {
        match self {
            Candidates::Names(n) => &n[i],
            Candidates::Nodes(n) => &n[i].1.metadata.name,
        }
    }
}

pub struct ExtenderArgs<'a> {
    pub pod: PodSummary,
    pub candidates: Candidates<'a>,
}

/// Parses a filter or prioritize body.
pub fn parse_args(body: &[u8]) -> Result<ExtenderArgs<'_>, ProtocolError> {
    let wire: ArgsWire<'_> =
        serde_json::from_slice(body).map_err(|e| ProtocolError::Json(e.to_string()))?;
    let pod_raw = wire
        .pod
        .filter(|p| p.get() != "null")
        .ok_or(ProtocolError::MissingPod)?;
    let pod: PodSummary =
        serde_json::from_str(pod_raw.get()).map_err(|e| ProtocolError::BadPod(e.to_string()))?;
    let candidates = match (wire.nodes, wire.node_names) {
        (Some(_), Some(_)) => return Err(ProtocolError::BothNodeForms),
        (None, None) => return Err(ProtocolError::NoNodes),
        (None, Some(names)) => Candidates::Names(names),
        (Some(list), None) => {
            let items = list.items.unwrap_or_default();
            let mut nodes = Vec::with_capacity(items.len());
            for (index, raw) in items.into_iter().enumerate() {
                let summary: NodeSummary =
                    serde_json::from_str(raw.get()).map_err(|e| ProtocolError::BadNode {
                        index,
                        message: e.to_string(),
                    })?;
                nodes.push((raw, summary));
            }
            Candidates::Nodes(nodes)
        }
    };
    Ok(ExtenderArgs { pod, candidates })
}

/// `ExtenderBindingArgs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindArgs {
    pub pod_name: String,
    pub pod_namespace: String,
    pub pod_uid: String,
    pub node: String,
}

#[derive(Deserialize)]
struct BindWire {
    #[serde(rename = "PodName", alias = "podName", alias = "podname", default)]
    pod_name: Option<String>,
    #[serde(
        rename = "PodNamespace",
        alias = "podNamespace",
        alias = "podnamespace",
        default
    )]
    pod_namespace: Option<String>,
    #[serde(rename = "PodUID", alias = "podUID", alias = "poduid", default)]
    pod_uid: Option<String>,
    #[serde(rename = "Node", alias = "node", default)]
    node: Option<String>,
}

pub fn parse_bind(body: &[u8]) -> Result<BindArgs, ProtocolError> {
    let w: BindWire =
        serde_json::from_slice(body).map_err(|e| ProtocolError::Json(e.to_string()))?;
    let need = |v: Option<String>, field| {
        v.filter(|s| !s.is_empty())
            .ok_or(ProtocolError::BindField(field))
    };
    Ok(BindArgs {
        pod_name: need(w.pod_name, "PodName")?,
        pod_namespace: need(w.pod_namespace, "PodNamespace")?,
        pod_uid: w.pod_uid.unwrap_or_default(),
        node: need(w.node, "Node")?,
    })
}

fn push_json_string(out: &mut String, s: &str) {
    // serde_json's string escaping; writing to a String cannot fail.
    if let Ok(quoted) = serde_json::to_string(s) {
        out.push_str(&quoted);
    }
}

fn push_failed(out: &mut String, failed: &[(&str, &str)]) {
    out.push('{');
    for (i, (node, message)) in failed.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_json_string(out, node);
        out.push(':');
        push_json_string(out, message);
    }
    out.push('}');
}

/// `ExtenderFilterResult` in the request's mode: `NodeNames` for names, `Nodes` (echoed bytes)
/// for Node objects. `passed` holds candidate indices.
pub fn filter_response(
    candidates: &Candidates<'_>,
    passed: &[usize],
    failed: &[(&str, &str)],
) -> String {
    let mut out = String::with_capacity(64 + passed.len() * 24);
    match candidates {
        Candidates::Names(names) => {
            out.push_str("{\"Nodes\":null,\"NodeNames\":[");
            for (i, idx) in passed.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_json_string(&mut out, &names[*idx]);
            }
            out.push(']');
        }
        Candidates::Nodes(nodes) => {
            let bytes: usize = passed.iter().map(|i| nodes[*i].0.get().len() + 1).sum();
            out.reserve(bytes);
            out.push_str("{\"Nodes\":{\"metadata\":{},\"items\":[");
            for (i, idx) in passed.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(nodes[*idx].0.get());
            }
            out.push_str("]},\"NodeNames\":null");
        }
    }
    out.push_str(",\"FailedNodes\":");
    push_failed(&mut out, failed);
    out.push_str(",\"FailedAndUnresolvableNodes\":{},\"Error\":\"\"}");
    out
}

/// A filter result carrying only an error (kube-scheduler fails the call, or skips an
/// `ignorable` extender).
pub fn filter_error(message: &str) -> String {
    let mut out = String::from(
        "{\"Nodes\":null,\"NodeNames\":null,\"FailedNodes\":null,\"FailedAndUnresolvableNodes\":null,\"Error\":",
    );
    push_json_string(&mut out, message);
    out.push('}');
    out
}

/// `HostPriorityList`: `[{"Host":..,"Score":..}]` with integer scores.
pub fn prioritize_response<'s>(hosts: impl Iterator<Item = (&'s str, i64)>) -> String {
    let mut out = String::from("[");
    for (i, (host, score)) in hosts.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"Host\":");
        push_json_string(&mut out, host);
        let _ = write!(out, ",\"Score\":{score}}}");
    }
    out.push(']');
    out
}

/// `ExtenderBindingResult`.
pub fn bind_response(error: &str) -> String {
    let mut out = String::from("{\"Error\":");
    push_json_string(&mut out, error);
    out.push('}');
    out
}

#[cfg(test)]
mod tests;

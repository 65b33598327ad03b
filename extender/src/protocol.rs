//! kube-scheduler's extender wire format (`k8s.io/kube-scheduler/extender/v1`, untagged Go structs:
//! PascalCase keys, `null` for absent values), read without copying what is only echoed back.
//!
//! Requests are parsed into borrowed slices of the body: in `nodeCacheCapable=false` mode each
//! Node object is read for the few fields realload uses, and the surviving ones are written back
//! byte-for-byte, never re-encoded.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write as _;

use realload_common::objects::NeutralPod;
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
        borrow,
        default
    )]
    node_names: Option<Vec<Name<'a>>>,
}

/// A node name, borrowed from the body unless it had escapes (node names never do).
struct Name<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Name<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Cow<'de, str>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a node name")
            }
            fn visit_borrowed_str<E: serde::de::Error>(
                self,
                v: &'de str,
            ) -> Result<Self::Value, E> {
                Ok(Cow::Borrowed(v))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Cow::Owned(v.to_string()))
            }
        }
        d.deserialize_str(V).map(Name)
    }
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
    pub uid: Option<String>,
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
    /// Why the pod gets a neutral answer, if it does (the rule lives in
    /// [`NeutralPod::classify`]).
    pub fn neutral(&self) -> Option<NeutralPod> {
        let m = &self.metadata;
        let controllers = m
            .owner_references
            .iter()
            .flatten()
            .filter(|o| o.controller == Some(true))
            .map(|o| o.kind.as_str());
        let ignore = m
            .annotations
            .as_ref()
            .and_then(|a| a.get(realload_common::objects::IGNORE_ANNOTATION))
            .map(String::as_str);
        NeutralPod::classify(controllers, ignore)
    }

    /// The key the extender remembers the pod under between its filter and prioritize calls.
    pub fn key(&self) -> String {
        let m = &self.metadata;
        crate::state::pod_key(m.uid.as_deref(), m.namespace.as_deref(), m.name.as_deref())
    }

    pub fn display_name(&self) -> String {
        format!(
            "{}/{}",
            self.metadata.namespace.as_deref().unwrap_or("default"),
            self.metadata.name.as_deref().unwrap_or("")
        )
    }
}

/// What a non-cache request's Node carries for realload, borrowed from the body: its name, the
/// annotations the policy reads, and its CPU and memory allocatable.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeRead<'a> {
    pub name: Cow<'a, str>,
    pub annotations: smallvec::SmallVec<[(Cow<'a, str>, Cow<'a, str>); 4]>,
    pub cpu: Option<Cow<'a, str>>,
    pub memory: Option<Cow<'a, str>>,
}

impl NodeRead<'_> {
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_ref())
    }
}

/// The candidate nodes of a request, in the form they came in.
pub enum Candidates<'a> {
    /// `nodeCacheCapable=true`: names (borrowed from the body); readings come from the index.
    Names(Vec<Cow<'a, str>>),
    /// `nodeCacheCapable=false`: each Node's raw bytes (to echo) and what was read from it.
    Nodes(Vec<(&'a RawValue, NodeRead<'a>)>),
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
            Candidates::Nodes(n) => &n[i].1.name,
        }
    }
}

pub struct ExtenderArgs<'a> {
    pub pod: PodSummary,
    pub candidates: Candidates<'a>,
}

/// Parses a filter or prioritize body, keeping only the Node annotations in `keys` (all when empty).
pub fn parse_args<'b>(body: &'b [u8], keys: &[&str]) -> Result<ExtenderArgs<'b>, ProtocolError> {
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
        (None, Some(names)) => Candidates::Names(names.into_iter().map(|n| n.0).collect()),
        (Some(list), None) => {
            let items = list.items.unwrap_or_default();
            let mut nodes = Vec::with_capacity(items.len());
            for (index, raw) in items.into_iter().enumerate() {
                let summary = summarize_node(raw.get(), keys)
                    .map_err(|message| ProtocolError::BadNode { index, message })?;
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

/// Whether a string needs JSON escapes. A fold without early exit, so the compiler vectorizes it:
/// node names are checked on every prioritize answer.
fn needs_escape(s: &str) -> bool {
    s.bytes().fold(false, |any, b| {
        any | (b < 0x20) | (b == b'"') | (b == b'\\')
    })
}

fn push_json_string(out: &mut String, s: &str) {
    if !needs_escape(s) {
        // the usual case (node names, constant messages): nothing to escape
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else if let Ok(quoted) = serde_json::to_string(s) {
        out.push_str(&quoted);
    }
}

/// A cursor over one Node object's JSON, which the `RawValue` pass has already validated.
struct Scan<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Scan<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\n' | b'\r' | b'\t')) {
            self.at += 1;
        }
    }

    fn expect(&mut self, byte: u8) -> Result<(), String> {
        self.ws();
        if self.peek() == Some(byte) {
            self.at += 1;
            Ok(())
        } else {
            Err(format!("expected '{}' at byte {}", byte as char, self.at))
        }
    }

    /// Skips a string starting at the opening quote; returns its raw contents.
    fn string(&mut self) -> Result<&'a str, String> {
        self.expect(b'"')?;
        let start = self.at;
        let bytes = self.text.as_bytes();
        while let Some(&b) = bytes.get(self.at) {
            match b {
                b'\\' => self.at += 2,
                b'"' => {
                    self.at += 1;
                    return Ok(&self.text[start..self.at - 1]);
                }
                _ => self.at += 1,
            }
        }
        Err("unterminated string".into())
    }

    /// A string value (after optional whitespace); its raw contents.
    fn string_value(&mut self) -> Result<&'a str, String> {
        self.ws();
        if self.peek() != Some(b'"') {
            return Err(format!("expected a string at byte {}", self.at));
        }
        self.string()
    }

    /// Skips any value; returns its slice.
    fn value(&mut self) -> Result<&'a str, String> {
        self.ws();
        let start = self.at;
        match self.peek() {
            Some(b'"') => {
                self.string()?;
            }
            Some(b'{' | b'[') => {
                let mut depth = 0usize;
                let bytes = self.text.as_bytes();
                while let Some(&b) = bytes.get(self.at) {
                    match b {
                        b'"' => {
                            self.string()?;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth -= 1;
                            if depth == 0 {
                                self.at += 1;
                                return Ok(&self.text[start..self.at]);
                            }
                        }
                        _ => {}
                    }
                    self.at += 1;
                }
                return Err("unterminated object or array".into());
            }
            Some(_) => {
                while !matches!(
                    self.peek(),
                    None | Some(b',' | b'}' | b']' | b' ' | b'\n' | b'\r' | b'\t')
                ) {
                    self.at += 1;
                }
            }
            None => return Err("unexpected end".into()),
        }
        Ok(&self.text[start..self.at])
    }

    /// Walks an object's members, calling `member(key, scan)` with the cursor on each value; the
    /// callback consumes the value and returns false to stop early.
    fn object(
        &mut self,
        mut member: impl FnMut(&'a str, &mut Self) -> Result<bool, String>,
    ) -> Result<(), String> {
        self.expect(b'{')?;
        self.ws();
        if self.peek() == Some(b'}') {
            self.at += 1;
            return Ok(());
        }
        loop {
            self.ws();
            let key = self.string()?;
            self.expect(b':')?;
            if !member(key, self)? {
                return Ok(());
            }
            self.ws();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b'}') => {
                    self.at += 1;
                    return Ok(());
                }
                _ => return Err(format!("expected ',' or '}}' at byte {}", self.at)),
            }
        }
    }
}

/// A JSON string's raw contents, unescaped; borrowed when there is nothing to unescape.
fn unescape(raw: &str) -> Result<Cow<'_, str>, String> {
    if raw.contains('\\') {
        serde_json::from_str::<String>(&format!("\"{raw}\""))
            .map(Cow::Owned)
            .map_err(|e| e.to_string())
    } else {
        Ok(Cow::Borrowed(raw))
    }
}

/// Reads a Node's name, the annotations in `keys` and its CPU and memory allocatable without
/// parsing the rest (status.images, managedFields and the like are most of a Node's bytes): the
/// members are walked, only those values are read (borrowed, not copied), and the walk stops once
/// allocatable has been read. `keys` empty means every annotation.
pub fn summarize_node<'a>(raw: &'a str, keys: &[&str]) -> Result<NodeRead<'a>, String> {
    let mut node = NodeRead::default();
    let mut scan = Scan { text: raw, at: 0 };
    let string_at = |scan: &mut Scan<'a>, what: &str| -> Result<Cow<'a, str>, String> {
        let raw = scan.string_value().map_err(|e| format!("{what}: {e}"))?;
        unescape(raw).map_err(|e| format!("{what}: {e}"))
    };
    scan.object(|key, scan| {
        match key {
            "metadata" => scan.object(|key, scan| {
                match key {
                    "name" => node.name = string_at(scan, "metadata.name")?,
                    "annotations" => scan.object(|k, scan| {
                        if keys.is_empty() || keys.contains(&k) {
                            let value = string_at(scan, "metadata.annotations")?;
                            node.annotations.push((unescape(k)?, value));
                        } else {
                            scan.value()?;
                        }
                        Ok(true)
                    })?,
                    _ => {
                        scan.value()?;
                    }
                }
                Ok(true)
            })?,
            "status" => {
                let mut done = false;
                scan.object(|key, scan| {
                    if key != "allocatable" {
                        scan.value()?;
                        return Ok(true);
                    }
                    scan.object(|k, scan| {
                        match k {
                            "cpu" => node.cpu = Some(string_at(scan, "status.allocatable.cpu")?),
                            "memory" => {
                                node.memory = Some(string_at(scan, "status.allocatable.memory")?)
                            }
                            _ => {
                                scan.value()?;
                            }
                        }
                        Ok(true)
                    })?;
                    done = true;
                    Ok(false)
                })?;
                // once allocatable is read the rest of the Node does not matter
                return Ok(!done);
            }
            _ => {
                scan.value()?;
            }
        }
        Ok(true)
    })?;
    Ok(node)
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

/// The end of an `ExtenderFilterResult` after its `Nodes`/`NodeNames` part.
fn filter_tail(out: &mut String, failed: &[(&str, &str)]) {
    out.push_str(",\"FailedNodes\":");
    push_failed(out, failed);
    out.push_str(",\"FailedAndUnresolvableNodes\":{},\"Error\":\"\"}");
}

/// The prefix of a non-cache filter answer, before the echoed Node objects.
pub const NODES_PREFIX: &str = "{\"Nodes\":{\"metadata\":{},\"items\":[";

/// The rest of a non-cache filter answer, after the echoed Node objects.
pub fn nodes_suffix(failed: &[(&str, &str)]) -> String {
    let mut out = String::from("]},\"NodeNames\":null");
    filter_tail(&mut out, failed);
    out
}

/// The prefix of a cache-mode filter answer, before the passing names.
pub const NAMES_PREFIX: &str = "{\"Nodes\":null,\"NodeNames\":[";

/// The rest of a cache-mode filter answer, after the passing names.
pub fn names_suffix(failed: &[(&str, &str)]) -> String {
    let mut out = String::from("]");
    filter_tail(&mut out, failed);
    out
}

/// A string as a JSON string literal.
pub fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    push_json_string(&mut out, s);
    out
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
            filter_tail(&mut out, failed);
        }
        Candidates::Nodes(nodes) => {
            let bytes: usize = passed.iter().map(|i| nodes[*i].0.get().len() + 1).sum();
            out.reserve(bytes);
            out.push_str(NODES_PREFIX);
            for (i, idx) in passed.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(nodes[*idx].0.get());
            }
            out.push_str(&nodes_suffix(failed));
        }
    }
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
pub fn prioritize_response<'s>(hosts: impl ExactSizeIterator<Item = (&'s str, i64)>) -> String {
    // Scores are 0..=10 (kube-scheduler's MaxExtenderPriority): written from a table.
    const SCORES: [&str; 11] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10"];
    let mut out = String::with_capacity(2 + hosts.len() * 64);
    out.push('[');
    for (i, (host, score)) in hosts.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"Host\":");
        push_json_string(&mut out, host);
        out.push_str(",\"Score\":");
        match usize::try_from(score).ok().and_then(|s| SCORES.get(s)) {
            Some(text) => out.push_str(text),
            None => {
                let _ = write!(out, "{score}");
            }
        }
        out.push('}');
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

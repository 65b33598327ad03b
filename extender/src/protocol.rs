//! kube-scheduler's extender wire format (`k8s.io/kube-scheduler/extender/v1`, untagged Go structs:
//! PascalCase keys, `null` for absent values), read without copying what is only echoed back.
//!
//! Requests are parsed into borrowed slices of the body: in `nodeCacheCapable=false` mode each
//! Node object is read for the few fields realload uses, and the surviving ones are written back
//! byte-for-byte, never re-encoded.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write as _;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
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
#[derive(Default)]
struct Envelope<'a> {
    pod: Option<&'a RawValue>,
    nodes: Option<Vec<(&'a [u8], NodeRead<'a>)>>,
    node_names: Option<Vec<Cow<'a, str>>>,
}

fn json_error(field: &str, e: impl std::fmt::Display) -> ProtocolError {
    if field.is_empty() {
        ProtocolError::Json(e.to_string())
    } else {
        ProtocolError::Json(format!("{field}: {e}"))
    }
}

/// JSON whitespace from `at` on.
fn skip_ws(bytes: &[u8], mut at: usize) -> usize {
    while at < bytes.len() && matches!(bytes[at], b' ' | b'\n' | b'\r' | b'\t') {
        at += 1;
    }
    at
}

/// One JSON value of type `T` starting at `at`, read by serde (which validates it); returns it
/// and the offset just past it.
fn serde_value<'a, T: Deserialize<'a>>(
    body: &'a [u8],
    at: usize,
    field: &str,
) -> Result<(T, usize), ProtocolError> {
    let rest = body.get(at..).unwrap_or_default();
    let mut values = serde_json::Deserializer::from_slice(rest).into_iter::<T>();
    match values.next() {
        Some(Ok(value)) => Ok((value, at + values.byte_offset())),
        Some(Err(e)) => Err(json_error(field, e)),
        None => Err(json_error(field, "EOF while parsing a value")),
    }
}

/// Reads the request envelope. serde reads and validates every value except `NodeNames`, which
/// [`split_names`] reads itself: one SIMD search per name instead of serde's per-string
/// machinery and a second pass (at 5,000 names that was a third of a cache-mode request).
fn parse_envelope<'a>(body: &'a [u8], keys: &[&str]) -> Result<Envelope<'a>, ProtocolError> {
    let unexpected =
        |at: usize, what: &str| ProtocolError::Json(format!("expected {what} at byte {at}"));
    let mut envelope = Envelope::default();
    let mut seen: [bool; 3] = [false; 3];
    let mut at = skip_ws(body, 0);
    if body.get(at) != Some(&b'{') {
        // serde's wording for what it is instead
        let (_, _) = serde_value::<std::collections::HashMap<&str, &RawValue>>(body, at, "")?;
        return Err(unexpected(at, "an object"));
    }
    at = skip_ws(body, at + 1);
    if body.get(at) == Some(&b'}') {
        at += 1;
    } else {
        loop {
            if body.get(at) != Some(&b'"') {
                return Err(unexpected(at, "a key"));
            }
            let (key, next) = serde_value::<Cow<'_, str>>(body, at, "")?;
            at = skip_ws(body, next);
            if body.get(at) != Some(&b':') {
                return Err(unexpected(at, "':'"));
            }
            at = skip_ws(body, at + 1);
            let slot = match key.as_ref() {
                "Pod" | "pod" => Some(0),
                "Nodes" | "nodes" => Some(1),
                "NodeNames" | "nodeNames" | "nodenames" => Some(2),
                _ => None,
            };
            if let Some(k) = slot {
                if seen[k] {
                    return Err(ProtocolError::Json(format!("duplicate field `{key}`")));
                }
                seen[k] = true;
            }
            at = match slot {
                Some(0) => {
                    let (pod, next) = serde_value::<Option<&RawValue>>(body, at, "Pod")?;
                    envelope.pod = pod;
                    next
                }
                Some(1) if body.get(at) == Some(&b'{') => {
                    let (nodes, next) = read_node_list(body, at, keys)?;
                    envelope.nodes = nodes;
                    next
                }
                Some(1) => {
                    // `null`, or serde's error for whatever else it is
                    let (_, next) = serde_value::<
                        Option<std::collections::HashMap<&str, &RawValue>>,
                    >(body, at, "Nodes")?;
                    next
                }
                Some(_) if body.get(at) == Some(&b'[') => {
                    let (names, next) = split_names(body, at)?;
                    envelope.node_names = Some(names);
                    next
                }
                Some(_) => {
                    // `null`, or serde's error for whatever else it is
                    let (names, next) =
                        serde_value::<Option<Vec<Cow<'_, str>>>>(body, at, "NodeNames")?;
                    envelope.node_names = names;
                    next
                }
                None => serde_value::<serde::de::IgnoredAny>(body, at, key.as_ref())?.1,
            };
            at = skip_ws(body, at);
            match body.get(at) {
                Some(b',') => at = skip_ws(body, at + 1),
                Some(b'}') => {
                    at += 1;
                    break;
                }
                _ => return Err(unexpected(at, "',' or '}'")),
            }
        }
    }
    at = skip_ws(body, at);
    if at != body.len() {
        return Err(ProtocolError::Json(format!(
            "trailing characters at byte {at}"
        )));
    }
    Ok(envelope)
}

/// Where the JSON string whose contents start at `start` ends (its closing quote), if every byte
/// before it is printable ASCII other than `\\`; `None` for anything else (an escape, a control
/// character, a non-ASCII byte, no closing quote). Eight bytes at a time: every byte of the word
/// is tested for being a quote, a backslash, below 0x20 or above 0x7f at once.
fn plain_string_end(bytes: &[u8], start: usize) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero_byte = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let mut at = start;
    let rest = bytes.get(start..)?;
    let mut words = rest.chunks_exact(8);
    for chunk in &mut words {
        let word = u64::from_le_bytes(chunk.try_into().ok()?);
        let special = zero_byte(word ^ (ONES * u64::from(b'"')))
            | zero_byte(word ^ (ONES * u64::from(b'\\')))
            | (word.wrapping_sub(ONES * 0x20) & !word & HIGH)
            | (word & HIGH);
        if special != 0 {
            // The first special byte decides (borrows only ever flag bytes after it).
            let k = at + (special.trailing_zeros() / 8) as usize;
            return (bytes[k] == b'"').then_some(k);
        }
        at += 8;
    }
    for &b in words.remainder() {
        match b {
            b'"' => return Some(at),
            b'\\' | 0..=0x1f | 0x80..=0xff => return None,
            _ => at += 1,
        }
    }
    None
}

/// Reads the `NodeNames` array starting at `at` (its `[`); returns the names, borrowed from the
/// body unless a name has escapes (node names never do), and the offset past the `]`. Enforces
/// what serde would: strings only, no raw control characters, valid UTF-8; a name with escapes
/// is read by serde.
fn split_names(body: &[u8], at: usize) -> Result<(Vec<Cow<'_, str>>, usize), ProtocolError> {
    let not_strings = || ProtocolError::Json("NodeNames is not an array of strings".into());
    let not_utf8 = || ProtocolError::Json("NodeNames: invalid UTF-8".into());
    let open = at;
    // One UTF-8 check from the array on, not one per name (the array is most of what follows
    // it); plain names are slices of the checked text. Invalid bytes end the checked part, and
    // a name that reaches into them is refused.
    let text = match std::str::from_utf8(&body[open..]) {
        Ok(text) => text,
        Err(e) => std::str::from_utf8(&body[open..open + e.valid_up_to()]).unwrap_or_default(),
    };
    let mut at = skip_ws(body, at + 1);
    let mut names = Vec::with_capacity(body.len().saturating_sub(at) / 24 + 1);
    if body.get(at) == Some(&b']') {
        return Ok((names, at + 1));
    }
    loop {
        if body.get(at) != Some(&b'"') {
            return Err(not_strings());
        }
        let next = match plain_string_end(body, at + 1) {
            // A plain name: ASCII, no escapes, no control characters.
            Some(end) => {
                let name = text.get(at + 1 - open..end - open).ok_or_else(not_utf8)?;
                names.push(Cow::Borrowed(name));
                end + 1
            }
            // Anything else (escapes, non-ASCII, invalid) is serde's to read or reject.
            None => {
                let (name, next) = serde_value::<Cow<'_, str>>(body, at, "NodeNames")?;
                names.push(name);
                next
            }
        };
        at = skip_ws(body, next);
        match body.get(at) {
            Some(b',') => at = skip_ws(body, at + 1),
            Some(b']') => return Ok((names, at + 1)),
            _ => return Err(not_strings()),
        }
    }
}

/// Reads a NodeList (`{"metadata":{},"items":[...]}`) starting at its `{`: every item is read by
/// serde in one pass, straight into the few fields realload uses, and its exact bytes are kept
/// (a slice of the body) to be echoed. Returns `None` for `"items": null`.
#[allow(clippy::type_complexity)]
fn read_node_list<'a>(
    body: &'a [u8],
    at: usize,
    keys: &[&str],
) -> Result<(Option<Vec<(&'a [u8], NodeRead<'a>)>>, usize), ProtocolError> {
    let unexpected =
        |at: usize, what: &str| ProtocolError::Json(format!("Nodes: expected {what} at byte {at}"));
    let mut items = None;
    let mut at = skip_ws(body, at + 1);
    if body.get(at) == Some(&b'}') {
        return Ok((items, at + 1));
    }
    loop {
        if body.get(at) != Some(&b'"') {
            return Err(unexpected(at, "a key"));
        }
        let (key, next) = serde_value::<Cow<'_, str>>(body, at, "Nodes")?;
        at = skip_ws(body, next);
        if body.get(at) != Some(&b':') {
            return Err(unexpected(at, "':'"));
        }
        at = skip_ws(body, at + 1);
        at = if key == "items" && body.get(at) == Some(&b'[') {
            if items.is_some() {
                return Err(ProtocolError::Json("Nodes: duplicate field `items`".into()));
            }
            // A full Node is 2 KB or more: sized from the body, the list is never moved as it grows.
            let mut nodes = Vec::with_capacity(body.len().saturating_sub(at) / 2048 + 1);
            at = skip_ws(body, at + 1);
            if body.get(at) == Some(&b']') {
                at += 1;
            } else {
                loop {
                    let index = nodes.len();
                    let (node, next) = serde_value::<NodeWire<'_>>(body, at, "").map_err(|e| {
                        ProtocolError::BadNode {
                            index,
                            message: e.to_string(),
                        }
                    })?;
                    nodes.push((&body[at..next], node.into_read(keys)));
                    at = skip_ws(body, next);
                    match body.get(at) {
                        Some(b',') => at = skip_ws(body, at + 1),
                        Some(b']') => {
                            at += 1;
                            break;
                        }
                        _ => return Err(unexpected(at, "',' or ']'")),
                    }
                }
            }
            items = Some(nodes);
            at
        } else {
            serde_value::<serde::de::IgnoredAny>(body, at, "Nodes")?.1
        };
        at = skip_ws(body, at);
        match body.get(at) {
            Some(b',') => at = skip_ws(body, at + 1),
            Some(b'}') => return Ok((items, at + 1)),
            _ => return Err(unexpected(at, "',' or '}'")),
        }
    }
}

/// A Node as a non-cache request carries it, read for its name, annotations and CPU and memory
/// allocatable; serde skips the rest (status.images and the like are most of a Node's bytes).
#[derive(Deserialize)]
struct NodeWire<'a> {
    #[serde(borrow, default)]
    metadata: Option<NodeMetaWire<'a>>,
    #[serde(borrow, default)]
    status: Option<NodeStatusWire<'a>>,
}

#[derive(Deserialize)]
struct NodeMetaWire<'a> {
    #[serde(borrow, default)]
    name: Option<BorrowedStr<'a>>,
    #[serde(borrow, default)]
    annotations: Option<AnnotationsWire<'a>>,
}

/// A Node's annotations in the order they came, borrowed.
struct AnnotationsWire<'a>(Annotations<'a>);

type Annotations<'a> = Vec<(Cow<'a, str>, Cow<'a, str>)>;

impl<'de: 'a, 'a> Deserialize<'de> for AnnotationsWire<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Entries;
        impl<'de> serde::de::Visitor<'de> for Entries {
            type Value = Annotations<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a map of annotations")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                mut map: M,
            ) -> Result<Self::Value, M::Error> {
                let mut entries = Vec::with_capacity(8);
                while let Some((k, v)) = map.next_entry::<BorrowedStr<'de>, BorrowedStr<'de>>()? {
                    entries.push((k.0, v.0));
                }
                Ok(entries)
            }
        }
        let entries = d.deserialize_map(Entries)?;
        Ok(AnnotationsWire(entries))
    }
}

/// A string borrowed from the body unless it had escapes (serde's `Cow<str>` always copies).
struct BorrowedStr<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for BorrowedStr<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Text;
        impl<'de> serde::de::Visitor<'de> for Text {
            type Value = Cow<'de, str>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
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
        d.deserialize_str(Text).map(BorrowedStr)
    }
}

#[derive(Deserialize)]
struct NodeStatusWire<'a> {
    #[serde(borrow, default)]
    allocatable: Option<AllocatableWire<'a>>,
}

#[derive(Deserialize)]
struct AllocatableWire<'a> {
    #[serde(borrow, default)]
    cpu: Option<BorrowedStr<'a>>,
    #[serde(borrow, default)]
    memory: Option<BorrowedStr<'a>>,
}

impl<'a> NodeWire<'a> {
    /// Keeps the annotations in `keys` (all when empty).
    fn into_read(self, keys: &[&str]) -> NodeRead<'a> {
        let (name, annotations) = match self.metadata {
            Some(m) => (
                m.name.map(|n| n.0).unwrap_or_default(),
                m.annotations.map(|a| a.0).unwrap_or_default(),
            ),
            None => (Cow::Borrowed(""), Vec::new()),
        };
        let allocatable = self.status.and_then(|s| s.allocatable);
        let (cpu, memory) = match allocatable {
            Some(a) => (a.cpu.map(|c| c.0), a.memory.map(|m| m.0)),
            None => (None, None),
        };
        NodeRead {
            name,
            annotations: annotations
                .into_iter()
                .filter(|(k, _)| keys.is_empty() || keys.contains(&k.as_ref()))
                .collect(),
            cpu,
            memory,
        }
    }
}

/// The parts of a Pod the extender looks at.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct PodSummary {
    pub metadata: PodMeta,
    pub spec: PodSpecSummary,
}

/// What a pod's requests are made of (the rule itself is [`realload_common::objects::pod_requests`]).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct PodSpecSummary {
    pub containers: Vec<ContainerSummary>,
    pub init_containers: Vec<ContainerSummary>,
    pub overhead: Option<BTreeMap<String, Quantity>>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct ContainerSummary {
    pub resources: Option<ResourcesSummary>,
    pub restart_policy: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct ResourcesSummary {
    pub requests: Option<BTreeMap<String, Quantity>>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct PodMeta {
    pub name: Option<String>,
    pub namespace: Option<String>,
    pub uid: Option<String>,
    pub annotations: Option<BTreeMap<String, String>>,
    pub labels: PodLabels,
    pub owner_references: Option<Vec<OwnerRef>>,
}

/// The one label the extender reads; the others are skipped, not allocated per request.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct PodLabels {
    #[serde(rename = "pod-template-hash")]
    pub pod_template_hash: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct OwnerRef {
    pub kind: String,
    pub name: String,
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

    /// The pod's workload, by the rule the collector learns under
    /// ([`realload_common::workload::WorkloadKey::from_parts`]).
    pub fn workload(&self) -> Option<realload_common::workload::WorkloadKey> {
        let m = &self.metadata;
        realload_common::workload::WorkloadKey::from_meta(
            m.namespace.as_deref(),
            m.owner_references
                .iter()
                .flatten()
                .map(|o| (o.kind.as_str(), o.name.as_str(), o.controller)),
            m.labels.pod_template_hash.as_deref(),
        )
    }

    /// The pod's effective requests, by the scheduler's rule.
    pub fn requests(&self) -> realload_common::objects::Requests {
        use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, ResourceRequirements};
        let container = |c: &ContainerSummary| Container {
            resources: Some(ResourceRequirements {
                requests: c.resources.as_ref().and_then(|r| r.requests.clone()),
                ..ResourceRequirements::default()
            }),
            restart_policy: c.restart_policy.clone(),
            ..Container::default()
        };
        let spec = &self.spec;
        let pod = Pod {
            spec: Some(PodSpec {
                containers: spec.containers.iter().map(container).collect(),
                init_containers: Some(spec.init_containers.iter().map(container).collect()),
                overhead: spec.overhead.clone(),
                ..PodSpec::default()
            }),
            ..Pod::default()
        };
        realload_common::objects::pod_requests(&pod)
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
    /// The same, owning its strings.
    pub fn into_owned(self) -> NodeRead<'static> {
        let own = |c: Cow<'_, str>| Cow::Owned(c.into_owned());
        NodeRead {
            name: own(self.name),
            annotations: self
                .annotations
                .into_iter()
                .map(|(k, v)| (own(k), own(v)))
                .collect(),
            cpu: self.cpu.map(own),
            memory: self.memory.map(own),
        }
    }

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
    /// `nodeCacheCapable=false`: each Node's exact bytes in the request (to echo) and what was
    /// read from it.
    Nodes(Vec<(&'a [u8], NodeRead<'a>)>),
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

    /// Candidate `i`'s name, and whether it can be written without escapes (it was borrowed
    /// from the request unescaped, so it has nothing to escape).
    pub fn name_verbatim(&self, i: usize) -> (&str, bool) {
        let name = match self {
            Candidates::Names(n) => &n[i],
            Candidates::Nodes(n) => &n[i].1.name,
        };
        (name, matches!(name, Cow::Borrowed(_)))
    }
}

pub struct ExtenderArgs<'a> {
    pub pod: PodSummary,
    pub candidates: Candidates<'a>,
}

/// Parses a filter or prioritize body, keeping only the Node annotations in `keys` (all when empty).
pub fn parse_args<'b>(body: &'b [u8], keys: &[&str]) -> Result<ExtenderArgs<'b>, ProtocolError> {
    let wire = parse_envelope(body, keys)?;
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
        (Some(nodes), None) => Candidates::Nodes(nodes),
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

/// A node named twice in the request is one key: a JSON object with a repeated key is
/// ambiguous.
fn push_failed(out: &mut String, failed: &[(&str, &str)]) {
    out.push('{');
    let mut seen = std::collections::HashSet::with_capacity(failed.len());
    for (node, message) in failed {
        if !seen.insert(*node) {
            continue;
        }
        if seen.len() > 1 {
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
            let bytes: usize = passed.iter().map(|i| nodes[*i].0.len() + 1).sum();
            out.reserve(bytes);
            out.push_str(NODES_PREFIX);
            for (i, idx) in passed.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&String::from_utf8_lossy(nodes[*idx].0));
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

/// `HostPriorityList`: `[{"Host":..,"Score":..}]` with integer scores. Each host comes with
/// whether it is known to need no escapes (a name borrowed from the request had none).
pub fn prioritize_response<'s>(
    hosts: impl ExactSizeIterator<Item = (&'s str, bool, i64)> + Clone,
) -> String {
    // Scores are 0..=10 (kube-scheduler's MaxExtenderPriority): written from a table.
    const SCORES: [&str; 11] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10"];
    let size: usize = hosts.clone().map(|(h, _, _)| h.len() + 24).sum();
    let mut out = String::with_capacity(2 + size);
    out.push('[');
    for (i, (host, verbatim, score)) in hosts.enumerate() {
        if i > 0 {
            out.push(',');
        }
        if verbatim {
            out.push_str("{\"Host\":\"");
            out.push_str(host);
            out.push_str("\",\"Score\":");
        } else {
            out.push_str("{\"Host\":");
            push_json_string(&mut out, host);
            out.push_str(",\"Score\":");
        }
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

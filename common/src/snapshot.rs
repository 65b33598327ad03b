//! Snapshot mode's input: a Kubernetes `List` exactly as
//! `kubectl get nodes,pods,replicasets,deployments,statefulsets,configmaps,poddisruptionbudgets -A -o json|yaml`
//! prints it, loaded into typed objects (the README's "Snapshot mode").
//!
//! JSON items are kept as raw slices until their kind is known, so each is parsed once, straight
//! into its k8s-openapi type; an error names the item's index, kind, name and the failing field.

use std::path::Path;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use thiserror::Error;

#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub nodes: Vec<Node>,
    pub pods: Vec<Pod>,
    pub replica_sets: Vec<ReplicaSet>,
    pub deployments: Vec<Deployment>,
    pub stateful_sets: Vec<StatefulSet>,
    pub config_maps: Vec<ConfigMap>,
    pub pod_disruption_budgets: Vec<PodDisruptionBudget>,
    /// Items of kinds realload does not use, skipped with a warning.
    pub skipped: Vec<SkippedItem>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedItem {
    pub index: usize,
    pub kind: String,
}

#[derive(Debug, Error)]
pub enum SnapshotError {
    #[error("snapshot {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("snapshot: not valid {format}: {message}")]
    Syntax {
        format: &'static str,
        message: String,
    },
    #[error("snapshot: expected a List (kind: List, items: [...]) or a single object, got {0}")]
    Shape(String),
    #[error("snapshot item {index}: has no kind")]
    NoKind { index: usize },
    /// Nothing to place pods on or to evict from: an empty List, `items: null`, or a file that
    /// is not a cluster dump at all (a Pod manifest, say).
    #[error(
        "snapshot: holds no Node ({0}); a snapshot is a List of the cluster's Nodes and Pods, e.g. `kubectl get nodes,pods -A -o json`"
    )]
    NoNodes(String),
    #[error("snapshot item {index} ({kind} {name}): {path}: {message}")]
    Item {
        index: usize,
        kind: String,
        name: String,
        path: String,
        message: String,
    },
}

/// Reads a snapshot file (JSON or YAML, chosen by content).
pub fn load_snapshot_file(path: &Path) -> Result<Snapshot, SnapshotError> {
    let text = std::fs::read_to_string(path).map_err(|source| SnapshotError::Io {
        path: path.display().to_string(),
        source,
    })?;
    load_snapshot(&text)
}

/// Parses a snapshot from text: JSON when it starts with `{`, YAML otherwise.
pub fn load_snapshot(text: &str) -> Result<Snapshot, SnapshotError> {
    let text = crate::yaml::strip_bom(text);
    let mut snapshot = Snapshot::default();
    if text.trim_start().starts_with('{') {
        let top: JsonList<'_> = serde_json::from_str(text).map_err(|e| SnapshotError::Syntax {
            format: "JSON",
            message: e.to_string(),
        })?;
        match top.items {
            Some(items) => {
                for (index, raw) in items.into_iter().enumerate() {
                    snapshot.add(index, Item::Json(raw))?;
                }
            }
            // `"items": null` in a List: nothing in it
            None if top.kind.as_deref().is_some_and(|k| k.ends_with("List")) => {}
            None => {
                let raw: &RawValue =
                    serde_json::from_str(text).map_err(|e| SnapshotError::Syntax {
                        format: "JSON",
                        message: e.to_string(),
                    })?;
                snapshot.add(0, Item::Json(raw))?;
            }
        }
    } else {
        if let Some(problem) = crate::yaml::nesting_problem(text) {
            return Err(SnapshotError::Syntax {
                format: "YAML",
                message: problem,
            });
        }
        let mut index = 0;
        for document in serde_yaml::Deserializer::from_str(text) {
            let value =
                serde_json::Value::deserialize(document).map_err(|e| SnapshotError::Syntax {
                    format: "YAML",
                    message: e.to_string(),
                })?;
            let items = match value {
                serde_json::Value::Null => continue,
                serde_json::Value::Object(mut object) => match object.remove("items") {
                    Some(serde_json::Value::Array(items)) => items,
                    Some(serde_json::Value::Null) => Vec::new(),
                    Some(other) => {
                        return Err(SnapshotError::Shape(format!(
                            "items of type {}",
                            type_name(&other)
                        )));
                    }
                    None => vec![serde_json::Value::Object(object)],
                },
                other => return Err(SnapshotError::Shape(type_name(&other).to_string())),
            };
            for item in items {
                snapshot.add(index, Item::Value(item))?;
                index += 1;
            }
        }
    }
    if snapshot.nodes.is_empty() {
        let found = if snapshot.pods.is_empty() && snapshot.skipped.is_empty() {
            "it is empty".to_string()
        } else {
            format!(
                "it has {} Pod(s) and {} other item(s)",
                snapshot.pods.len(),
                snapshot.skipped.len()
            )
        };
        return Err(SnapshotError::NoNodes(found));
    }
    Ok(snapshot)
}

fn type_name(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

#[derive(Deserialize)]
struct JsonList<'a> {
    #[serde(default, borrow)]
    items: Option<Vec<&'a RawValue>>,
    #[serde(default)]
    kind: Option<String>,
}

/// What an error message needs to name an item; parsed leniently, apart from the object.
#[derive(Default)]
struct Header {
    kind: Option<String>,
    metadata: HeaderMeta,
}

#[derive(Deserialize, Default)]
struct KindOnly {
    kind: Option<String>,
}

#[derive(Deserialize, Default)]
struct MetadataOnly {
    #[serde(default)]
    metadata: HeaderMeta,
}

#[derive(Deserialize, Default)]
struct HeaderMeta {
    name: Option<String>,
    namespace: Option<String>,
}

enum Item<'a> {
    Json(&'a RawValue),
    Value(serde_json::Value),
}

impl Item<'_> {
    fn header(&self) -> Header {
        let (kind, meta) = match self {
            Item::Json(raw) => (
                serde_json::from_str::<KindOnly>(raw.get()).unwrap_or_default(),
                serde_json::from_str::<MetadataOnly>(raw.get()).unwrap_or_default(),
            ),
            Item::Value(v) => (
                KindOnly::deserialize(v).unwrap_or_default(),
                MetadataOnly::deserialize(v).unwrap_or_default(),
            ),
        };
        Header {
            kind: kind.kind,
            metadata: meta.metadata,
        }
    }

    fn decode<T: DeserializeOwned>(self) -> Result<T, (String, String)> {
        let split = |e: serde_path_to_error::Error<serde_json::Error>| {
            let path = e.path().to_string();
            (path, e.into_inner().to_string())
        };
        match self {
            Item::Json(raw) => {
                let mut de = serde_json::Deserializer::from_str(raw.get());
                serde_path_to_error::deserialize(&mut de).map_err(split)
            }
            Item::Value(v) => serde_path_to_error::deserialize(v).map_err(split),
        }
    }
}

impl Snapshot {
    fn add(&mut self, index: usize, item: Item<'_>) -> Result<(), SnapshotError> {
        let header = item.header();
        let Some(kind) = header.kind else {
            return Err(SnapshotError::NoKind { index });
        };
        let name = match (&header.metadata.namespace, &header.metadata.name) {
            (Some(ns), Some(n)) => format!("{ns}/{n}"),
            (None, Some(n)) => n.clone(),
            _ => "(unnamed)".to_string(),
        };
        let fail = |(path, message): (String, String)| SnapshotError::Item {
            index,
            kind: kind.clone(),
            name: name.clone(),
            path,
            message,
        };
        match kind.as_str() {
            "Node" => self.nodes.push(item.decode().map_err(fail)?),
            "Pod" => self.pods.push(item.decode().map_err(fail)?),
            "ReplicaSet" => self.replica_sets.push(item.decode().map_err(fail)?),
            "Deployment" => self.deployments.push(item.decode().map_err(fail)?),
            "StatefulSet" => self.stateful_sets.push(item.decode().map_err(fail)?),
            "ConfigMap" => self.config_maps.push(item.decode().map_err(fail)?),
            "PodDisruptionBudget" => self
                .pod_disruption_budgets
                .push(item.decode().map_err(fail)?),
            _ => {
                tracing::warn!(index, kind = %kind, name = %name, "snapshot: skipping an item of a kind realload does not use");
                self.skipped.push(SkippedItem { index, kind });
            }
        }
        Ok(())
    }

    /// The ConfigMap `namespace/name`, if the snapshot has it.
    pub fn config_map(&self, namespace: &str, name: &str) -> Option<&ConfigMap> {
        self.config_maps.iter().find(|cm| {
            cm.metadata.namespace.as_deref() == Some(namespace)
                && cm.metadata.name.as_deref() == Some(name)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST_JSON: &str = r#"{
      "apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""},
      "items": [
        {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1", "annotations": {"realload.io/cpu-avg-5m": "0.4,2026-11-22T01:00:00Z"}},
         "status": {"allocatable": {"cpu": "8", "memory": "32Gi"}}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p1", "namespace": "default"},
         "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "nginx", "resources": {"requests": {"cpu": "2"}}}]}},
        {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "rs", "namespace": "default"}, "spec": {"selector": {}}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "namespace": "default"}, "spec": {"selector": {}, "template": {}}},
        {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "s", "namespace": "default"}, "spec": {"selector": {}, "template": {}}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "realload-whitelist", "namespace": "realload-system"}, "data": {"apps": "x"}},
        {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "pdb", "namespace": "default"}, "spec": {}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "svc", "namespace": "default"}}
      ]}"#;

    #[test]
    fn a_snapshot_without_nodes_says_so() {
        for (text, found) in [
            (r#"{"kind": "List", "items": []}"#, "it is empty"),
            (r#"{"kind": "List", "items": null}"#, "it is empty"),
            ("kind: List\nitems: []\n", "it is empty"),
            (
                "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c}]}\n",
                "1 Pod(s)",
            ),
        ] {
            let e = load_snapshot(text).unwrap_err().to_string();
            assert!(
                e.contains("holds no Node") && e.contains(found),
                "{text}: {e}"
            );
        }
    }

    #[test]
    fn loads_every_kind_from_json() {
        let s = load_snapshot(LIST_JSON).unwrap();
        assert_eq!(s.nodes.len(), 1);
        assert_eq!(s.pods.len(), 1);
        assert_eq!(s.replica_sets.len(), 1);
        assert_eq!(s.deployments.len(), 1);
        assert_eq!(s.stateful_sets.len(), 1);
        assert_eq!(s.config_maps.len(), 1);
        assert_eq!(s.pod_disruption_budgets.len(), 1);
        assert_eq!(
            s.skipped,
            vec![SkippedItem {
                index: 7,
                kind: "Service".into()
            }]
        );
        assert_eq!(
            s.pods[0].spec.as_ref().unwrap().node_name.as_deref(),
            Some("n1")
        );
        assert!(
            s.config_map("realload-system", "realload-whitelist")
                .is_some()
        );
        assert!(s.config_map("default", "realload-whitelist").is_none());
    }

    #[test]
    fn yaml_gives_the_same_objects() {
        let value: serde_json::Value = serde_json::from_str(LIST_JSON).unwrap();
        let yaml = serde_yaml::to_string(&value).unwrap();
        let from_yaml = load_snapshot(&yaml).unwrap();
        let from_json = load_snapshot(LIST_JSON).unwrap();
        assert_eq!(from_yaml.nodes, from_json.nodes);
        assert_eq!(from_yaml.pods, from_json.pods);
        assert_eq!(
            from_yaml.pod_disruption_budgets,
            from_json.pod_disruption_budgets
        );
        assert_eq!(from_yaml.skipped, from_json.skipped);
    }

    #[test]
    fn single_objects_and_multi_document_yaml() {
        let s = load_snapshot(r#"{"kind":"Node","metadata":{"name":"solo"}}"#).unwrap();
        assert_eq!(s.nodes[0].metadata.name.as_deref(), Some("solo"));
        let s = load_snapshot("kind: Node\nmetadata: {name: a}\n---\nkind: List\nitems:\n- kind: Node\n  metadata: {name: b}\n").unwrap();
        assert_eq!(s.nodes.len(), 2);
    }

    #[test]
    fn errors_name_item_kind_and_field() {
        let bad = r#"{"kind":"List","items":[
            {"kind":"Node","metadata":{"name":"ok"}},
            {"kind":"Pod","metadata":{"name":"p","namespace":"ns"},"spec":{"containers":[{"name":"c","ports":[{"containerPort":"http"}]}]}}]}"#;
        let e = load_snapshot(bad).unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with(
                "snapshot item 1 (Pod ns/p): spec.containers[0].ports[0].containerPort"
            ),
            "{text}"
        );
        let e =
            load_snapshot(r#"{"kind":"List","items":[{"metadata":{"name":"x"}}]}"#).unwrap_err();
        assert!(matches!(e, SnapshotError::NoKind { index: 0 }), "{e}");
        let e = load_snapshot("{ not json").unwrap_err();
        assert!(
            matches!(e, SnapshotError::Syntax { format: "JSON", .. }),
            "{e}"
        );
        let e = load_snapshot("items: 3").unwrap_err();
        assert!(matches!(e, SnapshotError::Shape(_)), "{e}");
        let e = load_snapshot("kind: List\nitems:\n- kind: Node\n  metadata: {name: [1]}\n")
            .unwrap_err();
        assert!(e.to_string().contains("metadata.name"), "{e}");
        let e = load_snapshot_file(Path::new("/nonexistent/snap.json")).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/snap.json"), "{e}");
    }
}

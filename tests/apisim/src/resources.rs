//! The resources the simulator serves and their discovery documents.

use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Resource {
    /// API group, `""` for core.
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    /// Has a `/status` subresource: the main resource ignores status writes and vice versa.
    pub has_status: bool,
    /// `metadata.generation` moves when `spec` changes.
    pub tracks_generation: bool,
    pub short_names: &'static [&'static str],
}

impl Resource {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// The group-qualified resource name used in Status details and messages (`pods`, `deployments.apps`).
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    pub fn subresources(&self) -> &'static [&'static str] {
        match (self.group, self.plural) {
            ("", "pods") => &["status", "eviction", "binding"],
            _ if self.has_status => &["status"],
            _ => &[],
        }
    }
}

// One row of the table below; positional arguments keep the table readable.
#[allow(clippy::too_many_arguments)]
const fn r(
    group: &'static str,
    version: &'static str,
    plural: &'static str,
    kind: &'static str,
    namespaced: bool,
    has_status: bool,
    tracks_generation: bool,
    short_names: &'static [&'static str],
) -> Resource {
    Resource {
        group,
        version,
        plural,
        kind,
        namespaced,
        has_status,
        tracks_generation,
        short_names,
    }
}

pub const NODES: Resource = r("", "v1", "nodes", "Node", false, true, false, &["no"]);
pub const PODS: Resource = r("", "v1", "pods", "Pod", true, true, false, &["po"]);
pub const CONFIGMAPS: Resource = r(
    "",
    "v1",
    "configmaps",
    "ConfigMap",
    true,
    false,
    false,
    &["cm"],
);
pub const EVENTS: Resource = r("", "v1", "events", "Event", true, false, false, &["ev"]);
pub const REPLICASETS: Resource = r(
    "apps",
    "v1",
    "replicasets",
    "ReplicaSet",
    true,
    true,
    true,
    &["rs"],
);
pub const DEPLOYMENTS: Resource = r(
    "apps",
    "v1",
    "deployments",
    "Deployment",
    true,
    true,
    true,
    &["deploy"],
);
pub const STATEFULSETS: Resource = r(
    "apps",
    "v1",
    "statefulsets",
    "StatefulSet",
    true,
    true,
    true,
    &["sts"],
);
pub const PDBS: Resource = r(
    "policy",
    "v1",
    "poddisruptionbudgets",
    "PodDisruptionBudget",
    true,
    true,
    true,
    &["pdb"],
);
pub const LEASES: Resource = r(
    "coordination.k8s.io",
    "v1",
    "leases",
    "Lease",
    true,
    false,
    false,
    &[],
);
pub const EVENTS_V1: Resource = r(
    "events.k8s.io",
    "v1",
    "events",
    "Event",
    true,
    false,
    false,
    &["ev"],
);

pub const ALL: [Resource; 10] = [
    NODES,
    PODS,
    CONFIGMAPS,
    EVENTS,
    REPLICASETS,
    DEPLOYMENTS,
    STATEFULSETS,
    PDBS,
    LEASES,
    EVENTS_V1,
];

pub fn find(group: &str, version: &str, plural: &str) -> Option<Resource> {
    ALL.iter()
        .copied()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The resource that stores objects of `kind` with `apiVersion` (for seeding from a List).
pub fn for_kind(api_version: &str, kind: &str) -> Option<Resource> {
    ALL.iter()
        .copied()
        .find(|r| r.kind == kind && (api_version.is_empty() || r.api_version() == api_version))
}

fn verbs(sub: Option<&str>) -> Value {
    match sub {
        None => json!([
            "create", "delete", "get", "list", "patch", "update", "watch"
        ]),
        Some("status") => json!(["get", "patch", "update"]),
        Some(_) => json!(["create"]),
    }
}

/// `GET /api/v1` or `GET /apis/<group>/<version>`.
pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    let members: Vec<Resource> = ALL
        .iter()
        .copied()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    if members.is_empty() {
        return None;
    }
    let mut resources = Vec::new();
    for r in &members {
        resources.push(json!({
            "name": r.plural, "singularName": r.kind.to_lowercase(), "namespaced": r.namespaced,
            "kind": r.kind, "verbs": verbs(None), "shortNames": r.short_names,
        }));
        for sub in r.subresources() {
            let kind = match *sub {
                "eviction" => "Eviction",
                "binding" => "Binding",
                _ => r.kind,
            };
            let group_fields = match *sub {
                "eviction" => json!({"group": "policy", "version": "v1"}),
                _ => json!({}),
            };
            let mut entry = json!({
                "name": format!("{}/{}", r.plural, sub), "singularName": "", "namespaced": r.namespaced,
                "kind": kind, "verbs": verbs(Some(sub)),
            });
            if let (Some(e), Some(g)) = (entry.as_object_mut(), group_fields.as_object()) {
                e.extend(g.clone());
            }
            resources.push(entry);
        }
    }
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}),
    )
}

/// `GET /api`.
pub fn core_versions() -> Value {
    json!({"kind": "APIVersions", "versions": ["v1"],
           "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]})
}

/// `GET /apis`.
pub fn group_list() -> Value {
    let mut groups: Vec<(&str, &str)> = ALL
        .iter()
        .filter(|r| !r.group.is_empty())
        .map(|r| (r.group, r.version))
        .collect();
    groups.sort();
    groups.dedup();
    let groups: Vec<Value> = groups
        .into_iter()
        .map(|(g, v)| {
            let gv = json!({"groupVersion": format!("{g}/{v}"), "version": v});
            json!({"name": g, "versions": [gv.clone()], "preferredVersion": gv})
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `GET /apis/<group>`.
pub fn group(name: &str) -> Option<Value> {
    let r = ALL.iter().find(|r| r.group == name && !name.is_empty())?;
    let gv = json!({"groupVersion": r.api_version(), "version": r.version});
    Some(
        json!({"kind": "APIGroup", "apiVersion": "v1", "name": name, "versions": [gv.clone()], "preferredVersion": gv}),
    )
}

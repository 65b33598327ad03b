//! Learned per-workload usage: what a workload's pods really use, as a share of what they
//! request, published by the collector in a ConfigMap and read by the extender.
//!
//! A pod's workload is its controller, with a Deployment's ReplicaSets folded into the
//! Deployment (the ReplicaSet's name is the Deployment's plus `-<pod-template-hash>`), so a
//! rollout keeps what was learned. The table is JSON under one ConfigMap key:
//!
//! ```json
//! {"updated": "2026-12-01T12:00:00Z",
//!  "workloads": {"shop/Deployment/api": {"cpu": 0.35, "memory": 0.61, "pods": 3}}}
//! ```

use std::collections::BTreeMap;
use std::fmt;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::policy::WorkloadUsage;

/// The label the Deployment controller puts on its ReplicaSets' pods (and in their names).
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";
/// The ConfigMap key holding the table.
pub const USAGE_KEY: &str = "usage.json";
/// Learned shares are clamped into this range: a workload idle during the window is still
/// counted at 2% of its requests, and a runaway one at most at 10× them.
pub const MIN_RATIO: f64 = 0.02;
pub const MAX_RATIO: f64 = 10.0;
/// How far ahead of the reader's clock a table's `updated` may be (clock skew between nodes).
pub const MAX_FUTURE: SignedDuration = SignedDuration::from_mins(5);
/// The largest table the extender reads (a ConfigMap holds at most 1 MiB).
pub const MAX_TABLE_BYTES: usize = 1 << 20;

/// A workload: namespace, controller kind and name (`shop/Deployment/api`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkloadKey {
    pub namespace: String,
    pub kind: String,
    pub name: String,
}

impl fmt::Display for WorkloadKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.namespace, self.kind, self.name)
    }
}

impl WorkloadKey {
    /// The workload of a pod from its parts: namespace, controller owner (kind, name) and the
    /// `pod-template-hash` label. `None` for a pod without a controller (nothing to learn from
    /// its siblings).
    pub fn from_parts(
        namespace: Option<&str>,
        controller: Option<(&str, &str)>,
        pod_template_hash: Option<&str>,
    ) -> Option<WorkloadKey> {
        let (kind, name) = controller?;
        if kind.is_empty() || name.is_empty() {
            return None;
        }
        let namespace = namespace.unwrap_or("default").to_string();
        if kind == "ReplicaSet"
            && let Some(hash) = pod_template_hash.filter(|h| !h.is_empty())
            && let Some(deployment) = name
                .strip_suffix(hash)
                .and_then(|n| n.strip_suffix('-'))
                .filter(|n| !n.is_empty())
        {
            return Some(WorkloadKey {
                namespace,
                kind: "Deployment".into(),
                name: deployment.into(),
            });
        }
        Some(WorkloadKey {
            namespace,
            kind: kind.into(),
            name: name.into(),
        })
    }

    pub fn of(pod: &Pod) -> Option<WorkloadKey> {
        let m = &pod.metadata;
        WorkloadKey::from_meta(
            m.namespace.as_deref(),
            m.owner_references
                .iter()
                .flatten()
                .map(|o| (o.kind.as_str(), o.name.as_str(), o.controller)),
            m.labels
                .as_ref()
                .and_then(|l| l.get(POD_TEMPLATE_HASH))
                .map(String::as_str),
        )
    }

    /// [`WorkloadKey::from_parts`] from a pod's metadata as any reader holds it: its owner
    /// references as (kind, name, controller) and its [`POD_TEMPLATE_HASH`] label.
    pub fn from_meta<'a>(
        namespace: Option<&str>,
        owners: impl IntoIterator<Item = (&'a str, &'a str, Option<bool>)>,
        pod_template_hash: Option<&str>,
    ) -> Option<WorkloadKey> {
        let controller = owners
            .into_iter()
            .find(|(_, _, controller)| *controller == Some(true))
            .map(|(kind, name, _)| (kind, name));
        WorkloadKey::from_parts(namespace, controller, pod_template_hash)
    }

    fn parse(text: &str) -> Option<WorkloadKey> {
        let mut parts = text.splitn(3, '/');
        let (namespace, kind, name) = (parts.next()?, parts.next()?, parts.next()?);
        if namespace.is_empty() || kind.is_empty() || name.is_empty() || name.contains('/') {
            return None;
        }
        Some(WorkloadKey {
            namespace: namespace.into(),
            kind: kind.into(),
            name: name.into(),
        })
    }
}

/// What a workload's pods use as a share of their requests (1.0 = exactly what they ask).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct UsageRatios {
    /// CPU used / CPU requested; `None` when nothing was learned (no CPU request, no samples).
    pub cpu: Option<f64>,
    pub memory: Option<f64>,
}

/// One workload's entry as published.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageEntry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<f64>,
    /// Pods the shares were measured on.
    pub pods: u32,
}

/// The published document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TableDocument {
    updated: Timestamp,
    workloads: BTreeMap<String, UsageEntry>,
}

/// The learned table, parsed once when the ConfigMap changes.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct UsageTable {
    /// When the collector measured it; `None` for the empty table (nothing published).
    pub updated: Option<Timestamp>,
    pub workloads: std::collections::HashMap<WorkloadKey, UsageEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum UsageTableError {
    #[error("workload usage table: key {USAGE_KEY:?} missing from the ConfigMap")]
    Missing,
    #[error("workload usage table: {0} bytes; at most {MAX_TABLE_BYTES} are read")]
    TooLarge(usize),
    #[error("workload usage table: {path}: {message}")]
    Syntax { path: String, message: String },
    #[error("workload usage table: workloads.{key:?}: {message}")]
    Entry { key: String, message: String },
}

/// How the estimate counts a pod: learned shares (where known) or the policy's factors.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExpectedUsage {
    /// Share of the CPU request the estimate counts.
    pub cpu_share: f64,
    pub memory_share: f64,
    /// Whether each share was learned (true) or is the hot-spot factor (false).
    pub cpu_learned: bool,
    pub memory_learned: bool,
}

impl UsageTable {
    /// The table a ConfigMap holds under [`USAGE_KEY`].
    pub fn from_config_map(config_map: &ConfigMap) -> Result<UsageTable, UsageTableError> {
        let text = config_map
            .data
            .as_ref()
            .and_then(|d| d.get(USAGE_KEY))
            .ok_or(UsageTableError::Missing)?;
        UsageTable::parse(text)
    }

    /// Parses the ConfigMap's `usage.json`. Any broken entry rejects the whole table, so a hand
    /// edit gone wrong is reported rather than half applied.
    pub fn parse(text: &str) -> Result<UsageTable, UsageTableError> {
        if text.len() > MAX_TABLE_BYTES {
            return Err(UsageTableError::TooLarge(text.len()));
        }
        let mut de = serde_json::Deserializer::from_str(text);
        let doc: TableDocument = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            UsageTableError::Syntax {
                path: if path == "." { "(root)".into() } else { path },
                message: e.into_inner().to_string(),
            }
        })?;
        let mut workloads = std::collections::HashMap::with_capacity(doc.workloads.len());
        for (key, entry) in doc.workloads {
            let bad = |message: String| UsageTableError::Entry {
                key: key.clone(),
                message,
            };
            let Some(workload) = WorkloadKey::parse(&key) else {
                return Err(bad("not namespace/Kind/name".into()));
            };
            for (field, value) in [("cpu", entry.cpu), ("memory", entry.memory)] {
                if let Some(v) = value
                    && !(v.is_finite() && v >= 0.0)
                {
                    return Err(bad(format!("{field} must be a number >= 0, got {v}")));
                }
            }
            if entry.cpu.is_none() && entry.memory.is_none() {
                return Err(bad("has neither cpu nor memory".into()));
            }
            workloads.insert(workload, entry);
        }
        Ok(UsageTable {
            updated: Some(doc.updated),
            workloads,
        })
    }

    /// The table as the ConfigMap's `usage.json` holds it (sorted, so unchanged tables compare
    /// equal).
    pub fn to_json(&self) -> String {
        let doc = TableDocument {
            updated: self.updated.unwrap_or(Timestamp::UNIX_EPOCH),
            workloads: self
                .workloads
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
        };
        serde_json::to_string(&doc).unwrap_or_default()
    }

    /// Whether the table may be used at `now`: published, not older than `max_age`, and not
    /// dated more than [`MAX_FUTURE`] ahead (a hand-edited date far ahead would never age out).
    pub fn is_current(&self, now: Timestamp, max_age: SignedDuration) -> bool {
        self.updated.is_some_and(|u| {
            let age = now.duration_since(u);
            age <= max_age && age >= -MAX_FUTURE
        })
    }

    /// Whether the policy uses learning and this table is current at `now`: the one rule the
    /// extender, the descheduler and the simulator ask before looking a workload up.
    pub fn in_force(&self, usage: &WorkloadUsage, now: Timestamp) -> bool {
        usage.enabled && self.is_current(now, usage.max_age)
    }

    /// The learned shares of `workload`, clamped into [`MIN_RATIO`], [`MAX_RATIO`]; `None` when
    /// it was not learned.
    pub fn ratios(&self, workload: &WorkloadKey) -> Option<UsageRatios> {
        let e = self.workloads.get(workload)?;
        let clamp = |v: Option<f64>| v.map(|v| v.clamp(MIN_RATIO, MAX_RATIO));
        Some(UsageRatios {
            cpu: clamp(e.cpu),
            memory: clamp(e.memory),
        })
    }
}

impl ExpectedUsage {
    /// The shares of a pod's requests its estimate counts: learned where the table knows them,
    /// the hot-spot factors elsewhere.
    pub fn new(ratios: Option<UsageRatios>, cpu_factor: f64, memory_factor: f64) -> ExpectedUsage {
        let cpu = ratios.and_then(|r| r.cpu);
        let memory = ratios.and_then(|r| r.memory);
        ExpectedUsage {
            cpu_share: cpu.unwrap_or(cpu_factor),
            memory_share: memory.unwrap_or(memory_factor),
            cpu_learned: cpu.is_some(),
            memory_learned: memory.is_some(),
        }
    }
}

/// One pod as the collector measures it.
#[derive(Debug, Clone, PartialEq)]
pub struct PodSample {
    /// Shared: a collector holds one key per workload, not one per pod.
    pub workload: std::sync::Arc<WorkloadKey>,
    pub cpu_request_millis: u64,
    pub memory_request_bytes: u64,
    /// Mean CPU used (cores) over the query's window, if a trustworthy sample exists.
    pub cpu_cores: Option<f64>,
    pub memory_bytes: Option<f64>,
}

/// Learns the table: per workload, the sum of its pods' usage over the sum of their requests
/// (pods without a sample or without a request for that resource do not count). A workload
/// with nothing measured is left out: the extender falls back to the factors for it.
pub fn learn(samples: &[PodSample], now: Timestamp) -> UsageTable {
    #[derive(Default)]
    struct Sums {
        cpu_used: f64,
        cpu_requested: f64,
        memory_used: f64,
        memory_requested: f64,
        pods: u32,
    }
    let mut sums: BTreeMap<&WorkloadKey, Sums> = BTreeMap::new();
    let trusted = |v: Option<f64>| v.filter(|v| v.is_finite() && *v >= 0.0);
    for s in samples {
        let cpu = trusted(s.cpu_cores).filter(|_| s.cpu_request_millis > 0);
        let memory = trusted(s.memory_bytes).filter(|_| s.memory_request_bytes > 0);
        if cpu.is_none() && memory.is_none() {
            continue;
        }
        let e = sums.entry(s.workload.as_ref()).or_default();
        e.pods += 1;
        if let Some(c) = cpu {
            e.cpu_used += c * 1000.0;
            e.cpu_requested += s.cpu_request_millis as f64;
        }
        if let Some(m) = memory {
            e.memory_used += m;
            e.memory_requested += s.memory_request_bytes as f64;
        }
    }
    // Three decimals are plenty for a share, and keep the ConfigMap small and stable.
    let ratio = |used: f64, requested: f64| {
        (requested > 0.0).then(|| ((used / requested) * 1000.0).round() / 1000.0)
    };
    UsageTable {
        updated: Some(now),
        workloads: sums
            .into_iter()
            .map(|(k, s)| {
                (
                    k.clone(),
                    UsageEntry {
                        cpu: ratio(s.cpu_used, s.cpu_requested),
                        memory: ratio(s.memory_used, s.memory_requested),
                        pods: s.pods,
                    },
                )
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests;

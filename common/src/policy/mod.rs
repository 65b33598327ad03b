//! The policy file that drives all three parts (docs/configuration.md, "Policy file").
//!
//! Two layers: [`PolicyFile`] is the YAML as written (every field optional, unknown fields are
//! errors), and [`Policy`] is the validated, typed form the code uses. [`Policy::from_yaml`] goes
//! from one to the other and reports every broken rule with its field path.

use std::fmt;

use jiff::SignedDuration;
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::quantity;
use crate::reading::AnnotationFormat;
use crate::whitelist::NameList;

pub const API_VERSION: &str = "realload.io/v1alpha1";
pub const KIND: &str = "Policy";
/// Annotation prefix of the keys the collector owns.
pub const ANNOTATION_PREFIX: &str = "realload.io/";

/// The metric the descheduler requires on a destination node.
pub const DESTINATION_METRIC: &str = "cpu-avg-5m";

/// The default policy as a file; `deploy/` ships the same text for the policy ConfigMap.
pub const DEFAULT_POLICY_YAML: &str = include_str!("../../../deploy/base/policy.yaml");

// ---------------------------------------------------------------------------------------------
// The validated policy
// ---------------------------------------------------------------------------------------------

/// Which pod requests the hot-spot estimate adds to a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Resource {
    Cpu,
    Memory,
}

/// How a Prometheus series' identity label is matched to a Node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum MatchBy {
    Name,
    #[serde(rename = "internalIP")]
    InternalIp,
    Hostname,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NodeIdentity {
    pub label: String,
    pub match_by: Vec<MatchBy>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MetricSpec {
    pub name: String,
    pub resource: Resource,
    pub query: String,
    pub annotation: String,
    pub format: AnnotationFormat,
    pub period: SignedDuration,
    pub max_age: SignedDuration,
    pub floor: f64,
    pub filter_above: Option<f64>,
    pub weight: f64,
}

impl MetricSpec {
    pub fn is_scored(&self) -> bool {
        self.weight > 0.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Guards {
    pub unknown_load: f64,
    pub max_unknown_fraction: f64,
    /// At most this many pods land on a node while it stays unknown (then it is filtered).
    pub unknown_pod_cap: u32,
    /// When every node kube-scheduler offered would be filtered for load, none is: the pod lands
    /// on the least loaded rather than waiting while nodes have room.
    pub never_strand: bool,
    /// Whether an unknown node is held back while a node with valid readings passes the filter.
    pub unknown_last_resort: bool,
}

/// How estimated loads become scores.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scoring {
    /// Estimated loads at or below this score as idle (all equal): there, kube-scheduler's
    /// request-based plugins decide. Above it the score falls linearly to 0 at full load.
    pub idle_below: f64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hotspot {
    pub cpu_factor: f64,
    pub memory_factor: f64,
    /// Whether prioritize reserves a pod on the node it ranked best until the pod's binding is
    /// seen, so the next pods of a burst see it in that node's estimate.
    pub reserve_ranked: bool,
    /// Whether the pod being placed counts in every candidate's estimate (its requests × the
    /// factors): nodes are filtered and scored on the load they would carry with it.
    pub include_pod: bool,
    /// How long after its binding a pod shows in full in the node's readings (the span the
    /// scored queries average over). A pod bound less than this before the newest sample shows
    /// in it only in part; the estimate keeps counting the part not shown yet. Zero: a pod
    /// counts until the first sample after its binding, then not at all.
    pub reading_window: SignedDuration,
}

impl Hotspot {
    pub fn factor(&self, resource: Resource) -> f64 {
        match resource {
            Resource::Cpu => self.cpu_factor,
            Resource::Memory => self.memory_factor,
        }
    }
}

/// Per-workload usage learning (`workloadUsage`): the collector publishes each workload's real
/// usage as a share of its requests; the extender's estimate counts a pod at that share instead
/// of the hot-spot factors.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkloadUsage {
    pub enabled: bool,
    /// Name of the ConfigMap the table lives in (in realload's namespace).
    pub config_map: String,
    /// PromQL: one series per pod, labels `namespace` and `pod`, value in cores.
    pub cpu_query: String,
    /// PromQL: one series per pod, labels `namespace` and `pod`, value in bytes.
    pub memory_query: Option<String>,
    /// How often the collector publishes the table.
    pub period: SignedDuration,
    /// A table older than this is ignored (the factors apply again).
    pub max_age: SignedDuration,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Collector {
    pub deadband: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Descheduler {
    pub hot_metric: String,
    pub hot_above: f64,
    pub target_below: f64,
    pub cool_below: f64,
    pub cpu_request_min_millis: u64,
    pub cpu_request_max_millis: u64,
    pub min_replicas: u32,
    pub min_pod_age: SignedDuration,
    pub max_evictions_per_node: u32,
    pub max_evictions_per_run: u32,
    pub workload_cooldown: SignedDuration,
    pub evict_stateful_sets: bool,
    pub evict_local_storage: bool,
    pub protected: Protected,
}

/// Pods the descheduler never evicts, whatever the whitelist ConfigMap says: core apps such as
/// ingress controllers and gateways. The whitelist adds to this set; it cannot remove from it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Protected {
    /// Namespace names or `*` globs.
    pub namespaces: NameList,
    /// App names or globs, matched like the whitelist's `apps` (the `app` or
    /// `app.kubernetes.io/name` label, or the owning Deployment/StatefulSet's name).
    pub apps: NameList,
    /// Label selectors; a pod matching any of them is protected.
    pub selectors: Vec<LabelSelector>,
}

/// The validated policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub node_identity: NodeIdentity,
    pub metrics: Vec<MetricSpec>,
    pub crane_timezone_name: String,
    pub crane_timezone: TimeZone,
    pub guards: Guards,
    pub scoring: Scoring,
    pub hotspot: Hotspot,
    pub collector: Collector,
    pub descheduler: Descheduler,
    pub workload_usage: WorkloadUsage,
}

/// The default policy, validated once (its globs compile once per process).
static DEFAULT_POLICY: std::sync::LazyLock<Policy> = std::sync::LazyLock::new(|| {
    // The empty file is the default policy; its validation cannot fail (pinned by a test).
    match PolicyFile::default().validate() {
        Ok(policy) => policy,
        Err(e) => unreachable!("built-in default policy is invalid: {e}"),
    }
});

impl Default for Policy {
    fn default() -> Self {
        DEFAULT_POLICY.clone()
    }
}

impl Policy {
    /// Parses and validates a policy file.
    pub fn from_yaml(text: &str) -> Result<Policy, PolicyError> {
        let file = PolicyFile::from_yaml(text)?;
        file.validate()
    }

    /// The annotation keys the policy reads, in metric order: all a non-cache request needs of
    /// a Node.
    pub fn annotation_keys(&self) -> smallvec::SmallVec<[&str; 8]> {
        self.metrics.iter().map(|m| m.annotation.as_str()).collect()
    }

    pub fn metric(&self, name: &str) -> Option<&MetricSpec> {
        self.metrics.iter().find(|m| m.name == name)
    }

    pub fn metric_index(&self, name: &str) -> Option<usize> {
        self.metrics.iter().position(|m| m.name == name)
    }

    pub fn scored_metrics(&self) -> impl Iterator<Item = &MetricSpec> {
        self.metrics.iter().filter(|m| m.is_scored())
    }
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// One broken rule, with the path of the field that breaks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub path: String,
    pub rule: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.rule)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PolicyError {
    /// The YAML does not have the policy's shape (syntax, unknown field, wrong type).
    #[error("policy: {path}: {message}")]
    Parse { path: String, message: String },
    /// The YAML parsed but breaks one or more rules.
    #[error("policy: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<FieldError>),
}

impl PolicyError {
    pub fn field_errors(&self) -> &[FieldError] {
        match self {
            PolicyError::Invalid(errors) => errors,
            PolicyError::Parse { .. } => &[],
        }
    }
}

mod fields;
mod file;
mod validate;

pub use fields::field_values;
pub use file::*;
pub use validate::{
    MAX_DURATION, MAX_METRICS, MAX_MIN_REPLICAS, MAX_POLICY_BYTES, is_annotation_key,
    parse_duration,
};

#[cfg(test)]
mod tests;

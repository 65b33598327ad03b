//! The policy file that drives all three parts (docs/configuration.md, "Policy file").
//!
//! Two layers: [`PolicyFile`] is the YAML as written (every field optional, unknown fields are
//! errors), and [`Policy`] is the validated, typed form the code uses. [`Policy::from_yaml`] goes
//! from one to the other and reports every broken rule with its field path.

use std::fmt;

use jiff::SignedDuration;
use jiff::tz::TimeZone;
use serde::{Deserialize, Deserializer, Serialize};
use thiserror::Error;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

use crate::quantity;
use crate::reading::AnnotationFormat;
use crate::selector::SELECTOR_OPERATORS;
use crate::whitelist::NameList;

pub const API_VERSION: &str = "realload.io/v1alpha1";
pub const KIND: &str = "Policy";
/// Annotation prefix of the keys the collector owns.
pub const ANNOTATION_PREFIX: &str = "realload.io/";

/// The metric the descheduler requires on a destination node.
pub const DESTINATION_METRIC: &str = "cpu-avg-5m";

/// The default policy as a file; `deploy/` ships the same text for the policy ConfigMap.
pub const DEFAULT_POLICY_YAML: &str = include_str!("../../deploy/base/policy.yaml");

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
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hotspot {
    pub cpu_factor: f64,
    pub memory_factor: f64,
}

impl Hotspot {
    pub fn factor(&self, resource: Resource) -> f64 {
        match resource {
            Resource::Cpu => self.cpu_factor,
            Resource::Memory => self.memory_factor,
        }
    }
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
    pub hotspot: Hotspot,
    pub collector: Collector,
    pub descheduler: Descheduler,
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

// ---------------------------------------------------------------------------------------------
// The file as written
// ---------------------------------------------------------------------------------------------

/// A field that may be absent (take the default), `null` (turn it off) or set.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
#[serde(untagged)]
pub enum Setting<T> {
    #[default]
    Absent,
    Off,
    Set(T),
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Setting<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Only reached when the key is present: `null` turns the setting off.
        Ok(match Option::<T>::deserialize(deserializer)? {
            None => Setting::Off,
            Some(v) => Setting::Set(v),
        })
    }
}

/// A Kubernetes quantity written as a string (`"2"`, `"2500m"`) or a bare YAML number (`2`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum QuantityText {
    Number(f64),
    Text(String),
}

impl QuantityText {
    fn millis(&self) -> Result<u64, String> {
        match self {
            QuantityText::Number(n) if n.is_finite() && *n >= 0.0 => {
                Ok((n * 1000.0).round() as u64)
            }
            QuantityText::Number(n) => Err(format!("{n} is not a CPU quantity")),
            QuantityText::Text(t) => quantity::cpu_millis(t).map_err(|e| e.to_string()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct PolicyFile {
    pub api_version: Option<String>,
    pub kind: Option<String>,
    pub node_identity: NodeIdentityFile,
    pub metrics: Option<Vec<MetricFile>>,
    pub crane_timezone: Option<String>,
    pub guards: GuardsFile,
    pub hotspot: HotspotFile,
    pub collector: CollectorFile,
    pub descheduler: DeschedulerFile,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct NodeIdentityFile {
    pub label: Option<String>,
    pub match_by: Option<Vec<MatchBy>>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct MetricFile {
    pub name: Option<String>,
    pub resource: Option<Resource>,
    pub query: Option<String>,
    pub annotation: Option<String>,
    pub format: Option<AnnotationFormat>,
    pub period: Option<String>,
    pub max_age: Option<String>,
    pub floor: Option<f64>,
    /// `null` turns filtering off for a metric whose default filters.
    #[serde(skip_serializing_if = "is_absent")]
    pub filter_above: Setting<f64>,
    pub weight: Option<f64>,
}

fn is_absent<T>(s: &Setting<T>) -> bool {
    matches!(s, Setting::Absent)
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct GuardsFile {
    pub unknown_load: Option<f64>,
    pub max_unknown_fraction: Option<f64>,
    pub unknown_pod_cap: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct HotspotFile {
    pub cpu_factor: Option<f64>,
    pub memory_factor: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct CollectorFile {
    pub deadband: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct CpuRequestFile {
    pub min: Option<QuantityText>,
    pub max: Option<QuantityText>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct DeschedulerFile {
    pub hot_metric: Option<String>,
    pub hot_above: Option<f64>,
    pub target_below: Option<f64>,
    pub cool_below: Option<f64>,
    pub cpu_request: CpuRequestFile,
    pub min_replicas: Option<u32>,
    pub min_pod_age: Option<String>,
    pub max_evictions_per_node: Option<u32>,
    pub max_evictions_per_run: Option<u32>,
    pub workload_cooldown: Option<String>,
    pub evict_stateful_sets: Option<bool>,
    pub evict_local_storage: Option<bool>,
    pub protected: ProtectedFile,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct ProtectedFile {
    pub namespaces: Option<Vec<String>>,
    pub apps: Option<Vec<String>>,
    pub selectors: Option<Vec<SelectorFile>>,
}

/// A label selector as written in the policy (the Kubernetes shape, checked strictly).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct SelectorFile {
    pub match_labels: Option<std::collections::BTreeMap<String, String>>,
    pub match_expressions: Option<Vec<RequirementFile>>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct RequirementFile {
    pub key: String,
    pub operator: String,
    pub values: Option<Vec<String>>,
}

// ---------------------------------------------------------------------------------------------
// Defaults
// ---------------------------------------------------------------------------------------------

/// 1 − idle share of all CPUs, per node-exporter instance, over `window`.
fn cpu_busy(window: &str) -> String {
    format!(r#"1 - avg by (instance) (rate(node_cpu_seconds_total{{mode="idle"}}[{window}]))"#)
}

pub mod defaults {
    pub const NODE_LABEL: &str = "instance";
    pub const CRANE_TIMEZONE: &str = "UTC";
    pub const PERIOD: &str = "1m";
    pub const FLOOR: f64 = 0.005;
    pub const UNKNOWN_LOAD: f64 = 1.0;
    pub const MAX_UNKNOWN_FRACTION: f64 = 0.5;
    pub const CPU_FACTOR: f64 = 0.85;
    pub const MEMORY_FACTOR: f64 = 0.70;
    pub const DEADBAND: f64 = 0.02;
    pub const HOT_METRIC: &str = "cpu-sustained-10m";
    pub const HOT_ABOVE: f64 = 0.80;
    pub const TARGET_BELOW: f64 = 0.75;
    pub const COOL_BELOW: f64 = 0.60;
    pub const CPU_REQUEST_MIN: &str = "2";
    pub const CPU_REQUEST_MAX: &str = "4";
    pub const MIN_REPLICAS: u32 = 2;
    pub const MIN_POD_AGE: &str = "10m";
    pub const MAX_EVICTIONS_PER_NODE: u32 = 1;
    pub const MAX_EVICTIONS_PER_RUN: u32 = 10;
    pub const WORKLOAD_COOLDOWN: &str = "30m";
    pub const UNKNOWN_POD_CAP: u32 = 2;
    /// Largest `guards.unknownPodCap` accepted.
    pub const UNKNOWN_POD_CAP_MAX: u32 = 1000;
    /// System namespaces and the namespaces the usual ingress controllers and gateways install into.
    pub const PROTECTED_NAMESPACES: [&str; 13] = [
        "kube-system",
        "kube-public",
        "kube-node-lease",
        "realload-system",
        "ingress-nginx",
        "nginx-gateway",
        "istio-system",
        "istio-ingress",
        "envoy-gateway-system",
        "projectcontour",
        "traefik",
        "kong",
        "haproxy-controller",
    ];
    /// Ingress controllers, gateways and cluster DNS, wherever they run.
    pub const PROTECTED_APPS: [&str; 16] = [
        "ingress-nginx*",
        "nginx-ingress*",
        "*ingress-controller*",
        "*ingressgateway*",
        "*egressgateway*",
        "nginx-gateway*",
        "envoy-gateway*",
        "traefik*",
        "contour*",
        "envoy",
        "haproxy-ingress*",
        "kong*",
        "istiod",
        "coredns",
        "kube-dns",
        "metrics-server",
    ];
}

/// The default protected selectors: pods of a Gateway API gateway (its implementations label
/// them with the gateway's name) and Istio's ingress and egress gateways.
pub fn default_protected_selectors() -> Vec<SelectorFile> {
    let requirement = |key: &str, operator: &str| RequirementFile {
        key: key.into(),
        operator: operator.into(),
        values: None,
    };
    let labels = |k: &str, v: &str| SelectorFile {
        match_labels: Some([(k.to_string(), v.to_string())].into()),
        match_expressions: None,
    };
    vec![
        SelectorFile {
            match_labels: None,
            match_expressions: Some(vec![requirement(
                "gateway.networking.k8s.io/gateway-name",
                "Exists",
            )]),
        },
        labels("istio", "ingressgateway"),
        labels("istio", "egressgateway"),
    ]
}

/// The default metric list, as a file would spell it out.
pub fn default_metrics() -> Vec<MetricFile> {
    let metric = |name: &str, resource, query: String, filter: Option<f64>, weight: Option<f64>| {
        MetricFile {
            name: Some(name.to_string()),
            resource: Some(resource),
            query: Some(query),
            filter_above: filter.map_or(Setting::Absent, Setting::Set),
            weight,
            ..MetricFile::default()
        }
    };
    vec![
        metric("cpu-avg-5m", Resource::Cpu, cpu_busy("5m"), Some(0.80), Some(0.5)),
        metric(
            "cpu-max-1h",
            Resource::Cpu,
            format!("max_over_time(({})[1h:1m])", cpu_busy("5m")),
            None,
            Some(0.2),
        ),
        metric(
            "mem-avg-5m",
            Resource::Memory,
            "1 - avg_over_time(node_memory_MemAvailable_bytes[5m]) / avg_over_time(node_memory_MemTotal_bytes[5m])"
                .to_string(),
            Some(0.90),
            Some(0.3),
        ),
        metric(
            "cpu-sustained-10m",
            Resource::Cpu,
            format!("min_over_time(({})[10m:30s])", cpu_busy("1m")),
            None,
            None,
        ),
    ]
}

// ---------------------------------------------------------------------------------------------
// Parsing and validation
// ---------------------------------------------------------------------------------------------

impl PolicyFile {
    pub fn from_yaml(text: &str) -> Result<PolicyFile, PolicyError> {
        if text.trim().is_empty() {
            return Ok(PolicyFile::default());
        }
        let deserializer = serde_yaml::Deserializer::from_str(text);
        serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let path = e.path().to_string();
            PolicyError::Parse {
                path: if path == "." {
                    "(root)".to_string()
                } else {
                    path
                },
                message: e.into_inner().to_string(),
            }
        })
    }

    /// Applies every default and checks every rule; all broken rules are reported at once.
    pub fn validate(&self) -> Result<Policy, PolicyError> {
        let mut v = Validator::default();

        if let Some(api_version) = &self.api_version
            && api_version != API_VERSION
        {
            v.fail(
                "apiVersion",
                format!("must be {API_VERSION}, got {api_version:?}"),
            );
        }
        if let Some(kind) = &self.kind
            && kind != KIND
        {
            v.fail("kind", format!("must be {KIND}, got {kind:?}"));
        }

        let label = self
            .node_identity
            .label
            .clone()
            .unwrap_or_else(|| defaults::NODE_LABEL.to_string());
        if label.trim().is_empty() {
            v.fail("nodeIdentity.label", "must not be empty");
        }
        let match_by = self
            .node_identity
            .match_by
            .clone()
            .unwrap_or_else(|| vec![MatchBy::Name, MatchBy::InternalIp, MatchBy::Hostname]);
        if match_by.is_empty() {
            v.fail(
                "nodeIdentity.matchBy",
                "must list at least one of name, internalIP, hostname",
            );
        }

        let defaults_by_name = default_metrics();
        let metric_files = self
            .metrics
            .clone()
            .unwrap_or_else(|| defaults_by_name.clone());
        if metric_files.is_empty() {
            v.fail("metrics", "must list at least one metric");
        }
        let mut metrics = Vec::with_capacity(metric_files.len());
        for (i, file) in metric_files.iter().enumerate() {
            if let Some(spec) = v.metric(i, file, &defaults_by_name) {
                metrics.push(spec);
            }
        }
        for (i, m) in metrics.iter().enumerate() {
            if metrics[..i].iter().any(|earlier| earlier.name == m.name) {
                v.fail(
                    format!("metrics[{i}].name"),
                    format!("duplicate metric name {:?}", m.name),
                );
            }
            if metrics[..i]
                .iter()
                .any(|earlier| earlier.annotation == m.annotation)
            {
                v.fail(
                    format!("metrics[{i}].annotation"),
                    format!(
                        "annotation {:?} is already used by another metric",
                        m.annotation
                    ),
                );
            }
        }
        if metric_files.len() == metrics.len()
            && !metrics.is_empty()
            && !metrics.iter().any(MetricSpec::is_scored)
        {
            v.fail(
                "metrics",
                "at least one metric must have a weight above 0 (nothing would be scored)",
            );
        }

        let crane_timezone_name = self
            .crane_timezone
            .clone()
            .unwrap_or_else(|| defaults::CRANE_TIMEZONE.to_string());
        let crane_timezone = match TimeZone::get(&crane_timezone_name) {
            Ok(tz) => tz,
            Err(_) => {
                v.fail(
                    "craneTimezone",
                    format!("unknown IANA time zone {crane_timezone_name:?}"),
                );
                TimeZone::UTC
            }
        };

        let guards = Guards {
            unknown_load: v.ratio_closed(
                "guards.unknownLoad",
                self.guards.unknown_load,
                defaults::UNKNOWN_LOAD,
            ),
            max_unknown_fraction: v.ratio_closed(
                "guards.maxUnknownFraction",
                self.guards.max_unknown_fraction,
                defaults::MAX_UNKNOWN_FRACTION,
            ),
            unknown_pod_cap: v.bounded_count(
                "guards.unknownPodCap",
                self.guards.unknown_pod_cap,
                defaults::UNKNOWN_POD_CAP,
                0,
                defaults::UNKNOWN_POD_CAP_MAX,
            ),
        };
        let hotspot = Hotspot {
            cpu_factor: v.non_negative(
                "hotspot.cpuFactor",
                self.hotspot.cpu_factor,
                defaults::CPU_FACTOR,
            ),
            memory_factor: v.non_negative(
                "hotspot.memoryFactor",
                self.hotspot.memory_factor,
                defaults::MEMORY_FACTOR,
            ),
        };
        let deadband = self.collector.deadband.unwrap_or(defaults::DEADBAND);
        if !(deadband.is_finite() && (0.0..1.0).contains(&deadband)) {
            v.fail(
                "collector.deadband",
                format!("must be in [0, 1), got {deadband}"),
            );
        }
        let collector = Collector { deadband };

        let d = &self.descheduler;
        let hot_metric = d
            .hot_metric
            .clone()
            .unwrap_or_else(|| defaults::HOT_METRIC.to_string());
        if metric_files.len() == metrics.len() && !metrics.iter().any(|m| m.name == hot_metric) {
            v.fail(
                "descheduler.hotMetric",
                format!("metric {hot_metric:?} is not defined in metrics"),
            );
        }
        if metric_files.len() == metrics.len()
            && !metrics.iter().any(|m| m.name == DESTINATION_METRIC)
        {
            v.fail(
                "metrics",
                format!("the descheduler's destination check needs a metric named {DESTINATION_METRIC:?}"),
            );
        }
        let hot_above = v.threshold("descheduler.hotAbove", d.hot_above, defaults::HOT_ABOVE);
        let target_below = v.threshold(
            "descheduler.targetBelow",
            d.target_below,
            defaults::TARGET_BELOW,
        );
        let cool_below = v.threshold("descheduler.coolBelow", d.cool_below, defaults::COOL_BELOW);
        if target_below >= hot_above {
            v.fail(
                "descheduler.targetBelow",
                format!("must be below descheduler.hotAbove ({target_below} >= {hot_above})"),
            );
        }
        let cpu_min = v.cpu_quantity(
            "descheduler.cpuRequest.min",
            d.cpu_request.min.as_ref(),
            defaults::CPU_REQUEST_MIN,
        );
        let cpu_max = v.cpu_quantity(
            "descheduler.cpuRequest.max",
            d.cpu_request.max.as_ref(),
            defaults::CPU_REQUEST_MAX,
        );
        if cpu_min > cpu_max {
            v.fail(
                "descheduler.cpuRequest",
                format!("min ({cpu_min}m) must not exceed max ({cpu_max}m)"),
            );
        }
        let min_replicas = d.min_replicas.unwrap_or(defaults::MIN_REPLICAS);
        if min_replicas < 2 {
            v.fail(
                "descheduler.minReplicas",
                format!("must be at least 2 (only multi-replica workloads are evicted), got {min_replicas}"),
            );
        }
        let descheduler = Descheduler {
            hot_metric,
            hot_above,
            target_below,
            cool_below,
            cpu_request_min_millis: cpu_min,
            cpu_request_max_millis: cpu_max,
            min_replicas,
            min_pod_age: v.duration(
                "descheduler.minPodAge",
                d.min_pod_age.as_deref(),
                defaults::MIN_POD_AGE,
                true,
            ),
            max_evictions_per_node: d
                .max_evictions_per_node
                .unwrap_or(defaults::MAX_EVICTIONS_PER_NODE),
            max_evictions_per_run: d
                .max_evictions_per_run
                .unwrap_or(defaults::MAX_EVICTIONS_PER_RUN),
            workload_cooldown: v.duration(
                "descheduler.workloadCooldown",
                d.workload_cooldown.as_deref(),
                defaults::WORKLOAD_COOLDOWN,
                true,
            ),
            evict_stateful_sets: d.evict_stateful_sets.unwrap_or(false),
            evict_local_storage: d.evict_local_storage.unwrap_or(false),
            protected: v.protected(&d.protected),
        };

        if !v.errors.is_empty() {
            return Err(PolicyError::Invalid(v.errors));
        }
        Ok(Policy {
            node_identity: NodeIdentity { label, match_by },
            metrics,
            crane_timezone_name,
            crane_timezone,
            guards,
            hotspot,
            collector,
            descheduler,
        })
    }
}

/// Parses a duration such as `1m`, `90s`, `1h30m` or ISO 8601 `PT1M`.
pub fn parse_duration(text: &str) -> Result<SignedDuration, String> {
    text.trim()
        .parse::<SignedDuration>()
        .map_err(|_| format!("{text:?} is not a duration (e.g. 30s, 5m, 1h30m)"))
}

#[derive(Default)]
struct Validator {
    errors: Vec<FieldError>,
}

impl Validator {
    fn fail(&mut self, path: impl Into<String>, rule: impl Into<String>) {
        self.errors.push(FieldError {
            path: path.into(),
            rule: rule.into(),
        });
    }

    /// A threshold: in (0, 1].
    fn threshold(&mut self, path: &str, value: Option<f64>, default: f64) -> f64 {
        let v = value.unwrap_or(default);
        if !(v.is_finite() && v > 0.0 && v <= 1.0) {
            self.fail(path, format!("must be in (0, 1], got {v}"));
        }
        v
    }

    /// A ratio in [0, 1].
    fn ratio_closed(&mut self, path: &str, value: Option<f64>, default: f64) -> f64 {
        let v = value.unwrap_or(default);
        if !(v.is_finite() && (0.0..=1.0).contains(&v)) {
            self.fail(path, format!("must be in [0, 1], got {v}"));
        }
        v
    }

    fn non_negative(&mut self, path: &str, value: Option<f64>, default: f64) -> f64 {
        let v = value.unwrap_or(default);
        if !(v.is_finite() && v >= 0.0) {
            self.fail(path, format!("must be a number >= 0, got {v}"));
        }
        v
    }

    fn duration(
        &mut self,
        path: &str,
        value: Option<&str>,
        default: &str,
        zero_ok: bool,
    ) -> SignedDuration {
        match parse_duration(value.unwrap_or(default)) {
            Ok(d) if d.is_negative() || (!zero_ok && d.is_zero()) => {
                let bound = if zero_ok { ">= 0" } else { "> 0" };
                self.fail(path, format!("must be {bound}, got {:#}", d));
                d
            }
            Ok(d) => d,
            Err(e) => {
                self.fail(path, e);
                SignedDuration::ZERO
            }
        }
    }

    /// A whole number in `[min, max]`.
    fn bounded_count(
        &mut self,
        path: &str,
        value: Option<u64>,
        default: u32,
        min: u32,
        max: u32,
    ) -> u32 {
        let v = value.unwrap_or(u64::from(default));
        match u32::try_from(v) {
            Ok(n) if (min..=max).contains(&n) => n,
            _ => {
                self.fail(path, format!("must be in [{min}, {max}], got {v}"));
                default
            }
        }
    }

    fn name_list(&mut self, path: &str, value: Option<&[String]>, default: &[&str]) -> NameList {
        let result = match value {
            Some(entries) => NameList::from_entries(path, entries),
            None => NameList::from_entries(path, default),
        };
        result.unwrap_or_else(|e| {
            let rule = match &e {
                crate::whitelist::WhitelistError::BadEntry {
                    line,
                    entry,
                    problem,
                    ..
                } => format!("entry {} ({entry:?}) {problem}", line - 1),
                other => other.to_string(),
            };
            self.fail(path, rule);
            NameList::default()
        })
    }

    fn protected(&mut self, file: &ProtectedFile) -> Protected {
        let namespaces = self.name_list(
            "descheduler.protected.namespaces",
            file.namespaces.as_deref(),
            &defaults::PROTECTED_NAMESPACES,
        );
        let apps = self.name_list(
            "descheduler.protected.apps",
            file.apps.as_deref(),
            &defaults::PROTECTED_APPS,
        );
        let selector_files = file
            .selectors
            .clone()
            .unwrap_or_else(default_protected_selectors);
        let mut selectors = Vec::with_capacity(selector_files.len());
        for (i, sel) in selector_files.iter().enumerate() {
            let at = format!("descheduler.protected.selectors[{i}]");
            let labels = sel.match_labels.clone().unwrap_or_default();
            let exprs = sel.match_expressions.clone().unwrap_or_default();
            if labels.is_empty() && exprs.is_empty() {
                self.fail(
                    &at,
                    "an empty selector would protect every pod: give matchLabels or matchExpressions",
                );
                continue;
            }
            let mut requirements = Vec::with_capacity(exprs.len());
            for (j, e) in exprs.iter().enumerate() {
                let at = format!("{at}.matchExpressions[{j}]");
                if e.key.trim().is_empty() {
                    self.fail(format!("{at}.key"), "is required");
                }
                let values = e.values.clone().unwrap_or_default();
                match e.operator.as_str() {
                    "In" | "NotIn" if values.is_empty() => self.fail(
                        format!("{at}.values"),
                        format!("must not be empty for operator {}", e.operator),
                    ),
                    "Exists" | "DoesNotExist" if !values.is_empty() => self.fail(
                        format!("{at}.values"),
                        format!("must be empty for operator {}", e.operator),
                    ),
                    op if !SELECTOR_OPERATORS.contains(&op) => self.fail(
                        format!("{at}.operator"),
                        format!("{op:?} is not one of {}", SELECTOR_OPERATORS.join(", ")),
                    ),
                    _ => {}
                }
                requirements.push(LabelSelectorRequirement {
                    key: e.key.clone(),
                    operator: e.operator.clone(),
                    values: e.values.clone(),
                });
            }
            selectors.push(LabelSelector {
                match_labels: (!labels.is_empty()).then_some(labels),
                match_expressions: (!requirements.is_empty()).then_some(requirements),
            });
        }
        Protected {
            namespaces,
            apps,
            selectors,
        }
    }

    fn cpu_quantity(&mut self, path: &str, value: Option<&QuantityText>, default: &str) -> u64 {
        let q = value
            .cloned()
            .unwrap_or_else(|| QuantityText::Text(default.to_string()));
        match q.millis() {
            Ok(m) => m,
            Err(e) => {
                self.fail(path, e);
                0
            }
        }
    }

    fn metric(
        &mut self,
        i: usize,
        file: &MetricFile,
        defaults: &[MetricFile],
    ) -> Option<MetricSpec> {
        let at = |field: &str| format!("metrics[{i}].{field}");
        let Some(name) = file.name.clone() else {
            self.fail(at("name"), "is required");
            return None;
        };
        let valid_name = !name.is_empty()
            && name.len() <= 63
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !name.starts_with('-')
            && !name.ends_with('-');
        if !valid_name {
            self.fail(
                at("name"),
                format!("{name:?} must be 1-63 lowercase letters, digits or '-', not starting or ending with '-'"),
            );
        }
        // A metric named like a default one inherits that one's settings for what it leaves out.
        let base = defaults
            .iter()
            .find(|d| d.name.as_deref() == Some(name.as_str()));

        let resource: Option<Resource> = inherit(&file.resource, base.map(|b| &b.resource));
        let resource = resource.unwrap_or_else(|| {
            self.fail(
                at("resource"),
                "is required (cpu or memory) for a metric without a built-in default",
            );
            Resource::Cpu
        });
        let query: Option<String> = inherit(&file.query, base.map(|b| &b.query));
        let query = query.unwrap_or_default();
        if query.trim().is_empty() {
            self.fail(
                at("query"),
                "is required: a PromQL expression returning one sample per node",
            );
        }
        let annotation = file
            .annotation
            .clone()
            .unwrap_or_else(|| format!("{ANNOTATION_PREFIX}{name}"));
        if !is_annotation_key(&annotation) {
            self.fail(
                at("annotation"),
                format!("{annotation:?} is not a valid annotation key"),
            );
        }
        let format: AnnotationFormat =
            inherit(&file.format, base.map(|b| &b.format)).unwrap_or_default();
        let period_text: Option<String> = inherit(&file.period, base.map(|b| &b.period));
        let period = self.duration(
            &at("period"),
            period_text.as_deref(),
            defaults::PERIOD,
            false,
        );
        let max_age = match inherit(&file.max_age, base.map(|b| &b.max_age)) {
            Some(text) => self.duration(&at("maxAge"), Some(&text), "", false),
            None => period * 2 + SignedDuration::from_mins(1),
        };
        let floor: f64 = inherit(&file.floor, base.map(|b| &b.floor)).unwrap_or(defaults::FLOOR);
        if !(floor.is_finite() && (0.0..1.0).contains(&floor)) {
            self.fail(at("floor"), format!("must be in [0, 1), got {floor}"));
        }
        let filter_above = match &file.filter_above {
            Setting::Set(t) => Some(*t),
            Setting::Off => None,
            Setting::Absent => match base.map(|b| &b.filter_above) {
                Some(Setting::Set(t)) => Some(*t),
                _ => None,
            },
        };
        if let Some(t) = filter_above
            && !(t.is_finite() && t > 0.0 && t <= 1.0)
        {
            self.fail(at("filterAbove"), format!("must be in (0, 1], got {t}"));
        }
        let weight: f64 = inherit(&file.weight, base.map(|b| &b.weight)).unwrap_or(0.0);
        if !(weight.is_finite() && weight >= 0.0) {
            self.fail(at("weight"), format!("must be >= 0, got {weight}"));
        }
        Some(MetricSpec {
            name,
            resource,
            query,
            annotation,
            format,
            period,
            max_age,
            floor,
            filter_above,
            weight,
        })
    }
}

fn inherit<T: Clone>(own: &Option<T>, inherited: Option<&Option<T>>) -> Option<T> {
    own.clone().or_else(|| inherited.cloned().flatten())
}

/// An annotation key: an optional DNS-subdomain prefix and `/`, then a name of up to 63
/// characters of `[A-Za-z0-9._-]` starting and ending alphanumeric.
pub fn is_annotation_key(key: &str) -> bool {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    let name_ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    let prefix_ok = prefix.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 253
            && p.split('.').all(|part| {
                !part.is_empty()
                    && part
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                    && !part.starts_with('-')
                    && !part.ends_with('-')
            })
    });
    name_ok && prefix_ok
}

#[cfg(test)]
mod tests;

/// Every policy field and its value in `policy`, keyed by its documented path
/// (`guards.unknownLoad`, `metrics[cpu-avg-5m].weight`, …). `docs/configuration.md` is checked
/// against this for the default policy.
pub fn field_values(policy: &Policy) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = vec![
        ("apiVersion".into(), API_VERSION.into()),
        ("kind".into(), KIND.into()),
        (
            "nodeIdentity.label".into(),
            policy.node_identity.label.clone(),
        ),
        (
            "nodeIdentity.matchBy".into(),
            format!(
                "[{}]",
                policy
                    .node_identity
                    .match_by
                    .iter()
                    .map(|m| match m {
                        MatchBy::Name => "name",
                        MatchBy::InternalIp => "internalIP",
                        MatchBy::Hostname => "hostname",
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
        ("craneTimezone".into(), policy.crane_timezone_name.clone()),
        (
            "guards.unknownLoad".into(),
            policy.guards.unknown_load.to_string(),
        ),
        (
            "guards.maxUnknownFraction".into(),
            policy.guards.max_unknown_fraction.to_string(),
        ),
        (
            "guards.unknownPodCap".into(),
            policy.guards.unknown_pod_cap.to_string(),
        ),
        (
            "hotspot.cpuFactor".into(),
            policy.hotspot.cpu_factor.to_string(),
        ),
        (
            "hotspot.memoryFactor".into(),
            policy.hotspot.memory_factor.to_string(),
        ),
        (
            "collector.deadband".into(),
            policy.collector.deadband.to_string(),
        ),
    ];
    for m in &policy.metrics {
        let at = |f: &str| format!("metrics[{}].{f}", m.name);
        out.push((at("resource"), format!("{:?}", m.resource).to_lowercase()));
        out.push((at("annotation"), m.annotation.clone()));
        out.push((at("format"), format!("{:?}", m.format).to_lowercase()));
        out.push((at("period"), format!("{:#}", m.period)));
        out.push((at("maxAge"), format!("{:#}", m.max_age)));
        out.push((at("floor"), m.floor.to_string()));
        out.push((
            at("filterAbove"),
            m.filter_above.map_or("none".into(), |f| f.to_string()),
        ));
        out.push((at("weight"), m.weight.to_string()));
    }
    let d = &policy.descheduler;
    out.extend([
        ("descheduler.hotMetric".into(), d.hot_metric.clone()),
        ("descheduler.hotAbove".into(), d.hot_above.to_string()),
        ("descheduler.targetBelow".into(), d.target_below.to_string()),
        ("descheduler.coolBelow".into(), d.cool_below.to_string()),
        (
            "descheduler.cpuRequest.min".into(),
            format!("{}m", d.cpu_request_min_millis),
        ),
        (
            "descheduler.cpuRequest.max".into(),
            format!("{}m", d.cpu_request_max_millis),
        ),
        ("descheduler.minReplicas".into(), d.min_replicas.to_string()),
        (
            "descheduler.minPodAge".into(),
            format!("{:#}", d.min_pod_age),
        ),
        (
            "descheduler.maxEvictionsPerNode".into(),
            d.max_evictions_per_node.to_string(),
        ),
        (
            "descheduler.maxEvictionsPerRun".into(),
            d.max_evictions_per_run.to_string(),
        ),
        (
            "descheduler.workloadCooldown".into(),
            format!("{:#}", d.workload_cooldown),
        ),
        (
            "descheduler.evictStatefulSets".into(),
            d.evict_stateful_sets.to_string(),
        ),
        (
            "descheduler.evictLocalStorage".into(),
            d.evict_local_storage.to_string(),
        ),
        (
            "descheduler.protected.namespaces".into(),
            format!(
                "[{}]",
                d.protected
                    .namespaces
                    .entries()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
        (
            "descheduler.protected.apps".into(),
            format!(
                "[{}]",
                d.protected.apps.entries().collect::<Vec<_>>().join(", ")
            ),
        ),
        (
            "descheduler.protected.selectors".into(),
            format!(
                "[{}]",
                d.protected
                    .selectors
                    .iter()
                    .map(crate::selector::selector_text)
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        ),
    ]);
    out
}

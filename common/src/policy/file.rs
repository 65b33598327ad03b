//! The policy file as written, and the built-in defaults.

use serde::{Deserialize, Deserializer, Serialize};

use super::*;

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
    pub(super) fn millis(&self) -> Result<u64, String> {
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
    pub scoring: ScoringFile,
    pub hotspot: HotspotFile,
    pub collector: CollectorFile,
    pub descheduler: DeschedulerFile,
    pub workload_usage: WorkloadUsageFile,
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
    pub never_strand: Option<bool>,
    pub unknown_last_resort: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct ScoringFile {
    pub idle_below: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct HotspotFile {
    pub cpu_factor: Option<f64>,
    pub memory_factor: Option<f64>,
    pub reserve_ranked: Option<bool>,
    pub include_pod: Option<bool>,
    pub reading_window: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct WorkloadUsageFile {
    pub enabled: Option<bool>,
    pub config_map: Option<String>,
    pub cpu_query: Option<String>,
    /// `null` turns memory learning off.
    #[serde(skip_serializing_if = "is_absent")]
    pub memory_query: Setting<String>,
    pub period: Option<String>,
    pub max_age: Option<String>,
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
    pub const IDLE_BELOW: f64 = 0.50;
    pub const MAX_UNKNOWN_FRACTION: f64 = 0.5;
    pub const CPU_FACTOR: f64 = 0.85;
    pub const MEMORY_FACTOR: f64 = 0.70;
    /// The scored default metrics average over 5 minutes.
    pub const READING_WINDOW: &str = "5m";
    pub const DEADBAND: f64 = 0.02;
    pub const USAGE_CONFIG_MAP: &str = "realload-workload-usage";
    /// Mean CPU (cores) per pod over the last hour, or its life if shorter: the mean of
    /// per-minute instant rates. (`rate(...[1h])` divides by the whole hour, so it would count
    /// a pod started ten minutes ago at a sixth of its use.) `max by container` first: a
    /// container scraped twice (two jobs scraping the kubelet's cAdvisor, a restarted
    /// container's series still fresh) is counted once.
    pub const USAGE_CPU_QUERY: &str = r#"sum by (namespace, pod) (max by (namespace, pod, container) (avg_over_time(irate(container_cpu_usage_seconds_total{container!="", container!="POD"}[5m])[1h:1m])))"#;
    pub const USAGE_MEMORY_QUERY: &str = r#"sum by (namespace, pod) (max by (namespace, pod, container) (avg_over_time(container_memory_working_set_bytes{container!="", container!="POD"}[1h])))"#;
    pub const USAGE_PERIOD: &str = "5m";
    pub const USAGE_MAX_AGE: &str = "30m";
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
        metric("cpu-avg-5m", Resource::Cpu, cpu_busy("5m"), Some(0.85), Some(0.5)),
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

//! From the file as written to the validated policy: every default applied, every rule checked.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

use super::*;
use crate::selector::SELECTOR_OPERATORS;

// ---------------------------------------------------------------------------------------------
// Parsing and validation
// ---------------------------------------------------------------------------------------------

impl PolicyFile {
    pub fn from_yaml(text: &str) -> Result<PolicyFile, PolicyError> {
        let text = crate::yaml::strip_bom(text);
        if text.trim().is_empty() {
            return Ok(PolicyFile::default());
        }
        if text.len() > MAX_POLICY_BYTES {
            return Err(PolicyError::Parse {
                path: "(root)".into(),
                message: format!(
                    "the policy file is {} bytes; at most {MAX_POLICY_BYTES} are read",
                    text.len()
                ),
            });
        }
        if let Some(problem) = crate::yaml::nesting_problem(text) {
            return Err(PolicyError::Parse {
                path: "(root)".into(),
                message: problem,
            });
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
        } else if metric_files.len() > MAX_METRICS {
            v.fail(
                "metrics",
                format!(
                    "must list at most {MAX_METRICS} metrics, got {}",
                    metric_files.len()
                ),
            );
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
            never_strand: self.guards.never_strand.unwrap_or(true),
            unknown_last_resort: self.guards.unknown_last_resort.unwrap_or(false),
        };
        let idle_below = self.scoring.idle_below.unwrap_or(defaults::IDLE_BELOW);
        if !(idle_below.is_finite() && (0.0..1.0).contains(&idle_below)) {
            v.fail(
                "scoring.idleBelow",
                format!("must be in [0, 1), got {idle_below}"),
            );
        }
        let scoring = Scoring { idle_below };
        let reading_window = v.duration(
            "hotspot.readingWindow",
            self.hotspot.reading_window.as_deref(),
            defaults::READING_WINDOW,
            true,
        );
        // The ledger keeps every pod bound within the window: longer than any query's window
        // would only grow it.
        if reading_window > SignedDuration::from_hours(1) {
            v.fail(
                "hotspot.readingWindow",
                format!("must be at most 1h, got {reading_window:#}"),
            );
        }
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
            reserve_ranked: self.hotspot.reserve_ranked.unwrap_or(true),
            include_pod: self.hotspot.include_pod.unwrap_or(true),
            reading_window,
        };
        let deadband = self.collector.deadband.unwrap_or(defaults::DEADBAND);
        if !(deadband.is_finite() && (0.0..1.0).contains(&deadband)) {
            v.fail(
                "collector.deadband",
                format!("must be in [0, 1), got {deadband}"),
            );
        }
        let collector = Collector { deadband };
        let workload_usage = self.workload_usage(&mut v);

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
        } else if min_replicas > MAX_MIN_REPLICAS {
            v.fail(
                "descheduler.minReplicas",
                format!("must be at most {MAX_MIN_REPLICAS}, got {min_replicas}"),
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
            scoring,
            hotspot,
            collector,
            descheduler,
            workload_usage,
        })
    }
}

impl PolicyFile {
    fn workload_usage(&self, v: &mut Validator) -> WorkloadUsage {
        let f = &self.workload_usage;
        let config_map = f
            .config_map
            .clone()
            .unwrap_or_else(|| defaults::USAGE_CONFIG_MAP.to_string());
        if !is_dns_subdomain(&config_map) {
            v.fail(
                "workloadUsage.configMap",
                format!("{config_map:?} is not a ConfigMap name (lowercase letters, digits, '-' and '.', at most 253)"),
            );
        }
        let query = |v: &mut Validator, path: &str, q: Option<&String>, default: &str| {
            let q = q.map_or(default, String::as_str).trim().to_string();
            if q.is_empty() {
                v.fail(path, "must not be empty");
            }
            q
        };
        let cpu_query = query(
            v,
            "workloadUsage.cpuQuery",
            f.cpu_query.as_ref(),
            defaults::USAGE_CPU_QUERY,
        );
        let memory_query = match &f.memory_query {
            Setting::Off => None,
            Setting::Absent => Some(defaults::USAGE_MEMORY_QUERY.to_string()),
            Setting::Set(q) => Some(query(
                v,
                "workloadUsage.memoryQuery",
                Some(q),
                defaults::USAGE_MEMORY_QUERY,
            )),
        };
        let period = v.duration(
            "workloadUsage.period",
            f.period.as_deref(),
            defaults::USAGE_PERIOD,
            false,
        );
        let max_age = v.duration(
            "workloadUsage.maxAge",
            f.max_age.as_deref(),
            defaults::USAGE_MAX_AGE,
            false,
        );
        if max_age < period {
            v.fail(
                "workloadUsage.maxAge",
                format!(
                    "must be at least workloadUsage.period ({:#} < {:#}): every table would be ignored before the next",
                    max_age, period
                ),
            );
        }
        WorkloadUsage {
            enabled: f.enabled.unwrap_or(true),
            config_map,
            cpu_query,
            memory_query,
            period,
            max_age,
        }
    }
}

/// A Kubernetes object name of the DNS-subdomain kind (ConfigMaps, most objects).
pub fn is_dns_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
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
            // Every duration is added to or subtracted from instants: bounded, none overflows.
            Ok(d) if d > MAX_DURATION => {
                self.fail(path, format!("must be at most 366d (8784h), got {:#}", d));
                SignedDuration::ZERO
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
            None => period
                .checked_mul(2)
                .and_then(|d| d.checked_add(SignedDuration::from_mins(1)))
                .unwrap_or(MAX_DURATION),
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

/// The largest policy file read (real ones are a few KB).
pub const MAX_POLICY_BYTES: usize = 1 << 20;
/// The most metrics a policy may list (each is a query per cycle and a column per node).
pub const MAX_METRICS: usize = 8;
/// The longest duration a policy may state (periods, ages, cooldowns).
pub const MAX_DURATION: SignedDuration = SignedDuration::from_hours(366 * 24);
/// The largest `descheduler.minReplicas` (a Deployment's replicas are an `int32`).
pub const MAX_MIN_REPLICAS: u32 = 1_000_000;

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

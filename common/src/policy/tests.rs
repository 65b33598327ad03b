use super::*;

fn errors_of(yaml: &str) -> Vec<FieldError> {
    match Policy::from_yaml(yaml) {
        Err(PolicyError::Invalid(errors)) => errors,
        other => panic!("expected validation errors, got {other:?}"),
    }
}

fn has_error(yaml: &str, path: &str, fragment: &str) {
    let errors = errors_of(yaml);
    assert!(
        errors
            .iter()
            .any(|e| e.path == path && e.rule.contains(fragment)),
        "expected an error at {path} containing {fragment:?}, got {errors:?}"
    );
}

#[test]
fn shipped_default_file_parses_to_the_built_in_defaults() {
    let from_file = Policy::from_yaml(DEFAULT_POLICY_YAML).unwrap();
    assert_eq!(from_file, Policy::default());
    assert_eq!(Policy::from_yaml("").unwrap(), Policy::default());
    assert_eq!(Policy::from_yaml("{}").unwrap(), Policy::default());
}

#[test]
fn built_in_defaults_are_the_ones_design_md_names() {
    let p = Policy::default();
    let names: Vec<_> = p.metrics.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "cpu-avg-5m",
            "cpu-max-1h",
            "mem-avg-5m",
            "cpu-sustained-10m"
        ]
    );
    let cpu = p.metric("cpu-avg-5m").unwrap();
    assert_eq!(cpu.filter_above, Some(0.85));
    assert_eq!(cpu.weight, 0.5);
    assert_eq!(cpu.annotation, "realload.io/cpu-avg-5m");
    assert_eq!(cpu.period, SignedDuration::from_mins(1));
    assert_eq!(cpu.max_age, SignedDuration::from_mins(3));
    assert_eq!(cpu.floor, 0.005);
    assert_eq!(p.metric("cpu-max-1h").unwrap().weight, 0.2);
    assert_eq!(p.metric("cpu-max-1h").unwrap().filter_above, None);
    let mem = p.metric("mem-avg-5m").unwrap();
    assert_eq!(
        (mem.filter_above, mem.weight, mem.resource),
        (Some(0.90), 0.3, Resource::Memory)
    );
    assert!(!p.metric("cpu-sustained-10m").unwrap().is_scored());
    assert_eq!(
        p.guards,
        Guards {
            unknown_load: 1.0,
            max_unknown_fraction: 0.5,
            unknown_pod_cap: 2,
            never_strand: true,
            unknown_last_resort: false,
        }
    );
    assert_eq!(p.scoring.idle_below, 0.50);
    assert_eq!(
        p.hotspot,
        Hotspot {
            cpu_factor: 0.85,
            memory_factor: 0.70,
            reserve_ranked: true,
            include_pod: true,
            reading_window: SignedDuration::from_mins(5),
        }
    );
    assert_eq!(p.collector.deadband, 0.02);
    assert_eq!(p.node_identity.label, "instance");
    assert_eq!(
        p.node_identity.match_by,
        [MatchBy::Name, MatchBy::InternalIp, MatchBy::Hostname]
    );
    assert_eq!(p.crane_timezone_name, "UTC");
    let d = &p.descheduler;
    assert_eq!(d.hot_metric, "cpu-sustained-10m");
    assert_eq!(
        (d.hot_above, d.target_below, d.cool_below),
        (0.80, 0.75, 0.60)
    );
    assert_eq!(
        (d.cpu_request_min_millis, d.cpu_request_max_millis),
        (2000, 4000)
    );
    assert_eq!(d.min_replicas, 2);
    assert_eq!(d.min_pod_age, SignedDuration::from_mins(10));
    assert_eq!((d.max_evictions_per_node, d.max_evictions_per_run), (1, 10));
    assert_eq!(d.workload_cooldown, SignedDuration::from_mins(30));
    assert!(!d.evict_stateful_sets && !d.evict_local_storage);
}

#[test]
fn a_subset_overrides_only_what_it_names() {
    let p = Policy::from_yaml(
        "guards: {unknownLoad: 0.9}\ndescheduler: {hotAbove: 0.9, cpuRequest: {max: 6}}\n",
    )
    .unwrap();
    assert_eq!(p.guards.unknown_load, 0.9);
    assert_eq!(p.guards.max_unknown_fraction, 0.5);
    assert_eq!(p.descheduler.hot_above, 0.9);
    assert_eq!(p.descheduler.cpu_request_max_millis, 6000);
    assert_eq!(p.descheduler.cpu_request_min_millis, 2000);
    assert_eq!(p.metrics, Policy::default().metrics);
}

#[test]
fn a_metric_named_like_a_default_inherits_its_fields() {
    let yaml = r#"
metrics:
  - {name: cpu-avg-5m, filterAbove: 0.7}
  - {name: mem-avg-5m, filterAbove: null}
  - {name: cpu-sustained-10m, period: 30s}
"#;
    let p = Policy::from_yaml(yaml).unwrap();
    let cpu = p.metric("cpu-avg-5m").unwrap();
    assert_eq!(cpu.filter_above, Some(0.7));
    assert_eq!(cpu.weight, 0.5);
    assert_eq!(
        cpu.query,
        Policy::default().metric("cpu-avg-5m").unwrap().query
    );
    assert_eq!(
        p.metric("mem-avg-5m").unwrap().filter_above,
        None,
        "null turns the filter off"
    );
    let sustained = p.metric("cpu-sustained-10m").unwrap();
    assert_eq!(
        sustained.max_age,
        SignedDuration::from_secs(120),
        "default max age is 2 x period + 1m"
    );
    assert!(
        p.metric("cpu-max-1h").is_none(),
        "the list replaces the default list"
    );
}

#[test]
fn crane_keys_can_be_read() {
    let yaml = r#"
craneTimezone: Asia/Shanghai
metrics:
  - {name: cpu-avg-5m, annotation: cpu_usage_avg_5m, format: crane, maxAge: 8m}
  - {name: cpu-sustained-10m}
"#;
    let p = Policy::from_yaml(yaml).unwrap();
    let m = p.metric("cpu-avg-5m").unwrap();
    assert_eq!(m.annotation, "cpu_usage_avg_5m");
    assert_eq!(m.format, AnnotationFormat::Crane);
    assert_eq!(m.max_age, SignedDuration::from_mins(8));
    assert_eq!(p.crane_timezone_name, "Asia/Shanghai");
}

#[test]
fn unknown_fields_are_errors_with_their_path() {
    for (yaml, path) in [
        ("guards: {unknwnLoad: 1}", "guards.unknwnLoad"),
        (
            "descheduler: {cpuRequest: {mn: 1}}",
            "descheduler.cpuRequest.mn",
        ),
        ("metrics: [{name: x, wieght: 1}]", "metrics[0].wieght"),
        ("colector: {}", "colector"),
    ] {
        match Policy::from_yaml(yaml) {
            Err(PolicyError::Parse { path: p, message }) => {
                assert_eq!(p, path, "{yaml}");
                assert!(message.contains("unknown field"), "{message}");
            }
            other => panic!("{yaml}: expected a parse error, got {other:?}"),
        }
    }
}

#[test]
fn wrong_types_and_syntax_are_parse_errors() {
    let e = Policy::from_yaml("guards: {unknownLoad: high}").unwrap_err();
    assert!(
        matches!(&e, PolicyError::Parse { path, .. } if path == "guards.unknownLoad"),
        "{e}"
    );
    let e = Policy::from_yaml("metrics: [{name: x, resource: gpu}]").unwrap_err();
    assert!(
        matches!(&e, PolicyError::Parse { path, .. } if path == "metrics[0].resource"),
        "{e}"
    );
    assert!(matches!(
        Policy::from_yaml("guards: [").unwrap_err(),
        PolicyError::Parse { .. }
    ));
    assert!(matches!(
        Policy::from_yaml("nodeIdentity: {matchBy: [ip]}").unwrap_err(),
        PolicyError::Parse { .. }
    ));
}

#[test]
fn every_rule_names_its_field() {
    has_error("apiVersion: v1", "apiVersion", "realload.io/v1alpha1");
    has_error("kind: Config", "kind", "Policy");
    has_error("nodeIdentity: {label: ''}", "nodeIdentity.label", "empty");
    has_error(
        "nodeIdentity: {matchBy: []}",
        "nodeIdentity.matchBy",
        "at least one",
    );
    has_error("metrics: []", "metrics", "at least one metric");
    has_error(
        "metrics: [{name: cpu-avg-5m, weight: -1}, {name: cpu-sustained-10m}]",
        "metrics[0].weight",
        ">= 0",
    );
    has_error(
        "metrics: [{name: cpu-avg-5m, weight: 0}, {name: cpu-sustained-10m}]",
        "metrics",
        "at least one metric must have a weight",
    );
    has_error(
        "metrics: [{name: cpu-avg-5m, filterAbove: 0}, {name: cpu-sustained-10m}]",
        "metrics[0].filterAbove",
        "(0, 1]",
    );
    has_error(
        "metrics: [{name: cpu-avg-5m, filterAbove: 1.5}, {name: cpu-sustained-10m}]",
        "metrics[0].filterAbove",
        "(0, 1]",
    );
    has_error(
        "metrics: [{name: cpu-avg-5m, floor: 1}, {name: cpu-sustained-10m}]",
        "metrics[0].floor",
        "[0, 1)",
    );
    has_error(
        "metrics: [{name: cpu-avg-5m, period: soon}, {name: cpu-sustained-10m}]",
        "metrics[0].period",
        "not a duration",
    );
    has_error(
        "metrics: [{name: cpu-avg-5m, period: 0s}, {name: cpu-sustained-10m}]",
        "metrics[0].period",
        "> 0",
    );
    has_error(
        "metrics: [{name: cpu-avg-5m, maxAge: -1m}, {name: cpu-sustained-10m}]",
        "metrics[0].maxAge",
        "> 0",
    );
    has_error(
        "metrics: [{name: cpu-avg-5m}, {name: cpu-avg-5m}, {name: cpu-sustained-10m}]",
        "metrics[1].name",
        "duplicate",
    );
    has_error(
        "metrics: [{name: cpu-avg-5m}, {name: cpu-sustained-10m, annotation: realload.io/cpu-avg-5m}]",
        "metrics[1].annotation",
        "already used",
    );
    has_error(
        "metrics: [{name: cpu-avg-5m}, {name: cpu-sustained-10m}, {name: Bad_Name, resource: cpu, query: up}]",
        "metrics[2].name",
        "lowercase",
    );
    has_error(
        "metrics: [{name: cpu-avg-5m}, {name: cpu-sustained-10m}, {resource: cpu}]",
        "metrics[2].name",
        "required",
    );
    has_error(
        "metrics: [{name: cpu-avg-5m}, {name: cpu-sustained-10m}, {name: gpu, query: up}]",
        "metrics[2].resource",
        "required",
    );
    has_error(
        "metrics: [{name: cpu-avg-5m}, {name: cpu-sustained-10m}, {name: gpu, resource: cpu}]",
        "metrics[2].query",
        "required",
    );
    has_error(
        "metrics: [{name: cpu-avg-5m, annotation: 'bad key!'}, {name: cpu-sustained-10m}]",
        "metrics[0].annotation",
        "not a valid annotation key",
    );
    has_error(
        "metrics: [{name: cpu-avg-5m}]",
        "descheduler.hotMetric",
        "not defined",
    );
    has_error(
        "metrics: [{name: cpu-sustained-10m, weight: 1}]",
        "metrics",
        "cpu-avg-5m",
    );
    has_error(
        "descheduler: {hotMetric: nope}",
        "descheduler.hotMetric",
        "\"nope\" is not defined",
    );
    has_error("craneTimezone: Mars/Olympus", "craneTimezone", "time zone");
    has_error("guards: {unknownLoad: 1.5}", "guards.unknownLoad", "[0, 1]");
    has_error(
        "guards: {maxUnknownFraction: -0.1}",
        "guards.maxUnknownFraction",
        "[0, 1]",
    );
    has_error("hotspot: {cpuFactor: -1}", "hotspot.cpuFactor", ">= 0");
    has_error("collector: {deadband: 1}", "collector.deadband", "[0, 1)");
    has_error(
        "descheduler: {hotAbove: 0}",
        "descheduler.hotAbove",
        "(0, 1]",
    );
    has_error(
        "descheduler: {coolBelow: 2}",
        "descheduler.coolBelow",
        "(0, 1]",
    );
    has_error(
        "descheduler: {targetBelow: 0.8}",
        "descheduler.targetBelow",
        "below descheduler.hotAbove",
    );
    has_error(
        "descheduler: {cpuRequest: {min: 5}}",
        "descheduler.cpuRequest",
        "must not exceed",
    );
    has_error(
        "descheduler: {cpuRequest: {min: lots}}",
        "descheduler.cpuRequest.min",
        "invalid quantity",
    );
    has_error(
        "descheduler: {minReplicas: 1}",
        "descheduler.minReplicas",
        "at least 2",
    );
    has_error(
        "descheduler: {minPodAge: forever}",
        "descheduler.minPodAge",
        "not a duration",
    );
    has_error(
        "descheduler: {workloadCooldown: -5m}",
        "descheduler.workloadCooldown",
        ">= 0",
    );
}

#[test]
fn all_broken_rules_are_reported_together_and_display_names_them() {
    let e = Policy::from_yaml("guards: {unknownLoad: 2}\ncollector: {deadband: -1}").unwrap_err();
    assert_eq!(e.field_errors().len(), 2);
    let text = e.to_string();
    assert!(
        text.contains("guards.unknownLoad: must be in [0, 1], got 2"),
        "{text}"
    );
    assert!(text.contains("collector.deadband"), "{text}");
}

#[test]
fn cpu_request_accepts_strings_and_numbers() {
    let p = Policy::from_yaml("descheduler: {cpuRequest: {min: 1500m, max: 2.5}}").unwrap();
    assert_eq!(
        (
            p.descheduler.cpu_request_min_millis,
            p.descheduler.cpu_request_max_millis
        ),
        (1500, 2500)
    );
}

#[test]
fn annotation_keys() {
    assert!(is_annotation_key("realload.io/cpu-avg-5m"));
    assert!(is_annotation_key("cpu_usage_avg_5m"));
    assert!(!is_annotation_key("realload.io/"));
    assert!(!is_annotation_key("Real Load/x"));
    assert!(!is_annotation_key("-x"));
}

#[test]
fn field_values_cover_the_defaults() {
    let values = field_values(&Policy::default());
    let get = |k: &str| values.iter().find(|(p, _)| p == k).map(|(_, v)| v.as_str());
    assert_eq!(get("guards.unknownLoad"), Some("1"));
    assert_eq!(get("metrics[cpu-avg-5m].maxAge"), Some("3m"));
    assert_eq!(get("metrics[cpu-max-1h].filterAbove"), Some("none"));
    assert_eq!(get("descheduler.cpuRequest.min"), Some("2000m"));
    assert_eq!(
        get("nodeIdentity.matchBy"),
        Some("[name, internalIP, hostname]")
    );
}

#[test]
fn the_protected_set_and_the_unknown_cap_are_checked() {
    has_error(
        "descheduler: {protected: {selectors: [{}]}}",
        "descheduler.protected.selectors[0]",
        "empty selector",
    );
    has_error(
        "descheduler: {protected: {selectors: [{matchExpressions: [{key: a, operator: Near}]}]}}",
        "descheduler.protected.selectors[0].matchExpressions[0].operator",
        "not one of In, NotIn, Exists, DoesNotExist",
    );
    has_error(
        "descheduler: {protected: {selectors: [{matchExpressions: [{key: a, operator: In}]}]}}",
        "descheduler.protected.selectors[0].matchExpressions[0].values",
        "must not be empty",
    );
    has_error(
        "descheduler: {protected: {apps: [ok, \"bad name\"]}}",
        "descheduler.protected.apps",
        "entry 1 (\"bad name\") contains whitespace",
    );
    has_error(
        "guards: {unknownPodCap: 1001}",
        "guards.unknownPodCap",
        "[0, 1000]",
    );
    has_error(
        "guards: {unknownPodCap: 4294967296}",
        "guards.unknownPodCap",
        "[0, 1000]",
    );
    assert!(matches!(
        Policy::from_yaml("guards: {unknownPodCap: -1}"),
        Err(PolicyError::Parse { .. })
    ));
    let p = Policy::from_yaml(
        "guards: {unknownPodCap: 0}\ndescheduler: {protected: {namespaces: [team-*]}}",
    )
    .unwrap();
    assert_eq!(p.guards.unknown_pod_cap, 0);
    assert!(p.descheduler.protected.namespaces.matches("team-a"));
    assert!(
        !p.descheduler.protected.namespaces.matches("kube-system"),
        "a list replaces its default"
    );
    assert!(
        p.descheduler
            .protected
            .apps
            .matches("ingress-nginx-controller"),
        "the others keep theirs"
    );
}

#[test]
fn huge_durations_and_replica_counts_are_refused_not_overflowed() {
    // both crashed before: `period * 2` overflowed, and `now - maxAge` later
    has_error(
        "metrics: [{name: cpu-avg-5m, period: 2000000000000000h}]",
        "metrics[0].period",
        "at most 366d",
    );
    has_error(
        "metrics: [{name: cpu-avg-5m, maxAge: 2000000000000000h}]",
        "metrics[0].maxAge",
        "at most 366d",
    );
    has_error(
        "descheduler: {workloadCooldown: 9000000h}",
        "descheduler.workloadCooldown",
        "at most 366d",
    );
    has_error(
        "descheduler: {minReplicas: 2147483648}",
        "descheduler.minReplicas",
        "at most 1000000",
    );
    let at_the_bound = errors_of("metrics: [{name: cpu-avg-5m, period: 8784h}]");
    assert!(
        at_the_bound
            .iter()
            .all(|e| !e.path.starts_with("metrics[0].period")),
        "{at_the_bound:?}"
    );
    assert!(MAX_MIN_REPLICAS < i32::MAX as u32);
}

#[test]
fn a_byte_order_mark_and_deep_nesting_get_the_right_message() {
    let p = Policy::from_yaml("\u{feff}apiVersion: realload.io/v1alpha1\nkind: Policy\n");
    assert!(p.is_ok(), "{p:?}");
    let deep = format!("metrics: {}{}", "[".repeat(100_000), "]".repeat(100_000));
    let e = Policy::from_yaml(&deep).unwrap_err().to_string();
    assert!(e.contains("nesting deeper than 64"), "{e}");
    let big = format!("# {}\n", "x".repeat(2 << 20));
    let e = Policy::from_yaml(&big).unwrap_err().to_string();
    assert!(e.contains("at most 1048576"), "{e}");
}

#[test]
fn the_reading_window_is_a_duration_up_to_an_hour() {
    has_error(
        "hotspot: {readingWindow: -1m}",
        "hotspot.readingWindow",
        ">= 0",
    );
    has_error(
        "hotspot: {readingWindow: soon}",
        "hotspot.readingWindow",
        "not a duration",
    );
    has_error(
        "hotspot: {readingWindow: 2h}",
        "hotspot.readingWindow",
        "at most 1h",
    );
    let p = Policy::from_yaml("hotspot: {readingWindow: 0s}").unwrap();
    assert_eq!(p.hotspot.reading_window, SignedDuration::ZERO);
    let p = Policy::from_yaml("hotspot: {readingWindow: 1h}").unwrap();
    assert_eq!(p.hotspot.reading_window, SignedDuration::from_hours(1));
}

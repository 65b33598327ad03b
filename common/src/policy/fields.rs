//! Every policy field by its documented path, for docs checks and `explain`.

use super::*;

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
            "guards.neverStrand".into(),
            policy.guards.never_strand.to_string(),
        ),
        (
            "guards.unknownLastResort".into(),
            policy.guards.unknown_last_resort.to_string(),
        ),
        (
            "scoring.idleBelow".into(),
            policy.scoring.idle_below.to_string(),
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
            "hotspot.includePod".into(),
            policy.hotspot.include_pod.to_string(),
        ),
        (
            "hotspot.reserveRanked".into(),
            policy.hotspot.reserve_ranked.to_string(),
        ),
        (
            "hotspot.readingWindow".into(),
            format!("{:#}", policy.hotspot.reading_window),
        ),
        (
            "collector.deadband".into(),
            policy.collector.deadband.to_string(),
        ),
        (
            "workloadUsage.enabled".into(),
            policy.workload_usage.enabled.to_string(),
        ),
        (
            "workloadUsage.configMap".into(),
            policy.workload_usage.config_map.clone(),
        ),
        (
            "workloadUsage.cpuQuery".into(),
            policy.workload_usage.cpu_query.clone(),
        ),
        (
            "workloadUsage.memoryQuery".into(),
            policy
                .workload_usage
                .memory_query
                .clone()
                .unwrap_or_else(|| "null".into()),
        ),
        (
            "workloadUsage.period".into(),
            format!("{:#}", policy.workload_usage.period),
        ),
        (
            "workloadUsage.maxAge".into(),
            format!("{:#}", policy.workload_usage.max_age),
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

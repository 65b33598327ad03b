use super::*;
use k8s_openapi::api::core::v1::Node;

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

const NOW: &str = "2026-11-22T01:05:00Z";

fn view(name: &str, ip: &str) -> NodeView {
    let node: Node = serde_json::from_value(serde_json::json!({"metadata": {"name": name},
        "status": {"addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": format!("host-{name}")}]}}))
    .unwrap();
    NodeView::from_node(&node, &Policy::default())
}

fn series(identity: &str, value: f64) -> Series {
    series_at(identity, value, NOW)
}

fn series_at(identity: &str, value: f64, at: &str) -> Series {
    Series {
        identity: identity.into(),
        sample: Ok((value, ts(at))),
    }
}

fn one_metric(result: MetricResult) -> BTreeMap<String, MetricResult> {
    [("cpu-avg-5m".to_string(), result)].into()
}

fn at_now() -> Timestamp {
    ts(NOW)
}

#[test]
fn series_map_to_nodes_by_name_ip_or_hostname_with_ports_stripped() {
    let nodes = vec![
        view("n1", "10.0.0.1"),
        view("n2", "10.0.0.2"),
        view("n3", "10.0.0.3"),
    ];
    let p = Policy::default();
    let results = one_metric(MetricResult::Series(vec![
        series("n1", 0.5),
        series("10.0.0.2:9100", 0.25),
        series("host-n3:9100", 0.125),
        series("stranger:9100", 0.9),
    ]));
    let plan = plan(&p, &nodes, &HashMap::new(), &results, at_now());
    let annotations: BTreeMap<&str, &str> = plan
        .patches
        .iter()
        .map(|pa| {
            (
                pa.node.as_str(),
                pa.annotations["realload.io/cpu-avg-5m"].as_str(),
            )
        })
        .collect();
    assert_eq!(annotations["n1"], "0.5000,2026-11-22T01:05:00Z");
    assert_eq!(annotations["n2"], "0.2500,2026-11-22T01:05:00Z");
    assert_eq!(annotations["n3"], "0.1250,2026-11-22T01:05:00Z");
    assert!(plan.skipped.is_empty(), "{:?}", plan.skipped);
    assert_eq!(plan.coverage["cpu-avg-5m"], 3);
    assert_eq!(strip_port("[fd00::1]:9100"), "fd00::1");
    assert_eq!(strip_port("fd00::1"), "fd00::1");
}

#[test]
fn every_untrusted_case_writes_nothing_and_names_its_reason() {
    let names = ["nan", "inf", "neg", "big", "zero", "dup", "absent", "ok"];
    let nodes: Vec<NodeView> = names
        .iter()
        .enumerate()
        .map(|(i, n)| view(n, &format!("10.0.1.{i}")))
        .collect();
    let p = Policy::default();
    let results = one_metric(MetricResult::Series(vec![
        series("nan", f64::NAN),
        series("inf", f64::INFINITY),
        series("neg", -0.1),
        series("big", 1.2),
        series("zero", 0.0),
        series("dup", 0.3),
        series("dup:9100", 0.4),
        series("ok", 0.42),
    ]));
    let plan = plan(&p, &nodes, &HashMap::new(), &results, at_now());
    let reason = |node: &str| {
        plan.skipped
            .iter()
            .find(|s| s.node == node)
            .map(|s| s.reason)
    };
    assert_eq!(reason("nan"), Some(SkipReason::Nan));
    assert_eq!(reason("inf"), Some(SkipReason::Infinite));
    assert_eq!(reason("neg"), Some(SkipReason::Negative));
    assert_eq!(reason("big"), Some(SkipReason::AboveOne));
    assert_eq!(reason("zero"), Some(SkipReason::SuspectZero));
    assert_eq!(reason("dup"), Some(SkipReason::Ambiguous));
    assert_eq!(reason("absent"), Some(SkipReason::Absent));
    assert_eq!(reason("ok"), None);
    assert_eq!(plan.patches.len(), 1);
    assert_eq!(plan.patches[0].node, "ok");
    for (failure, why) in [
        (SkipReason::QueryFailed, "failed"),
        (SkipReason::QueryError, "error"),
    ] {
        let plan = plan_failed(&p, &nodes, failure);
        assert!(plan.patches.is_empty(), "{why}");
        assert_eq!(plan.skipped.len(), nodes.len());
        assert!(plan.skipped.iter().all(|s| s.reason == failure));
    }
}

fn plan_failed(p: &Policy, nodes: &[NodeView], reason: SkipReason) -> Plan {
    plan(
        p,
        nodes,
        &HashMap::new(),
        &one_metric(MetricResult::Failed(reason)),
        at_now(),
    )
}

#[test]
fn writes_are_suppressed_within_the_deadband_unless_the_old_reading_would_go_stale() {
    let nodes = vec![view("n1", "10.0.0.1")];
    let p = Policy::default();
    let existing = |value: &str| -> HashMap<String, BTreeMap<String, String>> {
        [(
            "n1".to_string(),
            [("realload.io/cpu-avg-5m".to_string(), value.to_string())].into(),
        )]
        .into()
    };
    let results = one_metric(MetricResult::Series(vec![series("n1", 0.51)]));
    // 0.50 written a minute ago: moved 0.01 < 0.02 deadband, fresh at the next cycle → suppressed
    let plan_a = plan(
        &p,
        &nodes,
        &existing("0.5000,2026-11-22T01:04:00Z"),
        &results,
        at_now(),
    );
    assert!(plan_a.patches.is_empty());
    assert_eq!(plan_a.suppressed, 1);
    // moved beyond the deadband → written
    let results_far = one_metric(MetricResult::Series(vec![series("n1", 0.53)]));
    assert_eq!(
        plan(
            &p,
            &nodes,
            &existing("0.5000,2026-11-22T01:04:00Z"),
            &results_far,
            at_now()
        )
        .patches
        .len(),
        1
    );
    // same value but written 2m30s ago: max age 3m would pass before the next cycle → heartbeat
    let plan_b = plan(
        &p,
        &nodes,
        &existing("0.5000,2026-11-22T01:02:30Z"),
        &results,
        at_now(),
    );
    assert_eq!(plan_b.patches.len(), 1);
    // an unparsable existing annotation is replaced
    assert_eq!(
        plan(&p, &nodes, &existing("garbage"), &results, at_now())
            .patches
            .len(),
        1
    );
}

#[test]
fn one_patch_per_node_carries_all_changed_keys_and_crane_format_is_written_as_crane() {
    let nodes = vec![view("n1", "10.0.0.1")];
    let p = Policy::from_yaml(
        "craneTimezone: Asia/Shanghai\nmetrics:\n- {name: cpu-avg-5m, annotation: cpu_usage_avg_5m, format: crane}\n- {name: mem-avg-5m}\n- {name: cpu-sustained-10m}\n",
    )
    .unwrap();
    let results: BTreeMap<String, MetricResult> = [
        (
            "cpu-avg-5m".to_string(),
            MetricResult::Series(vec![series("n1", 0.63012)]),
        ),
        (
            "mem-avg-5m".to_string(),
            MetricResult::Series(vec![series("n1", 0.4)]),
        ),
    ]
    .into();
    let plan = plan(&p, &nodes, &HashMap::new(), &results, at_now());
    assert_eq!(plan.patches.len(), 1);
    let a = &plan.patches[0].annotations;
    assert_eq!(a.len(), 2);
    assert_eq!(a["cpu_usage_avg_5m"], "0.63010,2026-11-22T09:05:00Z");
    assert_eq!(a["realload.io/mem-avg-5m"], "0.4000,2026-11-22T01:05:00Z");
}

#[test]
fn per_node_results_from_a_direct_source() {
    let nodes = vec![view("n1", "10.0.0.1"), view("n2", "10.0.0.2")];
    let p = Policy::default();
    let map: HashMap<String, Result<(f64, Timestamp), SkipReason>> = [
        ("n1".to_string(), Ok((0.3, ts(NOW)))),
        ("n2".to_string(), Err(SkipReason::WarmingUp)),
    ]
    .into();
    let plan = plan(
        &p,
        &nodes,
        &HashMap::new(),
        &one_metric(MetricResult::PerNode(map)),
        at_now(),
    );
    assert_eq!(plan.patches.len(), 1);
    assert_eq!(
        plan.skipped,
        vec![Skip {
            node: "n2".into(),
            metric: "cpu-avg-5m".into(),
            reason: SkipReason::WarmingUp
        }]
    );
}

#[test]
fn only_readings_valid_at_write_time_are_written_and_never_over_a_newer_one() {
    let nodes = vec![view("n1", "10.0.0.1")];
    let p = Policy::default();
    let existing = |value: &str| -> HashMap<String, BTreeMap<String, String>> {
        [(
            "n1".to_string(),
            [("realload.io/cpu-avg-5m".to_string(), value.to_string())].into(),
        )]
        .into()
    };
    let one = |at: &str| one_metric(MetricResult::Series(vec![series_at("n1", 0.5, at)]));
    let reasons =
        |plan: &Plan| -> Vec<SkipReason> { plan.skipped.iter().map(|s| s.reason).collect() };
    // a nine-day-old sample (max age 3m) would be stale on arrival: skipped, even over nothing
    let stale = plan(
        &p,
        &nodes,
        &HashMap::new(),
        &one("2026-11-13T01:05:00Z"),
        at_now(),
    );
    assert!(stale.patches.is_empty());
    assert_eq!(reasons(&stale), [SkipReason::Stale]);
    assert_eq!(stale.coverage["cpu-avg-5m"], 0);
    // ... and over a fresher valid annotation from the same minute
    let over = plan(
        &p,
        &nodes,
        &existing("0.4000,2026-11-22T01:04:30Z"),
        &one("2026-11-13T01:05:00Z"),
        at_now(),
    );
    assert!(over.patches.is_empty());
    assert_eq!(reasons(&over), [SkipReason::Stale]);
    // just inside max age: written
    assert_eq!(
        plan(
            &p,
            &nodes,
            &HashMap::new(),
            &one("2026-11-22T01:02:00Z"),
            at_now()
        )
        .patches
        .len(),
        1
    );
    // samples from 2031 or from 1970 are not written either
    assert_eq!(
        reasons(&plan(
            &p,
            &nodes,
            &HashMap::new(),
            &one("2031-01-01T00:00:00Z"),
            at_now()
        )),
        [SkipReason::InFuture]
    );
    assert_eq!(
        reasons(&plan(
            &p,
            &nodes,
            &HashMap::new(),
            &one("1970-01-01T00:00:00Z"),
            at_now()
        )),
        [SkipReason::Stale]
    );
    // a little clock skew is tolerated
    assert_eq!(
        plan(
            &p,
            &nodes,
            &HashMap::new(),
            &one("2026-11-22T01:05:20Z"),
            at_now()
        )
        .patches
        .len(),
        1
    );
    // an older sample never replaces a newer one, however far it moved
    let older = plan(
        &p,
        &nodes,
        &existing("0.9000,2026-11-22T01:04:50Z"),
        &one("2026-11-22T01:04:00Z"),
        at_now(),
    );
    assert!(older.patches.is_empty());
    assert_eq!(reasons(&older), [SkipReason::OlderThanCurrent]);
    // the very sample already on the node is not written again, every cycle
    let same = plan(
        &p,
        &nodes,
        &existing("0.5000,2026-11-22T01:02:30Z"),
        &one("2026-11-22T01:02:30Z"),
        at_now(),
    );
    assert!(same.patches.is_empty() && same.skipped.is_empty());
    assert_eq!(same.suppressed, 1);
    // a garbage annotation dated in the future does not block fresh readings
    let future = plan(
        &p,
        &nodes,
        &existing("0.5000,2031-01-01T00:00:00Z"),
        &one(NOW),
        at_now(),
    );
    assert_eq!(future.patches.len(), 1);
    // a sample the source could not read is named for what it is
    let unreadable = one_metric(MetricResult::Series(vec![Series {
        identity: "n1".into(),
        sample: Err(SkipReason::Unparsable),
    }]));
    assert_eq!(
        reasons(&plan(&p, &nodes, &HashMap::new(), &unreadable, at_now())),
        [SkipReason::Unparsable]
    );
}

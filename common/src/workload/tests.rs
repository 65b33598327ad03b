use super::*;

fn key(ns: &str, kind: &str, name: &str) -> WorkloadKey {
    WorkloadKey {
        namespace: ns.into(),
        kind: kind.into(),
        name: name.into(),
    }
}

fn at(s: &str) -> Timestamp {
    s.parse().unwrap()
}

#[test]
fn a_deployments_replica_sets_fold_into_the_deployment() {
    assert_eq!(
        WorkloadKey::from_parts(
            Some("shop"),
            Some(("ReplicaSet", "api-7d9f8c")),
            Some("7d9f8c")
        ),
        Some(key("shop", "Deployment", "api"))
    );
    // a ReplicaSet not named after the hash (made by hand) stays a ReplicaSet
    assert_eq!(
        WorkloadKey::from_parts(Some("shop"), Some(("ReplicaSet", "api")), Some("7d9f8c")),
        Some(key("shop", "ReplicaSet", "api"))
    );
    assert_eq!(
        WorkloadKey::from_parts(Some("shop"), Some(("ReplicaSet", "7d9f8c")), Some("7d9f8c")),
        Some(key("shop", "ReplicaSet", "7d9f8c")),
        "nothing left of the name once the hash is stripped"
    );
    assert_eq!(
        WorkloadKey::from_parts(None, Some(("StatefulSet", "db")), None),
        Some(key("default", "StatefulSet", "db"))
    );
    assert_eq!(WorkloadKey::from_parts(Some("shop"), None, None), None);
    assert_eq!(
        WorkloadKey::from_parts(Some("shop"), Some(("", "x")), None),
        None
    );
}

#[test]
fn a_pods_workload_comes_from_its_controller_reference_only() {
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "api-7d9f8c-x1", "namespace": "shop",
            "labels": {"pod-template-hash": "7d9f8c"},
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "ConfigMap", "name": "other", "uid": "a"},
                {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "api-7d9f8c", "uid": "b", "controller": true}]}
    }))
    .unwrap();
    assert_eq!(
        WorkloadKey::of(&pod),
        Some(key("shop", "Deployment", "api"))
    );
    assert_eq!(WorkloadKey::of(&Pod::default()), None);
}

#[test]
fn learning_sums_usage_over_requests_per_workload() {
    let api = key("shop", "Deployment", "api");
    let db = key("shop", "StatefulSet", "db");
    let sample = |w: &WorkloadKey, cpu_req, cpu, mem_req, mem| PodSample {
        workload: std::sync::Arc::new(w.clone()),
        cpu_request_millis: cpu_req,
        memory_request_bytes: mem_req,
        cpu_cores: cpu,
        memory_bytes: mem,
    };
    let samples = [
        sample(&api, 1000, Some(0.2), 1 << 30, Some(512.0 * 1048576.0)),
        sample(&api, 1000, Some(0.4), 1 << 30, None),
        // untrustworthy samples never count
        sample(&api, 1000, Some(f64::NAN), 1 << 30, Some(-1.0)),
        // no CPU request: its CPU says nothing about a share of requests
        sample(&db, 0, Some(3.0), 1 << 30, Some(2.0 * 1073741824.0)),
        sample(&key("x", "Job", "j"), 500, None, 0, None),
    ];
    let t = learn(&samples, at("2026-12-01T12:00:00Z"));
    assert_eq!(
        t.workloads[&api],
        UsageEntry {
            cpu: Some(0.3),
            memory: Some(0.5),
            pods: 2
        }
    );
    assert_eq!(
        t.workloads[&db],
        UsageEntry {
            cpu: None,
            memory: Some(2.0),
            pods: 1
        }
    );
    assert_eq!(
        t.workloads.len(),
        2,
        "a workload with nothing measured is left out"
    );
}

#[test]
fn a_table_round_trips_and_ages_out() {
    let api = key("shop", "Deployment", "api");
    let mut t = UsageTable {
        updated: Some(at("2026-12-01T12:00:00Z")),
        ..UsageTable::default()
    };
    t.workloads.insert(
        api.clone(),
        UsageEntry {
            cpu: Some(0.001),
            memory: Some(25.0),
            pods: 3,
        },
    );
    let back = UsageTable::parse(&t.to_json()).unwrap();
    assert_eq!(back, t);
    assert_eq!(
        back.ratios(&api),
        Some(UsageRatios {
            cpu: Some(MIN_RATIO),
            memory: Some(MAX_RATIO)
        }),
        "shares are clamped"
    );
    let max_age = SignedDuration::from_mins(30);
    assert!(back.is_current(at("2026-12-01T12:30:00Z"), max_age));
    assert!(!back.is_current(at("2026-12-01T12:30:01Z"), max_age));
    // a little clock skew is fine; a date far ahead would never age out, so it does not count
    assert!(back.is_current(at("2026-12-01T11:56:00Z"), max_age));
    assert!(!back.is_current(at("2026-12-01T11:54:59Z"), max_age));
    assert!(!UsageTable::default().is_current(at("2026-12-01T12:00:00Z"), max_age));
}

#[test]
fn a_broken_table_is_rejected_with_what_breaks_it() {
    let cases = [
        ("", "(root)"),
        ("{}", "missing field `updated`"),
        (r#"{"updated":"yesterday","workloads":{}}"#, "updated"),
        (
            r#"{"updated":"2026-12-01T12:00:00Z","workloads":{"shop/api":{"cpu":0.3,"pods":1}}}"#,
            "\"shop/api\": not namespace/Kind/name",
        ),
        (
            r#"{"updated":"2026-12-01T12:00:00Z","workloads":{"a/B/c":{"cpu":-0.3,"pods":1}}}"#,
            "cpu must be a number >= 0, got -0.3",
        ),
        (
            r#"{"updated":"2026-12-01T12:00:00Z","workloads":{"a/B/c":{"pods":1}}}"#,
            "neither cpu nor memory",
        ),
        (
            r#"{"updated":"2026-12-01T12:00:00Z","workloads":{"a/B/c":{"cpu":1,"pods":1,"x":2}}}"#,
            "unknown field `x`",
        ),
        (
            r#"{"updated":"2026-12-01T12:00:00Z","workloads":{"a/B/c":{"cpu":"0.5","pods":1}}}"#,
            "workloads.a/B/c.cpu",
        ),
    ];
    for (text, expected) in cases {
        let e = UsageTable::parse(text).unwrap_err().to_string();
        assert!(e.contains(expected), "{text:?}: {e}");
    }
    let huge = " ".repeat(MAX_TABLE_BYTES + 1);
    assert!(matches!(
        UsageTable::parse(&huge),
        Err(UsageTableError::TooLarge(_))
    ));
}

#[test]
fn expected_usage_falls_back_to_the_factors_per_resource() {
    let e = ExpectedUsage::new(
        Some(UsageRatios {
            cpu: Some(0.3),
            memory: None,
        }),
        0.85,
        0.7,
    );
    assert_eq!(
        (e.cpu_share, e.cpu_learned, e.memory_share, e.memory_learned),
        (0.3, true, 0.7, false)
    );
    let none = ExpectedUsage::new(None, 0.85, 0.7);
    assert_eq!((none.cpu_share, none.cpu_learned), (0.85, false));
}

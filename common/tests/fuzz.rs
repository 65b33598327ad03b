//! Every parser of outside input in `common`, fed arbitrary and mutated input: no panic, and a
//! typed error or a value. `PROPTEST_CASES=100000 cargo test -p realload-common --test fuzz` runs
//! a longer campaign (see docs/benchmarks.md).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: failing loudly is right

use std::collections::BTreeMap;

use proptest::prelude::*;
use realload_common::policy::Policy;
use realload_common::reading::{AnnotationFormat, parse_annotation};
use realload_common::snapshot::load_snapshot;
use realload_common::whitelist::Whitelist;

const POLICY: &str = include_str!("../../deploy/base/policy.yaml");

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(3_000),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// `text` with a few bytes replaced, inserted or removed (kept valid UTF-8 by working on chars).
fn mutated(text: &'static str) -> impl Strategy<Value = String> {
    let chars: Vec<char> = text.chars().collect();
    let len = chars.len().max(1);
    proptest::collection::vec((0..len, any::<char>(), 0u8..3), 1..8).prop_map(move |edits| {
        let mut c = chars.clone();
        for (at, ch, op) in edits {
            let at = at.min(c.len());
            match op {
                0 if at < c.len() => c[at] = ch,
                1 => c.insert(at, ch),
                _ if at < c.len() => {
                    c.remove(at);
                }
                _ => c.push(ch),
            }
        }
        c.into_iter().collect()
    })
}

const SNAPSHOT: &str = r#"{"apiVersion":"v1","kind":"List","items":[
{"apiVersion":"v1","kind":"Node","metadata":{"name":"n1","annotations":{"realload.io/cpu-avg-5m":"0.5000,2026-11-22T01:04:00Z"}},"status":{"allocatable":{"cpu":"8","memory":"32Gi"}}},
{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","namespace":"d"},"spec":{"nodeName":"n1","containers":[{"name":"c","resources":{"requests":{"cpu":"2"}}}]}}]}"#;

const USAGE_TABLE: &str = r#"{"updated":"2026-12-01T12:00:00Z","workloads":{"shop/Deployment/api":{"cpu":0.35,"memory":0.61,"pods":3},"db/StatefulSet/pg":{"cpu":1.2,"pods":2}}}"#;

proptest! {
    #![proptest_config(config())]

    /// The learned usage table: a ConfigMap anyone with edit rights may change by hand.
    #[test]
    fn usage_tables(text in prop_oneof![any::<String>(), mutated(USAGE_TABLE)]) {
        if let Ok(table) = realload_common::workload::UsageTable::parse(&text) {
            // whatever it accepted holds only shares a node's estimate can use
            for key in table.workloads.keys() {
                let r = table.ratios(key).unwrap();
                for share in [r.cpu, r.memory].into_iter().flatten() {
                    prop_assert!(share.is_finite() && share > 0.0);
                }
            }
        }
    }

    #[test]
    fn policy_files(text in prop_oneof![any::<String>(), mutated(POLICY)]) {
        let _ = Policy::from_yaml(&text);
    }

    #[test]
    fn annotation_values(text in prop_oneof![
        any::<String>(),
        mutated("0.4200,2026-11-22T01:04:00Z"),
        mutated("42.00,2026-11-22 01:04:00"),
    ]) {
        let tz = jiff::tz::TimeZone::UTC;
        for format in [AnnotationFormat::Realload, AnnotationFormat::Crane] {
            if let Ok(reading) = parse_annotation(&text, format, &tz) {
                prop_assert!((0.0..=1.0).contains(&reading.ratio), "{reading:?}");
            }
        }
    }

    #[test]
    fn snapshot_files(text in prop_oneof![any::<String>(), mutated(SNAPSHOT)]) {
        let _ = load_snapshot(&text);
        let as_yaml = text.replacen('{', "\n", 1);
        let _ = load_snapshot(&as_yaml);
    }

    #[test]
    fn whitelists(entries in proptest::collection::btree_map(
        prop_oneof![Just("namespaces".to_string()), Just("apps".to_string()), Just("nodes".to_string()), any::<String>()],
        prop_oneof![any::<String>(), mutated("kube-system\nmonitoring\n# comment\nteam-*")],
        0..4,
    )) {
        let data: BTreeMap<String, String> = entries;
        if let Ok(w) = Whitelist::from_data(&data) {
            let _ = w.namespaces.matches("default");
        }
    }
}

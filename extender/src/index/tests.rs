use super::*;
use jiff::SignedDuration;
use serde_json::json;

const NOW: &str = "2026-11-22T01:05:00Z";

fn at(t: &str) -> Timestamp {
    t.parse().unwrap()
}

fn node(name: &str, sampled: &str, cpu: f64) -> Node {
    serde_json::from_value(json!({"metadata": {"name": name, "annotations": {
        "realload.io/cpu-avg-5m": format!("{cpu},{sampled}"),
        "realload.io/cpu-max-1h": format!("{cpu},{sampled}"),
        "realload.io/mem-avg-5m": format!("0.3,{sampled}")}},
        "status": {"allocatable": {"cpu": "8", "memory": "32Gi"}}}))
    .unwrap()
}

fn bare(name: &str) -> Node {
    serde_json::from_value(json!({"metadata": {"name": name},
        "status": {"allocatable": {"cpu": "8", "memory": "32Gi"}}}))
    .unwrap()
}

fn pod(uid: &str, node: &str, bound: &str) -> Pod {
    serde_json::from_value(json!({"metadata": {"name": uid, "uid": uid},
        "spec": {"nodeName": node, "containers": [{"name": "c", "resources": {"requests": {"cpu": "2"}}}]},
        "status": {"phase": "Running", "conditions": [{"type": "PodScheduled", "status": "True", "lastTransitionTime": bound}]}}))
    .unwrap()
}

fn daemon_pod(uid: &str, node: &str, bound: &str) -> Pod {
    let mut p = pod(uid, node, bound);
    p.metadata.owner_references = Some(vec![serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet", "name": "ds", "uid": "u", "controller": true}))
    .unwrap()]);
    p
}

fn index(now: &str) -> Index {
    Index::new(Policy::default(), Clock::Fixed(at(now)))
}

#[test]
fn ledger_keeps_pods_until_a_reading_shows_them_in_full() {
    let s = index("2026-11-22T01:10:00Z");
    s.load_snapshot(&[node("n1", "2026-11-22T01:08:00Z", 0.4)], &[]);
    // bound 5 minutes (the reading window) before the sample: shown in full, not kept
    s.apply_pod(&pod("shown", "n1", "2026-11-22T01:03:00Z"));
    // 4 minutes before: the 5-minute average shows a fifth of it yet
    s.apply_pod(&pod("old", "n1", "2026-11-22T01:04:00Z"));
    // after the sample: not shown at all
    s.apply_pod(&pod("new", "n1", "2026-11-22T01:08:30Z"));
    assert_eq!(s.current().ledger_len, 2);
    let a = s.current().assess("n1", 0, at("2026-11-22T01:10:00Z"));
    assert!((a.hotspot.cpu - 2000.0 * 0.85 * 1.2 / 8000.0).abs() < 1e-9);
    // a newer sample, a minute after "new": "old" shown in full, four fifths of "new" not yet
    s.apply_node(&node("n1", "2026-11-22T01:09:30Z", 0.6));
    assert_eq!(s.current().ledger_len, 1);
    let a = s.current().assess("n1", 0, at("2026-11-22T01:10:00Z"));
    assert!((a.hotspot.cpu - 2000.0 * 0.85 * 0.8 / 8000.0).abs() < 1e-9);
}

#[test]
fn with_a_zero_reading_window_a_new_reading_clears_the_pods_bound_before_it() {
    let mut policy = Policy::default();
    policy.hotspot.reading_window = SignedDuration::ZERO;
    let s = Index::new(policy, Clock::Fixed(at(NOW)));
    s.load_snapshot(&[node("n1", "2026-11-22T01:04:00Z", 0.4)], &[]);
    s.apply_pod(&pod("old", "n1", "2026-11-22T01:03:00Z"));
    s.apply_pod(&pod("new", "n1", "2026-11-22T01:04:30Z"));
    assert_eq!(s.current().ledger_len, 1);
    let a = s.current().assess("n1", 0, at(NOW));
    assert!((a.hotspot.cpu - 2000.0 * 0.85 / 8000.0).abs() < 1e-9);
    // a reading sampled after the binding covers it
    s.apply_node(&node("n1", "2026-11-22T01:04:45Z", 0.6));
    assert_eq!(s.current().ledger_len, 0);
}

#[test]
fn deleted_and_finished_pods_leave_the_ledger() {
    let s = index(NOW);
    s.load_snapshot(&[node("n1", "2026-11-22T01:04:00Z", 0.4)], &[]);
    let p = pod("p", "n1", "2026-11-22T01:04:30Z");
    s.apply_pod(&p);
    assert_eq!(s.current().ledger_len, 1);
    let mut done = p.clone();
    done.status.as_mut().unwrap().phase = Some("Succeeded".into());
    s.apply_pod(&done);
    assert_eq!(s.current().ledger_len, 0);
    s.apply_pod(&p);
    s.delete_pod(&p);
    assert_eq!(s.current().ledger_len, 0);
}

#[test]
fn without_a_valid_reading_the_ledger_is_bounded_by_the_horizon() {
    let s = index(NOW);
    s.load_snapshot(
        &[],
        &[
            pod("ancient", "ghost", "2026-11-22T00:00:00Z"),
            pod("recent", "ghost", "2026-11-22T01:04:00Z"),
        ],
    );
    assert_eq!(s.current().ledger_len, 1);
}

#[test]
fn sync_follows_both_watches_and_is_announced() {
    let s = index(NOW);
    let rx = s.subscribe_synced();
    assert!(!s.current().synced());
    s.nodes_init();
    s.nodes_init_done();
    assert!(!s.current().synced() && !*rx.borrow());
    s.pods_init();
    s.pods_init_done();
    assert!(s.current().synced() && *rx.borrow());
    s.mark_unsynced(false, true);
    assert!(!s.current().synced() && !*rx.borrow());
}

#[test]
fn cached_judgements_follow_time_readings_and_bindings() {
    let s = index(NOW);
    s.load_snapshot(&[node("n1", "2026-11-22T01:04:00Z", 0.9)], &[]);
    let g = s.current();
    let first = g.judge("n1", at("2026-11-22T01:05:00Z"));
    assert!(!first.verdict.passes());
    // still within max age: the same answer (from the cache)
    assert_eq!(g.judge("n1", at("2026-11-22T01:06:30Z")), first);
    // past max age the reading is stale: the node is unknown and passes
    let later = g.judge("n1", at("2026-11-22T01:07:01Z"));
    assert!(!later.known && later.verdict.passes());
    // a binding changes the estimate at once
    s.load_snapshot(&[node("n1", "2026-11-22T01:04:00Z", 0.5)], &[]);
    let before = s.current().judge("n1", at(NOW));
    s.apply_pod(&pod("new", "n1", "2026-11-22T01:04:30Z"));
    let after = s.current().judge("n1", at(NOW));
    assert!(after.score < before.score);
    // and equals what a fresh assessment says
    let g = s.current();
    assert_eq!(
        after,
        scoring::judge(&g.policy, &g.assess("n1", 0, at(NOW)))
    );
}

#[test]
fn a_generation_never_changes_under_a_reader() {
    let s = index(NOW);
    s.load_snapshot(&[node("n1", "2026-11-22T01:04:00Z", 0.9)], &[]);
    let old = s.current();
    s.set_policy(
        Policy::from_yaml(
            "metrics: [{name: cpu-avg-5m, filterAbove: 0.95}, {name: cpu-sustained-10m}]",
        )
        .unwrap(),
    );
    let new = s.current();
    assert!(new.id > old.id);
    assert!(
        !old.judge("n1", at(NOW)).verdict.passes(),
        "old policy, old answer"
    );
    assert!(
        new.judge("n1", at(NOW)).verdict.passes(),
        "new policy, new answer"
    );
    assert_eq!(old.policy.metrics.len(), 4);
    assert_eq!(new.policy.metrics.len(), 2);
}

#[test]
fn policy_reload_reparses_readings() {
    let s = index(NOW);
    let mut n = node("n1", "2026-11-22T01:04:00Z", 0.4);
    n.metadata
        .annotations
        .as_mut()
        .unwrap()
        .insert("cpu_usage_avg_5m".into(), "0.9,2026-11-22T01:04:00Z".into());
    s.load_snapshot(&[n], &[]);
    let p = Policy::from_yaml("metrics: [{name: cpu-avg-5m, annotation: cpu_usage_avg_5m, format: crane}, {name: cpu-sustained-10m}]").unwrap();
    s.set_policy(p);
    let a = s.current().assess("n1", 0, at(NOW));
    assert_eq!(a.metrics[0].estimated, Some(0.9));
}

#[test]
fn an_unknown_node_counts_the_pods_placed_since_it_became_unknown() {
    // a node seen for the first time without readings: unknown since as far back as the
    // ledger remembers (now - horizon)
    let s = index(NOW);
    s.load_snapshot(&[bare("u")], &[]);
    s.apply_pod(&pod("p1", "u", "2026-11-22T01:04:10Z"));
    let j = s.current().judge("u", at(NOW));
    assert!(!j.known && j.verdict.passes() && j.unknown_pods == 1);
    s.apply_pod(&pod("p2", "u", "2026-11-22T01:04:20Z"));
    let j = s.current().judge("u", at(NOW));
    assert_eq!(j.unknown_pods, 2);
    assert_eq!(
        j.verdict,
        scoring::FilterVerdict::UnknownCap { placed: 2, cap: 2 }
    );
    // DaemonSet pods are pinned: they add nothing to the cap
    s.apply_pod(&daemon_pod("d1", "u", "2026-11-22T01:04:30Z"));
    assert_eq!(s.current().judge("u", at(NOW)).unknown_pods, 2);
    // a valid reading makes it known again: the cap no longer applies (the pods count in its
    // estimate at the part the reading does not show yet: 3 × 2 cores × 0.85 / 8 × ~0.9)
    s.apply_node(&node("u", "2026-11-22T01:04:50Z", 0.2));
    let j = s.current().judge("u", at(NOW));
    assert!(j.known && j.verdict.passes() && j.unknown_pods == 0);
}

#[test]
fn the_cap_count_outlives_the_horizon_while_the_node_stays_unknown() {
    // Known at first; its exporter then reports 0 from 01:00 on. Pods bound since then count,
    // however long ago, for as long as the node stays unknown.
    let s = Index::new(Policy::default(), Clock::Fixed(at("2026-11-22T01:00:30Z")));
    s.load_snapshot(&[node("z", "2026-11-22T01:00:00Z", 0.5)], &[]);
    let zero = |sampled: &str| {
        let mut n = node("z", sampled, 0.0);
        n.metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert("realload.io/mem-avg-5m".into(), format!("0.0,{sampled}"));
        n
    };
    s.apply_node(&zero("2026-11-22T01:00:30Z"));
    s.apply_pod(&pod("p1", "z", "2026-11-22T01:00:40Z"));
    // twenty minutes later, fresh zero readings keep arriving
    let late = Index::new(Policy::default(), Clock::Fixed(at("2026-11-22T01:20:00Z")));
    // (a new index has no history: it dates the zero at first sight minus the horizon)
    late.load_snapshot(
        &[zero("2026-11-22T01:19:30Z")],
        &[pod("p1", "z", "2026-11-22T01:00:40Z")],
    );
    assert_eq!(
        late.current()
            .judge("z", at("2026-11-22T01:20:00Z"))
            .unknown_pods,
        0
    );
    // the index that watched the change keeps counting p1
    let g = s.current();
    let j = g.judge("z", at("2026-11-22T01:00:50Z"));
    assert!(!j.known);
    assert_eq!(j.unknown_pods, 1);
    assert_eq!(
        g.nodes.get("z").unwrap().bad_since[0],
        Some(at("2026-11-22T01:00:30Z")),
        "went bad when the zero replaced a valid reading"
    );
    // housekeeping long after the horizon keeps p1 while the node stays unknown
    let clock = Clock::manual(at("2026-11-22T01:00:30Z"));
    let s2 = Index::new(Policy::default(), clock.clone());
    s2.load_snapshot(&[node("z", "2026-11-22T01:00:00Z", 0.5)], &[]);
    s2.apply_node(&zero("2026-11-22T01:00:30Z"));
    s2.apply_pod(&pod("p1", "z", "2026-11-22T01:00:40Z"));
    clock.set(at("2026-11-22T01:20:00Z"));
    s2.apply_node(&zero("2026-11-22T01:19:30Z"));
    assert_eq!(s2.housekeep(), 1, "p1 is still remembered");
    let j = s2.current().judge("z", at("2026-11-22T01:20:00Z"));
    assert_eq!(j.unknown_pods, 1);
    // once it reports a valid reading again, p1 is covered and forgotten
    clock.set(at("2026-11-22T01:21:00Z"));
    s2.apply_node(&node("z", "2026-11-22T01:20:50Z", 0.4));
    assert_eq!(s2.housekeep(), 0);
}

#[test]
fn a_stale_node_counts_pods_from_when_its_reading_expired() {
    // reading sampled 01:00, max age 3m: unknown since 01:03
    let s = index("2026-11-22T01:10:00Z");
    s.load_snapshot(
        &[node("s", "2026-11-22T01:00:00Z", 0.3)],
        &[
            pod("before", "s", "2026-11-22T01:02:00Z"),
            pod("after", "s", "2026-11-22T01:08:00Z"),
        ],
    );
    let a = s.current().assess("s", 0, at("2026-11-22T01:10:00Z"));
    assert!(!a.known);
    assert_eq!(a.unknown_since, Some(at("2026-11-22T01:03:00Z")));
    assert_eq!(a.unknown_pods, 1);
}

#[test]
fn in_flight_pods_reach_the_cap_before_their_bindings_arrive() {
    let s = index(NOW);
    s.load_snapshot(&[bare("u")], &[pod("p1", "u", "2026-11-22T01:04:10Z")]);
    let g = s.current();
    let j = g.judge("u", at(NOW));
    assert!(j.verdict.passes());
    let j = j.with_in_flight(&g.policy, 1);
    assert_eq!(
        j.verdict,
        scoring::FilterVerdict::UnknownCap { placed: 2, cap: 2 }
    );
}

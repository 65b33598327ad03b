//! The simulator's mechanics (not its outcome figures).

use super::*;
use crate::model::Scenario;

fn run_to(s: &Scenario, kind: PolicyKind, until: i64) -> Sim<'_> {
    let mut sim = Sim::new(s, kind, Policy::default());
    let arrivals = arrivals(s);
    let mut next = 0;
    while sim.t < until {
        while next < arrivals.len() && arrivals[next].at <= sim.t {
            let a = arrivals[next];
            sim.arrive(&a);
            next += 1;
        }
        for n in 0..sim.on_node.len() {
            let ended: Vec<usize> = sim.on_node[n]
                .iter()
                .copied()
                .filter(|p| sim.pods[*p].ends() <= sim.t)
                .collect();
            for p in ended {
                sim.release(p, false);
            }
        }
        sim.node_events();
        sim.refresh_fleet();
        sim.run_queue();
        sim.account();
        sim.collect();
        sim.t += STEP;
    }
    sim
}

#[test]
fn pods_are_conserved_and_requests_add_up() {
    let s = Scenario::new("node failure and drain", 3);
    for kind in [PolicyKind::Default, PolicyKind::Realload] {
        let sim = run_to(&s, kind, 3600);
        let (all, running, pending, done) = sim.census();
        assert_eq!(all, running + pending + done, "{kind:?}");
        assert!(running > 100, "{kind:?}: {running}");
        for (n, pods) in sim.on_node.iter().enumerate() {
            let cpu: u64 = pods
                .iter()
                .map(|p| s.workloads[sim.pods[*p].workload].cpu_request_m)
                .sum();
            assert_eq!(cpu, sim.requested[n].0, "node {n}");
            assert!(cpu <= s.nodes[n].cpu_m, "never over-committed");
            assert!(
                !s.down(n, sim.t) || pods.is_empty(),
                "a failed node holds nothing"
            );
        }
    }
}

#[test]
fn the_same_seed_gives_the_same_outcome_and_seeds_differ() {
    let a = Sim::new(
        &Scenario::new("burst", 5),
        PolicyKind::Realload,
        Policy::default(),
    )
    .run();
    let b = Sim::new(
        &Scenario::new("burst", 5),
        PolicyKind::Realload,
        Policy::default(),
    )
    .run();
    assert_eq!(a, b);
    let c = Sim::new(
        &Scenario::new("burst", 6),
        PolicyKind::Realload,
        Policy::default(),
    )
    .run();
    assert_ne!(a, c);
}

#[test]
fn every_policy_sees_the_same_arrivals_and_faults() {
    let s = Scenario::new("mixed", 9);
    let t = Scenario::new("mixed", 9);
    assert_eq!(arrivals(&s), arrivals(&t));
    assert_eq!(s.faults, t.faults);
    assert_eq!(s.nodes, t.nodes);
}

#[test]
fn a_pod_uses_nothing_before_it_starts_and_its_lifetime_counts_from_then() {
    let s = Scenario::new("steady", 1);
    let mut sim = Sim::new(&s, PolicyKind::Default, Policy::default());
    sim.t = 0;
    sim.arrive(&Arrival {
        at: 0,
        workload: 0,
        runs_for: 600,
        burst: None,
    });
    assert!(sim.schedule(0, 0));
    let p = &sim.pods[0];
    assert_eq!(p.started(), STARTUP);
    assert_eq!(
        p.ends(),
        STARTUP + 600,
        "the lifetime runs from the start, not the arrival"
    );
}

#[test]
fn demand_above_capacity_is_counted_not_clamped() {
    let mut s = Scenario::new("steady", 2);
    // one tiny node and one greedy workload: demand is twice the node
    s.nodes.truncate(1);
    s.nodes[0].cpu_m = 1000;
    s.workloads[0].cpu_request_m = 1000;
    s.workloads[0].cpu_usage = 2.0;
    s.workloads[0].amplitude = 0.0;
    s.workloads[0].diurnal = 0.0;
    let mut sim = Sim::new(&s, PolicyKind::Default, Policy::default());
    sim.t = 0;
    sim.arrive(&Arrival {
        at: -100,
        workload: 0,
        runs_for: 10_000,
        burst: None,
    });
    sim.bind(0, 0, -100_000);
    sim.account();
    let over = sim.metrics["CPU demand above capacity (core-min)"];
    // 1 core above capacity, plus the node's own system use, for one 10 s step
    let above = (2000.0 + s.nodes[0].system_cpu_m() - 1000.0) / 1000.0;
    assert!((over - above * STEP as f64 / 60.0).abs() < 1e-9, "{over}");
    assert!((sim.metrics["CPU work delivered (core-min)"] - STEP as f64 / 60.0).abs() < 1e-9);
    assert!(sim.metrics["hot node-minutes"] > 0.0);
}

#[test]
fn the_backlog_is_retried_every_30s_in_arrival_order() {
    let mut s = Scenario::new("steady", 4);
    s.nodes.truncate(1);
    s.nodes[0].cpu_m = 2000;
    s.workloads[0].cpu_request_m = 2000;
    let mut sim = Sim::new(&s, PolicyKind::Default, Policy::default());
    sim.t = 0;
    for at in [0, 0, 0] {
        sim.arrive(&Arrival {
            at,
            workload: 0,
            runs_for: 100,
            burst: None,
        });
    }
    sim.run_queue();
    assert_eq!(sim.pods[0].node, Some(0));
    assert!(sim.pods[1].tried && sim.pods[2].tried, "no room: backlog");
    sim.release(0, false);
    // a pod arriving now is tried at once, before the backlog's next retry
    sim.t = 10;
    sim.arrive(&Arrival {
        at: 10,
        workload: 0,
        runs_for: 100,
        burst: None,
    });
    sim.run_queue();
    assert_eq!(sim.pods[3].node, Some(0), "the new pod found the free room");
    sim.release(3, false);
    // at the retry, the oldest waiting pod goes first
    sim.t = 30;
    sim.run_queue();
    assert_eq!(sim.pods[1].node, Some(0));
    assert_eq!(sim.pods[2].node, None);
}

#[test]
fn bindings_reach_realload_after_the_watch_lag_unless_it_binds() {
    let s = Scenario::new("steady", 8);
    let mut sim = run_to(&s, PolicyKind::Realload, 0);
    let now_ms = 0;
    sim.arrive(&Arrival {
        at: 0,
        workload: 1,
        runs_for: 100,
        burst: None,
    });
    let id = sim.pods.len() - 1;
    assert!(sim.schedule(id, now_ms));
    let n = sim.pods[id].node.unwrap_or(0);
    let visible = |sim: &Sim<'_>, at: i64| {
        sim.on_node[n]
            .iter()
            .filter(|p| sim.pods[**p].bound_ms + WATCH_LAG_MS <= at)
            .count()
    };
    assert_eq!(
        visible(&sim, now_ms) + 1,
        sim.on_node[n].len(),
        "not seen yet"
    );
    assert_eq!(visible(&sim, now_ms + WATCH_LAG_MS), sim.on_node[n].len());
    assert_eq!(PolicyKind::RealloadBind.lag_ms(), 0);
}

#[test]
fn a_zero_exporter_is_skipped_by_realloads_collector_and_goes_unknown() {
    let s = Scenario::new("zero-reading exporters", 11);
    let Some(Fault::Zero { nodes, from, .. }) = s.faults.first().cloned() else {
        panic!("{:?}", s.faults)
    };
    let sim = run_to(&s, PolicyKind::Realload, from + 900);
    let now = ts(sim.t);
    for n in nodes {
        assert!(
            scoring::unknown_since(
                &sim.policy,
                &sim.realload.readings[n],
                &sim.realload.bad_since[n],
                now
            )
            .is_some(),
            "node {n} is unknown 15 minutes into its exporter's fault"
        );
    }
}

#[test]
fn an_empty_node_reports_its_system_use_not_zero() {
    let s = Scenario::new("steady", 3);
    let mut sim = Sim::new(&s, PolicyKind::Realload, Policy::default());
    sim.t = 0;
    for t in (0..=600).step_by(STEP as usize) {
        sim.t = t;
        sim.account();
    }
    for n in 0..s.nodes.len() {
        match sim.series[n].cpu_avg_5m(600) {
            crate::prom::Answer::Value(v) => {
                assert!(v > 0.01, "node {n}: {v}: a real node is never idle to 0");
            }
            other => panic!("node {n}: {other:?}"),
        }
    }
}

#[test]
fn a_burst_counts_its_pods_first_placed_on_faulty_nodes_and_not_their_replacements() {
    let mut s = Scenario::new("steady", 1);
    s.faults = vec![crate::model::Fault::Zero {
        nodes: vec![0],
        from: 0,
        until: 1000,
    }];
    s.bursts = vec![(0, 4)];
    let mut sim = Sim::new(&s, PolicyKind::Default, Policy::default());
    sim.t = 10;
    for _ in 0..4 {
        sim.arrive(&Arrival {
            at: 10,
            workload: 0,
            runs_for: 600,
            burst: Some(0),
        });
    }
    sim.bind(0, 0, 10_000);
    sim.bind(1, 1, 10_000);
    // evicted from the faulty node and placed there again: the replacement is not the burst's
    sim.release(0, true);
    let replacement = sim.pods.len() - 1;
    sim.bind(replacement, 0, 11_000);
    assert_eq!(sim.largest_burst_share_on_faulty(), 25.0);
    // after the fault, a burst pod placed on that node does not count
    sim.t = 2000;
    sim.bind(2, 0, 2_000_000);
    assert_eq!(sim.largest_burst_share_on_faulty(), 25.0);
}

/// One pod of workload 0, arrived and bound to node 0 at t = 0.
fn run_one_pod_of_workload_0(sim: &mut Sim<'_>) {
    sim.t = 0;
    sim.arrive(&Arrival {
        at: 0,
        workload: 0,
        runs_for: 7200,
        burst: None,
    });
    sim.bind(0, 0, 0);
}

#[test]
fn the_collector_learns_mean_usage_per_workload_and_realload_counts_pods_at_it() {
    let mut s = Scenario::new("steady", 1);
    s.workloads[0].cpu_request_m = 1000;
    s.workloads[0].cpu_usage = 0.5;
    s.workloads[0].amplitude = 0.0;
    s.workloads[0].diurnal = 0.0;
    s.workloads[0].mem_request_mi = 1000;
    s.workloads[0].mem_usage = 1.4;
    let policy = Policy::default();
    let mut sim = Sim::new(&s, PolicyKind::Realload, policy.clone());
    run_one_pod_of_workload_0(&mut sim);
    assert_eq!(sim.learned(0), None, "nothing published yet");
    sim.t = 600;
    sim.learn_usage();
    let learned = sim.learned(0).expect("learned from the running pod");
    assert!((learned.cpu.unwrap() - 0.5).abs() < 0.001, "{learned:?}");
    assert!((learned.memory.unwrap() - 1.4).abs() < 0.001, "{learned:?}");
    assert_eq!(
        sim.learned(1),
        None,
        "a workload with no running pod is not learned"
    );
    // the table ages out when the collector cannot publish (maxAge 30m)
    sim.t = 600 + 1801;
    assert_eq!(sim.learned(0), None);
    // switched off: the factors, whatever was learned
    let off = Policy::from_yaml("workloadUsage: {enabled: false}").unwrap();
    let mut sim = Sim::new(&s, PolicyKind::Realload, off);
    run_one_pod_of_workload_0(&mut sim);
    sim.t = 600;
    sim.learn_usage();
    assert_eq!(sim.learned(0), None);
    // the oracle knows the truth from the start
    s.usage_oracle = true;
    let sim = Sim::new(&s, PolicyKind::Realload, policy);
    assert_eq!(sim.learned(0).and_then(|l| l.cpu), Some(0.5));
}

//! The simulator's mechanics (not its outcome figures).

use super::*;

fn small(name: &'static str) -> Scenario {
    let mut s = Scenario::base(name);
    s.nodes = 8;
    s.duration_secs = 1800;
    s.arrival_per_min = 2.0;
    s
}

#[test]
fn pods_are_conserved_for_every_policy() {
    let mut s = small("conservation");
    s.bursts = vec![(600, 40)];
    for kind in PolicyKind::ALL {
        let o = Sim::new(&s, kind).run();
        assert_eq!(
            o.arrived,
            o.running + o.pending + o.departed,
            "{kind:?}: {o:?}"
        );
        assert!(o.arrived > 80);
    }
}

#[test]
fn the_same_seed_gives_the_same_outcome() {
    let s = small("determinism");
    let a = Sim::new(&s, PolicyKind::Realload).run();
    let b = Sim::new(&s, PolicyKind::Realload).run();
    assert_eq!(
        serde_json::to_string(&a).unwrap(),
        serde_json::to_string(&b).unwrap()
    );
}

#[test]
fn node_usage_is_the_sum_of_its_pods_real_usage() {
    let s = small("usage");
    let mut sim = Sim::new(&s, PolicyKind::Default);
    sim.t = 1234;
    for (id, w) in [(0, 0), (1, 1), (2, 1)] {
        sim.pods.push(SimPod {
            id,
            workload: w,
            node: Some(2),
            bound_at: 0,
            departs_at: i64::MAX - 1,
            created_at: 0,
        });
    }
    let expected =
        (sim.workloads[0].usage_m(1234) + 2.0 * sim.workloads[1].usage_m(1234)) / NODE_CPU_M as f64;
    assert!((sim.node_util(2) - expected.min(1.0)).abs() < 1e-12);
    assert_eq!(sim.node_util(3), 0.0);
    // usage differs from requests, both ways
    let w = workloads(&mut crate::synth::Rng::new(7));
    assert!(w.iter().any(|w| w.usage_factor < 0.5) && w.iter().any(|w| w.usage_factor > 1.2));
}

fn ratio(v: &str) -> f64 {
    v.split(',').next().unwrap().parse().unwrap()
}

#[test]
fn faults_are_injected_as_described() {
    let mut s = small("faults");
    s.faults = vec![
        Fault::Zero {
            nodes: vec![1],
            from: 300,
            until: 900,
        },
        Fault::Stale {
            nodes: vec![2],
            from: 300,
            until: 900,
        },
    ];
    let mut sim = Sim::new(&s, PolicyKind::Default);
    // run the collector at t = 240 and t = 600 over a busy history
    for n in 0..s.nodes {
        for t in (0..=600).step_by(10) {
            sim.history[n].push(t, 0.5);
        }
    }
    sim.t = 240;
    sim.collect();
    let before_stale = sim.annotations[2]["realload.io/cpu-avg-5m"].clone();
    sim.t = 600;
    sim.collect();
    assert_eq!(
        ratio(&sim.annotations[1]["realload.io/cpu-avg-5m"]),
        0.0,
        "broken exporter reads 0"
    );
    assert!(ratio(&sim.annotations[0]["realload.io/cpu-avg-5m"]) > 0.4);
    assert_eq!(
        sim.annotations[2]["realload.io/cpu-avg-5m"], before_stale,
        "stale: not rewritten"
    );
    // an outage writes nothing at all
    let mut o = small("outage");
    o.faults = vec![Fault::Outage {
        from: 0,
        until: 1800,
    }];
    let mut sim = Sim::new(&o, PolicyKind::Default);
    sim.history[0].push(0, 0.5);
    sim.t = 60;
    sim.collect();
    assert!(sim.annotations.iter().all(BTreeMap::is_empty));
}

#[test]
fn realload_scores_with_the_extenders_code() {
    // a node whose exporter reads 0 must not attract pods under realload
    let mut s = small("zero");
    s.faults = vec![Fault::Zero {
        nodes: vec![0, 1],
        from: 0,
        until: 1800,
    }];
    let realload = Sim::new(&s, PolicyKind::Realload).run();
    let crane = Sim::new(&s, PolicyKind::Crane).run();
    assert!(
        realload.pods_on_faulty_nodes <= crane.pods_on_faulty_nodes,
        "{realload:?} vs {crane:?}"
    );
}

#[test]
fn the_example_policy_loads_and_runs_through_the_simulator() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/example/policy-fewer-hot-nodes.yaml"
    );
    let policy = realload_common::cli::load_policy(Some(std::path::Path::new(path))).unwrap();
    let i = policy.metric_index("cpu-avg-5m").unwrap();
    assert_eq!(policy.metrics[i].filter_above, Some(0.70));
    // everything else is the built-in default
    let mut as_default = policy.clone();
    as_default.metrics[i].filter_above = Policy::default().metrics[i].filter_above;
    assert_eq!(as_default, Policy::default());
    let s = small("example policy");
    let o = Sim::with_policy(&s, PolicyKind::Realload, policy).run();
    assert_eq!(o.arrived, o.running + o.pending + o.departed);
}

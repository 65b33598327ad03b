//! The descheduler's plan, in-process, for 5,000 nodes and 150,000 pods (2% of nodes hot):
//! - `plan`: the pure plan over the inputs a live run gathers (pods on hot nodes, owners, PDBs);
//! - `snapshot`: the whole snapshot path (classify every node, filter 150,000 pods, plan).
//!
//! cargo bench -p realload-descheduler --bench plan
#![allow(clippy::unwrap_used, clippy::expect_used)] // benchmarks: failing loudly is right

use std::collections::{BTreeMap, HashSet};
use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use jiff::Timestamp;
use realload_bench::synth::{self, Spec};
use realload_common::objects::NodeView;
use realload_common::policy::Policy;
use realload_common::snapshot::load_snapshot;
use realload_common::whitelist::Whitelist;
use realload_descheduler::gather::{plan_snapshot, requests_by_node};
use realload_descheduler::plan::{self, Inputs};

fn bench(c: &mut Criterion) {
    let spec = Spec::new(5_000, 150_000);
    let snap = load_snapshot(&synth::snapshot(&spec).to_string()).unwrap();
    let policy = Policy::default();
    let now: Timestamp = "2026-11-22T01:05:00Z".parse().unwrap();
    let views: Vec<NodeView> = snap
        .nodes
        .iter()
        .map(|n| NodeView::from_node(n, &policy))
        .collect();
    let hot: HashSet<&str> = views
        .iter()
        .filter(|n| plan::hot_reading(&policy, n, now).is_some())
        .map(|n| n.name.as_str())
        .collect();
    let candidates: Vec<_> = snap
        .pods
        .iter()
        .filter(|p| {
            p.spec
                .as_ref()
                .and_then(|s| s.node_name.as_deref())
                .is_some_and(|n| hot.contains(n))
        })
        .cloned()
        .collect();
    let node_requests = requests_by_node(&snap.pods);
    let whitelist = Whitelist::default();
    let last = BTreeMap::new();
    let usage = realload_common::workload::UsageTable::default();
    let inputs = Inputs {
        policy: &policy,
        whitelist: &whitelist,
        now,
        nodes: &views,
        candidates: &candidates,
        node_requests: &node_requests,
        replica_sets: &snap.replica_sets,
        deployments: &snap.deployments,
        stateful_sets: &snap.stateful_sets,
        pdbs: &snap.pod_disruption_budgets,
        last_evictions: &last,
        usage: &usage,
    };
    let p = plan::plan(&inputs);
    println!(
        "plan/5000x150000: {} hot nodes, {} candidate pods, {} evictions, {} skipped",
        hot.len(),
        candidates.len(),
        p.evictions.len(),
        p.skipped.len()
    );
    let mut group = c.benchmark_group("descheduler/5000x150000");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("plan", |b| {
        b.iter(|| black_box(plan::plan(black_box(&inputs))))
    });
    group.bench_function("snapshot", |b| {
        b.iter(|| {
            black_box(
                plan_snapshot(
                    &policy,
                    &snap,
                    "realload-system/realload-whitelist",
                    false,
                    "realload-system/realload-descheduler-state",
                    "realload-system",
                    now,
                )
                .unwrap(),
            )
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

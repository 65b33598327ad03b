//! One collector cycle for 5,000 nodes with a scripted Prometheus answer: parsing the four
//! query results and planning the patches, with 0%, 10% and 100% of the readings moved beyond
//! the deadband. The number of patches is printed once per case.
//!
//! And one learning round for 150,000 running pods in 5,000 workloads: parsing the CPU and
//! memory answers (one series per pod), joining them to the pods, learning the table and
//! writing its JSON.
//!
//! cargo bench -p realload-extender --bench collector
#![allow(clippy::unwrap_used, clippy::expect_used)] // benchmarks: failing loudly is right

use std::collections::{BTreeMap, HashMap};
use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use k8s_openapi::api::core::v1::Node;
use realload_bench::synth::{self, Spec};
use realload_common::objects::NodeView;
use realload_common::policy::Policy;
use realload_extender::collect::plan::{self, MetricResult};
use realload_extender::collect::prometheus::parse_query_response;
use serde_json::json;

const NODES: usize = 5_000;

/// A `/api/v1/query` answer for one metric: each node's current value, moved by `delta` for the
/// first `changed` nodes.
fn answer(views: &[NodeView], annotation: &str, changed: usize, delta: f64, at: i64) -> String {
    let result: Vec<serde_json::Value> = views
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let current: f64 = v.annotations[annotation].split(',').next().unwrap().parse().unwrap();
            let value = if i < changed { (current + delta).min(1.0) } else { current };
            json!({"metric": {"instance": format!("{}:9100", v.internal_ip.clone().unwrap()), "job": "node"}, "value": [at, value.to_string()]})
        })
        .collect();
    json!({"status": "success", "data": {"resultType": "vector", "result": result}}).to_string()
}

fn bench(c: &mut Criterion) {
    let policy = Policy::default();
    let spec = Spec::new(NODES, 0);
    let nodes: Vec<Node> = synth::nodes(&spec)
        .into_iter()
        .map(|n| serde_json::from_value(n).unwrap())
        .collect();
    let views: Vec<NodeView> = nodes
        .iter()
        .map(|n| NodeView::from_node(n, &policy))
        .collect();
    let current: HashMap<String, BTreeMap<String, String>> = views
        .iter()
        .map(|v| (v.name.clone(), v.annotations.clone()))
        .collect();
    // 30 s after the annotations' sample time: nothing is near going stale
    let at = "2026-11-22T01:05:00Z".parse::<jiff::Timestamp>().unwrap();
    let next = at + jiff::SignedDuration::from_mins(1);
    let mut group = c.benchmark_group("collector/cycle/5000");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(5));
    for (label, changed) in [("0pct", 0), ("10pct", NODES / 10), ("100pct", NODES)] {
        let bodies: Vec<(String, String)> = policy
            .metrics
            .iter()
            .map(|m| {
                (
                    m.name.clone(),
                    answer(&views, &m.annotation, changed, 0.05, at.as_second()),
                )
            })
            .collect();
        let cycle = || {
            let results: BTreeMap<String, MetricResult> = bodies
                .iter()
                .map(|(name, body)| {
                    (
                        name.clone(),
                        MetricResult::Series(
                            parse_query_response(body.as_bytes(), "instance").unwrap(),
                        ),
                    )
                })
                .collect();
            plan::plan(&policy, &views, &current, &results, next)
        };
        let p = cycle();
        println!(
            "collector/cycle/5000/{label}: {} patches, {} suppressed, {} skipped",
            p.patches.len(),
            p.suppressed,
            p.skipped.len()
        );
        group.bench_function(BenchmarkId::new("parse+plan", label), |b| {
            b.iter(|| black_box(cycle()))
        });
    }
    group.finish();
}

fn bench_usage(c: &mut Criterion) {
    use realload_common::workload::{WorkloadKey, learn};
    use realload_extender::collect::usage::{POD_LABEL, fit, samples, trusted_values};
    const PODS: usize = 150_000;
    const WORKLOADS: usize = 5_000;
    let keys: Vec<std::sync::Arc<WorkloadKey>> = (0..WORKLOADS)
        .map(|w| {
            std::sync::Arc::new(WorkloadKey {
                namespace: format!("team-{}", w % 50),
                kind: "Deployment".into(),
                name: format!("svc-{w}"),
            })
        })
        .collect();
    let pods: Vec<realload_extender::collect::usage::RunningPod> = (0..PODS)
        .map(|i| {
            let w = i % WORKLOADS;
            (
                format!("team-{}/svc-{w}-7d9f8c6b5-{i:06}", w % 50),
                keys[w].clone(),
                250 + (w as u64 % 16) * 250,
                (256 + (w as u64 % 16) * 256) << 20,
            )
        })
        .collect();
    let body = |per_pod: &dyn Fn(usize) -> f64| {
        let result: Vec<serde_json::Value> = pods
            .iter()
            .enumerate()
            .map(|(i, (name, ..))| json!({"metric": {"realload_pod": name}, "value": [1_764_590_400, per_pod(i).to_string()]}))
            .collect();
        json!({"status": "success", "data": {"resultType": "vector", "result": result}}).to_string()
    };
    let cpu_body = body(&|i| 0.05 + (i % 37) as f64 * 0.01);
    let memory_body = body(&|i| (100 + i % 400) as f64 * 1048576.0);
    let at = "2026-12-01T12:00:00Z".parse::<jiff::Timestamp>().unwrap();
    let round = || {
        let per_pod = |text: &str| -> HashMap<String, f64> {
            trusted_values(parse_query_response(text.as_bytes(), POD_LABEL).unwrap())
        };
        let (cpu, memory) = (per_pod(&cpu_body), per_pod(&memory_body));
        let mut table = learn(&samples(&pods, &cpu, &memory), at);
        fit(&mut table);
        table.to_json()
    };
    println!(
        "collector/usage/150000 pods, 5000 workloads: answers {} + {} bytes, table {} bytes",
        cpu_body.len(),
        memory_body.len(),
        round().len()
    );
    let mut group = c.benchmark_group("collector/usage");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("parse+learn/150000", |b| b.iter(|| black_box(round())));
    // the floor: reading the two answers without keeping anything
    group.bench_function("floor-skip/150000", |b| {
        b.iter(|| {
            for text in [&cpu_body, &memory_body] {
                black_box(serde_json::from_str::<serde::de::IgnoredAny>(black_box(text)).is_ok());
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench, bench_usage);
criterion_main!(benches);

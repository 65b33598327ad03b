//! Extender request handling, in-process: filter and prioritize at 100, 1,000 and 5,000 nodes, in
//! both nodeCacheCapable modes, against two floors measured in the same run:
//! - `skip`: serde_json skipping the same request body (`IgnoredAny`), the least any JSON reader does;
//! - `respond`: building the response alone.
//!
//! cargo bench -p realload-extender --bench extender
#![allow(clippy::unwrap_used, clippy::expect_used)] // benchmarks: failing loudly is right

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use k8s_openapi::api::core::v1::Node;
use realload_bench::synth::{self, Spec};
use realload_common::policy::Policy;
use realload_extender::metrics::Metrics;
use realload_extender::protocol::{self, Candidates};
use realload_extender::server::{filter_body, prioritize_body};
use realload_extender::state::{Clock, State};
use serde::de::IgnoredAny;

fn state_for(spec: &Spec) -> Arc<State> {
    let state = Arc::new(State::new(
        Policy::default(),
        Clock::Fixed("2026-11-22T01:05:00Z".parse().unwrap()),
        Metrics::new(),
    ));
    let nodes: Vec<Node> = synth::nodes(spec)
        .into_iter()
        .map(|n| serde_json::from_value(n).unwrap())
        .collect();
    state.load_snapshot(&nodes, &[], &[]);
    state
}

fn bench(c: &mut Criterion) {
    for &size in &[100usize, 1_000, 5_000] {
        let spec = Spec::new(size, 0);
        let state = state_for(&spec);
        for cache in [true, false] {
            let mode = if cache { "cache" } else { "nocache" };
            let body = synth::extender_body(&spec, cache);
            let bytes = axum::body::Bytes::from(body.clone());
            let mut group = c.benchmark_group(format!("extender/{mode}/{size}"));
            group.throughput(Throughput::Bytes(body.len() as u64));
            group.sample_size(if size >= 5_000 && !cache { 10 } else { 30 });
            group.measurement_time(Duration::from_secs(if cache { 3 } else { 5 }));
            group.warm_up_time(Duration::from_millis(500));
            group.bench_function(BenchmarkId::new("filter", size), |b| {
                b.iter(|| black_box(filter_body(&state, black_box(&bytes), Instant::now())))
            });
            group.bench_function(BenchmarkId::new("prioritize", size), |b| {
                b.iter(|| {
                    black_box(prioritize_body(
                        &state,
                        black_box(body.as_bytes()),
                        Instant::now(),
                    ))
                })
            });
            group.bench_function(BenchmarkId::new("floor-skip", size), |b| {
                b.iter(|| {
                    black_box(
                        serde_json::from_slice::<IgnoredAny>(black_box(body.as_bytes())).unwrap(),
                    )
                })
            });
            let args = protocol::parse_args(body.as_bytes(), &[]).unwrap();
            let all: Vec<usize> = (0..args.candidates.len()).collect();
            group.bench_function(BenchmarkId::new("floor-respond-filter", size), |b| {
                b.iter(|| {
                    black_box(protocol::filter_response(
                        &args.candidates,
                        black_box(&all),
                        &[],
                    ))
                })
            });
            let names: Vec<String> = match &args.candidates {
                Candidates::Names(n) => n.iter().map(|s| s.to_string()).collect(),
                Candidates::Nodes(n) => n.iter().map(|(_, s)| s.name.to_string()).collect(),
            };
            group.bench_function(BenchmarkId::new("floor-respond-prioritize", size), |b| {
                b.iter(|| {
                    black_box(protocol::prioritize_response(
                        names.iter().map(|n| (n.as_str(), true, 5)),
                    ))
                })
            });
            group.finish();
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);

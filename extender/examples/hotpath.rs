//! The request path in a loop, for a profiler and for comparisons on a noisy machine: one
//! synthetic cluster, one body, many requests.
//!
//! cargo build --release -p realload-extender --example hotpath
//! target/release/examples/hotpath filter cache 5000 20000     # under perf record -g
//! target/release/examples/hotpath compare nocache 5000 30     # skip floor, filter, prioritize
//!
//! `compare` runs the floor (serde skipping the body with `IgnoredAny`), filter and prioritize in
//! turns, batch after batch, and reports the fastest and the median batch of each: the three see
//! the same machine at the same moments.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a profiling tool: failing loudly is right

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use k8s_openapi::api::core::v1::Node;
use realload_bench::synth::{self, Spec};
use realload_common::policy::Policy;
use realload_extender::metrics::Metrics;
use realload_extender::server::{filter_body, prioritize_body};
use realload_extender::state::{Clock, State};

fn run(verb: &str, state: &State, body: &Bytes) {
    match verb {
        "filter" => {
            black_box(filter_body(state, black_box(body), Instant::now()));
        }
        "prioritize" => {
            black_box(prioritize_body(state, black_box(body), Instant::now()));
        }
        _ => {
            black_box(serde_json::from_slice::<serde::de::IgnoredAny>(black_box(body)).is_ok());
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let verb = args.get(1).map_or("filter", String::as_str).to_string();
    let cache = args.get(2).map_or("cache", String::as_str) == "cache";
    let nodes: usize = args.get(3).and_then(|n| n.parse().ok()).unwrap_or(5_000);
    let requests: usize = args.get(4).and_then(|n| n.parse().ok()).unwrap_or(10_000);
    let spec = Spec::new(nodes, 0);
    let state = Arc::new(State::new(
        Policy::default(),
        Clock::Fixed("2026-11-22T01:05:00Z".parse().unwrap()),
        Metrics::new(),
    ));
    let objects: Vec<Node> = synth::nodes(&spec)
        .into_iter()
        .map(|n| serde_json::from_value(n).unwrap())
        .collect();
    state.load_snapshot(&objects, &[], &[]);
    drop(objects);
    let body = Bytes::from(synth::extender_body(&spec, cache));
    let mode = if cache { "cache" } else { "nocache" };
    if verb == "compare" {
        let verbs = ["skip", "filter", "prioritize"];
        let batch = if cache { 200 } else { 3 };
        let mut times: Vec<Vec<Duration>> = vec![Vec::new(); verbs.len()];
        for _ in 0..requests {
            for (v, verb) in verbs.iter().enumerate() {
                let started = Instant::now();
                for _ in 0..batch {
                    run(verb, &state, &body);
                }
                times[v].push(started.elapsed() / batch);
            }
        }
        for (v, verb) in verbs.iter().enumerate() {
            times[v].sort();
            let (best, median) = (times[v][0], times[v][times[v].len() / 2]);
            let floor = (times[0][0], times[0][times[0].len() / 2]);
            println!(
                "{mode} {nodes} {verb}: fastest {best:?} ({:.2}x the floor's fastest), median {median:?} ({:.2}x the floor's median)",
                best.as_secs_f64() / floor.0.as_secs_f64(),
                median.as_secs_f64() / floor.1.as_secs_f64()
            );
        }
        return;
    }
    let started = Instant::now();
    for _ in 0..requests {
        run(&verb, &state, &body);
    }
    let each = started.elapsed() / requests as u32;
    println!("{verb} {nodes} nodes ({mode}): {each:?} per request");
}

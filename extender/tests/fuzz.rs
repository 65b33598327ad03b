//! Every parser of outside input in the extender and collector, fed arbitrary and mutated input:
//! no panic; an answer is either 200 or 400 with a JSON body. The bodies are real kube-scheduler
//! 1.36 requests. `PROPTEST_CASES=100000 cargo test -p realload-extender --test fuzz` runs a longer
//! campaign (see docs/benchmarks.md).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: failing loudly is right

use std::time::Instant;

use axum::body::Bytes;
use axum::http::StatusCode;
use proptest::prelude::*;
use realload_common::policy::Policy;
use realload_extender::collect::exporter::parse_exposition;
use realload_extender::collect::prometheus::parse_query_response;
use realload_extender::metrics::Metrics;
use realload_extender::protocol::{parse_args, parse_bind};
use realload_extender::server::{filter_body, prioritize_body};
use realload_extender::state::{Clock, State};

const FILTER: &str = include_str!("fixtures/filter-nocache.json");
const PRIORITIZE: &str = include_str!("fixtures/prioritize-nocache.json");
const BIND: &str = include_str!("fixtures/bind.json");
const CACHE: &str = r#"{"Pod":{"metadata":{"name":"p","namespace":"d","uid":"u"},"spec":{"containers":[{"name":"c","resources":{"requests":{"cpu":"1"}}}]}},"Nodes":null,"NodeNames":["a","b\u0063","ip-10-0-0-1.ec2.internal"]}"#;
const PROMETHEUS: &str = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"instance":"n1:9100"},"value":[1763773440.123,"0.42"]},{"metric":{"instance":"n2"},"value":[1763773440,"NaN"]}]}}"#;
const EXPOSITION: &str = "# HELP node_cpu_seconds_total x\n# TYPE node_cpu_seconds_total counter\nnode_cpu_seconds_total{cpu=\"0\",mode=\"idle\"} 1000.5\nnode_cpu_seconds_total{cpu=\"0\",mode=\"user\"} 20\nnode_memory_MemAvailable_bytes 1.5e9\nnode_memory_MemTotal_bytes 4e9\n";

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(2_000),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// `text` with a few bytes replaced, inserted or removed.
fn mutated(text: &'static str) -> impl Strategy<Value = Vec<u8>> {
    let bytes = text.as_bytes().to_vec();
    let len = bytes.len().max(1);
    proptest::collection::vec((0..len, any::<u8>(), 0u8..3), 1..8).prop_map(move |edits| {
        let mut b = bytes.clone();
        for (at, byte, op) in edits {
            let at = at.min(b.len());
            match op {
                0 if at < b.len() => b[at] = byte,
                1 => b.insert(at, byte),
                _ if at < b.len() => {
                    b.remove(at);
                }
                _ => b.push(byte),
            }
        }
        b
    })
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        any::<Vec<u8>>(),
        mutated(FILTER),
        mutated(PRIORITIZE),
        mutated(CACHE),
        mutated(BIND),
    ]
}

fn state() -> State {
    let state = State::new(
        Policy::default(),
        Clock::Fixed("2026-11-22T01:05:00Z".parse().unwrap()),
        Metrics::new(),
    );
    state.load_snapshot(&[], &[], &[]);
    state
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn extender_request_bodies(bytes in body()) {
        let state = state();
        let keys = ["realload.io/cpu-avg-5m"];
        let _ = parse_args(&bytes, &keys);
        let _ = parse_bind(&bytes);
        let (status, _) = filter_body(&state, &Bytes::from(bytes.clone()), Instant::now());
        prop_assert!(status == StatusCode::OK || status == StatusCode::BAD_REQUEST, "{status}");
        let (status, answer) = prioritize_body(&state, &bytes, Instant::now());
        prop_assert!(status == StatusCode::OK || status == StatusCode::BAD_REQUEST, "{status}");
        prop_assert!(serde_json::from_str::<serde_json::Value>(&answer).is_ok(), "{answer}");
    }

    #[test]
    fn prometheus_answers(bytes in prop_oneof![any::<Vec<u8>>(), mutated(PROMETHEUS)]) {
        if let Ok(series) = parse_query_response(&bytes, "instance") {
            prop_assert!(series.len() <= 2 || bytes.len() > PROMETHEUS.len());
        }
    }

    #[test]
    fn node_exporter_text(bytes in prop_oneof![any::<Vec<u8>>(), mutated(EXPOSITION)]) {
        let text = String::from_utf8_lossy(&bytes);
        if let Some(sample) = parse_exposition(&text, "2026-11-22T01:05:00Z".parse().unwrap()) {
            let _ = sample.cpu_total;
        }
    }
}

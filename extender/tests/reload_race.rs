//! A policy reload racing thousands of filter and prioritize requests: every answer is exactly
//! the answer of one policy, never a mix (readings parsed for one policy and judged by the other,
//! or annotation keys taken from one and the judgement from the other).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code may panic

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use axum::body::Bytes;
use k8s_openapi::api::core::v1::Node;
use realload_common::policy::Policy;
use realload_extender::metrics::Metrics;
use realload_extender::server::{Reply, filter_body, prioritize_body};
use realload_extender::state::{Clock, State};
use serde_json::{Value, json};

const NOW: &str = "2026-11-22T01:05:00Z";
const SAMPLED: &str = "2026-11-22T01:04:30Z";
const NODES: usize = 60;

/// A policy with one metric read from `annotation` and filtering above `filter_above`.
fn policy(annotation: &str, filter_above: f64) -> Policy {
    Policy::from_yaml(&format!(
        r#"
apiVersion: realload.io/v1alpha1
kind: Policy
metrics:
  - name: cpu-avg-5m
    resource: cpu
    query: 1 - avg by (instance) (rate(node_cpu_seconds_total{{mode="idle"}}[5m]))
    annotation: {annotation}
    filterAbove: {filter_above}
    weight: 1
descheduler:
  hotMetric: cpu-avg-5m
"#
    ))
    .unwrap()
}

/// Under A a node passes when `a` is below 0.5; under B when `b = 1 - a` is below 0.8. A's
/// readings judged by B's threshold, or B's by A's, give a third and a fourth answer.
fn policies() -> (Policy, Policy) {
    (policy("test.io/a", 0.5), policy("test.io/b", 0.8))
}

fn node_json(i: usize) -> Value {
    let a = (i + 1) as f64 / (NODES + 1) as f64;
    json!({"metadata": {"name": format!("node-{i:03}"), "annotations": {
            "test.io/a": format!("{a:.4},{SAMPLED}"),
            "test.io/b": format!("{:.4},{SAMPLED}", 1.0 - a)}},
           "status": {"allocatable": {"cpu": "8", "memory": "32Gi"},
                      "conditions": [{"type": "Ready", "status": "True"}]}})
}

fn state(policy: Policy) -> Arc<State> {
    let state = Arc::new(State::new(
        policy,
        Clock::Fixed(NOW.parse().unwrap()),
        Metrics::new(),
    ));
    let nodes: Vec<Node> = (0..NODES)
        .map(|i| serde_json::from_value(node_json(i)).unwrap())
        .collect();
    state.load_snapshot(&nodes, &[], &[]);
    state
}

fn pod() -> Value {
    json!({"metadata": {"name": "web-1", "namespace": "default", "uid": "uid-web-1"},
           "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "100m"}}}]}})
}

/// The four request bodies: filter and prioritize, cache mode (names) and non-cache (Nodes).
fn bodies() -> [(&'static str, Bytes); 4] {
    let names: Vec<String> = (0..NODES).map(|i| format!("node-{i:03}")).collect();
    let nodes: Vec<Value> = (0..NODES).map(node_json).collect();
    let cache = json!({"Pod": pod(), "Nodes": null, "NodeNames": names}).to_string();
    let full = json!({"Pod": pod(), "Nodes": {"items": nodes}, "NodeNames": null}).to_string();
    [
        ("filter", Bytes::from(cache.clone())),
        ("prioritize", Bytes::from(cache)),
        ("filter", Bytes::from(full.clone())),
        ("prioritize", Bytes::from(full)),
    ]
}

async fn text(reply: Reply) -> String {
    use http_body_util::BodyExt;
    let bytes = reply.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

async fn answer(state: &State, verb: &str, body: &Bytes) -> String {
    if verb == "filter" {
        let (status, reply) = filter_body(state, body, Instant::now());
        assert!(status.is_success());
        text(reply).await
    } else {
        let (status, text) = prioritize_body(state, body, Instant::now());
        assert!(status.is_success());
        text
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_reloads_never_mix_into_an_answer() {
    let (a, b) = policies();
    let bodies = bodies();
    // What each policy alone answers.
    let (alone_a, alone_b) = (state(a.clone()), state(b.clone()));
    let mut expected = Vec::new();
    for (verb, body) in &bodies {
        let under_a = answer(&alone_a, verb, body).await;
        let under_b = answer(&alone_b, verb, body).await;
        assert_ne!(
            under_a, under_b,
            "the policies must answer {verb} differently"
        );
        expected.push((under_a, under_b));
    }
    let passing = |answer: &str| {
        let v: Value = serde_json::from_str(answer).unwrap();
        v["NodeNames"].as_array().unwrap().len()
    };
    // A passes a = (i+1)/61 < 0.5: 30 nodes; B passes 1 - a < 0.8: 48 nodes.
    // under `a`, node-029 (30/61 = 0.492) plus the pod's own 100m (× 0.85 / 8 cores = 0.011) is
    // over 0.5: 29 pass
    assert_eq!((passing(&expected[0].0), passing(&expected[0].1)), (29, 48));

    let shared = state(a.clone());
    let stop = Arc::new(AtomicBool::new(false));
    let reloads = {
        let (shared, stop) = (shared.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                shared.set_policy(if n.is_multiple_of(2) {
                    b.clone()
                } else {
                    a.clone()
                });
                n += 1;
            }
            n
        })
    };

    let bodies = Arc::new(bodies);
    let expected = Arc::new(expected);
    let mut workers = Vec::new();
    for worker in 0..4 {
        let (shared, bodies, expected) = (shared.clone(), bodies.clone(), expected.clone());
        workers.push(tokio::spawn(async move {
            let (mut seen_a, mut seen_b) = (0usize, 0usize);
            let mut i = worker;
            // At least 1,500 requests each; on until both policies have answered some.
            while i < 1_500 * 4 || ((seen_a < 50 || seen_b < 50) && i < 200_000) {
                let k = i % bodies.len();
                let (verb, body) = &bodies[k];
                let got = answer(&shared, verb, body).await;
                let (under_a, under_b) = &expected[k];
                if &got == under_a {
                    seen_a += 1;
                } else if &got == under_b {
                    seen_b += 1;
                } else {
                    panic!(
                        "request {i} ({verb}, body {k}) got an answer of neither policy:\n{got}"
                    );
                }
                i += 4;
                if i % 64 == worker {
                    tokio::task::yield_now().await;
                }
            }
            (seen_a, seen_b)
        }));
    }
    let (mut seen_a, mut seen_b) = (0, 0);
    for w in workers {
        let (x, y) = w.await.unwrap();
        seen_a += x;
        seen_b += y;
    }
    stop.store(true, Ordering::Relaxed);
    let reloads = reloads.join().unwrap();
    eprintln!("{reloads} reloads; {seen_a} answers under A, {seen_b} under B");
    assert!(seen_a + seen_b >= 6_000);
    assert!(
        seen_a >= 50 && seen_b >= 50,
        "both policies answered ({seen_a} A, {seen_b} B)"
    );
    assert!(reloads >= 10, "the reloads ran alongside ({reloads})");
}

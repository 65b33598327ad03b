//! Router-level tests with request bodies in the exact form kube-scheduler sends.

use axum::body::Body;
use axum::http::Request as HttpRequest;
use http_body_util::BodyExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use realload_common::policy::Policy;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::*;
use crate::metrics::Metrics;
use crate::state::Clock;

const NOW: &str = "2026-11-22T01:05:00Z";
const FRESH: &str = "2026-11-22T01:04:00Z";
const FILTER_NOCACHE: &str = include_str!("../../tests/fixtures/filter-nocache.json");

fn node(name: &str, cpu: &str, sampled: &str) -> Value {
    json!({"metadata": {"name": name, "annotations": {
            "realload.io/cpu-avg-5m": format!("{cpu},{sampled}"),
            "realload.io/cpu-max-1h": format!("{cpu},{sampled}"),
            "realload.io/mem-avg-5m": format!("0.3000,{sampled}")}},
           "status": {"allocatable": {"cpu": "8", "memory": "32Gi"},
                      "conditions": [{"type": "Ready", "status": "True"}]}})
}

fn bare_node(name: &str) -> Value {
    json!({"metadata": {"name": name}, "status": {"allocatable": {"cpu": "8", "memory": "32Gi"}}})
}

fn bound_pod(uid: &str, node: &str, cpu: &str, at: &str) -> Value {
    json!({"metadata": {"name": uid, "namespace": "default", "uid": uid},
           "spec": {"nodeName": node, "containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]},
           "status": {"phase": "Running", "conditions": [{"type": "PodScheduled", "status": "True", "lastTransitionTime": at}]}})
}

/// The policy most tests here use: the filter and score as they read (no idle band, the pod's
/// own requests not counted, a filter that may leave no node, a bound pod forgotten at the
/// first sample after its binding), so each test's arithmetic shows one rule at a time. The
/// shipped defaults are tested in `the_shipped_defaults_*` below and in
/// `realload_common::scoring`.
const CLASSIC: &str = "scoring: {idleBelow: 0}\nguards: {neverStrand: false}\nhotspot: {includePod: false, readingWindow: 0s}\n";

fn classic() -> Policy {
    Policy::from_yaml(CLASSIC).unwrap()
}

fn state_with(nodes: &[Value], pods: &[Value]) -> Arc<State> {
    let state = Arc::new(State::new(
        classic(),
        Clock::Fixed(NOW.parse().unwrap()),
        Metrics::new(),
    ));
    let nodes: Vec<Node> = nodes
        .iter()
        .map(|n| serde_json::from_value(n.clone()).unwrap())
        .collect();
    let pods: Vec<Pod> = pods
        .iter()
        .map(|p| serde_json::from_value(p.clone()).unwrap())
        .collect();
    state.load_snapshot(&nodes, &pods, &[]);
    state
}

/// Both listeners' routes in one router, for tests that use both.
fn router(app: AppState, prefix: &str) -> Router {
    with_not_found(api_router(app.clone(), prefix).merge(admin_router(app)))
}

fn app(state: Arc<State>) -> Router {
    router(
        AppState {
            state,
            body_limit: 1 << 20,
            binder: Some(Binder { client: None }),
        },
        "/scheduler",
    )
}

/// The pod kube-scheduler sends, taken from the captured request, with a small CPU request
/// (the captured pod asks for 7 cores, which with `hotspot.includePod` would fill the tests'
/// 8-core nodes by itself).
fn real_pod() -> Value {
    let v: Value = serde_json::from_str(FILTER_NOCACHE).unwrap();
    let mut pod = v["Pod"].clone();
    pod["spec"]["containers"][0]["resources"]["requests"]["cpu"] = json!("100m");
    pod
}

fn cache_body(names: &[&str]) -> String {
    serde_json::to_string(&json!({"Pod": real_pod(), "Nodes": null, "NodeNames": names})).unwrap()
}

async fn post(router: &Router, path: &str, body: impl Into<Body>) -> (StatusCode, Value) {
    let response = router
        .clone()
        .oneshot(
            HttpRequest::post(path)
                .header("content-type", "application/json")
                .body(body.into())
                .unwrap(),
        )
        .await
        .unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn get(router: &Router, path: &str) -> (StatusCode, String) {
    let response = router
        .clone()
        .oneshot(HttpRequest::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

fn scores(v: &Value) -> Vec<(String, i64)> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["Host"].as_str().unwrap().to_string(),
                h["Score"].as_i64().unwrap(),
            )
        })
        .collect()
}

fn score_of(v: &Value, host: &str) -> i64 {
    scores(v).into_iter().find(|(h, _)| h == host).unwrap().1
}

#[tokio::test]
async fn cache_mode_filters_hot_nodes_and_scores_every_input_node() {
    let r = app(state_with(
        &[
            node("cool", "0.2000", FRESH),
            node("hot", "0.9000", FRESH),
            node("mid", "0.5000", FRESH),
        ],
        &[],
    ));
    let (status, v) = post(&r, "/scheduler/filter", cache_body(&["cool", "hot", "mid"])).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["Nodes"], Value::Null);
    assert_eq!(v["NodeNames"], json!(["cool", "mid"]));
    assert_eq!(
        v["FailedNodes"],
        json!({"hot": "realload: node cpu-avg-5m above 0.85"})
    );
    assert_eq!(v["Error"], "");

    let (status, v) = post(
        &r,
        "/scheduler/prioritize",
        cache_body(&["cool", "hot", "mid"]),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let s = scores(&v);
    assert_eq!(s.len(), 3, "every input node gets a score");
    assert!(s.iter().all(|(_, score)| (0..=10).contains(score)));
    assert!(
        score_of(&v, "cool") > score_of(&v, "mid") && score_of(&v, "mid") > score_of(&v, "hot")
    );
    // only names from the request come back
    let (_, v) = post(&r, "/scheduler/filter", cache_body(&["mid"])).await;
    assert_eq!(v["NodeNames"], json!(["mid"]));
}

#[tokio::test]
async fn non_cache_mode_judges_the_carried_copy_when_it_differs_from_the_index() {
    let r = app(state_with(
        &[node("n1", "0.9500", FRESH), node("n2", "0.1000", FRESH)],
        &[],
    ));
    let body = |n1_cpu: &str| {
        let mut pod = real_pod();
        pod["metadata"]["uid"] = json!(format!("carried-{n1_cpu}"));
        serde_json::to_string(&json!({"Pod": pod, "NodeNames": null,
            "Nodes": {"items": [node("n1", n1_cpu, FRESH), node("n2", "0.1000", FRESH)]}}))
        .unwrap()
    };
    // the request's copy of n1 is cool while the index holds it hot: the request wins
    let (_, v) = post(&r, "/scheduler/filter", body("0.1000")).await;
    assert_eq!(v["Nodes"]["items"].as_array().unwrap().len(), 2, "{v}");
    // the same copy as the index's: judged from the index's cached judgement, same rule
    let (_, v) = post(&r, "/scheduler/filter", body("0.9500")).await;
    assert_eq!(v["Nodes"]["items"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(
        v["FailedNodes"]["n1"],
        "realload: node cpu-avg-5m above 0.85"
    );
    // allocatable differs: judged from the carried copy too (n1 with a 1-core allocatable)
    let mut small = node("n1", "0.9500", FRESH);
    small["status"]["allocatable"]["cpu"] = json!("1");
    let mut pod = real_pod();
    pod["metadata"]["uid"] = json!("carried-small");
    let text = serde_json::to_string(&json!({"Pod": pod, "NodeNames": null,
        "Nodes": {"items": [small, node("n2", "0.1000", FRESH)]}}))
    .unwrap();
    let (_, v) = post(&r, "/scheduler/filter", text).await;
    assert_eq!(v["Nodes"]["items"].as_array().unwrap().len(), 1, "{v}");
}

#[tokio::test]
async fn non_cache_mode_reads_the_request_and_echoes_nodes_unchanged() {
    let r = app(state_with(&[], &[]));
    let mut body: Value = serde_json::from_str(FILTER_NOCACHE).unwrap();
    // annotate the real Node objects: node-1 hot, node-2 cool
    body["Nodes"]["items"][0]["metadata"]["annotations"] =
        node("x", "0.9500", FRESH)["metadata"]["annotations"].clone();
    body["Nodes"]["items"][1]["metadata"]["annotations"] =
        node("x", "0.1000", FRESH)["metadata"]["annotations"].clone();
    let text = serde_json::to_string(&body).unwrap();
    let (status, v) = post(&r, "/scheduler/filter", text.clone()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["NodeNames"], Value::Null);
    assert_eq!(v["Nodes"]["items"].as_array().unwrap().len(), 1);
    assert_eq!(
        v["Nodes"]["items"][0], body["Nodes"]["items"][1],
        "echoed as received"
    );
    assert_eq!(
        v["FailedNodes"]["fake-node-1"],
        "realload: node cpu-avg-5m above 0.85"
    );
    let (_, v) = post(&r, "/scheduler/prioritize", text).await;
    assert!(score_of(&v, "fake-node-2") > score_of(&v, "fake-node-1"));

    // the captured body as-is: no readings at all, so every node is unknown and the breaker trips
    let (status, v) = post(&r, "/scheduler/filter", FILTER_NOCACHE).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["Nodes"]["items"].as_array().unwrap().len(), 2);

    // the echo is sent with its exact Content-Length (not chunked)
    let response = r
        .clone()
        .oneshot(
            HttpRequest::post("/scheduler/filter")
                .body(Body::from(FILTER_NOCACHE))
                .unwrap(),
        )
        .await
        .unwrap();
    let length: usize = response.headers()[header::CONTENT_LENGTH]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(length, bytes.len());
}

#[tokio::test]
async fn every_reading_class_passes_the_filter_and_never_outranks_a_valid_node() {
    let zero = node("zero", "0.0000", FRESH);
    let stale = node("stale", "0.1000", "2026-11-22T00:40:00Z");
    let missing = bare_node("missing");
    let mut invalid = node("invalid", "0.1000", FRESH);
    invalid["metadata"]["annotations"]["realload.io/cpu-avg-5m"] =
        json!("NaN,2026-11-22T01:04:00Z");
    let names = [
        "valid", "zero", "stale", "missing", "invalid", "busy1", "busy2", "busy3", "busy4", "busy5",
    ];
    let mut nodes = vec![
        node("valid", "0.7000", FRESH),
        zero,
        stale,
        missing,
        invalid,
    ];
    for b in &names[5..] {
        nodes.push(node(b, "0.7500", FRESH));
    }
    let r = app(state_with(&nodes, &[]));
    let (_, v) = post(&r, "/scheduler/filter", cache_body(&names)).await;
    assert_eq!(
        v["NodeNames"].as_array().unwrap().len(),
        names.len(),
        "unknown nodes are not known to be hot"
    );
    let (_, v) = post(&r, "/scheduler/prioritize", cache_body(&names)).await;
    let valid = score_of(&v, "valid");
    for unknown in ["zero", "stale", "missing", "invalid", "not-in-index"] {
        if unknown == "not-in-index" {
            continue;
        }
        assert!(
            score_of(&v, unknown) < valid,
            "{unknown} outranks a valid node at 0.70"
        );
        assert_eq!(score_of(&v, unknown), 0);
    }
    // a name the index does not know is an unknown node too
    let (_, v) = post(
        &r,
        "/scheduler/prioritize",
        cache_body(&["valid", "not-in-index"]),
    )
    .await;
    assert_eq!(score_of(&v, "not-in-index"), 0);
    let (_, debug) = get(&r, "/debug/nodes").await;
    let debug: Value = serde_json::from_str(&debug).unwrap();
    let quality = |n: &str| {
        debug["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == n)
            .unwrap()["readings"][0]["quality"]
            .clone()
    };
    assert_eq!(quality("zero"), "suspect-zero");
    assert_eq!(quality("stale"), "stale");
    assert_eq!(quality("missing"), "missing");
    assert_eq!(quality("invalid"), "invalid");
    assert_eq!(quality("valid"), "valid");
}

#[tokio::test]
async fn breaker_trips_when_most_candidates_are_unknown() {
    let r = app(state_with(
        &[node("hot", "0.9500", FRESH), bare_node("a"), bare_node("b")],
        &[],
    ));
    let (_, v) = post(&r, "/scheduler/filter", cache_body(&["hot", "a", "b"])).await;
    assert_eq!(
        v["NodeNames"],
        json!(["hot", "a", "b"]),
        "nothing is filtered for load"
    );
    let (_, v) = post(&r, "/scheduler/prioritize", cache_body(&["hot", "a", "b"])).await;
    let s = scores(&v);
    assert!(s.iter().all(|(_, score)| *score == s[0].1), "{s:?}");
    let (_, metrics) = get(&r, "/metrics").await;
    assert!(
        metrics.contains("realload_extender_breaker_trips_total 2"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_burst_of_bindings_lowers_a_node_until_a_newer_reading_arrives() {
    let state = state_with(
        &[node("a", "0.3000", FRESH), node("b", "0.3500", FRESH)],
        &[],
    );
    let r = app(state.clone());
    let (_, v) = post(&r, "/scheduler/prioritize", cache_body(&["a", "b"])).await;
    assert!(score_of(&v, "a") >= score_of(&v, "b"));
    let before = score_of(&v, "a");
    // four 2-core pods land on "a" after its reading
    for i in 0..4 {
        state.apply_pod(
            &serde_json::from_value(bound_pod(
                &format!("p{i}"),
                "a",
                "2",
                "2026-11-22T01:04:30Z",
            ))
            .unwrap(),
        );
    }
    let (_, v) = post(&r, "/scheduler/prioritize", cache_body(&["a", "b"])).await;
    assert!(score_of(&v, "a") < before, "burst not counted");
    assert!(score_of(&v, "a") < score_of(&v, "b"));
    let (_, f) = post(&r, "/scheduler/filter", cache_body(&["a", "b"])).await;
    assert_eq!(
        f["NodeNames"],
        json!(["b"]),
        "0.30 + 4 × 2 cores × 0.85 / 8 = 1.15 is above 0.85"
    );
    // a newer reading covers them
    state.apply_node(&serde_json::from_value(node("a", "0.5000", "2026-11-22T01:04:50Z")).unwrap());
    let (_, v) = post(&r, "/scheduler/prioritize", cache_body(&["a", "b"])).await;
    assert_eq!(
        score_of(&v, "a"),
        6,
        "10 × (0.5·0.5 + 0.2·0.5 + 0.3·0.7) = 5.6"
    );
    let (_, f) = post(&r, "/scheduler/filter", cache_body(&["a", "b"])).await;
    assert_eq!(f["NodeNames"], json!(["a", "b"]));
}

#[tokio::test]
async fn debug_nodes_shows_the_pods_a_reading_shows_only_in_part() {
    let state = state_with(&[node("a", "0.3000", FRESH)], &[]);
    state.set_policy(Policy::default());
    // bound a minute before the 01:04 sample (a fifth shown), and after it (none shown)
    for (uid, at) in [
        ("p1", "2026-11-22T01:03:00Z"),
        ("p2", "2026-11-22T01:04:30Z"),
    ] {
        state.apply_pod(&serde_json::from_value(bound_pod(uid, "a", "2", at)).unwrap());
    }
    let r = app(state);
    let (_, debug) = get(&r, "/debug/nodes").await;
    let debug: Value = serde_json::from_str(&debug).unwrap();
    let a = &debug["nodes"][0];
    assert_eq!(a["ledgerPods"], 2, "{a}");
    assert_eq!(a["ledgerPodsPartlyShown"], 1, "{a}");
    let expected = 2000.0 * 0.85 * (0.8 + 1.0) / 8000.0;
    assert!(
        (a["hotspotCpu"].as_f64().unwrap() - expected).abs() < 1e-9,
        "{a}"
    );
}

#[tokio::test]
async fn daemonset_and_ignored_pods_get_neutral_answers() {
    let r = app(state_with(
        &[node("hot", "0.9500", FRESH), node("cool", "0.1000", FRESH)],
        &[],
    ));
    let mut pod = real_pod();
    pod["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "ds", "uid": "u", "controller": true}]);
    let body =
        serde_json::to_string(&json!({"Pod": pod, "Nodes": null, "NodeNames": ["hot", "cool"]}))
            .unwrap();
    let (_, v) = post(&r, "/scheduler/filter", body.clone()).await;
    assert_eq!(v["NodeNames"], json!(["hot", "cool"]));
    let (_, v) = post(&r, "/scheduler/prioritize", body).await;
    assert_eq!(score_of(&v, "hot"), score_of(&v, "cool"));
    let mut pod = real_pod();
    pod["metadata"]["annotations"] = json!({"realload.io/ignore": "true"});
    let body =
        serde_json::to_string(&json!({"Pod": pod, "Nodes": null, "NodeNames": ["hot", "cool"]}))
            .unwrap();
    let (_, v) = post(&r, "/scheduler/filter", body).await;
    assert_eq!(v["NodeNames"], json!(["hot", "cool"]));
}

#[tokio::test]
async fn before_sync_everything_passes_with_equal_scores() {
    let state = Arc::new(State::new(
        Policy::default(),
        Clock::Fixed(NOW.parse().unwrap()),
        Metrics::new(),
    ));
    let r = app(state.clone());
    let (_, v) = post(&r, "/scheduler/filter", cache_body(&["a", "b"])).await;
    assert_eq!(v["NodeNames"], json!(["a", "b"]));
    let (_, v) = post(&r, "/scheduler/prioritize", cache_body(&["a", "b"])).await;
    assert_eq!(score_of(&v, "a"), score_of(&v, "b"));
    let (status, _) = get(&r, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let (_, metrics) = get(&r, "/metrics").await;
    assert!(
        metrics.contains("realload_extender_unsynced_requests_total 2"),
        "{metrics}"
    );
    state.load_snapshot(&[], &[], &[]);
    assert_eq!(get(&r, "/readyz").await.0, StatusCode::OK);
}

#[tokio::test]
async fn bad_inputs_get_400_with_a_json_error_and_the_server_keeps_serving() {
    let state = state_with(&[node("a", "0.3000", FRESH)], &[]);
    let r = router(
        AppState {
            state,
            body_limit: 4096,
            binder: None,
        },
        "",
    );
    let cases: Vec<(&str, String, &str)> = vec![
        ("/filter", "{not json".into(), "not valid extender JSON"),
        (
            "/filter",
            r#"{"Nodes":null,"NodeNames":["a"]}"#.into(),
            "no Pod",
        ),
        (
            "/filter",
            r#"{"Pod":{},"Nodes":{"items":[]},"NodeNames":["a"]}"#.into(),
            "both Nodes and NodeNames",
        ),
        (
            "/filter",
            r#"{"Pod":{},"Nodes":null,"NodeNames":null}"#.into(),
            "neither Nodes nor NodeNames",
        ),
        ("/prioritize", "null".into(), "not valid extender JSON"),
        (
            "/prioritize",
            r#"{"Pod":{},"Nodes":{"items":[42]}}"#.into(),
            "Nodes.items[0]",
        ),
    ];
    for (path, body, fragment) in cases {
        let (status, v) = post(&r, path, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path} {body}");
        assert!(
            v["Error"].as_str().unwrap().contains(fragment),
            "{path} {body}: {v}"
        );
    }
    let big = format!("{{\"Pod\":{{}},\"NodeNames\":[\"{}\"]}}", "x".repeat(5000));
    let (status, v) = post(&r, "/filter", big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(v["Error"].as_str().unwrap().contains("4096 byte limit"));
    let (status, v) = post(&r, "/filter", cache_body(&["a"])).await;
    assert_eq!(
        (status, v["NodeNames"].clone()),
        (StatusCode::OK, json!(["a"])),
        "still serving"
    );
    let (status, _) = post(&r, "/bind", "{}").await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "bind is routed only with --bind"
    );
}

#[tokio::test]
async fn bind_without_a_cluster_says_so() {
    let r = app(state_with(&[node("a", "0.3000", FRESH)], &[]));
    let (status, v) = post(
        &r,
        "/scheduler/bind",
        include_str!("../../tests/fixtures/bind.json"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(v["Error"].as_str().unwrap().contains("snapshot mode"));
    let (status, v) = post(&r, "/scheduler/bind", r#"{"PodName":"p"}"#).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(v["Error"].as_str().unwrap().contains("PodNamespace"));
}

#[tokio::test]
async fn metrics_count_requests_rejections_and_qualities() {
    let state = state_with(
        &[
            node("hot", "0.9500", FRESH),
            node("cool", "0.1000", FRESH),
            bare_node("new"),
        ],
        &[],
    );
    let r = app(state.clone());
    post(&r, "/scheduler/filter", cache_body(&["hot", "cool", "new"])).await;
    state.housekeep();
    let (_, m) = get(&r, "/metrics").await;
    assert!(
        m.contains("realload_extender_requests_total{verb=\"filter\",outcome=\"ok\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("realload_extender_filter_rejections_total{reason=\"cpu-avg-5m\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("realload_extender_nodes{metric=\"cpu-avg-5m\",quality=\"missing\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("realload_extender_nodes{metric=\"cpu-avg-5m\",quality=\"valid\"} 2"),
        "{m}"
    );
    assert!(
        m.contains("realload_extender_request_duration_seconds_bucket"),
        "{m}"
    );
    assert!(m.contains("realload_extender_ledger_pods 0"), "{m}");
}

#[tokio::test]
async fn policy_reload_applies_valid_files_and_keeps_the_old_policy_on_invalid_ones() {
    let dir = std::env::temp_dir().join(format!("realload-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("policy.yaml");
    let first = "metrics: [{name: cpu-avg-5m, filterAbove: 0.95}, {name: cpu-sustained-10m}]\nguards: {neverStrand: false}\n";
    std::fs::write(&file, first).unwrap();
    let state = state_with(&[node("n", "0.9000", FRESH)], &[]);
    // as `serve` does: the file's policy is in force when watching starts
    state.set_policy(Policy::from_yaml(first).unwrap());
    let shutdown = tokio_util::sync::CancellationToken::new();
    crate::serve::spawn_policy_reload(
        state.clone(),
        file.clone(),
        std::time::Duration::from_millis(50),
        shutdown.clone(),
    );
    let r = app(state.clone());
    let wait_for = |want: Option<f64>| {
        let state = state.clone();
        async move {
            for _ in 0..100 {
                if state
                    .policy()
                    .metric("cpu-avg-5m")
                    .and_then(|m| m.filter_above)
                    == want
                {
                    return true;
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            false
        }
    };
    assert!(wait_for(Some(0.95)).await);
    let (_, v) = post(&r, "/scheduler/filter", cache_body(&["n"])).await;
    assert_eq!(v["NodeNames"], json!(["n"]), "0.90 passes a 0.95 filter");
    std::fs::write(&file, "metrics: [{name: cpu-avg-5m, filterAbove: 7}]\n").unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        state.policy().metric("cpu-avg-5m").unwrap().filter_above,
        Some(0.95),
        "invalid policy rejected"
    );
    let (_, m) = get(&r, "/metrics").await;
    assert!(
        m.contains("realload_extender_policy_reloads_total{result=\"invalid\"} 1"),
        "{m}"
    );
    std::fs::write(
        &file,
        "metrics: [{name: cpu-avg-5m, filterAbove: 0.85}, {name: cpu-sustained-10m}]\nguards: {neverStrand: false}\n",
    )
    .unwrap();
    assert!(wait_for(Some(0.85)).await);
    let (_, v) = post(&r, "/scheduler/filter", cache_body(&["n"])).await;
    assert_eq!(v["NodeNames"], json!([]));
    shutdown.cancel();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn echoed_runs_are_slices_of_the_request_and_valid_json() {
    // whitespace and odd spacing between items, as any JSON encoder may write
    let body = Bytes::from_static(
        br#"{"Pod":{"metadata":{"name":"p"}},"Nodes":{"items":[ {"metadata":{"name":"a"}} , {"metadata":{"name":"b"}},{"metadata":{"name":"c"}},
          {"metadata":{"name":"d"}}]},"NodeNames":null}"#,
    );
    let args = protocol::parse_args(&body, &[]).unwrap();
    let Candidates::Nodes(nodes) = &args.candidates else {
        panic!("full Nodes expected")
    };
    let names = |chunks: &[Bytes]| -> Vec<String> {
        let joined: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
        let items: Vec<Value> =
            serde_json::from_slice(&[b"[", joined.as_slice(), b"]"].concat()).unwrap();
        items
            .iter()
            .map(|n| n["metadata"]["name"].as_str().unwrap().to_string())
            .collect()
    };
    for (passed, expected_chunks) in [
        (vec![], 0),
        (vec![0, 1, 2, 3], 1),
        (vec![0, 1, 3], 3),
        (vec![1], 1),
        (vec![0, 2], 3),
    ] {
        let chunks = echo_runs(
            &body,
            &passed,
            |i| span_in(&body, nodes[i].0),
            |i| Bytes::copy_from_slice(nodes[i].0),
        );
        assert_eq!(chunks.len(), expected_chunks, "{passed:?}");
        let want: Vec<String> = passed
            .iter()
            .map(|i| ["a", "b", "c", "d"][*i].to_string())
            .collect();
        assert_eq!(names(&chunks), want);
        // zero-copy: every Node chunk points into the request body
        for c in chunks.iter().filter(|c| c.len() > 1) {
            let start = c.as_ptr() as usize - body.as_ptr() as usize;
            assert!(start + c.len() <= body.len());
        }
    }
}

#[test]
fn echoed_names_are_slices_of_the_request_except_escaped_ones() {
    let body = Bytes::from_static(
        br#"{"Pod":{"metadata":{"name":"p"}},"Nodes":null,"NodeNames":["a", "b","c\u0064","e","f"]}"#,
    );
    let args = protocol::parse_args(&body, &[]).unwrap();
    let Candidates::Names(names) = &args.candidates else {
        panic!("names expected")
    };
    for (passed, expected_chunks) in [
        (vec![0, 1], 1),
        (vec![0, 1, 2, 3, 4], 5),
        (vec![3, 4], 1),
        (vec![0, 4], 3),
        (vec![2], 1),
    ] {
        let chunks = echo_runs(
            &body,
            &passed,
            |i| quoted_name_span(&body, &names[i]),
            |i| Bytes::from(protocol::json_string(&names[i])),
        );
        assert_eq!(chunks.len(), expected_chunks, "{passed:?}");
        let joined: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
        let got: Vec<String> =
            serde_json::from_slice(&[b"[", joined.as_slice(), b"]"].concat()).unwrap();
        let want: Vec<&str> = passed
            .iter()
            .map(|i| ["a", "b", "cd", "e", "f"][*i])
            .collect();
        assert_eq!(got, want);
    }
}

fn cache_body_for(uid: &str, names: &[&str]) -> String {
    let mut pod = real_pod();
    pod["metadata"]["uid"] = json!(uid);
    pod["metadata"]["name"] = json!(uid);
    serde_json::to_string(&json!({"Pod": pod, "Nodes": null, "NodeNames": names})).unwrap()
}

fn passed(v: &Value) -> Vec<String> {
    v["NodeNames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn an_unknown_node_takes_at_most_the_cap_even_before_bindings_arrive() {
    // the incident: the known nodes are hot, only unknown ones are left
    let state = state_with(
        &[
            node("hot", "0.9500", FRESH),
            bare_node("u1"),
            bare_node("u2"),
        ],
        &[],
    );
    let r = app(state.clone());
    let offered = ["hot", "u1", "u2"];
    // 1 of 3 offered nodes is known: 2/3 unknown trips the breaker (default 0.5); use a
    // policy whose breaker allows it, to see the cap on its own
    state.set_policy(
        Policy::from_yaml(
            "scoring: {idleBelow: 0}\nguards: {maxUnknownFraction: 0.9, neverStrand: false}\n",
        )
        .unwrap(),
    );
    let (_, v) = post(&r, "/scheduler/filter", cache_body_for("p1", &offered)).await;
    assert_eq!(passed(&v), ["u1", "u2"]);
    let (_, v) = post(&r, "/scheduler/filter", cache_body_for("p2", &offered)).await;
    assert_eq!(
        passed(&v),
        ["u1", "u2"],
        "one pod in flight on each: under the cap of 2"
    );
    // p1 and p2 may both be heading for either node: both are at the cap now
    let (_, v) = post(&r, "/scheduler/filter", cache_body_for("p3", &offered)).await;
    assert!(passed(&v).is_empty(), "{v}");
    let message = v["FailedNodes"]["u1"].as_str().unwrap();
    assert!(
        message.contains("node load unknown") && message.contains("the pod waits"),
        "{message}"
    );
    // a second filter call for p1 does not count p1 against itself
    let (_, v) = post(&r, "/scheduler/filter", cache_body_for("p1", &offered)).await;
    assert_eq!(passed(&v), ["u1", "u2"]);
    // p1 and p2 are bound to u1: the ledger counts them there, the reservations go
    for uid in ["p1", "p2"] {
        state.apply_pod(&serde_json::from_value(bound_pod(uid, "u1", "1", NOW)).unwrap());
    }
    let (_, v) = post(&r, "/scheduler/filter", cache_body_for("p3", &offered)).await;
    assert_eq!(passed(&v), ["u2"], "u1 took its two pods; u2 took none");
    assert_eq!(
        v["FailedNodes"]["u1"].as_str().unwrap(),
        message,
        "one constant message, grouped by kube-scheduler"
    );
    let (_, m) = get(&r, "/metrics").await;
    assert!(
        m.contains("realload_extender_filter_rejections_total{reason=\"unknown-cap\"}"),
        "{m}"
    );
    let (_, debug) = get(&r, "/debug/nodes").await;
    let debug: Value = serde_json::from_str(&debug).unwrap();
    let u1 = debug["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "u1")
        .unwrap();
    assert_eq!(u1["unknownPods"], 2);
    assert_eq!(u1["filter"]["verdict"], "unknownCap");
}

fn prioritize_body_for(uid: &str, cpu: &str, names: &[&str]) -> String {
    let mut pod = real_pod();
    pod["metadata"]["uid"] = json!(uid);
    pod["metadata"]["name"] = json!(uid);
    pod["spec"]["containers"] =
        json!([{"name": "c", "resources": {"requests": {"cpu": cpu, "memory": "1Gi"}}}]);
    serde_json::to_string(&json!({"Pod": pod, "Nodes": null, "NodeNames": names})).unwrap()
}

#[tokio::test]
async fn prioritize_reserves_the_pod_on_the_best_node_until_its_binding_is_seen() {
    let state = state_with(
        &[
            node("a", "0.0500", FRESH),
            node("b", "0.3000", FRESH),
            node("c", "0.3000", FRESH),
        ],
        &[],
    );
    let r = app(state.clone());
    let offered = ["a", "b", "c"];
    let (_, first) = post(
        &r,
        "/scheduler/prioritize",
        prioritize_body_for("p1", "4", &offered),
    )
    .await;
    assert!(score_of(&first, "a") > score_of(&first, "b"), "{first}");
    // p1 asks again (a retry): its own reservation does not count against it
    let (_, again) = post(
        &r,
        "/scheduler/prioritize",
        prioritize_body_for("p1", "4", &offered),
    )
    .await;
    assert_eq!(scores(&again), scores(&first));
    // the next pod of the burst, before p1's binding is seen: a carries p1's 4 cores
    let (_, second) = post(
        &r,
        "/scheduler/prioritize",
        prioritize_body_for("p2", "4", &offered),
    )
    .await;
    assert!(score_of(&second, "a") < score_of(&first, "a"), "{second}");
    assert!(score_of(&second, "b") >= score_of(&second, "a"), "{second}");
    let (_, debug) = get(&r, "/debug/nodes").await;
    let debug: Value = serde_json::from_str(&debug).unwrap();
    let reserved = |name: &str| {
        debug["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["name"] == name)
            .unwrap()["reserved"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(reserved("a"), 1, "{debug}");
    assert_eq!(debug["reservedPods"], 2);
    let decisions = debug["recentDecisions"].as_array().unwrap();
    assert_eq!(decisions[0]["reservedOn"], "a");
    // p1 was bound elsewhere: the ledger counts it on b, the reservation on a goes
    state.apply_pod(&serde_json::from_value(bound_pod("p1", "b", "4", NOW)).unwrap());
    let (_, third) = post(
        &r,
        "/scheduler/prioritize",
        prioritize_body_for("p3", "4", &offered),
    )
    .await;
    let p2_node = decisions[2]["reservedOn"].as_str().unwrap().to_string();
    if p2_node != "a" {
        assert_eq!(score_of(&third, "a"), score_of(&first, "a"), "{third}");
    }
    assert!(
        score_of(&third, "b") < score_of(&first, "b"),
        "b carries p1: {third}"
    );
    // the policy can switch reservations off
    state.set_policy(
        Policy::from_yaml(
            "scoring: {idleBelow: 0}\nguards: {neverStrand: false}\nhotspot: {includePod: false, reserveRanked: false}\n",
        )
        .unwrap(),
    );
    let (_, off) = post(
        &r,
        "/scheduler/prioritize",
        prioritize_body_for("p4", "4", &offered),
    )
    .await;
    let (_, off2) = post(
        &r,
        "/scheduler/prioritize",
        prioritize_body_for("p5", "4", &offered),
    )
    .await;
    assert_eq!(score_of(&off2, "c"), score_of(&off, "c"));
}

#[tokio::test]
async fn the_breaker_is_judged_on_the_offered_nodes_not_on_what_the_filter_left() {
    // 2 of 6 offered nodes are unknown: no trip. The filter removes the three hot ones, so
    // prioritize sees 2 unknown of 3: judged alone that would trip the breaker and hand the
    // unknown nodes the same score as the cool one.
    let state = state_with(
        &[
            node("cool", "0.2000", FRESH),
            node("h1", "0.9500", FRESH),
            node("h2", "0.9500", FRESH),
            node("h3", "0.9500", FRESH),
            bare_node("u1"),
            bare_node("u2"),
        ],
        &[],
    );
    let r = app(state.clone());
    let offered = ["cool", "h1", "h2", "h3", "u1", "u2"];
    let (_, v) = post(&r, "/scheduler/filter", cache_body_for("p", &offered)).await;
    assert_eq!(passed(&v), ["cool", "u1", "u2"]);
    let (_, v) = post(
        &r,
        "/scheduler/prioritize",
        cache_body_for("p", &["cool", "u1", "u2"]),
    )
    .await;
    assert!(
        score_of(&v, "cool") > score_of(&v, "u1"),
        "the filter's verdict (no trip) holds for prioritize: {v}"
    );
    // kube-scheduler's own fit filter may offer only the unknown nodes (the known ones are
    // full): 2 of 2 offered are unknown, but 2 of 6 in the cluster: readings are not broken
    // broadly, the breaker stays closed and the unknown-node cap applies
    let (_, v) = post(&r, "/scheduler/filter", cache_body_for("q", &["u1", "u2"])).await;
    assert_eq!(passed(&v), ["u1", "u2"]);
    let (_, debug) = get(&r, "/debug/nodes").await;
    let debug: Value = serde_json::from_str(&debug).unwrap();
    let recent = debug["recentDecisions"].as_array().unwrap();
    assert_eq!(recent.len(), 3);
    assert!(
        recent.iter().all(|d| d["breakerTripped"] == false),
        "{recent:?}"
    );
    // once most of the cluster's readings are broken (an outage), it trips, per request
    for name in ["cool", "h1", "h2"] {
        state.apply_node(&serde_json::from_value(bare_node(name)).unwrap());
    }
    let (_, v) = post(
        &r,
        "/scheduler/prioritize",
        cache_body_for("z", &["cool", "h3", "u1"]),
    )
    .await;
    assert_eq!(score_of(&v, "h3"), score_of(&v, "u1"), "breaker: {v}");
    let (_, debug) = get(&r, "/debug/nodes").await;
    let debug: Value = serde_json::from_str(&debug).unwrap();
    let recent = debug["recentDecisions"].as_array().unwrap();
    assert_eq!(
        recent.last().unwrap()["breakerTripped"],
        true,
        "reported per request"
    );
    assert_eq!(debug["recentBreakerTrips"], 1);
}

#[tokio::test]
async fn probes_and_debug_are_not_served_on_the_api_listener() {
    let state = state_with(&[node("a", "0.3000", FRESH)], &[]);
    let app_state = AppState {
        state,
        body_limit: 1 << 20,
        binder: None,
    };
    let api = with_not_found(api_router(app_state.clone(), ""));
    let admin = with_not_found(admin_router(app_state));
    for path in ["/metrics", "/debug/nodes", "/readyz", "/healthz"] {
        assert_eq!(get(&api, path).await.0, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(get(&admin, path).await.0, StatusCode::OK, "{path}");
    }
    let (status, _) = post(&admin, "/filter", cache_body(&["a"])).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

fn sized_node(name: &str, cpu: &str, cores: &str) -> Value {
    let mut n = node(name, cpu, FRESH);
    n["status"]["allocatable"]["cpu"] = json!(cores);
    n
}

#[tokio::test]
async fn the_shipped_defaults_weigh_the_pod_on_each_node_and_never_strand_it() {
    let state = state_with(
        &[
            sized_node("small", "0.5000", "8"),
            sized_node("big", "0.5000", "32"),
        ],
        &[],
    );
    state.set_policy(Policy::default());
    let r = app(state.clone());
    // a 4-core pod: 0.5 + 0.425 on the small node (over the 0.85 filter), 0.5 + 0.106 on the big
    let body = prioritize_body_for("p1", "4", &["small", "big"]);
    let (_, v) = post(&r, "/scheduler/filter", body.clone()).await;
    assert_eq!(passed(&v), ["big"], "{v}");
    let (_, v) = post(&r, "/scheduler/prioritize", body).await;
    assert!(score_of(&v, "big") > score_of(&v, "small"), "{v}");
    // a 28-core pod is over the filter everywhere: it is not left waiting
    let (_, v) = post(
        &r,
        "/scheduler/filter",
        prioritize_body_for("p2", "28", &["small", "big"]),
    )
    .await;
    assert_eq!(passed(&v), ["small", "big"], "{v}");
    // the same with the policy that may strand: nothing passes
    state.set_policy(Policy::from_yaml("guards: {neverStrand: false}").unwrap());
    let (_, v) = post(
        &r,
        "/scheduler/filter",
        prioritize_body_for("p3", "28", &["small", "big"]),
    )
    .await;
    assert!(passed(&v).is_empty(), "{v}");
}

#[tokio::test]
async fn the_status_page_and_its_what_if_call_answer_on_the_admin_routes() {
    let router = app(state_with(
        &[node("cool", "0.20", FRESH), node("hot", "0.95", FRESH)],
        &[],
    ));
    let (status, page) = get(&router, "/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("<script src=\"status.js\""), "{page}");
    for asset in ["/status.js", "/status.css"] {
        assert_eq!(get(&router, asset).await.0, StatusCode::OK, "{asset}");
    }
    // a pod ranked as explain ranks it
    let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: w, namespace: d}\nspec:\n  containers:\n  - name: c\n    resources: {requests: {cpu: 100m}}\n";
    let (status, ranked) = post(&router, "/debug/explain", pod).await;
    assert_eq!(status, StatusCode::OK, "{ranked}");
    assert_eq!(ranked["pod"], "d/w");
    assert_eq!(ranked["nodes"][0]["node"], "cool");
    assert_eq!(ranked["nodes"][1]["passes"], false);
    // what is wrong with a bad manifest is named
    for (body, status, says) in [
        (
            Body::from("kind: Deployment\n"),
            StatusCode::BAD_REQUEST,
            "kind is Deployment",
        ),
        (
            Body::from(vec![0xff, 0xfe]),
            StatusCode::BAD_REQUEST,
            "not UTF-8",
        ),
        (
            Body::from(format!("kind: Pod\nx: \"{}\"\n", "a".repeat(1_100_000))),
            StatusCode::PAYLOAD_TOO_LARGE,
            "exceeds",
        ),
    ] {
        let (got, answer) = post(&router, "/debug/explain", body).await;
        assert_eq!(got, status, "{answer}");
        assert!(answer["error"].as_str().unwrap().contains(says), "{answer}");
    }
}

//! The API simulator's own tests: each behaviour the project relies on, through a real `kube::Client`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers may panic

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, EvictParams, ListParams, WatchEvent, WatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use realload_apisim::conformance::{self, Backend, pod};
use realload_apisim::{ApiSim, Fault, resources};
use serde_json::{Value, json};

fn node(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}, "status": {"allocatable": {"cpu": "8"}}})
}

async fn sim() -> ApiSim {
    ApiSim::start().await.unwrap()
}

fn api_error(e: kube::Error) -> kube::core::Status {
    match e {
        kube::Error::Api(s) => *s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn discovery_finds_every_served_resource() {
    let sim = sim().await;
    let discovery = kube::Discovery::new(sim.client()).run().await.unwrap();
    let groups: Vec<String> = discovery.groups().map(|g| g.name().to_string()).collect();
    for g in ["", "apps", "policy", "coordination.k8s.io", "events.k8s.io"] {
        assert!(
            groups.iter().any(|x| x == g),
            "group {g:?} missing from {groups:?}"
        );
    }
    let (core, _) = discovery
        .get("")
        .unwrap()
        .recommended_resources()
        .into_iter()
        .find(|(r, _)| r.plural == "pods")
        .unwrap()
        .clone();
    assert_eq!(core.kind, "Pod");
}

#[tokio::test]
async fn periodic_bookmarks_carry_the_current_version() {
    // sim only: a real API server sends them about once a minute, not on demand
    let sim = sim().await;
    sim.set_bookmark_interval(Duration::from_millis(100));
    sim.put(node("a")).unwrap();
    let nodes: Api<Node> = Api::all(sim.client());
    let rv = sim.resource_version().to_string();
    let mut s = nodes
        .watch(&WatchParams::default().timeout(5), &rv)
        .await
        .unwrap()
        .boxed();
    match tokio::time::timeout(Duration::from_secs(3), s.try_next())
        .await
        .unwrap()
        .unwrap()
        .unwrap()
    {
        WatchEvent::Bookmark(b) => assert_eq!(b.metadata.resource_version, rv),
        other => panic!("expected a bookmark, got {other:?}"),
    }
}

#[tokio::test]
async fn instant_pod_termination_can_be_switched_on() {
    let sim = sim().await;
    sim.set_instant_pod_termination(true);
    sim.put(pod("shop", "quick", Some("n1"), json!({}), true))
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(sim.client(), "shop");
    pods.delete("quick", &DeleteParams::default())
        .await
        .unwrap();
    assert!(sim.get(resources::PODS, "shop", "quick").is_none());
}

// ---- conformance: the same bodies run against a real API server in the e2e suite ----------

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $name() {
            conformance::$name(&Backend::sim().await).await;
        }
    )*};
}

conformance!(
    list_pagination_selectors_and_resource_version,
    create_get_update_delete_with_conflicts,
    generation_moves_with_spec_only,
    patches_merge_json_and_server_side_apply,
    watch_streams_resumes_and_expires,
    streaming_lists_end_with_a_bookmark_and_watches_time_out,
    eviction_honours_pod_disruption_budgets,
    binding_sets_the_node_once,
    graceful_deletion_and_finalizers,
    status_is_its_own_subresource,
);

#[tokio::test]
async fn kube_watcher_survives_disconnects_and_drops() {
    let sim = sim().await;
    sim.put(node("a")).unwrap();
    let nodes: Api<Node> = Api::all(sim.client());
    let mut names = std::collections::BTreeSet::new();
    let mut stream = watcher(nodes, watcher::Config::default())
        .applied_objects()
        .boxed();
    let first = tokio::time::timeout(Duration::from_secs(5), stream.try_next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    names.insert(first.metadata.name.unwrap());

    sim.disconnect_watches();
    sim.inject(
        Fault::on(None, "/api/v1/nodes")
            .with_query("watch")
            .drop_connection(),
    );
    sim.put(node("b")).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !names.contains("b") {
        let next = tokio::time::timeout_at(deadline, stream.next())
            .await
            .expect("watcher did not recover");
        if let Some(Ok(n)) = next {
            names.insert(n.metadata.name.unwrap());
        }
    }
    let watches = sim.requests().iter().filter(|r| r.watch).count();
    assert!(
        watches >= 2,
        "the watcher re-watched after the disconnect ({watches} watches)"
    );
}

fn pdb(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": name, "namespace": "shop"},
           "spec": spec})
}

#[tokio::test]
async fn pdb_arithmetic_for_every_form() {
    let sim = sim().await;
    sim.put(json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "namespace": "shop"},
                   "spec": {"replicas": 4, "selector": {}, "template": {}}})).unwrap();
    sim.put(json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "d-1", "namespace": "shop",
                   "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "d", "uid": "u", "controller": true}]},
                   "spec": {"replicas": 4, "selector": {}}})).unwrap();
    for i in 0..4 {
        let mut p = pod(
            "shop",
            &format!("d-{i}"),
            Some("n1"),
            json!({"app": "d"}),
            i != 3,
        );
        p["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "d-1", "uid": "u", "controller": true}]);
        sim.put(p).unwrap();
    }
    // 4 expected, 3 ready
    let cases = [
        (json!({"minAvailable": 2}), 2, 1),
        (json!({"minAvailable": "50%"}), 2, 1),
        (json!({"minAvailable": "51%"}), 3, 0), // rounded up
        (json!({"maxUnavailable": 1}), 3, 0),
        (json!({"maxUnavailable": "25%"}), 3, 0),
        (json!({"maxUnavailable": "50%"}), 2, 1),
        (json!({"maxUnavailable": 0}), 4, 0),
    ];
    for (i, (form, desired, allowed)) in cases.into_iter().enumerate() {
        let name = format!("pdb{i}");
        let mut spec = form.clone();
        spec["selector"] = json!({"matchLabels": {"app": "d"}});
        sim.put(pdb(&name, spec)).unwrap();
        let status = sim.pdb_status("shop", &name).unwrap();
        assert_eq!(status["expectedPods"], 4, "{form}");
        assert_eq!(status["currentHealthy"], 3, "{form}");
        assert_eq!(status["desiredHealthy"], desired, "{form}");
        assert_eq!(status["disruptionsAllowed"], allowed, "{form}");
        let _ = api_delete(&sim, &name).await;
    }
    // two PDBs on one pod: the eviction subresource refuses
    sim.put(pdb(
        "one",
        json!({"minAvailable": 1, "selector": {"matchLabels": {"app": "d"}}}),
    ))
    .unwrap();
    sim.put(pdb("two", json!({"minAvailable": 1, "selector": {}})))
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(sim.client(), "shop");
    let e = api_error(
        pods.evict("d-0", &EvictParams::default())
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 500);
    assert!(e.message.contains("more than one PodDisruptionBudget"));
}

async fn api_delete(sim: &ApiSim, pdb: &str) -> Result<(), kube::Error> {
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(sim.client(), "shop");
    pdbs.delete(pdb, &DeleteParams::default()).await.map(|_| ())
}

#[tokio::test]
async fn injected_faults_and_the_request_log() {
    let sim = sim().await;
    sim.put(node("a")).unwrap();
    let nodes: Api<Node> = Api::all(sim.client());

    sim.inject(Fault::on(Some(http::Method::GET), "/api/v1/nodes/a").respond(500));
    let e = api_error(nodes.get("a").await.unwrap_err());
    assert_eq!((e.code, e.reason.as_str()), (500, "InternalError"));
    assert!(nodes.get("a").await.is_ok(), "a fault hits once by default");

    sim.inject(
        Fault::on(None, "/api/v1/nodes")
            .after(1)
            .times(2)
            .respond(503),
    );
    assert!(nodes.get("a").await.is_ok());
    assert_eq!(api_error(nodes.get("a").await.unwrap_err()).code, 503);
    assert_eq!(api_error(nodes.get("a").await.unwrap_err()).code, 503);
    assert!(nodes.get("a").await.is_ok());

    sim.inject(Fault::on(None, "/api/v1/nodes").throttle(7));
    let request = http::Request::get("/api/v1/nodes")
        .body(kube::client::Body::empty())
        .unwrap();
    let response = sim.client().send(request).await.unwrap();
    assert_eq!(response.status().as_u16(), 429);
    assert_eq!(response.headers()["retry-after"], "7");

    sim.inject(Fault::on(None, "/api/v1/nodes").drop_connection());
    assert!(nodes.get("a").await.is_err());

    sim.inject(Fault::on(None, "/api/v1/nodes").delay(Duration::from_millis(300)));
    let started = std::time::Instant::now();
    nodes.get("a").await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));

    let log = sim.requests();
    assert!(log.iter().all(|r| r.path.starts_with("/api/v1/nodes")));
    assert_eq!(
        log.iter().filter(|r| r.injected).count(),
        5,
        "500, 503 twice, 429 and the drop; a delay is served normally"
    );
    let ok = log.iter().rev().find(|r| r.status == 200).unwrap();
    assert!(ok.response_bytes > 0);
    sim.clear_requests();
    nodes
        .list(&ListParams::default().fields("metadata.name=a"))
        .await
        .unwrap();
    let r = &sim.requests()[0];
    assert_eq!(r.param("fieldSelector").as_deref(), Some("metadata.name=a"));
}

#[tokio::test]
async fn watches_can_be_cut_after_a_number_of_events() {
    let sim = sim().await;
    let nodes: Api<Node> = Api::all(sim.client());
    sim.inject(
        Fault::on(None, "/api/v1/nodes")
            .with_query("watch")
            .cut_watch_after(1),
    );
    let rv = sim.resource_version().to_string();
    let mut s = nodes
        .watch(&WatchParams::default().disable_bookmarks().timeout(10), &rv)
        .await
        .unwrap()
        .boxed();
    sim.put(node("a")).unwrap();
    sim.put(node("b")).unwrap();
    assert!(matches!(
        s.try_next().await.unwrap(),
        Some(WatchEvent::Added(_))
    ));
    let end = tokio::time::timeout(Duration::from_secs(5), s.try_next())
        .await
        .unwrap();
    assert!(matches!(end, Ok(None) | Err(_)), "{end:?}");
}

#[tokio::test]
async fn seeds_from_the_example_snapshot() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/example/cluster.json"
    ))
    .unwrap();
    let list: Value = serde_json::from_str(&text).unwrap();
    let sim = ApiSim::start_with(&list).await.unwrap();
    let nodes: Api<Node> = Api::all(sim.client());
    assert_eq!(
        nodes
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        8
    );
    let pods: Api<Pod> = Api::all(sim.client());
    let on_b = pods
        .list(&ListParams::default().fields("spec.nodeName=node-b"))
        .await
        .unwrap();
    assert!(on_b.items.len() >= 4);
    let cms: Api<ConfigMap> = Api::namespaced(sim.client(), "realload-system");
    assert!(cms.get("realload-whitelist").await.is_ok());
}

//! The API simulator's own tests: each behaviour the project relies on, through a real `kube::Client`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers may panic

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use http_body_util::BodyExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{
    Api, DeleteParams, EvictParams, ListParams, Patch, PatchParams, PostParams, WatchEvent,
    WatchParams,
};
use kube::runtime::{WatchStreamExt, watcher};
use realload_tests::apisim::{ApiSim, Fault, resources};
use serde_json::{Value, json};

fn pod(ns: &str, name: &str, node: Option<&str>, labels: Value, ready: bool) -> Value {
    let mut spec = json!({"containers": [{"name": "c", "image": "nginx"}]});
    if let Some(n) = node {
        spec["nodeName"] = json!(n);
    }
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": spec,
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}
    })
}

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

/// Sends a raw request and returns (status, parsed JSON body).
async fn raw(
    client: &kube::Client,
    method: &str,
    path: &str,
    content_type: &str,
    body: Value,
) -> (u16, Value) {
    let request = http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", content_type)
        .body(kube::client::Body::from(serde_json::to_vec(&body).unwrap()))
        .unwrap();
    let response = client.send(request).await.unwrap();
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
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
async fn list_pagination_selectors_and_resource_version() {
    let sim = sim().await;
    for i in 0..25 {
        let node_name = if i % 5 == 0 { "hot" } else { "cool" };
        sim.put(pod(
            "shop",
            &format!("p{i:02}"),
            Some(node_name),
            json!({"app": if i < 10 {"web"} else {"api"}}),
            true,
        ))
        .unwrap();
    }
    sim.put(pod("other", "elsewhere", None, json!({"app": "web"}), true))
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(sim.client(), "shop");

    let first = pods.list(&ListParams::default().limit(10)).await.unwrap();
    assert_eq!(first.items.len(), 10);
    assert_eq!(first.metadata.remaining_item_count, Some(15));
    let rv = first.metadata.resource_version.clone().unwrap();
    assert_eq!(rv, sim.resource_version().to_string());
    let mut names: Vec<String> = first
        .items
        .iter()
        .map(|p| p.metadata.name.clone().unwrap())
        .collect();
    let mut token = first.metadata.continue_;
    while let Some(t) = token.filter(|t| !t.is_empty()) {
        let page = pods
            .list(&ListParams::default().limit(10).continue_token(&t))
            .await
            .unwrap();
        assert_eq!(
            page.metadata.resource_version.as_deref(),
            Some(rv.as_str()),
            "pages share the list's version"
        );
        names.extend(page.items.iter().map(|p| p.metadata.name.clone().unwrap()));
        token = page.metadata.continue_;
    }
    assert_eq!(names.len(), 25);
    assert_eq!(names.first().map(String::as_str), Some("p00"));

    let web = pods
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap();
    assert_eq!(web.items.len(), 10);
    let set = pods
        .list(&ListParams::default().labels("app in (web,api),app!=api"))
        .await
        .unwrap();
    assert_eq!(set.items.len(), 10);
    let on_hot = pods
        .list(&ListParams::default().fields("spec.nodeName=hot"))
        .await
        .unwrap();
    assert_eq!(on_hot.items.len(), 5);
    // with a selector, pages carry a continue token but no remainingItemCount (as kube-apiserver)
    let web_page = pods
        .list(&ListParams::default().labels("app=web").limit(4))
        .await
        .unwrap();
    assert_eq!(web_page.items.len(), 4);
    assert!(web_page.metadata.continue_.is_some_and(|c| !c.is_empty()));
    assert_eq!(web_page.metadata.remaining_item_count, None);
    let not_hot = pods
        .list(&ListParams::default().fields("spec.nodeName!=hot,metadata.namespace=shop"))
        .await
        .unwrap();
    assert_eq!(not_hot.items.len(), 20);

    let all: Api<Pod> = Api::all(sim.client());
    assert_eq!(
        all.list(&ListParams::default()).await.unwrap().items.len(),
        26,
        "cluster-wide path"
    );
    let unbound = all
        .list(&ListParams::default().fields("spec.nodeName="))
        .await
        .unwrap();
    assert_eq!(unbound.items.len(), 1);

    let e = api_error(
        pods.list(&ListParams::default().fields("spec.flavour=x"))
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (400, "BadRequest"));
    assert_eq!(e.message, "field label not supported: spec.flavour");

    // a continue token older than the retained history is 410 Expired
    let page = pods.list(&ListParams::default().limit(5)).await.unwrap();
    sim.put(pod("shop", "newer", None, json!({}), true))
        .unwrap();
    sim.compact();
    let e = api_error(
        pods.list(
            &ListParams::default()
                .limit(5)
                .continue_token(page.metadata.continue_.as_deref().unwrap()),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (410, "Expired"));
}

#[tokio::test]
async fn create_get_update_delete_with_conflicts() {
    let sim = sim().await;
    let cms: Api<ConfigMap> = Api::namespaced(sim.client(), "default");
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "c"}, "data": {"k": "v"}})).unwrap();
    let created = cms.create(&PostParams::default(), &cm).await.unwrap();
    assert!(created.metadata.uid.is_some());
    assert!(created.metadata.creation_timestamp.is_some());
    assert_eq!(created.metadata.namespace.as_deref(), Some("default"));

    let e = api_error(cms.create(&PostParams::default(), &cm).await.unwrap_err());
    assert_eq!((e.code, e.reason.as_str()), (409, "AlreadyExists"));
    assert_eq!(e.message, "configmaps \"c\" already exists");

    let mut stale = created.clone();
    let mut fresh = created.clone();
    fresh.data = Some([("k".to_string(), "w".to_string())].into());
    let updated = cms
        .replace("c", &PostParams::default(), &fresh)
        .await
        .unwrap();
    assert_ne!(
        updated.metadata.resource_version,
        created.metadata.resource_version
    );
    stale.data = Some([("k".to_string(), "stale".to_string())].into());
    let e = api_error(
        cms.replace("c", &PostParams::default(), &stale)
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (409, "Conflict"));
    assert_eq!(
        e.message,
        "Operation cannot be fulfilled on configmaps \"c\": the object has been modified; please apply your changes to the latest version and try again"
    );

    let e = api_error(cms.get("missing").await.unwrap_err());
    assert_eq!(
        (e.code, e.reason.as_str(), e.message.as_str()),
        (404, "NotFound", "configmaps \"missing\" not found")
    );

    // the exact Status body of a 404, with details
    let (code, body) = raw(
        &sim.client(),
        "GET",
        "/apis/apps/v1/namespaces/default/deployments/nope",
        "application/json",
        json!(null),
    )
    .await;
    assert_eq!(code, 404);
    assert_eq!(
        body,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": "deployments.apps \"nope\" not found", "reason": "NotFound",
               "details": {"name": "nope", "group": "apps", "kind": "deployments"}, "code": 404})
    );

    cms.delete("c", &DeleteParams::default()).await.unwrap();
    assert!(sim.get(resources::CONFIGMAPS, "default", "c").is_none());

    // generateName
    let generated: ConfigMap =
        serde_json::from_value(json!({"metadata": {"generateName": "gen-"}})).unwrap();
    let g = cms
        .create(&PostParams::default(), &generated)
        .await
        .unwrap();
    assert!(g.metadata.name.unwrap().starts_with("gen-"));
}

#[tokio::test]
async fn generation_moves_with_spec_only() {
    let sim = sim().await;
    sim.put(json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "default"},
                   "spec": {"replicas": 2, "selector": {}, "template": {}}})).unwrap();
    let deployments: Api<Deployment> = Api::namespaced(sim.client(), "default");
    assert_eq!(
        deployments.get("web").await.unwrap().metadata.generation,
        Some(1)
    );
    let pp = PatchParams::default();
    deployments
        .patch(
            "web",
            &pp,
            &Patch::Merge(json!({"metadata": {"annotations": {"a": "b"}}})),
        )
        .await
        .unwrap();
    assert_eq!(
        deployments.get("web").await.unwrap().metadata.generation,
        Some(1)
    );
    deployments
        .patch("web", &pp, &Patch::Merge(json!({"spec": {"replicas": 3}})))
        .await
        .unwrap();
    assert_eq!(
        deployments.get("web").await.unwrap().metadata.generation,
        Some(2)
    );
}

#[tokio::test]
async fn patches_merge_json_and_server_side_apply() {
    let sim = sim().await;
    sim.put(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1", "labels": {"keep": "me"},
                   "annotations": {"other.io/x": "1"}}, "spec": {"podCIDR": "10.0.0.0/24"}})).unwrap();
    let nodes: Api<Node> = Api::all(sim.client());

    // JSON merge patch touching one annotation, null removes
    nodes
        .patch(
            "n1",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"annotations": {"realload.io/a": "0.5,2026-11-22T00:00:00Z"}}}),
            ),
        )
        .await
        .unwrap();
    nodes
        .patch(
            "n1",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"other.io/x": null}}})),
        )
        .await
        .unwrap();
    let n = nodes.get("n1").await.unwrap();
    let ann = n.metadata.annotations.clone().unwrap();
    assert_eq!(ann.len(), 1);
    assert_eq!(n.metadata.labels.unwrap()["keep"], "me");
    assert_eq!(
        n.spec.unwrap().pod_cidr.as_deref(),
        Some("10.0.0.0/24"),
        "untouched"
    );

    // JSON patch
    let ops: json_patch::Patch = serde_json::from_value(
        json!([{"op": "add", "path": "/metadata/labels/added", "value": "yes"}]),
    )
    .unwrap();
    nodes
        .patch("n1", &PatchParams::default(), &Patch::Json::<()>(ops))
        .await
        .unwrap();
    assert_eq!(
        nodes.get("n1").await.unwrap().metadata.labels.unwrap()["added"],
        "yes"
    );
    let bad: json_patch::Patch = serde_json::from_value(
        json!([{"op": "test", "path": "/metadata/labels/added", "value": "no"}]),
    )
    .unwrap();
    let e = api_error(
        nodes
            .patch("n1", &PatchParams::default(), &Patch::Json::<()>(bad))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 422);

    // server-side apply owns annotation keys per field manager
    let collector = PatchParams::apply("realload-collector");
    let applied = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1",
        "annotations": {"realload.io/cpu-avg-5m": "0.4,2026-11-22T01:00:00Z", "realload.io/mem-avg-5m": "0.3,2026-11-22T01:00:00Z"}}});
    nodes
        .patch("n1", &collector, &Patch::Apply(&applied))
        .await
        .unwrap();
    let n = nodes.get("n1").await.unwrap();
    let managers: Vec<String> = n
        .metadata
        .managed_fields
        .unwrap()
        .iter()
        .filter_map(|m| m.manager.clone())
        .collect();
    assert!(
        managers.contains(&"realload-collector".to_string()),
        "{managers:?}"
    );
    assert_eq!(n.metadata.annotations.as_ref().unwrap().len(), 3);

    // applying without mem drops the key the manager no longer applies, keeps the others
    let applied = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1",
        "annotations": {"realload.io/cpu-avg-5m": "0.5,2026-11-22T01:01:00Z"}}});
    nodes
        .patch("n1", &collector, &Patch::Apply(&applied))
        .await
        .unwrap();
    let ann = nodes.get("n1").await.unwrap().metadata.annotations.unwrap();
    assert!(!ann.contains_key("realload.io/mem-avg-5m"));
    assert_eq!(ann["realload.io/cpu-avg-5m"], "0.5,2026-11-22T01:01:00Z");
    assert!(
        ann.contains_key("realload.io/a"),
        "someone else's key stays"
    );

    // another manager changing the collector's key conflicts, unless forced
    let other = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1", "annotations": {"realload.io/cpu-avg-5m": "0.9,2026-11-22T01:02:00Z"}}});
    let e = api_error(
        nodes
            .patch(
                "n1",
                &PatchParams::apply("someone-else"),
                &Patch::Apply(&other),
            )
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (409, "Conflict"));
    assert!(
        e.message
            .starts_with("Apply failed with 1 conflict: conflict with \"realload-collector\""),
        "{}",
        e.message
    );
    nodes
        .patch(
            "n1",
            &PatchParams::apply("someone-else").force(),
            &Patch::Apply(&other),
        )
        .await
        .unwrap();
    assert_eq!(
        nodes.get("n1").await.unwrap().metadata.annotations.unwrap()["realload.io/cpu-avg-5m"],
        "0.9,2026-11-22T01:02:00Z"
    );

    // apply creates a missing object; a missing fieldManager is rejected
    let leases: Api<Lease> = Api::namespaced(sim.client(), "realload-system");
    let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "collector"}, "spec": {"holderIdentity": "a"}});
    leases
        .patch(
            "collector",
            &PatchParams::apply("realload-collector"),
            &Patch::Apply(&lease),
        )
        .await
        .unwrap();
    assert!(
        sim.get(resources::LEASES, "realload-system", "collector")
            .is_some()
    );
    let (code, _) = raw(
        &sim.client(),
        "PATCH",
        "/api/v1/nodes/n1",
        "application/apply-patch+yaml",
        applied,
    )
    .await;
    assert_eq!(code, 400);

    // a merge patch on a missing object is 404
    let e = api_error(
        nodes
            .patch("absent", &PatchParams::default(), &Patch::Merge(json!({})))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 404);
}

#[tokio::test]
async fn watch_streams_resumes_and_expires() {
    let sim = sim().await;
    sim.put(node("a")).unwrap();
    let nodes: Api<Node> = Api::all(sim.client());
    let listed = nodes.list(&ListParams::default()).await.unwrap();
    let rv = listed.metadata.resource_version.unwrap();

    let mut stream = nodes
        .watch(&WatchParams::default().timeout(10), &rv)
        .await
        .unwrap()
        .boxed();
    sim.put(node("b")).unwrap();
    sim.modify(resources::NODES, "", "a", |n| {
        n["metadata"]["labels"] = json!({"x": "y"})
    })
    .unwrap();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        match stream.try_next().await.unwrap().unwrap() {
            WatchEvent::Added(n) => seen.push(format!("ADDED {}", n.metadata.name.unwrap())),
            WatchEvent::Modified(n) => seen.push(format!("MODIFIED {}", n.metadata.name.unwrap())),
            WatchEvent::Bookmark(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(seen, ["ADDED b", "MODIFIED a"]);

    // resuming from the list's version replays what happened since
    let mut replay = nodes
        .watch(&WatchParams::default().timeout(5), &rv)
        .await
        .unwrap()
        .boxed();
    let first = replay.try_next().await.unwrap().unwrap();
    assert!(
        matches!(first, WatchEvent::Added(ref n) if n.metadata.name.as_deref() == Some("b")),
        "{first:?}"
    );

    // after compaction the same version is too old: an ERROR event carrying 410 Expired
    sim.compact();
    let mut expired = nodes
        .watch(&WatchParams::default().timeout(5), &rv)
        .await
        .unwrap()
        .boxed();
    match expired.try_next().await.unwrap().unwrap() {
        WatchEvent::Error(e) => assert_eq!((e.code, e.reason.as_str()), (410, "Expired")),
        other => panic!("expected 410, got {other:?}"),
    }

    // selector transitions: leaving the selection is DELETED, entering is ADDED
    let rv = sim.resource_version().to_string();
    let mut filtered = nodes
        .watch(&WatchParams::default().labels("x=y").timeout(5), &rv)
        .await
        .unwrap()
        .boxed();
    sim.modify(resources::NODES, "", "a", |n| {
        n["metadata"]["labels"] = json!({"x": "z"})
    })
    .unwrap();
    sim.modify(resources::NODES, "", "b", |n| {
        n["metadata"]["labels"] = json!({"x": "y"})
    })
    .unwrap();
    let mut transitions = Vec::new();
    while transitions.len() < 2 {
        match filtered.try_next().await.unwrap().unwrap() {
            WatchEvent::Deleted(n) => {
                transitions.push(format!("DELETED {}", n.metadata.name.unwrap()))
            }
            WatchEvent::Added(n) => transitions.push(format!("ADDED {}", n.metadata.name.unwrap())),
            WatchEvent::Bookmark(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(transitions, ["DELETED a", "ADDED b"]);
}

#[tokio::test]
async fn bookmarks_initial_events_and_server_timeout() {
    let sim = sim().await;
    sim.set_bookmark_interval(Duration::from_millis(100));
    sim.put(node("a")).unwrap();
    sim.put(node("b")).unwrap();
    let nodes: Api<Node> = Api::all(sim.client());

    // streaming list: initial ADDED events, then a bookmark marking their end
    let mut stream = nodes
        .watch(&WatchParams::streaming_lists().timeout(5), "0")
        .await
        .unwrap()
        .boxed();
    let mut added = 0;
    loop {
        match stream.try_next().await.unwrap().unwrap() {
            WatchEvent::Added(_) => added += 1,
            WatchEvent::Bookmark(b) => {
                assert_eq!(
                    b.metadata
                        .annotations
                        .get("k8s.io/initial-events-end")
                        .map(String::as_str),
                    Some("true")
                );
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(added, 2);

    // periodic bookmarks carry the current version
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

    // timeoutSeconds ends the stream on the server side
    let mut short = nodes
        .watch(&WatchParams::default().timeout(1).disable_bookmarks(), &rv)
        .await
        .unwrap()
        .boxed();
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while short.try_next().await.ok().flatten().is_some() {}
    })
    .await;
    assert!(ended.is_ok(), "the watch did not end after its timeout");
}

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
async fn eviction_honours_pod_disruption_budgets() {
    let sim = sim().await;
    for i in 0..3 {
        sim.put(pod(
            "shop",
            &format!("web-{i}"),
            Some("n1"),
            json!({"app": "web"}),
            true,
        ))
        .unwrap();
    }
    sim.put(pdb(
        "web",
        json!({"minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}}),
    ))
    .unwrap();
    let pods: Api<Pod> = Api::namespaced(sim.client(), "shop");

    let status = pods.evict("web-0", &EvictParams::default()).await.unwrap();
    assert_eq!(status.code, 201);
    let evicted = sim.get_as::<Pod>(resources::PODS, "shop", "web-0").unwrap();
    assert!(
        evicted.metadata.deletion_timestamp.is_some(),
        "graceful: the pod terminates"
    );
    let pdb_now = sim
        .get_as::<PodDisruptionBudget>(resources::PDBS, "shop", "web")
        .unwrap();
    let st = pdb_now.status.unwrap();
    assert_eq!(st.disruptions_allowed, 0);
    assert!(st.disrupted_pods.unwrap().contains_key("web-0"));

    // the exact 429 the API server sends
    let (code, body) = raw(&sim.client(), "POST", "/api/v1/namespaces/shop/pods/web-1/eviction", "application/json",
        json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "web-1", "namespace": "shop"}})).await;
    assert_eq!(code, 429);
    assert_eq!(
        body,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": "Cannot evict pod as it would violate the pod's disruption budget.",
               "reason": "TooManyRequests",
               "details": {"causes": [{"reason": "DisruptionBudget", "message": "The disruption budget web needs 2 healthy pods and has 2 currently"}]},
               "code": 429})
    );
    let e = api_error(
        pods.evict("web-1", &EvictParams::default())
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 429);
    assert!(
        sim.get_as::<Pod>(resources::PODS, "shop", "web-1")
            .unwrap()
            .metadata
            .deletion_timestamp
            .is_none()
    );

    let e = api_error(
        pods.evict("ghost", &EvictParams::default())
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (e.code, e.message.as_str()),
        (404, "pods \"ghost\" not found")
    );

    // once the kubelet has finished the evicted pod and a replacement is ready, another may go
    assert_eq!(sim.finish_terminating_pods(), 1);
    assert!(sim.get(resources::PODS, "shop", "web-0").is_none());
    sim.put(pod(
        "shop",
        "web-3",
        Some("n2"),
        json!({"app": "web"}),
        true,
    ))
    .unwrap();
    sim.modify(resources::PDBS, "shop", "web", |p| {
        p["status"]["disruptedPods"] = json!({})
    })
    .unwrap();
    assert_eq!(
        pods.evict("web-1", &EvictParams::default())
            .await
            .unwrap()
            .code,
        201
    );
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
async fn binding_sets_the_node_once() {
    let sim = sim().await;
    sim.put(pod("shop", "p", None, json!({}), false)).unwrap();
    let pods: Api<Pod> = Api::namespaced(sim.client(), "shop");
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p"}, "target": {"apiVersion": "v1", "kind": "Node", "name": "n1"}});
    let (code, body) = raw(
        &sim.client(),
        "POST",
        "/api/v1/namespaces/shop/pods/p/binding",
        "application/json",
        binding.clone(),
    )
    .await;
    assert_eq!((code, body["status"].as_str()), (201, Some("Success")));
    let p = pods.get("p").await.unwrap();
    assert_eq!(p.spec.unwrap().node_name.as_deref(), Some("n1"));
    let scheduled = p
        .status
        .unwrap()
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "PodScheduled")
        .unwrap();
    assert_eq!(scheduled.status, "True");
    assert!(scheduled.last_transition_time.is_some());
    let (code, body) = raw(
        &sim.client(),
        "POST",
        "/api/v1/namespaces/shop/pods/p/binding",
        "application/json",
        binding,
    )
    .await;
    assert_eq!((code, body["reason"].as_str()), (409, Some("Conflict")));
    assert_eq!(
        body["message"],
        "Operation cannot be fulfilled on pods/binding \"p\": pod p is already assigned to node \"n1\""
    );
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
        "/../docs/example/cluster.json"
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

#[tokio::test]
async fn graceful_deletion_and_finalizers() {
    let sim = sim().await;
    sim.put(pod("shop", "bound", Some("n1"), json!({}), true))
        .unwrap();
    sim.put(pod("shop", "unbound", None, json!({}), true))
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(sim.client(), "shop");
    pods.delete("bound", &DeleteParams::default())
        .await
        .unwrap();
    assert!(
        sim.get(resources::PODS, "shop", "bound").unwrap()["metadata"]["deletionTimestamp"]
            .is_string()
    );
    pods.delete("unbound", &DeleteParams::default())
        .await
        .unwrap();
    assert!(
        sim.get(resources::PODS, "shop", "unbound").is_none(),
        "unscheduled pods go at once"
    );
    let mut with_finalizer = pod("shop", "held", None, json!({}), true);
    with_finalizer["metadata"]["finalizers"] = json!(["example.com/hold"]);
    sim.put(with_finalizer).unwrap();
    pods.delete("held", &DeleteParams::default()).await.unwrap();
    assert!(sim.get(resources::PODS, "shop", "held").is_some());
    pods.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert!(
        sim.get(resources::PODS, "shop", "held").is_none(),
        "removing the last finalizer completes deletion"
    );
    sim.set_instant_pod_termination(true);
    sim.put(pod("shop", "quick", Some("n1"), json!({}), true))
        .unwrap();
    pods.delete("quick", &DeleteParams::default())
        .await
        .unwrap();
    assert!(sim.get(resources::PODS, "shop", "quick").is_none());
}

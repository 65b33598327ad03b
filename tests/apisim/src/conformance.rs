//! The simulator's conformance tests as bodies that run against either backend: the simulator
//! (`tests/apisim/tests/apisim.rs`) and a real kube-apiserver (the e2e suite). One body, two backends,
//! so the two cannot drift apart. What only the simulator can do (compaction, its own
//! disruption-controller arithmetic, fault injection) is checked only there.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test bodies may panic

use futures::{StreamExt, TryStreamExt};
use http_body_util::BodyExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, Pod, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, EvictParams, ListParams, Patch, PatchParams,
    PostParams, WatchEvent, WatchParams,
};
use serde_json::{Value, json};

use super::{ApiSim, resources};

/// Where a conformance body runs.
pub struct Backend {
    client: kube::Client,
    sim: Option<ApiSim>,
    /// Makes names unique on a shared cluster.
    suffix: String,
}

fn unique_suffix() -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{}-{}",
        std::process::id() % 100_000,
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

impl Backend {
    /// A fresh simulator.
    pub async fn sim() -> Backend {
        let sim = ApiSim::start().await.unwrap();
        Backend {
            client: sim.client(),
            sim: Some(sim),
            suffix: unique_suffix(),
        }
    }

    /// A real API server (shared with other tests: every name is made unique).
    pub fn real(client: kube::Client) -> Backend {
        Backend {
            client,
            sim: None,
            suffix: unique_suffix(),
        }
    }

    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// The simulator, for checks only it can make.
    pub fn sim_only(&self) -> Option<&ApiSim> {
        self.sim.as_ref()
    }

    /// A name unique to this body's run.
    pub fn name(&self, base: &str) -> String {
        format!("{base}-{}", self.suffix)
    }

    /// A namespace for this body (created with its `default` ServiceAccount on a real server; the
    /// simulator serves no Namespace objects).
    pub async fn namespace(&self, base: &str) -> String {
        let name = self.name(base);
        if self.sim.is_none() {
            let namespaces: Api<Namespace> = Api::all(self.client());
            let ns: Namespace =
                serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
            namespaces
                .create(&PostParams::default(), &ns)
                .await
                .unwrap();
            let sas: Api<ServiceAccount> = Api::namespaced(self.client(), &name);
            let sa: ServiceAccount =
                serde_json::from_value(json!({"metadata": {"name": "default"}})).unwrap();
            let _ = sas.create(&PostParams::default(), &sa).await;
        }
        name
    }

    fn api_for(&self, object: &Value) -> Api<DynamicObject> {
        let resource = resources::for_kind(
            object["apiVersion"].as_str().unwrap_or(""),
            object["kind"].as_str().unwrap_or(""),
        )
        .expect("a kind the simulator serves");
        let ar = ApiResource {
            group: resource.group.into(),
            version: resource.version.into(),
            api_version: resource.api_version(),
            kind: resource.kind.into(),
            plural: resource.plural.into(),
        };
        match object["metadata"]["namespace"].as_str() {
            Some(ns) if resource.namespaced => Api::namespaced_with(self.client(), ns, &ar),
            _ => Api::all_with(self.client(), &ar),
        }
    }

    /// Creates an object through the API, as a client would: the spec with the object, the
    /// status (if any) through the status subresource afterwards, as a controller or kubelet
    /// would write it.
    pub async fn create(&self, mut object: Value) -> Value {
        let status = object.as_object_mut().and_then(|o| o.remove("status"));
        let api = self.api_for(&object);
        let typed: DynamicObject = serde_json::from_value(object.clone()).unwrap();
        let created = api.create(&PostParams::default(), &typed).await.unwrap();
        let name = created.metadata.name.clone().unwrap();
        match status {
            Some(status) => {
                let updated = api
                    .patch_status(
                        &name,
                        &PatchParams::default(),
                        &Patch::Merge(&json!({"status": status})),
                    )
                    .await
                    .unwrap();
                serde_json::to_value(updated).unwrap()
            }
            None => serde_json::to_value(created).unwrap(),
        }
    }

    /// Sets a PodDisruptionBudget's status as the disruption controller would. The simulator
    /// computes it itself; a bare API server has no controller-manager.
    pub async fn budget_status(&self, ns: &str, name: &str, status: Value) {
        if self.sim.is_some() {
            return;
        }
        let pdbs: Api<PodDisruptionBudget> = Api::namespaced(self.client(), ns);
        let generation = pdbs.get(name).await.unwrap().metadata.generation;
        let mut status = status;
        status["observedGeneration"] = json!(generation);
        pdbs.patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": status})),
        )
        .await
        .unwrap();
    }

    /// Completes a terminating pod, as its kubelet would.
    pub async fn finish_pod(&self, ns: &str, name: &str) {
        let pods: Api<Pod> = Api::namespaced(self.client(), ns);
        pods.delete(
            name,
            &DeleteParams {
                grace_period_seconds: Some(0),
                ..DeleteParams::default()
            },
        )
        .await
        .unwrap();
    }
}

pub fn pod(ns: &str, name: &str, node: Option<&str>, labels: Value, ready: bool) -> Value {
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

/// A Node without status (a status write would be one more MODIFIED event in watches).
pub fn node(name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels}})
}

pub fn api_error(e: kube::Error) -> kube::core::Status {
    match e {
        kube::Error::Api(s) => *s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// Sends a raw request and returns (status, parsed JSON body).
pub async fn raw(
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

pub async fn list_pagination_selectors_and_resource_version(b: &Backend) {
    let shop = b.namespace("shop").await;
    let other = b.namespace("other").await;
    let (hot, cool) = (b.name("hot"), b.name("cool"));
    for i in 0..25 {
        let node_name = if i % 5 == 0 { &hot } else { &cool };
        b.create(pod(
            &shop,
            &format!("p{i:02}"),
            Some(node_name),
            json!({"app": if i < 10 {"web"} else {"api"}}),
            true,
        ))
        .await;
    }
    b.create(pod(&other, "elsewhere", None, json!({"app": "web"}), true))
        .await;
    let pods: Api<Pod> = Api::namespaced(b.client(), &shop);

    let first = pods.list(&ListParams::default().limit(10)).await.unwrap();
    assert_eq!(first.items.len(), 10);
    assert_eq!(first.metadata.remaining_item_count, Some(15));
    let rv = first.metadata.resource_version.clone().unwrap();
    if let Some(sim) = b.sim_only() {
        assert_eq!(rv, sim.resource_version().to_string());
    }
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
        .list(&ListParams::default().fields(&format!("spec.nodeName={hot}")))
        .await
        .unwrap();
    assert_eq!(on_hot.items.len(), 5);
    // with a selector, pages carry a continue token but no remainingItemCount
    let web_page = pods
        .list(&ListParams::default().labels("app=web").limit(4))
        .await
        .unwrap();
    assert_eq!(web_page.items.len(), 4);
    assert!(web_page.metadata.continue_.is_some_and(|c| !c.is_empty()));
    assert_eq!(web_page.metadata.remaining_item_count, None);
    let not_hot = pods
        .list(
            &ListParams::default()
                .fields(&format!("spec.nodeName!={hot},metadata.namespace={shop}")),
        )
        .await
        .unwrap();
    assert_eq!(not_hot.items.len(), 20);

    // the cluster-wide path, narrowed to this body's namespaces by field selectors
    let all: Api<Pod> = Api::all(b.client());
    let unbound = all
        .list(&ListParams::default().fields(&format!("spec.nodeName=,metadata.namespace={other}")))
        .await
        .unwrap();
    assert_eq!(unbound.items.len(), 1);
    let web_everywhere = all
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap();
    let ours = web_everywhere
        .items
        .iter()
        .filter(|p| {
            let ns = p.metadata.namespace.as_deref();
            ns == Some(shop.as_str()) || ns == Some(other.as_str())
        })
        .count();
    assert_eq!(ours, 11, "cluster-wide label selection");

    let e = api_error(
        pods.list(&ListParams::default().fields("spec.flavour=x"))
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (400, "BadRequest"));
    assert_eq!(e.message, "field label not supported: spec.flavour");

    // a continue token older than the retained history is 410 Expired (only the simulator
    // can be made to compact on demand)
    if let Some(sim) = b.sim_only() {
        let page = pods.list(&ListParams::default().limit(5)).await.unwrap();
        sim.put(pod(&shop, "newer", None, json!({}), true)).unwrap();
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
}

pub async fn create_get_update_delete_with_conflicts(b: &Backend) {
    let ns = b.namespace("crud").await;
    let cms: Api<ConfigMap> = Api::namespaced(b.client(), &ns);
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "c"}, "data": {"k": "v"}})).unwrap();
    let created = cms.create(&PostParams::default(), &cm).await.unwrap();
    assert!(created.metadata.uid.is_some());
    assert!(created.metadata.creation_timestamp.is_some());
    assert_eq!(created.metadata.namespace.as_deref(), Some(ns.as_str()));

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
        &b.client(),
        "GET",
        &format!("/apis/apps/v1/namespaces/{ns}/deployments/nope"),
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
    assert!(cms.get_opt("c").await.unwrap().is_none());

    // generateName
    let generated: ConfigMap =
        serde_json::from_value(json!({"metadata": {"generateName": "gen-"}})).unwrap();
    let g = cms
        .create(&PostParams::default(), &generated)
        .await
        .unwrap();
    assert!(g.metadata.name.unwrap().starts_with("gen-"));
}

/// A Deployment the API server accepts (a selector matching the template's labels).
pub fn deployment(ns: &str, name: &str, replicas: i32) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": ns},
           "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                    "template": {"metadata": {"labels": {"app": name}},
                                 "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}})
}

pub async fn generation_moves_with_spec_only(b: &Backend) {
    let ns = b.namespace("gen").await;
    b.create(deployment(&ns, "web", 2)).await;
    let deployments: Api<Deployment> = Api::namespaced(b.client(), &ns);
    assert_eq!(
        deployments.get("web").await.unwrap().metadata.generation,
        Some(1)
    );
    let pp = PatchParams::default();
    let generation = || async { deployments.get("web").await.unwrap().metadata.generation };
    deployments
        .patch(
            "web",
            &pp,
            &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}})),
        )
        .await
        .unwrap();
    assert_eq!(generation().await, Some(1), "labels are not spec");
    deployments
        .patch("web", &pp, &Patch::Merge(json!({"spec": {"replicas": 3}})))
        .await
        .unwrap();
    assert_eq!(generation().await, Some(2));
    // a Deployment's annotations are copied to its ReplicaSets: changing them is a new generation
    deployments
        .patch(
            "web",
            &pp,
            &Patch::Merge(json!({"metadata": {"annotations": {"a": "b"}}})),
        )
        .await
        .unwrap();
    assert_eq!(generation().await, Some(3));
    // a status write moves neither the generation nor the spec, nor an apps object's labels
    deployments
        .patch_status(
            "web",
            &pp,
            &Patch::Merge(json!({"status": {"replicas": 3, "readyReplicas": 3},
                                 "spec": {"replicas": 9}, "metadata": {"labels": {"a": "c"}}})),
        )
        .await
        .unwrap();
    let d = deployments.get("web").await.unwrap();
    assert_eq!(d.metadata.generation, Some(3));
    assert_eq!(d.metadata.labels.unwrap()["a"], "b");
    assert_eq!(
        d.spec.unwrap().replicas,
        Some(3),
        "status writes ignore spec"
    );
    assert_eq!(d.status.unwrap().ready_replicas, Some(3));
    // a status that breaks the object's rules is refused
    let e = api_error(
        deployments
            .patch_status(
                "web",
                &pp,
                &Patch::Merge(json!({"status": {"replicas": 1, "readyReplicas": 2}})),
            )
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (422, "Invalid"));
    assert_eq!(
        e.message,
        "Deployment.apps \"web\" is invalid: status.readyReplicas: Invalid value: 2: cannot be greater than status.replicas"
    );
}

pub async fn patches_merge_json_and_server_side_apply(b: &Backend) {
    let n1 = b.name("n1");
    b.create(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": n1, "labels": {"keep": "me"},
                   "annotations": {"other.io/x": "1"}}, "spec": {"podCIDR": "10.0.0.0/24"}}))
        .await;
    let nodes: Api<Node> = Api::all(b.client());

    // JSON merge patch touching one annotation, null removes
    nodes
        .patch(
            &n1,
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"annotations": {"realload.io/a": "0.5,2026-11-22T00:00:00Z"}}}),
            ),
        )
        .await
        .unwrap();
    nodes
        .patch(
            &n1,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"other.io/x": null}}})),
        )
        .await
        .unwrap();
    let n = nodes.get(&n1).await.unwrap();
    let ann = n.metadata.annotations.clone().unwrap();
    assert_eq!(ann.len(), 1, "{ann:?}");
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
        .patch(&n1, &PatchParams::default(), &Patch::Json::<()>(ops))
        .await
        .unwrap();
    assert_eq!(
        nodes.get(&n1).await.unwrap().metadata.labels.unwrap()["added"],
        "yes"
    );
    let bad: json_patch::Patch = serde_json::from_value(
        json!([{"op": "test", "path": "/metadata/labels/added", "value": "no"}]),
    )
    .unwrap();
    let e = api_error(
        nodes
            .patch(&n1, &PatchParams::default(), &Patch::Json::<()>(bad))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 422);

    // server-side apply owns annotation keys per field manager
    let collector = PatchParams::apply("realload-collector");
    let applied = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": n1,
        "annotations": {"realload.io/cpu-avg-5m": "0.4,2026-11-22T01:00:00Z", "realload.io/mem-avg-5m": "0.3,2026-11-22T01:00:00Z"}}});
    nodes
        .patch(&n1, &collector, &Patch::Apply(&applied))
        .await
        .unwrap();
    let n = nodes.get(&n1).await.unwrap();
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
    let applied = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": n1,
        "annotations": {"realload.io/cpu-avg-5m": "0.5,2026-11-22T01:01:00Z"}}});
    nodes
        .patch(&n1, &collector, &Patch::Apply(&applied))
        .await
        .unwrap();
    let ann = nodes.get(&n1).await.unwrap().metadata.annotations.unwrap();
    assert!(!ann.contains_key("realload.io/mem-avg-5m"));
    assert_eq!(ann["realload.io/cpu-avg-5m"], "0.5,2026-11-22T01:01:00Z");
    assert!(
        ann.contains_key("realload.io/a"),
        "someone else's key stays"
    );

    // another manager changing the collector's key conflicts, unless forced
    let other = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": n1, "annotations": {"realload.io/cpu-avg-5m": "0.9,2026-11-22T01:02:00Z"}}});
    let e = api_error(
        nodes
            .patch(
                &n1,
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
            &n1,
            &PatchParams::apply("someone-else").force(),
            &Patch::Apply(&other),
        )
        .await
        .unwrap();
    assert_eq!(
        nodes.get(&n1).await.unwrap().metadata.annotations.unwrap()["realload.io/cpu-avg-5m"],
        "0.9,2026-11-22T01:02:00Z"
    );

    // apply creates a missing object; a missing fieldManager is rejected
    let ns = b.namespace("lease").await;
    let leases: Api<Lease> = Api::namespaced(b.client(), &ns);
    let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "collector"}, "spec": {"holderIdentity": "a"}});
    leases
        .patch(
            "collector",
            &PatchParams::apply("realload-collector"),
            &Patch::Apply(&lease),
        )
        .await
        .unwrap();
    assert!(leases.get_opt("collector").await.unwrap().is_some());
    let (code, body) = raw(
        &b.client(),
        "PATCH",
        &format!("/api/v1/nodes/{n1}"),
        "application/apply-patch+yaml",
        applied,
    )
    .await;
    assert_eq!(code, 422);
    assert_eq!(
        body,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
               "reason": "Invalid",
               "details": {"group": "meta.k8s.io", "kind": "PatchOptions", "causes": [
                   {"reason": "FieldValueRequired", "message": "Required value: is required for apply patch", "field": "fieldManager"}]},
               "code": 422})
    );

    // a merge patch on a missing object is 404
    let e = api_error(
        nodes
            .patch(
                &b.name("absent"),
                &PatchParams::default(),
                &Patch::Merge(json!({})),
            )
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 404);
    nodes.delete(&n1, &DeleteParams::default()).await.unwrap();
}

/// The next watch event that is not a bookmark, named `TYPE name`.
async fn next_change<S>(stream: &mut S) -> String
where
    S: futures::Stream<Item = Result<WatchEvent<Node>, kube::Error>> + Unpin,
{
    loop {
        let event = tokio::time::timeout(std::time::Duration::from_secs(10), stream.try_next())
            .await
            .expect("a watch event within 10 s")
            .unwrap()
            .expect("the watch is still open");
        let name = |n: &Node| n.metadata.name.clone().unwrap_or_default();
        return match event {
            WatchEvent::Added(n) => format!("ADDED {}", name(&n)),
            WatchEvent::Modified(n) => format!("MODIFIED {}", name(&n)),
            WatchEvent::Deleted(n) => format!("DELETED {}", name(&n)),
            WatchEvent::Bookmark(_) => continue,
            WatchEvent::Error(e) => format!("ERROR {}", e.code),
        };
    }
}

pub async fn watch_streams_resumes_and_expires(b: &Backend) {
    let group = b.name("w");
    let selector = format!("group={group}");
    let (a, bn) = (b.name("a"), b.name("b"));
    b.create(node(&a, json!({"group": group}))).await;
    let nodes: Api<Node> = Api::all(b.client());
    let listed = nodes
        .list(&ListParams::default().labels(&selector))
        .await
        .unwrap();
    let rv = listed.metadata.resource_version.unwrap();

    let mut stream = nodes
        .watch(&WatchParams::default().labels(&selector).timeout(10), &rv)
        .await
        .unwrap()
        .boxed();
    b.create(node(&bn, json!({"group": group}))).await;
    nodes
        .patch(
            &a,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
        )
        .await
        .unwrap();
    let seen = [
        next_change(&mut stream).await,
        next_change(&mut stream).await,
    ];
    assert_eq!(seen, [format!("ADDED {bn}"), format!("MODIFIED {a}")]);

    // resuming from the list's version replays what happened since
    let mut replay = nodes
        .watch(&WatchParams::default().labels(&selector).timeout(5), &rv)
        .await
        .unwrap()
        .boxed();
    assert_eq!(next_change(&mut replay).await, format!("ADDED {bn}"));

    // after compaction the same version is too old: an ERROR event carrying 410 Expired
    if let Some(sim) = b.sim_only() {
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
    }

    // selector transitions: leaving the selection is DELETED, entering is ADDED
    let rv = nodes
        .list(&ListParams::default().labels(&selector))
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut filtered = nodes
        .watch(
            &WatchParams::default()
                .labels(&format!("{selector},x=y"))
                .timeout(5),
            &rv,
        )
        .await
        .unwrap()
        .boxed();
    nodes
        .patch(
            &a,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"x": "z"}}})),
        )
        .await
        .unwrap();
    nodes
        .patch(
            &bn,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
        )
        .await
        .unwrap();
    let transitions = [
        next_change(&mut filtered).await,
        next_change(&mut filtered).await,
    ];
    assert_eq!(transitions, [format!("DELETED {a}"), format!("ADDED {bn}")]);
    for n in [&a, &bn] {
        nodes.delete(n, &DeleteParams::default()).await.unwrap();
    }
}

pub async fn streaming_lists_end_with_a_bookmark_and_watches_time_out(b: &Backend) {
    let group = b.name("s");
    let selector = format!("group={group}");
    for n in ["a", "b"] {
        b.create(node(&b.name(n), json!({"group": group}))).await;
    }
    let nodes: Api<Node> = Api::all(b.client());

    // streaming list: initial ADDED events, then a bookmark marking their end. Only the
    // simulator here: kube-apiserver serves it only with etcd >= 3.4.31's watch progress
    // requests (the bundled etcd 3.4 answers 500), and realload lists, then watches.
    if b.sim_only().is_some() {
        let mut stream = nodes
            .watch(
                &WatchParams::streaming_lists().labels(&selector).timeout(5),
                "0",
            )
            .await
            .unwrap()
            .boxed();
        let mut added = 0;
        loop {
            match stream.try_next().await.unwrap().unwrap() {
                WatchEvent::Added(_) => added += 1,
                WatchEvent::Bookmark(bm) => {
                    assert_eq!(
                        bm.metadata
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
    }

    // timeoutSeconds ends the stream on the server side
    let rv = nodes
        .list(&ListParams::default().labels(&selector))
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut short = nodes
        .watch(
            &WatchParams::default()
                .labels(&selector)
                .timeout(1)
                .disable_bookmarks(),
            &rv,
        )
        .await
        .unwrap()
        .boxed();
    let ended = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        while short.try_next().await.ok().flatten().is_some() {}
    })
    .await;
    assert!(ended.is_ok(), "the watch did not end after its timeout");
    for n in ["a", "b"] {
        nodes
            .delete(&b.name(n), &DeleteParams::default())
            .await
            .unwrap();
    }
}

fn pdb(ns: &str, name: &str, spec: Value) -> Value {
    json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": name, "namespace": ns},
           "spec": spec})
}

pub async fn eviction_honours_pod_disruption_budgets(b: &Backend) {
    let ns = b.namespace("evict").await;
    let (n1, n2) = (b.name("n1"), b.name("n2"));
    for i in 0..3 {
        b.create(pod(
            &ns,
            &format!("web-{i}"),
            Some(&n1),
            json!({"app": "web"}),
            true,
        ))
        .await;
    }
    b.create(pdb(
        &ns,
        "web",
        json!({"minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}}),
    ))
    .await;
    b.budget_status(
        &ns,
        "web",
        json!({"disruptionsAllowed": 1, "currentHealthy": 3, "desiredHealthy": 2, "expectedPods": 3}),
    )
    .await;
    let pods: Api<Pod> = Api::namespaced(b.client(), &ns);
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(b.client(), &ns);

    let status = pods.evict("web-0", &EvictParams::default()).await.unwrap();
    assert_eq!(status.code, 201);
    let evicted = pods.get("web-0").await.unwrap();
    assert!(
        evicted.metadata.deletion_timestamp.is_some(),
        "graceful: the pod terminates"
    );
    let st = pdbs.get("web").await.unwrap().status.unwrap();
    assert_eq!(st.disruptions_allowed, 0);
    assert!(st.disrupted_pods.unwrap().contains_key("web-0"));
    // the disruption controller counts the terminating pod out
    b.budget_status(&ns, "web", json!({"currentHealthy": 2}))
        .await;

    // the exact 429 the API server sends
    let (code, body) = raw(
        &b.client(),
        "POST",
        &format!("/api/v1/namespaces/{ns}/pods/web-1/eviction"),
        "application/json",
        json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "web-1", "namespace": ns}}),
    )
    .await;
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
        pods.get("web-1")
            .await
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
    b.finish_pod(&ns, "web-0").await;
    assert!(pods.get_opt("web-0").await.unwrap().is_none());
    b.create(pod(&ns, "web-3", Some(&n2), json!({"app": "web"}), true))
        .await;
    pdbs.patch_status(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"disruptedPods": null}})),
    )
    .await
    .unwrap();
    b.budget_status(
        &ns,
        "web",
        json!({"disruptionsAllowed": 1, "currentHealthy": 3, "desiredHealthy": 2, "expectedPods": 3}),
    )
    .await;
    assert_eq!(
        pods.evict("web-1", &EvictParams::default())
            .await
            .unwrap()
            .code,
        201
    );
}

pub async fn binding_sets_the_node_once(b: &Backend) {
    let ns = b.namespace("bind").await;
    let n1 = b.name("n1");
    b.create(pod(&ns, "p", None, json!({}), false)).await;
    let pods: Api<Pod> = Api::namespaced(b.client(), &ns);
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p"}, "target": {"apiVersion": "v1", "kind": "Node", "name": n1}});
    let (code, body) = raw(
        &b.client(),
        "POST",
        &format!("/api/v1/namespaces/{ns}/pods/p/binding"),
        "application/json",
        binding.clone(),
    )
    .await;
    assert_eq!(
        (code, body["status"].as_str()),
        (201, Some("Success")),
        "{body}"
    );
    let p = pods.get("p").await.unwrap();
    assert_eq!(p.spec.unwrap().node_name.as_deref(), Some(n1.as_str()));
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
        &b.client(),
        "POST",
        &format!("/api/v1/namespaces/{ns}/pods/p/binding"),
        "application/json",
        binding,
    )
    .await;
    assert_eq!((code, body["reason"].as_str()), (409, Some("Conflict")));
    assert_eq!(
        body["message"],
        json!(format!(
            "Operation cannot be fulfilled on pods/binding \"p\": pod p is already assigned to node \"{n1}\""
        ))
    );
}

pub async fn graceful_deletion_and_finalizers(b: &Backend) {
    let ns = b.namespace("delete").await;
    let n1 = b.name("n1");
    b.create(pod(&ns, "bound", Some(&n1), json!({}), true))
        .await;
    b.create(pod(&ns, "unbound", None, json!({}), true)).await;
    let pods: Api<Pod> = Api::namespaced(b.client(), &ns);
    pods.delete("bound", &DeleteParams::default())
        .await
        .unwrap();
    assert!(
        pods.get("bound")
            .await
            .unwrap()
            .metadata
            .deletion_timestamp
            .is_some(),
        "a bound pod terminates gracefully"
    );
    pods.delete("unbound", &DeleteParams::default())
        .await
        .unwrap();
    assert!(
        pods.get_opt("unbound").await.unwrap().is_none(),
        "unscheduled pods go at once"
    );
    let mut with_finalizer = pod(&ns, "held", None, json!({}), true);
    with_finalizer["metadata"]["finalizers"] = json!(["example.com/hold"]);
    b.create(with_finalizer).await;
    pods.delete("held", &DeleteParams::default()).await.unwrap();
    assert!(pods.get_opt("held").await.unwrap().is_some());
    pods.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert!(
        pods.get_opt("held").await.unwrap().is_none(),
        "removing the last finalizer completes deletion"
    );
    // a zero grace period deletes a bound pod at once (as `--grace-period=0 --force` does)
    b.finish_pod(&ns, "bound").await;
    assert!(pods.get_opt("bound").await.unwrap().is_none());
}

/// The status subresource: a write to the object ignores status; a write to `/status` ignores
/// spec and owner references but takes labels and annotations (pods start Pending whatever the
/// create says).
pub async fn status_is_its_own_subresource(b: &Backend) {
    let ns = b.namespace("status").await;
    let pods: Api<Pod> = Api::namespaced(b.client(), &ns);
    let p = pod(&ns, "p", None, json!({"a": "1"}), true);
    let typed: Pod = serde_json::from_value(p).unwrap();
    let created = pods.create(&PostParams::default(), &typed).await.unwrap();
    assert_eq!(
        created.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Pending"),
        "a created pod starts Pending"
    );
    pods.patch(
        "p",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Running"}})),
    )
    .await
    .unwrap();
    assert_eq!(
        pods.get("p")
            .await
            .unwrap()
            .status
            .unwrap()
            .phase
            .as_deref(),
        Some("Pending"),
        "the main resource ignores status"
    );
    pods.patch_status(
        "p",
        &PatchParams::default(),
        &Patch::Merge(
            json!({"status": {"phase": "Running"}, "metadata": {"labels": {"a": "2"}},
                             "spec": {"nodeName": "elsewhere"}}),
        ),
    )
    .await
    .unwrap();
    let now = pods.get("p").await.unwrap();
    assert_eq!(now.status.unwrap().phase.as_deref(), Some("Running"));
    assert_eq!(
        now.metadata.labels.unwrap()["a"],
        "2",
        "a pod's labels pass"
    );
    assert_eq!(now.spec.unwrap().node_name, None, "spec does not");
}

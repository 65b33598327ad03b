//! Objects: lists with pages and selectors, writes with conflicts, generation, patches.

use super::*;

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

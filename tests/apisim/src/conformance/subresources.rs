//! Subresources and deletion: eviction against budgets, binding, graceful deletion and
//! finalizers, status.

use super::*;

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

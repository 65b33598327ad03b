//! The simulator's contracts checked against a real API server (`KUBECONFIG`):
//! `cargo test -p realload-tests --test e2e -- --ignored`.
//! Each test works in its own namespace and deletes it afterwards.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers may panic

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, EvictParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

async fn client() -> kube::Client {
    let mut config = kube::Config::infer()
        .await
        .expect("KUBECONFIG must point at a cluster");
    config.default_retry = false;
    kube::Client::try_from(config).unwrap()
}

async fn scratch_namespace(client: &kube::Client, prefix: &str) -> String {
    let name = format!("{prefix}-{}", std::process::id());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    name
}

async fn drop_namespace(client: &kube::Client, name: &str) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let _ = namespaces.delete(name, &DeleteParams::default()).await;
}

fn api_error(e: kube::Error) -> kube::core::Status {
    match e {
        kube::Error::Api(s) => *s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
#[ignore = "needs cluster"]
async fn status_errors_are_worded_like_the_simulator() {
    let client = client().await;
    let ns = scratch_namespace(&client, "realload-e2e-status").await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let e = api_error(cms.get("missing").await.unwrap_err());
    assert_eq!(
        (e.code, e.reason.as_str(), e.message.as_str()),
        (404, "NotFound", "configmaps \"missing\" not found")
    );
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "c"}})).unwrap();
    cms.create(&PostParams::default(), &cm).await.unwrap();
    let e = api_error(cms.create(&PostParams::default(), &cm).await.unwrap_err());
    assert_eq!((e.code, e.reason.as_str()), (409, "AlreadyExists"));
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let e = api_error(
        pods.list(&ListParams::default().fields("spec.flavour=x"))
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (400, "BadRequest"));
    assert!(
        e.message
            .contains("field label not supported: spec.flavour"),
        "{}",
        e.message
    );
    drop_namespace(&client, &ns).await;
}

#[tokio::test]
#[ignore = "needs cluster"]
async fn server_side_apply_owns_annotation_keys() {
    let client = client().await;
    let ns = scratch_namespace(&client, "realload-e2e-ssa").await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let applied = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c",
        "annotations": {"realload.io/a": "1", "realload.io/b": "2"}}});
    cms.patch(
        "c",
        &PatchParams::apply("realload-collector"),
        &Patch::Apply(&applied),
    )
    .await
    .unwrap();
    let applied = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "annotations": {"realload.io/a": "3"}}});
    cms.patch(
        "c",
        &PatchParams::apply("realload-collector"),
        &Patch::Apply(&applied),
    )
    .await
    .unwrap();
    let ann = cms.get("c").await.unwrap().metadata.annotations.unwrap();
    assert_eq!(ann.get("realload.io/a").map(String::as_str), Some("3"));
    assert!(!ann.contains_key("realload.io/b"));
    let other = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "annotations": {"realload.io/a": "9"}}});
    let e = api_error(
        cms.patch(
            "c",
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
    drop_namespace(&client, &ns).await;
}

#[tokio::test]
#[ignore = "needs cluster"]
async fn eviction_answers_429_when_a_budget_forbids_it() {
    let client = client().await;
    let ns = scratch_namespace(&client, "realload-e2e-evict").await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let d: Deployment = serde_json::from_value(json!({"metadata": {"name": "web"}, "spec": {"replicas": 2,
        "selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web"}},
                     "spec": {"containers": [{"name": "pause", "image": "registry.k8s.io/pause:3.10"}]}}}}))
    .unwrap();
    deployments
        .create(&PostParams::default(), &d)
        .await
        .unwrap();
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), &ns);
    let pdb: PodDisruptionBudget = serde_json::from_value(json!({"metadata": {"name": "web"},
        "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}}}))
    .unwrap();
    pdbs.create(&PostParams::default(), &pdb).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    let name = loop {
        let ready: Vec<Pod> = pods
            .list(&ListParams::default().labels("app=web"))
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|p| {
                p.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            })
            .collect();
        let budget_seen = pdbs
            .get("web")
            .await
            .unwrap()
            .status
            .is_some_and(|s| s.current_healthy == 2);
        if ready.len() == 2 && budget_seen {
            break ready[0].metadata.name.clone().unwrap();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "pods did not become ready"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    let e = api_error(
        pods.evict(&name, &EvictParams::default())
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (429, "TooManyRequests"));
    assert_eq!(
        e.message,
        "Cannot evict pod as it would violate the pod's disruption budget."
    );
    let cause = &e.details.unwrap().causes[0];
    assert_eq!(cause.reason, "DisruptionBudget");
    assert_eq!(
        cause.message,
        "The disruption budget web needs 2 healthy pods and has 2 currently"
    );
    drop_namespace(&client, &ns).await;
}

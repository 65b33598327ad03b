//! The least-privilege overlay's ValidatingAdmissionPolicy on the real API server: the
//! collector's ServiceAccount may change realload.io/* annotations on a Node and nothing else.

use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use realload_e2e::objects::{FakeNode, create_node};
use realload_e2e::{cluster, deploy, unique};
use serde_json::json;

const COLLECTOR: &str = "system:serviceaccount:realload-system:realload-collector";

async fn as_collector(c: &realload_e2e::Cluster) -> kube::Client {
    let kubeconfig = kube::config::Kubeconfig::read_from(&c.kubeconfig).unwrap();
    let mut config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    config.auth_info.impersonate = Some(COLLECTOR.to_string());
    config.default_retry = false;
    kube::Client::try_from(config).unwrap()
}

async fn patch(nodes: &Api<Node>, name: &str, body: serde_json::Value) -> Result<(), String> {
    nodes
        .patch(name, &PatchParams::default(), &Patch::Merge(&body))
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kubernetes control plane: tests/run.sh"]
async fn the_collector_may_change_only_realload_annotations_under_the_admission_policy() {
    let c = cluster();
    let admin = c.client().await;
    let objects = deploy::render("least-privilege");
    // the collector's RBAC (patch nodes) and the admission policy with its binding
    deploy::apply_all(&admin, &objects, |o| {
        deploy::is_access(o)
            || matches!(
                o["kind"].as_str(),
                Some("ValidatingAdmissionPolicy" | "ValidatingAdmissionPolicyBinding")
            )
    })
    .await;
    let group = unique("vap");
    let name = format!("{group}-n");
    create_node(&admin, &group, &FakeNode::new(name.clone()).cpu("8")).await;
    let nodes: Api<Node> = Api::all(as_collector(c).await);
    // the policy takes effect once the API server has loaded it: wait for the first denial
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match patch(
            &nodes,
            &name,
            json!({"metadata": {"labels": {"evil": "true"}}}),
        )
        .await
        {
            Err(e) if e.contains("may not change a Node's labels") => break,
            other => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "a label change was never denied: {other:?}"
                );
                // undo a label change that slipped in before the policy was loaded
                let _ = Api::<Node>::all(admin.clone())
                    .patch(
                        &name,
                        &PatchParams::default(),
                        &Patch::Merge(&json!({"metadata": {"labels": {"evil": null}}})),
                    )
                    .await;
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
    }
    let reading = json!({"metadata": {"annotations": {"realload.io/cpu-avg-5m": "0.4200,2026-11-22T01:04:00Z"}}});
    assert_eq!(
        patch(&nodes, &name, reading).await,
        Ok(()),
        "its own annotations pass"
    );
    let other = json!({"metadata": {"annotations": {"example.com/owner": "me"}}});
    let e = patch(&nodes, &name, other).await.unwrap_err();
    assert!(e.contains("only realload.io/* annotations"), "{e}");
    let taint = json!({"spec": {"unschedulable": true}});
    let e = patch(&nodes, &name, taint).await.unwrap_err();
    assert!(e.contains("spec"), "{e}");
    // anyone else is not concerned by the policy
    let admin_nodes: Api<Node> = Api::all(admin.clone());
    admin_nodes
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"labels": {"team": "x"}}})),
        )
        .await
        .unwrap();
    admin_nodes
        .delete(&name, &Default::default())
        .await
        .unwrap();
}

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

mod objects;
mod subresources;
mod watches;

pub use objects::*;
pub use subresources::*;
pub use watches::*;

//! Objects the tests create: scratch namespaces, Nodes made Ready without a kubelet, pods, and
//! workload chains built by hand (there is no controller-manager on the bundled control plane).

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, ServiceAccount};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

/// The label every test Node carries, naming its test's group; pods select their group with it.
pub const GROUP_LABEL: &str = "e2e.realload.io/group";

/// A reading value as the collector writes it, sampled `age` ago.
pub fn reading(ratio: f64, age: SignedDuration) -> String {
    let at = Timestamp::now() - age;
    format!("{ratio:.4},{}", at.strftime("%Y-%m-%dT%H:%M:%SZ"))
}

/// The annotations of a node whose exporter reports `cpu` (and 0.3 memory), sampled `age` ago.
pub fn readings(cpu: f64, age: SignedDuration) -> BTreeMap<String, String> {
    [
        ("realload.io/cpu-avg-5m", reading(cpu, age)),
        ("realload.io/cpu-max-1h", reading(cpu, age)),
        ("realload.io/mem-avg-5m", reading(0.3, age)),
        ("realload.io/cpu-sustained-10m", reading(cpu, age)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// A scratch namespace with its `default` ServiceAccount (no controller creates it here).
pub async fn namespace(client: &kube::Client, prefix: &str) -> String {
    let name = crate::unique(prefix);
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), &name);
    let sa: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": "default"}})).unwrap();
    match sas.create(&PostParams::default(), &sa).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.is_already_exists() => {}
        Err(e) => panic!("creating the default ServiceAccount: {e}"),
    }
    name
}

/// Deletes a namespace and the test's nodes (pods on them first, without grace: no kubelet
/// would ever confirm a graceful deletion).
pub async fn cleanup(client: &kube::Client, namespace: &str, group: &str) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let _ = pods
        .delete_collection(
            &DeleteParams {
                grace_period_seconds: Some(0),
                ..DeleteParams::default()
            },
            &ListParams::default(),
        )
        .await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let _ = namespaces.delete(namespace, &DeleteParams::default()).await;
    let nodes: Api<Node> = Api::all(client.clone());
    let _ = nodes
        .delete_collection(
            &DeleteParams::default(),
            &ListParams::default().labels(&format!("{GROUP_LABEL}={group}")),
        )
        .await;
}

/// A Node to create.
#[derive(Debug, Clone)]
pub struct FakeNode {
    pub name: String,
    pub cpu: String,
    pub memory: String,
    pub annotations: BTreeMap<String, String>,
    pub address: String,
}

impl FakeNode {
    pub fn new(name: impl Into<String>) -> FakeNode {
        FakeNode {
            name: name.into(),
            cpu: "8".into(),
            memory: "32Gi".into(),
            annotations: BTreeMap::new(),
            address: "10.255.0.1".into(),
        }
    }

    pub fn cpu(mut self, cpu: &str) -> Self {
        self.cpu = cpu.into();
        self
    }

    pub fn readings(mut self, annotations: BTreeMap<String, String>) -> Self {
        self.annotations.extend(annotations);
        self
    }

    pub fn address(mut self, ip: &str) -> Self {
        self.address = ip.into();
        self
    }
}

/// Creates the node in `group`, makes it Ready (status subresource) and removes the not-ready
/// taint admission put on it. Returns its uid.
pub async fn create_node(client: &kube::Client, group: &str, node: &FakeNode) -> String {
    let nodes: Api<Node> = Api::all(client.clone());
    let object: Node = serde_json::from_value(json!({
        "metadata": {"name": node.name, "annotations": node.annotations,
                     "labels": {GROUP_LABEL: group, "kubernetes.io/hostname": node.name}},
    }))
    .unwrap();
    let created = nodes.create(&PostParams::default(), &object).await.unwrap();
    let now = Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let capacity = json!({"cpu": node.cpu, "memory": node.memory, "pods": "110"});
    let status = json!({"status": {
        "capacity": capacity, "allocatable": capacity,
        "addresses": [{"type": "InternalIP", "address": node.address}, {"type": "Hostname", "address": node.name}],
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "e2e",
                        "lastHeartbeatTime": now, "lastTransitionTime": now}]}});
    nodes
        .patch_status(&node.name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    nodes
        .patch(
            &node.name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"taints": null}})),
        )
        .await
        .unwrap();
    created.metadata.uid.unwrap_or_default()
}

/// Replaces a node's realload readings.
pub async fn set_readings(
    client: &kube::Client,
    node: &str,
    annotations: &BTreeMap<String, String>,
) {
    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .patch(
            node,
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"annotations": annotations}})),
        )
        .await
        .unwrap();
}

/// A pod for `scheduler`, restricted to `group`'s nodes, requesting `cpu`.
pub fn pod(name: &str, scheduler: &str, group: &str, cpu: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": "e2e"}},
        "spec": {"schedulerName": scheduler, "nodeSelector": {GROUP_LABEL: group},
                 "terminationGracePeriodSeconds": 0,
                 "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10",
                                 "resources": {"requests": {"cpu": cpu, "memory": "64Mi"}}}]}
    }))
    .unwrap()
}

/// Creates `count` pods named `prefix-<i>`, as fast as the API takes them.
pub async fn create_pods(
    client: &kube::Client,
    namespace: &str,
    prefix: &str,
    count: usize,
    make: impl Fn(&str) -> Pod,
) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let creates = (0..count).map(|i| {
        let pods = pods.clone();
        let pod = make(&format!("{prefix}-{i}"));
        async move { pods.create(&PostParams::default(), &pod).await }
    });
    for r in futures::future::join_all(creates).await {
        r.unwrap();
    }
}

/// The node of every pod in the namespace (`None` while unbound), by pod name.
pub async fn placements(
    client: &kube::Client,
    namespace: &str,
) -> BTreeMap<String, Option<String>> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    pods.list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|p| {
            (
                p.metadata.name.unwrap_or_default(),
                p.spec.and_then(|s| s.node_name),
            )
        })
        .collect()
}

/// Pods per node.
pub fn per_node(placements: &BTreeMap<String, Option<String>>) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for node in placements.values().flatten() {
        *out.entry(node.clone()).or_default() += 1;
    }
    out
}

/// Waits until `bound` pods of the namespace are bound (or `timeout` passes); returns the
/// placements as they are then.
pub async fn wait_bound(
    client: &kube::Client,
    namespace: &str,
    bound: usize,
    timeout: Duration,
) -> BTreeMap<String, Option<String>> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let p = placements(client, namespace).await;
        if p.values().flatten().count() >= bound || tokio::time::Instant::now() > deadline {
            return p;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until the placements stop changing for `quiet` (the scheduler has given up on the rest).
pub async fn wait_settled(
    client: &kube::Client,
    namespace: &str,
    quiet: Duration,
    timeout: Duration,
) -> BTreeMap<String, Option<String>> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last = placements(client, namespace).await;
    let mut since = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = placements(client, namespace).await;
        if now != last {
            last = now;
            since = tokio::time::Instant::now();
        } else if since.elapsed() >= quiet || tokio::time::Instant::now() > deadline {
            return last;
        }
    }
}

/// Marks a bound pod Running and Ready since `started` (status subresource: no kubelet here).
pub async fn set_running(client: &kube::Client, namespace: &str, pod: &str, started: Timestamp) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let at = started.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let status = json!({"status": {"phase": "Running", "startTime": at,
        "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": at},
                       {"type": "PodScheduled", "status": "True", "lastTransitionTime": at}]}});
    pods.patch_status(pod, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
}

/// A Deployment with its ReplicaSet and `nodes.len()` Running, Ready pods bound to `nodes`, as
/// the controllers and kubelets would have left them. The Deployment is paused, so that on a
/// cluster with a controller-manager nothing else acts on it. Returns the pods' names.
pub async fn workload(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    nodes: &[&str],
    cpu: &str,
    extra_labels: &[(&str, &str)],
) -> Vec<String> {
    let mut labels: BTreeMap<String, String> = [("app".to_string(), name.to_string())].into();
    labels.extend(
        extra_labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(client.clone(), namespace);
    let replicas = nodes.len();
    let dep: k8s_openapi::api::apps::v1::Deployment = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"replicas": replicas, "paused": true, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]}}}
    }))
    .unwrap();
    let dep = deployments
        .create(&PostParams::default(), &dep)
        .await
        .unwrap();
    deployments
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(
                &json!({"status": {"replicas": replicas, "readyReplicas": replicas,
                "availableReplicas": replicas, "observedGeneration": 1}}),
            ),
        )
        .await
        .unwrap();
    let rss: Api<k8s_openapi::api::apps::v1::ReplicaSet> =
        Api::namespaced(client.clone(), namespace);
    let rs_name = format!("{name}-5d4f8b9c7");
    let rs: k8s_openapi::api::apps::v1::ReplicaSet = serde_json::from_value(json!({
        "metadata": {"name": rs_name, "labels": labels,
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": name,
                                          "uid": dep.metadata.uid, "controller": true, "blockOwnerDeletion": true}]},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]}}}
    }))
    .unwrap();
    let rs = rss.create(&PostParams::default(), &rs).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let started = Timestamp::now() - SignedDuration::from_hours(2);
    let mut names = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        let pod_name = format!("{name}-{i}");
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": pod_name, "labels": labels,
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs_name,
                                              "uid": rs.metadata.uid, "controller": true, "blockOwnerDeletion": true}]},
            // the default grace period: an eviction leaves the pod terminating, as a real
            // kubelet would until it stopped the containers
            "spec": {"nodeName": node,
                     "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10",
                                     "resources": {"requests": {"cpu": cpu, "memory": "256Mi"}}}]}
        }))
        .unwrap();
        pods.create(&PostParams::default(), &pod).await.unwrap();
        set_running(client, namespace, &pod_name, started).await;
        names.push(pod_name);
    }
    names
}

/// Reads an object's JSON through the dynamic API (for assertions on raw fields).
pub async fn get_json<K>(api: &Api<K>, name: &str) -> Value
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    serde_json::to_value(api.get(name).await.unwrap()).unwrap()
}

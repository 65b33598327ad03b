//! A seeded, deterministic synthetic cluster for benchmarks: Node objects as large as real ones
//! (labels, taints, allocatable, conditions, addresses, 50 images, collector annotations) and
//! pods with owners, requests and PodScheduled conditions.

use serde_json::{Value, json};

/// SplitMix64: small, fast, deterministic for a seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }
}

#[derive(Debug, Clone)]
pub struct Spec {
    pub nodes: usize,
    pub pods: usize,
    pub seed: u64,
    /// Sample time written into the annotations (RFC 3339).
    pub sampled_at: String,
    /// Share of nodes whose sustained CPU is hot (≥ 0.8).
    pub hot_fraction: f64,
}

impl Spec {
    pub fn new(nodes: usize, pods: usize) -> Spec {
        Spec {
            nodes,
            pods,
            seed: 42,
            sampled_at: "2026-11-22T01:04:30Z".into(),
            hot_fraction: 0.02,
        }
    }
}

/// Node names as long as real ones (EKS's `ip-10-100-19-136.ec2.internal`, matching the node's
/// InternalIP): a `NodeNames` body for 5,000 nodes is about 150 KB, as kube-scheduler sends it.
pub fn node_name(i: usize) -> String {
    let (a, b, c) = (100 + i / 65536, (i / 256) % 256, i % 256);
    format!("ip-10-{a}-{b}-{c}.ec2.internal")
}

/// One Node as the API server returns it (no managedFields).
pub fn node(i: usize, rng: &mut Rng, spec: &Spec) -> Value {
    let name = node_name(i);
    let hot = rng.unit() < spec.hot_fraction;
    let cpu = if hot {
        0.80 + rng.unit() * 0.15
    } else {
        0.05 + rng.unit() * 0.6
    };
    let mem = 0.2 + rng.unit() * 0.6;
    let at = &spec.sampled_at;
    let images: Vec<Value> = (0..50)
        .map(|k| {
            json!({"names": [format!("registry.example.com/team-{}/service-{k}@sha256:{:064x}", k % 7, rng.next_u64()),
                             format!("registry.example.com/team-{}/service-{k}:v1.{}.{}", k % 7, k, rng.below(20))],
                   "sizeBytes": 10_000_000 + rng.below(500_000_000)})
        })
        .collect();
    let mut taints = vec![];
    if i.is_multiple_of(50) {
        taints.push(json!({"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}));
    }
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {
            "name": name, "uid": format!("{:08x}-0000-4000-8000-{:012x}", i, rng.next_u64() & 0xffff_ffff_ffff),
            "resourceVersion": format!("{}", 1000 + i), "creationTimestamp": "2026-10-01T00:00:00Z",
            "labels": {
                "kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
                "node.kubernetes.io/instance-type": "m6i.16xlarge", "topology.kubernetes.io/zone": format!("zone-{}", i % 3),
                "topology.kubernetes.io/region": "region-1", "beta.kubernetes.io/arch": "amd64", "beta.kubernetes.io/os": "linux",
            },
            "annotations": {
                "node.alpha.kubernetes.io/ttl": "0",
                "volumes.kubernetes.io/controller-managed-attach-detach": "true",
                "realload.io/cpu-avg-5m": format!("{cpu:.4},{at}"),
                "realload.io/cpu-max-1h": format!("{:.4},{at}", (cpu + 0.1).min(1.0)),
                "realload.io/mem-avg-5m": format!("{mem:.4},{at}"),
                "realload.io/cpu-sustained-10m": format!("{:.4},{at}", (cpu - 0.02).max(0.01)),
            },
        },
        "spec": {"podCIDR": format!("10.{}.{}.0/24", i / 256, i % 256), "providerID": format!("aws:///zone/i-{:016x}", rng.next_u64()), "taints": taints},
        "status": {
            "capacity": {"cpu": "64", "memory": "256Gi", "pods": "110", "ephemeral-storage": "100Gi"},
            "allocatable": {"cpu": "63800m", "memory": "250Gi", "pods": "110", "ephemeral-storage": "95Gi"},
            "conditions": [
                {"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory", "message": "kubelet has sufficient memory available", "lastHeartbeatTime": at, "lastTransitionTime": "2026-10-01T00:00:00Z"},
                {"type": "DiskPressure", "status": "False", "reason": "KubeletHasNoDiskPressure", "message": "kubelet has no disk pressure", "lastHeartbeatTime": at, "lastTransitionTime": "2026-10-01T00:00:00Z"},
                {"type": "PIDPressure", "status": "False", "reason": "KubeletHasSufficientPID", "message": "kubelet has sufficient PID available", "lastHeartbeatTime": at, "lastTransitionTime": "2026-10-01T00:00:00Z"},
                {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status", "lastHeartbeatTime": at, "lastTransitionTime": "2026-10-01T00:00:00Z"},
            ],
            "addresses": [{"type": "InternalIP", "address": format!("10.{}.{}.{}", 100 + i / 65536, (i / 256) % 256, i % 256)}, {"type": "Hostname", "address": name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {"machineID": format!("{:032x}", rng.next_u64()), "systemUUID": format!("{:032x}", rng.next_u64()), "bootID": format!("{:032x}", rng.next_u64()),
                         "kernelVersion": "6.12.0", "osImage": "Debian GNU/Linux 13", "containerRuntimeVersion": "containerd://2.1.0",
                         "kubeletVersion": "v1.33.4", "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": "amd64"},
            "images": images,
        }
    })
}

/// Workload `w` of the synthetic cluster: Deployment `app-<w>` in namespace `ns-<w % 20>`.
fn workload_names(w: usize) -> (String, String) {
    (format!("ns-{}", w % 20), format!("app-{w}"))
}

/// Pods spread over the nodes, 5 replicas per workload; requests 100m–4 cores.
pub fn pod(p: usize, rng: &mut Rng, spec: &Spec) -> Value {
    let w = p / 5;
    let (ns, app) = workload_names(w);
    let node = node_name(rng.below(spec.nodes as u64) as usize);
    let cpu_m = [100, 250, 500, 1000, 2000, 3000, 4000][(w * 3 + 1) % 7];
    let bound = "2026-11-21T12:00:00Z";
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("{app}-rs-{p:06}"), "namespace": ns, "uid": format!("pod-{p:08}"),
                     "labels": {"app": app, "pod-template-hash": "rs"}, "creationTimestamp": bound,
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("{app}-rs"), "uid": format!("rs-{w}"), "controller": true, "blockOwnerDeletion": true}]},
        "spec": {"nodeName": node, "schedulerName": "default-scheduler", "priority": 0,
                 "containers": [{"name": "main", "image": format!("registry.example.com/{app}:v1"),
                                 "resources": {"requests": {"cpu": format!("{cpu_m}m"), "memory": format!("{}Mi", cpu_m / 2 + 64)}}}]},
        "status": {"phase": "Running", "startTime": bound,
                   "conditions": [{"type": "PodScheduled", "status": "True", "lastTransitionTime": bound},
                                  {"type": "Ready", "status": "True", "lastTransitionTime": bound}]}
    })
}

/// The owners of the pods: a ReplicaSet and a Deployment per workload, 5 ready replicas each.
pub fn owners(spec: &Spec) -> Vec<Value> {
    let workloads = spec.pods.div_ceil(5);
    let mut out = Vec::with_capacity(workloads * 2);
    for w in 0..workloads {
        let (ns, app) = workload_names(w);
        out.push(json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": app, "namespace": ns, "uid": format!("dep-{w}")},
            "spec": {"replicas": 5, "selector": {"matchLabels": {"app": app}}, "template": {}}, "status": {"replicas": 5, "readyReplicas": 5}}));
        out.push(json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": format!("{app}-rs"), "namespace": ns, "uid": format!("rs-{w}"),
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": app, "uid": format!("dep-{w}"), "controller": true}]},
            "spec": {"replicas": 5, "selector": {"matchLabels": {"app": app}}}, "status": {"replicas": 5, "readyReplicas": 5}}));
    }
    out
}

pub fn nodes(spec: &Spec) -> Vec<Value> {
    let mut rng = Rng::new(spec.seed);
    (0..spec.nodes).map(|i| node(i, &mut rng, spec)).collect()
}

pub fn pods(spec: &Spec) -> Vec<Value> {
    let mut rng = Rng::new(spec.seed ^ 0xdead_beef);
    (0..spec.pods).map(|p| pod(p, &mut rng, spec)).collect()
}

/// The whole cluster as a `kubectl get -o json` List, with an (empty) whitelist ConfigMap.
pub fn snapshot(spec: &Spec) -> Value {
    let mut items = nodes(spec);
    items.extend(pods(spec));
    items.extend(owners(spec));
    items.push(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "realload-whitelist", "namespace": "realload-system"},
                      "data": {"namespaces": "kube-system"}}));
    json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""}, "items": items})
}

/// A filter/prioritize body as kube-scheduler sends it: NodeNames (cache mode) or a NodeList of
/// full Node objects without kind/apiVersion (non-cache mode).
pub fn extender_body(spec: &Spec, node_cache_capable: bool) -> String {
    let pod = json!({"metadata": {"name": "bench-pod", "namespace": "default", "uid": "3f1c9a2e-2b7d-4c55-9a51-0d6f1e2a7b10",
                                  "labels": {"app": "bench"}, "creationTimestamp": null},
                     "spec": {"containers": [{"name": "c", "image": "nginx:1.27", "resources": {"requests": {"cpu": "500m", "memory": "256Mi"}}}],
                              "schedulerName": "default-scheduler"},
                     "status": {"phase": "Pending"}});
    let body = if node_cache_capable {
        let names: Vec<String> = (0..spec.nodes).map(node_name).collect();
        json!({"Pod": pod, "Nodes": null, "NodeNames": names})
    } else {
        let items: Vec<Value> = nodes(spec)
            .into_iter()
            .map(|mut n| {
                if let Some(m) = n.as_object_mut() {
                    m.remove("kind");
                    m.remove("apiVersion");
                }
                n
            })
            .collect();
        json!({"Pod": pod, "Nodes": {"metadata": {}, "items": items}, "NodeNames": null})
    };
    body.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_realistic() {
        let spec = Spec::new(20, 100);
        assert_eq!(snapshot(&spec), snapshot(&spec));
        let n = &nodes(&spec)[0];
        assert_eq!(n["status"]["images"].as_array().unwrap().len(), 50);
        assert!(n.to_string().len() > 8000, "a Node is several KB");
        let snap = realload_common::snapshot::load_snapshot(&snapshot(&spec).to_string()).unwrap();
        assert_eq!(
            (snap.nodes.len(), snap.pods.len(), snap.deployments.len()),
            (20, 100, 20)
        );
        let body = extender_body(&spec, false);
        assert!(body.starts_with("{\"NodeNames\":null") || body.contains("\"NodeNames\":null"));
    }
}

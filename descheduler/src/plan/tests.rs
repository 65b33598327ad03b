//! One case per rule: each exclusion alone flips the outcome of a base case that evicts.

use serde_json::{Value, json};

use super::*;

const NOW: &str = "2026-11-22T01:05:00Z";
const FRESH: &str = "2026-11-22T01:04:30Z";

struct Case {
    policy: Policy,
    whitelist: Whitelist,
    nodes: Vec<Value>,
    pods: Vec<Value>,
    replica_sets: Vec<Value>,
    deployments: Vec<Value>,
    stateful_sets: Vec<Value>,
    pdbs: Vec<Value>,
    node_requests: HashMap<String, Requests>,
    last: BTreeMap<WorkloadKey, Timestamp>,
    usage: realload_common::workload::UsageTable,
}

fn node(name: &str, sustained: f64, avg: f64) -> Value {
    json!({"metadata": {"name": name, "labels": {"zone": "a"}, "annotations": {
            "realload.io/cpu-sustained-10m": format!("{sustained},{FRESH}"),
            "realload.io/cpu-avg-5m": format!("{avg},{FRESH}"),
            "realload.io/cpu-max-1h": format!("{avg},{FRESH}"),
            "realload.io/mem-avg-5m": format!("0.3,{FRESH}")}},
           "status": {"allocatable": {"cpu": "16", "memory": "64Gi"}, "conditions": [{"type": "Ready", "status": "True"}]}})
}

fn pod(name: &str, workload: &str, node: &str, cpu: &str, started: &str) -> Value {
    json!({"metadata": {"name": name, "namespace": "shop", "labels": {"app": workload, "pod-template-hash": "rs"}, "creationTimestamp": started,
                        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("{workload}-rs"), "uid": "u", "controller": true}]},
           "spec": {"nodeName": node, "containers": [{"name": "c", "resources": {"requests": {"cpu": cpu, "memory": "1Gi"}}}]},
           "status": {"phase": "Running", "startTime": started, "conditions": [{"type": "Ready", "status": "True"}]}})
}

fn deployment(name: &str, ready: i32) -> (Value, Value) {
    (
        json!({"metadata": {"name": format!("{name}-rs"), "namespace": "shop",
                            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": name, "uid": "d", "controller": true}]},
               "spec": {"selector": {}}}),
        json!({"metadata": {"name": name, "namespace": "shop"}, "spec": {"selector": {}, "template": {}},
               "status": {"readyReplicas": ready, "replicas": ready}}),
    )
}

fn base() -> Case {
    let (rs, dep) = deployment("web", 3);
    Case {
        policy: Policy::default(),
        whitelist: Whitelist::default(),
        nodes: vec![node("hot", 0.90, 0.90), node("cool", 0.10, 0.20)],
        pods: vec![pod("web-1", "web", "hot", "3", "2026-11-22T00:00:00Z")],
        replica_sets: vec![rs],
        deployments: vec![dep],
        stateful_sets: vec![],
        pdbs: vec![],
        node_requests: [("cool".to_string(), Requests::default())].into(),
        last: BTreeMap::new(),
        usage: Default::default(),
    }
}

fn typed<T: serde::de::DeserializeOwned>(v: &[Value]) -> Vec<T> {
    v.iter()
        .map(|x| serde_json::from_value(x.clone()).unwrap())
        .collect()
}

fn run(c: &Case) -> Plan {
    let nodes: Vec<NodeView> = typed::<k8s_openapi::api::core::v1::Node>(&c.nodes)
        .iter()
        .map(|n| NodeView::from_node(n, &c.policy))
        .collect();
    let pods: Vec<Pod> = typed(&c.pods);
    let rs: Vec<ReplicaSet> = typed(&c.replica_sets);
    let deps: Vec<Deployment> = typed(&c.deployments);
    let sts: Vec<StatefulSet> = typed(&c.stateful_sets);
    let pdbs: Vec<PodDisruptionBudget> = typed(&c.pdbs);
    plan(&Inputs {
        policy: &c.policy,
        whitelist: &c.whitelist,
        now: NOW.parse().unwrap(),
        nodes: &nodes,
        candidates: &pods,
        node_requests: &c.node_requests,
        replica_sets: &rs,
        deployments: &deps,
        stateful_sets: &sts,
        pdbs: &pdbs,
        last_evictions: &c.last,
        usage: &c.usage,
    })
}

fn assert_skipped(c: &Case, fragment: &str) {
    let p = run(c);
    assert!(
        p.evictions.is_empty(),
        "expected no eviction ({fragment}), got {:?}",
        p.evictions
    );
    assert!(
        p.skipped
            .iter()
            .any(|s| s.pod == "web-1" && s.reason.contains(fragment)),
        "expected a skip containing {fragment:?}, got {:?}",
        p.skipped
    );
}

fn whitelist(key: &str, value: &str) -> Whitelist {
    Whitelist::from_data(&[(key.to_string(), value.to_string())].into()).unwrap()
}

#[test]
fn the_base_case_evicts_one_replica_towards_a_cool_node() {
    let p = run(&base());
    assert_eq!(p.hot_nodes, ["hot"]);
    assert_eq!(p.evictions.len(), 1);
    let e = &p.evictions[0];
    assert_eq!(
        (e.namespace.as_str(), e.pod.as_str(), e.node.as_str()),
        ("shop", "web-1", "hot")
    );
    assert_eq!(e.workload, "Deployment/shop/web");
    assert_eq!(e.destination, "cool");
    assert!(
        e.reason.contains("cpu-sustained-10m 0.90 >= hotAbove 0.80"),
        "{}",
        e.reason
    );
}

#[test]
fn each_rule_alone_prevents_the_eviction() {
    type Mutation = (&'static str, fn(&mut Case), &'static str);
    let cases: Vec<Mutation> = vec![
        (
            "node below hotAbove",
            |c| c.nodes[0] = node("hot", 0.79, 0.79),
            "",
        ),
        (
            "node whitelisted",
            |c| c.whitelist = whitelist("nodes", "ho*"),
            "node hot whitelisted",
        ),
        (
            "not ready",
            |c| c.pods[0]["status"]["conditions"][0]["status"] = json!("False"),
            "not Running and Ready",
        ),
        (
            "pending",
            |c| c.pods[0]["status"]["phase"] = json!("Pending"),
            "not Running and Ready",
        ),
        (
            "terminating",
            |c| c.pods[0]["metadata"]["deletionTimestamp"] = json!(NOW),
            "terminating",
        ),
        (
            "mirror",
            |c| c.pods[0]["metadata"]["annotations"] = json!({"kubernetes.io/config.mirror": "x"}),
            "mirror",
        ),
        (
            "too young",
            |c| {
                c.pods[0]["status"]["startTime"] = json!("2026-11-22T01:00:00Z");
            },
            "younger than minPodAge",
        ),
        (
            "protected namespace",
            |c| c.pods[0]["metadata"]["namespace"] = json!("kube-system"),
            "protected (namespace kube-system)",
        ),
        (
            "protected app label",
            |c| c.pods[0]["metadata"]["labels"]["app"] = json!("traefik"),
            "protected (app traefik*)",
        ),
        (
            "protected owner name",
            |c| {
                let (rs, dep) = deployment("istio-ingressgateway", 3);
                c.replica_sets = vec![rs];
                c.deployments = vec![dep];
                c.pods[0]["metadata"]["ownerReferences"][0]["name"] =
                    json!("istio-ingressgateway-rs");
            },
            "protected (app *ingressgateway*)",
        ),
        (
            "protected selector",
            |c| c.pods[0]["metadata"]["labels"]["istio"] = json!("ingressgateway"),
            "protected (selector istio=ingressgateway)",
        ),
        (
            "protected set from the policy",
            |c| {
                c.policy = Policy::from_yaml(
                    "descheduler: {protected: {namespaces: [], apps: [web], selectors: []}}",
                )
                .unwrap()
            },
            "protected (app web)",
        ),
        (
            "bare pod",
            |c| c.pods[0]["metadata"]["ownerReferences"] = json!([]),
            "bare pod",
        ),
        (
            "daemonset",
            |c| c.pods[0]["metadata"]["ownerReferences"][0]["kind"] = json!("DaemonSet"),
            "DaemonSet",
        ),
        (
            "job",
            |c| c.pods[0]["metadata"]["ownerReferences"][0]["kind"] = json!("Job"),
            "Job",
        ),
        (
            "bare replicaset",
            |c| c.replica_sets[0]["metadata"]["ownerReferences"] = json!([]),
            "no owning Deployment",
        ),
        (
            "statefulset without opt-in",
            |c| {
                c.pods[0]["metadata"]["ownerReferences"][0]["kind"] = json!("StatefulSet");
                c.pods[0]["metadata"]["ownerReferences"][0]["name"] = json!("db");
            },
            "evictStatefulSets is off",
        ),
        (
            "too few ready replicas",
            |c| c.deployments[0]["status"]["readyReplicas"] = json!(1),
            "below minReplicas",
        ),
        (
            "namespace whitelisted",
            |c| c.whitelist = whitelist("namespaces", "shop"),
            "namespace whitelisted",
        ),
        (
            "app whitelisted by label",
            |c| c.whitelist = whitelist("apps", "web"),
            "app whitelisted",
        ),
        (
            "app whitelisted by k8s name label",
            |c| {
                c.pods[0]["metadata"]["labels"] = json!({"app.kubernetes.io/name": "frontend"});
                c.whitelist = whitelist("apps", "front*");
            },
            "app whitelisted",
        ),
        (
            "app whitelisted by deployment name",
            |c| {
                c.pods[0]["metadata"]["labels"] = json!({"tier": "x"});
                c.whitelist = whitelist("apps", "web");
            },
            "app whitelisted",
        ),
        (
            "system critical priority",
            |c| c.pods[0]["spec"]["priority"] = json!(2_000_000_000),
            "system-critical",
        ),
        (
            "system critical class",
            |c| c.pods[0]["spec"]["priorityClassName"] = json!("system-cluster-critical"),
            "system-critical",
        ),
        (
            "opted out",
            |c| c.pods[0]["metadata"]["annotations"] = json!({"realload.io/evict": "false"}),
            "realload.io/evict=false",
        ),
        (
            "opted out in another case",
            |c| c.pods[0]["metadata"]["annotations"] = json!({"realload.io/evict": "False"}),
            "realload.io/evict=false",
        ),
        (
            "opted out in capitals",
            |c| c.pods[0]["metadata"]["annotations"] = json!({"realload.io/evict": " FALSE "}),
            "realload.io/evict=false",
        ),
        (
            "too small",
            |c| c.pods[0]["spec"]["containers"][0]["resources"]["requests"]["cpu"] = json!("1500m"),
            "outside cpuRequest",
        ),
        (
            "too large",
            |c| c.pods[0]["spec"]["containers"][0]["resources"]["requests"]["cpu"] = json!("4100m"),
            "outside cpuRequest",
        ),
        (
            "emptyDir",
            |c| c.pods[0]["spec"]["volumes"] = json!([{"name": "scratch", "emptyDir": {}}]),
            "local storage",
        ),
        (
            "hostPath",
            |c| c.pods[0]["spec"]["volumes"] = json!([{"name": "h", "hostPath": {"path": "/x"}}]),
            "local storage",
        ),
        (
            "pdb exhausted",
            |c| {
                c.pdbs = vec![json!({"metadata": {"name": "web", "namespace": "shop"},
            "spec": {"selector": {"matchLabels": {"app": "web"}}}, "status": {"disruptionsAllowed": 0, "currentHealthy": 3, "desiredHealthy": 3, "expectedPods": 3}})]
            },
            "PodDisruptionBudget web allows no disruption",
        ),
        (
            "cooldown",
            |c| {
                c.last.insert(
                    WorkloadKey {
                        kind: "Deployment".into(),
                        namespace: "shop".into(),
                        name: "web".into(),
                    },
                    "2026-11-22T00:50:00Z".parse().unwrap(),
                );
            },
            "workload cooldown",
        ),
        (
            "no destination: destination hot on cpu-avg-5m",
            |c| c.nodes[1] = node("cool", 0.10, 0.50),
            "no destination",
        ),
        (
            "no destination: stale destination reading",
            |c| {
                c.nodes[1]["metadata"]["annotations"]["realload.io/cpu-avg-5m"] =
                    json!("0.2,2026-11-22T00:00:00Z");
            },
            "no destination",
        ),
        (
            "no destination: zero destination reading",
            |c| {
                c.nodes[1]["metadata"]["annotations"]["realload.io/cpu-avg-5m"] =
                    json!("0.0,2026-11-22T01:04:30Z");
            },
            "no destination",
        ),
        (
            "no destination: not ready",
            |c| c.nodes[1]["status"]["conditions"][0]["status"] = json!("False"),
            "no destination",
        ),
        (
            "no destination: cordoned",
            |c| c.nodes[1]["spec"] = json!({"unschedulable": true}),
            "no destination",
        ),
        (
            "no destination: untolerated taint",
            |c| {
                c.nodes[1]["spec"] =
                    json!({"taints": [{"key": "gpu", "value": "yes", "effect": "NoSchedule"}]})
            },
            "no destination",
        ),
        (
            "no destination: no room",
            |c| {
                c.node_requests.insert(
                    "cool".into(),
                    Requests {
                        cpu_millis: 14_000,
                        memory_bytes: 0,
                    },
                );
            },
            "no destination",
        ),
        (
            "no destination: pods not listed",
            |c| c.node_requests.clear(),
            "no destination",
        ),
        (
            "no destination: nodeSelector",
            |c| c.pods[0]["spec"]["nodeSelector"] = json!({"zone": "b"}),
            "no destination",
        ),
    ];
    for (name, mutate, fragment) in cases {
        let mut c = base();
        mutate(&mut c);
        if fragment.is_empty() {
            let p = run(&c);
            assert!(
                p.evictions.is_empty() && p.hot_nodes.is_empty(),
                "{name}: {p:?}"
            );
        } else {
            assert_skipped(&c, fragment);
        }
    }
}

#[test]
fn doubtful_hot_readings_never_make_a_node_hot() {
    for value in [
        "0.95,2026-11-22T00:00:00Z",
        "NaN,2026-11-22T01:04:30Z",
        "0.0,2026-11-22T01:04:30Z",
        "junk",
    ] {
        let mut c = base();
        c.nodes[0]["metadata"]["annotations"]["realload.io/cpu-sustained-10m"] = json!(value);
        let p = run(&c);
        assert!(p.hot_nodes.is_empty() && p.evictions.is_empty(), "{value}");
    }
    let mut c = base();
    c.nodes[0]["metadata"]["annotations"]
        .as_object_mut()
        .unwrap()
        .remove("realload.io/cpu-sustained-10m");
    assert!(run(&c).hot_nodes.is_empty());
}

#[test]
fn tolerated_taints_statefulsets_with_opt_in_and_pdbs_with_room_allow_it() {
    let mut c = base();
    c.nodes[1]["spec"] = json!({"taints": [{"key": "gpu", "value": "yes", "effect": "NoSchedule"}, {"key": "soft", "effect": "PreferNoSchedule"}]});
    c.pods[0]["spec"]["tolerations"] =
        json!([{"key": "gpu", "operator": "Equal", "value": "yes", "effect": "NoSchedule"}]);
    c.pdbs = vec![
        json!({"metadata": {"name": "web", "namespace": "shop"}, "spec": {"selector": {"matchLabels": {"app": "web"}}}, "status": {"disruptionsAllowed": 1, "currentHealthy": 3, "desiredHealthy": 2, "expectedPods": 3}}),
    ];
    assert_eq!(run(&c).evictions.len(), 1);

    let mut c = base();
    c.policy = Policy::from_yaml("descheduler: {evictStatefulSets: true}").unwrap();
    c.pods[0]["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db", "uid": "s", "controller": true}]);
    c.stateful_sets = vec![
        json!({"metadata": {"name": "db", "namespace": "shop"}, "spec": {"selector": {}, "template": {}, "serviceName": "db"}, "status": {"replicas": 3, "readyReplicas": 3}}),
    ];
    let p = run(&c);
    assert_eq!(p.evictions.len(), 1);
    assert_eq!(p.evictions[0].workload, "StatefulSet/shop/db");

    // a cooldown that has passed no longer holds
    let mut c = base();
    c.last.insert(
        WorkloadKey {
            kind: "Deployment".into(),
            namespace: "shop".into(),
            name: "web".into(),
        },
        "2026-11-22T00:30:00Z".parse().unwrap(),
    );
    assert_eq!(run(&c).evictions.len(), 1);
}

fn workload_pods(c: &mut Case, specs: &[(&str, &str, &str, &str)]) {
    c.pods.clear();
    c.replica_sets.clear();
    c.deployments.clear();
    for (name, workload, cpu, started) in specs {
        c.pods.push(pod(name, workload, "hot", cpu, started));
        if !c
            .deployments
            .iter()
            .any(|d| d["metadata"]["name"] == *workload)
        {
            let (rs, dep) = deployment(workload, 3);
            c.replica_sets.push(rs);
            c.deployments.push(dep);
        }
    }
}

#[test]
fn largest_request_first_then_youngest() {
    let mut c = base();
    workload_pods(
        &mut c,
        &[
            ("small", "a", "2", "2026-11-22T00:00:00Z"),
            ("big-old", "b", "4", "2026-11-21T00:00:00Z"),
            ("big-young", "c", "4", "2026-11-22T00:30:00Z"),
        ],
    );
    let p = run(&c);
    assert_eq!(p.evictions.len(), 1, "maxEvictionsPerNode 1");
    assert_eq!(p.evictions[0].pod, "big-young");
    assert!(
        p.skipped
            .iter()
            .any(|s| s.pod == "big-old" && s.reason.contains("maxEvictionsPerNode"))
    );
}

#[test]
fn with_learned_usage_the_pod_that_relieves_the_node_most_goes_first() {
    use realload_common::workload::{UsageEntry, UsageTable, WorkloadKey as Key};
    let mut c = base();
    workload_pods(
        &mut c,
        &[
            ("idle-big", "idle", "4", "2026-11-22T00:00:00Z"),
            ("busy-small", "busy", "2", "2026-11-22T00:00:00Z"),
        ],
    );
    assert_eq!(
        run(&c).evictions[0].pod,
        "idle-big",
        "by request, without a table"
    );
    let entry = |cpu| UsageEntry {
        cpu: Some(cpu),
        memory: None,
        pods: 3,
    };
    let key = |name: &str| Key {
        namespace: "shop".into(),
        kind: "Deployment".into(),
        name: name.into(),
    };
    c.usage = UsageTable {
        updated: Some("2026-11-22T01:00:00Z".parse().unwrap()),
        workloads: [(key("idle"), entry(0.2)), (key("busy"), entry(1.5))].into(),
    };
    // 4 cores × 0.2 = 800m against 2 cores × 1.5 = 3000m
    let p = run(&c);
    assert_eq!(p.evictions[0].pod, "busy-small", "{p:?}");
    assert!(
        p.evictions[0].reason.contains(
            "3000m CPU (learned: 1.50 of its 2000m request) can move to cool (cpu-avg-5m 0.39)"
        ),
        "the destination is checked on the predicted load: {}",
        p.evictions[0].reason
    );
    // a destination that the learned usage would overheat is not one
    c.nodes[1] = node("cool", 0.10, 0.45);
    let p = run(&c);
    assert_eq!(
        p.evictions.first().map(|e| e.pod.as_str()),
        Some("idle-big"),
        "0.45 + 3000m/16 cores = 0.64 is over coolBelow 0.60; 0.45 + 0.05 is not: {p:?}"
    );
    // an old table (past workloadUsage.maxAge) is not used
    c.nodes[1] = node("cool", 0.10, 0.20);
    c.usage.updated = Some("2026-11-22T00:00:00Z".parse().unwrap());
    assert_eq!(run(&c).evictions[0].pod, "idle-big");
}

#[test]
fn limits_one_pod_per_workload_per_run_and_the_projected_load_stop() {
    let mut c = base();
    c.policy =
        Policy::from_yaml("descheduler: {maxEvictionsPerNode: 5, maxEvictionsPerRun: 2}").unwrap();
    workload_pods(
        &mut c,
        &[
            ("a-1", "a", "4", "2026-11-22T00:00:00Z"),
            ("a-2", "a", "4", "2026-11-22T00:00:01Z"),
            ("b-1", "b", "3", "2026-11-22T00:00:00Z"),
            ("c-1", "c", "2", "2026-11-22T00:00:00Z"),
        ],
    );
    c.nodes[1] = node("cool", 0.05, 0.05);
    let p = run(&c);
    let evicted: Vec<&str> = p.evictions.iter().map(|e| e.pod.as_str()).collect();
    // 0.90 − 4/16 = 0.65 < targetBelow 0.75 after the first eviction: nothing more from this node
    assert_eq!(evicted, ["a-2"]);
    assert!(
        p.skipped
            .iter()
            .any(|s| s.pod == "a-1" && s.reason.contains("already loses a pod"))
    );
    assert!(
        p.skipped
            .iter()
            .any(|s| s.pod == "b-1" && s.reason.contains("below targetBelow"))
    );

    // run limit, across two hot nodes
    let mut c = base();
    c.policy = Policy::from_yaml("descheduler: {maxEvictionsPerRun: 1}").unwrap();
    c.nodes.push(node("hot2", 0.95, 0.95));
    workload_pods(&mut c, &[("a-1", "a", "3", "2026-11-22T00:00:00Z")]);
    let mut other = pod("b-1", "b", "hot2", "3", "2026-11-22T00:00:00Z");
    other["metadata"]["namespace"] = json!("shop");
    c.pods.push(other);
    let (rs, dep) = deployment("b", 3);
    c.replica_sets.push(rs);
    c.deployments.push(dep);
    let p = run(&c);
    assert_eq!(p.hot_nodes, ["hot2", "hot"], "hottest first");
    assert_eq!(p.evictions.len(), 1);
    assert_eq!(p.evictions[0].pod, "b-1");
    assert!(
        p.skipped
            .iter()
            .any(|s| s.pod == "a-1" && s.reason.contains("maxEvictionsPerRun"))
    );
}

#[test]
fn destinations_fill_up_within_a_run() {
    let mut c = base();
    c.policy =
        Policy::from_yaml("descheduler: {maxEvictionsPerNode: 5, targetBelow: 0.1, hotAbove: 0.2}")
            .unwrap();
    workload_pods(
        &mut c,
        &[
            ("a-1", "a", "4", "2026-11-22T00:00:00Z"),
            ("b-1", "b", "4", "2026-11-22T00:00:00Z"),
            ("c-1", "c", "4", "2026-11-22T00:00:00Z"),
        ],
    );
    // cool at 0.20: each 4-core pod adds 0.25 of 16 cores; coolBelow 0.60 takes one only (0.45), not two (0.70)
    let p = run(&c);
    assert_eq!(p.evictions.len(), 1);
    assert_eq!(
        p.skipped
            .iter()
            .filter(|s| s.reason.contains("no destination"))
            .count(),
        2
    );
}

//! `realload-descheduler` against the API simulator: real runs, PDB refusals, API failures,
//! whitelist edits, the cooldown across runs, bad input and SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers may panic

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use realload_apisim::{ApiSim, Fault, resources};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_realload-descheduler");

fn ts(offset_secs: i64) -> String {
    (jiff::Timestamp::now() + jiff::SignedDuration::from_secs(offset_secs))
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn node(name: &str, sustained: f64, avg: f64) -> Value {
    let at = ts(-30);
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "annotations": {
            "realload.io/cpu-sustained-10m": format!("{sustained},{at}"),
            "realload.io/cpu-avg-5m": format!("{avg},{at}"),
            "realload.io/cpu-max-1h": format!("{avg},{at}"),
            "realload.io/mem-avg-5m": format!("0.3,{at}")}},
           "status": {"allocatable": {"cpu": "16", "memory": "64Gi"}, "conditions": [{"type": "Ready", "status": "True"}]}})
}

fn workload(sim: &ApiSim, name: &str, pods_on: &[&str]) {
    sim.put(json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": "shop"},
        "spec": {"replicas": pods_on.len(), "selector": {"matchLabels": {"app": name}}, "template": {}},
        "status": {"replicas": pods_on.len(), "readyReplicas": pods_on.len()}}))
    .unwrap();
    sim.put(json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": format!("{name}-rs"), "namespace": "shop",
        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": name, "uid": format!("uid-{name}"), "controller": true}]},
        "spec": {"replicas": pods_on.len(), "selector": {"matchLabels": {"app": name}}}}))
    .unwrap();
    for (i, node) in pods_on.iter().enumerate() {
        sim.put(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": format!("{name}-{i}"), "namespace": "shop", "labels": {"app": name},
            "creationTimestamp": ts(-7200),
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("{name}-rs"), "uid": format!("uid-{name}-rs"), "controller": true}]},
            "spec": {"nodeName": node, "containers": [{"name": "c", "resources": {"requests": {"cpu": "3", "memory": "2Gi"}}}]},
            "status": {"phase": "Running", "startTime": ts(-7200), "conditions": [{"type": "Ready", "status": "True"}]}}))
        .unwrap();
    }
}

fn whitelist(sim: &ApiSim, apps: &str) {
    sim.put(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "realload-whitelist", "namespace": "realload-system"},
        "data": {"namespaces": "kube-system", "apps": apps}}))
    .unwrap();
}

/// Two hot nodes, two cool ones; web on hot-1, api on hot-2 (each with replicas elsewhere).
async fn cluster() -> ApiSim {
    let sim = ApiSim::start().await.unwrap();
    sim.put(node("hot-1", 0.92, 0.92)).unwrap();
    sim.put(node("hot-2", 0.88, 0.88)).unwrap();
    sim.put(node("cool-1", 0.10, 0.10)).unwrap();
    sim.put(node("cool-2", 0.15, 0.15)).unwrap();
    workload(&sim, "web", &["hot-1", "cool-1", "cool-2"]);
    workload(&sim, "api", &["hot-2", "cool-1", "cool-2"]);
    whitelist(&sim, "*gateway*");
    // the cooldown state, shipped empty by the manifests
    sim.put(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "realload-descheduler-state", "namespace": "realload-system"}}))
        .unwrap();
    sim
}

struct Run {
    code: i32,
    report: Value,
    stderr: String,
}

fn kubeconfig(sim: &ApiSim, name: &str) -> PathBuf {
    let dir = realload_test_support::temp_dir("desched", name);
    let path = dir.join("kubeconfig");
    sim.write_kubeconfig(&path).unwrap();
    path
}

async fn run(kubeconfig: &Path, extra: &[&str]) -> Run {
    let out = tokio::process::Command::new(BIN)
        .args(["--output", "json"])
        .args(extra)
        .env("KUBECONFIG", kubeconfig)
        .env("REALLOAD_LOG", "warn")
        .output()
        .await
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        report: serde_json::from_slice(&out.stdout).unwrap_or(Value::Null),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn evicted(r: &Run) -> Vec<String> {
    r.report["evictions"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| e["pod"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn skip_reason(r: &Run, pod: &str) -> String {
    r.report["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["pod"] == pod)
        .map(|s| s["reason"].as_str().unwrap().to_string())
        .unwrap_or_default()
}

fn eviction_posts(sim: &ApiSim) -> usize {
    sim.requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/eviction"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_run_evicts_the_planned_pods_records_events_and_the_cooldown() {
    let sim = cluster().await;
    let kc = kubeconfig(&sim, "real");
    let dry = run(&kc, &["--dry-run"]).await;
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    let mut planned = evicted(&dry);
    planned.sort();
    assert_eq!(planned, ["api-0", "web-0"]);
    assert_eq!(eviction_posts(&sim), 0, "a dry run changes nothing");

    let r = run(&kc, &[]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.report["hotNodes"], json!(["hot-1", "hot-2"]));
    let mut done = evicted(&r);
    done.sort();
    assert_eq!(done, planned);
    for pod in ["web-0", "api-0"] {
        let p = sim.get(resources::PODS, "shop", pod).unwrap();
        assert!(
            p["metadata"]["deletionTimestamp"].is_string(),
            "{pod} is terminating"
        );
    }
    let web0_uid = sim.get(resources::PODS, "shop", "web-0").unwrap()["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(sim.finish_terminating_pods(), 2);
    assert!(sim.get(resources::PODS, "shop", "web-0").is_none(), "gone");
    let state = sim
        .get(
            resources::CONFIGMAPS,
            "realload-system",
            "realload-descheduler-state",
        )
        .unwrap();
    assert!(state["data"]["Deployment.shop.web"].is_string());
    let events = sim.list(resources::EVENTS_V1);
    // complete references: `kubectl describe` finds Events by the object's uid
    let on_pod = events
        .iter()
        .find(|e| e["reason"] == "RealloadEvicted" && e["regarding"]["name"] == "web-0")
        .unwrap_or_else(|| panic!("{events:?}"));
    assert_eq!(on_pod["regarding"]["kind"], "Pod");
    assert_eq!(on_pod["regarding"]["namespace"], "shop");
    assert_eq!(on_pod["regarding"]["uid"], json!(web0_uid));
    let on_node = events
        .iter()
        .find(|e| e["reason"] == "RealloadEvicted" && e["regarding"]["name"] == "hot-1")
        .unwrap_or_else(|| panic!("{events:?}"));
    assert_eq!(on_node["regarding"]["kind"], "Node");
    assert!(
        on_node["regarding"]["uid"]
            .as_str()
            .is_some_and(|u| !u.is_empty())
    );
    assert_eq!(
        on_node["related"]["name"], "web-0",
        "the node's Event names the pod"
    );
    assert_eq!(on_node["related"]["uid"], json!(web0_uid));
    assert!(on_node["note"].as_str().unwrap().contains("shop/web-0"));
    // never a delete: only the Eviction subresource
    assert!(!sim.requests().iter().any(|r| r.method == "DELETE"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owners_are_read_only_for_pods_the_plan_could_evict() {
    let sim = cluster().await;
    // api-0 on hot-2 becomes too small to move: its owner is no longer worth a request
    sim.modify(resources::PODS, "shop", "api-0", |p| {
        p["spec"]["containers"][0]["resources"]["requests"]["cpu"] = json!("500m");
    })
    .unwrap();
    let kc = kubeconfig(&sim, "owners");
    sim.clear_requests();
    let r = run(&kc, &["--dry-run"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(evicted(&r), ["web-0"]);
    assert!(skip_reason(&r, "api-0").contains("CPU request 500m"));
    let gets: Vec<String> = sim
        .requests()
        .iter()
        .filter(|r| r.method == "GET")
        .map(|r| r.path.clone())
        .collect();
    assert!(
        gets.iter().any(|p| p.ends_with("/replicasets/web-rs")),
        "{gets:?}"
    );
    assert!(
        gets.iter().any(|p| p.ends_with("/deployments/web")),
        "{gets:?}"
    );
    assert!(
        !gets
            .iter()
            .any(|p| p.contains("/replicasets/api-rs") || p.contains("/deployments/api")),
        "{gets:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pdb_refusal_is_skipped_and_the_run_goes_on() {
    let sim = cluster().await;
    // the PDB's status (stale) allows one disruption; the live arithmetic does not
    sim.put(json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"minAvailable": 3, "selector": {"matchLabels": {"app": "web"}}},
        "status": {"disruptionsAllowed": 1, "currentHealthy": 3, "desiredHealthy": 2, "expectedPods": 3}}))
    .unwrap();
    let kc = kubeconfig(&sim, "pdb");
    let r = run(&kc, &[]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(evicted(&r), ["api-0"]);
    assert!(
        skip_reason(&r, "web-0").contains("refused (429)"),
        "{}",
        r.report
    );
    assert!(
        skip_reason(&r, "web-0").contains("needs 3 healthy pods"),
        "{}",
        r.report
    );
    assert!(
        sim.get(resources::PODS, "shop", "web-0").unwrap()["metadata"]["deletionTimestamp"]
            .is_null()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_failure_mid_run_exits_2_with_a_truthful_report() {
    let sim = cluster().await;
    sim.put(node("hot-3", 0.85, 0.85)).unwrap();
    workload(&sim, "batch", &["hot-3", "cool-1"]);
    sim.inject(
        Fault::on(Some(http::Method::POST), "/eviction")
            .after(1)
            .respond(500),
    );
    let kc = kubeconfig(&sim, "fail");
    let r = run(&kc, &[]).await;
    assert_eq!(r.code, 2, "{}", r.stderr);
    let done = evicted(&r);
    assert_eq!(done.len(), 1, "the first eviction happened: {}", r.report);
    assert!(r.report["error"].as_str().unwrap().contains("failed"));
    let skipped: Vec<String> = r.report["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["reason"].as_str().unwrap().to_string())
        .collect();
    assert!(skipped.iter().any(|s| s.starts_with("eviction failed")));
    assert!(skipped.iter().any(|s| s.starts_with("not attempted")));
    assert_eq!(eviction_posts(&sim), 2, "it stopped after the failure");
    // the report matches the cluster: exactly the reported pod is terminating
    let terminating: Vec<String> = sim
        .list(resources::PODS)
        .into_iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_string())
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(terminating, done);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whitelist_edits_take_effect_on_the_next_run_and_the_cooldown_holds() {
    let sim = cluster().await;
    whitelist(&sim, "web, api");
    let kc = kubeconfig(&sim, "edit");
    let r = run(&kc, &[]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(evicted(&r).is_empty());
    assert!(skip_reason(&r, "web-0").contains("app whitelisted"));
    whitelist(&sim, "api");
    let r = run(&kc, &[]).await;
    assert_eq!(evicted(&r), ["web-0"], "{}", r.report);
    // the next run: web is in its cooldown (read back from the cluster), even with a new replica on the hot node
    sim.finish_terminating_pods();
    sim.put(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-9", "namespace": "shop", "labels": {"app": "web"},
        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-rs", "uid": "uid-web-rs", "controller": true}]},
        "spec": {"nodeName": "hot-1", "containers": [{"name": "c", "resources": {"requests": {"cpu": "3"}}}]},
        "status": {"phase": "Running", "startTime": ts(-3600), "conditions": [{"type": "Ready", "status": "True"}]}}))
    .unwrap();
    let r = run(&kc, &[]).await;
    assert!(evicted(&r).is_empty(), "{}", r.report);
    assert!(
        skip_reason(&r, "web-9").contains("cooldown"),
        "{}",
        r.report
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_or_missing_whitelist_evicts_nothing_and_exits_1() {
    let sim = cluster().await;
    let kc = kubeconfig(&sim, "badwl");
    sim.put(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "realload-whitelist", "namespace": "realload-system"},
        "data": {"namespace": "kube-system"}}))
    .unwrap();
    let r = run(&kc, &[]).await;
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("unknown data key \"namespace\""),
        "{}",
        r.stderr
    );
    sim.put(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "realload-whitelist", "namespace": "realload-system"},
        "data": {"apps": "web gateway"}}))
    .unwrap();
    let r = run(&kc, &[]).await;
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("line 1"), "{}", r.stderr);
    let r = run(&kc, &["--whitelist-configmap", "realload-system/absent"]).await;
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("not found"), "{}", r.stderr);
    assert_eq!(eviction_posts(&sim), 0);
    let r = run(
        &kc,
        &[
            "--whitelist-configmap",
            "realload-system/absent",
            "--allow-missing-whitelist",
            "--dry-run",
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(evicted(&r).len(), 2);
    // a bad policy is bad input too
    let dir = kc.parent().unwrap();
    let policy = dir.join("bad-policy.yaml");
    std::fs::write(&policy, "descheduler: {targetBelow: 0.9}\n").unwrap();
    let r = run(&kc, &["--policy", policy.to_str().unwrap()]).await;
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("descheduler.targetBelow"), "{}", r.stderr);
    assert_eq!(eviction_posts(&sim), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_run_stops_before_the_next_eviction() {
    let sim = cluster().await;
    sim.put(node("hot-3", 0.85, 0.85)).unwrap();
    workload(&sim, "batch", &["hot-3", "cool-1"]);
    sim.inject(
        Fault::on(Some(http::Method::POST), "/eviction")
            .times(usize::MAX)
            .delay(Duration::from_millis(1500)),
    );
    let kc = kubeconfig(&sim, "sigterm");
    let child = Command::new(BIN)
        .args(["--output", "json"])
        .env("KUBECONFIG", &kc)
        .env("REALLOAD_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // wait until planning is over (its last read lists PDBs); the first eviction is then in
    // flight, held 1.5s by the injected delay (the log records requests when they complete)
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !sim
        .requests()
        .iter()
        .any(|r| r.path.ends_with("/poddisruptionbudgets"))
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "planning never finished"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["evictions"].as_array().unwrap().len(), 1, "{report}");
    assert!(report["error"].as_str().unwrap().contains("signal"));
    assert_eq!(eviction_posts(&sim), 1);
}

#[test]
fn snapshot_mode_plans_without_a_cluster_and_rejects_bad_files() {
    let snapshot = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/example/cluster.json");
    let out = Command::new(BIN)
        .args([
            "--snapshot",
            snapshot,
            "--now",
            "2026-11-22T01:05:00Z",
            "--output",
            "json",
        ])
        .env_remove("KUBECONFIG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["hotNodes"], json!(["node-b"]));
    assert_eq!(report["evictions"][0]["workload"], "Deployment/shop/api");
    assert_eq!(
        report.as_object().unwrap().len(),
        3,
        "exactly evictions, skipped, hotNodes"
    );
    let bad =
        std::env::temp_dir().join(format!("realload-bad-snapshot-{}.json", std::process::id()));
    std::fs::write(&bad, r#"{"kind":"List","items":[{"kind":"Pod","metadata":{"name":"p"},"spec":{"priority":"high"}}]}"#).unwrap();
    let out = Command::new(BIN)
        .args(["--snapshot", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("spec.priority"));
    let out = Command::new(BIN)
        .args(["--snapshot", "/nonexistent.json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateways_are_protected_without_any_whitelist() {
    let sim = cluster().await;
    let kc = kubeconfig(&sim, "protected");
    // an ingress controller: a Deployment's replica on a hot node, in its own namespace, and one
    // elsewhere under a plain name but with the Gateway API's label
    sim.put(json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "ingress-nginx-controller", "namespace": "ingress-nginx"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "x"}}, "template": {"metadata": {"labels": {"app": "x"}}, "spec": {"containers": []}}},
        "status": {"replicas": 2, "readyReplicas": 2}}))
    .unwrap();
    sim.put(json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "ingress-nginx-controller-rs", "namespace": "ingress-nginx",
        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "ingress-nginx-controller", "uid": "d", "controller": true}]},
        "spec": {"selector": {"matchLabels": {"app": "x"}}}}))
    .unwrap();
    sim.put(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "ingress-0", "namespace": "ingress-nginx",
        "labels": {"app.kubernetes.io/name": "ingress-nginx"}, "creationTimestamp": ts(-7200),
        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "ingress-nginx-controller-rs", "uid": "r", "controller": true}]},
        "spec": {"nodeName": "hot-1", "containers": [{"name": "c", "resources": {"requests": {"cpu": "3"}}}]},
        "status": {"phase": "Running", "startTime": ts(-7200), "conditions": [{"type": "Ready", "status": "True"}]}}))
    .unwrap();
    sim.put(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "edge-0", "namespace": "shop",
        "labels": {"gateway.networking.k8s.io/gateway-name": "edge"}, "creationTimestamp": ts(-7200),
        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-rs", "uid": "r", "controller": true}]},
        "spec": {"nodeName": "hot-2", "containers": [{"name": "c", "resources": {"requests": {"cpu": "4"}}}]},
        "status": {"phase": "Running", "startTime": ts(-7200), "conditions": [{"type": "Ready", "status": "True"}]}}))
    .unwrap();
    let r = run(
        &kc,
        &[
            "--whitelist-configmap",
            "realload-system/absent",
            "--allow-missing-whitelist",
            "--dry-run",
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!evicted(&r).contains(&"ingress-0".to_string()));
    assert_eq!(
        skip_reason(&r, "ingress-0"),
        "protected (namespace ingress-nginx)"
    );
    assert_eq!(
        skip_reason(&r, "edge-0"),
        "protected (selector gateway.networking.k8s.io/gateway-name)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_state_configmap_a_real_run_evicts_nothing_and_exits_1() {
    let sim = cluster().await;
    let kc = kubeconfig(&sim, "nostate");
    let r = run(&kc, &["--state-configmap", "realload-system/absent"]).await;
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("realload-system/absent not found"),
        "{}",
        r.stderr
    );
    assert_eq!(
        r.report["error"].as_str().map(|e| e.contains("not found")),
        Some(true)
    );
    assert_eq!(eviction_posts(&sim), 0);
    // a dry run still shows the plan
    let r = run(
        &kc,
        &["--state-configmap", "realload-system/absent", "--dry-run"],
    )
    .await;
    assert_eq!((r.code, evicted(&r).len()), (0, 2), "{}", r.stderr);
}

#[test]
fn usage_errors_and_a_missing_kubeconfig_are_bad_input_exit_1() {
    let run = |args: &[&str], kubeconfig: &str| {
        let out = std::process::Command::new(BIN)
            .args(args)
            .env("KUBECONFIG", kubeconfig)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run(&["--no-such-flag"], "/nonexistent/kubeconfig");
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("--no-such-flag"), "{err}");
    let (code, err) = run(&["--now", "yesterday"], "/nonexistent/kubeconfig");
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("RFC 3339"), "{err}");
    let (code, err) = run(&["--dry-run"], "/nonexistent/kubeconfig");
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("Kubernetes configuration"), "{err}");
    let (code, _) = run(&["--help"], "/nonexistent/kubeconfig");
    assert_eq!(code, Some(0));
    let (code, _) = run(&["--version"], "/nonexistent/kubeconfig");
    assert_eq!(code, Some(0));
}

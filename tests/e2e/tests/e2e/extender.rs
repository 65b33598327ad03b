//! The extender under the real kube-scheduler, configured from the project's own
//! `deploy/scheduler/kube-scheduler-config.yaml`.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::SignedDuration;
use realload_e2e::objects::{self, FakeNode, create_node, pod, readings};
use realload_e2e::procs::{Extender, Scheduler};
use realload_e2e::{cluster, unique};

const CONFIG: &str = "deploy/scheduler/kube-scheduler-config.yaml";

/// Three cool nodes, two hot ones, and one each reporting 0, stale and without readings. The hot
/// and unknown nodes are larger, so that kube-scheduler alone (LeastAllocated) would prefer them.
fn incident_nodes(group: &str) -> Vec<FakeNode> {
    let fresh = SignedDuration::from_secs(20);
    let n = |suffix: &str| format!("{group}-{suffix}");
    vec![
        FakeNode::new(n("cool-1")).readings(readings(0.20, fresh)),
        FakeNode::new(n("cool-2")).readings(readings(0.20, fresh)),
        FakeNode::new(n("cool-3")).readings(readings(0.20, fresh)),
        FakeNode::new(n("hot-1"))
            .cpu("32")
            .readings(readings(0.95, fresh)),
        FakeNode::new(n("hot-2"))
            .cpu("32")
            .readings(readings(0.95, fresh)),
        FakeNode::new(n("zero"))
            .cpu("32")
            .readings(readings(0.0, fresh)),
        FakeNode::new(n("stale"))
            .cpu("32")
            .readings(readings(0.20, SignedDuration::from_mins(20))),
        FakeNode::new(n("missing")).cpu("32"),
    ]
}

fn count(per_node: &BTreeMap<String, usize>, node: &str) -> usize {
    per_node.get(node).copied().unwrap_or(0)
}

fn set_mode(cache: bool) -> impl FnOnce(&mut serde_yaml::Value) {
    move |c| {
        c["extenders"][0]["nodeCacheCapable"] = cache.into();
    }
}

async fn incident(cache: bool) {
    let c = cluster();
    let client = c.client().await;
    let group = unique(if cache { "inc-cache" } else { "inc-nocache" });
    let ns = objects::namespace(&client, &group).await;
    for n in incident_nodes(&group) {
        create_node(&client, &group, &n).await;
    }
    let ext = Extender::start(c, &c.kubeconfig, None, &[]);
    ext.wait_ready().await;
    let sched = Scheduler::start(
        c,
        CONFIG,
        &group,
        &format!("http://127.0.0.1:{}/scheduler", ext.port),
        set_mode(cache),
    );
    let node = |s: &str| format!("{group}-{s}");

    // While the cool nodes have room, hot and unknown nodes get nothing.
    objects::create_pods(&client, &ns, "steady", 12, |name| {
        pod(name, &group, &group, "500m")
    })
    .await;
    let placed = objects::wait_bound(&client, &ns, 12, Duration::from_secs(60)).await;
    let per = objects::per_node(&placed);
    assert_eq!(
        placed.values().flatten().count(),
        12,
        "every pod bound: {placed:?}\nscheduler log:\n{}",
        sched.log_text()
    );
    for s in ["hot-1", "hot-2", "zero", "stale", "missing"] {
        assert_eq!(count(&per, &node(s)), 0, "{s} got a pod: {per:?}");
    }
    assert!(
        ext.requests("filter").await >= 12 && ext.requests("prioritize").await >= 12,
        "kube-scheduler called the extender"
    );

    // A burst of 90: the hot-spot estimate fills the cool nodes, then only unknown nodes are
    // left; each takes at most the cap (2), the rest waits.
    objects::create_pods(&client, &ns, "burst", 90, |name| {
        pod(name, &group, &group, "1")
    })
    .await;
    let placed = objects::wait_settled(
        &client,
        &ns,
        Duration::from_secs(8),
        Duration::from_secs(120),
    )
    .await;
    let per = objects::per_node(&placed);
    eprintln!("{group}: after the burst {per:?}");
    for s in ["hot-1", "hot-2"] {
        assert_eq!(count(&per, &node(s)), 0, "{s}: {per:?}");
    }
    for s in ["zero", "stale", "missing"] {
        assert!(
            count(&per, &node(s)) <= 2,
            "{s} took more than the cap: {per:?}"
        );
    }
    let waiting = placed.values().filter(|n| n.is_none()).count();
    assert!(
        waiting > 0,
        "with only unknown nodes left, pods wait: {per:?}"
    );
    let debug = ext.debug().await;
    assert_eq!(
        debug["recentBreakerTrips"], 0,
        "the filter did not trip the breaker"
    );
    sched_events_name_the_wait(&client, &ns).await;
    drop(sched);
    drop(ext);
    objects::cleanup(&client, &ns, &group).await;
}

/// A waiting pod's FailedScheduling event carries realload's message.
async fn sched_events_name_the_wait(client: &kube::Client, ns: &str) {
    use k8s_openapi::api::core::v1::Event;
    use kube::api::{Api, ListParams};
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let list = events
            .list(&ListParams::default().fields("reason=FailedScheduling"))
            .await
            .unwrap();
        if list.items.iter().any(|e| {
            e.message
                .as_deref()
                .is_some_and(|m| m.contains("node load unknown"))
        }) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no FailedScheduling event names realload's reason: {:?}",
            list.items
                .iter()
                .map(|e| e.message.clone())
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kubernetes control plane: tests/run.sh"]
async fn cache_mode_keeps_pods_off_hot_and_unknown_nodes_and_caps_a_burst() {
    incident(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kubernetes control plane: tests/run.sh"]
async fn node_objects_mode_keeps_pods_off_hot_and_unknown_nodes_and_caps_a_burst() {
    incident(false).await;
}

/// A namespace and `nodes` in a fresh group.
async fn group_with(prefix: &str, nodes: &[FakeNode]) -> (kube::Client, String, String) {
    let c = cluster();
    let client = c.client().await;
    let group = unique(prefix);
    let ns = objects::namespace(&client, &group).await;
    for n in nodes {
        let mut n = n.clone();
        n.name = format!("{group}-{}", n.name);
        create_node(&client, &group, &n).await;
    }
    (client, ns, group)
}

fn fresh(cpu: f64) -> BTreeMap<String, String> {
    readings(cpu, SignedDuration::from_secs(20))
}

/// `count` pods of `cpu` each, created at once onto `nodes` in a fresh group, scheduled by the
/// real kube-scheduler with the extender; pods bound per node (every pod must bind).
async fn burst_onto(
    prefix: &str,
    nodes: &[FakeNode],
    count: usize,
    cpu: &str,
) -> BTreeMap<String, usize> {
    let (client, ns, group) = group_with(prefix, nodes).await;
    let c = cluster();
    let ext = Extender::start(c, &c.kubeconfig, None, &[]);
    ext.wait_ready().await;
    let _sched = Scheduler::start(
        c,
        CONFIG,
        &group,
        &format!("http://127.0.0.1:{}/scheduler", ext.port),
        |_| {},
    );
    objects::create_pods(&client, &ns, "p", count, |name| {
        pod(name, &group, &group, cpu)
    })
    .await;
    let placed = objects::wait_bound(&client, &ns, count, Duration::from_secs(60)).await;
    let per = objects::per_node(&placed);
    eprintln!("{group}: {per:?}");
    assert_eq!(placed.values().flatten().count(), count, "{per:?}");
    objects::cleanup(&client, &ns, &group).await;
    per
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kubernetes control plane: tests/run.sh"]
async fn a_forty_pod_burst_spreads_over_equally_cool_nodes() {
    let nodes: Vec<FakeNode> = (1..=4)
        .map(|i| {
            FakeNode::new(format!("cool-{i}"))
                .cpu("16")
                .readings(fresh(0.20))
        })
        .collect();
    let per = burst_onto("spread", &nodes, 40, "250m").await;
    assert_eq!(per.len(), 4, "every node took some: {per:?}");
    assert!(
        per.values().all(|n| *n <= 20),
        "no node took half of the burst: {per:?}"
    );
}

/// kube-scheduler scores a burst faster than the first binding comes back through the watch:
/// without a reservation on the node realload ranked best, one point of realload's score (worth
/// 50 of kube-scheduler's at weight 5) sent every pod to the coolest node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kubernetes control plane: tests/run.sh"]
async fn a_ten_pod_burst_spreads_before_any_binding_is_seen() {
    let nodes: Vec<FakeNode> = [("a", 0.10), ("b", 0.25), ("c", 0.25)]
        .into_iter()
        .map(|(name, cpu)| FakeNode::new(name).cpu("16").readings(fresh(cpu)))
        .collect();
    let per = burst_onto("burst10", &nodes, 10, "1").await;
    assert!(
        per.values().all(|n| *n <= 5),
        "no node took more than half of the burst: {per:?}"
    );
    assert!(per.len() >= 2, "the burst spread: {per:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kubernetes control plane: tests/run.sh"]
async fn an_extender_killed_mid_burst_leaves_no_pod_unbound_and_is_used_again_after_restart() {
    let nodes = vec![
        FakeNode::new("cool-1").cpu("16").readings(fresh(0.20)),
        FakeNode::new("cool-2").cpu("16").readings(fresh(0.20)),
        FakeNode::new("hot").cpu("64").readings(fresh(0.95)),
    ];
    let (client, ns, group) = group_with("kill", &nodes).await;
    let c = cluster();
    let ext = Extender::start(c, &c.kubeconfig, None, &[]);
    ext.wait_ready().await;
    let port = ext.port;
    let sched = Scheduler::start(
        c,
        CONFIG,
        &group,
        &format!("http://127.0.0.1:{port}/scheduler"),
        |_| {},
    );
    // a burst arriving over three seconds; the extender dies a third of the way in
    let creator = {
        let (client, ns, group) = (client.clone(), ns.clone(), group.clone());
        tokio::spawn(async move {
            for i in 0..30 {
                objects::create_pods(&client, &ns, &format!("a{i}"), 1, |name| {
                    pod(name, &group, &group, "100m")
                })
                .await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    objects::wait_bound(&client, &ns, 10, Duration::from_secs(60)).await;
    ext.signal("KILL");
    drop(ext);
    creator.await.unwrap();
    // ignorable: true: scheduling goes on without the extender
    let placed = objects::wait_bound(&client, &ns, 30, Duration::from_secs(90)).await;
    assert_eq!(
        placed.values().flatten().count(),
        30,
        "pods left unbound after the extender died: {placed:?}\n{}",
        sched.log_text()
    );
    assert!(
        sched.log_text().contains("Skipping extender"),
        "kube-scheduler skipped the dead extender"
    );
    // restarted on the same address, it is called again and steers again
    let ext = Extender::start(c, &c.kubeconfig, Some(port), &[]);
    ext.wait_ready().await;
    objects::create_pods(&client, &ns, "b", 6, |name| {
        pod(name, &group, &group, "100m")
    })
    .await;
    let placed = objects::wait_bound(&client, &ns, 36, Duration::from_secs(60)).await;
    let after: Vec<&Option<String>> = placed
        .iter()
        .filter(|(name, _)| name.starts_with("b-"))
        .map(|(_, node)| node)
        .collect();
    assert_eq!(
        after.iter().filter(|n| n.is_some()).count(),
        6,
        "{placed:?}"
    );
    assert!(
        after
            .iter()
            .all(|n| n.as_deref() != Some(format!("{group}-hot").as_str())),
        "after the restart the hot node is avoided again: {placed:?}"
    );
    assert!(
        ext.requests("filter").await >= 6,
        "the restarted extender was called"
    );
    objects::cleanup(&client, &ns, &group).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kubernetes control plane: tests/run.sh"]
async fn the_bind_overlay_binds_through_the_extender_and_counts_each_pod_at_once() {
    let nodes = vec![
        FakeNode::new("cool-1").readings(fresh(0.20)),
        FakeNode::new("cool-2").readings(fresh(0.20)),
        FakeNode::new("hot").cpu("64").readings(fresh(0.95)),
    ];
    let (client, ns, group) = group_with("bind", &nodes).await;
    let c = cluster();
    // the bind overlay adds --bind to the extender; its scheduler wiring adds bindVerb
    let patch = std::fs::read_to_string(
        realload_e2e::workspace().join("deploy/overlays/bind/extender-bind-patch.yaml"),
    )
    .unwrap();
    assert!(patch.contains("--bind"));
    let ext = Extender::start(c, &c.kubeconfig, None, &["--bind"]);
    ext.wait_ready().await;
    let _sched = Scheduler::start(
        c,
        CONFIG,
        &group,
        &format!("http://127.0.0.1:{}/scheduler", ext.port),
        |cfg| {
            cfg["extenders"][0]["bindVerb"] = "bind".into();
        },
    );
    objects::create_pods(&client, &ns, "p", 8, |name| pod(name, &group, &group, "1")).await;
    let placed = objects::wait_bound(&client, &ns, 8, Duration::from_secs(60)).await;
    let per = objects::per_node(&placed);
    assert_eq!(
        placed.values().flatten().count(),
        8,
        "{placed:?}\n{}",
        ext.log_text()
    );
    assert_eq!(per.get(&format!("{group}-hot")), None, "{per:?}");
    let metrics = ext.metrics().await;
    assert!(
        metrics.contains("realload_extender_requests_total{verb=\"bind\",outcome=\"ok\"} 8"),
        "the extender made all 8 Bindings:\n{metrics}"
    );
    objects::cleanup(&client, &ns, &group).await;
}

/// The PKI files of a TLS test, in `dir`.
struct PkiFiles {
    dir: std::path::PathBuf,
}

fn pki(dir: &std::path::Path) -> PkiFiles {
    realload_test_support::Pki::generate().write(dir);
    PkiFiles {
        dir: dir.to_path_buf(),
    }
}

impl PkiFiles {
    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kubernetes control plane: tests/run.sh"]
async fn tls_with_client_certificates_through_the_schedulers_tls_config() {
    let nodes = vec![
        FakeNode::new("cool").readings(fresh(0.20)),
        FakeNode::new("hot").cpu("64").readings(fresh(0.95)),
    ];
    let (client, ns, group) = group_with("tls", &nodes).await;
    let c = cluster();
    let pki = pki(&c.dir.join(format!("pki-{group}")));
    // what the TLS overlay passes, with the Secret's files here
    let ext = Extender::start(
        c,
        &c.kubeconfig,
        None,
        &[
            "--tls-cert",
            &pki.path("tls.crt"),
            "--tls-key",
            &pki.path("tls.key"),
            "--client-ca",
            &pki.path("ca.crt"),
        ],
    );
    // probes and metrics answer on the admin port without a client certificate
    ext.wait_ready().await;
    let (ca, cert, key) = (
        pki.path("ca.crt"),
        pki.path("client.crt"),
        pki.path("client.key"),
    );
    let sched = Scheduler::start(
        c,
        CONFIG,
        &group,
        &format!("https://127.0.0.1:{}/scheduler", ext.port),
        move |cfg| {
            let e = &mut cfg["extenders"][0];
            e["enableHTTPS"] = true.into();
            e["tlsConfig"] = serde_yaml::to_value(
                serde_json::json!({"caFile": ca, "certFile": cert, "keyFile": key}),
            )
            .unwrap();
        },
    );
    objects::create_pods(&client, &ns, "p", 4, |name| {
        pod(name, &group, &group, "500m")
    })
    .await;
    let placed = objects::wait_bound(&client, &ns, 4, Duration::from_secs(60)).await;
    let per = objects::per_node(&placed);
    assert_eq!(
        placed.values().flatten().count(),
        4,
        "{placed:?}\n{}",
        sched.log_text()
    );
    assert_eq!(per.get(&format!("{group}-cool")), Some(&4), "{per:?}");
    assert!(
        ext.requests("filter").await >= 4,
        "kube-scheduler called over TLS"
    );
    objects::cleanup(&client, &ns, &group).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kubernetes control plane: tests/run.sh"]
async fn sigterm_keeps_answering_through_the_drain_period() {
    let nodes = vec![
        FakeNode::new("cool-1").readings(fresh(0.20)),
        FakeNode::new("cool-2").readings(fresh(0.20)),
        FakeNode::new("hot").cpu("64").readings(fresh(0.95)),
        FakeNode::new("zero").cpu("64").readings(fresh(0.0)),
    ];
    let (client, ns, group) = group_with("drain", &nodes).await;
    let c = cluster();
    let ext = Extender::start(c, &c.kubeconfig, None, &["--drain-period", "6s"]);
    ext.wait_ready().await;
    let _sched = Scheduler::start(
        c,
        CONFIG,
        &group,
        &format!("http://127.0.0.1:{}/scheduler", ext.port),
        |_| {},
    );
    // a rollout: SIGTERM, and pods keep arriving
    ext.signal("TERM");
    let started = tokio::time::Instant::now();
    objects::create_pods(&client, &ns, "p", 10, |name| {
        pod(name, &group, &group, "200m")
    })
    .await;
    let placed = objects::wait_bound(&client, &ns, 10, Duration::from_secs(5)).await;
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "placed within the drain period"
    );
    let per = objects::per_node(&placed);
    assert_eq!(placed.values().flatten().count(), 10, "{per:?}");
    for s in ["hot", "zero"] {
        assert_eq!(
            per.get(&format!("{group}-{s}")),
            None,
            "{s} got pods during the drain: {per:?}"
        );
    }
    // unready at once (the Service stops routing), and the process exits after the drain
    assert!(matches!(
        realload_e2e::procs::http(ext.admin, "GET", "/readyz", "").await,
        Some((503, _)) | None
    ));
    objects::cleanup(&client, &ns, &group).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kubernetes control plane: tests/run.sh"]
async fn the_second_scheduler_overlay_loads_and_schedules_its_pods() {
    use realload_e2e::deploy;
    let nodes = vec![
        FakeNode::new("cool").readings(fresh(0.20)),
        FakeNode::new("hot").cpu("64").readings(fresh(0.95)),
    ];
    let (client, ns, group) = group_with("second", &nodes).await;
    let c = cluster();
    // the overlay's ServiceAccount and RBAC, as `kubectl apply -k` would create them
    deploy::apply_all(
        &client,
        &deploy::render("second-scheduler"),
        deploy::is_access,
    )
    .await;
    let token = deploy::token(&client, "realload-system", "realload-scheduler").await;
    let kubeconfig = c.token_kubeconfig("realload-scheduler", &token);
    let ext = Extender::start(c, &c.kubeconfig, None, &[]);
    ext.wait_ready().await;
    let original: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(
            realload_e2e::workspace()
                .join("deploy/overlays/second-scheduler/scheduler-config.yaml"),
        )
        .unwrap(),
    )
    .unwrap();
    let kc = kubeconfig.display().to_string();
    let sched = Scheduler::start(
        c,
        "deploy/overlays/second-scheduler/scheduler-config.yaml",
        "realload-scheduler",
        &format!("http://127.0.0.1:{}/scheduler", ext.port),
        move |cfg| {
            // its own leader election, as shipped, as its own ServiceAccount
            cfg["leaderElection"] = original["leaderElection"].clone();
            cfg["clientConnection"]["kubeconfig"] = kc.into();
        },
    );
    objects::create_pods(&client, &ns, "p", 3, |name| {
        pod(name, "realload-scheduler", &group, "500m")
    })
    .await;
    let placed = objects::wait_bound(&client, &ns, 3, Duration::from_secs(90)).await;
    let per = objects::per_node(&placed);
    assert_eq!(
        placed.values().flatten().count(),
        3,
        "{placed:?}\n{}",
        sched.log_text()
    );
    assert_eq!(per.get(&format!("{group}-cool")), Some(&3), "{per:?}");
    assert!(ext.requests("filter").await >= 3);
    let lease: kube::Api<k8s_openapi::api::coordination::v1::Lease> =
        kube::Api::namespaced(client.clone(), "realload-system");
    assert!(
        lease.get("realload-scheduler").await.is_ok(),
        "it leads through its own Lease"
    );
    objects::cleanup(&client, &ns, &group).await;
}

/// The learned usage table on a real API server: the extender watches its one ConfigMap (a
/// field selector on the name), uses it at once, and goes back to the factors when it is deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kubernetes control plane: tests/run.sh"]
async fn learned_usage_from_its_config_map_changes_what_passes() {
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::{Api, DeleteParams, PostParams};
    use serde_json::{Value, json};
    let nodes = [
        FakeNode::new("a").cpu("8").readings(fresh(0.50)),
        FakeNode::new("b").cpu("8").readings(fresh(0.30)),
    ];
    let (client, ns, group) = group_with("usage", &nodes).await;
    let c = cluster();
    // its own ConfigMap, in the test's namespace: the collector tests publish the default one in
    // this shared cluster
    let config_map = format!("{group}-usage");
    let policy = c.dir.join(format!("{group}-policy.yaml"));
    std::fs::write(
        &policy,
        format!("workloadUsage: {{configMap: {config_map}}}\n"),
    )
    .unwrap();
    let ext = Extender::start(
        c,
        &c.kubeconfig,
        None,
        &["--policy", policy.to_str().unwrap(), "--namespace", &ns],
    );
    ext.wait_ready().await;
    let (a, b) = (format!("{group}-a"), format!("{group}-b"));
    // a 4-core replica of the Deployment `api` in the test's namespace
    let body = json!({"Pod": {"metadata": {"name": "api-h1-x", "namespace": ns, "uid": format!("{group}-uid"),
            "labels": {"pod-template-hash": "h1"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "api-h1", "uid": "rs", "controller": true}]},
          "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "4"}}}]}},
        "Nodes": null, "NodeNames": [a, b]})
    .to_string();
    let passing = || async {
        let (status, answer) =
            realload_e2e::procs::http(ext.port, "POST", "/scheduler/filter", &body)
                .await
                .unwrap();
        assert_eq!(status, 200, "{answer}");
        serde_json::from_str::<Value>(&answer).unwrap()["NodeNames"].clone()
    };
    // requests × 0.85: 4 cores add 0.425 to an 8-core node, so "a" (0.50) goes over 0.85
    assert_eq!(passing().await, json!([b]), "{}", ext.log_text());

    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let table = json!({"updated": jiff::Timestamp::now().to_string(),
        "workloads": {format!("{ns}/Deployment/api"): {"cpu": 0.2, "pods": 3}}});
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": config_map},
        "data": {"usage.json": table.to_string()}}))
    .unwrap();
    cms.create(&PostParams::default(), &cm).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while passing().await != json!([a, b]) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the learned share (4 cores × 0.2 = +0.10) never let the pod onto a: {}",
            ext.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, debug) = realload_e2e::procs::http(ext.admin, "GET", "/debug/nodes", "")
        .await
        .unwrap();
    let debug: Value = serde_json::from_str(&debug).unwrap();
    assert_eq!(debug["workloadUsage"]["workloads"], 1, "{debug}");
    assert_eq!(debug["workloadUsage"]["current"], true, "{debug}");

    cms.delete(&config_map, &DeleteParams::default())
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while passing().await != json!([b]) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the factors never applied again after the ConfigMap was deleted"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(ext);
    objects::cleanup(&client, &ns, &group).await;
}

//! The collector writing to the real API server: real Prometheus and node-exporter, the
//! deadband, two replicas electing a leader on a real Lease and handing over on SIGTERM, and a
//! scripted Prometheus for samples that must never be written.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::api::Api;
use realload_e2e::objects::{self, FakeNode, create_node, reading};
use realload_e2e::procs::{realload_binary, run};
use realload_e2e::{cluster, unique};
use realload_test_support::monitoring::{start_node_exporter, start_prometheus, wait_for_data};
use realload_test_support::{KillOnDrop, free_port, scripted_prometheus};

/// Every metric collected every 5 s (max age 70 s), with a floor an idle machine stays above.
const FAST_POLICY: &str = "nodeIdentity: {matchBy: [name]}\nmetrics:\n- {name: cpu-avg-5m, period: 5s, floor: 0.000001}\n- {name: cpu-max-1h, period: 5s, floor: 0.000001}\n- {name: mem-avg-5m, period: 5s}\n- {name: cpu-sustained-10m, period: 5s, floor: 0.000001}\n";

async fn annotations(client: &kube::Client, node: &str) -> BTreeMap<String, String> {
    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .get(node)
        .await
        .unwrap()
        .metadata
        .annotations
        .unwrap_or_default()
}

fn sampled_at(value: &str) -> Timestamp {
    value.split_once(',').unwrap().1.parse().unwrap()
}

struct Collector {
    child: KillOnDrop,
    admin: u16,
}

fn start_collector(
    kubeconfig: &std::path::Path,
    prometheus: u16,
    policy: &std::path::Path,
    ns: &str,
    identity: &str,
    log: &std::path::Path,
) -> Collector {
    let admin = free_port();
    let child = Command::new(realload_binary("realload-extender"))
        .args([
            "collect",
            "--prometheus-url",
            &format!("http://127.0.0.1:{prometheus}"),
            "--policy",
            policy.to_str().unwrap(),
            "--lease-namespace",
            ns,
            "--lease-name",
            "collector",
            "--lease-duration",
            "6s",
            "--identity",
            identity,
            "--admin-listen",
            &format!("127.0.0.1:{admin}"),
        ])
        .env("KUBECONFIG", kubeconfig)
        .env("REALLOAD_LOG", "info,kube=warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    Collector {
        child: KillOnDrop(child),
        admin,
    }
}

async fn counter(admin: u16, name: &str) -> f64 {
    let text = realload_e2e::procs::http(admin, "GET", "/metrics", "")
        .await
        .map(|(_, b)| b)
        .unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn holder(client: &kube::Client, ns: &str) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), ns);
    leases
        .get_opt("collector")
        .await
        .ok()
        .flatten()?
        .spec?
        .holder_identity
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kubernetes control plane: tests/run.sh"]
async fn real_prometheus_readings_reach_the_api_with_a_deadband_and_a_lease_handover() {
    let c = cluster();
    let client = c.client().await;
    let group = unique("collect");
    let ns = objects::namespace(&client, &group).await;
    let node = format!("{group}-n1");
    create_node(&client, &group, &FakeNode::new(node.clone())).await;
    let dir = c.dir.join(&group);
    std::fs::create_dir_all(&dir).unwrap();
    let (_exporter, exporter_port) = start_node_exporter();
    // the series carry the node's name as `instance`
    let (_prometheus, prometheus_port) = start_prometheus(&dir, &[(exporter_port, Some(&node))]);
    wait_for_data(prometheus_port).await;
    let policy = dir.join("policy.yaml");
    std::fs::write(&policy, FAST_POLICY).unwrap();
    let a = start_collector(
        &c.kubeconfig,
        prometheus_port,
        &policy,
        &ns,
        "collector-a",
        &dir.join("a.log"),
    );
    let b = start_collector(
        &c.kubeconfig,
        prometheus_port,
        &policy,
        &ns,
        "collector-b",
        &dir.join("b.log"),
    );

    // all four readings written, in the contract's format, sampled now
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let written = loop {
        let ann = annotations(&client, &node).await;
        if ann.keys().filter(|k| k.starts_with("realload.io/")).count() == 4 {
            break ann;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "readings never written: {ann:?}\n{}",
            std::fs::read_to_string(dir.join("a.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    for (k, v) in written
        .iter()
        .filter(|(k, _)| k.starts_with("realload.io/"))
    {
        let ratio: f64 = v.split_once(',').unwrap().0.parse().unwrap();
        assert!((0.0..=1.0).contains(&ratio), "{k}={v}");
        let age = Timestamp::now().duration_since(sampled_at(v));
        assert!(age < SignedDuration::from_secs(60), "{k}={v}");
    }
    // exactly one writes
    let leader = holder(&client, &ns).await.expect("a Lease holder");
    let (leading, standby) = if leader == "collector-a" {
        (a, b)
    } else {
        (b, a)
    };
    assert_eq!(
        counter(standby.admin, "realload_collector_patches_total").await,
        0.0,
        "the standby never writes"
    );
    // the deadband: steady readings are not rewritten every cycle
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    while counter(leading.admin, "realload_collector_writes_suppressed_total").await == 0.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "nothing was ever suppressed by the deadband"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // SIGTERM: the leader releases the Lease and the standby takes over at once
    let before = sampled_at(&annotations(&client, &node).await["realload.io/mem-avg-5m"]);
    let signalled = tokio::time::Instant::now();
    Command::new("kill")
        .args(["-TERM", &leading.child.id().to_string()])
        .status()
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if holder(&client, &ns).await.is_some_and(|h| h != leader) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the standby never took over"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let handover = signalled.elapsed();
    eprintln!("{group}: Lease handover in {handover:?}");
    assert!(
        handover < Duration::from_secs(6),
        "faster than the lease duration: {handover:?}"
    );
    // and keeps the readings fresh (heartbeat before max age)
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let now = sampled_at(&annotations(&client, &node).await["realload.io/mem-avg-5m"]);
        if now > before {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new leader never wrote"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    drop(standby);
    objects::cleanup(&client, &ns, &group).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kubernetes control plane: tests/run.sh"]
async fn samples_that_would_not_be_valid_are_never_written_over_good_readings() {
    let c = cluster();
    let client = c.client().await;
    let group = unique("stale");
    let ns = objects::namespace(&client, &group).await;
    let name = |s: &str| format!("{group}-{s}");
    let fresh: BTreeMap<String, String> = [
        "cpu-avg-5m",
        "cpu-max-1h",
        "mem-avg-5m",
        "cpu-sustained-10m",
    ]
    .iter()
    .map(|m| {
        (
            format!("realload.io/{m}"),
            reading(0.4, SignedDuration::from_secs(10)),
        )
    })
    .collect();
    for n in ["old", "future", "good"] {
        create_node(
            &client,
            &group,
            &FakeNode::new(name(n)).readings(fresh.clone()),
        )
        .await;
    }
    let now = Timestamp::now().as_second() as f64;
    let prometheus = scripted_prometheus(vec![
        (name("old"), now - 9.0 * 86_400.0, "0.9".into()),
        (name("future"), now + 365.0 * 86_400.0, "0.9".into()),
        (name("good"), now - 5.0, "0.5".into()),
    ])
    .await;
    let before_old = annotations(&client, &name("old")).await;
    let before_future = annotations(&client, &name("future")).await;
    let policy = c.dir.join(format!("{group}-policy.yaml"));
    std::fs::write(&policy, "nodeIdentity: {matchBy: [name]}\n").unwrap();
    let once = || async {
        run(
            "realload-extender",
            &c.kubeconfig,
            &[
                "collect",
                "--once",
                "--prometheus-url",
                &format!("http://127.0.0.1:{prometheus}"),
                "--policy",
                policy.to_str().unwrap(),
                "--output",
                "json",
            ],
        )
        .await
    };
    let out = once().await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let report = out.json();
    let reason = |node: &str| -> Vec<String> {
        report["skipped"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["node"] == node)
            .map(|s| s["reason"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(
        reason(&name("old")).iter().all(|r| r == "stale") && reason(&name("old")).len() == 4,
        "{report}"
    );
    assert!(
        reason(&name("future")).iter().all(|r| r == "in-future")
            && reason(&name("future")).len() == 4,
        "{report}"
    );
    // the fresher readings already there are untouched
    assert_eq!(annotations(&client, &name("old")).await, before_old);
    assert_eq!(annotations(&client, &name("future")).await, before_future);
    let good = annotations(&client, &name("good")).await;
    assert!(
        good["realload.io/cpu-avg-5m"].starts_with("0.5000,"),
        "{good:?}"
    );
    // a second cycle writes nothing again for them (no rewrite loop)
    let out = once().await;
    let report = out.json();
    let patched: Vec<&str> = report["patches"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["node"].as_str())
        .collect();
    assert!(
        !patched.iter().any(|n| n.starts_with(&group)),
        "nothing rewritten: {report}"
    );

    objects::cleanup(&client, &ns, &group).await;
}

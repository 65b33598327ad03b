//! `realload-extender collect` against real Prometheus and node-exporter (Debian packages, started
//! here on free loopback ports), against a scripted Prometheus for every untrusted case, and
//! against the API simulator for writes and leader election.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers may panic

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::{Query, State};
use realload_apisim::{ApiSim, resources};
use realload_test_support::monitoring::{self, start_node_exporter};
use realload_test_support::{KillOnDrop, free_port, temp_dir};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_realload-extender");

fn start_prometheus(dir: &Path, exporter_port: u16) -> (KillOnDrop, u16) {
    monitoring::start_prometheus(dir, &[(exporter_port, None)])
}

async fn wait_for_data(prometheus_port: u16) {
    monitoring::wait_for_data(prometheus_port).await;
}

/// The default policy with a tiny plausibility floor: an idle CI machine may really be below
/// 0.5% CPU, and this test is about the plumbing, not the floor (tested elsewhere).
const LOW_FLOOR_POLICY: &str = "metrics:\n- {name: cpu-avg-5m, floor: 0.000001}\n- {name: cpu-max-1h, floor: 0.000001}\n- {name: mem-avg-5m}\n- {name: cpu-sustained-10m, floor: 0.000001}\n";

fn node(name: &str, ip: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "annotations": {"keep.example.com/owner": "ops"}},
           "status": {"addresses": [{"type": "InternalIP", "address": ip}], "allocatable": {"cpu": "8", "memory": "32Gi"}}})
}

fn run_collect(args: &[&str], kubeconfig: Option<&Path>) -> (bool, String, String) {
    let mut cmd = Command::new(BIN);
    cmd.arg("collect")
        .args(args)
        .env_remove("KUBECONFIG")
        .env("REALLOAD_LOG", "warn");
    if let Some(k) = kubeconfig {
        cmd.env("KUBECONFIG", k);
    }
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn assert_reading(value: &str) {
    let (ratio, ts) = value.split_once(',').unwrap();
    let ratio: f64 = ratio.parse().unwrap();
    assert!(ratio > 0.0 && ratio <= 1.0, "{value}");
    let sampled: jiff::Timestamp = ts.parse().unwrap();
    let age = jiff::Timestamp::now().duration_since(sampled);
    assert!(
        age < jiff::SignedDuration::from_mins(2) && age > -jiff::SignedDuration::from_secs(5),
        "{value}"
    );
    assert!(ts.ends_with('Z'));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_prometheus_and_node_exporter_end_to_end() {
    let dir = temp_dir("collect", "real");
    let (_exporter, exporter_port) = start_node_exporter();
    let (_prom, prom_port) = start_prometheus(&dir, exporter_port);
    wait_for_data(prom_port).await;
    let policy = dir.join("policy.yaml");
    std::fs::write(&policy, LOW_FLOOR_POLICY).unwrap();
    let url = format!("http://127.0.0.1:{prom_port}");

    // against the API simulator: the node is matched by InternalIP (instance=127.0.0.1:port)
    let sim = ApiSim::start().await.unwrap();
    sim.put(node("node-1", "127.0.0.1")).unwrap();
    sim.put(node("node-2", "10.9.9.9")).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig).unwrap();
    let (ok, stdout, stderr) = run_collect(
        &[
            "--once",
            "--prometheus-url",
            &url,
            "--policy",
            policy.to_str().unwrap(),
            "--output",
            "json",
        ],
        Some(&kubeconfig),
    );
    assert!(ok, "{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    let n1 = sim.get(resources::NODES, "", "node-1").unwrap();
    let ann = n1["metadata"]["annotations"].as_object().unwrap();
    for key in [
        "realload.io/cpu-avg-5m",
        "realload.io/cpu-max-1h",
        "realload.io/mem-avg-5m",
        "realload.io/cpu-sustained-10m",
    ] {
        assert_reading(
            ann[key]
                .as_str()
                .unwrap_or_else(|| panic!("{key} missing: {ann:?}")),
        );
    }
    assert_eq!(
        ann["keep.example.com/owner"], "ops",
        "nothing else on the Node is touched"
    );
    // node-2 has no exporter: absent from every result, nothing written
    let n2 = sim.get(resources::NODES, "", "node-2").unwrap();
    assert_eq!(n2["metadata"]["annotations"].as_object().unwrap().len(), 1);
    let absent: Vec<&Value> = report["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["node"] == "node-2")
        .collect();
    assert_eq!(absent.len(), 4);
    assert!(absent.iter().all(|s| s["reason"] == "absent"));
    let patches: Vec<_> = sim
        .requests()
        .into_iter()
        .filter(|r| r.method == "PATCH")
        .collect();
    assert_eq!(patches.len(), 1, "one patch per node carrying all its keys");

    // snapshot mode prints the plan and writes nothing
    let snapshot = dir.join("snapshot.json");
    std::fs::write(
        &snapshot,
        json!({"kind": "List", "apiVersion": "v1", "items": [node("node-1", "127.0.0.1")]})
            .to_string(),
    )
    .unwrap();
    let (ok, stdout, stderr) = run_collect(
        &[
            "--once",
            "--snapshot",
            snapshot.to_str().unwrap(),
            "--prometheus-url",
            &url,
            "--dry-run",
            "--output",
            "json",
            "--policy",
            policy.to_str().unwrap(),
        ],
        None,
    );
    assert!(ok, "{stderr}");
    let plan: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(plan["patches"][0]["node"], "node-1");
    assert_eq!(
        plan["patches"][0]["annotations"].as_object().unwrap().len(),
        4
    );
    assert_eq!(plan["skipped"], json!([]));
    assert_eq!(
        plan.as_object().unwrap().len(),
        2,
        "exactly patches and skipped: {plan}"
    );

    // the direct node-exporter source, against the same exporter
    let sim2 = ApiSim::start().await.unwrap();
    sim2.put(node("node-1", "127.0.0.1")).unwrap();
    let kubeconfig2 = dir.join("kubeconfig2");
    sim2.write_kubeconfig(&kubeconfig2).unwrap();
    let port = exporter_port.to_string();
    let (ok, _, stderr) = run_collect(
        &[
            "--once",
            "--source",
            "node-exporter",
            "--node-exporter-port",
            &port,
            "--policy",
            policy.to_str().unwrap(),
        ],
        Some(&kubeconfig2),
    );
    assert!(ok, "{stderr}");
    let n1 = sim2.get(resources::NODES, "", "node-1").unwrap();
    let ann = n1["metadata"]["annotations"].as_object().unwrap();
    for key in ["realload.io/cpu-avg-5m", "realload.io/mem-avg-5m"] {
        assert_reading(
            ann[key]
                .as_str()
                .unwrap_or_else(|| panic!("{key} missing: {ann:?}")),
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A scripted Prometheus: answers `/api/v1/query` with a canned body (or status / delay).
#[derive(Clone)]
struct Script {
    status: u16,
    body: Value,
    delay: Duration,
    hits: Arc<AtomicUsize>,
}

async fn scripted(
    State(s): State<Script>,
    Query(_q): Query<Vec<(String, String)>>,
) -> (axum::http::StatusCode, String) {
    s.hits.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(s.delay).await;
    (
        axum::http::StatusCode::from_u16(s.status).unwrap(),
        s.body.to_string(),
    )
}

async fn start_scripted(
    status: u16,
    body: Value,
    delay: Duration,
) -> (SocketAddr, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let app = axum::Router::new()
        .route("/api/v1/query", axum::routing::get(scripted))
        .with_state(Script {
            status,
            body,
            delay,
            hits: hits.clone(),
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, hits)
}

fn vector(samples: &[(&str, &str)]) -> Value {
    let now = jiff::Timestamp::now().as_second();
    json!({"status": "success", "data": {"resultType": "vector", "result": samples.iter()
        .map(|(instance, v)| json!({"metric": {"instance": instance}, "value": [now, v]})).collect::<Vec<_>>()}})
}

const ONE_METRIC: &str = "metrics:\n- {name: cpu-avg-5m, query: scripted}\n- {name: cpu-sustained-10m, query: scripted, weight: 0}\n";

fn snapshot_of(dir: &Path, names: &[&str]) -> PathBuf {
    let items: Vec<Value> = names
        .iter()
        .enumerate()
        .map(|(i, n)| node(n, &format!("10.0.0.{i}")))
        .collect();
    let path = dir.join("snapshot.json");
    std::fs::write(
        &path,
        json!({"kind": "List", "apiVersion": "v1", "items": items}).to_string(),
    )
    .unwrap();
    path
}

fn dry_run(dir: &Path, snapshot: &Path, url: &str, extra: &[&str]) -> Value {
    let policy = dir.join("policy.yaml");
    std::fs::write(&policy, ONE_METRIC).unwrap();
    let mut args = vec![
        "--once",
        "--snapshot",
        snapshot.to_str().unwrap(),
        "--prometheus-url",
        url,
        "--dry-run",
        "--output",
        "json",
    ];
    let p = policy.to_str().unwrap().to_string();
    args.extend(["--policy", &p]);
    args.extend(extra);
    let (ok, stdout, stderr) = run_collect(&args, None);
    assert!(ok, "{stderr}");
    serde_json::from_str(&stdout).unwrap()
}

fn reasons(plan: &Value, metric: &str) -> std::collections::BTreeMap<String, String> {
    plan["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["metric"] == metric)
        .map(|s| {
            (
                s["node"].as_str().unwrap().to_string(),
                s["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_samples_are_never_written() {
    let dir = temp_dir("collect", "untrusted");
    let names = ["nan", "inf", "neg", "big", "zero", "dup", "gone", "ok"];
    let snapshot = snapshot_of(&dir, &names);
    let body = vector(&[
        ("nan", "NaN"),
        ("inf", "+Inf"),
        ("neg", "-0.2"),
        ("big", "1.5"),
        ("zero", "0"),
        ("dup:9100", "0.3"),
        ("10.0.0.5:9100", "0.31"),
        ("ok", "0.42"),
    ]);
    let (addr, _) = start_scripted(200, body, Duration::ZERO).await;
    let plan = dry_run(&dir, &snapshot, &format!("http://{addr}"), &[]);
    let r = reasons(&plan, "cpu-avg-5m");
    let want = [
        ("nan", "nan"),
        ("inf", "infinite"),
        ("neg", "negative"),
        ("big", "above-one"),
        ("zero", "suspect-zero"),
        ("dup", "ambiguous"),
        ("gone", "absent"),
    ];
    for (node, reason) in want {
        assert_eq!(
            r.get(node).map(String::as_str),
            Some(reason),
            "{node}: {plan}"
        );
    }
    assert!(!r.contains_key("ok"));
    let patched: Vec<&str> = plan["patches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["node"].as_str().unwrap())
        .collect();
    assert_eq!(patched, ["ok"]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_queries_write_nothing_and_say_why() {
    let dir = temp_dir("collect", "failed");
    let snapshot = snapshot_of(&dir, &["a", "b"]);
    // status: error (bad_data) is not retried
    let (addr, hits) = start_scripted(
        400,
        json!({"status": "error", "errorType": "bad_data", "error": "parse error"}),
        Duration::ZERO,
    )
    .await;
    let plan = dry_run(&dir, &snapshot, &format!("http://{addr}"), &[]);
    assert!(plan["patches"].as_array().unwrap().is_empty());
    assert!(
        reasons(&plan, "cpu-avg-5m")
            .values()
            .all(|r| r == "query-error")
    );
    assert_eq!(
        hits.load(Ordering::SeqCst),
        2,
        "one query per metric, no retry for bad_data"
    );
    // HTTP 503 is retried, then fails
    let (addr, hits) = start_scripted(
        503,
        json!({"status": "error", "errorType": "unavailable", "error": "busy"}),
        Duration::ZERO,
    )
    .await;
    let plan = dry_run(
        &dir,
        &snapshot,
        &format!("http://{addr}"),
        &["--query-attempts", "3"],
    );
    assert!(
        reasons(&plan, "cpu-avg-5m")
            .values()
            .all(|r| r == "query-error")
    );
    assert_eq!(hits.load(Ordering::SeqCst), 6, "three attempts per metric");
    // a timeout
    let (addr, _) = start_scripted(200, vector(&[("a", "0.5")]), Duration::from_secs(2)).await;
    let plan = dry_run(
        &dir,
        &snapshot,
        &format!("http://{addr}"),
        &["--query-timeout", "200ms", "--query-attempts", "1"],
    );
    assert!(
        reasons(&plan, "cpu-avg-5m")
            .values()
            .all(|r| r == "query-failed"),
        "{plan}"
    );
    // nobody listening
    let plan = dry_run(
        &dir,
        &snapshot,
        &format!("http://127.0.0.1:{}", free_port()),
        &["--query-attempts", "1"],
    );
    assert!(
        reasons(&plan, "cpu-avg-5m")
            .values()
            .all(|r| r == "query-failed")
    );
    assert!(plan["patches"].as_array().unwrap().is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_are_suppressed_within_the_deadband_and_renewed_before_going_stale() {
    let dir = temp_dir("collect", "deadband");
    let policy = dir.join("policy.yaml");
    std::fs::write(&policy, ONE_METRIC).unwrap();
    let sim = ApiSim::start().await.unwrap();
    sim.put(node("a", "10.0.0.1")).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig).unwrap();
    let (addr, _) = start_scripted(200, vector(&[("a", "0.50")]), Duration::ZERO).await;
    let url = format!("http://{addr}");
    let args = [
        "--once",
        "--prometheus-url",
        url.as_str(),
        "--policy",
        policy.to_str().unwrap(),
    ];
    let patches = |sim: &ApiSim| {
        sim.requests()
            .iter()
            .filter(|r| r.method == "PATCH")
            .count()
    };
    assert!(run_collect(&args, Some(&kubeconfig)).0);
    assert_eq!(patches(&sim), 1);
    // same value again: suppressed
    assert!(run_collect(&args, Some(&kubeconfig)).0);
    assert_eq!(patches(&sim), 1, "unchanged readings are not rewritten");
    // an old timestamp on the same value: it would go stale before the next cycle, so it is renewed
    let old = (jiff::Timestamp::now() - jiff::SignedDuration::from_secs(150))
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    sim.modify(resources::NODES, "", "a", |n| {
        n["metadata"]["annotations"]["realload.io/cpu-avg-5m"] = json!(format!("0.5000,{old}"));
        n["metadata"]["annotations"]["realload.io/cpu-sustained-10m"] =
            json!(format!("0.5000,{old}"));
    })
    .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(run_collect(&args, Some(&kubeconfig)).0);
    assert_eq!(patches(&sim), 2, "heartbeat write");
    let a = sim.get(resources::NODES, "", "a").unwrap();
    assert_eq!(
        a["metadata"]["annotations"]["keep.example.com/owner"],
        "ops"
    );
    let managers: Vec<String> = a["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["manager"].as_str().unwrap().to_string())
        .collect();
    assert!(
        managers.contains(&"realload-collector".to_string()),
        "{managers:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn spawn_collector(dir: &Path, kubeconfig: &Path, url: &str, identity: &str) -> (KillOnDrop, u16) {
    let policy = dir.join("fast-policy.yaml");
    std::fs::write(&policy, "metrics:\n- {name: cpu-avg-5m, query: scripted, period: 1s}\n- {name: cpu-sustained-10m, query: scripted, period: 1s}\ncollector: {deadband: 0}\n").unwrap();
    let admin = free_port();
    let child = Command::new(BIN)
        .args([
            "collect",
            "--prometheus-url",
            url,
            "--policy",
            policy.to_str().unwrap(),
            "--identity",
            identity,
        ])
        .args([
            "--lease-duration",
            "3s",
            "--lease-namespace",
            "realload-system",
            "--admin-listen",
            &format!("127.0.0.1:{admin}"),
        ])
        .env("KUBECONFIG", kubeconfig)
        .env("REALLOAD_LOG", "info,kube=warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join(format!("{identity}.log"))).unwrap())
        .spawn()
        .unwrap();
    (KillOnDrop(child), admin)
}

async fn is_leader(admin: u16) -> Option<bool> {
    let text = monitoring::scrape(admin).await?;
    let line = text
        .lines()
        .find(|l| l.starts_with("realload_collector_leader "))?;
    Some(line.trim_end().ends_with(" 1"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_collectors_one_writer_and_a_takeover_on_sigterm() {
    let dir = temp_dir("collect", "lease");
    let sim = ApiSim::start().await.unwrap();
    sim.put(node("a", "10.0.0.1")).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig).unwrap();
    let (addr, _) = start_scripted(200, vector(&[("a", "0.50")]), Duration::ZERO).await;
    let url = format!("http://{addr}");
    let (mut first, first_admin) = spawn_collector(&dir, &kubeconfig, &url, "collector-1");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while is_leader(first_admin).await != Some(true) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "first collector never led"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_second, second_admin) = spawn_collector(&dir, &kubeconfig, &url, "collector-2");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while is_leader(second_admin).await.is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "second collector never came up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(is_leader(first_admin).await, Some(true));
    let logs = || {
        ["collector-1", "collector-2"]
            .map(|i| std::fs::read_to_string(dir.join(format!("{i}.log"))).unwrap_or_default())
            .join("\n----\n")
    };
    assert_eq!(
        is_leader(second_admin).await,
        Some(false),
        "exactly one writer; logs:\n{}",
        logs()
    );
    let lease = sim
        .get(resources::LEASES, "realload-system", "realload-collector")
        .unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], "collector-1");
    assert!(
        sim.requests()
            .iter()
            .any(|r| r.method == "PATCH" && r.path.starts_with("/api/v1/nodes/"))
    );

    // SIGTERM: the leader steps down and releases the lease; the standby takes over
    assert!(
        Command::new("kill")
            .args(["-TERM", &first.0.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let exited = tokio::task::spawn_blocking(move || first.0.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exited.success(), "{exited:?}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while is_leader(second_admin).await != Some(true) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the standby never took over"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let lease = sim
        .get(resources::LEASES, "realload-system", "realload-collector")
        .unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], "collector-2");
    assert!(lease["spec"]["leaseTransitions"].as_i64().unwrap() >= 1);
    let _ = std::fs::remove_dir_all(&dir);
}

async fn metrics_text(admin: u16) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", admin)).await else {
        return String::new();
    };
    let _ = stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await;
    let mut buf = Vec::new();
    let _ = stream.read_to_end(&mut buf).await;
    String::from_utf8_lossy(&buf).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_collector_follows_policy_edits_and_keeps_its_policy_on_a_bad_one() {
    let dir = temp_dir("collect", "reload");
    let sim = Arc::new(ApiSim::start().await.unwrap());
    sim.put(node("a", "10.0.0.1")).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig).unwrap();
    let (addr, _) = start_scripted(200, vector(&[("a", "0.50")]), Duration::ZERO).await;
    let url = format!("http://{addr}");
    let (_collector, admin) = spawn_collector(&dir, &kubeconfig, &url, "collector-reload");
    let annotation = |sim: &ApiSim, key: &str| {
        sim.get(resources::NODES, "", "a").unwrap()["metadata"]["annotations"][key].clone()
    };
    let wait = |what: &'static str, check: Box<dyn Fn() -> bool>| async move {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !check() {
            assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let s = sim.clone();
    wait(
        "the first reading",
        Box::new(move || annotation(&s, "realload.io/cpu-avg-5m").is_string()),
    )
    .await;
    // an invalid edit is rejected and counted; the collector goes on with its policy
    let policy = dir.join("fast-policy.yaml");
    std::fs::write(&policy, "metrics: [{name: cpu-avg-5m, period: 0s}]\n").unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !metrics_text(admin)
        .await
        .contains("realload_collector_policy_reloads_total{result=\"invalid\"} 1")
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the bad policy was not counted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // a valid edit that renames the annotation: the next cycles write the new key
    std::fs::write(
        &policy,
        "metrics:\n- {name: cpu-avg-5m, query: scripted, period: 1s, annotation: example.com/cpu}\n- {name: cpu-sustained-10m, query: scripted, period: 1s}\ncollector: {deadband: 0}\n",
    )
    .unwrap();
    let s = sim.clone();
    wait(
        "the renamed annotation",
        Box::new(move || annotation(&s, "example.com/cpu").is_string()),
    )
    .await;
    assert!(
        metrics_text(admin)
            .await
            .contains("realload_collector_policy_reloads_total{result=\"ok\"} 1")
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A kubelet's cAdvisor endpoint as Prometheus scrapes it: CPU counters growing at fixed rates
/// (cores) and steady working sets, per container.
async fn start_cadvisor() -> u16 {
    let started = std::time::Instant::now();
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || async move {
            let t = started.elapsed().as_secs_f64();
            let cpu = |ns: &str, pod: &str, container: &str, cores: f64| {
                format!(
                    "container_cpu_usage_seconds_total{{namespace=\"{ns}\",pod=\"{pod}\",container=\"{container}\"}} {}\n",
                    cores * t
                )
            };
            let mut text = String::from("# TYPE container_cpu_usage_seconds_total counter\n");
            text += &cpu("shop", "api-h1-a", "api", 0.3);
            text += &cpu("shop", "api-h1-b", "api", 0.5);
            // the pause container and the pod-level cgroup: left out by the default query
            text += &cpu("shop", "api-h1-b", "POD", 5.0);
            text += &cpu("shop", "api-h1-a", "", 9.0);
            text += &cpu("jobs", "bare", "c", 1.0);
            text += "# TYPE container_memory_working_set_bytes gauge\n";
            for pod in ["api-h1-a", "api-h1-b"] {
                text += &format!(
                    "container_memory_working_set_bytes{{namespace=\"shop\",pod=\"{pod}\",container=\"api\"}} 536870912\n"
                );
            }
            text
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    port
}

fn running_pod(namespace: &str, name: &str, owner: Option<&str>) -> Value {
    let mut pod = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {"pod-template-hash": "h1"}},
        "spec": {"nodeName": "a", "containers": [{"name": "api", "resources": {"requests": {"cpu": "1", "memory": "1Gi"}}}]},
        "status": {"phase": "Running"}});
    if let Some(rs) = owner {
        pod["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "name": rs, "uid": "rs-uid", "controller": true}]);
    }
    pod
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workload_usage_is_learned_from_real_prometheus_and_published_in_its_config_map() {
    let dir = temp_dir("collect", "usage");
    let cadvisor = start_cadvisor().await;
    // scraped twice, as when two jobs scrape the kubelets' cAdvisor: counted once
    let (_prometheus, prometheus_port) = monitoring::start_prometheus(
        &dir,
        &[
            (cadvisor, Some("kubelet-a")),
            (cadvisor, Some("cadvisor-a")),
        ],
    );
    let sim = ApiSim::start().await.unwrap();
    sim.put(node("a", "10.0.0.1")).unwrap();
    sim.put(running_pod("shop", "api-h1-a", Some("api-h1")))
        .unwrap();
    sim.put(running_pod("shop", "api-h1-b", Some("api-h1")))
        .unwrap();
    sim.put(running_pod("jobs", "bare", None)).unwrap();
    let mut pending = running_pod("shop", "api-h1-c", Some("api-h1"));
    pending["status"]["phase"] = json!("Pending");
    sim.put(pending).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig).unwrap();
    let policy = dir.join("policy.yaml");
    std::fs::write(&policy, "workloadUsage: {period: 2s, maxAge: 1m}\n").unwrap();
    let admin = free_port();
    let _collector = KillOnDrop(
        Command::new(BIN)
            .args([
                "collect",
                "--prometheus-url",
                &format!("http://127.0.0.1:{prometheus_port}"),
                "--policy",
                policy.to_str().unwrap(),
                "--identity",
                "usage-test",
                "--lease-namespace",
                "realload-system",
                "--admin-listen",
                &format!("127.0.0.1:{admin}"),
            ])
            .env("KUBECONFIG", &kubeconfig)
            .env("REALLOAD_LOG", "info,kube=warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("collector.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    // the default queries, over a minute of real scrapes (the CPU query's subquery steps fall on
    // whole minutes): 0.8 cores used of 2 requested
    let deadline = tokio::time::Instant::now() + Duration::from_secs(150);
    let table = loop {
        let published = sim
            .get(
                resources::CONFIGMAPS,
                "realload-system",
                "realload-workload-usage",
            )
            .and_then(|cm| cm["data"]["usage.json"].as_str().map(str::to_string))
            .and_then(|t| serde_json::from_str::<Value>(&t).ok());
        if let Some(t) = published
            && let Some(cpu) = t["workloads"]["shop/Deployment/api"]["cpu"].as_f64()
            && (cpu - 0.4).abs() < 0.02
        {
            break t;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no usage table with shop/Deployment/api at 0.4: {:?}; log:\n{}",
            sim.get(
                resources::CONFIGMAPS,
                "realload-system",
                "realload-workload-usage"
            ),
            std::fs::read_to_string(dir.join("collector.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let api = &table["workloads"]["shop/Deployment/api"];
    assert_eq!(
        api["pods"], 2,
        "the pending replica is not measured: {table}"
    );
    assert_eq!(api["memory"], 0.5, "512 MiB used of 1 GiB: {table}");
    assert_eq!(
        table["workloads"].as_object().unwrap().len(),
        1,
        "a pod without a controller is not learned: {table}"
    );
    let updated: jiff::Timestamp = table["updated"].as_str().unwrap().parse().unwrap();
    assert!(jiff::Timestamp::now().duration_since(updated) < jiff::SignedDuration::from_secs(30));
    let cm = sim
        .get(
            resources::CONFIGMAPS,
            "realload-system",
            "realload-workload-usage",
        )
        .unwrap();
    assert_eq!(
        cm["metadata"]["managedFields"][0]["manager"], "realload-collector",
        "written by server-side apply under the collector's field manager: {cm}"
    );
    let metrics = monitoring::scrape(admin).await.unwrap_or_default();
    assert!(
        metrics.contains("realload_collector_workload_usage_workloads 1"),
        "{metrics}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

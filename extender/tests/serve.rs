//! `realload-extender serve` as a process: against the API simulator (watches, readiness,
//! binding), in snapshot mode over TLS with client certificates, and its shutdown on SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers may panic

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use realload_apisim::{ApiSim, Fault, resources};
use realload_test_support::{KillOnDrop, Pki, free_port, temp_dir};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const BIN: &str = env!("CARGO_BIN_EXE_realload-extender");

struct Extender {
    child: KillOnDrop,
    /// The extender API (`--listen`).
    port: u16,
    /// Probes, metrics and `/debug/nodes` (`--admin-listen`).
    admin: u16,
    log: PathBuf,
}

fn spawn(args: &[&str], kubeconfig: Option<&Path>) -> Extender {
    spawn_in(Command::new(BIN), args, kubeconfig)
}

/// The extender with its open-file limit (soft and hard) set to `nofile`, as a container runtime
/// or systemd unit may set it.
fn spawn_with_open_file_limit(nofile: u32, args: &[&str]) -> Extender {
    let mut cmd = Command::new("sh");
    cmd.args([
        "-c",
        &format!("ulimit -n {nofile} && exec \"$0\" \"$@\""),
        BIN,
    ]);
    spawn_in(cmd, args, None)
}

fn spawn_in(mut cmd: Command, args: &[&str], kubeconfig: Option<&Path>) -> Extender {
    let port = free_port();
    let admin = free_port();
    let listen = format!("127.0.0.1:{port}");
    let admin_listen = format!("127.0.0.1:{admin}");
    cmd.arg("serve")
        .args(["--listen", &listen, "--admin-listen", &admin_listen])
        .args(args);
    if !args.contains(&"--drain-period") {
        cmd.args(["--drain-period", "0s"]);
    }
    cmd.env_remove("KUBECONFIG")
        .env("REALLOAD_LOG", "info,kube=warn");
    if let Some(k) = kubeconfig {
        cmd.env("KUBECONFIG", k);
    }
    let log = std::env::temp_dir().join(format!("realload-serve-{port}.log"));
    let file = std::fs::File::create(&log).unwrap();
    let child = cmd.stdout(Stdio::null()).stderr(file).spawn().unwrap();
    Extender {
        child: KillOnDrop(child),
        port,
        admin,
        log,
    }
}

/// A minimal HTTP/1.1 exchange (`Connection: close`) over any stream.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    method: &str,
    path: &str,
    body: &str,
) -> std::io::Result<(u16, String)> {
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok((status, body))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

async fn http(port: u16, method: &str, path: &str, body: &str) -> std::io::Result<(u16, String)> {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    exchange(stream, method, path, body).await
}

async fn wait_ready(ext: &Extender, want: u16) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok((status, _)) = http(ext.admin, "GET", "/readyz", "").await
            && status == want
        {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            let log = std::fs::read_to_string(&ext.log).unwrap_or_default();
            panic!("/readyz never answered {want}; extender log:\n{log}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn node(name: &str, cpu: f64, sampled: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "annotations": {
            "realload.io/cpu-avg-5m": format!("{cpu:.4},{sampled}"),
            "realload.io/cpu-max-1h": format!("{cpu:.4},{sampled}"),
            "realload.io/mem-avg-5m": format!("0.3000,{sampled}")}},
           "status": {"allocatable": {"cpu": "8", "memory": "32Gi"}, "conditions": [{"type": "Ready", "status": "True"}]}})
}

fn now_minus(secs: i64) -> String {
    (jiff::Timestamp::now() - jiff::SignedDuration::from_secs(secs))
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn cache_body(names: &[&str]) -> String {
    json!({"Pod": {"metadata": {"name": "web-1", "namespace": "default"}, "spec": {"containers": [{"name": "c"}]}},
           "Nodes": null, "NodeNames": names})
    .to_string()
}

fn score(v: &Value, host: &str) -> i64 {
    v.as_array()
        .unwrap()
        .iter()
        .find(|h| h["Host"] == host)
        .unwrap()["Score"]
        .as_i64()
        .unwrap()
}

async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_follow_annotations_and_bindings_arriving_over_the_watches() {
    let sim = ApiSim::start().await.unwrap();
    sim.put(node("a", 0.90, &now_minus(20))).unwrap();
    // above the 0.50 idle band, below the 0.85 filter: scored, not filtered
    sim.put(node("b", 0.70, &now_minus(20))).unwrap();
    let dir = temp_dir("serve", "watch");
    let kubeconfig = dir.join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig).unwrap();
    let ext = spawn(&["--path-prefix", "/scheduler"], Some(&kubeconfig));
    wait_ready(&ext, 200).await;
    // the gauges describe the cluster as soon as the extender is ready, not a cycle later
    let (_, metrics) = http(ext.admin, "GET", "/metrics", "").await.unwrap();
    assert!(
        metrics.contains("realload_extender_nodes{metric=\"cpu-avg-5m\",quality=\"valid\"} 2"),
        "{metrics}"
    );

    let (status, body) = http(
        ext.port,
        "POST",
        "/scheduler/filter",
        &cache_body(&["a", "b"]),
    )
    .await
    .unwrap();
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["NodeNames"], json!(["b"]));

    // a fresh, cool reading on "a" arrives over the node watch
    sim.modify(resources::NODES, "", "a", |n| {
        let fresh = node("a", 0.10, &now_minus(5));
        n["metadata"]["annotations"] = fresh["metadata"]["annotations"].clone();
    })
    .unwrap();
    eventually("a passes once its reading cools", || async {
        let (_, body) = http(
            ext.port,
            "POST",
            "/scheduler/filter",
            &cache_body(&["a", "b"]),
        )
        .await
        .unwrap();
        serde_json::from_str::<Value>(&body).unwrap()["NodeNames"] == json!(["a", "b"])
    })
    .await;
    let (_, body) = http(
        ext.port,
        "POST",
        "/scheduler/prioritize",
        &cache_body(&["a", "b"]),
    )
    .await
    .unwrap();
    let before: Value = serde_json::from_str(&body).unwrap();
    assert!(score(&before, "a") > score(&before, "b"));

    // a burst of pods bound to "a" arrives over the pod watch and lowers it
    for i in 0..4 {
        sim.put(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": format!("burst-{i}"), "namespace": "default"},
            "spec": {"nodeName": "a", "containers": [{"name": "c", "resources": {"requests": {"cpu": "2"}}}]},
            "status": {"phase": "Running", "conditions": [{"type": "PodScheduled", "status": "True", "lastTransitionTime": now_minus(1)}]}}))
        .unwrap();
    }
    eventually("the burst lowers a's score below b's", || async {
        let (_, body) = http(
            ext.port,
            "POST",
            "/scheduler/prioritize",
            &cache_body(&["a", "b"]),
        )
        .await
        .unwrap();
        let v: Value = serde_json::from_str(&body).unwrap();
        score(&v, "a") < score(&v, "b")
    })
    .await;
    let (_, debug) = http(ext.admin, "GET", "/debug/nodes", "").await.unwrap();
    let debug: Value = serde_json::from_str(&debug).unwrap();
    assert_eq!(debug["ledgerPods"], 4);

    // readiness follows the watches: when the API fails, the extender turns unready, then recovers
    // (three failures in a row, then the watcher's backoff gets through)
    sim.inject(Fault::on(None, "/api/v1/nodes").times(3).respond(500));
    sim.disconnect_watches();
    wait_ready(&ext, 503).await;
    wait_ready(&ext, 200).await;
    let relists = sim
        .requests()
        .iter()
        .filter(|r| r.path == "/api/v1/nodes" && !r.watch && r.status == 200)
        .count();
    assert!(relists >= 2, "the node watch re-listed after the failures");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A filter request for a 4-core pod of the Deployment `shop/api`.
fn api_pod_body(names: &[&str]) -> String {
    json!({"Pod": {"metadata": {"name": "api-h1-x", "namespace": "shop", "uid": "u-api",
            "labels": {"pod-template-hash": "h1"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "api-h1", "uid": "rs", "controller": true}]},
          "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "4"}}}]}},
           "Nodes": null, "NodeNames": names})
    .to_string()
}

fn usage_config_map(usage_json: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": "realload-workload-usage", "namespace": "realload-system"},
           "data": {"usage.json": usage_json}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learned_usage_arrives_over_its_watch_and_a_broken_table_is_refused() {
    let sim = ApiSim::start().await.unwrap();
    sim.put(node("a", 0.50, &now_minus(20))).unwrap();
    sim.put(node("b", 0.30, &now_minus(20))).unwrap();
    let dir = temp_dir("serve", "usage");
    let kubeconfig = dir.join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig).unwrap();
    let ext = spawn(&["--namespace", "realload-system"], Some(&kubeconfig));
    wait_ready(&ext, 200).await;
    let filter = || async {
        let (status, body) = http(ext.port, "POST", "/filter", &api_pod_body(&["a", "b"]))
            .await
            .unwrap();
        assert_eq!(status, 200, "{body}");
        serde_json::from_str::<Value>(&body).unwrap()["NodeNames"].clone()
    };
    // nothing learned: 4 cores × 0.85 / 8 = +0.425 takes "a" (0.50) over the 0.85 filter
    assert_eq!(filter().await, json!(["b"]));

    // the collector publishes: shop/api uses a fifth of its requests, +0.10 on "a"
    let learned = format!(
        r#"{{"updated":"{}","workloads":{{"shop/Deployment/api":{{"cpu":0.2,"pods":3}}}}}}"#,
        now_minus(60)
    );
    sim.put(usage_config_map(&learned)).unwrap();
    eventually("the learned share lets the pod onto a", || async {
        filter().await == json!(["a", "b"])
    })
    .await;
    let (_, debug) = http(ext.admin, "GET", "/debug/nodes", "").await.unwrap();
    let debug: Value = serde_json::from_str(&debug).unwrap();
    assert_eq!(debug["workloadUsage"]["workloads"], 1, "{debug}");
    assert_eq!(debug["workloadUsage"]["current"], true);
    let last = debug["recentDecisions"].as_array().unwrap().last().unwrap();
    assert_eq!(last["learnedCpuShare"], 0.2, "{last}");

    // a hand edit that breaks the table is refused, named in the log, and the table stays
    sim.modify(resources::CONFIGMAPS, "realload-system", "realload-workload-usage", |cm| {
        cm["data"]["usage.json"] =
            json!(r#"{"updated":"2026-12-01T00:00:00Z","workloads":{"shop/api":{"cpu":0.2,"pods":1}}}"#);
    })
    .unwrap();
    eventually("the refusal is counted", || async {
        let (_, metrics) = http(ext.admin, "GET", "/metrics", "").await.unwrap();
        metrics.contains("realload_extender_workload_usage_loads_total{result=\"refused\"} 1")
    })
    .await;
    assert_eq!(filter().await, json!(["a", "b"]));
    let log = std::fs::read_to_string(&ext.log).unwrap_or_default();
    assert!(
        log.contains("workloads.\\\"shop/api\\\": not namespace/Kind/name")
            || log.contains("workloads.\"shop/api\": not namespace/Kind/name"),
        "{log}"
    );

    // the ConfigMap is deleted: the factors apply again
    let api: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
        kube::Api::namespaced(sim.client(), "realload-system");
    api.delete("realload-workload-usage", &Default::default())
        .await
        .unwrap();
    eventually("the factors apply again", || async {
        filter().await == json!(["b"])
    })
    .await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bind_mode_binds_through_the_api_and_counts_the_pod_at_once() {
    let sim = ApiSim::start().await.unwrap();
    sim.put(node("a", 0.30, &now_minus(20))).unwrap();
    sim.put(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default", "uid": "uid-p"},
        "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "4"}}}]}, "status": {"phase": "Pending"}}))
    .unwrap();
    let dir = temp_dir("serve", "bind");
    let kubeconfig = dir.join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig).unwrap();
    let ext = spawn(&["--bind"], Some(&kubeconfig));
    wait_ready(&ext, 200).await;
    let (status, body) = http(
        ext.port,
        "POST",
        "/bind",
        r#"{"PodName":"p","PodNamespace":"default","PodUID":"uid-p","Node":"a"}"#,
    )
    .await
    .unwrap();
    assert_eq!((status, body.as_str()), (200, r#"{"Error":""}"#));
    let pod = sim.get(resources::PODS, "default", "p").unwrap();
    assert_eq!(pod["spec"]["nodeName"], "a");
    let (_, debug) = http(ext.admin, "GET", "/debug/nodes", "").await.unwrap();
    let debug: Value = serde_json::from_str(&debug).unwrap();
    let a = &debug["nodes"][0];
    assert_eq!(a["ledgerPods"], 1);
    assert!((a["hotspotCpu"].as_f64().unwrap() - 4000.0 * 0.85 / 8000.0).abs() < 1e-9);
    // binding it again is refused by the API and reported in Error
    let (_, body) = http(
        ext.port,
        "POST",
        "/bind",
        r#"{"PodName":"p","PodNamespace":"default","PodUID":"uid-p","Node":"a"}"#,
    )
    .await
    .unwrap();
    assert!(body.contains("already assigned"), "{body}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_turns_unready_keeps_answering_through_the_drain_period_then_exits() {
    let snapshot = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/example/cluster.json");
    let mut ext = spawn(
        &[
            "--snapshot",
            snapshot,
            "--now",
            "2026-11-22T01:05:00Z",
            "--drain-period",
            "3s",
        ],
        None,
    );
    wait_ready(&ext, 200).await;
    let (status, body) = http(
        ext.port,
        "POST",
        "/filter",
        &cache_body(&["node-a", "node-b"]),
    )
    .await
    .unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("\"NodeNames\":[\"node-a\"]"), "{body}");
    let pid = ext.child.id().to_string();
    let signalled = std::time::Instant::now();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    // unready at once, so the Service stops routing here ...
    wait_ready(&ext, 503).await;
    // ... while kube-scheduler, which may not know yet, still gets answers
    let (status, body) = http(
        ext.port,
        "POST",
        "/filter",
        &cache_body(&["node-a", "node-b"]),
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "answered during the drain period");
    assert!(body.contains("\"NodeNames\":[\"node-a\"]"), "{body}");
    assert!(signalled.elapsed() < Duration::from_secs(3));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = ext.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    assert!(
        signalled.elapsed() >= Duration::from_secs(3),
        "exited before the drain period ended"
    );
}

fn pki() -> Pki {
    Pki::generate()
}

async fn tls_request(
    port: u16,
    pki: &Pki,
    with_client_cert: bool,
    method: &str,
    path: &str,
    body: &str,
) -> std::io::Result<(u16, String)> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(pki.ca_pem.as_bytes()).unwrap())
        .unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = if with_client_cert {
        let cert = CertificateDer::from_pem_slice(pki.client_cert.as_bytes()).unwrap();
        let key = PrivateKeyDer::from_pem_slice(pki.client_key.as_bytes()).unwrap();
        builder.with_client_auth_cert(vec![cert], key).unwrap()
    } else {
        builder.with_no_client_auth()
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await?;
    exchange(tls, method, path, body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_client_certificates_admits_only_the_scheduler() {
    let dir = temp_dir("serve", "tls");
    let pki = pki();
    for (name, text) in [
        ("ca.pem", &pki.ca_pem),
        ("tls.crt", &pki.server_cert),
        ("tls.key", &pki.server_key),
    ] {
        std::fs::write(dir.join(name), text).unwrap();
    }
    let snapshot = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/example/cluster.json");
    let cert = dir.join("tls.crt");
    let key = dir.join("tls.key");
    let ca = dir.join("ca.pem");
    let ext = spawn(
        &[
            "--snapshot",
            snapshot,
            "--now",
            "2026-11-22T01:05:00Z",
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
            "--client-ca",
            ca.to_str().unwrap(),
        ],
        None,
    );
    let filter = cache_body(&["node-a", "node-b"]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let (status, body) = loop {
        match tls_request(ext.port, &pki, true, "POST", "/filter", &filter).await {
            Ok(r) => break r,
            Err(e) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "TLS server never answered: {e}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"NodeNames\":[\"node-a\"]"), "{body}");
    // without a client certificate the handshake (or the first read) fails
    let anonymous = tls_request(ext.port, &pki, false, "POST", "/filter", &filter).await;
    assert!(
        anonymous.is_err() || anonymous.as_ref().is_ok_and(|(s, _)| *s == 0),
        "{anonymous:?}"
    );
    // plain HTTP is not served on the TLS port
    assert!(
        http(ext.port, "POST", "/filter", &filter)
            .await
            .map(|(s, _)| s != 200)
            .unwrap_or(true)
    );
    // the kubelet's probes and Prometheus present no client certificate: the admin listener
    // answers them (the API port does not even route them)
    wait_ready(&ext, 200).await;
    let (status, metrics) = http(ext.admin, "GET", "/metrics", "").await.unwrap();
    assert_eq!(status, 200);
    assert!(
        metrics.contains("realload_extender_requests_total"),
        "{metrics}"
    );
    let (status, _) = tls_request(ext.port, &pki, true, "GET", "/readyz", "")
        .await
        .unwrap();
    assert_eq!(
        status, 404,
        "probes and metrics are not on the API listener"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_listener_can_use_tls_without_client_certificates() {
    let dir = temp_dir("serve", "admin-tls");
    let pki = pki();
    for (name, text) in [
        ("ca.pem", &pki.ca_pem),
        ("tls.crt", &pki.server_cert),
        ("tls.key", &pki.server_key),
    ] {
        std::fs::write(dir.join(name), text).unwrap();
    }
    let snapshot = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/example/cluster.json");
    let (cert, key, ca) = (dir.join("tls.crt"), dir.join("tls.key"), dir.join("ca.pem"));
    let ext = spawn(
        &[
            "--snapshot",
            snapshot,
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
            "--client-ca",
            ca.to_str().unwrap(),
            "--admin-tls",
        ],
        None,
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match tls_request(ext.admin, &pki, false, "GET", "/readyz", "").await {
            Ok((200, _)) => break,
            other => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "admin TLS never answered: {other:?}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_hundreds_of_concurrent_connections_and_drops_slow_headers() {
    let snapshot = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/example/cluster.json");
    let ext = spawn(
        &[
            "--snapshot",
            snapshot,
            "--now",
            "2026-11-22T01:05:00Z",
            "--header-read-timeout",
            "1s",
        ],
        None,
    );
    wait_ready(&ext, 200).await;
    // 300 connections open at once, each with a request in flight
    let mut streams = Vec::new();
    for _ in 0..300 {
        streams.push(
            tokio::net::TcpStream::connect(("127.0.0.1", ext.port))
                .await
                .unwrap(),
        );
    }
    let body = cache_body(&["node-a", "node-b", "node-c"]);
    let tasks: Vec<_> = streams
        .into_iter()
        .map(|s| {
            let body = body.clone();
            tokio::spawn(async move { exchange(s, "POST", "/prioritize", &body).await })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        if let Ok(Ok((200, _))) = t.await {
            ok += 1;
        }
    }
    assert_eq!(ok, 300);
    // a client that never finishes its headers is disconnected
    let mut slow = tokio::net::TcpStream::connect(("127.0.0.1", ext.port))
        .await
        .unwrap();
    slow.write_all(b"POST /filter HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), slow.read_to_end(&mut buf)).await;
    assert!(
        closed.is_ok(),
        "slow client still connected after the header timeout"
    );
}

/// The HTTP/2 client preface and an empty SETTINGS frame: what an h2c client sends before its
/// first request. The flood below sends this and then nothing, and never answers a PING.
const H2C_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Issue 18's flood: 21,000 idle h2c connections exhausted the extender's file descriptors and
/// `/healthz` stopped answering. Here the extender runs with an open-file limit of 1024 and the
/// default `--max-connections` (1024), which alone would let the flood take every descriptor: the
/// cap is lowered to fit, connections past it are closed at once, the admin listener keeps
/// answering, and idle HTTP/2 connections that stop answering pings are closed (keep-alive 20 s +
/// ping timeout 10 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_http2_flood_is_capped_and_closed_while_probes_keep_answering() {
    const NOFILE: usize = 1024;
    // What the open-file limit leaves the API listener (limits::connection_budget).
    const CAP: usize = NOFILE - 128 - 128;
    const FLOOD: usize = 1_500;
    let snapshot = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/example/cluster.json");
    let ext = spawn_with_open_file_limit(
        NOFILE as u32,
        &["--snapshot", snapshot, "--now", "2026-11-22T01:05:00Z"],
    );
    wait_ready(&ext, 200).await;
    let fds_before = open_fds(ext.child.0.id());
    // This test process holds the flood's client ends: make room for them.
    {
        use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
        let limit = getrlimit(Resource::Nofile);
        let want = (FLOOD as u64 + 256).min(limit.maximum.unwrap_or(u64::MAX));
        if limit.current.is_some_and(|c| c < want) {
            let _ = setrlimit(
                Resource::Nofile,
                Rlimit {
                    current: Some(want),
                    maximum: limit.maximum,
                },
            );
        }
        let now = getrlimit(Resource::Nofile).current;
        assert!(
            now.is_none_or(|c| c >= FLOOD as u64 + 256),
            "the test needs {} open files, the hard limit allows {now:?}",
            FLOOD + 256
        );
    }

    // Each flood connection reads (so the server's frames do not back up) but never writes after
    // its preface; the task ends when the server closes the connection.
    let mut flood = Vec::new();
    for _ in 0..FLOOD {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", ext.port))
            .await
            .unwrap();
        flood.push(tokio::spawn(async move {
            let opened = tokio::time::Instant::now();
            if s.write_all(H2C_PREFACE).await.is_err() {
                return opened.elapsed();
            }
            let mut buf = [0u8; 4096];
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return opened.elapsed(),
                    Ok(_) => {}
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    // While the flood holds its connections: probes answer, descriptors stay bounded, and a
    // connection over the cap is refused at once rather than left hanging.
    let (status, _) = http(ext.admin, "GET", "/healthz", "").await.unwrap();
    assert_eq!(status, 200, "/healthz during the flood");
    let fds = open_fds(ext.child.0.id());
    assert!(
        fds <= fds_before + CAP + 8 && fds < NOFILE,
        "{fds} descriptors open during the flood (cap {CAP}, {fds_before} before it)"
    );
    let log = std::fs::read_to_string(&ext.log).unwrap_or_default();
    assert!(
        log.contains("lowered to fit the open-file limit"),
        "the lowered cap is not logged:\n{log}"
    );
    let closed_early = flood.iter().filter(|t| t.is_finished()).count();
    assert!(
        closed_early >= FLOOD - CAP,
        "only {closed_early} of {FLOOD} flood connections were refused with a cap of {CAP}"
    );
    let refused = tokio::time::timeout(
        Duration::from_secs(2),
        http(ext.port, "POST", "/filter", &cache_body(&["node-a"])),
    )
    .await;
    assert!(
        !matches!(refused, Ok(Ok((200, _)))),
        "a connection over the cap was served: {refused:?}"
    );

    // The held connections never answer a ping, so they are closed within keep-alive + timeout.
    for t in flood {
        let held_for = tokio::time::timeout(Duration::from_secs(60), t)
            .await
            .expect("an idle HTTP/2 connection outlived the ping timeout")
            .unwrap();
        assert!(held_for < Duration::from_secs(45), "held for {held_for:?}");
    }
    // With the flood gone, the API port serves again.
    let (status, body) = http(ext.port, "POST", "/filter", &cache_body(&["node-a"]))
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
}

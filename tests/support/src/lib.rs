//! Helpers realload's integration tests and harnesses share: loopback ports, scratch directories
//! and child processes that cannot outlive their test, a test PKI, real Prometheus and
//! node-exporter ([`monitoring`]), a scripted Prometheus, a renderer for `deploy/` ([`kustomize`])
//! and the checks of the docs against the code ([`docs_check`]).
#![forbid(unsafe_code)]
#![allow(clippy::expect_used)] // test support: failing loudly is right

pub mod docs_check;
pub mod kustomize;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Child;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A loopback address with a port that was free a moment ago (the OS picked it).
pub fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a free loopback port")
}

pub fn free_port() -> u16 {
    free_addr().port()
}

/// A fresh directory under the system temp dir, unique per process and call.
pub fn temp_dir(prefix: &str, name: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "realload-{prefix}-{name}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("create a temp dir");
    dir
}

/// A child process that is killed and reaped when dropped, also when a test panics.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl std::ops::Deref for KillOnDrop {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

/// The path of a program installed from a Debian package, or a panic saying how to install it.
pub fn require_program(binary: &str, package: &str) -> std::path::PathBuf {
    for dir in ["/usr/bin", "/usr/local/bin", "/bin", "/usr/sbin"] {
        let p = std::path::Path::new(dir).join(binary);
        if p.exists() {
            return p;
        }
    }
    panic!("{binary} is not installed: run tests/run.sh, or apt-get install -y {package}");
}

/// A CA, a serving certificate for `127.0.0.1`/`localhost` and a client certificate (CN
/// `kube-scheduler`), as PEM.
pub struct Pki {
    pub ca_pem: String,
    pub server_cert: String,
    pub server_key: String,
    pub client_cert: String,
    pub client_key: String,
}

impl Pki {
    pub fn generate() -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        let ca_key = KeyPair::generate().expect("a CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).expect("a CA certificate");
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let server_key = KeyPair::generate().expect("a server key");
        let server = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .expect("server parameters")
            .signed_by(&server_key, &issuer)
            .expect("a server certificate");
        let client_key = KeyPair::generate().expect("a client key");
        let client = CertificateParams::new(vec!["kube-scheduler".to_string()])
            .expect("client parameters")
            .signed_by(&client_key, &issuer)
            .expect("a client certificate");
        Pki {
            ca_pem: ca.pem(),
            server_cert: server.pem(),
            server_key: server_key.serialize_pem(),
            client_cert: client.pem(),
            client_key: client_key.serialize_pem(),
        }
    }

    /// Writes `ca.crt`, `tls.crt`, `tls.key`, `client.crt` and `client.key` into `dir`.
    pub fn write(&self, dir: &std::path::Path) {
        std::fs::create_dir_all(dir).expect("create the PKI directory");
        for (name, text) in [
            ("ca.crt", &self.ca_pem),
            ("tls.crt", &self.server_cert),
            ("tls.key", &self.server_key),
            ("client.crt", &self.client_cert),
            ("client.key", &self.client_key),
        ] {
            std::fs::write(dir.join(name), text).expect("write a PEM file");
        }
    }
}

/// A Prometheus HTTP API that answers every node query with the same samples: (`instance`
/// label, sample time in seconds, value as Prometheus writes it), and the collector's per-pod
/// usage queries with one pod's series. Returns its port.
pub async fn scripted_prometheus(samples: Vec<(String, f64, String)>) -> u16 {
    use axum::extract::Query;
    use axum::routing::get;
    let nodes = serde_json::json!({"status": "success", "data": {"resultType": "vector", "result":
        samples.iter().map(|(instance, at, value)| serde_json::json!({"metric": {"instance": instance}, "value": [at, value]})).collect::<Vec<_>>()}});
    // The collector's per-pod usage queries (joined into `realload_pod`) get one pod's series,
    // so that a usage table is learned and published.
    let at = samples.first().map_or(0.0, |(_, at, _)| *at);
    let pods = serde_json::json!({"status": "success", "data": {"resultType": "vector", "result":
        [{"metric": {"realload_pod": "scripted/pod"}, "value": [at, "0.1"]}]}});
    let app = axum::Router::new().route(
        "/api/v1/query",
        get(move |Query(q): Query<Vec<(String, String)>>| {
            let per_pod = q
                .iter()
                .any(|(k, v)| k == "query" && v.contains("realload_pod"));
            let body = if per_pod { pods.clone() } else { nodes.clone() };
            async move { axum::Json(body) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let port = listener.local_addr().expect("its address").port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    port
}

/// Real Prometheus and node-exporter (Debian packages), started on free loopback ports.
pub mod monitoring {
    use std::path::Path;
    use std::process::{Command, Stdio};

    use super::{KillOnDrop, free_port, require_program};

    /// node-exporter with only the CPU and memory collectors; returns it and its port.
    pub fn start_node_exporter() -> (KillOnDrop, u16) {
        let port = free_port();
        let child = Command::new(require_program(
            "prometheus-node-exporter",
            "prometheus-node-exporter",
        ))
        .args([
            &format!("--web.listen-address=127.0.0.1:{port}"),
            "--collector.disable-defaults",
            "--collector.cpu",
            "--collector.meminfo",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start node-exporter");
        (KillOnDrop(child), port)
    }

    /// Prometheus scraping `targets` (address, optional `instance` label) every second, with its
    /// data in `dir`; returns it and its port.
    pub fn start_prometheus(dir: &Path, targets: &[(u16, Option<&str>)]) -> (KillOnDrop, u16) {
        let port = free_port();
        let config = dir.join("prometheus.yml");
        let mut text = String::from(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\nscrape_configs:\n- job_name: node\n  static_configs:\n",
        );
        for (target, instance) in targets {
            text.push_str(&format!("  - targets: ['127.0.0.1:{target}']\n"));
            if let Some(instance) = instance {
                text.push_str(&format!("    labels: {{instance: '{instance}'}}\n"));
            }
        }
        std::fs::write(&config, text).expect("write prometheus.yml");
        let child = Command::new(require_program("prometheus", "prometheus"))
            .args([
                &format!("--config.file={}", config.display()),
                &format!("--storage.tsdb.path={}", dir.join("data").display()),
                &format!("--web.listen-address=127.0.0.1:{port}"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus");
        (KillOnDrop(child), port)
    }

    /// The `/metrics` exposition of a realload binary's admin listener on loopback, when it
    /// answers 200.
    pub async fn scrape(port: u16) -> Option<String> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut buf = Vec::new();
        stream.read_to_end(&mut buf).await.ok()?;
        let text = String::from_utf8_lossy(&buf).into_owned();
        text.starts_with("HTTP/1.1 200").then_some(text)
    }

    /// GET a JSON document over plain HTTP on loopback.
    pub async fn get_json(url: &str) -> Option<serde_json::Value> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let uri: http::Uri = url.parse().ok()?;
        let host = uri.host()?.to_string();
        let port = uri.port_u16()?;
        let path = uri.path_and_query()?.as_str().to_string();
        let mut stream = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .ok()?;
        let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        stream.write_all(req.as_bytes()).await.ok()?;
        let mut buf = Vec::new();
        stream.read_to_end(&mut buf).await.ok()?;
        let text = String::from_utf8_lossy(&buf);
        let body = text.split_once("\r\n\r\n")?.1;
        serde_json::from_str(body).ok()
    }

    /// Waits (up to two minutes) until every default metric's query returns a sample.
    pub async fn wait_for_data(prometheus_port: u16) {
        let policy = realload_common::policy::Policy::default();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(120);
        for spec in &policy.metrics {
            let q = serde_urlencoded::to_string([("query", spec.query.as_str())])
                .expect("a query string");
            loop {
                let url = format!("http://127.0.0.1:{prometheus_port}/api/v1/query?{q}");
                if let Some(v) = get_json(&url).await
                    && v["data"]["result"]
                        .as_array()
                        .is_some_and(|r| !r.is_empty())
                {
                    break;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "Prometheus never answered {}",
                    spec.name
                );
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_dirs_are_distinct_and_children_are_reaped() {
        assert_ne!(temp_dir("t", "x"), temp_dir("t", "x"));
        let child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id();
        drop(KillOnDrop(child));
        // reaped: no /proc entry left (a zombie would still have one)
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    }
}

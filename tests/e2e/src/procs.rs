//! realload's binaries and kube-scheduler as child processes of a test.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use realload_test_support::{KillOnDrop, free_port};
use serde_json::Value;

use crate::{Cluster, workspace};

/// The target directory the test binary runs from (`target/<profile>`).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    // target/<profile>/deps/e2e-<hash>
    exe.parent()
        .and_then(Path::parent)
        .expect("the test binary lives in target/<profile>/deps")
        .to_path_buf()
}

/// The path of one of realload's binaries, built (once per test process) in this profile.
pub fn realload_binary(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
        let release = target_dir().ends_with("release");
        let mut cmd = Command::new(cargo);
        cmd.current_dir(workspace()).args([
            "build",
            "--quiet",
            "-p",
            "realload-extender",
            "-p",
            "realload-descheduler",
            "--bins",
        ]);
        if release {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("run cargo build");
        assert!(status.success(), "building realload's binaries failed");
    });
    let path = target_dir().join(name);
    assert!(path.exists(), "{} was not built", path.display());
    path
}

/// A minimal HTTP/1.1 GET or POST on loopback; `None` when nothing answers.
pub async fn http(port: u16, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((status, body))
}

/// GET a JSON document.
pub async fn get_json(port: u16, path: &str) -> Option<Value> {
    let (status, body) = http(port, "GET", path, "").await?;
    (status == 200)
        .then(|| serde_json::from_str(&body).ok())
        .flatten()
}

/// A running `realload-extender serve`.
pub struct Extender {
    pub child: KillOnDrop,
    pub port: u16,
    pub admin: u16,
    pub log: PathBuf,
}

impl Extender {
    /// Starts `serve` on `port` (a free one when `None`) with the given extra flags, against
    /// `kubeconfig`.
    pub fn start(
        cluster: &Cluster,
        kubeconfig: &Path,
        port: Option<u16>,
        extra: &[&str],
    ) -> Extender {
        let port = port.unwrap_or_else(free_port);
        let admin = free_port();
        let log = cluster.dir.join(format!("extender-{port}-{admin}.log"));
        let file = std::fs::File::create(&log).expect("create the extender log");
        let mut cmd = Command::new(realload_binary("realload-extender"));
        cmd.args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--admin-listen",
            &format!("127.0.0.1:{admin}"),
            "--path-prefix",
            "/scheduler",
        ])
        .args(extra)
        .env("KUBECONFIG", kubeconfig)
        .env("REALLOAD_LOG", "info,kube=warn")
        .stdout(Stdio::null())
        .stderr(file);
        if !extra.contains(&"--drain-period") {
            cmd.args(["--drain-period", "0s"]);
        }
        Extender {
            child: KillOnDrop(cmd.spawn().expect("start realload-extender")),
            port,
            admin,
            log,
        }
    }

    /// Waits until `/readyz` answers 200 (both watches listed).
    pub async fn wait_ready(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Some((200, _)) = http(self.admin, "GET", "/readyz", "").await {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the extender never became ready; log:\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn metrics(&self) -> String {
        http(self.admin, "GET", "/metrics", "")
            .await
            .map(|(_, b)| b)
            .unwrap_or_default()
    }

    pub async fn debug(&self) -> Value {
        get_json(self.admin, "/debug/nodes")
            .await
            .unwrap_or(Value::Null)
    }

    /// Requests answered for `verb` (any outcome), from `/metrics`.
    pub async fn requests(&self, verb: &str) -> u64 {
        let text = self.metrics().await;
        text.lines()
            .filter(|l| {
                l.starts_with("realload_extender_requests_total{")
                    && l.contains(&format!("verb=\"{verb}\""))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }

    pub fn signal(&self, signal: &str) {
        let _ = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status();
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// A running kube-scheduler.
pub struct Scheduler {
    pub child: KillOnDrop,
    pub name: String,
    pub log: PathBuf,
    pub config: PathBuf,
}

impl Scheduler {
    /// Starts kube-scheduler from a configuration file of the project's (`deploy/…`), adapted
    /// the way an operator would: its kubeconfig, the extender's address, one profile named
    /// `name`, no leader election (several test schedulers share the cluster). `adapt` may
    /// change more (mode, TLS, bind).
    pub fn start(
        cluster: &Cluster,
        config_in_repo: &str,
        name: &str,
        url_prefix: &str,
        adapt: impl FnOnce(&mut serde_yaml::Value),
    ) -> Scheduler {
        let text = std::fs::read_to_string(workspace().join(config_in_repo))
            .expect("read the scheduler configuration");
        let mut config: serde_yaml::Value =
            serde_yaml::from_str(&text).expect("the scheduler configuration is YAML");
        let map = config.as_mapping_mut().expect("a mapping");
        map.insert(
            "clientConnection".into(),
            serde_yaml::to_value(serde_json::json!({"kubeconfig": cluster.scheduler_kubeconfig.display().to_string()})).unwrap(),
        );
        map.insert(
            "leaderElection".into(),
            serde_yaml::to_value(serde_json::json!({"leaderElect": false})).unwrap(),
        );
        let profiles = map.entry("profiles".into()).or_insert_with(|| {
            serde_yaml::Value::Sequence(vec![serde_yaml::Value::Mapping(Default::default())])
        });
        if let Some(first) = profiles.as_sequence_mut().and_then(|p| p.first_mut()) {
            first["schedulerName"] = name.into();
        }
        if let Some(e) = map
            .get_mut("extenders")
            .and_then(|e| e.as_sequence_mut())
            .and_then(|e| e.first_mut())
        {
            e["urlPrefix"] = url_prefix.into();
        }
        adapt(&mut config);
        let path = cluster.dir.join(format!("scheduler-{name}.yaml"));
        std::fs::write(&path, serde_yaml::to_string(&config).unwrap()).unwrap();
        let log = cluster.dir.join(format!("scheduler-{name}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(&cluster.kube_scheduler)
            .args(["--config"])
            .arg(&path)
            .args([
                "--bind-address",
                "127.0.0.1",
                "--secure-port",
                "0",
                "-v",
                "2",
            ])
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("start kube-scheduler");
        Scheduler {
            child: KillOnDrop(child),
            name: name.to_string(),
            log,
            config: path,
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// The outcome of a run of a realload command.
#[derive(Debug)]
pub struct Output {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or(Value::Null)
    }
}

/// Runs a realload binary to completion against `kubeconfig`.
pub async fn run(binary: &str, kubeconfig: &Path, args: &[&str]) -> Output {
    let out = tokio::process::Command::new(realload_binary(binary))
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("REALLOAD_LOG", "warn")
        .output()
        .await
        .expect("run a realload binary");
    Output {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

//! The end-to-end harness: one real control plane per test run (kube-apiserver and
//! kube-scheduler 1.36 with etcd, on loopback), or any cluster given by `KUBECONFIG`, and helpers
//! to run realload's binaries and kube-scheduler against it.
//!
//! - [`cluster()`]: the shared control plane, started by the first test that asks for it and
//!   stopped (data wiped) when the test process exits.
//! - [`objects`]: scratch namespaces, Nodes made Ready by status patches (there is no kubelet),
//!   pods, and Deployment → ReplicaSet → Pod chains (there is no controller-manager).
//! - [`procs`]: realload's binaries and kube-scheduler as child processes that die with the test.
//! - [`deploy`]: the project's overlays applied to the cluster (for real or as a strict dry run).
#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test harness: failing loudly is right

pub mod deploy;
pub mod objects;
pub mod procs;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use kube::config::{KubeConfigOptions, Kubeconfig};

/// The cluster the e2e tests run against.
#[derive(Debug)]
pub struct Cluster {
    /// Admin credentials.
    pub kubeconfig: PathBuf,
    /// What a kube-scheduler started by a test uses: `system:kube-scheduler` on the bundled
    /// control plane (its real bootstrap RBAC), the admin credentials elsewhere.
    pub scheduler_kubeconfig: PathBuf,
    pub kube_scheduler: PathBuf,
    /// The API server's audit log (bundled control plane only).
    pub audit_log: Option<PathBuf>,
    /// Scratch space for this run.
    pub dir: PathBuf,
    /// True for the control plane this harness started; false for a `KUBECONFIG` cluster.
    pub bundled: bool,
}

/// The workspace root (this crate lives in `tests/e2e`).
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

/// The directory holding `start.sh`, `stop.sh` and `bin/` (kube-apiserver and kube-scheduler,
/// xz-compressed): `REALLOAD_KUBE_DIR`, else `kube` in the checkout's parent's `shared/`.
pub fn kube_dir() -> PathBuf {
    match std::env::var_os("REALLOAD_KUBE_DIR") {
        Some(d) => PathBuf::from(d),
        None => workspace().join("../shared/kube"),
    }
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();

/// The shared cluster: `KUBECONFIG` when set, else a control plane started now (once per test
/// process) and torn down when the process exits.
pub fn cluster() -> &'static Cluster {
    CLUSTER.get_or_init(|| match std::env::var_os("KUBECONFIG") {
        Some(k) if !k.is_empty() => external(PathBuf::from(k)),
        _ => start_bundled(),
    })
}

/// The audit policy of the bundled control plane: who did what to which resource, no bodies.
const AUDIT_POLICY: &str = "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n- level: Metadata\n";

fn run_dir() -> PathBuf {
    let base = std::env::var_os("CARGO_TARGET_TMPDIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = base.join(format!("realload-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create the e2e run directory");
    dir
}

fn start_bundled() -> Cluster {
    let kube = kube_dir();
    let start = kube.join("start.sh");
    assert!(
        start.exists(),
        "no control plane scripts at {} (set REALLOAD_KUBE_DIR, or KUBECONFIG for an existing cluster)",
        kube.display()
    );
    let dir = run_dir();
    let instance = dir.join("control-plane");
    let audit_policy = dir.join("audit-policy.yaml");
    let audit_log = dir.join("audit.log");
    std::fs::write(&audit_policy, AUDIT_POLICY).expect("write the audit policy");
    let args = format!(
        "--audit-policy-file={} --audit-log-path={} --audit-log-maxsize=0",
        audit_policy.display(),
        audit_log.display()
    );
    let status = Command::new("bash")
        .arg(&start)
        .arg(&instance)
        .env("REALLOAD_APISERVER_ARGS", args)
        .env_remove("KUBECONFIG")
        .status()
        .expect("run start.sh");
    assert!(
        status.success(),
        "the control plane did not start (tests/run.sh installs etcd-server, openssl, curl and xz-utils)"
    );
    // Stop it (and wipe its data) when this test process ends, whatever way it ends.
    let reaper = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 1; done; bash {stop} {inst} --wipe >/dev/null 2>&1",
        pid = std::process::id(),
        stop = kube.join("stop.sh").display(),
        inst = instance.display()
    );
    Command::new("setsid")
        .args(["-f", "sh", "-c", &reaper])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        // `setsid -f` forks the reaper off and returns at once
        .status()
        .expect("start the control plane's reaper (setsid)");
    let env = std::fs::read_to_string(instance.join("env")).expect("read the control plane's env");
    let var = |name: &str| {
        env.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .map(PathBuf::from)
            .unwrap_or_else(|| panic!("{name} missing from the control plane's env"))
    };
    Cluster {
        kubeconfig: var("KUBECONFIG"),
        scheduler_kubeconfig: var("SCHEDULER_KUBECONFIG"),
        kube_scheduler: var("KUBE_SCHEDULER"),
        audit_log: Some(audit_log),
        dir,
        bundled: true,
    }
}

/// A cluster someone else runs (kind, a test cluster): the tests bring their own kube-scheduler.
fn external(kubeconfig: PathBuf) -> Cluster {
    eprintln!(
        "e2e: using the cluster in KUBECONFIG={}",
        kubeconfig.display()
    );
    Cluster {
        scheduler_kubeconfig: kubeconfig.clone(),
        kubeconfig,
        kube_scheduler: unpacked_kube_scheduler(),
        audit_log: None,
        dir: run_dir(),
        bundled: false,
    }
}

/// kube-scheduler unpacked from the control plane's binaries (as start.sh would).
fn unpacked_kube_scheduler() -> PathBuf {
    let cache = std::env::var_os("REALLOAD_KUBE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("realload-kube-1.36.1"));
    let target = cache.join("bin/kube-scheduler");
    if !target.exists() {
        std::fs::create_dir_all(cache.join("bin")).expect("create the binary cache");
        let packed = kube_dir().join("bin/kube-scheduler.xz");
        let status = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "xz -dc {} > {t}.tmp && chmod +x {t}.tmp && mv {t}.tmp {t}",
                packed.display(),
                t = target.display()
            ))
            .status()
            .expect("unpack kube-scheduler");
        assert!(status.success(), "could not unpack {}", packed.display());
    }
    target
}

impl Cluster {
    /// A client with the admin credentials; kube's automatic retries off, so tests see every
    /// answer as the API gave it.
    pub async fn client(&self) -> kube::Client {
        client_from(&self.kubeconfig).await
    }

    /// The CA and server address of the admin kubeconfig (to build ServiceAccount kubeconfigs).
    pub fn server_and_ca(&self) -> (String, Option<String>) {
        let config = Kubeconfig::read_from(&self.kubeconfig).expect("read the kubeconfig");
        let cluster = config
            .clusters
            .first()
            .and_then(|c| c.cluster.clone())
            .expect("a cluster in the kubeconfig");
        let ca = cluster.certificate_authority.clone().or_else(|| {
            cluster.certificate_authority_data.as_ref().map(|data| {
                let path = self.dir.join("ca-from-kubeconfig.crt");
                use base64::Engine as _;
                let pem = base64::engine::general_purpose::STANDARD
                    .decode(data.trim())
                    .expect("certificate-authority-data is base64");
                std::fs::write(&path, pem).expect("write the CA");
                path.display().to_string()
            })
        });
        (cluster.server.expect("a server in the kubeconfig"), ca)
    }

    /// Writes a kubeconfig that authenticates with `token` (a ServiceAccount's).
    pub fn token_kubeconfig(&self, name: &str, token: &str) -> PathBuf {
        let (server, ca) = self.server_and_ca();
        let ca_line = match ca {
            Some(ca) => format!("    certificate-authority: {ca}\n"),
            None => "    insecure-skip-tls-verify: true\n".to_string(),
        };
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {server}\n{ca_line}users:\n- name: {name}\n  user:\n    token: {token}\ncontexts:\n- name: c\n  context: {{cluster: c, user: {name}}}\ncurrent-context: c\n"
        );
        let path = self.dir.join(format!("{name}.kubeconfig"));
        std::fs::write(&path, text).expect("write a token kubeconfig");
        path
    }
}

/// A client for a kubeconfig file, without automatic retries.
pub async fn client_from(path: &Path) -> kube::Client {
    let kubeconfig = Kubeconfig::read_from(path).expect("read the kubeconfig");
    let mut config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .expect("a usable kubeconfig");
    config.default_retry = false;
    kube::Client::try_from(config).expect("a client")
}

/// A name unique to this test run: `prefix-<pid>-<n>`, short enough for labels.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id() % 100_000,
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

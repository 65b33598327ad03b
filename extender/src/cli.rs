//! Command line of `realload-extender` and what each subcommand runs.

use std::net::SocketAddr;
use std::path::PathBuf;

use std::time::Duration;

use clap::{Parser, Subcommand};
use realload_common::cli::{OutputFormat, PolicyArgs, SnapshotArgs};
use realload_common::runtime::LogArgs;

#[derive(Debug, Parser)]
#[command(
    name = "realload-extender",
    version,
    about = "Real-load kube-scheduler extender and load collector"
)]
pub struct Cli {
    #[command(flatten)]
    pub log: LogArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the kube-scheduler extender API (POST /filter, /prioritize).
    Serve(ServeArgs),
    /// Collect node utilisation and write it into Node annotations.
    Collect(CollectArgs),
    /// Rank candidate nodes for a pod as the extender would, with every reading and reason.
    Explain(ExplainArgs),
    /// Check a policy file and/or a whitelist without a cluster; every problem is printed with
    /// its path. Exits 0 when all are valid, 1 otherwise.
    Validate(crate::validate::ValidateArgs),
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub policy: PolicyArgs,
    #[command(flatten)]
    pub snapshot: SnapshotArgs,
    /// realload's namespace: where the learned workload usage ConfigMap is read.
    #[arg(long, env = "POD_NAMESPACE", default_value = "realload-system")]
    pub namespace: String,
    /// Address of the extender API (what kube-scheduler calls).
    #[arg(long, env = "REALLOAD_LISTEN", default_value = "0.0.0.0:8888")]
    pub listen: SocketAddr,
    /// Address of the admin endpoints: /healthz, /readyz, /metrics, /debug/nodes and the
    /// node-heat page at / (no client certificate asked, so the kubelet's probes and Prometheus
    /// reach them).
    #[arg(long, env = "REALLOAD_ADMIN_LISTEN", default_value = "0.0.0.0:8081")]
    pub admin_listen: SocketAddr,
    /// Serve the admin endpoints over HTTPS too (the --tls-cert certificate, no client auth).
    #[arg(long, env = "REALLOAD_ADMIN_TLS", requires = "tls_cert")]
    pub admin_tls: bool,
    /// After SIGTERM, keep answering this long while unready, so that kube-scheduler stops
    /// calling before the listener closes (terminationGracePeriodSeconds must exceed it plus 10s).
    #[arg(long, env = "REALLOAD_DRAIN_PERIOD", default_value = "10s", value_parser = parse_std_duration)]
    pub drain_period: Duration,
    /// Prefix of the extender routes, e.g. `/scheduler` for `/scheduler/filter`.
    #[arg(long, env = "REALLOAD_PATH_PREFIX", default_value = "")]
    pub path_prefix: String,
    /// TLS certificate (PEM); with --tls-key, serve HTTPS.
    #[arg(long, env = "REALLOAD_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, env = "REALLOAD_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// CA bundle (PEM): when set, clients must present a certificate it signed.
    #[arg(long, env = "REALLOAD_CLIENT_CA", requires = "tls_cert")]
    pub client_ca: Option<PathBuf>,
    /// Largest request body accepted, in bytes.
    #[arg(long, env = "REALLOAD_BODY_LIMIT", default_value_t = 64 * 1024 * 1024)]
    pub body_limit: usize,
    /// Perform the Binding for kube-scheduler (configure `bindVerb: bind`).
    #[arg(long, env = "REALLOAD_BIND")]
    pub bind: bool,
    /// Connections the API listener keeps open at most (the admin one keeps 128); one more is
    /// closed at once. Lowered at start when the open-file limit cannot hold it.
    #[arg(long, env = "REALLOAD_MAX_CONNECTIONS", default_value_t = 1024,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: u32,
    /// Requests the API listener serves at once at most; one more gets 503 at once.
    #[arg(long, env = "REALLOAD_MAX_IN_FLIGHT", default_value_t = 256,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_in_flight: u32,
    /// Close connections that have not sent complete request headers within this time.
    #[arg(long, default_value = "10s", value_parser = parse_std_duration)]
    pub header_read_timeout: Duration,
    /// Answer 408 to requests not served within this time (kube-scheduler's own timeout is 5s).
    #[arg(long, default_value = "30s", value_parser = parse_std_duration)]
    pub request_timeout: Duration,
}

fn parse_std_duration(text: &str) -> Result<Duration, String> {
    let d = realload_common::policy::parse_duration(text)?;
    d.try_into()
        .map_err(|_| format!("{text:?} must not be negative"))
}

/// Where the collector reads utilisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Source {
    Prometheus,
    NodeExporter,
}

#[derive(Debug, clap::Args)]
pub struct CollectArgs {
    #[command(flatten)]
    pub policy: PolicyArgs,
    #[command(flatten)]
    pub snapshot: SnapshotArgs,
    /// Where readings come from.
    #[arg(long, env = "REALLOAD_SOURCE", value_enum, default_value_t = Source::Prometheus)]
    pub source: Source,
    /// Prometheus base URL, e.g. http://prometheus.monitoring:9090.
    #[arg(long, env = "REALLOAD_PROMETHEUS_URL")]
    pub prometheus_url: Option<String>,
    /// File holding a bearer token for Prometheus.
    #[arg(long, env = "REALLOAD_PROMETHEUS_TOKEN_FILE")]
    pub bearer_token_file: Option<PathBuf>,
    /// CA bundle (PEM) for Prometheus' certificate.
    #[arg(long, env = "REALLOAD_PROMETHEUS_CA")]
    pub prometheus_ca: Option<PathBuf>,
    /// node-exporter port on each node (with --source node-exporter).
    #[arg(long, env = "REALLOAD_NODE_EXPORTER_PORT", default_value_t = 9100)]
    pub node_exporter_port: u16,
    /// Run one cycle and exit.
    #[arg(long)]
    pub once: bool,
    /// Compute the patches and print them; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Output of a --once run.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
    /// Admin endpoints (/healthz, /readyz, /metrics).
    #[arg(long, env = "REALLOAD_ADMIN_LISTEN", default_value = "0.0.0.0:8081")]
    pub admin_listen: SocketAddr,
    /// Time allowed for one Prometheus query or node-exporter scrape.
    #[arg(long, env = "REALLOAD_QUERY_TIMEOUT", default_value = "10s", value_parser = parse_std_duration)]
    pub query_timeout: Duration,
    /// Attempts per Prometheus query (with backoff) before its readings are skipped.
    #[arg(long, default_value_t = 3)]
    pub query_attempts: u32,
    /// node-exporter scrapes in flight at once.
    #[arg(long, default_value_t = 32)]
    pub scrape_concurrency: usize,
    /// Scrape this host for every node instead of its InternalIP (testing on one machine).
    #[arg(long, hide = true)]
    pub node_exporter_host: Option<String>,
    /// Node patches per second at most.
    #[arg(long, env = "REALLOAD_PATCH_QPS", default_value_t = 20.0)]
    pub patch_qps: f64,
    /// This replica's name in the Lease (default: $POD_NAME, else $HOSTNAME).
    #[arg(long)]
    pub identity: Option<String>,
    /// realload's namespace: the leader-election Lease and the learned workload usage
    /// ConfigMap live here.
    #[arg(long, env = "POD_NAMESPACE", default_value = "realload-system")]
    pub lease_namespace: String,
    /// Name of the leader-election Lease.
    #[arg(
        long,
        env = "REALLOAD_LEASE_NAME",
        default_value = "realload-collector"
    )]
    pub lease_name: String,
    /// How long a lease holds without renewal; a standby takes over after it lapses.
    #[arg(long, default_value = "15s", value_parser = parse_std_duration)]
    pub lease_duration: Duration,
}

#[derive(Debug, clap::Args)]
pub struct ExplainArgs {
    #[command(flatten)]
    pub policy: PolicyArgs,
    #[command(flatten)]
    pub snapshot: SnapshotArgs,
    /// realload's namespace: where the learned workload usage ConfigMap is read.
    #[arg(long, env = "POD_NAMESPACE", default_value = "realload-system")]
    pub namespace: String,
    /// The pod to place (YAML or JSON Pod manifest).
    #[arg(long)]
    pub pod: PathBuf,
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

//! Command line of `realload-descheduler`.

use clap::Parser;
use realload_common::cli::{OutputFormat, PolicyArgs, SnapshotArgs};
use realload_common::runtime::LogArgs;
use realload_common::whitelist;

#[derive(Debug, Parser)]
#[command(
    name = "realload-descheduler",
    version,
    about = "Evict one mid-size replica of multi-replica workloads from nodes that really run hot"
)]
pub struct Cli {
    #[command(flatten)]
    pub log: LogArgs,
    #[command(flatten)]
    pub policy: PolicyArgs,
    #[command(flatten)]
    pub snapshot: SnapshotArgs,
    /// Compute and print the plan; change nothing. Always on with --snapshot.
    #[arg(long, env = "REALLOAD_DRY_RUN")]
    pub dry_run: bool,
    /// Output format of the report.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
    /// The whitelist ConfigMap, as namespace/name.
    #[arg(long, env = "REALLOAD_WHITELIST_CONFIGMAP", default_value_t = format!("{}/{}", whitelist::DEFAULT_NAMESPACE, whitelist::DEFAULT_NAME))]
    pub whitelist_configmap: String,
    /// Run without a whitelist ConfigMap instead of aborting when it is missing.
    #[arg(long)]
    pub allow_missing_whitelist: bool,
    /// Where each workload's last eviction is recorded (the cooldown across runs), namespace/name.
    #[arg(
        long,
        env = "REALLOAD_STATE_CONFIGMAP",
        default_value = "realload-system/realload-descheduler-state"
    )]
    pub state_configmap: String,
    /// realload's namespace: the learned workload usage ConfigMap (`workloadUsage.configMap`)
    /// is read there.
    #[arg(long, env = "POD_NAMESPACE", default_value = "realload-system")]
    pub namespace: String,
}

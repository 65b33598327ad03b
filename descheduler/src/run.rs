//! One descheduler run, from the command line to the exit status: read the inputs (from the API
//! or a snapshot), plan, evict unless it is a dry run, report.

use std::process::ExitCode;

use clap::Parser;
use realload_common::cli::OutputFormat;
use realload_common::client::{self, Throttled};
use tokio_util::sync::CancellationToken;

use crate::cli::Cli;
use crate::error::{EXIT_BAD_INPUT, EXIT_OK, RunError};
use crate::evict::execute;
use crate::gather::{self, LiveArgs};
use crate::report::{Report, render_table};

fn print(report: &Report, output: OutputFormat) {
    let text = match output {
        OutputFormat::Json => match serde_json::to_string_pretty(report) {
            Ok(text) => text,
            Err(e) => {
                eprintln!("error: encoding the report: {e}");
                return;
            }
        },
        OutputFormat::Table => render_table(report),
    };
    if let Err(e) = realload_common::cli::write_stdout(&text) {
        eprintln!("error: writing the report to stdout: {e}");
    }
}

/// A run; `Ok` carries the report and its exit status (a run that stopped mid-way reports what
/// it did and exits 2).
async fn descheduler(cli: &Cli) -> Result<(Report, u8), RunError> {
    let shutdown: CancellationToken =
        realload_common::runtime::shutdown_token().map_err(|e| RunError::Startup(e.to_string()))?;
    let policy = realload_common::cli::load_policy(cli.policy.policy.as_deref())?;
    let now = cli.snapshot.now();
    if let Some(path) = &cli.snapshot.snapshot {
        // A snapshot is always a dry run.
        let snap = gather::load_snapshot(path)?;
        let plan = gather::plan_snapshot(
            &policy,
            &snap,
            &cli.whitelist_configmap,
            cli.allow_missing_whitelist,
            &cli.state_configmap,
            &cli.namespace,
            now,
        )?;
        return Ok((Report::from_plan(plan, true), EXIT_OK));
    }
    let client = client::build(Throttled::Return).await?;
    let args = LiveArgs {
        whitelist_ref: &cli.whitelist_configmap,
        allow_missing: cli.allow_missing_whitelist,
        state_ref: &cli.state_configmap,
        namespace: &cli.namespace,
        dry_run: cli.dry_run,
        now,
    };
    let plan = gather::plan_live(&client, &policy, &args).await?;
    if cli.dry_run {
        return Ok((Report::from_plan(plan, true), EXIT_OK));
    }
    Ok(execute(&client, plan, &cli.state_configmap, &shutdown).await)
}

/// Parses the command line (a usage error exits 1, like any bad input; `--help` and
/// `--version` exit 0), runs, prints the report and returns the exit status.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() {
                EXIT_BAD_INPUT
            } else {
                EXIT_OK
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    if let Err(e) = realload_common::runtime::init_tracing(&cli.log) {
        eprintln!("error: {e}");
        return ExitCode::from(EXIT_BAD_INPUT);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return ExitCode::from(RunError::Startup(e.to_string()).exit_code());
        }
    };
    match runtime.block_on(descheduler(&cli)) {
        Ok((report, code)) => {
            print(&report, cli.output);
            if let Some(e) = &report.error {
                eprintln!("error: {e}");
            }
            ExitCode::from(code)
        }
        Err(e) => {
            eprintln!("error: {e}");
            if cli.output == OutputFormat::Json {
                print(&Report::failed(e.to_string()), cli.output);
            }
            ExitCode::from(e.exit_code())
        }
    }
}

#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use realload_common::cli::OutputFormat;
use realload_descheduler::cli::Cli;
use realload_descheduler::run::{
    self, EXIT_API_FAILED, EXIT_BAD_INPUT, EXIT_OK, LiveArgs, Report, RunError,
};

fn print(report: &Report, output: OutputFormat) {
    let text = match output {
        OutputFormat::Json => match serde_json::to_string_pretty(report) {
            Ok(text) => text,
            Err(e) => {
                eprintln!("error: encoding the report: {e}");
                return;
            }
        },
        OutputFormat::Table => run::render_table(report),
    };
    if let Err(e) = realload_common::cli::write_stdout(&text) {
        eprintln!("error: writing the report to stdout: {e}");
    }
}

fn fail(e: &RunError) -> u8 {
    eprintln!("error: {e}");
    match e {
        RunError::BadInput(_) => EXIT_BAD_INPUT,
        RunError::Api(_) => EXIT_API_FAILED,
    }
}

async fn descheduler(cli: Cli) -> u8 {
    let shutdown = match realload_common::runtime::shutdown_token() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_API_FAILED;
        }
    };
    let policy = match realload_common::cli::load_policy(cli.policy.policy.as_deref()) {
        Ok(p) => p,
        Err(e) => return fail(&RunError::BadInput(e.to_string())),
    };
    let now = cli.snapshot.now();
    if let Some(path) = &cli.snapshot.snapshot {
        // A snapshot is always a dry run.
        let result = run::load_snapshot(path).and_then(|snap| {
            run::plan_snapshot(
                &policy,
                &snap,
                &cli.whitelist_configmap,
                cli.allow_missing_whitelist,
                &cli.state_configmap,
                now,
            )
        });
        return match result {
            Ok(plan) => {
                print(&Report::from_plan(plan, true), cli.output);
                EXIT_OK
            }
            Err(e) => fail(&e),
        };
    }
    let client = match kube::Config::infer().await {
        Ok(mut config) => {
            // An eviction refused by a PodDisruptionBudget is a 429: never retry it automatically.
            config.default_retry = false;
            match kube::Client::try_from(config) {
                Ok(c) => c,
                Err(e) => {
                    return fail(&RunError::Api(format!(
                        "building the Kubernetes client: {e}"
                    )));
                }
            }
        }
        Err(e) => {
            return fail(&RunError::Api(format!(
                "no Kubernetes configuration (in-cluster or KUBECONFIG): {e}"
            )));
        }
    };
    let args = LiveArgs {
        whitelist_ref: &cli.whitelist_configmap,
        allow_missing: cli.allow_missing_whitelist,
        state_ref: &cli.state_configmap,
        dry_run: cli.dry_run,
        now,
    };
    let plan = match run::plan_live(&client, &policy, &args).await {
        Ok(p) => p,
        Err(e) => return fail(&e),
    };
    if cli.dry_run {
        print(&Report::from_plan(plan, true), cli.output);
        return EXIT_OK;
    }
    let (report, code) = run::execute(&client, plan, &cli.state_configmap, &shutdown).await;
    print(&report, cli.output);
    if let Some(e) = &report.error {
        eprintln!("error: {e}");
    }
    code
}

fn main() -> ExitCode {
    let cli = Cli::parse();
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
            return ExitCode::from(EXIT_API_FAILED);
        }
    };
    ExitCode::from(runtime.block_on(descheduler(cli)))
}

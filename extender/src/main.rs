#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use realload_extender::cli::{Cli, Command};

/// Runs the subcommand; any failure is printed once and exits 1 (a usage error too: `--help`
/// and `--version` exit 0).
fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(u8::from(e.use_stderr()));
        }
    };
    let json = wants_json(&cli);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let text = describe(&e);
            if json {
                // A pipeline reading stdout gets JSON on failure too.
                let _ = realload_common::cli::write_stdout(
                    &serde_json::json!({ "error": text }).to_string(),
                );
            }
            eprintln!("error: {text}");
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, each said once: the library errors already name their source in
/// their own message, which `{:#}` would repeat.
fn describe(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

/// Whether the command prints JSON (`--output json`).
fn wants_json(cli: &Cli) -> bool {
    use realload_common::cli::OutputFormat;
    match &cli.command {
        Command::Explain(args) => args.output == OutputFormat::Json,
        Command::Collect(args) => args.output == OutputFormat::Json,
        Command::Serve(_) | Command::Validate(_) => false,
    }
}

#[tokio::main]
async fn run(cli: Cli) -> anyhow::Result<()> {
    realload_common::runtime::init_tracing(&cli.log)?;
    let shutdown = realload_common::runtime::shutdown_token()?;
    match &cli.command {
        Command::Serve(args) => realload_extender::serve::run(args, shutdown).await,
        Command::Explain(args) => realload_extender::explain::run(args, shutdown).await,
        Command::Collect(args) => realload_extender::collect::run(args, shutdown).await,
        Command::Validate(args) => {
            if realload_extender::validate::run(args)? {
                Ok(())
            } else {
                anyhow::bail!("validation failed")
            }
        }
    }
}

#![forbid(unsafe_code)]

use clap::Parser;
use realload_extender::cli::{Cli, Command};

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    realload_common::runtime::init_tracing(&cli.log)?;
    match &cli.command {
        Command::Explain(args) => realload_extender::cli::run_explain(args),
        Command::Serve(_) => anyhow::bail!("`serve` is not implemented yet (issue 4)"),
        Command::Collect(_) => anyhow::bail!("`collect` is not implemented yet (issue 5)"),
    }
}

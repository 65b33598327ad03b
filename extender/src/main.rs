#![forbid(unsafe_code)]

use clap::Parser;
use realload_extender::cli::{Cli, Command};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    realload_common::runtime::init_tracing(&cli.log)?;
    let shutdown = realload_common::runtime::shutdown_token()?;
    match &cli.command {
        Command::Serve(args) => realload_extender::serve::run(args, shutdown).await,
        Command::Explain(args) => realload_extender::explain::run(args, shutdown).await,
        Command::Collect(args) => realload_extender::collect::run(args, shutdown).await,
    }
}

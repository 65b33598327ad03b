#![forbid(unsafe_code)]

use clap::Parser;
use realload_descheduler::cli::Cli;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    realload_common::runtime::init_tracing(&cli.log)?;
    anyhow::bail!("the descheduler run is not implemented yet (issue 6)")
}

//! docs/configuration.md lists every `realload-descheduler` flag with its default and env.

use clap::CommandFactory;
use realload_test_support::docs_check::flag_problems;

#[test]
fn every_flag_is_documented_with_its_default_and_env() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/configuration.md"
    ))
    .unwrap_or_default();
    let problems = flag_problems(
        &text,
        "### `realload-descheduler`",
        "Flags shared by every command",
        &realload_descheduler::cli::Cli::command(),
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

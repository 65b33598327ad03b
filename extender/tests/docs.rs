//! docs/configuration.md lists every flag of every `realload-extender` command with its default.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers may panic

use clap::CommandFactory;
use realload_test_support::docs_check::flag_problems;

fn docs() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/configuration.md"
    ))
    .unwrap()
}

#[test]
fn every_flag_is_documented_with_its_default_and_env() {
    let text = docs();
    let cli = realload_extender::cli::Cli::command();
    let mut problems = Vec::new();
    for sub in cli.get_subcommands() {
        problems.extend(flag_problems(
            &text,
            &format!("### `realload-extender {}`", sub.get_name()),
            "Flags shared by every command",
            sub,
        ));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

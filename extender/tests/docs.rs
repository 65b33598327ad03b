//! docs/configuration.md lists every flag of every `realload-extender` command with its default.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers may panic

use clap::CommandFactory;
use realload_test_support::docs_check::{same_value, table_after};

fn docs() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/configuration.md"
    ))
    .unwrap()
}

#[test]
fn every_flag_is_documented_with_its_default() {
    let text = docs();
    let shared = table_after(&text, "Flags shared by every command");
    let cli = realload_extender::cli::Cli::command();
    let mut problems = Vec::new();
    for sub in cli.get_subcommands() {
        let rows = table_after(
            &text,
            &format!("### `realload-extender {}`", sub.get_name()),
        );
        assert!(!rows.is_empty(), "no table for {}", sub.get_name());
        for arg in sub.get_arguments() {
            let (Some(long), false) = (arg.get_long(), arg.is_hide_set()) else {
                continue;
            };
            if long == "help" {
                continue;
            }
            let flag = format!("--{long}");
            let Some((_, documented)) = rows.iter().chain(shared.iter()).find(|(f, _)| *f == flag)
            else {
                problems.push(format!("{} {flag} is not documented", sub.get_name()));
                continue;
            };
            if let Some(default) = arg.get_default_values().first().and_then(|d| d.to_str()) {
                let doc = documented.split_whitespace().next().unwrap_or("");
                let empty_ok = default.is_empty() && documented.contains("empty");
                if !(same_value(doc, default) || empty_ok) {
                    problems.push(format!(
                        "{} {flag}: documented {documented:?}, code {default:?}",
                        sub.get_name()
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

//! docs/configuration.md lists every `realload-descheduler` flag with its default.

use clap::CommandFactory;
use realload_test_support::docs_check::{same_value, table_after};

#[test]
fn every_flag_is_documented_with_its_default() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/configuration.md"
    ))
    .unwrap_or_default();
    let rows = table_after(&text, "### `realload-descheduler`");
    let shared = table_after(&text, "Flags shared by every command");
    let mut problems = Vec::new();
    for arg in realload_descheduler::cli::Cli::command().get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if long == "help" || long == "version" {
            continue;
        }
        let flag = format!("--{long}");
        let Some((_, documented)) = rows.iter().chain(shared.iter()).find(|(f, _)| *f == flag)
        else {
            problems.push(format!("{flag} is not documented"));
            continue;
        };
        if let Some(default) = arg.get_default_values().first().and_then(|d| d.to_str()) {
            let doc = documented.split_whitespace().next().unwrap_or("");
            if !same_value(doc, default) {
                problems.push(format!(
                    "{flag}: documented {documented:?}, code {default:?}"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

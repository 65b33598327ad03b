//! docs/configuration.md states every policy default the code has, and no other.

#[test]
fn documented_policy_defaults_match_the_code() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/configuration.md"
    ))
    .unwrap_or_default();
    assert!(!text.is_empty(), "docs/configuration.md is missing");
    let problems = realload_test_support::docs_check::policy_table_mismatches(&text);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_checker_notices_a_wrong_default() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/configuration.md"
    ))
    .unwrap_or_default();
    let wrong = text.replace(
        "| `guards.unknownLoad` | `1.0` |",
        "| `guards.unknownLoad` | `0.9` |",
    );
    let problems = realload_test_support::docs_check::policy_table_mismatches(&wrong);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].starts_with("guards.unknownLoad"));
}

#[test]
fn the_flag_checker_notices_a_missing_flag_a_wrong_default_and_a_missing_env() {
    use clap::{Arg, Command};
    use realload_test_support::docs_check::flag_problems;
    let command = Command::new("serve")
        .arg(
            Arg::new("listen")
                .long("listen")
                .env("REALLOAD_LISTEN")
                .default_value("0.0.0.0:8888"),
        )
        .arg(Arg::new("drain").long("drain-period").default_value("10s"))
        .arg(Arg::new("bind").long("bind").env("REALLOAD_BIND"));
    let table = "### `serve`\n\n| flag | default | env | meaning |\n|---|---|---|---|\n\
                 | `--listen` | `0.0.0.0:8888` | `REALLOAD_LISTEN` | x |\n\
                 | `--drain-period` | `10 s` | | y |\n";
    let problems = flag_problems(table, "### `serve`", "none", &command);
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems[0].contains("--drain-period: documented"));
    assert!(problems[1].contains("--bind is not documented"));
    let fixed = table.replace("`10 s`", "`10s`") + "| `--bind` | off | | z |\n";
    let problems = flag_problems(&fixed, "### `serve`", "none", &command);
    assert_eq!(
        problems,
        vec!["serve --bind: reads REALLOAD_BIND, documented env \"\"".to_string()]
    );
}

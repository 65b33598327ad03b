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

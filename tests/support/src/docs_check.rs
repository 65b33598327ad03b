//! Checks `docs/configuration.md` against the code's defaults (used by the crates' docs tests).

use realload_common::policy::{Policy, field_values, parse_duration};
use realload_common::quantity;

/// The rows of the markdown table that follows `heading`: every cell, backticks removed.
pub fn table_rows(markdown: &str, heading: &str) -> Vec<Vec<String>> {
    let Some(start) = markdown.find(heading) else {
        return Vec::new();
    };
    markdown[start..]
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let inner = &cells[1..cells.len().saturating_sub(1).max(1)];
            inner
                .iter()
                .map(|c| c.trim_matches('`').to_string())
                .collect()
        })
        .collect()
}

/// The first two cells of each row of the table that follows `heading`.
pub fn table_after(markdown: &str, heading: &str) -> Vec<(String, String)> {
    table_rows(markdown, heading)
        .into_iter()
        .filter_map(|cells| {
            let mut cells = cells.into_iter();
            Some((cells.next()?, cells.next()?))
        })
        .collect()
}

/// Every flag of `command` is in the table under `heading` (or under `shared`, for the flags
/// all commands take), with its default and, when it reads one, its environment variable.
pub fn flag_problems(
    markdown: &str,
    heading: &str,
    shared: &str,
    command: &clap::Command,
) -> Vec<String> {
    let rows = table_rows(markdown, heading);
    let shared = table_rows(markdown, shared);
    let name = command.get_name();
    if rows.is_empty() {
        return vec![format!("no flag table under {heading:?}")];
    }
    let mut problems = Vec::new();
    for arg in command.get_arguments() {
        let (Some(long), false) = (arg.get_long(), arg.is_hide_set()) else {
            continue;
        };
        if long == "help" || long == "version" {
            continue;
        }
        let flag = format!("--{long}");
        let Some(row) = rows.iter().chain(shared.iter()).find(|r| r[0] == flag) else {
            problems.push(format!("{name} {flag} is not documented"));
            continue;
        };
        let documented = row.get(1).map_or("", String::as_str);
        if let Some(default) = arg.get_default_values().first().and_then(|d| d.to_str()) {
            let first = documented.split_whitespace().next().unwrap_or("");
            let empty_ok = default.is_empty() && documented.contains("empty");
            if !(same_value(first, default) || empty_ok) {
                problems.push(format!(
                    "{name} {flag}: documented {documented:?}, code {default:?}"
                ));
            }
        }
        let env_cell = row.get(2).map_or("", String::as_str);
        if let Some(env) = arg.get_env().and_then(|e| e.to_str())
            && !env_cell.split([',', '`', ' ']).any(|v| v == env)
        {
            problems.push(format!(
                "{name} {flag}: reads {env}, documented env {env_cell:?}"
            ));
        }
    }
    problems
}

/// Whether a documented default and a code default say the same thing.
pub fn same_value(documented: &str, actual: &str) -> bool {
    let documented = documented.trim();
    if documented == actual {
        return true;
    }
    if let (Ok(a), Ok(b)) = (documented.parse::<f64>(), actual.parse::<f64>()) {
        return (a - b).abs() < 1e-12;
    }
    if let (Ok(a), Ok(b)) = (parse_duration(documented), parse_duration(actual)) {
        return a == b;
    }
    if let (Ok(a), Ok(b)) = (
        quantity::cpu_millis(documented),
        quantity::cpu_millis(actual),
    ) {
        return a == b;
    }
    false
}

/// Every mismatch between the documented policy table and `Policy::default()`.
pub fn policy_table_mismatches(markdown: &str) -> Vec<String> {
    let rows = table_after(markdown, "## Policy file");
    let mut problems = Vec::new();
    let values = field_values(&Policy::default());
    for (path, actual) in &values {
        match rows.iter().find(|(p, _)| p == path) {
            None => problems.push(format!("{path} is not documented")),
            Some((_, documented)) if !same_value(documented, actual) => problems.push(format!(
                "{path}: documented {documented:?}, code {actual:?}"
            )),
            Some(_) => {}
        }
    }
    for (path, _) in &rows {
        if !values.iter().any(|(p, _)| p == path) {
            problems.push(format!("{path} is documented but not a policy field"));
        }
    }
    problems
}

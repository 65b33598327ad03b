//! Checks `docs/configuration.md` against the code's defaults (used by the crates' docs tests).

use realload_common::policy::{Policy, field_values, parse_duration};
use realload_common::quantity;

/// The rows of the markdown table that follows `heading` (first two cells, backticks removed).
pub fn table_after(markdown: &str, heading: &str) -> Vec<(String, String)> {
    let Some(start) = markdown.find(heading) else {
        return Vec::new();
    };
    markdown[start..]
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let strip = |s: &str| s.trim_matches('`').to_string();
            Some((strip(cells.get(1)?), strip(cells.get(2)?)))
        })
        .collect()
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

//! Guards applied to YAML before it is parsed: the parser's time grows with nesting faster than
//! linearly (100,000 levels took over 20 s), so nesting is bounded first, in one linear pass.

/// Deepest nesting accepted in a policy, snapshot or pod file. Real ones stay under 20.
pub const MAX_DEPTH: usize = 64;

/// A leading UTF-8 byte-order mark, which some editors write, is not part of the YAML.
pub fn strip_bom(text: &str) -> &str {
    text.strip_prefix('\u{feff}').unwrap_or(text)
}

/// Why `text` nests too deeply to be parsed, if it does: flow collections (`[`, `{`) are counted
/// outside quoted scalars, block collections by indentation and by compact `- - -` items.
pub fn nesting_problem(text: &str) -> Option<String> {
    let mut flow: usize = 0;
    for (number, line) in text.lines().enumerate() {
        let indent = line.len() - line.trim_start_matches([' ', '\t']).len();
        let mut rest = line.trim_start_matches([' ', '\t']);
        let mut compact = 0;
        while let Some(after) = rest.strip_prefix("- ").or_else(|| rest.strip_prefix("? ")) {
            compact += 1;
            rest = after.trim_start_matches(' ');
        }
        // Two columns a level, the usual indentation: 64 levels are 128 columns.
        let block = indent / 2 + compact;
        if block > MAX_DEPTH && !line.trim().is_empty() {
            return Some(format!(
                "line {}: nesting deeper than {MAX_DEPTH} levels (indented {indent} columns)",
                number + 1
            ));
        }
        let mut quote: Option<char> = None;
        let mut previous = ' ';
        for c in line.chars() {
            match (quote, c) {
                (None, '#') if previous == ' ' || previous == '\t' => break,
                (None, '"' | '\'') => quote = Some(c),
                (Some('"'), '"') if previous != '\\' => quote = None,
                (Some('\''), '\'') => quote = None,
                (None, '[' | '{') => {
                    flow += 1;
                    if flow + block > MAX_DEPTH {
                        return Some(format!(
                            "line {}: nesting deeper than {MAX_DEPTH} levels",
                            number + 1
                        ));
                    }
                }
                (None, ']' | '}') => flow = flow.saturating_sub(1),
                _ => {}
            }
            previous = c;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_flow_block_and_compact_nesting_are_refused_in_linear_time() {
        let flow = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let started = std::time::Instant::now();
        assert!(nesting_problem(&flow).unwrap().contains("deeper than 64"));
        let compact = format!("{}x\n", "- ".repeat(100_000));
        assert!(nesting_problem(&compact).is_some());
        let block: String = (0..200)
            .map(|i| format!("{}k{i}:\n", "  ".repeat(i)))
            .collect();
        assert!(nesting_problem(&block).unwrap().contains("line"));
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn ordinary_files_and_brackets_in_strings_pass() {
        let policy = "apiVersion: realload.io/v1alpha1\nkind: Policy\nmetrics:\n  - name: cpu-avg-5m\n    query: 'avg by (instance) (rate(x[5m]))'\n    weight: 1\nprotected:\n  namespaces: [kube-system, \"ingress-[a-z]+\"]  # a comment with [[[[\n";
        assert_eq!(nesting_problem(policy), None);
        let deep_but_fine = format!("{}{}", "[".repeat(60), "]".repeat(60));
        assert_eq!(nesting_problem(&deep_but_fine), None);
    }

    #[test]
    fn a_byte_order_mark_is_not_part_of_the_yaml() {
        assert_eq!(strip_bom("\u{feff}kind: Policy"), "kind: Policy");
        assert_eq!(strip_bom("kind: Policy"), "kind: Policy");
    }
}

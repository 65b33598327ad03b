//! Kubernetes label matching, as the API server and the scheduler do it: label selectors
//! (PodDisruptionBudgets, the policy's protected set) and node-affinity requirements.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// The operators a label selector accepts (node affinity adds `Gt` and `Lt`).
pub const SELECTOR_OPERATORS: [&str; 4] = ["In", "NotIn", "Exists", "DoesNotExist"];

/// One requirement: `In`, `NotIn`, `Exists`, `DoesNotExist`, and for node affinity `Gt`, `Lt`.
/// An unknown operator matches nothing.
pub fn expression_matches(operator: &str, values: &[String], value: Option<&String>) -> bool {
    match operator {
        "In" => value.is_some_and(|v| values.contains(v)),
        "NotIn" => value.is_none_or(|v| !values.contains(v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), Some(bound)) = (
                value.and_then(|v| v.parse::<i64>().ok()),
                values.first().and_then(|b| b.parse::<i64>().ok()),
            ) else {
                return false;
            };
            if operator == "Gt" {
                v > bound
            } else {
                v < bound
            }
        }
        _ => false,
    }
}

/// Whether `labels` satisfy `selector` (all `matchLabels` and all `matchExpressions`). An empty
/// selector matches everything, as in the API.
pub fn label_selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let match_labels = selector
        .match_labels
        .as_ref()
        .is_none_or(|m| m.iter().all(|(k, v)| labels.get(k) == Some(v)));
    let expressions = selector.match_expressions.as_ref().is_none_or(|exprs| {
        exprs.iter().all(|e| {
            expression_matches(
                &e.operator,
                e.values.as_deref().unwrap_or_default(),
                labels.get(&e.key),
            )
        })
    });
    match_labels && expressions
}

/// A selector in the `key=value,key2 in (a,b),!key3` form `kubectl -l` takes, for messages.
pub fn selector_text(selector: &LabelSelector) -> String {
    let mut parts: Vec<String> = selector
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for e in selector.match_expressions.iter().flatten() {
        let values = e.values.as_deref().unwrap_or_default().join(",");
        parts.push(match e.operator.as_str() {
            "In" => format!("{} in ({values})", e.key),
            "NotIn" => format!("{} notin ({values})", e.key),
            "Exists" => e.key.clone(),
            "DoesNotExist" => format!("!{}", e.key),
            other => format!("{} {other} ({values})", e.key),
        });
    }
    if parts.is_empty() {
        "(everything)".to_string()
    } else {
        parts.join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn req(key: &str, op: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: (!values.is_empty()).then(|| values.iter().map(|v| v.to_string()).collect()),
        }
    }

    #[test]
    fn every_operator_behaves_as_in_the_api() {
        let l = labels(&[("app", "web"), ("tier", "front"), ("size", "5")]);
        let cases = [
            (req("app", "In", &["web", "api"]), true),
            (req("app", "In", &["api"]), false),
            (req("app", "NotIn", &["api"]), true),
            (req("missing", "NotIn", &["x"]), true),
            (req("app", "NotIn", &["web"]), false),
            (req("tier", "Exists", &[]), true),
            (req("missing", "Exists", &[]), false),
            (req("missing", "DoesNotExist", &[]), true),
            (req("app", "DoesNotExist", &[]), false),
            (req("size", "Gt", &["4"]), true),
            (req("size", "Lt", &["4"]), false),
            (req("app", "Gt", &["4"]), false),
            (req("app", "Bogus", &["web"]), false),
        ];
        for (r, want) in cases {
            let sel = LabelSelector {
                match_expressions: Some(vec![r.clone()]),
                ..LabelSelector::default()
            };
            assert_eq!(label_selector_matches(&sel, &l), want, "{r:?}");
        }
        let both = LabelSelector {
            match_labels: Some([("app".to_string(), "web".to_string())].into()),
            match_expressions: Some(vec![req("tier", "In", &["back"])]),
        };
        assert!(!label_selector_matches(&both, &l), "all terms must hold");
        assert!(label_selector_matches(&LabelSelector::default(), &l));
        assert_eq!(
            selector_text(&both),
            "app=web,tier in (back)",
            "kubectl's -l form"
        );
    }
}

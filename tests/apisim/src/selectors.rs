//! `labelSelector` and `fieldSelector` query parameters, parsed and matched as the API server does.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
enum LabelRequirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct LabelSelector(Vec<LabelRequirement>);

/// Splits on commas outside parentheses.
fn split_top_level(text: &str) -> Vec<&str> {
    let (mut parts, mut depth, mut start) = (Vec::new(), 0i32, 0usize);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
}

fn set_values(text: &str) -> Result<Vec<String>, String> {
    let inner = text
        .trim()
        .strip_prefix('(')
        .and_then(|t| t.strip_suffix(')'))
        .ok_or_else(|| format!("expected a parenthesised set, got {text:?}"))?;
    Ok(inner.split(',').map(|v| v.trim().to_string()).collect())
}

impl LabelSelector {
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut reqs = Vec::new();
        for part in split_top_level(text) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let req = if let Some(key) = part.strip_prefix('!') {
                LabelRequirement::DoesNotExist(key.trim().to_string())
            } else if let Some((k, v)) = part.split_once("!=") {
                LabelRequirement::NotEquals(k.trim().to_string(), v.trim().to_string())
            } else if let Some((k, v)) = part.split_once("==") {
                LabelRequirement::Equals(k.trim().to_string(), v.trim().to_string())
            } else if let Some((k, v)) = part.split_once('=') {
                LabelRequirement::Equals(k.trim().to_string(), v.trim().to_string())
            } else if let Some((k, rest)) = part.split_once(" notin ") {
                LabelRequirement::NotIn(k.trim().to_string(), set_values(rest)?)
            } else if let Some((k, rest)) = part.split_once(" in ") {
                LabelRequirement::In(k.trim().to_string(), set_values(rest)?)
            } else {
                LabelRequirement::Exists(part.to_string())
            };
            let key = match &req {
                LabelRequirement::Equals(k, _)
                | LabelRequirement::NotEquals(k, _)
                | LabelRequirement::In(k, _)
                | LabelRequirement::NotIn(k, _)
                | LabelRequirement::Exists(k)
                | LabelRequirement::DoesNotExist(k) => k,
            };
            if !valid_key(key) {
                return Err(format!(
                    "unable to parse requirement: invalid label key {key:?}"
                ));
            }
            reqs.push(req);
        }
        Ok(LabelSelector(reqs))
    }

    pub fn matches(&self, object: &Value) -> bool {
        let labels = object.get("metadata").and_then(|m| m.get("labels"));
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        self.0.iter().all(|req| match req {
            LabelRequirement::Equals(k, v) => get(k) == Some(v.as_str()),
            LabelRequirement::NotEquals(k, v) => get(k) != Some(v.as_str()),
            LabelRequirement::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            LabelRequirement::NotIn(k, vs) => get(k).is_none_or(|x| vs.iter().all(|v| v != x)),
            LabelRequirement::Exists(k) => get(k).is_some(),
            LabelRequirement::DoesNotExist(k) => get(k).is_none(),
        })
    }
}

/// Matches a `metav1.LabelSelector` object (matchLabels + matchExpressions) against labels.
pub fn selector_object_matches(selector: &Value, labels: Option<&Value>) -> bool {
    let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
    let match_labels_ok = selector
        .get("matchLabels")
        .and_then(Value::as_object)
        .is_none_or(|m| m.iter().all(|(k, v)| get(k) == v.as_str()));
    let expressions_ok = selector
        .get("matchExpressions")
        .and_then(Value::as_array)
        .is_none_or(|exprs| {
            exprs.iter().all(|e| {
                let key = e.get("key").and_then(Value::as_str).unwrap_or("");
                let values: Vec<&str> = e
                    .get("values")
                    .and_then(Value::as_array)
                    .map(|v| v.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                match e.get("operator").and_then(Value::as_str) {
                    Some("In") => get(key).is_some_and(|x| values.contains(&x)),
                    Some("NotIn") => get(key).is_none_or(|x| !values.contains(&x)),
                    Some("Exists") => get(key).is_some(),
                    Some("DoesNotExist") => get(key).is_none(),
                    _ => false,
                }
            })
        });
    match_labels_ok && expressions_ok
}

#[derive(Debug, Clone, PartialEq)]
struct FieldRequirement {
    path: &'static [&'static str],
    value: String,
    equal: bool,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct FieldSelector(Vec<FieldRequirement>);

/// The field labels the API server supports, per resource kind (plus metadata.name/namespace everywhere).
fn field_path(kind: &str, field: &str) -> Option<&'static [&'static str]> {
    match (kind, field) {
        (_, "metadata.name") => Some(&["metadata", "name"]),
        (_, "metadata.namespace") => Some(&["metadata", "namespace"]),
        ("Pod", "spec.nodeName") => Some(&["spec", "nodeName"]),
        ("Pod", "spec.schedulerName") => Some(&["spec", "schedulerName"]),
        ("Pod", "spec.serviceAccountName") => Some(&["spec", "serviceAccountName"]),
        ("Pod", "status.phase") => Some(&["status", "phase"]),
        ("Pod", "status.podIP") => Some(&["status", "podIP"]),
        ("Node", "spec.unschedulable") => Some(&["spec", "unschedulable"]),
        ("Event", "involvedObject.name") => Some(&["involvedObject", "name"]),
        ("Event", "involvedObject.kind") => Some(&["involvedObject", "kind"]),
        ("Event", "involvedObject.namespace") => Some(&["involvedObject", "namespace"]),
        ("Event", "reason") => Some(&["reason"]),
        _ => None,
    }
}

impl FieldSelector {
    pub fn parse(kind: &str, text: &str) -> Result<Self, String> {
        let mut reqs = Vec::new();
        for part in text.split(',') {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let (field, value, equal) = if let Some((f, v)) = part.split_once("!=") {
                (f, v, false)
            } else if let Some((f, v)) = part.split_once("==") {
                (f, v, true)
            } else if let Some((f, v)) = part.split_once('=') {
                (f, v, true)
            } else {
                return Err(format!(
                    "invalid selector: '{part}'; can't understand '{part}'"
                ));
            };
            let path = field_path(kind, field.trim())
                .ok_or_else(|| format!("field label not supported: {}", field.trim()))?;
            reqs.push(FieldRequirement {
                path,
                value: value.trim().to_string(),
                equal,
            });
        }
        Ok(FieldSelector(reqs))
    }

    pub fn matches(&self, object: &Value) -> bool {
        self.0.iter().all(|req| {
            // Absent fields compare as the empty string, like the API server's field sets.
            let found = req.path.iter().try_fold(object, |v, key| v.get(key));
            let same = match found {
                Some(Value::String(s)) => *s == req.value,
                Some(Value::Null) | None => req.value.is_empty(),
                Some(Value::Bool(b)) => req.value == if *b { "true" } else { "false" },
                // no supported field label holds a number, array or object
                Some(_) => false,
            };
            same == req.equal
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_selectors() {
        let obj = json!({"metadata": {"labels": {"app": "web", "tier": "front"}}});
        let m = |s: &str| LabelSelector::parse(s).unwrap().matches(&obj);
        assert!(m("app=web"));
        assert!(m("app==web,tier"));
        assert!(!m("app!=web"));
        assert!(m("app in (web, api),tier notin (back)"));
        assert!(!m("app notin (web)"));
        assert!(m("!missing"));
        assert!(!m("missing"));
        assert!(m(""));
        assert!(LabelSelector::parse("a in b").is_err());
    }

    #[test]
    fn field_selectors() {
        let pod = json!({"metadata": {"name": "p", "namespace": "ns"}, "spec": {"nodeName": "n1"}});
        let m = |s: &str| FieldSelector::parse("Pod", s).unwrap().matches(&pod);
        assert!(m("spec.nodeName=n1"));
        assert!(m("spec.nodeName==n1,metadata.namespace=ns"));
        assert!(!m("spec.nodeName!=n1"));
        assert!(m("spec.nodeName!="));
        let unbound = json!({"metadata": {"name": "q"}, "spec": {}});
        assert!(
            FieldSelector::parse("Pod", "spec.nodeName=")
                .unwrap()
                .matches(&unbound)
        );
        assert_eq!(
            FieldSelector::parse("Pod", "spec.foo=x").unwrap_err(),
            "field label not supported: spec.foo"
        );
        assert!(FieldSelector::parse("Node", "spec.nodeName=x").is_err());
    }

    #[test]
    fn selector_objects() {
        let labels = json!({"app": "web", "tier": "front"});
        assert!(selector_object_matches(
            &json!({"matchLabels": {"app": "web"}}),
            Some(&labels)
        ));
        assert!(!selector_object_matches(
            &json!({"matchLabels": {"app": "api"}}),
            Some(&labels)
        ));
        assert!(selector_object_matches(
            &json!({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["front"]}]}),
            Some(&labels)
        ));
        assert!(selector_object_matches(&json!({}), None));
    }
}

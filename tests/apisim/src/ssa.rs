//! Field ownership (`metadata.managedFields`) and server-side apply.
//!
//! Ownership is tracked per leaf field path, as kube-apiserver's structured-merge-diff does for
//! maps; lists are atomic (owned as a whole), which is how the project's objects use them
//! (annotations, labels). Entries are stored in `metadata.managedFields` in the real `FieldsV1`
//! shape, so clients that read them see what a real server would show.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

pub type Path = Vec<String>;
pub type FieldSet = BTreeSet<Path>;

/// Fields the server owns itself: never tracked, never removed by apply.
fn untracked(path: &[String]) -> bool {
    match path {
        [first] if first == "apiVersion" || first == "kind" => true,
        [meta, field, ..] if meta == "metadata" => matches!(
            field.as_str(),
            "name"
                | "namespace"
                | "uid"
                | "resourceVersion"
                | "generation"
                | "creationTimestamp"
                | "deletionTimestamp"
                | "deletionGracePeriodSeconds"
                | "managedFields"
                | "selfLink"
        ),
        _ => false,
    }
}

/// The leaf paths of a value: every non-object value, and every empty object.
pub fn leaves(value: &Value) -> FieldSet {
    let mut out = FieldSet::new();
    fn walk(v: &Value, path: &mut Path, out: &mut FieldSet) {
        match v {
            Value::Object(map) if !map.is_empty() => {
                for (k, child) in map {
                    path.push(k.clone());
                    walk(child, path, out);
                    path.pop();
                }
            }
            _ => {
                if !path.is_empty() && !untracked(path) {
                    out.insert(path.clone());
                }
            }
        }
    }
    walk(value, &mut Vec::new(), &mut out);
    out
}

fn get<'a>(value: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(value, |v, k| v.get(k))
}

fn remove(value: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cursor = value;
    for k in parents {
        match cursor.get_mut(k) {
            Some(next) => cursor = next,
            None => return,
        }
    }
    if let Some(map) = cursor.as_object_mut() {
        map.remove(last);
    }
}

/// Deep-merges `patch` into `target`: maps merge, everything else replaces.
pub fn merge_into(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                match t.get_mut(k) {
                    Some(existing) if existing.is_object() && v.is_object() => {
                        merge_into(existing, v)
                    }
                    _ => {
                        t.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

/// `FieldsV1` form: `{"f:metadata":{"f:annotations":{"f:key":{}}}}`.
pub fn to_fields_v1(set: &FieldSet) -> Value {
    let mut root = Map::new();
    for path in set {
        let mut cursor = &mut root;
        for k in path {
            let entry = cursor.entry(format!("f:{k}")).or_insert_with(|| json!({}));
            match entry.as_object_mut() {
                Some(next) => cursor = next,
                None => break,
            }
        }
    }
    Value::Object(root)
}

pub fn from_fields_v1(value: &Value) -> FieldSet {
    let mut out = FieldSet::new();
    fn walk(v: &Value, path: &mut Path, out: &mut FieldSet) {
        let children: Vec<(&String, &Value)> = v
            .as_object()
            .map(|m| m.iter().filter(|(k, _)| k.starts_with("f:")).collect())
            .unwrap_or_default();
        if children.is_empty() {
            if !path.is_empty() {
                out.insert(path.clone());
            }
            return;
        }
        for (k, child) in children {
            path.push(k[2..].to_string());
            walk(child, path, out);
            path.pop();
        }
    }
    walk(value, &mut Vec::new(), &mut out);
    out
}

#[derive(Debug, Clone, PartialEq)]
pub struct ManagerEntry {
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: String,
    pub api_version: String,
    pub time: String,
    pub fields: FieldSet,
}

pub fn read_managers(object: &Value) -> Vec<ManagerEntry> {
    object
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .map(|entries| {
            entries
                .iter()
                .map(|e| ManagerEntry {
                    manager: e
                        .get("manager")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                    operation: e
                        .get("operation")
                        .and_then(Value::as_str)
                        .unwrap_or("Update")
                        .to_string(),
                    api_version: e
                        .get("apiVersion")
                        .and_then(Value::as_str)
                        .unwrap_or("v1")
                        .to_string(),
                    time: e
                        .get("time")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                    fields: e.get("fieldsV1").map(from_fields_v1).unwrap_or_default(),
                })
                .collect()
        })
        .unwrap_or_default()
}

pub fn write_managers(object: &mut Value, managers: &[ManagerEntry]) {
    let entries: Vec<Value> = managers
        .iter()
        .filter(|m| !m.fields.is_empty())
        .map(|m| {
            json!({"manager": m.manager, "operation": m.operation, "apiVersion": m.api_version,
                   "time": m.time, "fieldsType": "FieldsV1", "fieldsV1": to_fields_v1(&m.fields)})
        })
        .collect();
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        if entries.is_empty() {
            meta.remove("managedFields");
        } else {
            meta.insert("managedFields".into(), Value::Array(entries));
        }
    }
}

fn overlaps(a: &[String], b: &[String]) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

/// A field another manager owns with a different value.
#[derive(Debug, Clone, PartialEq)]
pub struct Conflict {
    pub manager: String,
    pub field: String,
}

fn dotted(path: &[String]) -> String {
    path.iter().map(|k| format!(".{k}")).collect()
}

/// Server-side apply of `applied` by `manager` onto `current` (an empty object when creating).
/// Returns the new object, or the conflicts when `force` is false.
pub fn apply(
    current: &Value,
    applied: &Value,
    manager: &str,
    api_version: &str,
    force: bool,
    now: &str,
) -> Result<Value, Vec<Conflict>> {
    let applied_set = leaves(applied);
    let mut managers = read_managers(current);
    let mut conflicts = Vec::new();
    for entry in managers
        .iter()
        .filter(|e| !(e.manager == manager && e.operation == "Apply"))
    {
        for owned in &entry.fields {
            for path in applied_set.iter().filter(|p| overlaps(p, owned)) {
                if get(current, path) != get(applied, path) {
                    conflicts.push(Conflict {
                        manager: entry.manager.clone(),
                        field: dotted(owned),
                    });
                }
            }
        }
    }
    conflicts.dedup();
    if !conflicts.is_empty() && !force {
        return Err(conflicts);
    }
    if force {
        for entry in managers
            .iter_mut()
            .filter(|e| !(e.manager == manager && e.operation == "Apply"))
        {
            entry.fields.retain(|owned| {
                !applied_set
                    .iter()
                    .any(|p| overlaps(p, owned) && get(current, p) != get(applied, p))
            });
        }
    }
    let mut object = current.clone();
    // Fields this manager applied before but no longer does go away, unless someone else owns them.
    let previous = managers
        .iter()
        .find(|e| e.manager == manager && e.operation == "Apply")
        .map(|e| e.fields.clone())
        .unwrap_or_default();
    for path in previous.difference(&applied_set) {
        let owned_elsewhere = managers
            .iter()
            .filter(|e| !(e.manager == manager && e.operation == "Apply"))
            .any(|e| e.fields.contains(path));
        if !owned_elsewhere {
            remove(&mut object, path);
        }
    }
    merge_into(&mut object, applied);
    managers.retain(|e| !(e.manager == manager && e.operation == "Apply"));
    managers.push(ManagerEntry {
        manager: manager.to_string(),
        operation: "Apply".into(),
        api_version: api_version.to_string(),
        time: now.to_string(),
        fields: applied_set,
    });
    write_managers(&mut object, &managers);
    Ok(object)
}

/// Records a non-apply write: the fields it changed now belong to `manager` (operation Update);
/// fields it removed are no longer owned by anyone.
pub fn record_update(old: &Value, new: &mut Value, manager: &str, api_version: &str, now: &str) {
    let before = leaves(old);
    let after = leaves(new);
    let changed: FieldSet = after
        .iter()
        .filter(|p| get(old, p) != get(new, p))
        .cloned()
        .collect();
    let removed: FieldSet = before.difference(&after).cloned().collect();
    let mut managers = read_managers(old);
    for entry in &mut managers {
        entry
            .fields
            .retain(|f| !removed.contains(f) && !changed.iter().any(|c| overlaps(c, f)));
    }
    if !changed.is_empty() {
        match managers
            .iter_mut()
            .find(|e| e.manager == manager && e.operation == "Update")
        {
            Some(entry) => {
                entry.fields.extend(changed);
                entry.time = now.to_string();
            }
            None => managers.push(ManagerEntry {
                manager: manager.to_string(),
                operation: "Update".into(),
                api_version: api_version.to_string(),
                time: now.to_string(),
                fields: changed,
            }),
        }
    }
    write_managers(new, &managers);
}

/// The 409 message for apply conflicts, as kube-apiserver words it.
pub fn conflict_message(conflicts: &[Conflict], api_version: &str) -> (String, Vec<Value>) {
    let causes: Vec<Value> = conflicts
        .iter()
        .map(|c| {
            json!({"reason": "FieldManagerConflict",
                   "message": format!("conflict with \"{}\" using {}", c.manager, api_version),
                   "field": c.field})
        })
        .collect();
    let list: Vec<String> = conflicts
        .iter()
        .map(|c| {
            format!(
                "conflict with \"{}\" using {}: {}",
                c.manager, api_version, c.field
            )
        })
        .collect();
    let noun = if conflicts.len() == 1 {
        "conflict"
    } else {
        "conflicts"
    };
    (
        format!(
            "Apply failed with {} {}: {}",
            conflicts.len(),
            noun,
            list.join("\n")
        ),
        causes,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: &str = "2026-11-22T00:00:00Z";

    #[test]
    fn fields_v1_round_trips() {
        let v = json!({"metadata": {"name": "n", "annotations": {"a": "1", "b": "2"}}, "spec": {"x": [1, 2]}});
        let set = leaves(&v);
        assert_eq!(set.len(), 3, "{set:?}");
        let fv1 = to_fields_v1(&set);
        assert_eq!(fv1["f:metadata"]["f:annotations"]["f:a"], json!({}));
        assert_eq!(from_fields_v1(&fv1), set);
    }

    #[test]
    fn apply_owns_adds_removes_and_conflicts() {
        let base = json!({"metadata": {"name": "n", "annotations": {"other": "x"}}});
        let applied = json!({"metadata": {"name": "n", "annotations": {"realload.io/a": "1", "realload.io/b": "2"}}});
        let v1 = apply(&base, &applied, "collector", "v1", false, NOW).unwrap();
        assert_eq!(
            v1["metadata"]["annotations"],
            json!({"other": "x", "realload.io/a": "1", "realload.io/b": "2"})
        );
        // applying without b removes b (owned only by us), keeps other
        let applied2 = json!({"metadata": {"annotations": {"realload.io/a": "3"}}});
        let v2 = apply(&v1, &applied2, "collector", "v1", false, NOW).unwrap();
        assert_eq!(
            v2["metadata"]["annotations"],
            json!({"other": "x", "realload.io/a": "3"})
        );
        // another manager changing our field conflicts unless forced
        let theirs = json!({"metadata": {"annotations": {"realload.io/a": "9"}}});
        let conflicts = apply(&v2, &theirs, "intruder", "v1", false, NOW).unwrap_err();
        assert_eq!(
            conflicts,
            vec![Conflict {
                manager: "collector".into(),
                field: ".metadata.annotations.realload.io/a".into()
            }]
        );
        let forced = apply(&v2, &theirs, "intruder", "v1", true, NOW).unwrap();
        assert_eq!(forced["metadata"]["annotations"]["realload.io/a"], "9");
        let managers = read_managers(&forced);
        let collector = managers.iter().find(|m| m.manager == "collector");
        assert!(
            collector.is_none(),
            "collector lost its only field: {managers:?}"
        );
        // same value: shared ownership, no conflict
        let same = json!({"metadata": {"annotations": {"realload.io/a": "9"}}});
        assert!(apply(&forced, &same, "third", "v1", false, NOW).is_ok());
    }

    #[test]
    fn updates_take_over_changed_fields() {
        let base = apply(
            &json!({"metadata": {"name": "n"}}),
            &json!({"metadata": {"annotations": {"k": "1"}}}),
            "collector",
            "v1",
            false,
            NOW,
        )
        .unwrap();
        let mut new = base.clone();
        new["metadata"]["annotations"]["k"] = json!("2");
        record_update(&base, &mut new, "kubectl", "v1", NOW);
        let managers = read_managers(&new);
        assert_eq!(managers.len(), 1);
        assert_eq!(managers[0].manager, "kubectl");
        assert_eq!(managers[0].operation, "Update");
    }
}

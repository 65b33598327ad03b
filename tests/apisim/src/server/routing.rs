//! kube-apiserver paths to resources: discovery documents, namespaced and cluster-scoped
//! objects, subresources; and the query string.

use super::*;

pub(super) struct Target {
    pub(super) resource: Resource,
    pub(super) namespace: Option<String>,
    pub(super) name: Option<String>,
    pub(super) sub: Option<String>,
}

pub(super) enum Route {
    Document(Value),
    Target(Target),
}

pub(super) fn route(path: &str) -> Result<Route, ApiError> {
    let segments: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let (group, version, rest): (&str, &str, &[&str]) = match segments.as_slice() {
        ["api"] => return Ok(Route::Document(resources::core_versions())),
        ["apis"] => return Ok(Route::Document(resources::group_list())),
        ["version"] => {
            return Ok(Route::Document(json!({
                "major": "1", "minor": "33", "gitVersion": "v1.33.0-realload-apisim",
                "gitCommit": "", "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z",
                "goVersion": "go1.24", "compiler": "gc", "platform": "linux/amd64"
            })));
        }
        ["apis", g] => {
            return resources::group(g)
                .map(Route::Document)
                .ok_or_else(ApiError::path_not_found);
        }
        ["api", v] => {
            return resources::resource_list("", v)
                .map(Route::Document)
                .ok_or_else(ApiError::path_not_found);
        }
        ["apis", g, v] => {
            return resources::resource_list(g, v)
                .map(Route::Document)
                .ok_or_else(ApiError::path_not_found);
        }
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Err(ApiError::path_not_found()),
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, tail @ ..] if !tail.is_empty() => (Some(ns.to_string()), tail),
        _ => (None, rest),
    };
    let (plural, name, sub) = match rest {
        [plural] => (*plural, None, None),
        [plural, name] => (*plural, Some(name.to_string()), None),
        [plural, name, sub] => (*plural, Some(name.to_string()), Some(sub.to_string())),
        _ => return Err(ApiError::path_not_found()),
    };
    let resource = resources::find(group, version, plural).ok_or_else(ApiError::path_not_found)?;
    if namespace.is_some() && !resource.namespaced {
        return Err(ApiError::path_not_found());
    }
    if let Some(s) = &sub
        && !resource.subresources().contains(&s.as_str())
    {
        return Err(ApiError::path_not_found());
    }
    Ok(Route::Target(Target {
        resource,
        namespace,
        name,
        sub,
    }))
}

#[derive(Default)]
pub(super) struct Query(pub(super) Vec<(String, String)>);

impl Query {
    pub(super) fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub(super) fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true" | "1"))
    }

    pub(super) fn dry_run(&self) -> bool {
        self.get("dryRun") == Some("All")
    }
}

//! The operators' whitelist ConfigMap (docs/configuration.md, "Whitelist ConfigMap").
//!
//! Data keys `namespaces`, `apps`, `nodes`; each value a list of names separated by newlines or
//! commas; `#` starts a comment; `*` is a glob. Anything else is an error that names the key and the
//! line, because a typo must never silently switch a protection off.

use std::collections::BTreeMap;

use globset::{GlobBuilder, GlobMatcher};
use k8s_openapi::api::core::v1::ConfigMap;
use thiserror::Error;

pub const KEYS: [&str; 3] = ["namespaces", "apps", "nodes"];
/// Where the descheduler reads the whitelist by default.
pub const DEFAULT_NAMESPACE: &str = "realload-system";
pub const DEFAULT_NAME: &str = "realload-whitelist";

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WhitelistError {
    #[error("whitelist: unknown data key {key:?} (allowed: namespaces, apps, nodes)")]
    UnknownKey { key: String },
    #[error("whitelist: key {key:?} line {line}: entry {entry:?} {problem}")]
    BadEntry {
        key: String,
        line: usize,
        entry: String,
        problem: String,
    },
    #[error("whitelist: binaryData key {key:?} is not allowed; use data")]
    BinaryData { key: String },
}

/// One list of names and globs.
#[derive(Debug, Clone, Default)]
pub struct NameList {
    entries: Vec<(String, GlobMatcher)>,
}

/// Two lists are equal when they hold the same entries in the same order.
impl PartialEq for NameList {
    fn eq(&self, other: &Self) -> bool {
        self.entries().eq(other.entries())
    }
}

impl NameList {
    /// A list from entries one by one (the policy's protected set); `key` names the list in
    /// errors and each entry's position is reported as its line.
    pub fn from_entries<S: AsRef<str>>(
        key: &str,
        entries: &[S],
    ) -> Result<NameList, WhitelistError> {
        let mut list = NameList::default();
        for (index, entry) in entries.iter().enumerate() {
            list.entries
                .push(compile_entry(key, index + 1, entry.as_ref().trim())?);
        }
        Ok(list)
    }

    pub fn matches(&self, name: &str) -> bool {
        self.entries.iter().any(|(_, glob)| glob.is_match(name))
    }

    /// The entry that matches, for reports.
    pub fn matching_entry(&self, name: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(_, glob)| glob.is_match(name))
            .map(|(entry, _)| entry.as_str())
    }

    pub fn entries(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(e, _)| e.as_str())
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The parsed whitelist.
#[derive(Debug, Clone, Default)]
pub struct Whitelist {
    pub namespaces: NameList,
    pub apps: NameList,
    pub nodes: NameList,
}

impl Whitelist {
    pub fn from_configmap(cm: &ConfigMap) -> Result<Whitelist, WhitelistError> {
        if let Some(key) = cm.binary_data.as_ref().and_then(|b| b.keys().next()) {
            return Err(WhitelistError::BinaryData { key: key.clone() });
        }
        let empty = BTreeMap::new();
        Self::from_data(cm.data.as_ref().unwrap_or(&empty))
    }

    pub fn from_data(data: &BTreeMap<String, String>) -> Result<Whitelist, WhitelistError> {
        let mut whitelist = Whitelist::default();
        for (key, value) in data {
            let list = parse_list(key, value)?;
            match key.as_str() {
                "namespaces" => whitelist.namespaces = list,
                "apps" => whitelist.apps = list,
                "nodes" => whitelist.nodes = list,
                _ => return Err(WhitelistError::UnknownKey { key: key.clone() }),
            }
        }
        Ok(whitelist)
    }

    /// True if any of a pod's app identities (`app` label, `app.kubernetes.io/name` label, owning
    /// Deployment/StatefulSet name) is whitelisted.
    pub fn app_matches<'a>(&self, identities: impl IntoIterator<Item = &'a str>) -> bool {
        identities.into_iter().any(|name| self.apps.matches(name))
    }
}

fn parse_list(key: &str, value: &str) -> Result<NameList, WhitelistError> {
    if !KEYS.contains(&key) {
        return Err(WhitelistError::UnknownKey {
            key: key.to_string(),
        });
    }
    let mut list = NameList::default();
    for (index, line) in value.lines().enumerate() {
        let content = line.split_once('#').map_or(line, |(before, _)| before);
        for entry in content.split(',') {
            let entry = entry.trim();
            if entry.is_empty() {
                continue;
            }
            list.entries.push(compile_entry(key, index + 1, entry)?);
        }
    }
    Ok(list)
}

/// Checks one entry (a name or a `*` glob) and compiles it.
fn compile_entry(
    key: &str,
    line: usize,
    entry: &str,
) -> Result<(String, GlobMatcher), WhitelistError> {
    let bad = |problem: &str| WhitelistError::BadEntry {
        key: key.to_string(),
        line,
        entry: entry.to_string(),
        problem: problem.to_string(),
    };
    if entry.is_empty() {
        return Err(bad("is empty"));
    }
    if entry.len() > 253 {
        return Err(bad("is longer than 253 characters"));
    }
    if entry.contains(char::is_whitespace) {
        return Err(bad(
            "contains whitespace (separate names with commas or newlines)",
        ));
    }
    if let Some(c) = entry.chars().find(|c| !is_name_char(*c)) {
        return Err(bad(&format!(
            "contains {c:?}: only letters, digits, '-', '.', '_' and the glob '*' are allowed"
        )));
    }
    let glob = GlobBuilder::new(entry)
        .literal_separator(false)
        .build()
        .map_err(|e| bad(&format!("is not a valid glob: {e}")))?
        .compile_matcher();
    Ok((entry.to_string(), glob))
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn commas_newlines_comments_and_globs() {
        let w = Whitelist::from_data(&data(&[
            (
                "namespaces",
                "kube-system, realload-system\n# comment line\nistio-*  # trailing comment\n\n",
            ),
            ("apps", "ingress-nginx,*gateway*"),
            ("nodes", "gpu-node-1"),
        ]))
        .unwrap();
        assert!(w.namespaces.matches("kube-system"));
        assert!(w.namespaces.matches("realload-system"));
        assert!(w.namespaces.matches("istio-ingress"));
        assert!(!w.namespaces.matches("istio"));
        assert!(!w.namespaces.matches("default"));
        assert!(
            !w.namespaces.matches("comment"),
            "comment text is not an entry"
        );
        assert_eq!(w.namespaces.matching_entry("istio-system"), Some("istio-*"));
        assert!(w.app_matches(["web", "api-gateway-v2"]));
        assert!(w.app_matches(["ingress-nginx"]));
        assert!(!w.app_matches(["web", "api"]));
        assert!(w.nodes.matches("gpu-node-1"));
        assert!(!w.nodes.matches("gpu-node-10"), "no implicit prefix match");
    }

    #[test]
    fn globs_match_whole_names_and_dots() {
        let w = Whitelist::from_data(&data(&[("nodes", "*.example.com,node-*")])).unwrap();
        assert!(w.nodes.matches("a.b.example.com"));
        assert!(w.nodes.matches("node-"));
        assert!(!w.nodes.matches("my-node-1"));
    }

    #[test]
    fn empty_and_missing_keys_are_empty_lists() {
        let w = Whitelist::from_data(&data(&[("apps", "  \n# nothing\n")])).unwrap();
        assert!(w.apps.is_empty() && w.namespaces.is_empty() && w.nodes.is_empty());
        assert!(!w.namespaces.matches("kube-system"));
    }

    #[test]
    fn unknown_keys_are_errors() {
        let e = Whitelist::from_data(&data(&[("namespace", "kube-system")])).unwrap_err();
        assert_eq!(
            e,
            WhitelistError::UnknownKey {
                key: "namespace".into()
            }
        );
        assert!(e.to_string().contains("\"namespace\""));
    }

    #[test]
    fn malformed_entries_name_key_and_line() {
        let cases = [
            ("apps", "web\nfoo bar", 2, "foo bar", "whitespace"),
            ("namespaces", "a,b\n\nkube/system", 3, "kube/system", "'/'"),
            ("nodes", "node-[1-3]", 1, "node-[1-3]", "'['"),
            ("apps", "ok,{a,b}", 1, "{a", "'{'"),
            ("apps", "what?", 1, "what?", "'?'"),
        ];
        for (key, value, line, entry, fragment) in cases {
            match Whitelist::from_data(&data(&[(key, value)])) {
                Err(e @ WhitelistError::BadEntry { .. }) => {
                    let WhitelistError::BadEntry {
                        key: k,
                        line: l,
                        entry: en,
                        problem,
                    } = &e
                    else {
                        unreachable!()
                    };
                    assert_eq!((k.as_str(), *l, en.as_str()), (key, line, entry), "{e}");
                    assert!(problem.contains(fragment), "{e}");
                    assert!(e.to_string().contains(&format!("line {line}")));
                }
                other => panic!("{value:?}: expected BadEntry, got {other:?}"),
            }
        }
    }

    #[test]
    fn binary_data_is_rejected() {
        let cm = ConfigMap {
            binary_data: Some([("apps".to_string(), k8s_openapi::ByteString(vec![1]))].into()),
            ..ConfigMap::default()
        };
        assert!(matches!(
            Whitelist::from_configmap(&cm),
            Err(WhitelistError::BinaryData { .. })
        ));
        assert!(Whitelist::from_configmap(&ConfigMap::default()).is_ok());
    }
}

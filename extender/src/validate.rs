//! `realload-extender validate`: checks a policy file and a whitelist without a cluster, for
//! pipelines that review a ConfigMap edit before it is merged.

use std::collections::BTreeMap;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::ConfigMap;
use realload_common::policy::{Policy, PolicyError};
use realload_common::whitelist::Whitelist;

#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// A policy file (what the realload-policy ConfigMap's policy.yaml holds).
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// A whitelist: the ConfigMap's YAML, or just its data (keys namespaces, apps, nodes).
    #[arg(long)]
    pub whitelist: Option<PathBuf>,
}

/// Every problem found in a policy text, each as `path: rule`.
pub fn policy_problems(text: &str) -> Vec<String> {
    match Policy::from_yaml(text) {
        Ok(_) => Vec::new(),
        Err(PolicyError::Parse { path, message }) => vec![format!("{path}: {message}")],
        Err(PolicyError::Invalid(errors)) => errors.iter().map(ToString::to_string).collect(),
    }
}

/// Every problem found in a whitelist text (a ConfigMap or its data), one per data key.
pub fn whitelist_problems(text: &str) -> Vec<String> {
    let text = realload_common::yaml::strip_bom(text);
    if let Some(problem) = realload_common::yaml::nesting_problem(text) {
        return vec![problem];
    }
    let value: serde_yaml::Value = match serde_yaml::from_str(text) {
        Ok(v) => v,
        Err(e) => return vec![format!("not YAML: {e}")],
    };
    let is_configmap = value.get("kind").and_then(|k| k.as_str()) == Some("ConfigMap");
    let data: BTreeMap<String, String> = if is_configmap {
        let cm: ConfigMap = match serde_yaml::from_value(value) {
            Ok(cm) => cm,
            Err(e) => return vec![format!("not a ConfigMap: {e}")],
        };
        if let Err(e) = Whitelist::from_configmap(&ConfigMap {
            data: None,
            ..cm.clone()
        }) {
            return vec![e.to_string()];
        }
        cm.data.unwrap_or_default()
    } else {
        match serde_yaml::from_value(value) {
            Ok(data) => data,
            Err(e) => {
                return vec![format!(
                    "expected a ConfigMap or a map of namespaces/apps/nodes to text: {e}"
                )];
            }
        }
    };
    data.iter()
        .filter_map(|(key, value)| {
            let one = BTreeMap::from([(key.clone(), value.clone())]);
            Whitelist::from_data(&one).err().map(|e| e.to_string())
        })
        .collect()
}

/// A check of one file's text: its problems.
type Check = fn(&str) -> Vec<String>;

/// Runs `validate`: prints every problem, `ok` for clean files; `Ok(false)` when any has one.
pub fn run(args: &ValidateArgs) -> anyhow::Result<bool> {
    if args.policy.is_none() && args.whitelist.is_none() {
        anyhow::bail!("nothing to validate: give --policy FILE and/or --whitelist FILE");
    }
    let mut clean = true;
    let checks: [(&str, &Option<PathBuf>, Check); 2] = [
        ("policy", &args.policy, policy_problems),
        ("whitelist", &args.whitelist, whitelist_problems),
    ];
    for (what, path, check) in checks {
        let Some(path) = path else { continue };
        let problems = match std::fs::read_to_string(path) {
            Ok(text) => check(&text),
            Err(e) => vec![format!("cannot read: {e}")],
        };
        let mut report = String::new();
        if problems.is_empty() {
            report = format!("{what} {}: ok", path.display());
        }
        for p in &problems {
            clean = false;
            report.push_str(&format!("{what} {}: {p}\n", path.display()));
        }
        realload_common::cli::write_stdout(&report)?;
    }
    Ok(clean)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_report_every_broken_rule_with_its_path() {
        assert!(policy_problems("kind: Policy").is_empty());
        let problems = policy_problems(
            "descheduler: {minReplicas: 1}\nmetrics: [{name: cpu-avg-5m, period: 0s}]",
        );
        assert!(problems.len() >= 2, "{problems:?}");
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("descheduler.minReplicas")),
            "{problems:?}"
        );
        assert!(
            problems.iter().any(|p| p.starts_with("metrics[0].period")),
            "{problems:?}"
        );
        let parse = policy_problems("metrics: 3");
        assert_eq!(parse.len(), 1);
        assert!(parse[0].starts_with("metrics"), "{parse:?}");
    }

    #[test]
    fn whitelists_as_configmaps_or_data_report_each_bad_key() {
        let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: realload-whitelist}\ndata:\n  namespaces: |\n    kube-system\n    team-*\n";
        assert!(
            whitelist_problems(cm).is_empty(),
            "{:?}",
            whitelist_problems(cm)
        );
        assert!(whitelist_problems("apps: \"ingress-nginx\"\n").is_empty());
        let bad = whitelist_problems("namespaces: \"Not A Name!\"\ncolours: red\n");
        assert_eq!(bad.len(), 2, "{bad:?}");
        assert!(bad.iter().any(|p| p.contains("colours")), "{bad:?}");
        assert!(bad.iter().any(|p| p.contains("namespaces")), "{bad:?}");
        let binary = "kind: ConfigMap\nmetadata: {name: w}\nbinaryData: {nodes: AAAA}\n";
        assert!(whitelist_problems(binary)[0].contains("binaryData"));
        assert!(whitelist_problems("[1, 2]")[0].contains("expected a ConfigMap"));
    }
}

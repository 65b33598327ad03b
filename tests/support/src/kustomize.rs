//! A small kustomize renderer for the project's own `deploy/` tree, so CI can validate the
//! rendered overlays without a kustomize binary. It supports what `deploy/` uses: `resources`
//! (files and directories), `namespace`, `labels` (pairs, no selectors), `configMapGenerator`
//! (`files`, `key=path`, `disableNameSuffixHash`) and `patches` (JSON 6902 files with a
//! kind/name target). Anything else in a kustomization is an error, so the renderer cannot
//! silently disagree with kustomize.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Kustomization {
    #[serde(rename = "apiVersion")]
    _api_version: Option<String>,
    #[serde(rename = "kind")]
    _kind: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    resources: Vec<String>,
    #[serde(default)]
    config_map_generator: Vec<Generator>,
    #[serde(default)]
    patches: Vec<PatchRef>,
    #[serde(default)]
    labels: Vec<LabelSet>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Generator {
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    files: Vec<String>,
    #[serde(default)]
    options: Option<GeneratorOptions>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct GeneratorOptions {
    #[serde(default)]
    disable_name_suffix_hash: bool,
    /// Labels on the generated ConfigMap (a Grafana sidecar finds dashboards by label).
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchRef {
    path: String,
    target: Target,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Target {
    kind: String,
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LabelSet {
    pairs: std::collections::BTreeMap<String, String>,
}

/// Kinds that live outside namespaces.
const CLUSTER_SCOPED: [&str; 7] = [
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "PriorityClass",
    "StorageClass",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
];

/// Reads every YAML document of a file (skipping empty ones).
pub fn read_documents(path: &Path) -> Result<Vec<Value>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let v = Value::deserialize(doc).map_err(|e| format!("{}: {e}", path.display()))?;
        if !v.is_null() {
            out.push(v);
        }
    }
    Ok(out)
}

fn require_file(base: &Path, name: &str) -> Result<PathBuf, String> {
    let p = base.join(name);
    if p.exists() {
        Ok(p)
    } else {
        Err(format!(
            "{} names {name}, which does not exist",
            base.join("kustomization.yaml").display()
        ))
    }
}

/// Renders the kustomization in `dir` into its objects.
pub fn render(dir: &Path) -> Result<Vec<Value>, String> {
    let k_path = require_file(dir, "kustomization.yaml")?;
    let text = std::fs::read_to_string(&k_path).map_err(|e| e.to_string())?;
    let k: Kustomization =
        serde_yaml::from_str(&text).map_err(|e| format!("{}: {e}", k_path.display()))?;
    let mut objects = Vec::new();
    for r in &k.resources {
        let p = require_file(dir, r)?;
        if p.is_dir() {
            objects.extend(render(&p)?);
        } else {
            objects.extend(read_documents(&p)?);
        }
    }
    for g in &k.config_map_generator {
        let mut data = serde_json::Map::new();
        for f in &g.files {
            let (key, file) = f
                .split_once('=')
                .unwrap_or((f.rsplit('/').next().unwrap_or(f), f));
            let p = require_file(dir, file)?;
            let content = std::fs::read_to_string(&p).map_err(|e| e.to_string())?;
            data.insert(key.to_string(), Value::String(content));
        }
        if !g
            .options
            .as_ref()
            .is_some_and(|o| o.disable_name_suffix_hash)
        {
            return Err(format!(
                "configMapGenerator {}: realload's manifests disable the name hash; keep it so",
                g.name
            ));
        }
        let mut cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": g.name}, "data": data});
        if let Some(ns) = &g.namespace {
            cm["metadata"]["namespace"] = json!(ns);
        }
        if let Some(labels) = g.options.as_ref().map(|o| &o.labels)
            && !labels.is_empty()
        {
            cm["metadata"]["labels"] = json!(labels);
        }
        objects.push(cm);
    }
    for p in &k.patches {
        let file = require_file(dir, &p.path)?;
        let docs = read_documents(&file)?;
        let ops_value = docs
            .into_iter()
            .next()
            .ok_or(format!("{} is empty", file.display()))?;
        let ops: json_patch::Patch =
            serde_json::from_value(ops_value).map_err(|e| format!("{}: {e}", file.display()))?;
        let mut hit = false;
        for o in objects.iter_mut() {
            if o["kind"] == p.target.kind.as_str()
                && o["metadata"]["name"] == p.target.name.as_str()
            {
                json_patch::patch(o, &ops).map_err(|e| format!("{}: {e}", file.display()))?;
                hit = true;
            }
        }
        if !hit {
            return Err(format!(
                "patch {} matches no {} {}",
                p.path, p.target.kind, p.target.name
            ));
        }
    }
    for o in objects.iter_mut() {
        let kind = o["kind"].as_str().unwrap_or("").to_string();
        if let Some(ns) = &k.namespace
            && !CLUSTER_SCOPED.contains(&kind.as_str())
        {
            o["metadata"]["namespace"] = json!(ns);
        }
        for set in &k.labels {
            for (key, value) in &set.pairs {
                if !o["metadata"]["labels"].is_object() {
                    o["metadata"]["labels"] = json!({});
                }
                o["metadata"]["labels"][key] = json!(value);
            }
        }
    }
    Ok(objects)
}

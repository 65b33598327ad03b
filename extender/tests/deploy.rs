//! Validation of `deploy/`: every manifest and rendered overlay parses into its k8s-openapi type
//! with no unknown or misspelled field, RBAC has no wildcard, the scheduler configurations point at
//! the extender's routes and Service, the policy and whitelist ConfigMaps parse with the project's
//! own parsers, and the CronJob schedule is valid cron.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers may panic

use std::path::{Path, PathBuf};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use realload_common::policy::Policy;
use realload_common::whitelist::Whitelist;
use realload_test_support::kustomize;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn overlays() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(deploy().join("overlays"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

/// Every leaf of `original` must survive a round trip through the typed object.
fn lost_fields(original: &Value, kept: &Value, path: &str, out: &mut Vec<String>) {
    match original {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                match kept.get(k) {
                    Some(child) => lost_fields(v, child, &format!("{path}.{k}"), out),
                    None => out.push(format!("{path}.{k}")),
                }
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for (i, v) in items.iter().enumerate() {
                match kept.get(i) {
                    Some(child) => lost_fields(v, child, &format!("{path}[{i}]"), out),
                    None => out.push(format!("{path}[{i}]")),
                }
            }
        }
        leaf => {
            if leaf != kept
                && !(leaf.is_number() && kept.is_number() && leaf.as_f64() == kept.as_f64())
            {
                out.push(format!("{path} (was {leaf}, kept {kept})"));
            }
        }
    }
}

fn check_typed<T: DeserializeOwned + Serialize>(object: &Value, what: &str) -> Result<(), String> {
    let typed: T = serde_json::from_value(object.clone()).map_err(|e| format!("{what}: {e}"))?;
    let kept = serde_json::to_value(&typed).unwrap();
    let mut lost = Vec::new();
    lost_fields(object, &kept, "", &mut lost);
    if lost.is_empty() {
        Ok(())
    } else {
        Err(format!("{what}: unknown or misspelled fields {lost:?}"))
    }
}

fn check_object(o: &Value, source: &str) -> Result<(), String> {
    let kind = o["kind"].as_str().unwrap_or("");
    let what = format!(
        "{source}: {kind} {}",
        o["metadata"]["name"].as_str().unwrap_or("?")
    );
    match (o["apiVersion"].as_str().unwrap_or(""), kind) {
        ("v1", "Namespace") => check_typed::<Namespace>(o, &what),
        ("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicy") => check_typed::<
            k8s_openapi::api::admissionregistration::v1::ValidatingAdmissionPolicy,
        >(o, &what),
        ("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicyBinding") => {
            check_typed::<
                k8s_openapi::api::admissionregistration::v1::ValidatingAdmissionPolicyBinding,
            >(o, &what)
        }
        ("scheduling.k8s.io/v1", "PriorityClass") => {
            check_typed::<k8s_openapi::api::scheduling::v1::PriorityClass>(o, &what)
        }
        ("v1", "ConfigMap") => check_typed::<ConfigMap>(o, &what),
        ("v1", "Service") => check_typed::<Service>(o, &what),
        ("v1", "ServiceAccount") => check_typed::<ServiceAccount>(o, &what),
        ("apps/v1", "Deployment") => check_typed::<Deployment>(o, &what),
        ("batch/v1", "CronJob") => check_typed::<CronJob>(o, &what),
        ("policy/v1", "PodDisruptionBudget") => check_typed::<PodDisruptionBudget>(o, &what),
        ("networking.k8s.io/v1", "NetworkPolicy") => check_typed::<NetworkPolicy>(o, &what),
        ("rbac.authorization.k8s.io/v1", "ClusterRole") => check_typed::<ClusterRole>(o, &what),
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => {
            check_typed::<ClusterRoleBinding>(o, &what)
        }
        ("rbac.authorization.k8s.io/v1", "Role") => check_typed::<Role>(o, &what),
        ("rbac.authorization.k8s.io/v1", "RoleBinding") => check_typed::<RoleBinding>(o, &what),
        ("kind.x-k8s.io/v1alpha4", "Cluster") => check_kind_cluster(o, &what),
        ("monitoring.coreos.com/v1", "ServiceMonitor" | "PrometheusRule") => {
            check_monitoring(o, &what)
        }
        (api, kind) => Err(format!(
            "{what}: {api} {kind} is not a kind this test knows; add it"
        )),
    }
}

/// `deploy/kind/cluster.yaml`: the scheduler configuration it mounts exists, and kube-scheduler
/// is started with the mounted file.
fn check_kind_cluster(o: &Value, what: &str) -> Result<(), String> {
    let plane = &o["nodes"][0];
    let mount = &plane["extraMounts"][0];
    let host = mount["hostPath"]
        .as_str()
        .ok_or(format!("{what}: no extraMounts"))?;
    if !deploy().join("..").join(host).exists() {
        return Err(format!("{what}: mounts {host}, which does not exist"));
    }
    let in_node = mount["containerPath"].as_str().unwrap_or("");
    let patch = plane["kubeadmConfigPatches"][0].as_str().unwrap_or("");
    let patch: Value = serde_yaml::from_str(patch).map_err(|e| format!("{what}: {e}"))?;
    let config = patch["scheduler"]["extraArgs"]["config"].as_str();
    if config != Some(in_node) {
        return Err(format!(
            "{what}: kube-scheduler --config {config:?} is not the mounted {in_node}"
        ));
    }
    let volume = &patch["scheduler"]["extraVolumes"][0];
    if !in_node.starts_with(volume["mountPath"].as_str().unwrap_or("-")) {
        return Err(format!(
            "{what}: {in_node} is outside the scheduler's extra volume"
        ));
    }
    Ok(())
}

/// The Prometheus Operator's kinds are not in k8s-openapi: their fields are checked against the
/// ones realload uses (monitoring.coreos.com/v1), so a misspelled one fails here.
fn check_monitoring(o: &Value, what: &str) -> Result<(), String> {
    fn only(v: &Value, allowed: &[&str], at: &str) -> Result<(), String> {
        let map = v.as_object().ok_or(format!("{at}: not an object"))?;
        match map.keys().find(|k| !allowed.contains(&k.as_str())) {
            Some(k) => Err(format!("{at}.{k}: unknown or misspelled field")),
            None => Ok(()),
        }
    }
    only(o, &["apiVersion", "kind", "metadata", "spec"], what)?;
    only(&o["metadata"], &["name", "namespace", "labels"], what)?;
    let spec = &o["spec"];
    if o["kind"] == "ServiceMonitor" {
        only(
            spec,
            &["selector", "endpoints", "namespaceSelector", "jobLabel"],
            what,
        )?;
        only(&spec["selector"], &["matchLabels"], what)?;
        for e in spec["endpoints"]
            .as_array()
            .ok_or(format!("{what}: no endpoints"))?
        {
            only(
                e,
                &[
                    "port",
                    "path",
                    "interval",
                    "scheme",
                    "tlsConfig",
                    "scrapeTimeout",
                ],
                what,
            )?;
        }
        return Ok(());
    }
    only(spec, &["groups"], what)?;
    for g in spec["groups"]
        .as_array()
        .ok_or(format!("{what}: no groups"))?
    {
        only(g, &["name", "interval", "rules"], what)?;
        for r in g["rules"]
            .as_array()
            .ok_or(format!("{what}: a group without rules"))?
        {
            only(
                r,
                &["alert", "record", "expr", "for", "labels", "annotations"],
                what,
            )?;
            if !r["expr"].is_string() || !(r["alert"].is_string() ^ r["record"].is_string()) {
                return Err(format!(
                    "{what}: a rule needs expr and one of alert, record: {r}"
                ));
            }
        }
    }
    Ok(())
}

fn manifest_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            manifest_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "yaml") {
            out.push(p);
        }
    }
}

#[test]
fn every_manifest_and_rendered_overlay_parses_with_no_unknown_field() {
    let mut errors = Vec::new();
    let mut files = Vec::new();
    manifest_files(&deploy(), &mut files);
    for f in files {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        if name == "kustomization.yaml"
            || name == "policy.yaml"
            || name.ends_with("-patch.yaml")
            || name.contains("scheduler-config")
        {
            continue; // not Kubernetes objects: checked by the tests below
        }
        for doc in kustomize::read_documents(&f).unwrap() {
            if let Err(e) = check_object(&doc, &f.display().to_string()) {
                errors.push(e);
            }
        }
    }
    for overlay in overlays() {
        match kustomize::render(&overlay) {
            Ok(objects) => {
                assert!(objects.len() > 10, "{}", overlay.display());
                for o in &objects {
                    if let Err(e) = check_object(o, &overlay.display().to_string()) {
                        errors.push(e);
                    }
                }
            }
            Err(e) => errors.push(e),
        }
    }
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

#[test]
fn the_checker_catches_a_misspelled_field() {
    let bad = serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
        "spec": {"replica": 2, "selector": {}, "template": {}}});
    let e = check_object(&bad, "inline").unwrap_err();
    assert!(e.contains(".spec.replica"), "{e}");
    let rule = serde_json::json!({"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
        "metadata": {"name": "x"}, "spec": {"groups": [{"name": "g", "rules": [{"alert": "A", "expr": "1", "fro": "5m"}]}]}});
    let e = check_object(&rule, "inline").unwrap_err();
    assert!(e.contains(".fro"), "{e}");
    let missing = std::env::temp_dir().join(format!("realload-kust-{}", std::process::id()));
    std::fs::create_dir_all(&missing).unwrap();
    std::fs::write(
        missing.join("kustomization.yaml"),
        "resources: [nope.yaml]\n",
    )
    .unwrap();
    assert!(
        kustomize::render(&missing)
            .unwrap_err()
            .contains("does not exist")
    );
    std::fs::remove_dir_all(&missing).unwrap();
}

fn all_rendered() -> Vec<Value> {
    overlays()
        .iter()
        .flat_map(|o| kustomize::render(o).unwrap())
        .collect()
}

#[test]
fn rbac_has_no_wildcards() {
    for o in all_rendered() {
        if let Some(rules) = o["rules"].as_array() {
            for r in rules {
                for field in ["apiGroups", "resources", "verbs", "resourceNames"] {
                    for v in r[field].as_array().into_iter().flatten() {
                        assert_ne!(
                            v, "*",
                            "{} {} has a wildcard in {field}",
                            o["kind"], o["metadata"]["name"]
                        );
                    }
                }
            }
        }
    }
}

fn extender_prefix_and_port(objects: &[Value]) -> (String, u16) {
    let dep = objects
        .iter()
        .find(|o| o["kind"] == "Deployment" && o["metadata"]["name"] == "realload-extender")
        .unwrap();
    let args: Vec<&str> = dep["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let prefix = args
        .iter()
        .find_map(|a| a.strip_prefix("--path-prefix="))
        .unwrap()
        .to_string();
    let listen = args
        .iter()
        .find_map(|a| a.strip_prefix("--listen="))
        .unwrap();
    let port: u16 = listen.rsplit(':').next().unwrap().parse().unwrap();
    let svc = objects
        .iter()
        .find(|o| o["kind"] == "Service" && o["metadata"]["name"] == "realload-extender")
        .unwrap();
    assert_eq!(
        svc["spec"]["ports"][0]["port"], port,
        "the Service exposes the port the extender listens on"
    );
    (prefix, port)
}

fn check_extender_entry(e: &Value, prefix: &str, port: u16, legacy: bool, what: &str) {
    let url = e["urlPrefix"].as_str().unwrap();
    assert!(
        url.ends_with(&format!(":{port}{prefix}")),
        "{what}: urlPrefix {url} does not end with :{port}{prefix}"
    );
    // the routes the extender serves under the prefix
    let routes = realload_extender::server::ROUTES;
    assert!(
        routes.contains(&e["filterVerb"].as_str().unwrap()),
        "{what}: filterVerb"
    );
    assert!(
        routes.contains(&e["prioritizeVerb"].as_str().unwrap()),
        "{what}: prioritizeVerb"
    );
    assert!(
        e["weight"].as_i64().unwrap() > 0,
        "{what}: weight must be > 0 with a prioritizeVerb"
    );
    assert_eq!(e["nodeCacheCapable"], true, "{what}");
    assert_eq!(e["ignorable"], true, "{what}");
    if legacy {
        assert!(
            e["httpTimeout"].is_u64(),
            "{what}: legacy httpTimeout is integer nanoseconds"
        );
        assert!(
            e.get("enableHTTPS").is_none(),
            "{what}: the legacy field is enableHttps"
        );
    } else {
        assert!(
            e["httpTimeout"].is_string(),
            "{what}: v1 httpTimeout is a duration string"
        );
        assert!(
            e.get("enableHttps").is_none(),
            "{what}: v1 spells it enableHTTPS (strict decoding)"
        );
    }
}

#[test]
fn scheduler_configurations_match_the_extender_routes_and_service() {
    let base = kustomize::render(&deploy().join("overlays/default")).unwrap();
    let (prefix, port) = extender_prefix_and_port(&base);
    let kubeadm =
        &kustomize::read_documents(&deploy().join("scheduler/kube-scheduler-config.yaml")).unwrap()
            [0];
    assert_eq!(kubeadm["apiVersion"], "kubescheduler.config.k8s.io/v1");
    check_extender_entry(
        &kubeadm["extenders"][0],
        &prefix,
        port,
        false,
        "kube-scheduler-config.yaml",
    );
    let legacy: Value = serde_json::from_str(
        &std::fs::read_to_string(deploy().join("scheduler/policy.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        (legacy["kind"].as_str(), legacy["apiVersion"].as_str()),
        (Some("Policy"), Some("v1"))
    );
    check_extender_entry(&legacy["extenders"][0], &prefix, port, true, "policy.json");
    let second = kustomize::render(&deploy().join("overlays/second-scheduler")).unwrap();
    let cm = second
        .iter()
        .find(|o| o["kind"] == "ConfigMap" && o["metadata"]["name"] == "realload-scheduler-config")
        .unwrap();
    let config: Value = serde_yaml::from_str(cm["data"]["config.yaml"].as_str().unwrap()).unwrap();
    assert_eq!(config["profiles"][0]["schedulerName"], "realload-scheduler");
    check_extender_entry(
        &config["extenders"][0],
        &prefix,
        port,
        false,
        "second scheduler",
    );
    let url = config["extenders"][0]["urlPrefix"].as_str().unwrap();
    assert!(
        url.starts_with("http://realload-extender.realload-system.svc:"),
        "{url}"
    );
    let dep = second
        .iter()
        .find(|o| o["kind"] == "Deployment" && o["metadata"]["name"] == "realload-scheduler")
        .unwrap();
    let mount = &dep["spec"]["template"]["spec"]["containers"][0]["volumeMounts"][0]["mountPath"];
    let cmd = dep["spec"]["template"]["spec"]["containers"][0]["command"].to_string();
    assert!(
        cmd.contains(&format!("--config={}/config.yaml", mount.as_str().unwrap())),
        "{cmd}"
    );
}

#[test]
fn policy_and_whitelist_configmaps_parse_with_the_projects_parsers() {
    for overlay in overlays() {
        let objects = kustomize::render(&overlay).unwrap();
        let policy_cm = objects
            .iter()
            .find(|o| o["kind"] == "ConfigMap" && o["metadata"]["name"] == "realload-policy")
            .unwrap();
        let policy = Policy::from_yaml(policy_cm["data"]["policy.yaml"].as_str().unwrap()).unwrap();
        assert_eq!(
            policy,
            Policy::default(),
            "the shipped policy is the default one"
        );
        let wl: ConfigMap = serde_json::from_value(
            objects
                .iter()
                .find(|o| o["kind"] == "ConfigMap" && o["metadata"]["name"] == "realload-whitelist")
                .unwrap()
                .clone(),
        )
        .unwrap();
        let w = Whitelist::from_configmap(&wl).unwrap();
        assert!(w.namespaces.matches("kube-system") && w.namespaces.matches("realload-system"));
        assert!(
            w.app_matches(["istio-ingressgateway"])
                && w.app_matches(["api-gateway"])
                && w.app_matches(["ingress-nginx"])
        );
        // mounted where the binaries are told to read it
        for o in objects
            .iter()
            .filter(|o| o["kind"] == "Deployment" || o["kind"] == "CronJob")
        {
            let text = o.to_string();
            if text.contains("--policy=") {
                assert!(
                    text.contains("--policy=/etc/realload/policy.yaml")
                        && text.contains("\"mountPath\":\"/etc/realload\""),
                    "{}",
                    o["metadata"]["name"]
                );
            }
        }
    }
}

#[test]
fn the_cronjob_schedule_is_valid_cron_and_the_job_is_safe() {
    let objects = kustomize::render(&deploy().join("overlays/default")).unwrap();
    let cj = objects.iter().find(|o| o["kind"] == "CronJob").unwrap();
    let schedule = cj["spec"]["schedule"].as_str().unwrap();
    schedule
        .parse::<croner::Cron>()
        .unwrap_or_else(|e| panic!("{schedule}: {e}"));
    assert!(
        "*/61 * * *".parse::<croner::Cron>().is_err(),
        "the validator rejects bad cron"
    );
    assert_eq!(cj["spec"]["concurrencyPolicy"], "Forbid");
    assert!(cj["spec"]["startingDeadlineSeconds"].as_i64().is_some());
    assert_eq!(cj["spec"]["jobTemplate"]["spec"]["backoffLimit"], 0);
    assert!(
        cj["spec"]["jobTemplate"]["spec"]["activeDeadlineSeconds"]
            .as_i64()
            .is_some()
    );
}

#[test]
fn containers_run_non_root_read_only_without_privilege_escalation() {
    for o in all_rendered()
        .iter()
        .filter(|o| o["kind"] == "Deployment" || o["kind"] == "CronJob")
    {
        let pod = if o["kind"] == "CronJob" {
            &o["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        } else {
            &o["spec"]["template"]["spec"]
        };
        assert_eq!(
            pod["securityContext"]["runAsNonRoot"], true,
            "{}",
            o["metadata"]["name"]
        );
        for c in pod["containers"].as_array().unwrap() {
            assert_eq!(
                c["securityContext"]["allowPrivilegeEscalation"], false,
                "{}",
                o["metadata"]["name"]
            );
            assert_eq!(
                c["securityContext"]["readOnlyRootFilesystem"], true,
                "{}",
                o["metadata"]["name"]
            );
        }
    }
}

#[test]
fn the_manifests_run_the_image_of_this_version() {
    let want = format!("ghcr.io/realload/realload:{}", env!("CARGO_PKG_VERSION"));
    let mut images = 0;
    for o in all_rendered() {
        let text = serde_json::to_string(&o).unwrap();
        for (i, _) in text.match_indices("ghcr.io/realload/realload") {
            let image: String = text[i..].chars().take_while(|c| *c != '"').collect();
            assert_eq!(image, want, "{} {}", o["kind"], o["metadata"]["name"]);
            images += 1;
        }
    }
    assert!(images >= 3, "only {images} images in the manifests");
}

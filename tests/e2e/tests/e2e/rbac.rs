//! Least privilege, proven: each component runs as its ServiceAccount, with a token, under the
//! shipped RBAC, against an API server that writes an audit log. Any 403 fails the test, and so
//! does any granted verb that no run used, unless it is one the docs justify.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use realload_e2e::deploy;
use realload_e2e::objects::{self, FakeNode, create_node, readings};
use realload_e2e::procs::{Extender, http, realload_binary, run};
use realload_e2e::{cluster, unique};
use serde_json::{Value, json};

/// (API group, resource, verb) a component may use without a run here using it, and why
/// (`docs/operations.md`, "Permissions").
const JUSTIFIED: &[(&str, &str, &str, &str)] = &[
    (
        "realload-collector",
        "configmaps",
        "create",
        "the usage ConfigMap is created by a server-side apply PATCH, which the API server authorizes as create too",
    ),
    (
        "realload-descheduler",
        "events.k8s.io/events",
        "patch",
        "the event recorder patches an Event that repeats instead of creating another",
    ),
    (
        "realload-descheduler",
        "apps/statefulsets",
        "get",
        "owners of StatefulSet pods, read only with evictStatefulSets: true",
    ),
];

/// What the shipped RBAC grants each realload ServiceAccount: "group/resource[/sub]" → verbs.
fn granted(objects: &[Value]) -> BTreeMap<String, BTreeSet<(String, String)>> {
    let mut roles: BTreeMap<(String, String), Vec<Value>> = BTreeMap::new();
    for o in objects {
        if matches!(o["kind"].as_str(), Some("ClusterRole" | "Role")) {
            let ns = o["metadata"]["namespace"]
                .as_str()
                .unwrap_or("")
                .to_string();
            let name = o["metadata"]["name"].as_str().unwrap_or("").to_string();
            roles.insert(
                (ns, name),
                o["rules"].as_array().cloned().unwrap_or_default(),
            );
        }
    }
    let mut out: BTreeMap<String, BTreeSet<(String, String)>> = BTreeMap::new();
    for b in objects {
        let (role_ns, ok) = match b["kind"].as_str() {
            Some("ClusterRoleBinding") => (String::new(), true),
            Some("RoleBinding") => (
                if b["roleRef"]["kind"] == "ClusterRole" {
                    String::new()
                } else {
                    b["metadata"]["namespace"]
                        .as_str()
                        .unwrap_or("")
                        .to_string()
                },
                true,
            ),
            _ => (String::new(), false),
        };
        if !ok {
            continue;
        }
        let Some(rules) = roles.get(&(
            role_ns,
            b["roleRef"]["name"].as_str().unwrap_or("").to_string(),
        )) else {
            continue; // a built-in role (system:kube-scheduler and the like)
        };
        for s in b["subjects"].as_array().into_iter().flatten() {
            let Some(sa) = s["name"]
                .as_str()
                .filter(|n| n.starts_with("realload-") && *n != "realload-scheduler")
            else {
                continue;
            };
            for rule in rules {
                for group in rule["apiGroups"].as_array().into_iter().flatten() {
                    for resource in rule["resources"].as_array().into_iter().flatten() {
                        for verb in rule["verbs"].as_array().into_iter().flatten() {
                            let key = format!(
                                "{}/{}",
                                group.as_str().unwrap_or(""),
                                resource.as_str().unwrap_or("")
                            );
                            out.entry(sa.to_string()).or_default().insert((
                                key.trim_start_matches('/').to_string(),
                                verb.as_str().unwrap_or("").to_string(),
                            ));
                        }
                    }
                }
            }
        }
    }
    out
}

/// Every request a realload ServiceAccount made, from the audit log: (resource, verb, code).
fn used(audit: &str) -> BTreeMap<String, Vec<(String, String, i64, String)>> {
    let mut out: BTreeMap<String, Vec<(String, String, i64, String)>> = BTreeMap::new();
    for line in audit.lines() {
        let Ok(e) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let Some(user) = e["user"]["username"].as_str() else {
            continue;
        };
        let Some(sa) = user.strip_prefix("system:serviceaccount:realload-system:") else {
            continue;
        };
        if e["stage"] != "ResponseComplete" {
            continue;
        }
        let r = &e["objectRef"];
        let mut resource = format!(
            "{}/{}",
            r["apiGroup"].as_str().unwrap_or(""),
            r["resource"].as_str().unwrap_or("")
        );
        if let Some(sub) = r["subresource"].as_str() {
            resource = format!("{resource}/{sub}");
        }
        out.entry(sa.to_string()).or_default().push((
            resource.trim_start_matches('/').to_string(),
            e["verb"].as_str().unwrap_or("").to_string(),
            e["responseStatus"]["code"].as_i64().unwrap_or(0),
            e["requestURI"].as_str().unwrap_or("").to_string(),
        ));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kubernetes control plane: tests/run.sh"]
async fn each_component_runs_with_exactly_the_rights_it_is_granted() {
    let _turn = crate::descheduler::WORKLOADS.lock().await;
    let c = cluster();
    let client = c.client().await;
    // the shipped access objects: namespace, ServiceAccounts, RBAC, policy, whitelist, state
    let mut objects = deploy::render("default");
    objects.extend(
        deploy::render("bind")
            .into_iter()
            .filter(|o| o["kind"] == "ClusterRole" || o["kind"] == "ClusterRoleBinding"),
    );
    deploy::apply_all(&client, &objects, deploy::is_access).await;
    let kubeconfig = |sa: &str| {
        let client = client.clone();
        let sa = sa.to_string();
        async move {
            let token = deploy::token(&client, "realload-system", &sa).await;
            cluster().token_kubeconfig(&sa, &token)
        }
    };
    let group = unique("rbac");
    let ns = objects::namespace(&client, &group).await;
    let node = |s: &str| format!("{group}-{s}");
    let fresh = |r: f64| readings(r, SignedDuration::from_secs(20));
    for n in [
        FakeNode::new(node("hot")).cpu("16").readings(fresh(0.95)),
        FakeNode::new(node("cool")).cpu("16").readings(fresh(0.10)),
        FakeNode::new(node("cool-2"))
            .cpu("16")
            .readings(fresh(0.10)),
    ] {
        create_node(&client, &group, &n).await;
    }

    // The extender, with the bind overlay's rights: watches, then binds one pod itself.
    let extender_kc = kubeconfig("realload-extender").await;
    let ext = Extender::start(c, &extender_kc, None, &["--bind"]);
    ext.wait_ready().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    pods.create(
        &PostParams::default(),
        &objects::pod("to-bind", "nobody", &group, "100m"),
    )
    .await
    .unwrap();
    let body =
        json!({"PodName": "to-bind", "PodNamespace": ns, "PodUID": "", "Node": node("cool")})
            .to_string();
    let (status, answer) = http(ext.port, "POST", "/scheduler/bind", &body)
        .await
        .unwrap();
    assert_eq!(
        (status, answer.as_str()),
        (200, "{\"Error\":\"\"}"),
        "{}",
        ext.log_text()
    );
    drop(ext);

    // The collector: one leader-elected cycle that patches a node, then a SIGTERM release.
    let collector_kc = kubeconfig("realload-collector").await;
    let now = Timestamp::now().as_second();
    let prometheus =
        realload_test_support::scripted_prometheus(vec![(node("cool"), now as f64, "0.25".into())])
            .await;
    let policy = c.dir.join(format!("{group}-policy.yaml"));
    std::fs::write(&policy, "nodeIdentity: {matchBy: [name]}\n").unwrap();
    let admin = realload_test_support::free_port();
    // the usage ConfigMap as it is before this collector runs (another test may have written it)
    let cms: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(client.clone(), "realload-system");
    let usage_version = || async {
        cms.get_opt("realload-workload-usage")
            .await
            .unwrap()
            .and_then(|c| c.metadata.resource_version)
    };
    let usage_before = usage_version().await;
    let mut collector = std::process::Command::new(realload_binary("realload-extender"))
        .args([
            "collect",
            "--prometheus-url",
            &format!("http://127.0.0.1:{prometheus}"),
            "--policy",
            policy.to_str().unwrap(),
            "--lease-duration",
            "3s",
            "--identity",
            "rbac-test",
            "--admin-listen",
            &format!("127.0.0.1:{admin}"),
        ])
        .env("KUBECONFIG", &collector_kc)
        .env("REALLOAD_LOG", "warn")
        .spawn()
        .unwrap();
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let ann = nodes
            .get(&node("cool"))
            .await
            .unwrap()
            .metadata
            .annotations
            .unwrap_or_default();
        if ann
            .get("realload.io/cpu-avg-5m")
            .is_some_and(|v| v.starts_with("0.2500"))
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the collector never patched the node"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // and its learned usage table, applied to its ConfigMap (the first round waits for its pod
    // watch to list)
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while usage_version().await == usage_before {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the collector never published its usage table"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await; // a lease renewal (update)
    std::process::Command::new("kill")
        .args(["-TERM", &collector.id().to_string()])
        .status()
        .unwrap();
    let _ = collector.wait();

    // The descheduler: a real run that evicts one pod.
    objects::workload(
        &client,
        &ns,
        "web",
        &[&node("hot"), &node("cool"), &node("cool-2")],
        "3",
        &[],
    )
    .await;
    let descheduler_kc = kubeconfig("realload-descheduler").await;
    let out = run(
        "realload-descheduler",
        &descheduler_kc,
        &["--output", "json"],
    )
    .await;
    assert_eq!(out.code, Some(0), "{}\n{}", out.stderr, out.stdout);
    let report = out.json();
    let evicted: Vec<&Value> = report["evictions"]
        .as_array()
        .map(|a| a.iter().filter(|e| e["namespace"] == ns.as_str()).collect())
        .unwrap_or_default();
    assert_eq!(evicted.len(), 1, "{}", out.stdout);

    let Some(audit_path) = &c.audit_log else {
        eprintln!(
            "rbac: no audit log on this cluster; checked that every run succeeded, not which verbs it used"
        );
        objects::cleanup(&client, &ns, &group).await;
        return;
    };
    let audit = std::fs::read_to_string(audit_path).unwrap();
    let used = used(&audit);
    let granted = granted(&objects);
    let mut problems = Vec::new();
    for (sa, calls) in &used {
        for (resource, verb, code, uri) in calls {
            if *code == 403 {
                problems.push(format!("{sa}: 403 on {verb} {resource} ({uri})"));
            }
        }
    }
    for sa in [
        "realload-extender",
        "realload-collector",
        "realload-descheduler",
    ] {
        let calls = used.get(sa).cloned().unwrap_or_default();
        assert!(!calls.is_empty(), "{sa} made no call at all");
        for (resource, verb) in granted.get(sa).into_iter().flatten() {
            let was_used = calls
                .iter()
                .any(|(r, v, code, _)| r == resource && v == verb && *code < 400);
            let justified = JUSTIFIED
                .iter()
                .any(|(s, r, v, _)| *s == sa && r == resource && v == verb);
            if !was_used && !justified {
                problems.push(format!(
                    "{sa}: {verb} on {resource} is granted but no run used it"
                ));
            }
        }
    }
    let summary: BTreeMap<&String, BTreeSet<(String, String)>> = used
        .iter()
        .map(|(sa, calls)| {
            (
                sa,
                calls
                    .iter()
                    .map(|(r, v, _, _)| (r.clone(), v.clone()))
                    .collect(),
            )
        })
        .collect();
    eprintln!("rbac: calls by ServiceAccount: {summary:#?}");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    objects::cleanup(&client, &ns, &group).await;
}

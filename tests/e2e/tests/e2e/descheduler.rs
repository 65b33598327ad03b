//! The descheduler against the real API server: workloads built as the controllers would
//! (Deployment → ReplicaSet → pods with owner references), PodDisruptionBudget status set
//! through its subresource so the real Eviction API answers 429, Events read the way
//! `kubectl describe` reads them.

use std::collections::BTreeMap;

use jiff::SignedDuration;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use realload_e2e::objects::{self, FakeNode, create_node, readings};
use realload_e2e::procs::{Output, run};
use realload_e2e::{cluster, unique};
use serde_json::{Value, json};

/// Descheduler runs see every hot node of the cluster: tests that create evictable workloads
/// take turns, so one test's run never plans on another's pods.
pub static WORKLOADS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn hot_readings(ratio: f64) -> BTreeMap<String, String> {
    readings(ratio, SignedDuration::from_secs(20))
}

pub async fn configmap(client: &kube::Client, ns: &str, name: &str, data: Value) {
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": name}, "data": data})).unwrap();
    match cms.create(&PostParams::default(), &cm).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.is_already_exists() => {
            cms.replace(name, &PostParams::default(), &{
                let mut cm = cm.clone();
                cm.metadata.resource_version =
                    cms.get(name).await.unwrap().metadata.resource_version;
                cm
            })
            .await
            .unwrap();
        }
        Err(e) => panic!("{e}"),
    }
}

/// A PodDisruptionBudget over `selector` whose status (no disruption controller here) allows
/// `allowed` disruptions.
async fn pdb(client: &kube::Client, ns: &str, name: &str, selector: Value, allowed: i32) {
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), ns);
    if pdbs.get_opt(name).await.unwrap().is_none() {
        let p: PodDisruptionBudget = serde_json::from_value(json!({"metadata": {"name": name},
            "spec": {"minAvailable": 1, "selector": {"matchLabels": selector}}}))
        .unwrap();
        pdbs.create(&PostParams::default(), &p).await.unwrap();
    }
    let generation = pdbs
        .get(name)
        .await
        .unwrap()
        .metadata
        .generation
        .unwrap_or(1);
    pdbs.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(
            &json!({"status": {"observedGeneration": generation, "disruptionsAllowed": allowed,
            "currentHealthy": 6, "desiredHealthy": 6 - allowed, "expectedPods": 6}}),
        ),
    )
    .await
    .unwrap();
}

fn mine<'a>(report: &'a Value, key: &str, ns: &str) -> Vec<&'a Value> {
    report[key]
        .as_array()
        .map(|a| a.iter().filter(|e| e["namespace"] == ns).collect())
        .unwrap_or_default()
}

fn evicted(out: &Output, ns: &str) -> Vec<String> {
    mine(&out.json(), "evictions", ns)
        .iter()
        .map(|e| e["pod"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn skip_reason(out: &Output, ns: &str, pod: &str) -> String {
    mine(&out.json(), "skipped", ns)
        .iter()
        .find(|s| s["pod"] == pod)
        .and_then(|s| s["reason"].as_str())
        .unwrap_or_default()
        .to_string()
}

async fn terminating(client: &kube::Client, ns: &str) -> Vec<String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    pods.list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_some())
        .filter_map(|p| p.metadata.name)
        .collect()
}

/// The Events `kubectl describe` shows for an object: field selector on the involved object's
/// name, namespace, kind and uid.
async fn described_events(
    client: &kube::Client,
    namespace: Option<&str>,
    kind: &str,
    name: &str,
    uid: &str,
) -> Vec<Event> {
    let selector = format!(
        "involvedObject.name={name},involvedObject.namespace={},involvedObject.kind={kind},involvedObject.uid={uid}",
        namespace.unwrap_or("")
    );
    let events: Api<Event> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    events
        .list(&ListParams::default().fields(&selector))
        .await
        .unwrap()
        .items
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kubernetes control plane: tests/run.sh"]
async fn evicts_through_the_real_eviction_api_with_pdbs_cooldown_whitelist_edits_and_events() {
    let _turn = WORKLOADS.lock().await;
    let c = cluster();
    let client = c.client().await;
    let group = unique("desched");
    let ns = objects::namespace(&client, &group).await;
    let node = |s: &str| format!("{group}-{s}");
    for n in [
        FakeNode::new(node("hot-1"))
            .cpu("16")
            .readings(hot_readings(0.95)),
        FakeNode::new(node("hot-2"))
            .cpu("16")
            .readings(hot_readings(0.90)),
        FakeNode::new(node("cool-1"))
            .cpu("16")
            .readings(hot_readings(0.10)),
        FakeNode::new(node("cool-2"))
            .cpu("16")
            .readings(hot_readings(0.10)),
    ] {
        create_node(&client, &group, &n).await;
    }
    let (hot1, hot2, cool1, cool2) = (node("hot-1"), node("hot-2"), node("cool-1"), node("cool-2"));
    objects::workload(
        &client,
        &ns,
        "web",
        &[&hot1, &cool1, &cool2],
        "3",
        &[("tier", "shared")],
    )
    .await;
    objects::workload(
        &client,
        &ns,
        "api",
        &[&hot2, &cool1, &cool2],
        "3",
        &[("tier", "shared")],
    )
    .await;
    // one budget over both: it allows one disruption, so of two planned evictions the real
    // Eviction API refuses the second with 429
    pdb(&client, &ns, "shared", json!({"tier": "shared"}), 1).await;
    configmap(
        &client,
        &ns,
        "realload-whitelist",
        json!({"apps": "*gateway*"}),
    )
    .await;
    configmap(&client, &ns, "state", json!({})).await;
    let wl = format!("{ns}/realload-whitelist");
    let state = format!("{ns}/state");
    let args_with = |whitelist: &str, extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = [
            "--output",
            "json",
            "--whitelist-configmap",
            whitelist,
            "--state-configmap",
            &state,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let args = |extra: &[&str]| args_with(&wl, extra);
    let desched = |extra: Vec<String>| {
        let kc = c.kubeconfig.clone();
        async move {
            let a: Vec<&str> = extra.iter().map(String::as_str).collect();
            run("realload-descheduler", &kc, &a).await
        }
    };

    // Run 1: web-0 goes (hot-1 is hotter, first); api-0 is refused by the budget and the run goes on.
    let r = desched(args(&[])).await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(evicted(&r, &ns), ["web-0"], "{}", r.stdout);
    let refused = skip_reason(&r, &ns, "api-0");
    assert!(refused.contains("429"), "{refused}\n{}", r.stdout);
    assert_eq!(terminating(&client, &ns).await, ["web-0"]);
    let cm: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let recorded = cm.get("state").await.unwrap().data.unwrap_or_default();
    assert!(
        recorded.contains_key(&format!("Deployment.{ns}.web")),
        "{recorded:?}"
    );

    // Events, as `kubectl describe pod` and `kubectl describe node` find them.
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let web0_uid = pods.get("web-0").await.unwrap().metadata.uid.unwrap();
    let on_pod = described_events(&client, Some(&ns), "Pod", "web-0", &web0_uid).await;
    assert!(
        on_pod
            .iter()
            .any(|e| e.reason.as_deref() == Some("RealloadEvicted")),
        "{on_pod:?}"
    );
    let nodes: Api<Node> = Api::all(client.clone());
    let hot1_uid = nodes.get(&hot1).await.unwrap().metadata.uid.unwrap();
    let on_node = described_events(&client, None, "Node", &hot1, &hot1_uid).await;
    let e = on_node
        .iter()
        .find(|e| e.reason.as_deref() == Some("RealloadEvicted"))
        .unwrap_or_else(|| panic!("no Event on the node: {on_node:?}"));
    assert_eq!(
        e.related.as_ref().and_then(|r| r.name.as_deref()),
        Some("web-0"),
        "{e:?}"
    );
    assert!(
        e.message
            .as_deref()
            .unwrap_or("")
            .contains(&format!("{ns}/web-0")),
        "{e:?}"
    );

    // The evicted pod is gone and its replacement runs on hot-1 again.
    pods.delete(
        "web-0",
        &DeleteParams {
            grace_period_seconds: Some(0),
            ..DeleteParams::default()
        },
    )
    .await
    .unwrap();
    let replacement: Pod = {
        let mut p = pods.get("web-1").await.unwrap();
        p.metadata = kube::api::ObjectMeta {
            name: Some("web-3".into()),
            labels: p.metadata.labels.clone(),
            owner_references: p.metadata.owner_references.clone(),
            ..Default::default()
        };
        p.spec.as_mut().unwrap().node_name = Some(hot1.clone());
        p.status = None;
        p
    };
    pods.create(&PostParams::default(), &replacement)
        .await
        .unwrap();
    objects::set_running(
        &client,
        &ns,
        "web-3",
        jiff::Timestamp::now() - SignedDuration::from_hours(1),
    )
    .await;

    // A typo'd whitelist, then a missing one: exit 1, nothing evicted.
    configmap(&client, &ns, "realload-whitelist", json!({"app": "api"})).await;
    let before = terminating(&client, &ns).await;
    let r = desched(args(&[])).await;
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(
        r.stderr.contains("unknown data key \"app\""),
        "{}",
        r.stderr
    );
    let r = desched(args_with(&format!("{ns}/absent"), &[])).await;
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(r.stderr.contains("not found"), "{}", r.stderr);
    assert_eq!(
        terminating(&client, &ns).await,
        before,
        "nothing evicted on bad input"
    );

    // The operator fixes it and whitelists api; the budget allows one disruption again.
    configmap(&client, &ns, "realload-whitelist", json!({"apps": "api"})).await;
    pdb(&client, &ns, "shared", json!({"tier": "shared"}), 1).await;
    let r = desched(args(&[])).await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(evicted(&r, &ns).is_empty(), "{}", r.stdout);
    assert!(
        skip_reason(&r, &ns, "web-3").contains("workload cooldown"),
        "{}",
        r.stdout
    );
    assert_eq!(skip_reason(&r, &ns, "api-0"), "app whitelisted (api)");

    // The whitelist edit is undone: api-0 goes on the next run.
    configmap(&client, &ns, "realload-whitelist", json!({"apps": ""})).await;
    let r = desched(args(&[])).await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(evicted(&r, &ns), ["api-0"], "{}", r.stdout);
    objects::cleanup(&client, &ns, &group).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kubernetes control plane: tests/run.sh"]
async fn an_ingress_controller_is_protected_without_any_whitelist() {
    let _turn = WORKLOADS.lock().await;
    let c = cluster();
    let client = c.client().await;
    let group = unique("protect");
    let ns = objects::namespace(&client, &group).await;
    let node = |s: &str| format!("{group}-{s}");
    for n in [
        FakeNode::new(node("hot"))
            .cpu("16")
            .readings(hot_readings(0.95)),
        FakeNode::new(node("cool"))
            .cpu("16")
            .readings(hot_readings(0.10)),
    ] {
        create_node(&client, &group, &n).await;
    }
    // the controller as its Helm chart labels it, in an ordinary namespace
    let (hot, cool) = (node("hot"), node("cool"));
    objects::workload(
        &client,
        &ns,
        "ingress-nginx-controller",
        &[&hot, &cool],
        "2",
        &[
            ("app.kubernetes.io/name", "ingress-nginx"),
            ("app.kubernetes.io/component", "controller"),
        ],
    )
    .await;
    configmap(&client, &ns, "state", json!({})).await;
    let r = run(
        "realload-descheduler",
        &c.kubeconfig,
        &[
            "--output",
            "json",
            "--whitelist-configmap",
            &format!("{ns}/absent"),
            "--allow-missing-whitelist",
            "--state-configmap",
            &format!("{ns}/state"),
        ],
    )
    .await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(evicted(&r, &ns).is_empty(), "{}", r.stdout);
    assert_eq!(
        skip_reason(&r, &ns, "ingress-nginx-controller-0"),
        "protected (app ingress-nginx*)",
        "{}",
        r.stdout
    );
    assert!(terminating(&client, &ns).await.is_empty());
    objects::cleanup(&client, &ns, &group).await;
}

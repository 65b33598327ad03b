//! `explain` on the bundled example cluster: the README's main command.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers may panic

use std::process::Command;

use serde_json::Value;

const SNAPSHOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/example/cluster.json");
const POD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/example/pod.yaml");
const NOW: &str = "2026-11-22T01:05:00Z";

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_realload-extender"))
        .args(args)
        .output()
        .expect("run realload-extender");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn explain_json(pod: &str) -> Value {
    explain_json_with(pod, &[])
}

/// `explain --output json` on the example cluster with `extra` arguments.
fn explain_json_with(pod: &str, extra: &[&str]) -> Value {
    let mut args = vec![
        "explain",
        "--snapshot",
        SNAPSHOT,
        "--pod",
        pod,
        "--now",
        NOW,
        "--output",
        "json",
    ];
    args.extend_from_slice(extra);
    let (code, stdout, stderr) = run(&args);
    assert_eq!(code, 0, "{stderr}");
    serde_json::from_str(&stdout).unwrap()
}

fn row<'a>(e: &'a Value, node: &str) -> &'a Value {
    e["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["node"] == node)
        .unwrap()
}

#[test]
fn ranks_the_example_cluster_by_real_load() {
    let e = explain_json(POD);
    assert_eq!(e["pod"], "shop/web-new");
    assert_eq!(e["breakerTripped"], false);
    assert_eq!(e["unknownNodes"], 3);
    assert_eq!(
        e["nodes"][0]["node"], "node-a",
        "the coolest ready node ranks first"
    );
    // hot on CPU, hot on memory, and hot once the burst of fresh bindings is counted
    assert_eq!(
        row(&e, "node-b")["filterMessage"],
        "realload: node cpu-avg-5m above 0.85"
    );
    assert_eq!(
        row(&e, "node-h")["filterMessage"],
        "realload: node mem-avg-5m above 0.90"
    );
    let burst = row(&e, "node-e");
    assert_eq!(burst["passes"], false);
    assert!(burst["hotspotCpu"].as_f64().unwrap() > 0.4);
    // zero, stale and missing readings: unknown, never filtered, scored at unknownLoad
    for (node, quality) in [
        ("node-c", "suspect-zero"),
        ("node-d", "stale"),
        ("node-f", "missing"),
    ] {
        let r = row(&e, node);
        assert_eq!(r["known"], false, "{node}");
        assert_eq!(r["passes"], true, "{node}");
        assert_eq!(r["score"], 0, "{node}");
        assert_eq!(r["readings"][0]["quality"], quality, "{node}");
    }
    assert!(
        row(&e, "node-a")["score"].as_i64().unwrap() > row(&e, "node-c")["score"].as_i64().unwrap()
    );
}

#[test]
fn daemonset_pods_get_a_neutral_answer() {
    let dir = realload_test_support::temp_dir("explain", "snapshot");
    let pod = dir.join("ds.yaml");
    std::fs::write(
        &pod,
        "kind: Pod\nmetadata:\n  name: agent\n  ownerReferences:\n  - {apiVersion: apps/v1, kind: DaemonSet, name: agent, uid: u, controller: true}\nspec:\n  containers: [{name: a}]\n",
    )
    .unwrap();
    let e = explain_json(pod.to_str().unwrap());
    assert!(e["neutralReason"].as_str().unwrap().contains("DaemonSet"));
    assert!(
        e["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["passes"] == true && r["score"] == 0)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn table_output_is_the_default() {
    let (code, stdout, stderr) = run(&[
        "explain",
        "--snapshot",
        SNAPSHOT,
        "--pod",
        POD,
        "--now",
        NOW,
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("RANK  NODE"), "{stdout}");
    assert!(stdout.contains("suspect-zero"), "{stdout}");
}

#[test]
fn bad_inputs_fail_with_a_message_naming_them() {
    let (code, _, stderr) = run(&["explain", "--snapshot", "/nonexistent.json", "--pod", POD]);
    assert_ne!(code, 0);
    assert!(stderr.contains("/nonexistent.json"), "{stderr}");
    let (code, _, stderr) = run(&[
        "explain",
        "--snapshot",
        SNAPSHOT,
        "--pod",
        POD,
        "--now",
        "soon",
    ]);
    assert_ne!(code, 0);
    assert!(stderr.contains("RFC 3339"), "{stderr}");
    let (code, _, stderr) = run(&[
        "explain",
        "--snapshot",
        SNAPSHOT,
        "--pod",
        SNAPSHOT,
        "--policy",
        POD,
    ]);
    assert_ne!(code, 0);
    assert!(stderr.contains("pod.yaml"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explains_against_a_live_cluster_through_the_watches() {
    let list: Value = serde_json::from_str(&std::fs::read_to_string(SNAPSHOT).unwrap()).unwrap();
    let sim = realload_apisim::ApiSim::start_with(&list).await.unwrap();
    let dir = realload_test_support::temp_dir("explain", "live");
    let kubeconfig = dir.join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig).unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_realload-extender"))
        .args(["explain", "--pod", POD, "--now", NOW, "--output", "json"])
        .env("KUBECONFIG", &kubeconfig)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let live: Value = serde_json::from_slice(&out.stdout).unwrap();
    let snapshot = explain_json(POD);
    assert_eq!(
        live["nodes"], snapshot["nodes"],
        "live and snapshot views agree"
    );
    // read through the extender's own watchers: their initial lists, the pods filtered to the
    // bound ones (explain stops them once they have listed)
    let requests = sim.requests();
    assert!(requests.iter().any(|r| r.path == "/api/v1/nodes"));
    assert!(
        requests
            .iter()
            .any(|r| r.path == "/api/v1/pods" && r.query.contains("fieldSelector")),
        "{:?}",
        requests
            .iter()
            .map(|r| (&r.path, &r.query))
            .collect::<Vec<_>>()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_failure_is_said_once_and_in_json_when_json_was_asked_for() {
    let (code, stdout, stderr) = run(&["explain", "--snapshot", "/nonexistent.json", "--pod", POD]);
    assert_eq!(code, 1);
    assert!(stdout.is_empty(), "{stdout}");
    assert_eq!(
        stderr.matches("No such file or directory").count(),
        1,
        "the cause once: {stderr}"
    );
    let (code, stdout, _) = run(&[
        "explain",
        "--snapshot",
        SNAPSHOT,
        "--pod",
        POD,
        "--output",
        "json",
        "--policy",
        "/nonexistent.yaml",
    ]);
    assert_eq!(code, 1);
    let v: Value = serde_json::from_str(&stdout).unwrap();
    let error = v["error"].as_str().unwrap();
    assert!(error.contains("policy file /nonexistent.yaml"), "{error}");
    // a Pod manifest given as the snapshot names the mistake
    let (code, _, stderr) = run(&["explain", "--snapshot", POD, "--pod", POD]);
    assert_eq!(code, 1);
    assert!(stderr.contains("holds no Node"), "{stderr}");
}

/// `explain ... | head`: the reader closes the pipe before the report is written. That is not a
/// failure: exit 0, no error on stderr (it once panicked printing its error as JSON).
#[test]
fn a_reader_that_closes_the_pipe_early_gets_a_quiet_exit_0() {
    for output in ["json", "table"] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = Command::new(env!("CARGO_BIN_EXE_realload-extender"))
            .args([
                "explain",
                "--snapshot",
                SNAPSHOT,
                "--pod",
                POD,
                "--now",
                NOW,
                "--output",
                output,
            ])
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "--output {output}: {stderr}");
        assert!(
            !stderr.contains("error") && !stderr.contains("panicked"),
            "--output {output}: {stderr}"
        );
    }
}

/// The example cluster plus a learned usage table (measured at `updated`), and a 4-core pod of
/// the Deployment `shop/web`.
fn with_usage_table(updated: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!(
        "realload-explain-usage-{}-{}",
        std::process::id(),
        updated.replace(':', "")
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let mut cluster: Value =
        serde_json::from_str(&std::fs::read_to_string(SNAPSHOT).unwrap()).unwrap();
    let table = format!(
        r#"{{"updated":"{updated}","workloads":{{"shop/Deployment/web":{{"cpu":0.25,"memory":0.5,"pods":4}}}}}}"#
    );
    cluster["items"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "realload-workload-usage", "namespace": "realload-system"},
        "data": {"usage.json": table}}));
    let snapshot = dir.join("cluster.json");
    std::fs::write(&snapshot, cluster.to_string()).unwrap();
    let pod = dir.join("pod.yaml");
    std::fs::write(
        &pod,
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web-6d4f8b9c7-new\n  namespace: shop\n  labels: {app: web, pod-template-hash: 6d4f8b9c7}\n  ownerReferences: [{apiVersion: apps/v1, kind: ReplicaSet, name: web-6d4f8b9c7, uid: u, controller: true}]\nspec:\n  containers: [{name: web, resources: {requests: {cpu: \"4\", memory: 2Gi}}}]\n",
    )
    .unwrap();
    (snapshot, pod)
}

/// `explain` of `pod` on `snapshot` at [`NOW`], in `output`: exit code, stdout, stderr.
fn explain_on(
    snapshot: &std::path::Path,
    pod: &std::path::Path,
    output: &str,
) -> (i32, String, String) {
    run(&[
        "explain",
        "--snapshot",
        snapshot.to_str().unwrap(),
        "--pod",
        pod.to_str().unwrap(),
        "--now",
        NOW,
        "--output",
        output,
    ])
}

#[test]
fn the_learned_usage_of_the_pods_workload_is_shown_and_used() {
    let (snapshot, pod) = with_usage_table("2026-11-22T01:00:00Z");
    let (code, stdout, stderr) = explain_on(&snapshot, &pod, "json");
    assert_eq!(code, 0, "{stderr}");
    let e: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(e["workload"], "shop/Deployment/web");
    assert_eq!(e["expectedUsage"]["cpuShare"], 0.25);
    assert_eq!(e["expectedUsage"]["cpuLearned"], true);
    assert_eq!(e["expectedUsage"]["memoryShare"], 0.5);
    assert_eq!(e["learnedFrom"]["pods"], 4);
    // the pod's own share on a node is its learned usage: 4 cores × 0.25 of node-a's 8
    let a = row(&e, "node-a");
    assert!((a["podCpu"].as_f64().unwrap() - 0.125).abs() < 1e-9, "{a}");
    let (_, table, _) = explain_on(&snapshot, &pod, "table");
    assert!(
        table.contains("counted at 0.25 of its CPU request (learned) and 0.50 of its memory request (learned); workload shop/Deployment/web measured on 4 pod(s) at 2026-11-22T01:00:00Z"),
        "{table}"
    );

    // the same pod without a current table: the factors, and why
    let (old_snapshot, pod) = with_usage_table("2026-11-21T01:00:00Z");
    let (code, stdout, stderr) = explain_on(&old_snapshot, &pod, "table");
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("counted at 0.85 of its CPU request (hotspot.cpuFactor) and 0.70 of its memory request (hotspot.memoryFactor); nothing learned for workload shop/Deployment/web"),
        "a table older than workloadUsage.maxAge is not used: {stdout}"
    );
    let factors: Value = serde_json::from_str(&explain_on(&old_snapshot, &pod, "json").1).unwrap();
    let learned_share = row(&e, "node-a")["podCpu"].as_f64().unwrap();
    let factor_share = row(&factors, "node-a")["podCpu"].as_f64().unwrap();
    assert!(
        (factor_share / learned_share - 0.85 / 0.25).abs() < 1e-9,
        "{factor_share} {learned_share}"
    );
}

#[test]
fn an_unknown_last_resort_policy_holds_the_unknown_nodes_back_while_known_ones_fit() {
    let dir = std::env::temp_dir().join(format!("realload-explain-lr-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let policy = dir.join("policy.yaml");
    std::fs::write(&policy, "guards: {unknownLastResort: true}\n").unwrap();
    let e = explain_json_with(POD, &["--policy", policy.to_str().unwrap()]);
    for node in ["node-c", "node-d", "node-f"] {
        let r = row(&e, node);
        assert_eq!(r["passes"], false, "{r}");
        assert_eq!(
            r["filterMessage"],
            "realload: node load unknown; nodes with valid readings fit the pod"
        );
    }
    assert_eq!(row(&e, "node-a")["passes"], true);
    // the default lets them compete on their score
    let e = explain_json(POD);
    assert_eq!(row(&e, "node-c")["passes"], true);
    let _ = std::fs::remove_dir_all(&dir);
}

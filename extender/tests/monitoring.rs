//! `deploy/overlays/monitoring` against the real binaries: the alert rules pass `promtool check
//! rules` (Debian's prometheus package), the ServiceMonitors select Services with an `admin`
//! port, and every realload metric the rules and the dashboard use is in the real `/metrics`
//! output of the extender and the collector right after start, before any event.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers may panic

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use realload_apisim::ApiSim;
use realload_test_support::{
    KillOnDrop, free_port, kustomize, monitoring, require_program, temp_dir,
};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_realload-extender");

/// Metrics the rules and the dashboard take from kube-state-metrics (the descheduler is a
/// CronJob; its runs are Jobs). docs/operations.md lists them.
const KUBE_STATE_METRICS: &[&str] = &[
    "kube_job_status_failed",
    "kube_job_status_succeeded",
    "kube_cronjob_status_last_successful_time",
];

fn overlay() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/overlays/monitoring")
}

fn rendered() -> Vec<Value> {
    kustomize::render(&overlay()).unwrap()
}

/// Every `realload_*` and `kube_*` name in a PromQL expression.
fn metric_names(expr: &str, out: &mut BTreeSet<String>) {
    let bytes = expr.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let starts_word = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        if starts_word && (expr[i..].starts_with("realload_") || expr[i..].starts_with("kube_")) {
            let end = expr[i..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .map_or(expr.len(), |n| i + n);
            out.insert(expr[i..end].to_string());
            i = end;
        } else {
            i += 1;
        }
    }
}

fn rule_expressions(objects: &[Value]) -> Vec<String> {
    objects
        .iter()
        .filter(|o| o["kind"] == "PrometheusRule")
        .flat_map(|o| o["spec"]["groups"].as_array().cloned().unwrap_or_default())
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .map(|r| r["expr"].as_str().unwrap().to_string())
        .collect()
}

fn dashboard_expressions(objects: &[Value]) -> Vec<String> {
    let cm = objects
        .iter()
        .find(|o| o["kind"] == "ConfigMap" && o["metadata"]["name"] == "realload-dashboard")
        .expect("the dashboard ConfigMap");
    assert_eq!(cm["metadata"]["labels"]["grafana_dashboard"], "1");
    let dashboard: Value = serde_json::from_str(cm["data"]["realload.json"].as_str().unwrap())
        .expect("the dashboard is JSON");
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for t in panel["targets"].as_array().into_iter().flatten() {
            out.push(t["expr"].as_str().unwrap().to_string());
        }
    }
    assert!(out.len() >= 15, "only {} dashboard queries", out.len());
    out
}

/// promtool (Debian's prometheus package) in `dir`: whether it succeeded, and what it said.
fn promtool(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(require_program("promtool", "prometheus"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

#[test]
fn the_alert_rules_pass_promtool_and_their_unit_tests() {
    let objects = rendered();
    let rules: Vec<&Value> = objects
        .iter()
        .filter(|o| o["kind"] == "PrometheusRule")
        .collect();
    assert_eq!(rules.len(), 1);
    let dir = temp_dir("monitoring", "promtool");
    let file = dir.join("rules.yaml");
    std::fs::write(&file, serde_json::to_string(&rules[0]["spec"]).unwrap()).unwrap();
    let (ok, said) = promtool(&dir, &["check", "rules", "rules.yaml"]);
    assert!(ok, "promtool check rules:\n{said}");
    assert!(said.contains("16 rules found"), "{said}");

    // The rules' unit tests: each alert fires on broken series, and none on healthy ones.
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/alerts-test.yaml"
        ),
        dir.join("alerts-test.yaml"),
    )
    .unwrap();
    let (ok, said) = promtool(&dir, &["test", "rules", "alerts-test.yaml"]);
    assert!(ok, "promtool test rules:\n{said}");
    assert!(said.contains("SUCCESS"), "{said}");
}

#[test]
fn service_monitors_select_services_with_an_admin_port() {
    let objects = rendered();
    let monitors: Vec<&Value> = objects
        .iter()
        .filter(|o| o["kind"] == "ServiceMonitor")
        .collect();
    assert_eq!(monitors.len(), 2, "extender and collector");
    for m in monitors {
        let selector = m["spec"]["selector"]["matchLabels"].as_object().unwrap();
        let services: Vec<&Value> = objects
            .iter()
            .filter(|o| o["kind"] == "Service")
            .filter(|s| {
                selector
                    .iter()
                    .all(|(k, v)| &s["metadata"]["labels"][k] == v)
            })
            .collect();
        assert_eq!(services.len(), 1, "{}: {selector:?}", m["metadata"]["name"]);
        let port = m["spec"]["endpoints"][0]["port"].as_str().unwrap();
        let ports = services[0]["spec"]["ports"].as_array().unwrap();
        assert!(
            ports.iter().any(|p| p["name"] == port),
            "{} scrapes port {port}, which the Service lacks",
            m["metadata"]["name"]
        );
        assert_eq!(m["spec"]["endpoints"][0]["path"], "/metrics");
        // the Service's pods serve that port
        let deployment = objects
            .iter()
            .find(|o| {
                o["kind"] == "Deployment"
                    && services[0]["spec"]["selector"]
                        .as_object()
                        .unwrap()
                        .iter()
                        .all(|(k, v)| &o["spec"]["template"]["metadata"]["labels"][k] == v)
            })
            .expect("a Deployment behind the Service");
        let container_ports = &deployment["spec"]["template"]["spec"]["containers"][0]["ports"];
        assert!(
            container_ports
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == "admin"),
            "{}: no admin container port",
            deployment["metadata"]["name"]
        );
    }
}

async fn wait_for_metrics(port: u16, log: &Path) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(text) = monitoring::scrape(port).await {
            return text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no /metrics on {port}:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn spawn(args: &[String], kubeconfig: Option<&Path>, log: &Path) -> KillOnDrop {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("KUBECONFIG")
        .env("REALLOAD_LOG", "info,kube=warn");
    if let Some(k) = kubeconfig {
        cmd.env("KUBECONFIG", k);
    }
    let child = cmd
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    KillOnDrop(child)
}

/// Whether the exposition has a sample of this name (a histogram's `_bucket`, `_sum` and `_count`
/// samples are named in full, as PromQL names them).
fn has_sample(exposition: &str, name: &str) -> bool {
    exposition.lines().any(|l| {
        !l.starts_with('#')
            && l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_rules_and_dashboard_use_is_exported_from_start() {
    let objects = rendered();
    let mut names = BTreeSet::new();
    for expr in rule_expressions(&objects)
        .iter()
        .chain(&dashboard_expressions(&objects))
    {
        metric_names(expr, &mut names);
    }
    assert!(names.len() > 15, "{names:?}");

    let dir = temp_dir("monitoring", "metrics");
    // The extender on the bundled example, before any request.
    let admin = free_port();
    let snapshot = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/example/cluster.json");
    let extender_log = dir.join("extender.log");
    let _extender = spawn(
        &[
            "serve".into(),
            "--listen".into(),
            format!("127.0.0.1:{}", free_port()),
            "--admin-listen".into(),
            format!("127.0.0.1:{admin}"),
            "--snapshot".into(),
            snapshot.into(),
        ],
        None,
        &extender_log,
    );
    // The collector against the API simulator, with a Prometheus that is not there: nothing
    // written, nothing counted yet, and every family must still be exported.
    let sim = ApiSim::start().await.unwrap();
    sim.put(
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "a"},
                   "status": {"allocatable": {"cpu": "8", "memory": "32Gi"}}}),
    )
    .unwrap();
    let kubeconfig = dir.join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig).unwrap();
    let collector_admin = free_port();
    let collector_log = dir.join("collector.log");
    let _collector = spawn(
        &[
            "collect".into(),
            "--prometheus-url".into(),
            format!("http://127.0.0.1:{}", free_port()),
            "--identity".into(),
            "monitoring-test".into(),
            "--lease-namespace".into(),
            "realload-system".into(),
            "--admin-listen".into(),
            format!("127.0.0.1:{collector_admin}"),
        ],
        Some(&kubeconfig),
        &collector_log,
    );
    let exposition = format!(
        "{}\n{}",
        wait_for_metrics(admin, &extender_log).await,
        wait_for_metrics(collector_admin, &collector_log).await
    );

    let mut missing = Vec::new();
    for name in &names {
        if name.starts_with("kube_") {
            assert!(
                KUBE_STATE_METRICS.contains(&name.as_str()),
                "{name} is neither realload's nor a listed kube-state-metrics metric"
            );
        } else if !has_sample(&exposition, name) {
            missing.push(name.clone());
        }
    }
    assert!(
        missing.is_empty(),
        "used by rules or dashboard but not in /metrics at start: {missing:?}\n{exposition}"
    );
}

#[test]
fn metric_names_are_read_out_of_promql() {
    let mut names = BTreeSet::new();
    metric_names(
        "histogram_quantile(0.9, sum by (le) (rate(realload_extender_request_duration_seconds_bucket[5m]))) > 1 and kube_job_status_failed{job_name=~\"realload-descheduler-.*\"}",
        &mut names,
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        [
            "kube_job_status_failed",
            "realload_extender_request_duration_seconds_bucket"
        ]
    );
}

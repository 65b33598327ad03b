//! Every overlay of `deploy/` is accepted by the real API server: a server-side apply with
//! `dryRun=All` and `fieldValidation=Strict` (an unknown or duplicated field is refused).

use realload_e2e::cluster;
use realload_e2e::deploy::{self, Resolver};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kubernetes control plane: tests/run.sh"]
async fn every_overlay_passes_a_strict_server_side_dry_run() {
    let c = cluster();
    let client = c.client().await;
    // namespaced objects need their namespace to exist, even in a dry run (and pods their
    // PriorityClass)
    let base = deploy::render("default");
    deploy::apply_all(&client, &base, |o| {
        o["kind"] == "Namespace" || o["kind"] == "PriorityClass"
    })
    .await;
    let resolver = Resolver::new(&client).await;
    let mut problems = Vec::new();
    let mut checked = 0;
    for overlay in deploy::overlays() {
        for object in deploy::render(&overlay) {
            // The Prometheus Operator's CRDs are not installed on the bundled control plane (nor
            // on every cluster): those objects are checked offline by extender/tests/deploy.rs
            // and monitoring.rs (fields, selectors, promtool). On a cluster that serves them,
            // they are dry-run here too.
            if object["apiVersion"] == "monitoring.coreos.com/v1"
                && resolver.resolve(&object).is_none()
            {
                continue;
            }
            checked += 1;
            if let Err(e) = deploy::apply(&client, &resolver, &object, true).await {
                problems.push(format!("{overlay}: {e}"));
            }
        }
    }
    assert!(checked > 40, "only {checked} objects rendered");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

//! The extender under the real kube-scheduler, configured from the project's own
//! `deploy/scheduler/kube-scheduler-config.yaml`.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::SignedDuration;
use realload_e2e::objects::{self, FakeNode, create_node, pod, readings};
use realload_e2e::procs::{Extender, Scheduler};
use realload_e2e::{cluster, unique};

const CONFIG: &str = "deploy/scheduler/kube-scheduler-config.yaml";

/// Three cool nodes, two hot ones, and one each reporting 0, stale and without readings. The hot
/// and unknown nodes are larger, so that kube-scheduler alone (LeastAllocated) would prefer them.
fn incident_nodes(group: &str) -> Vec<FakeNode> {
    let fresh = SignedDuration::from_secs(20);
    let n = |suffix: &str| format!("{group}-{suffix}");
    vec![
        FakeNode::new(n("cool-1")).readings(readings(0.20, fresh)),
        FakeNode::new(n("cool-2")).readings(readings(0.20, fresh)),
        FakeNode::new(n("cool-3")).readings(readings(0.20, fresh)),
        FakeNode::new(n("hot-1"))
            .cpu("32")
            .readings(readings(0.95, fresh)),
        FakeNode::new(n("hot-2"))
            .cpu("32")
            .readings(readings(0.95, fresh)),
        FakeNode::new(n("zero"))
            .cpu("32")
            .readings(readings(0.0, fresh)),
        FakeNode::new(n("stale"))
            .cpu("32")
            .readings(readings(0.20, SignedDuration::from_mins(20))),
        FakeNode::new(n("missing")).cpu("32"),
    ]
}

fn count(per_node: &BTreeMap<String, usize>, node: &str) -> usize {
    per_node.get(node).copied().unwrap_or(0)
}

fn set_mode(cache: bool) -> impl FnOnce(&mut serde_yaml::Value) {
    move |c| {
        c["extenders"][0]["nodeCacheCapable"] = cache.into();
    }
}

async fn incident(cache: bool) {
    let c = cluster();
    let client = c.client().await;
    let group = unique(if cache { "inc-cache" } else { "inc-nocache" });
    let ns = objects::namespace(&client, &group).await;
    for n in incident_nodes(&group) {
        create_node(&client, &group, &n).await;
    }
    let ext = Extender::start(c, &c.kubeconfig, None, &[]);
    ext.wait_ready().await;
    let sched = Scheduler::start(
        c,
        CONFIG,
        &group,
        &format!("http://127.0.0.1:{}/scheduler", ext.port),
        set_mode(cache),
    );
    let node = |s: &str| format!("{group}-{s}");

    // While the cool nodes have room, hot and unknown nodes get nothing.
    objects::create_pods(&client, &ns, "steady", 12, |name| {
        pod(name, &group, &group, "500m")
    })
    .await;
    let placed = objects::wait_bound(&client, &ns, 12, Duration::from_secs(60)).await;
    let per = objects::per_node(&placed);
    assert_eq!(
        placed.values().flatten().count(),
        12,
        "every pod bound: {placed:?}\nscheduler log:\n{}",
        sched.log_text()
    );
    for s in ["hot-1", "hot-2", "zero", "stale", "missing"] {
        assert_eq!(count(&per, &node(s)), 0, "{s} got a pod: {per:?}");
    }
    assert!(
        ext.requests("filter").await >= 12 && ext.requests("prioritize").await >= 12,
        "kube-scheduler called the extender"
    );

    // A burst of 90: the hot-spot estimate fills the cool nodes, then only unknown nodes are
    // left; each takes at most the cap (2), the rest waits.
    objects::create_pods(&client, &ns, "burst", 90, |name| {
        pod(name, &group, &group, "1")
    })
    .await;
    let placed = objects::wait_settled(
        &client,
        &ns,
        Duration::from_secs(8),
        Duration::from_secs(120),
    )
    .await;
    let per = objects::per_node(&placed);
    eprintln!("{group}: after the burst {per:?}");
    for s in ["hot-1", "hot-2"] {
        assert_eq!(count(&per, &node(s)), 0, "{s}: {per:?}");
    }
    for s in ["zero", "stale", "missing"] {
        assert!(
            count(&per, &node(s)) <= 2,
            "{s} took more than the cap: {per:?}"
        );
    }
    let waiting = placed.values().filter(|n| n.is_none()).count();
    assert!(
        waiting > 0,
        "with only unknown nodes left, pods wait: {per:?}"
    );
    let debug = ext.debug().await;
    assert_eq!(
        debug["recentBreakerTrips"], 0,
        "the filter did not trip the breaker"
    );
    sched_events_name_the_wait(&client, &ns).await;
    drop(sched);
    drop(ext);
    objects::cleanup(&client, &ns, &group).await;
}

/// A waiting pod's FailedScheduling event carries realload's message.
async fn sched_events_name_the_wait(client: &kube::Client, ns: &str) {
    use k8s_openapi::api::core::v1::Event;
    use kube::api::{Api, ListParams};
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let list = events
            .list(&ListParams::default().fields("reason=FailedScheduling"))
            .await
            .unwrap();
        if list.items.iter().any(|e| {
            e.message
                .as_deref()
                .is_some_and(|m| m.contains("node load unknown"))
        }) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no FailedScheduling event names realload's reason: {:?}",
            list.items
                .iter()
                .map(|e| e.message.clone())
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kubernetes control plane: tests/run.sh"]
async fn cache_mode_keeps_pods_off_hot_and_unknown_nodes_and_caps_a_burst() {
    incident(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kubernetes control plane: tests/run.sh"]
async fn node_objects_mode_keeps_pods_off_hot_and_unknown_nodes_and_caps_a_burst() {
    incident(false).await;
}

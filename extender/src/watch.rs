//! The Node and Pod watches that feed the index. Each runs with kube's default backoff; an error
//! marks the index unsynced (readiness drops) until the watcher's next full re-list completes.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};

use crate::metrics::WatchLabel;
use crate::state::State;

/// Only pods that hold node resources: bound and not finished. Pods leaving this selection
/// (finished, deleted) arrive as deletions.
pub const POD_FIELD_SELECTOR: &str = "spec.nodeName!=,status.phase!=Succeeded,status.phase!=Failed";

pub fn spawn_node_watch(
    state: Arc<State>,
    client: kube::Client,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(
        async move {
            let api: Api<Node> = Api::all(client);
            let mut stream = watcher::watcher(api, watcher::Config::default())
                .default_backoff()
                .boxed();
            loop {
                let event = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    e = stream.next() => e,
                };
                match event {
                    Some(Ok(Event::Init)) => state.nodes_init(),
                    Some(Ok(Event::InitApply(node) | Event::Apply(node))) => {
                        state.apply_node(&node)
                    }
                    Some(Ok(Event::Delete(node))) => state.delete_node(&node),
                    Some(Ok(Event::InitDone)) => {
                        state.nodes_init_done();
                        info!(nodes = state.index().nodes.len(), "node index synced");
                    }
                    Some(Err(e)) => {
                        warn!(error = %e, "node watch failed; retrying with backoff");
                        state
                            .metrics
                            .watch_restarts
                            .get_or_create(&WatchLabel {
                                watch: "nodes".into(),
                            })
                            .inc();
                        state.mark_unsynced(true, false);
                    }
                    None => break,
                }
            }
            state.mark_unsynced(true, false);
        }
        .instrument(info_span!("watch", resource = "nodes")),
    )
}

pub fn spawn_pod_watch(
    state: Arc<State>,
    client: kube::Client,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(
        async move {
            let api: Api<Pod> = Api::all(client);
            let config = watcher::Config::default().fields(POD_FIELD_SELECTOR);
            let mut stream = watcher::watcher(api, config).default_backoff().boxed();
            loop {
                let event = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    e = stream.next() => e,
                };
                match event {
                    Some(Ok(Event::Init)) => state.pods_init(),
                    Some(Ok(Event::InitApply(pod) | Event::Apply(pod))) => state.apply_pod(&pod),
                    Some(Ok(Event::Delete(pod))) => state.delete_pod(&pod),
                    Some(Ok(Event::InitDone)) => {
                        state.pods_init_done();
                        info!(ledger = state.index().ledger.len(), "pod ledger synced");
                    }
                    Some(Err(e)) => {
                        warn!(error = %e, "pod watch failed; retrying with backoff");
                        state
                            .metrics
                            .watch_restarts
                            .get_or_create(&WatchLabel {
                                watch: "pods".into(),
                            })
                            .inc();
                        state.mark_unsynced(false, true);
                    }
                    None => break,
                }
            }
            state.mark_unsynced(false, true);
        }
        .instrument(info_span!("watch", resource = "pods")),
    )
}

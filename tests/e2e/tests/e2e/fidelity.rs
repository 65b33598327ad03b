//! The API simulator's conformance bodies, unchanged, against the real API server: where the
//! answers differ, the simulator is wrong.

use realload_apisim::conformance::{self, Backend};
use realload_e2e::cluster;

macro_rules! on_the_real_api_server {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        #[ignore = "needs a Kubernetes control plane: tests/run.sh"]
        async fn $name() {
            conformance::$name(&Backend::real(cluster().client().await)).await;
        }
    )*};
}

on_the_real_api_server!(
    list_pagination_selectors_and_resource_version,
    create_get_update_delete_with_conflicts,
    generation_moves_with_spec_only,
    patches_merge_json_and_server_side_apply,
    watch_streams_resumes_and_expires,
    streaming_lists_end_with_a_bookmark_and_watches_time_out,
    eviction_honours_pod_disruption_budgets,
    binding_sets_the_node_once,
    graceful_deletion_and_finalizers,
    status_is_its_own_subresource,
);

//! `POST /bind` (`bindVerb`): the extender binds the pod itself and counts it on its node at once,
//! before any watch event arrives.

use super::*;

#[derive(Clone)]
pub struct Binder {
    pub client: Option<kube::Client>,
}

pub(super) async fn bind(AxumState(app): AxumState<AppState>, request: Request) -> Response {
    let started = Instant::now();
    let body = match read_body(&app, request).await {
        Ok(b) => b,
        Err(e) => return json(StatusCode::PAYLOAD_TOO_LARGE, protocol::bind_response(&e)),
    };
    let args = match protocol::parse_bind(&body) {
        Ok(a) => a,
        Err(e) => {
            let (status, text) = bad_request(
                &app.state,
                "bind",
                started,
                &e,
                protocol::bind_response(&format!("realload: {e}")),
            );
            return json(status, text);
        }
    };
    let client = app.binder.as_ref().and_then(|b| b.client.clone());
    let Some(client) = client else {
        app.state
            .metrics
            .request("bind", "error", started.elapsed().as_secs_f64());
        return json(
            StatusCode::OK,
            protocol::bind_response(
                "realload: snapshot mode writes nothing to a cluster, the pod was not bound",
            ),
        );
    };
    let pods: kube::Api<Pod> = kube::Api::namespaced(client, &args.pod_namespace);
    // Read the pod first: its requests are what the hot-spot estimate adds.
    let pod = pods.get(&args.pod_name).await.ok();
    let binding = serde_json::json!({
        "apiVersion": "v1", "kind": "Binding",
        "metadata": {"name": args.pod_name, "namespace": args.pod_namespace, "uid": args.pod_uid},
        "target": {"apiVersion": "v1", "kind": "Node", "name": args.node},
    });
    let result = pods
        .create_subresource::<serde_json::Value, serde_json::Value>(
            "binding",
            &args.pod_name,
            &kube::api::PostParams::default(),
            &binding,
        )
        .await;
    match result {
        Ok(_) => {
            let uid = pod
                .as_ref()
                .and_then(|p| p.metadata.uid.clone())
                .unwrap_or(args.pod_uid.clone());
            app.state.record_binding(&uid, &args.node, pod.as_ref());
            info!(pod = %format!("{}/{}", args.pod_namespace, args.pod_name), node = %args.node, "bound");
            app.state
                .metrics
                .request("bind", "ok", started.elapsed().as_secs_f64());
            json(StatusCode::OK, protocol::bind_response(""))
        }
        Err(e) => {
            warn!(pod = %args.pod_name, node = %args.node, error = %e, "binding failed");
            app.state
                .metrics
                .request("bind", "error", started.elapsed().as_secs_f64());
            json(
                StatusCode::OK,
                protocol::bind_response(&format!("realload: binding failed: {e}")),
            )
        }
    }
}

//! The project's `deploy/` overlays on a real API server: rendered by the tests' kustomize
//! renderer, applied with server-side apply (for real, or as a strict dry run).

use kube::api::{Api, DynamicObject, Patch, PatchParams, ValidationDirective};
use kube::discovery::{ApiCapabilities, ApiResource, Discovery, Scope};
use serde_json::Value;

use crate::workspace;

/// Every object of an overlay (`default`, `tls`, `bind`, `second-scheduler`, ...).
pub fn render(overlay: &str) -> Vec<Value> {
    let dir = workspace().join("deploy/overlays").join(overlay);
    realload_test_support::kustomize::render(&dir)
        .unwrap_or_else(|e| panic!("rendering {}: {e}", dir.display()))
}

/// The overlays the project ships.
pub fn overlays() -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(workspace().join("deploy/overlays"))
        .expect("deploy/overlays")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("kustomization.yaml").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    out.sort();
    out
}

/// Maps an object's apiVersion and kind to the API's resource, through discovery.
pub struct Resolver {
    discovery: Discovery,
}

impl Resolver {
    pub async fn new(client: &kube::Client) -> Resolver {
        Resolver {
            discovery: Discovery::new(client.clone())
                .run()
                .await
                .expect("API discovery"),
        }
    }

    pub fn resolve(&self, object: &Value) -> Option<(ApiResource, ApiCapabilities)> {
        let api_version = object["apiVersion"].as_str()?;
        let kind = object["kind"].as_str()?;
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let gvk = kube::api::GroupVersionKind::gvk(group, version, kind);
        self.discovery.resolve_gvk(&gvk)
    }
}

/// Applies one object with server-side apply as field manager `realload-e2e`, strictly
/// validated (an unknown or duplicate field is an error), for real or as a dry run.
pub async fn apply(
    client: &kube::Client,
    resolver: &Resolver,
    object: &Value,
    dry_run: bool,
) -> Result<(), String> {
    let what = format!(
        "{} {}/{}",
        object["kind"].as_str().unwrap_or("?"),
        object["metadata"]["namespace"].as_str().unwrap_or(""),
        object["metadata"]["name"].as_str().unwrap_or("?")
    );
    let (resource, caps) = resolver
        .resolve(object)
        .ok_or_else(|| format!("{what}: the API server serves no such kind"))?;
    let name = object["metadata"]["name"]
        .as_str()
        .ok_or_else(|| format!("{what}: no name"))?;
    let api: Api<DynamicObject> = match caps.scope {
        Scope::Namespaced => Api::namespaced_with(
            client.clone(),
            object["metadata"]["namespace"]
                .as_str()
                .unwrap_or("default"),
            &resource,
        ),
        Scope::Cluster => Api::all_with(client.clone(), &resource),
    };
    let mut params = PatchParams::apply("realload-e2e").force();
    params.dry_run = dry_run;
    params.field_validation = Some(ValidationDirective::Strict);
    api.patch(name, &params, &Patch::Apply(object))
        .await
        .map(|_| ())
        .map_err(|e| format!("{what}: {e}"))
}

/// Applies every object of `objects` that `keep` selects, for real; panics naming the first
/// refusal.
pub async fn apply_all(client: &kube::Client, objects: &[Value], keep: impl Fn(&Value) -> bool) {
    let resolver = Resolver::new(client).await;
    for o in objects.iter().filter(|o| keep(o)) {
        apply(client, &resolver, o, false).await.unwrap();
    }
}

/// The objects of the kinds that set up access: namespaces, ServiceAccounts, RBAC, ConfigMaps.
pub fn is_access(object: &Value) -> bool {
    matches!(
        object["kind"].as_str(),
        Some(
            "Namespace"
                | "ServiceAccount"
                | "ClusterRole"
                | "ClusterRoleBinding"
                | "Role"
                | "RoleBinding"
                | "ConfigMap"
        )
    )
}

/// A token for a ServiceAccount (TokenRequest, as `kubectl create token` does).
pub async fn token(client: &kube::Client, namespace: &str, name: &str) -> String {
    use k8s_openapi::api::authentication::v1::TokenRequest;
    use k8s_openapi::api::core::v1::ServiceAccount;
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    let request: TokenRequest = serde_json::from_value(serde_json::json!({
        "spec": {"audiences": [], "expirationSeconds": 3600}
    }))
    .expect("a TokenRequest");
    let answer: TokenRequest = sas
        .create_subresource("token", name, &Default::default(), &request)
        .await
        .unwrap_or_else(|e| panic!("a token for {namespace}/{name}: {e}"));
    answer.status.expect("a token").token
}

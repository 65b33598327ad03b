//! `Status` objects shaped exactly like kube-apiserver's (apimachinery `errors.go`).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::resources::Resource;

#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
    /// Sent as `Retry-After` and `details.retryAfterSeconds`.
    pub retry_after: Option<u32>,
}

fn details(resource: &Resource, name: &str) -> Value {
    let mut d = json!({"name": name, "kind": resource.plural});
    if !resource.group.is_empty() {
        d["group"] = json!(resource.group);
    }
    d
}

impl ApiError {
    pub fn status_body(&self) -> Value {
        let mut body = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": self.message, "reason": self.reason, "code": self.code,
        });
        let mut details = self.details.clone();
        if let Some(seconds) = self.retry_after {
            let d = details.get_or_insert_with(|| json!({}));
            d["retryAfterSeconds"] = json!(seconds);
        }
        if let Some(d) = details {
            body["details"] = d;
        }
        body
    }

    pub fn not_found(resource: &Resource, name: &str) -> Self {
        ApiError {
            code: 404,
            reason: "NotFound",
            message: format!("{} \"{}\" not found", resource.qualified(), name),
            details: Some(details(resource, name)),
            retry_after: None,
        }
    }

    pub fn already_exists(resource: &Resource, name: &str) -> Self {
        ApiError {
            code: 409,
            reason: "AlreadyExists",
            message: format!("{} \"{}\" already exists", resource.qualified(), name),
            details: Some(details(resource, name)),
            retry_after: None,
        }
    }

    pub fn conflict(resource: &Resource, name: &str, why: &str) -> Self {
        ApiError {
            code: 409,
            reason: "Conflict",
            message: format!(
                "Operation cannot be fulfilled on {} \"{}\": {}",
                resource.qualified(),
                name,
                why
            ),
            details: Some(details(resource, name)),
            retry_after: None,
        }
    }

    pub fn modified(resource: &Resource, name: &str) -> Self {
        Self::conflict(
            resource,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError {
            code: 400,
            reason: "BadRequest",
            message: message.into(),
            details: None,
            retry_after: None,
        }
    }

    /// A 422 as kube-apiserver words it: `Deployment.apps "web" is invalid: <field>: Invalid
    /// value: <problem>`, with the kind (not the plural) in the details.
    pub fn invalid(resource: &Resource, name: &str, field: &str, problem: &str) -> Self {
        let mut d = json!({"name": name, "kind": resource.kind});
        if !resource.group.is_empty() {
            d["group"] = json!(resource.group);
        }
        d["causes"] = json!([{"reason": "FieldValueInvalid", "message": format!("Invalid value: {problem}"), "field": field}]);
        let kind = if resource.group.is_empty() {
            resource.kind.to_string()
        } else {
            format!("{}.{}", resource.kind, resource.group)
        };
        ApiError {
            code: 422,
            reason: "Invalid",
            message: format!("{kind} \"{name}\" is invalid: {field}: Invalid value: {problem}"),
            details: Some(d),
            retry_after: None,
        }
    }

    /// What kube-apiserver answers to an apply patch without `fieldManager`.
    pub fn apply_without_field_manager() -> Self {
        ApiError {
            code: 422,
            reason: "Invalid",
            message: "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch".into(),
            details: Some(json!({"group": "meta.k8s.io", "kind": "PatchOptions", "causes": [
                {"reason": "FieldValueRequired", "message": "Required value: is required for apply patch", "field": "fieldManager"}]})),
            retry_after: None,
        }
    }

    pub fn method_not_allowed() -> Self {
        ApiError {
            code: 405,
            reason: "MethodNotAllowed",
            message: "the server does not allow this method on the requested resource".into(),
            details: None,
            retry_after: None,
        }
    }

    pub fn unsupported_media_type(content_type: &str) -> Self {
        ApiError {
            code: 415,
            reason: "UnsupportedMediaType",
            message: format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (got {content_type:?})"
            ),
            details: None,
            retry_after: None,
        }
    }

    pub fn path_not_found() -> Self {
        ApiError {
            code: 404,
            reason: "NotFound",
            message: "the server could not find the requested resource".into(),
            details: None,
            retry_after: None,
        }
    }

    /// `too old resource version: 5 (10)`, as the watch cache says it.
    pub fn expired(requested: u64, oldest: u64) -> Self {
        ApiError {
            code: 410,
            reason: "Expired",
            message: format!("too old resource version: {requested} ({oldest})"),
            details: None,
            retry_after: None,
        }
    }

    pub fn injected(code: u16, retry_after: Option<u32>) -> Self {
        let (reason, message) = match code {
            429 => (
                "TooManyRequests",
                "the server has received too many requests and has asked us to try again later"
                    .to_string(),
            ),
            503 => (
                "ServiceUnavailable",
                "the server is currently unable to handle the request".to_string(),
            ),
            500 => (
                "InternalError",
                "Internal error occurred: injected fault".to_string(),
            ),
            _ => ("InternalError", format!("injected fault with code {code}")),
        };
        ApiError {
            code,
            reason,
            message,
            details: if code == 429 { Some(json!({})) } else { None },
            retry_after,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (code, axum::Json(self.status_body())).into_response();
        if let Some(seconds) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&seconds.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        response
    }
}

/// The `Status` a successful eviction or binding answers with.
pub fn success(code: u16) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": code})
}

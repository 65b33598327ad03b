//! The node-heat page on the admin listener: `GET /` serves a self-contained page (its script
//! and style from `/status.js` and `/status.css`, nothing from elsewhere) that draws
//! `/debug/nodes`, and `POST /debug/explain` ranks the nodes for a pasted Pod manifest, as
//! `realload-extender explain` does.

use axum::http::HeaderValue;

use super::*;

const PAGE: &str = include_str!("status/index.html");
const SCRIPT: &str = include_str!("status/status.js");
const STYLE: &str = include_str!("status/status.css");

/// The most a pasted Pod manifest may weigh.
const WHAT_IF_LIMIT: usize = 1024 * 1024;

/// Only this origin's own script, style and requests; no framing, no forms elsewhere.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

pub(super) async fn page() -> Response {
    asset("text/html; charset=utf-8", PAGE)
}

pub(super) async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

pub(super) async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

/// `POST /debug/explain`: the body is a Pod manifest (YAML or JSON); the answer is the JSON of
/// `explain --output json`, or 400 with `{"error": ...}` naming what is wrong with the manifest.
pub(super) async fn what_if(AxumState(app): AxumState<AppState>, body: Bytes) -> Response {
    let error = |status: StatusCode, message: String| {
        json(status, serde_json::json!({ "error": message }).to_string())
    };
    if body.len() > WHAT_IF_LIMIT {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the manifest exceeds {WHAT_IF_LIMIT} bytes"),
        );
    }
    let Ok(text) = std::str::from_utf8(&body) else {
        return error(StatusCode::BAD_REQUEST, "the manifest is not UTF-8".into());
    };
    let pod = match crate::explain::parse_pod(text) {
        Ok(pod) => pod,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let explanation = crate::explain::explain(&app.state, &pod);
    match serde_json::to_string(&explanation) {
        Ok(text) => json(StatusCode::OK, text),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

//! The web portal at `/`: sign in with an API token, watch sync groups, run
//! and cancel syncs, read logs and conflicts, and create groups in three
//! steps as in Azure's portal.
//!
//! Pages are rendered on the server from askama templates (checked at
//! compile time). The only script is `static/portal.js`, served from the
//! binary, which refreshes a group's state area every two seconds; every
//! page works without it. Nothing is loaded from another host.
//!
//! A group's page also shows, per member, the rows pending in each direction
//! ([`pending`]) and, while a sync runs, its progress as the running server
//! publishes it in the store (so it shows whichever server runs the group).
//!
//! Routes: `/` (redirects), `/portal/...` (pages and forms) and
//! `/portal/static/...`; nothing under `/v1`, `/metrics` or `/healthz`.

// Handlers bail out with a whole page (`Result<_, Response>`); a response is
// large, but these paths run once per request, not in loops.
#![allow(clippy::result_large_err)]

mod create;
mod format;
mod pages;
mod pending;
pub mod session;
pub mod svg;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use crate::api::ApiState;
use crate::runner::Runner;
use pending::PendingCache;
use session::Sessions;

/// What every portal handler can reach.
#[derive(Debug, Clone)]
pub struct PortalState {
    /// The API's state: the store, the scheduler's wake, the base directory.
    pub api: ApiState,
    /// The signed-in sessions of this process.
    pub sessions: Sessions,
    /// The runner whose open connections count the rows pending per member.
    pub runner: Runner,
    /// Pending rows counted lately, so a page refreshing every two seconds
    /// does not count them every time.
    pub pending: PendingCache,
}

/// The portal's routes, to be merged into the API's router. `runner` is
/// the server's own (its connections are reused to count pending rows).
pub fn router(state: ApiState, runner: Runner) -> Router {
    let state = PortalState { api: state, sessions: Sessions::default(), runner, pending: PendingCache::default() };
    Router::new()
        .route("/", get(|| async { Redirect::to("/portal/groups") }))
        .route("/portal", get(|| async { Redirect::to("/portal/groups") }))
        .route("/portal/static/portal.css", get(stylesheet))
        .route("/portal/static/portal.js", get(script))
        .route("/portal/signin", get(pages::signin::form).post(pages::signin::submit))
        .route("/portal/signout", post(pages::signin::sign_out))
        .route("/portal/groups", get(pages::groups::list))
        .route("/portal/groups/{group}", get(pages::groups::show))
        .route("/portal/groups/{group}/status", get(pages::groups::status))
        .route("/portal/groups/{group}/sync", post(pages::groups::sync_now))
        .route("/portal/groups/{group}/cancel", post(pages::groups::cancel))
        .route("/portal/groups/{group}/settings", post(pages::manage::save_settings))
        .route("/portal/groups/{group}/tables", get(pages::manage::tables_form).post(pages::manage::tables_submit))
        .route("/portal/groups/{group}/delete", get(pages::manage::delete_form).post(pages::manage::delete_submit))
        .route(
            "/portal/groups/{group}/members/{member}/remove",
            get(pages::manage::remove_form).post(pages::manage::remove_submit),
        )
        .route("/portal/groups/{group}/logs", get(pages::logs::logs))
        .route("/portal/groups/{group}/conflicts", get(pages::logs::conflicts))
        .route("/portal/new", get(create::start))
        .route("/portal/new/{draft}", get(create::basics_form).post(create::basics_submit))
        .route("/portal/new/{draft}/members", get(create::members_form).post(create::members_submit))
        .route("/portal/new/{draft}/tables", get(create::tables_form).post(create::tables_submit))
        // Not a fallback: the API's router has one, and axum cannot merge two.
        .route("/portal/{*rest}", get(not_found))
        .layer(axum::middleware::from_fn(same_origin_writes))
        .with_state(state)
}

/// Refuses a form POST sent from another site. The session cookie is
/// `SameSite=Strict` already; this also covers browsers that ignore that.
async fn same_origin_writes(request: Request, next: Next) -> Response {
    if request.method() != Method::GET && request.method() != Method::HEAD && !same_origin(request.headers()) {
        return pages::error_page(
            StatusCode::FORBIDDEN,
            None,
            "Refused",
            "This form was sent from another site. Open the portal directly and try again.",
        );
    }
    next.run(request).await
}

/// Whether the `Origin` header, when present, names the host the request was
/// sent to.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else { return true };
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else { return false };
    let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
    origin_host.eq_ignore_ascii_case(host)
}

async fn not_found() -> Response {
    pages::error_page(StatusCode::NOT_FOUND, None, "Not found", "There is no portal page at this address.")
}

async fn stylesheet() -> Response {
    static_file("text/css; charset=utf-8", include_str!("../../static/portal.css"))
}

async fn script() -> Response {
    static_file("text/javascript; charset=utf-8", include_str!("../../static/portal.js"))
}

fn static_file(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "max-age=300")], body).into_response()
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn a_post_from_another_origin_is_told_apart() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("127.0.0.1:7400"));
        assert!(same_origin(&headers));
        headers.insert(header::ORIGIN, HeaderValue::from_static("http://127.0.0.1:7400"));
        assert!(same_origin(&headers));
        headers.insert(header::ORIGIN, HeaderValue::from_static("https://evil.example"));
        assert!(!same_origin(&headers));
    }
}

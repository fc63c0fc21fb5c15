//! The REST API under `/v1`, its OpenAPI document, and `/metrics` and `/healthz`.
//!
//! Every route but `/healthz` needs a bearer token ([`auth`]); every error is
//! an [`ApiError`] with a stable code; request bodies go through
//! [`extract::ApiJson`], which turns every malformed body into such an error.

mod auth;
pub mod convert;
pub mod error;
pub mod extract;
mod groups;
mod logs;
mod members;
mod openapi;
mod operations;
mod service;

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use metrics_exporter_prometheus::PrometheusHandle;

pub use error::ApiError;

use crate::scheduler::Wake;
use crate::store::MetaStore;

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct ApiState {
    /// The metadata store.
    pub store: MetaStore,
    /// Wakes this server's scheduler after `triggerSync` / `cancelSync`.
    pub wake: Wake,
    /// Relative SQLite paths are taken relative to this.
    pub base_dir: PathBuf,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
}

/// The handlers' state: the API state and what the API keeps for itself.
#[derive(Debug)]
struct App {
    api: ApiState,
    tokens: auth::TokenCache,
}

/// The whole HTTP surface: `/v1/...`, `/v1/openapi.json`, `/metrics`, `/healthz`.
pub fn router(state: ApiState) -> Router {
    let app = Arc::new(App { api: state, tokens: auth::TokenCache::default() });
    let group = "/v1/syncGroups/{group}";
    let member = "/v1/syncGroups/{group}/syncMembers/{member}";
    let protected = Router::new()
        .route("/v1/syncGroups", get(groups::list_groups))
        .route(
            group,
            get(groups::get_group).put(groups::put_group).patch(groups::patch_group).delete(groups::delete_group),
        )
        .route(&format!("{group}/refreshHubSchema"), post(groups::refresh_hub_schema))
        .route(&format!("{group}/hubSchemas"), get(groups::hub_schemas))
        .route(&format!("{group}/triggerSync"), post(groups::trigger_sync))
        .route(&format!("{group}/cancelSync"), post(groups::cancel_sync))
        .route(&format!("{group}/logs"), get(logs::logs))
        .route(&format!("{group}/conflicts"), get(logs::conflicts))
        .route(&format!("{group}/syncMembers"), get(members::list_members))
        .route(
            member,
            get(members::get_member)
                .put(members::put_member)
                .patch(members::patch_member)
                .delete(members::delete_member),
        )
        .route(&format!("{member}/refreshSchema"), post(members::refresh_member_schema))
        .route(&format!("{member}/schemas"), get(members::member_schemas))
        .route("/v1/operations/{id}", get(operations::get_operation))
        .route("/v1/openapi.json", get(service::openapi_json))
        .route("/metrics", get(service::metrics))
        .fallback(service::not_found)
        .method_not_allowed_fallback(service::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(Arc::clone(&app), auth::require_token));
    Router::new()
        .route(service::HEALTHZ, get(service::healthz))
        .merge(protected)
        .layer(DefaultBodyLimit::max(extract::MAX_BODY_BYTES))
        .with_state(app)
}

/// The OpenAPI 3 document served at `/v1/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    openapi::document()
}

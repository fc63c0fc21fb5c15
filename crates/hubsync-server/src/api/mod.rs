//! The REST API under `/v1`, its OpenAPI document, and `/metrics` and `/healthz`.

use std::path::PathBuf;

use metrics_exporter_prometheus::PrometheusHandle;

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

/// The whole HTTP surface: `/v1/...`, `/v1/openapi.json`, `/metrics`, `/healthz`.
pub fn router(state: ApiState) -> axum::Router {
    let _ = state;
    todo!("api")
}

/// The OpenAPI 3 document served at `/v1/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    todo!("api")
}

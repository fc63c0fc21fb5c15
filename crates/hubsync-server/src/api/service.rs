//! The routes that are not resources: the OpenAPI document, Prometheus
//! metrics and the health check, and the JSON answers for unknown routes.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, Uri, header};
use axum::response::IntoResponse;

use super::App;
use super::error::{ApiError, code};
use crate::model::HealthStatus;

/// The health check's path (the only route without a token).
pub const HEALTHZ: &str = "/healthz";

/// The OpenAPI document of this API.
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    tag = "service",
    responses((status = 200, description = "The OpenAPI 3 document.", body = Object))
)]
pub(crate) async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(super::openapi())
}

/// Prometheus metrics: syncs, rows, conflicts, durations, changes waiting.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "service",
    responses((status = 200, description = "Metrics in the Prometheus text format.", body = String, content_type = "text/plain"))
)]
pub(crate) async fn metrics(State(app): State<Arc<App>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], app.api.metrics.render())
}

/// Whether the server answers; needs no token.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "service",
    security(()),
    responses((status = 200, description = "The server is up.", body = HealthStatus))
)]
pub(crate) async fn healthz() -> Json<HealthStatus> {
    Json(HealthStatus { status: "ok".to_string() })
}

/// Any path that is no route.
pub(crate) async fn not_found(uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        code::NOT_FOUND,
        format!("there is no `{}` in this API; its routes are listed in /v1/openapi.json", uri.path()),
    )
}

/// A route called with a method it does not have.
pub(crate) async fn method_not_allowed(uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        code::METHOD_NOT_ALLOWED,
        format!("`{}` does not take this method; see /v1/openapi.json", uri.path()),
    )
}

//! Long operations: answered with `202 Accepted` and a `Location` to
//! `GET /v1/operations/{id}`, run in a task, finished in the store.

use std::future::Future;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::App;
use super::error::{ApiError, code};
use super::extract::ApiPath;
use crate::model::{ErrorDetail, ErrorResponse, Operation};
use crate::store::MetaStore;

/// Records a new operation named `name`, runs `work` in a task and records
/// its end; answers `202 Accepted` with the operation and its `Location`.
pub(crate) async fn start<F>(store: &MetaStore, name: &str, work: F) -> Result<Response, ApiError>
where
    F: Future<Output = Result<(), ErrorDetail>> + Send + 'static,
{
    let operation = store.create_operation(name).await?;
    let id = operation.id.clone();
    let finisher = store.clone();
    let name = name.to_string();
    tokio::spawn(async move {
        let result = work.await;
        match &result {
            Ok(()) => tracing::info!(operation = %id, name, "Long operation succeeded."),
            Err(e) => {
                tracing::warn!(operation = %id, name, code = %e.code, message = %e.message, "Long operation failed.")
            }
        }
        if let Err(e) = finisher.finish_operation(&id, result).await {
            tracing::error!(operation = %id, error = %e, "Cannot record the end of a long operation.");
        }
    });
    let location = format!("/v1/operations/{}", operation.id);
    Ok((StatusCode::ACCEPTED, [(header::LOCATION, location)], Json(operation)).into_response())
}

/// A store failure inside a long operation, as the operation's error
/// (details logged, not shown).
pub(crate) fn store_failure(error: crate::store::StoreError) -> ErrorDetail {
    ApiError::from(error).detail()
}

/// Reads a long operation.
#[utoipa::path(
    get,
    path = "/v1/operations/{id}",
    tag = "operations",
    params(("id" = String, Path, description = "The operation's id, from the `Location` of a 202 answer.")),
    responses(
        (status = 200, description = "The operation.", body = Operation),
        (status = 404, description = "No such operation (`OperationNotFound`).", body = ErrorResponse),
    )
)]
pub(crate) async fn get_operation(
    State(app): State<Arc<App>>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Operation>, ApiError> {
    let operation = app.api.store.get_operation(&id).await?.ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, code::OPERATION_NOT_FOUND, format!("operation `{id}` does not exist"))
    })?;
    Ok(Json(operation))
}

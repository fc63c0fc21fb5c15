//! `/v1/syncGroups` and a group's actions: refreshing the hub's schema,
//! triggering and cancelling syncs.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::App;
use super::convert::{self, check_group_name};
use super::error::{ApiError, code};
use super::extract::{ApiJson, ApiPath};
use super::operations;
use crate::inspect;
use crate::model::{DatabaseSchema, ErrorDetail, ErrorResponse, List, Operation, SyncGroup};
use crate::spec::{DatabaseSpec, GroupSpec};
use crate::store::{PutOutcome, StoredGroup};

/// The stored group, or 404.
pub(crate) async fn find_group(app: &App, name: &str) -> Result<StoredGroup, ApiError> {
    app.api.store.get_group(name).await?.ok_or_else(|| ApiError::group_not_found(name))
}

/// Whether two database specs name the same database (passwords aside).
fn same_database(a: &DatabaseSpec, b: &DatabaseSpec) -> bool {
    a.database_type == b.database_type
        && a.server_name == b.server_name
        && a.database_name == b.database_name
        && a.user_name == b.user_name
}

/// Checks the selected tables against the hub's schema when it was
/// refreshed for this hub (a schema read from a previous hub says nothing).
async fn check_tables(app: &App, spec: &GroupSpec, previous: Option<&GroupSpec>) -> Result<(), ApiError> {
    if spec.tables.is_empty() || !previous.is_some_and(|p| same_database(&p.hub, &spec.hub)) {
        return Ok(());
    }
    match app.api.store.hub_schema(&spec.name).await? {
        Some(schema) => convert::check_tables_on_hub(&spec.tables, &schema),
        None => Ok(()),
    }
}

/// Stores a group and answers with it: 201 when new, else 200.
async fn store_group(app: &App, spec: &GroupSpec) -> Result<(StatusCode, Json<SyncGroup>), ApiError> {
    let outcome = app.api.store.put_group(spec).await?;
    tracing::info!(group = %spec.name, hub = %spec.hub.display(), ?outcome, "Sync group stored through the API.");
    let stored = app
        .api
        .store
        .get_group(&spec.name)
        .await?
        .ok_or_else(|| ApiError::internal("a group just stored cannot be read back"))?;
    let status = if outcome == PutOutcome::Created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(convert::group_resource(&stored))))
}

/// Lists every sync group.
#[utoipa::path(
    get,
    path = "/v1/syncGroups",
    tag = "syncGroups",
    responses((status = 200, description = "Every sync group, by name.", body = List<SyncGroup>))
)]
pub(crate) async fn list_groups(State(app): State<Arc<App>>) -> Result<Json<List<SyncGroup>>, ApiError> {
    let groups = app.api.store.list_groups().await?;
    Ok(Json(List { value: groups.iter().map(convert::group_resource).collect() }))
}

/// Reads a sync group.
#[utoipa::path(
    get,
    path = "/v1/syncGroups/{group}",
    tag = "syncGroups",
    params(("group" = String, Path, description = "The sync group's name.")),
    responses(
        (status = 200, description = "The sync group (never its hub's password).", body = SyncGroup),
        (status = 404, description = "No such group (`SyncGroupNotFound`).", body = ErrorResponse),
    )
)]
pub(crate) async fn get_group(
    State(app): State<Arc<App>>,
    ApiPath(group): ApiPath<String>,
) -> Result<Json<SyncGroup>, ApiError> {
    Ok(Json(convert::group_resource(&find_group(&app, &group).await?)))
}

/// Creates or replaces a sync group. `properties.hub` with `databaseType`
/// and `databaseName` is required; a PUT without the hub's password keeps
/// the stored one when engine, server and user are unchanged.
#[utoipa::path(
    put,
    path = "/v1/syncGroups/{group}",
    tag = "syncGroups",
    params(("group" = String, Path, description = "The sync group's name: 1 to 128 letters, digits, `-`, `_`, `.`.")),
    request_body = SyncGroup,
    responses(
        (status = 200, description = "The group was replaced.", body = SyncGroup),
        (status = 201, description = "The group was created.", body = SyncGroup),
        (status = 400, description = "A bad name, property or body (`InvalidSyncGroupName`, \
            `InvalidSyncGroupInterval`, `MissingProperty`, `UnknownProperty`, `MalformedJson`, ...).", body = ErrorResponse),
        (status = 422, description = "A selected table or column is not on the hub or has no primary key \
            (`TableNotFound`, `ColumnNotFound`, `TableHasNoPrimaryKey`).", body = ErrorResponse),
    )
)]
pub(crate) async fn put_group(
    State(app): State<Arc<App>>,
    ApiPath(group): ApiPath<String>,
    ApiJson(body): ApiJson<SyncGroup>,
) -> Result<(StatusCode, Json<SyncGroup>), ApiError> {
    check_group_name(&group)?;
    convert::check_body_name(body.name.as_deref(), &group)?;
    let previous = app.api.store.get_group(&group).await?.map(|g| g.spec);
    let mut spec = convert::group_spec(&group, body.properties)?;
    if let Some(previous) = &previous {
        convert::keep_password(&mut spec.hub, &previous.hub);
    }
    check_tables(&app, &spec, previous.as_ref()).await?;
    store_group(&app, &spec).await
}

/// Changes the given properties of a sync group; the others keep their
/// values (`hub` is merged field by field, `schema` replaced whole).
#[utoipa::path(
    patch,
    path = "/v1/syncGroups/{group}",
    tag = "syncGroups",
    params(("group" = String, Path, description = "The sync group's name.")),
    request_body = SyncGroup,
    responses(
        (status = 200, description = "The changed group.", body = SyncGroup),
        (status = 400, description = "A bad property or body.", body = ErrorResponse),
        (status = 404, description = "No such group (`SyncGroupNotFound`).", body = ErrorResponse),
        (status = 422, description = "A selected table or column is not on the hub or has no primary key.", body = ErrorResponse),
    )
)]
pub(crate) async fn patch_group(
    State(app): State<Arc<App>>,
    ApiPath(group): ApiPath<String>,
    ApiJson(body): ApiJson<SyncGroup>,
) -> Result<(StatusCode, Json<SyncGroup>), ApiError> {
    convert::check_body_name(body.name.as_deref(), &group)?;
    let previous = find_group(&app, &group).await?.spec;
    let merged = convert::merge_group(convert::group_properties(&previous, true), body.properties);
    let spec = convert::group_spec(&group, merged)?;
    check_tables(&app, &spec, Some(&previous)).await?;
    let (_, resource) = store_group(&app, &spec).await?;
    Ok((StatusCode::OK, resource))
}

/// Deletes a sync group with its members, logs and conflicts from the
/// metadata store. The databases are left as they are.
#[utoipa::path(
    delete,
    path = "/v1/syncGroups/{group}",
    tag = "syncGroups",
    params(("group" = String, Path, description = "The sync group's name.")),
    responses(
        (status = 204, description = "The group was deleted."),
        (status = 404, description = "No such group (`SyncGroupNotFound`).", body = ErrorResponse),
    )
)]
pub(crate) async fn delete_group(
    State(app): State<Arc<App>>,
    ApiPath(group): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    if !app.api.store.delete_group(&group).await? {
        return Err(ApiError::group_not_found(&group));
    }
    tracing::info!(group, "Sync group deleted through the API.");
    Ok(StatusCode::NO_CONTENT)
}

/// Reads the hub's tables and columns again (a long operation); the result
/// is served by `hubSchemas`.
#[utoipa::path(
    post,
    path = "/v1/syncGroups/{group}/refreshHubSchema",
    tag = "syncGroups",
    params(("group" = String, Path, description = "The sync group's name.")),
    responses(
        (status = 202, description = "Started; follow `Location`.", body = Operation,
            headers(("Location" = String, description = "`/v1/operations/{id}`"))),
        (status = 404, description = "No such group (`SyncGroupNotFound`).", body = ErrorResponse),
    )
)]
pub(crate) async fn refresh_hub_schema(
    State(app): State<Arc<App>>,
    ApiPath(group): ApiPath<String>,
) -> Result<Response, ApiError> {
    let stored = find_group(&app, &group).await?;
    let store = app.api.store.clone();
    let base_dir = app.api.base_dir.clone();
    operations::start(&app.api.store, "refreshHubSchema", async move {
        let schema = inspect::refresh_schema(&stored.spec.hub, &base_dir)
            .await
            .map_err(|message| ErrorDetail { code: code::SCHEMA_REFRESH_FAILED.to_string(), message })?;
        store.put_hub_schema(&group, &schema).await.map_err(operations::store_failure)
    })
    .await
}

/// The hub's schema as last refreshed: one entry, or none before the first
/// `refreshHubSchema`. Tables that cannot be synced have `hasError`.
#[utoipa::path(
    get,
    path = "/v1/syncGroups/{group}/hubSchemas",
    tag = "syncGroups",
    params(("group" = String, Path, description = "The sync group's name.")),
    responses(
        (status = 200, description = "The hub's schema.", body = List<DatabaseSchema>),
        (status = 404, description = "No such group (`SyncGroupNotFound`).", body = ErrorResponse),
    )
)]
pub(crate) async fn hub_schemas(
    State(app): State<Arc<App>>,
    ApiPath(group): ApiPath<String>,
) -> Result<Json<List<DatabaseSchema>>, ApiError> {
    find_group(&app, &group).await?;
    let schema = app.api.store.hub_schema(&group).await?;
    Ok(Json(List { value: schema.into_iter().collect() }))
}

/// Asks for a sync of the group now, on whichever server runs it.
#[utoipa::path(
    post,
    path = "/v1/syncGroups/{group}/triggerSync",
    tag = "syncGroups",
    params(("group" = String, Path, description = "The sync group's name.")),
    responses(
        (status = 202, description = "The sync was requested; watch `syncState` and the logs."),
        (status = 404, description = "No such group (`SyncGroupNotFound`).", body = ErrorResponse),
        (status = 409, description = "The group has no tables yet (`SyncGroupNotReady`).", body = ErrorResponse),
    )
)]
pub(crate) async fn trigger_sync(
    State(app): State<Arc<App>>,
    ApiPath(group): ApiPath<String>,
) -> Result<Response, ApiError> {
    let stored = find_group(&app, &group).await?;
    if stored.spec.tables.is_empty() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            code::SYNC_GROUP_NOT_READY,
            format!(
                "sync group `{group}` has no tables to sync; POST refreshHubSchema, then choose tables in \
                 `properties.schema` with PATCH"
            ),
        ));
    }
    app.api.store.request_sync(&group).await?;
    app.api.wake.wake();
    tracing::info!(group, "Sync requested through the API.");
    Ok(StatusCode::ACCEPTED.into_response())
}

/// Asks the group's running sync to stop between batches; nothing is lost.
#[utoipa::path(
    post,
    path = "/v1/syncGroups/{group}/cancelSync",
    tag = "syncGroups",
    params(("group" = String, Path, description = "The sync group's name.")),
    responses(
        (status = 202, description = "The cancellation was requested."),
        (status = 404, description = "No such group (`SyncGroupNotFound`).", body = ErrorResponse),
    )
)]
pub(crate) async fn cancel_sync(
    State(app): State<Arc<App>>,
    ApiPath(group): ApiPath<String>,
) -> Result<Response, ApiError> {
    find_group(&app, &group).await?;
    app.api.store.request_cancel(&group).await?;
    app.api.wake.wake();
    tracing::info!(group, "Sync cancellation requested through the API.");
    Ok(StatusCode::ACCEPTED.into_response())
}

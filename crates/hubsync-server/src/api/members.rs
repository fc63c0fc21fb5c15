//! `/v1/syncGroups/{group}/syncMembers` and a member's actions.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::IntoParams;

use super::App;
use super::convert::{self, check_member_name};
use super::error::{ApiError, code};
use super::extract::{ApiJson, ApiPath, ApiQuery};
use super::groups::find_group;
use super::operations;
use crate::inspect;
use crate::model::{DatabaseSchema, ErrorDetail, ErrorResponse, List, Operation, SyncMember, SyncMemberState};
use crate::spec::MemberSpec;
use crate::store::{MemberStatusRecord, PutOutcome, StoredMember};

async fn find_member(app: &App, group: &str, member: &str) -> Result<StoredMember, ApiError> {
    app.api.store.get_member(group, member).await?.ok_or_else(|| ApiError::member_not_found(group, member))
}

/// Stores a member and answers with it: 201 when new, else 200.
async fn store_member(app: &App, spec: &MemberSpec) -> Result<(StatusCode, Json<SyncMember>), ApiError> {
    let outcome = app.api.store.put_member(spec).await?;
    tracing::info!(
        group = %spec.group, member = %spec.name, database = %spec.database.display(), ?outcome,
        "Sync member stored through the API."
    );
    let stored = app
        .api
        .store
        .get_member(&spec.group, &spec.name)
        .await?
        .ok_or_else(|| ApiError::internal("a member just stored cannot be read back"))?;
    let status = if outcome == PutOutcome::Created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(convert::member_resource(&stored))))
}

/// Lists a group's members.
#[utoipa::path(
    get,
    path = "/v1/syncGroups/{group}/syncMembers",
    tag = "syncMembers",
    params(("group" = String, Path, description = "The sync group's name.")),
    responses(
        (status = 200, description = "The group's members, by name.", body = List<SyncMember>),
        (status = 404, description = "No such group (`SyncGroupNotFound`).", body = ErrorResponse),
    )
)]
pub(crate) async fn list_members(
    State(app): State<Arc<App>>,
    ApiPath(group): ApiPath<String>,
) -> Result<Json<List<SyncMember>>, ApiError> {
    find_group(&app, &group).await?;
    let members = app.api.store.list_members(&group).await?;
    Ok(Json(List { value: members.iter().map(convert::member_resource).collect() }))
}

/// Reads a member.
#[utoipa::path(
    get,
    path = "/v1/syncGroups/{group}/syncMembers/{member}",
    tag = "syncMembers",
    params(
        ("group" = String, Path, description = "The sync group's name."),
        ("member" = String, Path, description = "The member's name."),
    ),
    responses(
        (status = 200, description = "The member (never its password).", body = SyncMember),
        (status = 404, description = "No such group or member (`SyncGroupNotFound`, `SyncMemberNotFound`).", body = ErrorResponse),
    )
)]
pub(crate) async fn get_member(
    State(app): State<Arc<App>>,
    ApiPath((group, member)): ApiPath<(String, String)>,
) -> Result<Json<SyncMember>, ApiError> {
    find_group(&app, &group).await?;
    Ok(Json(convert::member_resource(&find_member(&app, &group, &member).await?)))
}

/// Creates or replaces a member. `databaseType`, `databaseName` and
/// `syncDirection` are required; a PUT without the password keeps the
/// stored one when engine, server and user are unchanged.
#[utoipa::path(
    put,
    path = "/v1/syncGroups/{group}/syncMembers/{member}",
    tag = "syncMembers",
    params(
        ("group" = String, Path, description = "The sync group's name."),
        ("member" = String, Path, description = "The member's name: 1 to 128 letters, digits, `-`, `_`, `.`; not `hub`."),
    ),
    request_body = SyncMember,
    responses(
        (status = 200, description = "The member was replaced.", body = SyncMember),
        (status = 201, description = "The member was created.", body = SyncMember),
        (status = 400, description = "A bad name, property or body (`InvalidSyncMemberName`, `MissingProperty`, \
            `UnknownProperty`, `MalformedJson`, ...).", body = ErrorResponse),
        (status = 404, description = "No such group (`SyncGroupNotFound`).", body = ErrorResponse),
    )
)]
pub(crate) async fn put_member(
    State(app): State<Arc<App>>,
    ApiPath((group, member)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<SyncMember>,
) -> Result<(StatusCode, Json<SyncMember>), ApiError> {
    check_member_name(&member)?;
    convert::check_body_name(body.name.as_deref(), &member)?;
    find_group(&app, &group).await?;
    let mut spec = convert::member_spec(&group, &member, body.properties)?;
    if let Some(previous) = app.api.store.get_member(&group, &member).await? {
        convert::keep_password(&mut spec.database, &previous.spec.database);
    }
    store_member(&app, &spec).await
}

/// Changes the given properties of a member; the others (and the password,
/// unless given) keep their values.
#[utoipa::path(
    patch,
    path = "/v1/syncGroups/{group}/syncMembers/{member}",
    tag = "syncMembers",
    params(
        ("group" = String, Path, description = "The sync group's name."),
        ("member" = String, Path, description = "The member's name."),
    ),
    request_body = SyncMember,
    responses(
        (status = 200, description = "The changed member.", body = SyncMember),
        (status = 400, description = "A bad property or body.", body = ErrorResponse),
        (status = 404, description = "No such group or member.", body = ErrorResponse),
    )
)]
pub(crate) async fn patch_member(
    State(app): State<Arc<App>>,
    ApiPath((group, member)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<SyncMember>,
) -> Result<(StatusCode, Json<SyncMember>), ApiError> {
    convert::check_body_name(body.name.as_deref(), &member)?;
    find_group(&app, &group).await?;
    let previous = find_member(&app, &group, &member).await?.spec;
    let merged = convert::merge_member(convert::member_properties(&previous, true), body.properties);
    let spec = convert::member_spec(&group, &member, merged)?;
    let (_, resource) = store_member(&app, &spec).await?;
    Ok((StatusCode::OK, resource))
}

/// How to delete a member.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct DeleteMemberQuery {
    /// First remove hubsync's tracking objects from the member's database
    /// (a long operation); its tables and data are never touched.
    deprovision: Option<bool>,
}

/// Deletes a member from the group; with `deprovision=true` it first
/// removes hubsync's objects from the member's database (202 and an
/// operation), else at once (204).
#[utoipa::path(
    delete,
    path = "/v1/syncGroups/{group}/syncMembers/{member}",
    tag = "syncMembers",
    params(
        ("group" = String, Path, description = "The sync group's name."),
        ("member" = String, Path, description = "The member's name."),
        DeleteMemberQuery,
    ),
    responses(
        (status = 202, description = "Deprovisioning started; the member is deleted when it succeeds. Follow `Location`.",
            body = Operation, headers(("Location" = String, description = "`/v1/operations/{id}`"))),
        (status = 204, description = "The member was deleted."),
        (status = 400, description = "A bad query parameter (`InvalidQueryParameter`).", body = ErrorResponse),
        (status = 404, description = "No such group or member.", body = ErrorResponse),
    )
)]
pub(crate) async fn delete_member(
    State(app): State<Arc<App>>,
    ApiPath((group, member)): ApiPath<(String, String)>,
    ApiQuery(query): ApiQuery<DeleteMemberQuery>,
) -> Result<Response, ApiError> {
    let stored_group = find_group(&app, &group).await?;
    if query.deprovision != Some(true) {
        if !app.api.store.delete_member(&group, &member).await? {
            return Err(ApiError::member_not_found(&group, &member));
        }
        tracing::info!(group, member, "Sync member deleted through the API.");
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let stored = find_member(&app, &group, &member).await?;
    let store = app.api.store.clone();
    let base_dir = app.api.base_dir.clone();
    let deprovisioning = MemberStatusRecord { state: SyncMemberState::DeProvisioning, ..stored.status.clone() };
    store.set_member_status(&group, &member, &deprovisioning).await?;
    operations::start(&app.api.store, "deleteSyncMember", async move {
        match inspect::deprovision_member(&stored_group.spec, &stored.spec, &base_dir).await {
            Ok(removed) => {
                tracing::info!(group, member, removed = removed.len(), "Sync member deprovisioned.");
                store.delete_member(&group, &member).await.map(|_| ()).map_err(operations::store_failure)
            }
            Err(message) => {
                // The member stays, as it was: deleting it would orphan its tracking objects.
                if let Err(e) = store.set_member_status(&group, &member, &stored.status).await {
                    tracing::error!(group, member, error = %e, "Cannot restore the member's state.");
                }
                Err(ErrorDetail { code: code::DEPROVISION_FAILED.to_string(), message })
            }
        }
    })
    .await
}

/// Reads the member's tables and columns again (a long operation); the
/// result is served by `schemas`.
#[utoipa::path(
    post,
    path = "/v1/syncGroups/{group}/syncMembers/{member}/refreshSchema",
    tag = "syncMembers",
    params(
        ("group" = String, Path, description = "The sync group's name."),
        ("member" = String, Path, description = "The member's name."),
    ),
    responses(
        (status = 202, description = "Started; follow `Location`.", body = Operation,
            headers(("Location" = String, description = "`/v1/operations/{id}`"))),
        (status = 404, description = "No such group or member.", body = ErrorResponse),
    )
)]
pub(crate) async fn refresh_member_schema(
    State(app): State<Arc<App>>,
    ApiPath((group, member)): ApiPath<(String, String)>,
) -> Result<Response, ApiError> {
    find_group(&app, &group).await?;
    let stored = find_member(&app, &group, &member).await?;
    let store = app.api.store.clone();
    let base_dir = app.api.base_dir.clone();
    operations::start(&app.api.store, "refreshSchema", async move {
        let schema = inspect::refresh_schema(&stored.spec.database, &base_dir)
            .await
            .map_err(|message| ErrorDetail { code: code::SCHEMA_REFRESH_FAILED.to_string(), message })?;
        store.put_member_schema(&group, &member, &schema).await.map_err(operations::store_failure)
    })
    .await
}

/// The member's schema as last refreshed: one entry, or none before the
/// first `refreshSchema`.
#[utoipa::path(
    get,
    path = "/v1/syncGroups/{group}/syncMembers/{member}/schemas",
    tag = "syncMembers",
    params(
        ("group" = String, Path, description = "The sync group's name."),
        ("member" = String, Path, description = "The member's name."),
    ),
    responses(
        (status = 200, description = "The member's schema.", body = List<DatabaseSchema>),
        (status = 404, description = "No such group or member.", body = ErrorResponse),
    )
)]
pub(crate) async fn member_schemas(
    State(app): State<Arc<App>>,
    ApiPath((group, member)): ApiPath<(String, String)>,
) -> Result<Json<List<DatabaseSchema>>, ApiError> {
    find_group(&app, &group).await?;
    find_member(&app, &group, &member).await?;
    let schema = app.api.store.member_schema(&group, &member).await?;
    Ok(Json(List { value: schema.into_iter().collect() }))
}

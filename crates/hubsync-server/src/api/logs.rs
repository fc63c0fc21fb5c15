//! A group's logs and logged conflicts, newest first, in pages.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::IntoParams;

use super::App;
use super::convert;
use super::error::{ApiError, code};
use super::extract::{ApiPath, ApiQuery};
use super::groups::find_group;
use crate::model::{ConflictEntry, ErrorResponse, LogType, Page, SyncGroupLogProperties};
use crate::store::LogQuery;

/// Entries per page unless `pageSize` says.
pub const DEFAULT_PAGE_SIZE: u32 = 100;

/// The largest `pageSize` accepted.
pub const MAX_PAGE_SIZE: u32 = 1000;

/// Which log entries to read.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct LogsQuery {
    /// Entries at or after this time (RFC 3339 in UTC: `2026-01-02T03:04:05Z`).
    start_time: Option<String>,
    /// Entries at or before this time (RFC 3339 in UTC).
    end_time: Option<String>,
    /// Only entries of this type; `All` (the default) for every type.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    log_type: Option<LogType>,
    /// The `continuationToken` of the previous page's `nextLink`.
    continuation_token: Option<String>,
    /// Entries per page, 1 to 1000 (default 100).
    page_size: Option<u32>,
}

/// Which conflicts to read.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ConflictsQuery {
    /// The `continuationToken` of the previous page's `nextLink`.
    continuation_token: Option<String>,
    /// Entries per page, 1 to 1000 (default 100).
    page_size: Option<u32>,
}

fn page_size(given: Option<u32>) -> Result<u32, ApiError> {
    let size = given.unwrap_or(DEFAULT_PAGE_SIZE);
    if !(1..=MAX_PAGE_SIZE).contains(&size) {
        return Err(ApiError::bad_request(
            code::INVALID_QUERY_PARAMETER,
            format!("`pageSize` is {size}; give 1 to {MAX_PAGE_SIZE}"),
        ));
    }
    Ok(size)
}

/// A continuation token is the id the next page starts below.
fn before_id(token: Option<&str>) -> Result<Option<i64>, ApiError> {
    token
        .map(|t| {
            t.parse::<i64>().map_err(|_| {
                ApiError::bad_request(
                    code::INVALID_QUERY_PARAMETER,
                    "`continuationToken` is not one this server gave; take it from the previous page's `nextLink`",
                )
            })
        })
        .transpose()
}

/// The link to the next page: the same query with the new token.
fn next_link(path: &str, params: &[(&str, Option<String>)], token: i64) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in params {
        if let Some(value) = value {
            query.append_pair(name, value);
        }
    }
    query.append_pair("continuationToken", &token.to_string());
    format!("{path}?{}", query.finish())
}

/// Cuts one extra item off a page read with `limit + 1`: its presence says
/// there is a next page, starting below the last id kept.
fn paginate<T>(mut items: Vec<T>, size: u32, id: impl Fn(&T) -> i64) -> (Vec<T>, Option<i64>) {
    let size = usize::try_from(size).unwrap_or(usize::MAX);
    if items.len() <= size {
        return (items, None);
    }
    items.truncate(size);
    let next = items.last().map(id);
    (items, next)
}

/// A group's log entries, newest first.
#[utoipa::path(
    get,
    path = "/v1/syncGroups/{group}/logs",
    tag = "syncGroups",
    params(("group" = String, Path, description = "The sync group's name."), LogsQuery),
    responses(
        (status = 200, description = "A page of entries; `nextLink` leads to the next.", body = Page<SyncGroupLogProperties>),
        (status = 400, description = "A bad query parameter (`InvalidQueryParameter`).", body = ErrorResponse),
        (status = 404, description = "No such group (`SyncGroupNotFound`).", body = ErrorResponse),
    )
)]
pub(crate) async fn logs(
    State(app): State<Arc<App>>,
    ApiPath(group): ApiPath<String>,
    ApiQuery(q): ApiQuery<LogsQuery>,
) -> Result<Json<Page<SyncGroupLogProperties>>, ApiError> {
    let size = page_size(q.page_size)?;
    let query = LogQuery {
        start: q.start_time.as_deref().map(|t| convert::parse_time("startTime", t)).transpose()?,
        end: q.end_time.as_deref().map(|t| convert::parse_time("endTime", t)).transpose()?,
        log_type: q.log_type.filter(|t| *t != LogType::All),
        before_id: before_id(q.continuation_token.as_deref())?,
        limit: size + 1,
    };
    find_group(&app, &group).await?;
    let records = app.api.store.logs(&group, &query).await?;
    let (records, next) = paginate(records, size, |r| r.id);
    let log_type = q.log_type.map(|t| match t {
        LogType::All => "All",
        LogType::Error => "Error",
        LogType::Warning => "Warning",
        LogType::Success => "Success",
    });
    let params = [
        ("startTime", q.start_time),
        ("endTime", q.end_time),
        ("type", log_type.map(str::to_string)),
        ("pageSize", q.page_size.map(|s| s.to_string())),
    ];
    Ok(Json(Page {
        value: records.iter().map(convert::log_entry).collect(),
        next_link: next.map(|id| next_link(&format!("/v1/syncGroups/{group}/logs"), &params, id)),
    }))
}

/// A group's logged conflicts with both row images, newest first. A group
/// that does not log conflicts answers 409 (`ConflictLoggingDisabled`)
/// rather than an empty list, which would read as "no conflicts".
#[utoipa::path(
    get,
    path = "/v1/syncGroups/{group}/conflicts",
    tag = "syncGroups",
    params(("group" = String, Path, description = "The sync group's name."), ConflictsQuery),
    responses(
        (status = 200, description = "A page of conflicts; `nextLink` leads to the next.", body = Page<ConflictEntry>),
        (status = 400, description = "A bad query parameter (`InvalidQueryParameter`).", body = ErrorResponse),
        (status = 404, description = "No such group (`SyncGroupNotFound`).", body = ErrorResponse),
        (status = 409, description = "The group does not log conflicts (`ConflictLoggingDisabled`).", body = ErrorResponse),
    )
)]
pub(crate) async fn conflicts(
    State(app): State<Arc<App>>,
    ApiPath(group): ApiPath<String>,
    ApiQuery(q): ApiQuery<ConflictsQuery>,
) -> Result<Json<Page<ConflictEntry>>, ApiError> {
    let size = page_size(q.page_size)?;
    let before = before_id(q.continuation_token.as_deref())?;
    let stored = find_group(&app, &group).await?;
    if !stored.spec.conflict_logging {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            code::CONFLICT_LOGGING_DISABLED,
            format!(
                "sync group `{group}` does not log conflicts; PATCH `properties.enableConflictLogging` to true to \
                 log them from the next sync on"
            ),
        ));
    }
    let records = app.api.store.conflicts(&group, before, size + 1).await?;
    let (records, next) = paginate(records, size, |r| r.id);
    let params = [("pageSize", q.page_size.map(|s| s.to_string()))];
    Ok(Json(Page {
        value: records.iter().map(convert::conflict_entry).collect(),
        next_link: next.map(|id| next_link(&format!("/v1/syncGroups/{group}/conflicts"), &params, id)),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_read_with_one_extra_item_has_a_next_token() {
        assert_eq!(paginate(vec![9, 8, 7], 2, |i| *i), (vec![9, 8], Some(8)));
        assert_eq!(paginate(vec![9, 8], 2, |i| *i), (vec![9, 8], None));
        let link = next_link("/v1/x", &[("type", Some("Error".into())), ("startTime", None)], 8);
        assert_eq!(link, "/v1/x?type=Error&continuationToken=8");
    }
}

//! A group's logs (filtered by type and time, paged, each entry expandable)
//! and its logged conflicts (both row images side by side).

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use hubsync_core::{Side, Value};
use serde::Deserialize;

use super::{Layout, find_group, render, store_failed};
use crate::model::LogType;
use crate::portal::PortalState;
use crate::portal::format::time_words;
use crate::portal::session::Viewer;
use crate::store::LogQuery;
use crate::store::time::parse_rfc3339;

/// Log entries per page.
const LOG_PAGE: u32 = 50;

/// Conflicts per page.
const CONFLICT_PAGE: u32 = 20;

/// The logs page's filters, as the form sends them.
#[derive(Debug, Default, Deserialize)]
pub struct LogFilter {
    #[serde(default, rename = "type")]
    log_type: Option<String>,
    #[serde(default)]
    since: Option<String>,
    #[serde(default)]
    until: Option<String>,
    #[serde(default)]
    before: Option<i64>,
}

struct LogRow {
    when: String,
    log_type: String,
    source: String,
    status: String,
    summary: String,
    details: String,
    tracing_id: String,
}

struct TypeOption {
    value: &'static str,
    selected: bool,
}

#[derive(Template)]
#[template(path = "logs.html")]
struct LogsPage {
    layout: Layout,
    name: String,
    types: Vec<TypeOption>,
    since: String,
    until: String,
    since_error: Option<String>,
    until_error: Option<String>,
    entries: Vec<LogRow>,
    older: Option<String>,
    paged: bool,
}

fn log_type(text: &str) -> LogType {
    match text {
        "Error" => LogType::Error,
        "Warning" => LogType::Warning,
        "Success" => LogType::Success,
        _ => LogType::All,
    }
}

fn type_name(t: LogType) -> &'static str {
    match t {
        LogType::All => "All",
        LogType::Error => "Error",
        LogType::Warning => "Warning",
        LogType::Success => "Success",
    }
}

/// A time bound from the form: empty for none, else RFC 3339.
fn bound(text: &str) -> Result<Option<i64>, String> {
    let text = text.trim();
    if text.is_empty() { Ok(None) } else { parse_rfc3339(text).map(Some) }
}

/// `GET /portal/groups/{group}/logs`.
pub async fn logs(
    viewer: Viewer,
    State(state): State<PortalState>,
    Path(group): Path<String>,
    Query(filter): Query<LogFilter>,
) -> Response {
    let store = &state.api.store;
    if let Err(page) = find_group(&state, &viewer, &group).await {
        return page;
    }
    let chosen = log_type(filter.log_type.as_deref().unwrap_or("All"));
    let since = filter.since.unwrap_or_default();
    let until = filter.until.unwrap_or_default();
    let (start, since_error) = match bound(&since) {
        Ok(v) => (v, None),
        Err(e) => (None, Some(e)),
    };
    let (end, until_error) = match bound(&until) {
        Ok(v) => (v, None),
        Err(e) => (None, Some(e)),
    };
    let query = LogQuery { start, end, log_type: Some(chosen), before_id: filter.before, limit: LOG_PAGE + 1 };
    let mut records = match store.logs(&group, &query).await {
        Ok(r) => r,
        Err(e) => return store_failed(&viewer, &e),
    };
    let more = records.len() > LOG_PAGE as usize;
    records.truncate(LOG_PAGE as usize);
    let older = match (more, records.last()) {
        (true, Some(last)) => {
            let mut q = url::form_urlencoded::Serializer::new(String::new());
            q.append_pair("type", type_name(chosen));
            if !since.is_empty() {
                q.append_pair("since", &since);
            }
            if !until.is_empty() {
                q.append_pair("until", &until);
            }
            q.append_pair("before", &last.id.to_string());
            Some(format!("/portal/groups/{group}/logs?{}", q.finish()))
        }
        _ => None,
    };
    let entries = records
        .into_iter()
        .map(|r| LogRow {
            when: time_words(Some(r.timestamp)),
            log_type: type_name(r.log_type).to_string(),
            summary: summary(&r.details),
            source: r.source,
            status: r.operation_status,
            details: r.details,
            tracing_id: r.tracing_id,
        })
        .collect();
    let types = [LogType::All, LogType::Error, LogType::Warning, LogType::Success]
        .into_iter()
        .map(|t| TypeOption { value: type_name(t), selected: t == chosen })
        .collect();
    let page = LogsPage {
        layout: Layout::new(format!("Logs of {group}"), Some(&viewer)),
        name: group,
        types,
        since,
        until,
        since_error,
        until_error,
        entries,
        older,
        paged: filter.before.is_some(),
    };
    render(StatusCode::OK, &page)
}

/// The first line of a log entry's details, cut to a summary's length.
fn summary(details: &str) -> String {
    const MAX: usize = 120;
    let line = details.lines().next().unwrap_or_default();
    if line.chars().count() > MAX { format!("{}…", line.chars().take(MAX).collect::<String>()) } else { line.into() }
}

/// The conflicts page's paging.
#[derive(Debug, Default, Deserialize)]
pub struct ConflictPaging {
    #[serde(default)]
    before: Option<i64>,
}

struct Cell {
    column: String,
    hub: String,
    member: String,
    differs: bool,
}

struct ConflictRow {
    when: String,
    member: String,
    table: String,
    key: String,
    policy: String,
    hub_won: bool,
    reason: String,
    hub_deleted: bool,
    member_deleted: bool,
    cells: Vec<Cell>,
}

#[derive(Template)]
#[template(path = "conflicts.html")]
struct ConflictsPage {
    layout: Layout,
    name: String,
    logging: bool,
    conflicts: Vec<ConflictRow>,
    older: Option<String>,
    paged: bool,
}

fn image_value(row: Option<&Vec<Value>>, index: usize) -> String {
    match row {
        None => "—".to_string(),
        Some(values) => values.get(index).map_or_else(|| "—".to_string(), Value::display_short),
    }
}

/// `GET /portal/groups/{group}/conflicts`.
pub async fn conflicts(
    viewer: Viewer,
    State(state): State<PortalState>,
    Path(group): Path<String>,
    Query(paging): Query<ConflictPaging>,
) -> Response {
    let store = &state.api.store;
    let stored = match find_group(&state, &viewer, &group).await {
        Ok(g) => g,
        Err(page) => return page,
    };
    let mut records = match store.conflicts(&group, paging.before, CONFLICT_PAGE + 1).await {
        Ok(r) => r,
        Err(e) => return store_failed(&viewer, &e),
    };
    let more = records.len() > CONFLICT_PAGE as usize;
    records.truncate(CONFLICT_PAGE as usize);
    let older = match (more, records.last()) {
        (true, Some(last)) => Some(format!("/portal/groups/{group}/conflicts?before={}", last.id)),
        _ => None,
    };
    let conflicts = records
        .iter()
        .map(|r| {
            let c = &r.conflict;
            let cells = r
                .columns
                .iter()
                .enumerate()
                .map(|(i, column)| {
                    let hub = c.hub_row.as_ref().and_then(|row| row.get(i));
                    let member = c.member_row.as_ref().and_then(|row| row.get(i));
                    Cell {
                        column: column.clone(),
                        hub: image_value(c.hub_row.as_ref(), i),
                        member: image_value(c.member_row.as_ref(), i),
                        differs: hub != member,
                    }
                })
                .collect();
            ConflictRow {
                when: time_words(Some(r.timestamp)),
                member: r.member.clone(),
                table: c.table.to_string(),
                key: hubsync_core::value::format_key(&c.key),
                policy: c.policy.to_string(),
                hub_won: c.winner == Side::Hub,
                reason: c.reason.clone(),
                hub_deleted: c.hub_row.is_none(),
                member_deleted: c.member_row.is_none(),
                cells,
            }
        })
        .collect();
    let page = ConflictsPage {
        layout: Layout::new(format!("Conflicts of {group}"), Some(&viewer)),
        logging: stored.spec.conflict_logging,
        name: group,
        conflicts,
        older,
        paged: paging.before.is_some(),
    };
    render(StatusCode::OK, &page)
}

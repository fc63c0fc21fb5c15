//! The list of sync groups, a group's page with its live state area, and
//! the Sync now and Cancel buttons.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Redirect, Response};
use serde::Deserialize;

use super::{Layout, find_group, render, store_failed};
use crate::model::{SyncGroupState, SyncMemberState};
use crate::portal::PortalState;
use crate::portal::format::{Badge, direction_words, group_badge, member_badge, schedule_words, time_words};
use crate::portal::session::Viewer;
use crate::portal::svg;
use crate::store::{StoredGroup, StoredMember};

/// Per-member run records read for the history (several members share a run).
const HISTORY_RECORDS: u32 = 400;

struct GroupRow {
    name: String,
    badge: Badge,
    hub: String,
    members: usize,
    interval: String,
    last_sync: String,
    failing: Option<String>,
}

#[derive(Template)]
#[template(path = "groups.html")]
struct GroupsPage {
    layout: Layout,
    groups: Vec<GroupRow>,
}

/// What is failing in a group, in words; `None` when nothing is.
fn failing(group: &StoredGroup, members: &[StoredMember]) -> Option<String> {
    let failed: Vec<&str> = members
        .iter()
        .filter(|m| matches!(m.status.state, SyncMemberState::SyncFailed | SyncMemberState::OutOfDate))
        .map(|m| m.spec.name.as_str())
        .collect();
    match (failed.is_empty(), group.status.state == SyncGroupState::Error) {
        (false, _) => Some(format!("Failing: {}", failed.join(", "))),
        (true, true) => Some("Failing: the last sync failed".to_string()),
        (true, false) => None,
    }
}

/// `GET /portal/groups`.
pub async fn list(viewer: Viewer, State(state): State<PortalState>) -> Response {
    let store = &state.api.store;
    let groups = match store.list_groups().await {
        Ok(groups) => groups,
        Err(e) => return store_failed(&viewer, &e),
    };
    let mut rows = Vec::with_capacity(groups.len());
    for group in &groups {
        let members = match store.list_members(&group.spec.name).await {
            Ok(members) => members,
            Err(e) => return store_failed(&viewer, &e),
        };
        rows.push(GroupRow {
            name: group.spec.name.clone(),
            badge: group_badge(group.status.state),
            hub: group.spec.hub.display(),
            members: members.len(),
            interval: schedule_words(group.spec.schedule),
            last_sync: time_words(group.status.last_sync_time),
            failing: failing(group, &members),
        });
    }
    render(StatusCode::OK, &GroupsPage { layout: Layout::new("Sync groups", Some(&viewer)), groups: rows })
}

struct MemberRow {
    name: String,
    database: String,
    direction: &'static str,
    badge: Badge,
    last_sync: String,
    error: Option<String>,
}

struct RunRow {
    when: String,
    rows: i64,
    duration_ms: i64,
    outcome: String,
}

/// The part of a group's page that refreshes itself while a sync runs.
#[derive(Template)]
#[template(path = "group_status.html")]
struct StatusArea {
    badge: Badge,
    last_sync: String,
    members: Vec<MemberRow>,
    chart: Option<String>,
    runs: Vec<RunRow>,
}

struct TableRow {
    name: String,
    columns: String,
}

#[derive(Template)]
#[template(path = "group.html")]
struct GroupPage {
    layout: Layout,
    name: String,
    hub: String,
    interval: String,
    policy: String,
    tables: Vec<TableRow>,
    conflict_logging: bool,
    status: String,
    notice: Option<&'static str>,
}

/// Which notice a group page shows after a button was pressed.
#[derive(Debug, Deserialize)]
pub struct Notice {
    #[serde(default)]
    done: Option<String>,
}

/// `GET /portal/groups/{group}`.
pub async fn show(
    viewer: Viewer,
    State(state): State<PortalState>,
    Path(group): Path<String>,
    Query(notice): Query<Notice>,
) -> Response {
    let stored = match find_group(&state, &viewer, &group).await {
        Ok(g) => g,
        Err(page) => return page,
    };
    let area = match read_status(&state, &stored).await {
        Ok(area) => area,
        Err(e) => return store_failed(&viewer, &e),
    };
    let status = match askama::Template::render(&area) {
        Ok(html) => html,
        Err(e) => {
            tracing::error!(error = %e, "A portal fragment failed to render.");
            String::new()
        }
    };
    let spec = &stored.spec;
    let tables = spec
        .tables
        .iter()
        .map(|t| TableRow {
            name: t.name.to_string(),
            columns: t.columns.as_ref().map_or_else(|| "all columns".to_string(), |c| c.join(", ")),
        })
        .collect();
    let notice = match notice.done.as_deref() {
        Some("sync") => Some("A sync was requested; the state below updates as it runs."),
        Some("cancel") => Some("Cancelling was requested; the running sync stops after its current batch."),
        Some("created") => Some("The sync group was created. Press Sync now to run its first sync."),
        _ => None,
    };
    let page = GroupPage {
        layout: Layout::new(format!("Sync group {group}"), Some(&viewer)),
        hub: spec.hub.display(),
        interval: schedule_words(spec.schedule),
        policy: spec.policy.to_string(),
        tables,
        conflict_logging: spec.conflict_logging,
        name: group,
        status,
        notice,
    };
    render(StatusCode::OK, &page)
}

async fn read_status(state: &PortalState, group: &StoredGroup) -> Result<StatusArea, crate::StoreError> {
    let store = &state.api.store;
    let members = store.list_members(&group.spec.name).await?;
    let records = store.runs(&group.spec.name, HISTORY_RECORDS).await?;
    let points = svg::runs(&records);
    let runs = points
        .iter()
        .rev()
        .map(|p| RunRow {
            when: time_words(Some(p.started_at)),
            rows: p.rows,
            duration_ms: p.duration_ms,
            outcome: p.outcome.clone(),
        })
        .collect();
    Ok(StatusArea {
        badge: group_badge(group.status.state),
        last_sync: time_words(group.status.last_sync_time),
        members: members
            .iter()
            .map(|m| MemberRow {
                name: m.spec.name.clone(),
                database: m.spec.database.display(),
                direction: direction_words(m.spec.direction),
                badge: member_badge(m.status.state),
                last_sync: time_words(m.status.last_sync_time),
                error: m.status.last_error.clone(),
            })
            .collect(),
        chart: svg::chart(&points),
        runs,
    })
}

/// `GET /portal/groups/{group}/status`: the state area alone, for the page's
/// script to swap in every two seconds.
pub async fn status(viewer: Viewer, State(state): State<PortalState>, Path(group): Path<String>) -> Response {
    let stored = match find_group(&state, &viewer, &group).await {
        Ok(g) => g,
        Err(page) => return page,
    };
    match read_status(&state, &stored).await {
        Ok(area) => render(StatusCode::OK, &area),
        Err(e) => store_failed(&viewer, &e),
    }
}

/// `POST /portal/groups/{group}/sync`: Sync now.
pub async fn sync_now(viewer: Viewer, State(state): State<PortalState>, Path(group): Path<String>) -> Response {
    request(viewer, state, group, Request::Sync).await
}

/// `POST /portal/groups/{group}/cancel`: Cancel the running sync.
pub async fn cancel(viewer: Viewer, State(state): State<PortalState>, Path(group): Path<String>) -> Response {
    request(viewer, state, group, Request::Cancel).await
}

enum Request {
    Sync,
    Cancel,
}

async fn request(viewer: Viewer, state: PortalState, group: String, what: Request) -> Response {
    if let Err(refused) = viewer.require_write() {
        return refused;
    }
    let store = &state.api.store;
    if let Err(page) = find_group(&state, &viewer, &group).await {
        return page;
    }
    let (done, result) = match what {
        Request::Sync => ("sync", store.request_sync(&group).await),
        Request::Cancel => ("cancel", store.request_cancel(&group).await),
    };
    if let Err(e) = result {
        return store_failed(&viewer, &e);
    }
    state.api.wake.wake();
    tracing::info!(group = %group, request = done, token = %viewer.name, "Portal request for a sync group.");
    axum::response::IntoResponse::into_response(Redirect::to(&format!("/portal/groups/{group}?done={done}")))
}

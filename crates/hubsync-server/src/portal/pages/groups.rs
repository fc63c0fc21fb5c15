//! The list of sync groups, a group's page with its live state area (states,
//! pending rows, a running sync's progress, history), and the Sync now and
//! Cancel buttons.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Redirect, Response};
use serde::Deserialize;

use super::{Layout, find_group, render, store_failed};
use crate::model::{SyncGroupState, SyncMemberState};
use crate::portal::PortalState;
use crate::portal::create::{Choice, Errors, POLICIES, SCHEDULES, choices, unit_choices};
use crate::portal::format::{
    Badge, direction_words, group_badge, interval_fields, member_badge, schedule_words, time_words,
};
use crate::portal::pending::Counted;
use crate::portal::session::Viewer;
use crate::portal::svg;
use crate::runner::PendingRows;
use crate::store::{RunProgress, StoredGroup, StoredMember};

/// Published progress older than this is a run whose server stopped
/// mid-run (a live run publishes every second): it is not shown.
const PROGRESS_STALE_AFTER_MICROS: i64 = 30_000_000;

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
    notice: Option<String>,
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

/// Which notice the list of groups shows after a group was deleted.
#[derive(Debug, Deserialize)]
pub struct ListNotice {
    #[serde(default)]
    deleted: Option<String>,
}

/// `GET /portal/groups`.
pub async fn list(viewer: Viewer, State(state): State<PortalState>, Query(notice): Query<ListNotice>) -> Response {
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
    let notice = notice.deleted.map(|g| format!("The sync group `{g}` was deleted."));
    render(StatusCode::OK, &GroupsPage { layout: Layout::new("Sync groups", Some(&viewer)), groups: rows, notice })
}

struct MemberRow {
    name: String,
    database: String,
    direction: &'static str,
    badge: Badge,
    last_sync: String,
    error: Option<String>,
    /// Rows waiting to go to the hub, in words.
    to_hub: String,
    /// Rows waiting to come from the hub, in words.
    from_hub: String,
    /// Why the counts are unknown, when they are.
    pending_error: Option<String>,
}

/// One member's line of a running sync's progress.
struct ProgressRow {
    member: String,
    doing: String,
    moved: u64,
    uploaded: u64,
    downloaded: u64,
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
    /// The group's name, for the members' Remove links.
    group: String,
    /// Whether the viewer may change things (Remove links are shown).
    can_change: bool,
    badge: Badge,
    last_sync: String,
    members: Vec<MemberRow>,
    /// A running sync's progress, when one published any.
    progress: Option<Vec<ProgressRow>>,
    chart: Option<String>,
    runs: Vec<RunRow>,
}

struct TableRow {
    name: String,
    columns: String,
}

/// What the settings form sends, and shows again with its errors.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct SettingsForm {
    /// `every`, `continuous` or `manual`.
    pub schedule: String,
    /// The interval's count, as typed.
    pub interval_value: String,
    /// The interval's unit.
    pub interval_unit: String,
    /// The conflict resolution policy.
    pub policy: String,
    /// Present when conflicts are to be logged.
    pub conflict_logging: Option<String>,
}

impl SettingsForm {
    /// The form as a group's settings fill it.
    pub fn of(group: &StoredGroup) -> SettingsForm {
        let spec = &group.spec;
        let (mode, value, unit) = interval_fields(spec.schedule);
        SettingsForm {
            schedule: mode.to_string(),
            interval_value: value,
            interval_unit: unit.to_string(),
            policy: spec.policy.to_string(),
            conflict_logging: spec.conflict_logging.then(|| "on".to_string()),
        }
    }
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
    /// Whether the session may change things (a read-only one sees no forms).
    can_change: bool,
    /// The settings form's values, choices and errors.
    form: SettingsForm,
    schedules: Vec<Choice>,
    units: Vec<Choice>,
    policies: Vec<Choice>,
    errors: Errors,
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
    let notice = match notice.done.as_deref() {
        Some("sync") => Some("A sync was requested; the state below updates as it runs."),
        Some("cancel") => Some("Cancelling was requested; the running sync stops after its current batch."),
        Some("created") => Some("The sync group was created. Press Sync now to run its first sync."),
        Some("settings") => Some("The settings were saved; they apply from the next sync."),
        Some("tables") => Some("The tables and columns were saved; the next sync provisions what is new."),
        Some("removed") => Some("The member was removed from the group."),
        _ => None,
    };
    let form = SettingsForm::of(&stored);
    group_page(&state, &viewer, &stored, notice, form, Errors::default()).await
}

/// A group's whole page; `form` and `errors` fill its settings form (422
/// when there are errors).
pub async fn group_page(
    state: &PortalState,
    viewer: &Viewer,
    stored: &StoredGroup,
    notice: Option<&'static str>,
    form: SettingsForm,
    errors: Errors,
) -> Response {
    let area = match read_status(state, stored, viewer).await {
        Ok(area) => area,
        Err(e) => return store_failed(viewer, &e),
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
    let code = if errors.is_empty() { StatusCode::OK } else { StatusCode::UNPROCESSABLE_ENTITY };
    let page = GroupPage {
        layout: Layout::new(format!("Sync group {}", spec.name), Some(viewer)),
        hub: spec.hub.display(),
        interval: schedule_words(spec.schedule),
        policy: spec.policy.to_string(),
        tables,
        conflict_logging: spec.conflict_logging,
        name: spec.name.clone(),
        status,
        notice,
        can_change: !viewer.read_only,
        schedules: choices(&SCHEDULES, &form.schedule),
        units: unit_choices(&form.interval_unit),
        policies: choices(&POLICIES, &form.policy),
        form,
        errors,
    };
    render(code, &page)
}

/// Pending rows in words: (to the hub, from the hub, why unknown).
fn pending_words(counted: Counted) -> (String, String, Option<String>) {
    let rows = |n: Option<u64>| match n {
        Some(1) => "1 row".to_string(),
        Some(n) => format!("{n} rows"),
        None => "Not synced (one way)".to_string(),
    };
    match counted {
        Ok(PendingRows::Counts { upload, download }) => (rows(upload), rows(download), None),
        Ok(PendingRows::NotProvisioned) => {
            let text = "Not provisioned yet".to_string();
            (text.clone(), text, None)
        }
        Err(why) => ("Unknown".to_string(), "Unknown".to_string(), Some(why)),
    }
}

/// A running sync's progress in lines, when it is live.
fn progress_rows(progress: Option<RunProgress>) -> Option<Vec<ProgressRow>> {
    let progress = progress?;
    if hubsync_core::now_micros() - progress.updated_at > PROGRESS_STALE_AFTER_MICROS {
        return None;
    }
    let rows = progress
        .members
        .into_iter()
        .map(|m| {
            let doing = if m.finished {
                "Done".to_string()
            } else if let (Some(leg), Some(table)) = (m.leg, &m.table) {
                let of = m.table_pending.map(|p| format!(" of about {p}")).unwrap_or_default();
                let leg = if leg == hubsync_core::Leg::Upload { "to the hub" } else { "from the hub" };
                format!("Table {table} {leg}: {}{of} rows", m.table_rows)
            } else {
                "Waiting or between tables".to_string()
            };
            ProgressRow {
                member: m.member,
                doing,
                moved: m.uploaded + m.downloaded,
                uploaded: m.uploaded,
                downloaded: m.downloaded,
            }
        })
        .collect();
    Some(rows)
}

async fn read_status(
    state: &PortalState,
    group: &StoredGroup,
    viewer: &Viewer,
) -> Result<StatusArea, crate::StoreError> {
    let store = &state.api.store;
    let members = store.list_members(&group.spec.name).await?;
    let progress = progress_rows(store.progress(&group.spec.name).await?);
    // Counted side by side: each is bounded by the cache's timeout.
    let counts =
        futures::future::join_all(members.iter().map(|m| state.pending.get(&state.runner, &group.spec, &m.spec))).await;
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
        group: group.spec.name.clone(),
        can_change: !viewer.read_only,
        badge: group_badge(group.status.state),
        last_sync: time_words(group.status.last_sync_time),
        members: members
            .iter()
            .zip(counts)
            .map(|(m, counted)| {
                let (to_hub, from_hub, pending_error) = pending_words(counted);
                MemberRow {
                    name: m.spec.name.clone(),
                    database: m.spec.database.display(),
                    direction: direction_words(m.spec.direction),
                    badge: member_badge(m.status.state),
                    last_sync: time_words(m.status.last_sync_time),
                    error: m.status.last_error.clone(),
                    to_hub,
                    from_hub,
                    pending_error,
                }
            })
            .collect(),
        progress,
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
    match read_status(&state, &stored, &viewer).await {
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

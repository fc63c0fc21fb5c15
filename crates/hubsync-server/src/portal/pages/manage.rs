//! Changing a sync group from its page: the schedule and policy, the tables
//! and columns, removing a member (optionally deprovisioning it) and
//! deleting the group (after a confirmation). Every handler refuses a
//! read-only session first, and validates on the server.

use askama::Template;
use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::groups::{SettingsForm, group_page};
use super::{Layout, error_page, find_group, render, store_failed};
use crate::inspect;
use crate::model::{DatabaseSchema, SyncMemberState};
use crate::portal::PortalState;
use crate::portal::create::{
    Errors, Selection, TableChoice, capitalise, chosen_tables, policy, schedule_from, table_choices,
};
use crate::portal::format::direction_words;
use crate::portal::session::Viewer;
use crate::store::{MemberStatusRecord, StoredGroup, StoredMember};

/// The group for a change: refused for a read-only session, 404 when gone.
async fn writable_group(state: &PortalState, viewer: &Viewer, group: &str) -> Result<StoredGroup, Response> {
    viewer.require_write()?;
    find_group(state, viewer, group).await
}

fn to_group(group: &str, done: &str) -> Response {
    Redirect::to(&format!("/portal/groups/{group}?done={done}")).into_response()
}

// ---- Schedule and policy ----

/// `POST /portal/groups/{group}/settings`: saves the schedule, policy and
/// conflict logging, or shows the page again with the errors by the fields.
pub async fn save_settings(
    viewer: Viewer,
    State(state): State<PortalState>,
    Path(group): Path<String>,
    Form(form): Form<SettingsForm>,
) -> Response {
    let stored = match writable_group(&state, &viewer, &group).await {
        Ok(g) => g,
        Err(page) => return page,
    };
    let mut errors = Errors::default();
    let schedule = schedule_from(&form.schedule, &form.interval_value, &form.interval_unit)
        .map_err(|e| errors.add("interval_value", e))
        .ok();
    let chosen = policy(&form.policy);
    if chosen.is_none() {
        errors.add("policy", "Choose a conflict resolution policy.");
    }
    let (Some(schedule), Some(chosen)) = (schedule, chosen) else {
        return group_page(&state, &viewer, &stored, None, form, errors).await;
    };
    let mut spec = stored.spec.clone();
    spec.schedule = schedule;
    spec.policy = chosen;
    spec.conflict_logging = form.conflict_logging.is_some();
    if let Err(e) = state.api.store.put_group(&spec).await {
        return store_failed(&viewer, &e);
    }
    state.api.wake.wake();
    tracing::info!(group = %group, schedule = ?spec.schedule, policy = %spec.policy, token = %viewer.name, "Portal changed a sync group's settings.");
    to_group(&group, "settings")
}

// ---- Tables and columns ----

#[derive(Template)]
#[template(path = "group_tables.html")]
struct TablesPage {
    layout: Layout,
    name: String,
    hub: String,
    refreshed: String,
    tables: Vec<TableChoice>,
    schema_error: Option<String>,
    error: Option<String>,
}

fn tables_page(
    viewer: &Viewer,
    group: &StoredGroup,
    schema: Option<&DatabaseSchema>,
    selection: &Selection,
    schema_error: Option<String>,
    error: Option<String>,
) -> Response {
    let status =
        if schema_error.is_some() || error.is_some() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    let page = TablesPage {
        layout: Layout::new(format!("Tables of {}", group.spec.name), Some(viewer)),
        name: group.spec.name.clone(),
        hub: group.spec.hub.display(),
        refreshed: schema.map(|s| s.last_update_time.clone()).unwrap_or_default(),
        tables: table_choices(schema, selection),
        schema_error,
        error,
    };
    render(status, &page)
}

/// Reads the hub's tables again and keeps them in the store.
async fn refresh(state: &PortalState, group: &StoredGroup) -> Result<DatabaseSchema, String> {
    let schema = inspect::refresh_schema(&group.spec.hub, &state.api.base_dir)
        .await
        .map_err(|e| format!("The hub's schema could not be read: {}", capitalise(&e)))?;
    state.api.store.put_hub_schema(&group.spec.name, &schema).await.map_err(|e| capitalise(&e.to_string()))?;
    Ok(schema)
}

/// The hub's schema as last refreshed, refreshing it when there is none.
async fn hub_schema(state: &PortalState, group: &StoredGroup) -> Result<DatabaseSchema, String> {
    match state.api.store.hub_schema(&group.spec.name).await {
        Ok(Some(schema)) => Ok(schema),
        Ok(None) => refresh(state, group).await,
        Err(e) => Err(capitalise(&e.to_string())),
    }
}

/// `GET /portal/groups/{group}/tables`: the hub's tables, the group's
/// current choice ticked.
pub async fn tables_form(viewer: Viewer, State(state): State<PortalState>, Path(group): Path<String>) -> Response {
    let stored = match writable_group(&state, &viewer, &group).await {
        Ok(g) => g,
        Err(page) => return page,
    };
    match hub_schema(&state, &stored).await {
        Ok(schema) => {
            let selection = Selection::of_group(&schema, &stored.spec.tables);
            tables_page(&viewer, &stored, Some(&schema), &selection, None, None)
        }
        Err(e) => tables_page(&viewer, &stored, None, &Selection::default(), Some(e), None),
    }
}

/// `POST /portal/groups/{group}/tables`: refreshes the hub's schema, or
/// saves the ticked tables and columns (key columns always included).
pub async fn tables_submit(
    viewer: Viewer,
    State(state): State<PortalState>,
    Path(group): Path<String>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    let stored = match writable_group(&state, &viewer, &group).await {
        Ok(g) => g,
        Err(page) => return page,
    };
    let (action, selection) = Selection::from_form(&pairs);
    if action == "refresh" {
        return match refresh(&state, &stored).await {
            Ok(schema) => {
                let selection = Selection::of_group(&schema, &stored.spec.tables);
                tables_page(&viewer, &stored, Some(&schema), &selection, None, None)
            }
            Err(e) => tables_page(&viewer, &stored, None, &Selection::default(), Some(e), None),
        };
    }
    let schema = match hub_schema(&state, &stored).await {
        Ok(schema) => schema,
        Err(e) => return tables_page(&viewer, &stored, None, &Selection::default(), Some(e), None),
    };
    let tables = match chosen_tables(&schema, &selection) {
        Ok(tables) => tables,
        Err(e) => return tables_page(&viewer, &stored, Some(&schema), &selection, None, Some(e)),
    };
    let mut spec = stored.spec.clone();
    spec.tables = tables;
    if let Err(e) = state.api.store.put_group(&spec).await {
        return store_failed(&viewer, &e);
    }
    state.pending.forget(&group);
    tracing::info!(group = %group, tables = spec.tables.len(), token = %viewer.name, "Portal changed a sync group's tables.");
    to_group(&group, "tables")
}

// ---- Removing a member ----

#[derive(Template)]
#[template(path = "remove_member.html")]
struct RemovePage {
    layout: Layout,
    group: String,
    member: String,
    database: String,
    direction: &'static str,
    error: Option<String>,
}

fn remove_page(viewer: &Viewer, group: &str, member: &StoredMember, error: Option<String>) -> Response {
    let status = if error.is_some() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    let page = RemovePage {
        layout: Layout::new(format!("Remove member {}", member.spec.name), Some(viewer)),
        group: group.to_string(),
        member: member.spec.name.clone(),
        database: member.spec.database.display(),
        direction: direction_words(member.spec.direction),
        error,
    };
    render(status, &page)
}

async fn find_member(
    state: &PortalState,
    viewer: &Viewer,
    group: &str,
    member: &str,
) -> Result<StoredMember, Response> {
    match state.api.store.get_member(group, member).await {
        Ok(Some(m)) => Ok(m),
        Ok(None) => Err(error_page(
            StatusCode::NOT_FOUND,
            Some(viewer),
            "No such member",
            &format!("Sync group `{group}` has no member named `{member}`; it may have been removed already."),
        )),
        Err(e) => Err(store_failed(viewer, &e)),
    }
}

/// `GET /portal/groups/{group}/members/{member}/remove`: the confirmation,
/// with the choice to deprovision.
pub async fn remove_form(
    viewer: Viewer,
    State(state): State<PortalState>,
    Path((group, member)): Path<(String, String)>,
) -> Response {
    if let Err(page) = writable_group(&state, &viewer, &group).await {
        return page;
    }
    match find_member(&state, &viewer, &group, &member).await {
        Ok(m) => remove_page(&viewer, &group, &m, None),
        Err(page) => page,
    }
}

/// What the removal and deletion forms send.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RemoveForm {
    /// Present when hubsync's objects are to be removed from the databases first.
    deprovision: Option<String>,
    /// The group's name typed again (deleting a group only).
    confirm: String,
}

/// Removes hubsync's objects from a member, marking it `DeProvisioning`
/// meanwhile; on failure its state is restored and the error returned.
async fn deprovision(state: &PortalState, group: &StoredGroup, member: &StoredMember) -> Result<(), String> {
    let store = &state.api.store;
    let (g, m) = (&group.spec.name, &member.spec.name);
    let busy = MemberStatusRecord { state: SyncMemberState::DeProvisioning, ..member.status.clone() };
    store.set_member_status(g, m, &busy).await.map_err(|e| capitalise(&e.to_string()))?;
    match inspect::deprovision_member(&group.spec, &member.spec, &state.api.base_dir).await {
        Ok(removed) => {
            tracing::info!(group = %g, member = %m, removed = removed.len(), "Portal deprovisioned a member.");
            Ok(())
        }
        Err(message) => {
            // The member stays as it was: deleting it would orphan its tracking objects.
            if let Err(e) = store.set_member_status(g, m, &member.status).await {
                tracing::error!(group = %g, member = %m, error = %e, "Cannot restore the member's state.");
            }
            Err(capitalise(&message))
        }
    }
}

/// `POST /portal/groups/{group}/members/{member}/remove`: deprovisions the
/// member when asked (and keeps it when that fails), then deletes it.
pub async fn remove_submit(
    viewer: Viewer,
    State(state): State<PortalState>,
    Path((group, member)): Path<(String, String)>,
    Form(form): Form<RemoveForm>,
) -> Response {
    let stored = match writable_group(&state, &viewer, &group).await {
        Ok(g) => g,
        Err(page) => return page,
    };
    let found = match find_member(&state, &viewer, &group, &member).await {
        Ok(m) => m,
        Err(page) => return page,
    };
    if form.deprovision.is_some()
        && let Err(e) = deprovision(&state, &stored, &found).await
    {
        let why = format!("The member was not removed, because deprovisioning it failed: {e}");
        return remove_page(&viewer, &group, &found, Some(why));
    }
    if let Err(e) = state.api.store.delete_member(&group, &member).await {
        return store_failed(&viewer, &e);
    }
    state.pending.forget(&group);
    tracing::info!(group = %group, member = %member, deprovisioned = form.deprovision.is_some(), token = %viewer.name, "Portal removed a sync member.");
    to_group(&group, "removed")
}

// ---- Deleting the group ----

#[derive(Template)]
#[template(path = "delete_group.html")]
struct DeletePage {
    layout: Layout,
    name: String,
    members: Vec<String>,
    confirm: String,
    deprovision: bool,
    errors: Errors,
    error: Option<String>,
}

async fn delete_page(
    state: &PortalState,
    viewer: &Viewer,
    group: &StoredGroup,
    form: &RemoveForm,
    errors: Errors,
    error: Option<String>,
) -> Response {
    let members = match state.api.store.list_members(&group.spec.name).await {
        Ok(members) => members.into_iter().map(|m| m.spec.name).collect(),
        Err(e) => return store_failed(viewer, &e),
    };
    let status = if errors.is_empty() && error.is_none() { StatusCode::OK } else { StatusCode::UNPROCESSABLE_ENTITY };
    let page = DeletePage {
        layout: Layout::new(format!("Delete sync group {}", group.spec.name), Some(viewer)),
        name: group.spec.name.clone(),
        members,
        confirm: form.confirm.clone(),
        deprovision: form.deprovision.is_some(),
        errors,
        error,
    };
    render(status, &page)
}

/// `GET /portal/groups/{group}/delete`: the confirmation step.
pub async fn delete_form(viewer: Viewer, State(state): State<PortalState>, Path(group): Path<String>) -> Response {
    match writable_group(&state, &viewer, &group).await {
        Ok(stored) => delete_page(&state, &viewer, &stored, &RemoveForm::default(), Errors::default(), None).await,
        Err(page) => page,
    }
}

/// `POST /portal/groups/{group}/delete`: deletes the group when its name was
/// typed again, deprovisioning every member first when asked (and deleting
/// nothing when one of them fails).
pub async fn delete_submit(
    viewer: Viewer,
    State(state): State<PortalState>,
    Path(group): Path<String>,
    Form(form): Form<RemoveForm>,
) -> Response {
    let stored = match writable_group(&state, &viewer, &group).await {
        Ok(g) => g,
        Err(page) => return page,
    };
    if form.confirm.trim() != group {
        let mut errors = Errors::default();
        errors.add("confirm", format!("Type the group's name, `{group}`, exactly, to confirm; nothing was deleted."));
        return delete_page(&state, &viewer, &stored, &form, errors, None).await;
    }
    if form.deprovision.is_some() {
        let members = match state.api.store.list_members(&group).await {
            Ok(members) => members,
            Err(e) => return store_failed(&viewer, &e),
        };
        for (done, member) in members.iter().enumerate() {
            if let Err(e) = deprovision(&state, &stored, member).await {
                let before = if done == 0 {
                    String::new()
                } else {
                    let names: Vec<&str> = members[..done].iter().map(|m| m.spec.name.as_str()).collect();
                    format!(" Members deprovisioned before it: {}.", names.join(", "))
                };
                let why = format!(
                    "The group was not deleted, because deprovisioning member `{}` failed: {e}{before}",
                    member.spec.name
                );
                return delete_page(&state, &viewer, &stored, &form, Errors::default(), Some(why)).await;
            }
        }
    }
    // A sync still running finishes its members; its writes to the deleted
    // group's states are refused by the store and only logged.
    match state.api.store.delete_group(&group).await {
        Ok(_) => {
            state.pending.forget(&group);
            tracing::info!(group = %group, deprovisioned = form.deprovision.is_some(), token = %viewer.name, "Portal deleted a sync group.");
            Redirect::to(&format!("/portal/groups?deleted={group}")).into_response()
        }
        Err(e) => store_failed(&viewer, &e),
    }
}

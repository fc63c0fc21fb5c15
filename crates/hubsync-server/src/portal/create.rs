//! Creating a sync group in three steps, as in Azure's portal: (1) name,
//! hub, interval and policy; (2) members, each with a connection test;
//! (3) the hub's tables and columns.
//!
//! The steps fill a [`Draft`] kept in the session, in memory: passwords
//! typed in a step are kept there (never rendered back into a page), and
//! nothing reaches the metadata store until the last step has built and
//! checked the whole group.

use askama::Template;
use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use hubsync_core::{ConflictPolicy, Direction, TableName};
use serde::Deserialize;

use super::PortalState;
use super::format::{UNITS, direction_words};
use super::pages::{Layout, error_page, render, store_failed};
use super::session::Viewer;
use crate::inspect;
use crate::model::{DatabaseSchema, DatabaseType};
use crate::spec::{
    DEFAULT_BATCH_ROWS, DEFAULT_CONFLICT_RETENTION_DAYS, DatabaseSpec, GroupSpec, MemberSpec, Schedule, TableSpec,
    check_name,
};

/// A group being created, as far as the steps have got.
#[derive(Debug, Clone, Default)]
pub struct Draft {
    /// Step 1 as typed (no password).
    basics: BasicsForm,
    /// The hub's password as last typed.
    hub_password: Option<String>,
    /// The group, once step 1 is valid (its tables come in step 3).
    group: Option<GroupSpec>,
    /// The members added in step 2.
    members: Vec<MemberSpec>,
    /// Step 2's member form as typed (no password), kept across a test.
    member_form: MemberForm,
    /// The member's password as last typed in step 2's form.
    member_password: Option<String>,
    /// The hub's tables, once refreshed in step 3.
    schema: Option<DatabaseSchema>,
}

/// Messages for form fields, each shown next to its field.
#[derive(Debug, Clone, Default)]
pub struct Errors(Vec<(&'static str, String)>);

impl Errors {
    /// The message for a field.
    pub fn of(&self, field: &str) -> Option<&str> {
        self.0.iter().find(|(f, _)| *f == field).map(|(_, m)| m.as_str())
    }

    /// Adds the message for a field.
    pub fn add(&mut self, field: &'static str, message: impl Into<String>) {
        self.0.push((field, message.into()));
    }

    /// Whether no field has a message.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// One choice of a `<select>`.
pub struct Choice {
    /// The value sent.
    pub value: &'static str,
    /// What the person reads.
    pub label: &'static str,
    /// Whether it is the current choice.
    pub selected: bool,
}

/// The options of a `<select>`, `current` selected.
pub fn choices(all: &[(&'static str, &'static str)], current: &str) -> Vec<Choice> {
    all.iter().map(|&(value, label)| Choice { value, label, selected: value == current }).collect()
}

const DATABASE_TYPES: [(&str, &str); 3] =
    [("Sqlite", "SQLite"), ("PostgreSql", "PostgreSQL"), ("MySql", "MySQL or MariaDB")];

/// How a group can sync, as the interval's `<select>` offers it.
pub const SCHEDULES: [(&str, &str); 3] = [
    ("every", "Automatically, every…"),
    ("continuous", "Continuously (within a second of a change)"),
    ("manual", "Manually only (Sync now)"),
];

/// The conflict resolution policies, as their `<select>` offers them.
pub const POLICIES: [(&str, &str); 3] =
    [("HubWin", "Hub wins"), ("MemberWin", "Member wins"), ("LastWriterWins", "Last writer wins (by commit time)")];

const DIRECTIONS: [(&str, &str); 3] = [
    ("Bidirectional", "Bidirectional"),
    ("OneWayMemberToHub", "To the hub (one way)"),
    ("OneWayHubToMember", "From the hub (one way)"),
];

/// The interval's units, largest first.
pub fn unit_choices(current: &str) -> Vec<Choice> {
    let all: Vec<(&'static str, &'static str)> = UNITS.iter().rev().map(|(u, _)| (*u, *u)).collect();
    choices(&all, current)
}

fn database_type(text: &str) -> Option<DatabaseType> {
    match text {
        "Sqlite" => Some(DatabaseType::Sqlite),
        "PostgreSql" => Some(DatabaseType::PostgreSql),
        "MySql" => Some(DatabaseType::MySql),
        _ => None,
    }
}

/// A database from a form's fields; the errors name the form's fields
/// (`{prefix}_type`, `{prefix}_database`).
fn database_from(
    kind: &str,
    server: &str,
    database: &str,
    user: &str,
    password: Option<String>,
    fields: (&'static str, &'static str),
    errors: &mut Errors,
) -> Option<DatabaseSpec> {
    let Some(database_type) = database_type(kind) else {
        errors.add(fields.0, "Choose a database type: SQLite, PostgreSQL or MySQL.");
        return None;
    };
    let database = database.trim();
    if database.is_empty() {
        let what = if database_type == DatabaseType::Sqlite {
            "Give the SQLite file's path (relative paths are taken from the server's directory)."
        } else {
            "Give the database's name."
        };
        errors.add(fields.1, what);
        return None;
    }
    let sqlite = database_type == DatabaseType::Sqlite;
    Some(DatabaseSpec {
        database_type,
        server_name: if sqlite { String::new() } else { server.trim().to_string() },
        database_name: database.to_string(),
        user_name: if sqlite { String::new() } else { user.trim().to_string() },
        password: if sqlite { None } else { password.filter(|p| !p.is_empty()) },
    })
}

/// The schedule the interval fields describe, with the API's rule
/// ([`Schedule::from_interval`]): whole seconds from 1 up, `0` continuous,
/// `-1` manual.
pub fn schedule_from(mode: &str, value: &str, unit: &str) -> Result<Schedule, String> {
    match mode {
        "manual" => return Ok(Schedule::Manual),
        "continuous" => return Ok(Schedule::Continuous),
        "every" => {}
        _ => return Err("Choose how the group syncs: every so often, continuously or manually.".into()),
    }
    let value = value.trim();
    let count: i64 = value.parse().map_err(|_| {
        format!("The interval `{value}` is not a whole number; give a number of {unit} from 1 up (InvalidSyncGroupInterval).")
    })?;
    if count < 1 {
        return Err(format!(
            "The interval must be at least 1 (you gave {count} {unit}); choose Continuously for no wait, or Manually for no automatic sync (InvalidSyncGroupInterval)."
        ));
    }
    let size = UNITS.iter().find(|(u, _)| *u == unit).map(|(_, s)| *s).ok_or("Choose a unit for the interval.")?;
    let seconds = count
        .checked_mul(i64::try_from(size).unwrap_or(i64::MAX))
        .ok_or_else(|| format!("The interval of {count} {unit} is too long (InvalidSyncGroupInterval)."))?;
    Schedule::from_interval(seconds)
        .ok_or_else(|| format!("The interval of {count} {unit} is not valid (InvalidSyncGroupInterval)."))
}

/// The policy a `<select>` sent.
pub fn policy(text: &str) -> Option<ConflictPolicy> {
    text.parse().ok()
}

fn direction(text: &str) -> Option<Direction> {
    match text {
        "Bidirectional" => Some(Direction::Bidirectional),
        "OneWayMemberToHub" => Some(Direction::OneWayMemberToHub),
        "OneWayHubToMember" => Some(Direction::OneWayHubToMember),
        _ => None,
    }
}

/// Loads the draft or answers with a page saying it is gone.
fn load(state: &PortalState, viewer: &Viewer, draft: &str) -> Result<Draft, Response> {
    state.sessions.draft(&viewer.session, draft).ok_or_else(|| {
        error_page(
            StatusCode::NOT_FOUND,
            Some(viewer),
            "This draft is gone",
            "The sync group being created was not found: it was created already, or the server restarted. Start again from Create a sync group.",
        )
    })
}

/// `GET /portal/new`: starts a draft and goes to its first step.
pub async fn start(viewer: Viewer, State(state): State<PortalState>) -> Response {
    if let Err(refused) = viewer.require_write() {
        return refused;
    }
    let draft = Draft {
        basics: BasicsForm {
            hub_type: "Sqlite".into(),
            schedule: "every".into(),
            interval_value: "5".into(),
            interval_unit: "minutes".into(),
            policy: "HubWin".into(),
            ..BasicsForm::default()
        },
        member_form: MemberForm {
            member_type: "Sqlite".into(),
            direction: "Bidirectional".into(),
            ..MemberForm::default()
        },
        ..Draft::default()
    };
    match state.sessions.add_draft(&viewer.session, draft) {
        Some(id) => Redirect::to(&format!("/portal/new/{id}")).into_response(),
        None => Redirect::to("/portal/signin").into_response(),
    }
}

// ---- Step 1: the group and its hub ----

/// What step 1's form sends.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct BasicsForm {
    name: String,
    hub_type: String,
    hub_server: String,
    hub_database: String,
    hub_user: String,
    hub_password: String,
    schedule: String,
    interval_value: String,
    interval_unit: String,
    policy: String,
    conflict_logging: Option<String>,
    action: String,
}

#[derive(Template)]
#[template(path = "new_basics.html")]
struct BasicsPage {
    layout: Layout,
    draft: String,
    step: u8,
    form: BasicsForm,
    types: Vec<Choice>,
    schedules: Vec<Choice>,
    units: Vec<Choice>,
    policies: Vec<Choice>,
    has_password: bool,
    errors: Errors,
    tested: Option<Result<String, String>>,
}

fn basics_page(
    viewer: &Viewer,
    id: &str,
    draft: &Draft,
    errors: Errors,
    tested: Option<Result<String, String>>,
) -> Response {
    let form = draft.basics.clone();
    let status = if errors.is_empty() && !matches!(tested, Some(Err(_))) {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    let page = BasicsPage {
        layout: Layout::new("Create a sync group: basics", Some(viewer)),
        draft: id.to_string(),
        step: 1,
        types: choices(&DATABASE_TYPES, &form.hub_type),
        schedules: choices(&SCHEDULES, &form.schedule),
        units: unit_choices(&form.interval_unit),
        policies: choices(&POLICIES, &form.policy),
        has_password: draft.hub_password.is_some(),
        form,
        errors,
        tested,
    };
    render(status, &page)
}

/// `GET /portal/new/{draft}`.
pub async fn basics_form(viewer: Viewer, State(state): State<PortalState>, Path(id): Path<String>) -> Response {
    if let Err(refused) = viewer.require_write() {
        return refused;
    }
    match load(&state, &viewer, &id) {
        Ok(draft) => basics_page(&viewer, &id, &draft, Errors::default(), None),
        Err(page) => page,
    }
}

/// `POST /portal/new/{draft}`: tests the hub, or checks step 1 and goes on.
pub async fn basics_submit(
    viewer: Viewer,
    State(state): State<PortalState>,
    Path(id): Path<String>,
    Form(mut form): Form<BasicsForm>,
) -> Response {
    if let Err(refused) = viewer.require_write() {
        return refused;
    }
    let mut draft = match load(&state, &viewer, &id) {
        Ok(d) => d,
        Err(page) => return page,
    };
    keep_password(&mut draft.hub_password, &mut form.hub_password);
    let action = std::mem::take(&mut form.action);
    draft.basics = form;
    let b = &draft.basics;
    let mut errors = Errors::default();
    let hub = database_from(
        &b.hub_type,
        &b.hub_server,
        &b.hub_database,
        &b.hub_user,
        draft.hub_password.clone(),
        ("hub_type", "hub_database"),
        &mut errors,
    );
    if action == "test" {
        let tested = test(hub.as_ref(), &state).await;
        state.sessions.put_draft(&viewer.session, &id, draft.clone());
        return basics_page(&viewer, &id, &draft, errors, tested);
    }
    if let Err(e) = check_name("sync group", b.name.trim()) {
        errors.add("name", capitalise(&e));
    } else {
        match state.api.store.get_group(b.name.trim()).await {
            Ok(Some(_)) => errors
                .add("name", format!("A sync group named `{}` exists already; choose another name.", b.name.trim())),
            Ok(None) => {}
            Err(e) => return store_failed(&viewer, &e),
        }
    }
    let schedule = schedule_from(&b.schedule, &b.interval_value, &b.interval_unit)
        .map_err(|e| errors.add("interval_value", e))
        .ok();
    let chosen_policy = policy(&b.policy);
    if chosen_policy.is_none() {
        errors.add("policy", "Choose a conflict resolution policy.");
    }
    let (Some(hub), Some(schedule), Some(chosen_policy), true) = (hub, schedule, chosen_policy, errors.is_empty())
    else {
        state.sessions.put_draft(&viewer.session, &id, draft.clone());
        return basics_page(&viewer, &id, &draft, errors, None);
    };
    let name = b.name.trim().to_string();
    draft.group = Some(GroupSpec {
        name: name.clone(),
        hub,
        policy: chosen_policy,
        schedule,
        batch_rows: DEFAULT_BATCH_ROWS,
        tables: Vec::new(),
        conflict_logging: b.conflict_logging.is_some(),
        conflict_retention_days: DEFAULT_CONFLICT_RETENTION_DAYS,
    });
    // Members added before the name changed follow it.
    for member in &mut draft.members {
        member.group.clone_from(&name);
    }
    draft.schema = None;
    state.sessions.put_draft(&viewer.session, &id, draft);
    Redirect::to(&format!("/portal/new/{id}/members")).into_response()
}

/// Runs "Test connection" on a database the form described (`None` when
/// its fields are wrong, which the errors say): `Ok` with what was reached,
/// `Err` with exactly what failed.
async fn test(database: Option<&DatabaseSpec>, state: &PortalState) -> Option<Result<String, String>> {
    let database = database?;
    Some(match inspect::test_connection(database, &state.api.base_dir).await {
        Ok(()) => Ok(format!("Connected to {}.", database.display())),
        Err(e) => Err(capitalise(&e)),
    })
}

/// Keeps a password typed in a form in the draft (an empty field keeps the
/// one typed before), and takes it out of the form, which is kept for
/// re-rendering.
fn keep_password(slot: &mut Option<String>, typed: &mut String) {
    let typed = std::mem::take(typed);
    if !typed.is_empty() {
        *slot = Some(typed);
    }
}

/// A message from below, as a sentence: capitalised, with a full stop.
pub fn capitalise(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => {
            let mut out: String = first.to_uppercase().collect();
            out.push_str(chars.as_str());
            if !out.ends_with('.') {
                out.push('.');
            }
            out
        }
        None => String::new(),
    }
}

// ---- Step 2: members ----

/// What step 2's form sends.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct MemberForm {
    member_name: String,
    member_type: String,
    member_server: String,
    member_database: String,
    member_user: String,
    member_password: String,
    direction: String,
    action: String,
}

struct MemberLine {
    name: String,
    database: String,
    direction: &'static str,
}

#[derive(Template)]
#[template(path = "new_members.html")]
struct MembersPage {
    layout: Layout,
    draft: String,
    step: u8,
    group: String,
    members: Vec<MemberLine>,
    form: MemberForm,
    types: Vec<Choice>,
    directions: Vec<Choice>,
    has_password: bool,
    errors: Errors,
    tested: Option<Result<String, String>>,
}

fn members_page(
    viewer: &Viewer,
    id: &str,
    draft: &Draft,
    errors: Errors,
    tested: Option<Result<String, String>>,
) -> Response {
    let form = draft.member_form.clone();
    let status = if errors.is_empty() && !matches!(tested, Some(Err(_))) {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    let page = MembersPage {
        layout: Layout::new("Create a sync group: members", Some(viewer)),
        draft: id.to_string(),
        step: 2,
        group: draft.group.as_ref().map(|g| g.name.clone()).unwrap_or_default(),
        members: draft
            .members
            .iter()
            .map(|m| MemberLine {
                name: m.name.clone(),
                database: m.database.display(),
                direction: direction_words(m.direction),
            })
            .collect(),
        types: choices(&DATABASE_TYPES, &form.member_type),
        directions: choices(&DIRECTIONS, &form.direction),
        has_password: draft.member_password.is_some(),
        form,
        errors,
        tested,
    };
    render(status, &page)
}

/// Loads a draft whose step 1 is done, or sends the browser back to it.
fn load_with_group(state: &PortalState, viewer: &Viewer, id: &str) -> Result<(Draft, GroupSpec), Response> {
    let draft = load(state, viewer, id)?;
    match draft.group.clone() {
        Some(group) => Ok((draft, group)),
        None => Err(Redirect::to(&format!("/portal/new/{id}")).into_response()),
    }
}

/// `GET /portal/new/{draft}/members`.
pub async fn members_form(viewer: Viewer, State(state): State<PortalState>, Path(id): Path<String>) -> Response {
    if let Err(refused) = viewer.require_write() {
        return refused;
    }
    match load_with_group(&state, &viewer, &id) {
        Ok((draft, _)) => members_page(&viewer, &id, &draft, Errors::default(), None),
        Err(page) => page,
    }
}

/// `POST /portal/new/{draft}/members`: test, add (after a connection test)
/// or remove a member, or go on.
pub async fn members_submit(
    viewer: Viewer,
    State(state): State<PortalState>,
    Path(id): Path<String>,
    Form(mut form): Form<MemberForm>,
) -> Response {
    if let Err(refused) = viewer.require_write() {
        return refused;
    }
    let (mut draft, group) = match load_with_group(&state, &viewer, &id) {
        Ok(found) => found,
        Err(page) => return page,
    };
    let action = std::mem::take(&mut form.action);
    if action == "next" {
        return Redirect::to(&format!("/portal/new/{id}/tables")).into_response();
    }
    if let Some(index) = action.strip_prefix("remove:").and_then(|i| i.parse::<usize>().ok()) {
        if index < draft.members.len() {
            draft.members.remove(index);
        }
        state.sessions.put_draft(&viewer.session, &id, draft);
        return Redirect::to(&format!("/portal/new/{id}/members")).into_response();
    }
    keep_password(&mut draft.member_password, &mut form.member_password);
    draft.member_form = form;
    let f = &draft.member_form;
    let mut errors = Errors::default();
    let database = database_from(
        &f.member_type,
        &f.member_server,
        &f.member_database,
        &f.member_user,
        draft.member_password.clone(),
        ("member_type", "member_database"),
        &mut errors,
    );
    if action == "test" {
        let tested = test(database.as_ref(), &state).await;
        state.sessions.put_draft(&viewer.session, &id, draft.clone());
        return members_page(&viewer, &id, &draft, errors, tested);
    }
    let name = f.member_name.trim().to_string();
    if let Err(e) = check_name("sync member", &name) {
        errors.add("member_name", capitalise(&e));
    } else if draft.members.iter().any(|m| m.name == name) {
        errors.add("member_name", format!("This group has a member named `{name}` already; choose another name."));
    }
    let chosen = direction(&f.direction);
    if chosen.is_none() {
        errors.add("direction", "Choose a sync direction.");
    }
    let (Some(database), Some(chosen), true) = (database, chosen, errors.is_empty()) else {
        state.sessions.put_draft(&viewer.session, &id, draft.clone());
        return members_page(&viewer, &id, &draft, errors, None);
    };
    // A member that cannot be reached is not added: the group would be
    // created with a member that fails its first sync.
    if let Some(Err(failed)) = test(Some(&database), &state).await {
        state.sessions.put_draft(&viewer.session, &id, draft.clone());
        let failed = format!("{failed} The member was not added; correct its details and try again.");
        return members_page(&viewer, &id, &draft, errors, Some(Err(failed)));
    }
    draft.members.push(MemberSpec { group: group.name.clone(), name, database, direction: chosen });
    draft.member_form =
        MemberForm { member_type: f.member_type.clone(), direction: f.direction.clone(), ..MemberForm::default() };
    draft.member_password = None;
    state.sessions.put_draft(&viewer.session, &id, draft);
    Redirect::to(&format!("/portal/new/{id}/members")).into_response()
}

// ---- Step 3: tables and columns ----

/// A column's checkbox.
pub struct ColumnChoice {
    pub(crate) index: usize,
    pub(crate) name: String,
    pub(crate) data_type: String,
    pub(crate) key: bool,
    pub(crate) checked: bool,
}

/// A table's checkbox with its columns' (`table_choices.html`).
pub struct TableChoice {
    pub(crate) index: usize,
    pub(crate) name: String,
    pub(crate) reason: Option<String>,
    pub(crate) checked: bool,
    pub(crate) columns: Vec<ColumnChoice>,
}

#[derive(Template)]
#[template(path = "new_tables.html")]
struct TablesPage {
    pub(crate) layout: Layout,
    pub(crate) draft: String,
    pub(crate) step: u8,
    pub(crate) group: String,
    pub(crate) hub: String,
    pub(crate) members: usize,
    pub(crate) refreshed: String,
    pub(crate) tables: Vec<TableChoice>,
    pub(crate) schema_error: Option<String>,
    pub(crate) error: Option<String>,
}

/// What the user ticked: tables by index, and columns as (table, column).
#[derive(Debug, Default)]
pub struct Selection {
    tables: Vec<usize>,
    columns: Vec<(usize, usize)>,
    /// Whether this came from a form (else every column starts ticked).
    submitted: bool,
}

impl Selection {
    /// What a tables form sent, with its `action`.
    pub fn from_form(pairs: &[(String, String)]) -> (String, Selection) {
        let mut selection = Selection { submitted: true, ..Selection::default() };
        let mut action = String::new();
        for (key, value) in pairs {
            match key.as_str() {
                "action" => action.clone_from(value),
                "table" => selection.tables.extend(value.parse::<usize>().ok()),
                "col" => selection.columns.extend(
                    value.split_once(':').and_then(|(t, c)| Some((t.parse::<usize>().ok()?, c.parse::<usize>().ok()?))),
                ),
                _ => {}
            }
        }
        (action, selection)
    }

    /// The ticks a group's current sync schema makes on the hub's tables
    /// (a table listed without columns has all of them).
    pub fn of_group(schema: &DatabaseSchema, chosen: &[TableSpec]) -> Selection {
        let mut selection = Selection { submitted: true, ..Selection::default() };
        for (ti, table) in schema.tables.iter().enumerate() {
            let Ok(name) = TableName::parse(&table.quoted_name) else { continue };
            let Some(spec) = chosen.iter().find(|t| t.name == name) else { continue };
            selection.tables.push(ti);
            for (ci, column) in table.columns.iter().enumerate() {
                if spec.columns.as_ref().is_none_or(|c| c.contains(&column.name)) {
                    selection.columns.push((ti, ci));
                }
            }
        }
        selection
    }
}

/// The checkboxes for a schema's tables: a table without a primary key
/// shows the reason and nothing ticked, key columns are always ticked.
pub fn table_choices(schema: Option<&DatabaseSchema>, selection: &Selection) -> Vec<TableChoice> {
    schema
        .iter()
        .flat_map(|s| s.tables.iter())
        .enumerate()
        .map(|(ti, table)| {
            let no_key = !table.columns.iter().any(|c| c.is_primary_key);
            let reason = if table.has_error || no_key {
                Some(table.error_message.clone().unwrap_or_else(|| {
                    "This table has no primary key, so it cannot be synced; add a primary key to sync it.".to_string()
                }))
            } else {
                None
            };
            let selectable = reason.is_none();
            TableChoice {
                index: ti,
                name: table.name.clone(),
                checked: selectable && selection.tables.contains(&ti),
                reason,
                columns: table
                    .columns
                    .iter()
                    .enumerate()
                    .map(|(ci, c)| ColumnChoice {
                        index: ci,
                        name: c.name.clone(),
                        data_type: c.data_type.clone(),
                        key: c.is_primary_key,
                        // A table that cannot be synced shows its columns unticked.
                        checked: selectable
                            && (c.is_primary_key || !selection.submitted || selection.columns.contains(&(ti, ci))),
                    })
                    .collect(),
            }
        })
        .collect()
}

fn tables_page(
    viewer: &Viewer,
    id: &str,
    draft: &Draft,
    group: &GroupSpec,
    selection: &Selection,
    schema_error: Option<String>,
    error: Option<String>,
) -> Response {
    let status =
        if schema_error.is_some() || error.is_some() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    let tables = table_choices(draft.schema.as_ref(), selection);
    let page = TablesPage {
        layout: Layout::new("Create a sync group: tables", Some(viewer)),
        draft: id.to_string(),
        step: 3,
        group: group.name.clone(),
        hub: group.hub.display(),
        members: draft.members.len(),
        refreshed: draft.schema.as_ref().map(|s| s.last_update_time.clone()).unwrap_or_default(),
        tables,
        schema_error,
        error,
    };
    render(status, &page)
}

/// Refreshes the hub's schema into the draft when it has none yet; the
/// error says what failed.
async fn ensure_schema(state: &PortalState, draft: &mut Draft, group: &GroupSpec) -> Option<String> {
    if draft.schema.is_some() {
        return None;
    }
    match inspect::refresh_schema(&group.hub, &state.api.base_dir).await {
        Ok(schema) => {
            draft.schema = Some(schema);
            None
        }
        Err(e) => Some(format!("The hub's schema could not be read: {}", capitalise(&e))),
    }
}

/// `GET /portal/new/{draft}/tables`: refreshes the hub's schema (once) and
/// shows its tables.
pub async fn tables_form(viewer: Viewer, State(state): State<PortalState>, Path(id): Path<String>) -> Response {
    if let Err(refused) = viewer.require_write() {
        return refused;
    }
    let (mut draft, group) = match load_with_group(&state, &viewer, &id) {
        Ok(found) => found,
        Err(page) => return page,
    };
    let schema_error = ensure_schema(&state, &mut draft, &group).await;
    state.sessions.put_draft(&viewer.session, &id, draft.clone());
    tables_page(&viewer, &id, &draft, &group, &Selection::default(), schema_error, None)
}

/// `POST /portal/new/{draft}/tables`: refreshes the schema again, or builds
/// the whole group from the choices and writes it.
pub async fn tables_submit(
    viewer: Viewer,
    State(state): State<PortalState>,
    Path(id): Path<String>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    if let Err(refused) = viewer.require_write() {
        return refused;
    }
    let (mut draft, mut group) = match load_with_group(&state, &viewer, &id) {
        Ok(found) => found,
        Err(page) => return page,
    };
    let (action, selection) = Selection::from_form(&pairs);
    if action == "refresh" {
        draft.schema = None;
        let schema_error = ensure_schema(&state, &mut draft, &group).await;
        state.sessions.put_draft(&viewer.session, &id, draft.clone());
        return tables_page(&viewer, &id, &draft, &group, &Selection::default(), schema_error, None);
    }
    let Some(schema) = draft.schema.clone() else {
        return Redirect::to(&format!("/portal/new/{id}/tables")).into_response();
    };
    let tables = match chosen_tables(&schema, &selection) {
        Ok(tables) => tables,
        Err(e) => return tables_page(&viewer, &id, &draft, &group, &selection, None, Some(e)),
    };
    group.tables = tables;
    match write_group(&state, &group, &draft.members, &schema).await {
        Ok(()) => {
            state.sessions.remove_draft(&viewer.session, &id);
            tracing::info!(group = %group.name, members = draft.members.len(), token = %viewer.name, "Created a sync group in the portal.");
            Redirect::to(&format!("/portal/groups/{}?done=created", group.name)).into_response()
        }
        Err(e) => tables_page(&viewer, &id, &draft, &group, &selection, None, Some(e)),
    }
}

/// The sync schema the ticks describe: each chosen table with its chosen
/// columns and always its primary key, in the hub's column order.
pub fn chosen_tables(schema: &DatabaseSchema, selection: &Selection) -> Result<Vec<TableSpec>, String> {
    let mut out = Vec::new();
    for (ti, table) in schema.tables.iter().enumerate() {
        if !selection.tables.contains(&ti) {
            continue;
        }
        if table.has_error || !table.columns.iter().any(|c| c.is_primary_key) {
            return Err(format!("Table `{}` has no primary key, so it cannot be synced; untick it.", table.name));
        }
        let name =
            TableName::parse(&table.quoted_name).map_err(|e| format!("Table `{}` cannot be named: {e}", table.name))?;
        let columns = table
            .columns
            .iter()
            .enumerate()
            .filter(|(ci, c)| c.is_primary_key || selection.columns.contains(&(ti, *ci)))
            .map(|(_, c)| c.name.clone())
            .collect();
        out.push(TableSpec { name, columns: Some(columns), policy: None });
    }
    if out.is_empty() {
        return Err("Choose at least one table to sync.".to_string());
    }
    Ok(out)
}

/// Writes the group, its members and the hub's schema. The store has no
/// transaction across these, so a failure after the group was written
/// deletes it again: nothing is left half-way.
async fn write_group(
    state: &PortalState,
    group: &GroupSpec,
    members: &[MemberSpec],
    schema: &DatabaseSchema,
) -> Result<(), String> {
    let store = &state.api.store;
    match store.get_group(&group.name).await {
        Ok(None) => {}
        Ok(Some(_)) => {
            return Err(format!(
                "A sync group named `{}` was created meanwhile; go back to step 1 and choose another name.",
                group.name
            ));
        }
        Err(e) => return Err(e.to_string()),
    }
    store.put_group(group).await.map_err(|e| format!("The sync group could not be saved: {e}"))?;
    let rest = async {
        for member in members {
            store.put_member(member).await?;
        }
        store.put_hub_schema(&group.name, schema).await
    };
    if let Err(e) = rest.await {
        if let Err(undo) = store.delete_group(&group.name).await {
            tracing::error!(group = %group.name, error = %undo, "A half-created sync group could not be removed again.");
        }
        return Err(format!("The sync group could not be saved, and nothing was kept: {e}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_follow_the_apis_rule() {
        assert_eq!(schedule_from("every", "5", "minutes"), Ok(Schedule::EverySeconds(300)));
        assert_eq!(schedule_from("every", " 2 ", "days"), Ok(Schedule::EverySeconds(172_800)));
        assert_eq!(schedule_from("continuous", "", "seconds"), Ok(Schedule::Continuous));
        assert_eq!(schedule_from("manual", "x", "seconds"), Ok(Schedule::Manual));
        assert!(schedule_from("every", "0", "seconds").unwrap_err().contains("at least 1"));
        assert!(schedule_from("every", "-3", "hours").unwrap_err().contains("at least 1"));
        assert!(schedule_from("every", "soon", "hours").unwrap_err().contains("not a whole number"));
        assert!(schedule_from("every", &i64::MAX.to_string(), "days").unwrap_err().contains("too long"));
    }

    #[test]
    fn a_sqlite_database_keeps_no_server_user_or_password() {
        let mut errors = Errors::default();
        let db = database_from("Sqlite", "host", "a.db", "bob", Some("pw".into()), ("t", "d"), &mut errors);
        assert_eq!(db.map(|d| (d.server_name, d.user_name, d.password)), Some((String::new(), String::new(), None)));
        let none = database_from("Sqlite", "", " ", "", None, ("t", "d"), &mut errors);
        assert!(none.is_none());
        assert!(errors.of("d").is_some_and(|m| m.contains("path")));
    }
}

//! Translations between the API's resources ([`crate::model`]) and the
//! service's specs ([`crate::spec`]), with the validation a resource needs
//! before it may be stored.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hubsync_core::{ConflictPolicy, Direction, Side, TableName, Value};

use super::error::{ApiError, code};
use crate::model::{
    ConflictEntry, ConflictResolutionPolicy, DatabaseConnection, DatabaseSchema, SyncDirection, SyncGroup,
    SyncGroupLogProperties, SyncGroupProperties, SyncGroupSchema, SyncGroupSchemaTable, SyncGroupSchemaTableColumn,
    SyncMember, SyncMemberProperties,
};
use crate::spec::{
    self, DEFAULT_BATCH_ROWS, DEFAULT_CONFLICT_RETENTION_DAYS, DatabaseSpec, GroupSpec, MemberSpec, Schedule, TableSpec,
};
use crate::store::{ConflictRecord, LogRecord, StoredGroup, StoredMember};

/// The longest interval accepted: 30 days. Longer is almost surely a unit
/// mistake (milliseconds for seconds), and tombstones may expire before then.
pub const MAX_INTERVAL_SECONDS: i64 = 30 * 24 * 3600;

/// The longest conflict retention accepted, in days (ten years).
pub const MAX_RETENTION_DAYS: i64 = 3650;

/// The largest batch accepted, in rows.
pub const MAX_BATCH_ROWS: i64 = 1_000_000;

pub use crate::store::time::rfc3339;

/// Now as RFC 3339 in UTC.
pub fn now_rfc3339() -> String {
    let micros =
        SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
    rfc3339(micros)
}

/// Reads an RFC 3339 time query parameter as microseconds since the epoch.
pub fn parse_time(parameter: &str, text: &str) -> Result<i64, ApiError> {
    crate::store::time::parse_rfc3339(text.trim())
        .map_err(|why| ApiError::bad_request(code::INVALID_QUERY_PARAMETER, format!("`{parameter}`: {why}")))
}

/// An identifier in double quotes, inner quotes doubled.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A table's name with each part in double quotes (`"sales"."orders"`).
pub fn quote_table(table: &TableName) -> String {
    match &table.schema {
        Some(schema) => format!("{}.{}", quote_ident(schema), quote_ident(&table.name)),
        None => quote_ident(&table.name),
    }
}

/// A column's name from its quoted form (`"id"`); a bare name is taken as it
/// is. `None` for an empty or badly quoted name.
pub fn unquote_ident(text: &str) -> Option<String> {
    let name = match text.strip_prefix('"') {
        Some(rest) => {
            let inner = rest.strip_suffix('"')?;
            if inner.replace("\"\"", "").contains('"') {
                return None;
            }
            inner.replace("\"\"", "\"")
        }
        None => text.to_string(),
    };
    (!name.is_empty()).then_some(name)
}

/// The API's name of a policy.
pub fn policy_to_model(policy: ConflictPolicy) -> ConflictResolutionPolicy {
    match policy {
        ConflictPolicy::HubWin => ConflictResolutionPolicy::HubWin,
        ConflictPolicy::MemberWin => ConflictResolutionPolicy::MemberWin,
        ConflictPolicy::LastWriterWins => ConflictResolutionPolicy::LastWriterWins,
    }
}

/// The core's policy for the API's name.
pub fn policy_from_model(policy: ConflictResolutionPolicy) -> ConflictPolicy {
    match policy {
        ConflictResolutionPolicy::HubWin => ConflictPolicy::HubWin,
        ConflictResolutionPolicy::MemberWin => ConflictPolicy::MemberWin,
        ConflictResolutionPolicy::LastWriterWins => ConflictPolicy::LastWriterWins,
    }
}

fn direction_to_model(direction: Direction) -> SyncDirection {
    match direction {
        Direction::Bidirectional => SyncDirection::Bidirectional,
        Direction::OneWayMemberToHub => SyncDirection::OneWayMemberToHub,
        Direction::OneWayHubToMember => SyncDirection::OneWayHubToMember,
    }
}

fn direction_from_model(direction: SyncDirection) -> Direction {
    match direction {
        SyncDirection::Bidirectional => Direction::Bidirectional,
        SyncDirection::OneWayMemberToHub => Direction::OneWayMemberToHub,
        SyncDirection::OneWayHubToMember => Direction::OneWayHubToMember,
    }
}

fn non_empty(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| text.to_string())
}

/// A database as the API shows it; the password only when `with_password`
/// (never for a response: for merging a PATCH into the stored resource).
fn connection(db: &DatabaseSpec, with_password: bool) -> DatabaseConnection {
    DatabaseConnection {
        database_type: Some(db.database_type),
        server_name: non_empty(&db.server_name),
        database_name: Some(db.database_name.clone()),
        user_name: non_empty(&db.user_name),
        password: if with_password { db.password.clone() } else { None },
    }
}

fn missing(property: &str, resource: &str) -> ApiError {
    ApiError::bad_request(code::MISSING_PROPERTY, format!("`{property}` is required for a {resource}"))
}

/// Checks a database's properties; `what` names it in messages (`hub`).
fn database_spec(what: &str, resource: &str, c: DatabaseConnection) -> Result<DatabaseSpec, ApiError> {
    let database_type = c.database_type.ok_or_else(|| missing(&format!("{what}databaseType"), resource))?;
    let database_name =
        c.database_name.filter(|n| !n.is_empty()).ok_or_else(|| missing(&format!("{what}databaseName"), resource))?;
    Ok(DatabaseSpec {
        database_type,
        server_name: c.server_name.unwrap_or_default(),
        database_name,
        user_name: c.user_name.unwrap_or_default(),
        password: c.password.filter(|p| !p.is_empty()),
    })
}

/// Merges the given fields of a connection into a stored one.
fn merge_connection(base: DatabaseConnection, patch: DatabaseConnection) -> DatabaseConnection {
    DatabaseConnection {
        database_type: patch.database_type.or(base.database_type),
        server_name: patch.server_name.or(base.server_name),
        database_name: patch.database_name.or(base.database_name),
        user_name: patch.user_name.or(base.user_name),
        password: patch.password.or(base.password),
    }
}

/// On a PUT that leaves the password out (it is never returned, so a client
/// that PUTs back what it read has none), keeps the stored one, but only for
/// the same engine, server and user: a password is never sent to a server
/// it was not given for.
pub fn keep_password(new: &mut DatabaseSpec, old: &DatabaseSpec) {
    let same_server =
        new.database_type == old.database_type && new.server_name == old.server_name && new.user_name == old.user_name;
    if new.password.is_none() && same_server {
        new.password = old.password.clone();
    }
}

/// The group as the API shows it (no password).
pub fn group_resource(group: &StoredGroup) -> SyncGroup {
    let mut properties = group_properties(&group.spec, false);
    properties.sync_state = Some(group.status.state);
    properties.last_sync_time = group.status.last_sync_time.map(rfc3339);
    SyncGroup {
        id: Some(format!("/v1/syncGroups/{}", group.spec.name)),
        name: Some(group.spec.name.clone()),
        properties,
    }
}

/// The group's writable properties; with its hub password when
/// `with_password` (the base a PATCH is merged into).
pub fn group_properties(spec: &GroupSpec, with_password: bool) -> SyncGroupProperties {
    let tables = spec
        .tables
        .iter()
        .map(|t| SyncGroupSchemaTable {
            quoted_name: quote_table(&t.name),
            columns: t
                .columns
                .iter()
                .flatten()
                .map(|c| SyncGroupSchemaTableColumn { quoted_name: quote_ident(c), data_size: None, data_type: None })
                .collect(),
            conflict_resolution_policy: t.policy.map(policy_to_model),
        })
        .collect();
    SyncGroupProperties {
        interval: Some(spec.schedule.interval()),
        last_sync_time: None,
        conflict_resolution_policy: Some(policy_to_model(spec.policy)),
        sync_state: None,
        schema: Some(SyncGroupSchema { tables, master_sync_member_name: None }),
        enable_conflict_logging: Some(spec.conflict_logging),
        conflict_logging_retention_in_days: Some(i64::from(spec.conflict_retention_days)),
        hub: Some(connection(&spec.hub, with_password)),
        batch_rows: Some(i64::try_from(spec.batch_rows).unwrap_or(i64::MAX)),
    }
}

/// A PATCH: the given properties replace the stored ones; `hub` is merged
/// field by field (so a PATCH of the server keeps the password); `schema` is
/// replaced whole.
pub fn merge_group(base: SyncGroupProperties, patch: SyncGroupProperties) -> SyncGroupProperties {
    SyncGroupProperties {
        interval: patch.interval.or(base.interval),
        last_sync_time: None,
        conflict_resolution_policy: patch.conflict_resolution_policy.or(base.conflict_resolution_policy),
        sync_state: None,
        schema: patch.schema.or(base.schema),
        enable_conflict_logging: patch.enable_conflict_logging.or(base.enable_conflict_logging),
        conflict_logging_retention_in_days: patch
            .conflict_logging_retention_in_days
            .or(base.conflict_logging_retention_in_days),
        hub: match (base.hub, patch.hub) {
            (Some(base), Some(patch)) => Some(merge_connection(base, patch)),
            (base, patch) => patch.or(base),
        },
        batch_rows: patch.batch_rows.or(base.batch_rows),
    }
}

/// Checks a group name (`InvalidSyncGroupName`).
pub fn check_group_name(name: &str) -> Result<(), ApiError> {
    spec::check_name("sync group", name).map_err(|m| ApiError::bad_request(code::INVALID_SYNC_GROUP_NAME, m))
}

/// Checks a member name (`InvalidSyncMemberName`).
pub fn check_member_name(name: &str) -> Result<(), ApiError> {
    spec::check_name("sync member", name).map_err(|m| ApiError::bad_request(code::INVALID_SYNC_MEMBER_NAME, m))
}

/// A body's read-only `name`, when given, must be the one in the path.
pub fn check_body_name(given: Option<&str>, in_path: &str) -> Result<(), ApiError> {
    match given {
        Some(given) if given != in_path => Err(ApiError::bad_request(
            code::INVALID_REQUEST_BODY,
            format!("the body names `{given}` but the path `{in_path}`; leave `name` out or make them equal"),
        )),
        _ => Ok(()),
    }
}

/// Checks an interval and maps it to a schedule.
pub fn schedule(interval: i64) -> Result<Schedule, ApiError> {
    Schedule::from_interval(interval).filter(|_| interval <= MAX_INTERVAL_SECONDS).ok_or_else(|| {
        ApiError::bad_request(
            code::INVALID_SYNC_GROUP_INTERVAL,
            format!(
                "`interval` is {interval}; give seconds from 1 to {MAX_INTERVAL_SECONDS} (30 days), 0 for \
                 continuous sync or -1 for manual sync only"
            ),
        )
    })
}

/// The group a complete set of properties describes (a PUT, or a PATCH merged
/// into the stored group). Defaults: manual sync, `HubWin`, 10,000-row
/// batches, no conflict logging, 30 days of retention.
pub fn group_spec(name: &str, p: SyncGroupProperties) -> Result<GroupSpec, ApiError> {
    let resource = "sync group";
    let schedule = schedule(p.interval.unwrap_or(-1))?;
    let hub = database_spec("hub.", resource, p.hub.ok_or_else(|| missing("hub", resource))?)?;
    let retention = p.conflict_logging_retention_in_days.map_or(Ok(DEFAULT_CONFLICT_RETENTION_DAYS), |days| {
        u32::try_from(days).ok().filter(|d| (1..=MAX_RETENTION_DAYS).contains(&i64::from(*d))).ok_or_else(|| {
            ApiError::bad_request(
                code::INVALID_RETENTION,
                format!("`conflictLoggingRetentionInDays` is {days}; give 1 to {MAX_RETENTION_DAYS} days"),
            )
        })
    })?;
    let batch_rows = p.batch_rows.map_or(Ok(DEFAULT_BATCH_ROWS), |rows| {
        usize::try_from(rows).ok().filter(|_| (1..=MAX_BATCH_ROWS).contains(&rows)).ok_or_else(|| {
            ApiError::bad_request(
                code::INVALID_BATCH_ROWS,
                format!("`batchRows` is {rows}; give 1 to {MAX_BATCH_ROWS} rows per batch"),
            )
        })
    })?;
    Ok(GroupSpec {
        name: name.to_string(),
        hub,
        policy: p.conflict_resolution_policy.map_or(ConflictPolicy::HubWin, policy_from_model),
        schedule,
        batch_rows,
        tables: p.schema.map(|s| table_specs(&s.tables)).transpose()?.unwrap_or_default(),
        conflict_logging: p.enable_conflict_logging.unwrap_or(false),
        conflict_retention_days: retention,
    })
}

/// The sync schema's tables; names are parsed, columns unquoted, duplicates refused.
fn table_specs(tables: &[SyncGroupSchemaTable]) -> Result<Vec<TableSpec>, ApiError> {
    let mut out: Vec<TableSpec> = Vec::with_capacity(tables.len());
    for table in tables {
        let name = TableName::parse(&table.quoted_name).map_err(|_| {
            ApiError::bad_request(
                code::INVALID_TABLE_NAME,
                format!(
                    "table name `{}` cannot be read; write `\"table\"` or `\"schema\".\"table\"`, doubling any \
                     double quote inside a name",
                    table.quoted_name
                ),
            )
        })?;
        if out.iter().any(|t| t.name == name) {
            return Err(ApiError::bad_request(
                code::DUPLICATE_TABLE,
                format!("table `{name}` is in the sync schema twice; list each table once"),
            ));
        }
        let mut columns = Vec::with_capacity(table.columns.len());
        for column in &table.columns {
            let column = unquote_ident(&column.quoted_name).ok_or_else(|| {
                ApiError::bad_request(
                    code::INVALID_COLUMN_NAME,
                    format!(
                        "column name `{}` of table `{name}` cannot be read; write it in double quotes (`\"id\"`)",
                        column.quoted_name
                    ),
                )
            })?;
            if !columns.contains(&column) {
                columns.push(column);
            }
        }
        out.push(TableSpec {
            name,
            columns: (!columns.is_empty()).then_some(columns),
            policy: table.conflict_resolution_policy.map(policy_from_model),
        });
    }
    Ok(out)
}

/// Whether a selected table is a table the hub's schema lists: equal names,
/// where the engine's default schema (`public`, `main`) may be left out.
fn same_table(selected: &TableName, listed: &TableName) -> bool {
    let default_schema = |s: &Option<String>| s.as_deref().is_none_or(|s| s == "public" || s == "main");
    selected.name == listed.name
        && (selected.schema == listed.schema || (default_schema(&selected.schema) && default_schema(&listed.schema)))
}

/// Checks the selected tables against the hub's refreshed schema: each must
/// exist, have a primary key and have the selected columns.
pub fn check_tables_on_hub(tables: &[TableSpec], hub: &DatabaseSchema) -> Result<(), ApiError> {
    for table in tables {
        let listed =
            hub.tables.iter().find(|t| TableName::parse(&t.quoted_name).is_ok_and(|n| same_table(&table.name, &n)));
        let Some(listed) = listed else {
            return Err(ApiError::unprocessable(
                code::TABLE_NOT_FOUND,
                format!(
                    "table `{}` is not in the hub's schema as last refreshed ({}); check the name, or create the \
                     table and POST refreshHubSchema",
                    table.name, hub.last_update_time
                ),
            ));
        };
        if listed.error_id.as_deref() == Some(code::TABLE_HAS_NO_PRIMARY_KEY)
            || !listed.columns.iter().any(|c| c.is_primary_key)
        {
            return Err(ApiError::unprocessable(
                code::TABLE_HAS_NO_PRIMARY_KEY,
                format!("table `{}` has no primary key, so it cannot be synced; add one or leave it out", table.name),
            ));
        }
        for column in table.columns.iter().flatten() {
            if !listed.columns.iter().any(|c| &c.name == column) {
                return Err(ApiError::unprocessable(
                    code::COLUMN_NOT_FOUND,
                    format!("table `{}` has no column `{column}` on the hub; check the name", table.name),
                ));
            }
        }
    }
    Ok(())
}

/// The member as the API shows it (no password).
pub fn member_resource(member: &StoredMember) -> SyncMember {
    let mut properties = member_properties(&member.spec, false);
    properties.sync_state = Some(member.status.state);
    properties.last_sync_time = member.status.last_sync_time.map(rfc3339);
    SyncMember {
        id: Some(format!("/v1/syncGroups/{}/syncMembers/{}", member.spec.group, member.spec.name)),
        name: Some(member.spec.name.clone()),
        properties,
    }
}

/// The member's writable properties; with its password when `with_password`.
pub fn member_properties(spec: &MemberSpec, with_password: bool) -> SyncMemberProperties {
    let c = connection(&spec.database, with_password);
    SyncMemberProperties {
        database_type: c.database_type,
        server_name: c.server_name,
        database_name: c.database_name,
        user_name: c.user_name,
        password: c.password,
        sync_direction: Some(direction_to_model(spec.direction)),
        sync_state: None,
        last_sync_time: None,
    }
}

/// A PATCH of a member: the given properties replace the stored ones; a
/// PATCH without a password keeps the stored one.
pub fn merge_member(base: SyncMemberProperties, patch: SyncMemberProperties) -> SyncMemberProperties {
    SyncMemberProperties {
        database_type: patch.database_type.or(base.database_type),
        server_name: patch.server_name.or(base.server_name),
        database_name: patch.database_name.or(base.database_name),
        user_name: patch.user_name.or(base.user_name),
        password: patch.password.or(base.password),
        sync_direction: patch.sync_direction.or(base.sync_direction),
        sync_state: None,
        last_sync_time: None,
    }
}

/// The member a complete set of properties describes.
pub fn member_spec(group: &str, name: &str, p: SyncMemberProperties) -> Result<MemberSpec, ApiError> {
    let resource = "sync member";
    let direction = p.sync_direction.ok_or_else(|| missing("syncDirection", resource))?;
    let connection = DatabaseConnection {
        database_type: p.database_type,
        server_name: p.server_name,
        database_name: p.database_name,
        user_name: p.user_name,
        password: p.password,
    };
    Ok(MemberSpec {
        group: group.to_string(),
        name: name.to_string(),
        database: database_spec("", resource, connection)?,
        direction: direction_from_model(direction),
    })
}

/// A log entry as the API shows it.
pub fn log_entry(record: &LogRecord) -> SyncGroupLogProperties {
    SyncGroupLogProperties {
        timestamp: rfc3339(record.timestamp),
        log_type: record.log_type,
        source: record.source.clone(),
        details: record.details.clone(),
        tracing_id: record.tracing_id.clone(),
        operation_status: record.operation_status.clone(),
    }
}

/// A value as JSON: numbers, text, `null`; bytes as base64 text; a float
/// JSON cannot hold (NaN, infinities) as its text.
fn json_value(value: &Value) -> serde_json::Value {
    match value {
        Value::Null => serde_json::Value::Null,
        Value::Integer(i) => serde_json::Value::from(*i),
        Value::Real(f) => serde_json::Number::from_f64(*f)
            .map_or_else(|| serde_json::Value::String(f.to_string()), serde_json::Value::Number),
        Value::Text(s) => serde_json::Value::String(s.clone()),
        Value::Blob(b) => serde_json::Value::String(base64::engine::general_purpose::STANDARD.encode(b)),
    }
}

fn row_image(columns: &[String], row: Option<&Vec<Value>>) -> Option<serde_json::Map<String, serde_json::Value>> {
    row.map(|values| columns.iter().cloned().zip(values.iter().map(json_value)).collect())
}

/// A logged conflict as the API shows it.
pub fn conflict_entry(record: &ConflictRecord) -> ConflictEntry {
    let c = &record.conflict;
    ConflictEntry {
        id: record.id,
        timestamp: rfc3339(record.timestamp),
        member: record.member.clone(),
        table: c.table.to_string(),
        key: c.key.iter().map(json_value).collect(),
        hub_row: row_image(&record.columns, c.hub_row.as_ref()),
        member_row: row_image(&record.columns, c.member_row.as_ref()),
        winner: match c.winner {
            Side::Hub => "Hub".to_string(),
            Side::Member => "Member".to_string(),
        },
        policy: policy_to_model(c.policy),
        reason: c.reason.clone(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::model::{DatabaseType, SchemaColumn, SchemaTable};

    fn hub() -> DatabaseConnection {
        DatabaseConnection {
            database_type: Some(DatabaseType::PostgreSql),
            server_name: Some("db:5432".into()),
            database_name: Some("sales".into()),
            user_name: Some("bob".into()),
            password: Some("pw".into()),
        }
    }

    fn table(quoted: &str, columns: &[&str]) -> SyncGroupSchemaTable {
        SyncGroupSchemaTable {
            quoted_name: quoted.into(),
            columns: columns
                .iter()
                .map(|c| SyncGroupSchemaTableColumn { quoted_name: (*c).into(), data_size: None, data_type: None })
                .collect(),
            conflict_resolution_policy: None,
        }
    }

    #[test]
    fn times_round_trip_through_rfc3339() {
        assert_eq!(rfc3339(1_000_006), "1970-01-01T00:00:01.000006Z");
        assert_eq!(parse_time("startTime", "1970-01-01T00:00:01.000006Z").unwrap(), 1_000_006);
        assert_eq!(parse_time("startTime", "2026-01-02T03:04:05Z").unwrap(), 1_767_323_045_000_000);
        let err = parse_time("startTime", "yesterday").unwrap_err();
        assert_eq!(err.code, code::INVALID_QUERY_PARAMETER);
        assert!(err.message.contains("startTime"), "{err}");
    }

    #[test]
    fn identifiers_are_quoted_and_unquoted() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(unquote_ident("\"a\"\"b\"").as_deref(), Some("a\"b"));
        assert_eq!(unquote_ident("plain").as_deref(), Some("plain"));
        assert_eq!(unquote_ident("\"a\"b\""), None);
        assert_eq!(unquote_ident("\"\""), None);
        let t = TableName { schema: Some("sales".into()), name: "my.orders".into() };
        assert_eq!(TableName::parse(&quote_table(&t)).unwrap(), t);
    }

    #[test]
    fn a_group_round_trips_and_defaults_are_filled_in() {
        let props = SyncGroupProperties {
            interval: Some(60),
            hub: Some(hub()),
            schema: Some(SyncGroupSchema {
                tables: vec![table("\"sales\".\"orders\"", &["\"id\"", "\"total\""]), table("items", &[])],
                master_sync_member_name: None,
            }),
            ..Default::default()
        };
        let spec = group_spec("g", props).unwrap();
        assert_eq!(spec.schedule, Schedule::EverySeconds(60));
        assert_eq!(spec.policy, ConflictPolicy::HubWin);
        assert_eq!(spec.batch_rows, DEFAULT_BATCH_ROWS);
        assert_eq!(spec.tables[0].columns.as_deref(), Some(&["id".to_string(), "total".to_string()][..]));
        assert_eq!(spec.tables[1].columns, None);
        assert_eq!(spec.hub.password.as_deref(), Some("pw"));
        let again = group_spec("g", group_properties(&spec, true)).unwrap();
        assert_eq!(again, spec);
        assert_eq!(group_properties(&spec, false).hub.unwrap().password, None);
    }

    #[test]
    fn bad_group_properties_get_their_codes() {
        let with = |f: &dyn Fn(&mut SyncGroupProperties)| {
            let mut p = SyncGroupProperties { hub: Some(hub()), ..Default::default() };
            f(&mut p);
            group_spec("g", p).unwrap_err().code
        };
        assert_eq!(with(&|p| p.interval = Some(-2)), code::INVALID_SYNC_GROUP_INTERVAL);
        assert_eq!(with(&|p| p.interval = Some(MAX_INTERVAL_SECONDS + 1)), code::INVALID_SYNC_GROUP_INTERVAL);
        assert_eq!(with(&|p| p.conflict_logging_retention_in_days = Some(0)), code::INVALID_RETENTION);
        assert_eq!(with(&|p| p.batch_rows = Some(0)), code::INVALID_BATCH_ROWS);
        assert_eq!(with(&|p| p.hub = None), code::MISSING_PROPERTY);
        assert_eq!(with(&|p| p.hub.as_mut().unwrap().database_name = None), code::MISSING_PROPERTY);
        let schema = |tables| Some(SyncGroupSchema { tables, master_sync_member_name: None });
        assert_eq!(with(&|p| p.schema = schema(vec![table("\"open", &[])])), code::INVALID_TABLE_NAME);
        assert_eq!(with(&|p| p.schema = schema(vec![table("a", &[]), table("\"a\"", &[])])), code::DUPLICATE_TABLE);
        assert_eq!(with(&|p| p.schema = schema(vec![table("a", &["\"x"])])), code::INVALID_COLUMN_NAME);
    }

    #[test]
    fn a_patch_merges_the_hub_field_by_field_and_keeps_the_password() {
        let spec = group_spec("g", SyncGroupProperties { hub: Some(hub()), ..Default::default() }).unwrap();
        let patch = SyncGroupProperties {
            interval: Some(5),
            hub: Some(DatabaseConnection { server_name: Some("other:5432".into()), ..Default::default() }),
            ..Default::default()
        };
        let merged = group_spec("g", merge_group(group_properties(&spec, true), patch)).unwrap();
        assert_eq!(merged.schedule, Schedule::EverySeconds(5));
        assert_eq!(merged.hub.server_name, "other:5432");
        assert_eq!(merged.hub.database_name, "sales");
        assert_eq!(merged.hub.password.as_deref(), Some("pw"));
    }

    #[test]
    fn a_put_keeps_the_stored_password_only_for_the_same_server_and_user() {
        let old = group_spec("g", SyncGroupProperties { hub: Some(hub()), ..Default::default() }).unwrap().hub;
        let mut same = DatabaseSpec { password: None, database_name: "other_db".into(), ..old.clone() };
        keep_password(&mut same, &old);
        assert_eq!(same.password.as_deref(), Some("pw"));
        let mut moved = DatabaseSpec { password: None, server_name: "evil:5432".into(), ..old.clone() };
        keep_password(&mut moved, &old);
        assert_eq!(moved.password, None);
    }

    #[test]
    fn selected_tables_are_checked_against_the_hub_schema() {
        let column = |name: &str, key: bool| SchemaColumn {
            name: name.into(),
            quoted_name: quote_ident(name),
            data_type: "int".into(),
            data_size: None,
            is_primary_key: key,
        };
        let hub_schema = DatabaseSchema {
            tables: vec![
                SchemaTable {
                    name: "items".into(),
                    quoted_name: "\"items\"".into(),
                    columns: vec![column("id", true), column("v", false)],
                    has_error: false,
                    error_id: None,
                    error_message: None,
                },
                SchemaTable {
                    name: "loose".into(),
                    quoted_name: "\"loose\"".into(),
                    columns: vec![column("v", false)],
                    has_error: true,
                    error_id: Some(code::TABLE_HAS_NO_PRIMARY_KEY.into()),
                    error_message: None,
                },
            ],
            last_update_time: now_rfc3339(),
        };
        let check = |name: &str, columns: &[&str]| {
            let tables = table_specs(&[table(name, columns)]).unwrap();
            check_tables_on_hub(&tables, &hub_schema).map_err(|e| e.code)
        };
        assert_eq!(check("items", &["\"v\""]), Ok(()));
        assert_eq!(check("public.items", &[]), Ok(()));
        assert_eq!(check("loose", &[]), Err(code::TABLE_HAS_NO_PRIMARY_KEY));
        assert_eq!(check("nope", &[]), Err(code::TABLE_NOT_FOUND));
        assert_eq!(check("items", &["\"w\""]), Err(code::COLUMN_NOT_FOUND));
    }
}

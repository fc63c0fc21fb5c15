//! The REST API's resources, with Azure SQL Data Sync's resource names,
//! property names and enum values wherever the concept is the same, so a team
//! that scripts Azure's API recognises every field. JSON is `camelCase`.
//!
//! Request bodies refuse unknown properties (`deny_unknown_fields`): a typo in
//! a property name must be an error, not a silently ignored setting.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Never serializes a write-only field. A `skip_serializing_if` that is
/// always true, rather than `skip_serializing`, because utoipa leaves a
/// `skip_serializing` field out of the OpenAPI document, which must declare
/// the password (as `writeOnly`) for clients to send it.
fn write_only<T>(_: &T) -> bool {
    true
}

/// The engine of a database, as the API names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum DatabaseType {
    /// An embedded SQLite file; `databaseName` is its path.
    Sqlite,
    /// A PostgreSQL database.
    PostgreSql,
    /// A MySQL or MariaDB database.
    MySql,
}

/// A sync group's state, with Azure's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum SyncGroupState {
    /// Never synced (or its schema is not set yet).
    NotReady,
    /// A sync is running.
    Progressing,
    /// The last sync of every member succeeded.
    Good,
    /// The last sync succeeded with warnings, or was cancelled.
    Warning,
    /// A member or the hub failed in the last sync.
    Error,
}

/// A conflict resolution policy, with Azure's names plus `LastWriterWins`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum ConflictResolutionPolicy {
    /// The hub's change wins.
    HubWin,
    /// The member's change wins.
    MemberWin,
    /// The later commit wins; the hub wins a tie.
    LastWriterWins,
}

/// Which way changes flow between a member and the hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum SyncDirection {
    /// Both ways.
    Bidirectional,
    /// Member to hub only.
    OneWayMemberToHub,
    /// Hub to member only.
    OneWayHubToMember,
}

/// A member's state, with Azure's names (DESIGN.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[allow(missing_docs)]
pub enum SyncMemberState {
    UnProvisioned,
    Provisioning,
    Provisioned,
    SyncInProgress,
    SyncSucceeded,
    SyncSucceededWithWarnings,
    SyncFailed,
    SyncCancelled,
    OutOfDate,
    DeProvisioning,
    DeProvisioned,
}

/// How to reach a database. The password is write-only: accepted on PUT and
/// PATCH, never returned (responses leave it out). A PATCH without it keeps
/// the stored one; so does a PUT, when engine, server and user are unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DatabaseConnection {
    /// The engine.
    pub database_type: Option<DatabaseType>,
    /// `host` or `host:port`; empty for SQLite.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// The database name; for SQLite the file's path.
    pub database_name: Option<String>,
    /// The user to connect as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_name: Option<String>,
    /// The password (write-only).
    #[serde(default, skip_serializing_if = "write_only")]
    #[schema(write_only)]
    pub password: Option<String>,
}

/// One column of a table in a sync schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SyncGroupSchemaTableColumn {
    /// The column's name in double quotes (`"id"`).
    pub quoted_name: String,
    /// The declared size, when the type has one (`varchar(40)` → `40`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_size: Option<String>,
    /// The hub's declared type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_type: Option<String>,
}

/// One table of a sync schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SyncGroupSchemaTable {
    /// The table's name, each part in double quotes (`"sales"."orders"`).
    pub quoted_name: String,
    /// The synced columns; empty or absent selects every column. The primary
    /// key is always synced.
    #[serde(default)]
    pub columns: Vec<SyncGroupSchemaTableColumn>,
    /// Overrides the group's policy for this table (beyond Azure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conflict_resolution_policy: Option<ConflictResolutionPolicy>,
}

/// A sync group's schema: the synced tables and columns.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SyncGroupSchema {
    /// The tables.
    #[serde(default)]
    pub tables: Vec<SyncGroupSchemaTable>,
    /// The member whose schema the tables were taken from; hubsync always
    /// takes the hub's, so this is informational.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master_sync_member_name: Option<String>,
}

/// A sync group's properties. On PUT every required property must be given;
/// on PATCH any subset.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SyncGroupProperties {
    /// Seconds between automatic syncs; `-1` manual only, `0` continuous.
    pub interval: Option<i64>,
    /// When the group last finished a sync (RFC 3339, read-only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(read_only)]
    pub last_sync_time: Option<String>,
    /// The conflict resolution policy.
    pub conflict_resolution_policy: Option<ConflictResolutionPolicy>,
    /// The group's state (read-only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(read_only)]
    pub sync_state: Option<SyncGroupState>,
    /// The sync schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<SyncGroupSchema>,
    /// Whether conflicts are logged with both row images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_conflict_logging: Option<bool>,
    /// Days logged conflicts are kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conflict_logging_retention_in_days: Option<i64>,
    /// The hub database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hub: Option<DatabaseConnection>,
    /// Rows per batch (beyond Azure; default 10,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_rows: Option<i64>,
}

/// A sync group resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SyncGroup {
    /// `/v1/syncGroups/{name}` (read-only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(read_only)]
    pub id: Option<String>,
    /// The group's name (read-only: it is in the path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(read_only)]
    pub name: Option<String>,
    /// The properties.
    pub properties: SyncGroupProperties,
}

/// A sync member's properties.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SyncMemberProperties {
    /// The engine.
    pub database_type: Option<DatabaseType>,
    /// `host` or `host:port`; empty for SQLite.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// The database name; for SQLite the file's path.
    pub database_name: Option<String>,
    /// The user to connect as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_name: Option<String>,
    /// The password (write-only: never returned).
    #[serde(default, skip_serializing_if = "write_only")]
    #[schema(write_only)]
    pub password: Option<String>,
    /// Which way changes flow.
    pub sync_direction: Option<SyncDirection>,
    /// The member's state (read-only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(read_only)]
    pub sync_state: Option<SyncMemberState>,
    /// When the member last synced successfully (RFC 3339, read-only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(read_only)]
    pub last_sync_time: Option<String>,
}

/// A sync member resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SyncMember {
    /// `/v1/syncGroups/{group}/syncMembers/{name}` (read-only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(read_only)]
    pub id: Option<String>,
    /// The member's name (read-only: it is in the path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(read_only)]
    pub name: Option<String>,
    /// The properties.
    pub properties: SyncMemberProperties,
}

/// One column of a database table as introspected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SchemaColumn {
    /// The column's name.
    pub name: String,
    /// The name in double quotes.
    pub quoted_name: String,
    /// The declared type.
    pub data_type: String,
    /// The declared size, when the type has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_size: Option<String>,
    /// Whether the column is part of the primary key.
    pub is_primary_key: bool,
}

/// One table of a database as introspected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SchemaTable {
    /// The table's name (`schema.table` when qualified).
    pub name: String,
    /// The name with each part in double quotes.
    pub quoted_name: String,
    /// The columns.
    pub columns: Vec<SchemaColumn>,
    /// Whether the table cannot be synced (no primary key, a type hubsync
    /// cannot map).
    pub has_error: bool,
    /// A stable code for the error (`TableHasNoPrimaryKey`), when `hasError`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_id: Option<String>,
    /// What is wrong, in words, when `hasError`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
}

/// A database's schema as last refreshed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseSchema {
    /// The tables.
    pub tables: Vec<SchemaTable>,
    /// When the schema was refreshed (RFC 3339).
    pub last_update_time: String,
}

/// A kind of log entry; `All` only as a filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum LogType {
    /// Every kind (filter only).
    All,
    /// A failure.
    Error,
    /// Something that needs attention but did not fail.
    Warning,
    /// A successful sync or operation.
    Success,
}

/// One log entry of a sync group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncGroupLogProperties {
    /// When (RFC 3339).
    pub timestamp: String,
    /// `Error`, `Warning` or `Success`.
    #[serde(rename = "type")]
    pub log_type: LogType,
    /// What it concerns (`hub`, a member's name).
    pub source: String,
    /// What happened, in words.
    pub details: String,
    /// Ties together the entries of one sync run.
    pub tracing_id: String,
    /// The outcome in one word (`Succeeded`, `Failed`, `Cancelled`).
    pub operation_status: String,
}

/// A page of results with a token for the next page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    /// The items of this page.
    pub value: Vec<T>,
    /// Pass as `continuationToken` to get the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_link: Option<String>,
}

/// A logged conflict, with both row images.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConflictEntry {
    /// Its id.
    pub id: i64,
    /// When it was resolved (RFC 3339).
    pub timestamp: String,
    /// The member on the other side.
    pub member: String,
    /// The table.
    pub table: String,
    /// The row's primary key values.
    pub key: Vec<serde_json::Value>,
    /// The hub's row image, column name to value; `null` when deleted.
    pub hub_row: Option<serde_json::Map<String, serde_json::Value>>,
    /// The member's row image; `null` when deleted.
    pub member_row: Option<serde_json::Map<String, serde_json::Value>>,
    /// `Hub` or `Member`.
    pub winner: String,
    /// The policy that decided.
    pub policy: ConflictResolutionPolicy,
    /// Why that side won, in words.
    pub reason: String,
}

/// The state of a long operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum OperationStatus {
    /// Still running.
    InProgress,
    /// Finished successfully.
    Succeeded,
    /// Finished with an error.
    Failed,
}

/// A long operation (refresh schema, delete with deprovisioning), answered
/// with `202 Accepted` and a `Location` to this resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Operation {
    /// Its id.
    pub id: String,
    /// What it does (`refreshHubSchema`, `deleteSyncMember`, ...).
    pub name: String,
    /// Where it stands.
    pub status: OperationStatus,
    /// When it started (RFC 3339).
    pub start_time: String,
    /// When it ended (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_time: Option<String>,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorDetail>,
}

/// An error's stable code and message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable code (`SyncGroupNotFound`, `InvalidSyncGroupInterval`, ...).
    pub code: String,
    /// What went wrong and what to do.
    pub message: String,
}

/// The body of every error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorResponse {
    /// The error.
    pub error: ErrorDetail,
}

/// A list of resources.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct List<T> {
    /// The resources.
    pub value: Vec<T>,
}

/// The answer of `/healthz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HealthStatus {
    /// `ok` while the server answers.
    pub status: String,
}

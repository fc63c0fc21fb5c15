//! The store's tables, created and migrated in numbered steps recorded in
//! `hubsync_schema_version`, so a later hubsync can migrate an older store.

use sqlx::AssertSqlSafe;

use super::{Backend, MetaStore, StoreError, query_error};

/// The newest schema version this build writes.
pub(super) const LATEST_VERSION: i64 = 2;

/// Version 1. `{id}` is the backend's auto-increment key column, the only DDL
/// that differs. Specs are JSON documents; columns exist for what is looked up
/// or ordered by. Ids only increase (SQLite `autoincrement`), so pages keyed
/// on `before_id` stay stable.
const V1: &[&str] = &[
    "create table hubsync_groups (
        name text primary key,
        spec text not null,
        hub_password text,
        state text not null,
        last_sync_time bigint,
        hub_schema text
    )",
    "create table hubsync_members (
        group_name text not null,
        name text not null,
        spec text not null,
        password text,
        state text not null,
        last_sync_time bigint,
        last_error text,
        member_schema text,
        primary key (group_name, name)
    )",
    "create table hubsync_logs (
        id {id},
        group_name text not null,
        logged_at bigint not null,
        log_type text not null,
        source text not null,
        details text not null,
        tracing_id text not null,
        operation_status text not null
    )",
    "create index hubsync_logs_by_group on hubsync_logs (group_name, id)",
    "create table hubsync_conflicts (
        id {id},
        group_name text not null,
        resolved_at bigint not null,
        member text not null,
        conflict text not null,
        columns_json text not null
    )",
    "create index hubsync_conflicts_by_group on hubsync_conflicts (group_name, id)",
    "create table hubsync_runs (
        id {id},
        group_name text not null,
        member text not null,
        tracing_id text not null,
        started_at bigint not null,
        duration_ms bigint not null,
        uploaded bigint not null,
        downloaded bigint not null,
        conflicts bigint not null,
        outcome text not null
    )",
    "create index hubsync_runs_by_group on hubsync_runs (group_name, id)",
    "create table hubsync_tokens (
        id {id},
        name text not null,
        secret_hash text not null unique,
        read_only bigint not null,
        created_at bigint not null
    )",
    "create table hubsync_operations (
        id text primary key,
        name text not null,
        status text not null,
        start_time bigint not null,
        end_time bigint,
        error text
    )",
    "create table hubsync_leases (
        group_name text primary key,
        owner text not null,
        expires_at bigint not null
    )",
    "create table hubsync_requests (
        group_name text not null,
        kind text not null,
        requested_at bigint not null,
        primary key (group_name, kind)
    )",
];

/// Version 2: the progress of running syncs, published by the server that
/// runs a group (at most once a second) so that the portal of any server
/// sharing the store can show it. One row per group, deleted when the run ends.
const V2: &[&str] = &["create table hubsync_progress (
        group_name text primary key,
        progress text not null,
        updated_at bigint not null
    )"];

/// Every migration step, in order: step `i` brings the store to version `i + 1`.
const STEPS: &[&[&str]] = &[V1, V2];

/// Serialises migrations of servers starting together on one PostgreSQL
/// store (any constant shared by every hubsync build: "hubsync" in ASCII).
const PG_MIGRATION_LOCK: i64 = 0x0068_7562_7379_6e63;

impl MetaStore {
    /// Brings the store's tables to [`LATEST_VERSION`], in one transaction
    /// that other openers wait for.
    pub(super) async fn migrate(&self) -> Result<(), StoreError> {
        let doing = "migrating the store's tables";
        let mut tx = self.begin(doing).await?;
        if self.backend == Backend::Postgres {
            sqlx::query("select 1 from (select pg_advisory_xact_lock($1)) as locked")
                .bind(PG_MIGRATION_LOCK)
                .execute(&mut *tx)
                .await
                .map_err(query_error(doing))?;
        }
        sqlx::query("create table if not exists hubsync_schema_version (version bigint not null)")
            .execute(&mut *tx)
            .await
            .map_err(query_error(doing))?;
        let current: Option<i64> = sqlx::query_scalar("select max(version) from hubsync_schema_version")
            .fetch_one(&mut *tx)
            .await
            .map_err(query_error(doing))?;
        let current = current.unwrap_or(0);
        if current > LATEST_VERSION {
            return Err(StoreError::NewerSchema { found: current, supported: LATEST_VERSION });
        }
        let id_column = match self.backend {
            Backend::Sqlite => "integer primary key autoincrement",
            Backend::Postgres => "bigint generated by default as identity primary key",
        };
        for (version, step) in (1..).zip(STEPS).skip(usize::try_from(current).unwrap_or(0)) {
            for statement in *step {
                sqlx::query(AssertSqlSafe(statement.replace("{id}", id_column)))
                    .execute(&mut *tx)
                    .await
                    .map_err(query_error(doing))?;
            }
            sqlx::query("insert into hubsync_schema_version (version) values ($1)")
                .bind(version)
                .execute(&mut *tx)
                .await
                .map_err(query_error(doing))?;
            tracing::info!(version, "Migrated the metadata store.");
        }
        tx.commit().await.map_err(query_error(doing))
    }
}

//! The SQLite engine: trigger-based change tracking in the database itself,
//! with a commit-ordered counter as the version (SQLite serialises writers).

mod apply;
mod bulk;
mod changes;
pub mod dialect;
mod errors;
mod introspect;
mod scope;
pub mod tracking;
mod values;

use std::borrow::Cow;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hubsync_core::{
    ApplyBatch, ApplyOutcome, BulkItem, BulkTarget, Endpoint, EndpointError, OriginFilter, ReadRequest, SessionRecord,
    TableName, TableSchema, Version, Watermarks,
};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{AssertSqlSafe, SqlitePool};
use tokio::sync::mpsc;

pub use dialect::quote_ident;
pub use tracking::TrackingNames;

use errors::ctx;
use values::SqliteQuery;

/// Connections per file database: SQLite has one writer at a time, so more
/// only help concurrent readers.
const MAX_CONNECTIONS: u32 = 4;

/// How long a connection waits for another writer's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// A query on dynamically built SQL. Every caller builds its SQL from
/// constants and identifiers passed through [`quote_ident`]; values are
/// always bound, never spliced.
pub(crate) fn query(sql: impl Into<Cow<'static, str>>) -> SqliteQuery<'static> {
    sqlx::query(AssertSqlSafe(sql.into()))
}

/// [`query`] on shared SQL text, for statements executed many times.
pub(crate) fn query_shared(sql: &Arc<str>) -> SqliteQuery<'static> {
    sqlx::query(AssertSqlSafe(Arc::clone(sql)))
}

/// A SQLite database taking part in sync.
#[derive(Debug, Clone)]
pub struct SqliteEndpoint {
    pool: SqlitePool,
    label: String,
    /// The database file, absolute; `None` in memory.
    path: Option<std::path::PathBuf>,
}

impl SqliteEndpoint {
    /// Opens (creating if missing) the database file at `path`, labelled
    /// `label` in messages.
    pub async fn open(path: &Path, label: impl Into<String>) -> Result<Self, EndpointError> {
        let label = label.into();
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal);
        let pool = SqlitePoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .connect_with(common_options(options))
            .await
            .map_err(ctx(format_args!("opening SQLite database `{}`", path.display())))?;
        let path = std::path::absolute(path).ok();
        Ok(SqliteEndpoint { pool, label, path })
    }

    /// Opens a private in-memory database (for tests). It lives as long as the
    /// endpoint and its clones, on a single connection: each SQLite
    /// connection to `:memory:` would otherwise see its own empty database.
    pub async fn open_in_memory() -> Result<Self, EndpointError> {
        let options = SqliteConnectOptions::new().in_memory(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(common_options(options))
            .await
            .map_err(ctx("opening an in-memory SQLite database"))?;
        Ok(SqliteEndpoint { pool, label: "sqlite::memory:".to_string(), path: None })
    }

    /// The connection pool, for callers that need to run their own SQL
    /// (setting up demo data, tests).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Closes the pool, waiting for connections to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn common_options(options: SqliteConnectOptions) -> SqliteConnectOptions {
    use sqlx::ConnectOptions;
    options
        // Bulk reads and backfills are slow by nature; sqlx's slow-statement
        // warnings would only alarm users. hubsync reports progress itself.
        .log_slow_statements(log::LevelFilter::Off, std::time::Duration::from_secs(60))
        .busy_timeout(BUSY_TIMEOUT)
        .foreign_keys(true)
        // The apply staging tables are per-connection scratch space.
        .pragma("temp_store", "MEMORY")
}

impl Endpoint for SqliteEndpoint {
    fn label(&self) -> &str {
        &self.label
    }

    fn engine(&self) -> &'static str {
        "sqlite"
    }

    async fn list_tables(&self) -> Result<Vec<TableName>, EndpointError> {
        introspect::list_tables(&self.pool).await
    }

    async fn introspect(&self, table: &TableName) -> Result<Option<TableSchema>, EndpointError> {
        introspect::introspect(&self.pool, table).await
    }

    async fn create_table(&self, table: &TableSchema) -> Result<(), EndpointError> {
        introspect::create_table(&self.pool, table).await
    }

    async fn provision(&self, table: &TableSchema) -> Result<(), EndpointError> {
        tracking::provision(&self.pool, table).await
    }

    /// This engine records every received change, so a hub needs nothing more.
    async fn provision_as_hub(&self, table: &TableSchema) -> Result<(), EndpointError> {
        self.provision(table).await
    }

    async fn is_provisioned(&self, table: &TableName) -> Result<bool, EndpointError> {
        dialect::check_schema(table)?;
        let mut conn =
            self.pool.acquire().await.map_err(ctx(format_args!("checking whether `{table}` is provisioned")))?;
        tracking::object_exists(&mut conn, &TrackingNames::for_table(table).table).await
    }

    async fn deprovision(&self, tables: &[TableName]) -> Result<Vec<String>, EndpointError> {
        tracking::deprovision(&self.pool, tables).await
    }

    async fn snapshot_version(&self) -> Result<Version, EndpointError> {
        scope::snapshot_version(&self.pool).await
    }

    async fn watermarks(&self, scope: &str, peer: &str, table: &TableName) -> Result<Watermarks, EndpointError> {
        scope::watermarks(&self.pool, scope, peer, table).await
    }

    async fn read_changes(&self, request: ReadRequest<'_>) -> Result<Vec<hubsync_core::Change>, EndpointError> {
        changes::read_changes(&self.pool, request).await
    }

    async fn apply_changes(&self, batch: ApplyBatch<'_>) -> Result<ApplyOutcome, EndpointError> {
        apply::apply_changes(&self.pool, batch).await
    }

    async fn count_changes(
        &self,
        table: &TableSchema,
        after: Watermarks,
        origin: &OriginFilter,
    ) -> Result<u64, EndpointError> {
        changes::count_changes(&self.pool, table, after, origin).await
    }

    async fn is_empty(&self, table: &TableName) -> Result<bool, EndpointError> {
        let sql = format!("SELECT 1 FROM {} LIMIT 1", dialect::qualified(table)?);
        let row = query(sql)
            .fetch_optional(&self.pool)
            .await
            .map_err(ctx(format_args!("checking whether `{table}` is empty")))?;
        Ok(row.is_none())
    }

    async fn bulk_read(
        &self,
        table: &TableSchema,
        batch_rows: usize,
        tx: mpsc::Sender<BulkItem>,
    ) -> Result<u64, EndpointError> {
        bulk::bulk_read(&self.pool, table, batch_rows, tx).await
    }

    fn direct_source(&self) -> Option<String> {
        self.path.as_ref().map(|p| format!("{}{}", bulk::DIRECT_PREFIX, p.display()))
    }

    async fn bulk_copy_direct(&self, source: &str, target: BulkTarget<'_>) -> Result<Option<u64>, EndpointError> {
        match source.strip_prefix(bulk::DIRECT_PREFIX) {
            Some(path) => bulk::copy_direct(&self.pool, Path::new(path), target).await.map(Some),
            None => Ok(None),
        }
    }

    async fn bulk_load(&self, target: BulkTarget<'_>, rx: mpsc::Receiver<BulkItem>) -> Result<u64, EndpointError> {
        bulk::bulk_load(&self.pool, target, rx).await
    }

    async fn record_session(&self, scope: &str, peer: &str, record: &SessionRecord) -> Result<(), EndpointError> {
        scope::record_session(&self.pool, scope, peer, record).await
    }

    async fn session_record(&self, scope: &str, peer: &str) -> Result<Option<SessionRecord>, EndpointError> {
        scope::session_record(&self.pool, scope, peer).await
    }
}

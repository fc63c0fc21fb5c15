//! The MySQL/MariaDB engine: trigger-based change tracking in the database
//! itself. Versions come from an AUTO_INCREMENT sequence whose rows stay
//! uncommitted with their writers, and the snapshot version stops below the
//! oldest one still in flight (gap detection, see `versions.rs` and
//! docs/mysql-versions.md for the choice and its measured cost).

mod apply;
pub mod bench;
mod bulk;
mod changes;
pub mod dialect;
mod errors;
mod introspect;
mod scope;
pub mod tracking;
mod values;
mod versions;

use std::borrow::Cow;
use std::str::FromStr;
use std::time::Duration;

use hubsync_core::{
    ApplyBatch, ApplyOutcome, BulkItem, BulkTarget, Change, Endpoint, EndpointError, ErrorKind, OriginFilter,
    ReadRequest, SessionRecord, TableName, TableSchema, Version, Watermarks,
};
use sqlx::mysql::{MySqlConnectOptions, MySqlPoolOptions};
use sqlx::{AssertSqlSafe, MySqlPool};
use tokio::sync::mpsc;

pub use dialect::quote_ident;
pub use tracking::TrackingNames;

use errors::{connect_error, ctx};
use values::MySqlQuery;

/// Connections per endpoint: enough for the session's overlapping reads and
/// applies on a few tables at once.
const MAX_CONNECTIONS: u32 = 4;

/// How long opening an endpoint waits for the server.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// How long an operation waits for a free connection.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(60);

/// A prepared query on dynamically built SQL. Every caller builds its SQL
/// from constants and identifiers passed through [`quote_ident`]; values are
/// always bound, never spliced.
pub(crate) fn query(sql: impl Into<Cow<'static, str>>) -> MySqlQuery<'static> {
    sqlx::query(AssertSqlSafe(sql.into()))
}

/// A DDL statement, sent as plain text: MySQL cannot prepare every DDL
/// statement, and DDL gains nothing from the statement cache.
pub(crate) fn ddl(sql: impl Into<Cow<'static, str>>) -> sqlx::RawSql {
    sqlx::raw_sql(AssertSqlSafe(sql.into()))
}

/// A MySQL/MariaDB database taking part in sync.
#[derive(Debug, Clone)]
pub struct MySqlEndpoint {
    pool: MySqlPool,
    label: String,
    /// The URL's database: where the shared hubsync tables live, and the
    /// database of every unqualified table.
    database: String,
    /// Version gaps seen, to tell rollbacks from allocations in flight.
    gaps: versions::Gaps,
    /// `user@host:port`: endpoints on the same server (as the same user)
    /// copy between their databases inside the server.
    server: String,
}

impl MySqlEndpoint {
    /// Opens a pool on the server a URL names (`mysql://` or `mariadb://`,
    /// which must name a database), labelled `label` in messages. Sessions
    /// use UTC and utf8mb4.
    pub async fn open(url: &str, label: String) -> Result<Self, EndpointError> {
        let normalized = match url.strip_prefix("mariadb://") {
            Some(rest) => format!("mysql://{rest}"),
            None => url.to_string(),
        };
        let options = MySqlConnectOptions::from_str(&normalized).map_err(|e| connect_error(e, &label, ""))?;
        let Some(database) = options.get_database().map(str::to_string) else {
            return Err(EndpointError::new(ErrorKind::ConnectionFailed, format!("`{label}` names no database"))
                .with_hint("add the database to the URL: mysql://user@host/database"));
        };
        let server = format!("{}@{}:{}", options.get_username(), options.get_host(), options.get_port());
        let options = {
            use sqlx::ConnectOptions;
            options
                .charset("utf8mb4")
                .timezone(Some("+00:00".to_string()))
                // Bulk reads and backfills are slow by nature; hubsync reports progress itself.
                .log_slow_statements(log::LevelFilter::Off, Duration::from_secs(60))
        };
        // One direct connection first: a pool retries a refused connection
        // until its acquire timeout, while a bad URL should fail at once.
        let probe =
            tokio::time::timeout(CONNECT_TIMEOUT, <sqlx::MySqlConnection as sqlx::Connection>::connect_with(&options))
                .await;
        match probe {
            Ok(Ok(conn)) => {
                let _ = sqlx::Connection::close(conn).await;
            }
            Ok(Err(e)) => return Err(connect_error(e, &label, &database)),
            Err(_) => return Err(connect_error(sqlx::Error::PoolTimedOut, &label, &database)),
        }
        let pool = MySqlPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(|e| connect_error(e, &label, &database))?;
        Ok(MySqlEndpoint { pool, label, database, gaps: versions::Gaps::default(), server })
    }

    /// The connection pool, for tools and tests that run their own SQL.
    pub fn pool(&self) -> &MySqlPool {
        &self.pool
    }

    /// The URL's database.
    pub fn database(&self) -> &str {
        &self.database
    }
}

impl Endpoint for MySqlEndpoint {
    fn label(&self) -> &str {
        &self.label
    }

    fn engine(&self) -> &'static str {
        "mysql"
    }

    async fn list_tables(&self) -> Result<Vec<TableName>, EndpointError> {
        introspect::list_tables(&self.pool, &self.database).await
    }

    async fn introspect(&self, table: &TableName) -> Result<Option<TableSchema>, EndpointError> {
        introspect::introspect(&self.pool, &self.database, table).await
    }

    async fn create_table(&self, table: &TableSchema) -> Result<(), EndpointError> {
        introspect::create_table(&self.pool, &self.database, table).await
    }

    async fn provision(&self, table: &TableSchema) -> Result<(), EndpointError> {
        tracking::provision(&self.pool, &self.database, table).await
    }

    /// This engine records every received change, so a hub needs nothing more.
    async fn provision_as_hub(&self, table: &TableSchema) -> Result<(), EndpointError> {
        self.provision(table).await
    }

    async fn is_provisioned(&self, table: &TableName) -> Result<bool, EndpointError> {
        tracking::is_provisioned(&self.pool, &self.database, table).await
    }

    async fn deprovision(&self, tables: &[TableName]) -> Result<Vec<String>, EndpointError> {
        tracking::deprovision(&self.pool, &self.database, tables).await
    }

    async fn snapshot_version(&self) -> Result<Version, EndpointError> {
        versions::snapshot_version(&self.pool, &self.database, &self.gaps).await
    }

    async fn watermarks(&self, scope: &str, peer: &str, table: &TableName) -> Result<Watermarks, EndpointError> {
        scope::watermarks(&self.pool, &self.database, scope, peer, table).await
    }

    async fn read_changes(&self, request: ReadRequest<'_>) -> Result<Vec<Change>, EndpointError> {
        changes::read_changes(&self.pool, &self.database, request).await
    }

    async fn apply_changes(&self, batch: ApplyBatch<'_>) -> Result<ApplyOutcome, EndpointError> {
        apply::apply_changes(&self.pool, &self.database, batch).await
    }

    async fn count_changes(
        &self,
        table: &TableSchema,
        after: Watermarks,
        origin: &OriginFilter,
    ) -> Result<u64, EndpointError> {
        changes::count_changes(&self.pool, &self.database, table, after, origin).await
    }

    async fn is_empty(&self, table: &TableName) -> Result<bool, EndpointError> {
        let sql = format!("SELECT 1 FROM {} LIMIT 1", dialect::qualified(table, &self.database));
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
        bulk::bulk_read(&self.pool, &self.database, &self.gaps, table, batch_rows, tx).await
    }

    fn direct_source(&self) -> Option<String> {
        Some(format!("{}{}/{}", bulk::DIRECT_PREFIX, self.server, self.database))
    }

    async fn bulk_copy_direct(&self, source: &str, target: BulkTarget<'_>) -> Result<Option<u64>, EndpointError> {
        let located = source.strip_prefix(bulk::DIRECT_PREFIX).and_then(|rest| rest.rsplit_once('/'));
        match located {
            Some((server, db))
                if server == self.server && db != self.database && target.table.name.schema.is_none() =>
            {
                bulk::copy_direct(&self.pool, &self.database, db, target).await
            }
            _ => Ok(None),
        }
    }

    async fn bulk_load(&self, target: BulkTarget<'_>, rx: mpsc::Receiver<BulkItem>) -> Result<u64, EndpointError> {
        bulk::bulk_load(&self.pool, &self.database, target, rx).await
    }

    async fn record_session(&self, scope: &str, peer: &str, record: &SessionRecord) -> Result<(), EndpointError> {
        scope::record_session(&self.pool, &self.database, scope, peer, record).await
    }

    async fn session_record(&self, scope: &str, peer: &str) -> Result<Option<SessionRecord>, EndpointError> {
        scope::session_record(&self.pool, &self.database, scope, peer).await
    }
}

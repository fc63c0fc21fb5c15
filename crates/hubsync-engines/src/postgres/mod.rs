//! The PostgreSQL engine: statement-level triggers with transition tables
//! record changes in tracking tables of a dedicated `hubsync` schema, with the
//! writing transaction's id as the version and the snapshot's xmin bounding
//! what a reader may take (see DESIGN.md, "The version must be commit-safe").

mod apply;
mod bulk;
mod changes;
mod cursor;
pub mod dialect;
mod errors;
mod introspect;
mod scope;
pub mod tracking;
mod values;

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use hubsync_core::{
    ApplyBatch, ApplyOutcome, BulkItem, BulkTarget, Change, Endpoint, EndpointError, Held, OriginFilter, ReadRequest,
    SessionRecord, TableName, TableSchema, Version, Watermarks,
};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, ConnectOptions, PgConnection, PgPool};
use tokio::sync::mpsc;

pub use dialect::quote_ident;
pub use tracking::TrackingNames;

use errors::{ctx, open_failed};
use values::PgQuery;

/// Connections per endpoint: a session uses a few at once (reading ahead
/// while applying, parallel members on the hub).
const MAX_CONNECTIONS: u32 = 4;

/// How long to wait for a pooled connection before reporting the database busy.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

/// A query on dynamically built SQL. Every caller builds its SQL from
/// constants and identifiers passed through [`quote_ident`]; values are
/// always bound, never spliced.
pub(crate) fn query(sql: impl Into<Cow<'static, str>>) -> PgQuery<'static> {
    sqlx::query(AssertSqlSafe(sql.into()))
}

/// The session settings every hubsync connection runs with: UTC and ISO
/// dates make the text forms of dates and timestamps canonical.
pub(crate) fn session_options(options: PgConnectOptions) -> PgConnectOptions {
    options
        .options([("TimeZone", "UTC"), ("DateStyle", "ISO, YMD"), ("IntervalStyle", "iso_8601")])
        // Bulk reads and backfills are slow by nature; sqlx's slow-statement
        // warnings would only alarm users. hubsync reports progress itself.
        .log_slow_statements(log::LevelFilter::Off, Duration::from_secs(60))
        .log_statements(log::LevelFilter::Trace)
}

/// A PostgreSQL database taking part in sync.
#[derive(Debug, Clone)]
pub struct PgEndpoint {
    pool: PgPool,
    label: String,
    url: String,
    /// Change reads kept open between batches, shared by clones.
    cursors: Arc<cursor::Cursors>,
}

/// Opens one connection, waiting while the server is full (`too many
/// clients`, SQLSTATE 53300) or starting up (57P03), as the pool does for
/// its own connections, up to [`ACQUIRE_TIMEOUT`]; any other failure at once.
pub(crate) async fn connect_patiently(options: &PgConnectOptions, label: &str) -> Result<PgConnection, EndpointError> {
    let deadline = tokio::time::Instant::now() + ACQUIRE_TIMEOUT;
    let mut pause = Duration::from_millis(50);
    loop {
        match options.connect().await {
            Ok(conn) => return Ok(conn),
            Err(sqlx::Error::Database(db))
                if matches!(db.code().as_deref(), Some("53300" | "57P03"))
                    && tokio::time::Instant::now() + pause < deadline =>
            {
                tracing::debug!(database = label, error = %db, "PostgreSQL refused a connection for now; retrying.");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
            }
            Err(e) => return Err(open_failed(e, label)),
        }
    }
}

impl PgEndpoint {
    /// Opens a pool on the server a URL names, labelled `label` in messages.
    /// Connects once at once, so a wrong URL fails here with
    /// [`hubsync_core::ErrorKind::ConnectionFailed`].
    pub async fn open(url: &str, label: String) -> Result<Self, EndpointError> {
        let options = session_options(url.parse().map_err(|e| open_failed(e, &label))?);
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_lazy_with(options.clone());
        let endpoint = PgEndpoint { pool, label, url: url.to_string(), cursors: Arc::default() };
        // One plain connection first: the pool would retry a refused
        // connection until its acquire timeout; a wrong URL should fail now.
        // The pool's first connection opens beside it, not after it.
        let warming = tokio::spawn({
            let endpoint = endpoint.clone();
            async move { endpoint.warm(1).await }
        });
        match connect_patiently(&options, &endpoint.label).await {
            Ok(probe) => {
                let _ = sqlx::Connection::close(probe).await;
                Ok(endpoint)
            }
            Err(e) => {
                warming.abort();
                endpoint.pool.close().await;
                Err(e)
            }
        }
    }

    /// Opens up to `connections` pooled connections at once and leaves them
    /// idle in the pool, so the statements that need them later do not wait
    /// for connection setup one after the other. A new TLS connection costs
    /// about 90 ms even on loopback with sqlx 0.9.0, which leaves Nagle's
    /// algorithm on (transact-rs/sqlx#4335, fixed upstream after 0.9.0):
    /// the handshake's small writes wait for delayed acknowledgements.
    /// Connections that cannot be opened are left for later statements to
    /// report.
    pub async fn warm(&self, connections: u32) {
        let wanted = connections.min(MAX_CONNECTIONS) as usize;
        let opened = futures::future::join_all((0..wanted).map(|_| self.pool.acquire())).await;
        drop(opened);
    }

    /// The connection pool, for callers that need to run their own SQL
    /// (setting up demo data, tests).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Closes the pool, waiting for connections to be returned.
    pub async fn close(&self) {
        self.cursors.clear();
        self.pool.close().await;
    }
}

impl Endpoint for PgEndpoint {
    fn label(&self) -> &str {
        &self.label
    }

    fn engine(&self) -> &'static str {
        "postgres"
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
        // Provisioning may alter tracking tables: this endpoint's own open
        // reads (a failed session's) must not hold their locks meanwhile.
        self.cursors.clear();
        tracking::provision(&self.pool, table, false).await
    }

    async fn provision_as_hub(&self, table: &TableSchema) -> Result<(), EndpointError> {
        self.cursors.clear();
        tracking::provision(&self.pool, table, true).await
    }

    async fn is_provisioned(&self, table: &TableName) -> Result<bool, EndpointError> {
        let mut conn =
            self.pool.acquire().await.map_err(ctx(format_args!("checking whether `{table}` is provisioned")))?;
        tracking::hubsync_table_exists(&mut conn, &TrackingNames::for_table(table).table).await
    }

    async fn deprovision(&self, tables: &[TableName]) -> Result<Vec<String>, EndpointError> {
        self.cursors.clear();
        tracking::deprovision(&self.pool, tables).await
    }

    async fn snapshot_version(&self) -> Result<Version, EndpointError> {
        scope::snapshot_version(&self.pool).await
    }

    async fn watermarks(&self, scope: &str, peer: &str, table: &TableName) -> Result<Watermarks, EndpointError> {
        scope::watermarks(&self.pool, scope, peer, table).await
    }

    async fn read_changes(&self, request: ReadRequest<'_>) -> Result<Vec<Change>, EndpointError> {
        changes::read_changes(&self.pool, &self.cursors, request).await
    }

    async fn apply_changes(&self, batch: ApplyBatch<'_>) -> Result<ApplyOutcome, EndpointError> {
        apply::apply_changes(&self.pool, batch).await
    }

    fn holds_applies(&self) -> bool {
        true
    }

    async fn apply_changes_held(&self, batch: ApplyBatch<'_>) -> Result<Held, EndpointError> {
        apply::apply_held(&self.pool, batch).await
    }

    async fn count_changes(
        &self,
        table: &TableSchema,
        after: Watermarks,
        origin: &OriginFilter,
    ) -> Result<u64, EndpointError> {
        changes::count_changes(&self.pool, &self.cursors, table, after, origin).await
    }

    async fn is_empty(&self, table: &TableName) -> Result<bool, EndpointError> {
        let sql = format!("SELECT 1 FROM {} LIMIT 1", dialect::qualified(table));
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

    async fn bulk_load(&self, target: BulkTarget<'_>, rx: mpsc::Receiver<BulkItem>) -> Result<u64, EndpointError> {
        bulk::bulk_load(&self.pool, target, rx).await
    }

    fn versions_are_per_transaction(&self) -> bool {
        true
    }

    fn direct_source(&self) -> Option<String> {
        Some(self.url.clone())
    }

    async fn bulk_copy_direct(&self, source: &str, target: BulkTarget<'_>) -> Result<Option<u64>, EndpointError> {
        if !bulk::is_pg_url(source) {
            return Ok(None);
        }
        bulk::copy_direct(&self.pool, source, target).await.map(Some)
    }

    async fn compact(&self) -> Result<u64, EndpointError> {
        tracking::fold_all(&self.pool).await
    }

    async fn record_session(&self, scope: &str, peer: &str, record: &SessionRecord) -> Result<(), EndpointError> {
        scope::record_session(&self.pool, scope, peer, record).await
    }

    async fn session_record(&self, scope: &str, peer: &str) -> Result<Option<SessionRecord>, EndpointError> {
        scope::session_record(&self.pool, scope, peer).await
    }
}

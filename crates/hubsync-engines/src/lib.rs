//! Database engines for hubsync. Each engine implements
//! [`hubsync_core::Endpoint`] in its own module (`sqlite`, `postgres`,
//! `mysql`); [`AnyEndpoint`] picks one at run time from a connection URL.

use std::path::Path;

use hubsync_core::{
    ApplyBatch, ApplyOutcome, BulkItem, BulkTarget, Change, Endpoint, EndpointError, ErrorKind, Held, OriginFilter,
    ReadRequest, SessionRecord, TableName, TableSchema, Version, Watermarks,
};
use tokio::sync::mpsc;

pub mod mysql;
mod naming;
pub mod postgres;
pub mod sqlite;

pub use mysql::MySqlEndpoint;
pub use postgres::PgEndpoint;
pub use sqlite::SqliteEndpoint;

/// An endpoint of any supported engine, chosen from a URL by [`connect`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum AnyEndpoint {
    /// A SQLite database.
    Sqlite(SqliteEndpoint),
    /// A PostgreSQL database.
    Postgres(PgEndpoint),
    /// A MySQL or MariaDB database.
    MySql(MySqlEndpoint),
}

/// Opens the database a URL names. `sqlite://path` (or `sqlite:path`) opens a
/// SQLite file, creating it if missing; a relative path is taken relative to
/// `base_dir` (the config file's directory). `sqlite::memory:` opens a private
/// in-memory database. `postgres://` (or `postgresql://`) and `mysql://` (or
/// `mariadb://`) URLs open a pool on that server.
pub async fn connect(url: &str, base_dir: &Path) -> Result<AnyEndpoint, EndpointError> {
    let label = redact_url(url);
    if url == "sqlite::memory:" || url == "sqlite://:memory:" {
        return Ok(AnyEndpoint::Sqlite(SqliteEndpoint::open_in_memory().await?));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(AnyEndpoint::Postgres(PgEndpoint::open(url, label).await?));
    }
    if url.starts_with("mysql://") || url.starts_with("mariadb://") {
        return Ok(AnyEndpoint::MySql(MySqlEndpoint::open(url, label).await?));
    }
    let Some(rest) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) else {
        let scheme = url.split_once(':').map_or(url, |(s, _)| s);
        return Err(EndpointError::new(
            ErrorKind::ConnectionFailed,
            format!("`{label}`: unsupported database URL scheme `{scheme}`"),
        )
        .with_hint("use sqlite://path/to/file.db, postgres://user@host/db or mysql://user@host/db"));
    };
    if rest.is_empty() {
        return Err(EndpointError::new(ErrorKind::ConnectionFailed, format!("`{label}` names no database file"))
            .with_hint("write sqlite://path/to/file.db"));
    }
    let path = Path::new(rest);
    let path = if path.is_absolute() { path.to_path_buf() } else { base_dir.join(path) };
    Ok(AnyEndpoint::Sqlite(SqliteEndpoint::open(&path, label).await?))
}

/// A URL fit for messages and logs: the password of `scheme://user:password@host`
/// and any `password=` parameter are replaced by `***`.
pub fn redact_url(url: &str) -> String {
    let out = match url.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            let (authority, tail) = rest.split_at(authority_end);
            match authority.rsplit_once('@') {
                Some((userinfo, host)) => {
                    let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
                    let masked = if userinfo.contains(':') { format!("{user}:***") } else { user.to_string() };
                    format!("{scheme}://{masked}@{host}{tail}")
                }
                None => url.to_string(),
            }
        }
        None => url.to_string(),
    };
    // Query parameters and key=value strings: password=..., up to the next separator.
    let lower = out.to_ascii_lowercase();
    let mut redacted = String::with_capacity(out.len());
    let mut i = 0;
    while let Some(found) = lower[i..].find("password=") {
        let at = i + found;
        let value_start = at + "password=".len();
        redacted.push_str(&out[i..value_start]);
        let own_key = at == 0 || matches!(lower.as_bytes()[at - 1], b'?' | b'&' | b';' | b' ');
        if own_key {
            redacted.push_str("***");
            i = out[value_start..].find(['&', ';', ' ', '#']).map_or(out.len(), |e| value_start + e);
        } else {
            i = value_start;
        }
    }
    redacted.push_str(&out[i..]);
    redacted
}

/// Calls the same method on whichever engine an [`AnyEndpoint`] holds.
macro_rules! dispatch {
    ($self:expr, $e:ident => $call:expr) => {
        match $self {
            AnyEndpoint::Sqlite($e) => $call,
            AnyEndpoint::Postgres($e) => $call,
            AnyEndpoint::MySql($e) => $call,
        }
    };
}

impl Endpoint for AnyEndpoint {
    fn label(&self) -> &str {
        dispatch!(self, e => e.label())
    }

    fn engine(&self) -> &'static str {
        dispatch!(self, e => e.engine())
    }

    async fn list_tables(&self) -> Result<Vec<TableName>, EndpointError> {
        dispatch!(self, e => e.list_tables().await)
    }

    async fn introspect(&self, table: &TableName) -> Result<Option<TableSchema>, EndpointError> {
        dispatch!(self, e => e.introspect(table).await)
    }

    async fn create_table(&self, table: &TableSchema) -> Result<(), EndpointError> {
        dispatch!(self, e => e.create_table(table).await)
    }

    async fn provision(&self, table: &TableSchema) -> Result<(), EndpointError> {
        dispatch!(self, e => e.provision(table).await)
    }

    async fn provision_as_hub(&self, table: &TableSchema) -> Result<(), EndpointError> {
        dispatch!(self, e => e.provision_as_hub(table).await)
    }

    async fn is_provisioned(&self, table: &TableName) -> Result<bool, EndpointError> {
        dispatch!(self, e => e.is_provisioned(table).await)
    }

    async fn deprovision(&self, tables: &[TableName]) -> Result<Vec<String>, EndpointError> {
        dispatch!(self, e => e.deprovision(tables).await)
    }

    async fn snapshot_version(&self) -> Result<Version, EndpointError> {
        dispatch!(self, e => e.snapshot_version().await)
    }

    async fn watermarks(&self, scope: &str, peer: &str, table: &TableName) -> Result<Watermarks, EndpointError> {
        dispatch!(self, e => e.watermarks(scope, peer, table).await)
    }

    async fn read_changes(&self, request: ReadRequest<'_>) -> Result<Vec<Change>, EndpointError> {
        dispatch!(self, e => e.read_changes(request).await)
    }

    async fn apply_changes(&self, batch: ApplyBatch<'_>) -> Result<ApplyOutcome, EndpointError> {
        dispatch!(self, e => e.apply_changes(batch).await)
    }

    fn holds_applies(&self) -> bool {
        dispatch!(self, e => e.holds_applies())
    }

    async fn apply_changes_held(&self, batch: ApplyBatch<'_>) -> Result<Held, EndpointError> {
        dispatch!(self, e => e.apply_changes_held(batch).await)
    }

    async fn count_changes(
        &self,
        table: &TableSchema,
        after: Watermarks,
        origin: &OriginFilter,
    ) -> Result<u64, EndpointError> {
        dispatch!(self, e => e.count_changes(table, after, origin).await)
    }

    async fn is_empty(&self, table: &TableName) -> Result<bool, EndpointError> {
        dispatch!(self, e => e.is_empty(table).await)
    }

    async fn bulk_read(
        &self,
        table: &TableSchema,
        batch_rows: usize,
        tx: mpsc::Sender<BulkItem>,
    ) -> Result<u64, EndpointError> {
        dispatch!(self, e => e.bulk_read(table, batch_rows, tx).await)
    }

    fn versions_are_per_transaction(&self) -> bool {
        dispatch!(self, e => e.versions_are_per_transaction())
    }

    fn direct_source(&self) -> Option<String> {
        dispatch!(self, e => e.direct_source())
    }

    async fn bulk_copy_direct(&self, source: &str, target: BulkTarget<'_>) -> Result<Option<u64>, EndpointError> {
        dispatch!(self, e => e.bulk_copy_direct(source, target).await)
    }

    async fn bulk_load(&self, target: BulkTarget<'_>, rx: mpsc::Receiver<BulkItem>) -> Result<u64, EndpointError> {
        dispatch!(self, e => e.bulk_load(target, rx).await)
    }

    async fn compact(&self) -> Result<u64, EndpointError> {
        dispatch!(self, e => e.compact().await)
    }

    async fn record_session(&self, scope: &str, peer: &str, record: &SessionRecord) -> Result<(), EndpointError> {
        dispatch!(self, e => e.record_session(scope, peer, record).await)
    }

    async fn session_record(&self, scope: &str, peer: &str) -> Result<Option<SessionRecord>, EndpointError> {
        dispatch!(self, e => e.session_record(scope, peer).await)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact_url("postgres://bob:s3cret@db:5432/app"), "postgres://bob:***@db:5432/app");
        assert_eq!(redact_url("mysql://bob@db/app"), "mysql://bob@db/app");
        assert_eq!(redact_url("postgres://bob:p@ss@db/app"), "postgres://bob:***@db/app");
        assert_eq!(redact_url("sqlite://data/hub.db"), "sqlite://data/hub.db");
        assert_eq!(
            redact_url("postgres://db/app?user=bob&password=x&sslmode=require"),
            "postgres://db/app?user=bob&password=***&sslmode=require"
        );
        assert_eq!(redact_url("host=db password=x user=bob"), "host=db password=*** user=bob");
        assert_eq!(redact_url("sqlite://mypassword=1.db"), "sqlite://mypassword=1.db");
    }

    #[tokio::test]
    async fn connect_resolves_relative_paths_and_rejects_unknown_schemes() {
        let dir = tempfile::tempdir().unwrap();
        let endpoint = connect("sqlite://sub.db", dir.path()).await;
        let endpoint = endpoint.unwrap();
        assert_eq!(endpoint.engine(), "sqlite");
        assert_eq!(endpoint.label(), "sqlite://sub.db");
        assert!(dir.path().join("sub.db").exists());
        assert!(connect("sqlite::memory:", dir.path()).await.is_ok());
        let err = connect("oracle://x", dir.path()).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::ConnectionFailed);
        let err = connect("sqlite://no/such/dir/x.db", dir.path()).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::ConnectionFailed, "{err}");
        assert!(err.hint.is_some());
    }
}

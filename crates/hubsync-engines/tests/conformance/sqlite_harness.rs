//! The SQLite harness: one temporary directory per test, one file per database,
//! rows read back through sqlx with each value's dynamic storage class
//! (`typeof`), so comparisons are exact.

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hubsync_core::Value;
use hubsync_engines::AnyEndpoint;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow};
use sqlx::{AssertSqlSafe, Connection, Row, SqliteConnection};
use tempfile::TempDir;

use crate::harness::{BadUrl, BoxFut, Harness, OpenTx, Role, TableData, TestDb, q, sort_by_key};

/// SQLite databases in a temporary directory.
pub(crate) struct SqliteHarness {
    dir: TempDir,
    counter: AtomicUsize,
}

impl SqliteHarness {
    /// A harness with its own temporary directory; always available.
    pub(crate) async fn start() -> Option<Arc<dyn Harness>> {
        let dir =
            tempfile::Builder::new().prefix("hubsync-conformance-").tempdir().expect("creating a temporary directory");
        Some(Arc::new(SqliteHarness { dir, counter: AtomicUsize::new(0) }))
    }
}

impl Harness for SqliteHarness {
    fn create_db<'a>(&'a self, _role: Role, name: &'a str) -> BoxFut<'a, Box<dyn TestDb>> {
        Box::pin(async move {
            let n = self.counter.fetch_add(1, Ordering::SeqCst);
            let file = format!("{name}-{n}.db");
            let path = self.dir.path().join(&file);
            let url = format!("sqlite://{file}");
            let endpoint = hubsync_engines::connect(&url, self.dir.path())
                .await
                .unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
            // WAL lets a sync read while another connection holds an uncommitted
            // write (the commit-safety scenario); the mode is stored in the file.
            let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
                .expect("sqlite options")
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .busy_timeout(Duration::from_secs(20))
                .foreign_keys(true);
            let pool = SqlitePoolOptions::new()
                .max_connections(2)
                .connect_with(options.clone())
                .await
                .unwrap_or_else(|e| panic!("opening {} for the test: {e}", path.display()));
            Box::new(SqliteDb { url, endpoint, pool, options }) as Box<dyn TestDb>
        })
    }

    fn concurrent_writers(&self) -> bool {
        false
    }

    fn unopenable_urls(&self) -> Vec<BadUrl> {
        let base = self.dir.path().to_path_buf();
        let dir_name = "a-directory-not-a-file";
        std::fs::create_dir_all(base.join(dir_name)).expect("creating a directory");
        vec![
            BadUrl {
                url: "sqlite://no-such-directory/member.db".into(),
                base_dir: base.clone(),
                mentions: "no-such-directory".into(),
                what: "a file inside a directory that does not exist",
            },
            BadUrl {
                url: format!("sqlite://{dir_name}"),
                base_dir: base,
                mentions: dir_name.into(),
                what: "a directory",
            },
        ]
    }

    fn stored_form(&self, value: Value) -> Value {
        match value {
            // SQLite stores a REAL that equals an integer as that integer, so
            // -0.0 reads back as 0.0 from SQLite itself.
            Value::Real(f) if f.to_bits() == (-0.0f64).to_bits() => Value::Real(0.0),
            other => other,
        }
    }
}

struct SqliteDb {
    url: String,
    endpoint: AnyEndpoint,
    pool: SqlitePool,
    options: SqliteConnectOptions,
}

fn bind_all<'q>(
    mut query: sqlx::query::Query<'q, sqlx::Sqlite, <sqlx::Sqlite as sqlx::Database>::Arguments>,
    params: &[Value],
) -> sqlx::query::Query<'q, sqlx::Sqlite, <sqlx::Sqlite as sqlx::Database>::Arguments> {
    for p in params {
        query = match p.clone() {
            Value::Null => query.bind(None::<i64>),
            Value::Integer(i) => query.bind(i),
            Value::Real(f) => query.bind(f),
            Value::Text(s) => query.bind(s),
            Value::Blob(b) => query.bind(b),
        };
    }
    query
}

fn decode(row: &SqliteRow, type_col: usize) -> Value {
    let ty: String = row.try_get(type_col).expect("typeof");
    let i = type_col + 1;
    match ty.as_str() {
        "null" => Value::Null,
        "integer" => Value::Integer(row.try_get_unchecked::<i64, _>(i).expect("integer")),
        "real" => Value::Real(row.try_get_unchecked::<f64, _>(i).expect("real")),
        "text" => Value::Text(row.try_get_unchecked::<String, _>(i).expect("text")),
        "blob" => Value::Blob(row.try_get_unchecked::<Vec<u8>, _>(i).expect("blob")),
        other => panic!("unknown storage class {other}"),
    }
}

impl TestDb for SqliteDb {
    fn url(&self) -> &str {
        &self.url
    }

    fn endpoint(&self) -> &AnyEndpoint {
        &self.endpoint
    }

    fn exec<'a>(&'a self, sql: &'a str) -> BoxFut<'a, u64> {
        Box::pin(async move {
            sqlx::raw_sql(AssertSqlSafe(sql))
                .execute(&self.pool)
                .await
                .unwrap_or_else(|e| panic!("executing on {}: {sql}: {e}", self.url))
                .rows_affected()
        })
    }

    fn try_exec_with<'a>(&'a self, sql: &'a str, params: &'a [Value]) -> BoxFut<'a, Result<u64, String>> {
        Box::pin(async move {
            bind_all(sqlx::query(AssertSqlSafe(sql)), params)
                .execute(&self.pool)
                .await
                .map(|r| r.rows_affected())
                .map_err(|e| e.to_string())
        })
    }

    fn read_table<'a>(&'a self, table: &'a str) -> BoxFut<'a, TableData> {
        Box::pin(async move {
            let info = sqlx::query("SELECT name, pk FROM pragma_table_info(?1) ORDER BY cid")
                .bind(table)
                .fetch_all(&self.pool)
                .await
                .unwrap_or_else(|e| panic!("reading the columns of {table} on {}: {e}", self.url));
            assert!(!info.is_empty(), "table `{table}` does not exist on {}", self.url);
            let columns: Vec<String> = info.iter().map(|r| r.get::<String, _>(0)).collect();
            let mut key: Vec<(i64, usize)> = info
                .iter()
                .enumerate()
                .filter(|(_, r)| r.get::<i64, _>(1) > 0)
                .map(|(i, r)| (r.get::<i64, _>(1), i))
                .collect();
            key.sort();
            let key: Vec<usize> = key.into_iter().map(|(_, i)| i).collect();
            let select: Vec<String> = columns.iter().map(|c| format!("typeof({0}), {0}", q(c))).collect();
            let sql = format!("SELECT {} FROM {}", select.join(", "), q(table));
            let fetched = sqlx::query(AssertSqlSafe(sql))
                .fetch_all(&self.pool)
                .await
                .unwrap_or_else(|e| panic!("reading {table} on {}: {e}", self.url));
            let mut rows: Vec<Vec<Value>> =
                fetched.iter().map(|r| (0..columns.len()).map(|i| decode(r, 2 * i)).collect()).collect();
            sort_by_key(&mut rows, &key);
            TableData { columns, rows }
        })
    }

    fn open_write<'a>(&'a self, sql: &'a str) -> BoxFut<'a, Box<dyn OpenTx>> {
        Box::pin(async move {
            let mut conn = SqliteConnection::connect_with(&self.options).await.expect("a second connection");
            sqlx::raw_sql("BEGIN IMMEDIATE").execute(&mut conn).await.expect("BEGIN IMMEDIATE");
            sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut conn).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
            Box::new(SqliteTx { conn }) as Box<dyn OpenTx>
        })
    }

    fn drop_db(self: Box<Self>) -> BoxFut<'static, ()> {
        Box::pin(async move { self.pool.close().await })
    }
}

struct SqliteTx {
    conn: SqliteConnection,
}

impl OpenTx for SqliteTx {
    fn commit(mut self: Box<Self>) -> BoxFut<'static, ()> {
        Box::pin(async move {
            sqlx::raw_sql("COMMIT").execute(&mut self.conn).await.expect("COMMIT");
            let _ = self.conn.close().await;
        })
    }
}

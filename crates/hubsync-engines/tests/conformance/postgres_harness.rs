//! The PostgreSQL harness: one freshly created database per test database on
//! the server named by `HUBSYNC_TEST_PG_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`, used only to create and drop
//! the test databases), dropped again by `drop_db`. Portable SQL is rewritten
//! to PostgreSQL's dialect; rows are read back in hubsync's canonical forms.

use std::sync::{Arc, LazyLock};

use hubsync_core::Value;
use hubsync_engines::AnyEndpoint;
use sqlx::postgres::PgArguments;
use sqlx::{AssertSqlSafe, Connection, PgConnection, PgPool, Postgres, Row};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::harness::{BadUrl, BoxFut, Harness, OpenTx, Role, TableData, TestDb, sort_by_key};
use crate::pg_service::{create_database, db_url, drop_database, server_unavailable};

/// PostgreSQL databases on one server.
pub(crate) struct PgHarness {
    /// This test's place among those that may use the server at once (see
    /// [`TESTS_AT_ONCE`]), given back when the test drops its harness.
    _slot: OwnedSemaphorePermit,
}

/// PostgreSQL tests (plain and mixed) that run at once. Each test database
/// keeps up to five connections open while its test runs (its endpoint's
/// pool of four, and one for the test's own statements), and a test has up to
/// four databases: six tests at once (`RUST_TEST_THREADS` in CI) held up to
/// 90 of the server's default 100 slots, and syncs failed waiting for a
/// connection. Four tests stay within about 80 even at their largest.
const TESTS_AT_ONCE: usize = 4;

/// The places [`TESTS_AT_ONCE`] counts, shared by every test of the binary
/// (a semaphore needs no runtime, and every test has its own).
static SLOTS: LazyLock<Arc<Semaphore>> = LazyLock::new(|| Arc::new(Semaphore::new(TESTS_AT_ONCE)));

impl PgHarness {
    /// A harness on the test server, once one of [`TESTS_AT_ONCE`] places is
    /// free; `None` when the server is unreachable and not required
    /// ([`server_unavailable`] has said so loudly).
    pub(crate) async fn start() -> Option<Arc<dyn Harness>> {
        let slot = SLOTS.clone().acquire_owned().await.expect("the semaphore is never closed");
        match server_unavailable().await {
            None => Some(Arc::new(PgHarness { _slot: slot })),
            Some(_) => None,
        }
    }
}

/// Creates a fresh database for a test (for this harness and mixed ones).
pub(crate) async fn create_pg_db(name: &str) -> Box<dyn TestDb> {
    let (db, url) = create_database(name).await;
    let endpoint = hubsync_engines::connect(&url, std::path::Path::new("."))
        .await
        .unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(3)
        .connect(&url)
        .await
        .unwrap_or_else(|e| panic!("opening {url} for the test: {e}"));
    Box::new(PgDb { db, url, endpoint, pool })
}

impl Harness for PgHarness {
    fn create_db<'a>(&'a self, _role: Role, name: &'a str) -> BoxFut<'a, Box<dyn TestDb>> {
        Box::pin(create_pg_db(name))
    }

    fn concurrent_writers(&self) -> bool {
        true
    }

    fn unopenable_urls(&self) -> Vec<BadUrl> {
        let base = std::env::temp_dir();
        vec![
            BadUrl {
                url: db_url("hubsync_no_such_database"),
                base_dir: base.clone(),
                mentions: "hubsync_no_such_database".into(),
                what: "a database that does not exist",
            },
            BadUrl {
                url: "postgres://postgres@127.0.0.1:1/test".into(),
                base_dir: base,
                mentions: "127.0.0.1:1".into(),
                what: "a port with nothing listening",
            },
        ]
    }
}

/// Rewrites the portable dialect for PostgreSQL: `?` become `$n` (or a NULL
/// literal for NULL parameters, whose type PostgreSQL could not infer), and
/// the portable type names become PostgreSQL's. Quoted text is left alone.
pub(crate) fn to_pg(sql: &str, params: &[Value]) -> (String, Vec<Value>) {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut bound = Vec::new();
    let mut next_param = 0;
    let chars: Vec<char> = sql.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' || c == '"' {
            out.push(c);
            i += 1;
            while i < chars.len() {
                out.push(chars[i]);
                if chars[i] == c {
                    if i + 1 < chars.len() && chars[i + 1] == c {
                        out.push(c);
                        i += 2;
                        continue;
                    }
                    i += 1;
                    break;
                }
                i += 1;
            }
            continue;
        }
        if c == '?' {
            let value = params.get(next_param).cloned().unwrap_or(Value::Null);
            next_param += 1;
            if value == Value::Null {
                out.push_str("NULL");
            } else {
                bound.push(value);
                out.push_str(&format!("${}", bound.len()));
            }
            i += 1;
            continue;
        }
        if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            match word.to_ascii_uppercase().as_str() {
                "INTEGER" => out.push_str("BIGINT"),
                "REAL" => out.push_str("DOUBLE PRECISION"),
                "BLOB" => out.push_str("BYTEA"),
                _ => out.push_str(&word),
            }
            continue;
        }
        out.push(c);
        i += 1;
    }
    (out, bound)
}

type PgQuery<'q> = sqlx::query::Query<'q, Postgres, PgArguments>;

fn bind_all(mut query: PgQuery<'_>, params: Vec<Value>) -> PgQuery<'_> {
    for p in params {
        query = match p {
            Value::Null => query.bind(None::<i64>),
            Value::Integer(i) => query.bind(i),
            Value::Real(f) => query.bind(f),
            Value::Text(s) => query.bind(s),
            Value::Blob(b) => query.bind(b),
        };
    }
    query
}

struct PgDb {
    db: String,
    url: String,
    endpoint: AnyEndpoint,
    pool: PgPool,
}

fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

impl TestDb for PgDb {
    fn url(&self) -> &str {
        &self.url
    }

    fn endpoint(&self) -> &AnyEndpoint {
        &self.endpoint
    }

    fn exec<'a>(&'a self, sql: &'a str) -> BoxFut<'a, u64> {
        Box::pin(async move {
            let (pg, _) = to_pg(sql, &[]);
            sqlx::raw_sql(AssertSqlSafe(pg.clone()))
                .execute(&self.pool)
                .await
                .unwrap_or_else(|e| panic!("executing on {}: {pg}: {e}", self.url))
                .rows_affected()
        })
    }

    fn try_exec_with<'a>(&'a self, sql: &'a str, params: &'a [Value]) -> BoxFut<'a, Result<u64, String>> {
        Box::pin(async move {
            let (pg, bound) = to_pg(sql, params);
            bind_all(sqlx::query(AssertSqlSafe(pg.clone())), bound)
                .execute(&self.pool)
                .await
                .map(|r| r.rows_affected())
                .map_err(|e| format!("{pg}: {e}"))
        })
    }

    fn read_table<'a>(&'a self, table: &'a str) -> BoxFut<'a, TableData> {
        Box::pin(async move {
            let info = sqlx::query(
                "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), \
                 coalesce((SELECT k.ord FROM unnest(i.indkey) WITH ORDINALITY AS k(n, ord) WHERE k.n = a.attnum), 0)::int8 \
                 FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary \
                 WHERE n.nspname = 'public' AND c.relname = $1 AND a.attnum > 0 AND NOT a.attisdropped \
                 ORDER BY a.attnum",
            )
            .bind(table)
            .fetch_all(&self.pool)
            .await
            .unwrap_or_else(|e| panic!("reading the columns of {table} on {}: {e}", self.url));
            assert!(!info.is_empty(), "table `{table}` does not exist on {}", self.url);
            let columns: Vec<String> = info.iter().map(|r| r.get::<String, _>(0)).collect();
            let types: Vec<String> = info.iter().map(|r| r.get::<String, _>(1)).collect();
            let mut key: Vec<(i64, usize)> = info
                .iter()
                .enumerate()
                .filter(|(_, r)| r.get::<i64, _>(2) > 0)
                .map(|(i, r)| (r.get::<i64, _>(2), i))
                .collect();
            key.sort();
            let key: Vec<usize> = key.into_iter().map(|(_, i)| i).collect();
            let select: Vec<String> = columns
                .iter()
                .zip(&types)
                .map(|(c, t)| match t.as_str() {
                    "bigint" | "integer" | "smallint" => format!("{}::int8", quote(c)),
                    "boolean" => format!("{}::int4::int8", quote(c)),
                    "double precision" | "real" => format!("{}::float8", quote(c)),
                    "bytea" => quote(c),
                    "timestamp with time zone" => format!("({} AT TIME ZONE 'UTC')::text || '+00:00'", quote(c)),
                    _ => format!("{}::text", quote(c)),
                })
                .collect();
            let sql = format!("SELECT {} FROM public.{}", select.join(", "), quote(table));
            let mut conn = self.pool.acquire().await.expect("a connection");
            sqlx::raw_sql("SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'").execute(&mut *conn).await.expect("SET");
            let fetched = sqlx::query(AssertSqlSafe(sql))
                .fetch_all(&mut *conn)
                .await
                .unwrap_or_else(|e| panic!("reading {table} on {}: {e}", self.url));
            let mut rows: Vec<Vec<Value>> = fetched
                .iter()
                .map(|r| {
                    types
                        .iter()
                        .enumerate()
                        .map(|(i, t)| match t.as_str() {
                            "bigint" | "integer" | "smallint" | "boolean" => r.get::<Option<i64>, _>(i).into(),
                            "double precision" | "real" => r.get::<Option<f64>, _>(i).into(),
                            "bytea" => r.get::<Option<Vec<u8>>, _>(i).into(),
                            _ => r.get::<Option<String>, _>(i).into(),
                        })
                        .collect()
                })
                .collect();
            sort_by_key(&mut rows, &key);
            TableData { columns, rows }
        })
    }

    fn open_write<'a>(&'a self, sql: &'a str) -> BoxFut<'a, Box<dyn OpenTx>> {
        Box::pin(async move {
            let mut conn = PgConnection::connect(&self.url).await.expect("a second connection");
            sqlx::raw_sql("BEGIN").execute(&mut conn).await.expect("BEGIN");
            let (pg, _) = to_pg(sql, &[]);
            sqlx::raw_sql(AssertSqlSafe(pg.clone())).execute(&mut conn).await.unwrap_or_else(|e| panic!("{pg}: {e}"));
            Box::new(PgTx { conn }) as Box<dyn OpenTx>
        })
    }

    fn drop_db(self: Box<Self>) -> BoxFut<'static, ()> {
        Box::pin(async move {
            if let AnyEndpoint::Postgres(pg) = &self.endpoint {
                pg.close().await;
            }
            self.pool.close().await;
            drop_database(&self.db).await;
        })
    }
}

struct PgTx {
    conn: PgConnection,
}

impl OpenTx for PgTx {
    fn commit(mut self: Box<Self>) -> BoxFut<'static, ()> {
        Box::pin(async move {
            sqlx::raw_sql("COMMIT").execute(&mut self.conn).await.expect("COMMIT");
            let _ = self.conn.close().await;
        })
    }
}

#[test]
fn portable_sql_is_rewritten_outside_quotes() {
    let (sql, bound) = to_pg(
        r#"CREATE TABLE "REAL" ("a" INTEGER, 'BLOB ?' BLOB, x real) VALUES (?, ?, ?)"#,
        &[Value::Integer(1), Value::Null, Value::Text("?".into())],
    );
    assert_eq!(sql, r#"CREATE TABLE "REAL" ("a" BIGINT, 'BLOB ?' BYTEA, x DOUBLE PRECISION) VALUES ($1, NULL, $2)"#);
    assert_eq!(bound, vec![Value::Integer(1), Value::Text("?".into())]);
}

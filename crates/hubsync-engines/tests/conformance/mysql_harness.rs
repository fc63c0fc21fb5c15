//! The MariaDB/MySQL harness: one database per test database, created on the
//! server named by `HUBSYNC_MYSQL_URL` (default `mysql://root@127.0.0.1:3306/test`)
//! and dropped afterwards. Portable SQL runs with `ANSI_QUOTES` (double-quoted
//! identifiers) and the portable types rewritten (INTEGER -> BIGINT, REAL ->
//! DOUBLE, BLOB -> LONGBLOB, TEXT -> LONGTEXT, a TEXT key -> VARCHAR(255)
//! with a binary collation, indexes on text columns get a prefix). Rows are
//! read back in canonical form.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hubsync_core::Value;
use hubsync_engines::AnyEndpoint;
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions, MySqlRow};
use sqlx::{AssertSqlSafe, Connection, Executor, MySqlConnection, Row};

use crate::harness::{BadUrl, BoxFut, Harness, OpenTx, Role, TableData, TestDb, sort_by_key};

/// The server the tests use (a database in its URL is only used to connect).
pub(crate) fn server_url() -> String {
    std::env::var("HUBSYNC_MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".to_string())
}

/// The server URL without its database, to append test databases to.
fn base_url() -> String {
    let url = server_url();
    let (scheme, rest) = url.split_once("://").unwrap_or(("mysql", &url));
    let authority = rest.split('/').next().unwrap_or(rest);
    format!("{scheme}://{authority}")
}

/// Whether an unreachable server must fail the tests rather than skip them.
fn services_required() -> bool {
    std::env::var_os("CI").is_some() || std::env::var_os("HUBSYNC_REQUIRE_SERVICES").is_some()
}

/// Connects to the server for administration, or says why it cannot: panics
/// when services are required (CI), else returns the reason to skip.
pub(crate) async fn admin_pool() -> Result<MySqlPool, String> {
    let url = server_url();
    // One direct connection first: a pool would retry a refused connection
    // until its timeout.
    let probe = tokio::time::timeout(Duration::from_secs(10), MySqlConnection::connect(&url)).await;
    let reason = match probe {
        Ok(Ok(conn)) => {
            let _ = conn.close().await;
            match MySqlPoolOptions::new().max_connections(2).connect(&url).await {
                Ok(pool) => return Ok(pool),
                Err(e) => format!("cannot connect to the MariaDB test server at {url}: {e}"),
            }
        }
        Ok(Err(e)) => format!("cannot connect to the MariaDB test server at {url}: {e}"),
        Err(_) => format!("the MariaDB test server at {url} did not answer within 10 s"),
    };
    if services_required() {
        panic!("{reason} (CI/HUBSYNC_REQUIRE_SERVICES is set, so this fails instead of skipping)");
    }
    eprintln!("\n*** SKIPPED: {reason}. Set HUBSYNC_MYSQL_URL to a reachable server to run the MariaDB tests. ***\n");
    Err(reason)
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A fresh database name, unique across processes and runs.
fn unique_name(name: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    let tag: String = name.chars().filter(|c| c.is_ascii_alphanumeric()).take(12).collect();
    format!("hubsync_t_{}_{n}_{nanos:x}_{tag}", std::process::id())
}

/// MariaDB databases on the test server.
pub(crate) struct MySqlHarness {
    admin: MySqlPool,
}

impl MySqlHarness {
    /// A harness on the test server; `None` when the server is unreachable
    /// and not required (`admin_pool` has said so loudly).
    pub(crate) async fn start() -> Option<Arc<dyn Harness>> {
        let admin = admin_pool().await.ok()?;
        Some(Arc::new(MySqlHarness { admin }))
    }
}

/// Creates a MariaDB test database named after `name`, for harnesses that
/// mix engines. Panics when the server is unreachable.
#[allow(dead_code)]
pub(crate) async fn create_mariadb_db(name: &str) -> Box<dyn TestDb> {
    let admin = MySqlPoolOptions::new()
        .max_connections(1)
        .connect(&server_url())
        .await
        .unwrap_or_else(|e| panic!("connecting to the MariaDB test server at {}: {e}", server_url()));
    create_db_on(&admin, name).await
}

async fn create_db_on(admin: &MySqlPool, name: &str) -> Box<dyn TestDb> {
    let db = unique_name(name);
    sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE `{db}` CHARACTER SET utf8mb4")))
        .execute(admin)
        .await
        .unwrap_or_else(|e| panic!("creating database {db}: {e}"));
    let url = format!("{}/{db}", base_url());
    let endpoint = hubsync_engines::connect(&url, &std::env::temp_dir())
        .await
        .unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
    let options: MySqlConnectOptions = url.parse().unwrap_or_else(|e| panic!("parsing {url}: {e}"));
    let pool = MySqlPoolOptions::new()
        .max_connections(2)
        .after_connect(|conn, _| Box::pin(async move { ansi_quotes(conn).await }))
        .connect_with(options.clone())
        .await
        .unwrap_or_else(|e| panic!("opening {url} for the test: {e}"));
    Box::new(MySqlDb { url, db, endpoint: Some(endpoint), pool, options, admin: admin.clone() })
}

async fn ansi_quotes(conn: &mut MySqlConnection) -> Result<(), sqlx::Error> {
    conn.execute("SET SESSION sql_mode = CONCAT(@@sql_mode, ',ANSI_QUOTES')").await.map(|_| ())
}

impl Harness for MySqlHarness {
    fn create_db<'a>(&'a self, _role: Role, name: &'a str) -> BoxFut<'a, Box<dyn TestDb>> {
        Box::pin(async move { create_db_on(&self.admin, name).await })
    }

    fn concurrent_writers(&self) -> bool {
        true
    }

    fn tracks_foreign_key_actions(&self, _role: Role) -> bool {
        false
    }

    fn unopenable_urls(&self) -> Vec<BadUrl> {
        let base = base_url();
        vec![
            BadUrl {
                url: format!("{base}/hubsync_no_such_database"),
                base_dir: std::env::temp_dir(),
                mentions: "hubsync_no_such_database".into(),
                what: "a database that does not exist",
            },
            BadUrl {
                url: "mysql://root@127.0.0.1:1/test".into(),
                base_dir: std::env::temp_dir(),
                mentions: "127.0.0.1:1".into(),
                what: "a port nothing listens on",
            },
        ]
    }

    fn stored_form(&self, value: Value) -> Value {
        match value {
            // MariaDB stores a DOUBLE -0.0 as 0.0.
            Value::Real(f) if f.to_bits() == (-0.0f64).to_bits() => Value::Real(0.0),
            other => other,
        }
    }
}

struct MySqlDb {
    url: String,
    db: String,
    endpoint: Option<AnyEndpoint>,
    pool: MySqlPool,
    options: MySqlConnectOptions,
    admin: MySqlPool,
}

/// Splits a script into statements at semicolons outside quotes.
fn split_statements(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    for c in sql.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' || c == '`' => quote = Some(c),
            None if c == ';' => {
                if !cur.trim().is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                cur.clear();
                continue;
            }
            None => {}
        }
        cur.push(c);
    }
    if !cur.trim().is_empty() {
        out.push(cur);
    }
    out
}

/// Rewrites the portable types of a CREATE TABLE to MariaDB's, outside
/// quoted identifiers and strings.
fn rewrite_types(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 32);
    let chars: Vec<char> = sql.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            let start = i;
            i += 1;
            while i < chars.len() && chars[i] != c {
                i += 1;
            }
            i = (i + 1).min(chars.len());
            out.extend(&chars[start..i]);
            continue;
        }
        if c.is_ascii_alphabetic() {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let rest: String = chars[i..].iter().collect::<String>().trim_start().to_ascii_uppercase();
            let replaced = match word.to_ascii_uppercase().as_str() {
                "INTEGER" => "BIGINT",
                "REAL" => "DOUBLE",
                "BLOB" if rest.starts_with("PRIMARY KEY") => "VARBINARY(255)",
                "BLOB" => "LONGBLOB",
                "TEXT" if rest.starts_with("PRIMARY KEY") => "VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin",
                "TEXT" => "LONGTEXT",
                _ => &word,
            };
            out.push_str(replaced);
            continue;
        }
        out.push(c);
        i += 1;
    }
    out
}

/// `CREATE [UNIQUE] INDEX "i" ON "t" ("a", "b")`: the table and columns.
fn parse_create_index(sql: &str) -> Option<(String, Vec<String>, usize)> {
    let upper = sql.trim_start().to_ascii_uppercase();
    if !(upper.starts_with("CREATE INDEX") || upper.starts_with("CREATE UNIQUE INDEX")) {
        return None;
    }
    let on = sql.find(" ON ")?;
    let after = &sql[on + 4..];
    let open = after.find('(')?;
    let table = after[..open].trim().trim_matches('"').replace("\"\"", "\"");
    let close = after.rfind(')')?;
    let cols = after[open + 1..close].split(',').map(|c| c.trim().trim_matches('"').replace("\"\"", "\"")).collect();
    Some((table, cols, on + 4 + open))
}

fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

impl MySqlDb {
    /// Column names, data types and the key positions of a table.
    async fn columns(&self, table: &str) -> (Vec<(String, String, String)>, Vec<usize>) {
        let rows = sqlx::query(
            "SELECT CAST(COLUMN_NAME AS CHAR), CAST(DATA_TYPE AS CHAR), CAST(COLUMN_TYPE AS CHAR), \
             CAST(COLUMN_KEY AS CHAR) FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = ? AND BINARY TABLE_NAME = BINARY ? ORDER BY ORDINAL_POSITION",
        )
        .bind(&self.db)
        .bind(table)
        .fetch_all(&self.pool)
        .await
        .unwrap_or_else(|e| panic!("reading the columns of {table} on {}: {e}", self.url));
        let s = |r: &MySqlRow, i: usize| -> String {
            String::from_utf8_lossy(&r.try_get_unchecked::<Vec<u8>, _>(i).expect("column")).into_owned()
        };
        let cols: Vec<(String, String, String)> = rows.iter().map(|r| (s(r, 0), s(r, 1), s(r, 2))).collect();
        let key_rows = sqlx::query(
            "SELECT CAST(COLUMN_NAME AS CHAR) FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = ? \
             AND BINARY TABLE_NAME = BINARY ? AND INDEX_NAME = 'PRIMARY' ORDER BY SEQ_IN_INDEX",
        )
        .bind(&self.db)
        .bind(table)
        .fetch_all(&self.pool)
        .await
        .expect("reading the key");
        let key = key_rows.iter().filter_map(|r| cols.iter().position(|c| c.0 == s(r, 0))).collect();
        (cols, key)
    }

    /// Rewrites one portable statement for MariaDB.
    async fn rewrite(&self, stmt: &str) -> String {
        let upper = stmt.trim_start().to_ascii_uppercase();
        if upper.starts_with("CREATE TABLE") {
            return rewrite_types(stmt);
        }
        if let Some((table, cols, open)) = parse_create_index(stmt) {
            let (columns, _) = self.columns(&table).await;
            let list: Vec<String> = cols
                .iter()
                .map(|c| {
                    let text = columns.iter().any(|(n, dt, _)| n == c && (dt.contains("text") || dt.contains("blob")));
                    if text { format!("{}(255)", quote(c)) } else { quote(c) }
                })
                .collect();
            return format!("{}({})", &stmt[..open], list.join(", "));
        }
        stmt.to_string()
    }
}

fn bind_all<'q>(
    mut query: sqlx::query::Query<'q, sqlx::MySql, sqlx::mysql::MySqlArguments>,
    params: &[Value],
) -> sqlx::query::Query<'q, sqlx::MySql, sqlx::mysql::MySqlArguments> {
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

/// The SELECT expression for a column of a data type, and how to decode it.
fn select_expr(name: &str, data_type: &str, column_type: &str) -> (String, u8) {
    let q = quote(name);
    match data_type {
        "bigint" if column_type.contains("unsigned") => (format!("CAST({q} AS CHAR)"), b't'),
        "tinyint" | "smallint" | "mediumint" | "int" | "bigint" | "year" => (format!("CAST({q} AS SIGNED)"), b'i'),
        "double" | "float" => (q, b'r'),
        "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" => (q, b'b'),
        "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" => (q, b't'),
        _ => (format!("CAST({q} AS CHAR)"), b't'),
    }
}

fn decode(row: &MySqlRow, i: usize, how: u8) -> Value {
    if row.try_get_raw(i).map(|v| sqlx::ValueRef::is_null(&v)).unwrap_or(true) {
        return Value::Null;
    }
    match how {
        b'i' => Value::Integer(row.try_get_unchecked::<i64, _>(i).expect("integer")),
        b'r' => Value::Real(row.try_get_unchecked::<f64, _>(i).expect("real")),
        b'b' => Value::Blob(row.try_get_unchecked::<Vec<u8>, _>(i).expect("blob")),
        _ => Value::Text(String::from_utf8(row.try_get_unchecked::<Vec<u8>, _>(i).expect("text")).expect("utf-8")),
    }
}

impl TestDb for MySqlDb {
    fn url(&self) -> &str {
        &self.url
    }

    fn endpoint(&self) -> &AnyEndpoint {
        self.endpoint.as_ref().expect("the endpoint")
    }

    fn exec<'a>(&'a self, sql: &'a str) -> BoxFut<'a, u64> {
        Box::pin(async move {
            let mut affected = 0;
            for stmt in split_statements(sql) {
                let stmt = self.rewrite(&stmt).await;
                affected += sqlx::raw_sql(AssertSqlSafe(stmt.clone()))
                    .execute(&self.pool)
                    .await
                    .unwrap_or_else(|e| panic!("executing on {}: {stmt}: {e}", self.url))
                    .rows_affected();
            }
            affected
        })
    }

    fn try_exec_with<'a>(&'a self, sql: &'a str, params: &'a [Value]) -> BoxFut<'a, Result<u64, String>> {
        Box::pin(async move {
            let stmt = self.rewrite(sql).await;
            bind_all(sqlx::query(AssertSqlSafe(stmt.clone())), params)
                .execute(&self.pool)
                .await
                .map(|r| r.rows_affected())
                .map_err(|e| format!("{stmt}: {e}"))
        })
    }

    fn read_table<'a>(&'a self, table: &'a str) -> BoxFut<'a, TableData> {
        Box::pin(async move {
            let (cols, key) = self.columns(table).await;
            assert!(!cols.is_empty(), "table `{table}` does not exist on {}", self.url);
            let exprs: Vec<(String, u8)> = cols.iter().map(|(n, dt, ct)| select_expr(n, dt, ct)).collect();
            let select: Vec<&str> = exprs.iter().map(|(e, _)| e.as_str()).collect();
            let sql = format!("SELECT {} FROM {}", select.join(", "), quote(table));
            let fetched = sqlx::query(AssertSqlSafe(sql))
                .fetch_all(&self.pool)
                .await
                .unwrap_or_else(|e| panic!("reading {table} on {}: {e}", self.url));
            let mut rows: Vec<Vec<Value>> = fetched
                .iter()
                .map(|r| exprs.iter().enumerate().map(|(i, (_, how))| decode(r, i, *how)).collect())
                .collect();
            sort_by_key(&mut rows, &key);
            TableData { columns: cols.into_iter().map(|c| c.0).collect(), rows }
        })
    }

    fn open_write<'a>(&'a self, sql: &'a str) -> BoxFut<'a, Box<dyn OpenTx>> {
        Box::pin(async move {
            let mut conn = MySqlConnection::connect_with(&self.options).await.expect("a second connection");
            ansi_quotes(&mut conn).await.expect("ANSI_QUOTES");
            sqlx::raw_sql("BEGIN").execute(&mut conn).await.expect("BEGIN");
            for stmt in split_statements(sql) {
                let stmt = self.rewrite(&stmt).await;
                sqlx::raw_sql(AssertSqlSafe(stmt.clone()))
                    .execute(&mut conn)
                    .await
                    .unwrap_or_else(|e| panic!("{stmt}: {e}"));
            }
            Box::new(MySqlTx { conn }) as Box<dyn OpenTx>
        })
    }

    fn drop_db(mut self: Box<Self>) -> BoxFut<'static, ()> {
        Box::pin(async move {
            drop(self.endpoint.take());
            self.pool.close().await;
            let _ = sqlx::raw_sql(AssertSqlSafe(format!("DROP DATABASE IF EXISTS `{}`", self.db)))
                .execute(&self.admin)
                .await;
        })
    }
}

struct MySqlTx {
    conn: MySqlConnection,
}

impl OpenTx for MySqlTx {
    fn commit(mut self: Box<Self>) -> BoxFut<'static, ()> {
        Box::pin(async move {
            sqlx::raw_sql("COMMIT").execute(&mut self.conn).await.expect("COMMIT");
            let _ = self.conn.close().await;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn portable_sql_is_rewritten() {
        assert_eq!(
            rewrite_types(
                r#"CREATE TABLE "text" ("id" INTEGER PRIMARY KEY, "v" TEXT, "k" TEXT PRIMARY KEY, "r" REAL, 'TEXT')"#
            ),
            r#"CREATE TABLE "text" ("id" BIGINT PRIMARY KEY, "v" LONGTEXT, "k" VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin PRIMARY KEY, "r" DOUBLE, 'TEXT')"#
        );
        assert_eq!(split_statements("a; 'b;c'; \"d;\""), vec!["a", " 'b;c'", " \"d;\""]);
    }
}

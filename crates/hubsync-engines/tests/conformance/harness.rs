//! What the suite needs from an engine under test, written once so every engine
//! (and every mix of engines) plugs in with one implementation.
//!
//! SQL handed to [`TestDb::exec`] and [`TestDb::exec_with`] is written in a small
//! portable dialect: double-quoted identifiers, the types `INTEGER`, `TEXT`,
//! `REAL` and `BLOB`, `?` placeholders. A harness whose engine speaks another
//! dialect rewrites it (PostgreSQL: `$n` placeholders, `BYTEA`, `DOUBLE
//! PRECISION`; MariaDB: `ANSI_QUOTES`), so scenarios never branch on the engine.

use std::cmp::Ordering;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

use hubsync_core::Value;
use hubsync_engines::AnyEndpoint;

/// A boxed future, so the harness traits stay object safe.
pub(crate) type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Which role a database plays; a mixed harness picks an engine per role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Hub,
    Member(usize),
}

/// An engine (or a mix of engines) the suite runs against.
pub(crate) trait Harness: Send + Sync {
    /// Creates a fresh, empty, uniquely named database for a role.
    fn create_db<'a>(&'a self, role: Role, name: &'a str) -> BoxFut<'a, Box<dyn TestDb>>;

    /// Whether two connections can hold uncommitted writes at the same time
    /// (PostgreSQL, MariaDB: yes; SQLite serialises writers: no).
    fn concurrent_writers(&self) -> bool;

    /// Whether the database of this role fires triggers for the rows a
    /// foreign key's action (`ON DELETE CASCADE`) changes. MySQL and MariaDB
    /// do not, and hubsync refuses to provision such tables there.
    fn tracks_foreign_key_actions(&self, _role: Role) -> bool {
        true
    }

    /// Urls that cannot be opened, with the base directory to resolve them in
    /// and a fragment the error message must contain to name the problem.
    fn unopenable_urls(&self) -> Vec<BadUrl>;

    /// How a value reads back after being stored in a column of its own type:
    /// the identity, except where the engine itself cannot keep a value
    /// (SQLite's REAL affinity turns -0.0 into 0.0 before hubsync sees it).
    fn stored_form(&self, value: Value) -> Value {
        value
    }
}

/// A url that must fail to open.
pub(crate) struct BadUrl {
    pub url: String,
    pub base_dir: PathBuf,
    /// What the error must mention.
    pub mentions: String,
    /// What is wrong with it, for messages.
    pub what: &'static str,
}

/// The rows of a table, sorted by primary key.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TableData {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
}

impl TableData {
    /// The rows projected to some columns (in the given order), still sorted by key.
    pub fn project(&self, columns: &[&str]) -> Vec<Vec<Value>> {
        let pos: Vec<usize> = columns
            .iter()
            .map(|c| {
                self.columns
                    .iter()
                    .position(|x| x == c)
                    .unwrap_or_else(|| panic!("no column `{c}` in {:?}", self.columns))
            })
            .collect();
        self.rows.iter().map(|r| pos.iter().map(|&i| r[i].clone()).collect()).collect()
    }
}

/// One database of a test.
pub(crate) trait TestDb: Send + Sync {
    /// The url hubsync connects with.
    fn url(&self) -> &str;

    /// The engine endpoint for this database.
    fn endpoint(&self) -> &AnyEndpoint;

    /// Executes portable SQL (one or more statements); panics on error. Returns rows affected.
    fn exec<'a>(&'a self, sql: &'a str) -> BoxFut<'a, u64>;

    /// Executes one portable statement with `?` parameters. Returns rows
    /// affected, or the database's error as text (for scenarios that expect
    /// an application's write to fail now and then, as real ones do).
    fn try_exec_with<'a>(&'a self, sql: &'a str, params: &'a [Value]) -> BoxFut<'a, Result<u64, String>>;

    /// Executes one portable statement with `?` parameters; panics on error. Returns rows affected.
    fn exec_with<'a>(&'a self, sql: &'a str, params: &'a [Value]) -> BoxFut<'a, u64> {
        Box::pin(async move {
            self.try_exec_with(sql, params).await.unwrap_or_else(|e| panic!("executing on {}: {sql}: {e}", self.url()))
        })
    }

    /// Every row of a table, all columns in table order, sorted by primary key
    /// (in Rust, so the order does not depend on the engine's collation).
    fn read_table<'a>(&'a self, table: &'a str) -> BoxFut<'a, TableData>;

    /// Opens a transaction on its own connection, runs the statements in it and
    /// keeps it open (uncommitted) until [`OpenTx::commit`].
    fn open_write<'a>(&'a self, sql: &'a str) -> BoxFut<'a, Box<dyn OpenTx>>;

    /// Removes the database (servers) or closes it (files; the harness's
    /// temporary directory removes them).
    fn drop_db(self: Box<Self>) -> BoxFut<'static, ()>;
}

/// A transaction held open with uncommitted writes.
pub(crate) trait OpenTx: Send {
    /// Commits it.
    fn commit(self: Box<Self>) -> BoxFut<'static, ()>;
}

/// Quotes an identifier for the portable dialect.
pub(crate) fn q(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// A total order on values, for sorting rows by key independently of any engine.
pub(crate) fn cmp_values(a: &Value, b: &Value) -> Ordering {
    fn rank(v: &Value) -> u8 {
        match v {
            Value::Null => 0,
            Value::Integer(_) => 1,
            Value::Real(_) => 2,
            Value::Text(_) => 3,
            Value::Blob(_) => 4,
        }
    }
    match (a, b) {
        (Value::Integer(x), Value::Integer(y)) => x.cmp(y),
        (Value::Real(x), Value::Real(y)) => x.total_cmp(y),
        (Value::Text(x), Value::Text(y)) => x.cmp(y),
        (Value::Blob(x), Value::Blob(y)) => x.cmp(y),
        _ => rank(a).cmp(&rank(b)),
    }
}

/// Sorts rows by the values at the key positions.
pub(crate) fn sort_by_key(rows: &mut [Vec<Value>], key: &[usize]) {
    rows.sort_by(|a, b| key.iter().map(|&i| cmp_values(&a[i], &b[i])).find(|o| o.is_ne()).unwrap_or(Ordering::Equal));
}

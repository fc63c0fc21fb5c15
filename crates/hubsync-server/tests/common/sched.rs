//! Helpers for the scheduler tests: SQLite databases in a temporary
//! directory, group and member specs, a running scheduler, polling with a
//! generous timeout, and a PostgreSQL metadata store (skipped loudly when the
//! server is unreachable, failing under `CI` / `HUBSYNC_REQUIRE_SERVICES`).

#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hubsync_core::{ConflictPolicy, Direction, TableName};
use hubsync_server::model::DatabaseType;
use hubsync_server::runner::Runner;
use hubsync_server::scheduler::{Scheduler, Wake};
use hubsync_server::store::{RunRecord, StoredGroup, StoredMember};
use hubsync_server::{DatabaseSpec, GroupSpec, MemberSpec, MetaStore, Schedule, SecretKey, TableSpec};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The table every test syncs.
pub const TABLE: &str = "items";

/// A SQLite database the test writes and reads directly.
pub struct Db {
    pub path: PathBuf,
    pub pool: SqlitePool,
}

impl Db {
    /// Opens (creating) a SQLite file.
    pub async fn open(path: &Path) -> Db {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(30));
        let pool = SqlitePoolOptions::new().max_connections(2).connect_with(options).await.unwrap();
        Db { path: path.to_path_buf(), pool }
    }

    /// Opens (creating) a SQLite file holding the synced table with rows
    /// `1..=rows`.
    pub async fn with_items(path: &Path, rows: i64) -> Db {
        let db = Db::open(path).await;
        db.create_items().await;
        if rows > 0 {
            db.insert_range(1, rows).await;
        }
        db
    }

    /// Creates the synced table.
    pub async fn create_items(&self) {
        sqlx::query("create table items (id integer primary key, v text not null)").execute(&self.pool).await.unwrap();
    }

    /// Inserts rows `from..=to` (`v` = `v<id>`) in one statement.
    pub async fn insert_range(&self, from: i64, to: i64) {
        sqlx::query(
            "insert into items (id, v) with recursive c(x) as (select ?1 union all select x + 1 from c where x < ?2) select x, 'v' || x from c",
        )
        .bind(from)
        .bind(to)
        .execute(&self.pool)
        .await
        .unwrap();
    }

    /// Inserts one row.
    pub async fn insert(&self, id: i64, v: &str) {
        sqlx::query("insert into items (id, v) values (?1, ?2)").bind(id).bind(v).execute(&self.pool).await.unwrap();
    }

    /// Whether the synced table exists yet (members get it from the first sync).
    pub async fn has_items(&self) -> bool {
        let n: i64 = sqlx::query_scalar("select count(*) from sqlite_master where type = 'table' and name = 'items'")
            .fetch_one(&self.pool)
            .await
            .unwrap();
        n > 0
    }

    /// Rows in the synced table (0 when it does not exist yet).
    pub async fn count(&self) -> i64 {
        if !self.has_items().await {
            return 0;
        }
        sqlx::query_scalar("select count(*) from items").fetch_one(&self.pool).await.unwrap()
    }

    /// The value of one row, if present.
    pub async fn value(&self, id: i64) -> Option<String> {
        if !self.has_items().await {
            return None;
        }
        sqlx::query_scalar("select v from items where id = ?1").bind(id).fetch_optional(&self.pool).await.unwrap()
    }

    /// `count(distinct id)`, `min(id)`, `max(id)` of the synced table.
    pub async fn id_stats(&self) -> (i64, i64, i64) {
        sqlx::query_as("select count(distinct id), coalesce(min(id), 0), coalesce(max(id), 0) from items")
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }
}

/// A SQLite database spec for a path.
pub fn sqlite_spec(path: &Path) -> DatabaseSpec {
    DatabaseSpec {
        database_type: DatabaseType::Sqlite,
        server_name: String::new(),
        database_name: path.display().to_string(),
        user_name: String::new(),
        password: None,
    }
}

/// A group syncing [`TABLE`] from a SQLite hub.
pub fn group_spec(name: &str, hub: &Path, schedule: Schedule, batch_rows: usize) -> GroupSpec {
    GroupSpec {
        name: name.to_string(),
        hub: sqlite_spec(hub),
        policy: ConflictPolicy::HubWin,
        schedule,
        batch_rows,
        tables: vec![TableSpec { name: TableName::new(TABLE), columns: None, policy: None }],
        conflict_logging: true,
        conflict_retention_days: 30,
    }
}

/// A bidirectional SQLite member.
pub fn member_spec(group: &str, name: &str, path: &Path) -> MemberSpec {
    MemberSpec {
        group: group.to_string(),
        name: name.to_string(),
        database: sqlite_spec(path),
        direction: Direction::Bidirectional,
    }
}

/// Opens a SQLite metadata store in `dir`.
pub async fn sqlite_store(dir: &Path) -> MetaStore {
    MetaStore::open(&format!("sqlite://{}", dir.join("meta.db").display()), None).await.unwrap()
}

/// Opens a SQLite metadata store in `dir` that can keep passwords.
pub async fn sqlite_store_with_key(dir: &Path) -> MetaStore {
    let key = SecretKey::parse(&SecretKey::generate(), "the test").unwrap();
    MetaStore::open(&format!("sqlite://{}", dir.join("meta.db").display()), Some(key)).await.unwrap()
}

/// Stores a group and its members.
pub async fn put(store: &MetaStore, group: &GroupSpec, members: &[MemberSpec]) {
    store.put_group(group).await.unwrap();
    for m in members {
        store.put_member(m).await.unwrap();
    }
}

/// A scheduler running in a task of its own.
pub struct Running {
    pub wake: Wake,
    pub stop: watch::Sender<bool>,
    pub task: JoinHandle<()>,
}

impl Running {
    /// Shuts the scheduler down gracefully and waits for it.
    pub async fn shutdown(self) {
        self.stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(120), self.task)
            .await
            .expect("the scheduler shuts down within two minutes")
            .unwrap();
    }

    /// Kills the scheduler without letting it release anything, as a
    /// crashed server would.
    pub async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// Starts a scheduler over `store` taking leases as `owner`.
pub fn start(store: &MetaStore, base_dir: &Path, owner: &str, lease_ttl: Option<Duration>) -> Running {
    let wake = Wake::default();
    let runner = Runner::new(store.clone(), base_dir.to_path_buf(), 4);
    let mut scheduler = Scheduler::new(store.clone(), runner, owner.to_string(), wake.clone());
    if let Some(ttl) = lease_ttl {
        scheduler = scheduler.with_lease_ttl(ttl);
    }
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(scheduler.run(stopped));
    Running { wake, stop, task }
}

/// Polls `check` every 50 ms until it returns `Some`, or panics after
/// `timeout` saying what was awaited.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(started.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The group as stored.
pub async fn stored_group(store: &MetaStore, name: &str) -> StoredGroup {
    store.get_group(name).await.unwrap().unwrap()
}

/// A member as stored.
pub async fn stored_member(store: &MetaStore, group: &str, name: &str) -> StoredMember {
    store.get_member(group, name).await.unwrap().unwrap()
}

/// One run of a group: its tracing id, its members' records, and the span
/// from the first member's start to the last member's end (µs).
#[derive(Debug, Clone)]
pub struct Run {
    pub tracing_id: String,
    pub records: Vec<RunRecord>,
    pub start: i64,
    pub end: i64,
}

/// A group's runs from its history, oldest first.
pub async fn runs(store: &MetaStore, group: &str) -> Vec<Run> {
    let mut by_id: BTreeMap<String, Vec<RunRecord>> = BTreeMap::new();
    for r in store.runs(group, 10_000).await.unwrap() {
        by_id.entry(r.tracing_id.clone()).or_default().push(r);
    }
    let mut out: Vec<Run> = by_id
        .into_iter()
        .map(|(tracing_id, records)| {
            let start = records.iter().map(|r| r.started_at).min().unwrap();
            let end = records.iter().map(|r| r.started_at + r.duration_ms * 1000).max().unwrap();
            Run { tracing_id, records, start, end }
        })
        .collect();
    out.sort_by_key(|r| r.start);
    out
}

/// Panics when two runs overlap in time.
pub fn assert_no_overlap(runs: &[Run]) {
    for pair in runs.windows(2) {
        assert!(
            pair[1].start >= pair[0].end,
            "run {} started {} µs before run {} ended: {:#?}",
            pair[1].tracing_id,
            pair[0].end - pair[1].start,
            pair[0].tracing_id,
            runs.iter().map(|r| (r.start, r.end)).collect::<Vec<_>>()
        );
    }
}

const DEFAULT_PG_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
static PG_COUNTER: AtomicUsize = AtomicUsize::new(0);

fn pg_admin_url() -> String {
    std::env::var("HUBSYNC_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_PG_ADMIN_URL.to_string())
}

fn services_required() -> bool {
    std::env::var_os("CI").is_some() || std::env::var_os("HUBSYNC_REQUIRE_SERVICES").is_some()
}

/// A fresh PostgreSQL database for a metadata store, dropped by [`PgDb::drop_db`].
pub struct PgDb {
    pub name: String,
    pub url: String,
}

impl PgDb {
    /// Creates one, or returns `None` (after saying loudly that the test is
    /// skipped) when the server is unreachable; panics instead under `CI` or
    /// `HUBSYNC_REQUIRE_SERVICES`.
    pub async fn create(label: &str) -> Option<PgDb> {
        let admin = pg_admin_url();
        let mut conn = match PgConnection::connect(&admin).await {
            Ok(conn) => conn,
            Err(e) => {
                let why = format!("PostgreSQL at {} is unreachable: {e}", hubsync_engines::redact_url(&admin));
                assert!(!services_required(), "{why}. CI or HUBSYNC_REQUIRE_SERVICES is set, so this test must run");
                eprintln!("\n*** SKIPPED: {why}. Start PostgreSQL or set HUBSYNC_TEST_PG_URL to run this test. ***\n");
                return None;
            }
        };
        let n = PG_COUNTER.fetch_add(1, Ordering::SeqCst);
        let name = format!("hubsync_sched_{}_{n}_{}", std::process::id(), label);
        sqlx::raw_sql(AssertSqlSafe(format!("create database \"{name}\""))).execute(&mut conn).await.unwrap();
        let _ = conn.close().await;
        let base = admin.split('?').next().unwrap_or(&admin);
        let server = &base[..base.rfind('/').unwrap()];
        Some(PgDb { url: format!("{server}/{name}"), name })
    }

    /// Drops the database, disconnecting whoever is left.
    pub async fn drop_db(self) {
        let mut conn = PgConnection::connect(&pg_admin_url()).await.unwrap();
        sqlx::raw_sql(AssertSqlSafe(format!("drop database if exists \"{}\" with (force)", self.name)))
            .execute(&mut conn)
            .await
            .unwrap();
        let _ = conn.close().await;
    }
}

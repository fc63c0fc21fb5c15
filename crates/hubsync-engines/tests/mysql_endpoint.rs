//! The MySQL/MariaDB endpoint exercised directly, each test on its own
//! database of the server named by `HUBSYNC_MYSQL_URL` (default
//! `mysql://root@127.0.0.1:3306/test`). When the server is unreachable the
//! tests skip loudly, or fail when `CI` or `HUBSYNC_REQUIRE_SERVICES` is set.

#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hubsync_core::{
    ApplyBatch, BulkItem, CanonicalType, Change, ChangeKind, ConflictPolicy, ConflictResolver, Endpoint, ErrorKind,
    OriginFilter, ReadRequest, Side, TableName, TableSchema, Value, Watermarks,
};
use hubsync_engines::MySqlEndpoint;
use hubsync_engines::mysql::{TrackingNames, quote_ident};
use sqlx::mysql::{MySqlPool, MySqlPoolOptions};
use sqlx::{AssertSqlSafe, Connection, MySqlConnection, Row};
use tokio::sync::mpsc;

fn server_url() -> String {
    std::env::var("HUBSYNC_MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".to_string())
}

fn base_url() -> String {
    let url = server_url();
    let (scheme, rest) = url.split_once("://").unwrap();
    format!("{scheme}://{}", rest.split('/').next().unwrap())
}

/// A test database, dropped at the end of the test (`finish`).
struct Db {
    name: String,
    url: String,
    ep: MySqlEndpoint,
    admin: MySqlPool,
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A fresh database, or `None` (after saying why) when the server is
/// unreachable and not required.
async fn db() -> Option<Db> {
    // One direct connection first: a pool would retry a refused connection
    // until its timeout.
    let probe = tokio::time::timeout(Duration::from_secs(10), MySqlConnection::connect(&server_url())).await;
    let failure = match probe {
        Ok(Ok(conn)) => {
            let _ = conn.close().await;
            None
        }
        Ok(Err(e)) => Some(e.to_string()),
        Err(_) => Some("no answer within 10 s".to_string()),
    };
    if let Some(why) = failure {
        let reason = format!("the MariaDB test server at {} is unreachable: {why}", server_url());
        if std::env::var_os("CI").is_some() || std::env::var_os("HUBSYNC_REQUIRE_SERVICES").is_some() {
            panic!("{reason} (CI/HUBSYNC_REQUIRE_SERVICES is set, so this fails instead of skipping)");
        }
        eprintln!("\n*** SKIPPED: {reason}. Set HUBSYNC_MYSQL_URL to a reachable server. ***\n");
        return None;
    }
    let admin = MySqlPoolOptions::new().max_connections(2).connect(&server_url()).await.unwrap();
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    let name = format!("hubsync_e_{}_{n}_{nanos:x}", std::process::id());
    sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE `{name}` CHARACTER SET utf8mb4")))
        .execute(&admin)
        .await
        .unwrap();
    let url = format!("{}/{name}", base_url());
    let ep = MySqlEndpoint::open(&url, url.clone()).await.unwrap();
    Some(Db { name, url, ep, admin })
}

impl Db {
    async fn exec(&self, sql: &str) {
        sqlx::raw_sql(AssertSqlSafe(sql.to_string()))
            .execute(self.ep.pool())
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    async fn ints(&self, sql: &str) -> Vec<i64> {
        let rows = sqlx::query(AssertSqlSafe(sql.to_string())).fetch_all(self.ep.pool()).await.unwrap();
        rows.iter().map(|r| r.try_get_unchecked::<i64, _>(0).unwrap()).collect()
    }

    async fn schema(&self, name: &str) -> TableSchema {
        self.ep.introspect(&TableName::new(name)).await.unwrap().unwrap()
    }

    /// (key, version, origin, deleted) of every tracking row, by version.
    async fn tracking(&self, table: &str) -> Vec<(i64, i64, String, i64)> {
        let tr = TrackingNames::for_table(&TableName::new(table), &self.name).table;
        let sql = format!("SELECT pk_1, version, origin, deleted FROM {} ORDER BY version", quote_ident(&tr));
        let rows = sqlx::query(AssertSqlSafe(sql)).fetch_all(self.ep.pool()).await.unwrap();
        rows.iter()
            .map(|r| (r.try_get_unchecked(0).unwrap(), r.get(1), r.get(2), r.try_get_unchecked::<i64, _>(3).unwrap()))
            .collect()
    }

    async fn read(&self, table: &TableSchema, kind: ChangeKind, after: i64, origin: &OriginFilter) -> Vec<Change> {
        let up_to = self.ep.snapshot_version().await.unwrap();
        self.read_up_to(table, kind, after, up_to, origin).await
    }

    async fn read_up_to(
        &self,
        table: &TableSchema,
        kind: ChangeKind,
        after: i64,
        up_to: i64,
        origin: &OriginFilter,
    ) -> Vec<Change> {
        self.ep
            .read_changes(ReadRequest { table, kind, after, after_key: None, up_to, origin, limit: 1_000_000 })
            .await
            .unwrap()
    }

    async fn hubsync_objects(&self) -> Vec<String> {
        let rows = sqlx::query(
            "SELECT CAST(TABLE_NAME AS CHAR) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME LIKE 'hubsync%' \
             UNION ALL SELECT CAST(TRIGGER_NAME AS CHAR) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = ?",
        )
        .bind(&self.name)
        .bind(&self.name)
        .fetch_all(&self.admin)
        .await
        .unwrap();
        rows.iter().map(|r| r.get::<String, _>(0)).collect()
    }

    async fn finish(self) {
        self.ep.pool().close().await;
        sqlx::raw_sql(AssertSqlSafe(format!("DROP DATABASE IF EXISTS `{}`", self.name)))
            .execute(&self.admin)
            .await
            .unwrap();
    }
}

fn batch<'a>(table: &'a TableSchema, kind: ChangeKind, changes: Vec<Change>, watermark: i64) -> ApplyBatch<'a> {
    ApplyBatch {
        scope: "g",
        peer: "hub",
        table,
        kind,
        changes: changes.into(),
        peer_has_received: Watermarks::default(),
        resolver: ConflictResolver { policy: ConflictPolicy::HubWin, receiver: Side::Member },
        watermark,
    }
}

fn upsert(row: Vec<Value>, changed_at: i64) -> Change {
    Change { key: vec![row[0].clone()], version: 1, origin: String::new(), changed_at, row: Some(row) }
}

fn int(i: i64) -> Value {
    Value::Integer(i)
}

fn text(s: &str) -> Value {
    Value::Text(s.to_string())
}

#[tokio::test]
async fn odd_names_are_introspected_and_tables_are_created_from_other_engines() {
    let Some(d) = db().await else { return };
    d.exec(
        "CREATE TABLE `my table \"q\" ``x``.ü` (`id` BIGINT PRIMARY KEY, `select` VARCHAR(40) NOT NULL, \
         `dot.ted` DECIMAL(10,2), `flag` TINYINT(1), `big` BIGINT UNSIGNED, `when` DATETIME(6), `at` TIMESTAMP(6) NULL, \
         `doc` JSON, `raw` VARBINARY(16), `geo` POINT, INDEX `by select` (`select`))",
    )
    .await;
    let s = d.schema("my table \"q\" `x`.ü").await;
    let canon: Vec<(&str, &CanonicalType)> = s.columns.iter().map(|c| (c.name.as_str(), &c.canonical)).collect();
    assert_eq!(canon[0], ("id", &CanonicalType::Integer));
    assert_eq!(canon[1], ("select", &CanonicalType::Text));
    assert_eq!(canon[2], ("dot.ted", &CanonicalType::Decimal { precision: Some(10), scale: Some(2) }));
    assert_eq!(canon[3], ("flag", &CanonicalType::Boolean));
    assert_eq!(canon[4], ("big", &CanonicalType::Decimal { precision: Some(20), scale: Some(0) }));
    assert_eq!(canon[5], ("when", &CanonicalType::Timestamp));
    assert_eq!(canon[6], ("at", &CanonicalType::TimestampTz));
    assert_eq!(canon[7], ("doc", &CanonicalType::Json));
    assert_eq!(canon[8], ("raw", &CanonicalType::Blob));
    assert!(matches!(canon[9].1, CanonicalType::Other(_)), "{canon:?}");
    assert_eq!(s.primary_key, vec!["id"]);
    assert_eq!(s.indexes.len(), 1);
    assert!(!s.columns[1].nullable && s.columns[2].nullable);

    // The same engine recreates declared types verbatim, under another name.
    let mut copy = s.clone();
    copy.name = TableName::new("copy of it");
    d.ep.create_table(&copy).await.unwrap();
    let again = d.schema("copy of it").await;
    assert_eq!(again.columns, s.columns);

    // Another engine's schema maps through canonical types; a TEXT key gets a bounded, binary type.
    let mut foreign = s.clone();
    foreign.name = TableName::new("from postgres");
    foreign.engine = "postgres".into();
    foreign.columns.retain(|c| c.name != "geo");
    foreign.columns[0].canonical = CanonicalType::Text;
    d.ep.create_table(&foreign).await.unwrap();
    let made = d.schema("from postgres").await;
    assert_eq!(made.columns[0].declared_type, "varchar(255)");
    let canon: Vec<&CanonicalType> = made.columns.iter().map(|c| &c.canonical).collect();
    let expected: Vec<&CanonicalType> = foreign.columns.iter().map(|c| &c.canonical).collect();
    assert_eq!(canon, expected, "canonical types survive the trip");
    assert_eq!(made.indexes.len(), 1);
    // Case-sensitive key, as on the other engines.
    d.exec("INSERT INTO `from postgres` (`id`, `select`) VALUES ('a', 'x'), ('A', 'y')").await;

    // A foreign type cannot be mapped.
    let mut bad = s.clone();
    bad.name = TableName::new("bad");
    bad.engine = "postgres".into();
    let err = d.ep.create_table(&bad).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::UnmappableType);
    assert!(err.to_string().contains("`geo`"), "{err}");
    d.finish().await;
}

#[tokio::test]
async fn mysql_types_round_trip_in_canonical_form() {
    let Some(d) = db().await else { return };
    d.exec(
        "CREATE TABLE v (id BIGINT PRIMARY KEY, i BIGINT, u INT UNSIGNED, bu BIGINT UNSIGNED, b TINYINT(1), \
         d DECIMAL(30,4), r DOUBLE, f FLOAT, t LONGTEXT, ci VARCHAR(50) COLLATE utf8mb4_general_ci, bl LONGBLOB, \
         vb VARBINARY(20), dt DATE, ts DATETIME(6), tz TIMESTAMP(6) NULL, tm TIME(6), j JSON)",
    )
    .await;
    let t = d.schema("v").await;
    d.ep.provision(&t).await.unwrap();
    let big = "é😀中".repeat(1 << 18);
    let rows = vec![
        vec![
            int(1),
            int(i64::MIN),
            int(4_294_967_295),
            text("18446744073709551615"),
            int(1),
            text("-12345678901234567890123456.1250"),
            Value::Real(0.1 + 0.2),
            Value::Real(f64::from(1.5f32)),
            text(&big),
            text("Ab"),
            Value::Blob(vec![0, 1, 0, 255]),
            Value::Blob(vec![0; 3]),
            text("2026-11-23"),
            text("2026-11-23 10:11:12.5"),
            text("2026-11-23 10:11:12.123456+00:00"),
            text("23:59:59.25"),
            text("{\"a\": [1, 2]}"),
        ],
        vec![
            int(2),
            int(i64::MAX),
            int(0),
            text("0"),
            int(0),
            text("0.0000"),
            Value::Real(5e-324),
            Value::Real(-2.5),
            text(""),
            text("ab"),
            Value::Blob(vec![]),
            Value::Blob(vec![]),
            text("0001-01-01"),
            text("2026-01-01 00:00:00"),
            text("2026-01-01 00:00:00+00:00"),
            text("00:00:00"),
            text("null"),
        ],
        vec![int(3)].into_iter().chain(std::iter::repeat_n(Value::Null, 16)).collect(),
    ];
    let changes: Vec<Change> = rows.iter().map(|r| upsert(r.clone(), 7)).collect();
    let outcome = d.ep.apply_changes(batch(&t, ChangeKind::Upsert, changes.clone(), 5)).await.unwrap();
    assert_eq!(outcome.applied, 3);
    let read = d.read(&t, ChangeKind::Upsert, 0, &OriginFilter::NotFrom("other".into())).await;
    let images: Vec<Vec<Value>> = read.iter().map(|c| c.row.clone().unwrap()).collect();
    assert_eq!(images, rows, "values read back exactly as written");
    assert!(read.iter().all(|c| c.origin == "hub" && c.changed_at == 7));
    // Applying the same rows again writes nothing: equal rows are skipped.
    let again = d.ep.apply_changes(batch(&t, ChangeKind::Upsert, changes, 6)).await.unwrap();
    assert_eq!((again.applied, again.skipped), (0, 3));
    // Bulk read gives the same values.
    let (tx, mut rx) = mpsc::channel(8);
    let sent = d.ep.bulk_read(&t, 2, tx).await.unwrap();
    assert_eq!(sent, 3);
    let mut bulk = Vec::new();
    while let Some(item) = rx.recv().await {
        if let BulkItem::Rows(r) = item {
            bulk.extend(r);
        }
    }
    bulk.sort_by_key(|r| match r[0] {
        Value::Integer(i) => i,
        _ => 0,
    });
    assert_eq!(bulk, rows);
    d.finish().await;
}

#[tokio::test]
async fn triggers_track_writes_key_updates_and_origins() {
    let Some(d) = db().await else { return };
    d.exec("CREATE TABLE items (id BIGINT PRIMARY KEY, a VARCHAR(20) NOT NULL, unsynced TEXT)").await;
    d.exec("INSERT INTO items VALUES (1, 'x', 'u'), (2, 'y', 'u')").await;
    let full = d.schema("items").await;
    let t = full.project(Some(&["a".to_string()])).unwrap();
    d.ep.provision(&t).await.unwrap();
    assert!(d.ep.is_provisioned(&t.name).await.unwrap());
    // Existing rows are recorded as local changes once.
    let tr = d.tracking("items").await;
    assert_eq!(tr.iter().map(|r| (r.0, r.2.as_str(), r.3)).collect::<Vec<_>>(), vec![(1, "", 0), (2, "", 0)]);
    let created = "SELECT CAST(UNIX_TIMESTAMP(CREATED) * 100 AS SIGNED) FROM information_schema.TRIGGERS \
                   WHERE TRIGGER_SCHEMA = DATABASE() ORDER BY TRIGGER_NAME";
    let first = d.ints(created).await;
    assert_eq!(first.len(), 3, "three triggers");
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    d.ep.provision(&t).await.unwrap();
    assert_eq!(d.tracking("items").await, tr, "provisioning again records nothing new");
    // Replacing a trigger locks the table against the application: unchanged
    // triggers are left alone (CREATED has centisecond precision).
    assert_eq!(d.ints(created).await, first, "provisioning again must not recreate unchanged triggers");

    d.exec("UPDATE items SET unsynced = 'v' WHERE id = 1").await;
    assert_eq!(d.tracking("items").await, tr, "an update of an unsynced column is not a change");
    d.exec("UPDATE items SET a = 'X' WHERE id = 1").await;
    d.exec("UPDATE items SET id = 20 WHERE id = 2").await;
    d.exec("DELETE FROM items WHERE id = 1").await;
    d.exec("INSERT INTO items VALUES (3, 'z', NULL)").await;
    let tr = d.tracking("items").await;
    let summary: Vec<(i64, i64)> = tr.iter().map(|r| (r.0, r.3)).collect();
    assert_eq!(summary, vec![(2, 1), (20, 0), (1, 1), (3, 0)], "key update = tombstone + upsert: {tr:?}");
    let versions: Vec<i64> = tr.iter().map(|r| r.1).collect();
    assert!(versions.windows(2).all(|w| w[0] < w[1]), "{versions:?}");

    // Applied changes record the peer; the session's origin does not leak.
    d.ep.apply_changes(batch(&t, ChangeKind::Upsert, vec![upsert(vec![int(4), text("w")], 1)], 9)).await.unwrap();
    let mut conns = Vec::new();
    for _ in 0..4 {
        conns.push(d.ep.pool().acquire().await.unwrap());
    }
    for conn in &mut conns {
        let origin: Option<String> = sqlx::query_scalar("SELECT @hubsync_origin").fetch_one(&mut **conn).await.unwrap();
        assert_eq!(origin, None);
    }
    drop(conns);
    d.exec("INSERT INTO items VALUES (5, 'local', NULL)").await;
    let tr = d.tracking("items").await;
    let origins: Vec<(i64, &str)> = tr.iter().rev().take(2).map(|r| (r.0, r.2.as_str())).collect();
    assert_eq!(origins, vec![(5, ""), (4, "hub")]);
    let local = d.read(&t, ChangeKind::Upsert, 0, &OriginFilter::LocalOnly).await;
    assert!(local.iter().all(|c| c.origin.is_empty()) && local.iter().any(|c| c.key == vec![int(5)]));
    let marks = d.ep.watermarks("g", "hub", &t.name).await.unwrap();
    assert_eq!(marks.upserts, 9);
    d.finish().await;
}

#[tokio::test]
async fn an_open_transaction_holds_the_snapshot_back_until_it_commits() {
    let Some(d) = db().await else { return };
    d.exec("CREATE TABLE items (id BIGINT PRIMARY KEY, v TEXT)").await;
    let t = d.schema("items").await;
    d.ep.provision(&t).await.unwrap();
    d.exec("INSERT INTO items VALUES (1, 'committed before')").await;
    let mut open = MySqlConnection::connect(&d.url).await.unwrap();
    sqlx::raw_sql("BEGIN").execute(&mut open).await.unwrap();
    sqlx::raw_sql("INSERT INTO items VALUES (10, 'held open')").execute(&mut open).await.unwrap();
    // A later write commits while the first is still open: writers do not wait on each other.
    tokio::time::timeout(Duration::from_secs(10), d.exec("INSERT INTO items VALUES (11, 'committed later')"))
        .await
        .expect("a second writer is not blocked by the open transaction");
    let snapshot = d.ep.snapshot_version().await.unwrap();
    let read = d.read_up_to(&t, ChangeKind::Upsert, 0, snapshot, &OriginFilter::LocalOnly).await;
    let keys: Vec<Value> = read.iter().map(|c| c.key[0].clone()).collect();
    assert_eq!(keys, vec![int(1)], "the snapshot stops below the open transaction's version");
    sqlx::raw_sql("COMMIT").execute(&mut open).await.unwrap();
    let read = d.read(&t, ChangeKind::Upsert, snapshot, &OriginFilter::LocalOnly).await;
    let keys: Vec<Value> = read.iter().map(|c| c.key[0].clone()).collect();
    assert_eq!(keys, vec![int(10), int(11)], "after the commit both arrive");
    // A rolled-back write leaves a gap that stops the snapshot only briefly.
    let mut rolled = MySqlConnection::connect(&d.url).await.unwrap();
    sqlx::raw_sql("BEGIN").execute(&mut rolled).await.unwrap();
    sqlx::raw_sql("INSERT INTO items VALUES (12, 'rolled back')").execute(&mut rolled).await.unwrap();
    sqlx::raw_sql("ROLLBACK").execute(&mut rolled).await.unwrap();
    d.exec("INSERT INTO items VALUES (13, 'after the rollback')").await;
    let before = d.ep.snapshot_version().await.unwrap();
    let read = d.read_up_to(&t, ChangeKind::Upsert, snapshot, before, &OriginFilter::LocalOnly).await;
    let keys: Vec<Value> = read.iter().map(|c| c.key[0].clone()).collect();
    assert_eq!(keys, vec![int(10), int(11), int(13)]);
    d.finish().await;
}

#[tokio::test]
async fn constraint_errors_map_to_their_kinds() {
    let Some(d) = db().await else { return };
    d.exec("CREATE TABLE parent (id BIGINT PRIMARY KEY, u VARCHAR(10), UNIQUE KEY (u))").await;
    d.exec("CREATE TABLE child (id BIGINT PRIMARY KEY, p BIGINT, FOREIGN KEY (p) REFERENCES parent (id))").await;
    let parent = d.schema("parent").await;
    let child = d.schema("child").await;
    d.ep.provision(&parent).await.unwrap();
    d.ep.provision(&child).await.unwrap();
    d.exec("INSERT INTO parent VALUES (1, 'a')").await;
    let err =
        d.ep.apply_changes(batch(&parent, ChangeKind::Upsert, vec![upsert(vec![int(2), text("a")], 1)], 1))
            .await
            .unwrap_err();
    assert_eq!(err.kind, ErrorKind::UniqueViolation, "{err}");
    assert!(err.to_string().contains("parent"), "{err}");
    let err =
        d.ep.apply_changes(batch(&child, ChangeKind::Upsert, vec![upsert(vec![int(1), int(99)], 1)], 1))
            .await
            .unwrap_err();
    assert_eq!(err.kind, ErrorKind::ForeignKeyViolation, "{err}");
    // Nothing of a failed batch is kept, not even its watermark.
    assert_eq!(d.ep.watermarks("g", "hub", &child.name).await.unwrap(), Watermarks::default());
    assert!(d.ints("SELECT id FROM child").await.is_empty());
    // A child before its parent in one batch is written once the parent is.
    let tree = vec![upsert(vec![int(1), int(3)], 1)];
    let parents = vec![upsert(vec![int(3), text("c")], 1)];
    assert_eq!(
        d.ep.apply_changes(batch(&child, ChangeKind::Upsert, tree.clone(), 1)).await.unwrap_err().kind,
        ErrorKind::ForeignKeyViolation
    );
    d.ep.apply_changes(batch(&parent, ChangeKind::Upsert, parents, 1)).await.unwrap();
    d.ep.apply_changes(batch(&child, ChangeKind::Upsert, tree, 1)).await.unwrap();
    // Missing tables and bad databases.
    let missing = TableName::new("nope");
    assert_eq!(d.ep.is_empty(&missing).await.unwrap_err().kind, ErrorKind::TableMissing);
    let err = MySqlEndpoint::open(&format!("{}/hubsync_no_such_db", base_url()), "label-x".into()).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::ConnectionFailed);
    assert!(err.to_string().contains("label-x") && err.hint.unwrap().contains("hubsync_no_such_db"));
    d.finish().await;
}

#[tokio::test]
async fn deprovision_leaves_nothing_of_hubsync_behind() {
    let Some(d) = db().await else { return };
    d.exec("CREATE TABLE a (id BIGINT PRIMARY KEY, v TEXT)").await;
    d.exec("CREATE TABLE b (id BIGINT PRIMARY KEY, v TEXT)").await;
    d.exec("INSERT INTO a VALUES (1, 'x')").await;
    let (a, b) = (d.schema("a").await, d.schema("b").await);
    d.ep.provision(&a).await.unwrap();
    d.ep.provision(&b).await.unwrap();
    d.ep.apply_changes(batch(&b, ChangeKind::Upsert, vec![upsert(vec![int(1), text("y")], 1)], 3)).await.unwrap();
    d.ep.record_session(
        "g",
        "hub",
        &hubsync_core::SessionRecord {
            state: hubsync_core::MemberState::SyncSucceeded,
            last_attempt_at: 1,
            last_success_at: Some(1),
            uploaded: 1,
            downloaded: 2,
            message: "ok".into(),
        },
    )
    .await
    .unwrap();
    assert!(d.ep.session_record("g", "hub").await.unwrap().is_some());
    let dropped = d.ep.deprovision(std::slice::from_ref(&a.name)).await.unwrap();
    assert_eq!(dropped.len(), 4, "three triggers and the tracking table: {dropped:?}");
    assert!(!d.hubsync_objects().await.is_empty(), "b is still tracked");
    d.ep.deprovision(std::slice::from_ref(&b.name)).await.unwrap();
    assert_eq!(d.hubsync_objects().await, Vec::<String>::new());
    assert_eq!(d.ints("SELECT COUNT(*) FROM a").await, vec![1], "user data stays");
    assert_eq!(d.ints("SELECT COUNT(*) FROM b").await, vec![1]);
    d.finish().await;
}

/// Prints what the tracking costs concurrent writers (docs/mysql-versions.md).
#[tokio::test]
#[ignore = "a benchmark: run with --ignored --nocapture"]
async fn measure_tracking_cost() {
    let Some(d) = db().await else { return };
    let cost = hubsync_engines::mysql::bench::measure_tracking_cost(&d.url, 4, Duration::from_secs(5)).await.unwrap();
    println!(
        "{} writers: untracked {:.0} tx/s; hubsync (gap detection) {:.0} tx/s ({:.0}%); serialised counter {:.0} tx/s ({:.0}%)",
        cost.writers,
        cost.untracked_tps,
        cost.tracked_tps,
        100.0 * cost.tracked_tps / cost.untracked_tps,
        cost.serialised_tps,
        100.0 * cost.serialised_tps / cost.untracked_tps
    );
    d.finish().await;
}

#[tokio::test]
async fn a_database_on_the_same_server_is_copied_inside_the_server() {
    let Some(hub) = db().await else { return };
    let Some(member) = db().await else { return };
    hub.exec("CREATE TABLE t (id BIGINT PRIMARY KEY, v LONGTEXT, b LONGBLOB)").await;
    hub.exec("INSERT INTO t VALUES (1, 'ü', x'00ff'), (2, NULL, NULL)").await;
    let t = hub.schema("t").await;
    hub.ep.provision(&t).await.unwrap();
    member.ep.create_table(&t).await.unwrap();
    let locator = hub.ep.direct_source().unwrap();
    let target = hubsync_core::BulkTarget { scope: "g", peer: "hub", table: &t, record_tracking: true };
    let copied = member.ep.bulk_copy_direct(&locator, target).await.unwrap();
    assert_eq!(copied, Some(2));
    let snapshot = hub.ep.snapshot_version().await.unwrap();
    let marks = member.ep.watermarks("g", "hub", &t.name).await.unwrap();
    assert_eq!((marks.upserts, marks.deletes), (snapshot, snapshot));
    let tracked = member.tracking("t").await;
    assert!(tracked.iter().all(|r| r.2 == "hub" && r.3 == 0) && tracked.len() == 2, "{tracked:?}");
    let rows = member.read(&t, ChangeKind::Upsert, 0, &OriginFilter::NotFrom("x".into())).await;
    assert_eq!(rows[0].row.clone().unwrap(), vec![int(1), text("ü"), Value::Blob(vec![0, 255])]);
    // Not the same database, not another server: streamed instead.
    assert_eq!(member.ep.bulk_copy_direct(&member.ep.direct_source().unwrap(), target).await.unwrap(), None);
    assert_eq!(member.ep.bulk_copy_direct("mysql-db:x@elsewhere:1/db", target).await.unwrap(), None);
    hub.finish().await;
    member.finish().await;
}

#[tokio::test]
async fn list_tables_names_the_databases_tables_without_hubsync_objects() {
    let Some(d) = db().await else { return };
    d.exec("CREATE TABLE b (id BIGINT PRIMARY KEY, v TEXT)").await;
    d.exec("CREATE TABLE `a t` (id BIGINT)").await;
    d.exec("CREATE VIEW v AS SELECT 1 AS x").await;
    let b = d.schema("b").await;
    d.ep.provision(&b).await.unwrap();
    let hubsync_tables = "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() \
                          AND TABLE_NAME LIKE 'hubsync\\_%'";
    assert!(d.ints(hubsync_tables).await[0] > 0);
    assert_eq!(d.ep.list_tables().await.unwrap(), [TableName::new("a t"), TableName::new("b")]);
    d.finish().await;
}

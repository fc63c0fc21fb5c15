//! The SQLite endpoint exercised directly, on temporary database files.

#![allow(clippy::unwrap_used, missing_docs)]

use hubsync_core::{
    ApplyBatch, ApplyOutcome, BulkItem, BulkTarget, CanonicalType, Change, ChangeKind, ConflictPolicy,
    ConflictResolver, Endpoint, ErrorKind, MemberState, OriginFilter, ReadRequest, SessionRecord, Side, TableName,
    TableSchema, Value, Watermarks,
};
use hubsync_engines::SqliteEndpoint;
use hubsync_engines::sqlite::{TrackingNames, quote_ident};
use sqlx::{AssertSqlSafe, Row};
use tempfile::TempDir;
use tokio::sync::mpsc;

struct Db {
    _dir: TempDir,
    ep: SqliteEndpoint,
}

async fn db() -> Db {
    let dir = tempfile::tempdir().unwrap();
    let ep = SqliteEndpoint::open(&dir.path().join("t.db"), "test").await.unwrap();
    Db { _dir: dir, ep }
}

impl Db {
    async fn exec(&self, sql: &str) {
        sqlx::raw_sql(AssertSqlSafe(sql.to_string())).execute(self.ep.pool()).await.unwrap();
    }

    async fn ints(&self, sql: &str) -> Vec<i64> {
        let rows = sqlx::query(AssertSqlSafe(sql.to_string())).fetch_all(self.ep.pool()).await.unwrap();
        rows.iter().map(|r| r.get::<i64, _>(0)).collect()
    }

    async fn strings(&self, sql: &str) -> Vec<String> {
        let rows = sqlx::query(AssertSqlSafe(sql.to_string())).fetch_all(self.ep.pool()).await.unwrap();
        rows.iter().map(|r| r.get::<String, _>(0)).collect()
    }

    async fn schema(&self, name: &str, columns: Option<&[&str]>) -> TableSchema {
        let full = self.ep.introspect(&TableName::new(name)).await.unwrap().unwrap();
        let selected: Option<Vec<String>> = columns.map(|c| c.iter().map(|s| s.to_string()).collect());
        full.project(selected.as_deref()).unwrap()
    }

    /// (key, version, origin, deleted) of every tracking row, by version.
    async fn tracking(&self, table: &str) -> Vec<(i64, i64, String, i64)> {
        let tr = TrackingNames::for_table(&TableName::new(table)).table;
        let sql = format!("SELECT pk_1, version, origin, deleted FROM {} ORDER BY version", quote_ident(&tr));
        let rows = sqlx::query(AssertSqlSafe(sql)).fetch_all(self.ep.pool()).await.unwrap();
        rows.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3))).collect()
    }

    async fn read(&self, table: &TableSchema, kind: ChangeKind, after: i64, origin: &OriginFilter) -> Vec<Change> {
        let up_to = self.ep.snapshot_version().await.unwrap();
        self.ep
            .read_changes(ReadRequest { table, kind, after, after_key: None, up_to, origin, limit: 1_000_000 })
            .await
            .unwrap()
    }

    async fn master(&self) -> Vec<String> {
        self.strings("SELECT type || ' ' || name FROM sqlite_master ORDER BY type, name").await
    }
}

fn batch<'a>(
    table: &'a TableSchema,
    kind: ChangeKind,
    changes: Vec<Change>,
    received: Watermarks,
    watermark: i64,
) -> ApplyBatch<'a> {
    ApplyBatch {
        scope: "g",
        peer: "hub",
        table,
        kind,
        changes: changes.into(),
        peer_has_received: received,
        resolver: ConflictResolver { policy: ConflictPolicy::HubWin, receiver: Side::Member },
        watermark,
    }
}

fn upsert(row: Vec<Value>, changed_at: i64) -> Change {
    Change { key: vec![row[0].clone()], version: 1, origin: String::new(), changed_at, row: Some(row) }
}

fn delete(key: i64) -> Change {
    Change { key: vec![Value::Integer(key)], version: 1, origin: String::new(), changed_at: 1, row: None }
}

fn row(id: i64, a: &str, b: i64) -> Vec<Value> {
    vec![Value::Integer(id), Value::Text(a.into()), Value::Integer(b)]
}

const ITEMS: &str = "CREATE TABLE items (id INTEGER PRIMARY KEY, a TEXT NOT NULL, b INTEGER, unsynced TEXT)";

#[tokio::test]
async fn triggers_record_inserts_updates_deletes_and_key_updates() {
    let d = db().await;
    d.exec(ITEMS).await;
    d.exec("INSERT INTO items VALUES (1, 'x', 1, 'u'), (2, 'y', 2, 'u')").await;
    let t = d.schema("items", Some(&["a", "b"])).await;
    assert!(!d.ep.is_provisioned(&t.name).await.unwrap());
    d.ep.provision(&t).await.unwrap();
    assert!(d.ep.is_provisioned(&t.name).await.unwrap());
    // Rows present before provisioning are recorded as local changes.
    assert_eq!(d.tracking("items").await, vec![(1, 1, String::new(), 0), (2, 2, String::new(), 0)]);
    assert_eq!(d.ep.snapshot_version().await.unwrap(), 2);

    // Provisioning again changes nothing.
    d.ep.provision(&t).await.unwrap();
    assert_eq!(d.tracking("items").await.len(), 2);
    assert_eq!(d.ep.snapshot_version().await.unwrap(), 2);

    d.exec("INSERT INTO items VALUES (3, 'z', 3, 'u')").await;
    assert_eq!(d.tracking("items").await.last().unwrap(), &(3, 3, String::new(), 0));
    d.exec("UPDATE items SET a = 'x2' WHERE id = 1").await;
    assert_eq!(d.tracking("items").await.last().unwrap(), &(1, 4, String::new(), 0));
    // Columns outside the sync schema are not tracked.
    d.exec("UPDATE items SET unsynced = 'v' WHERE id = 2").await;
    assert_eq!(d.ep.snapshot_version().await.unwrap(), 4);
    d.exec("DELETE FROM items WHERE id = 2").await;
    assert_eq!(d.tracking("items").await.last().unwrap(), &(2, 5, String::new(), 1));
    // A key update tombstones the old key and upserts the new one.
    d.exec("UPDATE items SET id = 10 WHERE id = 3").await;
    let tracking = d.tracking("items").await;
    let three = tracking.iter().find(|r| r.0 == 3).unwrap();
    let ten = tracking.iter().find(|r| r.0 == 10).unwrap();
    assert_eq!((three.3, ten.3), (1, 0));
    assert!(three.1 > 5 && ten.1 > 5 && three.1 != ten.1);
    assert_eq!(d.ep.snapshot_version().await.unwrap(), 7);
    let versions: Vec<i64> = tracking.iter().map(|r| r.1).collect();
    assert!(versions.windows(2).all(|w| w[0] < w[1]), "{versions:?}");

    let upserts = d.read(&t, ChangeKind::Upsert, 0, &OriginFilter::LocalOnly).await;
    let keys: Vec<&Value> = upserts.iter().map(|c| &c.key[0]).collect();
    assert_eq!(keys, vec![&Value::Integer(1), &Value::Integer(10)]);
    assert_eq!(upserts[0].row, Some(row(1, "x2", 1)));
    assert!(upserts[0].changed_at > 1_600_000_000_000_000, "changed_at is µs since the epoch");
    let deletes = d.read(&t, ChangeKind::Delete, 0, &OriginFilter::LocalOnly).await;
    assert_eq!(
        deletes.iter().map(|c| c.key[0].clone()).collect::<Vec<_>>(),
        vec![Value::Integer(2), Value::Integer(3)]
    );
    assert!(deletes.iter().all(|c| c.row.is_none()));
}

#[tokio::test]
async fn apply_records_the_origin_and_resets_it() {
    let d = db().await;
    d.exec(ITEMS).await;
    let t = d.schema("items", Some(&["a", "b"])).await;
    d.ep.provision(&t).await.unwrap();
    let out =
        d.ep.apply_changes(batch(
            &t,
            ChangeKind::Upsert,
            vec![upsert(row(1, "a", 1), 5), upsert(row(2, "b", 2), 5)],
            Watermarks::default(),
            42,
        ))
        .await
        .unwrap();
    assert_eq!(out, ApplyOutcome { applied: 2, skipped: 0, conflicts: vec![] });
    assert_eq!(d.tracking("items").await, vec![(1, 1, "hub".to_string(), 0), (2, 2, "hub".to_string(), 0)]);
    assert_eq!(d.ints("SELECT count(*) FROM hubsync_origin").await, vec![0]);
    // The changes keep their commit times from where they were made.
    let read = d.read(&t, ChangeKind::Upsert, 0, &OriginFilter::NotFrom("x".into())).await;
    assert_eq!(read.iter().map(|c| c.changed_at).collect::<Vec<_>>(), vec![5, 5]);
    d.exec("INSERT INTO items VALUES (3, 'c', 3, NULL)").await;
    assert_eq!(d.tracking("items").await.last().unwrap(), &(3, 3, String::new(), 0));
    assert_eq!(d.ep.watermarks("g", "hub", &t.name).await.unwrap(), Watermarks { upserts: 42, deletes: 0 });

    // Unchanged rows are left alone: no write, no new version.
    let out =
        d.ep.apply_changes(batch(
            &t,
            ChangeKind::Upsert,
            vec![upsert(row(1, "a", 1), 5), upsert(row(2, "b", 9), 5)],
            Watermarks::default(),
            43,
        ))
        .await
        .unwrap();
    assert_eq!((out.applied, out.skipped), (1, 1));
    assert_eq!(d.ep.snapshot_version().await.unwrap(), 4);

    // Deletes, one of a row that is not there; the unsynced column survived updates.
    d.exec("UPDATE items SET unsynced = 'keep' WHERE id = 2").await;
    let out =
        d.ep.apply_changes(batch(&t, ChangeKind::Delete, vec![delete(1), delete(99)], Watermarks::default(), 7))
            .await
            .unwrap();
    assert_eq!((out.applied, out.skipped), (1, 1));
    assert_eq!(d.ints("SELECT id FROM items ORDER BY id").await, vec![2, 3]);
    assert_eq!(d.strings("SELECT unsynced FROM items WHERE id = 2").await, vec!["keep"]);
    assert_eq!(d.tracking("items").await.iter().find(|r| r.0 == 1).unwrap().2, "hub");
    assert_eq!(d.ep.watermarks("g", "hub", &t.name).await.unwrap(), Watermarks { upserts: 43, deletes: 7 });

    // An empty batch still moves the watermark.
    d.ep.apply_changes(batch(&t, ChangeKind::Delete, vec![], Watermarks::default(), 11)).await.unwrap();
    assert_eq!(d.ep.watermarks("g", "hub", &t.name).await.unwrap().deletes, 11);
}

#[tokio::test]
async fn read_changes_filters_by_origin_kind_and_range() {
    let d = db().await;
    d.exec(ITEMS).await;
    let t = d.schema("items", None).await;
    d.ep.provision(&t).await.unwrap();
    d.exec("INSERT INTO items VALUES (1, 'local', 1, NULL)").await; // v1, local
    let four = vec![Value::Integer(2), "m1".into(), Value::Integer(2), Value::Null];
    let five = vec![Value::Integer(3), "m2".into(), Value::Integer(3), Value::Null];
    let mut b = batch(&t, ChangeKind::Upsert, vec![upsert(four, 1)], Watermarks::default(), 1);
    b.peer = "m1";
    d.ep.apply_changes(b).await.unwrap(); // v2, origin m1
    let mut b = batch(&t, ChangeKind::Upsert, vec![upsert(five, 1)], Watermarks::default(), 1);
    b.peer = "m2";
    d.ep.apply_changes(b).await.unwrap(); // v3, origin m2
    d.exec("DELETE FROM items WHERE id = 1").await; // v4, local delete

    let keys = |changes: Vec<Change>| changes.into_iter().map(|c| (c.key[0].clone(), c.origin)).collect::<Vec<_>>();
    assert_eq!(keys(d.read(&t, ChangeKind::Upsert, 0, &OriginFilter::LocalOnly).await), vec![]);
    assert_eq!(
        keys(d.read(&t, ChangeKind::Upsert, 0, &OriginFilter::NotFrom("m1".into())).await),
        vec![(Value::Integer(3), "m2".to_string())]
    );
    assert_eq!(keys(d.read(&t, ChangeKind::Upsert, 0, &OriginFilter::NotFrom("x".into())).await).len(), 2);
    assert_eq!(keys(d.read(&t, ChangeKind::Upsert, 2, &OriginFilter::NotFrom("x".into())).await).len(), 1);
    assert_eq!(
        keys(d.read(&t, ChangeKind::Delete, 0, &OriginFilter::LocalOnly).await),
        vec![(Value::Integer(1), String::new())]
    );
    assert_eq!(keys(d.read(&t, ChangeKind::Delete, 4, &OriginFilter::LocalOnly).await), vec![]);
    let origin = OriginFilter::NotFrom("x".into());
    let limited =
        d.ep.read_changes(ReadRequest {
            table: &t,
            kind: ChangeKind::Upsert,
            after: 0,
            after_key: None,
            up_to: 2,
            origin: &origin,
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(limited.len(), 1);
    assert_eq!(limited[0].version, 2);
    let limited =
        d.ep.read_changes(ReadRequest {
            table: &t,
            kind: ChangeKind::Upsert,
            after: 0,
            after_key: None,
            up_to: 9,
            origin: &origin,
            limit: 1,
        })
        .await
        .unwrap();
    assert_eq!(limited.len(), 1);

    let count = |after, origin| {
        let (ep, t) = (&d.ep, &t);
        async move { ep.count_changes(t, after, &origin).await.unwrap() }
    };
    assert_eq!(count(Watermarks::default(), OriginFilter::LocalOnly).await, 1);
    assert_eq!(count(Watermarks::default(), OriginFilter::NotFrom("m1".into())).await, 2);
    assert_eq!(count(Watermarks { upserts: 2, deletes: 4 }, OriginFilter::NotFrom("q".into())).await, 1);
}

#[tokio::test]
async fn conflicts_are_judged_by_the_core() {
    let d = db().await;
    d.exec(ITEMS).await;
    let t = d.schema("items", Some(&["a", "b"])).await;
    d.ep.provision(&t).await.unwrap();
    d.exec("INSERT INTO items VALUES (1, 'mine', 1, NULL), (2, 'same', 2, NULL), (3, 'old', 3, NULL), (4, 'mine', 4, NULL)").await;
    // The peer has seen version 3 (key 3) but not 1, 2 or 4... except 3 is older.
    d.exec("UPDATE items SET a = 'mine4' WHERE id = 4").await; // v5
    let received = Watermarks { upserts: 3, deletes: 0 };
    // Key 1 (v1) and 2 (v2) are "seen"; bump them so they are not.
    d.exec("UPDATE items SET b = 10 WHERE id = 1").await; // v6
    d.exec("UPDATE items SET b = 20 WHERE id = 2").await; // v7
    let changes = vec![
        upsert(row(1, "theirs", 10), 1), // conflict: local v6 unseen
        upsert(row(2, "same", 20), 1),   // equal rows: skipped
        upsert(row(3, "theirs3", 3), 1), // local v3 already seen: plain apply
        upsert(row(5, "new", 5), 1),     // no tracking row: plain apply
    ];
    let out = d.ep.apply_changes(batch(&t, ChangeKind::Upsert, changes, received, 100)).await.unwrap();
    assert_eq!(out.conflicts.len(), 1, "{:?}", out.conflicts);
    let c = &out.conflicts[0];
    assert_eq!(c.key, vec![Value::Integer(1)]);
    assert_eq!(c.winner, Side::Hub);
    assert_eq!(c.member_row, Some(row(1, "mine", 10)));
    assert_eq!(c.hub_row, Some(row(1, "theirs", 10)));
    assert_eq!((out.applied, out.skipped), (3, 1));
    assert_eq!(d.strings("SELECT a FROM items ORDER BY id").await, vec!["theirs", "same", "theirs3", "mine4", "new"]);

    // MemberWin at the member: the local row stays, the conflict is still reported.
    d.exec("UPDATE items SET a = 'mine again' WHERE id = 4").await;
    let mut b = batch(&t, ChangeKind::Upsert, vec![upsert(row(4, "theirs", 4), 1)], received, 101);
    b.resolver = ConflictResolver { policy: ConflictPolicy::MemberWin, receiver: Side::Member };
    let out = d.ep.apply_changes(b).await.unwrap();
    assert_eq!((out.applied, out.skipped, out.conflicts.len()), (0, 0, 1));
    assert_eq!(out.conflicts[0].winner, Side::Member);
    assert_eq!(d.strings("SELECT a FROM items WHERE id = 4").await, vec!["mine again"]);

    // Update/delete: a delete arriving for a locally updated row.
    let mut b = batch(&t, ChangeKind::Delete, vec![delete(4)], received, 102);
    b.resolver = ConflictResolver { policy: ConflictPolicy::HubWin, receiver: Side::Member };
    let out = d.ep.apply_changes(b).await.unwrap();
    assert_eq!((out.applied, out.conflicts.len()), (1, 1));
    assert_eq!(out.conflicts[0].hub_row, None);
    assert_eq!(d.ints("SELECT count(*) FROM items WHERE id = 4").await, vec![0]);

    // Delete/update: an upsert arriving for a locally deleted row.
    d.exec("DELETE FROM items WHERE id = 5").await;
    let out =
        d.ep.apply_changes(batch(&t, ChangeKind::Upsert, vec![upsert(row(5, "back", 5), 1)], received, 103))
            .await
            .unwrap();
    assert_eq!(out.conflicts.len(), 1);
    assert_eq!(out.conflicts[0].member_row, None);
    assert_eq!(d.strings("SELECT a FROM items WHERE id = 5").await, vec!["back"]);
}

#[tokio::test]
async fn a_failed_apply_keeps_neither_data_nor_watermark() {
    let d = db().await;
    d.exec(ITEMS).await;
    let t = d.schema("items", Some(&["a", "b"])).await;
    d.ep.provision(&t).await.unwrap();
    d.ep.apply_changes(batch(&t, ChangeKind::Upsert, vec![upsert(row(1, "a", 1), 1)], Watermarks::default(), 5))
        .await
        .unwrap();
    let before = (d.tracking("items").await, d.ep.snapshot_version().await.unwrap());
    let bad = vec![upsert(row(2, "ok", 2), 1), upsert(vec![Value::Integer(3), Value::Null, Value::Integer(3)], 1)];
    let err = d.ep.apply_changes(batch(&t, ChangeKind::Upsert, bad, Watermarks::default(), 9)).await.unwrap_err();
    assert!(err.to_string().contains("items"), "{err}");
    assert!(err.to_string().contains("NOT NULL"), "{err}");
    assert_eq!(d.ints("SELECT id FROM items").await, vec![1]);
    assert_eq!(d.ep.watermarks("g", "hub", &t.name).await.unwrap().upserts, 5);
    assert_eq!((d.tracking("items").await, d.ep.snapshot_version().await.unwrap()), before);
    assert_eq!(d.ints("SELECT count(*) FROM hubsync_origin").await, vec![0]);
    // The endpoint stays usable after the failure.
    d.ep.apply_changes(batch(&t, ChangeKind::Upsert, vec![upsert(row(2, "ok", 2), 1)], Watermarks::default(), 9))
        .await
        .unwrap();
    assert_eq!(d.ints("SELECT id FROM items ORDER BY id").await, vec![1, 2]);
}

#[tokio::test]
async fn foreign_keys_are_checked_at_commit() {
    let d = db().await;
    d.exec("CREATE TABLE parent (id INTEGER PRIMARY KEY); CREATE TABLE child (id INTEGER PRIMARY KEY, p INTEGER REFERENCES parent(id))").await;
    let child = d.schema("child", None).await;
    assert_eq!(child.foreign_keys[0].referenced_table, TableName::new("parent"));
    d.ep.provision(&child).await.unwrap();
    let orphan = vec![upsert(vec![Value::Integer(1), Value::Integer(7)], 1)];
    let err =
        d.ep.apply_changes(batch(&child, ChangeKind::Upsert, orphan, Watermarks::default(), 3)).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::ForeignKeyViolation, "{err}");
    assert_eq!(d.ints("SELECT count(*) FROM child").await, vec![0]);
    assert!(d.ep.watermarks("g", "hub", &child.name).await.unwrap().is_zero());
    // Self-referencing rows may come in any order within a batch.
    d.exec("CREATE TABLE node (id INTEGER PRIMARY KEY, up INTEGER REFERENCES node(id))").await;
    let node = d.schema("node", None).await;
    d.ep.provision(&node).await.unwrap();
    let rows =
        vec![upsert(vec![Value::Integer(2), Value::Integer(1)], 1), upsert(vec![Value::Integer(1), Value::Null], 1)];
    let out = d.ep.apply_changes(batch(&node, ChangeKind::Upsert, rows, Watermarks::default(), 3)).await.unwrap();
    assert_eq!(out.applied, 2);
}

async fn items_with_rows(n: i64) -> (Db, TableSchema) {
    let d = db().await;
    d.exec(ITEMS).await;
    d.exec(&format!(
        "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {n}) \
         INSERT INTO items SELECT i, 'row ' || i, i * 3, 'u' FROM s"
    ))
    .await;
    let t = d.schema("items", Some(&["a", "b"])).await;
    d.ep.provision(&t).await.unwrap();
    (d, t)
}

#[tokio::test]
async fn bulk_copy_round_trips_and_rolls_back_an_unfinished_stream() {
    let (hub, t) = items_with_rows(25_000).await;
    let member = db().await;
    member.ep.create_table(&t).await.unwrap();
    assert!(member.ep.is_empty(&t.name).await.unwrap());

    let (tx, rx) = mpsc::channel(4);
    let target = BulkTarget { scope: "g", peer: "hub", table: &t, record_tracking: true };
    let (sent, loaded) = tokio::join!(hub.ep.bulk_read(&t, 1000, tx), member.ep.bulk_load(target, rx));
    assert_eq!((sent.unwrap(), loaded.unwrap()), (25_000, 25_000));
    assert_eq!(member.ints("SELECT count(*) FROM items").await, vec![25_000]);
    assert_eq!(member.strings("SELECT a FROM items WHERE id = 25000").await, vec!["row 25000"]);
    assert_eq!(member.ints("SELECT sum(b) FROM items").await, hub.ints("SELECT sum(b) FROM items").await);
    let snapshot = hub.ep.snapshot_version().await.unwrap();
    assert_eq!(
        member.ep.watermarks("g", "hub", &t.name).await.unwrap(),
        Watermarks { upserts: snapshot, deletes: snapshot }
    );
    let tracking = member.tracking("items").await;
    assert_eq!(tracking.len(), 25_000);
    assert!(tracking.iter().all(|r| r.2 == "hub" && r.3 == 0));
    // The triggers are back after the load.
    member.exec("UPDATE items SET a = 'changed' WHERE id = 1").await;
    assert_eq!(member.tracking("items").await.last().unwrap(), &(1, 25_001, String::new(), 0));

    // A stream that closes without End leaves the target as it was.
    let other = db().await;
    other.ep.create_table(&t).await.unwrap();
    let (tx, rx) = mpsc::channel(4);
    let target = BulkTarget { scope: "g", peer: "hub", table: &t, record_tracking: false };
    let feeder = async move {
        tx.send(BulkItem::Snapshot(7)).await.unwrap();
        tx.send(BulkItem::Rows(vec![row(1, "a", 1), row(2, "b", 2)])).await.unwrap();
        drop(tx);
    };
    let (_, loaded) = tokio::join!(feeder, other.ep.bulk_load(target, rx));
    assert!(loaded.unwrap_err().to_string().contains("ended before"));
    assert!(other.ep.is_empty(&t.name).await.unwrap());
    assert!(other.ep.watermarks("g", "hub", &t.name).await.unwrap().is_zero());

    // Without tracking: rows load, no tracking rows, local edits are tracked.
    let (tx, rx) = mpsc::channel(4);
    let target = BulkTarget { scope: "g", peer: "hub", table: &t, record_tracking: false };
    let feeder = async move {
        tx.send(BulkItem::Snapshot(7)).await.unwrap();
        tx.send(BulkItem::Rows(vec![row(1, "a", 1), row(2, "b", 2)])).await.unwrap();
        tx.send(BulkItem::End).await.unwrap();
    };
    let (_, loaded) = tokio::join!(feeder, other.ep.bulk_load(target, rx));
    assert_eq!(loaded.unwrap(), 2);
    assert!(other.tracking("items").await.is_empty());
    other.exec("DELETE FROM items WHERE id = 2").await;
    assert_eq!(other.tracking("items").await, vec![(2, 1, String::new(), 1)]);
    assert_eq!(other.ep.watermarks("g", "hub", &t.name).await.unwrap(), Watermarks { upserts: 7, deletes: 7 });
    // Provisioning again does not turn the copied rows into local changes.
    other.ep.provision(&t).await.unwrap();
    assert_eq!(other.tracking("items").await, vec![(2, 1, String::new(), 1)]);
}

#[tokio::test]
async fn bulk_read_stops_when_the_receiver_goes() {
    let (hub, t) = items_with_rows(5_000).await;
    let (tx, mut rx) = mpsc::channel(1);
    let reader = hub.ep.bulk_read(&t, 100, tx);
    let consumer = async move {
        assert!(matches!(rx.recv().await, Some(BulkItem::Snapshot(5_000))));
        assert!(matches!(rx.recv().await, Some(BulkItem::Rows(r)) if r.len() == 100));
        drop(rx);
    };
    let (result, _) = tokio::join!(reader, consumer);
    assert!(result.is_err());
}

#[tokio::test]
async fn deprovision_leaves_only_user_objects() {
    let d = db().await;
    d.exec(ITEMS).await;
    d.exec("CREATE TABLE \"other t\" (k TEXT PRIMARY KEY, v BLOB); CREATE INDEX ix_items_b ON items(b)").await;
    let before = d.master().await;
    let items = d.schema("items", None).await;
    let other = d.schema("other t", None).await;
    d.ep.provision(&items).await.unwrap();
    d.ep.provision(&other).await.unwrap();
    d.ep.record_session(
        "g",
        "hub",
        &SessionRecord {
            state: MemberState::SyncSucceeded,
            last_attempt_at: 1,
            last_success_at: Some(2),
            uploaded: 3,
            downloaded: 4,
            message: String::new(),
        },
    )
    .await
    .unwrap();
    d.ep.apply_changes(batch(&items, ChangeKind::Upsert, vec![], Watermarks::default(), 3)).await.unwrap();
    assert!(d.master().await.len() > before.len() + 10);

    let dropped = d.ep.deprovision(std::slice::from_ref(&items.name)).await.unwrap();
    assert_eq!(dropped.len(), 6, "{dropped:?}");
    assert!(!d.ep.is_provisioned(&items.name).await.unwrap());
    assert!(d.ep.is_provisioned(&other.name).await.unwrap());
    assert!(d.ep.watermarks("g", "hub", &items.name).await.unwrap().is_zero());
    let dropped = d.ep.deprovision(std::slice::from_ref(&other.name)).await.unwrap();
    assert!(
        dropped.contains(&"hubsync_counter".to_string()) && dropped.contains(&"hubsync_session".to_string()),
        "{dropped:?}"
    );
    assert_eq!(d.master().await, before);
    assert_eq!(d.ep.snapshot_version().await.unwrap(), 0);
    assert_eq!(d.ep.session_record("g", "hub").await.unwrap(), None);
}

#[tokio::test]
async fn session_records_round_trip() {
    let d = db().await;
    assert_eq!(d.ep.session_record("g", "m").await.unwrap(), None);
    let record = SessionRecord {
        state: MemberState::SyncFailed,
        last_attempt_at: 1_700_000_000_000_000,
        last_success_at: None,
        uploaded: 12,
        downloaded: 34,
        message: "boom".into(),
    };
    d.ep.record_session("g", "m", &record).await.unwrap();
    assert_eq!(d.ep.session_record("g", "m").await.unwrap(), Some(record.clone()));
    let newer = SessionRecord { state: MemberState::SyncSucceeded, last_success_at: Some(5), ..record };
    d.ep.record_session("g", "m", &newer).await.unwrap();
    assert_eq!(d.ep.session_record("g", "m").await.unwrap(), Some(newer));
}

fn tricky_values() -> Vec<Vec<Value>> {
    let mut blob = vec![0u8, 1, 0, 255, 0];
    blob.extend(std::iter::repeat_n(0u8, 1000));
    vec![
        // id, t TEXT, b BLOB, i INTEGER, r REAL, d DECIMAL(30,9) as text, dt DATE, ts TIMESTAMP, x (no type)
        vec![
            Value::Integer(1),
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
        ],
        vec![
            Value::Integer(2),
            Value::Text(String::new()),
            Value::Blob(vec![]),
            Value::Integer(i64::MIN),
            Value::Real(1e308),
            Value::Text("12345678901234567890.123456789".into()),
            Value::Text("2024-02-29".into()),
            Value::Text("2024-02-29 23:59:59.123456+02:00".into()),
            Value::Real(-0.0),
        ],
        vec![
            Value::Integer(3),
            Value::Text("ünïcødé ✓ 🚀 \u{0} nul inside".into()),
            Value::Blob(blob),
            Value::Integer(i64::MAX),
            Value::Real(-1.5e-300),
            Value::Text("-0.000000001".into()),
            Value::Text("1970-01-01".into()),
            Value::Text("1999-12-31T23:59:59Z".into()),
            Value::Text("text in an untyped column".into()),
        ],
        vec![
            Value::Integer(4),
            Value::Text("x".repeat(1 << 20)),
            Value::Blob(vec![7; 1 << 20]),
            Value::Integer(0),
            Value::Real(0.1 + 0.2),
            Value::Text("007".into()),
            Value::Text("not a date".into()),
            Value::Text(String::new()),
            Value::Blob(vec![0, 0]),
        ],
    ]
}

/// Compares value by value, printing only the short form of a mismatch (the
/// values include megabytes).
fn assert_same_values(found: &[Vec<Value>], expected: &[Vec<Value>], what: &str) {
    assert_eq!(found.len(), expected.len(), "{what}: row count");
    for (r, (f, e)) in found.iter().zip(expected).enumerate() {
        assert_eq!(f.len(), e.len(), "{what}: row {r} width");
        for (c, (fv, ev)) in f.iter().zip(e).enumerate() {
            assert!(fv == ev, "{what}: row {r} column {c}: {} != {}", fv.display_short(), ev.display_short());
        }
    }
}

const VALUES_DDL: &str = "CREATE TABLE vals (id INTEGER PRIMARY KEY, t TEXT, b BLOB, i INTEGER, r REAL, \
                          d DECIMAL_TEXT(30,9), dt DATE, ts TIMESTAMP, x)";

#[tokio::test]
async fn values_round_trip_bit_exact() {
    let hub = db().await;
    hub.exec(VALUES_DDL).await;
    let t = hub.schema("vals", None).await;
    assert_eq!(t.columns[5].canonical, CanonicalType::Decimal { precision: Some(30), scale: Some(9) });
    hub.ep.provision(&t).await.unwrap();
    let changes: Vec<Change> = tricky_values().into_iter().map(|r| upsert(r, 1)).collect();
    hub.ep.apply_changes(batch(&t, ChangeKind::Upsert, changes, Watermarks::default(), 1)).await.unwrap();
    let read = hub.read(&t, ChangeKind::Upsert, 0, &OriginFilter::NotFrom("x".into())).await;
    let images: Vec<Vec<Value>> = read.iter().map(|c| c.row.clone().unwrap()).collect();
    assert_same_values(&images, &tricky_values(), "read back");
    assert_eq!(hub.strings("SELECT typeof(d) FROM vals WHERE id = 2").await, vec!["text"]);

    // Through a second database by apply, and a third by bulk copy.
    let member = db().await;
    member.ep.create_table(&t).await.unwrap();
    let mt = member.schema("vals", None).await;
    assert_eq!(mt.columns, t.columns);
    member.ep.provision(&mt).await.unwrap();
    let out =
        member.ep.apply_changes(batch(&mt, ChangeKind::Upsert, read.clone(), Watermarks::default(), 4)).await.unwrap();
    assert_eq!(out.applied, 4);
    let again = member.read(&mt, ChangeKind::Upsert, 0, &OriginFilter::NotFrom("x".into())).await;
    let images: Vec<Vec<Value>> = again.iter().map(|c| c.row.clone().unwrap()).collect();
    assert_same_values(&images, &tricky_values(), "after apply");
    // Re-applying identical values writes nothing.
    let out = member.ep.apply_changes(batch(&mt, ChangeKind::Upsert, read, Watermarks::default(), 5)).await.unwrap();
    assert_eq!((out.applied, out.skipped), (0, 4));

    let third = db().await;
    third.ep.create_table(&t).await.unwrap();
    let (tx, rx) = mpsc::channel(2);
    let target = BulkTarget { scope: "g", peer: "hub", table: &t, record_tracking: false };
    let (sent, loaded) = tokio::join!(hub.ep.bulk_read(&t, 3, tx), third.ep.bulk_load(target, rx));
    assert_eq!((sent.unwrap(), loaded.unwrap()), (4, 4));
    let (tx, mut rx) = mpsc::channel(16);
    assert_eq!(third.ep.bulk_read(&t, 10, tx).await.unwrap(), 4);
    let mut copied = Vec::new();
    while let Some(item) = rx.recv().await {
        if let BulkItem::Rows(rows) = item {
            copied.extend(rows);
        }
    }
    assert_same_values(&copied, &tricky_values(), "after bulk copy");
}

#[tokio::test]
async fn odd_names_work_everywhere() {
    let names = ["we\"ird 'name'.[x]-ü", "select", "order", "a.b"];
    for name in names {
        let hub = db().await;
        let ddl = format!(
            "CREATE TABLE {} ({} INTEGER, {} TEXT, {} TEXT, {} INTEGER, {} TEXT, PRIMARY KEY ({}, {}))",
            quote_ident(name),
            quote_ident("order"),
            quote_ident("select"),
            quote_ident("a \"q\" 'b'"),
            quote_ident("pk_1"),
            quote_ident("ü-[col]"),
            quote_ident("order"),
            quote_ident("select"),
        );
        hub.exec(&ddl).await;
        hub.exec(&format!(
            "CREATE INDEX {} ON {} ({})",
            quote_ident(&format!("ix {name}")),
            quote_ident(name),
            quote_ident("ü-[col]")
        ))
        .await;
        let t = hub.schema(name, None).await;
        assert_eq!(t.primary_key, vec!["order".to_string(), "select".to_string()]);
        assert_eq!(t.indexes.len(), 1);
        hub.ep.provision(&t).await.unwrap();
        hub.exec(&format!("INSERT INTO {} VALUES (1, 'k', 'v', 5, 'w'), (2, 'k', 'v2', 6, 'w2')", quote_ident(name)))
            .await;
        hub.exec(&format!(
            "UPDATE {} SET {} = 'k2' WHERE {} = 2",
            quote_ident(name),
            quote_ident("select"),
            quote_ident("order")
        ))
        .await;
        hub.exec(&format!("DELETE FROM {} WHERE {} = 1", quote_ident(name), quote_ident("order"))).await;

        let member = db().await;
        member.ep.create_table(&t).await.unwrap();
        let mt = member.schema(name, None).await;
        assert_eq!(mt.indexes.len(), 1, "{name}");
        member.ep.provision(&mt).await.unwrap();
        let origin = OriginFilter::NotFrom("m".into());
        for kind in [ChangeKind::Delete, ChangeKind::Upsert] {
            let changes = hub.read(&t, kind, 0, &origin).await;
            let expected = if kind == ChangeKind::Delete { 2 } else { 1 };
            assert_eq!(changes.len(), expected, "{name} {kind:?}");
            member.ep.apply_changes(batch(&mt, kind, changes, Watermarks::default(), 9)).await.unwrap();
        }
        let rows = member
            .strings(&format!(
                "SELECT {} || '/' || {} FROM {}",
                quote_ident("select"),
                quote_ident("ü-[col]"),
                quote_ident(name)
            ))
            .await;
        assert_eq!(rows, vec!["k2/w2"], "{name}");
        assert_eq!(member.ep.watermarks("g", "hub", &mt.name).await.unwrap(), Watermarks { upserts: 9, deletes: 9 });
        let dropped = member.ep.deprovision(std::slice::from_ref(&mt.name)).await.unwrap();
        assert_eq!(dropped.len(), 10, "{dropped:?}");
    }
}

#[tokio::test]
async fn introspection_reads_types_keys_indexes_and_foreign_keys() {
    let d = db().await;
    d.exec(
        "CREATE TABLE p (a TEXT, b INT, PRIMARY KEY (b, a)); \
         CREATE TABLE c (id INTEGER PRIMARY KEY, price DECIMAL(10,2) NOT NULL, flag BOOLEAN, at DATETIME, \
           code VARCHAR(8) UNIQUE, pa TEXT, pb INT, raw, geo GEOMETRY, FOREIGN KEY (pb, pa) REFERENCES p); \
         CREATE INDEX c_at ON c(at, flag); CREATE INDEX c_expr ON c(lower(code)); CREATE INDEX c_part ON c(pa) WHERE pa IS NOT NULL; \
         CREATE TABLE norowkey (x TEXT)",
    )
    .await;
    let c = d.ep.introspect(&TableName::new("c")).await.unwrap().unwrap();
    assert_eq!(c.engine, "sqlite");
    assert_eq!(c.primary_key, vec!["id"]);
    let types: Vec<(&str, &CanonicalType, bool)> =
        c.columns.iter().map(|c| (c.name.as_str(), &c.canonical, c.nullable)).collect();
    assert_eq!(types[0], ("id", &CanonicalType::Integer, false));
    assert_eq!(types[1], ("price", &CanonicalType::Decimal { precision: Some(10), scale: Some(2) }, false));
    assert_eq!(types[2], ("flag", &CanonicalType::Boolean, true));
    assert_eq!(types[3].1, &CanonicalType::Timestamp);
    assert_eq!(types[4].1, &CanonicalType::Text);
    assert_eq!(types[7].1, &CanonicalType::Blob);
    assert_eq!(types[8].1, &CanonicalType::Other("GEOMETRY".into()));
    let idx: Vec<(&str, Vec<&str>, bool)> =
        c.indexes.iter().map(|i| (i.name.as_str(), i.columns.iter().map(String::as_str).collect(), i.unique)).collect();
    assert_eq!(idx.len(), 2, "{idx:?}");
    assert!(idx.contains(&("c_at", vec!["at", "flag"], false)));
    assert!(idx.iter().any(|(_, cols, unique)| cols == &vec!["code"] && *unique));
    assert_eq!(c.foreign_keys.len(), 1);
    assert_eq!(c.foreign_keys[0].columns, vec!["pb", "pa"]);
    assert_eq!(c.foreign_keys[0].referenced_columns, vec!["b", "a"]);
    let p = d.ep.introspect(&TableName::new("p")).await.unwrap().unwrap();
    assert_eq!(p.primary_key, vec!["b", "a"]);
    let norowkey = d.ep.introspect(&TableName::new("norowkey")).await.unwrap().unwrap();
    assert!(norowkey.primary_key.is_empty());
    assert!(d.ep.introspect(&TableName::new("missing")).await.unwrap().is_none());
    let main_c = TableName { schema: Some("main".into()), name: "c".into() };
    assert!(d.ep.introspect(&main_c).await.unwrap().is_some());
    let aux = TableName { schema: Some("aux".into()), name: "c".into() };
    assert_eq!(d.ep.introspect(&aux).await.unwrap_err().kind, ErrorKind::Schema);
    // A table without a key cannot be provisioned, and says so.
    let err = d.ep.provision(&norowkey).await.unwrap_err();
    assert!(err.to_string().contains("primary key"), "{err}");
    let err = d.ep.provision(&TableSchema { name: TableName::new("missing"), ..p.clone() }).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::TableMissing, "{err}");
    let err = d.ep.is_empty(&TableName::new("missing")).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::TableMissing, "{err}");
    let err = d.ep.count_changes(&p, Watermarks::default(), &OriginFilter::LocalOnly).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotProvisioned, "{err}");

    // Recreated elsewhere from a foreign engine's schema: unmappable types fail clearly.
    let other = db().await;
    let foreign = TableSchema { engine: "postgres".into(), ..c.clone() };
    let err = other.ep.create_table(&foreign).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::UnmappableType);
    assert!(err.to_string().contains("geo"), "{err}");
    let without_geo = foreign.project(Some(&["price".into(), "flag".into(), "at".into(), "code".into()])).unwrap();
    other.ep.create_table(&without_geo).await.unwrap();
    let created = other.ep.introspect(&TableName::new("c")).await.unwrap().unwrap();
    assert_eq!(
        created.columns.iter().map(|c| c.canonical.clone()).collect::<Vec<_>>(),
        without_geo.columns.iter().map(|c| c.canonical.clone()).collect::<Vec<_>>()
    );
    assert_eq!(created.indexes.len(), 2);
}

#[tokio::test]
async fn writes_held_open_elsewhere_are_not_skipped() {
    // SQLite serialises writers, so a second writer waits instead of taking a
    // later version and committing first; the snapshot never passes a pending write.
    let (d, t) = items_with_rows(1).await;
    let mut open = d.ep.pool().begin_with("BEGIN IMMEDIATE").await.unwrap();
    sqlx::query("INSERT INTO items VALUES (2, 'pending', 2, NULL)").execute(&mut *open).await.unwrap();
    let snapshot = d.ep.snapshot_version().await.unwrap();
    assert_eq!(snapshot, 1);
    let changes = d.read(&t, ChangeKind::Upsert, 0, &OriginFilter::LocalOnly).await;
    assert_eq!(changes.len(), 1);
    open.commit().await.unwrap();
    let later = d.read(&t, ChangeKind::Upsert, snapshot, &OriginFilter::LocalOnly).await;
    assert_eq!(later.len(), 1);
    assert_eq!(later[0].version, 2);
}

/// Every `hubsync sync` provisions again: with the same column selection the
/// schema must not change (a schema change makes every connection of the
/// application re-prepare), with another one the triggers are rebuilt.
#[tokio::test]
async fn provisioning_again_changes_the_schema_only_when_the_selection_changed() {
    let d = db().await;
    d.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT, b TEXT)").await;
    let full = d.schema("t", None).await;
    d.ep.provision(&full).await.unwrap();
    let version = d.ints("PRAGMA schema_version").await;
    d.ep.provision(&full).await.unwrap();
    assert_eq!(d.ints("PRAGMA schema_version").await, version, "provisioning again changed the schema");
    let narrower = d.schema("t", Some(&["a"])).await;
    d.ep.provision(&narrower).await.unwrap();
    assert_ne!(d.ints("PRAGMA schema_version").await, version, "a new selection must rebuild the triggers");
    // Only the selected column is tracked now.
    d.exec("INSERT INTO t VALUES (1, 'x', 'y')").await;
    let before = d.tracking("t").await;
    d.exec("UPDATE t SET b = 'z' WHERE id = 1").await;
    assert_eq!(d.tracking("t").await, before, "an update of an unselected column is not a change");
}

#[tokio::test]
async fn list_tables_names_user_tables_and_leaves_out_hubsync_objects() {
    let d = db().await;
    d.exec(ITEMS).await;
    d.exec(
        "CREATE TABLE \"other t\" (k TEXT PRIMARY KEY); CREATE TABLE Hubsync_mine (x INT); CREATE VIEW v AS SELECT 1",
    )
    .await;
    let items = d.schema("items", None).await;
    d.ep.provision(&items).await.unwrap();
    assert!(d.master().await.iter().any(|o| o.starts_with("table hubsync_")));
    let names: Vec<String> = d.ep.list_tables().await.unwrap().iter().map(|t| t.to_string()).collect();
    assert_eq!(names, ["Hubsync_mine", "items", "other t"]);
}

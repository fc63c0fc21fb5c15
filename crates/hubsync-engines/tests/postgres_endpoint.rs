//! Engine-level tests of the PostgreSQL endpoint: introspection of odd names
//! and types, canonical values, statement-level tracking, origins, commit
//! safety through the snapshot's xmin, error kinds, PG-to-PG copies of types
//! without a canonical form, and deprovisioning. Each test runs in its own
//! database (see `support/pg_service.rs` for the skip/fail rule).

#![allow(clippy::unwrap_used)]

#[path = "support/pg_service.rs"]
mod pg_service;

use hubsync_core::session::{Direction, LogObserver, SessionOptions, sync_member};
use hubsync_core::{
    ApplyBatch, BulkTarget, CanonicalType, Change, ChangeKind, ConflictPolicy, ConflictResolver, Endpoint, ErrorKind,
    HUB_ORIGIN, Held, OriginFilter, ReadRequest, Side, TableName, TableSchema, TableSelection, Value, Version,
    Watermarks, provision_hub, provision_member, resolve_tables,
};
use hubsync_engines::postgres::TrackingNames;
use hubsync_engines::{PgEndpoint, SqliteEndpoint};
use sqlx::{AssertSqlSafe, Connection, PgConnection, Row};

struct Db {
    name: String,
    url: String,
    ep: PgEndpoint,
}

impl Db {
    async fn exec(&self, sql: &str) {
        sqlx::raw_sql(AssertSqlSafe(sql.to_string()))
            .execute(self.ep.pool())
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    async fn strings(&self, sql: &str) -> Vec<String> {
        let rows = sqlx::query(AssertSqlSafe(sql.to_string())).fetch_all(self.ep.pool()).await.unwrap();
        rows.iter().map(|r| r.get::<String, _>(0)).collect()
    }

    async fn schema(&self, table: &TableName) -> TableSchema {
        self.ep.introspect(table).await.unwrap().unwrap()
    }

    async fn read(&self, table: &TableSchema, kind: ChangeKind, origin: &OriginFilter) -> Vec<Change> {
        let up_to = self.ep.snapshot_version().await.unwrap();
        let request = ReadRequest { table, kind, after: 0, after_key: None, up_to, origin, limit: 1000 };
        self.ep.read_changes(request).await.unwrap()
    }

    async fn finish(self) {
        self.ep.close().await;
        pg_service::drop_database(&self.name).await;
    }
}

/// A fresh database, or `None` (skipped) when the server is unreachable.
async fn db(label: &str) -> Option<Db> {
    if pg_service::server_unavailable().await.is_some() {
        return None;
    }
    let (name, url) = pg_service::create_database(label).await;
    let ep = PgEndpoint::open(&url, url.clone()).await.unwrap();
    Some(Db { name, url, ep })
}

fn batch<'a>(table: &'a TableSchema, kind: ChangeKind, peer: &'a str, changes: Vec<Change>) -> ApplyBatch<'a> {
    ApplyBatch {
        scope: "s",
        peer,
        table,
        kind,
        changes: changes.into(),
        peer_has_received: Watermarks::default(),
        resolver: ConflictResolver { policy: ConflictPolicy::HubWin, receiver: Side::Member },
        watermark: 1,
    }
}

fn upsert(row: Vec<Value>) -> Change {
    Change { key: vec![row[0].clone()], version: 1, origin: String::new(), changed_at: 42, row: Some(row) }
}

fn text(s: &str) -> Value {
    Value::Text(s.to_string())
}

const ODD_SCHEMA: &str = "odd \"schema\".x";
const ODD_TABLE: &str = "my table.select ü";

async fn odd_table(d: &Db) -> TableName {
    d.exec(
        r#"CREATE SCHEMA "odd ""schema"".x";
           CREATE TYPE "odd ""schema"".x"."mood" AS ENUM ('sad', 'happy');
           CREATE TABLE "odd ""schema"".x"."my table.select ü" (
             "id" bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
             "serial" serial,
             "price" numeric(10,2),
             "at" timestamptz,
             "u" uuid,
             "doc" jsonb,
             "raw" bytea,
             "ok" boolean,
             "tags" integer[],
             "mood" "odd ""schema"".x"."mood",
             "day" date,
             "t" time(3),
             "ts" timestamp,
             "f4" real)"#,
    )
    .await;
    TableName { schema: Some(ODD_SCHEMA.into()), name: ODD_TABLE.into() }
}

#[tokio::test]
async fn odd_names_and_types_introspect_and_read_canonically() {
    let Some(d) = db("types").await else { return };
    let name = odd_table(&d).await;
    let schema = d.schema(&name).await;
    assert_eq!(schema.name, name);
    assert_eq!(schema.primary_key, vec!["id"]);
    let canon: Vec<(&str, &CanonicalType)> = schema.columns.iter().map(|c| (c.name.as_str(), &c.canonical)).collect();
    assert_eq!(canon[0], ("id", &CanonicalType::Integer));
    assert_eq!(canon[2], ("price", &CanonicalType::Decimal { precision: Some(10), scale: Some(2) }));
    assert_eq!(canon[3], ("at", &CanonicalType::TimestampTz));
    assert_eq!(canon[4], ("u", &CanonicalType::Uuid));
    assert_eq!(canon[5], ("doc", &CanonicalType::Json));
    assert_eq!(canon[6], ("raw", &CanonicalType::Blob));
    assert_eq!(canon[7], ("ok", &CanonicalType::Boolean));
    assert_eq!(canon[8], ("tags", &CanonicalType::Other("integer[]".into())));
    assert!(matches!(canon[9].1, CanonicalType::Other(t) if t.contains("mood")), "{:?}", canon[9]);
    // The default schema is reported as asked: unqualified stays unqualified.
    d.exec(r#"CREATE TABLE "plain" ("id" int PRIMARY KEY)"#).await;
    assert_eq!(d.schema(&TableName::new("plain")).await.name.schema, None);

    d.ep.provision(&schema).await.unwrap();
    d.exec(
        r#"INSERT INTO "odd ""schema"".x"."my table.select ü"
             ("price", "at", "u", "doc", "raw", "ok", "tags", "mood", "day", "t", "ts", "f4")
           VALUES (12.5, '2026-11-23 10:11:12.5+02', 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11', '{"b": 1, "a": [1, 2]}',
                   '\x00ff00', true, '{1,2,3}', 'happy', '2026-11-23', '10:11:12.250', '2026-11-23 01:02:03', 0.5)"#,
    )
    .await;
    let changes = d.read(&schema, ChangeKind::Upsert, &OriginFilter::LocalOnly).await;
    assert_eq!(changes.len(), 1);
    let row = changes[0].row.clone().unwrap();
    assert_eq!(
        row,
        vec![
            Value::Integer(1),
            Value::Integer(1),
            text("12.50"),
            text("2026-11-23 08:11:12.5+00:00"),
            text("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
            text(r#"{"a": [1, 2], "b": 1}"#),
            Value::Blob(vec![0, 255, 0]),
            Value::Integer(1),
            text("{1,2,3}"),
            text("happy"),
            text("2026-11-23"),
            text("10:11:12.25"),
            text("2026-11-23 01:02:03"),
            Value::Real(0.5),
        ]
    );

    // Writing the canonical forms back (identity GENERATED ALWAYS included)
    // stores the same values, and the identity's sequence moves past them.
    let mut row2 = row.clone();
    row2[0] = Value::Integer(10);
    row2[1] = Value::Integer(10);
    row2[9] = text("sad");
    let outcome =
        d.ep.apply_changes(batch(&schema, ChangeKind::Upsert, "peer", vec![upsert(row2.clone())])).await.unwrap();
    assert_eq!(outcome.applied, 1);
    let changes = d.read(&schema, ChangeKind::Upsert, &OriginFilter::NotFrom("x".into())).await;
    let back = changes.iter().find(|c| c.key == vec![Value::Integer(10)]).unwrap();
    assert_eq!(back.row.as_ref().unwrap(), &row2);
    assert_eq!(back.origin, "peer");
    d.exec(r#"INSERT INTO "odd ""schema"".x"."my table.select ü" ("price") VALUES (1)"#).await;
    let ids = d
        .strings(
            r#"SELECT "id"::text || ',' || "serial"::text FROM "odd ""schema"".x"."my table.select ü" ORDER BY "id""#,
        )
        .await;
    assert_eq!(ids.last().unwrap(), "11,11", "{ids:?}");
    d.finish().await;
}

#[tokio::test]
async fn statement_triggers_track_bulk_updates_key_updates_and_origins() {
    let Some(d) = db("triggers").await else { return };
    d.exec(r#"CREATE TABLE "t" ("id" int PRIMARY KEY, "v" text, "other" text)"#).await;
    d.exec(r#"INSERT INTO "t" SELECT g, 'v' || g, 'o' FROM generate_series(1, 100) g"#).await;
    let full = d.schema(&TableName::new("t")).await;
    let schema = full.project(Some(&["v".to_string()])).unwrap();
    d.ep.provision(&schema).await.unwrap();
    assert_eq!(d.read(&schema, ChangeKind::Upsert, &OriginFilter::LocalOnly).await.len(), 100);
    let before = d.ep.snapshot_version().await.unwrap();
    // A write to an unsynced column is no change.
    d.exec(r#"UPDATE "t" SET "other" = 'x'"#).await;
    let req = |after| ReadRequest {
        table: &schema,
        kind: ChangeKind::Upsert,
        after,
        after_key: None,
        up_to: i64::MAX,
        origin: &OriginFilter::LocalOnly,
        limit: 1000,
    };
    assert!(d.ep.read_changes(req(before)).await.unwrap().is_empty());
    // One statement, one version for all its rows.
    d.exec(r#"UPDATE "t" SET "v" = "v" || '!' WHERE "id" <= 50"#).await;
    let changes = d.ep.read_changes(req(before)).await.unwrap();
    assert_eq!(changes.len(), 50);
    assert!(changes.iter().all(|c| c.version == changes[0].version));
    // Reading on after a key inside the version gives the rest of it.
    let mut cut = req(before);
    cut.after = changes[0].version;
    cut.after_key = Some(changes[9].key.clone());
    assert_eq!(d.ep.read_changes(cut).await.unwrap().len(), 40);
    // A key update: a tombstone for the old key, an upsert for the new one.
    d.exec(r#"UPDATE "t" SET "id" = 1000 WHERE "id" = 100"#).await;
    let deletes = d.read(&schema, ChangeKind::Delete, &OriginFilter::LocalOnly).await;
    assert_eq!(deletes.iter().map(|c| c.key.clone()).collect::<Vec<_>>(), vec![vec![Value::Integer(100)]]);
    let upserts = d.read(&schema, ChangeKind::Upsert, &OriginFilter::LocalOnly).await;
    assert!(upserts.iter().any(|c| c.key == vec![Value::Integer(1000)]));
    // Applied changes carry the peer as origin (here a hub's, receiving
    // from member `m1`); local ones stay local.
    let change = upsert(vec![Value::Integer(7), text("from m1")]);
    d.ep.apply_changes(batch(&schema, ChangeKind::Upsert, "m1", vec![change])).await.unwrap();
    let from_m1 = d.read(&schema, ChangeKind::Upsert, &OriginFilter::NotFrom("x".into())).await;
    let seven = from_m1.iter().find(|c| c.key == vec![Value::Integer(7)]).unwrap();
    assert_eq!((seven.origin.as_str(), seven.changed_at), ("m1", 42));
    d.exec(r#"UPDATE "t" SET "v" = 'local' WHERE "id" = 7"#).await;
    let local = d.read(&schema, ChangeKind::Upsert, &OriginFilter::LocalOnly).await;
    assert!(local.iter().any(|c| c.key == vec![Value::Integer(7)]));
    assert_eq!(d.ep.watermarks("s", "m1", &schema.name).await.unwrap().upserts, 1);
    d.finish().await;
}

/// With every column synced, the update trigger reads only the new rows and
/// a row trigger on the key logs the old keys of moved rows: one statement
/// that swaps keys, shifts them onto each other or sets a key to itself must
/// still read as the deletes and upserts the old and new rows differ by.
#[tokio::test]
async fn key_updates_log_old_keys_as_deletes_when_every_column_is_synced() {
    let Some(d) = db("keymoves").await else { return };
    d.exec(r#"CREATE TABLE "t" ("a" int, "b" text, "v" text, PRIMARY KEY ("a", "b") DEFERRABLE INITIALLY IMMEDIATE)"#)
        .await;
    d.exec(r#"INSERT INTO "t" VALUES (1, 'x', 'one'), (2, 'x', 'two'), (3, 'x', 'three'), (10, 'y', 'ten')"#).await;
    let schema = d.schema(&TableName::new("t")).await;
    d.ep.provision(&schema).await.unwrap();
    let triggers = "SELECT tgname::text FROM pg_trigger WHERE tgrelid = 't'::regclass AND NOT tgisinternal";
    assert_eq!(d.strings(triggers).await.len(), 4, "three statement triggers and the key trigger");
    let start = d.ep.snapshot_version().await.unwrap();
    d.exec(r#"UPDATE "t" SET "a" = 3 - "a" WHERE "a" IN (1, 2)"#).await;
    d.exec(r#"UPDATE "t" SET "a" = "a" + 1 WHERE "b" = 'x'"#).await;
    d.exec(r#"UPDATE "t" SET "b" = 'z' WHERE "a" = 10"#).await;
    d.exec(r#"UPDATE "t" SET "a" = "a", "v" = 'same key' WHERE "a" = 4"#).await;
    let key = |a: i64, b: &str| vec![Value::Integer(a), text(b)];
    let changes_since = |kind| {
        let schema = &schema;
        let d = &d;
        async move {
            let up_to = d.ep.snapshot_version().await.unwrap();
            let origin = OriginFilter::LocalOnly;
            let request =
                ReadRequest { table: schema, kind, after: start, after_key: None, up_to, origin: &origin, limit: 100 };
            let mut changes: Vec<(Vec<Value>, Option<Vec<Value>>)> =
                d.ep.read_changes(request).await.unwrap().into_iter().map(|c| (c.key, c.row)).collect();
            changes.sort_by_key(|(k, _)| format!("{k:?}"));
            changes
        }
    };
    let expected_upserts = vec![
        (key(10, "z"), Some(vec![Value::Integer(10), text("z"), text("ten")])),
        (key(2, "x"), Some(vec![Value::Integer(2), text("x"), text("two")])),
        (key(3, "x"), Some(vec![Value::Integer(3), text("x"), text("one")])),
        (key(4, "x"), Some(vec![Value::Integer(4), text("x"), text("same key")])),
    ];
    let expected_deletes = vec![(key(1, "x"), None), (key(10, "y"), None)];
    assert_eq!(changes_since(ChangeKind::Upsert).await, expected_upserts, "from the log");
    assert_eq!(changes_since(ChangeKind::Delete).await, expected_deletes, "from the log");
    d.ep.compact().await.unwrap();
    assert_eq!(changes_since(ChangeKind::Upsert).await, expected_upserts, "folded");
    assert_eq!(changes_since(ChangeKind::Delete).await, expected_deletes, "folded");
    d.finish().await;
}

/// Each change's (integer) key and origin, by key.
fn keys_and_origins(changes: &[Change]) -> Vec<(Value, String)> {
    let mut out: Vec<(Value, String)> = changes.iter().map(|c| (c.key[0].clone(), c.origin.clone())).collect();
    out.sort_by_key(|(k, _)| match k {
        Value::Integer(i) => *i,
        _ => i64::MAX,
    });
    out
}

#[tokio::test]
async fn a_member_records_what_its_hub_sends_once_it_is_a_hub_itself() {
    let Some(d) = db("hubrole").await else { return };
    d.exec(r#"CREATE TABLE "t" ("id" int PRIMARY KEY, "v" text)"#).await;
    d.exec(r#"INSERT INTO "t" VALUES (1, 'local'), (2, 'local')"#).await;
    let schema = d.schema(&TableName::new("t")).await;
    d.ep.provision(&schema).await.unwrap();
    let upserts = |rows: &[(i64, &str)]| -> Vec<Change> {
        rows.iter().map(|(id, v)| upsert(vec![Value::Integer(*id), text(v)])).collect()
    };
    // A member only. Its hub has received both local rows (as far as row 2
    // goes): a change to row 2 and a new row 3 are written without tracking
    // rows; row 1's local change the hub has not received is a conflict, and
    // the winner (HubWin) is written with its tracking row, as before.
    let mut first = batch(&schema, ChangeKind::Upsert, "hub", upserts(&[(1, "h1"), (2, "h2"), (3, "h3")]));
    let row_two_version = d.read(&schema, ChangeKind::Upsert, &OriginFilter::LocalOnly).await[1].version;
    first.peer_has_received = Watermarks { upserts: row_two_version, deletes: 0 };
    // Row 1 shares that version (one provisioning); a later local change
    // makes it one the hub has not received.
    d.exec(r#"UPDATE "t" SET "v" = 'later' WHERE "id" = 1"#).await;
    let outcome = d.ep.apply_changes(first).await.unwrap();
    assert_eq!((outcome.applied, outcome.conflicts.len()), (3, 1));
    assert_eq!(d.strings(r#"SELECT "v" FROM "t" ORDER BY "id""#).await, ["h1", "h2", "h3"]);
    let everything = OriginFilter::NotFrom("m2".into());
    let tracked = d.read(&schema, ChangeKind::Upsert, &everything).await;
    assert_eq!(keys_and_origins(&tracked), [(Value::Integer(1), "hub".into()), (Value::Integer(2), String::new())]);
    // Nothing received goes back up as a local change.
    let local = d.read(&schema, ChangeKind::Upsert, &OriginFilter::LocalOnly).await;
    assert_eq!(keys_and_origins(&local), [(Value::Integer(2), String::new())]);
    assert!(local[0].version <= row_two_version);

    // Now the hub of another group: the row it holds only from its hub gets
    // a tracking row with its hub as origin, for its own members to read,
    // and its hub's later changes are recorded.
    d.ep.provision_as_hub(&schema).await.unwrap();
    let tracked = d.read(&schema, ChangeKind::Upsert, &everything).await;
    assert!(keys_and_origins(&tracked).contains(&(Value::Integer(3), "hub".into())), "{tracked:?}");
    assert_eq!(tracked.len(), 3);
    d.ep.apply_changes(batch(&schema, ChangeKind::Upsert, "hub", upserts(&[(4, "h4")]))).await.unwrap();
    let delete = Change { key: vec![Value::Integer(2)], version: 1, origin: String::new(), changed_at: 42, row: None };
    d.ep.apply_changes(batch(&schema, ChangeKind::Delete, "hub", vec![delete])).await.unwrap();
    let tracked = d.read(&schema, ChangeKind::Upsert, &everything).await;
    assert!(keys_and_origins(&tracked).contains(&(Value::Integer(4), "hub".into())), "{tracked:?}");
    let deleted = d.read(&schema, ChangeKind::Delete, &everything).await;
    assert_eq!(keys_and_origins(&deleted), [(Value::Integer(2), "hub".into())]);
    // Still nothing of it in the uploads to its own hub.
    assert!(d.read(&schema, ChangeKind::Upsert, &OriginFilter::LocalOnly).await.is_empty());
    // Provisioning again changes nothing.
    d.ep.provision_as_hub(&schema).await.unwrap();
    assert_eq!(d.read(&schema, ChangeKind::Upsert, &everything).await.len(), 3);
    d.finish().await;
}

#[tokio::test]
async fn the_change_log_folds_to_the_last_write_of_each_key() {
    let Some(d) = db("fold").await else { return };
    d.exec(r#"CREATE TABLE "t" ("id" int PRIMARY KEY, "v" text)"#).await;
    let schema = d.schema(&TableName::new("t")).await;
    d.ep.provision(&schema).await.unwrap();
    let keys = |changes: &[Change]| changes.iter().map(|c| c.key[0].clone()).collect::<Vec<_>>();
    let count_log = format!(r#"SELECT count(*)::text FROM "hubsync"."{}""#, TrackingNames::for_table(&schema.name).log);
    // One transaction gives all its statements one version: only the order
    // of the writes can say which came last.
    d.exec(
        r#"BEGIN;
           INSERT INTO "t" VALUES (1, 'a'), (2, 'a');
           DELETE FROM "t" WHERE "id" = 1;
           INSERT INTO "t" VALUES (1, 'again');
           DELETE FROM "t" WHERE "id" = 2;
           COMMIT"#,
    )
    .await;
    let logged = d.strings(&count_log).await;
    assert_eq!(logged, vec!["5"], "the triggers append, one row per key and statement");
    let upserts = d.read(&schema, ChangeKind::Upsert, &OriginFilter::LocalOnly).await;
    let deletes = d.read(&schema, ChangeKind::Delete, &OriginFilter::LocalOnly).await;
    assert_eq!(keys(&upserts), vec![Value::Integer(1)]);
    assert_eq!(upserts[0].row.as_ref().unwrap()[1], text("again"));
    assert_eq!(keys(&deletes), vec![Value::Integer(2)]);
    let logged = d.strings(&count_log).await;
    assert_eq!(logged, vec!["5"], "reads take the changes from the log as it is");
    assert_eq!(d.ep.compact().await.unwrap(), 2, "one tracking row per key");
    assert_eq!(d.strings(&count_log).await, vec!["0"], "compacting folded the log");
    // Folded, the same changes read the same.
    let folded = d.read(&schema, ChangeKind::Upsert, &OriginFilter::LocalOnly).await;
    assert_eq!(folded, upserts);
    assert_eq!(d.read(&schema, ChangeKind::Delete, &OriginFilter::LocalOnly).await, deletes);

    // A local write still in the log when a peer's change to the same key is
    // applied: the apply folds first, judges it a conflict (HubWin, member
    // receiving: the hub's change wins) and its tracking row is the last.
    d.exec(r#"UPDATE "t" SET "v" = 'local' WHERE "id" = 1"#).await;
    let change = upsert(vec![Value::Integer(1), text("from the hub")]);
    let outcome = d.ep.apply_changes(batch(&schema, ChangeKind::Upsert, "hub", vec![change])).await.unwrap();
    assert_eq!((outcome.applied, outcome.conflicts.len()), (1, 1));
    let from_hub = d.read(&schema, ChangeKind::Upsert, &OriginFilter::NotFrom("x".into())).await;
    let one = from_hub.iter().find(|c| c.key == vec![Value::Integer(1)]).unwrap();
    assert_eq!((one.origin.as_str(), one.changed_at), ("hub", 42));
    assert!(
        d.ep.read_changes(ReadRequest {
            table: &schema,
            kind: ChangeKind::Upsert,
            after: 0,
            after_key: None,
            up_to: i64::MAX,
            origin: &OriginFilter::LocalOnly,
            limit: 10,
        })
        .await
        .unwrap()
        .is_empty()
    );
    d.finish().await;
}

/// Reads `kind` in batches of `limit` as a session does (each batch after
/// the last one's version and key), collecting every batch's keys.
async fn read_in_batches(d: &Db, schema: &TableSchema, kind: ChangeKind, limit: usize) -> Vec<Vec<i64>> {
    let up_to = d.ep.snapshot_version().await.unwrap();
    let origin = OriginFilter::LocalOnly;
    let (mut after, mut after_key) = (0, None);
    let mut batches = Vec::new();
    loop {
        let request =
            ReadRequest { table: schema, kind, after, after_key: after_key.clone(), up_to, origin: &origin, limit };
        let changes = d.ep.read_changes(request).await.unwrap();
        let keys: Vec<i64> = changes
            .iter()
            .map(|c| match c.key[0] {
                Value::Integer(i) => i,
                ref other => panic!("key {other:?}"),
            })
            .collect();
        let full = changes.len() >= limit;
        if let Some(last) = changes.last() {
            (after, after_key) = (last.version, Some(last.key.clone()));
        }
        batches.push(keys);
        if !full {
            return batches;
        }
    }
}

#[tokio::test]
async fn batches_read_from_the_change_log_cover_every_key_once_in_order() {
    let Some(d) = db("batches").await else { return };
    d.exec(r#"CREATE TABLE "t" ("id" int PRIMARY KEY, "v" text)"#).await;
    let schema = d.schema(&TableName::new("t")).await;
    d.ep.provision(&schema).await.unwrap();
    // Two transactions, keys written twice within and across them, a delete
    // and a re-insert: what the log holds unfolded.
    d.exec(r#"INSERT INTO "t" SELECT i, 'a' FROM generate_series(1, 25) i"#).await;
    d.exec(
        r#"BEGIN;
           UPDATE "t" SET "v" = 'b' WHERE "id" <= 10;
           UPDATE "t" SET "v" = 'c' WHERE "id" <= 5;
           DELETE FROM "t" WHERE "id" IN (7, 8);
           INSERT INTO "t" VALUES (8, 'back');
           COMMIT"#,
    )
    .await;
    // Batches of 4 resume inside a transaction's version and continue the
    // open read; the next version's keys follow; nothing repeats.
    let batches = read_in_batches(&d, &schema, ChangeKind::Upsert, 4).await;
    assert!(batches.iter().take(batches.len() - 1).all(|b| b.len() == 4), "{batches:?}");
    let keys: Vec<i64> = batches.concat();
    let mut first_tx: Vec<i64> = (11..=25).collect();
    let mut second_tx: Vec<i64> = (1..=10).filter(|k| *k != 7).collect();
    first_tx.sort_unstable();
    second_tx.sort_unstable();
    assert_eq!(keys, [first_tx, second_tx].concat(), "by version, then key");
    let deletes = read_in_batches(&d, &schema, ChangeKind::Delete, 4).await.concat();
    assert_eq!(deletes, vec![7]);
    // A batch that starts over at a position already read (as after a
    // refused batch) reads the same again.
    let again = read_in_batches(&d, &schema, ChangeKind::Upsert, 4).await.concat();
    assert_eq!(again, keys);

    // Folded: a tombstone in the tracking table whose key the log holds
    // again is not a delete to send (the log holds no delete).
    assert!(d.ep.compact().await.unwrap() > 0);
    d.exec(r#"INSERT INTO "t" VALUES (7, 'back too')"#).await;
    assert!(read_in_batches(&d, &schema, ChangeKind::Delete, 4).await.concat().is_empty());
    let upserts = read_in_batches(&d, &schema, ChangeKind::Upsert, 100).await.concat();
    assert_eq!(upserts.len(), 25, "{upserts:?}");
    assert_eq!(upserts.last(), Some(&7), "the re-inserted key is the newest change");
    d.finish().await;
}

/// Sequential scans of `table` the server has counted (a rescan counts too).
async fn seq_scans(d: &Db, table: &str) -> i64 {
    let mut conn = PgConnection::connect(&d.url).await.unwrap();
    sqlx::raw_sql("SET stats_fetch_consistency = none").execute(&mut conn).await.unwrap();
    let scans = sqlx::query_scalar("SELECT coalesce(seq_scan, 0) FROM pg_stat_user_tables WHERE relname = $1")
        .bind(table)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    scans
}

#[tokio::test]
async fn a_reader_behind_a_fold_never_scans_the_change_log_per_tracking_row() {
    let Some(d) = db("behind").await else { return };
    d.exec(r#"CREATE TABLE "t" ("id" int PRIMARY KEY, "v" text)"#).await;
    let schema = d.schema(&TableName::new("t")).await;
    d.ep.provision(&schema).await.unwrap();
    let names = TrackingNames::for_table(&schema.name);
    // The tracking table's statistics stay as they are after the first
    // fold: the second fold's versions lie beyond them, which made the
    // planner expect one tracking row above a reader's floor.
    d.exec(&format!(r#"ALTER TABLE "hubsync"."{}" SET (autovacuum_enabled = false)"#, names.table)).await;
    d.exec(r#"INSERT INTO "t" SELECT i, 'a' FROM generate_series(1, 20000) i"#).await;
    d.ep.compact().await.unwrap();
    d.exec(&format!(r#"ANALYZE "hubsync"."{}""#, names.table)).await;
    let reader_floor = d.ep.snapshot_version().await.unwrap();
    // A fold the reader has not caught up with, then as many changes logged.
    d.exec(r#"UPDATE "t" SET "v" = 'b' WHERE "id" <= 10000"#).await;
    d.ep.compact().await.unwrap();
    d.exec(r#"UPDATE "t" SET "v" = 'c' WHERE "id" > 10000"#).await;
    let before = seq_scans(&d, &names.log).await;
    let up_to = d.ep.snapshot_version().await.unwrap();
    let origin = OriginFilter::LocalOnly;
    let (mut after, mut after_key, mut keys) = (reader_floor, None, Vec::new());
    loop {
        let request = ReadRequest {
            table: &schema,
            kind: ChangeKind::Upsert,
            after,
            after_key: after_key.clone(),
            up_to,
            origin: &origin,
            limit: 5000,
        };
        let changes = d.ep.read_changes(request).await.unwrap();
        keys.extend(changes.iter().map(|c| c.key[0].clone()));
        let Some(last) = changes.last().filter(|_| changes.len() == 5000) else { break };
        (after, after_key) = (last.version, Some(last.key.clone()));
    }
    assert_eq!(keys.len(), 20000, "the folded changes and the logged ones, each key once");
    let deletes = ReadRequest {
        table: &schema,
        kind: ChangeKind::Delete,
        after: reader_floor,
        after_key: None,
        up_to,
        origin: &origin,
        limit: 5000,
    };
    assert!(d.ep.read_changes(deletes).await.unwrap().is_empty());
    // Statistics reach the shared counters within a second or so of the
    // reading session going idle.
    let mut scans = before;
    for _ in 0..150 {
        scans = seq_scans(&d, &names.log).await;
        if scans > before {
            tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
            scans = seq_scans(&d, &names.log).await;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(scans > before, "the reads scanned the change log (statistics arrived)");
    assert!(scans - before < 100, "the change log was scanned {} times for 10,000 tracking rows", scans - before);
    d.finish().await;
}

/// Counts the upserts pending after `after`, the way a session counts the
/// kind it moves (the other kind's watermark `i64::MAX`).
async fn count_upserts(d: &Db, schema: &TableSchema, after: i64) -> u64 {
    let after = Watermarks { upserts: after, deletes: i64::MAX };
    d.ep.count_changes(schema, after, &OriginFilter::LocalOnly).await.unwrap()
}

#[tokio::test]
async fn a_count_after_a_cursor_read_is_the_cursors_total_and_otherwise_counted() {
    let Some(d) = db("total").await else { return };
    d.exec(r#"CREATE TABLE "t" ("id" int PRIMARY KEY, "v" text)"#).await;
    let schema = d.schema(&TableName::new("t")).await;
    d.ep.provision(&schema).await.unwrap();
    let floor = d.ep.snapshot_version().await.unwrap();
    // Logged, not folded: the read goes through a cursor over the log.
    d.exec(r#"INSERT INTO "t" SELECT i, 'a' FROM generate_series(1, 2500) i"#).await;
    d.exec(r#"UPDATE "t" SET "v" = 'b' WHERE "id" <= 1000"#).await;
    d.exec(r#"DELETE FROM "t" WHERE "id" > 2400"#).await;
    let up_to = d.ep.snapshot_version().await.unwrap();
    let origin = OriginFilter::LocalOnly;
    let read = |after, after_key| ReadRequest {
        table: &schema,
        kind: ChangeKind::Upsert,
        after,
        after_key,
        up_to,
        origin: &origin,
        limit: 1000,
    };
    let first = d.ep.read_changes(read(floor, None)).await.unwrap();
    assert_eq!(first.len(), 1000, "a full first batch");
    // An application write after the read's snapshot: a count of its own
    // would see it, the cursor's total (the session's progress) does not.
    d.exec(r#"INSERT INTO "t" VALUES (9001, 'later')"#).await;
    assert_eq!(count_upserts(&d, &schema, floor).await, 2400, "the cursor's total: 2,400 rows still there");
    // Both kinds at once (`hubsync status`) is always a count of its own.
    let both = Watermarks { upserts: floor, deletes: floor };
    assert_eq!(d.ep.count_changes(&schema, both, &origin).await.unwrap(), 2401 + 100);
    // A read from the watermark that opens no cursor (the log folded away)
    // leaves no total behind: the count is counted again.
    d.ep.compact().await.unwrap();
    let again = d.ep.read_changes(read(floor, None)).await.unwrap();
    assert_eq!(again.len(), 1000);
    assert_eq!(count_upserts(&d, &schema, floor).await, 2401, "counted afresh, with the later row");
    d.finish().await;
}

#[tokio::test]
async fn the_snapshot_version_stays_below_a_transaction_still_open() {
    let Some(d) = db("xmin").await else { return };
    d.exec(r#"CREATE TABLE "t" ("id" int PRIMARY KEY, "v" text)"#).await;
    let schema = d.schema(&TableName::new("t")).await;
    d.ep.provision(&schema).await.unwrap();
    let mut open = PgConnection::connect(&d.url).await.unwrap();
    sqlx::raw_sql("BEGIN; INSERT INTO \"t\" VALUES (1, 'held open')").execute(&mut open).await.unwrap();
    let open_xid: i64 =
        sqlx::query("SELECT pg_current_xact_id()::text::int8").fetch_one(&mut open).await.unwrap().get(0);
    d.exec(r#"INSERT INTO "t" VALUES (2, 'committed later')"#).await;
    let snapshot = d.ep.snapshot_version().await.unwrap();
    assert!(snapshot < open_xid, "snapshot {snapshot} must stay below the open transaction {open_xid}");
    sqlx::raw_sql("COMMIT").execute(&mut open).await.unwrap();
    open.close().await.unwrap();
    let after = d.ep.snapshot_version().await.unwrap();
    assert!(after >= open_xid, "{after} < {open_xid}");
    let upto = ReadRequest {
        table: &schema,
        kind: ChangeKind::Upsert,
        after: snapshot,
        after_key: None,
        up_to: after,
        origin: &OriginFilter::LocalOnly,
        limit: 10,
    };
    let keys: Vec<Vec<Value>> = d.ep.read_changes(upto).await.unwrap().into_iter().map(|c| c.key).collect();
    assert!(keys.contains(&vec![Value::Integer(1)]), "{keys:?}");
    d.finish().await;
}

#[tokio::test]
async fn unique_and_foreign_key_violations_have_their_kinds() {
    let Some(d) = db("errors").await else { return };
    d.exec(
        r#"CREATE TABLE "p" ("id" int PRIMARY KEY);
           CREATE TABLE "c" ("id" int PRIMARY KEY, "p" int REFERENCES "p" ("id"), "u" text UNIQUE)"#,
    )
    .await;
    let schema = d.schema(&TableName::new("c")).await;
    d.ep.provision(&schema).await.unwrap();
    d.exec(r#"INSERT INTO "p" VALUES (1); INSERT INTO "c" VALUES (1, 1, 'taken')"#).await;
    let dup = upsert(vec![Value::Integer(2), Value::Integer(1), text("taken")]);
    let err = d.ep.apply_changes(batch(&schema, ChangeKind::Upsert, "hub", vec![dup])).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::UniqueViolation, "{err}");
    assert!(err.to_string().contains("`c`"), "{err}");
    let orphan = upsert(vec![Value::Integer(3), Value::Integer(99), text("free")]);
    let err = d.ep.apply_changes(batch(&schema, ChangeKind::Upsert, "hub", vec![orphan])).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::ForeignKeyViolation, "{err}");
    // Nothing of a failed batch is kept, not even its watermark.
    assert_eq!(d.ep.watermarks("s", "hub", &schema.name).await.unwrap(), Watermarks::default());
    let missing = TableName::new("nowhere");
    assert_eq!(d.ep.is_empty(&missing).await.unwrap_err().kind, ErrorKind::TableMissing);
    let err = PgEndpoint::open("postgres://postgres@127.0.0.1:1/x", "the-label".into()).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::ConnectionFailed);
    assert!(err.to_string().contains("the-label") && err.hint.is_some(), "{err}");
    d.finish().await;
}

#[tokio::test]
async fn arrays_and_enums_copy_between_postgres_databases_and_are_refused_elsewhere() {
    let Some(src) = db("src").await else { return };
    let Some(dst) = db("dst").await else { return };
    let name = odd_table(&src).await;
    let schema = src.schema(&name).await;
    src.ep.provision(&schema).await.unwrap();
    src.exec(
        r#"INSERT INTO "odd ""schema"".x"."my table.select ü" ("price", "tags", "mood", "doc", "raw")
           SELECT g, ARRAY[g, g + 1], 'happy', jsonb_build_object('g', g), '\x0a09'::bytea FROM generate_series(1, 500) g"#,
    )
    .await;
    // Another engine cannot create the table: the error names column and type.
    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqliteEndpoint::open(&dir.path().join("x.db"), "x.db").await.unwrap();
    let plain = TableSchema { name: TableName::new("copy"), ..schema.clone() };
    let err = sqlite.create_table(&plain).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::UnmappableType);
    assert!(err.to_string().contains("`tags`") && err.to_string().contains("integer[]"), "{err}");
    // PostgreSQL recreates it verbatim (the enum type exists there too) and
    // copies it with COPY, straight from the source.
    dst.exec(r#"CREATE SCHEMA "odd ""schema"".x"; CREATE TYPE "odd ""schema"".x"."mood" AS ENUM ('sad', 'happy')"#)
        .await;
    dst.ep.create_table(&schema).await.unwrap();
    let source = src.ep.direct_source().unwrap();
    assert_eq!(
        dst.ep
            .bulk_copy_direct(
                "sqlite-file:/x",
                BulkTarget { scope: "s", peer: "hub", table: &schema, record_tracking: true }
            )
            .await
            .unwrap(),
        None
    );
    let target = BulkTarget { scope: "s", peer: "hub", table: &schema, record_tracking: true };
    assert_eq!(dst.ep.bulk_copy_direct(&source, target).await.unwrap(), Some(500));
    let a = src.read(&schema, ChangeKind::Upsert, &OriginFilter::NotFrom("x".into())).await;
    let b = dst.read(&schema, ChangeKind::Upsert, &OriginFilter::NotFrom("x".into())).await;
    let rows = |cs: &[Change]| {
        let mut rows: Vec<String> = cs.iter().map(|c| format!("{:?}", c.row)).collect();
        rows.sort();
        rows
    };
    assert_eq!(rows(&a).len(), 500);
    assert_eq!(rows(&a), rows(&b));
    assert!(b.iter().all(|c| c.origin == "hub"));
    let marks = dst.ep.watermarks("s", "hub", &name).await.unwrap();
    assert!(marks.upserts > 0 && marks.upserts == marks.deletes);
    // Incremental changes of these types apply too.
    let mut change = a[0].clone();
    change.row.as_mut().unwrap()[8] = text("{7,8}");
    change.row.as_mut().unwrap()[9] = text("sad");
    dst.ep.apply_changes(batch(&schema, ChangeKind::Upsert, "hub", vec![change.clone()])).await.unwrap();
    let b = dst.read(&schema, ChangeKind::Upsert, &OriginFilter::NotFrom("x".into())).await;
    assert!(b.iter().any(|c| c.row == change.row));
    src.finish().await;
    dst.finish().await;
}

/// Every `hubsync sync` provisions again; with the same selection that must
/// not touch the triggers (dropping one locks the table against the
/// application), and with another selection it must rebuild them.
#[tokio::test]
async fn provisioning_again_keeps_current_triggers_and_rebuilds_changed_ones() {
    let Some(d) = db("reprovision").await else { return };
    d.exec("CREATE TABLE t (id bigint PRIMARY KEY, a text, b text)").await;
    let name = TableName::new("t");
    let full = d.schema(&name).await;
    let oids = "SELECT string_agg(oid::text, ',' ORDER BY tgname) FROM pg_trigger WHERE tgrelid = 't'::regclass AND NOT tgisinternal";
    d.ep.provision(&full).await.unwrap();
    let first = d.strings(oids).await;
    assert_eq!(first[0].split(',').count(), 4, "three statement triggers and the key trigger: {first:?}");
    d.ep.provision(&full).await.unwrap();
    assert_eq!(d.strings(oids).await, first, "the same selection must leave the triggers alone");
    let narrower = full.project(Some(&["a".to_string()])).unwrap();
    d.ep.provision(&narrower).await.unwrap();
    let rebuilt = d.strings(oids).await;
    assert_ne!(rebuilt, first, "another column selection must rebuild the triggers");
    // With a column left out the update trigger compares old and new rows
    // and logs moved keys itself: the key trigger and its function go.
    assert_eq!(rebuilt[0].split(',').count(), 3, "three statement triggers: {rebuilt:?}");
    let key_functions = "SELECT proname::text FROM pg_proc WHERE proname LIKE 'hubsync%key'";
    assert!(d.strings(key_functions).await.is_empty());
    // The rebuilt triggers track writes to selected columns only.
    d.exec("INSERT INTO t VALUES (1, 'x', 'y')").await;
    assert_eq!(d.read(&narrower, ChangeKind::Upsert, &OriginFilter::LocalOnly).await.len(), 1);
    d.finish().await;
}

#[tokio::test]
async fn a_change_log_of_int8_columns_is_converted_with_its_rows_when_provisioned_again() {
    let Some(d) = db("logupgrade").await else { return };
    d.exec("CREATE TABLE t (id bigint PRIMARY KEY, v text)").await;
    d.exec("INSERT INTO t VALUES (1, 'a'), (2, 'b')").await;
    let name = TableName::new("t");
    let schema = d.schema(&name).await;
    d.ep.provision(&schema).await.unwrap();
    let log = TrackingNames::for_table(&name).qualified_log();
    let types = format!(
        "SELECT attname::text || ' ' || format_type(atttypid, atttypmod) FROM pg_attribute \
         WHERE attrelid = '{log}'::regclass AND attname IN ('version', 'changed_at') ORDER BY attname"
    );
    let raw = ["changed_at timestamp with time zone", "version xid8"];
    assert_eq!(d.strings(&types).await, raw);
    d.exec("UPDATE t SET v = 'a2' WHERE id = 1").await;
    let logged = d.read(&schema, ChangeKind::Upsert, &OriginFilter::LocalOnly).await;
    let before: Vec<(Value, Version, i64)> =
        logged.iter().map(|c| (c.key[0].clone(), c.version, c.changed_at)).collect();
    // The log as an earlier hubsync made it: version and time as int8.
    d.exec(&format!(
        "ALTER TABLE {log} ALTER COLUMN version TYPE int8 USING version::text::int8, \
         ALTER COLUMN changed_at TYPE int8 USING (extract(epoch from changed_at) * 1000000)::int8"
    ))
    .await;
    d.ep.provision(&schema).await.unwrap();
    assert_eq!(d.strings(&types).await, raw);
    assert_eq!(d.strings(&format!("SELECT count(*)::text FROM {log}")).await, ["1"], "the logged row stays");
    let after = d.read(&schema, ChangeKind::Upsert, &OriginFilter::LocalOnly).await;
    let after: Vec<(Value, Version, i64)> = after.iter().map(|c| (c.key[0].clone(), c.version, c.changed_at)).collect();
    assert_eq!(after, before, "the same version and time to the microsecond");
    // The triggers log into the converted log, and a fold reads both rows.
    d.exec("UPDATE t SET v = 'b2' WHERE id = 2").await;
    d.ep.compact().await.unwrap();
    assert_eq!(d.strings(&format!("SELECT count(*)::text FROM {log}")).await, ["0"]);
    let folded = d.read(&schema, ChangeKind::Upsert, &OriginFilter::LocalOnly).await;
    let rows: Vec<Option<Vec<Value>>> = folded.iter().map(|c| c.row.clone()).collect();
    assert_eq!(rows, [Some(vec![Value::Integer(1), text("a2")]), Some(vec![Value::Integer(2), text("b2")])]);
    let first = before.iter().find(|(k, ..)| *k == Value::Integer(1)).unwrap();
    assert_eq!((folded[0].version, folded[0].changed_at), (first.1, first.2));
    assert!(folded[1].version > folded[0].version && folded[1].changed_at >= folded[0].changed_at);
    d.finish().await;
}

#[tokio::test]
async fn deprovision_removes_every_hubsync_object_and_nothing_else() {
    let Some(d) = db("deprov").await else { return };
    let name = odd_table(&d).await;
    d.exec(r#"CREATE TABLE "t" ("id" int PRIMARY KEY)"#).await;
    let odd = d.schema(&name).await;
    let t = d.schema(&TableName::new("t")).await;
    d.ep.provision(&odd).await.unwrap();
    d.ep.provision(&t).await.unwrap();
    assert!(d.ep.is_provisioned(&name).await.unwrap());
    d.ep.record_session(
        "s",
        "hub",
        &hubsync_core::SessionRecord {
            state: hubsync_core::MemberState::SyncSucceeded,
            last_attempt_at: 1,
            last_success_at: Some(1),
            uploaded: 1,
            downloaded: 2,
            message: String::new(),
        },
    )
    .await
    .unwrap();
    assert_eq!(d.ep.session_record("s", "hub").await.unwrap().unwrap().downloaded, 2);
    let dropped = d.ep.deprovision(std::slice::from_ref(&name)).await.unwrap();
    assert!(!dropped.contains(&"hubsync".to_string()), "{dropped:?}");
    assert!(!d.ep.is_provisioned(&name).await.unwrap());
    assert!(d.ep.is_provisioned(&t.name).await.unwrap());
    let dropped = d.ep.deprovision(std::slice::from_ref(&t.name)).await.unwrap();
    assert!(dropped.contains(&"hubsync".to_string()), "{dropped:?}");
    let left = d
        .strings(
            "SELECT n.nspname::text FROM pg_namespace n WHERE n.nspname = 'hubsync' \
             UNION ALL SELECT tgname::text FROM pg_trigger WHERE NOT tgisinternal \
             UNION ALL SELECT proname::text FROM pg_proc WHERE proname LIKE 'hubsync%'",
        )
        .await;
    assert!(left.is_empty(), "{left:?}");
    // User tables and data are untouched.
    d.exec(r#"INSERT INTO "t" VALUES (1)"#).await;
    assert!(d.ep.introspect(&name).await.unwrap().is_some());
    d.finish().await;
}

#[tokio::test]
async fn list_tables_qualifies_other_schemas_and_leaves_out_hubsync_objects() {
    let Some(d) = db("listtables").await else { return };
    d.exec(r#"CREATE TABLE "t" ("id" int PRIMARY KEY)"#).await;
    d.exec(r#"CREATE SCHEMA "sales"; CREATE TABLE "sales"."my.orders" ("id" int)"#).await;
    d.exec(r#"CREATE TABLE "p" ("id" int) PARTITION BY RANGE ("id"); CREATE TABLE "p1" PARTITION OF "p" FOR VALUES FROM (0) TO (10)"#)
        .await;
    d.exec(r#"CREATE VIEW "v" AS SELECT 1"#).await;
    let t = d.schema(&TableName::new("t")).await;
    d.ep.provision(&t).await.unwrap();
    let tables = d.ep.list_tables().await.unwrap();
    assert_eq!(
        tables,
        [
            TableName::new("p"),
            TableName::new("t"),
            TableName { schema: Some("sales".into()), name: "my.orders".into() }
        ]
    );
    // Each listed name introspects as it is.
    for table in &tables {
        assert!(d.ep.introspect(table).await.unwrap().is_some(), "{table}");
    }
    d.finish().await;
}

/// The table's rows as another session sees them (a held batch keeps its
/// own pool connection).
async fn count_rows(d: &Db, table: &str) -> i64 {
    d.strings(&format!("SELECT count(*)::text FROM {table}")).await[0].parse().unwrap()
}

fn rows(keys: std::ops::RangeInclusive<i64>) -> Vec<Change> {
    keys.map(|k| upsert(vec![Value::Integer(k), text("from the hub")])).collect()
}

#[tokio::test]
async fn a_held_batch_stays_invisible_until_committed_and_declines_what_could_lock_others() {
    let Some(d) = db("held").await else { return };
    d.exec(r#"CREATE TABLE "t" ("id" bigint PRIMARY KEY, "v" text)"#).await;
    let t = TableName::new("t");
    let schema = d.schema(&t).await;
    d.ep.provision(&schema).await.unwrap();
    assert!(d.ep.holds_applies());

    // Written, invisible to others, no watermark yet; committed, both.
    let mut held = batch(&schema, ChangeKind::Upsert, HUB_ORIGIN, rows(1..=3));
    held.watermark = 5;
    let Held::Open(outcome, handle) = d.ep.apply_changes_held(held.clone()).await.unwrap() else {
        panic!("a plain table's batch from the hub is held")
    };
    assert_eq!(outcome.applied, 3);
    assert_eq!(count_rows(&d, "t").await, 0);
    assert_eq!(d.ep.watermarks("s", HUB_ORIGIN, &t).await.unwrap().upserts, 0);
    handle.commit().await.unwrap();
    assert_eq!(count_rows(&d, "t").await, 3);
    assert_eq!(d.ep.watermarks("s", HUB_ORIGIN, &t).await.unwrap().upserts, 5);

    // Dropped instead: rolled back, the watermark where it was.
    let mut dropped = batch(&schema, ChangeKind::Upsert, HUB_ORIGIN, rows(4..=6));
    dropped.watermark = 9;
    assert!(matches!(d.ep.apply_changes_held(dropped).await.unwrap(), Held::Open(..)));
    assert_eq!(count_rows(&d, "t").await, 3);
    assert_eq!(d.ep.watermarks("s", HUB_ORIGIN, &t).await.unwrap().upserts, 5);

    // A batch that writes tracking rows (not from this database's hub), or
    // meets a local change still in the change log, is declined untouched.
    let from_member = batch(&schema, ChangeKind::Upsert, "member", rows(7..=7));
    assert!(matches!(d.ep.apply_changes_held(from_member).await.unwrap(), Held::Declined));
    d.exec(r#"UPDATE "t" SET "v" = 'local' WHERE "id" = 1"#).await;
    let after_local = batch(&schema, ChangeKind::Upsert, HUB_ORIGIN, rows(8..=8));
    assert!(matches!(d.ep.apply_changes_held(after_local).await.unwrap(), Held::Declined));
    assert_eq!(count_rows(&d, "t").await, 3);

    // Tables whose writes take other locks: a unique constraint besides the
    // key, a foreign key either way, a trigger of the application.
    d.exec(
        r#"CREATE TABLE "u" ("id" bigint PRIMARY KEY, "v" text UNIQUE);
           CREATE TABLE "parent" ("id" bigint PRIMARY KEY, "v" text);
           CREATE TABLE "child" ("id" bigint PRIMARY KEY, "v" text, "p" bigint REFERENCES "parent");
           CREATE TABLE "audited" ("id" bigint PRIMARY KEY, "v" text);
           CREATE FUNCTION audit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
           CREATE TRIGGER audit AFTER UPDATE ON "audited" FOR EACH STATEMENT EXECUTE FUNCTION audit();"#,
    )
    .await;
    for name in ["u", "parent", "child", "audited"] {
        let other = d.schema(&TableName::new(name)).await;
        d.ep.provision(&other).await.unwrap();
        let changes =
            if name == "child" { vec![upsert(vec![Value::Integer(1), text("x"), Value::Null])] } else { rows(1..=1) };
        let declined = d.ep.apply_changes_held(batch(&other, ChangeKind::Upsert, HUB_ORIGIN, changes)).await.unwrap();
        assert!(matches!(declined, Held::Declined), "`{name}` is declined");
        assert_eq!(count_rows(&d, &format!(r#""{name}""#)).await, 0, "`{name}` is untouched");
    }
    d.finish().await;
}

/// Polls until a session on the member's database other than `locker` sits
/// idle in an open transaction: a held batch.
async fn wait_for_held_batch(member: &Db, locker: i32) {
    let mut admin = PgConnection::connect(&member.url).await.unwrap();
    for _ in 0..600 {
        let held: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = current_database() \
             AND state = 'idle in transaction' AND pid <> $1 AND pid <> pg_backend_pid())",
        )
        .bind(locker)
        .fetch_one(&mut admin)
        .await
        .unwrap();
        if held {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("no batch was held open on the member");
}

#[tokio::test]
async fn a_held_batch_gives_way_when_the_batch_before_it_waits_for_its_rows() {
    let (Some(hub), Some(member)) = (db("yield_hub").await, db("yield_member").await) else { return };
    let ddl = r#"CREATE TABLE "t" ("id" bigint PRIMARY KEY, "v" text)"#;
    hub.exec(ddl).await;
    member.exec(ddl).await;
    hub.exec(r#"INSERT INTO "t" SELECT i, 'first' FROM generate_series(1, 40) i"#).await;
    let selection = [TableSelection { name: TableName::new("t"), columns: None, policy: None }];
    let tables = resolve_tables(&hub.ep, &selection).await.unwrap();
    provision_hub(&hub.ep, &tables).await.unwrap();
    provision_member(&member.ep, &tables).await.unwrap();
    let opts = |batch_rows| SessionOptions {
        scope: "s",
        member: "m",
        direction: Direction::OneWayHubToMember,
        policy: ConflictPolicy::HubWin,
        tables: &tables,
        batch_rows,
        cancel: None,
        observer: &LogObserver,
    };
    sync_member(&hub.ep, &member.ep, opts(10)).await.unwrap();
    hub.exec(r#"UPDATE "t" SET "v" = 'second'"#).await;

    // The application holds key 1 (in the first batch of 10) and, once the
    // second batch is written and held, asks for key 11 (in that batch): the
    // first batch waits for the application, the application for the held
    // batch, which waits for the first. Only the held batch giving way ends it.
    let mut app = PgConnection::connect(&member.url).await.unwrap();
    let app_pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(&mut app).await.unwrap();
    sqlx::raw_sql(r#"BEGIN; SELECT * FROM "t" WHERE "id" = 1 FOR UPDATE"#).execute(&mut app).await.unwrap();
    let application = async {
        wait_for_held_batch(&member, app_pid).await;
        sqlx::query(r#"SELECT * FROM "t" WHERE "id" = 11 FOR UPDATE"#).execute(&mut app).await.unwrap();
        sqlx::raw_sql("COMMIT").execute(&mut app).await.unwrap();
    };
    let sync = async {
        tokio::time::timeout(std::time::Duration::from_secs(60), sync_member(&hub.ep, &member.ep, opts(10)))
            .await
            .expect("the sync finished")
            .unwrap()
    };
    let ((), report) = tokio::join!(application, sync);
    assert_eq!(report.downloaded, 40);
    let values = member.strings(r#"SELECT DISTINCT "v" FROM "t""#).await;
    assert_eq!(values, vec!["second".to_string()]);
    app.close().await.unwrap();
    hub.finish().await;
    member.finish().await;
}

//! Type mapping across engines: random values of every canonical type go
//! hub → member → back to the hub's engine and arrive unchanged, or narrowed
//! exactly as `docs/types.md` documents (see [`narrow`]).
//!
//! For an ordered pair of engines (X, Y): database A (X) gets a table created
//! from a canonical schema and rows written through the engine's apply path;
//! group 1 syncs A to B (Y, auto-provisioned from A's schema), group 2 syncs
//! B to C (X, auto-provisioned from B's schema). Half the rows travel by the
//! initial bulk copy, the rest (and updates of the first half) incrementally.
//! Rows are read back through each engine's own bulk reader, the path sync
//! uses, so the comparison sees what a peer would receive.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use hubsync_core::{
    ApplyBatch, BulkItem, CanonicalType, Change, ChangeKind, Column, ConflictPolicy, ConflictResolver, Direction,
    Endpoint, SessionOptions, Side, SyncTable, TableName, TableSchema, Value, Watermarks, provision_member,
    sync_member,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use tokio::sync::mpsc;

use crate::harness::{Harness, Role, TestDb};
use crate::world::Quiet;

/// A harness starting (`None`: unavailable, already reported).
pub(crate) type Starting = Pin<Box<dyn Future<Output = Option<Arc<dyn Harness>>>>>;

/// Starts one engine's harness.
pub(crate) type Start = fn() -> Starting;

const TABLE: &str = "typed values";

/// The canonical columns under test, after the integer key.
fn typed_columns() -> Vec<(&'static str, CanonicalType)> {
    use CanonicalType::*;
    vec![
        ("i", Integer),
        ("r", Real),
        ("d", Decimal { precision: Some(18), scale: Some(4) }),
        ("t", Text),
        ("b", Blob),
        ("flag", Boolean),
        ("day", Date),
        ("clock", Time),
        ("ts", Timestamp),
        ("tstz", TimestampTz),
        ("u", Uuid),
        ("j", Json),
    ]
}

/// The table as a canonical schema (declared types left empty, engine
/// `canonical`): every engine must create it from the canonical types alone.
fn canonical_schema() -> TableSchema {
    let mut columns = vec![Column {
        name: "id".into(),
        declared_type: String::new(),
        canonical: CanonicalType::Integer,
        nullable: false,
    }];
    for (name, canonical) in typed_columns() {
        columns.push(Column { name: name.into(), declared_type: String::new(), canonical, nullable: true });
    }
    TableSchema {
        name: TableName::new(TABLE),
        columns,
        primary_key: vec!["id".into()],
        indexes: Vec::new(),
        foreign_keys: Vec::new(),
        engine: "canonical".into(),
    }
}

fn two(n: u32) -> String {
    format!("{n:02}")
}

/// `.ffffff` with trailing zeros trimmed, empty for zero (the canonical form).
fn fraction(micros: u32) -> String {
    if micros == 0 {
        return String::new();
    }
    let digits = format!("{micros:06}");
    format!(".{}", digits.trim_end_matches('0'))
}

fn date() -> impl Strategy<Value = String> {
    (1000u32..=9999, 1u32..=12, 1u32..=28).prop_map(|(y, m, d)| format!("{y:04}-{}-{}", two(m), two(d)))
}

fn time() -> impl Strategy<Value = String> {
    (0u32..24, 0u32..60, 0u32..60, prop_oneof![Just(0u32), 0u32..1_000_000])
        .prop_map(|(h, m, s, us)| format!("{}:{}:{}{}", two(h), two(m), two(s), fraction(us)))
}

fn decimal() -> impl Strategy<Value = String> {
    (-99_999_999_999_999i64..=99_999_999_999_999, 0u32..10_000).prop_map(|(whole, frac)| {
        if whole == 0 && frac == 0 {
            return "0.0000".to_string();
        }
        let sign = if whole < 0 { "-" } else { "" };
        format!("{sign}{}.{frac:04}", whole.unsigned_abs())
    })
}

fn json() -> impl Strategy<Value = String> {
    (any::<i32>(), "[a-z ]{0,8}", any::<bool>())
        .prop_map(|(n, s, b)| serde_json::json!({"n": n, "s": s, "ok": b, "list": [n, null]}).to_string())
}

fn uuid() -> impl Strategy<Value = String> {
    any::<[u8; 16]>().prop_map(|b| {
        let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
        format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
    })
}

fn text_value(s: impl Strategy<Value = String>) -> impl Strategy<Value = Value> {
    s.prop_map(Value::Text)
}

/// One row's typed values (each may be NULL), in [`typed_columns`] order.
fn row() -> impl Strategy<Value = Vec<Value>> {
    let maybe = |s: BoxedStrategy<Value>| prop_oneof![1 => Just(Value::Null), 6 => s].boxed();
    let finite = any::<f64>().prop_filter("finite", |f| f.is_finite());
    vec![
        maybe(any::<i64>().prop_map(Value::Integer).boxed()),
        maybe(finite.prop_map(Value::Real).boxed()),
        maybe(text_value(decimal()).boxed()),
        // Printable Unicode, no NUL (PostgreSQL text cannot hold U+0000).
        maybe(text_value("\\PC{0,24}").boxed()),
        maybe(prop::collection::vec(any::<u8>(), 0..48).prop_map(Value::Blob).boxed()),
        maybe(prop_oneof![Just(Value::Integer(0)), Just(Value::Integer(1))].boxed()),
        maybe(text_value(date()).boxed()),
        maybe(text_value(time()).boxed()),
        maybe(text_value((date(), time()).prop_map(|(d, t)| format!("{d} {t}"))).boxed()),
        maybe(text_value((date(), time()).prop_map(|(d, t)| format!("{d} {t}+00:00"))).boxed()),
        maybe(text_value(uuid()).boxed()),
        maybe(text_value(json()).boxed()),
    ]
}

/// What a value of a canonical type becomes after being stored by `engine`:
/// the documented narrowings of `docs/types.md`, and nothing else.
fn narrow(engine: &str, canonical: &CanonicalType, value: Value) -> Value {
    match (engine, canonical, value) {
        // Neither SQLite's REAL nor MariaDB's DOUBLE storage keeps a negative zero.
        ("sqlite" | "mysql", CanonicalType::Real, Value::Real(0.0)) => Value::Real(0.0),
        (_, _, v) => v,
    }
}

/// JSON documents compare as documents: engines may re-render them.
fn comparable(canonical: &CanonicalType, value: &Value) -> Value {
    match (canonical, value) {
        (CanonicalType::Json, Value::Text(s)) => match serde_json::from_str::<serde_json::Value>(s) {
            Ok(doc) => Value::Text(doc.to_string()),
            Err(_) => value.clone(),
        },
        _ => value.clone(),
    }
}

/// Every row of the table on `db`, read by its engine's bulk reader, sorted by key.
async fn read_back(db: &dyn TestDb) -> Vec<Vec<Value>> {
    let ep = db.endpoint();
    let schema = ep
        .introspect(&TableName::new(TABLE))
        .await
        .unwrap_or_else(|e| panic!("introspecting on {}: {e}", db.url()))
        .unwrap_or_else(|| panic!("table `{TABLE}` missing on {}", db.url()));
    let (tx, mut rx) = mpsc::channel(4);
    let reader = ep.bulk_read(&schema, 1000, tx);
    let collect = async {
        let mut rows = Vec::new();
        while let Some(item) = rx.recv().await {
            if let BulkItem::Rows(batch) = item {
                rows.extend(batch);
            }
        }
        rows
    };
    let (read, mut rows) = tokio::join!(reader, collect);
    read.unwrap_or_else(|e| panic!("reading back on {}: {e}", db.url()));
    rows.sort_by_key(|r| match r.first() {
        Some(Value::Integer(i)) => *i,
        _ => i64::MIN,
    });
    rows
}

/// Writes rows (key + typed values) on `db` through the engine's apply path,
/// as a peer's changes.
async fn write(db: &dyn TestDb, schema: &TableSchema, rows: &[(i64, Vec<Value>)], first_version: i64) {
    let changes: Vec<Change> = rows
        .iter()
        .enumerate()
        .map(|(i, (id, values))| {
            let mut row = vec![Value::Integer(*id)];
            row.extend(values.iter().cloned());
            Change {
                key: vec![Value::Integer(*id)],
                version: first_version + i as i64,
                origin: String::new(),
                changed_at: 1_700_000_000_000_000,
                row: Some(row),
            }
        })
        .collect();
    let watermark = first_version + rows.len() as i64;
    let batch = ApplyBatch {
        scope: "types",
        peer: "types-source",
        table: schema,
        kind: ChangeKind::Upsert,
        changes: changes.into(),
        peer_has_received: Watermarks::default(),
        resolver: ConflictResolver { policy: ConflictPolicy::HubWin, receiver: Side::Hub },
        watermark,
    };
    db.endpoint().apply_changes(batch).await.unwrap_or_else(|e| panic!("writing typed rows on {}: {e}", db.url()));
}

async fn sync(scope: &str, member_name: &str, hub: &dyn TestDb, member: &dyn TestDb) {
    let schema = hub
        .endpoint()
        .introspect(&TableName::new(TABLE))
        .await
        .unwrap_or_else(|e| panic!("introspecting on {}: {e}", hub.url()))
        .unwrap_or_else(|| panic!("table `{TABLE}` missing on {}", hub.url()));
    let tables = [SyncTable { schema, policy: None }];
    hubsync_core::provision_hub(hub.endpoint(), &tables)
        .await
        .unwrap_or_else(|e| panic!("provisioning {}: {e}", hub.url()));
    provision_member(member.endpoint(), &tables)
        .await
        .unwrap_or_else(|e| panic!("provisioning {} from {}: {e}", member.url(), hub.url()));
    let opts = SessionOptions {
        scope,
        member: member_name,
        direction: Direction::OneWayHubToMember,
        policy: ConflictPolicy::HubWin,
        tables: &tables,
        batch_rows: 7,
        cancel: None,
        observer: &Quiet,
    };
    sync_member(hub.endpoint(), member.endpoint(), opts)
        .await
        .unwrap_or_else(|e| panic!("syncing {} to {}: {e}", hub.url(), member.url()));
}

fn assert_arrived(
    what: &str,
    actual: &[Vec<Value>],
    written: &std::collections::BTreeMap<i64, Vec<Value>>,
    path: &[&str],
) {
    let columns = typed_columns();
    assert_eq!(actual.len(), written.len(), "{what}: row count");
    for (row, (id, values)) in actual.iter().zip(written) {
        assert_eq!(row.first(), Some(&Value::Integer(*id)), "{what}: keys");
        for (i, ((name, canonical), sent)) in columns.iter().zip(values).enumerate() {
            let expected = path.iter().fold(sent.clone(), |v, engine| narrow(engine, canonical, v));
            let got = row.get(i + 1).cloned().unwrap_or(Value::Null);
            assert_eq!(
                comparable(canonical, &got),
                comparable(canonical, &expected),
                "{what}: column `{name}` ({canonical:?}) of row {id} via {path:?}: sent {sent:?}"
            );
        }
    }
}

async fn run_case(x: &dyn Harness, y: &dyn Harness, first: Vec<Vec<Value>>, second: Vec<Vec<Value>>) {
    let a = x.create_db(Role::Hub, "types_a").await;
    let b = y.create_db(Role::Member(0), "types_b").await;
    let c = x.create_db(Role::Member(1), "types_c").await;
    let (ex, ey) = (a.endpoint().engine(), b.endpoint().engine());
    a.endpoint().create_table(&canonical_schema()).await.unwrap_or_else(|e| panic!("creating on {}: {e}", a.url()));
    let schema = a
        .endpoint()
        .introspect(&TableName::new(TABLE))
        .await
        .unwrap_or_else(|e| panic!("introspecting on {}: {e}", a.url()))
        .unwrap_or_else(|| panic!("the table created on {} is missing", a.url()));
    a.endpoint().provision(&schema).await.unwrap_or_else(|e| panic!("provisioning {}: {e}", a.url()));

    let mut written = std::collections::BTreeMap::new();
    let half: Vec<(i64, Vec<Value>)> = first.into_iter().enumerate().map(|(i, r)| (i as i64 + 1, r)).collect();
    write(&*a, &schema, &half, 1).await;
    written.extend(half.iter().cloned());
    // Initial copies: A → B, then B → C.
    sync("types-1", "b", &*a, &*b).await;
    sync("types-2", "c", &*b, &*c).await;
    // Incremental: new values for the first keys (even positions) and new keys (odd).
    let mut more = std::collections::BTreeMap::new();
    for (i, r) in second.into_iter().enumerate() {
        let id = if i % 2 == 0 { (i / 2) as i64 % half.len() as i64 + 1 } else { 100 + i as i64 };
        more.insert(id, r);
    }
    let more: Vec<(i64, Vec<Value>)> = more.into_iter().collect();
    write(&*a, &schema, &more, 1000).await;
    written.extend(more.iter().cloned());
    sync("types-1", "b", &*a, &*b).await;
    sync("types-2", "c", &*b, &*c).await;

    assert_arrived(&format!("{ex} → {ey}"), &read_back(&*b).await, &written, &[ex, ey]);
    assert_arrived(&format!("{ex} → {ey} → {ex}"), &read_back(&*c).await, &written, &[ex, ey, ex]);
    a.drop_db().await;
    b.drop_db().await;
    c.drop_db().await;
}

/// Runs the property for one ordered pair of engines.
pub(crate) fn values_round_trip(x: Start, y: Start) {
    let cases = std::env::var("HUBSYNC_TYPE_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(6);
    let config = Config { cases, max_shrink_iters: 32, failure_persistence: None, ..Config::default() };
    let mut runner = TestRunner::new(config);
    let strategy = (prop::collection::vec(row(), 1..6), prop::collection::vec(row(), 1..6));
    let result = runner.run(&strategy, |(first, second)| {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(async {
            let (Some(hx), Some(hy)) = (x().await, y().await) else { return };
            run_case(&*hx, &*hy, first, second).await;
        });
        Ok(())
    });
    if let Err(e) = result {
        panic!("typed values did not survive the round trip: {e}");
    }
}

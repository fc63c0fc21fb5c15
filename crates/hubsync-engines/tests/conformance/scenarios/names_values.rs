//! Scenario 8: awkward names and exact values.
//!
//! A table named `my table "quoted" [x]-ü.select` with columns `order`,
//! `col with space`, `q"uote`, `dot.ted`, `ünï`, `select` syncs both ways, and
//! every value arrives bit-exact: NULL, empty text, emoji/CJK/combining marks,
//! 1 MiB of text, blobs with zero bytes (and an empty blob), i64::MIN and MAX,
//! 0.1, -0.0, 1e308, 5e-324, a decimal and timestamps as text. Rows are
//! inserted and updated on the hub (initial copy, then incremental) and on the
//! member, and compared with what was written (as the engine itself stores
//! it, see `Harness::stored_form`) on every database.

use hubsync_core::Direction::Bidirectional;
use hubsync_core::{ConflictPolicy, TableName, TableSelection, Value};

use crate::harness::{Harness, q};
use crate::world::{World, assert_rows_eq, int, text};

pub(crate) const TABLE: &str = "my table \"quoted\" [x]-ü.select";
const COLUMNS: [&str; 7] = ["id", "order", "col with space", "q\"uote", "dot.ted", "ünï", "select"];

fn row(id: i64, order: Value, space: Value, quote: f64, dotted: Value, uni: Value, select: Value) -> Vec<Value> {
    vec![int(id), order, space, Value::Real(quote), dotted, uni, select]
}

fn blob(b: &[u8]) -> Value {
    Value::Blob(b.to_vec())
}

async fn insert(w: &World, db: &str, r: &[Value]) {
    let cols: Vec<String> = COLUMNS.iter().map(|c| q(c)).collect();
    let marks = vec!["?"; COLUMNS.len()].join(", ");
    let sql = format!("INSERT INTO {} ({}) VALUES ({marks})", q(TABLE), cols.join(", "));
    w.db(db).exec_with(&sql, r).await;
}

async fn update(w: &World, db: &str, r: &[Value]) {
    let sets: Vec<String> = COLUMNS[1..].iter().map(|c| format!("{} = ?", q(c))).collect();
    let sql = format!("UPDATE {} SET {} WHERE {} = ?", q(TABLE), sets.join(", "), q("id"));
    let mut params = r[1..].to_vec();
    params.push(r[0].clone());
    assert_eq!(w.db(db).exec_with(&sql, &params).await, 1);
}

pub(crate) async fn awkward_names_and_exact_values_sync_both_ways(h: &dyn Harness) {
    let big: String = "abcdefghijklmnopqrstuvwxyz0123456789-é€😀\n".chars().cycle().take(1 << 20).collect();
    let unicode = "😀👍🏽 中文字符 日本語 한국어 e\u{301} a\u{308}\u{323} Ω≈ç √ \u{200d}\u{fe0f} \u{10FFFF}";
    let w = World::new(h, &[("m", Bidirectional), ("late", Bidirectional)], ConflictPolicy::HubWin, &[])
        .await
        .with_tables(vec![TableSelection { name: TableName::new(TABLE), columns: None, policy: None }]);
    w.hub
        .exec(&format!(
            "CREATE TABLE {} ({} INTEGER PRIMARY KEY, {} TEXT, {} TEXT, {} REAL, {} BLOB, {} INTEGER, {} TEXT)",
            q(TABLE),
            q(COLUMNS[0]),
            q(COLUMNS[1]),
            q(COLUMNS[2]),
            q(COLUMNS[3]),
            q(COLUMNS[4]),
            q(COLUMNS[5]),
            q(COLUMNS[6]),
        ))
        .await;
    let mut model: Vec<Vec<Value>> = vec![
        row(
            1,
            Value::Null,
            text(""),
            0.1,
            blob(&[0, 1, 0, 255, 0]),
            int(i64::MIN),
            text("12345678901234567890.123456789"),
        ),
        row(2, text(unicode), text(&big), -0.0, blob(&[0; 16]), int(i64::MAX), text("2026-11-23")),
        row(3, text("2026-11-23T10:11:12.123456Z"), Value::Null, 1e308, blob(&[]), int(0), Value::Null),
        row(4, text("-0"), text(" "), 5e-324, Value::Null, Value::Null, text("select * from \"x\"; -- '")),
    ];
    for r in &model {
        insert(&w, "hub", r).await;
    }
    let check = async |model: &[Vec<Value>], what: &str| {
        let expected: Vec<Vec<Value>> =
            model.iter().map(|r| r.iter().cloned().map(|v| h.stored_form(v)).collect()).collect();
        for db in w.names() {
            let data = w.db(&db).read_table(TABLE).await;
            assert_eq!(data.columns, COLUMNS, "{what}: the columns on `{db}`");
            // In a mixed group a database whose engine keeps more than another
            // (PostgreSQL's -0.0) holds its own writes as written: compare in
            // the form every engine of the group keeps; that form is exact.
            let rows: Vec<Vec<Value>> =
                data.rows.into_iter().map(|r| r.into_iter().map(|v| h.stored_form(v)).collect()).collect();
            assert_rows_eq(&rows, &expected, &format!("{what}: `{db}`"));
        }
    };
    // Initial copy to `m`; `late` joins later.
    w.sync("m").await;
    // Incremental, hub to member: a new row and updates to other awkward values.
    let r5 =
        row(5, text("ünï"), text(unicode), -1.5e-300, blob(&[0, 0, 0]), int(-1), text("2026-11-23T10:11:12+02:00"));
    insert(&w, "hub", &r5).await;
    model.push(r5);
    let r1 = row(1, text(""), Value::Null, -0.0, blob(&[255, 0]), int(i64::MAX), text("0.000000000000000000001"));
    update(&w, "hub", &r1).await;
    model[0] = r1;
    w.sync("m").await;
    // Member to hub: an insert and updates of awkward values, including to NULL.
    let r6 = row(6, text(&big), text("control \u{1}\u{7f} chars"), f64::MAX, blob(&[0]), int(i64::MIN), text(unicode));
    insert(&w, "m", &r6).await;
    model.push(r6);
    let r3 = row(
        3,
        Value::Null,
        text("tab\there"),
        f64::MIN_POSITIVE,
        Value::Null,
        Value::Null,
        text("9999999999999999999999.999999999"),
    );
    update(&w, "m", &r3).await;
    model[2] = r3;
    let r2 = row(2, text("e\u{301}"), text(""), 0.1 + 0.2, blob(&[0; 1 << 10]), int(1), Value::Null);
    update(&w, "m", &r2).await;
    model[1] = r2;
    w.converge().await;
    model.sort_by_key(|r| match r[0] {
        Value::Integer(i) => i,
        _ => 0,
    });
    check(&model, "after syncs both ways").await;
    w.finish().await;
}

//! Scenario 10: bad input fails clearly and changes nothing.

use hubsync_core::Direction::Bidirectional;
use hubsync_core::{ConflictPolicy, Endpoint, ErrorKind, TableName, TableSelection, Value};

use crate::harness::Harness;
use crate::world::{SyncFailure, World, assert_rows_eq, table};

const T: &str = r#"CREATE TABLE "t" ("id" INTEGER PRIMARY KEY, "v" TEXT, "w" TEXT)"#;

async fn snapshot(w: &World, tables: &[&str]) -> Vec<(String, String, Vec<Vec<Value>>)> {
    let mut all = Vec::new();
    for db in w.names() {
        for t in tables {
            all.push((db.clone(), t.to_string(), w.rows(&db, t).await));
        }
    }
    all
}

async fn assert_unchanged(w: &World, tables: &[&str], before: &[(String, String, Vec<Vec<Value>>)], what: &str) {
    for ((db, t, rows), (_, _, now)) in before.iter().zip(snapshot(w, tables).await) {
        assert_rows_eq(&now, rows, &format!("{what}: table `{t}` on `{db}` changed"));
    }
}

pub(crate) async fn an_unopenable_member_fails_clearly_and_the_others_still_sync(h: &dyn Harness) {
    let w = World::new(h, &[("good", Bidirectional)], ConflictPolicy::HubWin, &["t"]).await;
    w.hub.exec(T).await;
    w.hub.exec(r#"INSERT INTO "t" ("id", "v", "w") VALUES (1, 'a', 'b')"#).await;
    let tables = w.resolve().await.expect("resolving");
    for bad in h.unopenable_urls() {
        // The error may come from connecting or from the first use.
        let error = match hubsync_engines::connect(&bad.url, &bad.base_dir).await {
            Err(e) => e,
            Ok(member) => match hubsync_core::provision_member(&member, &tables).await {
                Err(e) => e,
                Ok(_) => panic!("{} ({}) was opened and provisioned", bad.url, bad.what),
            },
        };
        let message = error.to_string();
        assert_eq!(error.kind, ErrorKind::ConnectionFailed, "{} ({}): wrong kind: {message}", bad.url, bad.what);
        assert!(
            message.contains(&bad.mentions),
            "{} ({}): the error must name the database `{}`: {message}",
            bad.url,
            bad.what,
            bad.mentions
        );
        assert!(!bad.base_dir.join("no-such-directory").exists(), "a failed connect created directories");
    }
    // The same round goes on for the good member.
    w.sync("good").await;
    w.assert_same_rows("t").await;
    assert_eq!(w.rows("good", "t").await.len(), 1);
    w.finish().await;
}

pub(crate) async fn a_table_missing_on_the_hub_is_named_in_the_error(h: &dyn Harness) {
    let w = World::new(h, &[("m", Bidirectional)], ConflictPolicy::HubWin, &["t", "nowhere to be found"]).await;
    w.hub.exec(T).await;
    w.hub.exec(r#"INSERT INTO "t" ("id", "v", "w") VALUES (1, 'a', 'b')"#).await;
    let err = w.try_sync("m").await.expect_err("a sync of a table missing on the hub must fail");
    let message = err.to_string();
    assert!(matches!(err, SyncFailure::Resolve(_)), "fails while resolving the tables: {message}");
    assert_eq!(err.kind(), ErrorKind::TableMissing, "{message}");
    assert!(message.contains("nowhere to be found"), "names the table: {message}");
    assert!(message.contains("does not exist on the hub"), "says it is missing on the hub: {message}");
    assert_eq!(w.rows("hub", "t").await.len(), 1);
    assert!(
        w.member("m").db.endpoint().introspect(&TableName::new("t")).await.expect("introspect").is_none(),
        "nothing was created on the member"
    );
    w.finish().await;
}

pub(crate) async fn a_member_table_lacking_a_synced_column_is_refused_clearly(h: &dyn Harness) {
    let w = World::new(h, &[("m", Bidirectional)], ConflictPolicy::HubWin, &["t"]).await;
    w.hub.exec(T).await;
    w.hub.exec(r#"INSERT INTO "t" ("id", "v", "w") VALUES (1, 'hub', 'hub')"#).await;
    let m = &w.member("m").db;
    m.exec(r#"CREATE TABLE "t" ("id" INTEGER PRIMARY KEY, "v" TEXT); INSERT INTO "t" ("id", "v") VALUES (1, 'member'), (2, 'member')"#).await;
    let before = snapshot(&w, &["t"]).await;
    let err = w.try_sync("m").await.expect_err("a member table lacking a synced column must be refused");
    let message = err.to_string();
    assert_eq!(err.kind(), ErrorKind::Schema, "{message}");
    assert!(message.contains("`t`") && message.contains("`w`"), "names the table and the column: {message}");
    let label = m.endpoint().label().to_string();
    assert!(message.contains(&label), "names the member database ({label}): {message}");
    assert_unchanged(&w, &["t"], &before, "after the refused sync").await;
    // And a sync after the refusal still moves nothing: the hub's data is intact.
    let again = w.try_sync("m").await;
    assert!(again.is_err(), "still refused");
    assert_unchanged(&w, &["t"], &before, "after a second attempt").await;
    w.finish().await;
}

pub(crate) async fn a_table_without_primary_key_is_refused_clearly(h: &dyn Harness) {
    let w = World::new(h, &[("m", Bidirectional)], ConflictPolicy::HubWin, &[])
        .await
        .with_tables(vec![table("t"), TableSelection { name: TableName::new("keyless"), columns: None, policy: None }]);
    w.hub.exec(T).await;
    w.hub.exec(r#"CREATE TABLE "keyless" ("a" INTEGER, "b" TEXT); INSERT INTO "keyless" ("a", "b") VALUES (1, 'x'), (1, 'x')"#).await;
    w.hub.exec(r#"INSERT INTO "t" ("id", "v", "w") VALUES (1, 'a', 'b')"#).await;
    let before = w.hub.read_table("keyless").await;
    let err = w.try_sync("m").await.expect_err("a table without primary key must be refused");
    let message = err.to_string();
    assert_eq!(err.kind(), ErrorKind::Schema, "{message}");
    assert!(
        message.contains("keyless") && message.contains("no primary key"),
        "says which table has no primary key: {message}"
    );
    assert_eq!(w.hub.read_table("keyless").await, before, "the hub's table is unchanged");
    assert_eq!(w.rows("hub", "t").await.len(), 1);
    assert!(
        w.member("m").db.endpoint().introspect(&TableName::new("t")).await.expect("introspect").is_none(),
        "nothing was created on the member"
    );
    w.finish().await;
}

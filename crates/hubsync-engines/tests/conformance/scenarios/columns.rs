//! Scenario 9: column selection. The hub's `products(id, name, price, secret)`
//! has indexes on (name) and on (secret); the group syncs id, name and price.

use hubsync_core::Direction::Bidirectional;
use hubsync_core::{ConflictPolicy, Endpoint, TableName, TableSelection};

use crate::harness::Harness;
use crate::world::{World, assert_rows_eq, int, text};

fn selection() -> Vec<TableSelection> {
    vec![TableSelection {
        name: TableName::new("products"),
        columns: Some(vec!["id".into(), "name".into(), "price".into()]),
        policy: None,
    }]
}

async fn hub_products(w: &World) {
    w.hub
        .exec(
            r#"CREATE TABLE "products" ("id" INTEGER PRIMARY KEY, "name" TEXT, "price" REAL, "secret" TEXT);
               CREATE INDEX "products_by_name" ON "products" ("name");
               CREATE INDEX "products_by_secret" ON "products" ("secret");
               INSERT INTO "products" ("id", "name", "price", "secret") VALUES
                 (1, 'apple', 1.5, 'hub-s1'), (2, 'pear', 2.25, 'hub-s2'), (3, 'plum', 0.5, 'hub-s3');"#,
        )
        .await;
}

pub(crate) async fn an_auto_provisioned_member_gets_only_the_selected_columns_and_their_indexes(h: &dyn Harness) {
    let w = World::new(h, &[("m", Bidirectional)], ConflictPolicy::HubWin, &[]).await.with_tables(selection());
    hub_products(&w).await;
    w.sync("m").await;
    let schema = w
        .member("m")
        .db
        .endpoint()
        .introspect(&TableName::new("products"))
        .await
        .expect("introspecting the member")
        .expect("the member table was created");
    assert_eq!(schema.column_names(), vec!["id", "name", "price"], "the member's columns");
    assert_eq!(schema.primary_key, vec!["id".to_string()], "the member's primary key");
    let indexes: Vec<Vec<String>> = schema.indexes.iter().map(|i| i.columns.clone()).collect();
    assert_eq!(
        indexes,
        vec![vec!["name".to_string()]],
        "the member has the index on name and no other: {:?}",
        schema.indexes
    );
    let data = w.member("m").db.read_table("products").await;
    assert_eq!(data.columns, vec!["id", "name", "price"]);
    assert_rows_eq(
        &data.rows,
        &w.hub.read_table("products").await.project(&["id", "name", "price"]),
        "the member's rows",
    );
    w.finish().await;
}

pub(crate) async fn a_member_only_column_is_never_touched_nor_sent(h: &dyn Harness) {
    let w = World::new(h, &[("m", Bidirectional)], ConflictPolicy::HubWin, &[]).await.with_tables(selection());
    hub_products(&w).await;
    let m = &w.member("m").db;
    m.exec(
        r#"CREATE TABLE "products" ("id" INTEGER PRIMARY KEY, "name" TEXT, "price" REAL, "secret" TEXT);
           INSERT INTO "products" ("id", "name", "price", "secret") VALUES
             (1, 'apple', 1.5, 'm-s1'), (2, 'pear', 2.25, 'm-s2'), (3, 'plum', 0.5, 'm-s3');"#,
    )
    .await;
    w.converge().await;
    assert_eq!(
        m.read_table("products").await.project(&["id", "secret"]).into_iter().map(|r| r[1].clone()).collect::<Vec<_>>(),
        vec![text("m-s1"), text("m-s2"), text("m-s3")],
        "the first sync of existing tables leaves the member-only column alone"
    );

    // Hub updates of synced columns reach the member; its secrets stay.
    w.hub.exec(r#"UPDATE "products" SET "name" = 'green apple', "price" = 1.75 WHERE "id" = 1"#).await;
    w.hub.exec(r#"INSERT INTO "products" ("id", "name", "price", "secret") VALUES (4, 'fig', 3.0, 'hub-s4')"#).await;
    w.converge().await;
    let secrets = |rows: Vec<Vec<hubsync_core::Value>>| rows.into_iter().map(|r| r[1].clone()).collect::<Vec<_>>();
    let member = m.read_table("products").await;
    assert_rows_eq(
        &member.project(&["id", "name", "price"]),
        &w.hub.read_table("products").await.project(&["id", "name", "price"]),
        "synced columns",
    );
    assert_eq!(
        secrets(member.project(&["id", "secret"])),
        vec![text("m-s1"), text("m-s2"), text("m-s3"), hubsync_core::Value::Null],
        "the member's own column is untouched by syncs"
    );

    // A member update of only the member-only column is not a change to send.
    m.exec(r#"UPDATE "products" SET "secret" = 'm-s2 changed' WHERE "id" = 2"#).await;
    let r = w.sync("m").await;
    assert_eq!((r.uploaded, r.downloaded), (0, 0), "an update of an unsynced column moved rows: {r:?}");
    // A member update of a synced column is sent, and leaves the hub's secret alone.
    m.exec(r#"UPDATE "products" SET "price" = 0.75 WHERE "id" = 3"#).await;
    let r = w.sync("m").await;
    assert_eq!(r.uploaded, 1, "the member's price update is uploaded: {r:?}");
    let hub = w.hub.read_table("products").await;
    assert_eq!(
        secrets(hub.project(&["id", "secret"])),
        vec![text("hub-s1"), text("hub-s2"), text("hub-s3"), text("hub-s4")],
        "the hub's secrets are untouched"
    );
    assert_eq!(hub.project(&["id", "price"])[2], vec![int(3), hubsync_core::Value::Real(0.75)]);
    w.finish().await;
}

/// DESIGN.md: when both sides already hold rows, equal rows are left alone.
pub(crate) async fn equal_rows_on_both_sides_are_left_alone_at_the_first_sync(h: &dyn Harness) {
    let w = World::new(h, &[("m", Bidirectional)], ConflictPolicy::HubWin, &["t"]).await;
    let setup = r#"CREATE TABLE "t" ("id" INTEGER PRIMARY KEY, "v" TEXT);
                   INSERT INTO "t" ("id", "v") VALUES (1, 'same'), (2, 'same too');"#;
    w.hub.exec(setup).await;
    w.member("m").db.exec(setup).await;
    let r = w.sync("m").await;
    assert_eq!((r.uploaded, r.downloaded, r.conflict_count), (0, 0, 0), "equal rows were written again: {r:?}");
    w.assert_same_rows("t").await;
    w.finish().await;
}

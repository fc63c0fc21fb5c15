//! Scenario 7: foreign keys are honoured on the way (parents before children
//! for inserts and updates, children before parents for deletes, re-parenting,
//! self-references), with small batches so related rows travel in different
//! batches. The group's tables are listed children first, so the order comes
//! from the foreign keys, not from the configuration.

use hubsync_core::ConflictPolicy;
use hubsync_core::Direction::Bidirectional;

use crate::harness::{Harness, Role};
use crate::world::World;

const PARENT: &str = r#"CREATE TABLE "parent" ("id" INTEGER PRIMARY KEY, "name" TEXT)"#;
const CHILD: &str =
    r#"CREATE TABLE "child" ("id" INTEGER PRIMARY KEY, "parent_id" INTEGER REFERENCES "parent" ("id"), "name" TEXT)"#;
const NODE: &str =
    r#"CREATE TABLE "node" ("id" INTEGER PRIMARY KEY, "parent_id" INTEGER REFERENCES "node" ("id"), "label" TEXT)"#;

/// A hub with `parent`/`child`, a member `old` that synced one parent, and a
/// member `fresh` that never synced.
async fn family(h: &dyn Harness) -> World {
    let w = World::new(
        h,
        &[("old", Bidirectional), ("fresh", Bidirectional)],
        ConflictPolicy::HubWin,
        &["child", "parent"],
    )
    .await
    .with_batch_rows(2);
    w.hub.exec(PARENT).await;
    w.hub.exec(CHILD).await;
    w.hub.exec(r#"INSERT INTO "parent" ("id", "name") VALUES (1, 'p1')"#).await;
    w.sync("old").await;
    w
}

async fn add_families(w: &World) {
    w.hub
        .exec(
            r#"INSERT INTO "parent" ("id", "name") VALUES (2, 'p2');
               INSERT INTO "child" ("id", "parent_id", "name") VALUES (1, 2, 'c1'), (2, 2, 'c2');
               INSERT INTO "parent" ("id", "name") VALUES (3, 'p3'), (4, 'p4');
               INSERT INTO "child" ("id", "parent_id", "name") VALUES (3, 3, 'c3'), (4, 4, 'c4'), (5, 1, 'c5'), (6, 4, 'c6');
               UPDATE "parent" SET "name" = 'p2 renamed' WHERE "id" = 2;"#,
        )
        .await;
}

async fn assert_all_same(w: &World, tables: &[&str]) {
    for t in tables {
        w.assert_same_rows(t).await;
    }
}

pub(crate) async fn parents_and_children_reach_empty_and_non_empty_members(h: &dyn Harness) {
    let w = family(h).await;
    add_families(&w).await;
    let old = w.sync("old").await;
    assert!(old.tables.iter().all(|t| !t.bulk), "`old` synced before, so its sync is incremental: {old:?}");
    w.sync("fresh").await;
    assert_eq!(w.rows("hub", "child").await.len(), 6);
    assert_all_same(&w, &["parent", "child"]).await;
    w.finish().await;
}

pub(crate) async fn deleting_children_and_their_parent_syncs(h: &dyn Harness) {
    let w = family(h).await;
    add_families(&w).await;
    w.converge().await;
    w.hub
        .exec(
            r#"DELETE FROM "child" WHERE "parent_id" = 4;
               DELETE FROM "parent" WHERE "id" = 4;
               DELETE FROM "child" WHERE "parent_id" = 2;
               DELETE FROM "parent" WHERE "id" = 2;"#,
        )
        .await;
    w.converge().await;
    assert_eq!(w.rows("hub", "parent").await.len(), 2);
    assert_all_same(&w, &["parent", "child"]).await;
    w.finish().await;
}

pub(crate) async fn reparenting_a_child_and_deleting_its_old_parent_syncs(h: &dyn Harness) {
    let w = family(h).await;
    add_families(&w).await;
    w.converge().await;
    // The parent's delete is read before the child's move (deletes go first),
    // so the member must cope with a delete its foreign key refuses at first.
    w.hub
        .exec(
            r#"INSERT INTO "parent" ("id", "name") VALUES (5, 'p5');
               UPDATE "child" SET "parent_id" = 5 WHERE "parent_id" = 3;
               DELETE FROM "parent" WHERE "id" = 3;"#,
        )
        .await;
    w.converge().await;
    assert_all_same(&w, &["parent", "child"]).await;
    let children = w.rows("old", "child").await;
    assert!(
        children.iter().any(|r| r[0] == crate::world::int(3) && r[1] == crate::world::int(5)),
        "c3 moved to p5: {children:?}"
    );
    w.finish().await;
}

async fn tree(h: &dyn Harness, batch_rows: usize) -> World {
    let w = World::new(h, &[("m", Bidirectional)], ConflictPolicy::HubWin, &["node"]).await.with_batch_rows(batch_rows);
    w.hub.exec(NODE).await;
    w.hub.exec(r#"INSERT INTO "node" ("id", "parent_id", "label") VALUES (1, NULL, 'root')"#).await;
    w.sync("m").await;
    w
}

pub(crate) async fn a_self_referencing_tree_syncs_incrementally(h: &dyn Harness) {
    let w = tree(h, 2).await;
    w.hub
        .exec(
            r#"INSERT INTO "node" ("id", "parent_id", "label") VALUES (2, 1, 'a'), (3, 1, 'b');
               INSERT INTO "node" ("id", "parent_id", "label") VALUES (4, 2, 'a.a'), (5, 2, 'a.b'), (6, 3, 'b.a');"#,
        )
        .await;
    w.converge().await;
    w.assert_same_rows("node").await;
    // Deleting a subtree, leaves first, syncs too.
    w.hub.exec(r#"DELETE FROM "node" WHERE "parent_id" = 2; DELETE FROM "node" WHERE "id" = 2;"#).await;
    w.converge().await;
    w.assert_same_rows("node").await;
    assert_eq!(w.rows("m", "node").await.len(), 3);
    w.finish().await;
}

/// A parent changed after its child was inserted has the higher version, so
/// the child is read (and applied) first: versions 8, 9, 7. With 3 rows per
/// batch all three are in one batch (deferred checks suffice); with 1 row per
/// batch the child's batch commits before its parent's arrives.
pub(crate) async fn a_self_referencing_tree_syncs_when_a_parent_changes_after_its_child(
    h: &dyn Harness,
    batch_rows: usize,
) {
    let w = tree(h, batch_rows).await;
    w.hub
        .exec(
            r#"INSERT INTO "node" ("id", "parent_id", "label") VALUES (7, 1, 'c');
               INSERT INTO "node" ("id", "parent_id", "label") VALUES (8, 7, 'c.a');
               INSERT INTO "node" ("id", "parent_id", "label") VALUES (9, 8, 'c.a.a');
               UPDATE "node" SET "label" = 'c renamed' WHERE "id" = 7;"#,
        )
        .await;
    w.converge().await;
    w.assert_same_rows("node").await;
    w.finish().await;
}

const CASCADING_NODE: &str = r#"CREATE TABLE "node" ("id" INTEGER PRIMARY KEY, "parent_id" INTEGER REFERENCES "node" ("id") ON DELETE CASCADE, "label" TEXT)"#;

/// Rows a cascade deletes while hubsync applies a change are changes too: a
/// member `a` and the hub cascade deletes to a subtree, a member `b`
/// (provisioned by hubsync, without the cascade) has only what it is sent.
/// One row per batch, so the hub applies the root's delete, and cascades,
/// before the children's deletes arrive.
pub(crate) async fn rows_a_cascade_deletes_during_an_apply_reach_every_member(h: &dyn Harness) {
    let w = World::new(h, &[("a", Bidirectional), ("b", Bidirectional)], ConflictPolicy::HubWin, &["node"])
        .await
        .with_batch_rows(1);
    w.hub.exec(CASCADING_NODE).await;
    w.db("a").exec(CASCADING_NODE).await;
    if !h.tracks_foreign_key_actions(Role::Hub) || !h.tracks_foreign_key_actions(Role::Member(0)) {
        // Refused at provisioning, with the constraint's action named.
        let err = w.try_sync("a").await.expect_err("a cascading table on MySQL/MariaDB must be refused");
        let message = err.to_string();
        assert!(message.contains("ON DELETE CASCADE") && message.contains("RESTRICT"), "{message}");
        w.finish().await;
        return;
    }
    w.hub
        .exec(
            r#"INSERT INTO "node" ("id", "parent_id", "label") VALUES (1, NULL, 'root');
               INSERT INTO "node" ("id", "parent_id", "label") VALUES (2, 1, 'a'), (5, NULL, 'other');
               INSERT INTO "node" ("id", "parent_id", "label") VALUES (3, 2, 'a.a');"#,
        )
        .await;
    w.converge().await;
    w.assert_same_rows("node").await;
    assert_eq!(w.rows("b", "node").await.len(), 4);

    // On `a`, the cascade deletes 2 and 3 inside the application's
    // statement; on the hub it runs while the root's delete is applied.
    w.db("a").exec(r#"DELETE FROM "node" WHERE "id" = 1"#).await;
    w.converge().await;
    w.assert_same_rows("node").await;
    assert_eq!(w.rows("b", "node").await.len(), 1, "only node 5 is left");
    w.finish().await;
}

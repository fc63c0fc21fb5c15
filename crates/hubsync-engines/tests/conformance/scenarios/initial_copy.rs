//! What an initial copy leaves behind must not come back as member changes.
//!
//! Rows a member received by bulk copy are the hub's rows, not the member's
//! changes: neither a later sync (after the hub deleted or changed them) nor
//! provisioning the member again may send them back to the hub.

use std::time::Duration;

use hubsync_core::Direction::Bidirectional;
use hubsync_core::testing::FaultyEndpoint;
use hubsync_core::{ConflictPolicy, ErrorKind};

use crate::harness::Harness;
use crate::world::{Quiet, World, assert_rows_eq, int, text};

async fn copied_to_two_members(h: &dyn Harness, policy: ConflictPolicy) -> World {
    let w = World::new(h, &[("m1", Bidirectional), ("m2", Bidirectional)], policy, &["t"]).await;
    w.hub.exec(r#"CREATE TABLE "t" ("id" INTEGER PRIMARY KEY, "v" TEXT); INSERT INTO "t" ("id", "v") VALUES (1, 'one'), (2, 'two')"#).await;
    // Both members are new: they get the rows by initial copy and have never written.
    w.sync_all().await;
    w.assert_same_rows("t").await;
    w
}

/// The hub deletes every row; the members, which only ever received them,
/// must not put them back (under any policy: no member changed anything).
pub(crate) async fn rows_deleted_on_the_hub_are_not_brought_back_by_members_that_only_received_them(
    h: &dyn Harness,
    policy: ConflictPolicy,
) {
    let mut w = copied_to_two_members(h, policy).await;
    // Provisioned once only, to keep this apart from provisioning again (below).
    w.provision_every_sync = false;
    w.hub.exec(r#"DELETE FROM "t""#).await;
    let r = w.sync("m1").await;
    assert_eq!(r.uploaded, 0, "m1 never changed anything, yet it sent rows to the hub: {r:?}");
    w.converge().await;
    for db in w.names() {
        assert_rows_eq(&w.rows(&db, "t").await, &[], &format!("`{db}` after the hub deleted every row"));
    }
    w.finish().await;
}

/// The hub updates a row after the members' initial copy; the members are
/// provisioned again (every `hubsync sync` does) and sync. Under MemberWin a
/// copied row mistaken for a member change would overwrite the hub's update.
pub(crate) async fn provisioning_again_does_not_turn_copied_rows_into_member_changes(
    h: &dyn Harness,
    policy: ConflictPolicy,
) {
    let mut w = copied_to_two_members(h, policy).await;
    w.provision_every_sync = true;
    w.hub.exec(r#"UPDATE "t" SET "v" = 'one, updated on the hub' WHERE "id" = 1"#).await;
    w.hub.exec(r#"DELETE FROM "t" WHERE "id" = 2"#).await;
    let r = w.sync("m1").await;
    w.converge().await;
    for db in w.names() {
        assert_rows_eq(&w.rows(&db, "t").await, &[vec![int(1), text("one, updated on the hub")]], &format!("`{db}`"));
    }
    assert_eq!(
        (r.uploaded, r.conflict_count),
        (0, 0),
        "m1 changed nothing, yet its sync after provisioning again sent rows or met conflicts: {:#?}",
        r.conflicts.iter().map(|c| c.describe()).collect::<Vec<_>>()
    );
    w.finish().await;
}

/// The member refuses the initial copy at once (its first write fails) while
/// the hub still has many batches to stream: the sync must fail promptly
/// with that error, not wait forever on the hub's reader, and the next sync
/// must copy every row exactly once.
pub(crate) async fn an_initial_copy_refused_at_once_fails_promptly_and_the_next_sync_copies_everything(
    h: &dyn Harness,
) {
    let w = World::new(h, &[("m1", Bidirectional)], ConflictPolicy::HubWin, &["t"]).await.with_batch_rows(2);
    w.hub.exec(r#"CREATE TABLE "t" ("id" INTEGER PRIMARY KEY, "v" TEXT)"#).await;
    for id in 1..=20 {
        w.hub.exec_with(r#"INSERT INTO "t" ("id", "v") VALUES (?, ?)"#, &[int(id), text(&format!("row {id}"))]).await;
    }
    let member = FaultyEndpoint::failing_after(w.member("m1").db.endpoint().clone(), 0);
    let attempt =
        tokio::time::timeout(Duration::from_secs(60), w.sync_through("m1", w.hub.endpoint(), &member, &Quiet))
            .await
            .expect("the failed initial copy must end, not hang");
    let e = attempt.expect_err("the member refused its first write, so the sync must fail");
    assert_eq!(e.kind(), ErrorKind::Injected, "only the injected failure may happen: {e}");
    assert_rows_eq(&w.rows("m1", "t").await, &[], "the member after the refused copy");
    let r = w.sync("m1").await;
    assert_eq!(r.downloaded, 20, "the next sync copies every row once: {r:?}");
    w.assert_same_rows("t").await;
    assert_eq!(w.converge().await, 0, "nothing left to move after the copy");
    w.finish().await;
}

/// An application inserts into the member table after the sync found it empty
/// and before the copy loads: one of its rows collides with a hub row. The
/// copy must not fail the sync; the table moves change by change instead, the
/// collision is a conflict the policy settles, and the application's other
/// row reaches the hub.
pub(crate) async fn an_application_write_racing_the_initial_copy_becomes_a_conflict(h: &dyn Harness) {
    let w = World::new(h, &[("m1", Bidirectional)], ConflictPolicy::HubWin, &["t"]).await.with_batch_rows(2);
    w.hub.exec(r#"CREATE TABLE "t" ("id" INTEGER PRIMARY KEY, "v" TEXT)"#).await;
    for id in 1..=6 {
        w.hub.exec_with(r#"INSERT INTO "t" ("id", "v") VALUES (?, ?)"#, &[int(id), text(&format!("row {id}"))]).await;
    }
    let (member, pause) = FaultyEndpoint::pausing_after_empty_check(w.member("m1").db.endpoint().clone());
    let app = async {
        pause.reached().await;
        let m1 = w.db("m1");
        m1.exec_with(r#"INSERT INTO "t" ("id", "v") VALUES (?, ?)"#, &[int(3), text("the member's own 3")]).await;
        m1.exec_with(r#"INSERT INTO "t" ("id", "v") VALUES (?, ?)"#, &[int(100), text("the member's own 100")]).await;
        pause.resume();
    };
    let (synced, ()) = tokio::join!(
        tokio::time::timeout(Duration::from_secs(60), w.sync_through("m1", w.hub.endpoint(), &member, &Quiet)),
        app
    );
    let r = synced
        .expect("the sync must end")
        .unwrap_or_else(|e| panic!("a racing application write failed the sync: {e}"));
    assert_eq!(r.downloaded, 6, "every hub row reaches the member: {r:?}");
    assert_eq!(r.conflict_count, 1, "the colliding key is one conflict: {r:?}");
    w.converge().await;
    let mut expected: Vec<_> = (1..=6).map(|id| vec![int(id), text(&format!("row {id}"))]).collect();
    expected.push(vec![int(100), text("the member's own 100")]);
    assert_rows_eq(&w.rows("hub", "t").await, &expected, "the hub (HubWin keeps its 3; the member's 100 arrives)");
    w.assert_same_rows("t").await;
    w.finish().await;
}

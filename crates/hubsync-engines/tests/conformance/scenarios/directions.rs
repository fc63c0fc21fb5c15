//! Scenarios 1 and 4: which way changes flow per direction, and that a
//! converged group moves nothing more.

use hubsync_core::ConflictPolicy;
use hubsync_core::Direction::{Bidirectional, OneWayHubToMember, OneWayMemberToHub};

use crate::harness::Harness;
use crate::world::{World, assert_rows_eq, int, text};

const ITEMS: &str = r#"CREATE TABLE "items" ("id" INTEGER PRIMARY KEY, "v" TEXT)"#;

async fn ins(w: &World, db: &str, id: i64, v: &str) {
    w.db(db).exec_with(r#"INSERT INTO "items" ("id", "v") VALUES (?, ?)"#, &[int(id), text(v)]).await;
}

async fn upd(w: &World, db: &str, id: i64, v: &str) {
    let n = w.db(db).exec_with(r#"UPDATE "items" SET "v" = ? WHERE "id" = ?"#, &[text(v), int(id)]).await;
    assert_eq!(n, 1, "update of {id} on {db} touched no row");
}

async fn del(w: &World, db: &str, id: i64) {
    let n = w.db(db).exec_with(r#"DELETE FROM "items" WHERE "id" = ?"#, &[int(id)]).await;
    assert_eq!(n, 1, "delete of {id} on {db} touched no row");
}

fn rows(list: &[(i64, &str)]) -> Vec<Vec<hubsync_core::Value>> {
    let mut v: Vec<_> = list.iter().map(|(i, s)| vec![int(*i), text(s)]).collect();
    v.sort_by_key(|r| match r[0] {
        hubsync_core::Value::Integer(i) => i,
        _ => 0,
    });
    v
}

/// A group with one member of each direction, after a round of changes on
/// every database. Returns the world; the expectations are in the callers.
async fn changes_everywhere(h: &dyn Harness) -> World {
    let w = World::new(
        h,
        &[("both", Bidirectional), ("sender", OneWayMemberToHub), ("receiver", OneWayHubToMember)],
        ConflictPolicy::HubWin,
        &["items"],
    )
    .await;
    w.hub.exec(ITEMS).await;
    for i in 1..=6 {
        ins(&w, "hub", i, &format!("hub-{i}")).await;
    }
    w.converge().await;
    // The sender never receives: its table was created empty and stays so.
    assert_rows_eq(&w.rows("sender", "items").await, &[], "the one-way-to-hub member after the initial sync");
    // Rows the sender owns, synced once so that it can update and delete them later.
    ins(&w, "sender", 30, "sender-30").await;
    ins(&w, "sender", 31, "sender-31").await;
    w.converge().await;

    // Hub: insert, update, delete.
    ins(&w, "hub", 10, "hub-new").await;
    upd(&w, "hub", 1, "hub-updated").await;
    del(&w, "hub", 2).await;
    // Bidirectional member: insert, update, delete.
    ins(&w, "both", 20, "both-new").await;
    upd(&w, "both", 3, "both-updated").await;
    del(&w, "both", 4).await;
    // Member to hub only: insert, update, delete.
    ins(&w, "sender", 32, "sender-new").await;
    upd(&w, "sender", 31, "sender-updated").await;
    del(&w, "sender", 30).await;
    // Hub to member only: its changes stay local.
    ins(&w, "receiver", 40, "receiver-new").await;
    upd(&w, "receiver", 5, "receiver-updated").await;
    del(&w, "receiver", 6).await;
    w.converge().await;
    w
}

/// Everything the hub must hold: its own, the bidirectional member's and the
/// sender's changes, none of the receiver's.
fn hub_expected() -> Vec<Vec<hubsync_core::Value>> {
    rows(&[
        (1, "hub-updated"),
        (3, "both-updated"),
        (5, "hub-5"),
        (6, "hub-6"),
        (10, "hub-new"),
        (20, "both-new"),
        (31, "sender-updated"),
        (32, "sender-new"),
    ])
}

pub(crate) async fn bidirectional_member_sends_and_receives(h: &dyn Harness) {
    let w = changes_everywhere(h).await;
    assert_rows_eq(&w.rows("hub", "items").await, &hub_expected(), "the hub");
    assert_rows_eq(
        &w.rows("both", "items").await,
        &hub_expected(),
        "the bidirectional member (inserts, updates and deletes of the hub and of the one-way-to-hub member reach it)",
    );
    w.finish().await;
}

pub(crate) async fn one_way_member_to_hub_sends_but_never_receives(h: &dyn Harness) {
    let w = changes_everywhere(h).await;
    let hub = w.rows("hub", "items").await;
    assert!(hub.contains(&vec![int(32), text("sender-new")]), "the sender's insert reached the hub");
    assert!(hub.contains(&vec![int(31), text("sender-updated")]), "the sender's update reached the hub");
    assert!(!hub.iter().any(|r| r[0] == int(30)), "the sender's delete reached the hub");
    assert_rows_eq(
        &w.rows("sender", "items").await,
        &rows(&[(31, "sender-updated"), (32, "sender-new")]),
        "the one-way-to-hub member holds only its own rows: no hub change ever appears on it",
    );
    w.finish().await;
}

pub(crate) async fn one_way_hub_to_member_receives_but_never_sends(h: &dyn Harness) {
    let w = changes_everywhere(h).await;
    assert_rows_eq(&w.rows("hub", "items").await, &hub_expected(), "the hub (none of the receiver's changes)");
    // The receiver has everything the hub has, except its own local changes,
    // which it keeps: its insert, its update of 5, its delete of 6.
    let expected = rows(&[
        (1, "hub-updated"),
        (3, "both-updated"),
        (5, "receiver-updated"),
        (10, "hub-new"),
        (20, "both-new"),
        (31, "sender-updated"),
        (32, "sender-new"),
        (40, "receiver-new"),
    ]);
    assert_rows_eq(&w.rows("receiver", "items").await, &expected, "the one-way-to-member member");
    w.finish().await;
}

pub(crate) async fn a_converged_group_moves_no_rows(h: &dyn Harness) {
    let w = changes_everywhere(h).await;
    // `converge` already ended on a quiet round; check every member explicitly,
    // and again after provisioning everything anew (provisioning is idempotent
    // and must not turn existing rows into new changes).
    for pass in ["after convergence", "after provisioning again"] {
        for m in &w.members {
            let r = w.sync(&m.name).await;
            assert_eq!(
                (r.uploaded, r.downloaded, r.conflict_count),
                (0, 0, 0),
                "member `{}` ({:?}) {pass}: a sync moved rows or met conflicts: {r:?}",
                m.name,
                m.direction
            );
        }
        w.reprovision_on_next_sync();
    }
    w.finish().await;
}

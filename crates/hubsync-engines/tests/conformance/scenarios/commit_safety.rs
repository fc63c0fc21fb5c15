//! Scenario 3: a change whose transaction is still open while a sync reads
//! must arrive at a later sync (the version must be commit-safe).
//!
//! A transaction with a write is held open on the source database of a leg
//! (the hub for a one-way-to-member member, the member for a one-way-to-hub
//! member, so the leg only *reads* the database with the open transaction).
//! Where the engine allows concurrent writers, another connection then
//! commits a later write. A sync runs while the transaction is still open;
//! the transaction commits when the sync's leg has finished reading (SQLite:
//! the session's last write to the member, its session record, waits for the
//! lock until then). The next sync must deliver the first write too.

use hubsync_core::ConflictPolicy;
use hubsync_core::Direction::{OneWayHubToMember, OneWayMemberToHub};

use crate::harness::Harness;
use crate::world::{CountingObserver, World, assert_rows_eq, int, text};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpenOn {
    Hub,
    Member,
}

pub(crate) async fn open_write_arrives_at_the_next_sync(h: &dyn Harness, open_on: OpenOn) {
    let direction = match open_on {
        OpenOn::Hub => OneWayHubToMember,
        OpenOn::Member => OneWayMemberToHub,
    };
    let mut w = World::new(h, &[("m", direction)], ConflictPolicy::HubWin, &["items"]).await;
    // Provisioning writes (DDL); the sync under test must only read the
    // database holding the open transaction, so provision once, up front.
    w.provision_every_sync = false;
    let ddl = r#"CREATE TABLE "items" ("id" INTEGER PRIMARY KEY, "v" TEXT)"#;
    w.hub.exec(ddl).await;
    if open_on == OpenOn::Member {
        w.member("m").db.exec(ddl).await;
    }
    let (source, target) = match open_on {
        OpenOn::Hub => ("hub", "m"),
        OpenOn::Member => ("m", "hub"),
    };
    // Past the initial copy: the watermarks are set, syncs are incremental.
    w.db(source).exec(r#"INSERT INTO "items" ("id", "v") VALUES (1, 'before')"#).await;
    w.sync("m").await;
    w.db(source).exec(r#"INSERT INTO "items" ("id", "v") VALUES (2, 'before-too')"#).await;
    w.sync("m").await;
    assert_rows_eq(&w.rows(target, "items").await, &w.rows(source, "items").await, "the target after the setup syncs");

    let tx = w.db(source).open_write(r#"INSERT INTO "items" ("id", "v") VALUES (10, 'held open')"#).await;
    if h.concurrent_writers() {
        w.db(source).exec(r#"INSERT INTO "items" ("id", "v") VALUES (11, 'committed later')"#).await;
    }

    let observer = CountingObserver::default();
    let (report, ()) = tokio::join!(w.try_sync_observed("m", &observer), async {
        // Commit once the leg has read; if the sync never gets there, commit
        // anyway after a while so the test fails instead of hanging.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(20), observer.legs_done.notified()).await;
        tx.commit().await;
    });
    let report = report.unwrap_or_else(|e| panic!("the sync during the open transaction failed: {e}"));
    let target_rows = w.rows(target, "items").await;
    assert!(
        !target_rows.iter().any(|r| r[0] == int(10)),
        "an uncommitted write was sent (report {report:?}): {target_rows:?}"
    );

    w.sync("m").await;
    let mut expected =
        vec![vec![int(1), text("before")], vec![int(2), text("before-too")], vec![int(10), text("held open")]];
    if h.concurrent_writers() {
        expected.push(vec![int(11), text("committed later")]);
    }
    assert_rows_eq(
        &w.rows(target, "items").await,
        &expected,
        "the write committed after the first sync read must arrive at the next sync",
    );
    w.finish().await;
}

//! Scenario 5: a sync that dies between two batches loses nothing and applies
//! nothing twice.
//!
//! Two worlds are built from the same script. In the reference world member
//! `a` syncs normally; in the crashed world its sync goes through
//! `FaultyEndpoint::failing_after(target, k)` (the hub for failures while
//! uploading, the member for failures while downloading), must fail, and is
//! followed by a normal sync. Both worlds then converge, and every table on
//! every database must hold exactly the same rows in both worlds. With small
//! batches (3 rows) and changes on two tables in both directions, including
//! deletes, `k` = 0..=3 stops the sync at different batches.
//!
//! Nothing applied twice: the rows the crashed sync committed before failing
//! (counted by an observer) plus the rows of the recovery sync equal the rows
//! of the reference sync; and after recovery a further round moves nothing.

use hubsync_core::ConflictPolicy;
use hubsync_core::Direction::Bidirectional;
use hubsync_core::ErrorKind;
use hubsync_core::testing::FaultyEndpoint;

use crate::harness::Harness;
use crate::world::{CountingObserver, Quiet, World, assert_rows_eq, int, text};

const TABLES: [&str; 2] = ["t1", "t2"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FailAt {
    /// Wrap the hub: the upload leg fails.
    Upload,
    /// Wrap the member: the download leg fails.
    Download,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Script {
    /// Both sides synced before; the sync under test is incremental.
    Incremental,
    /// The member never synced: one table has local rows (incremental), the
    /// other is empty (initial bulk copy).
    Initial,
}

async fn ins(w: &World, db: &str, table: &str, ids: impl IntoIterator<Item = i64>, tag: &str) {
    for id in ids {
        w.db(db)
            .exec_with(
                &format!(r#"INSERT INTO "{table}" ("id", "v", "n") VALUES (?, ?, ?)"#),
                &[int(id), text(&format!("{tag}-{id}")), int(id * 10)],
            )
            .await;
    }
}

async fn upd(w: &World, db: &str, table: &str, ids: impl IntoIterator<Item = i64>, tag: &str) {
    for id in ids {
        let n = w
            .db(db)
            .exec_with(
                &format!(r#"UPDATE "{table}" SET "v" = ?, "n" = "n" + 1 WHERE "id" = ?"#),
                &[text(&format!("{tag}-upd-{id}")), int(id)],
            )
            .await;
        assert_eq!(n, 1);
    }
}

async fn del(w: &World, db: &str, table: &str, ids: impl IntoIterator<Item = i64>) {
    for id in ids {
        let n = w.db(db).exec_with(&format!(r#"DELETE FROM "{table}" WHERE "id" = ?"#), &[int(id)]).await;
        assert_eq!(n, 1);
    }
}

/// Builds a world up to the sync under test.
async fn build(h: &dyn Harness, script: Script) -> World {
    let w = World::new(h, &[("a", Bidirectional), ("b", Bidirectional)], ConflictPolicy::HubWin, &TABLES)
        .await
        .with_batch_rows(3);
    for t in TABLES {
        w.hub.exec(&format!(r#"CREATE TABLE "{t}" ("id" INTEGER PRIMARY KEY, "v" TEXT, "n" INTEGER)"#)).await;
    }
    match script {
        Script::Incremental => {
            for t in TABLES {
                ins(&w, "hub", t, 1..=6, "hub").await;
            }
            w.sync("a").await;
            for t in TABLES {
                ins(&w, "a", t, 101..=104, "a").await;
            }
            w.converge().await;
            ins(&w, "hub", "t1", 7..=10, "hub").await;
            upd(&w, "hub", "t1", [1, 2], "hub").await;
            del(&w, "hub", "t1", [3, 4]).await;
            ins(&w, "hub", "t2", 7..=9, "hub").await;
            upd(&w, "hub", "t2", [1], "hub").await;
            del(&w, "hub", "t2", [2, 3]).await;
            ins(&w, "a", "t1", 105..=108, "a").await;
            upd(&w, "a", "t1", [101], "a").await;
            del(&w, "a", "t1", [102, 103]).await;
            ins(&w, "a", "t2", 105..=107, "a").await;
            upd(&w, "a", "t2", [104], "a").await;
            del(&w, "a", "t2", [101]).await;
            // A change on the bystander, which reaches `a` only through the hub.
            upd(&w, "b", "t1", [5], "b").await;
            w.sync("b").await;
        }
        Script::Initial => {
            ins(&w, "hub", "t1", 1..=7, "hub").await;
            ins(&w, "hub", "t2", 1..=5, "hub").await;
            w.sync("b").await;
            // `a` has its own t1 rows before it ever syncs; its t2 does not exist yet.
            w.member("a").db.exec(r#"CREATE TABLE "t1" ("id" INTEGER PRIMARY KEY, "v" TEXT, "n" INTEGER)"#).await;
            ins(&w, "a", "t1", 101..=103, "a").await;
        }
    }
    w
}

async fn snapshot(w: &World) -> Vec<(String, &'static str, Vec<Vec<hubsync_core::Value>>)> {
    let mut all = Vec::new();
    for db in w.names() {
        for t in TABLES {
            all.push((db.clone(), t, w.rows(&db, t).await));
        }
    }
    all
}

pub(crate) async fn interrupted_sync_resumes_exactly(h: &dyn Harness, script: Script, fail_at: FailAt) {
    let reference = build(h, script).await;
    let reference_moved = reference.sync("a").await.rows_moved();
    reference.converge().await;
    let expected = snapshot(&reference).await;
    reference.finish().await;

    for k in 0..=3u64 {
        let case = format!("{script:?} sync failing while {fail_at:?}ing after {k} batch(es)");
        let w = build(h, script).await;
        // Provision first, so the faulty session fails in the sync itself.
        let tables = w.resolve().await.expect("resolve");
        hubsync_core::provision_hub(w.hub.endpoint(), &tables).await.expect("provision hub");
        hubsync_core::provision_member(w.member("a").db.endpoint(), &tables).await.expect("provision a");
        let observer = CountingObserver::default();
        let result = match fail_at {
            FailAt::Upload => {
                let hub = FaultyEndpoint::failing_after(w.hub.endpoint().clone(), k);
                let r = w.sync_through("a", &hub, w.member("a").db.endpoint(), &observer).await;
                assert!(hub.has_failed(), "{case}: the injected failure never happened");
                r
            }
            FailAt::Download => {
                let member = FaultyEndpoint::failing_after(w.member("a").db.endpoint().clone(), k);
                let r = w.sync_through("a", w.hub.endpoint(), &member, &observer).await;
                assert!(member.has_failed(), "{case}: the injected failure never happened");
                r
            }
        };
        match result {
            Ok(r) => panic!("{case}: the sync succeeded despite the injected failure: {r:?}"),
            Err(e) => assert_eq!(e.kind(), ErrorKind::Injected, "{case}: unexpected error: {e}"),
        }
        let committed_before_failure = observer.rows.load(std::sync::atomic::Ordering::SeqCst);
        let recovery =
            w.try_sync_observed("a", &Quiet).await.unwrap_or_else(|e| panic!("{case}: the recovery sync failed: {e}"));
        if script == Script::Incremental {
            assert_eq!(
                committed_before_failure + recovery.rows_moved(),
                reference_moved,
                "{case}: rows committed before the failure ({committed_before_failure}) plus rows of the recovery sync ({}) must equal the rows of the uninterrupted sync: nothing lost, nothing sent twice",
                recovery.rows_moved()
            );
        }
        w.converge().await;
        let actual = snapshot(&w).await;
        for ((db, t, rows), (_, _, want)) in actual.iter().zip(&expected) {
            assert_rows_eq(rows, want, &format!("{case}: table `{t}` on `{db}` vs the uninterrupted world"));
        }
        w.finish().await;
    }
}

/// One transaction writes many rows, which the sync cuts into small
/// batches; the sync fails after `k` of them and is run again. On engines
/// whose versions belong to a transaction (PostgreSQL) every batch ends
/// inside one version: resuming must neither skip the rest of it nor
/// apply anything twice.
pub(crate) async fn a_large_transaction_cut_into_batches_resumes_exactly(h: &dyn Harness, fail_at: FailAt) {
    for k in [1u64, 3] {
        let case = format!("a 40-row transaction, sync failing while {fail_at:?}ing after {k} batch(es)");
        let w = World::new(h, &[("a", Bidirectional)], ConflictPolicy::HubWin, &["t1"]).await.with_batch_rows(7);
        w.hub.exec(r#"CREATE TABLE "t1" ("id" INTEGER PRIMARY KEY, "v" TEXT, "n" INTEGER)"#).await;
        // Seed a row so the member's table is not empty and no bulk copy is used.
        ins(&w, "hub", "t1", [1], "seed").await;
        w.converge().await;
        let writer = match fail_at {
            FailAt::Upload => "a",
            FailAt::Download => "hub",
        };
        let values: Vec<String> = (1000..1040).map(|id| format!("({id}, 'big-{id}', {id})")).collect();
        let tx = w
            .db(writer)
            .open_write(&format!(
                r#"INSERT INTO "t1" ("id", "v", "n") VALUES {}; UPDATE "t1" SET "v" = 'seed, updated' WHERE "id" = 1"#,
                values.join(", ")
            ))
            .await;
        tx.commit().await;
        let result = match fail_at {
            FailAt::Upload => {
                let hub = FaultyEndpoint::failing_after(w.hub.endpoint().clone(), k);
                let r = w.sync_through("a", &hub, w.member("a").db.endpoint(), &Quiet).await;
                assert!(hub.has_failed(), "{case}: the injected failure never happened");
                r
            }
            FailAt::Download => {
                let member = FaultyEndpoint::failing_after(w.member("a").db.endpoint().clone(), k);
                let r = w.sync_through("a", w.hub.endpoint(), &member, &Quiet).await;
                assert!(member.has_failed(), "{case}: the injected failure never happened");
                r
            }
        };
        match result {
            Ok(r) => panic!("{case}: the sync succeeded despite the injected failure: {r:?}"),
            Err(e) => assert_eq!(e.kind(), ErrorKind::Injected, "{case}: unexpected error: {e}"),
        }
        w.try_sync_observed("a", &Quiet).await.unwrap_or_else(|e| panic!("{case}: the recovery sync failed: {e}"));
        assert_eq!(w.converge().await, 0, "{case}: the recovery sync left something to move");
        w.assert_same_rows("t1").await;
        let rows = w.rows("hub", "t1").await;
        assert_eq!(rows.len(), 41, "{case}: every row of the transaction and the seed row must be everywhere");
        assert!(rows.contains(&vec![int(1), text("seed, updated"), int(10)]), "{case}: the seed row's update is lost");
        w.finish().await;
    }
}

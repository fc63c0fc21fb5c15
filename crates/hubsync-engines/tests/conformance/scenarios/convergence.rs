//! Scenario 6: randomized convergence.
//!
//! A hub and three bidirectional members share `items(id, v, n)`. A random
//! script writes (insert or update), deletes (keys 1..=5, so they collide),
//! syncs a random member, or syncs a random member through a
//! `FaultyEndpoint` that fails after a random number of batches. Then full
//! rounds run until one moves nothing, and:
//!
//! - every database holds exactly the hub's rows;
//! - every row is one that some write produced, whole (no invented or mixed
//!   rows: each write's `v` is unique and paired with its `n`);
//! - a final conflict on one key, hub vs one member, each side writing or
//!   deleting in a chosen order, ends with the policy's winner everywhere
//!   (HubWin: the hub's; MemberWin: the member's; LastWriterWins: the later).
//!
//! The number of cases per policy is chosen per suite (16 on SQLite, fewer
//! where each case creates server databases); `PROPTEST_CASES` overrides it.

use std::time::Duration;

use hubsync_core::Direction::Bidirectional;
use hubsync_core::testing::FaultyEndpoint;
use hubsync_core::{ConflictPolicy, ErrorKind, Value};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use crate::harness::Harness;
use crate::world::{Quiet, World, assert_rows_eq, int, text};

const MEMBERS: [&str; 3] = ["m1", "m2", "m3"];

/// Far above what any case needs (well under a second on SQLite).
const CASE_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, Clone)]
enum Step {
    /// Insert or update `key` on database `db` (0 = hub).
    Write {
        db: usize,
        key: i64,
    },
    Delete {
        db: usize,
        key: i64,
    },
    Sync {
        member: usize,
    },
    /// A sync failing after `k` batch writes on the hub (upload) or the member (download).
    Crash {
        member: usize,
        k: u64,
        on_hub: bool,
    },
}

#[derive(Debug, Clone)]
struct Finale {
    key: i64,
    member: usize,
    hub_deletes: bool,
    member_deletes: bool,
    hub_last: bool,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0..4usize, 1..=5i64).prop_map(|(db, key)| Step::Write { db, key }),
        2 => (0..4usize, 1..=5i64).prop_map(|(db, key)| Step::Delete { db, key }),
        2 => (0..3usize).prop_map(|member| Step::Sync { member }),
        1 => (0..3usize, 0..4u64, any::<bool>()).prop_map(|(member, k, on_hub)| Step::Crash { member, k, on_hub }),
    ]
}

fn finale() -> impl Strategy<Value = Finale> {
    (1..=5i64, 0..3usize, prop::bool::weighted(0.3), prop::bool::weighted(0.3), any::<bool>()).prop_map(
        |(key, member, hub_deletes, member_deletes, hub_last)| Finale {
            key,
            member,
            hub_deletes,
            member_deletes,
            hub_last,
        },
    )
}

fn db_name(db: usize) -> &'static str {
    if db == 0 { "hub" } else { MEMBERS[db - 1] }
}

/// Writes `key` on `db`: an update when the row exists, else an insert.
/// Returns the row written.
async fn write(w: &World, db: &str, key: i64, tag: &str, n: i64) -> Vec<Value> {
    let d = w.db(db);
    let params = [text(tag), int(n), int(key)];
    if d.exec_with(r#"UPDATE "items" SET "v" = ?, "n" = ? WHERE "id" = ?"#, &params).await == 0 {
        d.exec_with(r#"INSERT INTO "items" ("v", "n", "id") VALUES (?, ?, ?)"#, &params).await;
    }
    vec![int(key), text(tag), int(n)]
}

/// Deletes `key` on `db`; returns whether a row was deleted.
async fn delete(w: &World, db: &str, key: i64) -> bool {
    w.db(db).exec_with(r#"DELETE FROM "items" WHERE "id" = ?"#, &[int(key)]).await > 0
}

async fn run_case(h: &dyn Harness, policy: ConflictPolicy, steps: &[Step], fin: &Finale) {
    let members: Vec<(&str, _)> = MEMBERS.iter().map(|m| (*m, Bidirectional)).collect();
    let w = World::new(h, &members, policy, &["items"]).await.with_batch_rows(2);
    w.hub.exec(r#"CREATE TABLE "items" ("id" INTEGER PRIMARY KEY, "v" TEXT, "n" INTEGER)"#).await;
    w.converge().await;
    let mut written: Vec<Vec<Value>> = Vec::new();
    for (i, s) in steps.iter().enumerate() {
        match *s {
            Step::Write { db, key } => {
                let row = write(&w, db_name(db), key, &format!("{}#{i}", db_name(db)), i as i64).await;
                written.push(row);
            }
            Step::Delete { db, key } => {
                delete(&w, db_name(db), key).await;
            }
            Step::Sync { member } => {
                w.sync(MEMBERS[member]).await;
            }
            Step::Crash { member, k, on_hub } => {
                let name = MEMBERS[member];
                let m = w.member(name).db.endpoint();
                let result = if on_hub {
                    w.sync_through(name, &FaultyEndpoint::failing_after(w.hub.endpoint().clone(), k), m, &Quiet).await
                } else {
                    w.sync_through(name, w.hub.endpoint(), &FaultyEndpoint::failing_after(m.clone(), k), &Quiet).await
                };
                if let Err(e) = result {
                    assert_eq!(e.kind(), ErrorKind::Injected, "step {i}: only the injected failure may happen: {e}");
                }
            }
        }
    }
    w.converge().await;
    w.assert_same_rows("items").await;
    for row in w.rows("hub", "items").await {
        assert!(written.contains(&row), "the hub holds a row no write produced: {row:?}");
    }

    // The final conflict on one key.
    let member = MEMBERS[fin.member];
    let key = fin.key;
    let mut hub_state: Option<Option<Vec<Value>>> = None; // None: no change made
    let mut member_state: Option<Option<Vec<Value>>> = None;
    let hub_op = async |hub_state: &mut Option<Option<Vec<Value>>>| {
        if fin.hub_deletes {
            if delete(&w, "hub", key).await {
                *hub_state = Some(None);
            }
        } else {
            *hub_state = Some(Some(write(&w, "hub", key, "hub-final", -1).await));
        }
    };
    let member_op = async |member_state: &mut Option<Option<Vec<Value>>>| {
        if fin.member_deletes {
            if delete(&w, member, key).await {
                *member_state = Some(None);
            }
        } else {
            *member_state = Some(Some(write(&w, member, key, "member-final", -2).await));
        }
    };
    let before = w.rows("hub", "items").await.into_iter().find(|r| r[0] == int(key));
    if fin.hub_last {
        member_op(&mut member_state).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
        hub_op(&mut hub_state).await;
    } else {
        hub_op(&mut hub_state).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
        member_op(&mut member_state).await;
    }
    let hub_wins = match policy {
        ConflictPolicy::HubWin => true,
        ConflictPolicy::MemberWin => false,
        ConflictPolicy::LastWriterWins => fin.hub_last,
    };
    let expected = match (hub_state, member_state) {
        (None, None) => before,
        (Some(h), None) => h,
        (None, Some(m)) => m,
        (Some(None), Some(None)) => None,
        (Some(h), Some(m)) => {
            if hub_wins {
                h
            } else {
                m
            }
        }
    };
    w.converge().await;
    w.assert_same_rows("items").await;
    let actual = w.rows("hub", "items").await.into_iter().find(|r| r[0] == int(key));
    assert_rows_eq(
        &actual.into_iter().collect::<Vec<_>>(),
        &expected.into_iter().collect::<Vec<_>>(),
        &format!("key {key} after the final conflict ({fin:?}) under {policy}"),
    );
    w.finish().await;
}

/// Runs the property for one policy; `make` builds a fresh harness per case.
pub(crate) fn random_scripts_converge<F, Fut>(make: F, policy: ConflictPolicy, default_cases: u32)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Option<std::sync::Arc<dyn Harness>>>,
{
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(default_cases);
    let config = Config { cases, max_shrink_iters: 64, failure_persistence: None, ..Config::default() };
    let mut runner = TestRunner::new(config);
    let strategy = (prop::collection::vec(step(), 0..24), finale());
    let result = runner.run(&strategy, |(steps, fin)| {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(async {
            let Some(h) = make().await else { return };
            // A stuck sync must fail the case (and show its script), not hang CI.
            tokio::time::timeout(CASE_TIMEOUT, run_case(&*h, policy, &steps, &fin))
                .await
                .unwrap_or_else(|_| panic!("a case did not finish within {CASE_TIMEOUT:?}: a sync is stuck"));
        });
        Ok(())
    });
    if let Err(e) = result {
        panic!("randomized convergence under {policy}: {e}");
    }
}

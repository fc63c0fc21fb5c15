//! Applications keep writing while syncs run.
//!
//! Two writers per database (hub and two members), each on its own
//! connection, insert, update and delete keys that overlap across databases
//! (within one database the two writers split the keys by parity, so they do
//! not race each other's inserts), while sync rounds run back to back. When
//! the writers stop, rounds run until one moves nothing, and every database
//! must hold exactly the hub's rows, each of them a row some writer wrote.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::future::join_all;
use hubsync_core::ConflictPolicy;
use hubsync_core::Direction::Bidirectional;
use hubsync_core::Value;

use crate::harness::Harness;
use crate::world::{World, int, text};

const KEYS: i64 = 24;
const OPS_PER_WRITER: usize = 60;

/// A small deterministic generator: the scenario must be reproducible.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % below
    }
}

/// One writer: `OPS_PER_WRITER` writes on `db`, on the keys of its parity.
/// Returns every row image it wrote.
async fn writer(w: &World, db: &str, parity: i64, seed: u64) -> Vec<Vec<Value>> {
    let mut rng = Lcg(seed);
    let d = w.db(db);
    let mut written = Vec::new();
    for i in 0..OPS_PER_WRITER {
        let key = (rng.next((KEYS / 2) as u64) as i64) * 2 + parity + 1;
        if rng.next(4) == 0 {
            // A deadlock victim retries, as applications on a server database must.
            let mut attempts = 0;
            while let Err(e) = d.try_exec_with(r#"DELETE FROM "items" WHERE "id" = ?"#, &[int(key)]).await {
                attempts += 1;
                assert!(attempts < 100, "{db}: deleting key {key} kept failing: {e}");
            }
        } else {
            let tag = format!("{db}/{parity}#{i}");
            let params = [text(&tag), int(i as i64), int(key)];
            // Update, else insert; a sync may insert the key in between (as
            // it would under any application), and the writer then updates.
            // A statement chosen as a deadlock victim is retried, as
            // applications on a server database must.
            let mut last_error = String::new();
            for attempt in 0.. {
                assert!(attempt < 100, "{db}: neither updating nor inserting key {key} succeeded: {last_error}");
                match d.try_exec_with(r#"UPDATE "items" SET "v" = ?, "n" = ? WHERE "id" = ?"#, &params).await {
                    Ok(0) => {}
                    Ok(_) => break,
                    Err(e) => {
                        last_error = e;
                        continue;
                    }
                }
                if d.try_exec_with(r#"INSERT INTO "items" ("v", "n", "id") VALUES (?, ?, ?)"#, &params).await.is_ok() {
                    break;
                }
            }
            written.push(vec![int(key), text(&tag), int(i as i64)]);
        }
        tokio::time::sleep(Duration::from_millis(rng.next(3))).await;
    }
    written
}

/// Concurrent writers on every database during repeated syncs converge.
pub(crate) async fn concurrent_writers_during_syncs_converge(h: &dyn Harness, policy: ConflictPolicy) {
    let w = World::new(h, &[("m1", Bidirectional), ("m2", Bidirectional)], policy, &["items"]).await.with_batch_rows(5);
    w.hub.exec(r#"CREATE TABLE "items" ("id" INTEGER PRIMARY KEY, "v" TEXT, "n" INTEGER)"#).await;
    w.converge().await;

    let writing = AtomicBool::new(true);
    let dbs = ["hub", "m1", "m2"];
    let writers = join_all(
        dbs.iter()
            .enumerate()
            .flat_map(|(i, db)| (0..2).map(move |parity| (i, *db, parity)))
            .map(|(i, db, parity)| writer(&w, db, parity, (i as u64) * 7919 + parity as u64 + 1)),
    );
    let syncs = async {
        let mut rounds = 0;
        while writing.load(Ordering::SeqCst) {
            w.sync_all().await;
            rounds += 1;
        }
        rounds
    };
    let (written, rounds) = tokio::join!(
        async {
            let written = writers.await;
            writing.store(false, Ordering::SeqCst);
            written
        },
        syncs
    );
    assert!(rounds >= 1, "no sync round ran while the writers wrote");
    w.converge().await;
    w.assert_same_rows("items").await;
    let written: Vec<Vec<Value>> = written.into_iter().flatten().collect();
    for row in w.rows("hub", "items").await {
        assert!(written.contains(&row), "the hub holds a row no writer wrote: {row:?}");
    }
    w.finish().await;
}

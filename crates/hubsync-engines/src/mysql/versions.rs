//! Commit-safe versions without serialising writers.
//!
//! Every tracked write takes its version from an AUTO_INCREMENT insert into
//! `hubsync_seq`: allocation never waits for another transaction, and the
//! inserted row stays uncommitted (invisible to committed reads, visible to
//! dirty reads) until its transaction commits, or vanishes when it rolls
//! back. The snapshot version is the highest version below which every
//! version is settled:
//!
//! - in flight: a row a dirty read sees and a committed read does not (its
//!   transaction is open): the snapshot stops below it;
//! - a gap (no row at all): rolled back, or allocated an instant ago and not
//!   inserted yet. A gap younger than [`GAP_GRACE`] stops the snapshot; an
//!   older one is a rollback and is passed.
//!
//! The committed read comes first: a transaction committing between the two
//! reads then looks in flight, which only holds the snapshot back.
//! See docs/mysql-versions.md for the choice and its measured cost.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use hubsync_core::{EndpointError, Version};
use sqlx::{MySqlConnection, MySqlPool, Row};

use super::errors::{ctx, error_number, map_err};
use super::query;
use super::tracking::seq_table;

/// How long a gap in the versions may be an allocation not yet inserted
/// before it counts as a rollback.
pub(crate) const GAP_GRACE: Duration = Duration::from_millis(300);

/// Settled versions are pruned from `hubsync_seq` once this many pile up.
const PRUNE_AFTER: usize = 1000;

/// The gaps seen so far, with when each was first seen.
#[derive(Debug, Clone, Default)]
pub(crate) struct Gaps(Arc<Mutex<HashMap<Version, Instant>>>);

/// The committed versions, streamed and kept as what the walk needs: the
/// lowest, the highest, how many, and the missing ranges between them. A
/// provisioning backfill allocates one version per row, so the table can
/// hold millions of ids; holding them all would cost ~100 bytes each.
#[derive(Debug, Default, PartialEq)]
struct Committed {
    first: Version,
    last: Version,
    count: usize,
    /// Inclusive ranges of ids between `first` and `last` with no committed row.
    missing: Vec<(Version, Version)>,
}

impl Committed {
    /// Adds the next id (ascending).
    fn push(&mut self, id: Version) {
        if self.count == 0 {
            self.first = id;
        } else if id > self.last + 1 {
            self.missing.push((self.last + 1, id - 1));
        }
        self.last = id;
        self.count += 1;
    }

    /// Whether an id at or below `last` has no committed row.
    fn lacks(&self, id: Version) -> bool {
        if id < self.first {
            return true;
        }
        let at = self.missing.partition_point(|(_, end)| *end < id);
        self.missing.get(at).is_some_and(|(start, _)| *start <= id)
    }
}

/// Streams `SELECT id ... ORDER BY id` into `each`; `None` when the table
/// does not exist (nothing provisioned yet).
async fn each_id(
    conn: &mut MySqlConnection,
    home: &str,
    mut each: impl FnMut(Version),
) -> Result<Option<()>, EndpointError> {
    let sql = format!("SELECT id FROM {} ORDER BY id", seq_table(home));
    let mut rows = query(sql).fetch(&mut *conn);
    loop {
        match rows.try_next().await {
            Ok(Some(row)) => each(row.try_get::<i64, _>(0).map_err(ctx("reading the versions"))?),
            Ok(None) => return Ok(Some(())),
            Err(e) if error_number(&e) == Some(1146) => return Ok(None),
            Err(e) => return Err(map_err(e, "reading the versions")),
        }
    }
}

/// The snapshot version (see the module documentation). A young gap is
/// waited out (at most [`GAP_GRACE`]) rather than reported, so the snapshot
/// stops only at transactions really in flight.
pub(crate) async fn snapshot_version(pool: &MySqlPool, home: &str, gaps: &Gaps) -> Result<Version, EndpointError> {
    let mut conn = pool.acquire().await.map_err(ctx("reading the snapshot version"))?;
    loop {
        match settled(&mut conn, home, gaps).await? {
            Settled::Snapshot(v) => return Ok(v),
            Settled::YoungGap(wait) => tokio::time::sleep(wait).await,
        }
    }
}

enum Settled {
    Snapshot(Version),
    YoungGap(Duration),
}

async fn settled(conn: &mut MySqlConnection, home: &str, gaps: &Gaps) -> Result<Settled, EndpointError> {
    let conn = &mut *conn;
    let mut committed = Committed::default();
    if each_id(conn, home, |id| committed.push(id)).await?.is_none() {
        return Ok(Settled::Snapshot(0));
    }
    query("SET TRANSACTION ISOLATION LEVEL READ UNCOMMITTED")
        .execute(&mut *conn)
        .await
        .map_err(ctx("reading the snapshot version"))?;
    // Of the dirty read only the ids the committed read lacks matter: the
    // writes still in flight.
    let mut lowest_seen: Option<Version> = None;
    let mut in_flight = BTreeSet::new();
    each_id(conn, home, |id| {
        lowest_seen = Some(lowest_seen.map_or(id, |low| low.min(id)));
        if committed.count > 0 && id <= committed.last && committed.lacks(id) {
            in_flight.insert(id);
        }
    })
    .await?;
    if committed.count == 0 {
        return Ok(Settled::Snapshot(0));
    }
    let top = committed.last;
    let bottom = lowest_seen.map_or(committed.first, |low| low.min(committed.first));
    let now = Instant::now();
    let mut snapshot = top;
    {
        let mut known = gaps.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        known.retain(|id, _| *id > bottom);
        let below_first = (bottom < committed.first).then_some((bottom, committed.first - 1));
        'walk: for (start, end) in below_first.into_iter().chain(committed.missing.iter().copied()) {
            for id in start..=end {
                if in_flight.contains(&id) {
                    snapshot = id - 1;
                    break 'walk;
                }
                let first_seen = *known.entry(id).or_insert(now);
                let age = now.duration_since(first_seen);
                if age < GAP_GRACE {
                    return Ok(Settled::YoungGap(GAP_GRACE - age));
                }
            }
        }
    }
    if committed.count > PRUNE_AFTER && snapshot > bottom {
        prune(conn, home, snapshot).await?;
    }
    Ok(Settled::Snapshot(snapshot))
}

/// Deletes settled versions below the snapshot, keeping the snapshot's own
/// row so the highest settled version stays known. Read committed: no gap
/// locks, so writers allocating new versions are never blocked.
async fn prune(conn: &mut MySqlConnection, home: &str, snapshot: Version) -> Result<(), EndpointError> {
    query("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
        .execute(&mut *conn)
        .await
        .map_err(ctx("pruning versions"))?;
    query(format!("DELETE FROM {} WHERE id < ?", seq_table(home)))
        .bind(snapshot)
        .execute(&mut *conn)
        .await
        .map_err(ctx("pruning versions"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_ids_keep_only_their_missing_ranges() {
        let mut c = Committed::default();
        for id in [3, 4, 5, 8, 9, 12] {
            c.push(id);
        }
        assert_eq!(c, Committed { first: 3, last: 12, count: 6, missing: vec![(6, 7), (10, 11)] });
        let lacking: Vec<Version> = (1..=12).filter(|id| c.lacks(*id)).collect();
        assert_eq!(lacking, vec![1, 2, 6, 7, 10, 11]);
        let mut dense = Committed::default();
        (1..=1_000_000).for_each(|id| dense.push(id));
        assert!(dense.missing.is_empty() && dense.count == 1_000_000 && !dense.lacks(500_000));
    }
}

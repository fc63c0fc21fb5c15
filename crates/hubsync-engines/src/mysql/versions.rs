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

async fn ids(conn: &mut MySqlConnection, home: &str) -> Result<Option<Vec<i64>>, EndpointError> {
    let rows = query(format!("SELECT id FROM {} ORDER BY id", seq_table(home))).fetch_all(&mut *conn).await;
    match rows {
        Ok(rows) => rows
            .iter()
            .map(|r| r.try_get::<i64, _>(0))
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
            .map_err(ctx("reading the versions")),
        Err(e) if error_number(&e) == Some(1146) => Ok(None),
        Err(e) => Err(map_err(e, "reading the versions")),
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
    let Some(committed) = ids(conn, home).await? else {
        return Ok(Settled::Snapshot(0));
    };
    query("SET TRANSACTION ISOLATION LEVEL READ UNCOMMITTED")
        .execute(&mut *conn)
        .await
        .map_err(ctx("reading the snapshot version"))?;
    let seen = ids(conn, home).await?.unwrap_or_default();
    let committed_set: BTreeSet<i64> = committed.iter().copied().collect();
    let seen_set: BTreeSet<i64> = seen.iter().copied().collect();
    let Some(&top) = committed.last() else {
        return Ok(Settled::Snapshot(0));
    };
    let Some(&bottom) = committed.first().into_iter().chain(seen.first()).min() else {
        return Ok(Settled::Snapshot(0));
    };
    let now = Instant::now();
    let mut snapshot = top;
    {
        let mut known = gaps.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        known.retain(|id, _| *id > bottom);
        for id in bottom..=top {
            if committed_set.contains(&id) {
                continue;
            }
            if seen_set.contains(&id) {
                snapshot = id - 1;
                break;
            }
            let first_seen = *known.entry(id).or_insert(now);
            let age = now.duration_since(first_seen);
            if age < GAP_GRACE {
                return Ok(Settled::YoungGap(GAP_GRACE - age));
            }
        }
    }
    if committed.len() > PRUNE_AFTER && snapshot > bottom {
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

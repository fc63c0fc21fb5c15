//! The shared bookkeeping: the snapshot version, watermarks (`hubsync.scope`)
//! and session records (`hubsync.session`).

use hubsync_core::{ChangeKind, EndpointError, MemberState, SessionRecord, TableName, Version, Watermarks};
use sqlx::{PgConnection, PgPool, Row};

use super::errors::ctx;
use super::query;
use super::tracking::{SESSION_DDL, ensure_shared, hubsync_table_exists, lock_ddl, table_key};

/// The snapshot version: the highest version no change can still appear at
/// or below (see DESIGN.md, "The version must be commit-safe").
///
/// Every transaction id below the snapshot's xmax that is not in its list of
/// running ids has finished, so the answer is just below the oldest running
/// id that may write here. Transaction ids are cluster-wide: a transaction
/// held open in another database of the same server would hold back plain
/// `xmin` for everyone, so running ids known (from `pg_stat_activity`) to
/// belong to another database are left out. Anything not known to be
/// elsewhere counts as ours, which errs on the safe side (a later sync reads
/// again, never misses). `pg_current_snapshot()` is the statement's (or, in
/// REPEATABLE READ, the transaction's) snapshot, taken before the activity
/// is read, so a running id cannot slip between the two.
pub(crate) async fn snapshot_in(conn: &mut PgConnection) -> Result<Version, EndpointError> {
    // The activity is read after the statement's snapshot was taken: an id
    // of another database that ends in between is no longer listed and
    // counts as ours, holding the version back for nothing (a later sync
    // reads it, but the sync after a write would miss it). A blocking id
    // found nowhere has most likely just ended, and the next statement's
    // snapshot no longer holds it: look again a few times before settling
    // for the cautious answer. Inside a REPEATABLE READ transaction the
    // snapshot cannot move, so there is no point in looking again.
    let mut attempt = 0;
    loop {
        let row = query(
            "WITH s AS (SELECT pg_current_snapshot() AS snap), \
             activity AS (SELECT a.backend_xid::text::int8 AS x, a.datid IS NOT DISTINCT FROM \
               (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname = current_database()) AS here \
               FROM pg_catalog.pg_stat_activity a WHERE a.backend_xid IS NOT NULL), \
             blocker AS (SELECT min(r::text::int8) AS r FROM s, pg_snapshot_xip(s.snap) AS r \
               WHERE (r::text::int8 & 4294967295) NOT IN (SELECT x FROM activity WHERE NOT here)) \
             SELECT coalesce((SELECT r FROM blocker), (SELECT pg_snapshot_xmax(s.snap)::text::int8 FROM s)) - 1, \
               (SELECT r FROM blocker) IS NULL \
               OR (SELECT r FROM blocker) & 4294967295 IN (SELECT x FROM activity WHERE here) \
               OR current_setting('transaction_isolation') <> 'read committed'",
        )
        .fetch_one(&mut *conn)
        .await
        .map_err(ctx("reading the snapshot version"))?;
        let version: i64 = row.try_get(0).map_err(ctx("reading the snapshot version"))?;
        let settled: bool = row.try_get(1).map_err(ctx("reading the snapshot version"))?;
        if settled || attempt == 3 {
            return Ok(version);
        }
        attempt += 1;
        tokio::time::sleep(std::time::Duration::from_millis(2 << attempt)).await;
    }
}

/// [`snapshot_in`] on a pooled connection.
///
/// The change logs are not folded here: reads take logged changes from the
/// log (see `changes::pending`), and every transaction at or below the
/// version returned has committed, so its logged rows are there to read.
pub(crate) async fn snapshot_version(pool: &PgPool) -> Result<Version, EndpointError> {
    let mut conn = pool.acquire().await.map_err(ctx("reading the snapshot version"))?;
    snapshot_in(&mut conn).await
}

/// The watermarks stored for (scope, peer, table); zero when none.
pub(crate) async fn watermarks(
    pool: &PgPool,
    scope: &str,
    peer: &str,
    table: &TableName,
) -> Result<Watermarks, EndpointError> {
    let context = format!("reading the watermarks of `{table}` for `{peer}`");
    let mut conn = pool.acquire().await.map_err(ctx(&context))?;
    if !hubsync_table_exists(&mut conn, "scope").await? {
        return Ok(Watermarks::default());
    }
    let rows =
        query("SELECT kind, version FROM \"hubsync\".\"scope\" WHERE scope = $1 AND peer = $2 AND table_name = $3")
            .bind(scope.to_string())
            .bind(peer.to_string())
            .bind(table_key(table))
            .fetch_all(&mut *conn)
            .await
            .map_err(ctx(&context))?;
    let pairs = rows
        .iter()
        .map(|row| Ok((row.try_get::<String, _>(0)?, row.try_get::<i64, _>(1)?)))
        .collect::<Result<Vec<_>, sqlx::Error>>()
        .map_err(ctx(&context))?;
    Ok(Watermarks::from_rows(pairs))
}

/// Stores one watermark inside the caller's transaction.
pub(crate) async fn store_watermark(
    conn: &mut PgConnection,
    scope: &str,
    peer: &str,
    table: &TableName,
    kind: ChangeKind,
    version: Version,
) -> Result<(), EndpointError> {
    query(
        "INSERT INTO \"hubsync\".\"scope\" (scope, peer, table_name, kind, version) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (scope, peer, table_name, kind) DO UPDATE SET version = excluded.version",
    )
    .bind(scope.to_string())
    .bind(peer.to_string())
    .bind(table_key(table))
    .bind(kind.as_str())
    .bind(version)
    .execute(&mut *conn)
    .await
    .map_err(ctx(format_args!("storing the {} watermark of `{table}` for `{peer}`", kind.as_str())))?;
    Ok(())
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Stores the outcome of the last session with `peer`.
pub(crate) async fn record_session(
    pool: &PgPool,
    scope: &str,
    peer: &str,
    record: &SessionRecord,
) -> Result<(), EndpointError> {
    let context = format!("recording the session with `{peer}`");
    let mut tx = pool.begin().await.map_err(ctx(&context))?;
    if !hubsync_table_exists(&mut tx, "session").await? {
        lock_ddl(&mut tx).await?;
        ensure_shared(&mut tx).await?;
        query(SESSION_DDL).execute(&mut *tx).await.map_err(ctx(&context))?;
    }
    query(
        "INSERT INTO \"hubsync\".\"session\" \
         (scope, peer, state, last_attempt_at, last_success_at, uploaded, downloaded, message) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (scope, peer) DO UPDATE SET state = excluded.state, \
         last_attempt_at = excluded.last_attempt_at, last_success_at = excluded.last_success_at, \
         uploaded = excluded.uploaded, downloaded = excluded.downloaded, message = excluded.message",
    )
    .bind(scope.to_string())
    .bind(peer.to_string())
    .bind(record.state.to_string())
    .bind(record.last_attempt_at)
    .bind(record.last_success_at)
    .bind(to_i64(record.uploaded))
    .bind(to_i64(record.downloaded))
    .bind(record.message.clone())
    .execute(&mut *tx)
    .await
    .map_err(ctx(&context))?;
    tx.commit().await.map_err(ctx(&context))
}

/// Reads the outcome of the last session with `peer`, if any.
pub(crate) async fn session_record(
    pool: &PgPool,
    scope: &str,
    peer: &str,
) -> Result<Option<SessionRecord>, EndpointError> {
    let context = format!("reading the session with `{peer}`");
    let mut conn = pool.acquire().await.map_err(ctx(&context))?;
    if !hubsync_table_exists(&mut conn, "session").await? {
        return Ok(None);
    }
    let row = query(
        "SELECT state, last_attempt_at, last_success_at, uploaded, downloaded, message \
         FROM \"hubsync\".\"session\" WHERE scope = $1 AND peer = $2",
    )
    .bind(scope.to_string())
    .bind(peer.to_string())
    .fetch_optional(&mut *conn)
    .await
    .map_err(ctx(&context))?;
    let Some(row) = row else {
        return Ok(None);
    };
    let state: String = row.try_get(0).map_err(ctx(&context))?;
    let state: MemberState = state
        .parse()
        .map_err(|e: String| EndpointError::new(hubsync_core::ErrorKind::Other, format!("{context}: {e}")))?;
    Ok(Some(SessionRecord {
        state,
        last_attempt_at: row.try_get(1).map_err(ctx(&context))?,
        last_success_at: row.try_get(2).map_err(ctx(&context))?,
        uploaded: u64::try_from(row.try_get::<i64, _>(3).map_err(ctx(&context))?).unwrap_or(0),
        downloaded: u64::try_from(row.try_get::<i64, _>(4).map_err(ctx(&context))?).unwrap_or(0),
        message: row.try_get(5).map_err(ctx(&context))?,
    }))
}

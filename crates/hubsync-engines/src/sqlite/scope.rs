//! The shared bookkeeping tables: the change counter, watermarks
//! (`hubsync_scope`) and session records (`hubsync_session`).

use hubsync_core::{ChangeKind, EndpointError, MemberState, SessionRecord, TableName, Version, Watermarks};
use sqlx::{Row, SqliteConnection, SqlitePool};

use super::errors::ctx;
use super::query;
use super::tracking::{SESSION_DDL, object_exists, table_key};

/// The change counter's current value; 0 when nothing is provisioned (there
/// are no changes then, so 0 is a correct snapshot).
pub(crate) async fn counter(conn: &mut SqliteConnection) -> Result<Version, EndpointError> {
    if !object_exists(conn, "hubsync_counter").await? {
        return Ok(0);
    }
    let row = query("SELECT version FROM main.hubsync_counter WHERE id = 1")
        .fetch_optional(&mut *conn)
        .await
        .map_err(ctx("reading the change counter"))?;
    match row {
        Some(row) => row.try_get::<i64, _>(0).map_err(ctx("reading the change counter")),
        None => Ok(0),
    }
}

/// The snapshot version: SQLite serialises writers and the counter moves
/// inside each writing transaction, so its committed value is commit-ordered.
pub(crate) async fn snapshot_version(pool: &SqlitePool) -> Result<Version, EndpointError> {
    let mut conn = pool.acquire().await.map_err(ctx("reading the change counter"))?;
    counter(&mut conn).await
}

/// The watermarks stored for (scope, peer, table); zero when none.
pub(crate) async fn watermarks(
    pool: &SqlitePool,
    scope: &str,
    peer: &str,
    table: &TableName,
) -> Result<Watermarks, EndpointError> {
    let context = format!("reading the watermarks of `{table}` for `{peer}`");
    let mut conn = pool.acquire().await.map_err(ctx(&context))?;
    if !object_exists(&mut conn, "hubsync_scope").await? {
        return Ok(Watermarks::default());
    }
    let rows = query("SELECT kind, version FROM main.hubsync_scope WHERE scope = ?1 AND peer = ?2 AND table_name = ?3")
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
    conn: &mut SqliteConnection,
    scope: &str,
    peer: &str,
    table: &TableName,
    kind: ChangeKind,
    version: Version,
) -> Result<(), EndpointError> {
    query(
        "INSERT INTO main.hubsync_scope (scope, peer, table_name, kind, version) VALUES (?1, ?2, ?3, ?4, ?5) \
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
    pool: &SqlitePool,
    scope: &str,
    peer: &str,
    record: &SessionRecord,
) -> Result<(), EndpointError> {
    let context = format!("recording the session with `{peer}`");
    let mut conn = pool.acquire().await.map_err(ctx(&context))?;
    query(SESSION_DDL).execute(&mut *conn).await.map_err(ctx(&context))?;
    query(
        "INSERT OR REPLACE INTO main.hubsync_session \
         (scope, peer, state, last_attempt_at, last_success_at, uploaded, downloaded, message) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )
    .bind(scope.to_string())
    .bind(peer.to_string())
    .bind(record.state.to_string())
    .bind(record.last_attempt_at)
    .bind(record.last_success_at)
    .bind(to_i64(record.uploaded))
    .bind(to_i64(record.downloaded))
    .bind(record.message.clone())
    .execute(&mut *conn)
    .await
    .map_err(ctx(&context))?;
    Ok(())
}

/// Reads the outcome of the last session with `peer`, if any.
pub(crate) async fn session_record(
    pool: &SqlitePool,
    scope: &str,
    peer: &str,
) -> Result<Option<SessionRecord>, EndpointError> {
    let context = format!("reading the session with `{peer}`");
    let mut conn = pool.acquire().await.map_err(ctx(&context))?;
    if !object_exists(&mut conn, "hubsync_session").await? {
        return Ok(None);
    }
    let row = query(
        "SELECT state, last_attempt_at, last_success_at, uploaded, downloaded, message \
         FROM main.hubsync_session WHERE scope = ?1 AND peer = ?2",
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

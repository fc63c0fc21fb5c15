//! The shared bookkeeping tables: watermarks
//! (`hubsync_scope`) and session records (`hubsync_session`).

use hubsync_core::{ChangeKind, EndpointError, MemberState, SessionRecord, TableName, Version, Watermarks};
use sqlx::{MySqlConnection, MySqlPool, Row};

use super::dialect::quote_ident;
use super::errors::ctx;
use super::introspect::table_exists;
use super::tracking::{SESSION_DDL, shared_sql, table_key};
use super::{ddl, query};

/// The watermarks stored for (scope, peer, table); zero when none.
pub(crate) async fn watermarks(
    pool: &MySqlPool,
    home: &str,
    scope: &str,
    peer: &str,
    table: &TableName,
) -> Result<Watermarks, EndpointError> {
    let context = format!("reading the watermarks of `{table}` for `{peer}`");
    let mut conn = pool.acquire().await.map_err(ctx(&context))?;
    if !table_exists(&mut conn, home, "hubsync_scope").await? {
        return Ok(Watermarks::default());
    }
    let rows = query(format!(
        "SELECT kind, version FROM {}.hubsync_scope WHERE scope = ? AND peer = ? AND table_name = ?",
        quote_ident(home)
    ))
    .bind(scope.to_string())
    .bind(peer.to_string())
    .bind(table_key(table, home))
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
    conn: &mut MySqlConnection,
    home: &str,
    scope: &str,
    peer: &str,
    table: &TableName,
    kind: ChangeKind,
    version: Version,
) -> Result<(), EndpointError> {
    query(format!(
        "INSERT INTO {}.hubsync_scope (scope, peer, table_name, kind, version) VALUES (?, ?, ?, ?, ?) \
         ON DUPLICATE KEY UPDATE version = VALUES(version)",
        quote_ident(home)
    ))
    .bind(scope.to_string())
    .bind(peer.to_string())
    .bind(table_key(table, home))
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
    pool: &MySqlPool,
    home: &str,
    scope: &str,
    peer: &str,
    record: &SessionRecord,
) -> Result<(), EndpointError> {
    let context = format!("recording the session with `{peer}`");
    let mut conn = pool.acquire().await.map_err(ctx(&context))?;
    if !table_exists(&mut conn, home, "hubsync_session").await? {
        ddl(shared_sql(SESSION_DDL, home)).execute(&mut *conn).await.map_err(ctx(&context))?;
    }
    query(format!(
        "REPLACE INTO {}.hubsync_session \
         (scope, peer, state, last_attempt_at, last_success_at, uploaded, downloaded, message) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        quote_ident(home)
    ))
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
    pool: &MySqlPool,
    home: &str,
    scope: &str,
    peer: &str,
) -> Result<Option<SessionRecord>, EndpointError> {
    let context = format!("reading the session with `{peer}`");
    let mut conn = pool.acquire().await.map_err(ctx(&context))?;
    if !table_exists(&mut conn, home, "hubsync_session").await? {
        return Ok(None);
    }
    let row = query(format!(
        "SELECT state, last_attempt_at, last_success_at, uploaded, downloaded, message \
         FROM {}.hubsync_session WHERE scope = ? AND peer = ?",
        quote_ident(home)
    ))
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

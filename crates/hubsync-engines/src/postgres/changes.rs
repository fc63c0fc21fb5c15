//! Reading and counting changes: from the tracking table alone when the
//! change log is empty, else from the log and the tracking table together
//! (see [`pending`]), through a cursor kept open between batches (see
//! [`super::cursor`]).

use std::sync::Arc;
use std::time::Instant;

use hubsync_core::{Change, ChangeKind, EndpointError, OriginFilter, ReadRequest, TableSchema, Version, Watermarks};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, PgPool, Row};

use super::cursor::{CURSOR_NAME, CursorKey, Cursors, OpenCursor, Total};
use super::dialect::{qualified, quote_ident};
use super::errors::ctx;
use super::introspect::{Shape, shape};
use super::query;
use super::tracking::{LOG_AS_TRACKED, TrackingNames, log_has_rows, pk_columns, require_tracking, table_key};
use super::values::{LocalColumn, bind_for, read_values};

/// A table's pending changes as one relation with the tracking table's
/// columns (`pk_1, ..., version, origin, deleted, changed_at`), without
/// folding the change log first: per key the newest row of the log, else
/// the tracking row, the latter only at versions of at least `floor` (an SQL
/// expression; the log is scanned whole, it holds what changed since the
/// last fold).
///
/// A key's logged rows are always newer than its tracking row: the triggers
/// log after the row's own write, and a transaction that writes tracking
/// rows itself folds the log again before it commits (see `apply`), so a log
/// row that committed before its write is moved out of the way. So the
/// newest logged row is the key's state, as a fold would make it.
///
/// A fold is the expensive part of tracking (a delete from the log and an
/// update of the tracking row and its version index per changed row, about
/// as long as the application's own update took), and reading without one
/// takes it off the path of every change to its members; the fold runs
/// afterwards (see [`hubsync_core::Endpoint::compact`]).
///
/// Both sources go through one sort, the log's rows first within a key, and
/// never through a join: an anti-join of the tracking rows against the log
/// (which has no index, to keep the triggers cheap) was planned as a nested
/// loop whenever the tracking table's statistics predated a fold, and a
/// member behind by a fold's 100,000 rows, with 100,000 more logged, then
/// compared every tracking row with every logged one (hours instead of
/// 50 ms).
pub(crate) fn pending(names: &TrackingNames, key_count: usize, floor: &str) -> String {
    let list = pk_columns(key_count).join(", ");
    format!(
        "(SELECT DISTINCT ON ({list}) {list}, version, origin, deleted, changed_at \
         FROM (SELECT {list}, {LOG_AS_TRACKED}, true AS logged, seq FROM {log} \
           UNION ALL SELECT {list}, version, origin, deleted, changed_at, false, seq FROM {tr} \
           WHERE version >= {floor}) AS p \
         ORDER BY {list}, logged DESC, seq DESC)",
        log = names.qualified_log(),
        tr = names.qualified_table(),
    )
}

/// Whether the table's change log holds a visible delete.
async fn log_has_deletes(conn: &mut PgConnection, names: &TrackingNames) -> Result<bool, EndpointError> {
    query(format!("SELECT EXISTS (SELECT 1 FROM {} WHERE deleted)", names.qualified_log()))
        .fetch_one(&mut *conn)
        .await
        .and_then(|r| r.try_get::<bool, _>(0))
        .map_err(ctx(format_args!("looking at the change log `{}`", names.log)))
}

/// The part of [`pending`] that comes from the tracking table: its rows at
/// versions of at least `floor` whose key the log does not hold.
fn unlogged(names: &TrackingNames, key_count: usize, floor: &str) -> String {
    let same_key: Vec<String> = pk_columns(key_count).iter().map(|pk| format!("g.{pk} = tr.{pk}")).collect();
    format!(
        "(SELECT tr.* FROM {tr} AS tr WHERE tr.version >= {floor} \
         AND NOT EXISTS (SELECT 1 FROM {log} AS g WHERE {same_key}))",
        tr = names.qualified_table(),
        log = names.qualified_log(),
        same_key = same_key.join(" AND "),
    )
}

/// Where [`select`] reads changes from.
enum Source<'a> {
    /// The tracking table alone (the log is empty), a batch at a time.
    Tracking,
    /// A relation of tracking rows ([`unlogged`]), a batch at a time.
    Unlogged(&'a str),
    /// The whole of [`pending`], for a cursor to fetch batch by batch.
    Pending(&'a str),
}

/// Reads one batch of changes (see [`hubsync_core::Endpoint::read_changes`]).
///
/// All rows of a transaction share its id as version, so the order is
/// (version, key) and `after_key` resumes inside a version.
pub(crate) async fn read_changes(
    pool: &PgPool,
    cursors: &Arc<Cursors>,
    request: ReadRequest<'_>,
) -> Result<Vec<Change>, EndpointError> {
    let table = request.table;
    let context = format!("reading {} changes of `{}`", request.kind.as_str(), table.name);
    let key = CursorKey {
        table: table_key(&table.name),
        kind: request.kind,
        origin: request.origin.clone(),
        up_to: request.up_to,
        after: request.after,
        after_key: request.after_key.clone(),
    };
    if let Some(cursor) = cursors.take(&key) {
        // On a worker thread: the session reads the next batch while it
        // applies the current one, and turning ten thousand rows into
        // changes would otherwise share the applying task's thread.
        let fetched = tokio::spawn(fetch_owned(cursor, request.limit, request.kind, table.name.to_string())).await;
        match fetched {
            Ok((cursor, Ok(changes))) => {
                finish(cursors, cursor, &changes, &request).await;
                return Ok(changes);
            }
            // Closed under it (an idle-in-transaction timeout, a restart):
            // the read starts over at the same place.
            Ok((_, Err(e))) => {
                tracing::debug!(table = %table.name, error = %e, "A change cursor failed; reading afresh.")
            }
            Err(e) => {
                tracing::debug!(table = %table.name, error = %e, "A change cursor's read was lost; reading afresh.")
            }
        }
    }
    let mut tx = pool.begin().await.map_err(ctx(&context))?;
    let names = require_tracking(&mut tx, &table.name).await.map_err(|e| e.context(&context))?;
    let shape = shape(&mut tx, table).await.map_err(|e| e.context(&context))?;
    let floor = "$1";
    // Everything in the tracking table: its (version, key) index hands out
    // one batch at a time. Or a delete read with no delete logged: the
    // deletes to send are tombstones of the tracking table whose key the log
    // does not hold (again), read the same way, without sorting the log.
    let unlogged_source;
    let limited = if !log_has_rows(&mut tx, &names).await? {
        Some(Source::Tracking)
    } else if request.kind == ChangeKind::Delete && !log_has_deletes(&mut tx, &names).await? {
        unlogged_source = unlogged(&names, shape.keys.len(), floor);
        Some(Source::Unlogged(&unlogged_source))
    } else {
        None
    };
    if let Some(source) = limited {
        cursors.forget_total(&key);
        let mut changes = Vec::new();
        // A tombstone whose key the log holds is not sent, so no tombstone
        // (the usual case) means no delete, without reading the log at all.
        let tombstones = matches!(source, Source::Unlogged(_))
            && !read_limited(&mut tx, table, &shape, &names, &request, Source::Tracking).await?.is_empty();
        if tombstones {
            // The anti-join against the log, which has no index, must hash
            // (or merge) the log once rather than scan it per tracking row,
            // whatever the statistics say (see `pending`). The read joins
            // nothing else; the setting ends with this transaction.
            query("SELECT set_config('enable_nestloop', 'off', true)")
                .execute(&mut *tx)
                .await
                .map_err(ctx(&context))?;
        }
        if tombstones || matches!(source, Source::Tracking) {
            changes = read_limited(&mut tx, table, &shape, &names, &request, source).await?;
        }
        tx.commit().await.map_err(ctx(&context))?;
        return Ok(changes);
    }
    let sql = select(table, &shape, &names, &request, Source::Pending(&pending(&names, shape.keys.len(), floor)));
    let declare = format!("DECLARE {CURSOR_NAME} NO SCROLL CURSOR FOR {sql}");
    // The whole relation is deduplicated and sorted before the first row:
    // in memory, not in temporary files (the default 4 MB spills a
    // 100,000-row change log). Local to the cursor's transaction.
    query("SELECT set_config('work_mem', '64MB', true)").execute(&mut *tx).await.map_err(ctx(&context))?;
    bind_request(query(declare), &shape, &request, false).execute(&mut *tx).await.map_err(ctx(&context))?;
    cursors.forget_others(&key);
    let read = key.clone();
    let opened = Instant::now();
    let mut cursor = OpenCursor::new(key, tx, shape);
    let (changes, total) = fetch(&mut cursor.tx, &cursor.shape, request.limit, request.kind, &table.name.to_string())
        .await
        .map_err(|e| e.context(&context))?;
    // From a watermark only: a count starts from one, never inside a version.
    if read.after_key.is_none() {
        cursors.record_total(Total { read, changes: total.unwrap_or(0), at: opened });
    }
    finish(cursors, cursor, &changes, &request).await;
    Ok(changes)
}

/// One batch of `request` read from `source` (a limited one: the tracking
/// table, or its tombstones the log does not hold).
async fn read_limited(
    tx: &mut PgConnection,
    table: &TableSchema,
    shape: &Shape,
    names: &TrackingNames,
    request: &ReadRequest<'_>,
    source: Source<'_>,
) -> Result<Vec<Change>, EndpointError> {
    let context = format!("reading {} changes of `{}`", request.kind.as_str(), table.name);
    let sql = select(table, shape, names, request, source);
    let rows = bind_request(query(sql), shape, request, true).fetch_all(&mut *tx).await.map_err(ctx(&context))?;
    decode(rows, &table.name.to_string(), shape, request.kind).map_err(ctx(&context))
}

/// Keeps a cursor that filled its batch for the batch after it; closes one
/// that did not (it has nothing more).
async fn finish(cursors: &Arc<Cursors>, mut cursor: OpenCursor, changes: &[Change], request: &ReadRequest<'_>) {
    match changes.last() {
        Some(last) if changes.len() >= request.limit => {
            cursor.key.after = last.version;
            cursor.key.after_key = Some(last.key.clone());
            cursors.keep(cursor);
        }
        _ => {
            if let Err(e) = cursor.tx.commit().await {
                tracing::debug!(error = %e, "Closing a change cursor failed.");
            }
        }
    }
}

/// Fetches the next batch of `limit` changes from the open cursor, and the
/// number of changes the cursor holds in all (none when it has no more).
async fn fetch(
    tx: &mut PgConnection,
    shape: &Shape,
    limit: usize,
    kind: ChangeKind,
    table: &str,
) -> Result<(Vec<Change>, Option<u64>), EndpointError> {
    let context = format!("reading {} changes of `{table}`", kind.as_str());
    // A count cannot be a parameter of FETCH; it is a number of this code's
    // own. Not prepared: the statement's columns are the open cursor's.
    let sql = format!("FETCH FORWARD {} FROM {CURSOR_NAME}", limit.max(1));
    let rows = query(sql).persistent(false).fetch_all(&mut *tx).await.map_err(ctx(&context))?;
    // The last column of a cursor's row (see `select`).
    let total = match rows.first() {
        Some(row) => Some(row.try_get::<i64, _>(row.len().saturating_sub(1)).map_err(ctx(&context))?),
        None => None,
    };
    let changes = decode(rows, table, shape, kind).map_err(ctx(&context))?;
    Ok((changes, total.map(|t| u64::try_from(t).unwrap_or(0))))
}

/// [`fetch`] owning its cursor, to run as a task of its own; hands the
/// cursor back.
async fn fetch_owned(
    mut cursor: OpenCursor,
    limit: usize,
    kind: ChangeKind,
    table: String,
) -> (OpenCursor, Result<Vec<Change>, EndpointError>) {
    let fetched = fetch(&mut cursor.tx, &cursor.shape, limit, kind, &table).await.map(|(changes, _)| changes);
    (cursor, fetched)
}

/// The read's statement: the changes of `source` after the request's
/// position up to its snapshot, in (version, key) order, joined with the
/// table for upserts' rows. From [`Source::Pending`] the statement has no
/// limit (a cursor fetches it batch by batch); otherwise it stops at the
/// request's limit.
///
/// Parameters: `$1` the version read after, then the key read after (when
/// set), the snapshot version, the kind, the origin (when filtered by peer)
/// and the limit (when limited).
fn select(
    table: &TableSchema,
    shape: &Shape,
    names: &TrackingNames,
    request: &ReadRequest<'_>,
    source: Source<'_>,
) -> String {
    let key_count = shape.keys.len();
    let pks = pk_columns(key_count);
    // The tracking table's key columns have the key's types: read them the
    // way the key columns are read.
    let tracked_keys = tracked_keys(shape);
    let key_exprs: Vec<String> = tracked_keys.iter().map(|k| k.read_expr("tr")).collect();
    let tr_keys: Vec<String> = pks.iter().map(|pk| format!("tr.{pk}")).collect();
    let (row_columns, join) = if request.kind == ChangeKind::Delete {
        (String::new(), String::new())
    } else {
        let cols: Vec<String> = shape.columns.iter().map(|c| format!(", {}", c.read_expr("t"))).collect();
        let on: Vec<String> =
            table.primary_key.iter().zip(&pks).map(|(k, pk)| format!("t.{} = tr.{pk}", quote_ident(k))).collect();
        let present = format!(", t.{} IS NOT NULL", quote_ident(&table.primary_key[0]));
        (
            format!("{present}{}", cols.concat()),
            format!("LEFT JOIN {} AS t ON {}", qualified(&table.name), on.join(" AND ")),
        )
    };
    let mut n = 1;
    let mut next = || {
        let p = n;
        n += 1;
        p
    };
    let after = next();
    let position = match &request.after_key {
        Some(key) if key.len() == key_count => {
            let params: Vec<String> = shape.keys.iter().map(|k| k.param(next())).collect();
            // One row comparison, which the (version, key) index serves as
            // a range; the equivalent OR of two conditions is only a filter,
            // and every batch would scan the index from its start.
            format!("(tr.version, {}) > (${after}, {})", tr_keys.join(", "), params.join(", "))
        }
        _ => format!("tr.version > ${after}"),
    };
    let up_to = next();
    let deleted = next();
    let origin_sql = match request.origin {
        OriginFilter::LocalOnly => "tr.origin = ''".to_string(),
        OriginFilter::NotFrom(_) => format!("tr.origin <> ${}", next()),
    };
    let filter = format!("{position} AND tr.version <= ${up_to} AND tr.deleted = ${deleted} AND {origin_sql}");
    let order = tr_keys.join(", ");
    // A cursor's rows also carry how many there are in all (see
    // `Cursors::total`): the server has them all in hand before the first
    // one anyway, and a count of its own would sort them all over again.
    let (from, limit, total) = match source {
        Source::Tracking => (names.qualified_table(), format!(" LIMIT ${}", next()), ""),
        Source::Unlogged(from) => (from.to_string(), format!(" LIMIT ${}", next()), ""),
        Source::Pending(from) => (from.to_string(), String::new(), ", count(*) OVER () AS pending_total"),
    };
    let total_column = if total.is_empty() { "" } else { ", tr.pending_total" };
    // Within one transaction's version the order is by key, which knows
    // nothing of foreign keys; a batch the database refuses for that reason
    // is widened by the core (see `versions_are_per_transaction`).
    // The batch is cut from the changes first and only its rows are joined
    // with the table: whatever the planner believes of the tracking table's
    // statistics (none yet on a freshly provisioned table, or a fold's new
    // versions beyond them), the join never covers more than one batch.
    format!(
        "SELECT {keys}, tr.version, tr.origin, tr.changed_at{row_columns}{total_column} \
         FROM (SELECT *{total} FROM {from} AS tr WHERE {filter} ORDER BY tr.version, {order}{limit}) AS tr {join} \
         ORDER BY tr.version, {order}",
        keys = key_exprs.join(", "),
    )
}

/// Binds a request's parameters in [`select`]'s order; the limit only when
/// `limited` (a statement not from [`Source::Pending`]).
fn bind_request<'q>(
    mut q: super::values::PgQuery<'q>,
    shape: &Shape,
    request: &ReadRequest<'_>,
    limited: bool,
) -> super::values::PgQuery<'q> {
    q = q.bind(request.after);
    if let Some(key) = request.after_key.as_ref().filter(|k| k.len() == shape.keys.len()) {
        for (value, column) in key.iter().zip(&shape.keys) {
            q = bind_for(q, column, value);
        }
    }
    q = q.bind(request.up_to).bind(request.kind == ChangeKind::Delete);
    if let OriginFilter::NotFrom(peer) = request.origin {
        q = q.bind(peer.clone());
    }
    if limited {
        q = q.bind(i64::try_from(request.limit).unwrap_or(i64::MAX));
    }
    q
}

/// The tracking table's key columns, typed as the table's key columns.
fn tracked_keys(shape: &Shape) -> Vec<LocalColumn> {
    shape.keys.iter().zip(pk_columns(shape.keys.len())).map(|(k, pk)| LocalColumn { name: pk, ..k.clone() }).collect()
}

/// Turns rows of [`select`] into changes.
fn decode(rows: Vec<PgRow>, table: &str, shape: &Shape, kind: ChangeKind) -> Result<Vec<Change>, sqlx::Error> {
    let key_count = shape.keys.len();
    let tracked_keys = tracked_keys(shape);
    let mut changes = Vec::with_capacity(rows.len());
    for row in rows {
        let key = read_values(&row, 0, &tracked_keys)?;
        let version: i64 = row.try_get(key_count)?;
        let origin: String = row.try_get(key_count + 1)?;
        let changed_at: i64 = row.try_get(key_count + 2)?;
        let image = if kind == ChangeKind::Delete {
            None
        } else {
            let present: bool = row.try_get(key_count + 3)?;
            if !present {
                tracing::warn!(table, version, "Tracked upsert has no base row; skipping it.");
                continue;
            }
            Some(read_values(&row, key_count + 4, &shape.columns)?)
        };
        changes.push(Change { key, version, origin, changed_at, row: image });
    }
    Ok(changes)
}

/// Counts pending changes above the watermarks (see [`hubsync_core::Endpoint::count_changes`]).
pub(crate) async fn count_changes(
    pool: &PgPool,
    cursors: &Cursors,
    table: &TableSchema,
    after: Watermarks,
    origin: &OriginFilter,
) -> Result<u64, EndpointError> {
    // A count of one kind that a cursor has just read in all (a session's
    // progress count after its first batch) is the cursor's total.
    let only = match (after.upserts, after.deletes) {
        (_, Version::MAX) => Some(ChangeKind::Upsert),
        (Version::MAX, _) => Some(ChangeKind::Delete),
        _ => None,
    };
    if let Some(kind) = only {
        let read = CursorKey {
            table: table_key(&table.name),
            kind,
            origin: origin.clone(),
            up_to: Version::MAX,
            after: after.get(kind),
            after_key: None,
        };
        if let Some(total) = cursors.total(&read) {
            return Ok(total);
        }
    }
    let context = format!("counting the changes of `{}`", table.name);
    let mut conn = pool.begin().await.map_err(ctx(&context))?;
    let names = require_tracking(&mut conn, &table.name).await.map_err(|e| e.context(&context))?;
    let floor = "least($1::int8, $2::int8)";
    // Changes still in the log are pending too; they are deduplicated in
    // memory (see `read_changes`).
    let source = if log_has_rows(&mut conn, &names).await? {
        query("SELECT set_config('work_mem', '64MB', true)").execute(&mut *conn).await.map_err(ctx(&context))?;
        pending(&names, table.primary_key.len(), floor)
    } else {
        names.qualified_table()
    };
    let origin_sql = match origin {
        OriginFilter::LocalOnly => "origin = ''",
        OriginFilter::NotFrom(_) => "origin <> $3",
    };
    let sql = format!(
        // The first condition only repeats the others in a form the
        // (version, key) index serves as a range: a count after a small
        // change reads that change, not the whole tracking table.
        "SELECT count(*) FROM {source} AS tr WHERE version > {floor} \
         AND ((NOT deleted AND version > $1) OR (deleted AND version > $2)) AND {origin_sql}"
    );
    let mut q = query(sql).bind(after.upserts).bind(after.deletes);
    if let OriginFilter::NotFrom(peer) = origin {
        q = q.bind(peer.clone());
    }
    let count: i64 = q.fetch_one(&mut *conn).await.and_then(|r| r.try_get(0)).map_err(ctx(&context))?;
    conn.commit().await.map_err(ctx(&context))?;
    Ok(u64::try_from(count).unwrap_or(0))
}

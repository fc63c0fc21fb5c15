//! Initial bulk copy: streaming a table out of one snapshot, loading such a
//! stream with `COPY ... FROM STDIN`, and copying PostgreSQL to PostgreSQL
//! with `COPY ... TO STDOUT` piped into `COPY ... FROM STDIN`.

use futures::TryStreamExt;
use hubsync_core::{BulkItem, BulkTarget, ChangeKind, EndpointError, ErrorKind, TableSchema, Version};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection, PgPool};
use tokio::sync::mpsc;

use super::apply::advance_sequences;
use super::dialect::{qualified, quote_ident};
use super::errors::{ctx, open_failed};
use super::introspect::{Shape, shape};
use super::query;
use super::scope::{snapshot_in, store_watermark};
use super::tracking::{
    TrackingNames, create_triggers, drop_triggers, ensure_shared, ensure_tracking_table, fold, lock_ddl, pk_columns,
    record_rows,
};
use super::values::{copy_text, read_values};

/// COPY data is sent in chunks of about this many bytes.
const COPY_CHUNK: usize = 1 << 20;

fn receiver_gone(table: &TableSchema) -> EndpointError {
    EndpointError::new(ErrorKind::StreamClosed, format!("the receiver of the bulk copy of `{}` stopped", table.name))
}

/// Streams the table from one snapshot (see [`hubsync_core::Endpoint::bulk_read`]).
pub(crate) async fn bulk_read(
    pool: &PgPool,
    table: &TableSchema,
    batch_rows: usize,
    sender: mpsc::Sender<BulkItem>,
) -> Result<u64, EndpointError> {
    let context = format!("reading `{}` for a bulk copy", table.name);
    let batch_rows = batch_rows.max(1);
    // One REPEATABLE READ snapshot for the version and every row.
    let mut tx = pool.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").await.map_err(ctx(&context))?;
    let snapshot = snapshot_in(&mut tx).await.map_err(|e| e.context(&context))?;
    let shape = shape(&mut tx, table).await.map_err(|e| e.context(&context))?;
    sender.send(BulkItem::Snapshot(snapshot)).await.map_err(|_| receiver_gone(table))?;
    let cols: Vec<String> = shape.columns.iter().map(|c| c.read_expr("t")).collect();
    let sql = format!("SELECT {} FROM {} AS t", cols.join(", "), qualified(&table.name));
    let mut sent = 0u64;
    {
        // Rows stream off the wire as the channel takes them: memory stays
        // bounded by the channel, whatever the table's size.
        let mut rows = query(sql).fetch(&mut *tx);
        let mut batch = Vec::with_capacity(batch_rows);
        while let Some(row) = rows.try_next().await.map_err(ctx(&context))? {
            batch.push(read_values(&row, 0, &shape.columns).map_err(ctx(&context))?);
            if batch.len() == batch_rows {
                sent += batch.len() as u64;
                let full = std::mem::replace(&mut batch, Vec::with_capacity(batch_rows));
                sender.send(BulkItem::Rows(full)).await.map_err(|_| receiver_gone(table))?;
            }
        }
        if !batch.is_empty() {
            sent += batch.len() as u64;
            sender.send(BulkItem::Rows(batch)).await.map_err(|_| receiver_gone(table))?;
        }
    }
    tx.rollback().await.map_err(ctx(&context))?;
    sender.send(BulkItem::End).await.map_err(|_| receiver_gone(table))?;
    Ok(sent)
}

/// The `COPY t (cols) FROM STDIN` statement for a table.
fn copy_in_sql(table: &TableSchema, shape: &Shape) -> String {
    let cols: Vec<String> = shape.columns.iter().map(|c| quote_ident(&c.name)).collect();
    format!("COPY {} ({}) FROM STDIN", qualified(&table.name), cols.join(", "))
}

/// Loads a bulk stream into an empty table (see [`hubsync_core::Endpoint::bulk_load`]).
pub(crate) async fn bulk_load(
    pool: &PgPool,
    target: BulkTarget<'_>,
    mut receiver: mpsc::Receiver<BulkItem>,
) -> Result<u64, EndpointError> {
    let table = target.table;
    let context = format!("bulk loading `{}` from `{}`", table.name, target.peer);
    let mut tx = pool.begin().await.map_err(ctx(&context))?;
    let loaded = load_in(&mut tx, target, &mut receiver).await.map_err(|e| e.context(&context))?;
    tx.commit().await.map_err(ctx(&context))?;
    Ok(loaded)
}

async fn load_in(
    conn: &mut PgConnection,
    target: BulkTarget<'_>,
    receiver: &mut mpsc::Receiver<BulkItem>,
) -> Result<u64, EndpointError> {
    let table = target.table;
    let unfinished = || {
        EndpointError::new(
            ErrorKind::StreamClosed,
            "the bulk stream ended before all rows were sent; nothing was loaded",
        )
    };
    let snapshot = match receiver.recv().await {
        Some(BulkItem::Snapshot(v)) => v,
        Some(_) => {
            return Err(EndpointError::new(
                ErrorKind::Other,
                "the bulk stream did not start with its snapshot version",
            ));
        }
        None => return Err(unfinished()),
    };
    let (shape, names) = prepare_load(conn, table).await?;
    let width = shape.columns.len();
    let mut copy = conn.copy_in_raw(&copy_in_sql(table, &shape)).await.map_err(ctx("starting COPY"))?;
    let mut buffer: Vec<u8> = Vec::with_capacity(COPY_CHUNK + COPY_CHUNK / 4);
    let mut loaded = 0u64;
    let streamed: Result<(), EndpointError> = async {
        loop {
            match receiver.recv().await {
                Some(BulkItem::Rows(rows)) => {
                    for row in rows {
                        if row.len() != width {
                            return Err(EndpointError::new(
                                ErrorKind::Schema,
                                format!(
                                    "a bulk row carries {} values where the table's synced row has {width}",
                                    row.len()
                                ),
                            ));
                        }
                        for (i, (value, column)) in row.iter().zip(&shape.columns).enumerate() {
                            if i > 0 {
                                buffer.push(b'\t');
                            }
                            copy_text(&mut buffer, column, value);
                        }
                        buffer.push(b'\n');
                        loaded += 1;
                        if buffer.len() >= COPY_CHUNK {
                            copy.send(buffer.as_slice()).await.map_err(ctx("sending COPY data"))?;
                            buffer.clear();
                        }
                    }
                }
                Some(BulkItem::End) => return Ok(()),
                Some(BulkItem::Snapshot(_)) => {
                    return Err(EndpointError::new(ErrorKind::Other, "the bulk stream sent a second snapshot version"));
                }
                None => return Err(unfinished()),
            }
        }
    }
    .await;
    if let Err(e) = streamed {
        // Ends the COPY so the connection is usable; the transaction rolls back.
        let _ = copy.abort("hubsync: the bulk stream failed").await;
        return Err(e);
    }
    if !buffer.is_empty() {
        copy.send(buffer.as_slice()).await.map_err(ctx("sending COPY data"))?;
    }
    copy.finish().await.map_err(ctx("finishing COPY"))?;
    finish_load(conn, target, &shape, &names, snapshot).await?;
    Ok(loaded)
}

/// Readies an empty table for loading: hubsync's objects exist and the
/// triggers are off, because loaded rows are not local changes (tracking
/// rows, when wanted, are written set-based afterwards).
async fn prepare_load(conn: &mut PgConnection, table: &TableSchema) -> Result<(Shape, TrackingNames), EndpointError> {
    let names = TrackingNames::for_table(&table.name);
    lock_ddl(conn).await?;
    // Dropping the triggers needs the table's strongest lock. Taken first,
    // before this transaction touches the tracking table, it waits for the
    // applications' open writes to end; taken later, it would deadlock with an
    // application write whose trigger waits on the tracking table.
    query(format!("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE", qualified(&table.name)))
        .execute(&mut *conn)
        .await
        .map_err(ctx("locking the table for the initial copy"))?;
    let shape = shape(conn, table).await?;
    ensure_shared(conn).await?;
    ensure_tracking_table(conn, &table.name, &shape, &names).await?;
    // Older logged changes go to the tracking table first, where the load's
    // own tracking rows (or the removal of stale tombstones) supersede them.
    fold(conn, &names, shape.keys.len()).await?;
    drop_triggers(conn, &table.name, &names).await?;
    Ok((shape, names))
}

/// Tracks the loaded rows as the target asks, turns the triggers back on,
/// moves sequences past the loaded values and stores both watermarks, inside
/// the loading transaction.
async fn finish_load(
    conn: &mut PgConnection,
    target: BulkTarget<'_>,
    shape: &Shape,
    names: &TrackingNames,
    snapshot: Version,
) -> Result<(), EndpointError> {
    let table = target.table;
    if target.record_tracking {
        record_rows(conn, table, names, target.peer, true).await?;
    } else {
        forget_tombstones(conn, table, names).await?;
    }
    create_triggers(conn, table, shape, names).await?;
    advance_sequences(conn, table, shape).await?;
    for kind in [ChangeKind::Upsert, ChangeKind::Delete] {
        store_watermark(conn, target.scope, target.peer, &table.name, kind, snapshot).await?;
    }
    Ok(())
}

/// Drops old local tombstones of keys that were just loaded: uploaded later,
/// they would delete the rows the load brought.
async fn forget_tombstones(
    conn: &mut PgConnection,
    table: &TableSchema,
    names: &TrackingNames,
) -> Result<(), EndpointError> {
    let pks = pk_columns(table.primary_key.len());
    let on: Vec<String> =
        table.primary_key.iter().zip(&pks).map(|(k, pk)| format!("tr.{pk} = t.{}", quote_ident(k))).collect();
    let sql = format!(
        "DELETE FROM {} AS tr USING {} AS t WHERE {}",
        names.qualified_table(),
        qualified(&table.name),
        on.join(" AND ")
    );
    query(sql).execute(&mut *conn).await.map_err(ctx("removing stale tracking rows"))?;
    Ok(())
}

/// Whether a locator names a PostgreSQL database.
pub(crate) fn is_pg_url(locator: &str) -> bool {
    locator.starts_with("postgres://") || locator.starts_with("postgresql://")
}

/// Copies a table from another PostgreSQL database into this empty one at
/// COPY speed: the source's rows stream out of one REPEATABLE READ snapshot
/// (the same that gives the snapshot version) straight into `COPY FROM
/// STDIN` here, chunk by chunk, so memory stays flat.
pub(crate) async fn copy_direct(pool: &PgPool, source: &str, target: BulkTarget<'_>) -> Result<u64, EndpointError> {
    let table = target.table;
    let label = crate::redact_url(source);
    let context = format!("copying `{}` from `{label}`", table.name);
    let options: PgConnectOptions = source.parse().map_err(|e| open_failed(e, &label))?;
    let options = super::session_options(options);
    let mut src = super::connect_patiently(&options, &label).await?;
    let copied = copy_from(pool, &mut src, target).await.map_err(|e| e.context(&context));
    let _ = src.close().await;
    copied
}

async fn copy_from(pool: &PgPool, src: &mut PgConnection, target: BulkTarget<'_>) -> Result<u64, EndpointError> {
    let table = target.table;
    let mut src_tx = src
        .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await
        .map_err(ctx("starting the source's snapshot"))?;
    let snapshot = snapshot_in(&mut src_tx).await?;
    let mut tx = pool.begin().await.map_err(ctx("starting the load"))?;
    let (shape, names) = prepare_load(&mut tx, table).await?;
    let cols: Vec<String> = shape.columns.iter().map(|c| quote_ident(&c.name)).collect();
    let out_sql = format!("COPY (SELECT {} FROM {}) TO STDOUT", cols.join(", "), qualified(&table.name));
    let mut copy_in = tx.copy_in_raw(&copy_in_sql(table, &shape)).await.map_err(ctx("starting COPY here"))?;
    let piped: Result<(), EndpointError> = async {
        let mut out = src_tx.copy_out_raw(&out_sql).await.map_err(ctx("starting COPY at the source"))?;
        while let Some(chunk) = out.try_next().await.map_err(ctx("reading COPY data from the source"))? {
            copy_in.send(&chunk[..]).await.map_err(ctx("sending COPY data"))?;
        }
        Ok(())
    }
    .await;
    if let Err(e) = piped {
        let _ = copy_in.abort("hubsync: reading the source failed").await;
        return Err(e);
    }
    let copied = copy_in.finish().await.map_err(ctx("finishing COPY"))?;
    src_tx.rollback().await.map_err(ctx("ending the source's snapshot"))?;
    finish_load(&mut tx, target, &shape, &names, snapshot).await?;
    tx.commit().await.map_err(ctx("committing the copy"))?;
    Ok(copied)
}

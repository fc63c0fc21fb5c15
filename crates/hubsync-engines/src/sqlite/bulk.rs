//! Initial bulk copy: streaming a table out of one snapshot, and loading such
//! a stream into an empty table in one transaction.

use std::sync::Arc;

use futures::TryStreamExt;
use hubsync_core::{BulkItem, BulkTarget, ChangeKind, EndpointError, ErrorKind, TableSchema, Value};
use sqlx::{SqliteConnection, SqlitePool};
use tokio::sync::mpsc;

use super::apply::{multi_row_insert, rows_per_insert};
use super::dialect::{check_schema, qualified, quote_ident};
use super::errors::ctx;
use super::scope::{counter, store_watermark};
use super::tracking::{
    TrackingNames, create_triggers, drop_triggers, ensure_shared, ensure_tracking_table, pk_columns, record_rows,
};
use super::values::{bind_owned, read_values};
use super::{query, query_shared};

fn receiver_gone(table: &TableSchema) -> EndpointError {
    EndpointError::new(ErrorKind::StreamClosed, format!("the receiver of the bulk copy of `{}` stopped", table.name))
}

/// Streams the table from one snapshot (see [`hubsync_core::Endpoint::bulk_read`]).
pub(crate) async fn bulk_read(
    pool: &SqlitePool,
    table: &TableSchema,
    batch_rows: usize,
    sender: mpsc::Sender<BulkItem>,
) -> Result<u64, EndpointError> {
    let context = format!("reading `{}` for a bulk copy", table.name);
    let t = qualified(&table.name).map_err(|e| e.context(&context))?;
    let batch_rows = batch_rows.max(1);
    let width = table.columns.len();
    // A read transaction: the counter and the rows come from one snapshot.
    let mut tx = pool.begin().await.map_err(ctx(&context))?;
    let snapshot = counter(&mut tx).await.map_err(|e| e.context(&context))?;
    sender.send(BulkItem::Snapshot(snapshot)).await.map_err(|_| receiver_gone(table))?;
    let cols: Vec<String> = table.columns.iter().map(|c| quote_ident(&c.name)).collect();
    let sql = format!("SELECT {} FROM {t}", cols.join(", "));
    let mut sent = 0u64;
    {
        let mut rows = query(sql).fetch(&mut *tx);
        let mut batch = Vec::with_capacity(batch_rows);
        while let Some(row) = rows.try_next().await.map_err(ctx(&context))? {
            batch.push(read_values(&row, 0, width).map_err(ctx(&context))?);
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

/// Inserts rows with full-size multi-row INSERTs, keeping a remainder for the
/// next call; the full-size statement text is shared so SQLite prepares it once.
struct Loader {
    target: String,
    width: usize,
    per_stmt: usize,
    full_sql: Arc<str>,
    pending: Vec<Vec<Value>>,
    loaded: u64,
}

impl Loader {
    fn new(target: String, width: usize) -> Self {
        let per_stmt = rows_per_insert(width);
        let full_sql: Arc<str> = multi_row_insert(&target, width, per_stmt).into();
        Loader { target, width, per_stmt, full_sql, pending: Vec::with_capacity(per_stmt), loaded: 0 }
    }

    async fn push(&mut self, conn: &mut SqliteConnection, rows: Vec<Vec<Value>>) -> Result<(), EndpointError> {
        for row in rows {
            if row.len() != self.width {
                return Err(EndpointError::new(
                    ErrorKind::Schema,
                    format!("a bulk row carries {} values where the table's synced row has {}", row.len(), self.width),
                ));
            }
            self.pending.push(row);
            if self.pending.len() == self.per_stmt {
                self.flush(conn).await?;
            }
        }
        Ok(())
    }

    async fn flush(&mut self, conn: &mut SqliteConnection) -> Result<(), EndpointError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let mut q = if self.pending.len() == self.per_stmt {
            query_shared(&self.full_sql)
        } else {
            query(multi_row_insert(&self.target, self.width, self.pending.len()))
        };
        let count = self.pending.len() as u64;
        for row in self.pending.drain(..) {
            for value in row {
                q = bind_owned(q, value);
            }
        }
        q.execute(&mut *conn).await.map_err(ctx("inserting rows"))?;
        self.loaded += count;
        Ok(())
    }
}

/// Loads a bulk stream into an empty table (see [`hubsync_core::Endpoint::bulk_load`]).
pub(crate) async fn bulk_load(
    pool: &SqlitePool,
    target: BulkTarget<'_>,
    mut receiver: mpsc::Receiver<BulkItem>,
) -> Result<u64, EndpointError> {
    let table = target.table;
    let context = format!("bulk loading `{}` from `{}`", table.name, target.peer);
    check_schema(&table.name).map_err(|e| e.context(&context))?;
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(ctx(&context))?;
    let loaded = load_in(&mut tx, target, &mut receiver).await.map_err(|e| e.context(&context))?;
    tx.commit().await.map_err(ctx(&context))?;
    Ok(loaded)
}

async fn load_in(
    conn: &mut SqliteConnection,
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
    let names = prepare_load(conn, table).await?;
    let cols: Vec<String> = table.columns.iter().map(|c| quote_ident(&c.name)).collect();
    let into = format!("{} ({})", qualified(&table.name)?, cols.join(", "));
    let mut loader = Loader::new(into, table.columns.len());
    loop {
        match receiver.recv().await {
            Some(BulkItem::Rows(rows)) => loader.push(conn, rows).await?,
            Some(BulkItem::End) => break,
            Some(BulkItem::Snapshot(_)) => {
                return Err(EndpointError::new(ErrorKind::Other, "the bulk stream sent a second snapshot version"));
            }
            None => return Err(unfinished()),
        }
    }
    loader.flush(conn).await?;
    finish_load(conn, target, &names, snapshot).await?;
    Ok(loader.loaded)
}

/// Readies an empty table for loading: hubsync's objects exist and the
/// triggers are off, because loaded rows are not local changes (tracking
/// rows, when wanted, are written set-based afterwards).
async fn prepare_load(conn: &mut SqliteConnection, table: &TableSchema) -> Result<TrackingNames, EndpointError> {
    let names = TrackingNames::for_table(&table.name);
    ensure_shared(conn).await?;
    ensure_tracking_table(conn, table, &names).await?;
    drop_triggers(conn, &names).await?;
    Ok(names)
}

/// Tracks the loaded rows as the target asks, turns the triggers back on and
/// stores both watermarks, inside the loading transaction.
async fn finish_load(
    conn: &mut SqliteConnection,
    target: BulkTarget<'_>,
    names: &TrackingNames,
    snapshot: hubsync_core::Version,
) -> Result<(), EndpointError> {
    let table = target.table;
    if target.record_tracking {
        record_rows(conn, table, names, target.peer, true).await?;
    } else {
        forget_tombstones(conn, table, names).await?;
    }
    create_triggers(conn, table, names).await?;
    for kind in [ChangeKind::Upsert, ChangeKind::Delete] {
        store_watermark(conn, target.scope, target.peer, &table.name, kind, snapshot).await?;
    }
    Ok(())
}

/// Marks a locator from [`hubsync_core::Endpoint::direct_source`] as a SQLite file.
pub(crate) const DIRECT_PREFIX: &str = "sqlite-file:";

/// The schema name the source file is attached under during a direct copy.
const SOURCE_SCHEMA: &str = "hubsync_source";

/// Copies a table from another SQLite file into this empty one inside SQLite:
/// the source is attached and read with one `INSERT ... SELECT`, in the same
/// transaction that reads the source's counter, so rows and snapshot version
/// come from one snapshot of the source.
pub(crate) async fn copy_direct(
    pool: &SqlitePool,
    source: &std::path::Path,
    target: BulkTarget<'_>,
) -> Result<u64, EndpointError> {
    let table = target.table;
    let context = format!("copying `{}` from `{}`", table.name, source.display());
    check_schema(&table.name).map_err(|e| e.context(&context))?;
    let mut conn = pool.acquire().await.map_err(ctx(&context))?;
    // ATTACH cannot run inside a transaction, so it brackets the one below.
    query(format!("ATTACH DATABASE ?1 AS {SOURCE_SCHEMA}"))
        .bind(source.display().to_string())
        .execute(&mut *conn)
        .await
        .map_err(ctx(&context))?;
    let copied = copy_attached(&mut conn, target).await.map_err(|e| e.context(&context));
    let detached = query(format!("DETACH DATABASE {SOURCE_SCHEMA}")).execute(&mut *conn).await;
    if detached.is_err() {
        // Never hand a connection with a foreign file attached back to the pool.
        conn.close_on_drop();
    }
    copied
}

async fn copy_attached(conn: &mut SqliteConnection, target: BulkTarget<'_>) -> Result<u64, EndpointError> {
    let table = target.table;
    let mut tx = sqlx::Connection::begin_with(&mut *conn, "BEGIN IMMEDIATE").await.map_err(ctx("starting the copy"))?;
    let snapshot: i64 = query(format!("SELECT version FROM {SOURCE_SCHEMA}.hubsync_counter WHERE id = 1"))
        .fetch_one(&mut *tx)
        .await
        .and_then(|row| sqlx::Row::try_get(&row, 0))
        .map_err(ctx("reading the source's snapshot version"))?;
    let names = prepare_load(&mut tx, table).await?;
    let cols: Vec<String> = table.columns.iter().map(|c| quote_ident(&c.name)).collect();
    let sql = format!(
        "INSERT INTO {} ({cols}) SELECT {cols} FROM {SOURCE_SCHEMA}.{}",
        qualified(&table.name)?,
        quote_ident(&table.name.name),
        cols = cols.join(", "),
    );
    let copied = query(sql).execute(&mut *tx).await.map_err(ctx("copying rows"))?.rows_affected();
    finish_load(&mut tx, target, &names, snapshot).await?;
    tx.commit().await.map_err(ctx("committing the copy"))?;
    Ok(copied)
}

/// Drops old local tombstones of keys that were just loaded: uploaded later,
/// they would delete the rows the load brought.
async fn forget_tombstones(
    conn: &mut SqliteConnection,
    table: &TableSchema,
    names: &TrackingNames,
) -> Result<(), EndpointError> {
    let pks = pk_columns(table.primary_key.len());
    let keys: Vec<String> = table.primary_key.iter().map(|k| quote_ident(k)).collect();
    let sql = format!(
        "DELETE FROM main.{} WHERE ({}) IN (SELECT {} FROM {})",
        quote_ident(&names.table),
        pks.join(", "),
        keys.join(", "),
        qualified(&table.name)?
    );
    query(sql).execute(&mut *conn).await.map_err(ctx("removing stale tracking rows"))?;
    Ok(())
}

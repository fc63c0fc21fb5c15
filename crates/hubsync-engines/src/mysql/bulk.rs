//! Initial bulk copy: streaming a table out of one consistent snapshot, and
//! loading such a stream into an empty table in one transaction.

use futures::TryStreamExt;
use hubsync_core::{
    BulkItem, BulkTarget, ChangeKind, EndpointError, ErrorKind, TableName, TableSchema, Value, Version,
};
use sqlx::{Connection, MySqlConnection, MySqlPool};
use tokio::sync::mpsc;

use super::apply::{MAX_PARAMS, MAX_STATEMENT_BYTES, multi_row_insert};
use super::dialect::{ColKind, qualified, quote_ident};
use super::errors::ctx;
use super::introspect::column_kinds;
use super::query;
use super::scope::store_watermark;
use super::tracking::{TrackingNames, pk_columns, record_rows, require_tracking};
use super::values::{bind_owned, read_values};
use super::versions::{Gaps, snapshot_version};

fn receiver_gone(table: &TableSchema) -> EndpointError {
    EndpointError::new(ErrorKind::StreamClosed, format!("the receiver of the bulk copy of `{}` stopped", table.name))
}

/// Streams the table from one snapshot (see [`hubsync_core::Endpoint::bulk_read`]).
pub(crate) async fn bulk_read(
    pool: &MySqlPool,
    home: &str,
    gaps: &Gaps,
    table: &TableSchema,
    batch_rows: usize,
    sender: mpsc::Sender<BulkItem>,
) -> Result<u64, EndpointError> {
    let context = format!("reading `{}` for a bulk copy", table.name);
    let batch_rows = batch_rows.max(1);
    let mut conn = pool.acquire().await.map_err(ctx(&context))?;
    let kinds = column_kinds(&mut conn, home, table).await.map_err(|e| e.context(&context))?;
    // Every version at or below the snapshot version committed before the
    // rows' snapshot starts, so the rows hold all of them; changes above it
    // that the rows also hold are sent again later, which is harmless.
    let snapshot = snapshot_version(pool, home, gaps).await.map_err(|e| e.context(&context))?;
    let mut tx =
        conn.begin_with("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY").await.map_err(ctx(&context))?;
    sender.send(BulkItem::Snapshot(snapshot)).await.map_err(|_| receiver_gone(table))?;
    let cols: Vec<String> =
        table.columns.iter().zip(&kinds).map(|(c, kind)| kind.select(&quote_ident(&c.name))).collect();
    let sql = format!("SELECT {} FROM {}", cols.join(", "), qualified(&table.name, home));
    let mut sent = 0u64;
    {
        let mut rows = query(sql).fetch(&mut *tx);
        let mut batch = Vec::with_capacity(batch_rows);
        while let Some(row) = rows.try_next().await.map_err(ctx(&context))? {
            batch.push(read_values(&row, 0, &kinds).map_err(ctx(&context))?);
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

/// Inserts rows with multi-row INSERTs as large as MySQL's limits allow.
struct Loader {
    target: String,
    kinds: Vec<ColKind>,
    pending: Vec<Vec<Value>>,
    pending_bytes: usize,
    loaded: u64,
}

impl Loader {
    fn width(&self) -> usize {
        self.kinds.len()
    }

    async fn push(&mut self, conn: &mut MySqlConnection, rows: Vec<Vec<Value>>) -> Result<(), EndpointError> {
        let per_stmt = (MAX_PARAMS / self.width().max(1)).max(1);
        for row in rows {
            if row.len() != self.width() {
                return Err(EndpointError::new(
                    ErrorKind::Schema,
                    format!(
                        "a bulk row carries {} values where the table's synced row has {}",
                        row.len(),
                        self.width()
                    ),
                ));
            }
            let size: usize = row.iter().map(Value::approx_size).sum::<usize>() + 8;
            if !self.pending.is_empty()
                && (self.pending.len() == per_stmt || self.pending_bytes + size > MAX_STATEMENT_BYTES)
            {
                self.flush(conn).await?;
            }
            self.pending_bytes += size;
            self.pending.push(row);
        }
        Ok(())
    }

    async fn flush(&mut self, conn: &mut MySqlConnection) -> Result<(), EndpointError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let mut q = query(multi_row_insert(&self.target, self.width(), self.pending.len()));
        let count = self.pending.len() as u64;
        for row in self.pending.drain(..) {
            for (value, kind) in row.into_iter().zip(&self.kinds) {
                q = bind_owned(q, value, Some(*kind));
            }
        }
        self.pending_bytes = 0;
        q.execute(&mut *conn).await.map_err(ctx("inserting rows"))?;
        self.loaded += count;
        Ok(())
    }
}

/// Loads a bulk stream into an empty table (see [`hubsync_core::Endpoint::bulk_load`]).
pub(crate) async fn bulk_load(
    pool: &MySqlPool,
    home: &str,
    target: BulkTarget<'_>,
    mut receiver: mpsc::Receiver<BulkItem>,
) -> Result<u64, EndpointError> {
    let table = target.table;
    let context = format!("bulk loading `{}` from `{}`", table.name, target.peer);
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
            )
            .context(&context));
        }
        None => return Err(unfinished().context(&context)),
    };
    if !super::tracking::is_provisioned(pool, home, &table.name).await? {
        super::tracking::provision(pool, home, table).await.map_err(|e| e.context(&context))?;
    }
    let mut conn = pool.acquire().await.map_err(ctx(&context))?;
    let names = require_tracking(&mut conn, home, &table.name).await.map_err(|e| e.context(&context))?;
    let kinds = column_kinds(&mut conn, home, table).await.map_err(|e| e.context(&context))?;
    // The triggers skip this session's writes: the rows are the peer's, and
    // are tracked set-based below when wanted.
    query("SET @hubsync_loading = 1").execute(&mut *conn).await.map_err(ctx(&context))?;
    let result = async {
        let mut tx = conn.begin().await.map_err(ctx("starting the load"))?;
        let cols: Vec<String> = table.columns.iter().map(|c| quote_ident(&c.name)).collect();
        let into = format!("{} ({})", qualified(&table.name, home), cols.join(", "));
        let mut loader = Loader { target: into, kinds, pending: Vec::new(), pending_bytes: 0, loaded: 0 };
        loop {
            match receiver.recv().await {
                Some(BulkItem::Rows(rows)) => loader.push(&mut tx, rows).await?,
                Some(BulkItem::End) => break,
                Some(BulkItem::Snapshot(_)) => {
                    return Err(EndpointError::new(ErrorKind::Other, "the bulk stream sent a second snapshot version"));
                }
                None => return Err(unfinished()),
            }
        }
        loader.flush(&mut tx).await?;
        finish_load(&mut tx, home, target, &names, snapshot).await?;
        tx.commit().await.map_err(ctx("committing the load"))?;
        Ok(loader.loaded)
    }
    .await;
    let reset = query("SET @hubsync_loading = NULL").execute(&mut *conn).await;
    if reset.is_err() {
        conn.close_on_drop();
    }
    result.map_err(|e| e.context(&context))
}

/// Tracks the loaded rows as the target asks and stores both watermarks,
/// inside the loading transaction.
async fn finish_load(
    conn: &mut MySqlConnection,
    home: &str,
    target: BulkTarget<'_>,
    names: &TrackingNames,
    snapshot: Version,
) -> Result<(), EndpointError> {
    let table = target.table;
    if target.record_tracking {
        record_rows(conn, table, names, home, target.peer, true).await?;
    } else {
        forget_tombstones(conn, table, names, home).await?;
    }
    for kind in [ChangeKind::Upsert, ChangeKind::Delete] {
        store_watermark(conn, home, target.scope, target.peer, &table.name, kind, snapshot).await?;
    }
    Ok(())
}

/// Drops old local tombstones of keys that were just loaded: uploaded later,
/// they would delete the rows the load brought.
async fn forget_tombstones(
    conn: &mut MySqlConnection,
    table: &TableSchema,
    names: &TrackingNames,
    home: &str,
) -> Result<(), EndpointError> {
    let pks = pk_columns(table.primary_key.len());
    let on: Vec<String> =
        table.primary_key.iter().zip(&pks).map(|(k, pk)| format!("tr.{pk} = t.{}", quote_ident(k))).collect();
    let sql = format!(
        "DELETE tr FROM {} AS tr JOIN {} AS t ON {}",
        names.qualified_table(),
        qualified(&table.name, home),
        on.join(" AND ")
    );
    query(sql).execute(&mut *conn).await.map_err(ctx("removing stale tracking rows"))?;
    Ok(())
}

/// Marks a locator from [`hubsync_core::Endpoint::direct_source`] as a
/// database on a MySQL server: `mysql-db:user@host:port/database`.
pub(crate) const DIRECT_PREFIX: &str = "mysql-db:";

/// Copies a table from another database of the same server into this empty
/// one inside the server, with one `INSERT ... SELECT`. Returns `None`,
/// having done nothing, when this endpoint cannot read the source table.
pub(crate) async fn copy_direct(
    pool: &MySqlPool,
    home: &str,
    source_db: &str,
    target: BulkTarget<'_>,
) -> Result<Option<u64>, EndpointError> {
    let table = target.table;
    let context = format!("copying `{}` from the database `{source_db}`", table.name);
    let source = TableName { schema: Some(source_db.to_string()), name: table.name.name.clone() };
    let cols: Vec<String> = table.columns.iter().map(|c| quote_ident(&c.name)).collect();
    let select = format!("SELECT {} FROM {}", cols.join(", "), qualified(&source, home));
    // Readable (privileges, columns)? Otherwise the caller streams the rows.
    if query(format!("{select} LIMIT 0")).execute(pool).await.is_err() {
        return Ok(None);
    }
    // Every version at or below it committed before the copy reads, so the
    // copy holds all of them (see `bulk_read`).
    let snapshot = snapshot_version(pool, source_db, &Gaps::default()).await.map_err(|e| e.context(&context))?;
    if !super::tracking::is_provisioned(pool, home, &table.name).await? {
        super::tracking::provision(pool, home, table).await.map_err(|e| e.context(&context))?;
    }
    let mut conn = pool.acquire().await.map_err(ctx(&context))?;
    let names = require_tracking(&mut conn, home, &table.name).await.map_err(|e| e.context(&context))?;
    query("SET @hubsync_loading = 1").execute(&mut *conn).await.map_err(ctx(&context))?;
    let result: Result<u64, EndpointError> = async {
        let mut tx = conn.begin().await.map_err(ctx("starting the copy"))?;
        let sql = format!("INSERT INTO {} ({}) {select}", qualified(&table.name, home), cols.join(", "));
        let copied = query(sql).execute(&mut *tx).await.map_err(ctx("copying rows"))?.rows_affected();
        finish_load(&mut tx, home, target, &names, snapshot).await?;
        tx.commit().await.map_err(ctx("committing the copy"))?;
        Ok(copied)
    }
    .await;
    let reset = query("SET @hubsync_loading = NULL").execute(&mut *conn).await;
    if reset.is_err() {
        conn.close_on_drop();
    }
    result.map(Some).map_err(|e| e.context(&context))
}

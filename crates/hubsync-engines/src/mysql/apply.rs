//! Applying a batch of changes in one transaction, set-based: the batch goes
//! into a temporary table shaped like the target's columns, conflicts are
//! found with one join, and the winners are written with one statement.
//!
//! MySQL checks foreign keys row by row, never deferred: when one statement
//! is refused by a foreign key (a child before its parent within the batch),
//! the batch's rows are written one by one in passes, each pass writing what
//! the previous ones made possible, until all are written or a pass makes no
//! progress (then the foreign key error stands, and the core widens the
//! batch or retries the table later).

use hubsync_core::endpoint::{LocalState, Verdict};
use hubsync_core::{ApplyBatch, ApplyOutcome, ChangeKind, EndpointError, ErrorKind, TableSchema, Value};
use sqlx::{Connection, MySqlConnection, MySqlPool, Row};

use super::dialect::{ColKind, qualified, quote_ident};
use super::errors::{ctx, kind_of, map_err};
use super::introspect::{column_kinds, key_kinds};
use super::scope::store_watermark;
use super::tracking::{TrackingNames, pk_columns, require_tracking, seq_table};
use super::values::{bind_ref, read_values};
use super::{ddl, query};

/// MySQL's limit on bound parameters per statement.
pub(crate) const MAX_PARAMS: usize = 65_535;
/// Bytes of values per multi-row INSERT, well under `max_allowed_packet`
/// (16 MiB by default on MariaDB, 4 MiB on older MySQL).
pub(crate) const MAX_STATEMENT_BYTES: usize = 2 << 20;

/// The per-connection staging table.
const STAGING: &str = "hubsync_in";

/// `INSERT INTO target VALUES (?, ...), ...` for `rows` rows of `width` values.
pub(crate) fn multi_row_insert(target: &str, width: usize, rows: usize) -> String {
    let tuple = format!("({})", vec!["?"; width].join(", "));
    let mut sql = String::with_capacity(target.len() + 20 + rows * (tuple.len() + 2));
    sql.push_str("INSERT INTO ");
    sql.push_str(target);
    sql.push_str(" VALUES ");
    for i in 0..rows {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&tuple);
    }
    sql
}

/// Splits rows into runs that fit one multi-row INSERT: under the parameter
/// limit and the byte budget (a single larger row goes alone).
pub(crate) fn chunk_ends(sizes: impl Iterator<Item = usize>, width: usize) -> Vec<usize> {
    let per_stmt = (MAX_PARAMS / width.max(1)).max(1);
    let mut ends = Vec::new();
    let (mut rows, mut bytes) = (0usize, 0usize);
    let mut i = 0;
    for size in sizes {
        if rows > 0 && (rows == per_stmt || bytes + size > MAX_STATEMENT_BYTES) {
            ends.push(i);
            rows = 0;
            bytes = 0;
        }
        rows += 1;
        bytes += size;
        i += 1;
    }
    if rows > 0 {
        ends.push(i);
    }
    ends
}

/// The shape of one batch.
struct Plan<'a> {
    table: &'a TableSchema,
    kind: ChangeKind,
    home: &'a str,
    /// Kinds of every synced column.
    kinds: Vec<ColKind>,
    /// Kinds of the staged values (row image for upserts, key for deletes).
    staged_kinds: Vec<ColKind>,
    /// The staging column holding each key column, in key order.
    key_cols: Vec<String>,
}

impl Plan<'_> {
    fn width(&self) -> usize {
        self.staged_kinds.len()
    }

    fn value_cols(&self) -> Vec<String> {
        (1..=self.width()).map(|i| format!("c_{i}")).collect()
    }
}

/// Applies a batch atomically (see [`hubsync_core::Endpoint::apply_changes`]).
pub(crate) async fn apply_changes(
    pool: &MySqlPool,
    home: &str,
    batch: ApplyBatch<'_>,
) -> Result<ApplyOutcome, EndpointError> {
    let context = format!(
        "applying {} {}(s) from `{}` to `{}`",
        batch.changes.len(),
        batch.kind.as_str(),
        batch.peer,
        batch.table.name
    );
    let table = batch.table;
    let positions = table.key_positions();
    if table.primary_key.is_empty() || positions.len() != table.primary_key.len() {
        return Err(EndpointError::from(hubsync_core::SchemaError::NoPrimaryKey { table: table.name.clone() })
            .context(&context));
    }
    let mut conn = pool.acquire().await.map_err(ctx(&context))?;
    let names = require_tracking(&mut conn, home, &table.name).await.map_err(|e| e.context(&context))?;
    let kinds = column_kinds(&mut conn, home, table).await.map_err(|e| e.context(&context))?;
    let (staged_kinds, key_cols) = match batch.kind {
        ChangeKind::Upsert => (kinds.clone(), positions.iter().map(|p| format!("c_{}", p + 1)).collect()),
        ChangeKind::Delete => (key_kinds(table, &kinds), (1..=positions.len()).map(|i| format!("c_{i}")).collect()),
    };
    let plan = Plan { table, kind: batch.kind, home, kinds, staged_kinds, key_cols };

    query("SET @hubsync_origin = ?")
        .bind(batch.peer.to_string())
        .execute(&mut *conn)
        .await
        .map_err(ctx("recording the origin"))?;
    let result = apply_in_transaction(&mut conn, &plan, &batch, &names).await;
    // The origin is per session: a pooled connection must not carry it on.
    let reset = query("SET @hubsync_origin = NULL").execute(&mut *conn).await;
    let dropped = ddl(format!("DROP TEMPORARY TABLE IF EXISTS {STAGING}")).execute(&mut *conn).await;
    if reset.is_err() || dropped.is_err() {
        conn.close_on_drop();
    }
    result.map_err(|e| e.context(&context))
}

async fn apply_in_transaction(
    conn: &mut MySqlConnection,
    plan: &Plan<'_>,
    batch: &ApplyBatch<'_>,
    names: &TrackingNames,
) -> Result<ApplyOutcome, EndpointError> {
    let mut tx = conn.begin().await.map_err(ctx("starting a transaction"))?;
    match apply_in(&mut tx, plan, batch, names).await {
        Ok(outcome) => {
            tx.commit().await.map_err(ctx("committing"))?;
            Ok(outcome)
        }
        Err(e) => {
            let _ = tx.rollback().await;
            Err(e)
        }
    }
}

async fn apply_in(
    conn: &mut MySqlConnection,
    plan: &Plan<'_>,
    batch: &ApplyBatch<'_>,
    names: &TrackingNames,
) -> Result<ApplyOutcome, EndpointError> {
    let table = plan.table;
    // Versions this batch writes are above every version allocated before
    // it, and carry the peer as origin.
    let before: i64 = query(format!("SELECT COALESCE(MAX(id), 0) FROM {}", seq_table(plan.home)))
        .fetch_one(&mut *conn)
        .await
        .and_then(|r| r.try_get(0))
        .map_err(ctx("reading the latest version"))?;
    let mut outcome = ApplyOutcome::default();
    if !batch.changes.is_empty() {
        stage(conn, plan, batch).await?;
        let removed = judge_conflicts(conn, plan, batch, names, &mut outcome).await?;
        let remaining = (batch.changes.len() - removed) as u64;
        write(conn, plan).await?;
        let pks = pk_columns(table.primary_key.len());
        let on: Vec<String> = pks.iter().zip(&plan.key_cols).map(|(pk, c)| format!("tr.{pk} = i.{c}")).collect();
        let applied: i64 = query(format!(
            "SELECT COUNT(*) FROM {} AS tr JOIN {STAGING} AS i ON {} WHERE tr.version > ? AND tr.origin = ?",
            names.qualified_table(),
            on.join(" AND ")
        ))
        .bind(before)
        .bind(batch.peer.to_string())
        .fetch_one(&mut *conn)
        .await
        .and_then(|r| r.try_get(0))
        .map_err(ctx("counting the written rows"))?;
        let applied = u64::try_from(applied).unwrap_or(0);
        if applied > 0 {
            keep_commit_times(conn, plan, names, before, batch.peer).await?;
        }
        outcome.applied = applied;
        outcome.skipped += remaining.saturating_sub(applied);
    }
    store_watermark(conn, plan.home, batch.scope, batch.peer, &table.name, batch.kind, batch.watermark).await?;
    Ok(outcome)
}

/// Creates the staging table with the target's own column types (so staged
/// values convert exactly as written ones would) and loads the batch.
async fn stage(conn: &mut MySqlConnection, plan: &Plan<'_>, batch: &ApplyBatch<'_>) -> Result<(), EndpointError> {
    let table = plan.table;
    let sources: Vec<String> = match plan.kind {
        ChangeKind::Upsert => table.columns.iter().map(|c| quote_ident(&c.name)).collect(),
        ChangeKind::Delete => table.primary_key.iter().map(|k| quote_ident(k)).collect(),
    };
    let select: Vec<String> = sources.iter().zip(plan.value_cols()).map(|(s, c)| format!("{s} AS {c}")).collect();
    ddl(format!("DROP TEMPORARY TABLE IF EXISTS {STAGING}"))
        .execute(&mut *conn)
        .await
        .map_err(ctx("creating the staging table"))?;
    ddl(format!(
        "CREATE TEMPORARY TABLE {STAGING} (seq BIGINT NOT NULL DEFAULT 0 PRIMARY KEY, changed_at BIGINT NOT NULL DEFAULT 0) \
         SELECT {} FROM {} WHERE 1 = 0",
        select.join(", "),
        qualified(&table.name, plan.home)
    ))
    .execute(&mut *conn)
    .await
    .map_err(ctx("creating the staging table"))?;

    let width = plan.width();
    let mut values_of = Vec::with_capacity(batch.changes.len());
    for change in batch.changes.iter() {
        let values = match plan.kind {
            ChangeKind::Upsert => change.row.as_deref().unwrap_or(&[]),
            ChangeKind::Delete => change.key.as_slice(),
        };
        if values.len() != width {
            return Err(EndpointError::new(
                ErrorKind::Schema,
                format!(
                    "a change for key {} carries {} values where the table's synced {} has {}",
                    hubsync_core::value::format_key(&change.key),
                    values.len(),
                    if plan.kind == ChangeKind::Upsert { "row" } else { "key" },
                    width
                ),
            ));
        }
        values_of.push(values);
    }
    let target = format!("{STAGING} (seq, changed_at, {})", plan.value_cols().join(", "));
    let sizes = values_of.iter().map(|v| v.iter().map(Value::approx_size).sum::<usize>() + 16);
    let mut start = 0;
    for end in chunk_ends(sizes, width + 2) {
        let mut q = query(multi_row_insert(&target, width + 2, end - start));
        for (seq, values) in values_of.iter().enumerate().take(end).skip(start) {
            q = q.bind(seq as i64).bind(batch.changes[seq].changed_at);
            for (value, kind) in values.iter().zip(&plan.staged_kinds) {
                q = bind_ref(q, value, Some(*kind));
            }
        }
        q.execute(&mut *conn).await.map_err(ctx("staging the batch"))?;
        start = end;
    }
    Ok(())
}

/// Finds incoming keys whose local tracking row the peer has not seen and did
/// not send, asks the core to judge them, and removes the changes that must not
/// be written. Returns how many were removed.
async fn judge_conflicts(
    conn: &mut MySqlConnection,
    plan: &Plan<'_>,
    batch: &ApplyBatch<'_>,
    names: &TrackingNames,
    outcome: &mut ApplyOutcome,
) -> Result<usize, EndpointError> {
    let table = plan.table;
    let pks = pk_columns(table.primary_key.len());
    let on_staging: Vec<String> = pks.iter().zip(&plan.key_cols).map(|(pk, c)| format!("tr.{pk} = i.{c}")).collect();
    let on_base: Vec<String> =
        table.primary_key.iter().zip(&pks).map(|(k, pk)| format!("t.{} = tr.{pk}", quote_ident(k))).collect();
    let base_cols: Vec<String> = table
        .columns
        .iter()
        .zip(&plan.kinds)
        .map(|(c, kind)| format!(", {}", kind.select(&format!("t.{}", quote_ident(&c.name)))))
        .collect();
    let sql = format!(
        "SELECT i.seq, tr.version, tr.origin, tr.deleted, tr.changed_at, t.{first} IS NOT NULL{base} \
         FROM {STAGING} AS i JOIN {tr} AS tr ON {on_staging} LEFT JOIN {t} AS t ON {on_base} \
         WHERE ((tr.deleted = 0 AND tr.version > ?) OR (tr.deleted = 1 AND tr.version > ?)) AND tr.origin <> ?",
        first = quote_ident(&table.primary_key[0]),
        base = base_cols.concat(),
        tr = names.qualified_table(),
        on_staging = on_staging.join(" AND "),
        t = qualified(&table.name, plan.home),
        on_base = on_base.join(" AND "),
    );
    let rows = query(sql)
        .bind(batch.peer_has_received.upserts)
        .bind(batch.peer_has_received.deletes)
        .bind(batch.peer.to_string())
        .fetch_all(&mut *conn)
        .await
        .map_err(ctx("looking for conflicts"))?;
    let mut drop_seqs: Vec<i64> = Vec::new();
    for row in rows {
        let seq: i64 = row.try_get(0).map_err(ctx("reading conflicts"))?;
        let present: i64 = row.try_get_unchecked(5).map_err(ctx("reading conflicts"))?;
        let local = LocalState {
            version: row.try_get(1).map_err(ctx("reading conflicts"))?,
            origin: row.try_get(2).map_err(ctx("reading conflicts"))?,
            deleted: row.try_get_unchecked::<i64, _>(3).map_err(ctx("reading conflicts"))? != 0,
            changed_at: row.try_get(4).map_err(ctx("reading conflicts"))?,
            row: if present != 0 {
                Some(read_values(&row, 6, &plan.kinds).map_err(ctx("reading conflicts"))?)
            } else {
                None
            },
        };
        let Some(incoming) = usize::try_from(seq).ok().and_then(|s| batch.changes.get(s)) else {
            continue;
        };
        match batch.judge(&local, incoming) {
            Verdict::Apply => {}
            Verdict::Skip => {
                outcome.skipped += 1;
                drop_seqs.push(seq);
            }
            Verdict::Conflict { apply, conflict } => {
                if !apply {
                    drop_seqs.push(seq);
                }
                outcome.conflicts.push(conflict);
            }
        }
    }
    for chunk in drop_seqs.chunks(1000) {
        let sql = format!("DELETE FROM {STAGING} WHERE seq IN ({})", vec!["?"; chunk.len()].join(", "));
        let mut q = query(sql);
        for seq in chunk {
            q = q.bind(*seq);
        }
        q.execute(&mut *conn).await.map_err(ctx("removing skipped changes"))?;
    }
    Ok(drop_seqs.len())
}

/// Gives the tracking rows this apply wrote the incoming changes' commit times
/// instead of the apply's: `LastWriterWins` compares when a row was written at
/// its origin, not when it travelled through the hub.
async fn keep_commit_times(
    conn: &mut MySqlConnection,
    plan: &Plan<'_>,
    names: &TrackingNames,
    before: i64,
    peer: &str,
) -> Result<(), EndpointError> {
    let pks = pk_columns(plan.table.primary_key.len());
    let on: Vec<String> = pks.iter().zip(&plan.key_cols).map(|(pk, c)| format!("tr.{pk} = i.{c}")).collect();
    let sql = format!(
        "UPDATE {} AS tr JOIN {STAGING} AS i ON {} SET tr.changed_at = i.changed_at \
         WHERE tr.version > ? AND tr.origin = ?",
        names.qualified_table(),
        on.join(" AND ")
    );
    query(sql)
        .bind(before)
        .bind(peer.to_string())
        .execute(&mut *conn)
        .await
        .map_err(ctx("recording the changes' commit times"))?;
    Ok(())
}

/// The statements writing the staged rows; with `one`, only the row `seq = ?`.
/// Upserts update existing rows and insert missing ones in two statements,
/// not with `ON DUPLICATE KEY UPDATE`, which would update whatever row a
/// secondary unique key collides with instead of failing.
fn write_sql(plan: &Plan<'_>, one: bool) -> Vec<String> {
    let table = plan.table;
    let t = qualified(&table.name, plan.home);
    let on: Vec<String> =
        table.primary_key.iter().zip(&plan.key_cols).map(|(k, c)| format!("t.{} = i.{c}", quote_ident(k))).collect();
    let on = on.join(" AND ");
    match plan.kind {
        ChangeKind::Upsert => {
            let cols: Vec<String> = table.columns.iter().map(|c| quote_ident(&c.name)).collect();
            let value_cols = plan.value_cols();
            let set: Vec<String> = cols
                .iter()
                .zip(&value_cols)
                .zip(&table.columns)
                .filter(|(_, c)| !table.primary_key.contains(&c.name))
                .map(|((q, v), _)| format!("t.{q} = i.{v}"))
                .collect();
            let mut statements = Vec::with_capacity(2);
            // MySQL leaves a row whose values are all the same untouched (no
            // write, and the trigger records nothing): equal rows are skipped.
            if !set.is_empty() {
                let only = if one { "WHERE i.seq = ?" } else { "" };
                statements.push(format!("UPDATE {t} AS t JOIN {STAGING} AS i ON {on} SET {} {only}", set.join(", ")));
            }
            let values: Vec<String> = value_cols.iter().map(|c| format!("i.{c}")).collect();
            let first_key = quote_ident(&table.primary_key[0]);
            let only = if one { "AND i.seq = ?" } else { "" };
            statements.push(format!(
                "INSERT INTO {t} ({}) SELECT {} FROM {STAGING} AS i LEFT JOIN {t} AS t ON {on} \
                 WHERE t.{first_key} IS NULL {only} ORDER BY i.seq",
                cols.join(", "),
                values.join(", "),
            ));
            statements
        }
        ChangeKind::Delete => {
            let only = if one { "WHERE i.seq = ?" } else { "" };
            vec![format!("DELETE t FROM {t} AS t JOIN {STAGING} AS i ON {on} {only}")]
        }
    }
}

/// Runs the statements for all staged rows, or (`seq`) for one.
async fn run_writes(conn: &mut MySqlConnection, statements: &[String], seq: Option<i64>) -> Result<(), sqlx::Error> {
    for sql in statements {
        let mut q = query(sql.clone());
        if let Some(seq) = seq {
            q = q.bind(seq);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Writes what is left in the staging table.
async fn write(conn: &mut MySqlConnection, plan: &Plan<'_>) -> Result<(), EndpointError> {
    let what = format!("writing the {}s", plan.kind.as_str());
    let error = match run_writes(conn, &write_sql(plan, false), None).await {
        Ok(()) => return Ok(()),
        Err(e) if kind_of(&e) == ErrorKind::ForeignKeyViolation => e,
        Err(e) => return Err(map_err(e, what)),
    };
    tracing::debug!(table = %plan.table.name, "Foreign key refused the batch as one statement; writing it row by row.");
    let mut pending: Vec<i64> = query(format!("SELECT seq FROM {STAGING} ORDER BY seq"))
        .fetch_all(&mut *conn)
        .await
        .map_err(ctx("reading the staged rows"))?
        .iter()
        .map(|r| r.try_get::<i64, _>(0))
        .collect::<Result<_, _>>()
        .map_err(ctx("reading the staged rows"))?;
    // Deletes go children first: later versions tend to be parents.
    if plan.kind == ChangeKind::Delete {
        pending.reverse();
    }
    let one = write_sql(plan, true);
    let mut last_error = error;
    loop {
        let mut refused = Vec::new();
        for seq in &pending {
            match run_writes(conn, &one, Some(*seq)).await {
                Ok(()) => {}
                Err(e) if kind_of(&e) == ErrorKind::ForeignKeyViolation => {
                    refused.push(*seq);
                    last_error = e;
                }
                Err(e) => return Err(map_err(e, what)),
            }
        }
        if refused.is_empty() {
            return Ok(());
        }
        if refused.len() == pending.len() {
            return Err(map_err(last_error, what));
        }
        pending = refused;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inserts_stay_under_the_limits() {
        assert_eq!(chunk_ends([10usize; 5].into_iter(), 2), vec![5]);
        assert_eq!(chunk_ends([MAX_STATEMENT_BYTES; 3].into_iter(), 2), vec![1, 2, 3]);
        assert_eq!(chunk_ends(std::iter::repeat_n(1usize, 70_000), 1), vec![65_535, 70_000]);
        assert_eq!(multi_row_insert("x", 2, 2), "INSERT INTO x VALUES (?, ?), (?, ?)");
    }
}

//! Applying a batch of changes in one transaction, set-based: the batch goes
//! into a temporary table, conflicts are found with one join, and the winners
//! are written with one statement.

use hubsync_core::endpoint::{LocalState, Verdict};
use hubsync_core::{ApplyBatch, ApplyOutcome, ChangeKind, EndpointError, ErrorKind, TableSchema};
use sqlx::{Row, SqliteConnection, SqlitePool};

use super::dialect::{check_schema, qualified, quote_ident};
use super::errors::ctx;
use super::query;
use super::scope::{counter, store_watermark};
use super::tracking::{TrackingNames, pk_columns, require_tracking};
use super::values::{bind_ref, read_values};

/// SQLite's default limit on bound parameters per statement.
pub(crate) const MAX_PARAMS: usize = 32_766;
/// Rows per multi-row INSERT: beyond a few hundred the statement only gets
/// slower to prepare, not faster to run.
pub(crate) const MAX_ROWS_PER_INSERT: usize = 500;

/// Rows per multi-row INSERT of `width` parameters each.
pub(crate) fn rows_per_insert(width: usize) -> usize {
    (MAX_PARAMS / width.max(1)).clamp(1, MAX_ROWS_PER_INSERT)
}

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

/// The shape of one batch: which columns the staging table holds and where
/// the key is among them.
struct Plan<'a> {
    table: &'a TableSchema,
    kind: ChangeKind,
    /// Values per staged row (row image for upserts, key for deletes).
    width: usize,
    /// The staging column holding each key column, in key order.
    key_cols: Vec<String>,
    /// The staging table, qualified.
    staging: String,
}

impl<'a> Plan<'a> {
    fn new(table: &'a TableSchema, kind: ChangeKind) -> Result<Self, EndpointError> {
        let positions = table.key_positions();
        if table.primary_key.is_empty() || positions.len() != table.primary_key.len() {
            return Err(hubsync_core::SchemaError::NoPrimaryKey { table: table.name.clone() }.into());
        }
        let (width, key_cols) = match kind {
            ChangeKind::Upsert => (table.columns.len(), positions.iter().map(|p| format!("c_{}", p + 1)).collect()),
            ChangeKind::Delete => (positions.len(), (1..=positions.len()).map(|i| format!("c_{i}")).collect()),
        };
        // One staging table per width, kept on the connection and emptied after
        // each batch, so applies cause no schema changes once warmed up.
        let staging = format!("temp.hubsync_in_{width}");
        Ok(Plan { table, kind, width, key_cols, staging })
    }

    fn value_cols(&self) -> Vec<String> {
        (1..=self.width).map(|i| format!("c_{i}")).collect()
    }
}

/// Applies a batch atomically (see [`hubsync_core::Endpoint::apply_changes`]).
pub(crate) async fn apply_changes(pool: &SqlitePool, batch: ApplyBatch<'_>) -> Result<ApplyOutcome, EndpointError> {
    let context = format!(
        "applying {} {}(s) from `{}` to `{}`",
        batch.changes.len(),
        batch.kind.as_str(),
        batch.peer,
        batch.table.name
    );
    check_schema(&batch.table.name).map_err(|e| e.context(&context))?;
    let plan = Plan::new(batch.table, batch.kind).map_err(|e| e.context(&context))?;
    // IMMEDIATE takes the write lock up front: a deferred transaction that
    // reads first and writes later can deadlock against another writer.
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(ctx(&context))?;
    let outcome = apply_in(&mut tx, &plan, &batch).await.map_err(|e| e.context(&context))?;
    tx.commit().await.map_err(ctx(&context))?;
    Ok(outcome)
}

async fn apply_in(
    conn: &mut SqliteConnection,
    plan: &Plan<'_>,
    batch: &ApplyBatch<'_>,
) -> Result<ApplyOutcome, EndpointError> {
    let table = plan.table;
    let names = require_tracking(conn, &table.name).await?;
    // Checked at COMMIT, so rows within a batch (self-references, cycles) may
    // arrive in any order.
    query("PRAGMA defer_foreign_keys = ON").execute(&mut *conn).await.map_err(ctx("deferring foreign keys"))?;
    query("INSERT OR REPLACE INTO main.hubsync_origin (id, origin) VALUES (1, ?1)")
        .bind(batch.peer.to_string())
        .execute(&mut *conn)
        .await
        .map_err(ctx("recording the origin"))?;

    let mut outcome = ApplyOutcome::default();
    if !batch.changes.is_empty() {
        stage(conn, plan, batch).await?;
        let removed = judge_conflicts(conn, plan, batch, &names, &mut outcome).await?;
        let remaining = (batch.changes.len() - removed) as u64;
        let before = counter(conn).await?;
        let applied = write(conn, plan).await?;
        if applied > 0 {
            keep_commit_times(conn, plan, &names, before).await?;
        }
        outcome.applied = applied;
        outcome.skipped += remaining.saturating_sub(applied);
        query(format!("DELETE FROM {}", plan.staging))
            .execute(&mut *conn)
            .await
            .map_err(ctx("clearing the staging table"))?;
    }

    store_watermark(conn, batch.scope, batch.peer, &table.name, batch.kind, batch.watermark).await?;
    query("DELETE FROM main.hubsync_origin WHERE id = 1")
        .execute(&mut *conn)
        .await
        .map_err(ctx("resetting the origin"))?;
    Ok(outcome)
}

/// Loads the batch into the staging table with multi-row INSERTs.
async fn stage(conn: &mut SqliteConnection, plan: &Plan<'_>, batch: &ApplyBatch<'_>) -> Result<(), EndpointError> {
    let cols = plan.value_cols();
    query(format!(
        "CREATE TABLE IF NOT EXISTS {} (seq INTEGER PRIMARY KEY, changed_at INTEGER, {})",
        plan.staging,
        cols.join(", ")
    ))
    .execute(&mut *conn)
    .await
    .map_err(ctx("creating the staging table"))?;
    query(format!("DELETE FROM {}", plan.staging))
        .execute(&mut *conn)
        .await
        .map_err(ctx("clearing the staging table"))?;

    let width = plan.width + 2;
    let per_stmt = rows_per_insert(width);
    let full_sql = multi_row_insert(&plan.staging, width, per_stmt);
    for (chunk_no, chunk) in batch.changes.chunks(per_stmt).enumerate() {
        let sql = if chunk.len() == per_stmt {
            full_sql.clone()
        } else {
            multi_row_insert(&plan.staging, width, chunk.len())
        };
        let mut q = query(sql);
        for (i, change) in chunk.iter().enumerate() {
            let seq = (chunk_no * per_stmt + i) as i64;
            q = q.bind(seq).bind(change.changed_at);
            let values = match plan.kind {
                ChangeKind::Upsert => change.row.as_deref().unwrap_or(&[]),
                ChangeKind::Delete => change.key.as_slice(),
            };
            if values.len() != plan.width {
                return Err(EndpointError::new(
                    ErrorKind::Schema,
                    format!(
                        "a change for key {} carries {} values where the table's synced {} has {}",
                        hubsync_core::value::format_key(&change.key),
                        values.len(),
                        if plan.kind == ChangeKind::Upsert { "row" } else { "key" },
                        plan.width
                    ),
                ));
            }
            for value in values {
                q = bind_ref(q, value);
            }
        }
        q.execute(&mut *conn).await.map_err(ctx("staging the batch"))?;
    }
    Ok(())
}

/// Finds incoming keys whose local tracking row the peer has not seen and did
/// not send, asks the core to judge them, and removes the changes that must not
/// be written. Returns how many were removed.
async fn judge_conflicts(
    conn: &mut SqliteConnection,
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
    let base_cols: Vec<String> = table.columns.iter().map(|c| format!(", t.{}", quote_ident(&c.name))).collect();
    let sql = format!(
        "SELECT i.seq, tr.version, tr.origin, tr.deleted, tr.changed_at, t.{first} IS NOT NULL{base} \
         FROM {staging} AS i JOIN main.{tr} AS tr ON {on_staging} LEFT JOIN {t} AS t ON {on_base} \
         WHERE ((tr.deleted = 0 AND tr.version > ?1) OR (tr.deleted = 1 AND tr.version > ?2)) AND tr.origin <> ?3",
        first = quote_ident(&table.primary_key[0]),
        base = base_cols.concat(),
        staging = plan.staging,
        tr = quote_ident(&names.table),
        on_staging = on_staging.join(" AND "),
        t = qualified(&table.name)?,
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
        let present: bool = row.try_get(5).map_err(ctx("reading conflicts"))?;
        let local = LocalState {
            version: row.try_get(1).map_err(ctx("reading conflicts"))?,
            origin: row.try_get(2).map_err(ctx("reading conflicts"))?,
            deleted: row.try_get::<i64, _>(3).map_err(ctx("reading conflicts"))? != 0,
            changed_at: row.try_get(4).map_err(ctx("reading conflicts"))?,
            row: if present {
                Some(read_values(&row, 6, table.columns.len()).map_err(ctx("reading conflicts"))?)
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
    for chunk in drop_seqs.chunks(MAX_ROWS_PER_INSERT) {
        let sql = format!("DELETE FROM {} WHERE seq IN ({})", plan.staging, vec!["?"; chunk.len()].join(", "));
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
    conn: &mut SqliteConnection,
    plan: &Plan<'_>,
    names: &TrackingNames,
    before: i64,
) -> Result<(), EndpointError> {
    let pks = pk_columns(plan.table.primary_key.len());
    let on: Vec<String> = pks.iter().zip(&plan.key_cols).map(|(pk, c)| format!("tr.{pk} = i.{c}")).collect();
    let sql = format!(
        "UPDATE main.{} AS tr SET changed_at = i.changed_at FROM {} AS i WHERE {} AND tr.version > ?1",
        quote_ident(&names.table),
        plan.staging,
        on.join(" AND ")
    );
    query(sql).bind(before).execute(&mut *conn).await.map_err(ctx("recording the changes' commit times"))?;
    Ok(())
}

/// Writes what is left in the staging table; returns the rows written.
async fn write(conn: &mut SqliteConnection, plan: &Plan<'_>) -> Result<u64, EndpointError> {
    let table = plan.table;
    let t = qualified(&table.name)?;
    let keys: Vec<String> = table.primary_key.iter().map(|k| quote_ident(k)).collect();
    let sql = match plan.kind {
        ChangeKind::Upsert => {
            let cols: Vec<String> = table.columns.iter().map(|c| quote_ident(&c.name)).collect();
            let non_key: Vec<&String> = cols
                .iter()
                .zip(&table.columns)
                .filter(|(_, c)| !table.primary_key.contains(&c.name))
                .map(|(q, _)| q)
                .collect();
            let action = if non_key.is_empty() {
                "DO NOTHING".to_string()
            } else {
                let set: Vec<String> = non_key.iter().map(|c| format!("{c} = excluded.{c}")).collect();
                // Leaves equal rows alone (no write, no trigger, no new
                // version). BINARY and typeof make the comparison exact where
                // a column's collation or numeric equality would call 'a' and
                // 'A', or 1 and 1.0, equal.
                let same: Vec<String> = non_key
                    .iter()
                    .map(|c| format!("(t.{c} IS excluded.{c} COLLATE BINARY AND typeof(t.{c}) = typeof(excluded.{c}))"))
                    .collect();
                format!("DO UPDATE SET {} WHERE NOT ({})", set.join(", "), same.join(" AND "))
            };
            // `WHERE true` tells SQLite's parser that ON CONFLICT belongs to
            // the INSERT, not to a join in the SELECT.
            format!(
                "INSERT INTO {t} AS t ({}) SELECT {} FROM {} WHERE true ORDER BY seq ON CONFLICT ({}) {action}",
                cols.join(", "),
                plan.value_cols().join(", "),
                plan.staging,
                keys.join(", "),
            )
        }
        ChangeKind::Delete => {
            let (lhs, rhs) = if keys.len() == 1 {
                (keys[0].clone(), plan.key_cols[0].clone())
            } else {
                (format!("({})", keys.join(", ")), plan.key_cols.join(", "))
            };
            format!("DELETE FROM {t} WHERE {lhs} IN (SELECT {rhs} FROM {})", plan.staging)
        }
    };
    let done =
        query(sql).execute(&mut *conn).await.map_err(ctx(format_args!("writing the {}s", plan.kind.as_str())))?;
    Ok(done.rows_affected())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn inserts_stay_under_the_parameter_limit() {
        assert_eq!(rows_per_insert(6), 500);
        assert_eq!(rows_per_insert(1000), 32);
        assert_eq!(rows_per_insert(40_000), 1);
        for width in [1, 6, 65, 66, 1000, 40_000] {
            let rows = rows_per_insert(width);
            assert!(rows * width <= MAX_PARAMS || rows == 1, "{width}");
        }
        assert_eq!(multi_row_insert("x", 2, 2), "INSERT INTO x VALUES (?, ?), (?, ?)");
    }
}

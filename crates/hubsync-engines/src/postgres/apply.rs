//! Applying a batch of changes: one transaction, the batch passed as arrays
//! (one bound array per column, unnested in SQL), conflicts judged by the
//! core, winners written set-based together with their tracking rows, the
//! watermark stored before commit.

use hubsync_core::endpoint::{LocalState, Verdict};
use hubsync_core::{ApplyBatch, ApplyOutcome, Change, ChangeKind, EndpointError, ErrorKind, TableSchema, Value};
use sqlx::{PgConnection, PgPool, Row};

use super::dialect::{qualified, quote_ident};
use super::errors::ctx;
use super::introspect::{Shape, shape};
use super::query;
use super::scope::store_watermark;
use super::tracking::{DIRECT_SETTING, NEXT_SEQ, TrackingNames, VERSION_EXPR, fold, pk_columns, require_tracking};
use super::values::{LocalColumn, PgQuery, WireArray, read_values};

/// Applies a batch atomically (see [`hubsync_core::Endpoint::apply_changes`]).
pub(crate) async fn apply_changes(pool: &PgPool, batch: ApplyBatch<'_>) -> Result<ApplyOutcome, EndpointError> {
    let context = format!(
        "applying {} {}(s) from `{}` to `{}`",
        batch.changes.len(),
        batch.kind.as_str(),
        batch.peer,
        batch.table.name
    );
    let mut tx = pool.begin().await.map_err(ctx(&context))?;
    let outcome = apply_in(&mut tx, &batch).await.map_err(|e| e.context(&context))?;
    tx.commit().await.map_err(ctx(&context))?;
    Ok(outcome)
}

async fn apply_in(conn: &mut PgConnection, batch: &ApplyBatch<'_>) -> Result<ApplyOutcome, EndpointError> {
    let table = batch.table;
    let names = require_tracking(conn, &table.name).await?;
    let shape = shape(conn, table).await?;
    // Deferrable foreign keys are checked at COMMIT, so rows within a batch
    // (self-references, cycles) may arrive in any order.
    query("SET CONSTRAINTS ALL DEFERRED").execute(&mut *conn).await.map_err(ctx("deferring constraints"))?;
    query("SELECT set_config('hubsync.origin', $1, true)")
        .bind(batch.peer.to_string())
        .execute(&mut *conn)
        .await
        .map_err(ctx("recording the origin"))?;

    let mut outcome = ApplyOutcome::default();
    if !batch.changes.is_empty() {
        check_widths(table, &shape, batch)?;
        // Judging needs every committed local change in the tracking table.
        fold(conn, &names, shape.keys.len()).await?;
        let keep = judge_conflicts(conn, &shape, batch, &names, &mut outcome).await?;
        let kept: Vec<&Change> = batch.changes.iter().zip(&keep).filter(|(_, k)| **k).map(|(c, _)| c).collect();
        if !kept.is_empty() {
            let applied = write(conn, table, &shape, &names, batch, &kept).await?;
            if applied > 0 && batch.kind == ChangeKind::Upsert {
                advance_sequences(conn, table, &shape).await?;
            }
            outcome.applied = applied;
            outcome.skipped += (kept.len() as u64).saturating_sub(applied);
        }
    }
    store_watermark(conn, batch.scope, batch.peer, &table.name, batch.kind, batch.watermark).await?;
    Ok(outcome)
}

/// Refuses changes whose shape does not match the synced table.
fn check_widths(table: &TableSchema, shape: &Shape, batch: &ApplyBatch<'_>) -> Result<(), EndpointError> {
    for change in &batch.changes {
        let (len, width, what) = match (&change.row, batch.kind) {
            (Some(row), ChangeKind::Upsert) => (row.len(), shape.columns.len(), "row"),
            (None, ChangeKind::Upsert) => (0, shape.columns.len(), "row"),
            (_, ChangeKind::Delete) => (change.key.len(), shape.keys.len(), "key"),
        };
        if len != width || change.key.len() != shape.keys.len() {
            return Err(EndpointError::new(
                ErrorKind::Schema,
                format!(
                    "a change for key {} of `{}` carries {len} values where the table's synced {what} has {width}",
                    hubsync_core::value::format_key(&change.key),
                    table.name
                ),
            ));
        }
    }
    Ok(())
}

/// `unnest([$lead::int8[], ]$a::text[], ...) AS i([lead, ]c_1, ...)` over
/// `columns`, with their parameters numbered from `first`, plus the arrays to
/// bind. `lead` zips an int8 array (parameter `$n`, alias `name`) in front.
fn staged<'c>(
    columns: &[LocalColumn],
    lead: Option<(&str, usize)>,
    first: usize,
    values: impl Iterator<Item = &'c [Value]>,
    rows: usize,
) -> (String, Vec<WireArray>) {
    let mut arrays: Vec<WireArray> = columns.iter().map(|c| WireArray::for_column(c, rows)).collect();
    for row in values {
        for (array, value) in arrays.iter_mut().zip(row) {
            array.push(value);
        }
    }
    let mut params: Vec<String> =
        columns.iter().enumerate().map(|(i, c)| format!("${}::{}", first + i, c.array_type())).collect();
    let mut aliases: Vec<String> = (1..=columns.len()).map(|i| format!("c_{i}")).collect();
    if let Some((name, n)) = lead {
        params.insert(0, format!("${n}::int8[]"));
        aliases.insert(0, name.to_string());
    }
    (format!("unnest({}) AS i({})", params.join(", "), aliases.join(", ")), arrays)
}

/// The staged columns converted to the local types, aliased `c_1, ...`.
fn typed_columns(columns: &[LocalColumn]) -> String {
    columns
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{} AS c_{}", c.write_expr(&format!("i.c_{}", i + 1)), i + 1))
        .collect::<Vec<_>>()
        .join(", ")
}

fn bind_arrays(mut q: PgQuery<'_>, arrays: Vec<WireArray>) -> PgQuery<'_> {
    for array in arrays {
        q = array.bind(q);
    }
    q
}

/// Finds incoming keys whose local tracking row the peer has not seen and did
/// not send, asks the core to judge them, and says which changes to write.
async fn judge_conflicts(
    conn: &mut PgConnection,
    shape: &Shape,
    batch: &ApplyBatch<'_>,
    names: &TrackingNames,
    outcome: &mut ApplyOutcome,
) -> Result<Vec<bool>, EndpointError> {
    let table = batch.table;
    let mut keep = vec![true; batch.changes.len()];
    let pks = pk_columns(shape.keys.len());
    let seqs: Vec<i64> = (0..batch.changes.len() as i64).collect();
    let (unnest, arrays) =
        staged(&shape.keys, Some(("seq", 4)), 5, batch.changes.iter().map(|c| c.key.as_slice()), batch.changes.len());
    let on_staging: Vec<String> = pks.iter().enumerate().map(|(i, pk)| format!("tr.{pk} = i.c_{}", i + 1)).collect();
    let on_base: Vec<String> =
        table.primary_key.iter().zip(&pks).map(|(k, pk)| format!("t.{} = tr.{pk}", quote_ident(k))).collect();
    let base_cols: Vec<String> = shape.columns.iter().map(|c| format!(", {}", c.read_expr("t"))).collect();
    let sql = format!(
        "SELECT i.seq, tr.version, tr.origin, tr.deleted, tr.changed_at, t.{first} IS NOT NULL{base} \
         FROM (SELECT i.seq, {typed} FROM {unnest}) AS i \
         JOIN {tr} AS tr ON {on_staging} LEFT JOIN {t} AS t ON {on_base} \
         WHERE ((NOT tr.deleted AND tr.version > $1) OR (tr.deleted AND tr.version > $2)) AND tr.origin <> $3",
        first = quote_ident(&table.primary_key[0]),
        base = base_cols.concat(),
        typed = typed_columns(&shape.keys),
        tr = names.qualified_table(),
        on_staging = on_staging.join(" AND "),
        t = qualified(&table.name),
        on_base = on_base.join(" AND "),
    );
    let q = query(sql)
        .bind(batch.peer_has_received.upserts)
        .bind(batch.peer_has_received.deletes)
        .bind(batch.peer.to_string())
        .bind(seqs);
    let rows = bind_arrays(q, arrays).fetch_all(&mut *conn).await.map_err(ctx("looking for conflicts"))?;
    for row in rows {
        let seq: i64 = row.try_get(0).map_err(ctx("reading conflicts"))?;
        let present: bool = row.try_get(5).map_err(ctx("reading conflicts"))?;
        let local = LocalState {
            version: row.try_get(1).map_err(ctx("reading conflicts"))?,
            origin: row.try_get(2).map_err(ctx("reading conflicts"))?,
            deleted: row.try_get(3).map_err(ctx("reading conflicts"))?,
            changed_at: row.try_get(4).map_err(ctx("reading conflicts"))?,
            row: if present {
                Some(read_values(&row, 6, &shape.columns).map_err(ctx("reading conflicts"))?)
            } else {
                None
            },
        };
        let Some(index) = usize::try_from(seq).ok().filter(|s| *s < batch.changes.len()) else {
            continue;
        };
        match batch.judge(&local, &batch.changes[index]) {
            Verdict::Apply => {}
            Verdict::Skip => {
                outcome.skipped += 1;
                keep[index] = false;
            }
            Verdict::Conflict { apply, conflict } => {
                if !apply {
                    keep[index] = false;
                }
                outcome.conflicts.push(conflict);
            }
        }
    }
    Ok(keep)
}

/// Writes the kept changes and, in the same statement, their tracking rows
/// (origin the peer, and the changes' own commit times: `LastWriterWins`
/// compares when a row was written at its origin, not when it travelled
/// through the hub); returns the rows written. Equal rows are left alone (no
/// write, no tracking row, no new version). The table's triggers stand aside
/// for the statement (see [`DIRECT_SETTING`]), so nothing is written twice.
async fn write(
    conn: &mut PgConnection,
    table: &TableSchema,
    shape: &Shape,
    names: &TrackingNames,
    batch: &ApplyBatch<'_>,
    kept: &[&Change],
) -> Result<u64, EndpointError> {
    let t = qualified(&table.name);
    let keys: Vec<String> = table.primary_key.iter().map(|k| quote_ident(k)).collect();
    let pks = pk_columns(shape.keys.len());
    let times: Vec<i64> = kept.iter().map(|c| c.changed_at).collect();
    // Parameters: $1 the peer, $2 the commit times, $3... the columns.
    let ((unnest, arrays), typed_source, modify, staged_keys) = match batch.kind {
        ChangeKind::Upsert => {
            let (unnest, arrays) = staged(
                &shape.columns,
                Some(("changed_at", 2)),
                3,
                kept.iter().map(|c| c.row.as_deref().unwrap_or(&[])),
                kept.len(),
            );
            let cols: Vec<String> = shape.columns.iter().map(|c| quote_ident(&c.name)).collect();
            let non_key: Vec<&LocalColumn> =
                shape.columns.iter().filter(|c| !table.primary_key.contains(&c.name)).collect();
            let action = if non_key.is_empty() {
                "DO NOTHING".to_string()
            } else {
                let set: Vec<String> =
                    non_key.iter().map(|c| format!("{q} = excluded.{q}", q = quote_ident(&c.name))).collect();
                let differs: Vec<String> = non_key.iter().map(|c| c.distinct_expr("t", "excluded")).collect();
                format!("DO UPDATE SET {} WHERE {}", set.join(", "), differs.join(" OR "))
            };
            let values: Vec<String> = (1..=shape.columns.len()).map(|i| format!("i.c_{i}")).collect();
            let modify = format!(
                "INSERT INTO {t} AS t ({}){} SELECT {} FROM i ON CONFLICT ({}) {action} RETURNING {}",
                cols.join(", "),
                shape.overriding(),
                values.join(", "),
                keys.join(", "),
                keys.iter().map(|k| format!("t.{k}")).collect::<Vec<_>>().join(", "),
            );
            // The staged alias of each key column: its place among the columns.
            let staged_keys: Vec<String> = table
                .primary_key
                .iter()
                .map(|k| {
                    let at = shape.columns.iter().position(|c| &c.name == k).unwrap_or(0);
                    format!("i.c_{}", at + 1)
                })
                .collect();
            ((unnest, arrays), &shape.columns, modify, staged_keys)
        }
        ChangeKind::Delete => {
            let (unnest, arrays) =
                staged(&shape.keys, Some(("changed_at", 2)), 3, kept.iter().map(|c| c.key.as_slice()), kept.len());
            let on: Vec<String> = keys.iter().enumerate().map(|(i, k)| format!("t.{k} = i.c_{}", i + 1)).collect();
            let modify = format!(
                "DELETE FROM {t} AS t USING i WHERE {} RETURNING {}",
                on.join(" AND "),
                keys.iter().map(|k| format!("t.{k}")).collect::<Vec<_>>().join(", "),
            );
            let staged_keys = (1..=keys.len()).map(|i| format!("i.c_{i}")).collect();
            ((unnest, arrays), &shape.keys, modify, staged_keys)
        }
    };
    let w_keys: Vec<String> = keys.iter().map(|k| format!("w.{k}")).collect();
    let on: Vec<String> = w_keys.iter().zip(&staged_keys).map(|(w, i)| format!("{w} = {i}")).collect();
    let set = "version = excluded.version, origin = excluded.origin, deleted = excluded.deleted, \
               changed_at = excluded.changed_at, seq = excluded.seq";
    let sql = format!(
        "WITH i AS (SELECT i.changed_at, {typed} FROM {unnest}), w AS ({modify}) \
         INSERT INTO {tr} AS tr ({pks}, version, origin, deleted, changed_at, seq) \
         SELECT {w_keys}, {VERSION_EXPR}, $1, {deleted}, i.changed_at, {NEXT_SEQ} FROM w JOIN i ON {on} \
         ON CONFLICT ({pks}) DO UPDATE SET {set}",
        typed = typed_columns(typed_source),
        tr = names.qualified_table(),
        pks = pks.join(", "),
        w_keys = w_keys.join(", "),
        deleted = batch.kind == ChangeKind::Delete,
        on = on.join(" AND "),
    );
    query("SELECT set_config($1, $2::regclass::oid::text, true)")
        .bind(DIRECT_SETTING)
        .bind(t.clone())
        .execute(&mut *conn)
        .await
        .map_err(ctx("setting the triggers aside"))?;
    let q = query(sql).bind(batch.peer.to_string()).bind(times);
    let done = bind_arrays(q, arrays)
        .execute(&mut *conn)
        .await
        .map_err(ctx(format_args!("writing the {}s", batch.kind.as_str())))?;
    query("SELECT set_config($1, '', true)")
        .bind(DIRECT_SETTING)
        .execute(&mut *conn)
        .await
        .map_err(ctx("setting the triggers back"))?;
    Ok(done.rows_affected())
}

/// Moves the sequences of serial and identity columns past the values
/// written, so later local inserts do not collide with synced rows.
pub(crate) async fn advance_sequences(
    conn: &mut PgConnection,
    table: &TableSchema,
    shape: &Shape,
) -> Result<(), EndpointError> {
    for (column, sequence) in shape.sequences() {
        if !matches!(column.canonical, hubsync_core::CanonicalType::Integer) {
            continue;
        }
        let sql = format!(
            "SELECT setval($1::regclass, m) FROM (SELECT max({c})::int8 AS m FROM {t}) AS x \
             WHERE m IS NOT NULL AND m > coalesce((SELECT last_value FROM pg_catalog.pg_sequences \
               WHERE format('%I.%I', schemaname, sequencename)::regclass = $1::regclass), 0)",
            c = quote_ident(&column.name),
            t = qualified(&table.name),
        );
        query(sql)
            .bind(sequence.to_string())
            .execute(&mut *conn)
            .await
            .map_err(ctx(format_args!("advancing the sequence of `{}`", column.name)))?;
    }
    Ok(())
}

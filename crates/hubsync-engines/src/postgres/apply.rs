//! Applying a batch of changes: one transaction, the batch passed as arrays
//! (one bound array per column, unnested in SQL), conflicts judged by the
//! core, winners written set-based together with their tracking rows, the
//! watermark stored before commit. A batch may also be written and held
//! open, its watermark stored when the session commits it (see
//! [`hubsync_core::Endpoint::apply_changes_held`]).

use std::future::Future;
use std::pin::Pin;

use hubsync_core::endpoint::{LocalState, Verdict};
use hubsync_core::{
    ApplyBatch, ApplyOutcome, Change, ChangeKind, EndpointError, ErrorKind, Held, HeldApply, TableName, TableSchema,
    Value, Version,
};
use sqlx::{PgConnection, PgPool, Postgres, Row, Transaction};

use super::dialect::{qualified, quote_ident};
use super::errors::ctx;
use super::introspect::{Shape, shape};
use super::query;
use super::scope::store_watermark;
use super::tracking::{
    DIRECT_SETTING, NEXT_SEQ, TrackingNames, VERSION_EXPR, fold_logged, log_has_rows, pk_columns, records_received,
    require_tracking,
};
use super::values::{LocalColumn, PgQuery, WireArray, read_values};

/// Applies a batch atomically (see [`hubsync_core::Endpoint::apply_changes`]).
pub(crate) async fn apply_changes(pool: &PgPool, batch: ApplyBatch<'_>) -> Result<ApplyOutcome, EndpointError> {
    let context = describe(&batch);
    let mut tx = pool.begin().await.map_err(ctx(&context))?;
    let outcome = apply_in(&mut tx, &batch, Mode::Commit).await.map_err(|e| e.context(&context))?.ok_or_else(|| {
        EndpointError::new(ErrorKind::Other, format!("{context}: the batch was held back instead of applied"))
    })?;
    store_watermark(&mut tx, batch.scope, batch.peer, &batch.table.name, batch.kind, batch.watermark)
        .await
        .map_err(|e| e.context(&context))?;
    tx.commit().await.map_err(ctx(&context))?;
    Ok(outcome)
}

/// Writes a batch and keeps its transaction open (see
/// [`hubsync_core::Endpoint::apply_changes_held`]). Declined, with nothing
/// written, unless the open transaction holds no lock but its rows': for a
/// table with foreign keys (from or to it), unique or exclusion constraints
/// besides its key, triggers or rules of the application; a batch that must
/// write tracking rows (on a hub, see [`records_received`]); and a table
/// whose change log holds rows, since folding it takes the log's lock.
pub(crate) async fn apply_held(pool: &PgPool, batch: ApplyBatch<'_>) -> Result<Held, EndpointError> {
    let context = describe(&batch);
    let mut tx = pool.begin().await.map_err(ctx(&context))?;
    let Some(outcome) = apply_in(&mut tx, &batch, Mode::Hold).await.map_err(|e| e.context(&context))? else {
        // Dropping the transaction rolls back what little it did.
        return Ok(Held::Declined);
    };
    let open = OpenBatch {
        tx,
        scope: batch.scope.to_string(),
        peer: batch.peer.to_string(),
        table: batch.table.name.clone(),
        kind: batch.kind,
        watermark: batch.watermark,
        context,
    };
    Ok(Held::Open(outcome, Box::new(open)))
}

/// A written batch whose transaction is open, with what its commit stores.
struct OpenBatch {
    tx: Transaction<'static, Postgres>,
    scope: String,
    peer: String,
    table: TableName,
    kind: ChangeKind,
    watermark: Version,
    context: String,
}

impl HeldApply for OpenBatch {
    fn commit(self: Box<Self>) -> Pin<Box<dyn Future<Output = Result<(), EndpointError>> + Send>> {
        Box::pin(async move {
            let OpenBatch { mut tx, scope, peer, table, kind, watermark, context } = *self;
            store_watermark(&mut tx, &scope, &peer, &table, kind, watermark).await.map_err(|e| e.context(&context))?;
            tx.commit().await.map_err(ctx(&context))
        })
    }
}

fn describe(batch: &ApplyBatch<'_>) -> String {
    format!(
        "applying {} {}(s) from `{}` to `{}`",
        batch.changes.len(),
        batch.kind.as_str(),
        batch.peer,
        batch.table.name
    )
}

/// Whether [`apply_in`] commits its batch's transaction right after (and may
/// take any lock) or holds it open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Commit,
    Hold,
}

/// Writes the batch in the caller's transaction; `None` when `Hold` declines
/// it (see [`apply_held`]) before writing anything. The caller stores the
/// watermark.
async fn apply_in(
    conn: &mut PgConnection,
    batch: &ApplyBatch<'_>,
    mode: Mode,
) -> Result<Option<ApplyOutcome>, EndpointError> {
    let table = batch.table;
    let names = require_tracking(conn, &table.name).await?;
    let shape = shape(conn, table).await?;
    if mode == Mode::Hold && !holds_no_other_locks(conn, &shape, &names).await? {
        return Ok(None);
    }
    // Deferrable foreign keys are checked at COMMIT, so rows within a batch
    // (self-references, cycles) may arrive in any order.
    query("SET CONSTRAINTS ALL DEFERRED").execute(&mut *conn).await.map_err(ctx("deferring constraints"))?;
    // The origin the triggers record, and the table's own triggers set aside
    // (see [`DIRECT_SETTING`]): this transaction writes the table's tracking
    // rows itself, in the statements that write its rows. Both settings end
    // with the transaction; nothing after the writes touches the table.
    query("SELECT set_config('hubsync.origin', $1, true), set_config($2, $3::regclass::oid::text, true)")
        .bind(batch.peer.to_string())
        .bind(DIRECT_SETTING)
        .bind(qualified(&table.name))
        .execute(&mut *conn)
        .await
        .map_err(ctx("recording the origin"))?;

    let mut outcome = ApplyOutcome::default();
    if !batch.changes.is_empty() {
        check_widths(table, &shape, batch)?;
        let track = records_received(conn, &table.name, batch.peer).await?;
        // Judging needs every committed local change in the tracking table;
        // a held batch finds none in the log (see `apply_held`).
        if mode == Mode::Hold {
            if track || log_has_rows(conn, &names).await? {
                return Ok(None);
            }
        } else {
            fold_logged(conn, &names, shape.keys.len()).await?;
        }
        // One statement writes every change whose key the peer has seen last
        // (no conflict is possible) and returns the others' local state.
        let all: Vec<&Change> = batch.changes.iter().collect();
        let (written, candidates) =
            write(conn, table, &shape, &names, batch, &all, Write { judge: true, track }).await?;
        let mut winners = Vec::new();
        for (index, local) in &candidates {
            match batch.judge(local, &batch.changes[*index]) {
                Verdict::Apply => winners.push(&batch.changes[*index]),
                Verdict::Skip => outcome.skipped += 1,
                Verdict::Conflict { apply, conflict } => {
                    if apply {
                        winners.push(&batch.changes[*index]);
                    }
                    outcome.conflicts.push(conflict);
                }
            }
        }
        // The changes that won their conflict, written the same way.
        let won =
            // Always with tracking rows: a conflict's outcome is what later
            // sessions judge against, and conflicts are few.
            if winners.is_empty() {
                0
            } else {
                write(conn, table, &shape, &names, batch, &winners, Write { judge: false, track: true }).await?.0
            };
        let applied = written + won;
        if applied > 0 && batch.kind == ChangeKind::Upsert {
            advance_sequences(conn, table, &shape).await?;
        }
        // A change the application committed to a key between the fold
        // above and this transaction's write of the key is still in the log,
        // older than the tracking row just written. Folded now (under the
        // fold lock), every logged row stays newer than its key's tracking
        // row, which readers of the log and the tracking table together rely
        // on (see `changes::pending`). No row can be logged for such a key
        // later until this transaction commits: it holds the row's lock.
        if (track && written > 0) || won > 0 {
            fold_logged(conn, &names, shape.keys.len()).await?;
        }
        let kept = (batch.changes.len() - candidates.len() + winners.len()) as u64;
        outcome.applied = applied;
        outcome.skipped += kept.saturating_sub(applied);
    }
    Ok(Some(outcome))
}

/// Whether writing the table takes no lock but the written rows' (see
/// [`apply_held`]).
async fn holds_no_other_locks(
    conn: &mut PgConnection,
    shape: &Shape,
    names: &TrackingNames,
) -> Result<bool, EndpointError> {
    query(
        "SELECT NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint WHERE (conrelid = $1::oid OR confrelid = $1::oid) \
           AND contype IN ('f', 'u', 'x')) \
         AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_index WHERE indrelid = $1::oid AND indisunique AND NOT indisprimary) \
         AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger WHERE tgrelid = $1::oid AND NOT tgisinternal \
           AND tgname <> ALL($2::text[])) \
         AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_rewrite WHERE ev_class = $1::oid AND rulename <> '_RETURN')",
    )
    .bind(shape.oid)
    .bind(names.triggers.to_vec())
    .fetch_one(&mut *conn)
    .await
    .and_then(|r| r.try_get::<bool, _>(0))
    .map_err(ctx("looking for constraints and triggers of the table"))
}

/// How [`write`] writes a set of changes.
#[derive(Debug, Clone, Copy)]
struct Write {
    /// Leave changes that may conflict unwritten and return them for judging.
    judge: bool,
    /// Write tracking rows with the changes.
    track: bool,
}

/// Refuses changes whose shape does not match the synced table.
fn check_widths(table: &TableSchema, shape: &Shape, batch: &ApplyBatch<'_>) -> Result<(), EndpointError> {
    for change in batch.changes.iter() {
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

/// A batch's columns staged for SQL: `unnest(...) WITH ORDINALITY AS i(lead,
/// c_1, ..., n)`, the select list converting each `c_k` to the local type,
/// and the arrays to bind.
struct Staged {
    unnest: String,
    typed: String,
    arrays: Vec<WireArray>,
}

/// Stages `columns` of `rows`, their parameters numbered from `first`. `lead`
/// zips an int8 array (parameter `$n`, alias `name`) in front; `n` is each
/// value's 1-based place in the batch.
fn staged(columns: &[LocalColumn], lead: (&str, usize), first: usize, rows: &[&[Value]]) -> Staged {
    static NULL: Value = Value::Null;
    let arrays: Vec<WireArray> = columns
        .iter()
        .enumerate()
        .map(|(j, c)| WireArray::collect(c, rows.iter().map(move |row| row.get(j).unwrap_or(&NULL))))
        .collect();
    let mut params: Vec<String> =
        arrays.iter().enumerate().map(|(i, a)| format!("${}::{}", first + i, a.sql_type())).collect();
    let mut aliases: Vec<String> = (1..=columns.len()).map(|i| format!("c_{i}")).collect();
    let (name, n) = lead;
    params.insert(0, format!("${n}::int8[]"));
    aliases.insert(0, name.to_string());
    aliases.push("n".to_string());
    let typed = columns
        .iter()
        .zip(&arrays)
        .enumerate()
        .map(|(i, (c, a))| format!("{} AS c_{}", a.element_expr(c, &format!("i.c_{}", i + 1)), i + 1))
        .collect::<Vec<_>>()
        .join(", ");
    Staged {
        unnest: format!("unnest({}) WITH ORDINALITY AS i({})", params.join(", "), aliases.join(", ")),
        typed,
        arrays,
    }
}

fn bind_arrays(mut q: PgQuery<'_>, arrays: Vec<WireArray>) -> PgQuery<'_> {
    for array in arrays {
        q = array.bind(q);
    }
    q
}

/// Writes changes and, in the same statement, their tracking rows (origin
/// the peer, and the changes' own commit times: `LastWriterWins` compares
/// when a row was written at its origin, not when it travelled through the
/// hub). Equal rows are left alone (no write, no tracking row, no new
/// version). The table's triggers stand aside (see [`DIRECT_SETTING`], set by
/// the caller), so nothing is written twice.
///
/// With `judge`, the same statement first finds the changes whose key has a
/// local tracking row the peer has not seen and did not send (DESIGN.md's
/// conflict rule, the condition [`ApplyBatch::judge`] starts from), leaves
/// them unwritten and returns them with their local state for the caller to
/// judge; every sub-statement sees the table as it was before the statement,
/// so the local state is the one the batch meets. Without `judge`, every
/// change is written (changes the caller already judged).
///
/// Without `track`, the changes are written without tracking rows (a member
/// receiving from its hub, see [`records_received`]).
///
/// Returns the rows written and the changes left for judging (by their place
/// in `changes`).
async fn write(
    conn: &mut PgConnection,
    table: &TableSchema,
    shape: &Shape,
    names: &TrackingNames,
    batch: &ApplyBatch<'_>,
    changes: &[&Change],
    mode: Write,
) -> Result<(u64, Vec<(usize, LocalState)>), EndpointError> {
    let Write { judge, track } = mode;
    let t = qualified(&table.name);
    let keys: Vec<String> = table.primary_key.iter().map(|k| quote_ident(k)).collect();
    let pks = pk_columns(shape.keys.len());
    let times: Vec<i64> = changes.iter().map(|c| c.changed_at).collect();
    // Left unwritten: the changes that must be judged first.
    let unjudged = if judge { " AND NOT EXISTS (SELECT 1 FROM c WHERE c.n = i.n)" } else { "" };
    // Parameters: $1 the peer, $2 and $3 what the peer has received
    // (upserts, deletes), $4 the commit times, $5... the columns.
    let (staging, modify, staged_keys) = match batch.kind {
        ChangeKind::Upsert => {
            let rows: Vec<&[Value]> = changes.iter().map(|c| c.row.as_deref().unwrap_or(&[])).collect();
            let staging = staged(&shape.columns, ("changed_at", 4), 5, &rows);
            // The staged alias of each column: its place among the columns.
            let at = |name: &str| shape.columns.iter().position(|c| c.name == name).unwrap_or(0) + 1;
            let staged_keys: Vec<String> = table.primary_key.iter().map(|k| format!("i.c_{}", at(k))).collect();
            (staging, upsert(table, shape, &keys, &staged_keys, unjudged), staged_keys)
        }
        ChangeKind::Delete => {
            let rows: Vec<&[Value]> = changes.iter().map(|c| c.key.as_slice()).collect();
            let staging = staged(&shape.keys, ("changed_at", 4), 5, &rows);
            let on: Vec<String> = keys.iter().enumerate().map(|(i, k)| format!("t.{k} = i.c_{}", i + 1)).collect();
            let modify = format!(
                "w AS (DELETE FROM {t} AS t USING i WHERE {}{unjudged} RETURNING {})",
                on.join(" AND "),
                keys.iter().map(|k| format!("t.{k}")).collect::<Vec<_>>().join(", "),
            );
            let staged_keys = (1..=keys.len()).map(|i| format!("i.c_{i}")).collect();
            (staging, modify, staged_keys)
        }
    };
    let tr = names.qualified_table();
    // The conflict candidates: keys whose tracking row is newer than what
    // the peer has received from here, and not from the peer.
    let (candidates, candidate_columns) = if judge {
        let on_staging: Vec<String> = pks.iter().zip(&staged_keys).map(|(pk, i)| format!("tr.{pk} = {i}")).collect();
        let on_base: Vec<String> =
            table.primary_key.iter().zip(&pks).map(|(k, pk)| format!("b.{} = tr.{pk}", quote_ident(k))).collect();
        // Aliased: a column of the table may be named like one of `c`'s own.
        let base_cols: Vec<String> =
            shape.columns.iter().enumerate().map(|(i, c)| format!(", {} AS b_{}", c.read_expr("b"), i + 1)).collect();
        (
            format!(
                ", c AS (SELECT i.n, tr.version, tr.origin, tr.deleted, tr.changed_at, b.{first} IS NOT NULL AS present{base} \
                 FROM i JOIN {tr} AS tr ON {on_staging} LEFT JOIN {t} AS b ON {on_base} \
                 WHERE ((NOT tr.deleted AND tr.version > $2) OR (tr.deleted AND tr.version > $3)) AND tr.origin <> $1)",
                first = quote_ident(&table.primary_key[0]),
                base = base_cols.concat(),
                on_staging = on_staging.join(" AND "),
                on_base = on_base.join(" AND "),
            ),
            ", c.*",
        )
    } else {
        (String::new(), "")
    };
    let from_candidates = if judge { " LEFT JOIN c ON true" } else { "" };
    let w_keys: Vec<String> = keys.iter().map(|k| format!("w.{k}")).collect();
    let on: Vec<String> = w_keys.iter().zip(&staged_keys).map(|(w, i)| format!("{w} = {i}")).collect();
    let set = "version = excluded.version, origin = excluded.origin, deleted = excluded.deleted, \
               changed_at = excluded.changed_at, seq = excluded.seq";
    // The rows written, counted from their tracking rows or from the writes.
    let tracking = if track {
        format!(
            ", k AS (INSERT INTO {tr} AS tr ({pks}, version, origin, deleted, changed_at, seq) \
             SELECT {w_keys}, {VERSION_EXPR}, $1, {deleted}, i.changed_at, {NEXT_SEQ} FROM w JOIN i ON {on} \
             ON CONFLICT ({pks}) DO UPDATE SET {set} RETURNING 1)",
            pks = pks.join(", "),
            w_keys = w_keys.join(", "),
            deleted = batch.kind == ChangeKind::Delete,
            on = on.join(" AND "),
        )
    } else {
        String::new()
    };
    let counted = if track { "k" } else { "w" };
    let Staged { unnest, typed, arrays } = staging;
    let sql = format!(
        "WITH i AS (SELECT i.changed_at, {typed}, i.n FROM {unnest}){candidates}, {modify}{tracking} \
         SELECT (SELECT count(*) FROM {counted}){candidate_columns} FROM (VALUES (1)) AS one (x){from_candidates}",
    );
    let q = query(sql)
        .bind(batch.peer.to_string())
        .bind(batch.peer_has_received.upserts)
        .bind(batch.peer_has_received.deletes)
        .bind(times);
    let rows = bind_arrays(q, arrays)
        .fetch_all(&mut *conn)
        .await
        .map_err(ctx(format_args!("writing the {}s", batch.kind.as_str())))?;
    let reading = || ctx("reading conflicts");
    let mut written = 0;
    let mut candidates = Vec::new();
    for row in rows {
        written = u64::try_from(row.try_get::<i64, _>(0).map_err(reading())?).unwrap_or(0);
        if !judge {
            continue;
        }
        // Columns after the count: n, version, origin, deleted, changed_at,
        // present, the base row; all NULL when no change needs judging.
        let Some(n) = row.try_get::<Option<i64>, _>(1).map_err(reading())? else {
            continue;
        };
        let present: bool = row.try_get(6).map_err(reading())?;
        let local = LocalState {
            version: row.try_get(2).map_err(reading())?,
            origin: row.try_get(3).map_err(reading())?,
            deleted: row.try_get(4).map_err(reading())?,
            changed_at: row.try_get(5).map_err(reading())?,
            row: if present { Some(read_values(&row, 7, &shape.columns).map_err(reading())?) } else { None },
        };
        if let Some(index) = usize::try_from(n - 1).ok().filter(|i| *i < changes.len()) {
            candidates.push((index, local));
        }
    }
    Ok((written, candidates))
}

/// The sub-statements writing a batch of upserts staged as `i`, ending in `w`,
/// the keys written. Rows that exist are updated by key and the rest go to an
/// insert, each by its own statement: a plain `UPDATE ... FROM` costs a third
/// less than `INSERT ... ON CONFLICT DO UPDATE` (which looks the key up, then
/// locks and updates the row it found), and almost every upsert a sync moves
/// is an update. The insert takes the changes the update did not write,
/// matched against the update's returned keys in memory rather than looked up
/// in the table's index a second time. A key whose row exists but equals the
/// change reaches the insert too, meets its row through `ON CONFLICT` and is
/// left alone by the `DO UPDATE`'s condition, as is a row another transaction
/// inserted meanwhile unless it differs. Equal rows are written by neither.
fn upsert(table: &TableSchema, shape: &Shape, keys: &[String], staged_keys: &[String], unjudged: &str) -> String {
    let t = qualified(&table.name);
    let cols: Vec<String> = shape.columns.iter().map(|c| quote_ident(&c.name)).collect();
    let values: Vec<String> = (1..=shape.columns.len()).map(|i| format!("i.c_{i}")).collect();
    let returning = keys.iter().map(|k| format!("t.{k}")).collect::<Vec<_>>().join(", ");
    let where_unjudged = unjudged.replacen(" AND ", " WHERE ", 1);
    let non_key: Vec<(usize, &LocalColumn)> =
        shape.columns.iter().enumerate().filter(|(_, c)| !table.primary_key.contains(&c.name)).collect();
    let insert = |filter: &str, action: &str| {
        format!(
            "INSERT INTO {t} AS t ({}){} SELECT {} FROM i{filter} ON CONFLICT ({}) {action} RETURNING {returning}",
            cols.join(", "),
            shape.overriding(),
            values.join(", "),
            keys.join(", "),
        )
    };
    if non_key.is_empty() {
        return format!("w AS ({})", insert(&where_unjudged, "DO NOTHING"));
    }
    let set_staged: Vec<String> =
        non_key.iter().map(|(i, c)| format!("{} = i.c_{}", quote_ident(&c.name), i + 1)).collect();
    let differs_staged: Vec<String> = non_key
        .iter()
        .map(|(i, c)| c.distinct_between(&format!("t.{}", quote_ident(&c.name)), &format!("i.c_{}", i + 1)))
        .collect();
    let set_excluded: Vec<String> =
        non_key.iter().map(|(_, c)| format!("{q} = excluded.{q}", q = quote_ident(&c.name))).collect();
    let differs_excluded: Vec<String> = non_key.iter().map(|(_, c)| c.distinct_expr("t", "excluded")).collect();
    let by_key: Vec<String> = keys.iter().zip(staged_keys).map(|(k, i)| format!("t.{k} = {i}")).collect();
    let updated: Vec<String> = keys.iter().zip(staged_keys).map(|(k, i)| format!("u.{k} = {i}")).collect();
    let update = format!(
        "UPDATE {t} AS t SET {} FROM i WHERE {}{unjudged} AND ({}) RETURNING {returning}",
        set_staged.join(", "),
        by_key.join(" AND "),
        differs_staged.join(" OR "),
    );
    let not_updated = format!(" WHERE NOT EXISTS (SELECT 1 FROM u WHERE {}){unjudged}", updated.join(" AND "));
    let action = format!("DO UPDATE SET {} WHERE {}", set_excluded.join(", "), differs_excluded.join(" OR "));
    format!(
        "u AS ({update}), a AS ({}), w AS (SELECT * FROM u UNION ALL SELECT * FROM a)",
        insert(&not_updated, &action)
    )
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

//! Reading and counting changes from a table's tracking table.

use hubsync_core::{Change, ChangeKind, EndpointError, OriginFilter, ReadRequest, TableSchema, Watermarks};
use sqlx::{PgPool, Row};

use super::dialect::qualified;
use super::errors::ctx;
use super::introspect::shape;
use super::query;
use super::tracking::{fold_pending, pk_columns, require_tracking};
use super::values::{LocalColumn, bind_for, read_values};

/// Reads one batch of changes (see [`hubsync_core::Endpoint::read_changes`]).
///
/// All rows of a transaction share its id as version, so the order is
/// (version, key) and `after_key` resumes inside a version.
pub(crate) async fn read_changes(pool: &PgPool, request: ReadRequest<'_>) -> Result<Vec<Change>, EndpointError> {
    let table = request.table;
    let context = format!("reading {} changes of `{}`", request.kind.as_str(), table.name);
    let mut conn = pool.acquire().await.map_err(ctx(&context))?;
    let names = require_tracking(&mut conn, &table.name).await.map_err(|e| e.context(&context))?;
    let shape = shape(&mut conn, table).await.map_err(|e| e.context(&context))?;
    let key_count = shape.keys.len();
    // Usually folded already by the snapshot version; this keeps a read
    // complete whoever asks.
    fold_pending(&mut conn, &names, key_count).await.map_err(|e| e.context(&context))?;
    let pks = pk_columns(key_count);
    // The tracking table's key columns have the key's types: read them the
    // way the key columns are read.
    let tracked_keys: Vec<LocalColumn> =
        shape.keys.iter().zip(&pks).map(|(k, pk)| LocalColumn { name: pk.clone(), ..k.clone() }).collect();
    let key_exprs: Vec<String> = tracked_keys.iter().map(|k| k.read_expr("tr")).collect();
    let tr_keys: Vec<String> = pks.iter().map(|pk| format!("tr.{pk}")).collect();
    let deleting = request.kind == ChangeKind::Delete;
    let (row_columns, join) = if deleting {
        (String::new(), String::new())
    } else {
        let cols: Vec<String> = shape.columns.iter().map(|c| format!(", {}", c.read_expr("t"))).collect();
        let on: Vec<String> = table
            .primary_key
            .iter()
            .zip(&pks)
            .map(|(k, pk)| format!("t.{} = tr.{pk}", super::dialect::quote_ident(k)))
            .collect();
        let present = format!(", t.{} IS NOT NULL", super::dialect::quote_ident(&table.primary_key[0]));
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
    let limit = next();
    let filter = format!("{position} AND tr.version <= ${up_to} AND tr.deleted = ${deleted} AND {origin_sql}");
    let order = tr_keys.join(", ");
    let tr = names.qualified_table();
    // Within one transaction's version the order is by key, which knows
    // nothing of foreign keys; a batch the database refuses for that reason
    // is widened by the core (see `versions_are_per_transaction`).
    // The batch is cut from the tracking table first and only its rows are
    // joined with the table: whatever the planner believes of the tracking
    // table's statistics (none yet on a freshly provisioned table, or a
    // fold's new versions beyond them), the join never covers more than one
    // batch. Joined in one statement, the first batch after a large fold
    // was planned as a join of every pending change, then a sort.
    let sql = format!(
        "SELECT {keys}, tr.version, tr.origin, tr.changed_at{row_columns} \
         FROM (SELECT * FROM {tr} AS tr WHERE {filter} ORDER BY tr.version, {order} LIMIT ${limit}) AS tr {join} \
         ORDER BY tr.version, {order}",
        keys = key_exprs.join(", "),
    );
    let mut q = query(sql).bind(request.after);
    if let Some(key) = request.after_key.as_ref().filter(|k| k.len() == key_count) {
        for (value, column) in key.iter().zip(&shape.keys) {
            q = bind_for(q, column, value);
        }
    }
    q = q.bind(request.up_to).bind(deleting);
    if let OriginFilter::NotFrom(peer) = request.origin {
        q = q.bind(peer.clone());
    }
    let rows =
        q.bind(i64::try_from(request.limit).unwrap_or(i64::MAX)).fetch_all(&mut *conn).await.map_err(ctx(&context))?;
    let mut changes = Vec::with_capacity(rows.len());
    for row in rows {
        let key = read_values(&row, 0, &tracked_keys).map_err(ctx(&context))?;
        let version: i64 = row.try_get(key_count).map_err(ctx(&context))?;
        let origin: String = row.try_get(key_count + 1).map_err(ctx(&context))?;
        let changed_at: i64 = row.try_get(key_count + 2).map_err(ctx(&context))?;
        let image = if deleting {
            None
        } else {
            let present: bool = row.try_get(key_count + 3).map_err(ctx(&context))?;
            if !present {
                tracing::warn!(table = %table.name, version, "Tracked upsert has no base row; skipping it.");
                continue;
            }
            Some(read_values(&row, key_count + 4, &shape.columns).map_err(ctx(&context))?)
        };
        changes.push(Change { key, version, origin, changed_at, row: image });
    }
    Ok(changes)
}

/// Counts pending changes above the watermarks (see [`hubsync_core::Endpoint::count_changes`]).
pub(crate) async fn count_changes(
    pool: &PgPool,
    table: &TableSchema,
    after: Watermarks,
    origin: &OriginFilter,
) -> Result<u64, EndpointError> {
    let context = format!("counting the changes of `{}`", table.name);
    let mut conn = pool.acquire().await.map_err(ctx(&context))?;
    let names = require_tracking(&mut conn, &table.name).await.map_err(|e| e.context(&context))?;
    // Changes still in the log are pending too.
    fold_pending(&mut conn, &names, table.primary_key.len()).await.map_err(|e| e.context(&context))?;
    let origin_sql = match origin {
        OriginFilter::LocalOnly => "origin = ''",
        OriginFilter::NotFrom(_) => "origin <> $3",
    };
    let sql = format!(
        // The first condition only repeats the others in a form the
        // (version, key) index serves as a range: a count after a small
        // change reads that change, not the whole tracking table.
        "SELECT count(*) FROM {} WHERE version > least($1::int8, $2::int8) \
         AND ((NOT deleted AND version > $1) OR (deleted AND version > $2)) AND {origin_sql}",
        names.qualified_table()
    );
    let mut q = query(sql).bind(after.upserts).bind(after.deletes);
    if let OriginFilter::NotFrom(peer) = origin {
        q = q.bind(peer.clone());
    }
    let count: i64 = q.fetch_one(&mut *conn).await.and_then(|r| r.try_get(0)).map_err(ctx(&context))?;
    Ok(u64::try_from(count).unwrap_or(0))
}

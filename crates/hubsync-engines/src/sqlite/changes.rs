//! Reading and counting changes from a table's tracking table.

use hubsync_core::{Change, ChangeKind, EndpointError, OriginFilter, ReadRequest, TableSchema, Watermarks};
use sqlx::{Row, SqlitePool};

use super::dialect::{qualified, quote_ident};
use super::errors::ctx;
use super::query;
use super::tracking::{pk_columns, require_tracking};
use super::values::{bind_owned, read_values};

/// The SQL condition for an origin filter, with its parameter if any.
fn origin_condition(filter: &OriginFilter, column: &str) -> (String, Option<String>) {
    match filter {
        OriginFilter::LocalOnly => (format!("{column} = ''"), None),
        OriginFilter::NotFrom(peer) => (format!("{column} <> ?"), Some(peer.clone())),
    }
}

/// Reads one batch of changes (see [`hubsync_core::Endpoint::read_changes`]).
pub(crate) async fn read_changes(pool: &SqlitePool, request: ReadRequest<'_>) -> Result<Vec<Change>, EndpointError> {
    let table = request.table;
    let context = format!("reading {} changes of `{}`", request.kind.as_str(), table.name);
    let mut conn = pool.acquire().await.map_err(ctx(&context))?;
    let names = require_tracking(&mut conn, &table.name).await?;
    let key_count = table.primary_key.len();
    let pks = pk_columns(key_count);
    let tr_keys: Vec<String> = pks.iter().map(|pk| format!("tr.{pk}")).collect();
    let (origin_sql, origin_param) = origin_condition(request.origin, "tr.origin");
    let deleting = request.kind == ChangeKind::Delete;
    let (row_columns, join) = if deleting {
        (String::new(), String::new())
    } else {
        let cols: Vec<String> = table.columns.iter().map(|c| format!(", t.{}", quote_ident(&c.name))).collect();
        let on: Vec<String> =
            table.primary_key.iter().zip(&pks).map(|(k, pk)| format!("t.{} = tr.{pk}", quote_ident(k))).collect();
        // The first key column read back from the base table tells whether the row is there.
        let present = match table.primary_key.first() {
            Some(k) => format!(", t.{} IS NOT NULL", quote_ident(k)),
            None => ", 0".to_string(),
        };
        (
            format!("{present}{}", cols.concat()),
            format!("LEFT JOIN {} AS t ON {}", qualified(&table.name)?, on.join(" AND ")),
        )
    };
    // Versions are unique per row here, so `after_key` never matters for
    // correctness; honouring it keeps the contract uniform across engines.
    let (position, after_key) = match &request.after_key {
        Some(key) if key.len() == key_count => {
            let marks = vec!["?"; key_count].join(", ");
            (
                format!("(tr.version > ? OR (tr.version = ? AND ({}) > ({marks})))", tr_keys.join(", ")),
                Some(key.clone()),
            )
        }
        _ => ("tr.version > ?".to_string(), None),
    };
    let sql = format!(
        "SELECT {keys}, tr.version, tr.origin, tr.changed_at{row_columns} FROM main.{tr} AS tr {join} \
         WHERE {position} AND tr.version <= ? AND tr.deleted = ? AND {origin_sql} ORDER BY tr.version, {keys} LIMIT ?",
        keys = tr_keys.join(", "),
        tr = quote_ident(&names.table),
    );
    // Plain `?` only: sqlx numbers them itself and cannot mix them with `?NNN`.
    let mut q = query(sql).bind(request.after);
    if let Some(key) = after_key {
        q = q.bind(request.after);
        for value in key {
            q = bind_owned(q, value);
        }
    }
    let mut q = q.bind(request.up_to).bind(i64::from(deleting));
    if let Some(peer) = origin_param {
        q = q.bind(peer);
    }
    let rows =
        q.bind(i64::try_from(request.limit).unwrap_or(i64::MAX)).fetch_all(&mut *conn).await.map_err(ctx(&context))?;
    let mut changes = Vec::with_capacity(rows.len());
    for row in rows {
        let key = read_values(&row, 0, key_count).map_err(ctx(&context))?;
        let version: i64 = row.try_get(key_count).map_err(ctx(&context))?;
        let origin: String = row.try_get(key_count + 1).map_err(ctx(&context))?;
        let changed_at: i64 = row.try_get(key_count + 2).map_err(ctx(&context))?;
        let image = if deleting {
            None
        } else {
            let present: bool = row.try_get(key_count + 3).map_err(ctx(&context))?;
            if !present {
                tracing::warn!(table = %table.name, version, "tracked upsert has no base row; skipping it");
                continue;
            }
            Some(read_values(&row, key_count + 4, table.columns.len()).map_err(ctx(&context))?)
        };
        changes.push(Change { key, version, origin, changed_at, row: image });
    }
    Ok(changes)
}

/// Counts pending changes above the watermarks (see [`hubsync_core::Endpoint::count_changes`]).
pub(crate) async fn count_changes(
    pool: &SqlitePool,
    table: &TableSchema,
    after: Watermarks,
    origin: &OriginFilter,
) -> Result<u64, EndpointError> {
    let context = format!("counting the changes of `{}`", table.name);
    let mut conn = pool.acquire().await.map_err(ctx(&context))?;
    let names = require_tracking(&mut conn, &table.name).await?;
    let (origin_sql, origin_param) = origin_condition(origin, "origin");
    let sql = format!(
        "SELECT count(*) FROM main.{} WHERE ((deleted = 0 AND version > ?) OR (deleted = 1 AND version > ?)) AND {origin_sql}",
        quote_ident(&names.table)
    );
    let mut q = query(sql).bind(after.upserts).bind(after.deletes);
    if let Some(peer) = origin_param {
        q = q.bind(peer);
    }
    let count: i64 = q.fetch_one(&mut *conn).await.and_then(|r| r.try_get(0)).map_err(ctx(&context))?;
    Ok(u64::try_from(count).unwrap_or(0))
}

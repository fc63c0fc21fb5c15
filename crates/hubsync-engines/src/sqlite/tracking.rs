//! Change tracking objects: their names, the provisioning DDL, the triggers
//! and deprovisioning.

use hubsync_core::{EndpointError, ErrorKind, TableName, TableSchema};
use sqlx::{Row, SqliteConnection, SqlitePool};

use super::dialect::{check_schema, is_safe_type, qualified, quote_ident};
use super::errors::ctx;
use super::query;

/// Who made the change, as the triggers see it: the peer an applying
/// transaction wrote into `hubsync_origin`, or '' for a local write.
pub(crate) const ORIGIN_EXPR: &str = "coalesce((SELECT origin FROM hubsync_origin WHERE id = 1), '')";

/// Now, in microseconds since the Unix epoch (UTC).
pub(crate) const NOW_EXPR: &str = "CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER)";

/// The shared objects, in creation order; dropped when no tracked table remains.
pub(crate) const SHARED_TABLES: [&str; 4] = ["hubsync_counter", "hubsync_origin", "hubsync_scope", "hubsync_session"];

const SHARED_DDL: [&str; 5] = [
    "CREATE TABLE IF NOT EXISTS main.hubsync_counter (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL)",
    "INSERT OR IGNORE INTO main.hubsync_counter (id, version) VALUES (1, 0)",
    "CREATE TABLE IF NOT EXISTS main.hubsync_origin (id INTEGER PRIMARY KEY CHECK (id = 1), origin TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS main.hubsync_scope (scope TEXT NOT NULL, peer TEXT NOT NULL, table_name TEXT NOT NULL, \
     kind TEXT NOT NULL, version INTEGER NOT NULL, PRIMARY KEY (scope, peer, table_name, kind))",
    SESSION_DDL,
];

/// The session table, also created on its own by `record_session`.
pub(crate) const SESSION_DDL: &str = "CREATE TABLE IF NOT EXISTS main.hubsync_session (scope TEXT NOT NULL, \
     peer TEXT NOT NULL, state TEXT NOT NULL, last_attempt_at INTEGER NOT NULL, last_success_at INTEGER NULL, \
     uploaded INTEGER NOT NULL, downloaded INTEGER NOT NULL, message TEXT NOT NULL, PRIMARY KEY (scope, peer))";

/// The names of one table's tracking objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackingNames {
    /// The tracking side table.
    pub table: String,
    /// The index on the tracking table's version.
    pub index: String,
    /// The AFTER INSERT trigger.
    pub insert_trigger: String,
    /// The AFTER UPDATE OF (synced columns) trigger.
    pub update_trigger: String,
    /// The AFTER UPDATE OF (key columns) trigger that tombstones the old key.
    pub key_update_trigger: String,
    /// The AFTER DELETE trigger.
    pub delete_trigger: String,
}

impl TrackingNames {
    /// Derives the names from the table's name: a readable slug plus a hash of
    /// the full name, so any name (quotes, spaces, Unicode, any length) gives
    /// valid, short names, and names that slug alike still differ.
    pub fn for_table(table: &TableName) -> Self {
        let full = table_key(table);
        let base = crate::naming::object_stem(&full, &full);
        TrackingNames {
            table: format!("hubsync_tr_{base}"),
            index: format!("hubsync_ix_{base}"),
            insert_trigger: format!("hubsync_{base}_ins"),
            update_trigger: format!("hubsync_{base}_upd"),
            key_update_trigger: format!("hubsync_{base}_upd_key"),
            delete_trigger: format!("hubsync_{base}_del"),
        }
    }

    /// The four triggers.
    pub fn triggers(&self) -> [&str; 4] {
        [&self.insert_trigger, &self.update_trigger, &self.key_update_trigger, &self.delete_trigger]
    }
}

/// The table's name as stored in `hubsync_scope` and hashed into object names.
/// `main.t` is the same table as `t`, so the `main` qualifier is left out.
pub(crate) fn table_key(table: &TableName) -> String {
    match table.schema.as_deref() {
        Some(s) if s.eq_ignore_ascii_case("main") => table.name.clone(),
        _ => table.to_string(),
    }
}

/// `pk_1, pk_2, ...` for a key of `n` columns.
pub(crate) fn pk_columns(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("pk_{i}")).collect()
}

/// Whether an object (table, index, trigger) of this name exists in `main`.
pub(crate) async fn object_exists(conn: &mut SqliteConnection, name: &str) -> Result<bool, EndpointError> {
    let row = query("SELECT 1 FROM main.sqlite_master WHERE name = ?1".to_string())
        .bind(name.to_string())
        .fetch_optional(&mut *conn)
        .await
        .map_err(ctx(format_args!("checking whether `{name}` exists")))?;
    Ok(row.is_some())
}

/// Whether a user table of this name exists in `main`.
pub(crate) async fn table_exists(conn: &mut SqliteConnection, name: &str) -> Result<bool, EndpointError> {
    let row = query("SELECT 1 FROM main.sqlite_master WHERE type = 'table' AND name = ?1 COLLATE NOCASE".to_string())
        .bind(name.to_string())
        .fetch_optional(&mut *conn)
        .await
        .map_err(ctx(format_args!("checking whether table `{name}` exists")))?;
    Ok(row.is_some())
}

/// Fails with [`ErrorKind::NotProvisioned`] when the table has no tracking table.
pub(crate) async fn require_tracking(
    conn: &mut SqliteConnection,
    table: &TableName,
) -> Result<TrackingNames, EndpointError> {
    check_schema(table)?;
    let names = TrackingNames::for_table(table);
    if !object_exists(conn, &names.table).await? {
        return Err(EndpointError::new(
            ErrorKind::NotProvisioned,
            format!("table `{table}` is not provisioned for sync"),
        )
        .with_hint("run `hubsync provision` first"));
    }
    Ok(names)
}

/// Creates the shared hubsync tables if missing.
pub(crate) async fn ensure_shared(conn: &mut SqliteConnection) -> Result<(), EndpointError> {
    for ddl in SHARED_DDL {
        query(ddl.to_string()).execute(&mut *conn).await.map_err(ctx("creating hubsync's shared tables"))?;
    }
    Ok(())
}

/// The declared types of the key columns as the table really has them, so the
/// tracking table's key columns compare with the same affinity.
async fn key_types(conn: &mut SqliteConnection, table: &TableSchema) -> Result<Vec<String>, EndpointError> {
    if table.primary_key.is_empty() {
        return Err(hubsync_core::SchemaError::NoPrimaryKey { table: table.name.clone() }.into());
    }
    let rows = query("SELECT name, type FROM pragma_table_info(?1, 'main')".to_string())
        .bind(table.name.name.clone())
        .fetch_all(&mut *conn)
        .await
        .map_err(ctx(format_args!("reading the columns of `{}`", table.name)))?;
    if rows.is_empty() {
        return Err(EndpointError::new(ErrorKind::TableMissing, format!("table `{}` does not exist", table.name)));
    }
    let mut types = Vec::with_capacity(table.primary_key.len());
    for key in &table.primary_key {
        let mut found = None;
        for row in &rows {
            let name: String = row.try_get(0).map_err(ctx("reading table_info"))?;
            if name.eq_ignore_ascii_case(key) {
                let declared: String = row.try_get(1).map_err(ctx("reading table_info"))?;
                found = Some(declared);
                break;
            }
        }
        let declared = found.ok_or_else(|| {
            EndpointError::from(hubsync_core::SchemaError::MissingColumn {
                table: table.name.clone(),
                column: key.clone(),
            })
        })?;
        // Declared types come from this database; an odd one only loses the
        // affinity match, so fall back to no type rather than fail.
        types.push(if is_safe_type(&declared) { declared } else { String::new() });
    }
    Ok(types)
}

/// Creates the tracking table and its version index if missing.
pub(crate) async fn ensure_tracking_table(
    conn: &mut SqliteConnection,
    table: &TableSchema,
    names: &TrackingNames,
) -> Result<(), EndpointError> {
    let types = key_types(conn, table).await?;
    let pks = pk_columns(types.len());
    let key_defs: Vec<String> = pks.iter().zip(&types).map(|(pk, ty)| format!("{pk} {ty}")).collect();
    let ddl = format!(
        "CREATE TABLE IF NOT EXISTS main.{} ({}, version INTEGER NOT NULL, origin TEXT NOT NULL, \
         deleted INTEGER NOT NULL, changed_at INTEGER NOT NULL, PRIMARY KEY ({}))",
        quote_ident(&names.table),
        key_defs.join(", "),
        pks.join(", ")
    );
    query(ddl)
        .execute(&mut *conn)
        .await
        .map_err(ctx(format_args!("creating the tracking table of `{}`", table.name)))?;
    let index = format!(
        "CREATE INDEX IF NOT EXISTS main.{} ON {} (version)",
        quote_ident(&names.index),
        quote_ident(&names.table)
    );
    query(index)
        .execute(&mut *conn)
        .await
        .map_err(ctx(format_args!("creating the tracking index of `{}`", table.name)))?;
    Ok(())
}

/// Drops the table's triggers (those that exist); returns the dropped names.
pub(crate) async fn drop_triggers(
    conn: &mut SqliteConnection,
    names: &TrackingNames,
) -> Result<Vec<String>, EndpointError> {
    let mut dropped = Vec::new();
    for trigger in names.triggers() {
        if object_exists(conn, trigger).await? {
            query(format!("DROP TRIGGER IF EXISTS main.{}", quote_ident(trigger)))
                .execute(&mut *conn)
                .await
                .map_err(ctx(format_args!("dropping trigger `{trigger}`")))?;
            dropped.push(trigger.to_string());
        }
    }
    Ok(dropped)
}

/// The trigger statement that records `row_ref` (NEW or OLD) as the key's
/// latest change. Trigger bodies cannot qualify table names: unqualified names
/// resolve to the trigger's own database.
fn record_stmt(table: &TableSchema, names: &TrackingNames, row_ref: &str, deleted: bool) -> String {
    let pks = pk_columns(table.primary_key.len()).join(", ");
    let values: Vec<String> = table.primary_key.iter().map(|k| format!("{row_ref}.{}", quote_ident(k))).collect();
    format!(
        "UPDATE hubsync_counter SET version = version + 1 WHERE id = 1; \
         INSERT INTO {tr} ({pks}, version, origin, deleted, changed_at) \
         VALUES ({vals}, (SELECT version FROM hubsync_counter WHERE id = 1), {ORIGIN_EXPR}, {del}, {NOW_EXPR}) \
         ON CONFLICT ({pks}) DO UPDATE SET version = excluded.version, origin = excluded.origin, \
         deleted = excluded.deleted, changed_at = excluded.changed_at;",
        tr = quote_ident(&names.table),
        vals = values.join(", "),
        del = i32::from(deleted),
    )
}

/// Creates the four triggers. Only synced columns are listed in `UPDATE OF`,
/// so writes to unselected columns are not tracked.
pub(crate) async fn create_triggers(
    conn: &mut SqliteConnection,
    table: &TableSchema,
    names: &TrackingNames,
) -> Result<(), EndpointError> {
    for stmt in trigger_ddl(table, names) {
        query(stmt)
            .execute(&mut *conn)
            .await
            .map_err(ctx(format_args!("creating the triggers of `{}`", table.name)))?;
    }
    Ok(())
}

/// Whether the four triggers exist exactly as [`trigger_ddl`] would create
/// them now (SQLite keeps each trigger's creating statement).
async fn triggers_current(
    conn: &mut SqliteConnection,
    table: &TableSchema,
    names: &TrackingNames,
) -> Result<bool, EndpointError> {
    for (name, ddl) in names.triggers().into_iter().zip(trigger_ddl(table, names)) {
        let stored: Option<String> =
            query("SELECT sql FROM main.sqlite_master WHERE type = 'trigger' AND name = ?1".to_string())
                .bind(name.to_string())
                .fetch_optional(&mut *conn)
                .await
                .and_then(|row| row.map(|r| r.try_get(0)).transpose())
                .map_err(ctx(format_args!("looking for trigger `{name}`")))?;
        // SQLite stores the statement without the `main.` qualifier.
        let expected = ddl.replacen("CREATE TRIGGER main.", "CREATE TRIGGER ", 1);
        if stored.as_deref() != Some(expected.as_str()) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The statements creating the four triggers.
fn trigger_ddl(table: &TableSchema, names: &TrackingNames) -> [String; 4] {
    let t = quote_ident(&table.name.name);
    let synced: Vec<String> = table.columns.iter().map(|c| quote_ident(&c.name)).collect();
    let keys: Vec<String> = table.primary_key.iter().map(|k| quote_ident(k)).collect();
    let key_changed: Vec<String> = keys.iter().map(|k| format!("OLD.{k} IS NOT NEW.{k}")).collect();
    [
        format!(
            "CREATE TRIGGER main.{} AFTER INSERT ON {t} FOR EACH ROW BEGIN {} END",
            quote_ident(&names.insert_trigger),
            record_stmt(table, names, "NEW", false)
        ),
        format!(
            "CREATE TRIGGER main.{} AFTER UPDATE OF {} ON {t} FOR EACH ROW BEGIN {} END",
            quote_ident(&names.update_trigger),
            synced.join(", "),
            record_stmt(table, names, "NEW", false)
        ),
        // A key update is a delete of the old key and an insert of the new
        // one; the update trigger above records the new key.
        format!(
            "CREATE TRIGGER main.{} AFTER UPDATE OF {} ON {t} FOR EACH ROW WHEN {} BEGIN {} END",
            quote_ident(&names.key_update_trigger),
            keys.join(", "),
            key_changed.join(" OR "),
            record_stmt(table, names, "OLD", true)
        ),
        format!(
            "CREATE TRIGGER main.{} AFTER DELETE ON {t} FOR EACH ROW BEGIN {} END",
            quote_ident(&names.delete_trigger),
            record_stmt(table, names, "OLD", true)
        ),
    ]
}

/// Gives rows tracking rows with fresh versions, set-based: the counter plus
/// the row number, then the counter moves past them. With `replace` every row
/// gets one (overwriting old tombstones); otherwise only rows that have none.
pub(crate) async fn record_rows(
    conn: &mut SqliteConnection,
    table: &TableSchema,
    names: &TrackingNames,
    origin: &str,
    replace: bool,
) -> Result<u64, EndpointError> {
    let t = qualified(&table.name)?;
    let tr = format!("main.{}", quote_ident(&names.table));
    let pks = pk_columns(table.primary_key.len());
    let key_refs: Vec<String> = table.primary_key.iter().map(|k| format!("t.{}", quote_ident(k))).collect();
    let filter = if replace {
        String::new()
    } else {
        let matches: Vec<String> = pks.iter().zip(&key_refs).map(|(pk, k)| format!("x.{pk} IS {k}")).collect();
        format!("WHERE NOT EXISTS (SELECT 1 FROM {tr} AS x WHERE {})", matches.join(" AND "))
    };
    let sql = format!(
        "INSERT OR REPLACE INTO {tr} ({pks}, version, origin, deleted, changed_at) \
         SELECT {keys}, (SELECT version FROM main.hubsync_counter WHERE id = 1) + row_number() OVER (), ?1, 0, {NOW_EXPR} \
         FROM {t} AS t {filter}",
        pks = pks.join(", "),
        keys = key_refs.join(", "),
    );
    let done = query(sql)
        .bind(origin.to_string())
        .execute(&mut *conn)
        .await
        .map_err(ctx(format_args!("recording the existing rows of `{}`", table.name)))?;
    let count = done.rows_affected();
    if count > 0 {
        query("UPDATE main.hubsync_counter SET version = version + ?1 WHERE id = 1".to_string())
            .bind(i64::try_from(count).unwrap_or(i64::MAX))
            .execute(&mut *conn)
            .await
            .map_err(ctx("advancing the change counter"))?;
    }
    Ok(count)
}

/// Provisions one table in one transaction (see [`hubsync_core::Endpoint::provision`]).
pub(crate) async fn provision(pool: &SqlitePool, table: &TableSchema) -> Result<(), EndpointError> {
    check_schema(&table.name)?;
    if table.primary_key.is_empty() {
        return Err(hubsync_core::SchemaError::NoPrimaryKey { table: table.name.clone() }.into());
    }
    let names = TrackingNames::for_table(&table.name);
    let context = format!("provisioning `{}`", table.name);
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(ctx(&context))?;
    let result = async {
        if !table_exists(&mut tx, &table.name.name).await? {
            return Err(EndpointError::new(ErrorKind::TableMissing, format!("table `{}` does not exist", table.name)));
        }
        ensure_shared(&mut tx).await?;
        let existed = object_exists(&mut tx, &names.table).await?;
        ensure_tracking_table(&mut tx, table, &names).await?;
        // Recreated when the synced column selection changed; left alone
        // otherwise (every `hubsync sync` provisions, and a schema change
        // makes every connection re-prepare its statements).
        if !triggers_current(&mut tx, table, &names).await? {
            drop_triggers(&mut tx, &names).await?;
            create_triggers(&mut tx, table, &names).await?;
        }
        // Only on first provisioning: once the triggers exist, a row without a
        // tracking row is one a bulk copy brought without tracking (the peer's
        // row, not a local change), and must not be sent back.
        if !existed {
            record_rows(&mut tx, table, &names, "", false).await?;
        }
        Ok(())
    }
    .await;
    result.map_err(|e| e.context(&context))?;
    tx.commit().await.map_err(ctx(&context))?;
    Ok(())
}

/// Removes the tracking objects of these tables, and the shared objects when
/// no tracking table remains; returns what was dropped.
pub(crate) async fn deprovision(pool: &SqlitePool, tables: &[TableName]) -> Result<Vec<String>, EndpointError> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(ctx("deprovisioning"))?;
    let mut dropped = Vec::new();
    let scope_exists = object_exists(&mut tx, "hubsync_scope").await?;
    for table in tables {
        check_schema(table)?;
        let names = TrackingNames::for_table(table);
        dropped.extend(drop_triggers(&mut tx, &names).await?);
        for (kind, name) in [("INDEX", &names.index), ("TABLE", &names.table)] {
            if object_exists(&mut tx, name).await? {
                query(format!("DROP {kind} IF EXISTS main.{}", quote_ident(name)))
                    .execute(&mut *tx)
                    .await
                    .map_err(ctx(format_args!("dropping `{name}`")))?;
                dropped.push(name.clone());
            }
        }
        if scope_exists {
            query("DELETE FROM main.hubsync_scope WHERE table_name = ?1".to_string())
                .bind(table_key(table))
                .execute(&mut *tx)
                .await
                .map_err(ctx(format_args!("removing the watermarks of `{table}`")))?;
        }
    }
    let remaining = query(
        "SELECT count(*) FROM main.sqlite_master WHERE type = 'table' AND name LIKE 'hubsync\\_tr\\_%' ESCAPE '\\'"
            .to_string(),
    )
    .fetch_one(&mut *tx)
    .await
    .and_then(|row| row.try_get::<i64, _>(0))
    .map_err(ctx("looking for remaining tracking tables"))?;
    if remaining == 0 {
        for name in SHARED_TABLES {
            if object_exists(&mut tx, name).await? {
                query(format!("DROP TABLE IF EXISTS main.{}", quote_ident(name)))
                    .execute(&mut *tx)
                    .await
                    .map_err(ctx(format_args!("dropping `{name}`")))?;
                dropped.push(name.to_string());
            }
        }
    }
    tx.commit().await.map_err(ctx("deprovisioning"))?;
    Ok(dropped)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_are_stable_readable_and_valid_for_odd_names() {
        let n = TrackingNames::for_table(&TableName::new("Orders"));
        assert!(n.table.starts_with("hubsync_tr_orders_"), "{}", n.table);
        assert_eq!(n.table.len(), "hubsync_tr_orders_".len() + 8);
        assert_eq!(n, TrackingNames::for_table(&TableName::new("Orders")));
        assert!(n.insert_trigger.ends_with("_ins") && n.key_update_trigger.ends_with("_upd_key"));

        for odd in ["my table", "it's \"quoted\"", "a.b", "[x]", "da-sh", "ünïcödé", "select", ""] {
            let n = TrackingNames::for_table(&TableName::new(odd));
            for name in
                [&n.table, &n.index, &n.insert_trigger, &n.update_trigger, &n.key_update_trigger, &n.delete_trigger]
            {
                assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "{name}");
            }
        }
        let long = TrackingNames::for_table(&TableName::new("x".repeat(500)));
        assert!(long.key_update_trigger.len() <= 63, "{}", long.key_update_trigger);
    }

    #[test]
    fn names_that_slug_alike_do_not_collide() {
        let pairs = [("a b", "ab"), ("A", "a"), ("a.b", "ab"), ("it's", "its"), ("ünï", "n")];
        for (x, y) in pairs {
            assert_ne!(
                TrackingNames::for_table(&TableName::new(x)).table,
                TrackingNames::for_table(&TableName::new(y)).table
            );
        }
        let main = TableName { schema: Some("main".into()), name: "t".into() };
        assert_eq!(TrackingNames::for_table(&main), TrackingNames::for_table(&TableName::new("t")));
    }

    #[test]
    fn record_stmt_quotes_keys_and_tracks_origin() {
        let table = TableSchema {
            name: TableName::new("t"),
            columns: vec![],
            primary_key: vec!["we\"ird".into(), "b".into()],
            indexes: vec![],
            foreign_keys: vec![],
            engine: "sqlite".into(),
        };
        let names = TrackingNames::for_table(&table.name);
        let stmt = record_stmt(&table, &names, "OLD", true);
        assert!(stmt.contains("OLD.\"we\"\"ird\", OLD.\"b\""), "{stmt}");
        assert!(stmt.contains("(pk_1, pk_2, version, origin, deleted, changed_at)"), "{stmt}");
        assert!(stmt.contains(ORIGIN_EXPR));
        assert!(stmt.contains(", 1, CAST("), "{stmt}");
    }
}

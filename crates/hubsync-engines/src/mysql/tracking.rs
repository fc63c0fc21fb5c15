//! Change tracking objects: their names, the provisioning DDL, the triggers
//! and deprovisioning.
//!
//! MySQL commits implicitly around DDL, so provisioning cannot be one
//! transaction; it is ordered to be safe to repeat instead: a marker row in
//! `hubsync_scope` says the tracking table was created and its existing rows
//! still need recording, and is removed in the transaction that records them.

use hubsync_core::{EndpointError, ErrorKind, SchemaError, TableName, TableSchema};
use sqlx::{MySqlConnection, MySqlPool, Row};

use super::dialect::{database_of, in_db, is_safe_type, qualified, quote_ident};
use super::errors::ctx;
use super::introspect::{local_columns, refuse_foreign_key_actions, table_exists};
use super::{ddl, query};

/// Who made the change, as the triggers see it: the peer an applying session
/// put into `@hubsync_origin`, or '' for a local write.
pub(crate) const ORIGIN_EXPR: &str = "COALESCE(@hubsync_origin, '')";

/// Now, in microseconds since the Unix epoch (UTC), whatever the session's zone.
pub(crate) const NOW_EXPR: &str = "CAST(UNIX_TIMESTAMP(NOW(6)) * 1000000 AS SIGNED)";

/// The `hubsync_scope` kind of the marker saying existing rows still need recording.
const BACKFILL_MARKER: &str = "backfill";

/// The shared objects, in the endpoint's own database.
pub(crate) const SHARED_TABLES: [&str; 3] = ["hubsync_seq", "hubsync_scope", "hubsync_session"];

/// The DDL of the shared tables, with `{db}` for the quoted database.
const SHARED_DDL: [&str; 3] = [
    "CREATE TABLE IF NOT EXISTS {db}.hubsync_seq (id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY) ENGINE=InnoDB",
    "CREATE TABLE IF NOT EXISTS {db}.hubsync_scope (scope VARCHAR(190) NOT NULL, peer VARCHAR(190) NOT NULL, \
     table_name VARCHAR(300) NOT NULL, kind VARCHAR(16) NOT NULL, version BIGINT NOT NULL, \
     PRIMARY KEY (scope, peer, table_name, kind)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
    SESSION_DDL,
];

/// The session table, also created on its own by `record_session`.
pub(crate) const SESSION_DDL: &str = "CREATE TABLE IF NOT EXISTS {db}.hubsync_session (scope VARCHAR(255) NOT NULL, \
     peer VARCHAR(255) NOT NULL, state VARCHAR(64) NOT NULL, last_attempt_at BIGINT NOT NULL, \
     last_success_at BIGINT NULL, uploaded BIGINT NOT NULL, downloaded BIGINT NOT NULL, message LONGTEXT NOT NULL, \
     PRIMARY KEY (scope, peer)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin";

/// A shared DDL statement for the endpoint's database.
pub(crate) fn shared_sql(template: &str, home: &str) -> String {
    template.replace("{db}", &quote_ident(home))
}

/// The version sequence, qualified.
pub(crate) fn seq_table(home: &str) -> String {
    format!("{}.hubsync_seq", quote_ident(home))
}

/// The names of one table's tracking objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackingNames {
    /// The database holding the table and its tracking objects.
    pub database: String,
    /// The tracking side table.
    pub table: String,
    /// The AFTER INSERT trigger.
    pub insert_trigger: String,
    /// The AFTER UPDATE trigger (also records key updates).
    pub update_trigger: String,
    /// The AFTER DELETE trigger.
    pub delete_trigger: String,
}

impl TrackingNames {
    /// Derives the names from the table's name: a readable slug plus a hash of
    /// the full name, so any name gives valid names within MySQL's 64
    /// characters, and names that slug alike still differ.
    pub fn for_table(table: &TableName, home: &str) -> Self {
        let full = table_key(table, home);
        let base = crate::naming::object_stem(&table.name, &full);
        TrackingNames {
            database: database_of(table, home).to_string(),
            table: format!("hubsync_tr_{base}"),
            insert_trigger: format!("hubsync_{base}_ins"),
            update_trigger: format!("hubsync_{base}_upd"),
            delete_trigger: format!("hubsync_{base}_del"),
        }
    }

    /// The tracking table, qualified.
    pub fn qualified_table(&self) -> String {
        in_db(&self.database, &self.table)
    }

    /// The three triggers.
    pub fn triggers(&self) -> [&str; 3] {
        [&self.insert_trigger, &self.update_trigger, &self.delete_trigger]
    }
}

/// The table's name as stored in `hubsync_scope` and hashed into object
/// names: unqualified when it lives in the endpoint's own database.
pub(crate) fn table_key(table: &TableName, home: &str) -> String {
    match table.schema.as_deref() {
        Some(s) if s != home => table.to_string(),
        _ => table.name.clone(),
    }
}

/// `pk_1, pk_2, ...` for a key of `n` columns.
pub(crate) fn pk_columns(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("pk_{i}")).collect()
}

/// Whether a trigger of this name exists in the database.
async fn trigger_exists(conn: &mut MySqlConnection, db: &str, name: &str) -> Result<bool, EndpointError> {
    let row = query("SELECT 1 FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = ? AND TRIGGER_NAME = ?")
        .bind(db.to_string())
        .bind(name.to_string())
        .fetch_optional(&mut *conn)
        .await
        .map_err(ctx(format_args!("checking whether trigger `{name}` exists")))?;
    Ok(row.is_some())
}

/// Fails with [`ErrorKind::NotProvisioned`] when the table has no tracking table.
pub(crate) async fn require_tracking(
    conn: &mut MySqlConnection,
    home: &str,
    table: &TableName,
) -> Result<TrackingNames, EndpointError> {
    let names = TrackingNames::for_table(table, home);
    if !table_exists(conn, &names.database, &names.table).await? {
        return Err(EndpointError::new(
            ErrorKind::NotProvisioned,
            format!("table `{table}` is not provisioned for sync"),
        )
        .with_hint("run `hubsync provision` first"));
    }
    Ok(names)
}

/// Creates the shared hubsync tables if missing.
pub(crate) async fn ensure_shared(conn: &mut MySqlConnection, home: &str) -> Result<(), EndpointError> {
    for stmt in SHARED_DDL {
        ddl(shared_sql(stmt, home)).execute(&mut *conn).await.map_err(ctx("creating hubsync's shared tables"))?;
    }
    Ok(())
}

/// The key columns' definitions in the tracking table: the base table's own
/// types, character sets and collations, so keys compare the same way.
async fn key_definitions(
    conn: &mut MySqlConnection,
    table: &TableSchema,
    names: &TrackingNames,
) -> Result<Vec<String>, EndpointError> {
    let local = local_columns(conn, &names.database, &table.name.name).await?;
    if local.is_empty() {
        return Err(EndpointError::new(ErrorKind::TableMissing, format!("table `{}` does not exist", table.name)));
    }
    let mut defs = Vec::with_capacity(table.primary_key.len());
    for (i, key) in table.primary_key.iter().enumerate() {
        let col = local.iter().find(|l| l.name.eq_ignore_ascii_case(key)).ok_or_else(|| {
            EndpointError::from(SchemaError::MissingColumn { table: table.name.clone(), column: key.clone() })
        })?;
        if !is_safe_type(&col.column_type) {
            return Err(EndpointError::new(
                ErrorKind::UnmappableType,
                format!(
                    "key column `{key}` of `{}` has the type `{}`, which hubsync cannot track",
                    table.name, col.column_type
                ),
            )
            .with_hint("use a key of integer, decimal, text, binary or temporal type"));
        }
        let mut def = format!("pk_{} {}", i + 1, col.column_type);
        if let (Some(cs), Some(coll)) = (&col.charset, &col.collation)
            && is_safe_type(cs)
            && is_safe_type(coll)
        {
            def.push_str(&format!(" CHARACTER SET {cs} COLLATE {coll}"));
        }
        def.push_str(" NOT NULL");
        defs.push(def);
    }
    Ok(defs)
}

/// Creates the tracking table (with its version index) if missing; returns
/// whether it was created now.
async fn ensure_tracking_table(
    conn: &mut MySqlConnection,
    table: &TableSchema,
    names: &TrackingNames,
) -> Result<bool, EndpointError> {
    if table_exists(conn, &names.database, &names.table).await? {
        return Ok(false);
    }
    let defs = key_definitions(conn, table, names).await?;
    let pks = pk_columns(defs.len());
    let create = format!(
        "CREATE TABLE IF NOT EXISTS {} ({}, version BIGINT NOT NULL, origin VARCHAR(255) NOT NULL, \
         deleted TINYINT NOT NULL, changed_at BIGINT NOT NULL, PRIMARY KEY ({}), KEY hubsync_by_version (version)) \
         ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
        names.qualified_table(),
        defs.join(", "),
        pks.join(", ")
    );
    ddl(create)
        .execute(&mut *conn)
        .await
        .map_err(ctx(format_args!("creating the tracking table of `{}`", table.name)))?;
    Ok(true)
}

/// The trigger statements that record `row_ref` (NEW or OLD) as the key's
/// latest change. The version is a fresh `hubsync_seq` row, uncommitted
/// until the writer commits (see `versions.rs`).
fn record_stmts(table: &TableSchema, names: &TrackingNames, home: &str, row_ref: &str, deleted: bool) -> String {
    let pks = pk_columns(table.primary_key.len());
    let values: Vec<String> = table.primary_key.iter().map(|k| format!("{row_ref}.{}", quote_ident(k))).collect();
    let key_set: Vec<String> = pks.iter().map(|pk| format!("{pk} = VALUES({pk})")).collect();
    format!(
        "INSERT INTO {seq} () VALUES (); \
         INSERT INTO {tr} ({pks}, version, origin, deleted, changed_at) \
         VALUES ({vals}, LAST_INSERT_ID(), {ORIGIN_EXPR}, {del}, {NOW_EXPR}) \
         ON DUPLICATE KEY UPDATE {key_set}, version = VALUES(version), origin = VALUES(origin), \
         deleted = VALUES(deleted), changed_at = VALUES(changed_at);",
        seq = seq_table(home),
        tr = names.qualified_table(),
        pks = pks.join(", "),
        vals = values.join(", "),
        key_set = key_set.join(", "),
        del = i32::from(deleted),
    )
}

/// `a <=> b` exactly: equal as values and as bytes, so a case-only change
/// under a case-insensitive collation, or -0.0 vs 0.0, counts as a change.
fn same(col: &str) -> String {
    let c = quote_ident(col);
    format!("(OLD.{c} <=> NEW.{c} AND BINARY OLD.{c} <=> BINARY NEW.{c})")
}

/// Creates (or replaces) the three triggers. Writes made while the session
/// sets `@hubsync_loading` (a bulk load, which tracks its rows itself) are
/// not recorded; updates that leave every synced column as it was neither.
pub(crate) async fn create_triggers(
    conn: &mut MySqlConnection,
    table: &TableSchema,
    names: &TrackingNames,
    home: &str,
) -> Result<(), EndpointError> {
    let t = qualified(&table.name, home);
    let key_same: Vec<String> = table.primary_key.iter().map(|k| same(k)).collect();
    let cols_same: Vec<String> = table.columns.iter().map(|c| same(&c.name)).collect();
    let trigger = |name: &str| in_db(&names.database, name);
    let statements = [
        format!(
            "CREATE OR REPLACE TRIGGER {} AFTER INSERT ON {t} FOR EACH ROW BEGIN \
             IF @hubsync_loading IS NULL THEN {} END IF; END",
            trigger(&names.insert_trigger),
            record_stmts(table, names, home, "NEW", false)
        ),
        // A key update is a delete of the old key and an insert of the new one.
        format!(
            "CREATE OR REPLACE TRIGGER {} AFTER UPDATE ON {t} FOR EACH ROW BEGIN \
             IF @hubsync_loading IS NULL THEN \
               IF NOT ({}) THEN {} {} \
               ELSEIF NOT ({}) THEN {} END IF; \
             END IF; END",
            trigger(&names.update_trigger),
            key_same.join(" AND "),
            record_stmts(table, names, home, "OLD", true),
            record_stmts(table, names, home, "NEW", false),
            cols_same.join(" AND "),
            record_stmts(table, names, home, "NEW", false),
        ),
        format!(
            "CREATE OR REPLACE TRIGGER {} AFTER DELETE ON {t} FOR EACH ROW BEGIN \
             IF @hubsync_loading IS NULL THEN {} END IF; END",
            trigger(&names.delete_trigger),
            record_stmts(table, names, home, "OLD", true)
        ),
    ];
    let names_in_order = [&names.insert_trigger, &names.update_trigger, &names.delete_trigger];
    for (stmt, name) in statements.into_iter().zip(names_in_order) {
        // Replacing a trigger takes a metadata lock that waits for, and then
        // blocks, the application's writes: skip it when nothing changed.
        if trigger_body(conn, &names.database, name).await?.as_deref()
            == stmt.split_once(" FOR EACH ROW ").map(|(_, b)| b)
        {
            continue;
        }
        ddl(stmt).execute(&mut *conn).await.map_err(ctx(format_args!("creating the triggers of `{}`", table.name)))?;
    }
    Ok(())
}

/// The body (`BEGIN ... END`) of an existing trigger, if it exists.
async fn trigger_body(conn: &mut MySqlConnection, database: &str, name: &str) -> Result<Option<String>, EndpointError> {
    let row = query(
        "SELECT CAST(ACTION_STATEMENT AS CHAR CHARACTER SET utf8mb4) FROM information_schema.TRIGGERS \
         WHERE TRIGGER_SCHEMA = ? AND TRIGGER_NAME = ?",
    )
    .bind(database.to_string())
    .bind(name.to_string())
    .fetch_optional(&mut *conn)
    .await
    .map_err(ctx(format_args!("looking for trigger `{name}`")))?;
    match row {
        Some(row) => Ok(Some(row.try_get(0).map_err(ctx(format_args!("reading trigger `{name}`")))?)),
        None => Ok(None),
    }
}

/// Gives rows tracking rows with fresh versions, set-based: one
/// `hubsync_seq` row per recorded row (consecutive ids from one INSERT ...
/// SELECT), then the tracking rows numbered from the first. With `replace`
/// every row gets one (overwriting old tombstones); otherwise only rows that
/// have none.
pub(crate) async fn record_rows(
    conn: &mut MySqlConnection,
    table: &TableSchema,
    names: &TrackingNames,
    home: &str,
    origin: &str,
    replace: bool,
) -> Result<u64, EndpointError> {
    let t = qualified(&table.name, home);
    let tr = names.qualified_table();
    let pks = pk_columns(table.primary_key.len());
    let key_refs: Vec<String> = table.primary_key.iter().map(|k| format!("t.{}", quote_ident(k))).collect();
    let filter = if replace {
        String::new()
    } else {
        let matches: Vec<String> = pks.iter().zip(&key_refs).map(|(pk, k)| format!("x.{pk} = {k}")).collect();
        format!("WHERE NOT EXISTS (SELECT 1 FROM {tr} AS x WHERE {})", matches.join(" AND "))
    };
    // Locking reads: the rows to record cannot change until commit.
    let wanted: i64 = query(format!("SELECT COUNT(*) FROM (SELECT 1 FROM {t} AS t {filter} LOCK IN SHARE MODE) AS w"))
        .fetch_one(&mut *conn)
        .await
        .and_then(|row| row.try_get(0))
        .map_err(ctx(format_args!("counting the rows of `{}`", table.name)))?;
    if wanted == 0 {
        return Ok(0);
    }
    let allocated = query(format!("INSERT INTO {} (id) SELECT NULL FROM {t} AS t {filter}", seq_table(home)))
        .execute(&mut *conn)
        .await
        .map_err(ctx("allocating versions"))?;
    let first = i64::try_from(allocated.last_insert_id()).unwrap_or(0);
    let count = i64::try_from(allocated.rows_affected()).unwrap_or(0);
    let mine: i64 = query(format!("SELECT COUNT(*) FROM {} WHERE id BETWEEN ? AND ?", seq_table(home)))
        .bind(first)
        .bind(first + count - 1)
        .fetch_one(&mut *conn)
        .await
        .and_then(|row| row.try_get(0))
        .map_err(ctx("allocating versions"))?;
    if count != wanted || mine != count {
        return Err(EndpointError::new(
            ErrorKind::Other,
            format!("the versions allocated for the rows of `{}` are not consecutive", table.name),
        )
        .with_hint("set innodb_autoinc_lock_mode to 0 or 1 (MariaDB's default), or retry"));
    }
    let sql = format!(
        "INSERT INTO {tr} ({pks}, version, origin, deleted, changed_at) \
         SELECT {keys}, ? - 1 + ROW_NUMBER() OVER (ORDER BY {keys}), ?, 0, {NOW_EXPR} FROM {t} AS t {filter} \
         ON DUPLICATE KEY UPDATE version = VALUES(version), origin = VALUES(origin), deleted = VALUES(deleted), \
         changed_at = VALUES(changed_at)",
        pks = pks.join(", "),
        keys = key_refs.join(", "),
    );
    let written = query(sql)
        .bind(first)
        .bind(origin.to_string())
        .execute(&mut *conn)
        .await
        .map_err(ctx(format_args!("recording the existing rows of `{}`", table.name)))?;
    let _ = written;
    Ok(u64::try_from(count).unwrap_or(0))
}

async fn has_marker(conn: &mut MySqlConnection, home: &str, key: &str) -> Result<bool, EndpointError> {
    let row = query(format!(
        "SELECT 1 FROM {}.hubsync_scope WHERE scope = '' AND peer = '' AND table_name = ? AND kind = ?",
        quote_ident(home)
    ))
    .bind(key.to_string())
    .bind(BACKFILL_MARKER)
    .fetch_optional(&mut *conn)
    .await
    .map_err(ctx("reading the provisioning marker"))?;
    Ok(row.is_some())
}

async fn set_marker(conn: &mut MySqlConnection, home: &str, key: &str, on: bool) -> Result<(), EndpointError> {
    let sql = if on {
        format!(
            "INSERT IGNORE INTO {}.hubsync_scope (scope, peer, table_name, kind, version) VALUES ('', '', ?, ?, 0)",
            quote_ident(home)
        )
    } else {
        format!(
            "DELETE FROM {}.hubsync_scope WHERE scope = '' AND peer = '' AND table_name = ? AND kind = ?",
            quote_ident(home)
        )
    };
    query(sql)
        .bind(key.to_string())
        .bind(BACKFILL_MARKER)
        .execute(&mut *conn)
        .await
        .map_err(ctx("writing the provisioning marker"))?;
    Ok(())
}

/// Provisions one table (see [`hubsync_core::Endpoint::provision`]).
pub(crate) async fn provision(pool: &MySqlPool, home: &str, table: &TableSchema) -> Result<(), EndpointError> {
    if table.primary_key.is_empty() {
        return Err(SchemaError::NoPrimaryKey { table: table.name.clone() }.into());
    }
    let names = TrackingNames::for_table(&table.name, home);
    let key = table_key(&table.name, home);
    let context = format!("provisioning `{}`", table.name);
    let mut conn = pool.acquire().await.map_err(ctx(&context))?;
    let result = async {
        if !table_exists(&mut conn, &names.database, &table.name.name).await? {
            return Err(EndpointError::new(ErrorKind::TableMissing, format!("table `{}` does not exist", table.name)));
        }
        refuse_foreign_key_actions(&mut conn, &names.database, &table.name).await?;
        ensure_shared(&mut conn, home).await?;
        if !table_exists(&mut conn, &names.database, &names.table).await? {
            // Marked before the table exists: a crash before the rows are
            // recorded leaves the marker, and the next provisioning records them.
            set_marker(&mut conn, home, &key, true).await?;
            ensure_tracking_table(&mut conn, table, &names).await?;
        }
        // Replaced every time: the synced column selection may have changed.
        create_triggers(&mut conn, table, &names, home).await?;
        if has_marker(&mut conn, home, &key).await? {
            let mut tx = sqlx::Connection::begin(&mut *conn).await.map_err(ctx("starting a transaction"))?;
            record_rows(&mut tx, table, &names, home, "", false).await?;
            set_marker(&mut tx, home, &key, false).await?;
            tx.commit().await.map_err(ctx("committing the recorded rows"))?;
        }
        Ok(())
    }
    .await;
    result.map_err(|e| e.context(&context))
}

/// Whether the table's tracking objects exist.
pub(crate) async fn is_provisioned(pool: &MySqlPool, home: &str, table: &TableName) -> Result<bool, EndpointError> {
    let names = TrackingNames::for_table(table, home);
    let mut conn = pool.acquire().await.map_err(ctx(format_args!("checking whether `{table}` is provisioned")))?;
    table_exists(&mut conn, &names.database, &names.table).await
}

/// Removes the tracking objects of these tables, and the shared objects when
/// no tracking table remains in the endpoint's database; returns what was dropped.
pub(crate) async fn deprovision(
    pool: &MySqlPool,
    home: &str,
    tables: &[TableName],
) -> Result<Vec<String>, EndpointError> {
    let mut conn = pool.acquire().await.map_err(ctx("deprovisioning"))?;
    let mut dropped = Vec::new();
    let scope_exists = table_exists(&mut conn, home, "hubsync_scope").await?;
    for table in tables {
        let names = TrackingNames::for_table(table, home);
        for trigger in names.triggers() {
            if trigger_exists(&mut conn, &names.database, trigger).await? {
                ddl(format!("DROP TRIGGER IF EXISTS {}", in_db(&names.database, trigger)))
                    .execute(&mut *conn)
                    .await
                    .map_err(ctx(format_args!("dropping trigger `{trigger}`")))?;
                dropped.push(trigger.to_string());
            }
        }
        if table_exists(&mut conn, &names.database, &names.table).await? {
            ddl(format!("DROP TABLE IF EXISTS {}", names.qualified_table()))
                .execute(&mut *conn)
                .await
                .map_err(ctx(format_args!("dropping `{}`", names.table)))?;
            dropped.push(names.table.clone());
        }
        if scope_exists {
            query(format!("DELETE FROM {}.hubsync_scope WHERE table_name = ?", quote_ident(home)))
                .bind(table_key(table, home))
                .execute(&mut *conn)
                .await
                .map_err(ctx(format_args!("removing the watermarks of `{table}`")))?;
        }
    }
    let remaining: i64 = query(
        "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME LIKE 'hubsync\\_tr\\_%'",
    )
    .bind(home.to_string())
    .fetch_one(&mut *conn)
    .await
    .and_then(|row| row.try_get(0))
    .map_err(ctx("looking for remaining tracking tables"))?;
    if remaining == 0 {
        for name in SHARED_TABLES {
            if table_exists(&mut conn, home, name).await? {
                ddl(format!("DROP TABLE IF EXISTS {}", in_db(home, name)))
                    .execute(&mut *conn)
                    .await
                    .map_err(ctx(format_args!("dropping `{name}`")))?;
                dropped.push(name.to_string());
            }
        }
    }
    Ok(dropped)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_mysql_limits_and_do_not_collide() {
        let long = TrackingNames::for_table(&TableName::new("x".repeat(500)), "db");
        for name in [&long.table, &long.insert_trigger, &long.update_trigger, &long.delete_trigger] {
            assert!(name.len() <= 64, "{name}");
            assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "{name}");
        }
        for (x, y) in [("a b", "ab"), ("A", "a"), ("a.b", "ab")] {
            assert_ne!(
                TrackingNames::for_table(&TableName::new(x), "d").table,
                TrackingNames::for_table(&TableName::new(y), "d").table
            );
        }
        let own = TableName { schema: Some("d".into()), name: "t".into() };
        assert_eq!(TrackingNames::for_table(&own, "d"), TrackingNames::for_table(&TableName::new("t"), "d"));
    }
}

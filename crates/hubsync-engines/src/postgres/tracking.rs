//! Change tracking objects: their names, the provisioning DDL, the
//! statement-level triggers, folding the change log and deprovisioning.
//!
//! Every tracking object lives in the `hubsync` schema except the triggers,
//! which PostgreSQL keeps with their table. The triggers fire once per
//! statement (but for the one that logs keys an update moved, once per moved
//! row), read the statement's rows from its transition tables and only
//! append them to the table's change log: an append touches no index and
//! updates nothing, which is what keeps tracking cheap for the application
//! (an upsert into the keyed tracking table made a bulk UPDATE 3.5× slower
//! and cost pgbench 20 % of its transactions).
//!
//! hubsync folds the log into the tracking table (one row per key, as
//! DESIGN.md describes) before it reads or judges changes: when it takes a
//! snapshot version, before applying a batch, before counting and before a
//! bulk load. So everything else reads the tracking table alone.
//! Every write to the tracking table and the log draws from one sequence, in
//! the order the writes happened (a trigger draws after its statement's row
//! locks, a direct write per row after the row's), and a fold never replaces
//! a later write with an earlier one.

use hubsync_core::{EndpointError, ErrorKind, HUB_ORIGIN, SchemaError, TableName, TableSchema};
use sqlx::{PgConnection, PgPool, Row};

use super::dialect::{DEFAULT_SCHEMA, HUBSYNC_SCHEMA, in_hubsync, qualified, quote_ident};
use super::errors::ctx;
use super::introspect::{Shape, shape, table_oid};
use super::query;

/// The version of the writing transaction: its full 64-bit id.
pub(crate) const VERSION_EXPR: &str = "pg_current_xact_id()::text::int8";

/// Who made the change: the peer an applying transaction set, or '' locally.
pub(crate) const ORIGIN_EXPR: &str = "coalesce(current_setting('hubsync.origin', true), '')";

/// Now, in microseconds since the Unix epoch (UTC).
pub(crate) const NOW_EXPR: &str = "(extract(epoch from clock_timestamp()) * 1000000)::int8";

/// The version a trigger logs: the writing transaction's id as `xid8` (see
/// [`LOG_AS_TRACKED`]).
const LOG_VERSION_EXPR: &str = "pg_current_xact_id()";

/// The time a trigger logs, as `timestamptz` (see [`LOG_AS_TRACKED`]).
const LOG_NOW_EXPR: &str = "clock_timestamp()";

/// The change log's `version, origin, deleted, changed_at` as the tracking
/// table holds them. The log keeps the transaction id and the time in the
/// types PostgreSQL hands them out in (`xid8`, `timestamptz`): the triggers
/// store them per row as they come, and the conversions to `int8` (through
/// text, and through `numeric` arithmetic) happen here, off the
/// application's path, when hubsync reads or folds the log.
pub(crate) const LOG_AS_TRACKED: &str = "version::text::int8 AS version, origin, deleted, \
     (extract(epoch from changed_at) * 1000000)::int8 AS changed_at";

/// The shared tables, in creation order; dropped when no tracked table remains.
pub(crate) const SHARED_TABLES: [&str; 3] = ["scope", "session", HUB_TABLES];

/// The shared table naming the tables this database is a hub for (see
/// [`records_received`]).
const HUB_TABLES: &str = "hub_tables";

/// The hub tables' DDL: one row per table provisioned as a hub's, by
/// [`table_key`].
const HUB_TABLES_DDL: &str = "CREATE TABLE IF NOT EXISTS \"hubsync\".\"hub_tables\" (table_name text PRIMARY KEY)";

/// The shared sequence ordering the writes to tracking tables and logs.
const SEQUENCE: &str = "seq";

/// The next number of [`SEQUENCE`].
pub(crate) const NEXT_SEQ: &str = "nextval('\"hubsync\".\"seq\"')";

/// The class of the advisory locks that serialise folding one table's log
/// (two-key advisory locks live apart from the one-key [`DDL_LOCK`]).
const FOLD_LOCK_CLASS: i32 = 0x6875_6273;

/// The setting an applying transaction sets to a table's oid while it writes
/// that table's tracking rows itself (with the changes' commit times), so the
/// table's triggers log nothing for that statement, except the rows a
/// foreign key's action changed (see [`trigger_specs`]). Triggers of other
/// tables (cascades, the application's own triggers) log as usual.
pub(crate) const DIRECT_SETTING: &str = "hubsync.direct";

/// An arbitrary constant key for the advisory lock serialising hubsync's DDL
/// (two provisions creating the schema at once would otherwise collide).
const DDL_LOCK: i64 = 0x0068_7562_7379_6e63;

/// The scope table's DDL.
pub(crate) const SCOPE_DDL: &str = "CREATE TABLE IF NOT EXISTS \"hubsync\".\"scope\" (scope text NOT NULL, \
     peer text NOT NULL, table_name text NOT NULL, kind text NOT NULL, version int8 NOT NULL, \
     PRIMARY KEY (scope, peer, table_name, kind))";

/// The session table's DDL.
pub(crate) const SESSION_DDL: &str = "CREATE TABLE IF NOT EXISTS \"hubsync\".\"session\" (scope text NOT NULL, \
     peer text NOT NULL, state text NOT NULL, last_attempt_at int8 NOT NULL, last_success_at int8 NULL, \
     uploaded int8 NOT NULL, downloaded int8 NOT NULL, message text NOT NULL, PRIMARY KEY (scope, peer))";

/// The names of one table's tracking objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackingNames {
    /// The tracking side table (in schema `hubsync`).
    pub table: String,
    /// The index on the tracking table's version.
    pub index: String,
    /// The change log the triggers append to (in schema `hubsync`).
    pub log: String,
    /// The trigger functions (in schema `hubsync`): insert, update, delete,
    /// key change (the last exists only for some tables: see `trigger_specs`).
    pub functions: [String; 4],
    /// The triggers on the user table: insert, update, delete, key change.
    pub triggers: [String; 4],
}

impl TrackingNames {
    /// Derives the names from the table's name: a readable slug plus a hash of
    /// the full name, so any name gives valid names within 63 bytes, and names
    /// that slug alike still differ.
    pub fn for_table(table: &TableName) -> Self {
        let full = table_key(table);
        Self::from_stem(&crate::naming::object_stem(&full, &full))
    }

    /// The names sharing one stem (the part after `hubsync_tr_`).
    fn from_stem(base: &str) -> Self {
        let ops = ["ins", "upd", "del", "key"];
        TrackingNames {
            table: format!("hubsync_tr_{base}"),
            index: format!("hubsync_ix_{base}"),
            log: format!("hubsync_lg_{base}"),
            functions: ops.map(|op| format!("hubsync_fn_{base}_{op}")),
            triggers: ops.map(|op| format!("hubsync_{base}_{op}")),
        }
    }

    /// The tracking table, qualified.
    pub fn qualified_table(&self) -> String {
        in_hubsync(&self.table)
    }

    /// The change log, qualified.
    pub fn qualified_log(&self) -> String {
        in_hubsync(&self.log)
    }
}

/// The table's name as stored in the scope table and hashed into object
/// names: `public.t` is the same table as `t`, so `public` is left out.
pub(crate) fn table_key(table: &TableName) -> String {
    match table.schema.as_deref() {
        Some(DEFAULT_SCHEMA) | None => table.name.clone(),
        Some(_) => table.to_string(),
    }
}

/// `pk_1, pk_2, ...` for a key of `n` columns.
pub(crate) fn pk_columns(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("pk_{i}")).collect()
}

/// Whether a relation exists in schema `hubsync`.
pub(crate) async fn hubsync_table_exists(conn: &mut PgConnection, name: &str) -> Result<bool, EndpointError> {
    let row = query("SELECT to_regclass($1) IS NOT NULL")
        .bind(in_hubsync(name))
        .fetch_one(&mut *conn)
        .await
        .map_err(ctx(format_args!("checking whether `{name}` exists")))?;
    row.try_get::<bool, _>(0).map_err(ctx(format_args!("checking whether `{name}` exists")))
}

/// Fails with [`ErrorKind::NotProvisioned`] when the table has no tracking table.
pub(crate) async fn require_tracking(
    conn: &mut PgConnection,
    table: &TableName,
) -> Result<TrackingNames, EndpointError> {
    let names = TrackingNames::for_table(table);
    if !hubsync_table_exists(conn, &names.table).await? {
        return Err(EndpointError::new(
            ErrorKind::NotProvisioned,
            format!("table `{table}` is not provisioned for sync"),
        )
        .with_hint("run `hubsync provision` first"));
    }
    Ok(names)
}

/// Serialises hubsync's DDL across connections until the transaction ends.
pub(crate) async fn lock_ddl(conn: &mut PgConnection) -> Result<(), EndpointError> {
    query("SELECT pg_advisory_xact_lock($1)")
        .bind(DDL_LOCK)
        .execute(&mut *conn)
        .await
        .map_err(ctx("waiting for hubsync's DDL lock"))?;
    Ok(())
}

/// Creates the `hubsync` schema and its shared tables if missing.
pub(crate) async fn ensure_shared(conn: &mut PgConnection) -> Result<(), EndpointError> {
    let schema = format!("CREATE SCHEMA IF NOT EXISTS {}", quote_ident(HUBSYNC_SCHEMA));
    let sequence = format!("CREATE SEQUENCE IF NOT EXISTS {}", in_hubsync(SEQUENCE));
    for ddl in [schema.as_str(), SCOPE_DDL, SESSION_DDL, HUB_TABLES_DDL, sequence.as_str()] {
        query(ddl.to_string()).execute(&mut *conn).await.map_err(ctx("creating hubsync's shared tables"))?;
    }
    Ok(())
}

/// Creates the tracking table (key columns of the table's own key types), its
/// version index and the change log if missing.
pub(crate) async fn ensure_tracking_table(
    conn: &mut PgConnection,
    table: &TableName,
    shape: &Shape,
    names: &TrackingNames,
) -> Result<(), EndpointError> {
    let pks = pk_columns(shape.keys.len());
    let key_defs: Vec<String> = pks.iter().zip(&shape.keys).map(|(pk, k)| format!("{pk} {}", k.declared)).collect();
    let ddl = format!(
        "CREATE TABLE IF NOT EXISTS {} ({}, version int8 NOT NULL, origin text NOT NULL, \
         deleted boolean NOT NULL, changed_at int8 NOT NULL, seq int8 NOT NULL DEFAULT 0, PRIMARY KEY ({}))",
        names.qualified_table(),
        key_defs.join(", "),
        pks.join(", ")
    );
    query(ddl).execute(&mut *conn).await.map_err(ctx(format_args!("creating the tracking table of `{table}`")))?;
    // Tracking tables from before the change log have no write order yet.
    query(format!("ALTER TABLE {} ADD COLUMN IF NOT EXISTS seq int8 NOT NULL DEFAULT 0", names.qualified_table()))
        .execute(&mut *conn)
        .await
        .map_err(ctx(format_args!("upgrading the tracking table of `{table}`")))?;
    // No index and no key: the triggers only append, a fold takes it all.
    let log = format!(
        "CREATE TABLE IF NOT EXISTS {} ({}, seq int8 NOT NULL, version xid8 NOT NULL, origin text NOT NULL, \
         deleted boolean NOT NULL, changed_at timestamptz NOT NULL)",
        names.qualified_log(),
        key_defs.join(", "),
    );
    query(log).execute(&mut *conn).await.map_err(ctx(format_args!("creating the change log of `{table}`")))?;
    upgrade_log(conn, table, names).await?;
    // (version, key): the order changes are read in, so a transaction's
    // rows, which share a version, are read batch by batch off the index.
    let index = format!(
        "CREATE INDEX IF NOT EXISTS {} ON {} (version, {})",
        quote_ident(&names.index),
        names.qualified_table(),
        pks.join(", ")
    );
    query(index).execute(&mut *conn).await.map_err(ctx(format_args!("creating the tracking index of `{table}`")))?;
    Ok(())
}

/// Converts a change log from before [`LOG_AS_TRACKED`] (version and time
/// as `int8`) to the current column types, keeping its rows. Runs in the
/// provisioning transaction that also replaces the trigger functions, so no
/// application write sees the new columns with the old functions.
async fn upgrade_log(conn: &mut PgConnection, table: &TableName, names: &TrackingNames) -> Result<(), EndpointError> {
    let context = format!("upgrading the change log of `{table}`");
    let old = query(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute WHERE attrelid = to_regclass($1) \
         AND attname = 'version' AND atttypid = 'pg_catalog.int8'::regtype)",
    )
    .bind(names.qualified_log())
    .fetch_one(&mut *conn)
    .await
    .and_then(|r| r.try_get::<bool, _>(0))
    .map_err(ctx(&context))?;
    if old {
        query(format!(
            "ALTER TABLE {} ALTER COLUMN version TYPE xid8 USING version::text::xid8, \
             ALTER COLUMN changed_at TYPE timestamptz \
             USING timestamptz 'epoch' + changed_at * interval '1 microsecond'",
            names.qualified_log()
        ))
        .execute(&mut *conn)
        .await
        .map_err(ctx(&context))?;
    }
    Ok(())
}

/// Drops the table's triggers (those that exist); returns the dropped names.
pub(crate) async fn drop_triggers(
    conn: &mut PgConnection,
    table: &TableName,
    names: &TrackingNames,
) -> Result<Vec<String>, EndpointError> {
    let Some(oid) = table_oid(conn, table).await? else {
        return Ok(Vec::new());
    };
    let mut dropped = Vec::new();
    for trigger in &names.triggers {
        let exists = query("SELECT 1 FROM pg_catalog.pg_trigger WHERE tgrelid = $1::oid AND tgname = $2")
            .bind(oid)
            .bind(trigger.clone())
            .fetch_optional(&mut *conn)
            .await
            .map_err(ctx(format_args!("looking for trigger `{trigger}`")))?
            .is_some();
        if exists {
            query(format!("DROP TRIGGER IF EXISTS {} ON {}", quote_ident(trigger), qualified(table)))
                .execute(&mut *conn)
                .await
                .map_err(ctx(format_args!("dropping trigger `{trigger}`")))?;
            dropped.push(trigger.clone());
        }
    }
    Ok(dropped)
}

/// The slot of [`TrackingNames::functions`] and [`TrackingNames::triggers`]
/// of the row-level trigger that logs the old key of a row whose key an
/// update changed. It exists only beside an update trigger that reads the
/// new rows alone (see [`trigger_specs`]).
pub(crate) const KEY_SLOT: usize = 3;

/// One tracking trigger: when it fires and what its function does.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TriggerSpec {
    /// Its slot in [`TrackingNames::functions`] and [`TrackingNames::triggers`].
    slot: usize,
    /// What `CREATE TRIGGER <name>` says before `EXECUTE FUNCTION`.
    event: String,
    /// The function's plpgsql body.
    body: String,
}

/// The table's tracking triggers: set-based appends to the change log from
/// each statement's transition tables `new_rows`/`old_rows`.
///
/// An update is tracked when it changed a synced column (writes to other
/// columns are not changes to send). When every column is synced, every
/// updated row counts, and the update trigger reads only the new rows: a
/// row-level trigger on the key columns, which fires only for rows whose key
/// changed, logs their old keys as deletes. Leaving the old rows and the
/// anti-join out of the update trigger is a quarter of what tracking costs a
/// single-row update (about 23,000 of 90,000 instructions a pgbench
/// `simple-update` transaction, counted with callgrind). Otherwise one update
/// trigger compares old and new rows, and logs the old keys that no new row
/// holds as deletes.
///
/// While hubsync applies changes to the table itself (see [`DIRECT_SETTING`])
/// the triggers log nothing, except on a table with `cascades` (a foreign key
/// from the table to itself with an action): PostgreSQL puts the rows such an
/// action changes into the applying statement's own transition tables, so
/// there the triggers log the rows the applying statement did not stamp with
/// a tracking row of this transaction.
///
/// Every function draws the sequence after its statement's rows were
/// written (and their row locks waited for), so it orders this write after
/// any earlier write of the same keys; once per statement, into the one
/// plpgsql variable. The other values are evaluated in the insert itself,
/// per logged row: plpgsql sets up every assignment's expression afresh in
/// each transaction (about 5,000 instructions apiece), more than what the
/// transaction id, the origin setting and the clock cost a row, stored
/// without conversion (see [`LOG_AS_TRACKED`]). Together that is a fifth
/// less tracking cost per single-row update (421,500 → 407,500 instructions
/// a `simple-update` transaction against 355,500 untracked, over a Unix
/// socket), for 2 % more per row of a bulk update (21,800 → 22,300
/// instructions against 15,100 untracked). A key trigger's rows fire before the
/// statement's update trigger, so when one statement moves a key onto
/// another row's old key, the later upsert wins over the delete.
fn trigger_specs(table: &TableSchema, shape: &Shape, names: &TrackingNames, cascades: bool) -> Vec<TriggerSpec> {
    let pk_list = pk_columns(shape.keys.len());
    let pks = pk_list.join(", ");
    let log = names.qualified_log();
    let t = qualified(&table.name);
    let key_match: Vec<String> =
        table.primary_key.iter().map(|k| format!("o.{k} = n.{k}", k = quote_ident(k))).collect();
    let key_match = key_match.join(" AND ");
    let aliased = |alias: &str| -> String {
        table
            .primary_key
            .iter()
            .zip(&pk_list)
            .map(|(k, pk)| format!("{alias}.{} AS {pk}", quote_ident(k)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    // `changed` is a relation of (pk_1, ..., del): the keys to log.
    let append = |changed: String| {
        format!(
            "INSERT INTO {log} ({pks}, seq, version, origin, deleted, changed_at) \
             SELECT {pks}, v_seq, {LOG_VERSION_EXPR}, {ORIGIN_EXPR}, c.del, {LOG_NOW_EXPR} FROM ({changed}) AS c"
        )
    };
    let tracking = names.qualified_table();
    let stamped: Vec<String> = pk_list.iter().map(|pk| format!("k.{pk} = c.{pk}")).collect();
    let unstamped = format!(
        " WHERE NOT EXISTS (SELECT 1 FROM {tracking} k WHERE {} AND k.version = {VERSION_EXPR})",
        stamped.join(" AND ")
    );
    let new_keys = format!("SELECT {}, false AS del FROM new_rows n", aliased("n"));
    let insert = append(new_keys.clone());
    let delete = append(format!("SELECT {}, true AS del FROM old_rows o", aliased("o")));
    let key_trigger = shape.all_columns_synced && !cascades;
    let update = if key_trigger {
        append(new_keys)
    } else {
        let upserted = if shape.all_columns_synced {
            new_keys
        } else {
            let changed: Vec<String> = shape.columns.iter().map(|c| c.distinct_expr("o", "n")).collect();
            format!(
                "{new_keys} LEFT JOIN old_rows o ON {key_match} WHERE o.{} IS NULL OR {}",
                quote_ident(&table.primary_key[0]),
                if changed.is_empty() { "false".to_string() } else { changed.join(" OR ") },
            )
        };
        append(format!(
            "{upserted} UNION ALL SELECT {}, true FROM old_rows o WHERE NOT EXISTS (SELECT 1 FROM new_rows n WHERE {key_match})",
            aliased("o")
        ))
    };
    let direct = format!("current_setting('{DIRECT_SETTING}', true) = TG_RELID::text");
    let function = |stmt: &str| {
        let (stand_aside, logged) = if cascades {
            (String::new(), format!("IF {direct} THEN {stmt}{unstamped}; ELSE {stmt}; END IF;"))
        } else {
            (format!("IF {direct} THEN RETURN NULL; END IF; "), format!("{stmt};"))
        };
        format!("DECLARE v_seq int8; BEGIN {stand_aside}v_seq := {NEXT_SEQ}; {logged} RETURN NULL; END")
    };
    let statement = |slot: usize, event: &str, referencing: &str, stmt: &str| TriggerSpec {
        slot,
        event: format!("AFTER {event} ON {t} REFERENCING {referencing} FOR EACH STATEMENT"),
        body: function(stmt),
    };
    let mut specs = vec![
        statement(0, "INSERT", "NEW TABLE AS new_rows", &insert),
        if key_trigger {
            statement(1, "UPDATE", "NEW TABLE AS new_rows", &update)
        } else {
            statement(1, "UPDATE", "OLD TABLE AS old_rows NEW TABLE AS new_rows", &update)
        },
        statement(2, "DELETE", "OLD TABLE AS old_rows", &delete),
    ];
    if key_trigger {
        let keys: Vec<String> = table.primary_key.iter().map(|k| quote_ident(k)).collect();
        let moved: Vec<String> = keys.iter().map(|k| format!("OLD.{k} IS DISTINCT FROM NEW.{k}")).collect();
        let old_keys: Vec<String> = keys.iter().map(|k| format!("OLD.{k}")).collect();
        let stmt = format!(
            "INSERT INTO {log} ({pks}, seq, version, origin, deleted, changed_at) \
             VALUES ({}, v_seq, {LOG_VERSION_EXPR}, {ORIGIN_EXPR}, true, {LOG_NOW_EXPR})",
            old_keys.join(", ")
        );
        specs.push(TriggerSpec {
            slot: KEY_SLOT,
            event: format!("AFTER UPDATE OF {} ON {t} FOR EACH ROW WHEN ({})", keys.join(", "), moved.join(" OR ")),
            body: function(&stmt),
        });
    }
    specs
}

/// Moves the change log's visible rows into the tracking table: per key the
/// latest (highest sequence) row, and only over an earlier tracking row.
///
/// Run in the caller's transaction, after an advisory lock per log, so two
/// folds of one log never interleave. Returns the tracking rows written.
pub(crate) async fn fold(
    conn: &mut PgConnection,
    names: &TrackingNames,
    key_count: usize,
) -> Result<u64, EndpointError> {
    let context = format!("folding the change log `{}`", names.log);
    query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
        .bind(FOLD_LOCK_CLASS)
        .bind(names.log.clone())
        .execute(&mut *conn)
        .await
        .map_err(ctx(&context))?;
    // The fold sorts the moved rows by key: in memory, not on disk (the
    // default 4 MB spills a 100,000-row fold to a temporary file). Local to
    // the caller's transaction.
    query("SELECT set_config('work_mem', '64MB', true)").execute(&mut *conn).await.map_err(ctx(&context))?;
    let pks = pk_columns(key_count).join(", ");
    let sql = format!(
        "WITH moved AS (DELETE FROM {log} RETURNING {pks}, seq, {LOG_AS_TRACKED}), \
         latest AS (SELECT DISTINCT ON ({pks}) * FROM moved ORDER BY {pks}, seq DESC) \
         INSERT INTO {tr} AS tr ({pks}, version, origin, deleted, changed_at, seq) \
         SELECT {pks}, version, origin, deleted, changed_at, seq FROM latest \
         ON CONFLICT ({pks}) DO UPDATE SET version = excluded.version, origin = excluded.origin, \
         deleted = excluded.deleted, changed_at = excluded.changed_at, seq = excluded.seq \
         WHERE tr.seq < excluded.seq",
        log = names.qualified_log(),
        tr = names.qualified_table(),
    );
    let moved = query(sql).execute(&mut *conn).await.map_err(ctx(&context))?.rows_affected();
    Ok(moved)
}

/// Whether the table's change log holds a row this transaction can see.
pub(crate) async fn log_has_rows(conn: &mut PgConnection, names: &TrackingNames) -> Result<bool, EndpointError> {
    query(format!("SELECT EXISTS (SELECT 1 FROM {})", names.qualified_log()))
        .fetch_one(&mut *conn)
        .await
        .and_then(|r| r.try_get::<bool, _>(0))
        .map_err(ctx(format_args!("looking at the change log `{}`", names.log)))
}

/// [`fold`] in the caller's transaction when the log holds a visible row;
/// an empty log (a member's, almost always) costs one look and takes no lock.
pub(crate) async fn fold_logged(
    conn: &mut PgConnection,
    names: &TrackingNames,
    key_count: usize,
) -> Result<u64, EndpointError> {
    if !log_has_rows(conn, names).await? {
        return Ok(0);
    }
    fold(conn, names, key_count).await
}

/// Folds the log (see [`fold_logged`]) in a transaction of its own.
async fn fold_pending(conn: &mut PgConnection, names: &TrackingNames, key_count: usize) -> Result<u64, EndpointError> {
    let mut tx = sqlx::Connection::begin(&mut *conn).await.map_err(ctx("folding the change log"))?;
    let moved = fold_logged(&mut tx, names, key_count).await?;
    tx.commit().await.map_err(ctx(format_args!("folding the change log `{}`", names.log)))?;
    Ok(moved)
}

/// Folds every change log of this database (see [`fold_pending`]), each in
/// its own short transaction.
pub(crate) async fn fold_all(pool: &PgPool) -> Result<u64, EndpointError> {
    let mut conn = pool.acquire().await.map_err(ctx("folding the change logs"))?;
    let logs = query(
        "SELECT c.relname::text, (SELECT count(*) FROM pg_catalog.pg_attribute a WHERE a.attrelid = c.oid \
           AND a.attnum > 0 AND NOT a.attisdropped AND a.attname LIKE 'pk\\_%') \
         FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = $1 AND c.relkind = 'r' AND c.relname LIKE 'hubsync\\_lg\\_%'",
    )
    .bind(HUBSYNC_SCHEMA)
    .fetch_all(&mut *conn)
    .await
    .map_err(ctx("listing the change logs"))?;
    let mut moved = 0;
    for row in logs {
        let log: String = row.try_get(0).map_err(ctx("listing the change logs"))?;
        let key_count: i64 = row.try_get(1).map_err(ctx("listing the change logs"))?;
        let Some(stem) = log.strip_prefix("hubsync_lg_") else { continue };
        let names = TrackingNames::from_stem(stem);
        moved += fold_pending(&mut conn, &names, usize::try_from(key_count).unwrap_or(0)).await?;
    }
    Ok(moved)
}

/// Whether the table has a foreign key to itself with an action (`ON DELETE
/// CASCADE`, `SET NULL`, `ON UPDATE CASCADE`, ...): see [`trigger_specs`].
async fn cascades_within(conn: &mut PgConnection, table: &TableName) -> Result<bool, EndpointError> {
    let Some(oid) = table_oid(conn, table).await? else { return Ok(false) };
    let found = query(
        "SELECT 1 FROM pg_catalog.pg_constraint WHERE contype = 'f' AND conrelid = $1::oid AND confrelid = $1::oid \
         AND (confdeltype NOT IN ('a', 'r') OR confupdtype NOT IN ('a', 'r'))",
    )
    .bind(oid)
    .fetch_optional(&mut *conn)
    .await
    .map_err(ctx(format_args!("reading the foreign keys of `{table}`")))?;
    Ok(found.is_some())
}

/// Creates (or replaces) the trigger functions and creates the triggers
/// (see [`trigger_specs`]); drops the key trigger's function where the
/// table has no key trigger.
pub(crate) async fn create_triggers(
    conn: &mut PgConnection,
    table: &TableSchema,
    shape: &Shape,
    names: &TrackingNames,
) -> Result<(), EndpointError> {
    let specs = trigger_specs(table, shape, names, cascades_within(conn, &table.name).await?);
    for spec in &specs {
        const TAG: &str = "$hubsync_body$";
        if spec.body.contains(TAG) {
            return Err(EndpointError::new(
                ErrorKind::Schema,
                format!("a column name of `{}` contains `{TAG}`, which hubsync cannot track", table.name),
            ));
        }
        let function = in_hubsync(&names.functions[spec.slot]);
        query(format!(
            "CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS {TAG}{}{TAG}",
            spec.body
        ))
        .execute(&mut *conn)
        .await
        .map_err(ctx(format_args!("creating the trigger functions of `{}`", table.name)))?;
        query(format!(
            "CREATE TRIGGER {} {} EXECUTE FUNCTION {function}()",
            quote_ident(&names.triggers[spec.slot]),
            spec.event
        ))
        .execute(&mut *conn)
        .await
        .map_err(ctx(format_args!("creating the triggers of `{}`", table.name)))?;
    }
    if !specs.iter().any(|spec| spec.slot == KEY_SLOT) {
        drop_function(conn, &names.functions[KEY_SLOT]).await?;
    }
    Ok(())
}

/// Whether the table has exactly the tracking triggers [`trigger_specs`]
/// gives it now, enabled, and their functions hold exactly those bodies.
async fn triggers_current(
    conn: &mut PgConnection,
    table: &TableSchema,
    shape: &Shape,
    names: &TrackingNames,
) -> Result<bool, EndpointError> {
    let Some(oid) = table_oid(conn, &table.name).await? else {
        return Ok(false);
    };
    let specs = trigger_specs(table, shape, names, cascades_within(conn, &table.name).await?);
    let rows = query(
        "SELECT tg.tgname::text, p.proname::text, p.prosrc, n.nspname::text, tg.tgenabled <> 'D' \
         FROM pg_catalog.pg_trigger tg JOIN pg_catalog.pg_proc p ON p.oid = tg.tgfoid \
         JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace \
         WHERE tg.tgrelid = $1::oid AND tg.tgname = ANY($2::text[])",
    )
    .bind(oid)
    .bind(names.triggers.to_vec())
    .fetch_all(&mut *conn)
    .await
    .map_err(ctx(format_args!("checking the triggers of `{}`", table.name)))?;
    if rows.len() != specs.len() {
        return Ok(false);
    }
    for row in rows {
        let read = || -> Result<(String, String, String, String, bool), sqlx::Error> {
            Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?, row.try_get(3)?, row.try_get(4)?))
        };
        let (trigger, function, source, schema, enabled) =
            read().map_err(ctx(format_args!("checking the triggers of `{}`", table.name)))?;
        let current = specs.iter().any(|spec| {
            names.triggers[spec.slot] == trigger
                && names.functions[spec.slot] == function
                && spec.body == source
                && schema == HUBSYNC_SCHEMA
                && enabled
        });
        if !current {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Gives the table's rows tracking rows stamped with this transaction, set
/// based. With `replace` every row gets one (overwriting old tombstones);
/// otherwise only rows that have none.
pub(crate) async fn record_rows(
    conn: &mut PgConnection,
    table: &TableSchema,
    names: &TrackingNames,
    origin: &str,
    replace: bool,
) -> Result<u64, EndpointError> {
    let pks = pk_columns(table.primary_key.len()).join(", ");
    let keys: Vec<String> = table.primary_key.iter().map(|k| format!("t.{}", quote_ident(k))).collect();
    let action = if replace {
        "DO UPDATE SET version = excluded.version, origin = excluded.origin, deleted = false, \
         changed_at = excluded.changed_at, seq = excluded.seq"
    } else {
        "DO NOTHING"
    };
    // One sequence number for all: callers hold the table (first
    // provisioning, or a bulk load's exclusive lock after a fold).
    let sql = format!(
        "INSERT INTO {tr} ({pks}, version, origin, deleted, changed_at, seq) \
         SELECT {keys}, {VERSION_EXPR}, $1, false, {NOW_EXPR}, (SELECT {NEXT_SEQ}) FROM {t} AS t \
         ON CONFLICT ({pks}) {action}",
        tr = names.qualified_table(),
        keys = keys.join(", "),
        t = qualified(&table.name),
    );
    let done = query(sql)
        .bind(origin.to_string())
        .execute(&mut *conn)
        .await
        .map_err(ctx(format_args!("recording the existing rows of `{}`", table.name)))?;
    Ok(done.rows_affected())
}

/// Records that this database is a hub for the table, inside provisioning's
/// transaction (which holds the DDL lock, so no apply that leaves out
/// tracking rows runs meanwhile: see [`records_received`]).
///
/// The first time, rows that have no tracking row yet get one with origin
/// [`HUB_ORIGIN`]: on a tracking table that existed before, such rows came
/// from this database's own hub while it was a member only (a bulk copy, or
/// changes applied without tracking rows), and the members of the group it
/// is now a hub of must read them. They stay out of this database's own
/// uploads to its hub, which only send local changes.
async fn mark_hub(
    conn: &mut PgConnection,
    table: &TableSchema,
    names: &TrackingNames,
    tracking_existed: bool,
) -> Result<(), EndpointError> {
    let context = format!("recording that this database is the hub of `{}`", table.name);
    let marked = query("INSERT INTO \"hubsync\".\"hub_tables\" (table_name) VALUES ($1) ON CONFLICT DO NOTHING")
        .bind(table_key(&table.name))
        .execute(&mut *conn)
        .await
        .map_err(ctx(&context))?
        .rows_affected();
    if marked > 0 && tracking_existed {
        // Once: the application's writes wait, so none logs a change between
        // the fold and the recording (its log row would lose to the newer
        // tracking row recorded here).
        query(format!("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE", qualified(&table.name)))
            .execute(&mut *conn)
            .await
            .map_err(ctx(&context))?;
        // Logged changes first, so the rows they cover have tracking rows.
        fold(conn, names, table.primary_key.len()).await?;
        record_rows(conn, table, names, HUB_ORIGIN, false).await?;
    }
    Ok(())
}

/// Whether a transaction applying changes from `peer` must write tracking
/// rows for them: always, unless this database is a member receiving from
/// its hub and was never provisioned as a hub for the table (see
/// [`hubsync_core::Endpoint::provision_as_hub`]).
///
/// Tracking rows are half the cost of applying a batch of updates on a
/// member (the row's update and the tracking row's upsert cost about the
/// same), and a member needs them for nothing: its uploads send local changes
/// only, and a row's stale tracking row (a local change the hub has already
/// received, or none) never counts as a conflict, because the hub's
/// watermark of what it received only grows. Local changes the hub has not
/// received are conflict candidates, judged and written with tracking rows
/// as before.
///
/// The answer holds until the transaction ends: when it is `false`, the
/// transaction holds hubsync's DDL lock in shared mode, so provisioning as a
/// hub (which takes it exclusively and then records the untracked rows)
/// waits for it to commit.
pub(crate) async fn records_received(
    conn: &mut PgConnection,
    table: &TableName,
    peer: &str,
) -> Result<bool, EndpointError> {
    if peer != HUB_ORIGIN {
        return Ok(true);
    }
    let context = format!("checking whether this database is a hub for `{table}`");
    query("SELECT pg_advisory_xact_lock_shared($1)").bind(DDL_LOCK).execute(&mut *conn).await.map_err(ctx(&context))?;
    // Provisioned before hub tables existed: record, as then.
    if !hubsync_table_exists(conn, HUB_TABLES).await? {
        return Ok(true);
    }
    // A statement after the lock: its snapshot sees a mark committed while
    // this transaction waited.
    let hub = query("SELECT EXISTS (SELECT 1 FROM \"hubsync\".\"hub_tables\" WHERE table_name = $1)")
        .bind(table_key(table))
        .fetch_one(&mut *conn)
        .await
        .and_then(|r| r.try_get::<bool, _>(0))
        .map_err(ctx(&context))?;
    Ok(hub)
}

/// Provisions one table in one transaction (see [`hubsync_core::Endpoint::provision`]);
/// `as_hub` also records that this database is a hub for the table (see
/// [`hubsync_core::Endpoint::provision_as_hub`] and [`records_received`]).
pub(crate) async fn provision(pool: &PgPool, table: &TableSchema, as_hub: bool) -> Result<(), EndpointError> {
    if table.primary_key.is_empty() {
        return Err(SchemaError::NoPrimaryKey { table: table.name.clone() }.into());
    }
    let names = TrackingNames::for_table(&table.name);
    let context = format!("provisioning `{}`", table.name);
    let mut tx = pool.begin().await.map_err(ctx(&context))?;
    let result = async {
        lock_ddl(&mut tx).await?;
        let shape = shape(&mut tx, table).await?;
        ensure_shared(&mut tx).await?;
        let existed = hubsync_table_exists(&mut tx, &names.table).await?;
        ensure_tracking_table(&mut tx, &table.name, &shape, &names).await?;
        // Recreated when the synced column selection changed; left alone
        // otherwise, because dropping a trigger locks the table against the
        // application's writes (every `hubsync sync` provisions).
        if !triggers_current(&mut tx, table, &shape, &names).await? {
            drop_triggers(&mut tx, &table.name, &names).await?;
            create_triggers(&mut tx, table, &shape, &names).await?;
        }
        // Only on first provisioning: once the triggers exist, a row without a
        // tracking row is one a bulk copy brought without tracking (the peer's
        // row, not a local change), and must not be sent back.
        if !existed {
            record_rows(&mut tx, table, &names, "", false).await?;
            // Statistics for the new tracking table now, not whenever
            // autovacuum comes by: without them the planner guesses the
            // share of rows above a watermark, and reads and counts right
            // after provisioning scan the whole table.
            query(format!("ANALYZE {}", names.qualified_table()))
                .execute(&mut *tx)
                .await
                .map_err(ctx(format_args!("analyzing the tracking table of `{}`", table.name)))?;
        }
        if as_hub {
            mark_hub(&mut tx, table, &names, existed).await?;
        }
        Ok(())
    }
    .await;
    result.map_err(|e: EndpointError| e.context(&context))?;
    tx.commit().await.map_err(ctx(&context))?;
    Ok(())
}

/// Drops a function in schema `hubsync` if it exists; returns whether it did.
async fn drop_function(conn: &mut PgConnection, name: &str) -> Result<bool, EndpointError> {
    let exists = query(
        "SELECT 1 FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace \
         WHERE n.nspname = $1 AND p.proname = $2",
    )
    .bind(HUBSYNC_SCHEMA)
    .bind(name.to_string())
    .fetch_optional(&mut *conn)
    .await
    .map_err(ctx(format_args!("looking for function `{name}`")))?
    .is_some();
    if exists {
        query(format!("DROP FUNCTION IF EXISTS {}()", in_hubsync(name)))
            .execute(&mut *conn)
            .await
            .map_err(ctx(format_args!("dropping function `{name}`")))?;
    }
    Ok(exists)
}

/// Removes the tracking objects of these tables, and the shared objects and
/// the `hubsync` schema when no tracking table remains; returns what was dropped.
pub(crate) async fn deprovision(pool: &PgPool, tables: &[TableName]) -> Result<Vec<String>, EndpointError> {
    let mut tx = pool.begin().await.map_err(ctx("deprovisioning"))?;
    lock_ddl(&mut tx).await?;
    let mut dropped = Vec::new();
    let scope_exists = hubsync_table_exists(&mut tx, "scope").await?;
    for table in tables {
        let names = TrackingNames::for_table(table);
        dropped.extend(drop_triggers(&mut tx, table, &names).await?);
        for function in &names.functions {
            if drop_function(&mut tx, function).await? {
                dropped.push(function.clone());
            }
        }
        if drop_relation(&mut tx, "TABLE", &names.log).await? {
            dropped.push(names.log.clone());
        }
        // The version index goes with its table.
        if drop_relation(&mut tx, "TABLE", &names.table).await? {
            dropped.push(names.table.clone());
            dropped.push(names.index.clone());
        }
        if scope_exists {
            query("DELETE FROM \"hubsync\".\"scope\" WHERE table_name = $1")
                .bind(table_key(table))
                .execute(&mut *tx)
                .await
                .map_err(ctx(format_args!("removing the watermarks of `{table}`")))?;
        }
        if hubsync_table_exists(&mut tx, HUB_TABLES).await? {
            query("DELETE FROM \"hubsync\".\"hub_tables\" WHERE table_name = $1")
                .bind(table_key(table))
                .execute(&mut *tx)
                .await
                .map_err(ctx(format_args!("removing the hub mark of `{table}`")))?;
        }
    }
    let remaining: i64 = query(
        "SELECT count(*) FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = $1 AND c.relkind = 'r' AND c.relname LIKE 'hubsync\\_tr\\_%'",
    )
    .bind(HUBSYNC_SCHEMA)
    .fetch_one(&mut *tx)
    .await
    .and_then(|row| row.try_get(0))
    .map_err(ctx("looking for remaining tracking tables"))?;
    if remaining == 0 {
        let shared = SHARED_TABLES.iter().map(|name| ("TABLE", *name)).chain([("SEQUENCE", SEQUENCE)]);
        for (kind, name) in shared {
            if drop_relation(&mut tx, kind, name).await? {
                dropped.push(format!("{HUBSYNC_SCHEMA}.{name}"));
            }
        }
        drop_schema_if_empty(&mut tx, &mut dropped).await?;
    }
    tx.commit().await.map_err(ctx("deprovisioning"))?;
    Ok(dropped)
}

/// Drops a table or sequence of schema `hubsync` if it exists; returns
/// whether it did.
async fn drop_relation(conn: &mut PgConnection, kind: &str, name: &str) -> Result<bool, EndpointError> {
    if !hubsync_table_exists(conn, name).await? {
        return Ok(false);
    }
    query(format!("DROP {kind} IF EXISTS {}", in_hubsync(name)))
        .execute(&mut *conn)
        .await
        .map_err(ctx(format_args!("dropping `{name}`")))?;
    Ok(true)
}

/// Drops the `hubsync` schema when nothing is left in it (anything a user put
/// there is never touched).
async fn drop_schema_if_empty(conn: &mut PgConnection, dropped: &mut Vec<String>) -> Result<(), EndpointError> {
    let row = query(
        "SELECT n.oid IS NOT NULL, \
         (SELECT count(*) FROM pg_catalog.pg_class c WHERE c.relnamespace = n.oid) + \
         (SELECT count(*) FROM pg_catalog.pg_proc p WHERE p.pronamespace = n.oid) + \
         (SELECT count(*) FROM pg_catalog.pg_type t WHERE t.typnamespace = n.oid AND t.typrelid = 0 \
            AND t.typelem = 0) \
         FROM pg_catalog.pg_namespace n WHERE n.nspname = $1",
    )
    .bind(HUBSYNC_SCHEMA)
    .fetch_optional(&mut *conn)
    .await
    .map_err(ctx("looking at the hubsync schema"))?;
    let Some(row) = row else {
        return Ok(());
    };
    let objects: i64 = row.try_get(1).map_err(ctx("looking at the hubsync schema"))?;
    if objects == 0 {
        query(format!("DROP SCHEMA IF EXISTS {}", quote_ident(HUBSYNC_SCHEMA)))
            .execute(&mut *conn)
            .await
            .map_err(ctx("dropping the hubsync schema"))?;
        dropped.push(HUBSYNC_SCHEMA.to_string());
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_are_short_valid_and_public_is_the_default() {
        for odd in ["my table", "it's \"quoted\"", "a.b", "ünïcödé", "select", ""] {
            let n = TrackingNames::for_table(&TableName::new(odd));
            for name in n.functions.iter().chain(&n.triggers).chain([&n.table, &n.index]) {
                assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "{name}");
                assert!(name.len() <= 63, "{name}");
            }
        }
        let long = TrackingNames::for_table(&TableName::new("x".repeat(500)));
        assert!(long.functions[1].len() <= 63);
        let public = TableName { schema: Some("public".into()), name: "t".into() };
        assert_eq!(TrackingNames::for_table(&public), TrackingNames::for_table(&TableName::new("t")));
        let other = TableName { schema: Some("s".into()), name: "t".into() };
        assert_ne!(TrackingNames::for_table(&other), TrackingNames::for_table(&TableName::new("t")));
    }
}

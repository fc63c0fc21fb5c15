//! Reading a table's schema from `information_schema`, and creating a table
//! from a schema (auto-provisioning on a member).

use hubsync_core::{Column, EndpointError, ErrorKind, ForeignKey, Index, SchemaError, TableName, TableSchema};
use sqlx::{MySqlConnection, MySqlPool, Row};

use super::dialect::{ColKind, canonical_type, column_type, database_of, needs_prefix, qualified, quote_ident};
use super::errors::ctx;
use super::{ddl, query};

/// Prefix length for indexes on text and blob columns, which MySQL cannot
/// index whole: 255 characters keep an index entry under InnoDB's limit.
const INDEX_PREFIX: u32 = 255;

/// One column as the catalog describes it.
#[derive(Debug, Clone)]
pub(crate) struct LocalColumn {
    pub name: String,
    pub data_type: String,
    pub column_type: String,
    pub comment: String,
    pub charset: Option<String>,
    pub collation: Option<String>,
    pub nullable: bool,
}

impl LocalColumn {
    pub(crate) fn kind(&self) -> ColKind {
        ColKind::of(&self.data_type, &self.column_type, &self.comment)
    }
}

/// Whether the table exists (names compare exactly, as on Linux servers).
pub(crate) async fn table_exists(conn: &mut MySqlConnection, db: &str, name: &str) -> Result<bool, EndpointError> {
    let row = query(
        "SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? \
         AND BINARY TABLE_NAME = BINARY ?",
    )
    .bind(db.to_string())
    .bind(name.to_string())
    .bind(name.to_string())
    .fetch_optional(&mut *conn)
    .await
    .map_err(ctx(format_args!("checking whether table `{name}` exists")))?;
    Ok(row.is_some())
}

/// The table's columns in order; empty when the table does not exist.
pub(crate) async fn local_columns(
    conn: &mut MySqlConnection,
    db: &str,
    name: &str,
) -> Result<Vec<LocalColumn>, EndpointError> {
    let rows = query(
        "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, COLUMN_COMMENT, CHARACTER_SET_NAME, COLLATION_NAME, IS_NULLABLE \
         FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND BINARY TABLE_NAME = BINARY ? \
         ORDER BY ORDINAL_POSITION",
    )
    .bind(db.to_string())
    .bind(name.to_string())
    .bind(name.to_string())
    .fetch_all(&mut *conn)
    .await
    .map_err(ctx(format_args!("reading the columns of `{name}`")))?;
    let text = |row: &sqlx::mysql::MySqlRow, i: usize| -> Result<String, EndpointError> {
        let bytes: Option<Vec<u8>> = row.try_get_unchecked(i).map_err(ctx("reading information_schema.COLUMNS"))?;
        Ok(bytes.map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default())
    };
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        let charset = text(row, 4)?;
        let collation = text(row, 5)?;
        out.push(LocalColumn {
            name: text(row, 0)?,
            data_type: text(row, 1)?,
            column_type: text(row, 2)?,
            comment: text(row, 3)?,
            charset: (!charset.is_empty()).then_some(charset),
            collation: (!collation.is_empty()).then_some(collation),
            nullable: text(row, 6)? == "YES",
        });
    }
    Ok(out)
}

/// The kinds of the schema's columns as this database has them. Fails
/// when the table is missing or lacks a column.
pub(crate) async fn column_kinds(
    conn: &mut MySqlConnection,
    home: &str,
    table: &TableSchema,
) -> Result<Vec<ColKind>, EndpointError> {
    let db = database_of(&table.name, home);
    let local = local_columns(conn, db, &table.name.name).await?;
    if local.is_empty() {
        return Err(EndpointError::new(ErrorKind::TableMissing, format!("table `{}` does not exist", table.name)));
    }
    table
        .columns
        .iter()
        .map(|c| {
            local.iter().find(|l| l.name.eq_ignore_ascii_case(&c.name)).map(LocalColumn::kind).ok_or_else(|| {
                EndpointError::from(SchemaError::MissingColumn { table: table.name.clone(), column: c.name.clone() })
            })
        })
        .collect()
}

/// The kinds of the key columns, in key order.
pub(crate) fn key_kinds(table: &TableSchema, kinds: &[ColKind]) -> Vec<ColKind> {
    table.key_positions().into_iter().map(|p| kinds[p]).collect()
}

/// Every base table of the endpoint's database, by name, without hubsync's
/// `hubsync_*` tables (compared byte for byte, as hubsync names its objects
/// in lower case). Names are unqualified: the database is the URL's.
pub(crate) async fn list_tables(pool: &MySqlPool, home: &str) -> Result<Vec<TableName>, EndpointError> {
    let rows = query(
        "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_TYPE = 'BASE TABLE' \
         AND BINARY LEFT(TABLE_NAME, 8) <> BINARY 'hubsync_'",
    )
    .bind(home.to_string())
    .fetch_all(pool)
    .await
    .map_err(ctx("listing the tables"))?;
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        // information_schema reports names as binary strings on some servers.
        let bytes: Vec<u8> = row.try_get_unchecked(0).map_err(ctx("listing the tables"))?;
        out.push(TableName::new(String::from_utf8_lossy(&bytes).into_owned()));
    }
    out.sort();
    Ok(out)
}

/// Reads a table's schema, or `None` when it does not exist.
pub(crate) async fn introspect(
    pool: &MySqlPool,
    home: &str,
    table: &TableName,
) -> Result<Option<TableSchema>, EndpointError> {
    let context = format!("reading the schema of `{table}`");
    let mut conn = pool.acquire().await.map_err(ctx(&context))?;
    let db = database_of(table, home);
    let local = local_columns(&mut conn, db, &table.name).await.map_err(|e| e.context(&context))?;
    if local.is_empty() {
        return Ok(None);
    }
    read_schema(&mut conn, db, home, table, local).await.map(Some).map_err(|e| e.context(&context))
}

/// Refuses a table that a foreign key's action (`ON DELETE CASCADE`, `SET
/// NULL`, `ON UPDATE CASCADE`, ...) can change. MySQL and MariaDB do not fire
/// triggers for the rows such an action changes, so hubsync's triggers would
/// never see them, and the other databases would keep rows this one lost.
pub(crate) async fn refuse_foreign_key_actions(
    conn: &mut MySqlConnection,
    db: &str,
    table: &TableName,
) -> Result<(), EndpointError> {
    let actions = strings(
        conn,
        "SELECT CONSTRAINT_NAME, REFERENCED_TABLE_NAME, DELETE_RULE, UPDATE_RULE \
         FROM information_schema.REFERENTIAL_CONSTRAINTS WHERE CONSTRAINT_SCHEMA = ? AND TABLE_NAME = ? \
         AND BINARY TABLE_NAME = BINARY ? \
         AND (DELETE_RULE NOT IN ('RESTRICT', 'NO ACTION') OR UPDATE_RULE NOT IN ('RESTRICT', 'NO ACTION')) \
         ORDER BY CONSTRAINT_NAME",
        db,
        &table.name,
    )
    .await?;
    let Some(first) = actions.first() else { return Ok(()) };
    let [constraint, parent, on_delete, on_update] = &first[..] else {
        return Err(EndpointError::new(ErrorKind::Other, "information_schema returned an unexpected row"));
    };
    let action = if matches!(on_delete.as_str(), "RESTRICT" | "NO ACTION") {
        format!("ON UPDATE {on_update}")
    } else {
        format!("ON DELETE {on_delete}")
    };
    Err(EndpointError::new(
        ErrorKind::Schema,
        format!(
            "table `{table}` cannot be synced: its foreign key `{constraint}` to `{parent}` has `{action}`, and \
             MySQL/MariaDB fire no trigger for the rows such an action changes, so hubsync would not see them. \
             Change the constraint to RESTRICT or NO ACTION (and delete or update the child rows first), \
             or leave `{table}` out of the sync group"
        ),
    ))
}

async fn strings(
    conn: &mut MySqlConnection,
    sql: &'static str,
    db: &str,
    name: &str,
) -> Result<Vec<Vec<String>>, EndpointError> {
    let rows = query(sql)
        .bind(db.to_string())
        .bind(name.to_string())
        .bind(name.to_string())
        .fetch_all(&mut *conn)
        .await
        .map_err(ctx("reading information_schema"))?;
    rows.iter()
        .map(|row| {
            (0..row.len())
                .map(|i| {
                    let bytes: Option<Vec<u8>> = row.try_get_unchecked(i).map_err(ctx("reading information_schema"))?;
                    Ok(bytes.map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default())
                })
                .collect()
        })
        .collect()
}

async fn read_schema(
    conn: &mut MySqlConnection,
    db: &str,
    home: &str,
    table: &TableName,
    local: Vec<LocalColumn>,
) -> Result<TableSchema, EndpointError> {
    let checks = strings(
        conn,
        "SELECT CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS WHERE CONSTRAINT_SCHEMA = ? AND TABLE_NAME = ? \
         AND BINARY TABLE_NAME = BINARY ?",
        db,
        &table.name,
    )
    .await
    .unwrap_or_default();
    let is_json = |col: &str| {
        let marker = format!("json_valid({})", quote_ident(col));
        checks.iter().any(|c| c.first().is_some_and(|clause| clause.contains(&marker)))
    };
    let stats = strings(
        conn,
        "SELECT INDEX_NAME, COLUMN_NAME, CAST(NON_UNIQUE AS CHAR), CAST(SEQ_IN_INDEX AS CHAR) \
         FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND BINARY TABLE_NAME = BINARY ? \
         ORDER BY INDEX_NAME, SEQ_IN_INDEX",
        db,
        &table.name,
    )
    .await?;
    let mut primary_key = Vec::new();
    let mut indexes: Vec<Index> = Vec::new();
    for s in &stats {
        let (index, column, non_unique) = (&s[0], &s[1], s[2] != "0");
        if index == "PRIMARY" {
            primary_key.push(column.clone());
            continue;
        }
        match indexes.last_mut() {
            Some(last) if &last.name == index => last.columns.push(column.clone()),
            _ => indexes.push(Index { name: index.clone(), columns: vec![column.clone()], unique: !non_unique }),
        }
    }
    let fks = strings(
        conn,
        "SELECT CONSTRAINT_NAME, COLUMN_NAME, REFERENCED_TABLE_SCHEMA, REFERENCED_TABLE_NAME, REFERENCED_COLUMN_NAME \
         FROM information_schema.KEY_COLUMN_USAGE WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? \
         AND BINARY TABLE_NAME = BINARY ? AND REFERENCED_TABLE_NAME IS NOT NULL \
         ORDER BY CONSTRAINT_NAME, ORDINAL_POSITION",
        db,
        &table.name,
    )
    .await?;
    let mut foreign_keys: Vec<(String, ForeignKey)> = Vec::new();
    for f in &fks {
        let referenced_table = TableName {
            schema: if f[2] == home && table.schema.is_none() || f[2] == db && table.schema.is_none() {
                None
            } else {
                Some(f[2].clone())
            },
            name: f[3].clone(),
        };
        match foreign_keys.last_mut() {
            Some((name, fk)) if name == &f[0] => {
                fk.columns.push(f[1].clone());
                fk.referenced_columns.push(f[4].clone());
            }
            _ => foreign_keys.push((
                f[0].clone(),
                ForeignKey { columns: vec![f[1].clone()], referenced_table, referenced_columns: vec![f[4].clone()] },
            )),
        }
    }
    let columns = local
        .iter()
        .map(|l| Column {
            canonical: canonical_type(&l.data_type, &l.column_type, &l.comment, is_json(&l.name)),
            declared_type: l.column_type.clone(),
            nullable: l.nullable,
            name: l.name.clone(),
        })
        .collect();
    Ok(TableSchema {
        name: table.clone(),
        columns,
        primary_key,
        indexes,
        foreign_keys: foreign_keys.into_iter().map(|(_, fk)| fk).collect(),
        engine: "mysql".to_string(),
    })
}

/// The DDL that creates the table with its key, indexes and foreign keys.
pub(crate) fn create_table_sql(table: &TableSchema, home: &str) -> Result<String, EndpointError> {
    if table.primary_key.is_empty() {
        return Err(SchemaError::NoPrimaryKey { table: table.name.clone() }.into());
    }
    let mut defs = Vec::with_capacity(table.columns.len() + 1 + table.indexes.len() + table.foreign_keys.len());
    let mut types = Vec::with_capacity(table.columns.len());
    for column in &table.columns {
        let key = table.primary_key.contains(&column.name);
        let ty = column_type(&table.name, &table.engine, column, key)?;
        let mut def = format!("{} {ty}", quote_ident(&column.name));
        // COMMENT must come last in a column definition.
        // Explicit NULL too: MariaDB may otherwise make a TIMESTAMP NOT NULL.
        let null = if !column.nullable || key { " NOT NULL" } else { " NULL" };
        if let Some(at) = def.find(" COMMENT ") {
            let comment = def.split_off(at);
            def.push_str(null);
            def.push_str(&comment);
        } else {
            def.push_str(null);
        }
        defs.push(def);
        types.push(ty);
    }
    let idents = |cols: &[String]| cols.iter().map(|c| quote_ident(c)).collect::<Vec<_>>().join(", ");
    defs.push(format!("PRIMARY KEY ({})", idents(&table.primary_key)));
    let has_column = |c: &String| table.column_index(c).is_some();
    for index in table.indexes.iter().filter(|i| i.columns.iter().all(has_column)) {
        let cols: Vec<String> = index
            .columns
            .iter()
            .map(|c| {
                let ty = table.column_index(c).map(|i| types[i].as_str()).unwrap_or("");
                // MariaDB enforces a unique index on whole text with a hash;
                // a plain index needs a prefix.
                if needs_prefix(ty) && !index.unique {
                    format!("{}({INDEX_PREFIX})", quote_ident(c))
                } else {
                    quote_ident(c)
                }
            })
            .collect();
        defs.push(format!(
            "{}INDEX {} ({})",
            if index.unique { "UNIQUE " } else { "" },
            quote_ident(&index.name),
            cols.join(", ")
        ));
    }
    for fk in table.foreign_keys.iter().filter(|fk| fk.columns.iter().all(has_column)) {
        let parent = TableName {
            schema: fk.referenced_table.schema.clone().filter(|_| table.engine == "mysql"),
            name: fk.referenced_table.name.clone(),
        };
        let parent_in = TableName { schema: parent.schema.clone().or_else(|| table.name.schema.clone()), ..parent };
        let mut def = format!("FOREIGN KEY ({}) REFERENCES {}", idents(&fk.columns), qualified(&parent_in, home));
        if !fk.referenced_columns.is_empty() {
            def.push_str(&format!(" ({})", idents(&fk.referenced_columns)));
        }
        defs.push(def);
    }
    Ok(format!(
        "CREATE TABLE IF NOT EXISTS {} ({}) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
        qualified(&table.name, home),
        defs.join(", ")
    ))
}

/// Creates the table with its key, indexes and foreign keys.
pub(crate) async fn create_table(pool: &MySqlPool, home: &str, table: &TableSchema) -> Result<(), EndpointError> {
    let sql = create_table_sql(table, home)?;
    let context = format!("creating table `{}`", table.name);
    ddl(sql).execute(pool).await.map_err(ctx(&context))?;
    Ok(())
}

//! Reading a table's schema from PostgreSQL's catalog, resolving a synced
//! table against the local one, and creating a table from a schema
//! (auto-provisioning on a member).

use hubsync_core::{Column, EndpointError, ErrorKind, ForeignKey, Index, SchemaError, TableName, TableSchema};
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool, Row};

use super::dialect::{DEFAULT_SCHEMA, HUBSYNC_SCHEMA, canonical_type, column_type, qualified, quote_ident, schema_of};
use super::errors::ctx;
use super::query;
use super::values::LocalColumn;

/// The table's oid, or `None` when no such table exists.
pub(crate) async fn table_oid(conn: &mut PgConnection, table: &TableName) -> Result<Option<i64>, EndpointError> {
    let row = query(
        "SELECT c.oid::int8 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')",
    )
    .bind(schema_of(table).to_string())
    .bind(table.name.clone())
    .fetch_optional(&mut *conn)
    .await
    .map_err(ctx(format_args!("looking up table `{table}`")))?;
    row.map(|r| r.try_get::<i64, _>(0)).transpose().map_err(ctx(format_args!("looking up table `{table}`")))
}

/// The table's columns as the catalog declares them, in table order.
pub(crate) async fn local_columns(conn: &mut PgConnection, oid: i64) -> Result<Vec<LocalColumn>, EndpointError> {
    let rows = query(
        "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), t.typtype::text, t.typcategory::text, \
         a.attidentity::text, a.attnotnull, \
         pg_get_serial_sequence(format('%I.%I', n.nspname, c.relname), a.attname) \
         FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid = a.atttypid \
         JOIN pg_catalog.pg_class c ON c.oid = a.attrelid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         WHERE a.attrelid = $1::oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
    )
    .bind(oid)
    .fetch_all(&mut *conn)
    .await
    .map_err(ctx("reading the columns"))?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let declared: String = row.try_get(1).map_err(ctx("reading the columns"))?;
        let typtype: String = row.try_get(2).map_err(ctx("reading the columns"))?;
        let category: String = row.try_get(3).map_err(ctx("reading the columns"))?;
        let identity: String = row.try_get(4).map_err(ctx("reading the columns"))?;
        let not_null: bool = row.try_get(5).map_err(ctx("reading the columns"))?;
        out.push(LocalColumn {
            name: row.try_get(0).map_err(ctx("reading the columns"))?,
            canonical: canonical_type(&declared, &typtype, &category),
            declared,
            identity_always: identity == "a",
            nullable: !not_null,
            sequence: row.try_get(6).map_err(ctx("reading the columns"))?,
        });
    }
    Ok(out)
}

/// The primary key's column names, in key order.
async fn primary_key(conn: &mut PgConnection, oid: i64) -> Result<Vec<String>, EndpointError> {
    let rows = query(
        "SELECT a.attname::text FROM pg_catalog.pg_index i \
         CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) \
         JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
         WHERE i.indrelid = $1::oid AND i.indisprimary ORDER BY k.ord",
    )
    .bind(oid)
    .fetch_all(&mut *conn)
    .await
    .map_err(ctx("reading the primary key"))?;
    rows.iter().map(|r| r.try_get::<String, _>(0)).collect::<Result<_, _>>().map_err(ctx("reading the primary key"))
}

/// A synced table resolved against the local table: its local columns in
/// the synced order, and its key columns in key order.
#[derive(Debug, Clone)]
pub(crate) struct Shape {
    /// The local table's oid.
    pub oid: i64,
    /// The synced columns, in the synced schema's order.
    pub columns: Vec<LocalColumn>,
    /// The key columns, in key order.
    pub keys: Vec<LocalColumn>,
    /// Whether every column of the local table is synced.
    pub all_columns_synced: bool,
}

impl Shape {
    /// Whether inserts must say `OVERRIDING SYSTEM VALUE`.
    pub fn overriding(&self) -> &'static str {
        if self.columns.iter().any(|c| c.identity_always) { " OVERRIDING SYSTEM VALUE" } else { "" }
    }

    /// The sequences fed by synced columns, with their column.
    pub fn sequences(&self) -> Vec<(&LocalColumn, &str)> {
        self.columns.iter().filter_map(|c| c.sequence.as_deref().map(|s| (c, s))).collect()
    }
}

/// Resolves a synced table against the local one; fails with
/// [`ErrorKind::TableMissing`] when it does not exist.
pub(crate) async fn shape(conn: &mut PgConnection, table: &TableSchema) -> Result<Shape, EndpointError> {
    if table.primary_key.is_empty() {
        return Err(SchemaError::NoPrimaryKey { table: table.name.clone() }.into());
    }
    let oid = table_oid(conn, &table.name).await?.ok_or_else(|| missing(&table.name))?;
    let local = local_columns(conn, oid).await?;
    let find = |name: &str| {
        local.iter().find(|c| c.name == name).cloned().ok_or_else(|| {
            EndpointError::from(SchemaError::MissingColumn { table: table.name.clone(), column: name.to_string() })
        })
    };
    let columns = table.columns.iter().map(|c| find(&c.name)).collect::<Result<Vec<_>, _>>()?;
    let keys = table.primary_key.iter().map(|k| find(k)).collect::<Result<Vec<_>, _>>()?;
    let all_columns_synced = local.iter().all(|l| columns.iter().any(|c| c.name == l.name));
    Ok(Shape { oid, columns, keys, all_columns_synced })
}

/// The error for a table that does not exist.
pub(crate) fn missing(table: &TableName) -> EndpointError {
    EndpointError::new(ErrorKind::TableMissing, format!("table `{table}` does not exist"))
        .with_hint("create the table, or check the table name and its schema")
}

/// Every user table (plain and partitioned, not partitions) outside the
/// catalogs and hubsync's own schema, by schema and name. Tables of `public`
/// are named without a schema, like foreign keys' referenced tables, so the
/// same table compares equal across engines.
pub(crate) async fn list_tables(pool: &PgPool) -> Result<Vec<TableName>, EndpointError> {
    let rows = query(
        "SELECT n.nspname::text, c.relname::text FROM pg_catalog.pg_class c \
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND n.nspname <> $1 \
         AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%' ORDER BY 1, 2",
    )
    .bind(HUBSYNC_SCHEMA)
    .fetch_all(pool)
    .await
    .map_err(ctx("listing the tables"))?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let schema: String = row.try_get(0).map_err(ctx("listing the tables"))?;
        let name: String = row.try_get(1).map_err(ctx("listing the tables"))?;
        out.push(TableName { schema: (schema != DEFAULT_SCHEMA).then_some(schema), name });
    }
    out.sort();
    Ok(out)
}

/// Reads a table's schema, or `None` when it does not exist.
pub(crate) async fn introspect(pool: &PgPool, table: &TableName) -> Result<Option<TableSchema>, EndpointError> {
    let context = format!("reading the schema of `{table}`");
    let mut conn = pool.acquire().await.map_err(ctx(&context))?;
    let Some(oid) = table_oid(&mut conn, table).await.map_err(|e| e.context(&context))? else {
        return Ok(None);
    };
    let result = read_schema(&mut conn, table, oid).await;
    result.map(Some).map_err(|e| e.context(&context))
}

async fn read_schema(conn: &mut PgConnection, table: &TableName, oid: i64) -> Result<TableSchema, EndpointError> {
    let local = local_columns(conn, oid).await?;
    let primary_key = primary_key(conn, oid).await?;
    let columns = local
        .into_iter()
        .map(|c| Column {
            nullable: c.nullable && !primary_key.contains(&c.name),
            name: c.name,
            declared_type: c.declared,
            canonical: c.canonical,
        })
        .collect();
    Ok(TableSchema {
        name: table.clone(),
        columns,
        primary_key,
        indexes: read_indexes(conn, oid).await?,
        foreign_keys: read_foreign_keys(conn, oid).await?,
        engine: "postgres".to_string(),
    })
}

/// Plain column indexes other than the primary key's; partial and expression
/// indexes cannot be expressed in the schema model and are left out.
async fn read_indexes(conn: &mut PgConnection, oid: i64) -> Result<Vec<Index>, EndpointError> {
    let rows = query(
        "SELECT ic.relname::text, i.indisunique, \
         array(SELECT a.attname::text FROM unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) \
               JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum ORDER BY k.ord) \
         FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid \
         WHERE i.indrelid = $1::oid AND NOT i.indisprimary AND i.indpred IS NULL AND i.indexprs IS NULL \
         ORDER BY ic.relname",
    )
    .bind(oid)
    .fetch_all(&mut *conn)
    .await
    .map_err(ctx("reading the indexes"))?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let columns: Vec<String> = row.try_get(2).map_err(ctx("reading the indexes"))?;
        if columns.is_empty() {
            continue;
        }
        out.push(Index {
            name: row.try_get(0).map_err(ctx("reading the indexes"))?,
            unique: row.try_get(1).map_err(ctx("reading the indexes"))?,
            columns,
        });
    }
    Ok(out)
}

async fn read_foreign_keys(conn: &mut PgConnection, oid: i64) -> Result<Vec<ForeignKey>, EndpointError> {
    let rows = query(
        "SELECT rn.nspname::text, rc.relname::text, \
         array(SELECT a.attname::text FROM unnest(k.conkey) WITH ORDINALITY AS x(attnum, ord) \
               JOIN pg_catalog.pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = x.attnum ORDER BY x.ord), \
         array(SELECT a.attname::text FROM unnest(k.confkey) WITH ORDINALITY AS x(attnum, ord) \
               JOIN pg_catalog.pg_attribute a ON a.attrelid = k.confrelid AND a.attnum = x.attnum ORDER BY x.ord) \
         FROM pg_catalog.pg_constraint k JOIN pg_catalog.pg_class rc ON rc.oid = k.confrelid \
         JOIN pg_catalog.pg_namespace rn ON rn.oid = rc.relnamespace \
         WHERE k.conrelid = $1::oid AND k.contype = 'f' ORDER BY k.conname",
    )
    .bind(oid)
    .fetch_all(&mut *conn)
    .await
    .map_err(ctx("reading the foreign keys"))?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let schema: String = row.try_get(0).map_err(ctx("reading the foreign keys"))?;
        let name: String = row.try_get(1).map_err(ctx("reading the foreign keys"))?;
        out.push(ForeignKey {
            columns: row.try_get(2).map_err(ctx("reading the foreign keys"))?,
            // `public` is the default: leaving it out lets the name compare
            // equal to the same table read from another engine.
            referenced_table: TableName { schema: (schema != DEFAULT_SCHEMA).then_some(schema), name },
            referenced_columns: row.try_get(3).map_err(ctx("reading the foreign keys"))?,
        });
    }
    Ok(out)
}

/// The name a created index gets: readable, within 63 bytes, and unique per
/// (table, index) because index names are unique per schema in PostgreSQL.
pub(crate) fn index_name(table: &TableName, index: &str) -> String {
    let digest = Sha256::digest(format!("{}\0{}\0{index}", schema_of(table), table.name).as_bytes());
    let hash: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    let readable: String = format!("{}_{index}", table.name).chars().take(40).collect();
    let mut readable = readable;
    while readable.len() > 50 {
        readable.pop();
    }
    format!("{readable}_{hash}")
}

/// The DDL that creates the table and its indexes. Foreign keys are
/// `DEFERRABLE` so an apply can defer them to commit.
pub(crate) fn create_table_sql(table: &TableSchema) -> Result<Vec<String>, EndpointError> {
    let t = qualified(&table.name);
    if table.primary_key.is_empty() {
        return Err(SchemaError::NoPrimaryKey { table: table.name.clone() }.into());
    }
    let mut defs = Vec::with_capacity(table.columns.len() + 1 + table.foreign_keys.len());
    for column in &table.columns {
        let ty = column_type(&table.name, &table.engine, column)?;
        let mut def = format!("{} {ty}", quote_ident(&column.name));
        if !column.nullable || table.primary_key.contains(&column.name) {
            def.push_str(" NOT NULL");
        }
        defs.push(def);
    }
    let idents = |cols: &[String]| cols.iter().map(|c| quote_ident(c)).collect::<Vec<_>>().join(", ");
    defs.push(format!("PRIMARY KEY ({})", idents(&table.primary_key)));
    let has_column = |c: &String| table.column_index(c).is_some();
    for fk in table.foreign_keys.iter().filter(|fk| fk.columns.iter().all(has_column)) {
        // A referenced table without a schema lives next to this one.
        let parent = TableName {
            schema: fk.referenced_table.schema.clone().or_else(|| table.name.schema.clone()),
            name: fk.referenced_table.name.clone(),
        };
        let mut def = format!("FOREIGN KEY ({}) REFERENCES {}", idents(&fk.columns), qualified(&parent));
        if !fk.referenced_columns.is_empty() {
            def.push_str(&format!(" ({})", idents(&fk.referenced_columns)));
        }
        def.push_str(" DEFERRABLE INITIALLY IMMEDIATE");
        defs.push(def);
    }
    let mut statements = vec![format!("CREATE TABLE IF NOT EXISTS {t} ({})", defs.join(", "))];
    for index in table.indexes.iter().filter(|i| i.columns.iter().all(has_column)) {
        statements.push(format!(
            "CREATE {}INDEX IF NOT EXISTS {} ON {t} ({})",
            if index.unique { "UNIQUE " } else { "" },
            quote_ident(&index_name(&table.name, &index.name)),
            idents(&index.columns)
        ));
    }
    Ok(statements)
}

/// Creates the table with its key, indexes and foreign keys, in one transaction.
pub(crate) async fn create_table(pool: &PgPool, table: &TableSchema) -> Result<(), EndpointError> {
    let statements = create_table_sql(table)?;
    let context = format!("creating table `{}`", table.name);
    let mut tx = pool.begin().await.map_err(ctx(&context))?;
    if let Some(schema) = &table.name.schema {
        query(format!("CREATE SCHEMA IF NOT EXISTS {}", quote_ident(schema)))
            .execute(&mut *tx)
            .await
            .map_err(ctx(&context))?;
    }
    for sql in statements {
        query(sql).execute(&mut *tx).await.map_err(ctx(&context))?;
    }
    tx.commit().await.map_err(ctx(&context))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use hubsync_core::CanonicalType;

    #[test]
    fn create_table_maps_foreign_types_and_refuses_unmappable_ones() {
        let col = |name: &str, declared: &str, canonical: CanonicalType| Column {
            name: name.into(),
            declared_type: declared.into(),
            canonical,
            nullable: true,
        };
        let mut table = TableSchema {
            name: TableName::new("or\"der"),
            columns: vec![
                col("id", "INTEGER", CanonicalType::Integer),
                col("select", "DECIMAL_TEXT(10,2)", CanonicalType::Decimal { precision: Some(10), scale: Some(2) }),
                col("p", "INTEGER", CanonicalType::Integer),
            ],
            primary_key: vec!["id".into()],
            indexes: vec![Index { name: "ix".into(), columns: vec!["select".into()], unique: true }],
            foreign_keys: vec![ForeignKey {
                columns: vec!["p".into()],
                referenced_table: TableName::new("parent"),
                referenced_columns: vec!["id".into()],
            }],
            engine: "sqlite".into(),
        };
        let sql = create_table_sql(&table).unwrap();
        assert_eq!(
            sql[0],
            "CREATE TABLE IF NOT EXISTS \"public\".\"or\"\"der\" (\"id\" bigint NOT NULL, \"select\" numeric(10,2), \
             \"p\" bigint, PRIMARY KEY (\"id\"), FOREIGN KEY (\"p\") REFERENCES \"public\".\"parent\" (\"id\") \
             DEFERRABLE INITIALLY IMMEDIATE)"
        );
        assert!(sql[1].starts_with("CREATE UNIQUE INDEX IF NOT EXISTS \"or\"\"der_ix_"), "{}", sql[1]);
        table.columns.push(col("tags", "integer[]", CanonicalType::Other("integer[]".into())));
        table.engine = "postgres".into();
        assert!(create_table_sql(&table).unwrap()[0].contains("\"tags\" integer[]"));
        table.engine = "mysql".into();
        let err = create_table_sql(&table).unwrap_err();
        assert_eq!(err.kind, ErrorKind::UnmappableType);
        assert!(err.to_string().contains("`tags`") && err.to_string().contains("integer[]"), "{err}");
    }

    #[test]
    fn index_names_are_short_and_distinct() {
        let long = index_name(&TableName::new("x".repeat(200)), &"i".repeat(200));
        assert!(long.len() <= 63, "{long}");
        assert_ne!(index_name(&TableName::new("a_b"), "c"), index_name(&TableName::new("a"), "b_c"));
    }
}

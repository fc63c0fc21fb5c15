//! Reading a table's schema from SQLite's catalog, and creating a table from
//! a schema (auto-provisioning on a member).

use hubsync_core::{Column, EndpointError, ForeignKey, Index, TableName, TableSchema};
use sha2::{Digest, Sha256};
use sqlx::{Row, SqliteConnection, SqlitePool};

use super::dialect::{canonical_type, check_schema, column_type, qualified, quote_ident};
use super::errors::ctx;
use super::query;
use super::tracking::table_exists;

/// Every user table of the `main` database, by name: SQLite's own
/// `sqlite_*` tables and hubsync's `hubsync_*` tables are left out (compared
/// case-sensitively, as hubsync names its objects in lower case).
pub(crate) async fn list_tables(pool: &SqlitePool) -> Result<Vec<TableName>, EndpointError> {
    let rows = query(
        "SELECT name FROM main.sqlite_master WHERE type = 'table' \
         AND substr(name, 1, 7) <> 'sqlite_' AND substr(name, 1, 8) <> 'hubsync_' ORDER BY name",
    )
    .fetch_all(pool)
    .await
    .map_err(ctx("listing the tables"))?;
    rows.iter()
        .map(|r| r.try_get::<String, _>(0).map(TableName::new))
        .collect::<Result<_, _>>()
        .map_err(ctx("listing the tables"))
}

/// Reads a table's schema, or `None` when it does not exist.
pub(crate) async fn introspect(pool: &SqlitePool, table: &TableName) -> Result<Option<TableSchema>, EndpointError> {
    check_schema(table)?;
    let context = format!("reading the schema of `{table}`");
    let mut conn = pool.acquire().await.map_err(ctx(&context))?;
    if !table_exists(&mut conn, &table.name).await? {
        return Ok(None);
    }
    let result = read_schema(&mut conn, table).await;
    result.map(Some).map_err(|e| e.context(&context))
}

async fn read_schema(conn: &mut SqliteConnection, table: &TableName) -> Result<TableSchema, EndpointError> {
    let rows = query("SELECT name, type, \"notnull\", pk FROM pragma_table_info(?1, 'main') ORDER BY cid")
        .bind(table.name.clone())
        .fetch_all(&mut *conn)
        .await
        .map_err(ctx("table_info"))?;
    let mut columns = Vec::with_capacity(rows.len());
    let mut keyed: Vec<(i64, String)> = Vec::new();
    for row in &rows {
        let name: String = row.try_get(0).map_err(ctx("table_info"))?;
        let declared: String = row.try_get::<Option<String>, _>(1).map_err(ctx("table_info"))?.unwrap_or_default();
        let not_null: i64 = row.try_get(2).map_err(ctx("table_info"))?;
        let pk: i64 = row.try_get(3).map_err(ctx("table_info"))?;
        if pk > 0 {
            keyed.push((pk, name.clone()));
        }
        columns.push(Column {
            canonical: canonical_type(&declared),
            declared_type: declared,
            // Key columns are reported NOT NULL even where SQLite's rowid
            // tables would tolerate a NULL: no engine can sync a NULL key.
            nullable: not_null == 0 && pk == 0,
            name,
        });
    }
    keyed.sort();
    let primary_key = keyed.into_iter().map(|(_, name)| name).collect();
    Ok(TableSchema {
        name: table.clone(),
        columns,
        primary_key,
        indexes: read_indexes(conn, table).await?,
        foreign_keys: read_foreign_keys(conn, table).await?,
        engine: "sqlite".to_string(),
    })
}

async fn read_indexes(conn: &mut SqliteConnection, table: &TableName) -> Result<Vec<Index>, EndpointError> {
    let rows = query("SELECT name, \"unique\", origin, partial FROM pragma_index_list(?1, 'main') ORDER BY name")
        .bind(table.name.clone())
        .fetch_all(&mut *conn)
        .await
        .map_err(ctx("index_list"))?;
    let mut indexes = Vec::new();
    for row in &rows {
        let name: String = row.try_get(0).map_err(ctx("index_list"))?;
        let unique: i64 = row.try_get(1).map_err(ctx("index_list"))?;
        let origin: String = row.try_get(2).map_err(ctx("index_list"))?;
        let partial: i64 = row.try_get(3).map_err(ctx("index_list"))?;
        // The primary key's own index is implied by the key; a partial index
        // cannot be expressed in the schema model (recreating it whole could
        // reject rows the source accepts).
        if origin == "pk" || partial != 0 {
            continue;
        }
        let cols = query("SELECT name FROM pragma_index_info(?1, 'main') ORDER BY seqno")
            .bind(name.clone())
            .fetch_all(&mut *conn)
            .await
            .map_err(ctx("index_info"))?;
        let mut columns = Vec::with_capacity(cols.len());
        for col in &cols {
            // NULL for an expression: such an index is left out.
            match col.try_get::<Option<String>, _>(0).map_err(ctx("index_info"))? {
                Some(c) => columns.push(c),
                None => {
                    columns.clear();
                    break;
                }
            }
        }
        if !columns.is_empty() {
            indexes.push(Index { name, columns, unique: unique != 0 });
        }
    }
    Ok(indexes)
}

async fn read_foreign_keys(conn: &mut SqliteConnection, table: &TableName) -> Result<Vec<ForeignKey>, EndpointError> {
    let rows =
        query("SELECT id, \"table\", \"from\", \"to\" FROM pragma_foreign_key_list(?1, 'main') ORDER BY id, seq")
            .bind(table.name.clone())
            .fetch_all(&mut *conn)
            .await
            .map_err(ctx("foreign_key_list"))?;
    let mut keys: Vec<(i64, ForeignKey, bool)> = Vec::new();
    for row in &rows {
        let id: i64 = row.try_get(0).map_err(ctx("foreign_key_list"))?;
        let parent: String = row.try_get(1).map_err(ctx("foreign_key_list"))?;
        let from: String = row.try_get(2).map_err(ctx("foreign_key_list"))?;
        let to: Option<String> = row.try_get(3).map_err(ctx("foreign_key_list"))?;
        if keys.last().map(|(last, _, _)| *last) != Some(id) {
            let fk =
                ForeignKey { columns: vec![], referenced_table: TableName::new(parent), referenced_columns: vec![] };
            keys.push((id, fk, false));
        }
        if let Some((_, fk, implicit)) = keys.last_mut() {
            fk.columns.push(from);
            match to {
                Some(to) => fk.referenced_columns.push(to),
                None => *implicit = true,
            }
        }
    }
    let mut out = Vec::with_capacity(keys.len());
    for (_, mut fk, implicit) in keys {
        // `REFERENCES parent` without columns means the parent's primary key.
        if implicit {
            let pk = query("SELECT name FROM pragma_table_info(?1, 'main') WHERE pk > 0 ORDER BY pk")
                .bind(fk.referenced_table.name.clone())
                .fetch_all(&mut *conn)
                .await
                .map_err(ctx("table_info of a referenced table"))?;
            fk.referenced_columns =
                pk.iter().map(|r| r.try_get::<String, _>(0)).collect::<Result<_, _>>().map_err(ctx("table_info"))?;
        }
        out.push(fk);
    }
    Ok(out)
}

/// The name a created index gets: readable, and unique per (table, index)
/// because index names are global in a SQLite database.
pub(crate) fn index_name(table: &TableName, index: &str) -> String {
    let digest = Sha256::digest(format!("{}\0{index}", table.name).as_bytes());
    let hash: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    format!("{}_{index}_{hash}", table.name)
}

/// The DDL that creates the table and its indexes.
pub(crate) fn create_table_sql(table: &TableSchema) -> Result<Vec<String>, EndpointError> {
    let t = qualified(&table.name)?;
    if table.primary_key.is_empty() {
        return Err(hubsync_core::SchemaError::NoPrimaryKey { table: table.name.clone() }.into());
    }
    let mut defs = Vec::with_capacity(table.columns.len() + 1 + table.foreign_keys.len());
    for column in &table.columns {
        let ty = column_type(&table.name, &table.engine, column)?;
        let mut def = quote_ident(&column.name);
        if !ty.is_empty() {
            def.push(' ');
            def.push_str(&ty);
        }
        if !column.nullable {
            def.push_str(" NOT NULL");
        }
        defs.push(def);
    }
    let idents = |cols: &[String]| cols.iter().map(|c| quote_ident(c)).collect::<Vec<_>>().join(", ");
    defs.push(format!("PRIMARY KEY ({})", idents(&table.primary_key)));
    let has_column = |c: &String| table.column_index(c).is_some();
    for fk in table.foreign_keys.iter().filter(|fk| fk.columns.iter().all(has_column)) {
        let mut def =
            format!("FOREIGN KEY ({}) REFERENCES {}", idents(&fk.columns), quote_ident(&fk.referenced_table.name));
        if !fk.referenced_columns.is_empty() {
            def.push_str(&format!(" ({})", idents(&fk.referenced_columns)));
        }
        defs.push(def);
    }
    let mut statements = vec![format!("CREATE TABLE IF NOT EXISTS {t} ({})", defs.join(", "))];
    for index in table.indexes.iter().filter(|i| i.columns.iter().all(has_column)) {
        statements.push(format!(
            "CREATE {}INDEX IF NOT EXISTS main.{} ON {} ({})",
            if index.unique { "UNIQUE " } else { "" },
            quote_ident(&index_name(&table.name, &index.name)),
            quote_ident(&table.name.name),
            idents(&index.columns)
        ));
    }
    Ok(statements)
}

/// Creates the table with its key, indexes and foreign keys, in one transaction.
pub(crate) async fn create_table(pool: &SqlitePool, table: &TableSchema) -> Result<(), EndpointError> {
    let statements = create_table_sql(table)?;
    let context = format!("creating table `{}`", table.name);
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(ctx(&context))?;
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
    fn create_table_quotes_everything_and_maps_foreign_types() {
        let col = |name: &str, declared: &str, canonical: CanonicalType, nullable: bool| Column {
            name: name.into(),
            declared_type: declared.into(),
            canonical,
            nullable,
        };
        let table = TableSchema {
            name: TableName::new("or\"der"),
            columns: vec![
                col("id", "bigint", CanonicalType::Integer, false),
                col("select", "numeric(10,2)", CanonicalType::Decimal { precision: Some(10), scale: Some(2) }, true),
                col("p", "bigint", CanonicalType::Integer, true),
            ],
            primary_key: vec!["id".into()],
            indexes: vec![Index { name: "ix".into(), columns: vec!["select".into()], unique: true }],
            foreign_keys: vec![ForeignKey {
                columns: vec!["p".into()],
                referenced_table: TableName { schema: Some("public".into()), name: "parent".into() },
                referenced_columns: vec!["id".into()],
            }],
            engine: "postgres".into(),
        };
        let sql = create_table_sql(&table).unwrap();
        assert_eq!(
            sql[0],
            "CREATE TABLE IF NOT EXISTS main.\"or\"\"der\" (\"id\" INTEGER NOT NULL, \"select\" DECIMAL_TEXT(10,2), \
             \"p\" INTEGER, PRIMARY KEY (\"id\"), FOREIGN KEY (\"p\") REFERENCES \"parent\" (\"id\"))"
        );
        assert!(sql[1].starts_with("CREATE UNIQUE INDEX IF NOT EXISTS main.\"or\"\"der_ix_"), "{}", sql[1]);
        assert_ne!(index_name(&TableName::new("a_b"), "c"), index_name(&TableName::new("a"), "b_c"));
    }
}

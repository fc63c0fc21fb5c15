//! The one-off database work the API and the portal ask for: introspecting a
//! hub's or a member's tables (`refreshHubSchema`, `refreshSchema`),
//! deprovisioning a member, and testing a connection.
//!
//! Errors are messages for people: they name the database by
//! [`DatabaseSpec::display`], never with its password.

use std::path::{Path, PathBuf};

use hubsync_core::{Endpoint, TableName, TableSchema};
use hubsync_engines::AnyEndpoint;

use crate::api::convert::{now_rfc3339, quote_ident, quote_table};
use crate::api::error::code;
use crate::model::{DatabaseSchema, DatabaseType, SchemaColumn, SchemaTable};
use crate::spec::{DatabaseSpec, GroupSpec, MemberSpec};

/// Why a SQLite database cannot be opened without creating it: its file does
/// not exist. `None` for a file that exists and for other engines.
pub fn missing_sqlite_file(database: &DatabaseSpec, base_dir: &Path) -> Option<String> {
    if database.database_type != DatabaseType::Sqlite {
        return None;
    }
    let path = Path::new(&database.database_name);
    let path: PathBuf = if path.is_absolute() { path.to_path_buf() } else { base_dir.join(path) };
    (!path.is_file()).then(|| {
        format!(
            "the SQLite database file {} does not exist; check `databaseName` (a relative path is taken \
             relative to the server's directory)",
            path.display()
        )
    })
}

/// Opens a database. A SQLite file must exist already: opening would
/// otherwise create an empty one, and a typo would read as "no tables".
async fn open(database: &DatabaseSpec, base_dir: &Path) -> Result<AnyEndpoint, String> {
    if let Some(missing) = missing_sqlite_file(database, base_dir) {
        return Err(missing);
    }
    hubsync_engines::connect(&database.url(base_dir), base_dir)
        .await
        .map_err(|e| format!("cannot open {}: {e}", database.display()))
}

/// A declared type's size: what its parentheses hold (`varchar(40)` → `40`,
/// `numeric(10,2)` → `10,2`).
fn data_size(declared: &str) -> Option<String> {
    let (_, rest) = declared.split_once('(')?;
    let (size, _) = rest.split_once(')')?;
    let size = size.trim();
    (!size.is_empty()).then(|| size.replace(' ', ""))
}

/// A table as the API lists it; one without a primary key is marked.
fn schema_table(schema: &TableSchema) -> SchemaTable {
    let columns = schema
        .columns
        .iter()
        .map(|c| SchemaColumn {
            name: c.name.clone(),
            quoted_name: quote_ident(&c.name),
            data_type: c.declared_type.clone(),
            data_size: data_size(&c.declared_type),
            is_primary_key: schema.primary_key.contains(&c.name),
        })
        .collect();
    let no_key = schema.primary_key.is_empty();
    SchemaTable {
        name: schema.name.to_string(),
        quoted_name: quote_table(&schema.name),
        columns,
        has_error: no_key,
        error_id: no_key.then(|| code::TABLE_HAS_NO_PRIMARY_KEY.to_string()),
        error_message: no_key.then(|| {
            format!("table `{}` has no primary key, so it cannot be synced; add a primary key to sync it", schema.name)
        }),
    }
}

/// Introspects every table of a database.
pub async fn refresh_schema(database: &DatabaseSpec, base_dir: &Path) -> Result<DatabaseSchema, String> {
    let endpoint = open(database, base_dir).await?;
    let names =
        endpoint.list_tables().await.map_err(|e| format!("cannot list the tables of {}: {e}", database.display()))?;
    let mut tables = Vec::with_capacity(names.len());
    for name in &names {
        let schema = endpoint
            .introspect(name)
            .await
            .map_err(|e| format!("cannot read table `{name}` of {}: {e}", database.display()))?;
        // A table dropped since it was listed is simply no longer there.
        if let Some(schema) = schema {
            tables.push(schema_table(&schema));
        }
    }
    tracing::info!(database = %database.display(), tables = tables.len(), "Schema refreshed.");
    Ok(DatabaseSchema { tables, last_update_time: now_rfc3339() })
}

/// Removes hubsync's objects for the group's tables from a member; returns
/// the names of the objects removed.
pub async fn deprovision_member(
    group: &GroupSpec,
    member: &MemberSpec,
    base_dir: &Path,
) -> Result<Vec<String>, String> {
    let endpoint = open(&member.database, base_dir).await?;
    let tables: Vec<TableName> = group.tables.iter().map(|t| t.name.clone()).collect();
    let removed = endpoint
        .deprovision(&tables)
        .await
        .map_err(|e| format!("cannot deprovision member `{}` ({}): {e}", member.name, member.database.display()))?;
    tracing::info!(
        group = %group.name, member = %member.name, removed = removed.len(),
        "Member deprovisioned."
    );
    Ok(removed)
}

/// Opens the database and runs a trivial query; the error says exactly what
/// failed (for the portal's "test connection").
pub async fn test_connection(database: &DatabaseSpec, base_dir: &Path) -> Result<(), String> {
    let endpoint = open(database, base_dir).await?;
    endpoint.list_tables().await.map(|_| ()).map_err(|e| format!("{} answers, but: {e}", database.display()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use sqlx::AssertSqlSafe;

    fn sqlite(path: &Path) -> DatabaseSpec {
        DatabaseSpec {
            database_type: DatabaseType::Sqlite,
            server_name: String::new(),
            database_name: path.display().to_string(),
            user_name: String::new(),
            password: None,
        }
    }

    #[test]
    fn sizes_are_read_from_declared_types() {
        assert_eq!(data_size("varchar(40)").as_deref(), Some("40"));
        assert_eq!(data_size("numeric(10, 2)").as_deref(), Some("10,2"));
        assert_eq!(data_size("integer"), None);
    }

    #[tokio::test]
    async fn refresh_lists_every_table_and_marks_the_ones_without_a_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hub.db");
        let AnyEndpoint::Sqlite(db) =
            hubsync_engines::connect(&format!("sqlite://{}", path.display()), dir.path()).await.unwrap()
        else {
            panic!("not SQLite")
        };
        sqlx::raw_sql(AssertSqlSafe(
            "CREATE TABLE items (id INTEGER PRIMARY KEY, name VARCHAR(40)); CREATE TABLE loose (v TEXT)".to_string(),
        ))
        .execute(db.pool())
        .await
        .unwrap();
        let schema = refresh_schema(&sqlite(&path), dir.path()).await.unwrap();
        let names: Vec<&str> = schema.tables.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["items", "loose"]);
        let items = &schema.tables[0];
        assert!(!items.has_error);
        assert_eq!(items.columns[0].quoted_name, "\"id\"");
        assert!(items.columns[0].is_primary_key);
        assert_eq!(items.columns[1].data_size.as_deref(), Some("40"));
        let loose = &schema.tables[1];
        assert!(loose.has_error);
        assert_eq!(loose.error_id.as_deref(), Some(code::TABLE_HAS_NO_PRIMARY_KEY));
        assert!(test_connection(&sqlite(&path), dir.path()).await.is_ok());
    }

    #[tokio::test]
    async fn a_missing_sqlite_file_is_an_error_and_is_not_created() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("typo.db");
        let err = refresh_schema(&sqlite(&path), dir.path()).await.unwrap_err();
        assert!(err.contains("does not exist"), "{err}");
        assert!(!path.exists());
    }
}

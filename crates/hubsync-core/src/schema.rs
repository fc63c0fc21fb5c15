//! Table schemas: what an engine introspects, what the sync schema selects,
//! and what auto-provisioning creates on a member.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A table's name, optionally qualified by a schema (PostgreSQL) or database.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TableName {
    /// The schema or database qualifier, if any.
    pub schema: Option<String>,
    /// The table's own name, unquoted.
    pub name: String,
}

impl TableName {
    /// An unqualified table name.
    pub fn new(name: impl Into<String>) -> Self {
        TableName { schema: None, name: name.into() }
    }

    /// Parses the config form: `name`, or `schema.name` when the name has exactly one
    /// unquoted dot. A name that itself contains dots is written with double quotes:
    /// `"my.table"` or `sales."my.table"`.
    pub fn parse(text: &str) -> Result<Self, SchemaError> {
        let parts = split_qualified(text).ok_or_else(|| SchemaError::BadTableName(text.to_string()))?;
        match parts.as_slice() {
            [name] => Ok(TableName::new(name.clone())),
            [schema, name] => Ok(TableName { schema: Some(schema.clone()), name: name.clone() }),
            _ => Err(SchemaError::BadTableName(text.to_string())),
        }
    }
}

/// Splits `a.b` / `"a.b"` / `a."b.c"` into unquoted parts; `None` when malformed.
fn split_qualified(text: &str) -> Option<Vec<String>> {
    if text.is_empty() {
        return None;
    }
    // A plain name with more than one dot and no quotes is taken whole: users with
    // such names rarely mean three-part names.
    if !text.contains('"') {
        return match text.split_once('.') {
            Some((s, n)) if !s.is_empty() && !n.is_empty() && !n.contains('.') => {
                Some(vec![s.to_string(), n.to_string()])
            }
            _ => Some(vec![text.to_string()]),
        };
    }
    let mut parts = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        let mut part = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next()? {
                    '"' if chars.peek() == Some(&'"') => {
                        chars.next();
                        part.push('"');
                    }
                    '"' => break,
                    c => part.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == '.' {
                    break;
                }
                part.push(c);
                chars.next();
            }
        }
        if part.is_empty() {
            return None;
        }
        parts.push(part);
        match chars.next() {
            None => return Some(parts),
            Some('.') => continue,
            Some(_) => return None,
        }
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.schema {
            Some(s) => write!(f, "{s}.{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// The engine-neutral type set every engine maps its own types to and from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CanonicalType {
    /// Signed integers of any width up to 64 bits.
    Integer,
    /// Floating point.
    Real,
    /// Exact decimal; travels as text.
    Decimal {
        /// Total digits, when declared.
        precision: Option<u32>,
        /// Digits after the point, when declared.
        scale: Option<u32>,
    },
    /// Text of any length.
    Text,
    /// Bytes.
    Blob,
    /// Boolean, travels as 0/1.
    Boolean,
    /// Calendar date, travels as `YYYY-MM-DD` text.
    Date,
    /// Time of day, travels as text.
    Time,
    /// Timestamp without time zone, travels as ISO-8601 text.
    Timestamp,
    /// Timestamp with time zone, travels as ISO-8601 text with offset.
    TimestampTz,
    /// UUID, travels as text.
    Uuid,
    /// JSON document, travels as text.
    Json,
    /// A type the canonical set cannot express; only the same engine can recreate it.
    Other(String),
}

/// One column of a table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    /// The column name, unquoted.
    pub name: String,
    /// The type exactly as the engine declares it (`DECIMAL(10,2)`, `varchar(40)`).
    pub declared_type: String,
    /// The canonical type the declared type maps to.
    pub canonical: CanonicalType,
    /// Whether NULL is allowed.
    pub nullable: bool,
}

/// A secondary index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Index {
    /// The index name on its source database.
    pub name: String,
    /// Indexed columns, in order.
    pub columns: Vec<String>,
    /// Whether the index enforces uniqueness.
    pub unique: bool,
}

/// A foreign key from this table to another (or to itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForeignKey {
    /// Referencing columns of this table.
    pub columns: Vec<String>,
    /// The referenced table.
    pub referenced_table: TableName,
    /// The referenced columns.
    pub referenced_columns: Vec<String>,
}

/// A table as synced: its columns (primary key included), key, indexes and
/// foreign keys. After [`TableSchema::project`] it holds only the synced columns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableSchema {
    /// The table's name.
    pub name: TableName,
    /// Columns in table order.
    pub columns: Vec<Column>,
    /// Primary key column names, in key order. Empty means the table cannot be synced.
    pub primary_key: Vec<String>,
    /// Secondary indexes.
    pub indexes: Vec<Index>,
    /// Foreign keys.
    pub foreign_keys: Vec<ForeignKey>,
    /// The engine the schema was read from (`sqlite`, `postgres`, `mysql`), so
    /// the same engine can recreate declared types verbatim.
    pub engine: String,
}

impl TableSchema {
    /// Index of a column by name.
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    /// Positions of the primary key columns within [`TableSchema::columns`].
    pub fn key_positions(&self) -> Vec<usize> {
        self.primary_key.iter().filter_map(|k| self.column_index(k)).collect()
    }

    /// The primary key columns.
    pub fn key_columns(&self) -> Vec<&Column> {
        self.key_positions().into_iter().map(|i| &self.columns[i]).collect()
    }

    /// Names of all columns.
    pub fn column_names(&self) -> Vec<&str> {
        self.columns.iter().map(|c| c.name.as_str()).collect()
    }

    /// Restricts the schema to the selected columns (all when `None`), always
    /// keeping the primary key. Indexes and foreign keys survive only when all
    /// their columns are selected.
    pub fn project(&self, selected: Option<&[String]>) -> Result<TableSchema, SchemaError> {
        if self.primary_key.is_empty() {
            return Err(SchemaError::NoPrimaryKey { table: self.name.clone() });
        }
        let Some(selected) = selected else {
            return Ok(self.clone());
        };
        for name in selected {
            if self.column_index(name).is_none() {
                return Err(SchemaError::UnknownColumn {
                    table: self.name.clone(),
                    column: name.clone(),
                    available: self.columns.iter().map(|c| c.name.clone()).collect(),
                });
            }
        }
        let keep = |c: &str| self.primary_key.iter().any(|k| k == c) || selected.iter().any(|s| s == c);
        let all_kept = |cols: &[String]| cols.iter().all(|c| keep(c));
        Ok(TableSchema {
            name: self.name.clone(),
            columns: self.columns.iter().filter(|c| keep(&c.name)).cloned().collect(),
            primary_key: self.primary_key.clone(),
            indexes: self.indexes.iter().filter(|i| all_kept(&i.columns)).cloned().collect(),
            foreign_keys: self.foreign_keys.iter().filter(|f| all_kept(&f.columns)).cloned().collect(),
            engine: self.engine.clone(),
        })
    }

    /// Checks that `other` (the same table on another database) holds every
    /// column of this schema, so changes can be applied there.
    pub fn check_compatible(&self, other: &TableSchema) -> Result<(), SchemaError> {
        for col in &self.columns {
            if other.column_index(&col.name).is_none() {
                return Err(SchemaError::MissingColumn { table: self.name.clone(), column: col.name.clone() });
            }
        }
        if other.primary_key != self.primary_key {
            return Err(SchemaError::KeyMismatch {
                table: self.name.clone(),
                expected: self.primary_key.clone(),
                found: other.primary_key.clone(),
            });
        }
        Ok(())
    }
}

/// Why a table cannot be synced as configured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    /// The table has no primary key.
    #[error(
        "table `{table}` has no primary key; hubsync needs one to identify rows. Add a primary key to the table or remove it from the sync schema"
    )]
    NoPrimaryKey {
        /// The table.
        table: TableName,
    },
    /// A selected column does not exist.
    #[error("table `{table}` has no column `{column}`; its columns are: {}", available.join(", "))]
    UnknownColumn {
        /// The table.
        table: TableName,
        /// The missing column.
        column: String,
        /// What exists.
        available: Vec<String>,
    },
    /// A column synced from the hub is missing in a member's existing table.
    #[error(
        "table `{table}` lacks the synced column `{column}`; add the column to the table, or drop the table and let hubsync create it"
    )]
    MissingColumn {
        /// The table.
        table: TableName,
        /// The missing column.
        column: String,
    },
    /// The member's table has a different primary key than the hub's.
    #[error("table `{table}` has primary key ({}) but the hub's is ({}); both sides must use the same key", found.join(", "), expected.join(", "))]
    KeyMismatch {
        /// The table.
        table: TableName,
        /// The hub's key.
        expected: Vec<String>,
        /// This side's key.
        found: Vec<String>,
    },
    /// A table name that cannot be parsed.
    #[error(
        "`{0}` is not a valid table name; write `table` or `schema.table`, and put names with dots in double quotes"
    )]
    BadTableName(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str) -> Column {
        Column { name: name.into(), declared_type: "TEXT".into(), canonical: CanonicalType::Text, nullable: true }
    }

    fn table() -> TableSchema {
        TableSchema {
            name: TableName::new("t"),
            columns: vec![col("id"), col("a"), col("b")],
            primary_key: vec!["id".into()],
            indexes: vec![
                Index { name: "ia".into(), columns: vec!["a".into()], unique: false },
                Index { name: "iab".into(), columns: vec!["a".into(), "b".into()], unique: false },
            ],
            foreign_keys: vec![],
            engine: "sqlite".into(),
        }
    }

    #[test]
    fn projection_keeps_key_and_fully_selected_indexes() {
        let p = table().project(Some(&["a".to_string()])).unwrap();
        assert_eq!(p.column_names(), vec!["id", "a"]);
        assert_eq!(p.indexes.len(), 1);
        assert_eq!(p.indexes[0].name, "ia");
    }

    #[test]
    fn projection_rejects_unknown_columns_and_keyless_tables() {
        let err = table().project(Some(&["zz".to_string()])).unwrap_err();
        assert!(err.to_string().contains("id, a, b"), "{err}");
        let mut t = table();
        t.primary_key.clear();
        assert!(matches!(t.project(None), Err(SchemaError::NoPrimaryKey { .. })));
    }

    #[test]
    fn table_names_parse_with_quotes_and_schemas() {
        assert_eq!(TableName::parse("t").unwrap(), TableName::new("t"));
        assert_eq!(TableName::parse("s.t").unwrap().schema.as_deref(), Some("s"));
        assert_eq!(TableName::parse("\"a.b\"").unwrap(), TableName::new("a.b"));
        let q = TableName::parse("s.\"x\"\"y.z\"").unwrap();
        assert_eq!((q.schema.as_deref(), q.name.as_str()), (Some("s"), "x\"y.z"));
        assert_eq!(TableName::parse("a.b.c").unwrap(), TableName::new("a.b.c"));
        assert!(TableName::parse("").is_err());
        assert!(TableName::parse("\"open").is_err());
    }
}

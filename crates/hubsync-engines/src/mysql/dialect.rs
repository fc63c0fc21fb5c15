//! MySQL/MariaDB's SQL dialect: identifier quoting, table qualification and
//! the mapping between declared types and hubsync's canonical types.

use hubsync_core::{CanonicalType, Column, EndpointError, ErrorKind, TableName};

/// Marks a `DATETIME(6)` column hubsync created for a time-zone-aware
/// timestamp (stored in UTC), so introspection maps it back to TimestampTz.
pub(crate) const TZ_COMMENT: &str = "hubsync:timestamptz";
/// Marks a `CHAR(36)` column hubsync created for a UUID.
pub(crate) const UUID_COMMENT: &str = "hubsync:uuid";

/// Quotes an identifier for MySQL: wraps it in backticks and doubles any
/// embedded backtick. Every identifier that reaches SQL goes through here.
pub fn quote_ident(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    out.push('`');
    for c in name.chars() {
        if c == '`' {
            out.push('`');
        }
        out.push(c);
    }
    out.push('`');
    out
}

/// The database a table lives in: its own qualifier, else the URL's.
pub(crate) fn database_of<'a>(table: &'a TableName, home: &'a str) -> &'a str {
    table.schema.as_deref().unwrap_or(home)
}

/// The table as `` `db`.`name` ``.
pub(crate) fn qualified(table: &TableName, home: &str) -> String {
    format!("{}.{}", quote_ident(database_of(table, home)), quote_ident(&table.name))
}

/// An object in a database, as `` `db`.`name` ``.
pub(crate) fn in_db(db: &str, name: &str) -> String {
    format!("{}.{}", quote_ident(db), quote_ident(name))
}

/// How a column's values are read and written: what the SELECT list wraps
/// the column in, and how the result decodes into a canonical value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ColKind {
    /// Signed integers, booleans, years: read as i64.
    Int,
    /// Unsigned integers that fit i64: read through `CAST(.. AS SIGNED)`.
    Unsigned,
    /// FLOAT and DOUBLE: read as f64 (a FLOAT widens exactly).
    Real,
    /// Text (and decimals, BIGINT UNSIGNED, JSON, UUID, other types): read as text.
    Text,
    /// Bytes.
    Blob,
    /// DECIMAL and BIGINT UNSIGNED: read as text through `CAST(.. AS CHAR)`.
    Numeric,
    /// DATE.
    Date,
    /// DATETIME: 'YYYY-MM-DD HH:MM:SS[.f]' with trailing zeros trimmed.
    Timestamp,
    /// TIMESTAMP, or a DATETIME hubsync made for a time-zone-aware timestamp:
    /// as Timestamp, in UTC (the session's zone), plus '+00:00'.
    TimestampTz,
    /// TIME: 'HH:MM:SS[.f]', trailing zeros trimmed.
    Time,
    /// Anything else: text through `CAST(.. AS CHAR)`.
    Other,
}

impl ColKind {
    /// The kind of a column from its catalog entry.
    pub(crate) fn of(data_type: &str, column_type: &str, comment: &str) -> ColKind {
        let dt = data_type.to_ascii_lowercase();
        let unsigned = column_type.to_ascii_lowercase().contains("unsigned");
        match dt.as_str() {
            "bigint" if unsigned => ColKind::Numeric,
            "tinyint" | "smallint" | "mediumint" | "int" | "integer" if unsigned => ColKind::Unsigned,
            "tinyint" | "smallint" | "mediumint" | "int" | "integer" | "bigint" | "year" => ColKind::Int,
            "bool" | "boolean" => ColKind::Int,
            "float" | "double" | "real" | "double precision" => ColKind::Real,
            "decimal" | "numeric" | "dec" | "fixed" => ColKind::Numeric,
            "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" | "json" | "enum" | "set" => {
                ColKind::Text
            }
            "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" => ColKind::Blob,
            "date" => ColKind::Date,
            "datetime" if comment == TZ_COMMENT => ColKind::TimestampTz,
            "datetime" => ColKind::Timestamp,
            "timestamp" => ColKind::TimestampTz,
            "time" => ColKind::Time,
            _ => ColKind::Other,
        }
    }

    /// The SELECT-list expression reading `expr` in this kind.
    pub(crate) fn select(self, expr: &str) -> String {
        match self {
            ColKind::Unsigned => format!("CAST({expr} AS SIGNED)"),
            ColKind::Numeric
            | ColKind::Date
            | ColKind::Timestamp
            | ColKind::TimestampTz
            | ColKind::Time
            | ColKind::Other => format!("CAST({expr} AS CHAR CHARACTER SET utf8mb4)"),
            ColKind::Int | ColKind::Real | ColKind::Text | ColKind::Blob => expr.to_string(),
        }
    }
}

/// Maps a column's catalog entry to a canonical type. `json` tells whether
/// MariaDB's JSON check (`json_valid`) guards the column.
pub fn canonical_type(data_type: &str, column_type: &str, comment: &str, json: bool) -> CanonicalType {
    let dt = data_type.to_ascii_lowercase();
    let ct = column_type.to_ascii_lowercase();
    let unsigned = ct.contains("unsigned");
    match dt.as_str() {
        "tinyint" if ct.starts_with("tinyint(1)") && !unsigned => CanonicalType::Boolean,
        "bool" | "boolean" => CanonicalType::Boolean,
        "bigint" if unsigned => CanonicalType::Decimal { precision: Some(20), scale: Some(0) },
        "tinyint" | "smallint" | "mediumint" | "int" | "integer" | "bigint" => CanonicalType::Integer,
        "float" | "double" | "real" => CanonicalType::Real,
        "decimal" | "numeric" => {
            let (precision, scale) = parse_precision(&ct);
            CanonicalType::Decimal { precision, scale: scale.or(Some(0)) }
        }
        "char" if comment == UUID_COMMENT => CanonicalType::Uuid,
        "uuid" => CanonicalType::Uuid,
        "json" => CanonicalType::Json,
        "longtext" if json => CanonicalType::Json,
        "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" => CanonicalType::Text,
        "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" => CanonicalType::Blob,
        "date" => CanonicalType::Date,
        "datetime" if comment == TZ_COMMENT => CanonicalType::TimestampTz,
        "datetime" => CanonicalType::Timestamp,
        "timestamp" => CanonicalType::TimestampTz,
        "time" => CanonicalType::Time,
        _ => CanonicalType::Other(column_type.to_string()),
    }
}

/// `decimal(10,2)` -> (Some(10), Some(2)); absent parts are `None`.
fn parse_precision(lower: &str) -> (Option<u32>, Option<u32>) {
    let Some(open) = lower.find('(') else {
        return (None, None);
    };
    let Some(close) = lower[open..].find(')') else {
        return (None, None);
    };
    let inner = &lower[open + 1..open + close];
    let mut parts = inner.split(',').map(|p| p.trim().parse::<u32>().ok());
    (parts.next().flatten(), parts.next().flatten())
}

/// The MySQL type for a canonical type; `key` when the column is part of the
/// primary key (MySQL cannot key unbounded text). Text compares binary
/// (`utf8mb4_bin`), as on the other engines. A decimal without declared
/// precision gets MySQL's widest, DECIMAL(65,30) (a documented narrowing).
pub fn render_canonical(canonical: &CanonicalType, key: bool) -> Option<String> {
    Some(match canonical {
        CanonicalType::Integer => "BIGINT".into(),
        CanonicalType::Real => "DOUBLE".into(),
        CanonicalType::Decimal { precision: Some(p), scale } => {
            let p = (*p).clamp(1, 65);
            let s = scale.unwrap_or(0).min(30).min(p);
            format!("DECIMAL({p},{s})")
        }
        CanonicalType::Decimal { .. } => "DECIMAL(65,30)".into(),
        CanonicalType::Text if key => "VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin".into(),
        CanonicalType::Text => "LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin".into(),
        CanonicalType::Blob if key => "VARBINARY(255)".into(),
        CanonicalType::Blob => "LONGBLOB".into(),
        CanonicalType::Boolean => "TINYINT(1)".into(),
        CanonicalType::Date => "DATE".into(),
        CanonicalType::Time => "TIME(6)".into(),
        CanonicalType::Timestamp => "DATETIME(6)".into(),
        CanonicalType::TimestampTz => format!("DATETIME(6) COMMENT '{TZ_COMMENT}'"),
        CanonicalType::Uuid => format!("CHAR(36) CHARACTER SET ascii COLLATE ascii_bin COMMENT '{UUID_COMMENT}'"),
        CanonicalType::Json => "JSON".into(),
        CanonicalType::Other(_) => return None,
    })
}

pub(crate) use crate::naming::is_plain_type as is_safe_type;

/// The column's type in a `CREATE TABLE` on MySQL: verbatim when the schema
/// came from MySQL, else rendered from its canonical type.
pub(crate) fn column_type(
    table: &TableName,
    engine: &str,
    column: &Column,
    key: bool,
) -> Result<String, EndpointError> {
    // MariaDB reports JSON as `longtext`; only the name JSON brings its check
    // back. A timestamptz or uuid that hubsync created as DATETIME or CHAR
    // carries its meaning in a column comment, which the declared type lacks:
    // rendering it again keeps the comment.
    let declared = column.declared_type.to_ascii_lowercase();
    let marked = matches!(
        (&column.canonical, declared.starts_with("datetime") || declared.starts_with("char")),
        (CanonicalType::TimestampTz | CanonicalType::Uuid, true)
    );
    if engine == "mysql" && column.canonical != CanonicalType::Json && !marked {
        if !is_safe_type(&column.declared_type) {
            return Err(EndpointError::new(
                ErrorKind::UnmappableType,
                format!(
                    "column `{}` of table `{table}` has the type `{}`, which hubsync cannot write into DDL",
                    column.name, column.declared_type
                ),
            )
            .with_hint("create the table on the member yourself"));
        }
        return Ok(column.declared_type.clone());
    }
    render_canonical(&column.canonical, key).ok_or_else(|| {
        EndpointError::new(
            ErrorKind::UnmappableType,
            format!(
                "column `{}` of table `{table}` has the {engine} type `{}`, which has no MySQL equivalent",
                column.name, column.declared_type
            ),
        )
        .with_hint(
            "leave the column out of the sync schema, or create the table on the member yourself with a suitable type",
        )
    })
}

/// Whether an index on a column of this type needs a prefix length.
pub(crate) fn needs_prefix(rendered: &str) -> bool {
    let lower = rendered.to_ascii_lowercase();
    lower.contains("text") || lower.contains("blob") || lower == "json"
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn quote_ident_doubles_backticks() {
        assert_eq!(quote_ident("t"), "`t`");
        assert_eq!(quote_ident("a`b"), "`a``b`");
        assert_eq!(quote_ident("it's \"a\".b"), "`it's \"a\".b`");
    }

    #[test]
    fn catalog_types_map_to_canonical_types() {
        use CanonicalType::*;
        assert_eq!(canonical_type("tinyint", "tinyint(1)", "", false), Boolean);
        assert_eq!(canonical_type("tinyint", "tinyint(4)", "", false), Integer);
        assert_eq!(canonical_type("int", "int(10) unsigned", "", false), Integer);
        assert_eq!(
            canonical_type("bigint", "bigint(20) unsigned", "", false),
            Decimal { precision: Some(20), scale: Some(0) }
        );
        assert_eq!(
            canonical_type("decimal", "decimal(10,2)", "", false),
            Decimal { precision: Some(10), scale: Some(2) }
        );
        assert_eq!(canonical_type("longtext", "longtext", "", true), Json);
        assert_eq!(canonical_type("datetime", "datetime(6)", TZ_COMMENT, false), TimestampTz);
        assert_eq!(canonical_type("datetime", "datetime(6)", "", false), Timestamp);
        assert_eq!(canonical_type("timestamp", "timestamp(6)", "", false), TimestampTz);
        assert_eq!(canonical_type("geometry", "geometry", "", false), Other("geometry".into()));
    }

    #[test]
    fn rendered_types_are_safe_and_keys_are_bounded() {
        assert!(render_canonical(&CanonicalType::Text, true).unwrap().starts_with("VARCHAR(255)"));
        assert_eq!(render_canonical(&CanonicalType::Blob, true).unwrap(), "VARBINARY(255)");
        assert_eq!(
            render_canonical(&CanonicalType::Decimal { precision: Some(10), scale: Some(2) }, false).unwrap(),
            "DECIMAL(10,2)"
        );
        assert!(!is_safe_type("INT); DROP TABLE x; --"));
        assert!(is_safe_type("int(10) unsigned"));
    }
}

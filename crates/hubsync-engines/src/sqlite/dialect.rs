//! SQLite's SQL dialect: identifier quoting, table qualification and the
//! mapping between declared types and hubsync's canonical types.

use hubsync_core::{CanonicalType, Column, EndpointError, ErrorKind, TableName};

/// Quotes an identifier for SQLite: wraps it in double quotes and doubles any
/// embedded double quote. Every identifier that reaches SQL goes through here.
pub fn quote_ident(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    out.push('"');
    for c in name.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Checks that a table lives in the `main` schema, the only one hubsync
/// provisions: triggers may only reference tables of their own database, so
/// tracking objects for an attached schema would have to live there.
pub(crate) fn check_schema(table: &TableName) -> Result<(), EndpointError> {
    match table.schema.as_deref() {
        None => Ok(()),
        Some(s) if s.eq_ignore_ascii_case("main") => Ok(()),
        Some(s) => Err(EndpointError::new(
            ErrorKind::Schema,
            format!("table `{table}` is in the attached schema `{s}`, which hubsync does not sync on SQLite"),
        )
        .with_hint("name the table without a schema (or with `main.`) and point the endpoint at that database file")),
    }
}

/// The table as `"main"."name"`: qualifying with `main` keeps a temporary
/// table of the same name from shadowing it.
pub(crate) fn qualified(table: &TableName) -> Result<String, EndpointError> {
    check_schema(table)?;
    Ok(format!("main.{}", quote_ident(&table.name)))
}

/// Maps a declared SQLite type to a canonical type, following SQLite's
/// affinity rules and recognising the common type names on top of them.
pub fn canonical_type(declared: &str) -> CanonicalType {
    let upper = declared.trim().to_ascii_uppercase();
    let has = |s: &str| upper.contains(s);
    if upper.is_empty() {
        return CanonicalType::Blob;
    }
    // The most specific names first: `TIMESTAMPTZ` contains `TIMESTAMP`, which
    // contains `TIME`, and `DATETIME` contains both `DATE` and `TIME`.
    if has("TIMESTAMPTZ") || has("WITH TIME ZONE") {
        return CanonicalType::TimestampTz;
    }
    if has("DATETIME") || has("TIMESTAMP") {
        return CanonicalType::Timestamp;
    }
    if has("DATE") {
        return CanonicalType::Date;
    }
    if has("TIME") {
        return CanonicalType::Time;
    }
    if has("BOOL") {
        return CanonicalType::Boolean;
    }
    if has("UUID") {
        return CanonicalType::Uuid;
    }
    if has("JSON") {
        return CanonicalType::Json;
    }
    if has("INT") {
        return CanonicalType::Integer;
    }
    if has("DECIMAL") || has("NUMERIC") {
        let (precision, scale) = parse_precision(&upper);
        return CanonicalType::Decimal { precision, scale };
    }
    if has("CHAR") || has("CLOB") || has("TEXT") {
        return CanonicalType::Text;
    }
    if has("BLOB") {
        return CanonicalType::Blob;
    }
    if has("REAL") || has("FLOA") || has("DOUB") {
        return CanonicalType::Real;
    }
    CanonicalType::Other(declared.trim().to_string())
}

/// `DECIMAL(10,2)` -> (Some(10), Some(2)); absent parts are `None`.
fn parse_precision(upper: &str) -> (Option<u32>, Option<u32>) {
    let Some(open) = upper.find('(') else {
        return (None, None);
    };
    let Some(close) = upper[open..].find(')') else {
        return (None, None);
    };
    let inner = &upper[open + 1..open + close];
    let mut parts = inner.split(',').map(|p| p.trim().parse::<u32>().ok());
    let precision = parts.next().flatten();
    let scale = parts.next().flatten();
    (precision, scale)
}

/// The SQLite type for a canonical type. Decimals and JSON get names SQLite
/// gives TEXT affinity (they contain `TEXT`): with NUMERIC affinity SQLite
/// would turn `12345678901234567890.123456789` into a 15-digit float, and the
/// JSON document `1.50` into the number 1.5, while the names still map back to
/// a decimal and to JSON.
pub fn render_canonical(canonical: &CanonicalType) -> Option<String> {
    Some(match canonical {
        CanonicalType::Integer => "INTEGER".into(),
        CanonicalType::Real => "REAL".into(),
        CanonicalType::Decimal { precision: Some(p), scale: Some(s) } => format!("DECIMAL_TEXT({p},{s})"),
        CanonicalType::Decimal { precision: Some(p), scale: None } => format!("DECIMAL_TEXT({p})"),
        CanonicalType::Decimal { .. } => "DECIMAL_TEXT".into(),
        CanonicalType::Text => "TEXT".into(),
        CanonicalType::Blob => "BLOB".into(),
        CanonicalType::Boolean => "BOOLEAN".into(),
        CanonicalType::Date => "DATE".into(),
        CanonicalType::Time => "TIME".into(),
        CanonicalType::Timestamp => "TIMESTAMP".into(),
        CanonicalType::TimestampTz => "TIMESTAMPTZ".into(),
        CanonicalType::Uuid => "UUID".into(),
        CanonicalType::Json => "JSON_TEXT".into(),
        CanonicalType::Other(_) => return None,
    })
}

pub(crate) use crate::naming::is_plain_type as is_safe_type;

/// The column's type in a `CREATE TABLE` on SQLite: verbatim when the schema
/// came from SQLite, else rendered from its canonical type.
pub(crate) fn column_type(table: &TableName, engine: &str, column: &Column) -> Result<String, EndpointError> {
    let rendered = if engine == "sqlite" {
        column.declared_type.clone()
    } else {
        render_canonical(&column.canonical).ok_or_else(|| {
            EndpointError::new(
                ErrorKind::UnmappableType,
                format!(
                    "column `{}` of table `{table}` has the {engine} type `{}`, which has no SQLite equivalent",
                    column.name, column.declared_type
                ),
            )
            .with_hint("leave the column out of the sync schema, or create the table on the member yourself with a suitable type")
        })?
    };
    if !is_safe_type(&rendered) {
        return Err(EndpointError::new(
            ErrorKind::UnmappableType,
            format!(
                "column `{}` of table `{table}` has the type `{rendered}`, which hubsync cannot write into DDL",
                column.name
            ),
        )
        .with_hint("create the table on the member yourself"));
    }
    Ok(rendered)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn quote_ident_doubles_quotes() {
        assert_eq!(quote_ident("t"), "\"t\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_ident("\""), "\"\"\"\"");
        assert_eq!(quote_ident("it's a.b [c]"), "\"it's a.b [c]\"");
        assert_eq!(quote_ident("ünï"), "\"ünï\"");
        assert_eq!(quote_ident(""), "\"\"");
    }

    #[test]
    fn qualified_accepts_main_only() {
        assert_eq!(qualified(&TableName::new("x")).unwrap(), "main.\"x\"");
        let main = TableName { schema: Some("main".into()), name: "x".into() };
        assert_eq!(qualified(&main).unwrap(), "main.\"x\"");
        let other = TableName { schema: Some("aux".into()), name: "x".into() };
        let err = qualified(&other).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Schema);
        assert!(err.to_string().contains("aux"), "{err}");
    }

    #[test]
    fn declared_types_map_by_affinity_and_name() {
        use CanonicalType::*;
        let cases = [
            ("INTEGER", Integer),
            ("bigint", Integer),
            ("UNSIGNED BIG INT", Integer),
            ("BOOLEAN", Boolean),
            ("bool", Boolean),
            ("DECIMAL(10,2)", Decimal { precision: Some(10), scale: Some(2) }),
            ("NUMERIC", Decimal { precision: None, scale: None }),
            ("numeric(7)", Decimal { precision: Some(7), scale: None }),
            ("VARCHAR(40)", Text),
            ("CHARACTER VARYING", Text),
            ("CLOB", Text),
            ("TEXT", Text),
            ("BLOB", Blob),
            ("", Blob),
            ("REAL", Real),
            ("FLOAT", Real),
            ("DOUBLE PRECISION", Real),
            ("DATE", Date),
            ("DATETIME", Timestamp),
            ("TIMESTAMP", Timestamp),
            ("TIMESTAMPTZ", TimestampTz),
            ("timestamp with time zone", TimestampTz),
            ("TIME", Time),
            ("UUID", Uuid),
            ("JSON", Json),
            ("JSONB", Json),
            ("GEOGRAPHY", Other("GEOGRAPHY".into())),
        ];
        for (declared, expected) in cases {
            assert_eq!(canonical_type(declared), expected, "{declared}");
        }
    }

    #[test]
    fn rendered_types_map_back_to_themselves() {
        use CanonicalType::*;
        for t in [
            Integer,
            Real,
            Decimal { precision: Some(12), scale: Some(3) },
            Decimal { precision: None, scale: None },
            Text,
            Blob,
            Boolean,
            Date,
            Time,
            Timestamp,
            TimestampTz,
            Uuid,
            Json,
        ] {
            let rendered = render_canonical(&t).unwrap();
            assert_eq!(canonical_type(&rendered), t, "{rendered}");
        }
        assert_eq!(render_canonical(&Other("geography".into())), None);
    }

    #[test]
    fn unsafe_types_are_refused() {
        assert!(is_safe_type("DECIMAL(10, 2)"));
        assert!(is_safe_type("UNSIGNED BIG INT"));
        assert!(is_safe_type(""));
        assert!(!is_safe_type("INT); DROP TABLE x; --"));
        assert!(!is_safe_type("TEXT\"x"));
        assert!(!is_safe_type("INT("));
    }

    #[test]
    fn foreign_other_types_are_unmappable() {
        let col = Column {
            name: "g".into(),
            declared_type: "geography".into(),
            canonical: CanonicalType::Other("geography".into()),
            nullable: true,
        };
        let err = column_type(&TableName::new("t"), "postgres", &col).unwrap_err();
        assert_eq!(err.kind, ErrorKind::UnmappableType);
        let text = err.to_string();
        assert!(text.contains("`g`") && text.contains("`t`") && text.contains("geography"), "{text}");
        assert!(err.hint.is_some());
        assert_eq!(column_type(&TableName::new("t"), "sqlite", &col).unwrap(), "geography");
    }
}

//! PostgreSQL's SQL dialect: identifier quoting, table qualification and the
//! mapping between declared types and hubsync's canonical types.

use hubsync_core::{CanonicalType, Column, EndpointError, ErrorKind, TableName};

/// The schema a table without one lives in.
pub(crate) const DEFAULT_SCHEMA: &str = "public";

/// The schema holding every object hubsync creates (besides the triggers,
/// which PostgreSQL keeps with their table).
pub(crate) const HUBSYNC_SCHEMA: &str = "hubsync";

/// Quotes an identifier for PostgreSQL: wraps it in double quotes and doubles
/// any embedded double quote. Every identifier that reaches SQL goes through here.
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

/// The table's schema, `public` when it names none.
pub(crate) fn schema_of(table: &TableName) -> &str {
    table.schema.as_deref().unwrap_or(DEFAULT_SCHEMA)
}

/// The table as `"schema"."name"`.
pub(crate) fn qualified(table: &TableName) -> String {
    format!("{}.{}", quote_ident(schema_of(table)), quote_ident(&table.name))
}

/// An object in hubsync's own schema, as `"hubsync"."name"`.
pub(crate) fn in_hubsync(name: &str) -> String {
    format!("{}.{}", quote_ident(HUBSYNC_SCHEMA), quote_ident(name))
}

/// Maps a declared PostgreSQL type (as `format_type` prints it) to a canonical
/// type. `typtype` and `typcategory` come from `pg_type`: enums (`e`) and
/// arrays (category `A`) have no canonical equivalent and stay `Other`.
pub fn canonical_type(declared: &str, typtype: &str, typcategory: &str) -> CanonicalType {
    let lower = declared.trim().to_ascii_lowercase();
    if typtype == "e" || typcategory == "A" || typtype == "d" || lower.ends_with("[]") {
        return CanonicalType::Other(declared.trim().to_string());
    }
    let base = lower.split('(').next().unwrap_or("").trim();
    match base {
        "smallint" | "integer" | "bigint" | "int2" | "int4" | "int8" => CanonicalType::Integer,
        "real" | "double precision" | "float4" | "float8" => CanonicalType::Real,
        "numeric" | "decimal" => {
            let (precision, scale) = parse_precision(&lower);
            CanonicalType::Decimal { precision, scale }
        }
        "text" | "character varying" | "character" | "varchar" | "char" | "bpchar" | "\"char\"" | "name" | "citext" => {
            CanonicalType::Text
        }
        "bytea" => CanonicalType::Blob,
        "boolean" | "bool" => CanonicalType::Boolean,
        "date" => CanonicalType::Date,
        "uuid" => CanonicalType::Uuid,
        "json" | "jsonb" => CanonicalType::Json,
        "timestamptz" => CanonicalType::TimestampTz,
        "timestamp" if lower.ends_with("with time zone") && !lower.ends_with("without time zone") => {
            CanonicalType::TimestampTz
        }
        "timestamp" => CanonicalType::Timestamp,
        "time" if lower.ends_with("without time zone") || lower == "time" => CanonicalType::Time,
        _ if lower.starts_with("timestamp") && lower.ends_with("without time zone") => CanonicalType::Timestamp,
        _ if lower.starts_with("timestamp") && lower.ends_with("with time zone") => CanonicalType::TimestampTz,
        _ if lower.starts_with("time") && lower.ends_with("without time zone") => CanonicalType::Time,
        _ => CanonicalType::Other(declared.trim().to_string()),
    }
}

/// `numeric(10,2)` -> (Some(10), Some(2)); absent parts are `None`.
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

/// The PostgreSQL type for a canonical type; `None` for `Other`.
pub fn render_canonical(canonical: &CanonicalType) -> Option<String> {
    Some(match canonical {
        CanonicalType::Integer => "bigint".into(),
        CanonicalType::Real => "double precision".into(),
        // PostgreSQL caps numeric precision at 1000; a larger one only came
        // from an engine that ignores it, so the value's own digits decide.
        CanonicalType::Decimal { precision: Some(p), scale: Some(s) } if *p <= 1000 && s <= p => {
            format!("numeric({p},{s})")
        }
        CanonicalType::Decimal { precision: Some(p), scale: None } if *p <= 1000 => format!("numeric({p})"),
        CanonicalType::Decimal { .. } => "numeric".into(),
        CanonicalType::Text => "text".into(),
        CanonicalType::Blob => "bytea".into(),
        CanonicalType::Boolean => "boolean".into(),
        CanonicalType::Date => "date".into(),
        CanonicalType::Time => "time".into(),
        CanonicalType::Timestamp => "timestamp".into(),
        CanonicalType::TimestampTz => "timestamptz".into(),
        CanonicalType::Uuid => "uuid".into(),
        CanonicalType::Json => "jsonb".into(),
        CanonicalType::Other(_) => return None,
    })
}

/// Whether a declared type is safe to splice into SQL. Types cannot be bound
/// as parameters, so anything beyond a (possibly quoted, schema-qualified,
/// array) type name with an optional modifier is refused rather than risk it
/// carrying SQL.
pub(crate) fn is_safe_type(declared: &str) -> bool {
    let mut depth = 0i32;
    let mut in_quotes = false;
    for c in declared.chars() {
        if in_quotes {
            // Inside a quoted name only a closing quote matters; `;` and `'`
            // are still refused so nothing can end the statement.
            match c {
                '"' => in_quotes = false,
                ';' | '\'' | '\\' | '$' => return false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_quotes = true,
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            c if c.is_alphanumeric() || matches!(c, ' ' | '_' | ',' | '.' | '+' | '-' | '[' | ']') => {}
            _ => return false,
        }
    }
    depth == 0 && !in_quotes && !declared.trim().is_empty()
}

/// The column's type in a `CREATE TABLE` on PostgreSQL: verbatim when the
/// schema came from PostgreSQL, else rendered from its canonical type.
pub(crate) fn column_type(table: &TableName, engine: &str, column: &Column) -> Result<String, EndpointError> {
    let rendered = if engine == "postgres" {
        column.declared_type.clone()
    } else {
        render_canonical(&column.canonical).ok_or_else(|| {
            EndpointError::new(
                ErrorKind::UnmappableType,
                format!(
                    "column `{}` of table `{table}` has the {engine} type `{}`, which has no PostgreSQL equivalent",
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
        assert_eq!(quote_ident("ünï.x"), "\"ünï.x\"");
    }

    #[test]
    fn qualified_defaults_to_public() {
        assert_eq!(qualified(&TableName::new("x")), "\"public\".\"x\"");
        let t = TableName { schema: Some("s p".into()), name: "a.b".into() };
        assert_eq!(qualified(&t), "\"s p\".\"a.b\"");
    }

    #[test]
    fn declared_types_map_to_canonical_and_back() {
        use CanonicalType::*;
        let cases = [
            ("bigint", Integer),
            ("smallint", Integer),
            ("integer", Integer),
            ("double precision", Real),
            ("real", Real),
            ("numeric(10,2)", Decimal { precision: Some(10), scale: Some(2) }),
            ("numeric", Decimal { precision: None, scale: None }),
            ("character varying(40)", Text),
            ("character(3)", Text),
            ("text", Text),
            ("bytea", Blob),
            ("boolean", Boolean),
            ("date", Date),
            ("time without time zone", Time),
            ("time(3) without time zone", Time),
            ("timestamp without time zone", Timestamp),
            ("timestamp(3) without time zone", Timestamp),
            ("timestamp with time zone", TimestampTz),
            ("uuid", Uuid),
            ("jsonb", Json),
            ("json", Json),
            ("time with time zone", Other("time with time zone".into())),
            ("interval", Other("interval".into())),
        ];
        for (declared, expected) in cases {
            assert_eq!(canonical_type(declared, "b", "N"), expected, "{declared}");
        }
        assert_eq!(canonical_type("integer[]", "b", "A"), Other("integer[]".into()));
        assert_eq!(canonical_type("mood", "e", "E"), Other("mood".into()));
        for t in [Integer, Real, Text, Blob, Boolean, Date, Time, Timestamp, TimestampTz, Uuid, Json] {
            let rendered = render_canonical(&t).unwrap();
            let back = canonical_type(&rendered, "b", "N");
            assert_eq!(back, t, "{rendered}");
        }
    }

    #[test]
    fn unsafe_types_are_refused() {
        assert!(is_safe_type("numeric(10, 2)"));
        assert!(is_safe_type("integer[]"));
        assert!(is_safe_type("\"My Enum\""));
        assert!(is_safe_type("s.\"mood\""));
        assert!(!is_safe_type("int); drop table x; --"));
        assert!(!is_safe_type("\"x;\""));
        assert!(!is_safe_type("text'"));
        assert!(!is_safe_type(""));
    }
}

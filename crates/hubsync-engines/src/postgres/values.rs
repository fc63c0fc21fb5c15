//! [`Value`] <-> PostgreSQL conversion. Every column travels in one of four
//! wire forms chosen from its local declared type: values are read through SQL
//! expressions that print them canonically (see docs/types.md), and written as
//! text (or bytes for `bytea`) cast to the column's declared type in SQL.

use hubsync_core::{CanonicalType, Value};
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::{Postgres, Row};

use super::dialect::quote_ident;

/// A query with PostgreSQL arguments.
pub(crate) type PgQuery<'q> = sqlx::query::Query<'q, Postgres, PgArguments>;

/// How a column's values travel between SQL and [`Value`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wire {
    /// Read as int8 (integers, booleans as 0/1).
    Int,
    /// Read as float8.
    Float,
    /// Read and written as bytea.
    Bytes,
    /// Read as canonical text, written as text cast to the column's type.
    Text,
}

/// A column of the local table, as the catalog declares it.
#[derive(Debug, Clone)]
pub(crate) struct LocalColumn {
    /// The column name.
    pub name: String,
    /// The type as `format_type` prints it (`numeric(10,2)`, `integer[]`).
    pub declared: String,
    /// Its canonical type.
    pub canonical: CanonicalType,
    /// `GENERATED ALWAYS AS IDENTITY`: inserts need `OVERRIDING SYSTEM VALUE`.
    pub identity_always: bool,
    /// Whether NULL is allowed.
    pub nullable: bool,
    /// The sequence feeding the column (serial or identity), if any.
    pub sequence: Option<String>,
}

impl LocalColumn {
    /// The wire form of this column's values.
    pub fn wire(&self) -> Wire {
        match &self.canonical {
            CanonicalType::Integer | CanonicalType::Boolean => Wire::Int,
            CanonicalType::Real => Wire::Float,
            CanonicalType::Blob => Wire::Bytes,
            _ => Wire::Text,
        }
    }

    /// The SQL expression reading this column (of alias `alias`) canonically.
    pub fn read_expr(&self, alias: &str) -> String {
        let c = format!("{alias}.{}", quote_ident(&self.name));
        match &self.canonical {
            CanonicalType::Integer => format!("{c}::int8"),
            CanonicalType::Boolean => format!("{c}::int4::int8"),
            CanonicalType::Real => format!("{c}::float8"),
            CanonicalType::Blob => c,
            // The session runs in UTC with ISO dates: the text is
            // `YYYY-MM-DD HH:MM:SS[.ffffff]`, trailing zeros already trimmed.
            CanonicalType::TimestampTz => format!("(({c}) AT TIME ZONE 'UTC')::text || '+00:00'"),
            _ => format!("{c}::text"),
        }
    }

    /// The SQL expression turning a wire value `expr` (text, or bytea for
    /// `bytea` columns) into the column's type.
    pub fn write_expr(&self, expr: &str) -> String {
        match self.wire() {
            Wire::Bytes => expr.to_string(),
            _ => format!("({expr})::{}", self.declared),
        }
    }

    /// The parameter placeholder `$n` typed for this column.
    pub fn param(&self, n: usize) -> String {
        match self.wire() {
            Wire::Bytes => format!("${n}::bytea"),
            _ => self.write_expr(&format!("${n}::text")),
        }
    }

    /// Whether equality on this type can be trusted to mean "same value":
    /// floats (where -0 = 0) and types without an equality operator (json,
    /// arrays of them, unknown types) are compared by their exact text or bytes.
    pub fn distinct_expr(&self, left: &str, right: &str) -> String {
        let l = format!("{left}.{}", quote_ident(&self.name));
        let r = format!("{right}.{}", quote_ident(&self.name));
        self.distinct_between(&l, &r)
    }

    /// [`LocalColumn::distinct_expr`] between two expressions of this
    /// column's type.
    pub fn distinct_between(&self, l: &str, r: &str) -> String {
        match &self.canonical {
            CanonicalType::Real => format!("float8send({l}::float8) IS DISTINCT FROM float8send({r}::float8)"),
            CanonicalType::Integer
            | CanonicalType::Boolean
            | CanonicalType::Blob
            | CanonicalType::Text
            | CanonicalType::Date
            | CanonicalType::Uuid
            | CanonicalType::Timestamp
            | CanonicalType::TimestampTz
            | CanonicalType::Time => format!("{l} IS DISTINCT FROM {r}"),
            _ => format!("{l}::text IS DISTINCT FROM {r}::text"),
        }
    }
}

/// A float as text PostgreSQL parses back bit-exact (Rust prints the shortest
/// round-tripping form).
pub(crate) fn float_text(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f == f64::INFINITY {
        "Infinity".into()
    } else if f == f64::NEG_INFINITY {
        "-Infinity".into()
    } else {
        format!("{f:?}")
    }
}

/// A value as wire text (`None` for NULL).
pub(crate) fn to_text(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::Integer(i) => Some(i.to_string()),
        Value::Real(f) => Some(float_text(*f)),
        Value::Text(s) => Some(s.clone()),
        Value::Blob(b) => Some(String::from_utf8_lossy(b).into_owned()),
    }
}

/// A value as wire bytes (`None` for NULL).
pub(crate) fn to_bytes(value: &Value) -> Option<Vec<u8>> {
    match value {
        Value::Null => None,
        Value::Blob(b) => Some(b.clone()),
        other => to_text(other).map(String::into_bytes),
    }
}

/// Binds a value as a parameter of the column's wire form.
pub(crate) fn bind_for<'q>(query: PgQuery<'q>, column: &LocalColumn, value: &Value) -> PgQuery<'q> {
    match column.wire() {
        Wire::Bytes => query.bind(to_bytes(value)),
        _ => query.bind(to_text(value)),
    }
}

/// One column of a batch as a bound array.
pub(crate) enum WireArray {
    /// A text[] parameter.
    Text(Vec<Option<String>>),
    /// A bytea[] parameter.
    Bytes(Vec<Option<Vec<u8>>>),
    /// An int8[] parameter: an integer column whose values are all integers.
    Int(Vec<Option<i64>>),
    /// A float8[] parameter: a `double precision` column whose values are
    /// all floats.
    Float(Vec<Option<f64>>),
}

/// The declared integer types an int8 value converts to exactly (or fails
/// with "out of range", as the text would).
const EXACT_FROM_INT8: [&str; 3] = ["bigint", "integer", "smallint"];

impl WireArray {
    /// A column's values as one array. Integers and floats go in binary,
    /// which saves the server parsing text and this process printing it
    /// (a tenth of a batch's apply time); any value of another kind (a loose
    /// engine may send text for a number) sends the whole column as text,
    /// cast by the server as before.
    pub fn collect<'v>(column: &LocalColumn, values: impl Iterator<Item = &'v Value> + Clone) -> Self {
        let int = matches!(column.canonical, CanonicalType::Integer)
            && EXACT_FROM_INT8.contains(&column.declared.as_str())
            && values.clone().all(|v| matches!(v, Value::Integer(_) | Value::Null));
        let float = matches!(column.canonical, CanonicalType::Real)
            && column.declared == "double precision"
            && values.clone().all(|v| matches!(v, Value::Real(_) | Value::Null));
        if int {
            return WireArray::Int(values.map(|v| if let Value::Integer(i) = v { Some(*i) } else { None }).collect());
        }
        if float {
            return WireArray::Float(values.map(|v| if let Value::Real(f) = v { Some(*f) } else { None }).collect());
        }
        match column.wire() {
            Wire::Bytes => WireArray::Bytes(values.map(to_bytes).collect()),
            _ => WireArray::Text(values.map(to_text).collect()),
        }
    }

    /// The SQL array type the array is bound as.
    pub fn sql_type(&self) -> &'static str {
        match self {
            WireArray::Text(_) => "text[]",
            WireArray::Bytes(_) => "bytea[]",
            WireArray::Int(_) => "int8[]",
            WireArray::Float(_) => "float8[]",
        }
    }

    /// The SQL expression turning one element `expr` of this array into the
    /// column's type.
    pub fn element_expr(&self, column: &LocalColumn, expr: &str) -> String {
        match self {
            WireArray::Text(_) | WireArray::Bytes(_) => column.write_expr(expr),
            WireArray::Int(_) | WireArray::Float(_) => format!("({expr})::{}", column.declared),
        }
    }

    /// Binds the array.
    pub fn bind(self, query: PgQuery<'_>) -> PgQuery<'_> {
        match self {
            WireArray::Text(v) => query.bind(v),
            WireArray::Bytes(v) => query.bind(v),
            WireArray::Int(v) => query.bind(v),
            WireArray::Float(v) => query.bind(v),
        }
    }
}

/// Reads column `index` of a row in the wire form of `column`.
pub(crate) fn read_value(row: &PgRow, index: usize, column: &LocalColumn) -> Result<Value, sqlx::Error> {
    Ok(match column.wire() {
        Wire::Int => row.try_get::<Option<i64>, _>(index)?.into(),
        Wire::Float => row.try_get::<Option<f64>, _>(index)?.into(),
        Wire::Bytes => row.try_get::<Option<Vec<u8>>, _>(index)?.into(),
        Wire::Text => row.try_get::<Option<String>, _>(index)?.into(),
    })
}

/// Reads the values of `columns` starting at column `start` of a row.
pub(crate) fn read_values(row: &PgRow, start: usize, columns: &[LocalColumn]) -> Result<Vec<Value>, sqlx::Error> {
    columns.iter().enumerate().map(|(i, c)| read_value(row, start + i, c)).collect()
}

/// Appends a value to a `COPY ... FROM STDIN` text-format buffer.
pub(crate) fn copy_text(out: &mut Vec<u8>, column: &LocalColumn, value: &Value) {
    if matches!(value, Value::Null) {
        out.extend_from_slice(b"\\N");
        return;
    }
    if column.wire() == Wire::Bytes {
        // bytea's hex input form, its backslash escaped for COPY.
        let bytes = to_bytes(value).unwrap_or_default();
        out.extend_from_slice(b"\\\\x");
        for b in bytes {
            out.extend_from_slice(format!("{b:02x}").as_bytes());
        }
        return;
    }
    let text = to_text(value).unwrap_or_default();
    for byte in text.bytes() {
        match byte {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            other => out.push(other),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn col(canonical: CanonicalType, declared: &str) -> LocalColumn {
        LocalColumn {
            name: "c".into(),
            declared: declared.into(),
            canonical,
            identity_always: false,
            nullable: true,
            sequence: None,
        }
    }

    #[test]
    fn floats_print_round_trippably() {
        for f in [0.1, -0.0, 1e308, 5e-324, f64::MAX, 0.1 + 0.2] {
            assert_eq!(float_text(f).parse::<f64>().unwrap().to_bits(), f.to_bits());
        }
        assert_eq!(float_text(f64::NEG_INFINITY), "-Infinity");
    }

    #[test]
    fn copy_text_escapes_specials() {
        let t = col(CanonicalType::Text, "text");
        let mut out = Vec::new();
        copy_text(&mut out, &t, &Value::Text("a\tb\nc\\d\re".into()));
        assert_eq!(out, b"a\\tb\\nc\\\\d\\re");
        out.clear();
        copy_text(&mut out, &t, &Value::Null);
        assert_eq!(out, b"\\N");
        out.clear();
        copy_text(&mut out, &col(CanonicalType::Blob, "bytea"), &Value::Blob(vec![0, 255]));
        assert_eq!(out, b"\\\\x00ff");
    }
}

//! [`Value`] <-> sqlx conversion. Values are read by the column's kind (from
//! the catalog, see [`ColKind`]): the SELECT list casts temporal, decimal
//! and unusual types to text, so every value decodes from a plain integer,
//! double, text or byte string, and reads in canonical form.

use hubsync_core::Value;
use sqlx::mysql::{MySqlArguments, MySqlRow};
use sqlx::{MySql, Row, ValueRef};

use super::dialect::ColKind;

/// A query with MySQL arguments.
pub(crate) type MySqlQuery<'q> = sqlx::query::Query<'q, MySql, MySqlArguments>;

/// The text a value of this kind is written as: a canonical time-zone-aware
/// timestamp is UTC ('+00:00'), which MariaDB does not parse, so the offset
/// goes (the session's zone is UTC).
fn to_server_text(kind: Option<ColKind>, text: String) -> String {
    match kind {
        Some(ColKind::TimestampTz) => match text.strip_suffix("+00:00").or_else(|| text.strip_suffix('Z')) {
            Some(bare) => bare.trim_end().to_string(),
            None => text,
        },
        _ => text,
    }
}

/// Binds a value by reference (copies text and blobs into the arguments).
pub(crate) fn bind_ref<'q>(query: MySqlQuery<'q>, value: &Value, kind: Option<ColKind>) -> MySqlQuery<'q> {
    match value {
        Value::Null => query.bind(Option::<i64>::None),
        Value::Integer(i) => query.bind(*i),
        Value::Real(f) => query.bind(*f),
        Value::Text(s) => query.bind(to_server_text(kind, s.clone())),
        Value::Blob(b) => query.bind(b.clone()),
    }
}

/// Binds a value by moving it into the arguments: no copy of text or blobs.
pub(crate) fn bind_owned(query: MySqlQuery<'_>, value: Value, kind: Option<ColKind>) -> MySqlQuery<'_> {
    match value {
        Value::Null => query.bind(Option::<i64>::None),
        Value::Integer(i) => query.bind(i),
        Value::Real(f) => query.bind(f),
        Value::Text(s) => query.bind(to_server_text(kind, s)),
        Value::Blob(b) => query.bind(b),
    }
}

/// Trims trailing zeros of a fraction, and the point when nothing is left.
fn trim_fraction(mut text: String) -> String {
    if let Some(dot) = text.rfind('.')
        && text[dot + 1..].chars().all(|c| c.is_ascii_digit())
    {
        while text.ends_with('0') {
            text.pop();
        }
        if text.len() == dot + 1 {
            text.pop();
        }
    }
    text
}

/// Reads column `index` of a row as a value of the given kind.
pub(crate) fn read_value(row: &MySqlRow, index: usize, kind: ColKind) -> Result<Value, sqlx::Error> {
    if row.try_get_raw(index)?.is_null() {
        return Ok(Value::Null);
    }
    Ok(match kind {
        ColKind::Int | ColKind::Unsigned => Value::Integer(row.try_get_unchecked::<i64, _>(index)?),
        ColKind::Real => Value::Real(row.try_get_unchecked::<f64, _>(index)?),
        ColKind::Blob => Value::Blob(row.try_get_unchecked::<Vec<u8>, _>(index)?),
        ColKind::Text | ColKind::Numeric | ColKind::Date | ColKind::Other => Value::Text(text_of(row, index)?),
        ColKind::Timestamp | ColKind::Time => Value::Text(trim_fraction(text_of(row, index)?)),
        ColKind::TimestampTz => Value::Text(format!("{}+00:00", trim_fraction(text_of(row, index)?))),
    })
}

/// Text, decoded from the raw bytes: a text column declared with a binary
/// collation reports itself as binary, which sqlx's `String` refuses.
fn text_of(row: &MySqlRow, index: usize) -> Result<String, sqlx::Error> {
    let bytes = row.try_get_unchecked::<Vec<u8>, _>(index)?;
    String::from_utf8(bytes).map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

/// Reads `kinds.len()` columns starting at `start`.
pub(crate) fn read_values(row: &MySqlRow, start: usize, kinds: &[ColKind]) -> Result<Vec<Value>, sqlx::Error> {
    kinds.iter().enumerate().map(|(i, k)| read_value(row, start + i, *k)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractions_are_trimmed_and_offsets_dropped() {
        assert_eq!(trim_fraction("2026-01-02 03:04:05.120000".into()), "2026-01-02 03:04:05.12");
        assert_eq!(trim_fraction("2026-01-02 03:04:05.000000".into()), "2026-01-02 03:04:05");
        assert_eq!(trim_fraction("10:00:00".into()), "10:00:00");
        assert_eq!(
            to_server_text(Some(ColKind::TimestampTz), "2026-01-02 03:04:05+00:00".into()),
            "2026-01-02 03:04:05"
        );
        assert_eq!(to_server_text(Some(ColKind::Text), "x+00:00".into()), "x+00:00");
    }
}

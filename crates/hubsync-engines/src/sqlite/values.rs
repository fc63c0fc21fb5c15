//! [`Value`] <-> sqlx conversion. Values are read by their dynamic storage
//! class, not by the column's declared type, so they round-trip bit-exact:
//! text stays text and blobs stay blobs even in a column declared otherwise.

use hubsync_core::Value;
use sqlx::sqlite::{SqliteArguments, SqliteRow};
use sqlx::{Row, Sqlite, TypeInfo, ValueRef};

/// A query with SQLite arguments.
pub(crate) type SqliteQuery<'q> = sqlx::query::Query<'q, Sqlite, SqliteArguments>;

/// Binds a value by reference (copies text and blobs into the arguments).
pub(crate) fn bind_ref<'q>(query: SqliteQuery<'q>, value: &Value) -> SqliteQuery<'q> {
    match value {
        Value::Null => query.bind(Option::<i64>::None),
        Value::Integer(i) => query.bind(*i),
        Value::Real(f) => query.bind(*f),
        Value::Text(s) => query.bind(s.clone()),
        Value::Blob(b) => query.bind(b.clone()),
    }
}

/// Binds a value by moving it into the arguments: no copy of text or blobs.
pub(crate) fn bind_owned(query: SqliteQuery<'_>, value: Value) -> SqliteQuery<'_> {
    match value {
        Value::Null => query.bind(Option::<i64>::None),
        Value::Integer(i) => query.bind(i),
        Value::Real(f) => query.bind(f),
        Value::Text(s) => query.bind(s),
        Value::Blob(b) => query.bind(b),
    }
}

/// Reads column `index` of a row by its storage class.
pub(crate) fn read_value(row: &SqliteRow, index: usize) -> Result<Value, sqlx::Error> {
    enum Class {
        Integer,
        Real,
        Text,
        Blob,
    }
    let class = {
        let raw = row.try_get_raw(index)?;
        if raw.is_null() {
            return Ok(Value::Null);
        }
        // `type_info` of a value (not a column) is sqlite3_value_type: the
        // storage class this row's value actually has.
        match raw.type_info().name() {
            "INTEGER" => Class::Integer,
            "REAL" => Class::Real,
            "TEXT" => Class::Text,
            _ => Class::Blob,
        }
    };
    Ok(match class {
        Class::Integer => Value::Integer(row.try_get_unchecked::<i64, _>(index)?),
        Class::Real => Value::Real(row.try_get_unchecked::<f64, _>(index)?),
        Class::Text => Value::Text(row.try_get_unchecked::<String, _>(index)?),
        Class::Blob => Value::Blob(row.try_get_unchecked::<Vec<u8>, _>(index)?),
    })
}

/// Reads `count` columns starting at `start`.
pub(crate) fn read_values(row: &SqliteRow, start: usize, count: usize) -> Result<Vec<Value>, sqlx::Error> {
    (start..start + count).map(|i| read_value(row, i)).collect()
}

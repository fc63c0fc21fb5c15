//! Turning sqlx/MySQL errors into [`EndpointError`]s the core can act on.

use std::fmt::Display;

use hubsync_core::{EndpointError, ErrorKind};
use sqlx::mysql::MySqlDatabaseError;

/// The server error number of a database error, if it is one.
pub(crate) fn error_number(error: &sqlx::Error) -> Option<u16> {
    match error {
        sqlx::Error::Database(db) => db.try_downcast_ref::<MySqlDatabaseError>().map(MySqlDatabaseError::number),
        _ => None,
    }
}

/// The kind an error belongs to, from the server's error number.
pub(crate) fn kind_of(error: &sqlx::Error) -> ErrorKind {
    if let Some(number) = error_number(error) {
        return match number {
            1062 | 1586 => ErrorKind::UniqueViolation,
            1451 | 1452 | 1216 | 1217 => ErrorKind::ForeignKeyViolation,
            1213 => ErrorKind::Deadlock,
            1205 => ErrorKind::Busy,
            1146 => ErrorKind::TableMissing,
            1049 | 1044 | 1045 => ErrorKind::ConnectionFailed,
            2002 | 2003 | 2006 | 2013 | 1053 | 1927 => ErrorKind::ConnectionLost,
            _ => ErrorKind::Other,
        };
    }
    match error {
        sqlx::Error::PoolTimedOut => ErrorKind::Busy,
        sqlx::Error::Io(_) | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed | sqlx::Error::Tls(_) => {
            ErrorKind::ConnectionLost
        }
        sqlx::Error::Protocol(_) => ErrorKind::ConnectionLost,
        sqlx::Error::Configuration(_) => ErrorKind::ConnectionFailed,
        _ => ErrorKind::Other,
    }
}

/// Maps an sqlx error, keeping it as the source and saying what was being done.
pub(crate) fn map_err(error: sqlx::Error, context: impl Display) -> EndpointError {
    let kind = kind_of(&error);
    let err = EndpointError::new(kind, context.to_string()).with_source(error);
    match kind {
        ErrorKind::Busy => err.with_hint("another transaction holds a lock hubsync needs; retry later"),
        ErrorKind::ConnectionLost => err.with_hint("the connection to the server dropped; check the server and retry"),
        _ => err,
    }
}

/// A `map_err` closure for `?`, with the context computed lazily.
pub(crate) fn ctx<C: Display>(context: C) -> impl FnOnce(sqlx::Error) -> EndpointError {
    move |e| map_err(e, context)
}

/// An error opening the pool: always [`ErrorKind::ConnectionFailed`], naming
/// the database, with a hint that fits the cause.
pub(crate) fn connect_error(error: sqlx::Error, label: &str, database: &str) -> EndpointError {
    let hint = match error_number(&error) {
        Some(1049) => format!("the database `{database}` does not exist on the server; create it or fix the URL"),
        Some(1044 | 1045) => "the server refused the user name or password in the URL".to_string(),
        _ => "check the host, port, user and password in the URL and that the server is running".to_string(),
    };
    EndpointError::new(ErrorKind::ConnectionFailed, format!("cannot connect to `{label}`"))
        .with_source(error)
        .with_hint(hint)
}

//! Turning sqlx/SQLite errors into [`EndpointError`]s the core can act on.

use std::fmt::Display;

use hubsync_core::{EndpointError, ErrorKind};

const SQLITE_BUSY: i32 = 5;
const SQLITE_LOCKED: i32 = 6;
const SQLITE_CANTOPEN: i32 = 14;
const SQLITE_NOTADB: i32 = 26;
const SQLITE_CONSTRAINT_FOREIGNKEY: i32 = 787;
const SQLITE_CONSTRAINT_PRIMARYKEY: i32 = 1555;
const SQLITE_CONSTRAINT_UNIQUE: i32 = 2067;

/// The kind an error belongs to, from SQLite's extended result code (sqlx
/// reports the extended code) and, for a missing table, the message: SQLite
/// reports it as a plain `SQLITE_ERROR`.
pub(crate) fn kind_of(error: &sqlx::Error) -> ErrorKind {
    match error {
        sqlx::Error::Database(db) => {
            let code = db.code().and_then(|c| c.parse::<i32>().ok()).unwrap_or(1);
            match (code, code & 0xff) {
                (SQLITE_CONSTRAINT_UNIQUE | SQLITE_CONSTRAINT_PRIMARYKEY, _) => ErrorKind::UniqueViolation,
                (SQLITE_CONSTRAINT_FOREIGNKEY, _) => ErrorKind::ForeignKeyViolation,
                (_, SQLITE_BUSY | SQLITE_LOCKED) => ErrorKind::Busy,
                (_, SQLITE_CANTOPEN | SQLITE_NOTADB) => ErrorKind::ConnectionFailed,
                _ if db.message().contains("no such table") => ErrorKind::TableMissing,
                _ => ErrorKind::Other,
            }
        }
        sqlx::Error::PoolTimedOut => ErrorKind::Busy,
        sqlx::Error::Io(_) | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => ErrorKind::ConnectionLost,
        sqlx::Error::Configuration(_) => ErrorKind::ConnectionFailed,
        _ => ErrorKind::Other,
    }
}

/// Maps an sqlx error, keeping it as the source and saying what was being done.
pub(crate) fn map_err(error: sqlx::Error, context: impl Display) -> EndpointError {
    let kind = kind_of(&error);
    let err = EndpointError::new(kind, context.to_string()).with_source(error);
    match kind {
        ErrorKind::ConnectionFailed => err.with_hint(
            "check that the path exists, is a SQLite database, and that its directory is readable and writable",
        ),
        ErrorKind::Busy => err.with_hint("another process holds a lock on the database; retry later"),
        _ => err,
    }
}

/// A `map_err` closure for `?`, with the context computed lazily.
pub(crate) fn ctx<C: Display>(context: C) -> impl FnOnce(sqlx::Error) -> EndpointError {
    move |e| map_err(e, context)
}

//! Turning sqlx/PostgreSQL errors into [`EndpointError`]s the core can act on.

use std::fmt::Display;

use hubsync_core::{EndpointError, ErrorKind};

/// The kind an error belongs to, from its SQLSTATE.
pub(crate) fn kind_of(error: &sqlx::Error) -> ErrorKind {
    match error {
        sqlx::Error::Database(db) => kind_of_sqlstate(db.code().as_deref().unwrap_or("")),
        sqlx::Error::PoolTimedOut => ErrorKind::Busy,
        sqlx::Error::Io(_) | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed | sqlx::Error::Protocol(_) => {
            ErrorKind::ConnectionLost
        }
        sqlx::Error::Configuration(_) | sqlx::Error::Tls(_) => ErrorKind::ConnectionFailed,
        _ => ErrorKind::Other,
    }
}

/// The kind of a SQLSTATE code.
pub(crate) fn kind_of_sqlstate(code: &str) -> ErrorKind {
    match code {
        "23505" => ErrorKind::UniqueViolation,
        "23503" => ErrorKind::ForeignKeyViolation,
        "40001" => ErrorKind::SerializationFailure,
        "40P01" => ErrorKind::Deadlock,
        "55P03" => ErrorKind::Busy,
        "42P01" => ErrorKind::TableMissing,
        "57P01" | "57P02" | "57P03" => ErrorKind::ConnectionLost,
        // The database does not exist, or the login was refused.
        "3D000" => ErrorKind::ConnectionFailed,
        c if c.starts_with("28") => ErrorKind::ConnectionFailed,
        c if c.starts_with("08") => ErrorKind::ConnectionLost,
        _ => ErrorKind::Other,
    }
}

/// Maps an sqlx error, keeping it as the source and saying what was being done.
pub(crate) fn map_err(error: sqlx::Error, context: impl Display) -> EndpointError {
    let kind = kind_of(&error);
    let err = EndpointError::new(kind, context.to_string()).with_source(error);
    match kind {
        ErrorKind::Busy => err.with_hint("another transaction holds a lock on the rows or table; retry later"),
        ErrorKind::ConnectionLost => err.with_hint("the connection to PostgreSQL dropped; check the server and retry"),
        ErrorKind::TableMissing => err.with_hint("create the table, or check the table name and its schema"),
        _ => err,
    }
}

/// A `map_err` closure for `?`, with the context computed lazily.
pub(crate) fn ctx<C: Display>(context: C) -> impl FnOnce(sqlx::Error) -> EndpointError {
    move |e| map_err(e, context)
}

/// The error of a failed open: always [`ErrorKind::ConnectionFailed`], naming
/// the database, with a hint.
pub(crate) fn open_failed(error: sqlx::Error, label: &str) -> EndpointError {
    EndpointError::new(ErrorKind::ConnectionFailed, format!("cannot connect to PostgreSQL database `{label}`"))
        .with_source(error)
        .with_hint(
            "check that the server is running and reachable at that host and port, that the database exists, \
             and that the user and password are right",
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_map_to_kinds() {
        assert_eq!(kind_of_sqlstate("23505"), ErrorKind::UniqueViolation);
        assert_eq!(kind_of_sqlstate("23503"), ErrorKind::ForeignKeyViolation);
        assert_eq!(kind_of_sqlstate("40001"), ErrorKind::SerializationFailure);
        assert_eq!(kind_of_sqlstate("40P01"), ErrorKind::Deadlock);
        assert_eq!(kind_of_sqlstate("55P03"), ErrorKind::Busy);
        assert_eq!(kind_of_sqlstate("08006"), ErrorKind::ConnectionLost);
        assert_eq!(kind_of_sqlstate("57P01"), ErrorKind::ConnectionLost);
        assert_eq!(kind_of_sqlstate("42P01"), ErrorKind::TableMissing);
        assert_eq!(kind_of_sqlstate("3D000"), ErrorKind::ConnectionFailed);
        assert_eq!(kind_of_sqlstate("22P02"), ErrorKind::Other);
    }
}

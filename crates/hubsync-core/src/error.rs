//! The error every engine returns, with a kind the core understands.

use std::fmt;

/// What went wrong, in terms the sync algorithm can act on. Engines map their
/// native error codes onto these kinds; the core decides from the kind alone
/// whether to retry, reorder or stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The database could not be opened or reached.
    ConnectionFailed,
    /// The connection dropped mid-operation.
    ConnectionLost,
    /// A synced table does not exist.
    TableMissing,
    /// The schema cannot be synced as configured (no key, missing column, bad type).
    Schema,
    /// A type has no equivalent on the other engine.
    UnmappableType,
    /// A unique constraint was violated.
    UniqueViolation,
    /// A foreign key constraint was violated.
    ForeignKeyViolation,
    /// A serialization failure; retrying the transaction may succeed.
    SerializationFailure,
    /// A deadlock or lock timeout; retrying may succeed.
    Deadlock,
    /// The database is busy (locked); retrying may succeed.
    Busy,
    /// hubsync's tracking objects are missing: provision first.
    NotProvisioned,
    /// The session was cancelled between batches.
    Cancelled,
    /// A failure injected by a test.
    Injected,
    /// The other end of a bulk-copy stream stopped; its own error says why.
    StreamClosed,
    /// Anything else.
    Other,
}

impl ErrorKind {
    /// Whether repeating the same transaction may succeed.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            ErrorKind::SerializationFailure | ErrorKind::Deadlock | ErrorKind::Busy | ErrorKind::ConnectionLost
        )
    }
}

/// An error from an endpoint: a kind, a message saying what failed, an optional
/// hint saying what to do, and the underlying cause.
#[derive(Debug)]
pub struct EndpointError {
    /// The kind, for the algorithm.
    pub kind: ErrorKind,
    /// What failed, for people.
    pub message: String,
    /// What to do about it, when known.
    pub hint: Option<String>,
    /// The underlying error.
    pub source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl EndpointError {
    /// A new error of a kind with a message.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        EndpointError { kind, message: message.into(), hint: None, source: None }
    }

    /// Adds what the user should do.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Attaches the underlying error.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// Prefixes the message with context (`while reading table x`).
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        self.message = format!("{context}: {}", self.message);
        self
    }
}

impl fmt::Display for EndpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(source) = &self.source {
            let text = source.to_string();
            if !self.message.contains(&text) {
                write!(f, ": {text}")?;
            }
        }
        if let Some(hint) = &self.hint {
            write!(f, ". {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for EndpointError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<crate::schema::SchemaError> for EndpointError {
    fn from(e: crate::schema::SchemaError) -> Self {
        EndpointError::new(ErrorKind::Schema, e.to_string())
    }
}

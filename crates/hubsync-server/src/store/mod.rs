//! The metadata store: groups, members, their states, logs, conflicts, sync
//! history, API tokens, long operations, and the leases and requests by which
//! several `hubsync serve` processes share the work.
//!
//! An embedded SQLite file by default; PostgreSQL when several servers share
//! one store. Watermarks are *not* here: they live in the synced databases,
//! committed with the batches they describe (DESIGN.md); the store holds only
//! what is needed to schedule, display and audit.

mod access;
mod groups;
mod leases;
mod logs;
mod migrations;
mod progress;
pub mod time;

pub use progress::{MemberProgress, RunProgress};

use std::time::Duration;

use hubsync_core::Conflict;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::any::AnyPoolOptions;
use sqlx::{Any, AnyPool, Transaction};

use crate::model::{LogType, SyncGroupState, SyncMemberState};
use crate::secrets::SecretKey;
use crate::spec::{GroupSpec, MemberSpec};

/// Why the metadata store failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store could not be opened or created.
    #[error(
        "cannot open the metadata store {url}: {source}. Check --metadata (a sqlite:// path in a writable directory, or a postgres:// URL of a reachable database)"
    )]
    Open {
        /// The store's URL, without its password.
        url: String,
        /// The cause.
        #[source]
        source: sqlx::Error,
    },
    /// A statement failed.
    #[error("metadata store: {doing} failed: {source}")]
    Query {
        /// What was being done.
        doing: String,
        /// The cause.
        #[source]
        source: sqlx::Error,
    },
    /// A password must be stored or read but no secret key is configured.
    #[error(
        "a database password must be stored encrypted, but no secret key is set: set HUBSYNC_SECRET_KEY (a random key: `hubsync secret-key`) or pass --secret-key-file"
    )]
    SecretKeyMissing,
    /// A stored password could not be decrypted with the configured key.
    #[error("a stored password cannot be decrypted with the configured secret key (was the key changed?): {0}")]
    Decrypt(String),
    /// The group named does not exist.
    #[error("sync group `{0}` does not exist; create it first")]
    GroupNotFound(String),
    /// The member named does not exist in its group.
    #[error("sync member `{member}` does not exist in sync group `{group}`")]
    MemberNotFound {
        /// The group.
        group: String,
        /// The member.
        member: String,
    },
    /// A value given to the store is not acceptable.
    #[error("metadata store: {0}")]
    Invalid(String),
    /// The store was created or migrated by a newer hubsync.
    #[error(
        "the metadata store has schema version {found}, but this hubsync knows versions up to {supported}; upgrade hubsync"
    )]
    NewerSchema {
        /// The store's version.
        found: i64,
        /// The newest this build knows.
        supported: i64,
    },
    /// A stored document could not be read back.
    #[error("metadata store: stored {what} is unreadable: {detail}")]
    Corrupt {
        /// What was read.
        what: String,
        /// Why it could not be.
        detail: String,
    },
}

/// Whether a put created, changed or left alone a stored thing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// It did not exist.
    Created,
    /// It existed and differed.
    Updated,
    /// It existed and was equal.
    Unchanged,
}

/// A group's runtime status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupStatus {
    /// The group's state.
    pub state: SyncGroupState,
    /// When its last sync ended (µs since the epoch).
    pub last_sync_time: Option<i64>,
}

/// A stored group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredGroup {
    /// What it is (the hub password decrypted).
    pub spec: GroupSpec,
    /// How it stands.
    pub status: GroupStatus,
}

/// A member's runtime status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberStatusRecord {
    /// The member's state.
    pub state: SyncMemberState,
    /// When it last synced successfully (µs since the epoch).
    pub last_sync_time: Option<i64>,
    /// Why its last sync failed, if it did.
    pub last_error: Option<String>,
}

/// A stored member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMember {
    /// What it is (the password decrypted).
    pub spec: MemberSpec,
    /// How it stands.
    pub status: MemberStatusRecord,
}

/// One log entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    /// Its id, increasing; set by the store.
    pub id: i64,
    /// When (µs since the epoch).
    pub timestamp: i64,
    /// `Error`, `Warning` or `Success` (never `All`).
    pub log_type: LogType,
    /// `hub` or a member's name.
    pub source: String,
    /// What happened.
    pub details: String,
    /// Ties a run's entries together.
    pub tracing_id: String,
    /// `Succeeded`, `Failed`, `Cancelled`.
    pub operation_status: String,
}

/// Which log entries to read.
#[derive(Debug, Clone, Default)]
pub struct LogQuery {
    /// At or after (µs since the epoch).
    pub start: Option<i64>,
    /// At or before (µs since the epoch).
    pub end: Option<i64>,
    /// Only this type; `None` or `All` for every type.
    pub log_type: Option<LogType>,
    /// Only entries with an id below this (pages go from newest to oldest).
    pub before_id: Option<i64>,
    /// At most this many; `0` for no limit.
    pub limit: u32,
}

/// A logged conflict.
#[derive(Debug, Clone, PartialEq)]
pub struct ConflictRecord {
    /// Its id; set by the store.
    pub id: i64,
    /// When it was resolved (µs since the epoch).
    pub timestamp: i64,
    /// The member on the other side.
    pub member: String,
    /// The conflict as the core reported it (table, key, both images, winner,
    /// policy, reason).
    pub conflict: Conflict,
    /// The synced columns' names, in row-image order, so the images can be
    /// shown as column → value.
    pub columns: Vec<String>,
}

/// One member's part in one sync run, for history charts and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRecord {
    /// The group.
    pub group: String,
    /// The member.
    pub member: String,
    /// The run's tracing id.
    pub tracing_id: String,
    /// When it started (µs since the epoch).
    pub started_at: i64,
    /// How long it took.
    pub duration_ms: i64,
    /// Rows written on the hub.
    pub uploaded: i64,
    /// Rows written on the member.
    pub downloaded: i64,
    /// Conflicts met.
    pub conflicts: i64,
    /// `Succeeded`, `Failed` or `Cancelled`.
    pub outcome: String,
}

/// An API token as stored (its hash only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    /// Its id.
    pub id: i64,
    /// The name given at creation.
    pub name: String,
    /// Whether it may only read.
    pub read_only: bool,
    /// When it was created (µs since the epoch).
    pub created_at: i64,
}

/// Which database holds the store; the SQL is shared, only the DDL and
/// transaction start differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

/// How long a SQLite connection waits for another writer (in this process or
/// another) before failing with "database is locked".
const SQLITE_BUSY_TIMEOUT_MS: u32 = 30_000;

/// How long to wait for a connection (the pool retries meanwhile) before
/// reporting the store unreachable.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// Switches a SQLite store to WAL. The switch needs the file to itself and
/// does not wait on the busy timeout, so while another opener of the same
/// new file migrates it, it is retried for as long as that timeout.
async fn set_wal(pool: &AnyPool) -> Result<(), sqlx::Error> {
    let deadline = std::time::Instant::now() + Duration::from_millis(u64::from(SQLITE_BUSY_TIMEOUT_MS));
    loop {
        match sqlx::query("pragma journal_mode = wal").execute(pool).await {
            Err(sqlx::Error::Database(e))
                if e.code().and_then(|c| c.parse::<i32>().ok()).is_some_and(|c| c & 0xff == 5)
                    && std::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            other => return other.map(|_| ()),
        }
    }
}

/// The metadata store. Cheap to clone (a pool).
#[derive(Debug, Clone)]
pub struct MetaStore {
    pool: AnyPool,
    backend: Backend,
    key: Option<SecretKey>,
}

impl MetaStore {
    /// Opens (creating if needed, and migrating) the store at `url`:
    /// `sqlite://path` or `postgres://...`. `key` encrypts database passwords;
    /// without it, storing or reading a password fails with
    /// [`StoreError::SecretKeyMissing`].
    pub async fn open(url: &str, key: Option<SecretKey>) -> Result<MetaStore, StoreError> {
        sqlx::any::install_default_drivers();
        let open_error = |source| StoreError::Open { url: hubsync_engines::redact_url(url), source };
        let (backend, connect_url) =
            if let Some(path) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
                (Backend::Sqlite, sqlite_url(path))
            } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
                (Backend::Postgres, url.to_string())
            } else {
                return Err(open_error(sqlx::Error::Configuration(
                    "the metadata store URL must start with sqlite:// or postgres://".into(),
                )));
            };
        let options = match backend {
            Backend::Sqlite => AnyPoolOptions::new().max_connections(4).after_connect(|conn, _| {
                Box::pin(async move {
                    sqlx::query(sqlx::AssertSqlSafe(format!("pragma busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")))
                        .execute(&mut *conn)
                        .await?;
                    Ok(())
                })
            }),
            Backend::Postgres => AnyPoolOptions::new().max_connections(8),
        };
        let pool = options.acquire_timeout(ACQUIRE_TIMEOUT).connect(&connect_url).await.map_err(open_error)?;
        if backend == Backend::Sqlite {
            // WAL lets readers run beside the writer; the mode is stored in
            // the file, so setting it once per open is enough.
            set_wal(&pool).await.map_err(open_error)?;
        }
        let store = MetaStore { pool, backend, key };
        store.migrate().await?;
        tracing::info!(store = %hubsync_engines::redact_url(url), shared = store.is_shared(), "Opened the metadata store.");
        Ok(store)
    }

    /// Whether the store is PostgreSQL (and so may be shared by servers).
    pub fn is_shared(&self) -> bool {
        self.backend == Backend::Postgres
    }

    /// Closes the store's connections (at shutdown).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Starts a transaction that writes. SQLite takes the write lock at once,
    /// so a transaction that reads before it writes waits for other writers
    /// (busy timeout) instead of failing when it upgrades its lock.
    async fn begin(&self, doing: &str) -> Result<Transaction<'static, Any>, StoreError> {
        let tx = match self.backend {
            Backend::Sqlite => self.pool.begin_with("begin immediate").await,
            Backend::Postgres => self.pool.begin().await,
        };
        tx.map_err(query_error(doing))
    }

    /// Seals a password for storage.
    fn seal(&self, password: Option<&str>) -> Result<Option<String>, StoreError> {
        match password {
            None => Ok(None),
            Some(plain) => Ok(Some(self.key.as_ref().ok_or(StoreError::SecretKeyMissing)?.seal(plain))),
        }
    }

    /// Opens a stored password.
    fn unseal(&self, sealed: Option<&str>) -> Result<Option<String>, StoreError> {
        match sealed {
            None => Ok(None),
            Some(sealed) => {
                let key = self.key.as_ref().ok_or(StoreError::SecretKeyMissing)?;
                key.open(sealed).map(Some).map_err(|e| StoreError::Decrypt(e.to_string()))
            }
        }
    }
}

/// The SQLite URL sqlx opens: the path escaped, and the file created when
/// missing.
fn sqlite_url(path: &str) -> String {
    const PATH: &percent_encoding::AsciiSet =
        &percent_encoding::CONTROLS.add(b' ').add(b'"').add(b'#').add(b'%').add(b'?').add(b'<').add(b'>');
    format!("sqlite://{}?mode=rwc", percent_encoding::utf8_percent_encode(path, PATH))
}

/// Maps a statement's error, saying what was being done.
fn query_error(doing: &str) -> impl FnOnce(sqlx::Error) -> StoreError + '_ {
    move |source| StoreError::Query { doing: doing.to_string(), source }
}

/// A document as stored.
fn to_json<T: Serialize>(what: &str, value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Invalid(format!("cannot encode {what}: {e}")))
}

/// A stored document read back.
fn from_json<T: DeserializeOwned>(what: &str, text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt { what: what.to_string(), detail: e.to_string() })
}

/// A unit enum's name as stored (`NotReady`).
fn enum_text<T: Serialize>(what: &str, value: &T) -> Result<String, StoreError> {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => Ok(s),
        _ => Err(StoreError::Invalid(format!("{what} is not a name"))),
    }
}

/// A unit enum read back from its stored name.
fn enum_from_text<T: DeserializeOwned>(what: &str, text: &str) -> Result<T, StoreError> {
    serde_json::from_value(serde_json::Value::String(text.to_string()))
        .map_err(|e| StoreError::Corrupt { what: what.to_string(), detail: format!("`{text}`: {e}") })
}

/// A page size as bound: `0` means no limit.
fn limit_value(limit: u32) -> i64 {
    if limit == 0 { i64::MAX } else { i64::from(limit) }
}

/// A duration in µs, saturating.
fn duration_micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

//! The metadata store: groups, members, their states, logs, conflicts, sync
//! history, API tokens, long operations, and the leases and requests by which
//! several `hubsync serve` processes share the work.
//!
//! An embedded SQLite file by default; PostgreSQL when several servers share
//! one store. Watermarks are *not* here: they live in the synced databases,
//! committed with the batches they describe (DESIGN.md); the store holds only
//! what is needed to schedule, display and audit.

use std::time::Duration;

use hubsync_core::Conflict;

use crate::model::{DatabaseSchema, ErrorDetail, LogType, Operation, SyncGroupState, SyncMemberState};
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
    /// At most this many.
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

/// The metadata store. Cheap to clone (a pool).
#[derive(Debug, Clone)]
pub struct MetaStore {
    _private: (),
}

impl MetaStore {
    /// Opens (creating if needed, and migrating) the store at `url`:
    /// `sqlite://path` or `postgres://...`. `key` encrypts database passwords;
    /// without it, storing or reading a password fails with
    /// [`StoreError::SecretKeyMissing`].
    pub async fn open(url: &str, key: Option<SecretKey>) -> Result<MetaStore, StoreError> {
        let _ = (url, key);
        todo!("metadata store")
    }

    /// Whether the store is PostgreSQL (and so may be shared by servers).
    pub fn is_shared(&self) -> bool {
        todo!()
    }

    /// Every group, by name.
    pub async fn list_groups(&self) -> Result<Vec<StoredGroup>, StoreError> {
        todo!()
    }

    /// One group.
    pub async fn get_group(&self, name: &str) -> Result<Option<StoredGroup>, StoreError> {
        let _ = name;
        todo!()
    }

    /// Creates or replaces a group's spec (its status is kept; a new group is
    /// `NotReady`).
    pub async fn put_group(&self, spec: &GroupSpec) -> Result<PutOutcome, StoreError> {
        let _ = spec;
        todo!()
    }

    /// Deletes a group with its members, logs, conflicts, history, schemas,
    /// lease and requests. Returns whether it existed.
    pub async fn delete_group(&self, name: &str) -> Result<bool, StoreError> {
        let _ = name;
        todo!()
    }

    /// Sets a group's status.
    pub async fn set_group_status(&self, name: &str, status: &GroupStatus) -> Result<(), StoreError> {
        let _ = (name, status);
        todo!()
    }

    /// A group's members, by name.
    pub async fn list_members(&self, group: &str) -> Result<Vec<StoredMember>, StoreError> {
        let _ = group;
        todo!()
    }

    /// One member.
    pub async fn get_member(&self, group: &str, name: &str) -> Result<Option<StoredMember>, StoreError> {
        let _ = (group, name);
        todo!()
    }

    /// Creates or replaces a member's spec (a new member is `UnProvisioned`).
    /// The group must exist.
    pub async fn put_member(&self, spec: &MemberSpec) -> Result<PutOutcome, StoreError> {
        let _ = spec;
        todo!()
    }

    /// Deletes a member (and its schema). Returns whether it existed.
    pub async fn delete_member(&self, group: &str, name: &str) -> Result<bool, StoreError> {
        let _ = (group, name);
        todo!()
    }

    /// Sets a member's status.
    pub async fn set_member_status(
        &self,
        group: &str,
        name: &str,
        status: &MemberStatusRecord,
    ) -> Result<(), StoreError> {
        let _ = (group, name, status);
        todo!()
    }

    /// Stores the hub's schema as last refreshed.
    pub async fn put_hub_schema(&self, group: &str, schema: &DatabaseSchema) -> Result<(), StoreError> {
        let _ = (group, schema);
        todo!()
    }

    /// The hub's schema as last refreshed.
    pub async fn hub_schema(&self, group: &str) -> Result<Option<DatabaseSchema>, StoreError> {
        let _ = group;
        todo!()
    }

    /// Stores a member's schema as last refreshed.
    pub async fn put_member_schema(
        &self,
        group: &str,
        member: &str,
        schema: &DatabaseSchema,
    ) -> Result<(), StoreError> {
        let _ = (group, member, schema);
        todo!()
    }

    /// A member's schema as last refreshed.
    pub async fn member_schema(&self, group: &str, member: &str) -> Result<Option<DatabaseSchema>, StoreError> {
        let _ = (group, member);
        todo!()
    }

    /// Appends a log entry (its `id` is ignored); returns the new id.
    pub async fn append_log(&self, group: &str, record: &LogRecord) -> Result<i64, StoreError> {
        let _ = (group, record);
        todo!()
    }

    /// Log entries, newest first.
    pub async fn logs(&self, group: &str, query: &LogQuery) -> Result<Vec<LogRecord>, StoreError> {
        let _ = (group, query);
        todo!()
    }

    /// Appends conflicts (their `id`s are ignored).
    pub async fn append_conflicts(&self, group: &str, records: &[ConflictRecord]) -> Result<(), StoreError> {
        let _ = (group, records);
        todo!()
    }

    /// Logged conflicts, newest first, with ids below `before_id` when given.
    pub async fn conflicts(
        &self,
        group: &str,
        before_id: Option<i64>,
        limit: u32,
    ) -> Result<Vec<ConflictRecord>, StoreError> {
        let _ = (group, before_id, limit);
        todo!()
    }

    /// Deletes a group's conflicts logged before `older_than` (µs); returns how many.
    pub async fn purge_conflicts(&self, group: &str, older_than: i64) -> Result<u64, StoreError> {
        let _ = (group, older_than);
        todo!()
    }

    /// Appends one member's run to the history.
    pub async fn append_run(&self, record: &RunRecord) -> Result<(), StoreError> {
        let _ = record;
        todo!()
    }

    /// A group's last runs, newest first.
    pub async fn runs(&self, group: &str, limit: u32) -> Result<Vec<RunRecord>, StoreError> {
        let _ = (group, limit);
        todo!()
    }

    /// Creates an API token and returns it in clear (the only time it is
    /// seen: only its SHA-256 is stored).
    pub async fn create_token(&self, name: &str, read_only: bool) -> Result<String, StoreError> {
        let _ = (name, read_only);
        todo!()
    }

    /// The token a bearer secret belongs to, if any.
    pub async fn verify_token(&self, secret: &str) -> Result<Option<TokenInfo>, StoreError> {
        let _ = secret;
        todo!()
    }

    /// Every token (without secrets).
    pub async fn list_tokens(&self) -> Result<Vec<TokenInfo>, StoreError> {
        todo!()
    }

    /// Starts a long operation; returns it (`InProgress`).
    pub async fn create_operation(&self, name: &str) -> Result<Operation, StoreError> {
        let _ = name;
        todo!()
    }

    /// Ends a long operation: `Ok` succeeded, `Err` failed with that error.
    pub async fn finish_operation(&self, id: &str, result: Result<(), ErrorDetail>) -> Result<(), StoreError> {
        let _ = (id, result);
        todo!()
    }

    /// One long operation.
    pub async fn get_operation(&self, id: &str) -> Result<Option<Operation>, StoreError> {
        let _ = id;
        todo!()
    }

    /// Takes or renews the lease on a group for `owner` for `ttl`. Succeeds
    /// when nobody holds it, `owner` holds it, or the holder's lease expired.
    /// Atomic across servers sharing the store.
    pub async fn try_lease(&self, group: &str, owner: &str, ttl: Duration) -> Result<bool, StoreError> {
        let _ = (group, owner, ttl);
        todo!()
    }

    /// Gives up a lease held by `owner` (no-op otherwise).
    pub async fn release_lease(&self, group: &str, owner: &str) -> Result<(), StoreError> {
        let _ = (group, owner);
        todo!()
    }

    /// Asks for a sync of the group now (`triggerSync`), on whichever server
    /// holds or takes its lease.
    pub async fn request_sync(&self, group: &str) -> Result<(), StoreError> {
        let _ = group;
        todo!()
    }

    /// Takes a pending sync request: `true` once per request.
    pub async fn take_sync_request(&self, group: &str) -> Result<bool, StoreError> {
        let _ = group;
        todo!()
    }

    /// Asks the running sync of the group to stop between batches (`cancelSync`).
    pub async fn request_cancel(&self, group: &str) -> Result<(), StoreError> {
        let _ = group;
        todo!()
    }

    /// Takes a pending cancel request: `true` once per request.
    pub async fn take_cancel_request(&self, group: &str) -> Result<bool, StoreError> {
        let _ = group;
        todo!()
    }
}

//! The contract between the sync algorithm and a database.
//!
//! Every engine (and later the agent and the offline client) implements
//! [`Endpoint`]. The session algorithm in [`crate::session`] relies on the
//! guarantees written on each method; an implementation that breaks one loses
//! or duplicates data.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::change::{Change, ChangeKind, OriginFilter, Version, Watermarks};
use crate::error::EndpointError;
use crate::policy::{ChangeStamp, Conflict, ConflictResolver, Side};
use crate::schema::{TableName, TableSchema};
use crate::state::SessionRecord;
use crate::value::Value;

/// A request for one batch of changes of one kind.
#[derive(Debug, Clone)]
pub struct ReadRequest<'a> {
    /// The table, projected to the synced columns.
    pub table: &'a TableSchema,
    /// Upserts or deletes.
    pub kind: ChangeKind,
    /// Read versions strictly above this.
    pub after: Version,
    /// Where a previous batch stopped inside version `after`: when set, the
    /// changes of version `after` whose key sorts above it are read too. An
    /// engine whose versions are shared by a transaction's rows (see
    /// [`Endpoint::versions_are_per_transaction`]) orders by (version, key) so a
    /// large transaction can be cut into batches.
    pub after_key: Option<Vec<Value>>,
    /// Read versions up to and including this (a snapshot version).
    pub up_to: Version,
    /// Which origins may be sent.
    pub origin: &'a OriginFilter,
    /// At most this many changes.
    pub limit: usize,
}

/// A batch written by [`Endpoint::apply_changes_held`] in a transaction that
/// is still open.
pub trait HeldApply: Send {
    /// Stores the batch's watermark and commits.
    fn commit(self: Box<Self>) -> Pin<Box<dyn Future<Output = Result<(), EndpointError>> + Send>>;
}

/// What [`Endpoint::apply_changes_held`] did with a batch.
pub enum Held {
    /// Written, with this outcome, and not committed yet.
    Open(ApplyOutcome, Box<dyn HeldApply>),
    /// Not written: the endpoint cannot hold this batch open safely.
    Declined,
}

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Held::Open(outcome, _) => f.debug_tuple("Open").field(outcome).finish_non_exhaustive(),
            Held::Declined => f.write_str("Declined"),
        }
    }
}

/// One batch to apply to one table, atomically, with its watermark.
#[derive(Debug, Clone)]
pub struct ApplyBatch<'a> {
    /// The sync group the watermark belongs to.
    pub scope: &'a str,
    /// The peer the changes come from: recorded as their origin, and the key
    /// under which the watermark is stored.
    pub peer: &'a str,
    /// The table, projected to the synced columns.
    pub table: &'a TableSchema,
    /// The kind of every change in the batch.
    pub kind: ChangeKind,
    /// The changes, in version order. May be empty (the watermark still moves).
    /// Shared, so a batch kept for a retry costs no copy of its rows.
    pub changes: Arc<[Change]>,
    /// How far the peer has received this table's changes from the receiving
    /// database; a local change above it (of another origin) is a conflict.
    pub peer_has_received: Watermarks,
    /// Decides conflicts.
    pub resolver: ConflictResolver,
    /// The watermark to store for (`scope`, `peer`, table, `kind`) in the same
    /// transaction as the changes.
    pub watermark: Version,
}

/// The receiving database's state for one key of a batch, as an engine finds it
/// in its tracking table and base table.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalState {
    /// The tracking row's version.
    pub version: Version,
    /// The tracking row's origin.
    pub origin: String,
    /// Whether the tracking row is a tombstone.
    pub deleted: bool,
    /// The tracking row's commit time.
    pub changed_at: i64,
    /// The base row over the synced columns, `None` when absent.
    pub row: Option<Vec<Value>>,
}

/// What to do with one incoming change, decided by [`ApplyBatch::judge`].
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// No conflict: apply it.
    Apply,
    /// Both sides already agree: leave the row alone.
    Skip,
    /// A conflict, resolved: apply the incoming change only if `apply`.
    Conflict {
        /// Whether the incoming change won.
        apply: bool,
        /// The record of it.
        conflict: Conflict,
    },
}

impl ApplyBatch<'_> {
    /// The conflict rule of DESIGN.md, in one place for every engine: a change is
    /// in conflict when the receiver's tracking row for the key is newer than
    /// what the sender has received from it and did not come from the sender.
    /// Engines call this for each incoming change whose key has a tracking row.
    pub fn judge(&self, local: &LocalState, incoming: &Change) -> Verdict {
        let local_kind = if local.deleted { ChangeKind::Delete } else { ChangeKind::Upsert };
        let unseen_by_peer = local.version > self.peer_has_received.get(local_kind);
        if !unseen_by_peer || local.origin == self.peer {
            return Verdict::Apply;
        }
        if local.row == incoming.row {
            return Verdict::Skip;
        }
        let (winner, reason) = self
            .resolver
            .decide(ChangeStamp { changed_at: local.changed_at }, ChangeStamp { changed_at: incoming.changed_at });
        let (hub_row, member_row, hub_changed_at, member_changed_at) = match self.resolver.receiver {
            Side::Hub => (local.row.clone(), incoming.row.clone(), local.changed_at, incoming.changed_at),
            Side::Member => (incoming.row.clone(), local.row.clone(), incoming.changed_at, local.changed_at),
        };
        Verdict::Conflict {
            apply: winner != self.resolver.receiver,
            conflict: Conflict {
                table: self.table.name.clone(),
                key: incoming.key.clone(),
                hub_row,
                member_row,
                hub_changed_at,
                member_changed_at,
                winner,
                policy: self.resolver.policy,
                reason,
            },
        }
    }
}

/// What applying a batch did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ApplyOutcome {
    /// Changes written to the table.
    pub applied: u64,
    /// Changes left alone because both sides already agreed.
    pub skipped: u64,
    /// Conflicts met, with their resolution (whether the incoming change won or not).
    pub conflicts: Vec<Conflict>,
}

/// One message of an initial bulk copy, from [`Endpoint::bulk_read`] to
/// [`Endpoint::bulk_load`].
#[derive(Debug, Clone, PartialEq)]
pub enum BulkItem {
    /// Sent first: the snapshot version the rows are consistent with.
    Snapshot(Version),
    /// A batch of rows over the synced columns, in table column order.
    Rows(Vec<Vec<Value>>),
    /// Sent last: every row was sent. A stream that closes without it failed.
    End,
}

/// Where a bulk copy goes.
#[derive(Debug, Clone, Copy)]
pub struct BulkTarget<'a> {
    /// The sync group.
    pub scope: &'a str,
    /// The peer the rows come from (origin and watermark key).
    pub peer: &'a str,
    /// The table, projected to the synced columns.
    pub table: &'a TableSchema,
    /// Whether the loaded rows need tracking rows (with origin `peer`). The hub
    /// needs them to pass rows on to other members; a member does not, because a
    /// row it holds only from the hub has nothing to send back.
    pub record_tracking: bool,
}

/// A database taking part in sync. Implemented once per engine.
///
/// Every method may be called concurrently on clones of one endpoint for
/// different tables; implementations hold a pool, not a single connection.
pub trait Endpoint: Send + Sync {
    /// How to name this database in messages (a URL without its password).
    fn label(&self) -> &str;

    /// The engine's name: `sqlite`, `postgres` or `mysql`.
    fn engine(&self) -> &'static str;

    /// Every user table of the database, sorted by name: hubsync's own objects
    /// (the `hubsync` schema on PostgreSQL, `hubsync_*` tables elsewhere) and
    /// the engine's catalogs are left out. Names are qualified where the
    /// engine has schemas and the table is outside the default one
    /// (PostgreSQL: `sales.orders`, but `orders` for `public.orders`), so each
    /// can be passed to [`Endpoint::introspect`] as it is. For listing a
    /// database's tables to choose a sync schema from.
    fn list_tables(&self) -> impl Future<Output = Result<Vec<TableName>, EndpointError>> + Send;

    /// Reads a table's schema, or `None` when the table does not exist.
    fn introspect(&self, table: &TableName) -> impl Future<Output = Result<Option<TableSchema>, EndpointError>> + Send;

    /// Creates a table with the given columns, primary key, indexes and foreign
    /// keys, mapping types to this engine's dialect. Fails with
    /// [`crate::ErrorKind::UnmappableType`] naming the column when a type has no
    /// equivalent here.
    fn create_table(&self, table: &TableSchema) -> impl Future<Output = Result<(), EndpointError>> + Send;

    /// Creates (or recreates, idempotently) the tracking table, triggers and scope
    /// objects for a table, and records every existing row that has no tracking
    /// row yet as a local change, so rows present before provisioning are synced.
    fn provision(&self, table: &TableSchema) -> impl Future<Output = Result<(), EndpointError>> + Send;

    /// Provisions a table (as [`Endpoint::provision`]) on a database that is
    /// the hub of a sync group, and records durably that it is.
    ///
    /// A database that was never provisioned as a hub for a table may write
    /// changes it receives from its hub ([`crate::HUB_ORIGIN`]) without
    /// tracking rows, as a member's bulk copy does (see
    /// [`BulkTarget::record_tracking`]): a row it holds only from the hub has
    /// nothing to send back. A hub must record every change it receives,
    /// also one that reaches it as a member of another group, because its
    /// own members read them; so this must be called (every sync does, before
    /// its first session) before the database serves as a hub, and an engine
    /// that skips tracking rows must first record the rows it received
    /// without them.
    fn provision_as_hub(&self, table: &TableSchema) -> impl Future<Output = Result<(), EndpointError>> + Send;

    /// Whether the table's tracking objects exist.
    fn is_provisioned(&self, table: &TableName) -> impl Future<Output = Result<bool, EndpointError>> + Send;

    /// Removes the tracking objects of these tables, and the shared hubsync
    /// objects when no tracked table remains. Never touches user tables or data.
    /// Returns the names of the objects removed.
    fn deprovision(&self, tables: &[TableName]) -> impl Future<Output = Result<Vec<String>, EndpointError>> + Send;

    /// The current snapshot version: every change with a version at or below it
    /// is committed and visible, and no change at or below it can appear later.
    fn snapshot_version(&self) -> impl Future<Output = Result<Version, EndpointError>> + Send;

    /// The watermarks stored for (`scope`, `peer`, `table`); zero when none.
    fn watermarks(
        &self,
        scope: &str,
        peer: &str,
        table: &TableName,
    ) -> impl Future<Output = Result<Watermarks, EndpointError>> + Send;

    /// Reads changes of one kind with `after < version <= up_to` (plus the rest
    /// of version `after` above `after_key`) matching the origin filter, in
    /// ascending (version, key) order, at most `limit`. Upserts carry the
    /// current row image.
    fn read_changes(&self, request: ReadRequest<'_>)
    -> impl Future<Output = Result<Vec<Change>, EndpointError>> + Send;

    /// Applies a batch in one transaction: judges each change with
    /// [`ApplyBatch::judge`], writes the winners with origin `peer` recorded by
    /// the triggers, stores the watermark, and commits. On error nothing of the
    /// batch is kept.
    fn apply_changes(&self, batch: ApplyBatch<'_>) -> impl Future<Output = Result<ApplyOutcome, EndpointError>> + Send;

    /// Whether [`Endpoint::apply_changes_held`] may hold batches open, so the
    /// session writes several batches at once. False by default.
    fn holds_applies(&self) -> bool {
        false
    }

    /// Writes a batch as [`Endpoint::apply_changes`] does, but leaves its
    /// transaction open and its watermark unwritten: [`HeldApply::commit`]
    /// stores the watermark and commits, dropping the handle rolls back. The
    /// session writes a batch this way while the batch before it is applied
    /// on another connection, and commits it only after that one committed,
    /// so watermarks still become durable in order.
    ///
    /// While open, the transaction must hold no lock the other batch's
    /// transaction may need except the row locks of its own keys (the session
    /// holds a batch only beside batches whose keys it does not share): an
    /// engine declines, writing
    /// nothing, a batch it cannot write that way (say, for a table with
    /// foreign keys, unique constraints besides the key, or triggers of the
    /// application), and the session applies it after the other. The session
    /// rolls a held batch back, and applies it again later, when the other
    /// batch does not finish soon after it: it may be waiting for a lock the
    /// held one took after all. The default declines.
    fn apply_changes_held(&self, batch: ApplyBatch<'_>) -> impl Future<Output = Result<Held, EndpointError>> + Send {
        let _ = batch;
        async { Ok(Held::Declined) }
    }

    /// Counts changes above the watermarks that match the filter (for status
    /// and progress). A watermark of `Version::MAX` leaves its kind out:
    /// a session counts the kind it is about to move. An endpoint may answer
    /// such a count from a read of the same changes it has under way, whose
    /// snapshot bounds it (the count is for progress, not for sync).
    fn count_changes(
        &self,
        table: &TableSchema,
        after: Watermarks,
        origin: &OriginFilter,
    ) -> impl Future<Output = Result<u64, EndpointError>> + Send;

    /// Whether the table holds no rows.
    fn is_empty(&self, table: &TableName) -> impl Future<Output = Result<bool, EndpointError>> + Send;

    /// Streams every row of the table from one consistent snapshot: first
    /// [`BulkItem::Snapshot`], then row batches of at most `batch_rows`, then
    /// [`BulkItem::End`]. Returns the number of rows sent.
    fn bulk_read(
        &self,
        table: &TableSchema,
        batch_rows: usize,
        tx: mpsc::Sender<BulkItem>,
    ) -> impl Future<Output = Result<u64, EndpointError>> + Send;

    /// Loads a bulk stream into an empty table and stores the snapshot version as
    /// both watermarks for (`scope`, `peer`, table), atomically: a failure or a
    /// stream that ends without [`BulkItem::End`] leaves the table as it was.
    fn bulk_load(
        &self,
        target: BulkTarget<'_>,
        rx: mpsc::Receiver<BulkItem>,
    ) -> impl Future<Output = Result<u64, EndpointError>> + Send;

    /// Whether many changes share one version (PostgreSQL: the writing
    /// transaction's id). The session then never stores a watermark that could
    /// cut a version: after a batch that ends inside one, it stores the version
    /// before it, so a resumed sync reads that version again from its start
    /// (re-applying a change is harmless: equal rows are skipped).
    fn versions_are_per_transaction(&self) -> bool {
        false
    }

    /// An opaque locator by which an endpoint of the same engine can read this
    /// database directly (for SQLite, its file), when it can. Lets the initial
    /// copy between two databases of one engine run inside the engine, at its
    /// own bulk speed, instead of row by row through the process.
    fn direct_source(&self) -> Option<String> {
        None
    }

    /// Fills an empty table straight from the source named by a locator from
    /// [`Endpoint::direct_source`], with the same guarantees as
    /// [`Endpoint::bulk_load`] (one snapshot, atomic, both watermarks stored).
    /// Returns `None`, having done nothing, when this endpoint cannot read
    /// that source; the caller then streams the rows instead.
    fn bulk_copy_direct(
        &self,
        source: &str,
        target: BulkTarget<'_>,
    ) -> impl Future<Output = Result<Option<u64>, EndpointError>> + Send {
        let _ = (source, target);
        async { Ok(None) }
    }

    /// Housekeeping after sessions, off the path of the changes themselves:
    /// merges what change capture logged since the last time into the
    /// tracking tables, where an engine keeps such a log (PostgreSQL), so
    /// reads and conflict checks stay cheap. Reads are complete without it;
    /// drivers call it once the members of a run are synced. Returns how
    /// many tracking rows it wrote.
    fn compact(&self) -> impl Future<Output = Result<u64, EndpointError>> + Send {
        async { Ok(0) }
    }

    /// Stores the outcome of the last session with `peer` (for status).
    fn record_session(
        &self,
        scope: &str,
        peer: &str,
        record: &SessionRecord,
    ) -> impl Future<Output = Result<(), EndpointError>> + Send;

    /// Reads the outcome of the last session with `peer`, if any.
    fn session_record(
        &self,
        scope: &str,
        peer: &str,
    ) -> impl Future<Output = Result<Option<SessionRecord>, EndpointError>> + Send;
}

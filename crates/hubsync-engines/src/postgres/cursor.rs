//! Change reads kept open between batches.
//!
//! While a table's change log holds rows, its pending changes are the log's
//! newest row per key together with the tracking table (see
//! `changes::pending`), a relation the server must deduplicate and sort
//! whole before it can return the first change in version order. A session
//! reads such a table batch by batch, each batch starting where the last one
//! stopped; instead of sorting again for every batch, the first read opens a
//! cursor in a read-only transaction of its own and the following reads
//! fetch from it. A cursor sees the database as of its first read, which is
//! as valid an answer for every later batch as a fresh statement's (what
//! commits meanwhile has a version above the session's snapshot and waits
//! for the next session).
//!
//! A cursor is found again by exactly what a request asks (table, kind,
//! origin filter, snapshot version and the position it resumes from), so a
//! request that does not continue a cursor (a session that widened a batch
//! the database refused, another session at another position) opens its
//! own. Each open cursor holds a pooled connection and a lock on its
//! tables: at most [`MAX_OPEN`] are kept, the least recently used goes
//! first, one left idle for [`MAX_IDLE`] (its session failed or was
//! cancelled) is closed by a timer, and the endpoint closes its own before
//! it changes tracking objects (see `PgEndpoint::provision`).
//!
//! A cursor also tells how many changes it holds in all: the session's
//! progress count, asked right after the first batch, is answered from
//! that ([`Total`]) instead of deduplicating and sorting everything again.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hubsync_core::{ChangeKind, OriginFilter, Value, Version};
use sqlx::{Postgres, Transaction};

use super::introspect::Shape;

/// Cursors kept open per endpoint (its pool has four connections).
const MAX_OPEN: usize = 2;

/// How long an unused cursor stays open. A session asks for its next batch
/// as soon as it has applied the last one; a cursor idle this long belongs
/// to a session that failed or was cancelled, and its table lock would hold
/// up DDL (provisioning, schema changes) until it closes.
const MAX_IDLE: Duration = Duration::from_secs(10);

/// The cursor's name, one per connection (each cursor has its own).
pub(crate) const CURSOR_NAME: &str = "hubsync_changes";

/// What a read asks for: a cursor answers the request it stopped at.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CursorKey {
    /// The table, as [`super::tracking::table_key`] names it.
    pub table: String,
    /// Upserts or deletes.
    pub kind: ChangeKind,
    /// Which origins are read.
    pub origin: OriginFilter,
    /// The snapshot version read up to.
    pub up_to: Version,
    /// The version the next batch starts after.
    pub after: Version,
    /// The key the next batch starts after, within `after`.
    pub after_key: Option<Vec<Value>>,
}

impl CursorKey {
    /// Whether both keys read the same table, kind and origins from the same
    /// version on (to any snapshot).
    fn same_start(&self, other: &CursorKey) -> bool {
        self.table == other.table && self.kind == other.kind && self.origin == other.origin && self.after == other.after
    }

    /// Whether both keys read the same changes (at any position).
    fn same_read(&self, other: &CursorKey) -> bool {
        self.table == other.table && self.kind == other.kind && self.origin == other.origin && self.up_to == other.up_to
    }
}

/// An open cursor: its transaction (and so its connection) and the request
/// it answers next.
pub(crate) struct OpenCursor {
    /// What the next fetch answers.
    pub key: CursorKey,
    /// The read-only transaction the cursor lives in; dropping it closes
    /// the cursor and returns the connection to the pool.
    pub tx: Transaction<'static, Postgres>,
    /// The table resolved when the cursor was opened, to read its rows by.
    pub shape: Shape,
    used: Instant,
}

impl OpenCursor {
    /// A cursor just declared in `tx`, answering `key` next.
    pub fn new(key: CursorKey, tx: Transaction<'static, Postgres>, shape: Shape) -> Self {
        OpenCursor { key, tx, shape, used: Instant::now() }
    }
}

/// How many changes a cursor's read found in all, from where it started:
/// the answer to a count of the same changes (see `changes::count_changes`).
#[derive(Debug, Clone)]
pub(crate) struct Total {
    /// What the cursor read, and from where (`after_key` unset).
    pub read: CursorKey,
    /// The changes it found after that position, up to its snapshot.
    pub changes: u64,
    /// When the cursor was opened.
    pub at: Instant,
}

/// Totals kept: a count follows its read's first batch at once.
const TOTALS_KEPT: usize = 8;

/// The open cursors of one endpoint.
#[derive(Default)]
pub(crate) struct Cursors {
    open: Mutex<Vec<OpenCursor>>,
    /// The totals of the latest cursors, one per start (see [`CursorKey::same_start`]).
    totals: Mutex<Vec<Total>>,
}

impl std::fmt::Debug for Cursors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let open = self.open.lock().map(|o| o.len()).unwrap_or(0);
        f.debug_struct("Cursors").field("open", &open).finish()
    }
}

impl Cursors {
    /// Takes the cursor that answers `key` next, if one is open; closes the
    /// idle ones on the way.
    pub fn take(&self, key: &CursorKey) -> Option<OpenCursor> {
        self.close_idle();
        let mut open = self.open.lock().ok()?;
        open.iter().position(|c| &c.key == key).map(|i| open.remove(i))
    }

    /// Closes the cursors of the same read as `key` (table, kind, origin and
    /// snapshot version) at other positions: a session that starts that read
    /// again elsewhere (after widening a batch the database refused) has no
    /// use for them, and each holds a connection and its table's lock.
    pub fn forget_others(&self, key: &CursorKey) {
        self.close_where(|c| c.key.same_read(key));
    }

    /// Closes the cursors unused for [`MAX_IDLE`].
    fn close_idle(&self) {
        let now = Instant::now();
        self.close_where(|c| now.duration_since(c.used) > MAX_IDLE);
    }

    /// Closes the open cursors that `close` picks.
    fn close_where(&self, close: impl Fn(&OpenCursor) -> bool) {
        let closed: Vec<OpenCursor> = match self.open.lock() {
            Ok(mut open) => {
                let (closed, kept): (Vec<OpenCursor>, Vec<OpenCursor>) = open.drain(..).partition(|c| close(c));
                *open = kept;
                closed
            }
            Err(_) => Vec::new(),
        };
        // Dropped outside the lock: each rolls its transaction back.
        drop(closed);
    }

    /// Keeps a cursor for the request it answers next, closing the least
    /// recently used one when [`MAX_OPEN`] are open already. A timer closes
    /// it if no read continues it within [`MAX_IDLE`], whether or not this
    /// endpoint reads again.
    pub fn keep(self: &Arc<Self>, mut cursor: OpenCursor) {
        let cursors = Arc::downgrade(self);
        tokio::spawn(async move {
            tokio::time::sleep(MAX_IDLE + Duration::from_millis(100)).await;
            if let Some(cursors) = cursors.upgrade() {
                cursors.close_idle();
            }
        });
        cursor.used = Instant::now();
        let evicted = {
            let Ok(mut open) = self.open.lock() else { return };
            open.push(cursor);
            if open.len() > MAX_OPEN {
                let oldest = open.iter().enumerate().min_by_key(|(_, c)| c.used).map(|(i, _)| i).unwrap_or(0);
                Some(open.remove(oldest))
            } else {
                None
            }
        };
        drop(evicted);
    }

    /// Remembers how many changes a cursor's read found in all, in place of
    /// an older total of the same start (only the latest is asked for).
    pub fn record_total(&self, total: Total) {
        if let Ok(mut totals) = self.totals.lock() {
            totals.retain(|t| !t.read.same_start(&total.read));
            totals.push(total);
            let excess = totals.len().saturating_sub(TOTALS_KEPT);
            totals.drain(..excess);
        }
    }

    /// The total of the latest cursor that read `read` (table, kind, origin,
    /// from `after`), opened less than [`MAX_IDLE`] ago.
    pub fn total(&self, read: &CursorKey) -> Option<u64> {
        let totals = self.totals.lock().ok()?;
        let latest = totals.iter().find(|t| t.read.same_start(read))?;
        (latest.at.elapsed() < MAX_IDLE).then_some(latest.changes)
    }

    /// Forgets the totals of reads like `read` (table, kind, origin, from
    /// `after`): a read of them that opened no cursor has made them stale.
    pub fn forget_total(&self, read: &CursorKey) {
        if let Ok(mut totals) = self.totals.lock() {
            totals.retain(|t| !t.read.same_start(read));
        }
    }

    /// Closes every open cursor (when the endpoint closes or provisions).
    pub fn clear(&self) {
        self.close_where(|_| true);
    }
}

//! The sync session: one hub and one member exchange their changes.
//!
//! A session runs up to two legs, upload (member to hub) then download (hub to
//! member), as the member's direction allows. Each leg takes the source's
//! snapshot version `S` once, then for every table moves the changes between the
//! target's stored watermark and `S`:
//!
//! 1. deletes, children first;
//! 2. upserts, parents first (or a bulk copy when the target table is empty and
//!    has never received anything);
//! 3. deletes that a foreign key refused in step 1, retried now that children
//!    have moved.
//!
//! Every batch is applied in one transaction together with its watermark, so a
//! session that stops anywhere resumes exactly where it stopped.
//!
//! Reading the next batches overlaps applying the current ones, and a target
//! that can hold a batch open keeps three batches in flight (see [`flow`]).

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

mod flow;
use flow::move_changes;
use tokio::sync::mpsc;

use crate::change::{ChangeKind, OriginFilter, Version, Watermarks};
use crate::endpoint::{ApplyOutcome, BulkItem, BulkTarget, Endpoint};
use crate::error::{EndpointError, ErrorKind};
use crate::policy::{Conflict, ConflictPolicy, Side};
use crate::schema::{TableName, TableSchema};
use crate::state::{MemberState, SessionRecord};

/// The origin a member records for changes it received from its hub.
pub const HUB_ORIGIN: &str = "hub";

/// How many conflicts a report keeps in full; the rest are only counted.
const MAX_REPORTED_CONFLICTS: usize = 1_000;

/// Rows per batch of a streamed initial copy: the batches only carry rows
/// between two tasks, so small ones cost no speed and keep memory flat.
const MAX_BULK_BATCH_ROWS: usize = 2_000;

/// How often a transient failure (busy, deadlock, serialization) is retried.
const TRANSIENT_RETRIES: u32 = 5;

/// Which way changes may flow between a member and its hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Direction {
    /// Both ways.
    Bidirectional,
    /// Member changes go to the hub; the member never receives.
    OneWayMemberToHub,
    /// Hub changes go to the member; the member never sends.
    OneWayHubToMember,
}

impl Direction {
    /// All directions, for help texts.
    pub const ALL: [Direction; 3] =
        [Direction::Bidirectional, Direction::OneWayMemberToHub, Direction::OneWayHubToMember];

    /// Whether the member sends its changes.
    pub fn uploads(self) -> bool {
        self != Direction::OneWayHubToMember
    }

    /// Whether the member receives the hub's changes.
    pub fn downloads(self) -> bool {
        self != Direction::OneWayMemberToHub
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl FromStr for Direction {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Direction::ALL.into_iter().find(|d| d.to_string() == s).ok_or_else(|| {
            format!("unknown sync direction `{s}`; use Bidirectional, OneWayMemberToHub or OneWayHubToMember")
        })
    }
}

/// One leg of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Leg {
    /// Member to hub.
    Upload,
    /// Hub to member.
    Download,
}

impl fmt::Display for Leg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Leg::Upload => "upload",
            Leg::Download => "download",
        })
    }
}

/// A flag that stops a session between batches. Cloning shares the flag.
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    /// Asks every session holding this flag to stop after its current batch.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether cancellation was asked for.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// A table in the sync schema: the hub's schema projected to the synced
/// columns, with an optional per-table policy override.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncTable {
    /// The projected schema.
    pub schema: TableSchema,
    /// Overrides the group's policy for this table.
    pub policy: Option<ConflictPolicy>,
}

/// Progress events, for progress bars and logs.
#[derive(Debug, Clone, Copy)]
pub enum SessionEvent<'a> {
    /// A leg begins.
    LegStarted {
        /// Which leg.
        leg: Leg,
    },
    /// A table begins within a leg; `pending` counts the changes to move, when known.
    TableStarted {
        /// Which leg.
        leg: Leg,
        /// The table.
        table: &'a TableName,
        /// Changes to move, when known.
        pending: Option<u64>,
        /// Whether the table is filled by bulk copy.
        bulk: bool,
    },
    /// Rows were committed on the target.
    RowsMoved {
        /// Which leg.
        leg: Leg,
        /// The table.
        table: &'a TableName,
        /// Rows in this batch.
        rows: u64,
    },
    /// A conflict was resolved.
    Conflict(&'a Conflict),
    /// A table finished within a leg.
    TableFinished {
        /// Which leg.
        leg: Leg,
        /// The table.
        table: &'a TableName,
    },
}

/// Receives [`SessionEvent`]s. Must be cheap: it is called once per batch.
pub trait SessionObserver: Send + Sync {
    /// Called for every event.
    fn on_event(&self, event: SessionEvent<'_>);
}

/// An observer that logs progress with `tracing`.
#[derive(Debug, Default, Clone, Copy)]
pub struct LogObserver;

impl SessionObserver for LogObserver {
    fn on_event(&self, event: SessionEvent<'_>) {
        match event {
            SessionEvent::LegStarted { leg } => tracing::debug!(%leg, "Leg started."),
            SessionEvent::TableStarted { leg, table, pending, bulk } => {
                tracing::info!(%leg, %table, pending, bulk, "Table started.")
            }
            SessionEvent::RowsMoved { leg, table, rows } => tracing::info!(%leg, %table, rows, "Batch committed."),
            SessionEvent::Conflict(c) => tracing::info!(conflict = %c.describe(), "Conflict resolved."),
            SessionEvent::TableFinished { leg, table } => tracing::debug!(%leg, %table, "Table finished."),
        }
    }
}

/// Everything a session needs besides the two endpoints.
#[derive(Clone, Copy)]
pub struct SessionOptions<'a> {
    /// The sync group's name (the scope of the watermarks).
    pub scope: &'a str,
    /// The member's name (the origin the hub records for its changes).
    pub member: &'a str,
    /// The member's direction.
    pub direction: Direction,
    /// The group's conflict policy.
    pub policy: ConflictPolicy,
    /// The tables, in any order (the session orders them by foreign keys).
    pub tables: &'a [SyncTable],
    /// Rows per batch.
    pub batch_rows: usize,
    /// Stops the session between batches.
    pub cancel: Option<&'a Cancel>,
    /// Receives progress events.
    pub observer: &'a dyn SessionObserver,
}

/// What one table's leg moved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableStats {
    /// The leg.
    pub leg: Leg,
    /// The table.
    pub table: TableName,
    /// Rows written on the target.
    pub applied: u64,
    /// Rows left alone because both sides agreed.
    pub skipped: u64,
    /// Conflicts met.
    pub conflicts: u64,
    /// Whether the table was filled by bulk copy.
    pub bulk: bool,
}

/// What a session did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionReport {
    /// The member.
    pub member: String,
    /// Rows written on the hub.
    pub uploaded: u64,
    /// Rows written on the member.
    pub downloaded: u64,
    /// Conflicts met (all of them, even beyond those kept in `conflicts`).
    pub conflict_count: u64,
    /// The first conflicts, in full.
    pub conflicts: Vec<Conflict>,
    /// Per table and leg.
    pub tables: Vec<TableStats>,
    /// Wall time.
    pub duration: Duration,
}

impl SessionReport {
    fn new(member: &str) -> Self {
        SessionReport {
            member: member.to_string(),
            uploaded: 0,
            downloaded: 0,
            conflict_count: 0,
            conflicts: Vec::new(),
            tables: Vec::new(),
            duration: Duration::ZERO,
        }
    }

    /// Rows moved in both directions.
    pub fn rows_moved(&self) -> u64 {
        self.uploaded + self.downloaded
    }
}

/// A failed session: which member, which table, what was being done, and why.
#[derive(Debug, thiserror::Error)]
#[error("member `{member}`{}: {operation} failed: {source}", table.as_ref().map(|t| format!(", table `{t}`")).unwrap_or_default())]
pub struct SessionError {
    /// The member.
    pub member: String,
    /// The table, when the failure concerns one.
    pub table: Option<TableName>,
    /// What was being done (`applying upserts to the hub`).
    pub operation: String,
    /// The cause.
    #[source]
    pub source: EndpointError,
}

impl SessionError {
    /// The error kind of the cause.
    pub fn kind(&self) -> ErrorKind {
        self.source.kind
    }
}

/// The current time in microseconds since the Unix epoch.
pub fn now_micros() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}

/// Runs one session between the hub and a member: upload, then download, as
/// the member's direction allows. Both databases must be provisioned.
/// The outcome is recorded in the member's database (best effort).
pub async fn sync_member<H: Endpoint, M: Endpoint>(
    hub: &H,
    member: &M,
    opts: SessionOptions<'_>,
) -> Result<SessionReport, SessionError> {
    let started = Instant::now();
    let started_at = now_micros();
    let previous = member.session_record(opts.scope, HUB_ORIGIN).await.ok().flatten();
    let result = run_legs(hub, member, &opts).await;
    let last_success_at = previous.as_ref().and_then(|p| p.last_success_at);
    let record = match &result {
        Ok(report) => SessionRecord {
            state: MemberState::SyncSucceeded,
            last_attempt_at: started_at,
            last_success_at: Some(started_at),
            uploaded: report.uploaded,
            downloaded: report.downloaded,
            message: String::new(),
        },
        Err(e) => SessionRecord {
            state: if e.kind() == ErrorKind::Cancelled { MemberState::SyncCancelled } else { MemberState::SyncFailed },
            last_attempt_at: started_at,
            last_success_at,
            uploaded: 0,
            downloaded: 0,
            message: e.to_string(),
        },
    };
    if let Err(e) = member.record_session(opts.scope, HUB_ORIGIN, &record).await {
        tracing::warn!(member = opts.member, error = %e, "Could not record the session outcome in the member database.");
    }
    result.map(|mut report| {
        report.duration = started.elapsed();
        report
    })
}

/// Runs [`Endpoint::compact`] once a run's sessions with `endpoint` are
/// over. Housekeeping only: a failure is logged, never the run's failure
/// (every read is complete without it, and the next run tries again).
pub async fn compact_after_sync<E: Endpoint>(endpoint: &E, role: &str) {
    let started = Instant::now();
    match endpoint.compact().await {
        Ok(0) => {}
        Ok(folded) => tracing::debug!(
            database = endpoint.label(),
            role,
            folded,
            seconds = started.elapsed().as_secs_f64(),
            "Folded the change log into the tracking tables."
        ),
        Err(e) => tracing::warn!(
            database = endpoint.label(),
            role,
            error = %e,
            "Could not fold the change log after the sync; the next sync tries again."
        ),
    }
}

async fn run_legs<H: Endpoint, M: Endpoint>(
    hub: &H,
    member: &M,
    opts: &SessionOptions<'_>,
) -> Result<SessionReport, SessionError> {
    let mut report = SessionReport::new(opts.member);
    let order = crate::order::parents_first(&opts.tables.iter().map(|t| t.schema.clone()).collect::<Vec<_>>());
    let tables: Vec<&SyncTable> = order.into_iter().map(|i| &opts.tables[i]).collect();
    if opts.direction.uploads() {
        let leg = LegPlan {
            leg: Leg::Upload,
            source_tag: opts.member,
            target_tag: HUB_ORIGIN,
            filter: OriginFilter::LocalOnly,
            receiver: Side::Hub,
        };
        report.uploaded = run_leg(member, hub, &leg, &tables, opts, &mut report).await?;
    }
    if opts.direction.downloads() {
        let leg = LegPlan {
            leg: Leg::Download,
            source_tag: HUB_ORIGIN,
            target_tag: opts.member,
            filter: OriginFilter::NotFrom(opts.member.to_string()),
            receiver: Side::Member,
        };
        report.downloaded = run_leg(hub, member, &leg, &tables, opts, &mut report).await?;
    }
    Ok(report)
}

/// Who is who in one leg.
struct LegPlan<'a> {
    leg: Leg,
    /// The name the target records for the source (origin and watermark key).
    source_tag: &'a str,
    /// The name the source records for the target.
    target_tag: &'a str,
    filter: OriginFilter,
    receiver: Side,
}

/// Per-table state of a leg.
struct TableLeg<'a> {
    table: &'a SyncTable,
    /// What the target has applied from the source.
    applied: Watermarks,
    /// What the source has applied from the target (for conflict detection).
    seen: Watermarks,
    bulk: bool,
    stats: TableStats,
}

async fn run_leg<S: Endpoint, T: Endpoint>(
    source: &S,
    target: &T,
    plan: &LegPlan<'_>,
    tables: &[&SyncTable],
    opts: &SessionOptions<'_>,
    report: &mut SessionReport,
) -> Result<u64, SessionError> {
    let fail = |table: Option<&TableName>, operation: String| {
        let member = opts.member.to_string();
        let table = table.cloned();
        move |source: EndpointError| SessionError { member, table, operation, source }
    };
    opts.observer.on_event(SessionEvent::LegStarted { leg: plan.leg });
    let snapshot = retry(|| source.snapshot_version())
        .await
        .map_err(fail(None, format!("reading the {} snapshot version", side_name(plan.receiver, true))))?;

    let mut legs = Vec::with_capacity(tables.len());
    for table in tables {
        let name = &table.schema.name;
        let applied = retry(|| target.watermarks(opts.scope, plan.source_tag, name))
            .await
            .map_err(fail(Some(name), "reading watermarks".into()))?;
        let seen = retry(|| source.watermarks(opts.scope, plan.target_tag, name))
            .await
            .map_err(fail(Some(name), "reading watermarks".into()))?;
        // Only the hub fills a member by bulk copy: a member's rows are not all
        // its own (most came from the hub), so copying them wholesale into an
        // empty hub table would resurrect rows the hub deleted.
        let bulk = plan.receiver == Side::Member
            && applied.is_zero()
            && retry(|| target.is_empty(name))
                .await
                .map_err(fail(Some(name), "checking whether the table is empty".into()))?;
        let stats = TableStats { leg: plan.leg, table: name.clone(), applied: 0, skipped: 0, conflicts: 0, bulk };
        legs.push(TableLeg { table, applied, seen, bulk, stats });
    }

    // Deletes, children first. A foreign key may refuse a delete whose children
    // move in the upsert phase (a child re-parented before its old parent was
    // deleted); such tables are retried after the upserts.
    let mut deferred = Vec::new();
    for i in (0..legs.len()).rev() {
        if legs[i].bulk {
            continue;
        }
        if move_deletes(source, target, plan, &mut legs[i], snapshot, opts, report).await? {
            deferred.push(i);
        }
    }
    for (i, tl) in legs.iter_mut().enumerate() {
        if tl.bulk {
            match bulk_copy(source, target, plan, tl, opts).await {
                Ok(()) => continue,
                // An application wrote to the member table after it was found
                // empty, and the copy collided with its row. The copy rolled
                // back whole; the table takes the change-by-change path, where
                // such collisions are conflicts the policy settles.
                Err(e) if e.kind() == ErrorKind::UniqueViolation => {
                    tracing::warn!(
                        member = opts.member,
                        table = %tl.table.schema.name,
                        error = %e,
                        "The member table received rows during its initial copy; moving the hub's rows change by change instead."
                    );
                    tl.bulk = false;
                    tl.stats.bulk = false;
                    if move_deletes(source, target, plan, tl, snapshot, opts, report).await? {
                        deferred.push(i);
                    }
                }
                Err(e) => return Err(e),
            }
        }
        move_changes(source, target, plan, tl, ChangeKind::Upsert, snapshot, opts, report).await?;
    }
    for i in deferred {
        move_changes(source, target, plan, &mut legs[i], ChangeKind::Delete, snapshot, opts, report).await?;
    }

    let mut total = 0;
    for tl in legs {
        opts.observer.on_event(SessionEvent::TableFinished { leg: plan.leg, table: &tl.table.schema.name });
        total += tl.stats.applied;
        report.tables.push(tl.stats);
    }
    Ok(total)
}

/// Moves a table's deletes; `true` when a foreign key refused them, for the
/// caller to retry after the upserts (when the children have moved on).
#[allow(clippy::too_many_arguments)]
async fn move_deletes<S: Endpoint, T: Endpoint>(
    source: &S,
    target: &T,
    plan: &LegPlan<'_>,
    tl: &mut TableLeg<'_>,
    snapshot: Version,
    opts: &SessionOptions<'_>,
    report: &mut SessionReport,
) -> Result<bool, SessionError> {
    match move_changes(source, target, plan, tl, ChangeKind::Delete, snapshot, opts, report).await {
        Ok(()) => Ok(false),
        Err(e) if e.kind() == ErrorKind::ForeignKeyViolation => {
            tracing::debug!(table = %tl.table.schema.name, "Deletes refused by a foreign key; retrying after the upserts.");
            Ok(true)
        }
        Err(e) => Err(e),
    }
}

fn side_name(receiver: Side, source: bool) -> &'static str {
    match (receiver, source) {
        (Side::Hub, true) | (Side::Member, false) => "member's",
        (Side::Hub, false) | (Side::Member, true) => "hub's",
    }
}

/// Adds an applied batch's outcome to the table's statistics and the report.
fn record_outcome(
    tl: &mut TableLeg<'_>,
    report: &mut SessionReport,
    opts: &SessionOptions<'_>,
    leg: Leg,
    name: &TableName,
    outcome: ApplyOutcome,
    rows: usize,
) {
    tl.stats.applied += outcome.applied;
    tl.stats.skipped += outcome.skipped;
    tl.stats.conflicts += outcome.conflicts.len() as u64;
    report.conflict_count += outcome.conflicts.len() as u64;
    for conflict in outcome.conflicts {
        opts.observer.on_event(SessionEvent::Conflict(&conflict));
        if report.conflicts.len() < MAX_REPORTED_CONFLICTS {
            report.conflicts.push(conflict);
        }
    }
    if rows > 0 {
        opts.observer.on_event(SessionEvent::RowsMoved { leg, table: name, rows: rows as u64 });
    }
}

fn with(mut marks: Watermarks, kind: ChangeKind, value: Version) -> Watermarks {
    marks.set(kind, value);
    marks
}

/// Fills an empty target table from the source's current rows. The source
/// streams one snapshot, this task counts rows for progress, and the target
/// loads them in one transaction: reading and writing overlap, memory holds a
/// few batches at most.
async fn bulk_copy<S: Endpoint, T: Endpoint>(
    source: &S,
    target: &T,
    plan: &LegPlan<'_>,
    tl: &mut TableLeg<'_>,
    opts: &SessionOptions<'_>,
) -> Result<(), SessionError> {
    let schema = &tl.table.schema;
    let name = &schema.name;
    opts.observer.on_event(SessionEvent::TableStarted { leg: plan.leg, table: name, pending: None, bulk: true });
    let target_spec = BulkTarget {
        scope: opts.scope,
        peer: plan.source_tag,
        table: schema,
        record_tracking: plan.receiver == Side::Hub,
    };
    let to = if plan.receiver == Side::Hub { "the hub" } else { "the member" };
    let fail = |operation: &str| {
        let member = opts.member.to_string();
        let table = Some(name.clone());
        let operation = operation.to_string();
        move |source: EndpointError| SessionError { member, table, operation, source }
    };
    if let Some(locator) = source.direct_source() {
        let direct = target
            .bulk_copy_direct(&locator, target_spec)
            .await
            .map_err(fail(&format!("copying the table directly into {to}")))?;
        if let Some(rows) = direct {
            opts.observer.on_event(SessionEvent::RowsMoved { leg: plan.leg, table: name, rows });
            tl.stats.applied += rows;
            return Ok(());
        }
    }
    // Small batches and one-slot channels: memory holds a handful of batches
    // whatever the table size.
    let (read_tx, read_rx) = mpsc::channel(1);
    let (load_tx, load_rx) = mpsc::channel(1);
    // The relay owns both channel ends it touches: when the loader stops
    // early (an error), the relay ends, and dropping `read_rx` with it is what
    // unblocks the reader's next send. A borrowed receiver would stay open
    // until the whole join ends, and the reader would wait on it forever.
    let relay = async move {
        let mut read_rx = read_rx;
        while let Some(item) = read_rx.recv().await {
            if let BulkItem::Rows(rows) = &item {
                opts.observer.on_event(SessionEvent::RowsMoved { leg: plan.leg, table: name, rows: rows.len() as u64 });
            }
            if load_tx.send(item).await.is_err() {
                break;
            }
        }
        drop(load_tx);
    };
    let batch_rows = opts.batch_rows.clamp(1, MAX_BULK_BATCH_ROWS);
    let (read, loaded, ()) =
        tokio::join!(source.bulk_read(schema, batch_rows, read_tx), target.bulk_load(target_spec, load_rx), relay);
    // When one side fails the other sees its stream close; report the cause.
    let read_first = match (&read, &loaded) {
        (Err(r), Err(l)) => !(r.kind == ErrorKind::StreamClosed && l.kind != ErrorKind::StreamClosed),
        _ => true,
    };
    if read_first {
        read.map_err(fail("reading rows for the initial copy"))?;
    }
    let loaded = loaded.map_err(fail(&format!("loading the initial copy into {to}")))?;
    tl.stats.applied += loaded;
    Ok(())
}

/// Retries an operation whose error is transient, with a short backoff.
async fn retry<F, Fut, R>(mut op: F) -> Result<R, EndpointError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<R, EndpointError>>,
{
    let mut attempt = 0;
    loop {
        match op().await {
            Err(e) if e.kind.is_transient() && attempt < TRANSIENT_RETRIES => {
                attempt += 1;
                let wait = Duration::from_millis(50 * 2u64.pow(attempt));
                tracing::warn!(error = %e, attempt, "Transient failure; retrying in {wait:?}.");
                tokio::time::sleep(wait).await;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directions_say_which_legs_run() {
        assert!(Direction::Bidirectional.uploads() && Direction::Bidirectional.downloads());
        assert!(Direction::OneWayMemberToHub.uploads() && !Direction::OneWayMemberToHub.downloads());
        assert!(!Direction::OneWayHubToMember.uploads() && Direction::OneWayHubToMember.downloads());
        assert_eq!("OneWayHubToMember".parse::<Direction>().unwrap(), Direction::OneWayHubToMember);
        assert!("oneway".parse::<Direction>().unwrap_err().contains("Bidirectional"));
    }

    #[tokio::test]
    async fn retry_gives_up_on_permanent_errors_at_once() {
        let mut calls = 0;
        let r: Result<(), _> = retry(|| {
            calls += 1;
            async { Err(EndpointError::new(ErrorKind::Other, "no")) }
        })
        .await;
        assert!(r.is_err());
        assert_eq!(calls, 1);
    }
}

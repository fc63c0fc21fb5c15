//! Moving one table's changes of one kind from the source to the target:
//! batches read in order and applied in order, each in one transaction with
//! its watermark.
//!
//! Reading overlaps applying: the next batches are read while the current
//! ones are written. A target that can hold a batch open
//! ([`Endpoint::apply_changes_held`]) keeps several batches with distinct keys
//! in flight (see [`IN_FLIGHT`]): the oldest commits as usual, the others are
//! written beside it on other connections and each commits right after the
//! one before it did, and as soon as a batch commits the next one starts. Watermarks so
//! become durable in order, and a session that stops anywhere resumes from
//! the last committed one. A held batch that the target declines, whose write
//! fails, or whose predecessor does not catch up with it soon, is rolled back
//! and applied again once its predecessor committed.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use tokio::sync::watch;

use super::{
    Cancel, LegPlan, SessionError, SessionEvent, SessionOptions, SessionReport, TableLeg, record_outcome, retry, with,
};
use crate::change::{Change, ChangeKind, OriginFilter, Version};
use crate::endpoint::{ApplyBatch, ApplyOutcome, Endpoint, Held, ReadRequest};
use crate::error::{EndpointError, ErrorKind};
use crate::policy::{ConflictResolver, Side};
use crate::schema::TableSchema;
use crate::value::Value;

/// How long a held batch waits at least for the batch before it to commit
/// before it gives way: that one may be waiting for a lock the held one took.
const HOLD_PATIENCE: Duration = Duration::from_secs(2);

/// Batches read ahead of those in flight, when several are in flight (see
/// [`IN_FLIGHT`]); one otherwise, as a single writer takes one at a time.
const READ_AHEAD: usize = 2;

/// Batches written at once when the target can hold them open; each takes
/// one of the target's connections. Three keep a 2-CPU PostgreSQL member's
/// writes back to back: 112-117 % of logical replication's speed against
/// 99-104 % with two (docs/benchmarks.md).
const IN_FLIGHT: usize = 3;

/// Moves the table's changes of `kind` up to `snapshot`, from the target's
/// watermark on.
#[allow(clippy::too_many_arguments)]
pub(super) async fn move_changes<S: Endpoint, T: Endpoint>(
    source: &S,
    target: &T,
    plan: &LegPlan<'_>,
    tl: &mut TableLeg<'_>,
    kind: ChangeKind,
    snapshot: Version,
    opts: &SessionOptions<'_>,
    report: &mut SessionReport,
) -> Result<(), SessionError> {
    let stored = tl.applied.get(kind);
    if stored >= snapshot {
        return Ok(());
    }
    let schema = &tl.table.schema;
    let flow = Flow {
        source,
        target,
        plan,
        schema,
        kind,
        snapshot,
        opts,
        shared_versions: source.versions_are_per_transaction(),
        resolver: ConflictResolver { policy: tl.table.policy.unwrap_or(opts.policy), receiver: plan.receiver },
    };
    let mut batch_rows = opts.batch_rows.max(1);
    let mut announced = false;
    // Where the committed batches end, and the watermark last stored: a pass
    // that widens its batches starts over from there.
    let mut applied = (Position { after: stored, after_key: None }, stored);
    loop {
        match flow.pass(tl, report, batch_rows, &mut announced, &mut applied).await? {
            Pass::Done => return Ok(()),
            // A row may reference a row of the same table (or of a cycle) that
            // changed later and so sits in a later batch; deferred constraint
            // checks cover one transaction only. Widen the batch until the
            // referenced rows come along, or everything pending is one batch.
            // Deletes too, where a transaction's rows share a version: they are
            // ordered by key within it, not by reference.
            Pass::Widen => {
                tracing::debug!(table = %schema.name, batch_rows, "Foreign key refused a batch; retrying with a larger one.");
                batch_rows = batch_rows.saturating_mul(4);
            }
        }
    }
}

/// How a pass over the table's changes ended.
enum Pass {
    /// Everything up to the snapshot is applied.
    Done,
    /// A foreign key refused a full batch: start over with larger ones.
    Widen,
}

/// What the passes over one table's changes of one kind share.
struct Flow<'a, S, T> {
    source: &'a S,
    target: &'a T,
    plan: &'a LegPlan<'a>,
    schema: &'a TableSchema,
    kind: ChangeKind,
    snapshot: Version,
    opts: &'a SessionOptions<'a>,
    /// Whether a transaction's rows share one version at the source.
    shared_versions: bool,
    resolver: ConflictResolver,
}

/// A batch read and not committed yet, numbered in read order from 1.
struct Planned {
    seq: u64,
    read: ReadBatch,
    /// The watermark its commit stores.
    watermark: Version,
    /// Came back from a held attempt: applied again only once every batch
    /// before it committed.
    alone: bool,
}

/// What became of a batch in flight.
enum Flown {
    /// Committed, with this outcome.
    Committed(ApplyOutcome),
    /// Applying it (not held) failed.
    Failed(EndpointError),
    /// The target cannot hold batches of this table; nothing was written.
    Declined,
    /// Held and rolled back, or not written: to apply again after the
    /// batches before it.
    Again,
}

/// What the pass waits for next.
enum Event {
    Read(Result<ReadBatch, EndpointError>),
    Counted(Option<u64>),
    Flown(u64, Flown),
}

impl<S: Endpoint, T: Endpoint> Flow<'_, S, T> {
    /// One pass with batches of `batch_rows`, from the target's watermark to
    /// the snapshot. `announced` tells whether the table was announced
    /// ([`SessionEvent::TableStarted`]) or found to have nothing to move.
    async fn pass(
        &self,
        tl: &mut TableLeg<'_>,
        report: &mut SessionReport,
        batch_rows: usize,
        announced: &mut bool,
        applied: &mut (Position, Version),
    ) -> Result<Pass, SessionError> {
        let (kind, schema) = (self.kind, self.schema);
        let name = &schema.name;
        let reader = Reader { source: self.source, schema, kind, snapshot: self.snapshot, filter: &self.plan.filter };
        let seen = tl.seen;
        // Where the last batch read ends, and the watermark it stores.
        let mut read_to = applied.0.clone();
        let mut planned_to = applied.1;
        // The highest batch number committed so far: a held batch commits
        // once the one before it did.
        let committed = watch::Sender::new(0u64);
        let mut pairing = self.target.holds_applies();
        let mut reading: Option<BoxFuture<'_, Result<ReadBatch, EndpointError>>> = None;
        let mut counting: Option<BoxFuture<'_, Option<u64>>> = None;
        // Read and not started, in order; started (by number, with their
        // keys); finished and not yet taken in order.
        let mut queue: VecDeque<Planned> = VecDeque::new();
        let mut flying: BTreeMap<u64, Planned> = BTreeMap::new();
        let mut flights: FuturesUnordered<BoxFuture<'_, (u64, Flown)>> = FuturesUnordered::new();
        let mut landed: BTreeMap<u64, (Flown, Planned)> = BTreeMap::new();
        let mut next_seq = 1;
        let mut exhausted = false;
        // Once set (a failed read, a cancel), nothing new starts; the batches
        // in flight finish, then the pass returns the error.
        let mut failure: Option<SessionError> = None;
        loop {
            if failure.is_none() && self.opts.cancel.is_some_and(Cancel::is_cancelled) {
                failure = Some(self.fail(format!("moving {} {}", self.what(), self.to()))(EndpointError::new(
                    ErrorKind::Cancelled,
                    "the sync was cancelled; everything committed so far is kept and the next sync resumes from there",
                )));
            }
            // Finished batches, taken in order (and only once the table is
            // announced, so its progress follows its announcement).
            while let Some((&seq, _)) = landed.first_key_value().filter(|_| *announced) {
                if flying.keys().any(|s| *s < seq) {
                    break;
                }
                let Some((flown, planned)) = landed.remove(&seq) else { break };
                match flown {
                    Flown::Committed(outcome) => {
                        let rows = planned.read.changes.len();
                        record_outcome(tl, report, self.opts, self.plan.leg, name, outcome, rows);
                        *applied = (planned.read.end.clone(), planned.watermark);
                        if !planned.read.full {
                            return Ok(Pass::Done);
                        }
                    }
                    Flown::Failed(e)
                        if e.kind == ErrorKind::ForeignKeyViolation
                            && planned.read.full
                            && (kind == ChangeKind::Upsert || self.shared_versions) =>
                    {
                        return Ok(Pass::Widen);
                    }
                    Flown::Failed(e) => return Err(self.fail(format!("applying {} {}", self.what(), self.to()))(e)),
                    Flown::Declined | Flown::Again => {
                        pairing &= !matches!(flown, Flown::Declined);
                        let at = queue.iter().position(|p| p.seq > seq).unwrap_or(queue.len());
                        queue.insert(at, Planned { alone: true, ..planned });
                    }
                }
            }
            if failure.is_some() && flying.is_empty() && landed.is_empty() && reading.is_none() && counting.is_none() {
                return Err(failure.take().expect("checked above"));
            }
            let ahead = if pairing { READ_AHEAD } else { 1 };
            if failure.is_none() && reading.is_none() && !exhausted && queue.len() < ahead {
                let from = read_to.clone();
                let reader = &reader;
                reading = Some(Box::pin(async move { reader.read(&from, batch_rows).await }));
            }
            // Start what may start: a batch with nothing uncommitted before
            // it, or one held beside the batches in flight.
            while failure.is_none() {
                let Some(next) = queue.front() else { break };
                let behind = flying.keys().chain(landed.keys()).any(|s| *s < next.seq);
                let held = behind
                    && pairing
                    && !next.alone
                    && flying.len() + landed.len() < IN_FLIGHT
                    && flying.values().all(|f| keys_are_distinct(&f.read.changes, &next.read.changes));
                if behind && !held {
                    break;
                }
                let Some(planned) = queue.pop_front() else { break };
                let batch = self.batch(&planned, seen);
                let seq = planned.seq;
                flights.push(if held {
                    Box::pin(hold(self.target, batch, seq, &committed))
                } else {
                    Box::pin(apply(self.target, batch, seq, &committed))
                });
                flying.insert(seq, planned);
            }
            let event = tokio::select! {
                read = poll(&mut reading), if reading.is_some() => Event::Read(read),
                counted = poll(&mut counting), if counting.is_some() => Event::Counted(counted),
                Some((seq, flown)) = flights.next(), if !flights.is_empty() => Event::Flown(seq, flown),
                else => {
                    // Nothing is read, counted or written, and nothing can
                    // start: everything is applied, or a failure stopped it.
                    return match failure.take() {
                        Some(e) => Err(e),
                        None if exhausted && queue.is_empty() => Ok(Pass::Done),
                        None => Err(self.fail(format!("moving {} {}", self.what(), self.to()))(EndpointError::new(
                            ErrorKind::Other,
                            "hubsync stopped with batches left to apply (a bug; the next sync resumes from here)",
                        ))),
                    };
                }
            };
            match event {
                Event::Read(read) => {
                    reading = None;
                    let read = match read {
                        Ok(read) => read,
                        Err(e) => {
                            failure.get_or_insert(self.fail(format!("reading {}", self.what()))(e));
                            continue;
                        }
                    };
                    read_to = read.end.clone();
                    exhausted = !read.full;
                    planned_to = self.watermark_of(&read, planned_to);
                    if !*announced && next_seq == 1 {
                        // The table is announced with its pending count once
                        // it has changes; when they all came in this batch,
                        // that is the count. Otherwise the count (for progress
                        // only) runs beside the first batches' writes.
                        if read.changes.is_empty() {
                            *announced = true;
                        } else if !read.full {
                            self.announce(Some(read.changes.len() as u64));
                            *announced = true;
                        } else {
                            // This pass's kind only: the other kind moves in a
                            // pass of its own, with its own progress.
                            let pending_after =
                                with(with(tl.applied, kind, applied.0.after), kind.other(), Version::MAX);
                            let (source, filter) = (self.source, &self.plan.filter);
                            counting = Some(Box::pin(async move {
                                source.count_changes(schema, pending_after, filter).await.ok()
                            }));
                        }
                    }
                    queue.push_back(Planned { seq: next_seq, read, watermark: planned_to, alone: false });
                    next_seq += 1;
                }
                Event::Counted(pending) => {
                    counting = None;
                    self.announce(pending);
                    *announced = true;
                }
                Event::Flown(seq, flown) => {
                    if let Some(planned) = flying.remove(&seq) {
                        landed.insert(seq, (flown, planned));
                    }
                }
            }
        }
    }

    fn announce(&self, pending: Option<u64>) {
        let event = SessionEvent::TableStarted { leg: self.plan.leg, table: &self.schema.name, pending, bulk: false };
        self.opts.observer.on_event(event);
    }

    /// The batch to apply for `planned`.
    fn batch(&self, planned: &Planned, seen: crate::change::Watermarks) -> ApplyBatch<'_> {
        ApplyBatch {
            scope: self.opts.scope,
            peer: self.plan.source_tag,
            table: self.schema,
            kind: self.kind,
            changes: Arc::clone(&planned.read.changes),
            peer_has_received: seen,
            resolver: self.resolver,
            watermark: planned.watermark,
        }
    }

    /// The watermark a batch's commit stores, after `before` (the previous
    /// batch's): below its last version when a transaction's rows share one,
    /// as the rest of it is still to come; the snapshot after the last batch.
    fn watermark_of(&self, read: &ReadBatch, before: Version) -> Version {
        match read.changes.last() {
            Some(last) if read.full => {
                let durable = if self.shared_versions { last.version - 1 } else { last.version };
                durable.max(before)
            }
            _ => self.snapshot,
        }
    }

    fn what(&self) -> &'static str {
        match self.kind {
            ChangeKind::Upsert => "inserts and updates",
            ChangeKind::Delete => "deletes",
        }
    }

    fn to(&self) -> &'static str {
        if self.plan.receiver == Side::Hub { "to the hub" } else { "to the member" }
    }

    fn fail(&self, operation: String) -> impl FnOnce(EndpointError) -> SessionError {
        let member = self.opts.member.to_string();
        let table = Some(self.schema.name.clone());
        move |source: EndpointError| SessionError { member, table, operation, source }
    }
}

/// Awaits the future in `slot`, or never when there is none.
async fn poll<R>(slot: &mut Option<BoxFuture<'_, R>>) -> R {
    match slot {
        Some(future) => future.await,
        None => std::future::pending().await,
    }
}

/// Applies and commits a batch that has no uncommitted batch before it.
async fn apply<T: Endpoint>(
    target: &T,
    batch: ApplyBatch<'_>,
    seq: u64,
    committed: &watch::Sender<u64>,
) -> (u64, Flown) {
    match retry(|| target.apply_changes(batch.clone())).await {
        Ok(outcome) => {
            committed.send_modify(|c| *c = (*c).max(seq));
            (seq, Flown::Committed(outcome))
        }
        Err(e) => (seq, Flown::Failed(e)),
    }
}

/// Writes a batch without committing it (see [`Endpoint::apply_changes_held`])
/// and commits it once the batch before it (number `seq - 1`) committed; rolls
/// it back when that one takes much longer than this one's write took, so a
/// lock this one holds cannot stall it for good.
async fn hold<T: Endpoint>(
    target: &T,
    batch: ApplyBatch<'_>,
    seq: u64,
    committed: &watch::Sender<u64>,
) -> (u64, Flown) {
    let started = Instant::now();
    let mut turn = committed.subscribe();
    let flown = match target.apply_changes_held(batch).await {
        Ok(Held::Open(outcome, handle)) => {
            let patience = HOLD_PATIENCE.max(started.elapsed() * 4);
            let ready = tokio::time::timeout(patience, async { turn.wait_for(|c| *c + 1 >= seq).await.is_ok() }).await;
            if ready == Ok(true) {
                match handle.commit().await {
                    Ok(()) => {
                        committed.send_modify(|c| *c = (*c).max(seq));
                        Flown::Committed(outcome)
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "A held batch failed to commit; applying it again.");
                        Flown::Again
                    }
                }
            } else {
                tracing::debug!(?patience, "The batch before a held one did not commit; rolling the held one back.");
                Flown::Again
            }
        }
        Ok(Held::Declined) => Flown::Declined,
        // Applied again after the batch before it, where errors are retried
        // or reported as for any batch.
        Err(e) => {
            tracing::debug!(error = %e, "Writing a held batch failed; applying it again after the batch before it.");
            Flown::Again
        }
    };
    (seq, flown)
}

/// Whether no key is in both batches: a held batch must not hold a row the
/// batch beside it writes.
fn keys_are_distinct(a: &[Change], b: &[Change]) -> bool {
    let keys: HashSet<&[Value]> = a.iter().map(|c| c.key.as_slice()).collect();
    !b.iter().any(|c| keys.contains(c.key.as_slice()))
}

/// Where a read of changes starts: above `after`, and within version
/// `after` above `after_key` (see [`ReadRequest::after_key`]).
#[derive(Debug, Clone)]
struct Position {
    after: Version,
    after_key: Option<Vec<Value>>,
}

/// A batch read from the source, and the read position after it.
struct ReadBatch {
    changes: Arc<[Change]>,
    /// Whether the batch has as many changes as were asked for (so more may
    /// follow).
    full: bool,
    end: Position,
}

/// Reads one table's changes of one kind from the source, batch by batch.
struct Reader<'a, S> {
    source: &'a S,
    schema: &'a TableSchema,
    kind: ChangeKind,
    snapshot: Version,
    filter: &'a OriginFilter,
}

impl<S: Endpoint> Reader<'_, S> {
    /// The batch of at most `limit` changes after `from`.
    async fn read(&self, from: &Position, limit: usize) -> Result<ReadBatch, EndpointError> {
        let request = ReadRequest {
            table: self.schema,
            kind: self.kind,
            after: from.after,
            after_key: from.after_key.clone(),
            up_to: self.snapshot,
            origin: self.filter,
            limit,
        };
        let changes = retry(|| self.source.read_changes(request.clone())).await?;
        let full = changes.len() >= limit;
        let end = match changes.last() {
            Some(last) if full => Position { after: last.version, after_key: Some(last.key.clone()) },
            _ => Position { after: self.snapshot, after_key: None },
        };
        Ok(ReadBatch { changes: changes.into(), full, end })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(key: Vec<Value>) -> Change {
        Change { key, version: 1, origin: String::new(), changed_at: 0, row: None }
    }

    #[test]
    fn batches_pair_only_when_no_key_is_in_both() {
        let a = [change(vec![Value::Integer(1)]), change(vec![Value::Integer(2)])];
        let b = [change(vec![Value::Integer(3)]), change(vec![Value::Text("2".into())])];
        assert!(keys_are_distinct(&a, &b), "an integer and a text are different keys");
        let c = [change(vec![Value::Integer(9)]), change(vec![Value::Integer(2)])];
        assert!(!keys_are_distinct(&a, &c));
        // Compound keys compare whole; floats by their bits, as values do.
        let d = [change(vec![Value::Integer(1), Value::Real(f64::NAN)])];
        assert!(!keys_are_distinct(&d, &[change(vec![Value::Integer(1), Value::Real(f64::NAN)])]));
        assert!(keys_are_distinct(&d, &[change(vec![Value::Integer(1), Value::Real(0.0)])]));
        assert!(keys_are_distinct(&[change(vec![Value::Real(0.0)])], &[change(vec![Value::Real(-0.0)])]));
        assert!(keys_are_distinct(&[], &a));
    }
}

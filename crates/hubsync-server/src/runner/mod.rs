//! Running one sync group once: open the hub, resolve the sync schema,
//! provision what is missing, sync the members (up to a limit in parallel),
//! and record states, logs, conflicts, history and metrics in the store.
//!
//! This is the service's form of `hubsync sync`: the same core calls
//! (`resolve_tables`, `provision_hub`, `provision_member`, `sync_member`),
//! with the outcome written to the metadata store instead of a terminal.

mod endpoints;
mod progress;
mod text;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use hubsync_core::{
    Cancel, Direction, EndpointError, ErrorKind, Leg, MemberState, MemberStatus, SessionEvent, SessionObserver,
    SessionOptions, SessionReport, Side, SyncTable, TableSelection, compact_after_sync, member_status, now_micros,
    provision_hub, provision_member, resolve_tables, sync_member,
};
use hubsync_engines::AnyEndpoint;

use self::endpoints::EndpointCache;
pub use self::progress::PUBLISH_EVERY;
use self::progress::ProgressBoard;
use crate::metrics;
use crate::model::{LogType, SyncGroupState, SyncMemberState};
use crate::spec::{DatabaseSpec, GroupSpec, MemberSpec, Schedule, TableSpec};
use crate::store::{
    ConflictRecord, GroupStatus, LogRecord, MemberStatusRecord, MetaStore, RunRecord, StoredGroup, StoredMember,
};

/// Members of one group synced at the same time unless configured.
pub const DEFAULT_PARALLEL_MEMBERS: usize = 4;

/// In continuous mode a poll that moved nothing leaves no log entry and no
/// history, and refreshes the stored states and sync times at most this
/// often: four polls a second would otherwise write the store four times a
/// second per member for nothing.
const IDLE_REFRESH: Duration = Duration::from_secs(5);

/// Expired conflicts are purged after every run that logged some, and
/// otherwise at most this often.
const PURGE_EVERY: Duration = Duration::from_secs(3600);

/// The log source of entries about the hub.
const HUB_SOURCE: &str = "hub";

/// What one run of a group did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunSummary {
    /// Members whose session succeeded.
    pub succeeded: usize,
    /// Members whose session (or the hub) failed.
    pub failed: usize,
    /// Members whose session was cancelled.
    pub cancelled: usize,
    /// Rows written on the hub.
    pub uploaded: u64,
    /// Rows written on members.
    pub downloaded: u64,
    /// Conflicts met.
    pub conflicts: u64,
    /// The run's tracing id (shared by its log entries and history); empty
    /// when the group has no tables and nothing ran.
    pub tracing_id: String,
}

/// The rows waiting to move between a member and its hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PendingRows {
    /// The hub or the member is not provisioned for the group's tables yet
    /// (before its first sync): there are no watermarks to count from.
    NotProvisioned,
    /// Changes past the member's watermarks, summed over the group's tables;
    /// `None` for a direction the member does not sync.
    Counts {
        /// Member changes the hub has not applied.
        upload: Option<u64>,
        /// Hub changes (not from this member) the member has not applied.
        download: Option<u64>,
    },
}

impl PendingRows {
    /// The counts of a member's status, for the directions it syncs.
    fn of(status: &MemberStatus, direction: Direction) -> PendingRows {
        if status.state == MemberState::UnProvisioned {
            return PendingRows::NotProvisioned;
        }
        let upload = status.tables.iter().map(|t| t.pending_upload).sum();
        let download = status.tables.iter().map(|t| t.pending_download).sum();
        PendingRows::Counts {
            upload: direction.uploads().then_some(upload),
            download: direction.downloads().then_some(download),
        }
    }
}

impl RunSummary {
    /// Whether anything moved or conflicted.
    pub fn moved_anything(&self) -> bool {
        self.uploaded + self.downloaded + self.conflicts > 0
    }
}

/// Runs groups and the API's one-off database work. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Runner {
    store: MetaStore,
    base_dir: PathBuf,
    parallel_members: usize,
    endpoints: Arc<EndpointCache>,
    /// When each group's expired conflicts were last purged.
    purged: Arc<Mutex<HashMap<String, Instant>>>,
}

/// Why something failed: its kind (for the cache and the state) and the full
/// text (for the log and `lastError`).
struct Failure {
    kind: ErrorKind,
    text: String,
}

/// One member's outcome, for the group's state and the summary.
struct MemberOutcome {
    result: Result<SessionReport, Failure>,
    /// Rows committed, counted batch by batch (so a cancelled or failed
    /// session still reports what it kept).
    uploaded: u64,
    downloaded: u64,
}

/// What every member's sync shares within one run.
struct RunContext<'a> {
    group: &'a GroupSpec,
    tracing_id: String,
    hub: AnyEndpoint,
    tables: Vec<SyncTable>,
    cancel: &'a Cancel,
    /// A continuous group's poll: quiet unless something happens.
    continuous: bool,
    /// What the members' sessions have done so far, for portals.
    progress: &'a ProgressBoard,
}

impl Runner {
    /// A runner over a store; relative SQLite paths are taken relative to
    /// `base_dir`.
    pub fn new(store: MetaStore, base_dir: PathBuf, parallel_members: usize) -> Runner {
        Runner {
            store,
            base_dir,
            parallel_members: parallel_members.max(1),
            endpoints: Arc::new(EndpointCache::default()),
            purged: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// The store the runner records into.
    pub fn store(&self) -> &MetaStore {
        &self.store
    }

    /// Runs the group once (every member), stopping between batches when
    /// `cancel` is set, and records the outcome in the store.
    pub async fn run_group(&self, group: &StoredGroup, cancel: &Cancel) -> RunSummary {
        let spec = &group.spec;
        let previous = &group.status;
        if spec.tables.is_empty() {
            if previous.state != SyncGroupState::NotReady {
                self.set_group(spec, SyncGroupState::NotReady, previous.last_sync_time).await;
            }
            return RunSummary::default();
        }
        let tracing_id = uuid::Uuid::new_v4().to_string();
        let mut summary = RunSummary { tracing_id: tracing_id.clone(), ..RunSummary::default() };
        let continuous = spec.schedule == Schedule::Continuous;
        let members = match self.store.list_members(&spec.name).await {
            Ok(members) => members,
            Err(e) => {
                tracing::error!(group = %spec.name, error = %e, "Cannot read the group's members; the run is skipped.");
                summary.failed = 1;
                return summary;
            }
        };
        if !continuous {
            self.set_group(spec, SyncGroupState::Progressing, previous.last_sync_time).await;
        }
        let started_at = now_micros();
        let (hub, tables) = match self.prepare_hub(spec).await {
            Ok(prepared) => prepared,
            Err(failure) => {
                self.hub_failed(spec, &members, &tracing_id, started_at, &failure).await;
                summary.failed = members.len().max(1);
                return summary;
            }
        };
        let board = ProgressBoard::new(started_at, members.iter().map(|m| m.spec.name.as_str()));
        let ctx = RunContext { group: spec, tracing_id, hub, tables, cancel, continuous, progress: &board };
        // Boxed so the run's future is provably `Send` (a stream mapped by a
        // closure that borrows hits a higher-ranked lifetime limitation).
        let syncs: Vec<BoxFuture<'_, MemberOutcome>> =
            members.iter().map(|member| self.sync_one(&ctx, member).boxed()).collect();
        let run = futures::stream::iter(syncs).buffer_unordered(self.parallel_members).collect::<Vec<MemberOutcome>>();
        let outcomes = progress::while_publishing(&self.store, &spec.name, &board, run).await;
        compact_after_sync(&ctx.hub, "hub").await;
        let mut logged_conflicts = false;
        for outcome in &outcomes {
            summary.uploaded += outcome.uploaded;
            summary.downloaded += outcome.downloaded;
            match &outcome.result {
                Ok(report) => {
                    summary.succeeded += 1;
                    summary.conflicts += report.conflict_count;
                    logged_conflicts |= spec.conflict_logging && !report.conflicts.is_empty();
                }
                Err(f) if f.kind == ErrorKind::Cancelled => summary.cancelled += 1,
                Err(_) => summary.failed += 1,
            }
        }
        if spec.conflict_logging {
            self.purge_conflicts(spec, logged_conflicts).await;
        }
        let state = if summary.failed > 0 {
            SyncGroupState::Error
        } else if summary.cancelled > 0 {
            SyncGroupState::Warning
        } else {
            SyncGroupState::Good
        };
        let idle =
            continuous && !summary.moved_anything() && previous.state == state && recent(previous.last_sync_time);
        if !idle {
            self.set_group(spec, state, Some(now_micros())).await;
        }
        summary
    }

    /// Counts the rows waiting in each direction between `member` and its
    /// hub (changes past the member's watermarks) through the runner's open
    /// connections; nothing is written. The error says, for people, which
    /// database could not be reached or read. It is not bounded in time:
    /// callers that must answer quickly wrap it in a timeout.
    pub async fn pending_rows(&self, group: &GroupSpec, member: &MemberSpec) -> Result<PendingRows, String> {
        if group.tables.is_empty() {
            return Ok(PendingRows::NotProvisioned);
        }
        let hub = self.open_existing(&group.name, "the hub", &group.hub).await?;
        let db = self.open_existing(&group.name, &format!("member `{}`", member.name), &member.database).await?;
        let selection: Vec<TableSelection> = group.tables.iter().map(TableSpec::selection).collect();
        let tables = resolve_tables(&hub, &selection)
            .await
            .map_err(|e| format!("cannot read the sync schema on the hub ({}): {e}", group.hub.display()))?;
        match member_status(&hub, &db, &group.name, &member.name, &tables).await {
            Ok(status) => Ok(PendingRows::of(&status, member.direction)),
            Err(e) => {
                if endpoints::is_connection_error(e.kind) {
                    // Which side failed is not known: reconnect both next time.
                    self.endpoints.failed(&group.hub, &group.name, e.kind);
                    self.endpoints.failed(&member.database, &group.name, e.kind);
                }
                Err(format!("cannot count the changes of member `{}`: {e}", member.name))
            }
        }
    }

    /// Opens a database through the cache, refusing to create a SQLite file
    /// that does not exist yet (counting must not leave one behind).
    async fn open_existing(&self, group: &str, what: &str, database: &DatabaseSpec) -> Result<AnyEndpoint, String> {
        if let Some(missing) = crate::inspect::missing_sqlite_file(database, &self.base_dir) {
            return Err(format!("{what}: {missing}"));
        }
        self.endpoints.open(database, &self.base_dir).await.map_err(|e| {
            self.endpoints.failed(database, group, e.kind);
            format!("cannot open {what} ({}): {e}", database.display())
        })
    }

    /// Opens the hub, resolves the sync schema and provisions the hub.
    async fn prepare_hub(&self, spec: &GroupSpec) -> Result<(AnyEndpoint, Vec<SyncTable>), Failure> {
        let fail = |doing: &str, e: EndpointError| {
            self.endpoints.failed(&spec.hub, &spec.name, e.kind);
            Failure {
                kind: e.kind,
                text: text::failure_text(
                    &format!("{doing} ({})", spec.hub.display()),
                    &e.to_string(),
                    e.hint.is_some(),
                    e.kind,
                    "hub",
                    &spec.hub,
                ),
            }
        };
        let hub = self.endpoints.open(&spec.hub, &self.base_dir).await.map_err(|e| fail("opening the hub", e))?;
        let selection: Vec<TableSelection> = spec.tables.iter().map(TableSpec::selection).collect();
        let tables =
            resolve_tables(&hub, &selection).await.map_err(|e| fail("resolving the sync schema on the hub", e))?;
        if !self.endpoints.is_provisioned(&spec.hub, &spec.name, &tables) {
            provision_hub(&hub, &tables).await.map_err(|e| fail("provisioning the hub", e))?;
            self.endpoints.mark_provisioned(&spec.hub, &spec.name, &tables);
        }
        Ok((hub, tables))
    }

    /// Records a run that failed before any member synced: one `Error` entry
    /// for the hub, and every member's sync failed because of it.
    async fn hub_failed(
        &self,
        spec: &GroupSpec,
        members: &[StoredMember],
        tracing_id: &str,
        started_at: i64,
        failure: &Failure,
    ) {
        tracing::warn!(group = %spec.name, error = %failure.text, "The hub failed; no member was synced.");
        self.log(spec, LogType::Error, HUB_SOURCE, &failure.text, tracing_id, "Failed").await;
        let took = Duration::from_micros(u64::try_from(now_micros() - started_at).unwrap_or(0));
        for member in members {
            let name = &member.spec.name;
            metrics::sync_started(&spec.name, name);
            metrics::sync_ended(&spec.name, name, Some(false), took, 0, 0);
            let status = MemberStatusRecord {
                state: SyncMemberState::SyncFailed,
                last_sync_time: member.status.last_sync_time,
                last_error: Some(format!("The hub failed: {}", failure.text)),
            };
            self.set_member(spec, name, &status).await;
            self.append_run(spec, name, tracing_id, started_at, took, (0, 0, 0), "Failed").await;
        }
        self.set_group(spec, SyncGroupState::Error, Some(now_micros())).await;
    }

    /// Syncs one member and records its outcome.
    async fn sync_one(&self, ctx: &RunContext<'_>, member: &StoredMember) -> MemberOutcome {
        let group = ctx.group;
        let name = member.spec.name.as_str();
        if !ctx.continuous {
            let status = MemberStatusRecord { state: SyncMemberState::SyncInProgress, ..member.status.clone() };
            self.set_member(group, name, &status).await;
        }
        metrics::sync_started(&group.name, name);
        let started_at = now_micros();
        let clock = Instant::now();
        let tally = Tally { member: name, progress: Some(ctx.progress), ..Tally::default() };
        let session = self.session(ctx, member, &tally).await;
        ctx.progress.finished(name);
        let took = clock.elapsed();
        let (uploaded, downloaded) = match &session {
            Ok((report, _)) => (report.uploaded, report.downloaded),
            Err(_) => (tally.uploaded.load(Ordering::Relaxed), tally.downloaded.load(Ordering::Relaxed)),
        };
        let (result, db) = match session {
            Ok((report, db)) => (Ok(report), Some(db)),
            Err(failure) => (Err(failure), None),
        };
        let outcome = MemberOutcome { result, uploaded, downloaded };
        let succeeded = match &outcome.result {
            Ok(_) => Some(true),
            Err(f) if f.kind == ErrorKind::Cancelled => None,
            Err(_) => Some(false),
        };
        metrics::sync_ended(&group.name, name, succeeded, took, uploaded, downloaded);
        let idle = ctx.continuous
            && outcome.result.as_ref().is_ok_and(|r| r.rows_moved() + r.conflict_count == 0)
            && member.status.state == SyncMemberState::SyncSucceeded;
        if idle && recent(member.status.last_sync_time) {
            return outcome;
        }
        let database = &member.spec.database;
        let (state, outcome_word) = match &outcome.result {
            Ok(_) => (SyncMemberState::SyncSucceeded, "Succeeded"),
            Err(f) if f.kind == ErrorKind::Cancelled => (SyncMemberState::SyncCancelled, "Cancelled"),
            Err(_) => (SyncMemberState::SyncFailed, "Failed"),
        };
        let status = MemberStatusRecord {
            state,
            last_sync_time: if outcome.result.is_ok() { Some(now_micros()) } else { member.status.last_sync_time },
            last_error: outcome
                .result
                .as_ref()
                .err()
                .filter(|f| f.kind != ErrorKind::Cancelled)
                .map(|f| f.text.clone()),
        };
        self.set_member(group, name, &status).await;
        if idle {
            // Only the stored sync time needed refreshing.
            return outcome;
        }
        let conflicts = outcome.result.as_ref().map_or(0, |r| r.conflict_count);
        match &outcome.result {
            Ok(report) => {
                self.log(
                    group,
                    LogType::Success,
                    name,
                    &text::success(database, report),
                    &ctx.tracing_id,
                    outcome_word,
                )
                .await;
                if report.conflict_count > 0 {
                    self.record_conflicts(ctx, name, report).await;
                }
            }
            Err(f) if f.kind == ErrorKind::Cancelled => {
                let details = text::cancelled(database, uploaded, downloaded);
                self.log(group, LogType::Warning, name, &details, &ctx.tracing_id, outcome_word).await;
            }
            Err(f) => self.log(group, LogType::Error, name, &f.text, &ctx.tracing_id, outcome_word).await,
        }
        let tally = (uploaded, downloaded, conflicts);
        self.append_run(group, name, &ctx.tracing_id, started_at, took, tally, outcome_word).await;
        tracing::info!(
            group = %group.name,
            member = name,
            outcome = outcome_word,
            uploaded,
            downloaded,
            conflicts,
            duration_ms = took.as_millis() as u64,
            "Member synced."
        );
        if let Some(db) = db {
            self.update_pending(ctx, member, &db).await;
        }
        outcome
    }

    /// Opens and provisions the member and runs its session.
    async fn session(
        &self,
        ctx: &RunContext<'_>,
        member: &StoredMember,
        tally: &Tally<'_>,
    ) -> Result<(SessionReport, AnyEndpoint), Failure> {
        let group = ctx.group;
        let database = &member.spec.database;
        let fail = |doing: &str, kind: ErrorKind, error: String, has_hint: bool| {
            self.endpoints.failed(database, &group.name, kind);
            let doing = format!("{doing} ({})", database.display());
            Failure { kind, text: text::failure_text(&doing, &error, has_hint, kind, "member", database) }
        };
        let db = self
            .endpoints
            .open(database, &self.base_dir)
            .await
            .map_err(|e| fail("opening the member database", e.kind, e.to_string(), e.hint.is_some()))?;
        if !self.endpoints.is_provisioned(database, &group.name, &ctx.tables) {
            // Provisioning also checks that existing member tables hold every
            // synced column, so a mismatch is reported clearly instead of
            // failing mid-apply; it is repeated after any failure.
            provision_member(&db, &ctx.tables)
                .await
                .map_err(|e| fail("provisioning the member", e.kind, e.to_string(), e.hint.is_some()))?;
            self.endpoints.mark_provisioned(database, &group.name, &ctx.tables);
        }
        let opts = SessionOptions {
            scope: &group.name,
            member: &member.spec.name,
            direction: member.spec.direction,
            policy: group.policy,
            tables: &ctx.tables,
            batch_rows: group.batch_rows,
            cancel: Some(ctx.cancel),
            observer: tally,
        };
        let synced = sync_member(&ctx.hub, &db, opts).await;
        compact_after_sync(&db, "member").await;
        match synced {
            Ok(report) => Ok((report, db)),
            Err(e) => {
                let has_hint = e.source.hint.is_some();
                let kind = e.kind();
                if kind != ErrorKind::Cancelled && endpoints::is_connection_error(kind) {
                    // Which side lost its connection is not known: reconnect both.
                    self.endpoints.failed(&group.hub, &group.name, kind);
                }
                Err(fail("syncing", kind, e.to_string(), has_hint))
            }
        }
    }

    /// Logs a member's conflicts (when the group keeps them) and counts them by policy.
    async fn record_conflicts(&self, ctx: &RunContext<'_>, member: &str, report: &SessionReport) {
        let group = ctx.group;
        let mut by_policy = HashMap::new();
        for c in &report.conflicts {
            *by_policy.entry(c.policy).or_insert(0u64) += 1;
        }
        // Conflicts beyond those the report keeps are counted only; they were
        // decided by the group's policy unless a table overrides it.
        let unlisted = report.conflict_count.saturating_sub(report.conflicts.len() as u64);
        *by_policy.entry(group.policy).or_insert(0) += unlisted;
        for (policy, count) in by_policy {
            metrics::conflicts(&group.name, policy, count);
        }
        let hub_won = report.conflicts.iter().filter(|c| c.winner == Side::Hub).count();
        let member_won = report.conflicts.len() - hub_won;
        let details = text::conflicts(report, &group.policy.to_string(), hub_won, member_won, group.conflict_logging);
        self.log(group, LogType::Warning, member, &details, &ctx.tracing_id, "Succeeded").await;
        if !group.conflict_logging || report.conflicts.is_empty() {
            return;
        }
        let now = now_micros();
        let records: Vec<ConflictRecord> = report
            .conflicts
            .iter()
            .map(|c| ConflictRecord {
                id: 0,
                timestamp: now,
                member: member.to_string(),
                conflict: c.clone(),
                columns: ctx
                    .tables
                    .iter()
                    .find(|t| t.schema.name == c.table)
                    .map(|t| t.schema.columns.iter().map(|col| col.name.clone()).collect())
                    .unwrap_or_default(),
            })
            .collect();
        if let Err(e) = self.store.append_conflicts(&group.name, &records).await {
            tracing::warn!(group = %group.name, member, error = %e, "Cannot log the sync's conflicts.");
        }
    }

    /// Deletes logged conflicts past the group's retention.
    async fn purge_conflicts(&self, group: &GroupSpec, logged_now: bool) {
        let due = {
            let mut purged = self.purged.lock().unwrap_or_else(PoisonError::into_inner);
            let due = logged_now || purged.get(&group.name).is_none_or(|at| at.elapsed() >= PURGE_EVERY);
            if due {
                purged.insert(group.name.clone(), Instant::now());
            }
            due
        };
        if !due {
            return;
        }
        let retention = i64::from(group.conflict_retention_days) * 86_400 * 1_000_000;
        match self.store.purge_conflicts(&group.name, now_micros() - retention).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(group = %group.name, purged = n, "Expired conflicts purged."),
            Err(e) => tracing::warn!(group = %group.name, error = %e, "Cannot purge expired conflicts."),
        }
    }

    /// Sets the changes-waiting gauges of a member, after its run.
    async fn update_pending(&self, ctx: &RunContext<'_>, member: &StoredMember, db: &AnyEndpoint) {
        let name = &member.spec.name;
        match member_status(&ctx.hub, db, &ctx.group.name, name, &ctx.tables).await {
            Ok(status) => {
                // A direction the member does not sync never moves: nothing waits.
                let (upload, download) = match PendingRows::of(&status, member.spec.direction) {
                    PendingRows::NotProvisioned => (0, 0),
                    PendingRows::Counts { upload, download } => (upload.unwrap_or(0), download.unwrap_or(0)),
                };
                metrics::pending_changes(&ctx.group.name, name, upload, download);
            }
            Err(e) => {
                tracing::debug!(group = %ctx.group.name, member = %name, error = %e, "Cannot count pending changes.")
            }
        }
    }

    async fn set_group(&self, group: &GroupSpec, state: SyncGroupState, last_sync_time: Option<i64>) {
        let status = GroupStatus { state, last_sync_time };
        if let Err(e) = self.store.set_group_status(&group.name, &status).await {
            tracing::warn!(group = %group.name, error = %e, "Cannot record the group's state.");
        }
    }

    async fn set_member(&self, group: &GroupSpec, member: &str, status: &MemberStatusRecord) {
        if let Err(e) = self.store.set_member_status(&group.name, member, status).await {
            tracing::warn!(group = %group.name, member, error = %e, "Cannot record the member's state.");
        }
    }

    async fn log(
        &self,
        group: &GroupSpec,
        log_type: LogType,
        source: &str,
        details: &str,
        tracing_id: &str,
        operation_status: &str,
    ) {
        let record = LogRecord {
            id: 0,
            timestamp: now_micros(),
            log_type,
            source: source.to_string(),
            details: details.to_string(),
            tracing_id: tracing_id.to_string(),
            operation_status: operation_status.to_string(),
        };
        if let Err(e) = self.store.append_log(&group.name, &record).await {
            tracing::warn!(group = %group.name, error = %e, "Cannot write the sync log.");
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn append_run(
        &self,
        group: &GroupSpec,
        member: &str,
        tracing_id: &str,
        started_at: i64,
        took: Duration,
        (uploaded, downloaded, conflicts): (u64, u64, u64),
        outcome: &str,
    ) {
        let as_i64 = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        let record = RunRecord {
            group: group.name.clone(),
            member: member.to_string(),
            tracing_id: tracing_id.to_string(),
            started_at,
            duration_ms: i64::try_from(took.as_millis()).unwrap_or(i64::MAX),
            uploaded: as_i64(uploaded),
            downloaded: as_i64(downloaded),
            conflicts: as_i64(conflicts),
            outcome: outcome.to_string(),
        };
        if let Err(e) = self.store.append_run(&record).await {
            tracing::warn!(group = %group.name, member, error = %e, "Cannot record the run in the history.");
        }
    }
}

/// Whether a stored sync time is recent enough for an idle poll to leave it.
fn recent(last_sync_time: Option<i64>) -> bool {
    let refresh = i64::try_from(IDLE_REFRESH.as_micros()).unwrap_or(i64::MAX);
    last_sync_time.is_some_and(|t| now_micros() - t < refresh)
}

/// Counts the rows each leg committed, batch by batch, keeps the run's
/// progress board up to date, and logs progress at debug level (a continuous
/// group polls four times a second).
#[derive(Default)]
struct Tally<'a> {
    uploaded: AtomicU64,
    downloaded: AtomicU64,
    member: &'a str,
    progress: Option<&'a ProgressBoard>,
}

impl SessionObserver for Tally<'_> {
    fn on_event(&self, event: SessionEvent<'_>) {
        if let Some(board) = self.progress {
            board.on_event(self.member, &event);
        }
        match event {
            SessionEvent::RowsMoved { leg, table, rows } => {
                let counter = if leg == Leg::Upload { &self.uploaded } else { &self.downloaded };
                counter.fetch_add(rows, Ordering::Relaxed);
                tracing::debug!(%leg, %table, rows, "Batch committed.");
            }
            SessionEvent::TableStarted { leg, table, pending, bulk } => {
                tracing::debug!(%leg, %table, pending, bulk, "Table started.");
            }
            SessionEvent::Conflict(c) => tracing::debug!(conflict = %c.describe(), "Conflict resolved."),
            SessionEvent::LegStarted { .. } | SessionEvent::TableFinished { .. } => {}
        }
    }
}

//! When groups run: on their interval, continuously, or when triggered, never
//! twice at once, on whichever server holds the group's lease.
//!
//! Every tick (at most [`TICK`] apart, sooner on a [`Wake`]) the scheduler
//! reloads the groups from the store and starts those that are due and not
//! already running here, each under the group's lease in the store, so
//! servers sharing a store never run a group at the same time. A lease is
//! held only while its group runs and is renewed meanwhile; a server that
//! dies leaves it to expire, and another server takes the group then.
//!
//! Continuous groups (`interval = 0`) are polled: they run again
//! [`due::CONTINUOUS_PAUSE`] after their previous run ended, and a run that
//! finds nothing to move costs a few reads. PostgreSQL LISTEN/NOTIFY from the
//! tracking triggers would wake the scheduler on a commit instead; that needs
//! `pg_notify` in the engine's triggers and is not done yet.

mod due;
mod lease;

use std::collections::{HashMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use hubsync_core::{Cancel, now_micros};
use tokio::sync::Notify;
use tokio::task::JoinSet;

pub use self::due::CONTINUOUS_PAUSE;
use self::due::Timing;
use self::lease::Keeper;
use crate::metrics;
use crate::runner::{RunSummary, Runner};
use crate::spec::Schedule;
use crate::store::{MetaStore, StoredGroup};

/// The longest time between two looks at the store.
pub const TICK: Duration = Duration::from_millis(250);

/// How long a lease lasts unless renewed: a dead server's groups are taken
/// over this long after its last renewal.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(10);

/// How often the seconds-since-last-success gauges are refreshed.
const GAUGE_EVERY: Duration = Duration::from_secs(1);

/// How often an unreachable store is reported.
const STORE_WARNING_EVERY: Duration = Duration::from_secs(30);

/// How often the metrics recorder drains its histograms.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Wakes the scheduler at once (after `triggerSync` or `cancelSync`), instead
/// of at its next tick.
#[derive(Debug, Clone, Default)]
pub struct Wake(Arc<Notify>);

impl Wake {
    /// Wakes the scheduler.
    pub fn wake(&self) {
        self.0.notify_one();
    }

    /// Waits for a wake.
    pub async fn woken(&self) {
        self.0.notified().await;
    }
}

/// Runs groups on their schedules until shut down.
#[derive(Debug)]
pub struct Scheduler {
    store: MetaStore,
    runner: Runner,
    owner: String,
    wake: Wake,
    lease_ttl: Duration,
}

/// A group running here.
struct Active {
    cancel: Cancel,
    /// A sync was requested during the run: run once more right after.
    triggered: bool,
}

/// What a run task hands back.
struct RunEnd {
    group: String,
    /// `None` when the run panicked.
    summary: Option<RunSummary>,
    started_at: i64,
}

/// The scheduler's own book-keeping between ticks.
#[derive(Default)]
struct Book {
    runs: JoinSet<RunEnd>,
    active: HashMap<String, Active>,
    timing: HashMap<String, Timing>,
    /// Groups requested during their run here: they run again at once.
    pending: HashSet<String>,
    last_gauges: Option<Instant>,
    store_warned: Option<Instant>,
    last_upkeep: Option<Instant>,
}

impl Scheduler {
    /// A scheduler that takes leases as `owner` (unique per server process).
    pub fn new(store: MetaStore, runner: Runner, owner: String, wake: Wake) -> Scheduler {
        Scheduler { store, runner, owner, wake, lease_ttl: DEFAULT_LEASE_TTL }
    }

    /// The same scheduler with leases lasting `ttl` (tests use short ones, to
    /// see a takeover quickly). Renewals happen every third of it.
    pub fn with_lease_ttl(mut self, ttl: Duration) -> Scheduler {
        self.lease_ttl = ttl.max(Duration::from_millis(150));
        self
    }

    /// The owner name it takes leases as.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Runs until `shutdown` turns true (or its sender is dropped); then
    /// stops taking work, lets every running sync stop after its batch in
    /// flight, releases its leases and returns.
    pub async fn run(self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        tracing::info!(owner = %self.owner, lease_ttl_ms = self.lease_ttl.as_millis() as u64, "Scheduler started.");
        let mut book = Book::default();
        loop {
            if *shutdown.borrow() {
                break;
            }
            self.tick(&mut book).await;
            tokio::select! {
                changed = shutdown.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
                () = self.wake.woken() => {}
                () = tokio::time::sleep(TICK) => {}
                Some(joined) = book.runs.join_next(), if !book.runs.is_empty() => self.ended(&mut book, joined),
            }
            while let Some(joined) = book.runs.try_join_next() {
                self.ended(&mut book, joined);
            }
        }
        let running = book.active.len();
        tracing::info!(owner = %self.owner, running, "Scheduler stopping; running syncs stop after their batch in flight.");
        for active in book.active.values() {
            active.cancel.cancel();
        }
        while let Some(joined) = book.runs.join_next().await {
            self.ended(&mut book, joined);
        }
        tracing::info!(owner = %self.owner, "Scheduler stopped.");
    }

    /// One look at the store: start what is due.
    async fn tick(&self, book: &mut Book) {
        let groups = match self.store.list_groups().await {
            Ok(groups) => groups,
            Err(e) => {
                // Said once in a while, not four times a second while the store is down.
                if book.store_warned.is_none_or(|t| t.elapsed() >= STORE_WARNING_EVERY) {
                    book.store_warned = Some(Instant::now());
                    tracing::warn!(error = %e, "Cannot read the sync groups; retrying every tick.");
                }
                return;
            }
        };
        let names: HashSet<&str> = groups.iter().map(|g| g.spec.name.as_str()).collect();
        book.timing.retain(|name, _| names.contains(name.as_str()));
        book.pending.retain(|name| names.contains(name.as_str()));
        for group in &groups {
            self.consider(book, group).await;
        }
        self.housekeeping(book, &groups).await;
    }

    /// Starts one group if it is due and its lease can be had.
    async fn consider(&self, book: &mut Book, group: &StoredGroup) {
        let name = &group.spec.name;
        if let Some(active) = book.active.get_mut(name) {
            if !active.triggered && self.take_sync_request(name).await {
                tracing::info!(group = %name, "Sync requested while running; it runs again when this run ends.");
                active.triggered = true;
            }
            return;
        }
        let timing = book.timing.get(name).copied().unwrap_or_default();
        let requested = book.pending.remove(name) || self.take_sync_request(name).await;
        let scheduled = !group.spec.tables.is_empty()
            && due::is_due(group.spec.schedule, &timing, group.status.last_sync_time, now_micros());
        if !requested && !scheduled {
            return;
        }
        match self.store.try_lease(name, &self.owner, self.lease_ttl).await {
            Ok(true) => self.start(book, group.clone(), requested),
            Ok(false) => {
                tracing::debug!(group = %name, "Another server holds the group's lease.");
                if requested {
                    self.hand_back(name).await;
                }
            }
            Err(e) => {
                tracing::warn!(group = %name, error = %e, "Cannot take the group's lease; retrying at the next tick.");
                if requested {
                    self.hand_back(name).await;
                }
            }
        }
    }

    /// Takes a pending sync request; a store error counts as none.
    async fn take_sync_request(&self, group: &str) -> bool {
        match self.store.take_sync_request(group).await {
            Ok(taken) => taken,
            Err(e) => {
                tracing::warn!(group, error = %e, "Cannot read sync requests.");
                false
            }
        }
    }

    /// Puts back a sync request this server took but cannot serve, for the
    /// server holding the lease.
    async fn hand_back(&self, group: &str) {
        if let Err(e) = self.store.request_sync(group).await {
            tracing::warn!(group, error = %e, "A sync request could not be handed back; trigger the sync again.");
        }
    }

    /// Spawns a leased group's run.
    fn start(&self, book: &mut Book, group: StoredGroup, requested: bool) {
        let name = group.spec.name.clone();
        let cancel = Cancel::default();
        book.active.insert(name.clone(), Active { cancel: cancel.clone(), triggered: false });
        let timing = book.timing.entry(name.clone()).or_default();
        let started_at = now_micros();
        timing.last_start = Some(started_at);
        let store = self.store.clone();
        let runner = self.runner.clone();
        let owner = self.owner.clone();
        let ttl = self.lease_ttl;
        let quiet = group.spec.schedule == Schedule::Continuous && !requested;
        book.runs.spawn(async move {
            // A cancel asked for while nothing ran is not meant for this run.
            if let Ok(true) = store.take_cancel_request(&name).await {
                tracing::debug!(group = %name, "A stale cancel request was dropped.");
            }
            // The keeper lives in this task: when the task is dropped (the
            // scheduler aborted), renewals stop and the lease expires.
            let keeper = Keeper::spawn(store.clone(), name.clone(), owner.clone(), ttl, cancel.clone());
            if quiet {
                tracing::debug!(group = %name, "Sync run started.");
            } else {
                tracing::info!(group = %name, requested, "Sync run started.");
            }
            let clock = Instant::now();
            let summary = AssertUnwindSafe(runner.run_group(&group, &cancel)).catch_unwind().await.ok();
            let lost = keeper.stop();
            if !lost && let Err(e) = store.release_lease(&name, &owner).await {
                tracing::warn!(group = %name, error = %e, "Cannot release the group's lease; it expires by itself.");
            }
            log_end(&name, summary.as_ref(), clock.elapsed(), quiet);
            RunEnd { group: name, summary, started_at }
        });
    }

    /// Books a finished run.
    fn ended(&self, book: &mut Book, joined: Result<RunEnd, tokio::task::JoinError>) {
        let end = match joined {
            Ok(end) => end,
            // Run tasks catch their panics; this is an abort at shutdown.
            Err(e) => {
                tracing::warn!(error = %e, "A sync run task ended abnormally.");
                return;
            }
        };
        let triggered = book.active.remove(&end.group).is_some_and(|a| a.triggered);
        let timing = book.timing.entry(end.group.clone()).or_default();
        timing.last_start = Some(end.started_at);
        timing.last_end = Some(now_micros());
        let failed = end.summary.as_ref().is_none_or(|s| s.failed > 0);
        timing.failures = if failed { timing.failures.saturating_add(1) } else { 0 };
        if triggered {
            book.pending.insert(end.group);
            self.wake.wake();
        }
    }

    /// Refreshes the seconds-since-last-success gauges and drains the
    /// metrics recorder, each at its own pace.
    async fn housekeeping(&self, book: &mut Book, groups: &[StoredGroup]) {
        if book.last_upkeep.is_none_or(|t| t.elapsed() >= UPKEEP_EVERY) {
            book.last_upkeep = Some(Instant::now());
            metrics::upkeep();
        }
        if book.last_gauges.is_some_and(|t| t.elapsed() < GAUGE_EVERY) {
            return;
        }
        book.last_gauges = Some(Instant::now());
        let now = now_micros();
        for group in groups {
            let members = match self.store.list_members(&group.spec.name).await {
                Ok(members) => members,
                Err(e) => {
                    tracing::debug!(group = %group.spec.name, error = %e, "Cannot read members for the metrics.");
                    continue;
                }
            };
            for member in members {
                if let Some(at) = member.status.last_sync_time {
                    let seconds = (now - at) as f64 / 1e6;
                    metrics::seconds_since_last_success(&group.spec.name, &member.spec.name, seconds);
                }
            }
        }
    }
}

fn log_end(group: &str, summary: Option<&RunSummary>, took: Duration, quiet: bool) {
    let duration_ms = took.as_millis() as u64;
    let Some(s) = summary else {
        tracing::error!(
            group,
            duration_ms,
            "The sync run panicked; the scheduler goes on. This is a bug: please report it."
        );
        return;
    };
    let (uploaded, downloaded, conflicts) = (s.uploaded, s.downloaded, s.conflicts);
    let (succeeded, failed, cancelled) = (s.succeeded, s.failed, s.cancelled);
    if quiet && !s.moved_anything() && failed == 0 && cancelled == 0 {
        tracing::debug!(group, duration_ms, "Sync run ended; nothing to move.");
    } else if failed > 0 {
        tracing::warn!(group, duration_ms, uploaded, downloaded, conflicts, succeeded, failed, cancelled, tracing_id = %s.tracing_id, "Sync run ended with failures.");
    } else {
        tracing::info!(group, duration_ms, uploaded, downloaded, conflicts, succeeded, failed, cancelled, tracing_id = %s.tracing_id, "Sync run ended.");
    }
}

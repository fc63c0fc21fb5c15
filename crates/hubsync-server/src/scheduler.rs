//! When groups run: on their interval, continuously, or when triggered, never
//! twice at once, on whichever server holds the group's lease.

use std::sync::Arc;

use tokio::sync::Notify;

use crate::runner::Runner;
use crate::store::MetaStore;

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
}

impl Scheduler {
    /// A scheduler that takes leases as `owner` (unique per server process).
    pub fn new(store: MetaStore, runner: Runner, owner: String, wake: Wake) -> Scheduler {
        Scheduler { store, runner, owner, wake }
    }

    /// Runs until `shutdown` turns true; then stops taking work, lets every
    /// running sync stop after its batch in flight, releases its leases and
    /// returns.
    pub async fn run(self, shutdown: tokio::sync::watch::Receiver<bool>) {
        let _ = (shutdown, &self.store, &self.runner, &self.owner, &self.wake);
        todo!("scheduler")
    }
}

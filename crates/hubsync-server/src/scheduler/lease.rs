//! What watches a running group beside its run: it renews the group's lease
//! and turns `cancelSync` requests into a cancelled run.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hubsync_core::Cancel;
use tokio::task::JoinHandle;

use crate::store::MetaStore;

/// How often a running group's cancel requests are looked for.
pub const CANCEL_POLL: Duration = Duration::from_millis(200);

/// Renews the lease and polls for cancel requests while a group runs, in a
/// task of its own (so a run busy in a long statement cannot delay the
/// renewal). Dropping it stops the task.
pub struct Keeper {
    task: JoinHandle<()>,
    lost: Arc<AtomicBool>,
}

impl Keeper {
    /// Starts watching `group`, whose lease `owner` has just taken for `ttl`.
    pub fn spawn(store: MetaStore, group: String, owner: String, ttl: Duration, cancel: Cancel) -> Keeper {
        let lost = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(keep(store, group, owner, ttl, cancel, Arc::clone(&lost)));
        Keeper { task, lost }
    }

    /// Stops watching; returns whether the lease was lost meanwhile (then it
    /// must not be released: another server may hold it now).
    pub fn stop(self) -> bool {
        self.task.abort();
        self.lost.load(Ordering::SeqCst)
    }
}

impl Drop for Keeper {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Renews a third of the way through the lease, so two renewals can fail
/// before it expires.
fn renew_interval(ttl: Duration) -> Duration {
    (ttl / 3).max(Duration::from_millis(50))
}

async fn keep(store: MetaStore, group: String, owner: String, ttl: Duration, cancel: Cancel, lost: Arc<AtomicBool>) {
    let renew_every = renew_interval(ttl);
    let mut renewed = Instant::now();
    let mut poll = tokio::time::interval(CANCEL_POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        poll.tick().await;
        match store.take_cancel_request(&group).await {
            Ok(true) if !cancel.is_cancelled() => {
                tracing::info!(group = %group, "Cancel requested; the sync stops after the batch in flight.");
                cancel.cancel();
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(group = %group, error = %e, "Cannot read cancel requests."),
        }
        if renewed.elapsed() < renew_every {
            continue;
        }
        match store.try_lease(&group, &owner, ttl).await {
            Ok(true) => renewed = Instant::now(),
            Ok(false) => {
                tracing::warn!(group = %group, "Another server took the group's lease; the sync stops after the batch in flight.");
                lost.store(true, Ordering::SeqCst);
                cancel.cancel();
                return;
            }
            // The lease may still be held: retry while it cannot have expired.
            Err(e) if renewed.elapsed() + renew_every < ttl => {
                tracing::warn!(group = %group, error = %e, "Cannot renew the group's lease; retrying.");
            }
            Err(e) => {
                tracing::warn!(group = %group, error = %e, "Cannot renew the group's lease before it expires; the sync stops after the batch in flight.");
                lost.store(true, Ordering::SeqCst);
                cancel.cancel();
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_are_renewed_well_before_they_expire() {
        assert_eq!(renew_interval(Duration::from_secs(9)), Duration::from_secs(3));
        assert_eq!(renew_interval(Duration::from_millis(30)), Duration::from_millis(50));
    }
}

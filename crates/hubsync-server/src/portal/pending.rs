//! Rows pending per member, as the group page shows them: counted through
//! the runner ([`Runner::pending_rows`]), bounded by [`COUNT_TIMEOUT`], and
//! kept for [`KEEP_FOR`] so that the page's two-second refresh does not
//! query every member's database every time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::runner::{PendingRows, Runner};
use crate::spec::{GroupSpec, MemberSpec};

/// How long a count is shown before it is taken again.
pub const KEEP_FOR: Duration = Duration::from_secs(5);

/// How long counting may take before the page shows "unknown" instead: a
/// database that does not answer must not hold the page up.
pub const COUNT_TIMEOUT: Duration = Duration::from_secs(3);

/// A count, or why there is none (for people).
pub type Counted = Result<PendingRows, String>;

/// Counts by (group, member), with when each was taken.
type Counts = HashMap<(String, String), (Instant, Counted)>;

/// Counts taken lately, by (group, member). Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct PendingCache(Arc<Mutex<Counts>>);

impl PendingCache {
    fn lock(&self) -> MutexGuard<'_, Counts> {
        // Entries are replaced whole: a poisoned map is still consistent.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The member's pending rows: a count younger than [`KEEP_FOR`], or a
    /// new one (at most [`COUNT_TIMEOUT`] long).
    pub async fn get(&self, runner: &Runner, group: &GroupSpec, member: &MemberSpec) -> Counted {
        let key = (group.name.clone(), member.name.clone());
        {
            let mut map = self.lock();
            map.retain(|_, (at, _)| at.elapsed() < KEEP_FOR);
            if let Some((_, counted)) = map.get(&key) {
                return counted.clone();
            }
        }
        let counted = match tokio::time::timeout(COUNT_TIMEOUT, runner.pending_rows(group, member)).await {
            Ok(counted) => counted,
            Err(_) => Err(format!(
                "the databases of member `{}` and its hub did not answer within {} s",
                member.name,
                COUNT_TIMEOUT.as_secs()
            )),
        };
        if let Err(why) = &counted {
            tracing::debug!(group = %group.name, member = %member.name, error = %why, "Cannot count pending rows.");
        }
        self.lock().insert(key, (Instant::now(), counted.clone()));
        counted
    }

    /// Forgets a group's counts (its members or tables changed).
    pub fn forget(&self, group: &str) {
        self.lock().retain(|(g, _), _| g != group);
    }
}

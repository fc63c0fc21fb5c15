//! Running one sync group once: open the hub, resolve the sync schema,
//! provision what is missing, sync the members (up to a limit in parallel),
//! and record states, logs, conflicts, history and metrics in the store.

use std::path::PathBuf;

use hubsync_core::Cancel;

use crate::store::{MetaStore, StoredGroup};

/// Members of one group synced at the same time unless configured.
pub const DEFAULT_PARALLEL_MEMBERS: usize = 4;

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
}

/// Runs groups and the API's one-off database work. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Runner {
    store: MetaStore,
    base_dir: PathBuf,
    parallel_members: usize,
}

impl Runner {
    /// A runner over a store; relative SQLite paths are taken relative to
    /// `base_dir`.
    pub fn new(store: MetaStore, base_dir: PathBuf, parallel_members: usize) -> Runner {
        Runner { store, base_dir, parallel_members: parallel_members.max(1) }
    }

    /// Runs the group once (every member), stopping between batches when
    /// `cancel` is set, and records the outcome in the store.
    pub async fn run_group(&self, group: &StoredGroup, cancel: &Cancel) -> RunSummary {
        let _ = (group, cancel, &self.store, &self.base_dir, self.parallel_members);
        todo!("runner")
    }
}

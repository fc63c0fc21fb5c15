//! Open databases kept across runs, so a continuous group does not reconnect
//! (and re-provision) every 250 ms.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use hubsync_core::{EndpointError, ErrorKind, SyncTable};
use hubsync_engines::AnyEndpoint;

use crate::spec::DatabaseSpec;

/// An entry unused this long is closed: its group was deleted, or its
/// connection details changed (the spec, password included, is the key).
const IDLE_AFTER: Duration = Duration::from_secs(600);

struct Entry {
    endpoint: AnyEndpoint,
    used: Instant,
    /// Per group, the tables last provisioned on this database. Provisioning
    /// takes a write lock on the database, so it is repeated only when the
    /// sync schema changed or a run failed.
    provisioned: HashMap<String, Vec<SyncTable>>,
}

/// Open endpoints keyed by their database spec.
#[derive(Default)]
pub(crate) struct EndpointCache {
    entries: Mutex<HashMap<DatabaseSpec, Entry>>,
}

impl std::fmt::Debug for EndpointCache {
    // The keys hold passwords: show only how many databases are open.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointCache").field("open", &self.lock().len()).finish()
    }
}

/// Whether an error means the cached connection should be dropped.
pub(crate) fn is_connection_error(kind: ErrorKind) -> bool {
    matches!(kind, ErrorKind::ConnectionFailed | ErrorKind::ConnectionLost)
}

impl EndpointCache {
    fn lock(&self) -> MutexGuard<'_, HashMap<DatabaseSpec, Entry>> {
        // A panic while holding the map leaves it consistent (every update
        // is a single insert or remove), so a poisoned lock is still usable.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The open endpoint for `spec`, connecting when there is none.
    pub(crate) async fn open(&self, spec: &DatabaseSpec, base_dir: &Path) -> Result<AnyEndpoint, EndpointError> {
        {
            let mut entries = self.lock();
            let now = Instant::now();
            entries.retain(|_, e| now.duration_since(e.used) < IDLE_AFTER);
            if let Some(entry) = entries.get_mut(spec) {
                entry.used = now;
                return Ok(entry.endpoint.clone());
            }
        }
        let endpoint = hubsync_engines::connect(&spec.url(base_dir), base_dir).await?;
        let mut entries = self.lock();
        // Two members of different groups may have opened the same database
        // at once: keep the first, so both share one pool.
        let entry = entries.entry(spec.clone()).or_insert_with(|| Entry {
            endpoint,
            used: Instant::now(),
            provisioned: HashMap::new(),
        });
        Ok(entry.endpoint.clone())
    }

    /// Whether `tables` were provisioned on `spec` for `group` by an earlier run.
    pub(crate) fn is_provisioned(&self, spec: &DatabaseSpec, group: &str, tables: &[SyncTable]) -> bool {
        self.lock().get(spec).and_then(|e| e.provisioned.get(group)).is_some_and(|t| t.as_slice() == tables)
    }

    /// Remembers that `tables` are provisioned on `spec` for `group`.
    pub(crate) fn mark_provisioned(&self, spec: &DatabaseSpec, group: &str, tables: &[SyncTable]) {
        if let Some(entry) = self.lock().get_mut(spec) {
            entry.provisioned.insert(group.to_string(), tables.to_vec());
        }
    }

    /// After a failure: provision again next time, and reconnect when the
    /// failure was the connection's.
    pub(crate) fn failed(&self, spec: &DatabaseSpec, group: &str, kind: ErrorKind) {
        let mut entries = self.lock();
        if is_connection_error(kind) {
            entries.remove(spec);
        } else if let Some(entry) = entries.get_mut(spec) {
            entry.provisioned.remove(group);
        }
    }

    /// How many databases are open.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::model::DatabaseType;

    fn sqlite(path: &Path) -> DatabaseSpec {
        DatabaseSpec {
            database_type: DatabaseType::Sqlite,
            server_name: String::new(),
            database_name: path.display().to_string(),
            user_name: String::new(),
            password: Some("not-shown".into()),
        }
    }

    #[tokio::test]
    async fn endpoints_are_reused_until_a_connection_error() {
        let dir = tempfile::tempdir().unwrap();
        let cache = EndpointCache::default();
        let spec = sqlite(&dir.path().join("a.db"));
        cache.open(&spec, dir.path()).await.unwrap();
        cache.open(&spec, dir.path()).await.unwrap();
        assert_eq!(cache.len(), 1);
        cache.mark_provisioned(&spec, "g", &[]);
        assert!(cache.is_provisioned(&spec, "g", &[]));
        assert!(!cache.is_provisioned(&spec, "other", &[]));
        cache.failed(&spec, "g", ErrorKind::Schema);
        assert_eq!(cache.len(), 1);
        assert!(!cache.is_provisioned(&spec, "g", &[]));
        cache.failed(&spec, "g", ErrorKind::ConnectionLost);
        assert_eq!(cache.len(), 0);
        assert!(!format!("{cache:?}").contains("not-shown"));
    }

    #[tokio::test]
    async fn a_database_that_cannot_be_opened_is_not_cached() {
        let dir = tempfile::tempdir().unwrap();
        let cache = EndpointCache::default();
        let spec = sqlite(&dir.path().join("no/such/dir/x.db"));
        let err = cache.open(&spec, dir.path()).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::ConnectionFailed);
        assert_eq!(cache.len(), 0);
    }
}

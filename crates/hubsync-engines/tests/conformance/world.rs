//! A sync group under test: a hub, named members with directions, the group's
//! tables and policy, and the operations scenarios are written in.

use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use hubsync_core::{
    ConflictPolicy, Direction, Endpoint, EndpointError, ErrorKind, SessionError, SessionEvent, SessionObserver,
    SessionOptions, SessionReport, SyncTable, TableName, TableSelection, Value, provision_hub, provision_member,
    resolve_tables, sync_member,
};

use crate::harness::{Harness, Role, TestDb};

/// The sync group's name in every scenario.
pub(crate) const SCOPE: &str = "conformance";

/// Rounds `converge` allows before it declares the group does not settle.
const MAX_ROUNDS: usize = 5;

/// A member of the group.
pub(crate) struct Member {
    pub name: String,
    pub direction: Direction,
    pub db: Box<dyn TestDb>,
}

/// Why a sync (with its provisioning) failed.
#[derive(Debug)]
pub(crate) enum SyncFailure {
    Resolve(EndpointError),
    ProvisionHub(EndpointError),
    ProvisionMember(EndpointError),
    Session(SessionError),
}

impl SyncFailure {
    pub fn kind(&self) -> ErrorKind {
        match self {
            SyncFailure::Resolve(e) | SyncFailure::ProvisionHub(e) | SyncFailure::ProvisionMember(e) => e.kind,
            SyncFailure::Session(e) => e.kind(),
        }
    }
}

impl fmt::Display for SyncFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyncFailure::Resolve(e) => write!(f, "resolving the tables: {e}"),
            SyncFailure::ProvisionHub(e) => write!(f, "provisioning the hub: {e}"),
            SyncFailure::ProvisionMember(e) => write!(f, "provisioning the member: {e}"),
            SyncFailure::Session(e) => write!(f, "{e}"),
        }
    }
}

/// Counts the rows a session committed (batches that reached the target) and
/// optionally signals when a leg's tables are done.
#[derive(Default)]
pub(crate) struct CountingObserver {
    pub rows: AtomicU64,
    pub legs_done: tokio::sync::Notify,
}

impl SessionObserver for CountingObserver {
    fn on_event(&self, event: SessionEvent<'_>) {
        match event {
            SessionEvent::RowsMoved { rows, leg, table } => {
                if std::env::var("DEBUG_EVENTS").is_ok() {
                    eprintln!("moved {leg} {table} {rows}");
                }
                self.rows.fetch_add(rows, Ordering::SeqCst);
            }
            SessionEvent::TableFinished { .. } => self.legs_done.notify_one(),
            _ => {}
        }
    }
}

/// Ignores every event.
pub(crate) struct Quiet;

impl SessionObserver for Quiet {
    fn on_event(&self, _event: SessionEvent<'_>) {}
}

/// A hub and its members.
pub(crate) struct World {
    pub hub: Box<dyn TestDb>,
    pub members: Vec<Member>,
    pub tables: Vec<TableSelection>,
    pub policy: ConflictPolicy,
    pub batch_rows: usize,
    /// Databases already provisioned (`"hub"` or a member's name).
    provisioned: Mutex<Vec<String>>,
    /// Whether every sync provisions again, as the `hubsync sync` command does
    /// (the default), or only the first sync of each database.
    pub provision_every_sync: bool,
}

/// A table selection of all columns.
pub(crate) fn table(name: &str) -> TableSelection {
    TableSelection { name: TableName::new(name), columns: None, policy: None }
}

impl World {
    /// Creates the hub and the members' databases (all empty).
    pub async fn new(h: &dyn Harness, members: &[(&str, Direction)], policy: ConflictPolicy, tables: &[&str]) -> World {
        init_logging();
        let hub = h.create_db(Role::Hub, "hub").await;
        let mut list = Vec::new();
        for (i, (name, direction)) in members.iter().enumerate() {
            let db = h.create_db(Role::Member(i), name).await;
            list.push(Member { name: name.to_string(), direction: *direction, db });
        }
        World {
            hub,
            members: list,
            tables: tables.iter().map(|t| table(t)).collect(),
            policy,
            batch_rows: 1000,
            provisioned: Mutex::new(Vec::new()),
            provision_every_sync: true,
        }
    }

    pub fn with_batch_rows(mut self, rows: usize) -> World {
        self.batch_rows = rows;
        self
    }

    pub fn with_tables(mut self, tables: Vec<TableSelection>) -> World {
        self.tables = tables;
        self
    }

    pub fn member(&self, name: &str) -> &Member {
        self.members.iter().find(|m| m.name == name).unwrap_or_else(|| panic!("no member `{name}`"))
    }

    /// A database by name: `"hub"` or a member's.
    pub fn db(&self, name: &str) -> &dyn TestDb {
        if name == "hub" { &*self.hub } else { &*self.member(name).db }
    }

    /// Every database's name, hub first.
    pub fn names(&self) -> Vec<String> {
        std::iter::once("hub".to_string()).chain(self.members.iter().map(|m| m.name.clone())).collect()
    }

    fn needs_provisioning(&self, name: &str) -> bool {
        self.provision_every_sync || !self.provisioned.lock().expect("lock").iter().any(|n| n == name)
    }

    fn mark_provisioned(&self, name: &str) {
        self.provisioned.lock().expect("lock").push(name.to_string());
    }

    /// Forgets what was provisioned, so the next sync provisions again.
    pub fn reprovision_on_next_sync(&self) {
        self.provisioned.lock().expect("lock").clear();
    }

    /// The group's tables resolved on the hub.
    pub async fn resolve(&self) -> Result<Vec<SyncTable>, EndpointError> {
        resolve_tables(self.hub.endpoint(), &self.tables).await
    }

    /// Syncs a member through the given endpoints (wrappers of the world's
    /// own): resolves the tables, provisions the hub and the member the first
    /// time, and runs a session.
    pub async fn sync_through<H: Endpoint, M: Endpoint>(
        &self,
        name: &str,
        hub: &H,
        member: &M,
        observer: &dyn SessionObserver,
    ) -> Result<SessionReport, SyncFailure> {
        let m = self.member(name);
        let tables = self.resolve().await.map_err(SyncFailure::Resolve)?;
        if self.needs_provisioning("hub") {
            provision_hub(hub, &tables).await.map_err(SyncFailure::ProvisionHub)?;
            self.mark_provisioned("hub");
        }
        if self.needs_provisioning(name) {
            provision_member(member, &tables).await.map_err(SyncFailure::ProvisionMember)?;
            self.mark_provisioned(name);
        }
        let opts = SessionOptions {
            scope: SCOPE,
            member: name,
            direction: m.direction,
            policy: self.policy,
            tables: &tables,
            batch_rows: self.batch_rows,
            cancel: None,
            observer,
        };
        sync_member(hub, member, opts).await.map_err(SyncFailure::Session)
    }

    /// Syncs a member, with the given observer.
    pub async fn try_sync_observed(
        &self,
        name: &str,
        observer: &dyn SessionObserver,
    ) -> Result<SessionReport, SyncFailure> {
        self.sync_through(name, self.hub.endpoint(), self.member(name).db.endpoint(), observer).await
    }

    /// Syncs a member.
    pub async fn try_sync(&self, name: &str) -> Result<SessionReport, SyncFailure> {
        self.try_sync_observed(name, &hubsync_core::LogObserver).await
    }

    /// Syncs a member; panics when it fails.
    pub async fn sync(&self, name: &str) -> SessionReport {
        self.try_sync(name)
            .await
            .unwrap_or_else(|e| panic!("syncing member `{name}` ({}) failed: {e}", self.member(name).db.url()))
    }

    /// One round: every member once, in order.
    pub async fn sync_all(&self) -> Vec<SessionReport> {
        let mut reports = Vec::new();
        for m in &self.members {
            reports.push(self.sync(&m.name).await);
        }
        reports
    }

    /// Runs rounds until one moves no row; panics when that takes more than
    /// a few rounds. Returns the number of rounds that moved rows.
    pub async fn converge(&self) -> usize {
        for round in 0..MAX_ROUNDS {
            let moved: u64 = self.sync_all().await.iter().map(SessionReport::rows_moved).sum();
            if moved == 0 {
                return round;
            }
        }
        panic!("the group did not settle: every one of {MAX_ROUNDS} sync rounds still moved rows (ping-pong?)");
    }

    /// A table's rows on one database.
    pub async fn rows(&self, db: &str, table: &str) -> Vec<Vec<Value>> {
        self.db(db).read_table(table).await.rows
    }

    /// Asserts every database holds exactly the hub's rows of a table.
    pub async fn assert_same_rows(&self, table: &str) {
        let hub = self.rows("hub", table).await;
        for m in &self.members {
            let rows = m.db.read_table(table).await.rows;
            assert_rows_eq(&rows, &hub, &format!("table `{table}` on member `{}` vs the hub", m.name));
        }
    }

    /// Closes or drops every database.
    pub async fn finish(self) {
        self.hub.drop_db().await;
        for m in self.members {
            m.db.drop_db().await;
        }
    }
}

/// Compares row sets and, when they differ, says which keys differ.
pub(crate) fn assert_rows_eq(actual: &[Vec<Value>], expected: &[Vec<Value>], what: &str) {
    if actual == expected {
        return;
    }
    let show = |rows: &[Vec<Value>]| {
        rows.iter()
            .map(|r| format!("({})", r.iter().map(Value::display_short).collect::<Vec<_>>().join(", ")))
            .collect::<Vec<_>>()
    };
    let a = show(actual);
    let e = show(expected);
    let missing: Vec<&String> = e.iter().filter(|r| !a.contains(r)).collect();
    let extra: Vec<&String> = a.iter().filter(|r| !e.contains(r)).collect();
    panic!(
        "{what}: rows differ\n  missing (expected, not found): {missing:?}\n  unexpected (found, not expected): {extra:?}\n  actual:   {a:?}\n  expected: {e:?}"
    );
}

/// Shorthand for values in row literals.
pub(crate) fn int(i: i64) -> Value {
    Value::Integer(i)
}

pub(crate) fn text(s: &str) -> Value {
    Value::Text(s.to_string())
}

/// Sends `tracing` output to the test's captured output when `RUST_LOG` is
/// set, so a failing or stuck scenario can be replayed with logs.
fn init_logging() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}

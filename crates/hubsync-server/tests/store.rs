//! The metadata store, every test run on SQLite (a temporary file) and on
//! PostgreSQL (a fresh database per test, dropped afterwards; see
//! `hubsync-engines/tests/support/pg_service.rs` for the skip/fail rule).

#![allow(clippy::unwrap_used)]

#[path = "../../hubsync-engines/tests/support/pg_service.rs"]
mod pg_service;

use std::collections::HashSet;
use std::time::Duration;

use hubsync_core::{Conflict, ConflictPolicy, Direction, Side, TableName, Value};
use hubsync_server::model::{
    DatabaseSchema, DatabaseType, ErrorDetail, LogType, OperationStatus, SchemaColumn, SchemaTable, SyncGroupState,
    SyncMemberState,
};
use hubsync_server::store::time::parse_rfc3339;
use hubsync_server::store::{
    ConflictRecord, GroupStatus, LogQuery, LogRecord, MemberStatusRecord, PutOutcome, RunRecord,
};
use hubsync_server::{DatabaseSpec, GroupSpec, MemberSpec, MetaStore, Schedule, SecretKey, StoreError, TableSpec};
use sqlx::Row;

/// Where a test's store lives; `open` gives further stores on the same data.
struct Target {
    url: String,
    key: SecretKey,
    store: MetaStore,
    pg_database: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl Target {
    async fn sqlite() -> Target {
        let dir = tempfile::tempdir().unwrap();
        // A space in the path checks that it reaches SQLite unharmed.
        let url = format!("sqlite://{}", dir.path().join("meta store.db").display());
        Target::at(url, None, Some(dir)).await
    }

    async fn postgres(label: &str) -> Option<Target> {
        if pg_service::server_unavailable().await.is_some() {
            return None;
        }
        let (name, url) = pg_service::create_database(label).await;
        Some(Target::at(url, Some(name), None).await)
    }

    async fn at(url: String, pg_database: Option<String>, dir: Option<tempfile::TempDir>) -> Target {
        let key = SecretKey::parse(&SecretKey::generate(), "test").unwrap();
        let store = MetaStore::open(&url, Some(key.clone())).await.unwrap();
        Target { url, key, store, pg_database, _dir: dir }
    }

    /// Another store on the same data, with the given key.
    async fn open(&self, key: Option<SecretKey>) -> MetaStore {
        MetaStore::open(&self.url, key).await.unwrap()
    }

    /// The raw text of every row of `table`, to check what is stored.
    async fn raw_rows(&self, table: &str, columns: &str) -> Vec<Vec<String>> {
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(&self.url).await.unwrap();
        let sql = format!("select {columns} from {table}");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(&pool).await.unwrap();
        let width = columns.split(',').count();
        let texts = rows
            .iter()
            .map(|r| (0..width).map(|i| r.get::<Option<String>, _>(i).unwrap_or_default()).collect())
            .collect();
        pool.close().await;
        texts
    }

    async fn finish(self) {
        self.store.close().await;
        if let Some(db) = &self.pg_database {
            pg_service::drop_database(db).await;
        }
    }
}

/// Runs `check(&Target)` once on SQLite and once on PostgreSQL, as
/// `name::on_sqlite` and `name::on_postgres`.
macro_rules! on_both_backends {
    ($name:ident) => {
        mod $name {
            #[tokio::test]
            async fn on_sqlite() {
                let target = super::Target::sqlite().await;
                super::$name(&target).await;
                target.finish().await;
            }

            #[tokio::test]
            async fn on_postgres() {
                let Some(target) = super::Target::postgres(stringify!($name)).await else { return };
                super::$name(&target).await;
                target.finish().await;
            }
        }
    };
}

fn pg_db(password: Option<&str>) -> DatabaseSpec {
    DatabaseSpec {
        database_type: DatabaseType::PostgreSql,
        server_name: "db.local:5432".into(),
        database_name: "sales".into(),
        user_name: "sync".into(),
        password: password.map(str::to_string),
    }
}

fn group(name: &str, hub_password: Option<&str>) -> GroupSpec {
    GroupSpec {
        name: name.into(),
        hub: pg_db(hub_password),
        policy: ConflictPolicy::HubWin,
        schedule: Schedule::EverySeconds(300),
        batch_rows: 10_000,
        tables: vec![TableSpec {
            name: TableName { schema: Some("public".into()), name: "orders".into() },
            columns: Some(vec!["id".into(), "total".into()]),
            policy: Some(ConflictPolicy::LastWriterWins),
        }],
        conflict_logging: true,
        conflict_retention_days: 30,
    }
}

fn member(group: &str, name: &str, password: Option<&str>) -> MemberSpec {
    MemberSpec {
        group: group.into(),
        name: name.into(),
        database: pg_db(password),
        direction: Direction::Bidirectional,
    }
}

fn log(timestamp: i64, log_type: LogType, details: &str) -> LogRecord {
    LogRecord {
        id: 0,
        timestamp,
        log_type,
        source: "hub".into(),
        details: details.into(),
        tracing_id: "t-1".into(),
        operation_status: "Succeeded".into(),
    }
}

fn conflict(timestamp: i64, key: i64) -> ConflictRecord {
    ConflictRecord {
        id: 0,
        timestamp,
        member: "eu".into(),
        conflict: Conflict {
            table: TableName::new("orders"),
            key: vec![Value::Integer(key)],
            hub_row: Some(vec![Value::Integer(key), Value::Text("hub side".into())]),
            member_row: None,
            hub_changed_at: timestamp - 5,
            member_changed_at: timestamp - 3,
            winner: Side::Member,
            policy: ConflictPolicy::LastWriterWins,
            reason: "the member's change is later".into(),
        },
        columns: vec!["id".into(), "note".into()],
    }
}

fn run(group: &str, member: &str, started_at: i64) -> RunRecord {
    RunRecord {
        group: group.into(),
        member: member.into(),
        tracing_id: format!("run-{started_at}"),
        started_at,
        duration_ms: 12,
        uploaded: 3,
        downloaded: 4,
        conflicts: 1,
        outcome: "Succeeded".into(),
    }
}

fn schema(table: &str) -> DatabaseSchema {
    DatabaseSchema {
        tables: vec![SchemaTable {
            name: table.into(),
            quoted_name: format!("\"{table}\""),
            columns: vec![SchemaColumn {
                name: "id".into(),
                quoted_name: "\"id\"".into(),
                data_type: "bigint".into(),
                data_size: None,
                is_primary_key: true,
            }],
            has_error: false,
            error_id: None,
            error_message: None,
        }],
        last_update_time: "2026-12-01T17:40:22.000000Z".into(),
    }
}

async fn specs_round_trip_with_their_passwords_sealed(t: &Target) {
    let store = &t.store;
    let spec = group("sales", Some("hub-pässword-1"));
    assert_eq!(store.put_group(&spec).await.unwrap(), PutOutcome::Created);
    let eu = member("sales", "eu", Some("member-password-2"));
    let us = member("sales", "us", None);
    assert_eq!(store.put_member(&eu).await.unwrap(), PutOutcome::Created);
    assert_eq!(store.put_member(&us).await.unwrap(), PutOutcome::Created);

    let stored = store.get_group("sales").await.unwrap().unwrap();
    assert_eq!(stored.spec, spec);
    assert_eq!(stored.spec.hub.password.as_deref(), Some("hub-pässword-1"));
    assert_eq!(stored.status, GroupStatus { state: SyncGroupState::NotReady, last_sync_time: None });
    let members = store.list_members("sales").await.unwrap();
    assert_eq!(members.iter().map(|m| m.spec.clone()).collect::<Vec<_>>(), vec![eu.clone(), us.clone()]);
    assert_eq!(
        members[0].status,
        MemberStatusRecord { state: SyncMemberState::UnProvisioned, last_sync_time: None, last_error: None }
    );
    assert_eq!(
        store.get_member("sales", "eu").await.unwrap().unwrap().spec.database.password.as_deref(),
        Some("member-password-2")
    );
    assert!(store.get_member("sales", "nobody").await.unwrap().is_none());
    assert!(store.get_group("nothing").await.unwrap().is_none());

    let groups = t.raw_rows("hubsync_groups", "spec, hub_password").await;
    assert_eq!(groups.len(), 1);
    assert!(groups.iter().flatten().all(|text| !text.contains("hub-pässword-1")), "{groups:?}");
    assert!(groups[0][1].starts_with("v1:"));
    let stored_members = t.raw_rows("hubsync_members", "spec, password").await;
    assert!(stored_members.iter().flatten().all(|text| !text.contains("member-password-2")), "{stored_members:?}");

    // Reopening (the migration runs again) keeps everything.
    let reopened = t.open(Some(t.key.clone())).await;
    assert_eq!(reopened.list_groups().await.unwrap().len(), 1);
    assert_eq!(reopened.get_group("sales").await.unwrap().unwrap().spec, spec);
    reopened.close().await;
}
on_both_backends!(specs_round_trip_with_their_passwords_sealed);

async fn puts_say_whether_they_created_updated_or_left_alone(t: &Target) {
    let store = &t.store;
    let spec = group("g", Some("one"));
    assert_eq!(store.put_group(&spec).await.unwrap(), PutOutcome::Created);
    assert_eq!(store.put_group(&spec).await.unwrap(), PutOutcome::Unchanged);
    let status = GroupStatus { state: SyncGroupState::Good, last_sync_time: Some(1_000) };
    store.set_group_status("g", &status).await.unwrap();

    let new_password = GroupSpec { hub: pg_db(Some("two")), ..spec.clone() };
    assert_eq!(store.put_group(&new_password).await.unwrap(), PutOutcome::Updated);
    let no_password = GroupSpec { hub: pg_db(None), ..spec.clone() };
    assert_eq!(store.put_group(&no_password).await.unwrap(), PutOutcome::Updated);
    assert_eq!(store.get_group("g").await.unwrap().unwrap().spec.hub.password, None);
    let bigger_batches = GroupSpec { batch_rows: 500, ..no_password.clone() };
    assert_eq!(store.put_group(&bigger_batches).await.unwrap(), PutOutcome::Updated);
    let stored = store.get_group("g").await.unwrap().unwrap();
    assert_eq!(stored.spec, bigger_batches);
    assert_eq!(stored.status, status, "an update keeps the status");

    let m = member("g", "m", Some("x"));
    assert_eq!(store.put_member(&m).await.unwrap(), PutOutcome::Created);
    assert_eq!(store.put_member(&m).await.unwrap(), PutOutcome::Unchanged);
    let member_status = MemberStatusRecord {
        state: SyncMemberState::SyncFailed,
        last_sync_time: Some(7),
        last_error: Some("boom".into()),
    };
    store.set_member_status("g", "m", &member_status).await.unwrap();
    let one_way = MemberSpec { direction: Direction::OneWayHubToMember, ..m.clone() };
    assert_eq!(store.put_member(&one_way).await.unwrap(), PutOutcome::Updated);
    let stored = store.get_member("g", "m").await.unwrap().unwrap();
    assert_eq!(stored.spec, one_way);
    assert_eq!(stored.status, member_status);
}
on_both_backends!(puts_say_whether_they_created_updated_or_left_alone);

async fn members_and_statuses_need_an_existing_group(t: &Target) {
    let store = &t.store;
    let err = store.put_member(&member("ghost", "m", None)).await.unwrap_err();
    assert!(matches!(&err, StoreError::GroupNotFound(g) if g == "ghost"), "{err}");
    assert!(err.to_string().contains("ghost"));
    let status = GroupStatus { state: SyncGroupState::Good, last_sync_time: None };
    assert!(matches!(store.set_group_status("ghost", &status).await, Err(StoreError::GroupNotFound(_))));
    store.put_group(&group("real", None)).await.unwrap();
    let member_status =
        MemberStatusRecord { state: SyncMemberState::Provisioned, last_sync_time: None, last_error: None };
    let err = store.set_member_status("real", "ghost", &member_status).await.unwrap_err();
    assert!(matches!(err, StoreError::MemberNotFound { .. }), "{err}");
    assert!(store.list_members("ghost").await.unwrap().is_empty());
}
on_both_backends!(members_and_statuses_need_an_existing_group);

async fn passwords_need_the_secret_key(t: &Target) {
    let keyless = t.open(None).await;
    assert!(!keyless.stores_passwords().await.unwrap());
    let err = keyless.put_group(&group("locked", Some("pw"))).await.unwrap_err();
    assert!(matches!(err, StoreError::SecretKeyMissing), "{err}");
    assert!(err.to_string().contains("HUBSYNC_SECRET_KEY"));
    assert!(!err.to_string().contains("pw"));
    assert!(keyless.get_group("locked").await.unwrap().is_none(), "nothing was stored");

    assert_eq!(keyless.put_group(&group("open", None)).await.unwrap(), PutOutcome::Created);
    assert!(keyless.get_group("open").await.unwrap().is_some(), "no password, no key needed");
    assert!(matches!(keyless.put_member(&member("open", "m", Some("pw"))).await, Err(StoreError::SecretKeyMissing)));
    assert!(!keyless.stores_passwords().await.unwrap());
    t.store.put_member(&member("open", "m", Some("pw"))).await.unwrap();
    assert!(keyless.stores_passwords().await.unwrap(), "a member's password counts");
    assert!(t.store.delete_member("open", "m").await.unwrap());

    t.store.put_group(&group("locked", Some("pw"))).await.unwrap();
    assert!(keyless.stores_passwords().await.unwrap(), "a hub password counts");
    assert!(matches!(keyless.get_group("locked").await, Err(StoreError::SecretKeyMissing)));
    assert!(matches!(keyless.list_groups().await, Err(StoreError::SecretKeyMissing)));

    let other_key = SecretKey::parse(&SecretKey::generate(), "test").unwrap();
    let wrong = t.open(Some(other_key)).await;
    let err = wrong.get_group("locked").await.unwrap_err();
    assert!(matches!(err, StoreError::Decrypt(_)), "{err}");
    keyless.close().await;
    wrong.close().await;
}
on_both_backends!(passwords_need_the_secret_key);

async fn schemas_are_kept_per_hub_and_member(t: &Target) {
    let store = &t.store;
    store.put_group(&group("g", None)).await.unwrap();
    store.put_member(&member("g", "m", None)).await.unwrap();
    assert_eq!(store.hub_schema("g").await.unwrap(), None);
    assert_eq!(store.member_schema("g", "m").await.unwrap(), None);
    store.put_hub_schema("g", &schema("orders")).await.unwrap();
    store.put_member_schema("g", "m", &schema("lines")).await.unwrap();
    assert_eq!(store.hub_schema("g").await.unwrap(), Some(schema("orders")));
    assert_eq!(store.member_schema("g", "m").await.unwrap(), Some(schema("lines")));
    assert!(matches!(store.put_hub_schema("ghost", &schema("x")).await, Err(StoreError::GroupNotFound(_))));
    assert!(matches!(
        store.put_member_schema("g", "ghost", &schema("x")).await,
        Err(StoreError::MemberNotFound { .. })
    ));
    assert!(store.delete_member("g", "m").await.unwrap());
    assert!(!store.delete_member("g", "m").await.unwrap());
    assert_eq!(store.member_schema("g", "m").await.unwrap(), None);
}
on_both_backends!(schemas_are_kept_per_hub_and_member);

async fn deleting_a_member_removes_its_runs_and_conflicts_and_nothing_else(t: &Target) {
    let store = &t.store;
    store.put_group(&group("g", None)).await.unwrap();
    for name in ["eu", "us"] {
        store.put_member(&member("g", name, None)).await.unwrap();
        store.append_run(&run("g", name, 10)).await.unwrap();
        store.append_conflicts("g", &[ConflictRecord { member: name.into(), ..conflict(10, 1) }]).await.unwrap();
    }
    store.append_run(&run("other", "eu", 10)).await.unwrap();
    store.append_conflicts("other", &[conflict(10, 1)]).await.unwrap();
    store.append_log("g", &log(10, LogType::Success, "synced")).await.unwrap();

    assert!(store.delete_member("g", "eu").await.unwrap());
    let members: Vec<String> = store.runs("g", 0).await.unwrap().into_iter().map(|r| r.member).collect();
    assert_eq!(members, ["us"], "the deleted member's runs went, the other's stayed");
    let members: Vec<String> = store.conflicts("g", None, 0).await.unwrap().into_iter().map(|c| c.member).collect();
    assert_eq!(members, ["us"], "the deleted member's conflicts went, the other's stayed");
    assert_eq!(store.runs("other", 0).await.unwrap().len(), 1, "a member of that name in another group keeps its runs");
    assert_eq!(store.conflicts("other", None, 0).await.unwrap().len(), 1);
    assert_eq!(store.logs("g", &LogQuery::default()).await.unwrap().len(), 1, "the group's log is kept");
    store.put_member(&member("g", "eu", None)).await.unwrap();
    assert!(
        store.runs("g", 0).await.unwrap().iter().all(|r| r.member != "eu"),
        "a member added again under the name starts without history"
    );
}
on_both_backends!(deleting_a_member_removes_its_runs_and_conflicts_and_nothing_else);

async fn deleting_a_group_removes_everything_it_owns(t: &Target) {
    let store = &t.store;
    for name in ["doomed", "kept"] {
        store.put_group(&group(name, Some("pw"))).await.unwrap();
        store.put_member(&member(name, "m", Some("pw"))).await.unwrap();
        store.put_hub_schema(name, &schema("orders")).await.unwrap();
        store.append_log(name, &log(10, LogType::Success, "synced")).await.unwrap();
        store.append_conflicts(name, &[conflict(10, 1)]).await.unwrap();
        store.append_run(&run(name, "m", 10)).await.unwrap();
        assert!(store.try_lease(name, "server-a", Duration::from_secs(60)).await.unwrap());
        store.request_sync(name).await.unwrap();
        store.request_cancel(name).await.unwrap();
    }
    assert!(store.delete_group("doomed").await.unwrap());
    assert!(!store.delete_group("doomed").await.unwrap());

    assert!(store.get_group("doomed").await.unwrap().is_none());
    assert!(store.list_members("doomed").await.unwrap().is_empty());
    assert!(store.logs("doomed", &LogQuery::default()).await.unwrap().is_empty());
    assert!(store.conflicts("doomed", None, 0).await.unwrap().is_empty());
    assert!(store.runs("doomed", 0).await.unwrap().is_empty());
    assert!(!store.take_sync_request("doomed").await.unwrap());
    assert!(!store.take_cancel_request("doomed").await.unwrap());
    assert!(store.try_lease("doomed", "server-b", Duration::from_secs(60)).await.unwrap(), "the lease went too");
    store.put_group(&group("doomed", None)).await.unwrap();
    assert_eq!(store.hub_schema("doomed").await.unwrap(), None, "a new group of the same name starts afresh");

    assert_eq!(store.list_members("kept").await.unwrap().len(), 1);
    assert_eq!(store.hub_schema("kept").await.unwrap(), Some(schema("orders")));
    assert_eq!(store.logs("kept", &LogQuery::default()).await.unwrap().len(), 1);
    assert_eq!(store.conflicts("kept", None, 0).await.unwrap().len(), 1);
    assert_eq!(store.runs("kept", 0).await.unwrap().len(), 1);
    assert!(store.take_sync_request("kept").await.unwrap());
    assert!(store.take_cancel_request("kept").await.unwrap());
    assert!(!store.try_lease("kept", "server-b", Duration::from_secs(60)).await.unwrap());
}
on_both_backends!(deleting_a_group_removes_everything_it_owns);

async fn logs_are_filtered_by_time_and_type_and_paged_newest_first(t: &Target) {
    let store = &t.store;
    let types = [LogType::Success, LogType::Error, LogType::Warning];
    let mut ids = Vec::new();
    for i in 0..12i64 {
        let id =
            store.append_log("g", &log(1_000 * (i + 1), types[(i % 3) as usize], &format!("entry {i}"))).await.unwrap();
        ids.push(id);
    }
    store.append_log("other", &log(5_000, LogType::Error, "elsewhere")).await.unwrap();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase: {ids:?}");

    let all = store.logs("g", &LogQuery::default()).await.unwrap();
    assert_eq!(all.len(), 12);
    assert_eq!(all[0].details, "entry 11");
    assert_eq!(all[0].id, ids[11]);
    assert_eq!(all[11], LogRecord { id: ids[0], ..log(1_000, LogType::Success, "entry 0") });
    let all_type = store.logs("g", &LogQuery { log_type: Some(LogType::All), ..LogQuery::default() }).await.unwrap();
    assert_eq!(all_type, all);

    let errors = store.logs("g", &LogQuery { log_type: Some(LogType::Error), ..LogQuery::default() }).await.unwrap();
    assert_eq!(
        errors.iter().map(|l| l.details.as_str()).collect::<Vec<_>>(),
        ["entry 10", "entry 7", "entry 4", "entry 1"]
    );
    let window = LogQuery { start: Some(3_000), end: Some(6_000), ..LogQuery::default() };
    let in_window = store.logs("g", &window).await.unwrap();
    assert_eq!(in_window.iter().map(|l| l.timestamp).collect::<Vec<_>>(), [6_000, 5_000, 4_000, 3_000]);
    let window_warnings = LogQuery { log_type: Some(LogType::Warning), ..window };
    assert_eq!(
        store.logs("g", &window_warnings).await.unwrap().iter().map(|l| l.timestamp).collect::<Vec<_>>(),
        [6_000, 3_000]
    );

    let mut paged = Vec::new();
    let mut before_id = None;
    loop {
        let page = store.logs("g", &LogQuery { before_id, limit: 5, ..LogQuery::default() }).await.unwrap();
        assert!(page.len() <= 5);
        let Some(last) = page.last() else { break };
        before_id = Some(last.id);
        paged.extend(page);
    }
    assert_eq!(paged, all);
    assert!(matches!(store.append_log("g", &log(1, LogType::All, "x")).await, Err(StoreError::Invalid(_))));
}
on_both_backends!(logs_are_filtered_by_time_and_type_and_paged_newest_first);

async fn conflicts_are_listed_newest_first_and_purged_by_age(t: &Target) {
    let store = &t.store;
    store.append_conflicts("g", &[conflict(100, 1), conflict(200, 2), conflict(300, 3)]).await.unwrap();
    store.append_conflicts("g", &[]).await.unwrap();
    store.append_conflicts("other", &[conflict(50, 9)]).await.unwrap();
    let listed = store.conflicts("g", None, 0).await.unwrap();
    assert_eq!(listed.iter().map(|c| c.timestamp).collect::<Vec<_>>(), [300, 200, 100]);
    assert_eq!(ConflictRecord { id: 0, ..listed[0].clone() }, conflict(300, 3), "the conflict round-trips");
    let page = store.conflicts("g", Some(listed[0].id), 1).await.unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].id, listed[1].id);

    assert_eq!(store.purge_conflicts("g", 250).await.unwrap(), 2);
    assert_eq!(store.conflicts("g", None, 10).await.unwrap().iter().map(|c| c.timestamp).collect::<Vec<_>>(), [300]);
    assert_eq!(store.purge_conflicts("g", 250).await.unwrap(), 0);
    assert_eq!(store.conflicts("other", None, 0).await.unwrap().len(), 1);
}
on_both_backends!(conflicts_are_listed_newest_first_and_purged_by_age);

async fn runs_are_listed_newest_first(t: &Target) {
    let store = &t.store;
    for started in [10, 20, 30] {
        store.append_run(&run("g", "m", started)).await.unwrap();
    }
    store.append_run(&run("other", "m", 40)).await.unwrap();
    assert_eq!(store.runs("g", 0).await.unwrap(), vec![run("g", "m", 30), run("g", "m", 20), run("g", "m", 10)]);
    assert_eq!(store.runs("g", 2).await.unwrap().len(), 2);
}
on_both_backends!(runs_are_listed_newest_first);

async fn tokens_are_stored_as_hashes_and_verified(t: &Target) {
    let store = &t.store;
    let admin = store.create_token("admin", false).await.unwrap();
    let reader = store.create_token("dashboard", true).await.unwrap();
    assert!(admin.starts_with("hs_"));
    assert_ne!(admin, reader);

    let info = store.verify_token(&admin).await.unwrap().unwrap();
    assert_eq!((info.name.as_str(), info.read_only), ("admin", false));
    assert!(info.created_at > 0);
    assert!(store.verify_token(&reader).await.unwrap().unwrap().read_only);
    assert!(store.verify_token("hs_wrong").await.unwrap().is_none());
    assert!(store.verify_token(&format!("{admin}x")).await.unwrap().is_none());
    assert!(store.verify_token("").await.unwrap().is_none());

    let listed = store.list_tokens().await.unwrap();
    assert_eq!(listed.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["admin", "dashboard"]);
    assert_eq!(listed[0], info);
    let raw = t.raw_rows("hubsync_tokens", "name, secret_hash").await;
    assert!(raw.iter().flatten().all(|text| !text.contains(&admin[3..]) && !text.contains(&reader[3..])));
    assert!(matches!(store.create_token(" ", false).await, Err(StoreError::Invalid(_))));
}
on_both_backends!(tokens_are_stored_as_hashes_and_verified);

async fn operations_go_from_in_progress_to_finished(t: &Target) {
    let store = &t.store;
    let before = hubsync_core::now_micros();
    let op = store.create_operation("refreshHubSchema").await.unwrap();
    assert_eq!(op.status, OperationStatus::InProgress);
    let start = parse_rfc3339(&op.start_time).unwrap();
    assert!(start >= before && start <= hubsync_core::now_micros(), "{}", op.start_time);
    assert_eq!(store.get_operation(&op.id).await.unwrap(), Some(op.clone()));

    let failing = store.create_operation("deleteSyncMember").await.unwrap();
    assert_ne!(failing.id, op.id);
    store.finish_operation(&op.id, Ok(())).await.unwrap();
    let error = ErrorDetail { code: "DatabaseUnreachable".into(), message: "cannot connect".into() };
    store.finish_operation(&failing.id, Err(error.clone())).await.unwrap();

    let done = store.get_operation(&op.id).await.unwrap().unwrap();
    assert_eq!(done.status, OperationStatus::Succeeded);
    assert!(parse_rfc3339(done.end_time.as_deref().unwrap()).unwrap() >= start);
    assert_eq!(done.error, None);
    let failed = store.get_operation(&failing.id).await.unwrap().unwrap();
    assert_eq!((failed.status, failed.error), (OperationStatus::Failed, Some(error)));
    assert!(store.get_operation("no-such-operation").await.unwrap().is_none());
}
on_both_backends!(operations_go_from_in_progress_to_finished);

async fn a_lease_has_one_owner_until_it_expires_or_is_released(t: &Target) {
    let a = &t.store;
    let b = t.open(Some(t.key.clone())).await;
    let short = Duration::from_millis(400);
    assert!(a.try_lease("g", "server-a", short).await.unwrap());
    assert!(!b.try_lease("g", "server-b", short).await.unwrap(), "held by a");
    assert!(a.try_lease("g", "server-a", short).await.unwrap(), "the owner renews");
    assert!(b.try_lease("other", "server-b", short).await.unwrap(), "leases are per group");

    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(b.try_lease("g", "server-b", Duration::from_secs(60)).await.unwrap(), "taken over after expiry");
    assert!(!a.try_lease("g", "server-a", short).await.unwrap(), "the old owner lost it");

    a.release_lease("g", "server-a").await.unwrap();
    assert!(!a.try_lease("g", "server-c", short).await.unwrap(), "only the owner can release");
    b.release_lease("g", "server-b").await.unwrap();
    assert!(a.try_lease("g", "server-c", short).await.unwrap(), "free after release");

    let racers = (0..8).map(|i| {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        async move { store.try_lease("race", &format!("server-{i}"), Duration::from_secs(60)).await.unwrap() }
    });
    let won = futures::future::join_all(racers).await;
    assert_eq!(won.iter().filter(|w| **w).count(), 1, "{won:?}");
    b.close().await;
}
on_both_backends!(a_lease_has_one_owner_until_it_expires_or_is_released);

async fn requests_are_taken_exactly_once(t: &Target) {
    let a = &t.store;
    let b = t.open(Some(t.key.clone())).await;
    assert!(!a.take_sync_request("g").await.unwrap());
    a.request_sync("g").await.unwrap();
    a.request_sync("g").await.unwrap();
    assert!(!a.take_cancel_request("g").await.unwrap(), "a sync request is not a cancel");
    assert!(b.take_sync_request("g").await.unwrap());
    assert!(!a.take_sync_request("g").await.unwrap(), "repeated requests before a take are one");

    a.request_cancel("g").await.unwrap();
    assert!(!a.take_sync_request("g").await.unwrap());
    assert!(a.take_cancel_request("g").await.unwrap());
    assert!(!b.take_cancel_request("g").await.unwrap());

    for round in 0..5 {
        a.request_sync("g").await.unwrap();
        let takers = (0..6).map(|i| {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            async move { store.take_sync_request("g").await.unwrap() }
        });
        let taken = futures::future::join_all(takers).await;
        assert_eq!(taken.iter().filter(|t| **t).count(), 1, "round {round}: {taken:?}");
    }
    b.close().await;
}
on_both_backends!(requests_are_taken_exactly_once);

#[tokio::test]
async fn two_stores_open_one_new_sqlite_file_at_once_and_write_together() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("shared.db").display());
    let key = SecretKey::parse(&SecretKey::generate(), "test").unwrap();
    let (a, b) = tokio::join!(MetaStore::open(&url, Some(key.clone())), MetaStore::open(&url, Some(key.clone())));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert!(!a.is_shared());

    let writer = |store: MetaStore, prefix: &'static str| async move {
        for i in 0..20 {
            let name = format!("{prefix}-{i}");
            assert_eq!(store.put_group(&group(&name, Some("pw"))).await.unwrap(), PutOutcome::Created);
            store.put_member(&member(&name, "m", Some("pw"))).await.unwrap();
            store.append_log(&name, &log(i, LogType::Success, "ok")).await.unwrap();
            store.try_lease(&name, prefix, Duration::from_secs(5)).await.unwrap();
        }
    };
    tokio::join!(writer(a.clone(), "a"), writer(b.clone(), "b"), writer(a.clone(), "c"), writer(b.clone(), "d"));
    let names: HashSet<String> = a.list_groups().await.unwrap().into_iter().map(|g| g.spec.name).collect();
    assert_eq!(names.len(), 80);
    assert_eq!(b.list_groups().await.unwrap().len(), 80);
    a.close().await;
    b.close().await;
}

#[tokio::test]
async fn a_postgres_store_is_shared() {
    let Some(target) = Target::postgres("shared").await else { return };
    assert!(target.store.is_shared());
    target.finish().await;
}

#[tokio::test]
async fn an_unreachable_store_is_reported_without_its_password() {
    let err = MetaStore::open("postgres://user:hunter2@127.0.0.1:1/none", None).await.unwrap_err();
    assert!(matches!(err, StoreError::Open { .. }), "{err}");
    assert!(!err.to_string().contains("hunter2"), "{err}");
    let err = MetaStore::open("mysql://root@127.0.0.1/test", None).await.unwrap_err();
    assert!(err.to_string().contains("sqlite://"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let missing_dir = format!("sqlite://{}", dir.path().join("no/such/dir/meta.db").display());
    assert!(matches!(MetaStore::open(&missing_dir, None).await, Err(StoreError::Open { .. })));
}

/// Set in the child process of the cross-process test: the store to write.
const CHILD_STORE_ENV: &str = "HUBSYNC_TEST_CHILD_STORE";
/// The child's secret key.
const CHILD_KEY_ENV: &str = "HUBSYNC_TEST_CHILD_KEY";
/// Groups each process writes, and leases both race for.
const CROSS_PROCESS_ROUNDS: usize = 25;

/// One side of the cross-process test: writes groups named after `who` and
/// races for the `shared-N` leases, logging each lease it wins to the `wins`
/// group. After its first group it waits for the other side's, so the two
/// really write at the same time.
async fn write_and_race(store: &MetaStore, who: &str, other: &str) -> Vec<bool> {
    let mut won = Vec::new();
    for i in 0..CROSS_PROCESS_ROUNDS {
        let name = format!("{who}-{i}");
        assert_eq!(store.put_group(&group(&name, Some("pw"))).await.unwrap(), PutOutcome::Created);
        if i == 0 {
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            while store.get_group(&format!("{other}-0")).await.unwrap().is_none() {
                assert!(std::time::Instant::now() < deadline, "{who}: {other} never started writing");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        store.put_member(&member(&name, "m", Some("pw"))).await.unwrap();
        let got = store.try_lease(&format!("shared-{i}"), who, Duration::from_secs(300)).await.unwrap();
        if got {
            store.append_log("wins", &log(i as i64, LogType::Success, &format!("{who} {i}"))).await.unwrap();
        }
        won.push(got);
    }
    won
}

/// The child process's part; does nothing in an ordinary test run.
#[tokio::test]
async fn child_process_writes_the_store_it_is_given() {
    let (Ok(url), Ok(key)) = (std::env::var(CHILD_STORE_ENV), std::env::var(CHILD_KEY_ENV)) else { return };
    let store = MetaStore::open(&url, Some(SecretKey::parse(&key, CHILD_KEY_ENV).unwrap())).await.unwrap();
    write_and_race(&store, "child", "parent").await;
    store.close().await;
}

#[tokio::test]
async fn two_processes_share_one_sqlite_file_without_locking_errors_or_double_leases() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("two-processes.db").display());
    let key_text = SecretKey::generate();
    let store = MetaStore::open(&url, Some(SecretKey::parse(&key_text, "test").unwrap())).await.unwrap();

    let child = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args(["child_process_writes_the_store_it_is_given", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_STORE_ENV, &url)
        .env(CHILD_KEY_ENV, &key_text)
        .output();
    let (won, child) = tokio::join!(write_and_race(&store, "parent", "child"), child);
    let child = child.unwrap();
    let child_output = format!("{}{}", String::from_utf8_lossy(&child.stdout), String::from_utf8_lossy(&child.stderr));
    assert!(child.status.success(), "the child failed:\n{child_output}");
    assert!(child_output.contains("1 passed"), "the child ran no test:\n{child_output}");

    let groups = store.list_groups().await.unwrap();
    assert_eq!(groups.len(), 2 * CROSS_PROCESS_ROUNDS, "both processes' groups");
    let wins: HashSet<String> =
        store.logs("wins", &LogQuery::default()).await.unwrap().into_iter().map(|l| l.details).collect();
    for (i, parent_won) in won.iter().enumerate() {
        let child_won = wins.contains(&format!("child {i}"));
        assert_eq!(wins.contains(&format!("parent {i}")), *parent_won);
        assert!(parent_won ^ child_won, "lease shared-{i}: parent {parent_won}, child {child_won}");
    }
    store.close().await;
}

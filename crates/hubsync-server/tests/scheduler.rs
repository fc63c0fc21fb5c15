//! The scheduler and the runner against real SQLite databases and a real
//! metadata store: interval groups that never overlap, manual triggers,
//! cancellation with nothing lost, a failing member beside a healthy one,
//! leases shared by two schedulers (with a takeover after one dies), and
//! continuous mode.

#![allow(clippy::unwrap_used)]

#[path = "common/sched.rs"]
mod sched;

use std::collections::HashSet;
use std::time::Duration;

use hubsync_core::now_micros;
use hubsync_server::model::{DatabaseType, LogType, SyncGroupState, SyncMemberState};
use hubsync_server::store::LogQuery;
use hubsync_server::{DatabaseSpec, MetaStore};
use hubsync_server::{Schedule, metrics};
use sched::*;

/// Generous: debug builds on a shared two-core machine.
const LONG: Duration = Duration::from_secs(300);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_one_second_group_runs_repeatedly_and_its_runs_never_overlap() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path()).await;
    let hub = Db::with_items(&dir.path().join("hub.db"), 0).await;
    // The first run uploads 30,000 rows 100 at a time: far longer than the
    // one-second interval, which is when a naive scheduler starts it twice.
    let m1 = Db::with_items(&dir.path().join("m1.db"), 30_000).await;
    let group = group_spec("every-second", &hub.path, Schedule::EverySeconds(1), 100);
    put(&store, &group, &[member_spec(&group.name, "m1", &m1.path)]).await;

    let scheduler = start(&store, dir.path(), "solo", None);
    // Later runs have something to move too.
    let writer = {
        let m1 = Db::open(&m1.path).await;
        tokio::spawn(async move {
            for id in 100_001.. {
                m1.insert(id, "late").await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    wait_for("four runs", LONG, || async { (runs(&store, &group.name).await.len() >= 4).then_some(()) }).await;
    writer.abort();
    scheduler.shutdown().await;

    let history = runs(&store, &group.name).await;
    assert!(history.len() >= 4, "{history:#?}");
    assert_no_overlap(&history);
    let first = &history[0];
    assert!(first.end - first.start > 1_000_000, "the first run is meant to outlast the interval: {first:#?}");
    assert!(history.iter().all(|r| r.records.iter().all(|m| m.outcome == "Succeeded")), "{history:#?}");
    // Between runs the scheduler waits for the interval, counted from the start.
    for pair in history.windows(2) {
        assert!(pair[1].start - pair[0].start >= 1_000_000, "{history:#?}");
    }
    assert!(hub.count().await >= 30_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_manual_group_runs_once_per_request_and_a_member_row_reaches_the_hub_and_the_other_member() {
    let handle = metrics::install();
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path()).await;
    let hub = Db::with_items(&dir.path().join("hub.db"), 3).await;
    let (m1, m2) = (Db::open(&dir.path().join("m1.db")).await, Db::open(&dir.path().join("m2.db")).await);
    let group = group_spec("manual", &hub.path, Schedule::Manual, 1000);
    let members = [member_spec(&group.name, "m1", &m1.path), member_spec(&group.name, "m2", &m2.path)];
    put(&store, &group, &members).await;
    let scheduler = start(&store, dir.path(), "solo", None);

    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(runs(&store, &group.name).await.is_empty(), "a manual group must not run by itself");
    assert_eq!(group_state(&store, &group.name).await, SyncGroupState::NotReady);

    let sync = |n: usize| {
        let (store, wake, name) = (store.clone(), scheduler.wake.clone(), group.name.clone());
        async move {
            store.request_sync(&name).await.unwrap();
            wake.wake();
            wait_run(&store, &name, n).await;
        }
    };
    sync(1).await;
    assert_eq!((m1.count().await, m2.count().await), (3, 3));
    assert_eq!(group_state(&store, &group.name).await, SyncGroupState::Good);
    assert!(stored_group(&store, &group.name).await.status.last_sync_time.is_some());
    for name in ["m1", "m2"] {
        let m = stored_member(&store, &group.name, name).await;
        assert_eq!(m.status.state, SyncMemberState::SyncSucceeded);
        assert!(m.status.last_sync_time.is_some() && m.status.last_error.is_none(), "{:?}", m.status);
    }

    m1.insert(100, "from m1").await;
    sync(2).await;
    assert_eq!(hub.value(100).await.as_deref(), Some("from m1"));
    sync(3).await;
    assert_eq!(m2.value(100).await.as_deref(), Some("from m1"));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let history = runs(&store, &group.name).await;
    assert_eq!(history.len(), 3, "one run per request: {history:#?}");
    scheduler.shutdown().await;

    // Every run logged one success per member under its own tracing id.
    let logs = store.logs(&group.name, &LogQuery { limit: 100, ..LogQuery::default() }).await.unwrap();
    for run in &history {
        let sources: HashSet<&str> = logs
            .iter()
            .filter(|l| l.tracing_id == run.tracing_id && l.log_type == LogType::Success)
            .map(|l| l.source.as_str())
            .collect();
        assert_eq!(sources, HashSet::from(["m1", "m2"]), "{logs:#?}");
    }
    assert!(logs.iter().all(|l| l.operation_status == "Succeeded"), "{logs:#?}");
    let uploaded: i64 = history[1].records.iter().map(|r| r.uploaded).sum();
    assert_eq!(uploaded, 1, "{history:#?}");

    let text = handle.render();
    for metric in [
        r#"hubsync_syncs_started_total{group="manual",member="m1"} 3"#,
        r#"hubsync_syncs_succeeded_total{group="manual",member="m2"} 3"#,
        r#"hubsync_rows_uploaded_total{group="manual",member="m1"} 1"#,
        r#"hubsync_member_pending_changes{group="manual",member="m1",direction="upload"} 0"#,
        r#"hubsync_sync_duration_seconds_count{group="manual",member="m1"} 3"#,
    ] {
        assert!(text.contains(metric), "{metric} missing from:\n{text}");
    }
    assert!(text.contains(r#"hubsync_member_seconds_since_last_success{group="manual",member="m1"}"#), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancelled_initial_sync_stops_between_batches_and_the_next_run_moves_every_row_once() {
    const ROWS: i64 = 200_000;
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path()).await;
    let hub = Db::with_items(&dir.path().join("hub.db"), 0).await;
    let m1 = Db::with_items(&dir.path().join("m1.db"), ROWS).await;
    let group = group_spec("cancel", &hub.path, Schedule::Manual, 500);
    put(&store, &group, &[member_spec(&group.name, "m1", &m1.path)]).await;
    let scheduler = start(&store, dir.path(), "solo", None);

    store.request_sync(&group.name).await.unwrap();
    scheduler.wake.wake();
    wait_for("the first batches on the hub", LONG, || async { (hub.count().await > 0).then_some(()) }).await;
    store.request_cancel(&group.name).await.unwrap();
    scheduler.wake.wake();
    wait_run(&store, &group.name, 1).await;
    let m = stored_member(&store, &group.name, "m1").await;
    assert_eq!(m.status.state, SyncMemberState::SyncCancelled, "{:?}", m.status);
    assert_eq!(group_state(&store, &group.name).await, SyncGroupState::Warning);
    let kept = hub.count().await;
    assert!(kept > 0 && kept < ROWS, "the cancel is meant to land mid-sync; the hub holds {kept} rows");
    let cancelled = runs(&store, &group.name).await;
    assert_eq!(cancelled[0].records[0].outcome, "Cancelled");
    assert_eq!(cancelled[0].records[0].uploaded, kept, "the cancelled run reports what it committed");
    let logs = store.logs(&group.name, &LogQuery { limit: 10, ..LogQuery::default() }).await.unwrap();
    assert!(
        logs.iter().any(|l| l.log_type == LogType::Warning && l.operation_status == "Cancelled" && l.source == "m1"),
        "{logs:#?}"
    );

    store.request_sync(&group.name).await.unwrap();
    scheduler.wake.wake();
    wait_run(&store, &group.name, 2).await;
    scheduler.shutdown().await;
    assert_eq!(stored_member(&store, &group.name, "m1").await.status.state, SyncMemberState::SyncSucceeded);
    assert_eq!(hub.id_stats().await, (ROWS, 1, ROWS));
    assert_eq!(hub.count().await, ROWS);
    let history = runs(&store, &group.name).await;
    let uploaded: i64 = history.iter().flat_map(|r| &r.records).map(|r| r.uploaded).sum();
    assert_eq!(uploaded, ROWS, "every row is uploaded exactly once over the two runs: {history:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failing_members_do_not_stop_the_others_or_the_scheduler_and_their_errors_never_show_a_password() {
    const PASSWORD: &str = "hunter2-never-logged";
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store_with_key(dir.path()).await;
    let hub = Db::with_items(&dir.path().join("hub.db"), 10).await;
    let good = Db::open(&dir.path().join("good.db")).await;
    let group = group_spec("partly-broken", &hub.path, Schedule::Manual, 1000);
    // Nothing listens on port 1: the connection is refused at once.
    let mut locked = member_spec(&group.name, "locked", &dir.path().join("unused.db"));
    locked.database = DatabaseSpec {
        database_type: DatabaseType::PostgreSql,
        server_name: "127.0.0.1:1".into(),
        database_name: "nowhere".into(),
        user_name: "bob".into(),
        password: Some(PASSWORD.into()),
    };
    let members = [
        member_spec(&group.name, "bad", &dir.path().join("no/such/dir/bad.db")),
        member_spec(&group.name, "good", &good.path),
        locked,
    ];
    put(&store, &group, &members).await;
    let scheduler = start(&store, dir.path(), "solo", None);

    for n in 1..=2 {
        store.request_sync(&group.name).await.unwrap();
        scheduler.wake.wake();
        wait_run(&store, &group.name, n).await;
        assert_eq!(group_state(&store, &group.name).await, SyncGroupState::Error);
        assert_eq!(stored_member(&store, &group.name, "good").await.status.state, SyncMemberState::SyncSucceeded);
        for (name, names) in [("bad", "bad.db"), ("locked", "nowhere")] {
            let status = stored_member(&store, &group.name, name).await.status;
            assert_eq!(status.state, SyncMemberState::SyncFailed);
            let error = status.last_error.unwrap();
            assert!(error.contains("opening the member database") && error.contains(names), "{error}");
            assert!(!error.contains(PASSWORD), "{error}");
        }
    }
    scheduler.shutdown().await;
    assert_eq!(good.count().await, 10);

    let logs = store.logs(&group.name, &LogQuery { limit: 100, ..LogQuery::default() }).await.unwrap();
    let errors: Vec<_> = logs.iter().filter(|l| l.log_type == LogType::Error).collect();
    assert_eq!(errors.len(), 4, "{logs:#?}");
    assert!(errors.iter().all(|l| ["bad", "locked"].contains(&l.source.as_str())), "{errors:#?}");
    assert!(errors.iter().all(|l| l.operation_status == "Failed"), "{errors:#?}");
    assert!(errors.iter().all(|l| l.details.contains("opening the member database")), "{errors:#?}");
    assert!(logs.iter().all(|l| !l.details.contains(PASSWORD)), "{logs:#?}");
    let good_ok = logs.iter().filter(|l| l.log_type == LogType::Success && l.source == "good").count();
    assert_eq!(good_ok, 2, "{logs:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_schedulers_on_a_shared_sqlite_store_run_a_group_one_at_a_time_and_take_over_a_dead_one() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("meta.db").display());
    two_schedulers_share_a_group(&url, dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_schedulers_on_a_shared_postgres_store_run_a_group_one_at_a_time_and_take_over_a_dead_one() {
    let Some(pg) = PgDb::create("lease").await else { return };
    let dir = tempfile::tempdir().unwrap();
    two_schedulers_share_a_group(&pg.url, dir.path()).await;
    pg.drop_db().await;
}

/// Server A starts a long initial sync; B starts beside it and must leave
/// the group alone while A's lease lives. A dies without releasing; B takes
/// the group over once the lease expired and finishes with nothing lost.
/// Then both run the group on its interval, never at the same time.
async fn two_schedulers_share_a_group(store_url: &str, dir: &std::path::Path) {
    const ROWS: i64 = 60_000;
    let ttl = Duration::from_secs(3);
    // Two opens of one store, as two server processes would have.
    let (store_a, store_b) =
        (MetaStore::open(store_url, None).await.unwrap(), MetaStore::open(store_url, None).await.unwrap());
    let hub = Db::with_items(&dir.join("hub.db"), 0).await;
    let m1 = Db::with_items(&dir.join("m1.db"), ROWS).await;
    let group = group_spec("shared", &hub.path, Schedule::EverySeconds(1), 200);
    put(&store_a, &group, &[member_spec(&group.name, "m1", &m1.path)]).await;

    let a = start(&store_a, dir, "server-a", Some(ttl));
    wait_for("server A's first batches", LONG, || async { (hub.count().await > 0).then_some(()) }).await;
    let b = start(&store_b, dir, "server-b", Some(ttl));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(hub.count().await < ROWS, "the initial sync is meant to outlast this; make ROWS larger");
    let killed_at = now_micros();
    a.kill().await;

    let takeover = wait_for("server B's run after the takeover", LONG, || async {
        runs(&store_b, &group.name).await.into_iter().find(|r| r.records.iter().all(|m| m.outcome == "Succeeded"))
    })
    .await;
    // A died mid-run, leaving no history: every run there is B's. A renewed
    // its lease at most a third of the ttl before it died, so B's first run
    // (whatever its outcome) must wait at least two thirds of it.
    let first = runs(&store_b, &group.name).await.remove(0);
    let waited = first.start - killed_at;
    assert!(waited >= (ttl.as_micros() as i64) / 2, "B started {waited} µs after A died, before A's lease expired");
    assert!(takeover.start - killed_at < 30_000_000, "B took {} µs to take over", takeover.start - killed_at);
    assert_eq!(hub.id_stats().await, (ROWS, 1, ROWS), "nothing lost, nothing doubled");

    // A comes back as a new process; both now share the group's runs.
    let a = start(&store_a, dir, "server-a-restarted", Some(ttl));
    let count = runs(&store_b, &group.name).await.len();
    wait_for("four more runs", LONG, || async { (runs(&store_b, &group.name).await.len() >= count + 4).then_some(()) })
        .await;
    a.shutdown().await;
    b.shutdown().await;
    assert_no_overlap(&runs(&store_b, &group.name).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_continuous_group_brings_a_hub_change_to_a_member_within_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path()).await;
    let hub = Db::with_items(&dir.path().join("hub.db"), 5).await;
    let m1 = Db::open(&dir.path().join("m1.db")).await;
    let group = group_spec("continuous", &hub.path, Schedule::Continuous, 1000);
    put(&store, &group, &[member_spec(&group.name, "m1", &m1.path)]).await;
    let scheduler = start(&store, dir.path(), "solo", None);

    wait_for("the initial copy", LONG, || async { (m1.count().await == 5).then_some(()) }).await;
    for round in 0..3 {
        let id = 1_000 + round;
        hub.insert(id, "new on the hub").await;
        wait_for("a hub change on the member", Duration::from_secs(20), || async {
            m1.value(id).await.is_some().then_some(())
        })
        .await;
    }
    assert_eq!(group_state(&store, &group.name).await, SyncGroupState::Good);
    scheduler.shutdown().await;
    assert_eq!(m1.count().await, 8);
    // Idle polls leave no history: only the runs that moved rows are there.
    let history = runs(&store, &group.name).await;
    assert!((2..=8).contains(&history.len()), "{history:#?}");
    assert!(history.iter().all(|r| r.records.iter().all(|m| m.uploaded + m.downloaded > 0)), "{history:#?}");
}

async fn group_state(store: &MetaStore, name: &str) -> SyncGroupState {
    stored_group(store, name).await.status.state
}

/// Waits until the group has `n` runs in its history and is no longer running.
async fn wait_run(store: &MetaStore, name: &str, n: usize) {
    wait_for(&format!("run {n} of {name}"), LONG, || async {
        let done = runs(store, name).await.len() >= n && group_state(store, name).await != SyncGroupState::Progressing;
        done.then_some(())
    })
    .await;
}

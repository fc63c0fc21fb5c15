//! A run's progress, gathered from the sessions' events and published to the
//! store for portals (which may belong to another server sharing the store).
//!
//! Events arrive once per batch in a synchronous callback, so they only
//! update memory; a task beside the run writes the store at most once per
//! [`PUBLISH_EVERY`], and only when something changed. A run shorter than
//! that (most continuous polls) writes nothing at all.

use std::future::Future;
use std::pin::pin;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures::future::{Either, select};
use hubsync_core::{Leg, SessionEvent, now_micros};

use crate::store::{MemberProgress, MetaStore, RunProgress};

/// How often at most a group's progress is written to the store.
pub const PUBLISH_EVERY: Duration = Duration::from_secs(1);

/// The progress of one run, as the sessions report it.
#[derive(Debug, Default)]
pub(crate) struct ProgressBoard {
    inner: Mutex<Board>,
}

#[derive(Debug, Default)]
struct Board {
    progress: RunProgress,
    /// Changed since last published.
    changed: bool,
    /// Published at least once (so the run's end must clear it).
    published: bool,
}

impl ProgressBoard {
    /// A board for a run of `members` starting at `started_at`.
    pub(crate) fn new<'a>(started_at: i64, members: impl Iterator<Item = &'a str>) -> ProgressBoard {
        let members = members.map(|m| MemberProgress { member: m.to_string(), ..MemberProgress::default() }).collect();
        let progress = RunProgress { started_at, updated_at: started_at, members };
        ProgressBoard { inner: Mutex::new(Board { progress, changed: true, published: false }) }
    }

    fn lock(&self) -> MutexGuard<'_, Board> {
        // Every update is a few field writes: a poisoned board is still usable.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records one session event of `member`.
    pub(crate) fn on_event(&self, member: &str, event: &SessionEvent<'_>) {
        self.update(member, |m| match *event {
            SessionEvent::TableStarted { leg, table, pending, .. } => {
                m.leg = Some(leg);
                m.table = Some(table.to_string());
                m.table_pending = pending;
                m.table_rows = 0;
            }
            SessionEvent::RowsMoved { leg, rows, .. } => {
                m.table_rows += rows;
                if leg == Leg::Upload {
                    m.uploaded += rows;
                } else {
                    m.downloaded += rows;
                }
            }
            SessionEvent::TableFinished { .. } => {
                m.leg = None;
                m.table = None;
                m.table_pending = None;
            }
            SessionEvent::LegStarted { .. } | SessionEvent::Conflict(_) => {}
        });
    }

    /// Marks `member`'s session as ended.
    pub(crate) fn finished(&self, member: &str) {
        self.update(member, |m| {
            m.finished = true;
            m.leg = None;
            m.table = None;
        });
    }

    fn update(&self, member: &str, change: impl FnOnce(&mut MemberProgress)) {
        let mut board = self.lock();
        if let Some(m) = board.progress.members.iter_mut().find(|m| m.member == member) {
            change(m);
            board.changed = true;
        }
    }

    /// The progress to publish now, when it changed since last time.
    fn take_changed(&self) -> Option<RunProgress> {
        let mut board = self.lock();
        if !board.changed {
            return None;
        }
        board.changed = false;
        board.published = true;
        board.progress.updated_at = now_micros();
        Some(board.progress.clone())
    }

    fn was_published(&self) -> bool {
        self.lock().published
    }
}

/// Runs `run` while publishing `board` for `group` every [`PUBLISH_EVERY`]
/// (first after one interval), then clears what was published.
pub(crate) async fn while_publishing<T>(
    store: &MetaStore,
    group: &str,
    board: &ProgressBoard,
    run: impl Future<Output = T>,
) -> T {
    let publisher = async {
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + PUBLISH_EVERY, PUBLISH_EVERY);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            if let Some(progress) = board.take_changed()
                && let Err(e) = store.publish_progress(group, &progress).await
            {
                tracing::debug!(group, error = %e, "Cannot publish the run's progress.");
            }
        }
    };
    let mut run = pin!(run);
    let output = match select(run.as_mut(), pin!(publisher)).await {
        Either::Left((output, _)) => output,
        // The publisher never ends; were it to, the run still must.
        Either::Right(((), _)) => run.await,
    };
    if board.was_published()
        && let Err(e) = store.clear_progress(group).await
    {
        tracing::warn!(group, error = %e, "Cannot clear the run's progress.");
    }
    output
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Instant;

    use hubsync_core::TableName;

    use super::*;

    async fn store(dir: &tempfile::TempDir) -> MetaStore {
        MetaStore::open(&format!("sqlite://{}", dir.path().join("meta.db").display()), None).await.unwrap()
    }

    #[tokio::test]
    async fn progress_is_published_while_a_run_lasts_and_cleared_when_it_ends() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        let board = ProgressBoard::new(1, ["m1"].into_iter());
        let (end, ended) = tokio::sync::oneshot::channel::<()>();
        let run = async {
            ended.await.unwrap();
            7
        };
        let watch = async {
            // The first publication comes after one interval; then the run ends.
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if let Some(p) = store.progress("g").await.unwrap() {
                    assert_eq!(p.members[0].member, "m1");
                    break;
                }
                assert!(Instant::now() < deadline, "nothing was published within 30 s");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            end.send(()).unwrap();
        };
        let (output, ()) = tokio::join!(while_publishing(&store, "g", &board, run), watch);
        assert_eq!(output, 7);
        assert!(store.progress("g").await.unwrap().is_none(), "the run's end cleared it");
    }

    #[tokio::test]
    async fn a_run_shorter_than_the_interval_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        let board = ProgressBoard::new(1, ["m1"].into_iter());
        assert_eq!(while_publishing(&store, "g", &board, async { 3 }).await, 3);
        assert!(!board.was_published());
    }

    #[test]
    fn events_move_the_members_counters_and_current_table() {
        let board = ProgressBoard::new(1, ["m1", "m2"].into_iter());
        let table = TableName::new("items");
        board.on_event(
            "m1",
            &SessionEvent::TableStarted { leg: Leg::Download, table: &table, pending: Some(9), bulk: false },
        );
        board.on_event("m1", &SessionEvent::RowsMoved { leg: Leg::Download, table: &table, rows: 4 });
        let p = board.take_changed().unwrap_or_default();
        let m1 = &p.members[0];
        assert_eq!(
            (m1.leg, m1.table.as_deref(), m1.table_pending, m1.table_rows),
            (Some(Leg::Download), Some("items"), Some(9), 4)
        );
        assert_eq!((m1.uploaded, m1.downloaded, m1.finished), (0, 4, false));
        assert!(board.take_changed().is_none(), "nothing changed since");
        board.finished("m1");
        board.on_event("nobody", &SessionEvent::RowsMoved { leg: Leg::Upload, table: &table, rows: 1 });
        let p = board.take_changed().unwrap_or_default();
        assert!(p.members[0].finished && p.members[0].table.is_none());
        assert!(board.was_published());
    }
}

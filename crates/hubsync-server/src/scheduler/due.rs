//! When a group is due by its schedule.
//!
//! Times are microseconds since the epoch, because some of them come from the
//! store, written by whichever server ran the group last.

use std::time::Duration;

use crate::spec::Schedule;

/// A continuous group polls again this long after its previous run ended.
pub const CONTINUOUS_PAUSE: Duration = Duration::from_millis(250);

/// The longest pause of a continuous group whose runs keep failing: a hub
/// that is down is retried, but not four times a second.
const MAX_FAILURE_PAUSE: Duration = Duration::from_secs(30);

/// What this scheduler knows of a group's runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timing {
    /// When this scheduler last started it.
    pub last_start: Option<i64>,
    /// When that run ended.
    pub last_end: Option<i64>,
    /// Runs in a row that failed.
    pub failures: u32,
}

/// Whether a group with `schedule` is due at `now`. `stored_end` is the
/// store's `lastSyncTime`: when it is later than this scheduler's own last
/// run, another server ran the group since, and its end stands in for the
/// start this scheduler does not know. Manual groups are never due.
pub fn is_due(schedule: Schedule, timing: &Timing, stored_end: Option<i64>, now: i64) -> bool {
    let by_other = stored_end.filter(|end| timing.last_end.is_none_or(|ours| *end > ours));
    let waited = |since: Option<i64>, pause: Duration| {
        since.is_none_or(|t| now.saturating_sub(t) >= i64::try_from(pause.as_micros()).unwrap_or(i64::MAX))
    };
    match schedule {
        Schedule::Manual => false,
        Schedule::EverySeconds(n) => waited(timing.last_start.max(by_other), Duration::from_secs(n)),
        Schedule::Continuous => waited(timing.last_end.max(by_other), continuous_pause(timing.failures)),
    }
}

/// The pause of a continuous group after `failures` failed runs in a row:
/// 250 ms, then doubling from one second up to 30 s.
pub fn continuous_pause(failures: u32) -> Duration {
    if failures == 0 {
        return CONTINUOUS_PAUSE;
    }
    Duration::from_secs(1u64 << failures.saturating_sub(1).min(5)).min(MAX_FAILURE_PAUSE)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000;

    #[test]
    fn interval_groups_are_due_an_interval_after_their_last_start() {
        let every = Schedule::EverySeconds(10);
        assert!(is_due(every, &Timing::default(), None, 100 * S));
        let ran = Timing { last_start: Some(100 * S), last_end: Some(103 * S), failures: 0 };
        assert!(!is_due(every, &ran, Some(103 * S), 109 * S));
        assert!(is_due(every, &ran, Some(103 * S), 110 * S));
        // A run longer than the interval: due again as soon as it ended.
        let long = Timing { last_start: Some(100 * S), last_end: Some(125 * S), failures: 0 };
        assert!(is_due(every, &long, Some(125 * S), 125 * S));
    }

    #[test]
    fn a_run_by_another_server_counts_from_its_end() {
        let every = Schedule::EverySeconds(10);
        let ran = Timing { last_start: Some(100 * S), last_end: Some(101 * S), failures: 0 };
        assert!(!is_due(every, &ran, Some(112 * S), 115 * S));
        assert!(is_due(every, &ran, Some(112 * S), 122 * S));
        // A server that never ran it waits for the stored end too.
        assert!(!is_due(every, &Timing::default(), Some(112 * S), 115 * S));
        assert!(!is_due(Schedule::Continuous, &Timing::default(), Some(112 * S), 112 * S + 100_000));
    }

    #[test]
    fn continuous_groups_poll_a_pause_after_their_last_end_and_back_off_on_failures() {
        let ran = Timing { last_start: Some(100 * S), last_end: Some(101 * S), failures: 0 };
        assert!(!is_due(Schedule::Continuous, &ran, Some(101 * S), 101 * S + 200_000));
        assert!(is_due(Schedule::Continuous, &ran, Some(101 * S), 101 * S + 250_000));
        let failing = Timing { failures: 3, ..ran };
        assert!(!is_due(Schedule::Continuous, &failing, Some(101 * S), 104 * S));
        assert!(is_due(Schedule::Continuous, &failing, Some(101 * S), 105 * S));
        assert_eq!(continuous_pause(1), Duration::from_secs(1));
        assert_eq!(continuous_pause(40), MAX_FAILURE_PAUSE);
    }

    #[test]
    fn manual_groups_are_never_due_by_schedule() {
        assert!(!is_due(Schedule::Manual, &Timing::default(), None, 100 * S));
    }
}

//! How values read on a page: intervals in words, times, states as badges.

use hubsync_core::Direction;

use crate::model::{SyncGroupState, SyncMemberState};
use crate::spec::Schedule;
use crate::store::time::rfc3339;

/// Seconds in each unit the interval form offers, largest first.
pub const UNITS: [(&str, u64); 4] = [("days", 86_400), ("hours", 3_600), ("minutes", 60), ("seconds", 1)];

/// A schedule in words: "Every 5 minutes", "Continuous", "Manual only".
pub fn schedule_words(schedule: Schedule) -> String {
    match schedule {
        Schedule::Manual => "Manual only".to_string(),
        Schedule::Continuous => "Continuous".to_string(),
        Schedule::EverySeconds(n) => {
            let (unit, size) = UNITS.iter().find(|(_, size)| n % size == 0).copied().unwrap_or(("seconds", 1));
            let count = n / size;
            let unit = if count == 1 { unit.trim_end_matches('s') } else { unit };
            format!("Every {count} {unit}")
        }
    }
}

/// A schedule as the interval form's fields hold it: the mode (`every`,
/// `continuous`, `manual`), the count and its unit (the largest whole one).
pub fn interval_fields(schedule: Schedule) -> (&'static str, String, &'static str) {
    match schedule {
        Schedule::Manual => ("manual", "5".to_string(), "minutes"),
        Schedule::Continuous => ("continuous", "5".to_string(), "minutes"),
        Schedule::EverySeconds(n) => {
            let (unit, size) = UNITS.iter().find(|(_, size)| n % size == 0).copied().unwrap_or(("seconds", 1));
            ("every", (n / size).to_string(), unit)
        }
    }
}

/// A stored time (µs since the epoch) for people: `2026-12-01 17:40:22 UTC`.
pub fn time_words(micros: Option<i64>) -> String {
    match micros {
        None => "Never".to_string(),
        Some(m) => {
            let text = rfc3339(m);
            // `2026-12-01T17:40:22.123456Z` → `2026-12-01 17:40:22 UTC`
            match text.get(..19) {
                Some(head) => format!("{} UTC", head.replacen('T', " ", 1)),
                None => text,
            }
        }
    }
}

/// A badge: its text (always shown, so colour is never the only cue) and
/// the CSS class that colours it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Badge {
    /// What it says.
    pub text: String,
    /// `good`, `warn`, `bad`, `busy` or `idle`.
    pub tone: &'static str,
}

/// A group state's badge.
pub fn group_badge(state: SyncGroupState) -> Badge {
    let (text, tone) = match state {
        SyncGroupState::NotReady => ("Not ready", "idle"),
        SyncGroupState::Progressing => ("Progressing", "busy"),
        SyncGroupState::Good => ("Good", "good"),
        SyncGroupState::Warning => ("Warning", "warn"),
        SyncGroupState::Error => ("Error", "bad"),
    };
    Badge { text: text.to_string(), tone }
}

/// A member state's badge.
pub fn member_badge(state: SyncMemberState) -> Badge {
    use SyncMemberState as S;
    let (text, tone) = match state {
        S::UnProvisioned => ("Not provisioned", "idle"),
        S::Provisioning => ("Provisioning", "busy"),
        S::Provisioned => ("Provisioned", "idle"),
        S::SyncInProgress => ("Sync in progress", "busy"),
        S::SyncSucceeded => ("Sync succeeded", "good"),
        S::SyncSucceededWithWarnings => ("Succeeded with warnings", "warn"),
        S::SyncFailed => ("Sync failed", "bad"),
        S::SyncCancelled => ("Sync cancelled", "warn"),
        S::OutOfDate => ("Out of date", "bad"),
        S::DeProvisioning => ("Deprovisioning", "busy"),
        S::DeProvisioned => ("Deprovisioned", "idle"),
    };
    Badge { text: text.to_string(), tone }
}

/// A sync direction in words.
pub fn direction_words(direction: Direction) -> &'static str {
    match direction {
        Direction::Bidirectional => "Bidirectional",
        Direction::OneWayMemberToHub => "To the hub (one way)",
        Direction::OneWayHubToMember => "From the hub (one way)",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_read_in_the_largest_whole_unit() {
        assert_eq!(schedule_words(Schedule::EverySeconds(300)), "Every 5 minutes");
        assert_eq!(schedule_words(Schedule::EverySeconds(1)), "Every 1 second");
        assert_eq!(schedule_words(Schedule::EverySeconds(90)), "Every 90 seconds");
        assert_eq!(schedule_words(Schedule::EverySeconds(172_800)), "Every 2 days");
        assert_eq!(schedule_words(Schedule::Continuous), "Continuous");
        assert_eq!(schedule_words(Schedule::Manual), "Manual only");
    }

    #[test]
    fn a_schedule_fills_the_interval_fields_in_its_largest_unit() {
        assert_eq!(interval_fields(Schedule::EverySeconds(7200)), ("every", "2".to_string(), "hours"));
        assert_eq!(interval_fields(Schedule::EverySeconds(90)), ("every", "90".to_string(), "seconds"));
        assert_eq!(interval_fields(Schedule::Continuous).0, "continuous");
    }

    #[test]
    fn times_read_without_fractions() {
        assert_eq!(time_words(Some(0)), "1970-01-01 00:00:00 UTC");
        assert_eq!(time_words(None), "Never");
    }
}

//! Member states, with Azure SQL Data Sync's names, and the record of a session.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Where a member stands. The names are Azure SQL Data Sync's, so people who
/// migrate recognise them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum MemberState {
    UnProvisioned,
    Provisioning,
    Provisioned,
    SyncInProgress,
    SyncSucceeded,
    SyncSucceededWithWarnings,
    SyncFailed,
    SyncCancelled,
    OutOfDate,
    DeProvisioning,
    DeProvisioned,
}

impl MemberState {
    const ALL: [MemberState; 11] = [
        MemberState::UnProvisioned,
        MemberState::Provisioning,
        MemberState::Provisioned,
        MemberState::SyncInProgress,
        MemberState::SyncSucceeded,
        MemberState::SyncSucceededWithWarnings,
        MemberState::SyncFailed,
        MemberState::SyncCancelled,
        MemberState::OutOfDate,
        MemberState::DeProvisioning,
        MemberState::DeProvisioned,
    ];
}

impl fmt::Display for MemberState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl FromStr for MemberState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        MemberState::ALL.into_iter().find(|m| m.to_string() == s).ok_or_else(|| format!("unknown member state `{s}`"))
    }
}

/// The outcome of the last session between a member and its hub, stored in the
/// member's database so `hubsync status` can show it without a metadata store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// The state after the session.
    pub state: MemberState,
    /// When the last session started (µs since the epoch).
    pub last_attempt_at: i64,
    /// When a session last succeeded (µs since the epoch).
    pub last_success_at: Option<i64>,
    /// Rows uploaded by the last session.
    pub uploaded: u64,
    /// Rows downloaded by the last session.
    pub downloaded: u64,
    /// The error of the last session, if it failed.
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_through_their_azure_names() {
        for s in MemberState::ALL {
            assert_eq!(s.to_string().parse::<MemberState>().unwrap(), s);
        }
        assert_eq!(MemberState::SyncSucceeded.to_string(), "SyncSucceeded");
    }
}

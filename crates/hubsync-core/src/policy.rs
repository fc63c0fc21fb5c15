//! Conflict resolution: who wins when a row changed on both sides.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::schema::TableName;
use crate::value::{Value, format_key};

/// The group's rule for choosing a conflict's winner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ConflictPolicy {
    /// The hub's change always wins.
    HubWin,
    /// The member's change always wins.
    MemberWin,
    /// The change with the later commit timestamp wins; on a tie the hub wins.
    LastWriterWins,
}

impl ConflictPolicy {
    /// All policies, for help texts and tests.
    pub const ALL: [ConflictPolicy; 3] =
        [ConflictPolicy::HubWin, ConflictPolicy::MemberWin, ConflictPolicy::LastWriterWins];
}

impl fmt::Display for ConflictPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConflictPolicy::HubWin => "HubWin",
            ConflictPolicy::MemberWin => "MemberWin",
            ConflictPolicy::LastWriterWins => "LastWriterWins",
        })
    }
}

impl FromStr for ConflictPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ConflictPolicy::ALL
            .into_iter()
            .find(|p| p.to_string() == s)
            .ok_or_else(|| format!("unknown conflict resolution `{s}`; use HubWin, MemberWin or LastWriterWins"))
    }
}

/// The two roles in a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Side {
    /// The hub database.
    Hub,
    /// The member database.
    Member,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Hub => "hub",
            Side::Member => "member",
        })
    }
}

/// What the resolver needs to know of each side's change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChangeStamp {
    /// Commit time, microseconds since the epoch.
    pub changed_at: i64,
}

/// Decides conflicts for one apply: the policy plus which side is receiving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConflictResolver {
    /// The policy in force for the table.
    pub policy: ConflictPolicy,
    /// The side the batch is being applied to.
    pub receiver: Side,
}

impl ConflictResolver {
    /// The side whose change wins, and a sentence saying why.
    pub fn decide(&self, local: ChangeStamp, incoming: ChangeStamp) -> (Side, String) {
        let stamp_of = |side: Side| if side == self.receiver { local } else { incoming };
        match self.policy {
            ConflictPolicy::HubWin => (Side::Hub, "HubWin: the hub's change always wins".into()),
            ConflictPolicy::MemberWin => (Side::Member, "MemberWin: the member's change always wins".into()),
            ConflictPolicy::LastWriterWins => {
                let (hub, member) = (stamp_of(Side::Hub), stamp_of(Side::Member));
                if member.changed_at > hub.changed_at {
                    (
                        Side::Member,
                        format!(
                            "LastWriterWins: the member's change is later ({} after the hub's)",
                            micros_delta(member.changed_at - hub.changed_at)
                        ),
                    )
                } else if hub.changed_at > member.changed_at {
                    (
                        Side::Hub,
                        format!(
                            "LastWriterWins: the hub's change is later ({} after the member's)",
                            micros_delta(hub.changed_at - member.changed_at)
                        ),
                    )
                } else {
                    (Side::Hub, "LastWriterWins: both changes have the same timestamp, so the hub wins the tie".into())
                }
            }
        }
    }

    /// Whether the incoming change wins over the local one.
    pub fn incoming_wins(&self, local: ChangeStamp, incoming: ChangeStamp) -> bool {
        self.decide(local, incoming).0 != self.receiver
    }
}

fn micros_delta(micros: i64) -> String {
    if micros < 1_000 {
        format!("{micros} µs")
    } else if micros < 1_000_000 {
        format!("{:.1} ms", micros as f64 / 1_000.0)
    } else {
        format!("{:.3} s", micros as f64 / 1_000_000.0)
    }
}

/// One resolved conflict: both row images, the winner and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conflict {
    /// The table.
    pub table: TableName,
    /// The row's primary key.
    pub key: Vec<Value>,
    /// The hub's row image (`None`: deleted there).
    pub hub_row: Option<Vec<Value>>,
    /// The member's row image (`None`: deleted there).
    pub member_row: Option<Vec<Value>>,
    /// The hub change's commit time (µs since the epoch).
    pub hub_changed_at: i64,
    /// The member change's commit time (µs since the epoch).
    pub member_changed_at: i64,
    /// Who won.
    pub winner: Side,
    /// The policy that decided.
    pub policy: ConflictPolicy,
    /// Why, in a sentence.
    pub reason: String,
}

impl Conflict {
    /// A one-line account for people.
    pub fn describe(&self) -> String {
        let image = |row: &Option<Vec<Value>>| match row {
            None => "deleted".to_string(),
            Some(r) => format_key(r),
        };
        format!(
            "{} key {}: hub {} vs member {} -> {} wins ({})",
            self.table,
            format_key(&self.key),
            image(&self.hub_row),
            image(&self.member_row),
            self.winner,
            self.reason
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(t: i64) -> ChangeStamp {
        ChangeStamp { changed_at: t }
    }

    #[test]
    fn hub_and_member_win_regardless_of_time() {
        for receiver in [Side::Hub, Side::Member] {
            let hub = ConflictResolver { policy: ConflictPolicy::HubWin, receiver };
            assert_eq!(hub.decide(stamp(1), stamp(2)).0, Side::Hub);
            let member = ConflictResolver { policy: ConflictPolicy::MemberWin, receiver };
            assert_eq!(member.decide(stamp(2), stamp(1)).0, Side::Member);
        }
    }

    #[test]
    fn last_writer_wins_by_time_and_hub_breaks_ties() {
        let at_hub = ConflictResolver { policy: ConflictPolicy::LastWriterWins, receiver: Side::Hub };
        assert_eq!(at_hub.decide(stamp(5), stamp(9)).0, Side::Member);
        assert!(at_hub.incoming_wins(stamp(5), stamp(9)));
        assert_eq!(at_hub.decide(stamp(9), stamp(5)).0, Side::Hub);
        assert_eq!(at_hub.decide(stamp(7), stamp(7)).0, Side::Hub);
        let at_member = ConflictResolver { policy: ConflictPolicy::LastWriterWins, receiver: Side::Member };
        assert_eq!(at_member.decide(stamp(7), stamp(7)).0, Side::Hub);
        assert!(at_member.incoming_wins(stamp(7), stamp(7)));
    }

    #[test]
    fn policies_parse_from_their_names() {
        for p in ConflictPolicy::ALL {
            assert_eq!(p.to_string().parse::<ConflictPolicy>().unwrap(), p);
        }
        assert!("hubwin".parse::<ConflictPolicy>().unwrap_err().contains("HubWin"));
    }
}

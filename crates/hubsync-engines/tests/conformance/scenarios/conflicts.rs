//! Scenario 2: the conflict matrix, (hub op) x (member op) x policy.
//!
//! Table `t(id INTEGER PRIMARY KEY, v TEXT)`; hub `hub`, members `alpha` (the
//! one in conflict) and `beta` (a bystander that must end with the winner's
//! state too). Every case starts from a converged group holding row 1
//! (`base`) and an unrelated row 99, then builds the starting state of the
//! conflicting key:
//!
//! - update or delete on both sides: the key is row 1, present everywhere;
//! - insert on both sides: key 2, absent everywhere; both insert it with
//!   different values;
//! - update/delete on the hub vs insert on the member: key 2 exists only on
//!   the hub (the hub inserted `h0` and has not synced since), the hub then
//!   updates or deletes it and `alpha` inserts it;
//! - insert on the hub vs update/delete on the member: key 2 exists only on
//!   `alpha` (it inserted `m0`, unsynced), `alpha` then updates or deletes it
//!   and the hub inserts it.
//!
//! The two conflicting writes are made in a chosen order with a pause between
//! them, so `LastWriterWins` has an explicit later writer. Then `alpha` syncs
//! (its upload meets the conflict on the hub; the report must list it with the
//! right winner, except for delete/delete, which is no conflict), and the group
//! converges: the winner's state (values or absence) must be on the hub,
//! `alpha` and `beta`.

use std::time::Duration;

use hubsync_core::Direction::Bidirectional;
use hubsync_core::{ConflictPolicy, Side, Value};

use crate::harness::Harness;
use crate::world::{World, assert_rows_eq, int, text};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Insert,
    Update,
    Delete,
}

/// The policy, and for `LastWriterWins` who writes last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rule {
    HubWin,
    MemberWin,
    LwwHubLast,
    LwwMemberLast,
}

impl Rule {
    fn policy(self) -> ConflictPolicy {
        match self {
            Rule::HubWin => ConflictPolicy::HubWin,
            Rule::MemberWin => ConflictPolicy::MemberWin,
            Rule::LwwHubLast | Rule::LwwMemberLast => ConflictPolicy::LastWriterWins,
        }
    }

    fn winner(self) -> Side {
        match self {
            Rule::HubWin | Rule::LwwHubLast => Side::Hub,
            Rule::MemberWin | Rule::LwwMemberLast => Side::Member,
        }
    }

    fn hub_writes_last(self) -> bool {
        self != Rule::LwwMemberLast
    }
}

const PAUSE: Duration = Duration::from_millis(15);

async fn apply(w: &World, db: &str, op: Op, key: i64, value: &str) {
    let d = w.db(db);
    let n = match op {
        Op::Insert => d.exec_with(r#"INSERT INTO "t" ("id", "v") VALUES (?, ?)"#, &[int(key), text(value)]).await,
        Op::Update => d.exec_with(r#"UPDATE "t" SET "v" = ? WHERE "id" = ?"#, &[text(value), int(key)]).await,
        Op::Delete => d.exec_with(r#"DELETE FROM "t" WHERE "id" = ?"#, &[int(key)]).await,
    };
    assert_eq!(n, 1, "{op:?} of key {key} on {db} must touch one row");
}

fn state_after(op: Op, key: i64, value: &str) -> Option<Vec<Value>> {
    match op {
        Op::Insert | Op::Update => Some(vec![int(key), text(value)]),
        Op::Delete => None,
    }
}

pub(crate) async fn conflict_case(h: &dyn Harness, hub_op: Op, member_op: Op, rule: Rule) {
    let case = format!("hub {hub_op:?} vs member {member_op:?} under {rule:?}");
    let w = World::new(h, &[("alpha", Bidirectional), ("beta", Bidirectional)], rule.policy(), &["t"]).await;
    w.hub.exec(r#"CREATE TABLE "t" ("id" INTEGER PRIMARY KEY, "v" TEXT)"#).await;
    w.hub.exec(r#"INSERT INTO "t" ("id", "v") VALUES (1, 'base'), (99, 'bystander')"#).await;
    w.converge().await;

    let key = match (hub_op, member_op) {
        (Op::Insert, Op::Insert) => 2,
        (Op::Update | Op::Delete, Op::Insert) => {
            apply(&w, "hub", Op::Insert, 2, "h0").await;
            tokio::time::sleep(PAUSE).await;
            2
        }
        (Op::Insert, Op::Update | Op::Delete) => {
            apply(&w, "alpha", Op::Insert, 2, "m0").await;
            tokio::time::sleep(PAUSE).await;
            2
        }
        _ => 1,
    };
    if rule.hub_writes_last() {
        apply(&w, "alpha", member_op, key, "member").await;
        tokio::time::sleep(PAUSE).await;
        apply(&w, "hub", hub_op, key, "hub").await;
    } else {
        apply(&w, "hub", hub_op, key, "hub").await;
        tokio::time::sleep(PAUSE).await;
        apply(&w, "alpha", member_op, key, "member").await;
    }

    let hub_state = state_after(hub_op, key, "hub");
    let member_state = state_after(member_op, key, "member");
    let is_conflict = !(hub_op == Op::Delete && member_op == Op::Delete);
    let expected = match rule.winner() {
        Side::Hub => hub_state,
        Side::Member => member_state,
    };

    let report = w.sync("alpha").await;
    let listed: Vec<_> = report.conflicts.iter().filter(|c| c.key == vec![int(key)]).collect();
    if is_conflict {
        assert_eq!(
            listed.len(),
            1,
            "{case}: the first sync's report must list the conflict on key {key} once: {:#?}",
            report.conflicts
        );
        assert_eq!(listed[0].winner, rule.winner(), "{case}: wrong winner reported: {}", listed[0].describe());
        assert_eq!(listed[0].policy, rule.policy(), "{case}: wrong policy reported");
        assert_eq!(listed[0].table.name, "t", "{case}: wrong table reported");
    } else {
        assert!(listed.is_empty(), "{case}: a delete on both sides is no conflict, yet the report lists {listed:#?}");
    }
    w.converge().await;

    let mut expected_rows: Vec<Vec<Value>> = vec![vec![int(99), text("bystander")]];
    if key == 2 {
        expected_rows.insert(0, vec![int(1), text("base")]);
    }
    if let Some(row) = expected {
        expected_rows.push(row);
    }
    expected_rows.sort_by_key(|r| match r[0] {
        Value::Integer(i) => i,
        _ => 0,
    });
    for db in ["hub", "alpha", "beta"] {
        assert_rows_eq(&w.rows(db, "t").await, &expected_rows, &format!("{case}: `{db}` after convergence"));
    }
    w.finish().await;
}

/// LastWriterWins compares the writes' own commit times, also when the
/// earlier write reached the hub first from another member: `alpha` writes,
/// then `beta` writes later, `alpha` syncs first; `beta`'s later write wins.
pub(crate) async fn last_writer_wins_by_write_time_across_members(h: &dyn Harness) {
    let w = World::new(h, &[("alpha", Bidirectional), ("beta", Bidirectional)], ConflictPolicy::LastWriterWins, &["t"])
        .await;
    w.hub.exec(r#"CREATE TABLE "t" ("id" INTEGER PRIMARY KEY, "v" TEXT)"#).await;
    w.hub.exec(r#"INSERT INTO "t" ("id", "v") VALUES (1, 'base')"#).await;
    w.converge().await;
    apply(&w, "alpha", Op::Update, 1, "alpha-earlier").await;
    tokio::time::sleep(PAUSE).await;
    apply(&w, "beta", Op::Update, 1, "beta-later").await;
    // The hub applies alpha's change some time after beta wrote.
    tokio::time::sleep(PAUSE).await;
    w.sync("alpha").await;
    let report = w.sync("beta").await;
    let c = report
        .conflicts
        .iter()
        .find(|c| c.key == vec![int(1)])
        .expect("beta's upload meets alpha's change on the hub: a conflict");
    assert_eq!(c.winner, Side::Member, "beta wrote last, so beta wins: {}", c.describe());
    w.converge().await;
    for db in ["hub", "alpha", "beta"] {
        assert_rows_eq(&w.rows(db, "t").await, &[vec![int(1), text("beta-later")]], &format!("`{db}`"));
    }
    w.finish().await;
}

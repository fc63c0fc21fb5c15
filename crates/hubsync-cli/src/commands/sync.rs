//! `hubsync sync`: provision and sync the selected groups and members.
//!
//! [`sync_groups`] is the one sync path: `quickstart` calls it too. With a
//! subcommand (`hubsync sync trigger GROUP`) it is instead an API client of a
//! running server (`super::client::sync`).

use std::process::ExitCode;

use futures::StreamExt;
use hubsync_core::{
    Cancel, SessionOptions, SessionReport, SyncTable, TableName, compact_after_sync, provision_hub, provision_member,
    sync_member,
};
use hubsync_engines::AnyEndpoint;

use super::{Failure, Target, connect, print_failures, resolve_group};
use crate::config::{Config, Group, Member};
use crate::progress::{MemberProgress, Progress};
use crate::report;

/// Members of one group synced at the same time. The hub serialises writers
/// (SQLite) or takes row locks, so more parallelism mostly adds contention.
const PARALLEL_MEMBERS: usize = 4;

/// `hubsync sync`'s arguments: a config file for a one-shot sync, or a
/// subcommand for a server. The two forms exclude each other, so `hubsync
/// sync --config f.toml` keeps meaning what it always meant.
#[derive(Debug, Clone, clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct SyncArgs {
    /// The one-shot sync's config file, groups and members.
    #[command(flatten)]
    pub target: Target,
    /// Start or stop a sync on a running server instead.
    #[command(subcommand)]
    pub action: Option<super::client::sync::SyncAction>,
}

/// What happened to one member.
#[derive(Debug)]
pub struct MemberOutcome {
    /// The member.
    pub member: Member,
    /// Tables provisioning created on the member.
    pub created: Vec<TableName>,
    /// The session's report, or why the member failed.
    pub result: Result<SessionReport, Failure>,
}

/// What happened to one group.
#[derive(Debug)]
pub struct GroupOutcome {
    /// The group.
    pub group: Group,
    /// The members' outcomes, in config order; empty when the group failed.
    pub members: Vec<MemberOutcome>,
    /// Why the group as a whole failed (its hub or its schema).
    pub failures: Vec<Failure>,
}

impl GroupOutcome {
    /// Every failure, the group's and its members'.
    pub fn all_failures(&self) -> Vec<&Failure> {
        self.failures.iter().chain(self.members.iter().filter_map(|m| m.result.as_ref().err())).collect()
    }
}

/// Runs `hubsync sync`.
pub async fn run(target: &Target, cancel: &Cancel) -> anyhow::Result<ExitCode> {
    let config = target.load()?;
    let outcomes = sync_groups(&config, target, &Progress::auto(), cancel).await?;
    report::print_sync_summary(&outcomes);
    let failures: Vec<Failure> = outcomes.iter().flat_map(|o| o.all_failures().into_iter().cloned()).collect();
    print_failures(&failures);
    Ok(if failures.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// Syncs the selected groups one after another; within a group, up to
/// [`PARALLEL_MEMBERS`] members at a time. A failing hub fails its group only;
/// a failing member fails only itself.
pub async fn sync_groups(
    config: &Config,
    target: &Target,
    progress: &Progress,
    cancel: &Cancel,
) -> anyhow::Result<Vec<GroupOutcome>> {
    let mut outcomes = Vec::new();
    for (group, members) in target.select(config)? {
        outcomes.push(sync_group(config, group, &members, progress, cancel).await);
    }
    Ok(outcomes)
}

async fn sync_group(
    config: &Config,
    group: &Group,
    members: &[&Member],
    progress: &Progress,
    cancel: &Cancel,
) -> GroupOutcome {
    let mut outcome = GroupOutcome { group: group.clone(), members: Vec::new(), failures: Vec::new() };
    let hub = match connect(&group.hub, &config.base_dir).await {
        Ok(hub) => hub,
        Err(e) => {
            outcome.failures.push(Failure::group(group, "opening the hub", &e));
            return outcome;
        }
    };
    let tables = match resolve_group(group, &hub).await {
        Ok(t) => t,
        Err(f) => {
            outcome.failures = f;
            return outcome;
        }
    };
    // Every sync provisions the hub again, as it does each member: it is
    // idempotent and cheap when nothing changed, and it rebuilds the
    // triggers when the column selection changed (a newly selected column's
    // writes would otherwise go untracked) or hubsync brings new ones.
    if let Err(e) = provision_hub(&hub, &tables).await {
        outcome.failures.push(Failure::group(group, "provisioning the hub", &e));
        return outcome;
    }
    let (hub, tables) = (&hub, &tables);
    outcome.members = futures::stream::iter(members.iter().copied())
        .map(|member| async move {
            let bar = progress.member(&group.name, &member.name);
            let out = sync_one(config, group, member, hub, tables, &bar, cancel).await;
            bar.finish();
            out
        })
        .buffered(PARALLEL_MEMBERS)
        .collect()
        .await;
    compact_after_sync(hub, "hub").await;
    outcome
}

async fn sync_one(
    config: &Config,
    group: &Group,
    member: &Member,
    hub: &AnyEndpoint,
    tables: &[SyncTable],
    bar: &MemberProgress,
    cancel: &Cancel,
) -> MemberOutcome {
    let fail = |result| MemberOutcome { member: member.clone(), created: Vec::new(), result: Err(result) };
    bar.stage("opening the database");
    let db = match connect(&member.url, &config.base_dir).await {
        Ok(db) => db,
        Err(e) => return fail(Failure::member(group, member, "opening the member database", &e)),
    };
    bar.stage("provisioning");
    // Every sync provisions again (idempotently), so a member table that lost
    // a synced column is reported clearly instead of failing mid-apply.
    let provisioned = provision_member(&db, tables).await.map(|p| p.created);
    let created = match provisioned {
        Ok(created) => created,
        Err(e) => return fail(Failure::member(group, member, "provisioning the member", &e)),
    };
    let opts = SessionOptions {
        scope: &group.name,
        member: &member.name,
        direction: member.direction,
        policy: group.policy,
        tables,
        batch_rows: group.batch_rows,
        cancel: Some(cancel),
        observer: bar,
    };
    let result = sync_member(hub, &db, opts).await.map_err(|e| Failure::session(group, member, &e));
    compact_after_sync(&db, "member").await;
    MemberOutcome { member: member.clone(), created, result }
}

//! `hubsync deprovision`: remove everything hubsync created, and nothing else.

use std::process::ExitCode;

use hubsync_core::{Endpoint, TableName};

use super::{Failure, Target, connect, print_failures, show_url};
use crate::config::Config;

/// Runs `hubsync deprovision`. By default it cleans the selected groups'
/// members and hubs; with `--member` only that member, because the hub still
/// serves the group's other members.
///
/// A hub table that another (unselected) group of the same file also syncs
/// keeps its tracking: removing it would break that group.
pub async fn run(target: &Target) -> anyhow::Result<ExitCode> {
    let config = target.load()?;
    let mut failures = Vec::new();
    let mut removed_any = false;
    let selected = target.select(&config)?;
    for (group, members) in &selected {
        say!("Group `{}`:", group.name);
        let tables: Vec<TableName> = group.tables.iter().map(|t| t.selection.name.clone()).collect();
        for member in members {
            let result = match connect(&member.url, &config.base_dir).await {
                Ok(db) => db
                    .deprovision(&tables)
                    .await
                    .map_err(|e| Failure::member(group, member, "deprovisioning the member", &e)),
                Err(e) => Err(Failure::member(group, member, "opening the member database", &e)),
            };
            match result {
                Ok(removed) => {
                    removed_any |= !removed.is_empty();
                    print_removed(&format!("member `{}` ({})", member.name, show_url(&member.url)), &removed);
                }
                Err(f) => failures.push(f),
            }
        }
        if target.member.is_some() {
            say!(
                "  hub left provisioned: it still serves the group's other members (run without --member to clean it too)"
            );
            continue;
        }
        let (hub_tables, kept) = hub_tables_to_clean(
            &config,
            &selected.iter().map(|(g, _)| g.name.as_str()).collect::<Vec<_>>(),
            group,
            tables,
        );
        for (table, other) in &kept {
            say!("  hub table `{table}` keeps its tracking: group `{other}` uses it on the same hub");
        }
        let result = match connect(&group.hub, &config.base_dir).await {
            Ok(hub) => {
                hub.deprovision(&hub_tables).await.map_err(|e| Failure::group(group, "deprovisioning the hub", &e))
            }
            Err(e) => Err(Failure::group(group, "opening the hub", &e)),
        };
        match result {
            Ok(removed) => {
                removed_any |= !removed.is_empty();
                print_removed(&format!("hub ({})", show_url(&group.hub)), &removed);
            }
            Err(f) => failures.push(f),
        }
    }
    if failures.is_empty() {
        if removed_any {
            say!("\nDone: hubsync's objects are gone; your tables and their rows are untouched.");
        } else {
            say!("\nNothing to remove: no hubsync objects were found.");
        }
    }
    print_failures(&failures);
    Ok(if failures.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// Splits a group's tables into those to clean on its hub and those another,
/// unselected group still syncs through the same hub (with that group's name).
fn hub_tables_to_clean(
    config: &Config,
    selected: &[&str],
    group: &crate::config::Group,
    tables: Vec<TableName>,
) -> (Vec<TableName>, Vec<(TableName, String)>) {
    let mut clean = Vec::new();
    let mut kept = Vec::new();
    for t in tables {
        let other = config.groups.iter().find(|g| {
            !selected.contains(&g.name.as_str()) && g.hub.expanded == group.hub.expanded && g.table(&t).is_some()
        });
        match other {
            Some(g) => kept.push((t, g.name.clone())),
            None => clean.push(t),
        }
    }
    (clean, kept)
}

fn print_removed(what: &str, removed: &[String]) {
    if removed.is_empty() {
        say!("  {what}: nothing to remove");
        return;
    }
    say!("  {what}: removed {} objects:", removed.len());
    // Wrapped, because a provisioned table has half a dozen objects.
    let mut line = String::from("   ");
    for (i, name) in removed.iter().enumerate() {
        if line.len() + name.len() > 100 && !line.trim().is_empty() {
            say!("{line}");
            line = String::from("   ");
        }
        line.push(' ');
        line.push_str(name);
        if i + 1 < removed.len() {
            line.push(',');
        }
    }
    say!("{line}");
}

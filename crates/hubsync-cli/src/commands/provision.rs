//! `hubsync provision`: prepare the hub and members for sync without syncing.

use std::process::ExitCode;

use hubsync_core::{provision_hub, provision_member};

use hubsync_core::SyncTable;

use super::{Failure, Target, connect, print_failures, resolve_group, show_url, unprovisioned};

/// Runs `hubsync provision`: change tracking on the hub and on every selected
/// member, creating member tables that do not exist yet from the hub's schema.
pub async fn run(target: &Target) -> anyhow::Result<ExitCode> {
    let config = target.load()?;
    let mut failures = Vec::new();
    for (group, members) in target.select(&config)? {
        say!("Group `{}`:", group.name);
        let hub = match connect(&group.hub, &config.base_dir).await {
            Ok(h) => h,
            Err(e) => {
                failures.push(Failure::group(group, "opening the hub", &e));
                continue;
            }
        };
        let tables = match resolve_group(group, &hub).await {
            Ok(t) => t,
            Err(mut f) => {
                failures.append(&mut f);
                continue;
            }
        };
        let todo = match unprovisioned(&hub, &tables).await {
            Ok(todo) => todo,
            Err(e) => {
                failures.push(Failure::group(group, "checking the hub", &e));
                continue;
            }
        };
        // Already provisioned tables are provisioned again too: idempotent,
        // and it rebuilds their triggers when the column selection changed.
        if let Err(e) = provision_hub(&hub, &tables).await {
            failures.push(Failure::group(group, "provisioning the hub", &e));
            continue;
        }
        say!("  hub ({}): {}", show_url(&group.hub), tracking_done(&tables, &todo));
        for member in members {
            let db = match connect(&member.url, &config.base_dir).await {
                Ok(db) => db,
                Err(e) => {
                    failures.push(Failure::member(group, member, "opening the member database", &e));
                    continue;
                }
            };
            let todo = match unprovisioned(&db, &tables).await {
                Ok(todo) => todo,
                Err(e) => {
                    failures.push(Failure::member(group, member, "checking the member", &e));
                    continue;
                }
            };
            match provision_member(&db, &tables).await {
                Ok(done) => {
                    let created = if done.created.is_empty() {
                        String::new()
                    } else {
                        let list = done.created.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(", ");
                        format!("created {list} from the hub's schema; ")
                    };
                    say!(
                        "  member `{}` ({}): {created}{}",
                        member.name,
                        show_url(&member.url),
                        tracking_done(&tables, &todo)
                    );
                }
                Err(e) => failures.push(Failure::member(group, member, "provisioning the member", &e)),
            }
        }
    }
    print_failures(&failures);
    Ok(if failures.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// Says which tables were provisioned now and which already were.
fn tracking_done(all: &[SyncTable], now: &[SyncTable]) -> String {
    let names =
        |ts: &mut dyn Iterator<Item = &SyncTable>| ts.map(|t| t.schema.name.to_string()).collect::<Vec<_>>().join(", ");
    let before = names(&mut all.iter().filter(|t| !now.iter().any(|n| n.schema.name == t.schema.name)));
    match (now.is_empty(), before.is_empty()) {
        (true, _) => format!("already provisioned ({before})"),
        (false, true) => format!("change tracking added to {}", names(&mut now.iter())),
        (false, false) => format!("change tracking added to {}; already provisioned: {before}", names(&mut now.iter())),
    }
}

//! `hubsync status`: where each member stands. Reads only; writes nothing.

use std::process::ExitCode;
use std::time::SystemTime;

use hubsync_core::{MemberState, member_status};

use super::{Failure, Target, connect, print_failures, resolve_group, show_url};
use crate::report::{TextTable, human_time};

/// Runs `hubsync status`.
pub async fn run(target: &Target) -> anyhow::Result<ExitCode> {
    let config = target.load()?;
    let now = SystemTime::now();
    let mut failures = Vec::new();
    for (group, members) in target.select(&config)? {
        say!(
            "Group `{}`: hub {}, policy {}, interval {}, {} table(s)",
            group.name,
            show_url(&group.hub),
            group.policy,
            group.interval,
            group.tables.len()
        );
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
        for member in members {
            say!("\n  Member `{}` ({}, {})", member.name, show_url(&member.url), member.direction);
            let status = match connect(&member.url, &config.base_dir).await {
                Ok(db) => member_status(&hub, &db, &group.name, &member.name, &tables).await,
                Err(e) => {
                    failures.push(Failure::member(group, member, "opening the member database", &e));
                    say!("    state: unreachable (see below)");
                    continue;
                }
            };
            let status = match status {
                Ok(s) => s,
                Err(e) => {
                    failures.push(Failure::member(group, member, "reading the member's status", &e));
                    say!("    state: unknown (see below)");
                    continue;
                }
            };
            say!("    state: {}", status.state);
            if status.state == MemberState::UnProvisioned {
                say!("    not provisioned yet: run `hubsync sync` (or `hubsync provision`) to set it up");
                continue;
            }
            match &status.last_session {
                Some(s) => {
                    let success = s.last_success_at.map_or_else(|| "never".to_string(), |t| human_time(t, now));
                    say!("    last successful sync: {success}");
                    if s.last_success_at != Some(s.last_attempt_at) {
                        say!("    last attempt: {}", human_time(s.last_attempt_at, now));
                    }
                    if !s.message.is_empty() {
                        say!("    last error: {}", s.message);
                    } else {
                        say!("    last sync moved: {} up, {} down", s.uploaded, s.downloaded);
                    }
                }
                None => say!("    last successful sync: never"),
            }
            let mut t = TextTable::new(&["TABLE", "UP WATERMARK", "DOWN WATERMARK", "PENDING UP", "PENDING DOWN"]);
            let (mut up, mut down) = (0, 0);
            for ts in &status.tables {
                up += ts.pending_upload;
                down += ts.pending_download;
                t.row(vec![
                    ts.table.to_string(),
                    format!("{}/{}", ts.upload_watermarks.upserts, ts.upload_watermarks.deletes),
                    format!("{}/{}", ts.download_watermarks.upserts, ts.download_watermarks.deletes),
                    ts.pending_upload.to_string(),
                    ts.pending_download.to_string(),
                ]);
            }
            say!("{}", t.render("    "));
            say!("    (watermarks are upserts/deletes versions; pending: {up} to upload, {down} to download)");
        }
        say!();
    }
    print_failures(&failures);
    Ok(if failures.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

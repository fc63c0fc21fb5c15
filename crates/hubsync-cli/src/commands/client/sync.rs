//! `hubsync sync trigger|cancel GROUP [--wait]`.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::{Value, json};

use super::members::member_table;
use super::output::{OutputFormat, print_json};
use super::{ApiArgs, Client, POLL_EVERY, items, text};

/// What `hubsync sync` does on a server.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum SyncAction {
    /// Start a sync of a group on the server now (`triggerSync`).
    Trigger(WaitArgs),
    /// Stop a group's running sync between batches (`cancelSync`); nothing
    /// committed is lost, and the next sync resumes.
    Cancel(WaitArgs),
}

/// The arguments of `sync trigger` and `sync cancel`.
#[derive(Debug, Clone, clap::Args)]
pub struct WaitArgs {
    /// The group.
    pub group: String,
    /// Wait until the sync has finished (or stopped), show the members'
    /// states, and exit with 1 when the group ends in `Error`.
    #[arg(long)]
    pub wait: bool,
    /// With --wait: give up waiting after this long (`90s`, `10m`, `1h`).
    #[arg(long, value_name = "DURATION", default_value = "30m", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// The server, the token and the output format.
    #[command(flatten)]
    pub api: ApiArgs,
}

/// Runs `hubsync sync trigger|cancel`.
pub async fn run(action: SyncAction) -> anyhow::Result<ExitCode> {
    let (args, trigger) = match action {
        SyncAction::Trigger(a) => (a, true),
        SyncAction::Cancel(a) => (a, false),
    };
    let client = Client::new(&args.api)?;
    let group = args.group.as_str();
    let before = client.get(&["syncGroups", group]).await?;
    let last_before = text(&before, "properties/lastSyncTime").to_string();
    let verb = if trigger { "triggerSync" } else { "cancelSync" };
    client.post(&["syncGroups", group, verb]).await?;
    if !args.wait {
        if args.api.output == OutputFormat::Json {
            print_json(&json!({ "group": group, "requested": verb }));
        } else if trigger {
            say!("Sync of group `{group}` requested; follow it with `hubsync group show {group}` (or pass --wait).");
        } else {
            say!("Cancel of group `{group}`'s sync requested; it stops after the batch in flight.");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let continuous = before["properties"]["interval"].as_i64() == Some(0);
    let done = if trigger { Done::SyncFinished { last_before, continuous } } else { Done::NotRunning };
    let group_now = wait(&client, group, &done, args.timeout).await?;
    let state = text(&group_now, "properties/syncState").to_string();
    if args.api.output == OutputFormat::Json {
        let members = client.get(&["syncGroups", group, "syncMembers"]).await?;
        print_json(&json!({ "group": group_now, "members": members["value"] }));
    } else {
        let members = client.get(&["syncGroups", group, "syncMembers"]).await?;
        let what = if trigger { "Sync of group" } else { "Group" };
        say!("{what} `{group}` finished: {state}.");
        if !items(&members).is_empty() {
            say!("{}", member_table(items(&members)).render("  "));
        }
        if state == "Error" {
            say!("See why with `hubsync logs {group} --type Error`.");
        }
    }
    Ok(if state == "Error" { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// When `--wait` stops waiting.
#[derive(Debug)]
enum Done {
    /// A sync ran and ended after the trigger: the group's `lastSyncTime`
    /// moved on from what it was before (the trigger is only a request: right
    /// after it the group still shows the previous sync's state, and after a
    /// crash a stale `Progressing`). A continuous group that had nothing to
    /// do keeps its `lastSyncTime`, so for it having been seen `Progressing`
    /// is enough.
    SyncFinished { last_before: String, continuous: bool },
    /// No sync is running.
    NotRunning,
}

async fn wait(client: &Client, group: &str, done: &Done, timeout: Duration) -> anyhow::Result<Value> {
    let started = Instant::now();
    let mut seen_running = false;
    loop {
        let now = client.get(&["syncGroups", group]).await?;
        let running = text(&now, "properties/syncState") == "Progressing";
        seen_running |= running;
        let finished = !running
            && match done {
                Done::SyncFinished { last_before, continuous } => {
                    text(&now, "properties/lastSyncTime") != last_before.as_str() || (*continuous && seen_running)
                }
                Done::NotRunning => true,
            };
        if finished {
            return Ok(now);
        }
        if started.elapsed() > timeout {
            bail!(
                "group `{group}` did not finish within {} (--timeout); the sync goes on on the server: follow it with `hubsync group show {group}`",
                humantime::format_duration(timeout)
            );
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

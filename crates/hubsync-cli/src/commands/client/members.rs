//! `hubsync member list|add|remove`.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use hubsync_server::model::{DatabaseType, SyncDirection, SyncMemberProperties};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::output::{OutputFormat, database, or_dash, print_json, print_table, when};
use super::{ApiArgs, Client, items, password_from_env, text};
use crate::report::TextTable;

/// How long `member remove --deprovision` waits for the deprovisioning.
const REMOVE_TIMEOUT: Duration = Duration::from_secs(600);

/// `hubsync member`'s arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct MemberArgs {
    /// The server, the token and the output format.
    #[command(flatten)]
    pub api: ApiArgs,
    /// What to do.
    #[command(subcommand)]
    pub action: MemberAction,
}

/// The `--database-type` values (the API's `databaseType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DatabaseTypeArg {
    /// A SQLite file (`--database-name` is its path on the server).
    #[value(name = "Sqlite", alias = "sqlite")]
    Sqlite,
    /// PostgreSQL.
    #[value(name = "PostgreSql", alias = "postgresql", alias = "postgres")]
    PostgreSql,
    /// MySQL or MariaDB.
    #[value(name = "MySql", alias = "mysql", alias = "mariadb")]
    MySql,
}

/// The `--direction` values (the API's `syncDirection`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DirectionArg {
    /// Both ways.
    #[value(name = "Bidirectional")]
    Bidirectional,
    /// Member to hub only.
    #[value(name = "OneWayMemberToHub")]
    OneWayMemberToHub,
    /// Hub to member only.
    #[value(name = "OneWayHubToMember")]
    OneWayHubToMember,
}

/// What `hubsync member` does.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum MemberAction {
    /// List a group's members with their states.
    List {
        /// The group.
        group: String,
    },
    /// Add a member to a group, or change one.
    Add {
        /// The group.
        group: String,
        /// The member's name (letters, digits, `-`, `_`, `.`).
        name: String,
        /// The member's engine.
        #[arg(long, value_enum)]
        database_type: DatabaseTypeArg,
        /// `host` or `host:port`; leave out for SQLite.
        #[arg(long, value_name = "HOST[:PORT]")]
        server_name: Option<String>,
        /// The database; for SQLite the file's path on the server (relative
        /// paths are taken relative to the server's config file directory).
        #[arg(long, value_name = "NAME")]
        database_name: String,
        /// The user to connect as.
        #[arg(long, value_name = "USER")]
        user_name: Option<String>,
        /// The environment variable holding the password (never on the
        /// command line, where other users and shell history can see it).
        #[arg(long, value_name = "VAR")]
        password_env: Option<String>,
        /// Which way changes flow.
        #[arg(long, value_enum, default_value_t = DirectionArg::Bidirectional)]
        direction: DirectionArg,
    },
    /// Remove a member from a group.
    Remove {
        /// The group.
        group: String,
        /// The member.
        name: String,
        /// Also remove hubsync's triggers and tracking tables from the
        /// member's database (its tables and rows stay).
        #[arg(long)]
        deprovision: bool,
    },
}

/// Runs `hubsync member`.
pub async fn run(args: MemberArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.api)?;
    let output = args.api.output;
    match args.action {
        MemberAction::List { group } => {
            let answer = client.get(&["syncGroups", &group, "syncMembers"]).await?;
            if output == OutputFormat::Json {
                print_json(&answer);
            } else {
                let members = items(&answer);
                let empty =
                    format!("Group `{group}` has no members yet: add one with `hubsync member add {group} NAME ...`.");
                print_table(&member_table(members), members.len(), &empty);
            }
            Ok(ExitCode::SUCCESS)
        }
        MemberAction::Add {
            group,
            name,
            database_type,
            server_name,
            database_name,
            user_name,
            password_env,
            direction,
        } => {
            let props = SyncMemberProperties {
                database_type: Some(match database_type {
                    DatabaseTypeArg::Sqlite => DatabaseType::Sqlite,
                    DatabaseTypeArg::PostgreSql => DatabaseType::PostgreSql,
                    DatabaseTypeArg::MySql => DatabaseType::MySql,
                }),
                server_name,
                database_name: Some(database_name),
                user_name,
                sync_direction: Some(match direction {
                    DirectionArg::Bidirectional => SyncDirection::Bidirectional,
                    DirectionArg::OneWayMemberToHub => SyncDirection::OneWayMemberToHub,
                    DirectionArg::OneWayHubToMember => SyncDirection::OneWayHubToMember,
                }),
                ..SyncMemberProperties::default()
            };
            let mut props = serde_json::to_value(&props).context("encoding the member")?;
            // The typed resource never serialises a password (responses must
            // not carry one), so a request adds it by hand.
            if let (Some(var), Some(obj)) = (password_env, props.as_object_mut()) {
                obj.insert("password".into(), Value::String(password_from_env(&var)?));
            }
            let answer =
                client.put(&["syncGroups", &group, "syncMembers", &name], &json!({ "properties": props })).await?;
            if output == OutputFormat::Json {
                print_json(&answer.body);
            } else {
                let verb = if answer.status == StatusCode::CREATED { "added to" } else { "updated in" };
                say!("Member `{name}` {verb} group `{group}`; it is provisioned at its first sync.");
            }
            Ok(ExitCode::SUCCESS)
        }
        MemberAction::Remove { group, name, deprovision } => {
            let mut url = client.url(&["syncGroups", &group, "syncMembers", &name]);
            if deprovision {
                url.query_pairs_mut().append_pair("deprovision", "true");
            }
            let answer = client.send(Method::DELETE, url, None).await?;
            if let (StatusCode::ACCEPTED, Some(location)) = (answer.status, &answer.location) {
                client.wait_operation(location, REMOVE_TIMEOUT).await?;
            }
            let how = if deprovision {
                "; hubsync's objects were removed from its database"
            } else {
                "; its database still holds hubsync's tracking objects (remove them with --deprovision)"
            };
            say!("Member `{name}` removed from group `{group}`{how}.");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// A table of members: name, direction, state, database, last sync.
pub fn member_table(members: &[Value]) -> TextTable {
    let mut table = TextTable::new(&["NAME", "DIRECTION", "STATE", "DATABASE", "LAST SYNC"]);
    for m in members {
        let p = m.get("properties").unwrap_or(&Value::Null);
        table.row(vec![
            text(m, "name").to_string(),
            or_dash(text(p, "syncDirection")),
            or_dash(text(p, "syncState")),
            database(p),
            when(text(p, "lastSyncTime")),
        ]);
    }
    table
}

//! The subcommands, and what the config-driven ones share: choosing groups and
//! members from the config, opening databases, resolving the sync schema, and
//! describing failures. `serve` and `token` run the service; `client` holds
//! the commands that call a running server's REST API.

pub mod client;
pub mod deprovision;
pub mod provision;
pub mod quickstart;
pub mod serve;
pub mod status;
pub mod sync;
pub mod token;

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::bail;
use hubsync_core::{Endpoint, EndpointError, ErrorKind, SyncTable, TableName, resolve_tables};
use hubsync_engines::AnyEndpoint;

use crate::config::{Config, DbUrl, Group, Location, Member};

/// The options every config-driven command takes.
#[derive(Debug, Clone, clap::Args)]
pub struct Target {
    /// The config file (TOML).
    #[arg(short, long, value_name = "FILE", default_value = "hubsync.toml")]
    pub config: PathBuf,
    /// Only this sync group.
    #[arg(short, long, value_name = "NAME")]
    pub group: Option<String>,
    /// Only this member (in every selected group that has it).
    #[arg(short, long, value_name = "NAME")]
    pub member: Option<String>,
}

impl Target {
    /// Loads the config and prints its warnings.
    pub fn load(&self) -> anyhow::Result<Config> {
        let config = Config::load(&self.config)?;
        for w in &config.warnings {
            tracing::warn!("{w}");
        }
        Ok(config)
    }

    /// The selected groups, each with its selected members. Fails when a
    /// named group or member does not exist, listing those that do.
    pub fn select<'c>(&self, config: &'c Config) -> anyhow::Result<Vec<(&'c Group, Vec<&'c Member>)>> {
        let groups: Vec<&Group> = match &self.group {
            None => config.groups.iter().collect(),
            Some(name) => match config.groups.iter().find(|g| &g.name == name) {
                Some(g) => vec![g],
                None => bail!(
                    "{} has no group `{name}`; its groups are: {}",
                    config.path.display(),
                    config.groups.iter().map(|g| g.name.as_str()).collect::<Vec<_>>().join(", ")
                ),
            },
        };
        let mut out = Vec::new();
        for g in groups {
            let members: Vec<&Member> =
                g.members.iter().filter(|m| self.member.as_ref().is_none_or(|n| &m.name == n)).collect();
            if self.member.is_some() && members.is_empty() {
                continue;
            }
            out.push((g, members));
        }
        if let (Some(name), true) = (&self.member, out.is_empty()) {
            let known: Vec<String> =
                groups_members(config, self.group.as_deref()).map(|(g, m)| format!("{m} (group {g})")).collect();
            bail!("{} has no member `{name}`; its members are: {}", config.path.display(), known.join(", "));
        }
        Ok(out)
    }
}

fn groups_members<'c>(config: &'c Config, group: Option<&'c str>) -> impl Iterator<Item = (&'c str, &'c str)> {
    config
        .groups
        .iter()
        .filter(move |g| group.is_none_or(|n| g.name == n))
        .flat_map(|g| g.members.iter().map(move |m| (g.name.as_str(), m.name.as_str())))
}

/// Opens a database named in the config.
pub async fn connect(url: &DbUrl, base_dir: &Path) -> Result<AnyEndpoint, EndpointError> {
    hubsync_engines::connect(&url.expanded, base_dir).await
}

/// How to show a URL: as written when it uses `${VAR}` (the file never holds
/// the secret), else redacted.
pub fn show_url(url: &DbUrl) -> String {
    if url.written.contains("${") { url.written.clone() } else { hubsync_engines::redact_url(&url.expanded) }
}

/// Something that failed for a group or a member, with enough context to act on.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The group.
    pub group: String,
    /// The member, when the failure is one member's.
    pub member: Option<String>,
    /// The table, when the failure concerns one.
    pub table: Option<TableName>,
    /// The config line to look at, when known.
    pub location: Option<Location>,
    /// What failed, why, and what to do.
    pub message: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "group `{}`", self.group)?;
        if let Some(m) = &self.member {
            write!(f, ", member `{m}`")?;
        }
        if let Some(t) = &self.table {
            write!(f, ", table `{t}`")?;
        }
        if let Some(l) = &self.location {
            write!(f, " ({l})")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl Failure {
    /// A failure of the group as a whole (its hub).
    pub fn group(group: &Group, doing: &str, e: &EndpointError) -> Self {
        Failure {
            group: group.name.clone(),
            member: None,
            table: None,
            location: Some(group.hub.location.clone()),
            message: format!("{doing} failed: {}", with_hint(e, &hub_hint(group))),
        }
    }

    /// A failure of one member outside a session (opening or preparing it).
    pub fn member(group: &Group, member: &Member, doing: &str, e: &EndpointError) -> Self {
        let table = table_in(group, e);
        let location = match (&table, e.kind) {
            (_, ErrorKind::ConnectionFailed) => Some(member.url.location.clone()),
            (Some(t), _) => group.table(t).map(|t| t.location.clone()),
            (None, _) => Some(member.location.clone()),
        };
        Failure {
            group: group.name.clone(),
            member: Some(member.name.clone()),
            table,
            location,
            message: format!("{doing} failed: {}", with_hint(e, &member_hint(member))),
        }
    }

    /// A failed sync session.
    pub fn session(group: &Group, member: &Member, e: &hubsync_core::SessionError) -> Self {
        let location = e.table.as_ref().and_then(|t| group.table(t)).map(|t| t.location.clone());
        Failure {
            group: group.name.clone(),
            member: Some(member.name.clone()),
            table: e.table.clone(),
            location,
            message: format!("{} failed: {}", e.operation, with_hint(&e.source, &member_hint(member))),
        }
    }
}

/// Finds which configured table an error is about, by its name in the message.
fn table_in(group: &Group, e: &EndpointError) -> Option<TableName> {
    group.tables.iter().map(|t| &t.selection.name).find(|n| e.message.contains(&format!("`{n}`"))).cloned()
}

/// The error's own text, plus a generic hint when the engine gave none.
fn with_hint(e: &EndpointError, hint: &str) -> String {
    let text = e.to_string();
    if e.hint.is_some() {
        return text;
    }
    let generic = match e.kind {
        ErrorKind::NotProvisioned => "run `hubsync provision` (or `hubsync sync`, which provisions) first".to_string(),
        ErrorKind::Cancelled => "run the sync again; it resumes where it stopped".to_string(),
        ErrorKind::Schema | ErrorKind::TableMissing | ErrorKind::UnmappableType => {
            "fix the table or the sync schema in the config, then run the sync again".to_string()
        }
        ErrorKind::ConnectionFailed | ErrorKind::ConnectionLost => hint.to_string(),
        _ => "run again with -v for details; everything committed so far is kept and the next sync resumes from there"
            .into(),
    };
    format!("{text}. To fix: {generic}")
}

fn hub_hint(group: &Group) -> String {
    format!("check the group's `hub` URL ({}) and that the database exists and can be opened", group.hub.location)
}

fn member_hint(member: &Member) -> String {
    format!("check the member's `url` ({}) and that the database can be opened", member.url.location)
}

/// Resolves the sync schema on the hub one table at a time, so every bad
/// table is reported (with its config line), not just the first.
pub async fn resolve_group(group: &Group, hub: &AnyEndpoint) -> Result<Vec<SyncTable>, Vec<Failure>> {
    let mut tables = Vec::new();
    let mut failures = Vec::new();
    for t in &group.tables {
        match resolve_tables(hub, std::slice::from_ref(&t.selection)).await {
            Ok(mut one) => tables.append(&mut one),
            Err(e) => {
                // An unknown column points at the column's own line.
                let location = t
                    .column_locations
                    .iter()
                    .find(|(c, _)| e.kind == ErrorKind::Schema && e.message.contains(&format!("no column `{c}`")))
                    .map(|(_, l)| l.clone())
                    .unwrap_or_else(|| t.location.clone());
                failures.push(Failure {
                    group: group.name.clone(),
                    member: None,
                    table: Some(t.selection.name.clone()),
                    location: Some(location),
                    message: {
                        let text = with_hint(&e, "");
                        if text.contains("hub") {
                            text
                        } else {
                            format!("on the hub ({}): {text}", show_url(&group.hub))
                        }
                    },
                });
            }
        }
    }
    if failures.is_empty() { Ok(tables) } else { Err(failures) }
}

/// The tables whose change tracking does not exist yet on a database, so
/// `provision` can say what it added and what was already there.
pub async fn unprovisioned<E: Endpoint>(db: &E, tables: &[SyncTable]) -> Result<Vec<SyncTable>, EndpointError> {
    let mut out = Vec::new();
    for t in tables {
        if !db.is_provisioned(&t.schema.name).await? {
            out.push(t.clone());
        }
    }
    Ok(out)
}

/// Prints failures to stderr, one paragraph each.
pub fn print_failures(failures: &[Failure]) {
    for f in failures {
        eprintln!("error: {f}\n");
    }
}

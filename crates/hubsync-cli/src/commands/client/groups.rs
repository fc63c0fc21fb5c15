//! `hubsync group list|show|apply|delete`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use reqwest::{Method, StatusCode};
use serde_json::{Map, Value, json};

use super::members::member_table;
use super::output::{OutputFormat, database, interval, or_dash, print_json, print_table, when};
use super::{ApiArgs, Client, items, lookup, password_from_env, text};
use crate::report::TextTable;

/// How long `group delete` waits for a deprovisioning delete to finish.
const DELETE_TIMEOUT: Duration = Duration::from_secs(600);

/// `hubsync group`'s arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct GroupArgs {
    /// The server, the token and the output format.
    #[command(flatten)]
    pub api: ApiArgs,
    /// What to do.
    #[command(subcommand)]
    pub action: GroupAction,
}

/// What `hubsync group` does.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum GroupAction {
    /// List the server's sync groups.
    List,
    /// Show one group: its settings, sync schema and members.
    Show {
        /// The group.
        name: String,
    },
    /// Create or update a group and its members from a JSON file
    /// (`{"name": ..., "properties": {...}, "members": [{"name": ..., "properties": {...}}]}`).
    Apply {
        /// The JSON file (`-` reads standard input).
        #[arg(short, long, value_name = "FILE")]
        file: PathBuf,
    },
    /// Delete a group (with its members, logs and history) from the server.
    /// The databases are left as they are.
    Delete {
        /// The group.
        name: String,
    },
}

/// Runs `hubsync group`.
pub async fn run(args: GroupArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.api)?;
    let output = args.api.output;
    match args.action {
        GroupAction::List => list(&client, output).await,
        GroupAction::Show { name } => show(&client, output, &name).await,
        GroupAction::Apply { file } => apply(&client, output, &file).await,
        GroupAction::Delete { name } => delete(&client, &name).await,
    }
}

async fn list(client: &Client, output: OutputFormat) -> anyhow::Result<ExitCode> {
    let answer = client.get(&["syncGroups"]).await?;
    if output == OutputFormat::Json {
        print_json(&answer);
        return Ok(ExitCode::SUCCESS);
    }
    let groups = items(&answer);
    let mut table = TextTable::new(&["NAME", "STATE", "INTERVAL", "POLICY", "TABLES", "HUB", "LAST SYNC"]);
    for g in groups {
        let p = g.get("properties").unwrap_or(&Value::Null);
        let tables = lookup(p, "schema/tables").and_then(Value::as_array).map_or(0, Vec::len);
        table.row(vec![
            text(g, "name").to_string(),
            or_dash(text(p, "syncState")),
            interval(p.get("interval")),
            or_dash(text(p, "conflictResolutionPolicy")),
            tables.to_string(),
            database(p.get("hub").unwrap_or(&Value::Null)),
            when(text(p, "lastSyncTime")),
        ]);
    }
    print_table(&table, groups.len(), "No sync groups yet: create one with `hubsync group apply --file group.json`.");
    Ok(ExitCode::SUCCESS)
}

async fn show(client: &Client, output: OutputFormat, name: &str) -> anyhow::Result<ExitCode> {
    let group = client.get(&["syncGroups", name]).await?;
    if output == OutputFormat::Json {
        print_json(&group);
        return Ok(ExitCode::SUCCESS);
    }
    let members = client.get(&["syncGroups", name, "syncMembers"]).await?;
    let p = group.get("properties").unwrap_or(&Value::Null);
    let logging = match lookup(p, "enableConflictLogging").and_then(Value::as_bool) {
        Some(true) => format!(
            "on (kept {} days)",
            lookup(p, "conflictLoggingRetentionInDays").map_or_else(|| "-".into(), Value::to_string)
        ),
        _ => "off".into(),
    };
    let mut facts = TextTable::new(&["", ""]);
    for (k, v) in [
        ("state", or_dash(text(p, "syncState"))),
        ("last sync", when(text(p, "lastSyncTime"))),
        ("interval", interval(p.get("interval"))),
        ("policy", or_dash(text(p, "conflictResolutionPolicy"))),
        ("batch rows", lookup(p, "batchRows").map_or_else(|| "-".into(), Value::to_string)),
        ("conflict logging", logging),
        ("hub", database(p.get("hub").unwrap_or(&Value::Null))),
    ] {
        facts.row(vec![format!("{k}:"), v]);
    }
    say!("Sync group `{}`", text(&group, "name"));
    // The header row of a key/value table is blank; skip it.
    say!("{}", facts.render("  ").split_once('\n').map_or("", |(_, rest)| rest));
    let tables = lookup(p, "schema/tables").and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
    say!("\nSync schema:");
    if tables.is_empty() {
        say!(
            "  no tables selected yet, so the group does not sync: refresh the hub schema and put the tables in `properties.schema`"
        );
    } else {
        let mut t = TextTable::new(&["TABLE", "COLUMNS", "POLICY"]);
        for table in tables {
            let columns: Vec<&str> = table
                .get("columns")
                .and_then(Value::as_array)
                .map_or(Vec::new(), |cols| cols.iter().map(|c| text(c, "quotedName")).collect());
            t.row(vec![
                text(table, "quotedName").to_string(),
                if columns.is_empty() { "all".into() } else { columns.join(", ") },
                or_dash(text(table, "conflictResolutionPolicy")),
            ]);
        }
        say!("{}", t.render("  "));
    }
    say!("\nMembers:");
    let members = items(&members);
    if members.is_empty() {
        say!("  none yet: add one with `hubsync member add {name} MEMBER ...`");
    } else {
        say!("{}", member_table(members).render("  "));
    }
    Ok(ExitCode::SUCCESS)
}

/// The file `group apply` reads.
#[derive(Debug)]
struct GroupFile {
    name: String,
    properties: Value,
    members: Vec<(String, Value)>,
}

fn read_group_file(path: &Path) -> anyhow::Result<GroupFile> {
    let text = if path == Path::new("-") {
        std::io::read_to_string(std::io::stdin()).context("cannot read the group from standard input")?
    } else {
        std::fs::read_to_string(path).with_context(|| format!("cannot read the group file {}", path.display()))?
    };
    let doc: Value = serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", path.display()))?;
    parse_group_file(doc).with_context(|| format!("{} is not a group file", path.display()))
}

/// Checks the file's shape. The properties themselves are the server's to
/// check: it names every bad one.
fn parse_group_file(doc: Value) -> anyhow::Result<GroupFile> {
    const SHAPE: &str =
        r#"expected {"name": "...", "properties": {...}, "members": [{"name": "...", "properties": {...}}]}"#;
    let Value::Object(mut doc) = doc else { bail!("the file holds no JSON object; {SHAPE}") };
    if let Some(unknown) = doc.keys().find(|k| !matches!(k.as_str(), "name" | "properties" | "members")) {
        bail!("unknown key `{unknown}`; {SHAPE}");
    }
    let name = match doc.remove("name") {
        Some(Value::String(n)) if !n.is_empty() => n,
        _ => bail!("`name` (a string) is missing; {SHAPE}"),
    };
    let mut properties = match doc.remove("properties") {
        Some(p @ Value::Object(_)) => p,
        _ => bail!("`properties` (an object) is missing; {SHAPE}"),
    };
    if let Some(hub) = properties.get_mut("hub") {
        password_env(hub, "properties.hub")?;
    }
    let mut members = Vec::new();
    match doc.remove("members") {
        None => {}
        Some(Value::Array(list)) => {
            for (i, m) in list.into_iter().enumerate() {
                let Value::Object(mut m) = m else { bail!("members[{i}] is not an object; {SHAPE}") };
                let name = match m.remove("name") {
                    Some(Value::String(n)) if !n.is_empty() => n,
                    _ => bail!("members[{i}] has no `name`; {SHAPE}"),
                };
                let mut props = match m.remove("properties") {
                    Some(p @ Value::Object(_)) => p,
                    _ => bail!("member `{name}` has no `properties` object; {SHAPE}"),
                };
                if let Some(k) = m.keys().next() {
                    bail!("member `{name}` has an unknown key `{k}`; {SHAPE}");
                }
                password_env(&mut props, &format!("member `{name}`"))?;
                members.push((name, props));
            }
        }
        Some(_) => bail!("`members` is not an array; {SHAPE}"),
    }
    Ok(GroupFile { name, properties, members })
}

/// Replaces `"passwordEnv": "VAR"` by `"password"` from the environment, so
/// the file need not hold the secret.
fn password_env(props: &mut Value, what: &str) -> anyhow::Result<()> {
    let Some(obj) = props.as_object_mut() else { return Ok(()) };
    match obj.remove("passwordEnv") {
        None => Ok(()),
        Some(Value::String(var)) => {
            if obj.contains_key("password") {
                bail!("{what} has both `password` and `passwordEnv`; keep one");
            }
            obj.insert("password".into(), Value::String(password_from_env(&var)?));
            Ok(())
        }
        Some(_) => bail!("{what}: `passwordEnv` must name an environment variable (a string)"),
    }
}

async fn apply(client: &Client, output: OutputFormat, path: &Path) -> anyhow::Result<ExitCode> {
    let file = read_group_file(path)?;
    let name = file.name.as_str();
    let group = client.put(&["syncGroups", name], &json!({ "properties": file.properties })).await?;
    let mut results = Map::new();
    results.insert("group".into(), group.body.clone());
    if output == OutputFormat::Table {
        say!("Sync group `{name}` {}.", verb(group.status));
    }
    let mut applied = Vec::new();
    for (member, props) in &file.members {
        let answer = client
            .put(&["syncGroups", name, "syncMembers", member], &json!({ "properties": props }))
            .await
            .with_context(|| format!("member `{member}` (the group and the members before it were applied)"))?;
        if output == OutputFormat::Table {
            say!("Member `{member}` {}.", verb(answer.status));
        }
        applied.push(answer.body);
    }
    if output == OutputFormat::Json {
        results.insert("members".into(), Value::Array(applied));
        print_json(&Value::Object(results));
    }
    Ok(ExitCode::SUCCESS)
}

fn verb(status: StatusCode) -> &'static str {
    if status == StatusCode::CREATED { "created" } else { "applied" }
}

async fn delete(client: &Client, name: &str) -> anyhow::Result<ExitCode> {
    let answer = client.send(Method::DELETE, client.url(&["syncGroups", name]), None).await?;
    if let (StatusCode::ACCEPTED, Some(location)) = (answer.status, &answer.location) {
        client.wait_operation(location, DELETE_TIMEOUT).await?;
    }
    say!("Sync group `{name}` deleted from the server; its databases are as they were.");
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_group_file_splits_into_the_group_and_its_members() {
        let f = parse_group_file(json!({
            "name": "sales",
            "properties": {"interval": 300, "hub": {"databaseType": "Sqlite", "databaseName": "hub.db"}},
            "members": [{"name": "store1", "properties": {"databaseType": "Sqlite", "databaseName": "s1.db"}}]
        }))
        .unwrap();
        assert_eq!(f.name, "sales");
        assert_eq!(f.properties["interval"], 300);
        assert_eq!(f.members.len(), 1);
        assert_eq!(f.members[0].0, "store1");
        assert_eq!(f.members[0].1["databaseName"], "s1.db");
    }

    #[test]
    fn a_malformed_group_file_says_what_shape_is_expected() {
        let e = parse_group_file(json!({"properties": {}})).unwrap_err().to_string();
        assert!(e.contains("`name`") && e.contains("expected {"), "{e}");
        let e = parse_group_file(json!({"name": "g", "properties": {}, "member": []})).unwrap_err().to_string();
        assert!(e.contains("unknown key `member`"), "{e}");
        let e = parse_group_file(json!({"name": "g", "properties": {}, "members": [{"name": "m"}]}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("member `m` has no `properties`"), "{e}");
    }

    #[test]
    fn password_env_names_a_variable_that_must_be_set() {
        let var = "HUBSYNC_TEST_SURELY_UNSET_PASSWORD_VAR";
        let e = parse_group_file(json!({
            "name": "g",
            "properties": {"hub": {"databaseType": "PostgreSql", "databaseName": "d", "passwordEnv": var}}
        }))
        .unwrap_err();
        assert!(format!("{e:#}").contains(var), "{e:#}");
        let e = parse_group_file(json!({
            "name": "g",
            "properties": {},
            "members": [{"name": "m", "properties": {"password": "x", "passwordEnv": "PATH"}}]
        }))
        .unwrap_err()
        .to_string();
        assert!(e.contains("both `password` and `passwordEnv`"), "{e}");
        let f = parse_group_file(json!({
            "name": "g",
            "properties": {},
            "members": [{"name": "m", "properties": {"passwordEnv": "PATH"}}]
        }))
        .unwrap();
        assert_eq!(f.members[0].1["password"], Value::String(std::env::var("PATH").unwrap()));
        assert!(f.members[0].1.get("passwordEnv").is_none());
    }
}

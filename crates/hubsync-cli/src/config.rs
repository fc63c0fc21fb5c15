//! The TOML configuration file: its serde model, and the validation that turns
//! it into [`Config`].
//!
//! Every error names the file, the line and column, and says how to fix it.
//! Parsing keeps [`toml::Spanned`] positions for the things a later error may
//! need to point at (groups, members, tables, columns), because errors found
//! only when connecting (a column the hub lacks) are far easier to fix when
//! they show the config line that asked for it.

use std::collections::HashMap;
use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use hubsync_core::{ConflictPolicy, Direction, TableName, TableSelection};
use hubsync_server::spec::{DEFAULT_CONFLICT_RETENTION_DAYS, check_name};
use hubsync_server::{DatabaseSpec, GroupSpec, MemberSpec, Schedule, TableSpec};
use serde::Deserialize;
use toml::Spanned;

/// Rows per batch when the config does not say.
pub const DEFAULT_BATCH_ROWS: usize = 10_000;

/// A position in the config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file, as the user named it.
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in characters).
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// One thing wrong with the config file, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where; `None` when the problem concerns the whole file.
    pub location: Option<Location>,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Some(loc) => write!(f, "{loc}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// Why a config file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read the config file {}: {error}. Check the path given to --config (run `hubsync quickstart` for a working example)", path.display())]
    Read {
        /// The path given.
        path: PathBuf,
        /// The cause (not a `source`: the message already includes it).
        error: std::io::Error,
    },
    /// The file was read but is not a valid configuration.
    #[error("{}", render_problems(.0))]
    Invalid(Vec<Problem>),
}

fn render_problems(problems: &[Problem]) -> String {
    match problems {
        [one] => format!("invalid config: {one}"),
        many => {
            let mut s = format!("invalid config ({} problems):", many.len());
            for p in many {
                s.push_str("\n  ");
                s.push_str(&p.to_string());
            }
            s
        }
    }
}

/// How often a group syncs (used by a scheduler; `hubsync sync` always runs once).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interval {
    /// Only when asked (`-1`).
    Manual,
    /// Again as soon as a sync ends (`0`).
    Continuous,
    /// Every so often.
    Every(Duration),
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Interval::Manual => f.write_str("manual"),
            Interval::Continuous => f.write_str("continuous"),
            Interval::Every(d) => write!(f, "every {}", humantime::format_duration(*d)),
        }
    }
}

const INTERVAL_FIX: &str = "write a number with a unit (\"30s\", \"5m\", \"1h\", \"1d\"), a whole number of seconds (300), -1 for manual only, or 0 for continuous";

/// Parses an interval given as text: `30s`, `5m`, `1h`, `1d`, `1h30m`, a whole
/// number of seconds, `-1` (manual) or `0` (continuous).
pub fn parse_interval(text: &str) -> Result<Interval, String> {
    let t = text.trim();
    if let Ok(n) = t.parse::<i64>() {
        return interval_from_seconds(n);
    }
    let bad = || format!("`{text}` is not an interval; {INTERVAL_FIX}");
    // The short forms are the documented ones; humantime adds compound forms
    // ("1h30m") that users reasonably try.
    let unit = t.char_indices().last().map(|(i, c)| (&t[..i], c));
    let simple = match unit {
        Some((num, u)) if !num.is_empty() && num.bytes().all(|b| b.is_ascii_digit()) => {
            let n: u64 = num.parse().map_err(|_| bad())?;
            let mult = match u {
                's' => Some(1),
                'm' => Some(60),
                'h' => Some(3600),
                'd' => Some(86_400),
                _ => None,
            };
            mult.map(|m| n.checked_mul(m).ok_or_else(bad)).transpose()?
        }
        _ => None,
    };
    let seconds = match simple {
        Some(s) => s,
        None => humantime::parse_duration(t).map_err(|_| bad())?.as_secs(),
    };
    if seconds == 0 {
        return Err(format!("`{text}` is a zero interval; write 0 for continuous sync, or {INTERVAL_FIX}"));
    }
    Ok(Interval::Every(Duration::from_secs(seconds)))
}

fn interval_from_seconds(n: i64) -> Result<Interval, String> {
    match n {
        -1 => Ok(Interval::Manual),
        0 => Ok(Interval::Continuous),
        n if n > 0 => Ok(Interval::Every(Duration::from_secs(n.unsigned_abs()))),
        n => Err(format!("{n} is not an interval; {INTERVAL_FIX}")),
    }
}

/// A database URL from the config: as written and with `${VAR}` expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbUrl {
    /// As written in the file (safe to show: secrets stay in `${VAR}` form).
    pub written: String,
    /// With environment variables expanded; pass this to the engine.
    pub expanded: String,
    /// Where it is written.
    pub location: Location,
}

/// One synced table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    /// What the core needs.
    pub selection: TableSelection,
    /// Where the table is named.
    pub location: Location,
    /// Where each selected column is named.
    pub column_locations: Vec<(String, Location)>,
}

/// One member of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Its name, unique in the group.
    pub name: String,
    /// Its database.
    pub url: DbUrl,
    /// Which way changes flow.
    pub direction: Direction,
    /// Where its `[[group.member]]` entry is.
    pub location: Location,
}

/// One sync group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// Its name, unique in the file.
    pub name: String,
    /// The hub database.
    pub hub: DbUrl,
    /// The group's conflict policy.
    pub policy: ConflictPolicy,
    /// How often it syncs.
    pub interval: Interval,
    /// Rows per batch.
    pub batch_rows: usize,
    /// The sync schema.
    pub tables: Vec<Table>,
    /// The members.
    pub members: Vec<Member>,
    /// Where its `[[group]]` entry is.
    pub location: Location,
}

impl Group {
    /// The config entry of a table, by name.
    pub fn table(&self, name: &TableName) -> Option<&Table> {
        self.tables.iter().find(|t| &t.selection.name == name)
    }
}

/// A validated configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The file, as the user named it.
    pub path: PathBuf,
    /// The directory relative database paths are resolved against.
    pub base_dir: PathBuf,
    /// The groups, in file order.
    pub groups: Vec<Group>,
    /// Things that are allowed but probably unintended.
    pub warnings: Vec<String>,
}

impl Config {
    /// Reads and validates a config file, expanding `${VAR}` from the environment.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|error| ConfigError::Read { path: path.to_path_buf(), error })?;
        Config::parse(path, &text, &|name| std::env::var(name).ok())
    }

    /// Validates config text; `env` looks up variables (injected so tests need
    /// not touch the process environment).
    pub fn parse(path: &Path, text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let raw: RawFile =
            toml::from_str(text).map_err(|e| ConfigError::Invalid(vec![toml_problem(path, text, &e)]))?;
        let base_dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let mut v = Validator { path, text, env, problems: Vec::new(), warnings: Vec::new() };
        let groups = v.groups(raw, &base_dir);
        if v.problems.is_empty() {
            Ok(Config { path: path.to_path_buf(), base_dir, groups, warnings: v.warnings })
        } else {
            // Report in file order, as an editor would walk through them.
            v.problems.sort_by_key(|p| p.location.as_ref().map(|l| (l.line, l.column)));
            Err(ConfigError::Invalid(v.problems))
        }
    }
}

// ---- What `hubsync serve` imports --------------------------------------------

/// A group as `hubsync serve` imports it: the group's spec and its members'.
pub type GroupImport = (GroupSpec, Vec<MemberSpec>);

impl Config {
    /// The groups as the service keeps them, for `hubsync serve --config`.
    /// Relative SQLite paths are made absolute against the config's directory,
    /// so the server finds them whatever its working directory. Names the
    /// service refuses (it puts them in URLs and metric labels) are reported
    /// with their line, every one at once.
    pub fn to_specs(&self) -> Result<Vec<GroupImport>, ConfigError> {
        let base_dir = std::path::absolute(&self.base_dir).unwrap_or_else(|_| self.base_dir.clone());
        let mut problems = Vec::new();
        let mut out = Vec::new();
        for g in &self.groups {
            match g.to_spec(&base_dir) {
                Ok(spec) => out.push(spec),
                Err(mut p) => problems.append(&mut p),
            }
        }
        if problems.is_empty() { Ok(out) } else { Err(ConfigError::Invalid(problems)) }
    }
}

impl Group {
    /// This group and its members as the service keeps them.
    pub fn to_spec(&self, base_dir: &Path) -> Result<GroupImport, Vec<Problem>> {
        let mut problems = Vec::new();
        let mut problem =
            |location: &Location, message: String| problems.push(Problem { location: Some(location.clone()), message });
        if let Err(e) = check_name("sync group", &self.name) {
            problem(&self.location, format!("{e} (the service puts group names in URLs)"));
        }
        let hub = DatabaseSpec::from_url(&self.hub.expanded, base_dir).map_err(|e| problem(&self.hub.location, e)).ok();
        let mut members = Vec::new();
        for m in &self.members {
            if let Err(e) = check_name("sync member", &m.name) {
                problem(&m.location, format!("{e} (the service puts member names in URLs)"));
            }
            match DatabaseSpec::from_url(&m.url.expanded, base_dir) {
                Ok(database) => members.push(MemberSpec {
                    group: self.name.clone(),
                    name: m.name.clone(),
                    database,
                    direction: m.direction,
                }),
                Err(e) => problem(&m.url.location, e),
            }
        }
        let schedule = match self.interval {
            Interval::Manual => Schedule::Manual,
            Interval::Continuous => Schedule::Continuous,
            Interval::Every(d) => Schedule::EverySeconds(d.as_secs().max(1)),
        };
        let tables = self
            .tables
            .iter()
            .map(|t| TableSpec {
                name: t.selection.name.clone(),
                columns: t.selection.columns.clone(),
                policy: t.selection.policy,
            })
            .collect();
        match hub {
            Some(hub) if problems.is_empty() => Ok((
                GroupSpec {
                    name: self.name.clone(),
                    hub,
                    policy: self.policy,
                    schedule,
                    batch_rows: self.batch_rows,
                    tables,
                    conflict_logging: false,
                    conflict_retention_days: DEFAULT_CONFLICT_RETENTION_DAYS,
                },
                members,
            )),
            _ => Err(problems),
        }
    }
}

// ---- The file as written ----------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    group: Vec<Spanned<RawGroup>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    name: Spanned<String>,
    hub: Spanned<String>,
    conflict_resolution: Option<Spanned<String>>,
    interval: Option<Spanned<toml::Value>>,
    batch_rows: Option<Spanned<i64>>,
    #[serde(default)]
    tables: Vec<Spanned<String>>,
    #[serde(default)]
    table: Vec<Spanned<RawTable>>,
    #[serde(default)]
    member: Vec<Spanned<RawMember>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTable {
    name: Spanned<String>,
    columns: Option<Vec<Spanned<String>>>,
    conflict_resolution: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMember {
    name: Spanned<String>,
    url: Spanned<String>,
    direction: Option<Spanned<String>>,
}

/// Turns a toml/serde error into a problem with a location and a fix.
fn toml_problem(path: &Path, text: &str, e: &toml::de::Error) -> Problem {
    let location = e.span().map(|s| locate(path, text, s.start));
    let msg = e.message().trim_end_matches('\n');
    let message = if let Some(rest) = msg.strip_prefix("unknown field ") {
        // serde says "unknown field `x`, expected one of `a`, `b`".
        let (key, valid) = rest.split_once(", expected ").unwrap_or((rest, ""));
        let valid = valid.trim_start_matches("one of ");
        format!("unknown key {key}; the valid keys here are {valid}. Fix the spelling or remove the key")
    } else if msg.starts_with("missing field ") {
        format!("{}; add it", msg.replacen("missing field", "missing key", 1))
    } else {
        format!("{msg}. Fix the TOML syntax or the value's type")
    };
    Problem { location, message }
}

/// Line and column of a byte offset.
fn locate(path: &Path, text: &str, offset: usize) -> Location {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
    Location { file: path.to_path_buf(), line, column }
}

/// Expands `${NAME}` references; `$${` is a literal `${`.
pub fn expand_env(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(escaped) = after.strip_prefix("${") {
            out.push_str("${");
            rest = escaped;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body.find('}').ok_or_else(|| {
                format!("`${{` without a closing `}}` in `{text}`; write `${{NAME}}` to use an environment variable, or `$${{` for a literal `${{`")
            })?;
            let name = &body[..end];
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!(
                    "`${{{name}}}` is not a valid environment variable reference; names use letters, digits and `_`"
                ));
            }
            let value = env(name).ok_or_else(|| {
                format!("environment variable `{name}` is not set; set it (export {name}=...) before running hubsync, or write the value in the file")
            })?;
            out.push_str(&value);
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Whether two URLs name the same database: SQLite paths are compared after
/// resolving them against the config's directory, so `hub.db` and `./hub.db` match.
fn same_database(a: &str, b: &str, base_dir: &Path) -> bool {
    let sqlite_path = |u: &str| {
        u.strip_prefix("sqlite://").map(|p| {
            let p = p.split('?').next().unwrap_or(p);
            normalize(&base_dir.join(p))
        })
    };
    match (sqlite_path(a), sqlite_path(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    out
}

struct Validator<'a> {
    path: &'a Path,
    text: &'a str,
    env: &'a dyn Fn(&str) -> Option<String>,
    problems: Vec<Problem>,
    warnings: Vec<String>,
}

impl Validator<'_> {
    fn at<T>(&self, s: &Spanned<T>) -> Location {
        locate(self.path, self.text, s.span().start)
    }

    fn problem(&mut self, location: Location, message: impl Into<String>) {
        self.problems.push(Problem { location: Some(location), message: message.into() });
    }

    fn groups(&mut self, raw: RawFile, base_dir: &Path) -> Vec<Group> {
        if raw.group.is_empty() {
            self.problems.push(Problem {
                location: Some(Location { file: self.path.to_path_buf(), line: 1, column: 1 }),
                message: "the file defines no sync group; add a `[[group]]` with `name`, `hub`, `tables` and `[[group.member]]` entries (see `hubsync quickstart` for an example)".into(),
            });
        }
        let mut seen: HashMap<String, Location> = HashMap::new();
        let mut groups = Vec::new();
        for g in raw.group {
            let location = self.at(&g);
            let g = g.into_inner();
            let name_at = self.at(&g.name);
            let name = g.name.get_ref().clone();
            if name.trim().is_empty() {
                self.problem(name_at.clone(), "a group's `name` is empty; give the group a name");
            } else if let Some(first) = seen.get(&name) {
                let msg = format!(
                    "duplicate group name `{name}` (first defined at line {}); rename one of the groups",
                    first.line
                );
                self.problem(name_at.clone(), msg);
            } else {
                seen.insert(name.clone(), name_at.clone());
            }
            if let Some(group) = self.group(name, location, g, base_dir) {
                groups.push(group);
            }
        }
        groups
    }

    fn url(&mut self, s: Spanned<String>, key: &str) -> Option<DbUrl> {
        let location = self.at(&s);
        let written = s.into_inner();
        if written.trim().is_empty() {
            self.problem(location, format!("`{key}` is empty; write a database URL such as \"sqlite://hub.db\""));
            return None;
        }
        match expand_env(&written, self.env) {
            Ok(expanded) => Some(DbUrl { written, expanded, location }),
            Err(e) => {
                self.problem(location, format!("in `{key}`: {e}"));
                None
            }
        }
    }

    fn policy(&mut self, s: Option<Spanned<String>>) -> Option<Option<ConflictPolicy>> {
        let Some(s) = s else { return Some(None) };
        let at = self.at(&s);
        match s.get_ref().parse::<ConflictPolicy>() {
            Ok(p) => Some(Some(p)),
            Err(_) => {
                let msg = format!(
                    "`conflict_resolution = \"{}\"` is not a policy; the valid values are HubWin, MemberWin and LastWriterWins (case matters)",
                    s.get_ref()
                );
                self.problem(at, msg);
                None
            }
        }
    }

    fn group(&mut self, name: String, location: Location, g: RawGroup, base_dir: &Path) -> Option<Group> {
        let before = self.problems.len();
        let hub = self.url(g.hub, "hub");
        let policy = self.policy(g.conflict_resolution).map(|p| p.unwrap_or(ConflictPolicy::HubWin));
        let interval = match g.interval {
            None => Some(Interval::Manual),
            Some(s) => {
                let at = self.at(&s);
                let parsed = match s.get_ref() {
                    toml::Value::Integer(n) => interval_from_seconds(*n),
                    toml::Value::String(t) => parse_interval(t),
                    other => Err(format!("`interval = {other}` is not an interval; {INTERVAL_FIX}")),
                };
                parsed.map_err(|e| self.problem(at, format!("bad `interval`: {e}"))).ok()
            }
        };
        let batch_rows = match g.batch_rows {
            None => Some(DEFAULT_BATCH_ROWS),
            Some(s) => {
                let at = self.at(&s);
                match usize::try_from(*s.get_ref()) {
                    Ok(n) if n >= 1 => Some(n),
                    _ => {
                        let msg = format!(
                            "`batch_rows = {}` must be at least 1; the default is {DEFAULT_BATCH_ROWS}",
                            s.get_ref()
                        );
                        self.problem(at, msg);
                        None
                    }
                }
            }
        };
        let tables = self.tables(&name, g.tables, g.table);
        if tables.is_empty() {
            let msg = format!(
                "group `{name}` selects no tables; add `tables = [\"customers\"]` or a `[[group.table]]` entry"
            );
            self.problem(location.clone(), msg);
        }
        let members = self.members(&name, g.member, hub.as_ref(), base_dir);
        if members.is_empty() {
            self.warnings.push(format!(
                "{location}: group `{name}` has no members, so syncing it only prepares the hub; add `[[group.member]]` entries"
            ));
        }
        if self.problems.len() > before {
            return None;
        }
        Some(Group {
            name,
            hub: hub?,
            policy: policy?,
            interval: interval?,
            batch_rows: batch_rows?,
            tables,
            members,
            location,
        })
    }

    fn table_name(&mut self, s: &Spanned<String>) -> Option<TableName> {
        match TableName::parse(s.get_ref()) {
            Ok(t) => Some(t),
            Err(e) => {
                let at = self.at(s);
                self.problem(at, e.to_string());
                None
            }
        }
    }

    fn tables(&mut self, group: &str, plain: Vec<Spanned<String>>, detailed: Vec<Spanned<RawTable>>) -> Vec<Table> {
        let mut out: Vec<Table> = Vec::new();
        let mut add = |v: &mut Self, table: Table| {
            if let Some(first) = out.iter().find(|t| t.selection.name == table.selection.name) {
                let msg = format!(
                    "table `{}` is listed twice in group `{group}` (first at line {}); keep one entry (use `[[group.table]]` to choose columns)",
                    table.selection.name, first.location.line
                );
                v.problem(table.location, msg);
            } else {
                out.push(table);
            }
        };
        for s in plain {
            let location = self.at(&s);
            if let Some(name) = self.table_name(&s) {
                add(
                    self,
                    Table {
                        selection: TableSelection { name, columns: None, policy: None },
                        location,
                        column_locations: vec![],
                    },
                );
            }
        }
        for t in detailed {
            let location = self.at(&t);
            let t = t.into_inner();
            let name = self.table_name(&t.name);
            let policy = self.policy(t.conflict_resolution);
            let mut column_locations: Vec<(String, Location)> = Vec::new();
            let columns = t.columns.map(|cols| {
                let mut names = Vec::new();
                for c in cols {
                    let at = self.at(&c);
                    let c = c.into_inner();
                    if let Some((_, first)) = column_locations.iter().find(|(n, _)| *n == c) {
                        let msg = format!("column `{c}` is listed twice (first at line {}); remove one", first.line);
                        self.problem(at, msg);
                        continue;
                    }
                    if c.is_empty() {
                        self.problem(at, "a column name is empty; remove it");
                        continue;
                    }
                    column_locations.push((c.clone(), at));
                    names.push(c);
                }
                names
            });
            if let (Some(name), Some(policy)) = (name, policy) {
                add(self, Table { selection: TableSelection { name, columns, policy }, location, column_locations });
            }
        }
        out
    }

    fn members(
        &mut self,
        group: &str,
        raw: Vec<Spanned<RawMember>>,
        hub: Option<&DbUrl>,
        base_dir: &Path,
    ) -> Vec<Member> {
        let mut out: Vec<Member> = Vec::new();
        // Names seen so far, valid or not, so a duplicate is caught even when
        // the first entry has its own problems.
        let mut names: Vec<(String, Location)> = Vec::new();
        for m in raw {
            let location = self.at(&m);
            let m = m.into_inner();
            let name_at = self.at(&m.name);
            let name = m.name.into_inner();
            let before = self.problems.len();
            if name.trim().is_empty() {
                self.problem(name_at.clone(), "a member's `name` is empty; give the member a name");
            } else if let Some((_, first)) = names.iter().find(|(n, _)| *n == name) {
                let msg = format!(
                    "duplicate member name `{name}` in group `{group}` (first at line {}); member names must be unique within a group",
                    first.line
                );
                self.problem(name_at, msg);
            } else {
                names.push((name.clone(), location.clone()));
            }
            let direction = match m.direction {
                None => Some(Direction::Bidirectional),
                Some(d) => match d.get_ref().parse::<Direction>() {
                    Ok(d) => Some(d),
                    Err(_) => {
                        let at = self.at(&d);
                        let msg = format!(
                            "`direction = \"{}\"` is not a sync direction; the valid values are Bidirectional, OneWayMemberToHub and OneWayHubToMember (case matters)",
                            d.get_ref()
                        );
                        self.problem(at, msg);
                        None
                    }
                },
            };
            let url = self.url(m.url, "url");
            if let (Some(url), Some(hub)) = (&url, hub)
                && same_database(&url.expanded, &hub.expanded, base_dir)
            {
                let msg = format!(
                    "member `{name}` has the same database as the hub of group `{group}` (`{}`); a member must be a different database, fix its `url`",
                    url.written
                );
                self.problem(url.location.clone(), msg);
            }
            if let Some(other) =
                url.as_ref().and_then(|u| out.iter().find(|o| same_database(&o.url.expanded, &u.expanded, base_dir)))
            {
                let msg = format!(
                    "member `{name}` has the same database as member `{}` (line {}); each member must be a different database",
                    other.name, other.location.line
                );
                self.problem(location.clone(), msg);
            }
            if self.problems.len() == before
                && let (Some(url), Some(direction)) = (url, direction)
            {
                out.push(Member { name, url, direction, location });
            }
        }
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("conf/hubsync.toml"), text, &no_env)
    }

    fn error(text: &str) -> String {
        match parse(text) {
            Ok(c) => panic!("expected an error, got {c:?}"),
            Err(e) => e.to_string(),
        }
    }

    const GOOD: &str = r#"
[[group]]
name = "sales"
hub = "sqlite://hub.db"
conflict_resolution = "LastWriterWins"
interval = "5m"
batch_rows = 500
tables = ["customers", "orders"]

[[group.table]]
name = "products"
columns = ["id", "name", "price"]
conflict_resolution = "MemberWin"

[[group.member]]
name = "store1"
url = "sqlite://store1.db"
direction = "OneWayHubToMember"

[[group.member]]
name = "store2"
url = "sqlite://store2.db"
"#;

    #[test]
    fn a_full_config_parses() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.base_dir, Path::new("conf"));
        let g = &c.groups[0];
        assert_eq!(g.name, "sales");
        assert_eq!(g.policy, ConflictPolicy::LastWriterWins);
        assert_eq!(g.interval, Interval::Every(Duration::from_secs(300)));
        assert_eq!(g.batch_rows, 500);
        assert_eq!(g.tables.len(), 3);
        assert_eq!(
            g.tables[2].selection.columns.as_deref(),
            Some(&["id".to_string(), "name".into(), "price".into()][..])
        );
        assert_eq!(g.tables[2].selection.policy, Some(ConflictPolicy::MemberWin));
        assert_eq!(g.tables[2].column_locations[1].1.line, 12);
        assert_eq!(g.members[0].direction, Direction::OneWayHubToMember);
        assert_eq!(g.members[1].direction, Direction::Bidirectional);
        assert_eq!(g.members[1].location.line, 20);
        assert!(c.warnings.is_empty());
    }

    #[test]
    fn defaults_apply() {
        let c = parse(
            "[[group]]\nname='g'\nhub='sqlite://h.db'\ntables=['t']\n[[group.member]]\nname='m'\nurl='sqlite://m.db'\n",
        )
        .unwrap();
        let g = &c.groups[0];
        assert_eq!(g.batch_rows, DEFAULT_BATCH_ROWS);
        assert_eq!(g.policy, ConflictPolicy::HubWin);
        assert_eq!(g.interval, Interval::Manual);
    }

    #[test]
    fn unknown_key_names_file_line_and_valid_keys() {
        let e = error(&GOOD.replace("columns = [", "colums = ["));
        assert!(e.contains("conf/hubsync.toml:12:1"), "{e}");
        assert!(e.contains("unknown key `colums`"), "{e}");
        assert!(e.contains("`columns`") && e.contains("`conflict_resolution`"), "{e}");
        let e = error(&GOOD.replace("batch_rows", "batch_size"));
        assert!(e.contains(":7:1") && e.contains("`batch_rows`"), "{e}");
    }

    #[test]
    fn bad_policy_lists_valid_values() {
        let e = error(&GOOD.replace("\"LastWriterWins\"", "\"HubWins\""));
        assert!(e.contains("conf/hubsync.toml:5:23"), "{e}");
        assert!(e.contains("HubWin, MemberWin and LastWriterWins"), "{e}");
    }

    #[test]
    fn bad_direction_lists_valid_values() {
        let e = error(&GOOD.replace("\"OneWayHubToMember\"", "\"Down\""));
        assert!(e.contains(":18:13"), "{e}");
        assert!(e.contains("Bidirectional, OneWayMemberToHub and OneWayHubToMember"), "{e}");
    }

    #[test]
    fn bad_interval_says_how_to_write_one() {
        let e = error(&GOOD.replace("\"5m\"", "\"5 minutes please\""));
        assert!(e.contains(":6:12") && e.contains("\"30s\"") && e.contains("-1 for manual"), "{e}");
        let e = error(&GOOD.replace("\"5m\"", "-5"));
        assert!(e.contains(":6:12") && e.contains("-5 is not an interval"), "{e}");
    }

    #[test]
    fn bad_batch_rows() {
        let e = error(&GOOD.replace("500", "0"));
        assert!(e.contains(":7:14") && e.contains("at least 1"), "{e}");
    }

    #[test]
    fn duplicate_members_are_refused() {
        let e = error(&GOOD.replace("\"store2\"", "\"store1\""));
        assert!(e.contains(":21:8") && e.contains("duplicate member name `store1`") && e.contains("line 15"), "{e}");
    }

    #[test]
    fn duplicate_groups_are_refused() {
        let twice = format!("{GOOD}\n{}", GOOD.replace("hub.db", "hub2.db"));
        let e = error(&twice);
        assert!(e.contains("duplicate group name `sales`") && e.contains("first defined at line 3"), "{e}");
        assert!(e.contains(":26:8"), "{e}");
    }

    #[test]
    fn a_table_listed_twice_is_refused() {
        let e = error(&GOOD.replace("name = \"products\"", "name = \"orders\""));
        assert!(
            e.contains("table `orders` is listed twice") && e.contains(":10:1") && e.contains("first at line 8"),
            "{e}"
        );
    }

    #[test]
    fn a_member_on_the_hub_database_is_refused() {
        let e = error(&GOOD.replace("sqlite://store2.db", "sqlite://./hub.db"));
        assert!(e.contains(":22:7") && e.contains("same database as the hub"), "{e}");
    }

    #[test]
    fn empty_group_is_a_warning() {
        let c = parse("[[group]]\nname='g'\nhub='sqlite://h.db'\ntables=['t']\n").unwrap();
        assert_eq!(c.warnings.len(), 1);
        assert!(
            c.warnings[0].contains("conf/hubsync.toml:1:1") && c.warnings[0].contains("no members"),
            "{:?}",
            c.warnings
        );
    }

    #[test]
    fn no_tables_and_no_groups_are_errors() {
        let e = error("[[group]]\nname='g'\nhub='sqlite://h.db'\n");
        assert!(e.contains("selects no tables"), "{e}");
        let e = error("");
        assert!(e.contains("no sync group"), "{e}");
    }

    #[test]
    fn syntax_errors_have_a_line() {
        let e = error("[[group]]\nname = \"g\nhub='x'\n");
        assert!(e.contains("conf/hubsync.toml:2:"), "{e}");
    }

    #[test]
    fn missing_required_key_is_named() {
        let e = error("[[group]]\nname='g'\ntables=['t']\n");
        assert!(e.contains("missing key `hub`"), "{e}");
    }

    #[test]
    fn env_vars_expand_and_missing_ones_are_named() {
        let env = |n: &str| (n == "HUB_PATH").then(|| "secret/hub.db".to_string());
        let text = "[[group]]\nname='g'\nhub='sqlite://${HUB_PATH}'\ntables=['t']\n[[group.member]]\nname='m'\nurl='sqlite://${STORE_PATH}'\n";
        let e = Config::parse(Path::new("h.toml"), text, &env).unwrap_err().to_string();
        assert!(
            e.contains("h.toml:7:5") && e.contains("`STORE_PATH` is not set") && e.contains("export STORE_PATH"),
            "{e}"
        );
        let text = text.replace("${STORE_PATH}", "m.db");
        let c = Config::parse(Path::new("h.toml"), &text, &env).unwrap();
        assert_eq!(c.groups[0].hub.expanded, "sqlite://secret/hub.db");
        assert_eq!(c.groups[0].hub.written, "sqlite://${HUB_PATH}");
        assert_eq!(c.base_dir, Path::new("."));
    }

    #[test]
    fn env_expansion_edge_cases() {
        let env = |n: &str| (n == "A").then(|| "x".to_string());
        assert_eq!(expand_env("a${A}b${A}", &env).unwrap(), "axbx");
        assert_eq!(expand_env("cost $5 and $${A}", &env).unwrap(), "cost $5 and ${A}");
        assert!(expand_env("${A", &env).unwrap_err().contains("closing"));
        assert!(expand_env("${A-B}", &env).unwrap_err().contains("not a valid"));
    }

    #[test]
    fn bad_table_names_are_refused() {
        let e = error(&GOOD.replace("\"orders\"]", "\"\\\"open\"]"));
        assert!(e.contains(":8:24") && e.contains("not a valid table name"), "{e}");
    }

    #[test]
    fn intervals_parse() {
        let secs = |s: u64| Interval::Every(Duration::from_secs(s));
        assert_eq!(parse_interval("30s").unwrap(), secs(30));
        assert_eq!(parse_interval("5m").unwrap(), secs(300));
        assert_eq!(parse_interval("1h").unwrap(), secs(3600));
        assert_eq!(parse_interval("1d").unwrap(), secs(86_400));
        assert_eq!(parse_interval("1h30m").unwrap(), secs(5400));
        assert_eq!(parse_interval("90").unwrap(), secs(90));
        assert_eq!(parse_interval("-1").unwrap(), Interval::Manual);
        assert_eq!(parse_interval("0").unwrap(), Interval::Continuous);
        for bad in ["", "m", "5x", "-2", "0s", "soon", "99999999999999999999d"] {
            let e = parse_interval(bad).unwrap_err();
            assert!(e.contains("30s") || e.contains("continuous"), "{bad}: {e}");
        }
        assert_eq!(Interval::Every(Duration::from_secs(300)).to_string(), "every 5m");
    }

    #[test]
    fn groups_convert_to_the_services_specs() {
        let c = parse(&GOOD.replace("sqlite://store2.db", "postgres://bob:p%40ss@db.local:6543/shop")).unwrap();
        let specs = c.to_specs().unwrap();
        let (g, members) = &specs[0];
        assert_eq!(g.name, "sales");
        assert_eq!(g.policy, ConflictPolicy::LastWriterWins);
        assert_eq!(g.schedule, Schedule::EverySeconds(300));
        assert_eq!(g.batch_rows, 500);
        assert_eq!(g.tables.len(), 3);
        assert_eq!(g.tables[2].columns.as_deref(), Some(&["id".to_string(), "name".into(), "price".into()][..]));
        assert_eq!(g.tables[2].policy, Some(ConflictPolicy::MemberWin));
        let hub_path = Path::new(&g.hub.database_name);
        assert!(hub_path.is_absolute() && hub_path.ends_with("conf/hub.db"), "{hub_path:?}");
        assert_eq!(members.len(), 2);
        assert_eq!(members[0].group, "sales");
        assert_eq!(members[0].direction, Direction::OneWayHubToMember);
        assert_eq!(members[1].database.server_name, "db.local:6543");
        assert_eq!(members[1].database.password.as_deref(), Some("p@ss"));
    }

    #[test]
    fn intervals_convert_to_schedules() {
        let schedule = |interval: &str| {
            let c = parse(&GOOD.replace("\"5m\"", interval)).unwrap();
            c.to_specs().unwrap()[0].0.schedule
        };
        assert_eq!(schedule("-1"), Schedule::Manual);
        assert_eq!(schedule("0"), Schedule::Continuous);
        assert_eq!(schedule("\"90s\""), Schedule::EverySeconds(90));
    }

    #[test]
    fn names_the_service_refuses_are_reported_with_their_line() {
        let c = parse(&GOOD.replace("\"store2\"", "\"store two\"")).unwrap();
        let e = c.to_specs().unwrap_err().to_string();
        assert!(e.contains("conf/hubsync.toml:20:1") && e.contains("store two"), "{e}");
    }
}

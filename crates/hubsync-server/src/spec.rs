//! What the service keeps of a sync group and its members: the domain form
//! the metadata store saves, the scheduler runs and the API translates to and
//! from its resources (`crate::model`).

use std::path::{Path, PathBuf};

use hubsync_core::{ConflictPolicy, Direction, TableName, TableSelection};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::{Deserialize, Serialize};

use crate::model::DatabaseType;

/// Rows per batch when a group does not say.
pub const DEFAULT_BATCH_ROWS: usize = 10_000;

/// Days logged conflicts are kept when a group does not say.
pub const DEFAULT_CONFLICT_RETENTION_DAYS: u32 = 30;

/// The longest group or member name accepted.
pub const MAX_NAME_LEN: usize = 128;

/// Characters a URL's user or password must escape.
const USERINFO: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// How often a group syncs by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Schedule {
    /// Only when triggered (`interval = -1`).
    Manual,
    /// Again as soon as a change is seen (`interval = 0`).
    Continuous,
    /// Every so many seconds (`interval >= 1`).
    EverySeconds(u64),
}

impl Schedule {
    /// From Azure's `interval` in seconds; `None` for values below `-1`.
    pub fn from_interval(seconds: i64) -> Option<Schedule> {
        match seconds {
            -1 => Some(Schedule::Manual),
            0 => Some(Schedule::Continuous),
            n if n > 0 => Some(Schedule::EverySeconds(n.unsigned_abs())),
            _ => None,
        }
    }

    /// Azure's `interval` in seconds.
    pub fn interval(self) -> i64 {
        match self {
            Schedule::Manual => -1,
            Schedule::Continuous => 0,
            Schedule::EverySeconds(n) => i64::try_from(n).unwrap_or(i64::MAX),
        }
    }
}

/// How to reach one database.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DatabaseSpec {
    /// The engine.
    pub database_type: DatabaseType,
    /// `host` or `host:port`; empty for SQLite.
    pub server_name: String,
    /// The database; for SQLite the file's path (relative paths are taken
    /// relative to the server's base directory).
    pub database_name: String,
    /// The user; empty for none.
    pub user_name: String,
    /// The password in clear, in memory only: the store encrypts it and the
    /// API never returns it. `Debug` would print it, so this type's `Debug`
    /// is never logged; use [`DatabaseSpec::display`].
    #[serde(skip)]
    pub password: Option<String>,
}

impl DatabaseSpec {
    /// A connection URL for `hubsync_engines::connect`.
    pub fn url(&self, base_dir: &Path) -> String {
        match self.database_type {
            DatabaseType::Sqlite => {
                let path = Path::new(&self.database_name);
                let path: PathBuf = if path.is_absolute() { path.to_path_buf() } else { base_dir.join(path) };
                format!("sqlite://{}", path.display())
            }
            DatabaseType::PostgreSql => self.server_url("postgres", "5432"),
            DatabaseType::MySql => self.server_url("mysql", "3306"),
        }
    }

    fn server_url(&self, scheme: &str, default_port: &str) -> String {
        let mut userinfo = String::new();
        if !self.user_name.is_empty() {
            userinfo.push_str(&utf8_percent_encode(&self.user_name, USERINFO).to_string());
            if let Some(pw) = self.password.as_deref().filter(|p| !p.is_empty()) {
                userinfo.push(':');
                userinfo.push_str(&utf8_percent_encode(pw, USERINFO).to_string());
            }
            userinfo.push('@');
        }
        let host = if self.server_name.is_empty() { "127.0.0.1" } else { self.server_name.as_str() };
        let host = if host.contains(':') { host.to_string() } else { format!("{host}:{default_port}") };
        let db = utf8_percent_encode(&self.database_name, USERINFO);
        format!("{scheme}://{userinfo}{host}/{db}")
    }

    /// How to name the database in messages and logs: never the password.
    pub fn display(&self) -> String {
        match self.database_type {
            DatabaseType::Sqlite => format!("sqlite://{}", self.database_name),
            DatabaseType::PostgreSql | DatabaseType::MySql => {
                let scheme = if self.database_type == DatabaseType::MySql { "mysql" } else { "postgres" };
                let user = if self.user_name.is_empty() { String::new() } else { format!("{}@", self.user_name) };
                format!("{scheme}://{user}{}/{}", self.server_name, self.database_name)
            }
        }
    }

    /// Reads a connection URL as written in a config file (`sqlite://path`,
    /// `postgres://user:pw@host:port/db`, `mysql://...`). A relative SQLite
    /// path is made absolute against `base_dir`.
    pub fn from_url(url_text: &str, base_dir: &Path) -> Result<DatabaseSpec, String> {
        if let Some(rest) = url_text.strip_prefix("sqlite://").or_else(|| url_text.strip_prefix("sqlite:")) {
            if rest.is_empty() {
                return Err(format!("`{}` names no database file", hubsync_engines::redact_url(url_text)));
            }
            let path = Path::new(rest);
            let path = if path.is_absolute() { path.to_path_buf() } else { base_dir.join(path) };
            return Ok(DatabaseSpec {
                database_type: DatabaseType::Sqlite,
                server_name: String::new(),
                database_name: path.display().to_string(),
                user_name: String::new(),
                password: None,
            });
        }
        let parsed = url::Url::parse(url_text)
            .map_err(|e| format!("`{}` is not a database URL: {e}", hubsync_engines::redact_url(url_text)))?;
        let database_type = match parsed.scheme() {
            "postgres" | "postgresql" => DatabaseType::PostgreSql,
            "mysql" | "mariadb" => DatabaseType::MySql,
            other => {
                return Err(format!(
                    "unsupported database URL scheme `{other}`; use sqlite://, postgres:// or mysql://"
                ));
            }
        };
        let decode = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned();
        let host = parsed.host_str().unwrap_or_default();
        let server_name = match parsed.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_string(),
        };
        Ok(DatabaseSpec {
            database_type,
            server_name,
            database_name: decode(parsed.path().trim_start_matches('/')),
            user_name: decode(parsed.username()),
            password: parsed.password().map(decode),
        })
    }
}

/// One table of a group's sync schema.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TableSpec {
    /// The table.
    pub name: TableName,
    /// The synced columns; `None` syncs all. The key is always synced.
    pub columns: Option<Vec<String>>,
    /// Overrides the group's policy.
    pub policy: Option<ConflictPolicy>,
}

impl TableSpec {
    /// What the core's schema resolution takes.
    pub fn selection(&self) -> TableSelection {
        TableSelection { name: self.name.clone(), columns: self.columns.clone(), policy: self.policy }
    }
}

/// A sync group as the service keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GroupSpec {
    /// The group's name, unique in the metadata store.
    pub name: String,
    /// The hub.
    pub hub: DatabaseSpec,
    /// The conflict resolution policy.
    pub policy: ConflictPolicy,
    /// When it syncs by itself.
    pub schedule: Schedule,
    /// Rows per batch.
    pub batch_rows: usize,
    /// The sync schema; empty until tables are chosen (the group is then
    /// `NotReady` and never syncs).
    pub tables: Vec<TableSpec>,
    /// Whether conflicts are logged with both row images.
    pub conflict_logging: bool,
    /// Days logged conflicts are kept.
    pub conflict_retention_days: u32,
}

/// A member of a sync group as the service keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MemberSpec {
    /// The group it belongs to.
    pub group: String,
    /// Its name, unique in the group.
    pub name: String,
    /// Its database.
    pub database: DatabaseSpec,
    /// Which way changes flow.
    pub direction: Direction,
}

/// Checks a group or member name: 1 to [`MAX_NAME_LEN`] characters, letters,
/// digits, `-`, `_` and `.`, not starting with `.` or `-`. The names appear in
/// URLs, metric labels and the origin column of tracking tables, so they are
/// kept to characters that need no escaping anywhere.
pub fn check_name(what: &str, name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!("the {what} name is empty; give 1 to {MAX_NAME_LEN} characters"));
    }
    if name.chars().count() > MAX_NAME_LEN {
        return Err(format!(
            "the {what} name is {} characters long; at most {MAX_NAME_LEN} are allowed",
            name.chars().count()
        ));
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))) {
        return Err(format!("the {what} name `{name}` contains `{c}`; use only letters, digits, `-`, `_` and `.`"));
    }
    if name.starts_with(['.', '-']) {
        return Err(format!(
            "the {what} name `{name}` starts with `{}`; start it with a letter, a digit or `_`",
            &name[..1]
        ));
    }
    if name == hubsync_core::HUB_ORIGIN {
        return Err(format!("`{name}` is reserved (it names the hub in tracking tables); choose another {what} name"));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn urls_round_trip_with_escaped_passwords() {
        let spec = DatabaseSpec::from_url("postgres://bob:p%40ss%2Fw@db.local:6543/sales", Path::new("/")).unwrap();
        assert_eq!(spec.database_type, DatabaseType::PostgreSql);
        assert_eq!(spec.server_name, "db.local:6543");
        assert_eq!(spec.database_name, "sales");
        assert_eq!(spec.user_name, "bob");
        assert_eq!(spec.password.as_deref(), Some("p@ss/w"));
        assert_eq!(spec.url(Path::new("/")), "postgres://bob:p%40ss%2Fw@db.local:6543/sales");
        assert!(!spec.display().contains("p@ss"));
        let lite = DatabaseSpec::from_url("sqlite://data/hub.db", Path::new("/srv")).unwrap();
        assert_eq!(lite.database_name, "/srv/data/hub.db");
        assert_eq!(lite.url(Path::new("/elsewhere")), "sqlite:///srv/data/hub.db");
        let my = DatabaseSpec::from_url("mysql://root@127.0.0.1/test", Path::new("/")).unwrap();
        assert_eq!(my.url(Path::new("/")), "mysql://root@127.0.0.1:3306/test");
        assert!(DatabaseSpec::from_url("oracle://x/y", Path::new("/")).is_err());
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("sync group", "sales-eu_1.a").is_ok());
        assert!(check_name("sync group", "").is_err());
        assert!(check_name("sync group", "a b").unwrap_err().contains("` `"));
        assert!(check_name("sync group", &"x".repeat(129)).unwrap_err().contains("129"));
        assert!(check_name("sync member", ".x").is_err());
        assert!(check_name("sync member", "hub").is_err());
    }

    #[test]
    fn intervals_map_to_schedules() {
        assert_eq!(Schedule::from_interval(-1), Some(Schedule::Manual));
        assert_eq!(Schedule::from_interval(0), Some(Schedule::Continuous));
        assert_eq!(Schedule::from_interval(300), Some(Schedule::EverySeconds(300)));
        assert_eq!(Schedule::from_interval(-5), None);
        assert_eq!(Schedule::EverySeconds(1).interval(), 1);
    }
}

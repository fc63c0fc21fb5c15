//! How the API client commands print what the server answered: aligned
//! tables for people, or the API's JSON unchanged for scripts.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use super::text;
use crate::report::{TextTable, human_time};

/// The `--output` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Aligned tables.
    Table,
    /// The API's JSON, pretty-printed.
    Json,
}

/// Prints a JSON value, pretty.
pub fn print_json(v: &Value) {
    say!("{}", serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string()));
}

/// Prints a table, or a line saying there is nothing to show.
pub fn print_table(table: &TextTable, rows: usize, empty: &str) {
    if rows == 0 {
        say!("{empty}");
    } else {
        say!("{}", table.render(""));
    }
}

/// An RFC 3339 time from the API for people, `-` when absent.
pub fn when(rfc3339: &str) -> String {
    if rfc3339.is_empty() {
        return "-".into();
    }
    match humantime::parse_rfc3339_weak(rfc3339) {
        Ok(at) => {
            let micros = at.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_micros();
            human_time(i64::try_from(micros).unwrap_or(i64::MAX), SystemTime::now())
        }
        // A format this client does not know is still worth showing.
        Err(_) => rfc3339.to_string(),
    }
}

/// A group's `interval` in words: `manual`, `continuous`, `every 5m`.
pub fn interval(v: Option<&Value>) -> String {
    match v.and_then(Value::as_i64) {
        Some(-1) => "manual".into(),
        Some(0) => "continuous".into(),
        Some(n) if n > 0 => format!("every {}", humantime::format_duration(Duration::from_secs(n.unsigned_abs()))),
        Some(n) => n.to_string(),
        None => "-".into(),
    }
}

/// A database connection (a hub, or a member's properties) in one line,
/// never with a password (the API does not return it anyway).
pub fn database(props: &Value) -> String {
    let kind = text(props, "databaseType");
    let db = text(props, "databaseName");
    let server = text(props, "serverName");
    let user = text(props, "userName");
    let mut out = String::from(if kind.is_empty() { "?" } else { kind });
    out.push(' ');
    if !user.is_empty() {
        out.push_str(user);
        out.push('@');
    }
    if !server.is_empty() {
        out.push_str(server);
        out.push('/');
    }
    out.push_str(db);
    out
}

/// Shows `-` for an empty cell, so columns stay readable.
pub fn or_dash(s: &str) -> String {
    if s.is_empty() { "-".into() } else { s.to_string() }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn intervals_read_as_words() {
        assert_eq!(interval(Some(&json!(-1))), "manual");
        assert_eq!(interval(Some(&json!(0))), "continuous");
        assert_eq!(interval(Some(&json!(300))), "every 5m");
        assert_eq!(interval(None), "-");
    }

    #[test]
    fn databases_read_as_one_line() {
        let pg =
            json!({"databaseType": "PostgreSql", "serverName": "db:5432", "databaseName": "shop", "userName": "bob"});
        assert_eq!(database(&pg), "PostgreSql bob@db:5432/shop");
        assert_eq!(database(&json!({"databaseType": "Sqlite", "databaseName": "/srv/a.db"})), "Sqlite /srv/a.db");
    }

    #[test]
    fn times_from_the_api_read_well_and_unknown_ones_pass_through() {
        assert!(
            when("2026-11-18T11:03:40Z").starts_with("2026-11-18 11:03:40 UTC ("),
            "{}",
            when("2026-11-18T11:03:40Z")
        );
        assert_eq!(when(""), "-");
        assert_eq!(when("yesterday"), "yesterday");
    }
}

//! `hubsync logs GROUP [--type Error] [--since 1h]`.

use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::Context;
use reqwest::Method;
use serde_json::{Value, json};
use url::Url;

use super::output::{OutputFormat, or_dash, print_json, print_table, when};
use super::{ApiArgs, Client, items, text};
use crate::report::TextTable;

/// `hubsync logs`'s arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct LogsArgs {
    /// The group.
    pub group: String,
    /// Only entries of this type.
    #[arg(long = "type", value_enum, value_name = "TYPE", default_value_t = LogTypeArg::All)]
    pub log_type: LogTypeArg,
    /// Only entries from this long ago on (`30m`, `1h`, `2d`), or from this
    /// time (`2026-11-23T10:00:00Z`).
    #[arg(long, value_name = "AGE|TIME", value_parser = parse_since)]
    pub since: Option<SystemTime>,
    /// Only entries up to this long ago or this time.
    #[arg(long, value_name = "AGE|TIME", value_parser = parse_since)]
    pub until: Option<SystemTime>,
    /// Show at most this many entries (newest first), following the pages.
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub limit: usize,
    /// The server, the token and the output format.
    #[command(flatten)]
    pub api: ApiArgs,
}

/// The `--type` values (the API's log `type` filter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogTypeArg {
    /// Every entry.
    #[value(name = "All", alias = "all")]
    All,
    /// Failures.
    #[value(name = "Error", alias = "error")]
    Error,
    /// Things that need attention.
    #[value(name = "Warning", alias = "warning")]
    Warning,
    /// Successful syncs and operations.
    #[value(name = "Success", alias = "success")]
    Success,
}

impl LogTypeArg {
    fn api_name(self) -> &'static str {
        match self {
            LogTypeArg::All => "All",
            LogTypeArg::Error => "Error",
            LogTypeArg::Warning => "Warning",
            LogTypeArg::Success => "Success",
        }
    }
}

/// `1h` (that long ago) or an RFC 3339 time.
fn parse_since(text: &str) -> Result<SystemTime, String> {
    if let Ok(at) = humantime::parse_rfc3339_weak(text) {
        return Ok(at);
    }
    let age = humantime::parse_duration(text)
        .map_err(|_| format!("`{text}` is neither an age (`30m`, `1h`, `2d`) nor a time (`2026-11-23T10:00:00Z`)"))?;
    SystemTime::now().checked_sub(age).ok_or_else(|| format!("`{text}` reaches back before the epoch"))
}

/// Runs `hubsync logs`.
pub async fn run(args: LogsArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.api)?;
    let group = args.group.as_str();
    let mut url = client.url(&["syncGroups", group, "logs"]);
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("type", args.log_type.api_name());
        // Pages no larger than what is shown (the API allows 1 to 1000).
        q.append_pair("pageSize", &args.limit.clamp(1, 1000).to_string());
        if let Some(since) = args.since {
            q.append_pair("startTime", &humantime::format_rfc3339_seconds(since).to_string());
        }
        if let Some(until) = args.until {
            q.append_pair("endTime", &humantime::format_rfc3339_seconds(until).to_string());
        }
    }
    let mut entries: Vec<Value> = Vec::new();
    let mut more = false;
    let mut next = Some(url.clone());
    while let Some(page_url) = next.take() {
        let page = client.send(Method::GET, page_url, None).await?.body;
        for e in items(&page) {
            if entries.len() == args.limit {
                more = true;
                break;
            }
            entries.push(e.clone());
        }
        if let Some(link) = page.get("nextLink").and_then(Value::as_str).filter(|l| !l.is_empty()) {
            if entries.len() == args.limit {
                more = true;
            } else {
                next = Some(next_page(&client, &url, link)?);
            }
        }
    }
    if args.api.output == OutputFormat::Json {
        print_json(&json!({ "value": entries }));
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = TextTable::new(&["TIME", "TYPE", "SOURCE", "STATUS", "DETAILS"]);
    for e in &entries {
        // `logs` lists entries flat; tolerate them wrapped in `properties` too.
        let p = e.get("properties").unwrap_or(e);
        table.row(vec![
            when(text(p, "timestamp")),
            or_dash(text(p, "type")),
            or_dash(text(p, "source")),
            or_dash(text(p, "operationStatus")),
            text(p, "details").to_string(),
        ]);
    }
    print_table(&table, entries.len(), &format!("No log entries for group `{group}` match."));
    if more {
        say!("(showing the newest {}; pass --limit or --since to see more)", args.limit);
    }
    Ok(ExitCode::SUCCESS)
}

/// The next page's URL: `nextLink` is a link (absolute or relative to the
/// server) or, from a server that gives only the token, a continuation token
/// to pass back with the first page's query.
fn next_page(client: &Client, first: &Url, link: &str) -> anyhow::Result<Url> {
    if link.starts_with('/') || link.starts_with("http://") || link.starts_with("https://") {
        return Url::parse(client.server())
            .and_then(|base| base.join(link))
            .with_context(|| format!("the server gave a bad nextLink `{link}`"));
    }
    let mut url = first.clone();
    url.query_pairs_mut().append_pair("continuationToken", link);
    Ok(url)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn since_takes_an_age_or_a_time() {
        let an_hour_ago = parse_since("1h").unwrap();
        let age = SystemTime::now().duration_since(an_hour_ago).unwrap();
        assert!(age >= Duration::from_secs(3600) && age < Duration::from_secs(3700), "{age:?}");
        let at = parse_since("2026-11-23T10:00:00Z").unwrap();
        assert_eq!(humantime::format_rfc3339_seconds(at).to_string(), "2026-11-23T10:00:00Z");
        assert!(parse_since("soon").unwrap_err().contains("neither an age"));
    }

    #[test]
    fn next_links_and_bare_tokens_both_lead_to_the_next_page() {
        let args =
            ApiArgs { server: "http://127.0.0.1:7400".into(), token: None, ca_cert: None, output: OutputFormat::Table };
        let client = Client::new(&args).unwrap();
        let first = client.url(&["syncGroups", "g", "logs"]);
        let link = next_page(&client, &first, "/v1/syncGroups/g/logs?continuationToken=42").unwrap();
        assert_eq!(link.as_str(), "http://127.0.0.1:7400/v1/syncGroups/g/logs?continuationToken=42");
        let token = next_page(&client, &first, "42").unwrap();
        assert_eq!(token.as_str(), "http://127.0.0.1:7400/v1/syncGroups/g/logs?continuationToken=42");
    }
}

//! Naming the benchmark's databases on a server, and their URLs.

use anyhow::Context;

/// A prefix unique to this run, for the databases, publications and slots it
/// creates: `hubsync_bench_<pid>_<random>`. Everything named with it is
/// dropped at the end of the run.
pub(crate) fn run_id() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    format!("hubsync_bench_{}_{}", std::process::id(), nanos % 1_000_000)
}

/// `scheme://authority/database?query` with the database replaced; the
/// credentials, host and query parameters of the server URL are kept.
pub(crate) fn with_database(url: &str, database: &str) -> anyhow::Result<String> {
    let (scheme, rest) =
        url.split_once("://").with_context(|| format!("`{}` is not a URL", hubsync_engines::redact_url(url)))?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let query = tail.find('?').map_or("", |i| &tail[i..]);
    Ok(format!("{scheme}://{authority}/{database}{query}"))
}

/// The `host:port` of a URL, for messages and the reachability check.
pub(crate) fn host_port(url: &str, default_port: u16) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if host.contains(':') { host.to_string() } else { format!("{host}:{default_port}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_is_replaced_and_the_rest_kept() -> anyhow::Result<()> {
        assert_eq!(with_database("postgres://u:p@h:5432/test", "x")?, "postgres://u:p@h:5432/x");
        assert_eq!(with_database("mysql://root@h/test?ssl-mode=disabled", "x")?, "mysql://root@h/x?ssl-mode=disabled");
        assert_eq!(with_database("postgres://h", "x")?, "postgres://h/x");
        assert!(with_database("nonsense", "x").is_err());
        Ok(())
    }

    #[test]
    fn host_and_port_are_found() {
        assert_eq!(host_port("postgres://u:p@h:5433/test", 5432), "h:5433");
        assert_eq!(host_port("mysql://root@127.0.0.1/test", 3306), "127.0.0.1:3306");
    }
}

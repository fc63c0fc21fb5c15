//! The cost of change tracking to the application: pgbench's `simple-update`
//! script (one `UPDATE pgbench_accounts` by random key, a select and an
//! insert per transaction) with and without hubsync's triggers on
//! `pgbench_accounts`.

use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};

/// The pgbench binary: `HUBSYNC_PGBENCH`, else `pgbench` on the `PATH`.
fn binary() -> String {
    std::env::var("HUBSYNC_PGBENCH").unwrap_or_else(|_| "pgbench".into())
}

/// Clients and threads of every run.
pub(crate) const CLIENTS: u32 = 2;

/// The pgbench version line, or `None` when pgbench cannot be run.
pub(crate) fn version() -> Option<String> {
    let output = Command::new(binary()).arg("--version").stdin(Stdio::null()).output().ok()?;
    output.status.success().then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// `pgbench -i -s scale` into the database a URL names (libpq takes the URL
/// as its database argument).
pub(crate) fn init(url: &str, scale: u64) -> anyhow::Result<()> {
    let output = Command::new(binary())
        .args(["-i", "-q", "-s", &scale.to_string(), url])
        .stdin(Stdio::null())
        .output()
        .context("running pgbench -i")?;
    if !output.status.success() {
        bail!("pgbench -i failed ({}): {}", output.status, String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(())
}

/// What one pgbench run reported.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Run {
    /// Transactions processed.
    pub(crate) transactions: u64,
    /// Transactions per second (without the initial connection time).
    pub(crate) tps: f64,
}

impl Run {
    /// Several runs as one: their transactions together, at their mean tps.
    pub(crate) fn average(runs: &[Run]) -> Run {
        let tps = runs.iter().map(|r| r.tps).sum::<f64>() / runs.len().max(1) as f64;
        Run { transactions: runs.iter().map(|r| r.transactions).sum(), tps }
    }

    /// The time the transactions took at the reported rate, so a table line's
    /// rows per second is pgbench's tps.
    pub(crate) fn elapsed(&self) -> Duration {
        if self.tps > 0.0 { Duration::from_secs_f64(self.transactions as f64 / self.tps) } else { Duration::ZERO }
    }
}

/// `pgbench -n -c 2 -j 2 -T seconds -b simple-update`, with
/// `synchronous_commit=off` through `PGOPTIONS` when `async_commit`.
pub(crate) fn run(url: &str, seconds: u64, async_commit: bool) -> anyhow::Result<Run> {
    let mut command = Command::new(binary());
    let clients = CLIENTS.to_string();
    command.args(["-n", "-c", &clients, "-j", &clients, "-T", &seconds.to_string(), "-b", "simple-update", url]);
    if async_commit {
        command.env("PGOPTIONS", "-c synchronous_commit=off");
    }
    let output = command.stdin(Stdio::null()).output().context("running pgbench")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "pgbench failed ({}): {}{}",
            output.status,
            stdout.trim(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    parse(&stdout).with_context(|| format!("reading pgbench's output: {stdout}"))
}

/// Finds the transaction count and the tps in pgbench's report.
fn parse(report: &str) -> anyhow::Result<Run> {
    let transactions = report
        .lines()
        .find_map(|l| l.trim().strip_prefix("number of transactions actually processed:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.split('/').next())
        .and_then(|n| n.parse().ok())
        .context("no transaction count")?;
    let tps = report
        .lines()
        .filter_map(|l| l.trim().strip_prefix("tps = "))
        .find(|rest| !rest.contains("including"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .context("no tps")?;
    Ok(Run { transactions, tps })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_is_parsed() -> anyhow::Result<()> {
        let report = "transaction type: <builtin: simple update>\nscaling factor: 10\nnumber of clients: 2\n\
            number of transactions actually processed: 12345\nnumber of failed transactions: 0 (0.000%)\n\
            latency average = 1.620 ms\ninitial connection time = 3.456 ms\n\
            tps = 1234.567890 (without initial connection time)\n";
        let run = parse(report)?;
        assert_eq!(run.transactions, 12_345);
        assert!((run.tps - 1234.56789).abs() < 1e-9);
        assert!(parse("nothing").is_err());
        Ok(())
    }
}

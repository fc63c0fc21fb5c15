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

/// The tracked/untracked tps ratio over paired runs, each pair one
/// untracked and one tracked run next to each other in time.
///
/// On a disk whose `fsync` latency wanders over seconds, single runs of the
/// same side differ by more than the few percent tracking costs, and now and
/// then a pair falls to a third of the others' speed when the machine's
/// neighbours take the disk. Pairs of neighbouring runs share most of that
/// drift, and their median ignores the odd pair a neighbour disturbed; its
/// confidence interval is distribution-free, from the order statistics (the
/// number of ratios below the true median is binomial with p = ½).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct RatioEstimate {
    /// The median of the pairs' ratios.
    pub(crate) median: f64,
    /// The lower end of the confidence interval.
    pub(crate) low: f64,
    /// The upper end of the confidence interval.
    pub(crate) high: f64,
    /// The interval's coverage: at least 95 % from six pairs on; below six
    /// the interval is the whole range, with less.
    pub(crate) coverage: f64,
}

impl RatioEstimate {
    /// The estimate from the pairs' tracked/untracked ratios; `None` without
    /// any, or when one is not a finite number.
    pub(crate) fn of(ratios: &[f64]) -> Option<RatioEstimate> {
        if ratios.is_empty() || ratios.iter().any(|r| !r.is_finite()) {
            return None;
        }
        let mut sorted = ratios.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = if n % 2 == 1 { sorted[n / 2] } else { (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0 };
        // The interval [x(k), x(n+1-k)] misses the median with probability
        // 2·P(B ≤ k-1), B ~ Binomial(n, ½): the widest k (smallest
        // interval) whose miss stays within 5 %, at least the whole range.
        let below = |k: usize| -> f64 { (0..k).map(|i| binomial_half(n, i)).sum() };
        let k = (1..=n.div_ceil(2)).take_while(|&k| 2.0 * below(k) <= 0.05).last().unwrap_or(1);
        Some(RatioEstimate { median, low: sorted[k - 1], high: sorted[n - k], coverage: 1.0 - 2.0 * below(k) })
    }
}

/// P(B = i) for B ~ Binomial(n, ½).
fn binomial_half(n: usize, i: usize) -> f64 {
    // C(n, i) / 2^n, built up as a product to stay within f64 for any n.
    (0..i).fold(0.5f64.powi(i32::try_from(n).unwrap_or(i32::MAX)), |p, j| p * (n - j) as f64 / (j + 1) as f64)
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

    #[test]
    fn the_ratio_estimate_is_the_median_with_an_order_statistic_interval() {
        assert_eq!(RatioEstimate::of(&[]), None);
        assert_eq!(RatioEstimate::of(&[0.9, f64::NAN]), None);
        let one = RatioEstimate::of(&[0.93]).expect("one ratio");
        assert_eq!((one.median, one.low, one.high), (0.93, 0.93, 0.93));
        assert_eq!(one.coverage, 0.0, "one pair says nothing of the spread");
        // Below six pairs: the whole range, with less than 95 %.
        let three = RatioEstimate::of(&[1.06, 0.88, 0.98]).expect("three");
        assert_eq!((three.median, three.low, three.high), (0.98, 0.88, 1.06));
        assert!((three.coverage - 0.75).abs() < 1e-12, "{three:?}");
        // Ten pairs: the 2nd and 9th of them (97.9 %); one outlier moves
        // neither the median nor the interval.
        let ten = [0.89, 0.78, 0.83, 0.87, 0.89, 0.85, 0.81, 0.94, 0.31, 0.61];
        let estimate = RatioEstimate::of(&ten).expect("ten");
        assert!((estimate.median - 0.84).abs() < 1e-12, "{estimate:?}");
        assert_eq!((estimate.low, estimate.high), (0.61, 0.89));
        assert!((estimate.coverage - (1.0 - 22.0 / 1024.0)).abs() < 1e-12, "{estimate:?}");
        let mut outlier = ten;
        outlier[8] = 0.01;
        assert_eq!(RatioEstimate::of(&outlier), Some(estimate));
        // Even counts take the mean of the middle two.
        assert_eq!(RatioEstimate::of(&[0.5, 1.0, 0.9, 0.7]).map(|e| e.median), Some(0.8));
        assert!((binomial_half(10, 2) - 45.0 / 1024.0).abs() < 1e-15);
        assert!((0..=200).map(|i| binomial_half(200, i)).sum::<f64>() - 1.0 < 1e-9);
    }
}

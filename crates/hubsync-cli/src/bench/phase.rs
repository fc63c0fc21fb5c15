//! The timed phases, each run in a fresh `hubsync bench` process.
//!
//! A process's peak RSS includes whatever earlier work left on its heap (the
//! allocator keeps freed memory for reuse), so measuring a 4M-row sync after a
//! 1M-row sync in the same process would count the first one's leftovers. The
//! parent therefore re-executes its own binary for every timed phase, with the
//! hidden `--child-phase` flag; the child connects, resets the kernel's peak
//! counter just before the timed part, runs it, and prints one result line that
//! the parent parses. Each figure is then what a process doing only that work
//! needs, as `hubsync sync` would.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use hubsync_core::{
    ConflictPolicy, Direction, SessionOptions, SyncTable, TableName, TableSelection, provision_hub, provision_member,
    resolve_tables, sync_member,
};

use super::memory::{Peak, PeakProbe, cpu_time};
use super::progress::Progress;
use super::report::thousands;
use super::sqlite::{self, WriteSettings};
use super::{AnyEndpoint, ENGINE_SYNCHRONOUS};

/// The sync group and member names the benchmark uses.
const SCOPE: &str = "bench";
const MEMBER: &str = "member";

/// The prefix of the child's result line on standard output.
const RESULT_PREFIX: &str = "hubsync-bench-result";

/// A timed phase.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildPhase {
    /// Hub provisioning (timed alone), then member provisioning and the initial sync.
    InitialSync,
    /// The `INSERT … SELECT` baseline.
    Baseline,
    /// One sync of the updates already made on the hub.
    Incremental,
    /// Server engines: hub provisioning (timed alone), then member
    /// provisioning and the initial sync, between `--child-source` (the hub)
    /// and `--child-target` (the member).
    ServerInitialSync,
    /// Server engines: one sync of the updates already made on the hub.
    ServerIncremental,
    /// PostgreSQL baseline: `COPY … TO STDOUT` piped into `COPY … FROM STDIN`.
    PgCopy,
    /// MariaDB baseline: the source's rows inserted with multi-row `INSERT`s.
    MultiRowInsert,
}

impl ChildPhase {
    pub(crate) fn name(self) -> &'static str {
        match self {
            ChildPhase::InitialSync => "initial-sync",
            ChildPhase::Baseline => "baseline",
            ChildPhase::Incremental => "incremental",
            ChildPhase::ServerInitialSync => "server-initial-sync",
            ChildPhase::ServerIncremental => "server-incremental",
            ChildPhase::PgCopy => "pg-copy",
            ChildPhase::MultiRowInsert => "multi-row-insert",
        }
    }

    /// Whether the phase runs between database servers (URLs) rather than on
    /// SQLite files in `--dir`.
    pub(crate) fn is_server(self) -> bool {
        !matches!(self, ChildPhase::InitialSync | ChildPhase::Baseline | ChildPhase::Incremental)
    }
}

/// The database files of one table size.
#[derive(Debug, Clone)]
pub(crate) struct Files {
    pub(crate) hub: PathBuf,
    pub(crate) member: PathBuf,
    pub(crate) baseline: PathBuf,
}

impl Files {
    pub(crate) fn new(dir: &Path, label: &str) -> Self {
        Files {
            hub: dir.join(format!("hub-{label}.db")),
            member: dir.join(format!("member-{label}.db")),
            baseline: dir.join(format!("baseline-{label}.db")),
        }
    }
}

/// What a child measured.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PhaseResult {
    /// Rows the phase moved.
    pub(crate) rows: u64,
    /// Named timings: `hub_provisioning`, `member_provisioning`, `sync`, `copy`.
    pub(crate) timings: BTreeMap<String, Duration>,
    /// Peak RSS of the child during the timed part.
    pub(crate) peak: Peak,
    /// Whether the sync took the bulk path (initial sync only).
    pub(crate) bulk: bool,
    /// Extra facts for the report (`journal_mode`).
    pub(crate) facts: BTreeMap<String, String>,
}

impl PhaseResult {
    pub(crate) fn new(rows: u64, peak: Peak) -> Self {
        PhaseResult { rows, timings: BTreeMap::new(), peak, bulk: false, facts: BTreeMap::new() }
    }

    /// A timing the phase must have reported.
    pub(crate) fn timing(&self, name: &str) -> anyhow::Result<Duration> {
        self.timings.get(name).copied().with_context(|| format!("the benchmark phase reported no `{name}` timing"))
    }

    /// The result as one line of `key=value` fields (values hold no spaces).
    pub(crate) fn to_line(&self) -> String {
        let mut line = format!("{RESULT_PREFIX} rows={} bulk={}", self.rows, u8::from(self.bulk));
        match self.peak.bytes {
            Some(b) => {
                let _ = write!(line, " peak={b}");
            }
            None => line.push_str(" peak=none"),
        }
        let _ = write!(line, " reset={}", u8::from(self.peak.reset));
        for (name, d) in &self.timings {
            let _ = write!(line, " t.{name}={}", d.as_nanos());
        }
        for (name, value) in &self.facts {
            let _ = write!(line, " f.{name}={value}");
        }
        line
    }

    /// Parses [`PhaseResult::to_line`]'s output.
    pub(crate) fn parse(line: &str) -> anyhow::Result<Self> {
        let mut fields = line.split_whitespace();
        ensure!(fields.next() == Some(RESULT_PREFIX), "not a benchmark result line: {line}");
        let mut result = PhaseResult::new(0, Peak { bytes: None, reset: false });
        for field in fields {
            let (key, value) =
                field.split_once('=').with_context(|| format!("malformed field `{field}` in: {line}"))?;
            let number = || value.parse::<u64>().with_context(|| format!("malformed number in `{field}`"));
            match key {
                "rows" => result.rows = number()?,
                "bulk" => result.bulk = number()? == 1,
                "peak" => result.peak.bytes = if value == "none" { None } else { Some(number()?) },
                "reset" => result.peak.reset = number()? == 1,
                _ => {
                    if let Some(name) = key.strip_prefix("t.") {
                        result.timings.insert(name.to_string(), Duration::from_nanos(number()?));
                    } else if let Some(name) = key.strip_prefix("f.") {
                        result.facts.insert(name.to_string(), value.to_string());
                    } else {
                        bail!("unknown field `{key}` in: {line}");
                    }
                }
            }
        }
        Ok(result)
    }
}

/// How the parent starts a child.
#[derive(Debug, Clone)]
pub(crate) struct ChildSpec {
    pub(crate) phase: ChildPhase,
    pub(crate) dir: PathBuf,
    pub(crate) label: String,
    pub(crate) rows: u64,
    pub(crate) batch_rows: usize,
    /// Server phases: the source (hub) URL, the target (member) URL and the
    /// member's name in the session.
    pub(crate) server: Option<ServerTarget>,
}

/// The databases a server phase works on.
#[derive(Debug, Clone)]
pub(crate) struct ServerTarget {
    pub(crate) source: String,
    pub(crate) target: String,
    pub(crate) member: String,
}

/// Runs one phase in a fresh process of this binary and returns what it measured.
pub(crate) async fn run_child(spec: ChildSpec) -> anyhow::Result<PhaseResult> {
    tokio::task::spawn_blocking(move || run_child_blocking(&spec)).await.context("waiting for a benchmark phase")?
}

fn run_child_blocking(spec: &ChildSpec) -> anyhow::Result<PhaseResult> {
    let exe = std::env::current_exe().context("finding the hubsync binary to run the benchmark phase")?;
    let mut command = Command::new(&exe);
    if std::env::var_os("RUST_LOG").is_none() {
        // sqlx warns about every statement slower than a second, and a bulk
        // copy's single SELECT always is: keep the benchmark's output readable.
        command.env("RUST_LOG", "warn,sqlx::query=error");
    }
    command.arg("bench");
    if let Some(server) = &spec.server {
        // URLs may hold passwords: through the environment, not the command line.
        command.env("HUBSYNC_BENCH_CHILD_SOURCE", &server.source);
        command.env("HUBSYNC_BENCH_CHILD_TARGET", &server.target);
        command.args(["--child-member", &server.member]);
    }
    let output = command
        .arg("--dir")
        .arg(&spec.dir)
        .args(["--rows", &spec.rows.to_string(), "--batch-rows", &spec.batch_rows.to_string()])
        .args(["--child-phase", spec.phase.name(), "--child-label", &spec.label])
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", exe.display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!("the benchmark's {} phase failed ({}); its output: {}", spec.phase.name(), output.status, stdout.trim());
    }
    let line = stdout
        .lines()
        .find(|l| l.starts_with(RESULT_PREFIX))
        .with_context(|| format!("the benchmark's {} phase printed no result: {}", spec.phase.name(), stdout.trim()))?;
    PhaseResult::parse(line)
}

/// The child's side: runs the phase and prints the result line.
pub(crate) async fn child(
    phase: ChildPhase,
    dir: &Path,
    label: &str,
    rows: u64,
    batch_rows: usize,
) -> anyhow::Result<()> {
    let files = Files::new(dir, label);
    let result = match phase {
        ChildPhase::InitialSync => initial_sync(&files, dir, rows, batch_rows).await?,
        ChildPhase::Baseline => baseline(&files, rows).await?,
        ChildPhase::Incremental => incremental(&files, dir, rows, batch_rows).await?,
        other => bail!("the {} phase needs --child-source and --child-target", other.name()),
    };
    println!("{}", result.to_line());
    Ok(())
}

async fn initial_sync(files: &Files, dir: &Path, rows: u64, batch_rows: usize) -> anyhow::Result<PhaseResult> {
    let (hub, member, tables) = open(files, dir).await?;
    let size = thousands(rows);

    let spinner = Progress::spinner(format!("Provisioning the hub ({size} rows to backfill)"));
    let started = Instant::now();
    provision_hub(&hub, &tables).await.context("provisioning the hub")?;
    let hub_provisioning = started.elapsed();
    spinner.finish();

    let progress = Progress::rows(format!("Initial sync of {size} rows"), rows);
    let probe = PeakProbe::start();
    let cpu = CpuProbe::start();
    let started = Instant::now();
    let provisioned = provision_member(&member, &tables).await.context("provisioning the member")?;
    let member_provisioning = started.elapsed();
    let report = sync_member(&hub, &member, session(&tables, &progress, batch_rows)).await.context("initial sync")?;
    let sync = started.elapsed() - member_provisioning;
    let cpu = cpu.finish();
    let peak = probe.finish();
    progress.finish();
    ensure!(!provisioned.created.is_empty(), "the member table already existed; the benchmark needs an empty member");

    let mut result = PhaseResult::new(report.downloaded, peak);
    result.bulk = report.tables.iter().any(|t| t.bulk);
    result.timings.insert("hub_provisioning".into(), hub_provisioning);
    result.timings.insert("member_provisioning".into(), member_provisioning);
    result.timings.insert("sync".into(), sync);
    cpu.record(&mut result);
    close(hub).await;
    close(member).await;
    Ok(result)
}

async fn baseline(files: &Files, rows: u64) -> anyhow::Result<PhaseResult> {
    // The engine's journal mode persists in the member's file; `synchronous`
    // is per connection and taken from the engine's code.
    let settings = WriteSettings {
        journal_mode: sqlite::journal_mode(&files.member).await?,
        synchronous: ENGINE_SYNCHRONOUS.into(),
    };
    let spinner = Progress::spinner(format!("Baseline: INSERT … SELECT of {} rows", thousands(rows)));
    let probe = PeakProbe::start();
    let cpu = CpuProbe::start();
    let (copied, copy) = sqlite::baseline_copy(&files.hub, &files.baseline, &settings).await?;
    let cpu = cpu.finish();
    let peak = probe.finish();
    spinner.finish();
    let mut result = PhaseResult::new(copied, peak);
    result.timings.insert("copy".into(), copy);
    cpu.record(&mut result);
    result.facts.insert("journal_mode".into(), settings.journal_mode);
    result.facts.insert("synchronous".into(), settings.synchronous);
    Ok(result)
}

async fn incremental(files: &Files, dir: &Path, rows: u64, batch_rows: usize) -> anyhow::Result<PhaseResult> {
    let (hub, member, tables) = open(files, dir).await?;
    let progress = Progress::rows(format!("Incremental sync of {} updated rows", thousands(rows)), rows);
    let probe = PeakProbe::start();
    let cpu = CpuProbe::start();
    let started = Instant::now();
    let report =
        sync_member(&hub, &member, session(&tables, &progress, batch_rows)).await.context("incremental sync")?;
    let sync = started.elapsed();
    let cpu = cpu.finish();
    let peak = probe.finish();
    progress.finish();
    let mut result = PhaseResult::new(report.downloaded, peak);
    result.timings.insert("sync".into(), sync);
    cpu.record(&mut result);
    close(hub).await;
    close(member).await;
    Ok(result)
}

/// CPU time used by the whole process over the timed part: with wall time it
/// tells work from waiting (or from other processes taking the CPUs).
pub(crate) struct CpuProbe(Option<Duration>);

impl CpuProbe {
    pub(crate) fn start() -> Self {
        CpuProbe(cpu_time())
    }

    pub(crate) fn finish(self) -> Self {
        CpuProbe(self.0.zip(cpu_time()).map(|(start, end)| end.saturating_sub(start)))
    }

    pub(crate) fn record(&self, result: &mut PhaseResult) {
        if let Some(cpu) = self.0 {
            result.timings.insert("cpu".into(), cpu);
        }
    }
}

async fn open(files: &Files, dir: &Path) -> anyhow::Result<(AnyEndpoint, AnyEndpoint, Vec<SyncTable>)> {
    let hub = connect(&files.hub, dir).await?;
    let member = connect(&files.member, dir).await?;
    let selection = [TableSelection { name: TableName::new(sqlite::TABLE), columns: None, policy: None }];
    let tables = resolve_tables(&hub, &selection).await.context("reading the benchmark table's schema on the hub")?;
    Ok((hub, member, tables))
}

fn session<'a>(tables: &'a [SyncTable], observer: &'a Progress, batch_rows: usize) -> SessionOptions<'a> {
    SessionOptions {
        scope: SCOPE,
        member: MEMBER,
        direction: Direction::Bidirectional,
        policy: ConflictPolicy::HubWin,
        tables,
        batch_rows,
        cancel: None,
        observer,
    }
}

/// Opens a SQLite database file through the engine.
async fn connect(path: &Path, base_dir: &Path) -> anyhow::Result<AnyEndpoint> {
    let url = format!("sqlite://{}", path.display());
    hubsync_engines::connect(&url, base_dir).await.with_context(|| format!("connecting to {url}"))
}

/// Closes an endpoint's connections (the pool would otherwise close them in
/// the background, after the result is printed).
async fn close(endpoint: AnyEndpoint) {
    if let AnyEndpoint::Sqlite(sqlite) = &endpoint {
        sqlite.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_lines_round_trip() -> anyhow::Result<()> {
        let mut result = PhaseResult::new(1_000_000, Peak { bytes: Some(52_344 * 1024), reset: true });
        result.bulk = true;
        result.timings.insert("sync".into(), Duration::from_nanos(7_280_123_456));
        result.timings.insert("member_provisioning".into(), Duration::from_micros(1_500));
        result.facts.insert("journal_mode".into(), "wal".into());
        let line = result.to_line();
        assert!(line.starts_with("hubsync-bench-result rows=1000000 bulk=1"), "{line}");
        assert_eq!(PhaseResult::parse(&line)?, result);

        let unmeasured = PhaseResult::new(5, Peak { bytes: None, reset: false });
        assert_eq!(PhaseResult::parse(&unmeasured.to_line())?, unmeasured);
        Ok(())
    }

    #[test]
    fn malformed_result_lines_are_refused() {
        assert!(PhaseResult::parse("something else").is_err());
        assert!(PhaseResult::parse("hubsync-bench-result rows=x").is_err());
        assert!(PhaseResult::parse("hubsync-bench-result what=1").is_err());
        assert!(PhaseResult::parse("hubsync-bench-result rows").is_err());
    }
}

//! `hubsync bench`: how fast an engine syncs, next to what the database alone
//! does with the same rows in the same run, and how much memory a sync needs.
//!
//! `--engine sqlite` (the default) is described below; `--engine postgres`
//! and `--engine mysql` measure the server engines against COPY, logical
//! replication, pgbench and multi-row INSERT baselines (see [`server`]);
//! `--engine all` runs the three one after the other.
//!
//! One SQLite run, on SQLite files in a temporary directory (or `--dir`):
//!
//! 1. **Initial sync.** A hub table of `--rows` rows is synced to an empty
//!    member whose table does not exist yet: the member is auto-provisioned and
//!    filled by the engine's bulk path. Timed: member provisioning plus
//!    `sync_member` (the headline), with hub provisioning (which backfills one
//!    tracking row per existing row) timed on its own line. The baseline copies
//!    the same rows with one `INSERT INTO m.t SELECT * FROM main.t` over
//!    `ATTACH DATABASE` into a fresh file with the same table definition and the
//!    engine's journal mode and `synchronous` setting.
//! 2. **Incremental sync.** One `UPDATE` of `--updated` rows on the hub (the
//!    application's write, not timed), then one timed `sync_member`.
//! 3. **Peak memory.** The whole process's peak RSS during each timed phase
//!    (see [`memory`]), for the initial sync at `--rows` and again at
//!    `--scale-rows`, to show that it does not grow with the table. Each timed
//!    phase runs in a fresh `hubsync` process (see [`phase`]), so no phase's
//!    figure carries another's leftovers.
//!
//! After each sync the member's rows are compared with the hub's, so a fast
//! but wrong sync cannot pass.

mod memory;
mod phase;
mod progress;
mod report;
mod server;
mod sqlite;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail, ensure};
use hubsync_core::{ConflictPolicy, Direction};

use phase::{ChildPhase, ChildSpec, Files, run_child};
use progress::Progress;
use report::{Line, Machine, Outcome, rate, thousands};

type AnyEndpoint = hubsync_engines::AnyEndpoint;

/// The initial sync must reach this share of the baseline's rows per second.
const TARGET_VS_BASELINE: f64 = 0.5;
/// The incremental sync must move at least this many rows per second.
const TARGET_INCREMENTAL_ROWS_PER_SEC: f64 = 100_000.0;
/// The initial sync's peak RSS must stay below this many bytes (100 MB).
const TARGET_PEAK_BYTES: u64 = 100_000_000;

/// The `synchronous` setting the SQLite engine's connections write with
/// (`SqliteEndpoint::open` in `crates/hubsync-engines/src/sqlite/mod.rs`). It is
/// per connection, so it cannot be read back from the files: keep the two
/// equal. The journal mode, which persists in the file, is read from the
/// member's file.
const ENGINE_SYNCHRONOUS: &str = "normal";

/// Measures initial and incremental sync speed and peak memory on SQLite (or,
/// with `--engine`, PostgreSQL and MariaDB), next to a baseline of the
/// database alone from the same run.
#[derive(clap::Args, Debug)]
pub struct BenchOptions {
    /// Rows of the initial sync, every engine [default: 1000000; 100000 with --quick].
    #[arg(long, value_name = "N")]
    pub rows: Option<u64>,

    /// Rows of a second initial sync, to show that peak memory does not grow
    /// with the table; 0 skips it; SQLite only [default: 4000000; 400000 with --quick].
    #[arg(long, value_name = "N")]
    pub scale_rows: Option<u64>,

    /// Rows updated on the hub before the incremental sync (SQLite,
    /// PostgreSQL); 0 skips it [default: 100000; 10000 with --quick; never
    /// more than --rows].
    #[arg(long, value_name = "N")]
    pub updated: Option<u64>,

    /// A smoke run with small sizes (explicit sizes still win).
    #[arg(long)]
    pub quick: bool,

    /// Directory for the database files, kept after the run [default: a new
    /// temporary directory, removed afterwards].
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,

    /// Rows per sync batch (as `batch_rows` in the config file).
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub batch_rows: usize,

    /// Exit with an error when a target is missed.
    #[arg(long)]
    pub fail_on_miss: bool,

    /// Internal: run one timed phase in this process and print its result.
    #[arg(long, value_enum, hide = true, requires = "dir")]
    pub child_phase: Option<ChildPhase>,

    /// Internal: which size's files the child phase uses.
    #[arg(long, hide = true, default_value = "main")]
    pub child_label: String,

    /// Which engines to measure: `sqlite` (files), `postgres` (PostgreSQL →
    /// PostgreSQL, against COPY, logical replication and pgbench), `mysql`
    /// (MariaDB → MariaDB, and PostgreSQL → MariaDB when PostgreSQL is
    /// reachable, against multi-row INSERTs), `continuous` (`hubsync serve`
    /// with interval 0: propagation latency and catch-up after pgbench), or `all`.
    #[arg(long, value_enum, default_value_t = EngineChoice::Sqlite)]
    pub engine: EngineChoice,

    /// The PostgreSQL server (an existing database to connect to; the bench
    /// creates its own databases beside it and drops them afterwards).
    #[arg(long, value_name = "URL", default_value = "postgres://postgres@127.0.0.1:5432/test")]
    pub postgres_url: String,

    /// The MySQL/MariaDB server (an existing database to connect to; the bench
    /// creates its own databases beside it and drops them afterwards).
    #[arg(long, value_name = "URL", default_value = "mysql://root@127.0.0.1:3306/test")]
    pub mysql_url: String,

    /// Rounds of the PostgreSQL incremental sync and of logical replication's
    /// apply of the same update, alternating; their medians are compared
    /// [default: 3; 1 with --quick].
    #[arg(long, value_name = "N")]
    pub incremental_rounds: Option<usize>,

    /// Seconds of each pgbench run [default: 5; 2 with --quick].
    #[arg(long, value_name = "S")]
    pub pgbench_seconds: Option<u64>,

    /// Rounds of one untracked and one tracked pgbench run each, in
    /// alternating order [default: 12; 1 with --quick].
    #[arg(long, value_name = "N")]
    pub pgbench_rounds: Option<usize>,

    /// pgbench's scale factor (100,000 accounts each) [default: 10; 1 with --quick].
    #[arg(long, value_name = "N")]
    pub pgbench_scale: Option<u64>,

    /// Internal: the source (hub) database URL of a server phase (passed in
    /// the environment, so a password in it does not show in `ps`).
    #[arg(long, hide = true, env = "HUBSYNC_BENCH_CHILD_SOURCE")]
    pub child_source: Option<String>,

    /// Internal: the target (member) database URL of a server phase.
    #[arg(long, hide = true, env = "HUBSYNC_BENCH_CHILD_TARGET")]
    pub child_target: Option<String>,

    /// Internal: the member's name in a server phase's session.
    #[arg(long, hide = true, default_value = "member")]
    pub child_member: String,
}

/// The engines `hubsync bench` measures.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineChoice {
    /// SQLite files.
    Sqlite,
    /// PostgreSQL → PostgreSQL.
    Postgres,
    /// MariaDB → MariaDB and PostgreSQL → MariaDB.
    Mysql,
    /// `hubsync serve` in continuous mode, PostgreSQL → PostgreSQL: commit-to-member
    /// latency and catch-up after pgbench.
    Continuous,
    /// All of the above, one after the other.
    All,
}

/// The sizes of one run, after `--quick` and the explicit flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sizes {
    rows: u64,
    scale_rows: u64,
    updated: u64,
}

impl BenchOptions {
    fn sizes(&self) -> anyhow::Result<Sizes> {
        let (rows, scale_rows, updated) =
            if self.quick { (100_000, 400_000, 10_000) } else { (1_000_000, 4_000_000, 100_000) };
        let rows = self.rows.unwrap_or(rows);
        let sizes = Sizes {
            rows,
            scale_rows: self.scale_rows.unwrap_or(scale_rows),
            // A default never exceeds the rows there are; an explicit value must not.
            updated: self.updated.unwrap_or(updated.min(rows)),
        };
        ensure!(sizes.rows > 0, "--rows must be at least 1");
        ensure!(
            sizes.updated <= sizes.rows,
            "--updated ({}) cannot exceed --rows ({}): the update changes existing rows",
            sizes.updated,
            sizes.rows
        );
        ensure!(self.batch_rows > 0, "--batch-rows must be at least 1");
        Ok(sizes)
    }
}

/// Runs the benchmark and prints the machine, the settings and the results table.
pub async fn run(opts: BenchOptions) -> anyhow::Result<()> {
    if let (Some(child), Some(dir)) = (opts.child_phase, &opts.dir) {
        if child.is_server() {
            return server::child(child, dir, &opts).await;
        }
        return phase::child(child, dir, &opts.child_label, opts.rows.unwrap_or(0), opts.batch_rows.max(1)).await;
    }
    let sizes = opts.sizes()?;
    let work = WorkDir::new(opts.dir.as_deref())?;
    let mut outcomes = Vec::new();
    if matches!(opts.engine, EngineChoice::Sqlite | EngineChoice::All) {
        outcomes.extend(run_sqlite(&opts, sizes, &work).await?);
    }
    if matches!(opts.engine, EngineChoice::Postgres | EngineChoice::All) {
        if opts.engine == EngineChoice::All {
            println!();
        }
        outcomes.extend(server::run_postgres(&opts, sizes, &work.path).await?);
    }
    if matches!(opts.engine, EngineChoice::Mysql | EngineChoice::All) {
        if opts.engine == EngineChoice::All {
            println!();
        }
        outcomes.extend(server::run_mysql(&opts, sizes, &work.path).await?);
    }
    if matches!(opts.engine, EngineChoice::Continuous | EngineChoice::All) {
        if opts.engine == EngineChoice::All {
            println!();
        }
        outcomes.extend(server::continuous::run(&opts, &work.path, sizes.updated.max(1)).await?);
    }
    let missed = outcomes.iter().filter(|o| **o == Outcome::Miss).count();
    if opts.fail_on_miss && missed > 0 {
        bail!("{missed} of {} targets missed", outcomes.len());
    }
    Ok(())
}

/// The SQLite part of the run; returns the targets' outcomes.
async fn run_sqlite(opts: &BenchOptions, sizes: Sizes, work: &WorkDir) -> anyhow::Result<Vec<Outcome>> {
    let machine = Machine::detect();
    let sqlite_version = sqlite::version().await?;

    println!("hubsync bench: SQLite engine, {}", report::today_utc());
    println!("machine: {}", machine.describe());
    println!("SQLite:  {sqlite_version} (bundled, the same library for the engine and the baseline)");
    println!("files:   {}{}", work.path.display(), if work.keep { "" } else { " (removed afterwards)" });
    println!(
        "sync:    batch {} rows, direction {}, policy {}, table `{}`: {}",
        thousands(opts.batch_rows as u64),
        Direction::Bidirectional,
        ConflictPolicy::HubWin,
        sqlite::TABLE,
        sqlite::TABLE_DDL
    );
    println!();

    let mut bench =
        Bench { dir: &work.path, keep: work.keep, batch_rows: opts.batch_rows, lines: Vec::new(), notes: Vec::new() };
    bench.size("main", sizes.rows, sizes.updated).await?;
    if sizes.scale_rows > 0 {
        bench.size("scale", sizes.scale_rows, 0).await?;
        bench.compare_peaks(sizes.rows, sizes.scale_rows);
    }

    println!();
    print!("{}", report::render_table(&bench.lines));
    println!();
    for note in &bench.notes {
        println!("{note}");
    }
    let checks: Vec<Outcome> = bench.lines.iter().flat_map(|l| l.checks.iter().map(|(_, o)| *o)).collect();
    let met = checks.iter().filter(|o| **o == Outcome::Pass).count();
    println!(
        "Targets: {met} of {} met (initial sync ≥ {:.0} % of the baseline's rows/s; incremental ≥ {} rows/s; \
         peak RSS during the initial sync < {} MB).",
        checks.len(),
        TARGET_VS_BASELINE * 100.0,
        thousands(TARGET_INCREMENTAL_ROWS_PER_SEC as u64),
        TARGET_PEAK_BYTES / 1_000_000
    );
    Ok(checks)
}

/// The state of one benchmark run.
struct Bench<'a> {
    dir: &'a Path,
    keep: bool,
    batch_rows: usize,
    lines: Vec<Line>,
    notes: Vec<String>,
}

impl Bench<'_> {
    fn spec(&self, phase: ChildPhase, label: &str, rows: u64) -> ChildSpec {
        ChildSpec {
            phase,
            dir: self.dir.to_path_buf(),
            label: label.to_string(),
            rows,
            batch_rows: self.batch_rows,
            server: None,
        }
    }

    /// Every phase at one table size: generate the hub's rows, then (each timed
    /// in its own process) the initial sync, the baseline and, when
    /// `updated > 0`, the incremental sync.
    async fn size(&mut self, label: &str, rows: u64, updated: u64) -> anyhow::Result<()> {
        let files = Files::new(self.dir, label);
        for path in [&files.hub, &files.member, &files.baseline] {
            sqlite::remove_database(path)?;
        }
        let size = thousands(rows);

        let spinner = Progress::spinner(format!("Generating {size} hub rows"));
        let started = Instant::now();
        sqlite::generate_hub(&files.hub, rows).await?;
        spinner.finish();
        println!("Generated {size} hub rows in {:.2} s (setup, not measured).", started.elapsed().as_secs_f64());

        let initial = run_child(self.spec(ChildPhase::InitialSync, label, rows)).await?;
        let hub_provisioning = initial.timing("hub_provisioning")?;
        let member_provisioning = initial.timing("member_provisioning")?;
        let sync = initial.timing("sync")?;
        println!("Provisioned the hub in {:.2} s.", hub_provisioning.as_secs_f64());
        let verified = sqlite::verify_same_rows(&files.hub, &files.member).await.context("after the initial sync")?;
        println!(
            "Initial sync of {size} rows: {:.2} s (member provisioning {:.2} s + sync {:.2} s); member verified ({} rows).",
            (member_provisioning + sync).as_secs_f64(),
            member_provisioning.as_secs_f64(),
            sync.as_secs_f64(),
            thousands(verified)
        );
        if !initial.bulk {
            self.notes.push(format!("Note: the {size}-row initial sync did not take the bulk path."));
        }
        if initial.rows != rows {
            self.notes
                .push(format!("Note: the {size}-row initial sync reported {} rows moved.", thousands(initial.rows)));
        }

        // The baseline runs after the sync so it can copy the journal mode the
        // engine gave the member's file.
        let baseline = run_child(self.spec(ChildPhase::Baseline, label, rows)).await?;
        ensure!(baseline.rows == rows, "the baseline copied {} rows instead of {rows}", baseline.rows);
        let copy = baseline.timing("copy")?;
        let journal_mode = baseline.facts.get("journal_mode").map_or("?", String::as_str);
        let synchronous = baseline.facts.get("synchronous").map_or("?", String::as_str);
        println!(
            "Baseline of {size} rows: {:.2} s (journal_mode={journal_mode}, synchronous={synchronous}).",
            copy.as_secs_f64()
        );
        if label == "main" {
            self.notes.push(format!(
                "Baseline: `insert into m.t select * from main.t` over `attach database`, into a fresh file with the \
                 hub's table definition, journal_mode={journal_mode} and synchronous={synchronous} (the engine's \
                 settings). Each timed phase runs in a fresh hubsync process; peak RSS is that process's VmHWM, reset \
                 just before the timed part, and CPU s its user and system time over it (all threads)."
            ));
            if let (Some(hub_sql), Some(member_sql)) =
                (sqlite::table_sql(&files.hub).await?, sqlite::table_sql(&files.member).await?)
                && normalize_sql(&hub_sql) != normalize_sql(&member_sql)
            {
                self.notes.push(format!("The engine created the member table as: {member_sql}"));
            }
        }
        let baseline_rate = rate(rows, copy);

        let mut line = Line::info(format!("baseline INSERT … SELECT ({label})"), rows, copy);
        line.vs_baseline = Some(1.0);
        line.cpu = baseline.timings.get("cpu").copied();
        line.peak = Some(baseline.peak);
        self.lines.push(line);

        let mut line = Line::info(format!("hub provisioning, backfill ({label})"), rows, hub_provisioning);
        line.vs_baseline = Some(rate(rows, hub_provisioning) / baseline_rate);
        self.lines.push(line);

        let mut line = Line::info(format!("sync_member only ({label})"), rows, sync);
        line.vs_baseline = Some(rate(rows, sync) / baseline_rate);
        self.lines.push(line);

        let total = member_provisioning + sync;
        let ratio = rate(rows, total) / baseline_rate;
        let mut line = Line::info(format!("initial sync: provision member + sync ({label})"), rows, total);
        line.vs_baseline = Some(ratio);
        line.cpu = initial.timings.get("cpu").copied();
        line.peak = Some(initial.peak);
        line.target = Some(format!(
            "≥ {:.0} % of baseline, peak < {} MB",
            TARGET_VS_BASELINE * 100.0,
            TARGET_PEAK_BYTES / 1_000_000
        ));
        let memory_ok = match (initial.peak.bytes, initial.peak.reset) {
            (Some(b), true) => Outcome::from_met(b < TARGET_PEAK_BYTES),
            _ => {
                self.notes.push("Note: the peak RSS could not be measured per phase on this system.".into());
                Outcome::Miss
            }
        };
        line.checks = vec![("speed", Outcome::from_met(ratio >= TARGET_VS_BASELINE)), ("memory", memory_ok)];
        self.lines.push(line);

        if updated > 0 {
            self.incremental(&files, label, updated).await?;
        }
        if !self.keep {
            for path in [&files.hub, &files.member, &files.baseline] {
                sqlite::remove_database(path)?;
            }
        }
        Ok(())
    }

    /// Updates `updated` rows on the hub (the application's write, not timed),
    /// then times one sync in its own process.
    async fn incremental(&mut self, files: &Files, label: &str, updated: u64) -> anyhow::Result<()> {
        let size = thousands(updated);
        let changed = sqlite::update_hub(&files.hub, updated).await?;
        ensure!(changed == updated, "the update changed {changed} rows instead of {updated}");
        let result = run_child(self.spec(ChildPhase::Incremental, label, updated)).await?;
        let elapsed = result.timing("sync")?;
        sqlite::verify_same_rows(&files.hub, &files.member).await.context("after the incremental sync")?;
        println!("Incremental sync of {size} updated rows: {:.2} s; member verified.", elapsed.as_secs_f64());
        if result.rows != updated {
            self.notes.push(format!(
                "Note: the incremental sync moved {} rows for {size} updated rows.",
                thousands(result.rows)
            ));
        }
        let mut line = Line::info("incremental sync (download of updates)", updated, elapsed);
        line.cpu = result.timings.get("cpu").copied();
        line.peak = Some(result.peak);
        line.target = Some(format!("≥ {} rows/s", thousands(TARGET_INCREMENTAL_ROWS_PER_SEC as u64)));
        line.checks = vec![("speed", Outcome::from_met(rate(updated, elapsed) >= TARGET_INCREMENTAL_ROWS_PER_SEC))];
        self.lines.push(line);
        Ok(())
    }

    /// Says how the initial sync's peak RSS changed from `rows` to `scale_rows`.
    fn compare_peaks(&mut self, rows: u64, scale_rows: u64) {
        let peaks: Vec<u64> = self
            .lines
            .iter()
            .filter(|l| l.phase.starts_with("initial sync"))
            .filter_map(|l| l.peak.and_then(|p| p.bytes))
            .collect();
        if let [small, large] = peaks[..] {
            self.notes.push(format!(
                "Peak RSS of the initial sync: {:.1} MB at {} rows, {:.1} MB at {} rows ({:+.1} MB for {:.0}× the rows).",
                small as f64 / 1e6,
                thousands(rows),
                large as f64 / 1e6,
                thousands(scale_rows),
                (large as f64 - small as f64) / 1e6,
                scale_rows as f64 / rows as f64
            ));
        }
    }
}

/// Lowercase with single spaces and no quotes, to compare table definitions.
fn normalize_sql(sql: &str) -> String {
    sql.replace(['"', '`', '[', ']'], "").split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}

/// The directory holding the database files: `--dir` (kept), or a new
/// temporary directory removed when the run ends.
struct WorkDir {
    path: PathBuf,
    keep: bool,
}

impl WorkDir {
    fn new(dir: Option<&Path>) -> anyhow::Result<Self> {
        match dir {
            Some(dir) => {
                std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
                let path = std::path::absolute(dir).with_context(|| format!("resolving {}", dir.display()))?;
                Ok(WorkDir { path, keep: true })
            }
            None => {
                let nanos =
                    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
                let path = std::env::temp_dir().join(format!("hubsync-bench-{}-{nanos}", std::process::id()));
                std::fs::create_dir(&path).with_context(|| format!("creating {}", path.display()))?;
                Ok(WorkDir { path, keep: false })
            }
        }
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if !self.keep
            && let Err(e) = std::fs::remove_dir_all(&self.path)
        {
            tracing::warn!(dir = %self.path.display(), error = %e, "Could not remove the benchmark directory.");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(quick: bool) -> BenchOptions {
        BenchOptions {
            rows: None,
            scale_rows: None,
            updated: None,
            quick,
            dir: None,
            batch_rows: 10_000,
            fail_on_miss: false,
            child_phase: None,
            child_label: "main".into(),
            engine: EngineChoice::Sqlite,
            postgres_url: String::new(),
            mysql_url: String::new(),
            pgbench_seconds: None,
            pgbench_rounds: None,
            incremental_rounds: None,
            pgbench_scale: None,
            child_source: None,
            child_target: None,
            child_member: "member".into(),
        }
    }

    #[test]
    fn quick_shrinks_the_defaults_and_explicit_sizes_win() -> anyhow::Result<()> {
        assert_eq!(options(false).sizes()?, Sizes { rows: 1_000_000, scale_rows: 4_000_000, updated: 100_000 });
        assert_eq!(options(true).sizes()?, Sizes { rows: 100_000, scale_rows: 400_000, updated: 10_000 });
        let opts = BenchOptions { rows: Some(20_000), updated: Some(5_000), ..options(true) };
        assert_eq!(opts.sizes()?, Sizes { rows: 20_000, scale_rows: 400_000, updated: 5_000 });
        Ok(())
    }

    #[test]
    fn updating_more_rows_than_exist_is_refused() {
        let opts = BenchOptions { rows: Some(10), updated: Some(11), ..options(false) };
        assert!(opts.sizes().is_err_and(|e| e.to_string().contains("--updated")));
    }

    #[test]
    fn table_definitions_compare_without_quotes_or_case() {
        assert_eq!(normalize_sql("CREATE TABLE \"t\" (\"id\"  INTEGER)"), normalize_sql("create table t (id integer)"));
    }
}

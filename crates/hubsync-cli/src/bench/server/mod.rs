//! `hubsync bench --engine postgres|mysql`: the server engines, each figure
//! measured next to its baseline in the same run, on databases the bench
//! creates beside the one `--postgres-url` / `--mysql-url` names and drops
//! afterwards.
//!
//! PostgreSQL (see [`run_postgres`]):
//! - **Initial sync** of `--rows` rows into an empty member database, against
//!   `COPY (select …) TO STDOUT` piped into `COPY t FROM STDIN` in the bench
//!   process between the same kind of databases.
//! - **Bulk `UPDATE`** of `--updated` rows, on the tracked hub and on an
//!   untracked copy of it.
//! - **Incremental sync** of that update, against PostgreSQL's logical
//!   replication applying the same update between two other copies (see
//!   [`replication`]); needs `wal_level = logical`, else that baseline is
//!   reported as not measured, with what to do.
//! - **pgbench** `simple-update`, untracked and with hubsync's triggers on
//!   `pgbench_accounts`, at default durability and with
//!   `synchronous_commit=off` (see [`pgbench`]).
//!
//! MySQL/MariaDB (see [`run_mysql`]): initial syncs MariaDB → MariaDB and
//! PostgreSQL → MariaDB against multi-row `INSERT`s of the same rows.
//!
//! Every sync and every copying baseline is verified afterwards (row count and
//! a checksum of every row, see [`rows`]). Each timed sync and copy runs in a
//! fresh `hubsync` process, so its peak RSS is its own.

mod child;
pub(crate) mod continuous;
mod my;
mod pg;
mod pgbench;
mod replication;
mod rows;
mod url;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use hubsync_core::{ConflictPolicy, Direction, Endpoint, TableName, TableSelection, provision_hub, resolve_tables};
use hubsync_engines::AnyEndpoint;
use sqlx::Connection;
use sqlx::mysql::MySqlConnection;
use sqlx::postgres::PgConnection;

use super::phase::{ChildPhase, ChildSpec, PhaseResult, ServerTarget, run_child};
use super::progress::Progress;
use super::report::{self, Line, Machine, Outcome, rate, thousands};
use super::{BenchOptions, Sizes};
use rows::Checksum;

/// The sync group name the benchmark uses.
pub(crate) const SCOPE: &str = "bench";
/// The benchmark table.
pub(crate) const TABLE: &str = "t";

/// The PostgreSQL initial sync must reach this share of the `COPY` pipe's rows/s.
const TARGET_VS_COPY: f64 = 0.6;
/// The incremental sync must reach this share of logical replication's rows/s.
const TARGET_VS_REPLICATION: f64 = 1.0;
/// Tracked pgbench tps as a share of untracked, at default durability…
const TARGET_PGBENCH: f64 = 0.9;
/// … and with `synchronous_commit=off`.
const TARGET_PGBENCH_ASYNC: f64 = 0.65;
/// The tracked bulk `UPDATE` may take at most this many times the untracked one.
const TARGET_UPDATE_FACTOR: f64 = 2.0;
/// Every timed phase's peak RSS must stay below this many bytes (150 MB).
const TARGET_PEAK_BYTES: u64 = 150_000_000;

/// The child's side of a server phase.
pub(crate) async fn child(phase: ChildPhase, dir: &Path, opts: &BenchOptions) -> anyhow::Result<()> {
    let source = opts.child_source.as_deref().context("a server phase needs --child-source")?;
    let target = opts.child_target.as_deref().context("a server phase needs --child-target")?;
    let rows = opts.rows.unwrap_or(0);
    child::run(phase, dir, source, target, &opts.child_member, rows, opts.batch_rows.max(1)).await
}

/// The lines and notes of one engine's part of the run.
struct Section {
    dir: PathBuf,
    batch_rows: usize,
    lines: Vec<Line>,
    notes: Vec<String>,
}

impl Section {
    fn new(dir: &Path, batch_rows: usize) -> Self {
        Section { dir: dir.to_path_buf(), batch_rows, lines: Vec::new(), notes: Vec::new() }
    }

    /// Runs one phase in a fresh process between two databases.
    async fn child(
        &self,
        phase: ChildPhase,
        source: &str,
        target: &str,
        member: &str,
        rows: u64,
    ) -> anyhow::Result<PhaseResult> {
        run_child(ChildSpec {
            phase,
            dir: self.dir.clone(),
            label: "server".into(),
            rows,
            batch_rows: self.batch_rows,
            server: Some(ServerTarget { source: source.into(), target: target.into(), member: member.into() }),
        })
        .await
    }

    /// Prints the table, the notes and the targets line; returns the outcomes.
    fn finish(self, targets: &str) -> Vec<Outcome> {
        println!();
        print!("{}", report::render_table(&self.lines));
        println!();
        for note in &self.notes {
            println!("{note}");
        }
        let checks: Vec<Outcome> = self.lines.iter().flat_map(|l| l.checks.iter().map(|(_, o)| *o)).collect();
        let met = checks.iter().filter(|o| **o == Outcome::Pass).count();
        let unmeasured = checks.iter().filter(|o| **o == Outcome::NotMeasured).count();
        let unmeasured = if unmeasured > 0 { format!(", {unmeasured} not measured") } else { String::new() };
        println!("Targets: {met} of {} met{unmeasured} ({targets}).", checks.len());
        checks
    }

    /// The initial sync's lines: the baseline, hub provisioning, the sync
    /// alone, and member provisioning plus sync (with its targets).
    fn initial_lines(
        &mut self,
        pair: &str,
        baseline_name: &str,
        rows: u64,
        initial: &PhaseResult,
        baseline: &PhaseResult,
        speed_target: Option<f64>,
    ) -> anyhow::Result<()> {
        let copy = baseline.timing("copy")?;
        let baseline_rate = rate(rows, copy);
        let mut line = Line::info(format!("baseline {baseline_name} ({pair})"), rows, copy);
        line.vs_baseline = Some(1.0);
        line.cpu = baseline.timings.get("cpu").copied();
        line.peak = Some(baseline.peak);
        self.lines.push(line);

        let hub_provisioning = initial.timing("hub_provisioning")?;
        let mut line = Line::info(format!("hub provisioning, backfill ({pair})"), rows, hub_provisioning);
        line.vs_baseline = Some(rate(rows, hub_provisioning) / baseline_rate);
        self.lines.push(line);

        let sync = initial.timing("sync")?;
        let mut line = Line::info(format!("sync_member only ({pair})"), rows, sync);
        line.vs_baseline = Some(rate(rows, sync) / baseline_rate);
        self.lines.push(line);

        let total = initial.timing("member_provisioning")? + sync;
        let ratio = rate(rows, total) / baseline_rate;
        let mut line = Line::info(format!("initial sync: provision member + sync ({pair})"), rows, total);
        line.vs_baseline = Some(ratio);
        line.cpu = initial.timings.get("cpu").copied();
        line.peak = Some(initial.peak);
        let memory = memory_check(initial, &mut self.notes);
        match speed_target {
            Some(target) => {
                line.target = Some(format!("≥ {:.0} % of baseline, peak < {} MB", target * 100.0, peak_mb()));
                line.checks = vec![("speed", Outcome::from_met(ratio >= target)), ("memory", memory)];
            }
            None => {
                line.target = Some(format!("peak < {} MB", peak_mb()));
                line.checks = vec![("memory", memory)];
            }
        }
        self.lines.push(line);
        if !initial.bulk {
            self.notes.push(format!("Note: the {pair} initial sync did not take the bulk path."));
        }
        if initial.rows != rows {
            self.notes.push(format!(
                "Note: the {pair} initial sync reported {} rows moved for {} rows.",
                thousands(initial.rows),
                thousands(rows)
            ));
        }
        Ok(())
    }
}

fn peak_mb() -> u64 {
    TARGET_PEAK_BYTES / 1_000_000
}

/// Whether a child's peak RSS met the memory target.
fn memory_check(result: &PhaseResult, notes: &mut Vec<String>) -> Outcome {
    match (result.peak.bytes, result.peak.reset) {
        (Some(b), true) => Outcome::from_met(b < TARGET_PEAK_BYTES),
        _ => {
            notes.push("Note: the peak RSS could not be measured per phase on this system.".into());
            Outcome::NotMeasured
        }
    }
}

/// The place of the median among `times` (the lower middle one of an even
/// count).
fn median_index(times: &[Duration]) -> usize {
    let mut order: Vec<usize> = (0..times.len()).collect();
    order.sort_by_key(|&i| times[i]);
    order[(times.len().saturating_sub(1)) / 2]
}

/// Prints what a verification found.
fn verified(what: &str, elapsed: Duration, checksum: &Checksum) {
    println!(
        "{what}: {:.2} s; verified ({} rows, checksum {} equal on both sides).",
        elapsed.as_secs_f64(),
        thousands(checksum.rows),
        checksum.short()
    );
}

/// Generates the hub's rows with a spinner and says how long it took.
async fn generating<F: std::future::Future<Output = anyhow::Result<()>>>(what: &str, work: F) -> anyhow::Result<()> {
    let spinner = Progress::spinner(format!("Generating {what}"));
    let started = Instant::now();
    work.await?;
    spinner.finish();
    println!("Generated {what} in {:.2} s (setup, not measured).", started.elapsed().as_secs_f64());
    Ok(())
}

/// The databases a run created on a PostgreSQL server, dropped by [`PgDbs::drop_all`].
struct PgDbs {
    admin: PgConnection,
    server_url: String,
    id: String,
    names: Vec<String>,
    /// A replication that may still exist: (name, publisher URL, subscriber URL).
    replication: Option<(String, String, String)>,
}

/// A database the bench created.
struct Db {
    name: String,
    url: String,
}

impl PgDbs {
    async fn open(server_url: &str, id: &str) -> anyhow::Result<Self> {
        let admin = pg::connect(server_url).await.with_context(|| {
            format!(
                "PostgreSQL is unreachable at {} (--postgres-url)",
                url::host_port(&hubsync_engines::redact_url(server_url), 5432)
            )
        })?;
        Ok(PgDbs { admin, server_url: server_url.into(), id: id.into(), names: Vec::new(), replication: None })
    }

    async fn create(&mut self, role: &str, template: Option<&Db>) -> anyhow::Result<Db> {
        let name = format!("{}_{role}", self.id);
        pg::create_database(&mut self.admin, &name, template.map(|t| t.name.as_str())).await?;
        self.names.push(name.clone());
        let url = url::with_database(&self.server_url, &name)?;
        Ok(Db { name, url })
    }

    /// Drops the replication, if one is left, and every database; reports the
    /// first failure after trying all.
    async fn drop_all(mut self) -> anyhow::Result<()> {
        let mut first_error = None;
        if let Some((name, publisher, subscriber)) = self.replication.take() {
            let stopped = replication::Replication::resume(&name, &publisher, &subscriber).stop().await;
            if let Err(e) = stopped {
                first_error.get_or_insert(e);
            }
        }
        for name in self.names.iter().rev() {
            if let Err(e) = pg::drop_database(&mut self.admin, name).await {
                first_error.get_or_insert(e);
            }
        }
        let _ = self.admin.close().await;
        first_error.map_or(Ok(()), Err)
    }
}

/// The databases a run created on a MySQL server.
struct MyDbs {
    admin: MySqlConnection,
    server_url: String,
    id: String,
    names: Vec<String>,
}

impl MyDbs {
    async fn open(server_url: &str, id: &str) -> anyhow::Result<Self> {
        let admin = my::connect(server_url).await.with_context(|| {
            format!(
                "MySQL is unreachable at {} (--mysql-url)",
                url::host_port(&hubsync_engines::redact_url(server_url), 3306)
            )
        })?;
        Ok(MyDbs { admin, server_url: server_url.into(), id: id.into(), names: Vec::new() })
    }

    async fn create(&mut self, role: &str) -> anyhow::Result<Db> {
        let name = format!("{}_{role}", self.id);
        my::create_database(&mut self.admin, &name).await?;
        self.names.push(name.clone());
        let url = url::with_database(&self.server_url, &name)?;
        Ok(Db { name, url })
    }

    async fn drop_all(mut self) -> anyhow::Result<()> {
        let mut first_error = None;
        for name in self.names.iter().rev() {
            if let Err(e) = my::drop_database(&mut self.admin, name).await {
                first_error.get_or_insert(e);
            }
        }
        let _ = self.admin.close().await;
        first_error.map_or(Ok(()), Err)
    }
}

/// pgbench's settings for the run.
#[derive(Debug, Clone, Copy)]
struct PgbenchSizes {
    seconds: u64,
    scale: u64,
    /// Rounds of one untracked and one tracked run, in alternating order.
    rounds: usize,
}

/// The PostgreSQL part of the run; returns the targets' outcomes.
pub(crate) async fn run_postgres(opts: &BenchOptions, sizes: Sizes, dir: &Path) -> anyhow::Result<Vec<Outcome>> {
    let pgbench_sizes = PgbenchSizes {
        seconds: opts.pgbench_seconds.unwrap_or(if opts.quick { 2 } else { 5 }),
        scale: opts.pgbench_scale.unwrap_or(if opts.quick { 1 } else { 10 }),
        rounds: opts.pgbench_rounds.unwrap_or(if opts.quick { 1 } else { 12 }).max(1),
    };
    let id = url::run_id();
    let mut dbs = PgDbs::open(&opts.postgres_url, &id).await?;
    let version = pg::setting(&mut dbs.admin, "server_version").await?;
    let wal_level = pg::setting(&mut dbs.admin, "wal_level").await?;
    let shared_buffers = pg::setting(&mut dbs.admin, "shared_buffers").await?;
    let synchronous_commit = pg::setting(&mut dbs.admin, "synchronous_commit").await?;
    println!("hubsync bench: PostgreSQL engine, {}", report::today_utc());
    println!("machine:    {}", Machine::detect().describe());
    println!(
        "PostgreSQL: {version} at {} (wal_level={wal_level}, shared_buffers={shared_buffers}, \
         synchronous_commit={synchronous_commit}); databases {id}_* (dropped afterwards)",
        url::host_port(&hubsync_engines::redact_url(&opts.postgres_url), 5432)
    );
    println!(
        "sync:       batch {} rows, direction {}, policy {}, table `{TABLE}`: {}",
        thousands(opts.batch_rows as u64),
        Direction::Bidirectional,
        ConflictPolicy::HubWin,
        pg::TABLE_DDL
    );
    println!();

    let mut section = Section::new(dir, opts.batch_rows);
    let incremental_rounds = opts.incremental_rounds.unwrap_or(if opts.quick { 1 } else { 3 }).max(1);
    let result = postgres_body(&mut section, &mut dbs, sizes, pgbench_sizes, &wal_level, incremental_rounds).await;
    let cleanup = dbs.drop_all().await;
    result?;
    cleanup.context("dropping the benchmark's PostgreSQL databases")?;
    Ok(section.finish(&format!(
        "initial sync ≥ {:.0} % of COPY's rows/s; incremental ≥ {:.0} % of logical replication's rows/s; \
         tracked bulk UPDATE ≤ {TARGET_UPDATE_FACTOR:.0}× untracked; tracked pgbench ≥ {:.0} % of untracked tps, \
         ≥ {:.0} % with synchronous_commit=off; peak RSS of every sync < {} MB",
        TARGET_VS_COPY * 100.0,
        TARGET_VS_REPLICATION * 100.0,
        TARGET_PGBENCH * 100.0,
        TARGET_PGBENCH_ASYNC * 100.0,
        peak_mb()
    )))
}

async fn postgres_body(
    section: &mut Section,
    dbs: &mut PgDbs,
    sizes: Sizes,
    pgbench_sizes: PgbenchSizes,
    wal_level: &str,
    incremental_rounds: usize,
) -> anyhow::Result<()> {
    const PAIR: &str = "PostgreSQL → PostgreSQL";
    let rows = sizes.rows;
    let size = thousands(rows);
    let hub = dbs.create("hub", None).await?;
    generating(&format!("{size} hub rows"), pg::generate(&hub.url, rows)).await?;
    // Copies of the hub's rows before it is provisioned: an untracked table for
    // the bulk UPDATE, and the logical replication's publisher and subscriber.
    let plain = dbs.create("plain", Some(&hub)).await?;
    let publisher = dbs.create("lrpub", Some(&hub)).await?;
    let subscriber = dbs.create("lrsub", Some(&hub)).await?;
    let member = dbs.create("member", None).await?;
    let copy = dbs.create("copy", None).await?;
    pg::create_table(&copy.url).await?;

    let initial = section.child(ChildPhase::ServerInitialSync, &hub.url, &member.url, "member", rows).await?;
    println!("Provisioned the hub in {:.2} s.", initial.timing("hub_provisioning")?.as_secs_f64());
    let checksum = rows::verify_same_rows(&hub.url, &member.url).await.context("after the initial sync")?;
    verified(
        &format!("Initial sync of {size} rows"),
        initial.timing("member_provisioning")? + initial.timing("sync")?,
        &checksum,
    );
    let baseline = section.child(ChildPhase::PgCopy, &hub.url, &copy.url, "member", rows).await?;
    let checksum = rows::verify_same_rows(&hub.url, &copy.url).await.context("after the COPY baseline")?;
    verified(&format!("Baseline COPY of {size} rows"), baseline.timing("copy")?, &checksum);
    section.initial_lines(PAIR, "COPY TO STDOUT → COPY FROM STDIN", rows, &initial, &baseline, Some(TARGET_VS_COPY))?;
    section.notes.push(
        "Baseline (initial): `COPY (select id, name, qty, price, note from t) TO STDOUT` streamed chunk by chunk \
         into `COPY t FROM STDIN` on an empty table with the hub's definition, in one hubsync process (sqlx \
         copy_out_raw / copy_in_raw), text format."
            .into(),
    );

    if sizes.updated > 0 {
        postgres_incremental(
            section,
            dbs,
            sizes.updated,
            &hub,
            &member,
            &plain,
            &publisher,
            &subscriber,
            wal_level,
            incremental_rounds,
        )
        .await?;
    }
    if pgbench_sizes.seconds > 0 {
        postgres_pgbench(section, dbs, pgbench_sizes).await?;
    }
    Ok(())
}

/// The bulk `UPDATE` with and without tracking, the incremental sync, and
/// logical replication of the same update.
#[allow(clippy::too_many_arguments)]
async fn postgres_incremental(
    section: &mut Section,
    dbs: &mut PgDbs,
    updated: u64,
    hub: &Db,
    member: &Db,
    plain: &Db,
    publisher: &Db,
    subscriber: &Db,
    wal_level: &str,
    rounds: usize,
) -> anyhow::Result<()> {
    let size = thousands(updated);
    // The same statement on the untracked copy, then on the tracked hub, each
    // after a vacuum and a checkpoint.
    pg::settle(&plain.url).await?;
    let mut conn = pg::connect(&plain.url).await?;
    let (changed, untracked) = pg::update(&mut conn, updated).await?;
    conn.close().await.context("closing after the update")?;
    ensure!(changed == updated, "the untracked update changed {changed} rows instead of {updated}");
    pg::settle(&hub.url).await?;
    let mut conn = pg::connect(&hub.url).await?;
    let (changed, tracked) = pg::update(&mut conn, updated).await?;
    conn.close().await.context("closing after the update")?;
    ensure!(changed == updated, "the tracked update changed {changed} rows instead of {updated}");
    println!(
        "Bulk UPDATE of {size} rows: {:.2} s untracked, {:.2} s with hubsync's triggers.",
        untracked.as_secs_f64(),
        tracked.as_secs_f64()
    );
    section.lines.push(Line::info("bulk UPDATE, untracked", updated, untracked));
    let mut line = Line::info("bulk UPDATE, tracked (hub)", updated, tracked);
    line.vs_baseline = Some(untracked.as_secs_f64() / tracked.as_secs_f64().max(1e-9));
    line.target = Some(format!("≤ {TARGET_UPDATE_FACTOR:.0}× untracked time"));
    line.checks =
        vec![("speed", Outcome::from_met(tracked.as_secs_f64() <= TARGET_UPDATE_FACTOR * untracked.as_secs_f64()))];
    section.lines.push(line);

    // Sync and replication alternate, `rounds` times: the machine's speed
    // drifts between runs by more than the difference measured, so one pair
    // decides nothing. The medians are compared.
    let replication = if wal_level == "logical" {
        let name = format!("{}_lr", dbs.id);
        dbs.replication = Some((name.clone(), publisher.url.clone(), subscriber.url.clone()));
        Some(replication::Replication::start(&name, &publisher.url, &subscriber.url).await?)
    } else {
        section.notes.push(replication::wal_level_advice(wal_level));
        println!("Logical replication: not measured (wal_level={wal_level}; see the note below).");
        None
    };
    let mut syncs: Vec<PhaseResult> = Vec::new();
    let mut replicated: Vec<Duration> = Vec::new();
    for round in 1..=rounds {
        if round > 1 {
            // The hub as before the first round: vacuumed, checkpointed, then updated.
            pg::settle(&hub.url).await?;
            let mut conn = pg::connect(&hub.url).await?;
            let (changed, _) = pg::update(&mut conn, updated).await?;
            conn.close().await.context("closing after the update")?;
            ensure!(changed == updated, "the tracked update changed {changed} rows instead of {updated}");
        }
        let result = section.child(ChildPhase::ServerIncremental, &hub.url, &member.url, "member", updated).await?;
        let elapsed = result.timing("sync")?;
        let checksum = rows::verify_same_rows(&hub.url, &member.url).await.context("after the incremental sync")?;
        verified(&format!("Incremental sync of {size} updated rows (round {round} of {rounds})"), elapsed, &checksum);
        if result.rows != updated {
            section.notes.push(format!(
                "Note: the incremental sync of round {round} moved {} rows for {size} updated rows.",
                thousands(result.rows)
            ));
        }
        syncs.push(result);
        if let Some(replication) = &replication {
            // The publisher as the hub: vacuumed and checkpointed before its update.
            pg::settle(&publisher.url).await?;
            let spinner =
                Progress::spinner(format!("Baseline: logical replication of {size} updated rows (round {round})"));
            let elapsed = replication.time_update(updated).await;
            spinner.finish();
            let elapsed = elapsed?;
            println!(
                "Logical replication of the same update (round {round} of {rounds}): {:.2} s from commit to applied; \
                 verified (subscriber equal to publisher).",
                elapsed.as_secs_f64()
            );
            replicated.push(elapsed);
        }
    }
    if let Some(replication) = replication {
        replication.stop().await?;
        dbs.replication = None;
        section.notes.push(
            "Baseline (incremental): PostgreSQL's logical replication between two copies of the hub's rows \
             (untracked): a publication for table t, a subscription with copy_data = false (its slot created \
             beforehand, as both are in one cluster); the same UPDATE on the publisher (vacuumed and checkpointed \
             first, as the hub is), timed from its commit until the subscriber shows it (polled every 2 ms; the \
             subscriber's rows compared with the publisher's afterwards)."
                .into(),
        );
    }

    // The round with the median sync time stands for the sync (its CPU time
    // and peak RSS with it); the peak RSS check takes the largest of all.
    let sync_times: Vec<Duration> = syncs.iter().map(|r| r.timing("sync")).collect::<anyhow::Result<_>>()?;
    let middle = median_index(&sync_times);
    let result = &syncs[middle];
    let elapsed = sync_times[middle];
    let lr = (!replicated.is_empty()).then(|| replicated[median_index(&replicated)]);
    if rounds > 1 {
        let list =
            |times: &[Duration]| times.iter().map(|t| format!("{:.2}", t.as_secs_f64())).collect::<Vec<_>>().join(", ");
        let mut note = format!(
            "Incremental sync and logical replication alternated {rounds} times; the lines show the medians. \
             Sync: {} s",
            list(&sync_times)
        );
        if !replicated.is_empty() {
            note.push_str(&format!("; replication: {} s", list(&replicated)));
        }
        note.push('.');
        section.notes.push(note);
    }

    let mut line = Line::info("incremental sync (PostgreSQL → PostgreSQL)", updated, elapsed);
    line.cpu = result.timings.get("cpu").copied();
    // The memory target holds for every round: the largest peak is shown and checked.
    let peakiest = syncs.iter().max_by_key(|r| r.peak.bytes).unwrap_or(result);
    line.peak = Some(peakiest.peak);
    line.target = Some(format!("≥ {:.0} % of replication, peak < {} MB", TARGET_VS_REPLICATION * 100.0, peak_mb()));
    let speed = match lr {
        Some(lr) => {
            let ratio = rate(updated, elapsed) / rate(updated, lr);
            line.vs_baseline = Some(ratio);
            Outcome::from_met(ratio >= TARGET_VS_REPLICATION)
        }
        None => Outcome::NotMeasured,
    };
    let memory = memory_check(peakiest, &mut section.notes);
    line.checks = vec![("speed", speed), ("memory", memory)];
    if let Some(lr) = lr {
        let mut baseline = Line::info("baseline logical replication (same update)", updated, lr);
        baseline.vs_baseline = Some(1.0);
        section.lines.push(baseline);
    }
    section.lines.push(line);
    let compact = result.timing("compact")?;
    println!(
        "Folded the hub's change log after the incremental sync in {:.2} s (housekeeping; the member was complete).",
        compact.as_secs_f64()
    );
    section.lines.push(Line::info("hub change log folded after the sync (not in its time)", updated, compact));
    section.notes.push(
        "The incremental sync is timed until the member has every change, as logical replication is (the member \
         writes three batches at a time, each committed after the one before it); the hub then folds its change log \
         into the tracking table (`Endpoint::compact`, as `hubsync sync` and the service do after a run), timed on \
         its own line."
            .into(),
    );
    Ok(())
}

/// pgbench `simple-update` without and with hubsync's triggers on
/// `pgbench_accounts`, each at default durability and with
/// `synchronous_commit=off`.
async fn postgres_pgbench(section: &mut Section, dbs: &mut PgDbs, sizes: PgbenchSizes) -> anyhow::Result<()> {
    let Some(version) = tokio::task::spawn_blocking(pgbench::version).await.context("running pgbench")? else {
        section.notes.push(
            "pgbench was not found (install postgresql-contrib or set HUBSYNC_PGBENCH): the tracking-cost \
             figures are NOT MEASURED."
                .into(),
        );
        let mut line = Line::info("pgbench simple-update (pgbench missing)", 0, Duration::ZERO);
        line.checks = vec![("pgbench", Outcome::NotMeasured)];
        section.lines.push(line);
        return Ok(());
    };
    let db = dbs.create("pgbench", None).await?;
    let url = db.url.clone();
    let scale = sizes.scale;
    generating(&format!("pgbench tables at scale {scale} ({} accounts)", thousands(scale * 100_000)), async move {
        tokio::task::spawn_blocking(move || pgbench::init(&url, scale)).await.context("running pgbench")?
    })
    .await?;

    let endpoint =
        hubsync_engines::connect(&db.url, &section.dir).await.context("connecting to the pgbench database")?;
    let accounts = TableName::new("pgbench_accounts");
    let selection = [TableSelection { name: accounts.clone(), columns: None, policy: None }];
    let tables = resolve_tables(&endpoint, &selection).await.context("reading pgbench_accounts' schema")?;
    let started = Instant::now();
    provision_hub(&endpoint, &tables).await.context("provisioning pgbench_accounts")?;
    println!(
        "Provisioned pgbench_accounts ({} rows) through the engine in {:.2} s.",
        thousands(scale * 100_000),
        started.elapsed().as_secs_f64()
    );
    // Untracked and tracked runs alternate, untracked meaning hubsync's
    // triggers dropped and tracked recreated, so each round compares two
    // neighbouring runs of one durability and the server's drift (bloat,
    // caches, a disk whose fsync latency wanders) weighs on both sides: a
    // round runs default durability U T then synchronous_commit=off T U, the
    // next one T U then U T, and so on.
    let triggers = pg::Triggers::of(&db.url, "pgbench_accounts").await?;
    // The first runs after pgbench's set-up are slower than any later one
    // (cold caches, hint bits, the new tables' first checkpoints): they warm
    // the server up and are not counted.
    triggers.set(&db.url, false).await?;
    let mut tracking = false;
    for async_commit in [false, true] {
        pgbench_run(&db.url, sizes.seconds, async_commit, "warm-up, not counted").await?;
    }
    // Per round, per durability (default, synchronous_commit=off), the
    // untracked and the tracked run.
    let mut rounds: Vec<[[pgbench::Run; 2]; 2]> = Vec::with_capacity(sizes.rounds);
    for round in 0..sizes.rounds {
        println!("Round {} of {}:", round + 1, sizes.rounds);
        let mut runs = [[None; 2]; 2];
        for (durability, async_commit) in [false, true].into_iter().enumerate() {
            let order = if (round + durability) % 2 == 0 { [false, true] } else { [true, false] };
            for tracked in order {
                if tracked != tracking {
                    triggers.set(&db.url, tracked).await?;
                    tracking = tracked;
                }
                let side = if tracked { "tracked" } else { "untracked" };
                let run = pgbench_run(&db.url, sizes.seconds, async_commit, side).await?;
                runs[durability][usize::from(tracked)] = Some(run);
            }
        }
        if let [[Some(a), Some(b)], [Some(c), Some(d)]] = runs {
            rounds.push([[a, b], [c, d]]);
        }
    }
    triggers.set(&db.url, true).await?;
    match endpoint.deprovision(std::slice::from_ref(&accounts)).await {
        Ok(_) => println!("Deprovisioned pgbench_accounts (triggers, change log and tracking table dropped)."),
        Err(e) => section.notes.push(format!("Note: deprovisioning pgbench_accounts failed ({e}).")),
    }
    // Closed before the run drops its databases: a connection the drop
    // terminates under an open pool is logged as an error.
    if let AnyEndpoint::Postgres(pg) = &endpoint {
        pg.close().await;
    }
    drop(endpoint);

    let clients = pgbench::CLIENTS;
    for (durability, (label, target)) in
        [("default durability", TARGET_PGBENCH), ("synchronous_commit=off", TARGET_PGBENCH_ASYNC)]
            .into_iter()
            .enumerate()
    {
        let total = |side: usize| {
            let runs: Vec<pgbench::Run> = rounds.iter().map(|r| r[durability][side]).collect();
            pgbench::Run::average(&runs)
        };
        let ratios: Vec<f64> = rounds.iter().map(|r| r[durability][1].tps / r[durability][0].tps.max(1e-9)).collect();
        let estimate = pgbench::RatioEstimate::of(&ratios).context("pgbench measured no transactions")?;
        let (plain, with) = (total(0), total(1));
        section.lines.push(Line::info(
            format!("pgbench simple-update tx, untracked, {label}"),
            plain.transactions,
            plain.elapsed(),
        ));
        let mut line =
            Line::info(format!("pgbench simple-update tx, tracked, {label}"), with.transactions, with.elapsed());
        line.vs_baseline = Some(estimate.median);
        line.target = Some(format!("≥ {:.0} % of untracked tps", target * 100.0));
        line.checks = vec![("speed", Outcome::from_met(estimate.median >= target))];
        section.lines.push(line);
        let each: Vec<String> = ratios.iter().map(|r| format!("{:.0} %", r * 100.0)).collect();
        let settled = if estimate.low >= target {
            "above the target"
        } else if estimate.high < target {
            "below the target"
        } else {
            "containing the target: more rounds would settle it"
        };
        section.notes.push(format!(
            "pgbench {label}: tracked/untracked per round {}; median {:.1} %, {:.1} % confidence interval \
             {:.1}–{:.1} % ({settled}).",
            each.join(", "),
            estimate.median * 100.0,
            estimate.coverage * 100.0,
            estimate.low * 100.0,
            estimate.high * 100.0,
        ));
    }
    section.notes.push(format!(
        "pgbench ({version}): `pgbench -n -c {clients} -j {clients} -T {} -b simple-update` at scale {scale}, \
         pgbench_accounts provisioned through the engine, two warm-up runs not counted, then {} rounds of, for each \
         durability, one untracked run (hubsync's triggers dropped) and one tracked run (triggers recreated) next to \
         each other, in alternating order (U T T U, T U U T, ...). \
         The tracked line's \"vs baseline\" is the median of the rounds' tracked/untracked tps; the lines' \
         rows/s is the mean tps over the rounds. `synchronous_commit=off` through PGOPTIONS. Each run after \
         `vacuum analyze` and a checkpoint; the change log is not folded between runs (no sync runs).",
        sizes.seconds, sizes.rounds,
    ));
    Ok(())
}

/// One pgbench run (see [`pgbench::run`]) after [`settle_pgbench`]; `label`
/// names it in the progress output.
async fn pgbench_run(url: &str, seconds: u64, async_commit: bool, label: &str) -> anyhow::Result<pgbench::Run> {
    settle_pgbench(url).await?;
    let durability = if async_commit { "synchronous_commit=off" } else { "default durability" };
    let spinner = Progress::spinner(format!("pgbench for {seconds} s, {durability}"));
    let target = url.to_string();
    let run = tokio::task::spawn_blocking(move || pgbench::run(&target, seconds, async_commit))
        .await
        .context("running pgbench")??;
    spinner.finish();
    println!("pgbench, {label}, {durability}: {} transactions, {:.0} tps.", thousands(run.transactions), run.tps);
    Ok(run)
}

/// `vacuum analyze` of pgbench's tables, an emptied history and a checkpoint
/// before each run.
async fn settle_pgbench(url: &str) -> anyhow::Result<()> {
    let mut conn = pg::connect(url).await?;
    for sql in [
        "truncate pgbench_history",
        "vacuum analyze pgbench_accounts",
        "vacuum analyze pgbench_branches",
        "vacuum analyze pgbench_tellers",
        "checkpoint",
    ] {
        sqlx::raw_sql(sql).execute(&mut conn).await.with_context(|| format!("before pgbench: {sql}"))?;
    }
    conn.close().await.context("closing after preparing pgbench")?;
    Ok(())
}

/// The MySQL/MariaDB part of the run; returns the targets' outcomes.
pub(crate) async fn run_mysql(opts: &BenchOptions, sizes: Sizes, dir: &Path) -> anyhow::Result<Vec<Outcome>> {
    let id = url::run_id();
    let mut dbs = MyDbs::open(&opts.mysql_url, &id).await?;
    let version = my::version(&mut dbs.admin).await?;
    println!("hubsync bench: MySQL engine, {}", report::today_utc());
    println!("machine: {}", Machine::detect().describe());
    println!(
        "MySQL:   {version} at {}; databases {id}_* (dropped afterwards)",
        url::host_port(&hubsync_engines::redact_url(&opts.mysql_url), 3306)
    );
    println!(
        "sync:    batch {} rows, direction {}, policy {}, table `{TABLE}`: {}",
        thousands(opts.batch_rows as u64),
        Direction::Bidirectional,
        ConflictPolicy::HubWin,
        my::TABLE_DDL
    );
    println!();

    let mut section = Section::new(dir, opts.batch_rows);
    let result = mysql_body(&mut section, &mut dbs, sizes.rows, &opts.postgres_url, &id).await;
    let cleanup = dbs.drop_all().await;
    result?;
    cleanup.context("dropping the benchmark's MySQL databases")?;
    section.notes.push(format!(
        "Baseline: the same rows read from the hub in key order by one task and inserted by another with \
         multi-row INSERTs of {} rows (bound parameters) in one transaction, into an empty table created \
         `LIKE` the member's, in one hubsync process. No speed target is set for these syncs: the ratio is \
         reported.",
        thousands(rows::INSERT_ROWS as u64)
    ));
    Ok(section.finish(&format!("peak RSS of every sync < {} MB; speed reported against the baseline", peak_mb())))
}

async fn mysql_body(
    section: &mut Section,
    dbs: &mut MyDbs,
    rows: u64,
    postgres_url: &str,
    id: &str,
) -> anyhow::Result<()> {
    let size = thousands(rows);
    let hub = dbs.create("hub").await?;
    generating(&format!("{size} hub rows on MariaDB"), my::generate(&hub.url, rows)).await?;
    let member = dbs.create("member").await?;
    let inserted = dbs.create("insert").await?;
    mysql_pair(section, dbs, "MariaDB → MariaDB", &hub.url, &member, &inserted, rows).await?;

    // PostgreSQL → MariaDB, when PostgreSQL is there.
    let mut pg_dbs = match PgDbs::open(postgres_url, id).await {
        Ok(dbs) => dbs,
        Err(e) => {
            println!("PostgreSQL → MariaDB: skipped, {e:#}.");
            section.notes.push(format!("PostgreSQL → MariaDB was NOT MEASURED: {e:#}."));
            let mut line = Line::info("initial sync (PostgreSQL → MariaDB)", 0, Duration::ZERO);
            line.checks = vec![("server", Outcome::NotMeasured)];
            section.lines.push(line);
            return Ok(());
        }
    };
    let result = async {
        let pg_hub = pg_dbs.create("hub", None).await?;
        generating(&format!("{size} hub rows on PostgreSQL"), pg::generate(&pg_hub.url, rows)).await?;
        let member = dbs.create("member_pg").await?;
        let inserted = dbs.create("insert_pg").await?;
        mysql_pair(section, dbs, "PostgreSQL → MariaDB", &pg_hub.url, &member, &inserted, rows).await
    }
    .await;
    let cleanup = pg_dbs.drop_all().await;
    result?;
    cleanup.context("dropping the benchmark's PostgreSQL databases")
}

/// An initial sync from `hub` into the empty MariaDB `member`, and the
/// multi-row INSERT baseline into `inserted`, both verified.
async fn mysql_pair(
    section: &mut Section,
    dbs: &mut MyDbs,
    pair: &str,
    hub: &str,
    member: &Db,
    inserted: &Db,
    rows: u64,
) -> anyhow::Result<()> {
    let size = thousands(rows);
    let initial = section.child(ChildPhase::ServerInitialSync, hub, &member.url, "member", rows).await?;
    println!("Provisioned the hub in {:.2} s ({pair}).", initial.timing("hub_provisioning")?.as_secs_f64());
    let checksum =
        rows::verify_same_rows(hub, &member.url).await.with_context(|| format!("after the {pair} initial sync"))?;
    verified(
        &format!("Initial sync of {size} rows ({pair})"),
        initial.timing("member_provisioning")? + initial.timing("sync")?,
        &checksum,
    );
    my::create_table_like(&mut dbs.admin, &inserted.name, &member.name).await?;
    let baseline = section.child(ChildPhase::MultiRowInsert, hub, &inserted.url, "member", rows).await?;
    let checksum =
        rows::verify_same_rows(hub, &inserted.url).await.with_context(|| format!("after the {pair} baseline"))?;
    verified(&format!("Baseline multi-row INSERT of {size} rows ({pair})"), baseline.timing("copy")?, &checksum);
    section.initial_lines(pair, "multi-row INSERT", rows, &initial, &baseline, None)?;
    section.notes.push(format!("The engine created the {pair} member table as: {}", my::table_sql(&member.url).await?));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_average_to_their_mean_tps() {
        let runs = [pgbench::Run { transactions: 100, tps: 10.0 }, pgbench::Run { transactions: 300, tps: 30.0 }];
        assert_eq!(pgbench::Run::average(&runs), pgbench::Run { transactions: 400, tps: 20.0 });
    }
}

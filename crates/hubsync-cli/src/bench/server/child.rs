//! The server phases, each run in a fresh `hubsync bench` process (see
//! [`super::super::phase`]): the initial and incremental syncs through the
//! engines, and the in-process baselines (`COPY` pipe, multi-row `INSERT`).

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, bail, ensure};
use hubsync_core::{
    ConflictPolicy, Direction, Endpoint, SessionOptions, SyncTable, TableName, TableSelection, provision_hub,
    provision_member, resolve_tables, sync_member,
};
use tokio::sync::mpsc;

use super::super::memory::PeakProbe;
use super::super::phase::{ChildPhase, CpuProbe, PhaseResult};
use super::super::progress::Progress;
use super::super::report::thousands;
use super::rows::{self, Conn};
use super::{SCOPE, TABLE, pg};
use crate::bench::AnyEndpoint;

/// The child's side: runs the phase between `source` and `target` and prints
/// the result line.
pub(crate) async fn run(
    phase: ChildPhase,
    dir: &Path,
    source: &str,
    target: &str,
    member: &str,
    rows: u64,
    batch_rows: usize,
) -> anyhow::Result<()> {
    let result = match phase {
        ChildPhase::ServerInitialSync => initial_sync(dir, source, target, member, rows, batch_rows).await?,
        ChildPhase::ServerIncremental => incremental(dir, source, target, member, rows, batch_rows).await?,
        ChildPhase::PgCopy => pg_copy(source, target, rows).await?,
        ChildPhase::MultiRowInsert => multi_row_insert(source, target, rows).await?,
        other => bail!("{} is not a server phase", other.name()),
    };
    println!("{}", result.to_line());
    Ok(())
}

async fn open(dir: &Path, source: &str, target: &str) -> anyhow::Result<(AnyEndpoint, AnyEndpoint, Vec<SyncTable>)> {
    let hub = hubsync_engines::connect(source, dir)
        .await
        .with_context(|| format!("connecting to the hub {}", hubsync_engines::redact_url(source)))?;
    let member = hubsync_engines::connect(target, dir)
        .await
        .with_context(|| format!("connecting to the member {}", hubsync_engines::redact_url(target)))?;
    let selection = [TableSelection { name: TableName::new(TABLE), columns: None, policy: None }];
    let tables = resolve_tables(&hub, &selection).await.context("reading the benchmark table's schema on the hub")?;
    Ok((hub, member, tables))
}

fn session<'a>(
    tables: &'a [SyncTable],
    member: &'a str,
    observer: &'a Progress,
    batch_rows: usize,
) -> SessionOptions<'a> {
    SessionOptions {
        scope: SCOPE,
        member,
        direction: Direction::Bidirectional,
        policy: ConflictPolicy::HubWin,
        tables,
        batch_rows,
        cancel: None,
        observer,
    }
}

async fn initial_sync(
    dir: &Path,
    source: &str,
    target: &str,
    member_name: &str,
    rows: u64,
    batch_rows: usize,
) -> anyhow::Result<PhaseResult> {
    let (hub, member, tables) = open(dir, source, target).await?;
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
    let report = sync_member(&hub, &member, session(&tables, member_name, &progress, batch_rows))
        .await
        .context("initial sync")?;
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
    Ok(result)
}

async fn incremental(
    dir: &Path,
    source: &str,
    target: &str,
    member_name: &str,
    rows: u64,
    batch_rows: usize,
) -> anyhow::Result<PhaseResult> {
    let (hub, member, tables) = open(dir, source, target).await?;
    // Logical replication's subscription is connected before its timed
    // update, and the service keeps its pools open between runs: the
    // session's connections are opened before its timer starts too.
    for endpoint in [&hub, &member] {
        if let AnyEndpoint::Postgres(pg) = endpoint {
            pg.warm(3).await;
        }
    }
    let progress = Progress::rows(format!("Incremental sync of {} updated rows", thousands(rows)), rows);
    let probe = PeakProbe::start();
    let cpu = CpuProbe::start();
    let started = Instant::now();
    let report = sync_member(&hub, &member, session(&tables, member_name, &progress, batch_rows))
        .await
        .context("incremental sync")?;
    let sync = started.elapsed();
    // The hub's housekeeping after the run (as `hubsync sync` and the
    // service do it), timed on its own: the member is complete already.
    let started = Instant::now();
    hub.compact().await.context("folding the hub's change log after the sync")?;
    let compact = started.elapsed();
    let cpu = cpu.finish();
    let peak = probe.finish();
    progress.finish();
    let mut result = PhaseResult::new(report.downloaded, peak);
    result.timings.insert("sync".into(), sync);
    result.timings.insert("compact".into(), compact);
    cpu.record(&mut result);
    Ok(result)
}

/// `COPY … TO STDOUT` from the source piped into `COPY … FROM STDIN` on the
/// target's empty table, in this process.
async fn pg_copy(source: &str, target: &str, rows: u64) -> anyhow::Result<PhaseResult> {
    let mut from = pg::connect(source).await?;
    let mut to = pg::connect(target).await?;
    let spinner = Progress::spinner(format!("Baseline: COPY of {} rows", thousands(rows)));
    let probe = PeakProbe::start();
    let cpu = CpuProbe::start();
    let started = Instant::now();
    let copied = pg::copy(&mut from, &mut to).await?;
    let elapsed = started.elapsed();
    let cpu = cpu.finish();
    let peak = probe.finish();
    spinner.finish();
    let mut result = PhaseResult::new(copied, peak);
    result.timings.insert("copy".into(), elapsed);
    cpu.record(&mut result);
    Ok(result)
}

/// The source's rows, read in key order by one task, inserted into the
/// target's empty table by multi-row `INSERT`s of 1,000 rows in one
/// transaction, over a two-slot channel.
async fn multi_row_insert(source: &str, target: &str, rows: u64) -> anyhow::Result<PhaseResult> {
    let from = Conn::open(source).await?;
    let Conn::My(mut to) = Conn::open(target).await? else {
        bail!("the multi-row INSERT baseline writes to MySQL only");
    };
    let spinner = Progress::spinner(format!("Baseline: multi-row INSERT of {} rows", thousands(rows)));
    let probe = PeakProbe::start();
    let cpu = CpuProbe::start();
    let started = Instant::now();
    let (tx, rx) = mpsc::channel(2);
    let reader = tokio::spawn(rows::read_rows(from, tx));
    let inserted = rows::insert_rows(&mut to, rx).await;
    let read = reader.await.context("the baseline's reader panicked")?;
    let elapsed = started.elapsed();
    let cpu = cpu.finish();
    let peak = probe.finish();
    spinner.finish();
    // The writer's error first: when it fails, the reader only sees its
    // channel closed.
    let inserted = inserted?;
    let read = read?;
    ensure!(read == inserted, "the baseline read {read} rows but inserted {inserted}");
    let mut result = PhaseResult::new(inserted, peak);
    result.timings.insert("copy".into(), elapsed);
    cpu.record(&mut result);
    Ok(result)
}

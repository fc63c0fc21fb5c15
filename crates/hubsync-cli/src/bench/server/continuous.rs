//! `hubsync bench --engine continuous`: the service in continuous mode
//! (`interval = 0`) between two PostgreSQL databases, as `hubsync serve` runs
//! it (metadata store, scheduler, runner), in this process.
//!
//! 1. **Propagation latency.** Single-row autocommit updates on the hub, one
//!    at a time, each timed from its commit until the member shows it
//!    (polled every 2 ms). Target: median under one second.
//! 2. **Catch-up after pgbench.** pgbench runs `--updated` single-row
//!    autocommit updates of `pgbench_accounts` on the hub while the service
//!    syncs continuously; timed from pgbench's end until the member's
//!    `pgbench_accounts` equals the hub's (a checksum over every row, polled
//!    every 20 ms). Target: within two seconds.
//!
//! The baseline for orientation is PostgreSQL's logical replication, which
//! the issue measured at 0.02 s of catch-up on this kind of machine.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use hubsync_core::{ConflictPolicy, Direction, TableName};
use hubsync_server::{DatabaseSpec, GroupSpec, MemberSpec, Schedule, ServeOptions, Server, TableSpec};
use sqlx::Connection;
use sqlx::postgres::PgConnection;

use super::super::BenchOptions;
use super::super::report::{Line, Outcome, thousands};
use super::{pg, pgbench, url};

/// The median propagation latency must stay below this.
const TARGET_MEDIAN_LATENCY: Duration = Duration::from_secs(1);
/// The member must be caught up this soon after pgbench's last update.
const TARGET_CATCH_UP: Duration = Duration::from_secs(2);
/// Give up waiting for a change after this long.
const WAIT_LIMIT: Duration = Duration::from_secs(120);
/// The synced table.
const ACCOUNTS: &str = "pgbench_accounts";

/// Runs the continuous-mode part; returns the targets' outcomes.
pub(crate) async fn run(opts: &BenchOptions, dir: &Path, updates: u64) -> anyhow::Result<Vec<Outcome>> {
    let mut admin = pg::connect(&opts.postgres_url).await?;
    let id = url::run_id();
    let hub_db = format!("hubsync_bench_{id}_chub");
    let member_db = format!("hubsync_bench_{id}_cmember");
    pg::create_database(&mut admin, &hub_db, None).await?;
    pg::create_database(&mut admin, &member_db, None).await?;
    let hub_url = url::with_database(&opts.postgres_url, &hub_db)?;
    let member_url = url::with_database(&opts.postgres_url, &member_db)?;
    let result = measure(opts, dir, &hub_url, &member_url, updates).await;
    for db in [&hub_db, &member_db] {
        if let Err(e) = pg::drop_database(&mut admin, db).await {
            eprintln!("warning: {e:#}; drop database {db} by hand");
        }
    }
    result
}

async fn measure(
    opts: &BenchOptions,
    dir: &Path,
    hub_url: &str,
    member_url: &str,
    updates: u64,
) -> anyhow::Result<Vec<Outcome>> {
    let scale = opts.pgbench_scale.unwrap_or(1).max(1);
    let samples: usize = if opts.quick { 10 } else { 40 };
    pgbench::init(hub_url, scale)?;
    let accounts = scale * 100_000;
    println!("hubsync bench: continuous mode (interval 0), PostgreSQL → PostgreSQL, {}", super::report::today_utc());
    println!(
        "table:   {ACCOUNTS} of `pgbench -i -s {scale}` ({} rows), synced by `hubsync serve`'s scheduler",
        thousands(accounts)
    );

    let group = GroupSpec {
        name: "bench".into(),
        hub: DatabaseSpec::from_url(hub_url, dir).map_err(anyhow::Error::msg)?,
        policy: ConflictPolicy::HubWin,
        schedule: Schedule::Continuous,
        batch_rows: opts.batch_rows,
        tables: vec![TableSpec { name: TableName::new(ACCOUNTS), columns: None, policy: None }],
        conflict_logging: false,
        conflict_retention_days: 1,
    };
    let member = MemberSpec {
        group: group.name.clone(),
        name: "member".into(),
        database: DatabaseSpec::from_url(member_url, dir).map_err(anyhow::Error::msg)?,
        direction: Direction::Bidirectional,
    };
    // A password in the bench's URL must be stored encrypted: a throwaway key.
    let key = hubsync_server::SecretKey::parse(&hubsync_server::SecretKey::generate(), "the bench")?;
    let meta = dir.join("continuous-meta.db");
    let _ = std::fs::remove_file(&meta);
    let server = Server::start(ServeOptions {
        metadata_url: format!("sqlite://{}", meta.display()),
        listen: "127.0.0.1:0".parse()?,
        base_dir: dir.to_path_buf(),
        secret_key: Some(key),
        tls: None,
        import: vec![(group, vec![member])],
        parallel_members: 1,
    })
    .await?;
    let outcome = async {
        let mut hub = pg::connect(hub_url).await?;
        let mut member = pg::connect(member_url).await?;
        let started = Instant::now();
        wait_until_equal(&mut hub, &mut member).await.context("waiting for the initial sync")?;
        println!("Initial sync of {} rows done in {:.2} s.", thousands(accounts), started.elapsed().as_secs_f64());

        let latencies = latencies(&mut hub, &mut member, samples).await?;
        let catch_up = catch_up(&mut hub, &mut member, hub_url, dir, updates).await?;
        hub.close().await.ok();
        member.close().await.ok();
        anyhow::Ok((latencies, catch_up))
    }
    .await;
    server.shutdown().await?;
    let (latencies, (ran, catch_up)) = outcome?;
    report(&latencies, ran, catch_up, updates)
}

/// Updates one row at a time and times each until the member shows it.
async fn latencies(hub: &mut PgConnection, member: &mut PgConnection, samples: usize) -> anyhow::Result<Vec<Duration>> {
    let mut out = Vec::with_capacity(samples);
    for i in 0..samples {
        // Spread the commits over the scheduler's polling cycle, so the
        // figure is not one phase of it.
        tokio::time::sleep(Duration::from_millis((i as u64 * 97) % 400)).await;
        let aid = i64::try_from(i).unwrap_or(0) + 1;
        let marker = 1_000_000 + i32::try_from(i).unwrap_or(0);
        sqlx::query("update pgbench_accounts set abalance = $1 where aid = $2")
            .bind(marker)
            .bind(aid)
            .execute(&mut *hub)
            .await
            .context("updating the hub")?;
        let committed = Instant::now();
        loop {
            let seen: Option<i32> = sqlx::query_scalar("select abalance from pgbench_accounts where aid = $1")
                .bind(aid)
                .fetch_optional(&mut *member)
                .await
                .context("reading the member")?;
            if seen == Some(marker) {
                out.push(committed.elapsed());
                break;
            }
            if committed.elapsed() > WAIT_LIMIT {
                bail!("the update of aid {aid} did not reach the member within {} s", WAIT_LIMIT.as_secs());
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    Ok(out)
}

/// Runs `updates` single-row autocommit updates with pgbench, then times
/// until the member equals the hub. Returns pgbench's duration and the
/// catch-up time.
async fn catch_up(
    hub: &mut PgConnection,
    member: &mut PgConnection,
    hub_url: &str,
    dir: &Path,
    updates: u64,
) -> anyhow::Result<(Duration, Duration)> {
    let script = dir.join("continuous-update.sql");
    std::fs::write(
        &script,
        "\\set aid random(1, 100000 * :scale)\nupdate pgbench_accounts set abalance = abalance + 1 where aid = :aid;\n",
    )
    .context("writing the pgbench script")?;
    let per_client = updates.div_ceil(u64::from(pgbench::CLIENTS)).max(1);
    let binary = std::env::var("HUBSYNC_PGBENCH").unwrap_or_else(|_| "pgbench".into());
    let clients = pgbench::CLIENTS.to_string();
    let args =
        ["-n", "-c", &clients, "-j", &clients, "-t", &per_client.to_string(), "-f", &script.display().to_string()]
            .map(String::from);
    let url = hub_url.to_string();
    println!(
        "Running pgbench: {} single-row updates while the service syncs…",
        thousands(per_client * u64::from(pgbench::CLIENTS))
    );
    let started = Instant::now();
    let output =
        tokio::task::spawn_blocking(move || Command::new(binary).args(&args).arg(&url).stdin(Stdio::null()).output())
            .await
            .context("waiting for pgbench")?
            .context("running pgbench")?;
    let ran = started.elapsed();
    let ended = Instant::now();
    ensure!(
        output.status.success(),
        "pgbench failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    );
    wait_until_equal(hub, member).await.context("waiting for the member to catch up")?;
    Ok((ran, ended.elapsed()))
}

/// Polls until the member's accounts equal the hub's.
async fn wait_until_equal(hub: &mut PgConnection, member: &mut PgConnection) -> anyhow::Result<()> {
    let target = checksum(hub).await?;
    let started = Instant::now();
    loop {
        if checksum(member).await? == target {
            return Ok(());
        }
        if started.elapsed() > WAIT_LIMIT {
            bail!("the member did not reach the hub's rows within {} s", WAIT_LIMIT.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Row count and two sums that change with any balance of any account;
/// `(-1, 0, 0)` while the table does not exist (the member's is created by
/// the first sync).
async fn checksum(conn: &mut PgConnection) -> anyhow::Result<(i64, i64, i64)> {
    let exists: bool = sqlx::query_scalar("select to_regclass('public.pgbench_accounts') is not null")
        .fetch_one(&mut *conn)
        .await
        .context("looking for pgbench_accounts")?;
    if !exists {
        return Ok((-1, 0, 0));
    }
    let row: (i64, i64, i64) = sqlx::query_as(
        "select count(*)::bigint, coalesce(sum(abalance), 0)::bigint, coalesce(sum(aid::bigint * abalance), 0)::bigint \
         from pgbench_accounts",
    )
    .fetch_one(conn)
    .await
    .context("reading pgbench_accounts")?;
    Ok(row)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn report(latencies: &[Duration], ran: Duration, catch_up: Duration, updates: u64) -> anyhow::Result<Vec<Outcome>> {
    let mut sorted = latencies.to_vec();
    sorted.sort();
    let median = percentile(&sorted, 0.5);
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let latency_ok = Outcome::from_met(median < TARGET_MEDIAN_LATENCY);
    let catch_up_ok = Outcome::from_met(catch_up <= TARGET_CATCH_UP);
    let mut lines = vec![
        Line::info(format!("propagation, median of {} single-row updates", sorted.len()), 1, median),
        Line::info("propagation, 90th percentile", 1, percentile(&sorted, 0.9)),
        Line::info("propagation, worst", 1, percentile(&sorted, 1.0)),
        Line::info("pgbench single-row updates on the hub (while syncing)", updates, ran),
        Line::info("catch-up after pgbench's last update", updates, catch_up),
    ];
    lines[0].target = Some("median < 1 s".into());
    lines[0].checks = vec![("latency", latency_ok)];
    lines[4].target = Some("≤ 2 s".into());
    lines[4].checks = vec![("catch-up", catch_up_ok)];
    println!();
    print!("{}", super::report::render_table(&lines));
    println!();
    println!(
        "Propagation: median {:.0} ms, p90 {:.0} ms, worst {:.0} ms. Catch-up after {} updates: {:.2} s.",
        ms(median),
        ms(percentile(&sorted, 0.9)),
        ms(percentile(&sorted, 1.0)),
        thousands(updates),
        catch_up.as_secs_f64()
    );
    Ok(vec![latency_ok, catch_up_ok])
}

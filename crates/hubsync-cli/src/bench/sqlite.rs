//! Plain SQLite, outside hubsync: generating the hub's rows, the application's
//! update before the incremental sync, the `INSERT … SELECT` baseline, and the
//! check that the member ends up holding exactly the hub's rows.
//!
//! These run on their own connections (the same bundled SQLite library the
//! engine links, through sqlx), never through the engine, so the baseline is
//! what SQLite alone does with the same files and settings.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection};

/// The benchmark table's name.
pub(crate) const TABLE: &str = "t";

/// The benchmark table, as the application would declare it on the hub.
pub(crate) const TABLE_DDL: &str =
    "create table t (id integer primary key, name text, qty integer, price real, note text)";

/// How long a connection waits for a lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// The settings a SQLite connection of the engine writes with, which the
/// baseline copies so it compares like with like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WriteSettings {
    /// `pragma journal_mode`, lowercase (`wal`, `delete`, …).
    pub(crate) journal_mode: String,
    /// `pragma synchronous`, lowercase (`normal`, `full`, …).
    pub(crate) synchronous: String,
}

impl WriteSettings {
    /// Only the values SQLite knows, so they can be put into a pragma safely.
    fn check(&self) -> anyhow::Result<()> {
        const JOURNAL: [&str; 6] = ["delete", "truncate", "persist", "memory", "wal", "off"];
        const SYNCHRONOUS: [&str; 4] = ["off", "normal", "full", "extra"];
        if !JOURNAL.contains(&self.journal_mode.as_str()) {
            bail!("unknown SQLite journal mode `{}`", self.journal_mode);
        }
        if !SYNCHRONOUS.contains(&self.synchronous.as_str()) {
            bail!("unknown SQLite synchronous setting `{}`", self.synchronous);
        }
        Ok(())
    }
}

/// Opens a connection to a database file, creating it when `create`.
pub(crate) async fn open(path: &Path, create: bool) -> anyhow::Result<SqliteConnection> {
    // Statement logging off: the generation and the baseline are slow
    // statements on purpose, and sqlx would warn about each.
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(create)
        .busy_timeout(BUSY_TIMEOUT)
        .disable_statement_logging();
    SqliteConnection::connect_with(&options)
        .await
        .with_context(|| format!("opening SQLite database {}", path.display()))
}

/// The SQLite library's version (`select sqlite_version()`).
pub(crate) async fn version() -> anyhow::Result<String> {
    let options = SqliteConnectOptions::new().in_memory(true);
    let mut conn = SqliteConnection::connect_with(&options).await.context("opening an in-memory SQLite database")?;
    let version: String = sqlx::query_scalar("select sqlite_version()")
        .fetch_one(&mut conn)
        .await
        .context("reading the SQLite version")?;
    conn.close().await.context("closing the in-memory database")?;
    Ok(version)
}

/// Removes a database file and its journal, WAL and shared-memory files, if present.
pub(crate) fn remove_database(path: &Path) -> anyhow::Result<()> {
    let mut names = vec![path.to_path_buf()];
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        names.push(name.into());
    }
    for name in names {
        match std::fs::remove_file(&name) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", name.display())),
        }
    }
    Ok(())
}

/// Creates the hub database with the benchmark table in WAL mode and fills it
/// with `rows` rows generated inside SQLite by one `INSERT … SELECT` over a
/// recursive CTE. Text columns hold 20–40 bytes of realistic, deterministic text.
pub(crate) async fn generate_hub(path: &Path, rows: u64) -> anyhow::Result<()> {
    remove_database(path)?;
    let mut conn = open(path, true).await?;
    // Durability does not matter while generating the data; the engine opens the
    // file afterwards with its own settings.
    sqlx::raw_sql("pragma journal_mode = wal; pragma synchronous = off")
        .execute(&mut conn)
        .await
        .context("setting the hub's journal mode")?;
    sqlx::raw_sql(TABLE_DDL).execute(&mut conn).await.context("creating the hub table")?;
    let rows = i64::try_from(rows).context("--rows is too large")?;
    let inserted = sqlx::query(
        "insert into t (id, name, qty, price, note)
         with recursive seq(i) as (select 1 union all select i + 1 from seq where i < ?1)
         select i,
                'Customer ' || printf('%07d', i) || ' '
                    || substr('AlphaBravoCharlieDeltaEchoFoxtrotGolfHotelIndiaJulietKilo', 1 + (i * 7) % 40, 5 + i % 11),
                (i * 7919) % 1000,
                ((i * 104729) % 1000000) / 100.0,
                'order ' || printf('%08x', (i * 2654435761) % 4294967296) || ' shipped via '
                    || rtrim(substr('DHL  UPS  FedExUSPS GLS  ', 1 + 5 * (i % 5), 5))
         from seq",
    )
    .bind(rows)
    .execute(&mut conn)
    .await
    .context("generating the hub's rows")?
    .rows_affected();
    if inserted != rows as u64 {
        bail!("generated {inserted} rows instead of {rows}");
    }
    sqlx::raw_sql("pragma wal_checkpoint(truncate)").execute(&mut conn).await.context("checkpointing the hub")?;
    conn.close().await.context("closing the hub after generating rows")?;
    Ok(())
}

/// The application's write before the incremental sync: one statement that
/// updates the first `rows` rows (two columns each). The engine's triggers
/// record the changes.
pub(crate) async fn update_hub(path: &Path, rows: u64) -> anyhow::Result<u64> {
    let mut conn = open(path, false).await?;
    sqlx::raw_sql("pragma synchronous = normal").execute(&mut conn).await.context("setting synchronous")?;
    let rows = i64::try_from(rows).context("--updated is too large")?;
    let updated = sqlx::query("update t set qty = qty + 1, note = 'restocked ' || substr(note, 7) where id <= ?1")
        .bind(rows)
        .execute(&mut conn)
        .await
        .context("updating the hub's rows (the engine's triggers run here)")?
        .rows_affected();
    conn.close().await.context("closing the hub after the update")?;
    Ok(updated)
}

/// The journal mode a database file is in, as a new connection finds it
/// (`wal` persists in the file; other modes read back as `delete`).
pub(crate) async fn journal_mode(path: &Path) -> anyhow::Result<String> {
    let mut conn = open(path, false).await?;
    let mode: String =
        sqlx::query_scalar("pragma journal_mode").fetch_one(&mut conn).await.context("reading the journal mode")?;
    conn.close().await.context("closing after reading the journal mode")?;
    Ok(mode.to_ascii_lowercase())
}

/// The `create table` statement of the benchmark table in a database file.
pub(crate) async fn table_sql(path: &Path) -> anyhow::Result<Option<String>> {
    let mut conn = open(path, false).await?;
    let sql: Option<String> = sqlx::query_scalar("select sql from sqlite_schema where type = 'table' and name = ?1")
        .bind(TABLE)
        .fetch_optional(&mut conn)
        .await
        .context("reading the table definition")?;
    conn.close().await.context("closing after reading the table definition")?;
    Ok(sql)
}

/// The baseline: copies every row of the hub's table into a fresh database
/// holding the same table definition, with one `INSERT INTO m.t SELECT * FROM
/// main.t` over `ATTACH DATABASE`, written with the engine's settings. Only the
/// statement is timed (it commits on its own, WAL checkpoint included).
pub(crate) async fn baseline_copy(
    hub: &Path,
    target: &Path,
    settings: &WriteSettings,
) -> anyhow::Result<(u64, Duration)> {
    settings.check()?;
    let ddl = table_sql(hub).await?.context("the hub has no benchmark table")?;
    remove_database(target)?;
    let mut conn = open(target, true).await?;
    sqlx::raw_sql(AssertSqlSafe(format!("pragma journal_mode = {}", settings.journal_mode)))
        .execute(&mut conn)
        .await
        .context("setting the baseline's journal mode")?;
    sqlx::raw_sql(AssertSqlSafe(ddl)).execute(&mut conn).await.context("creating the baseline table")?;
    conn.close().await.context("closing the baseline database")?;

    let mut conn = open(hub, false).await?;
    let target_name = target.to_str().context("the benchmark directory's path is not UTF-8")?;
    sqlx::query("attach database ?1 as m")
        .bind(target_name)
        .execute(&mut conn)
        .await
        .context("attaching the baseline")?;
    sqlx::raw_sql(AssertSqlSafe(format!(
        "pragma m.journal_mode = {}; pragma m.synchronous = {}",
        settings.journal_mode, settings.synchronous
    )))
    .execute(&mut conn)
    .await
    .context("applying the engine's settings to the baseline")?;
    let started = Instant::now();
    let copied = sqlx::raw_sql("insert into m.t select * from main.t")
        .execute(&mut conn)
        .await
        .context("copying the rows (baseline)")?
        .rows_affected();
    let elapsed = started.elapsed();
    sqlx::raw_sql("detach database m").execute(&mut conn).await.context("detaching the baseline")?;
    conn.close().await.context("closing the hub after the baseline")?;
    Ok((copied, elapsed))
}

/// Checks that the member's table holds exactly the hub's rows: same count, and
/// every hub row present on the member with equal values in every column.
pub(crate) async fn verify_same_rows(hub: &Path, member: &Path) -> anyhow::Result<u64> {
    let mut conn = open(hub, false).await?;
    let member_name = member.to_str().context("the benchmark directory's path is not UTF-8")?;
    sqlx::query("attach database ?1 as m")
        .bind(member_name)
        .execute(&mut conn)
        .await
        .context("attaching the member")?;
    let (hub_rows, member_rows): (i64, i64) =
        sqlx::query_as("select (select count(*) from main.t), (select count(*) from m.t)")
            .fetch_one(&mut conn)
            .await
            .context("counting rows")?;
    let differing: i64 = sqlx::query_scalar(
        "select count(*) from main.t h left join m.t c on c.id = h.id
         where c.id is null or h.name is not c.name or h.qty is not c.qty
            or h.price is not c.price or h.note is not c.note",
    )
    .fetch_one(&mut conn)
    .await
    .context("comparing rows")?;
    sqlx::raw_sql("detach database m").execute(&mut conn).await.context("detaching the member")?;
    conn.close().await.context("closing the hub after the check")?;
    if hub_rows != member_rows || differing != 0 {
        bail!(
            "the member does not hold the hub's rows: hub {hub_rows} rows, member {member_rows} rows, \
             {differing} hub rows missing or different on the member"
        );
    }
    Ok(hub_rows as u64)
}

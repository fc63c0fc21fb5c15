//! The benchmark table's rows read and written outside hubsync, the same way
//! on every server: the checksum that verifies a sync, and the multi-row
//! `INSERT` baseline.
//!
//! Rows are read ordered by key with every column cast to one type per
//! column (`bigint`, text, `bigint`, double, text), so a member whose engine
//! created wider or different column types still hashes equal when it holds
//! the same values.

use anyhow::{Context, bail};
use futures::TryStreamExt;
use sha2::{Digest, Sha256};
use sqlx::mysql::MySqlConnection;
use sqlx::postgres::PgConnection;
use sqlx::{AssertSqlSafe, Connection, Row};
use tokio::sync::mpsc;

use super::{my, pg};

/// Rows per multi-row `INSERT` of the baseline and per batch read.
pub(crate) const INSERT_ROWS: usize = 1_000;

/// One row of the benchmark table `t`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct BenchRow {
    id: i64,
    name: Option<String>,
    qty: Option<i64>,
    price: Option<f64>,
    note: Option<String>,
}

/// A connection to either server.
pub(crate) enum Conn {
    /// PostgreSQL.
    Pg(PgConnection),
    /// MySQL or MariaDB.
    My(MySqlConnection),
}

impl Conn {
    /// Connects to the database a `postgres://` or `mysql://` URL names.
    pub(crate) async fn open(url: &str) -> anyhow::Result<Self> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Conn::Pg(pg::connect(url).await?))
        } else if url.starts_with("mysql://") || url.starts_with("mariadb://") {
            Ok(Conn::My(my::connect(url).await?))
        } else {
            bail!("`{}` is neither a PostgreSQL nor a MySQL URL", hubsync_engines::redact_url(url))
        }
    }

    async fn close(self) -> anyhow::Result<()> {
        match self {
            Conn::Pg(c) => c.close().await.context("closing a PostgreSQL connection"),
            Conn::My(c) => c.close().await.context("closing a MySQL connection"),
        }
    }
}

/// Sends every row of `t`, ordered by `id`, in batches of [`INSERT_ROWS`];
/// returns how many it sent.
pub(crate) async fn read_rows(conn: Conn, tx: mpsc::Sender<Vec<BenchRow>>) -> anyhow::Result<u64> {
    let mut sent = 0u64;
    let mut batch = Vec::with_capacity(INSERT_ROWS);
    let mut conn = conn;
    match &mut conn {
        Conn::Pg(c) => {
            let mut rows =
                sqlx::query("select id::int8, name::text, qty::int8, price::float8, note::text from t order by id")
                    .fetch(c);
            while let Some(row) = rows.try_next().await.context("reading rows from PostgreSQL")? {
                batch.push(BenchRow {
                    id: row.try_get(0)?,
                    name: row.try_get(1)?,
                    qty: row.try_get(2)?,
                    price: row.try_get(3)?,
                    note: row.try_get(4)?,
                });
                if batch.len() == INSERT_ROWS {
                    sent += batch.len() as u64;
                    if tx.send(std::mem::replace(&mut batch, Vec::with_capacity(INSERT_ROWS))).await.is_err() {
                        bail!("the rows' reader lost its consumer");
                    }
                }
            }
        }
        Conn::My(c) => {
            let mut rows = sqlx::query(
                "select cast(id as signed), cast(name as char), cast(qty as signed), cast(price as double), \
                 cast(note as char) from t order by id",
            )
            .fetch(c);
            while let Some(row) = rows.try_next().await.context("reading rows from MySQL")? {
                batch.push(BenchRow {
                    id: row.try_get(0)?,
                    name: row.try_get(1)?,
                    qty: row.try_get(2)?,
                    price: row.try_get(3)?,
                    note: row.try_get(4)?,
                });
                if batch.len() == INSERT_ROWS {
                    sent += batch.len() as u64;
                    if tx.send(std::mem::replace(&mut batch, Vec::with_capacity(INSERT_ROWS))).await.is_err() {
                        bail!("the rows' reader lost its consumer");
                    }
                }
            }
        }
    }
    if !batch.is_empty() {
        sent += batch.len() as u64;
        if tx.send(batch).await.is_err() {
            bail!("the rows' reader lost its consumer");
        }
    }
    conn.close().await?;
    Ok(sent)
}

/// The row count and a SHA-256 over every row of `t` in key order, each
/// column with a null marker and strings with their length, so that no two
/// different tables hash the same by accident.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Checksum {
    /// Rows in the table.
    pub(crate) rows: u64,
    /// Hex digest.
    pub(crate) digest: String,
}

impl Checksum {
    /// The first 12 hex digits, for the output.
    pub(crate) fn short(&self) -> &str {
        &self.digest[..12.min(self.digest.len())]
    }
}

/// Reads `t` in the database a URL names and hashes it.
pub(crate) async fn checksum(url: &str) -> anyhow::Result<Checksum> {
    let conn = Conn::open(url).await?;
    let (tx, mut rx) = mpsc::channel(4);
    let reader = tokio::spawn(read_rows(conn, tx));
    let mut hasher = Sha256::new();
    let mut rows = 0u64;
    while let Some(batch) = rx.recv().await {
        for row in &batch {
            hash_row(&mut hasher, row);
        }
        rows += batch.len() as u64;
    }
    let sent = reader.await.context("the rows' reader panicked")??;
    if sent != rows {
        bail!("read {sent} rows but hashed {rows}");
    }
    let digest = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Ok(Checksum { rows, digest })
}

fn hash_row(hasher: &mut Sha256, row: &BenchRow) {
    hasher.update(row.id.to_le_bytes());
    hash_text(hasher, row.name.as_deref());
    match row.qty {
        Some(q) => {
            hasher.update([1]);
            hasher.update(q.to_le_bytes());
        }
        None => hasher.update([0]),
    }
    match row.price {
        Some(p) => {
            hasher.update([1]);
            hasher.update(p.to_bits().to_le_bytes());
        }
        None => hasher.update([0]),
    }
    hash_text(hasher, row.note.as_deref());
}

fn hash_text(hasher: &mut Sha256, text: Option<&str>) {
    match text {
        Some(t) => {
            hasher.update([1]);
            hasher.update((t.len() as u64).to_le_bytes());
            hasher.update(t.as_bytes());
        }
        None => hasher.update([0]),
    }
}

/// Checks that `target`'s table holds exactly `source`'s rows (count and
/// checksum); returns the checksum.
pub(crate) async fn verify_same_rows(source: &str, target: &str) -> anyhow::Result<Checksum> {
    let (hub, member) = tokio::try_join!(checksum(source), checksum(target))?;
    if hub != member {
        bail!(
            "the member does not hold the hub's rows: hub {} rows (checksum {}), member {} rows (checksum {})",
            hub.rows,
            hub.short(),
            member.rows,
            member.short()
        );
    }
    Ok(hub)
}

/// The multi-row `INSERT` baseline's writer: inserts every batch into `t`
/// on a MySQL connection, one statement per batch, all in one transaction.
pub(crate) async fn insert_rows(
    conn: &mut MySqlConnection,
    mut rx: mpsc::Receiver<Vec<BenchRow>>,
) -> anyhow::Result<u64> {
    let mut tx = conn.begin().await.context("starting the baseline's transaction")?;
    let mut inserted = 0u64;
    let mut full_sql = None;
    while let Some(batch) = rx.recv().await {
        let sql = if batch.len() == INSERT_ROWS {
            full_sql.get_or_insert_with(|| insert_sql(INSERT_ROWS)).clone()
        } else {
            insert_sql(batch.len())
        };
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for row in batch {
            query = query.bind(row.id).bind(row.name).bind(row.qty).bind(row.price).bind(row.note);
        }
        inserted += query.execute(&mut *tx).await.context("inserting a batch (baseline)")?.rows_affected();
    }
    tx.commit().await.context("committing the baseline")?;
    Ok(inserted)
}

/// `insert into t (…) values (?, ?, ?, ?, ?), …` for `rows` rows: only
/// placeholders, the values are bound.
fn insert_sql(rows: usize) -> String {
    let mut sql = String::from("insert into t (id, name, qty, price, note) values ");
    for i in 0..rows {
        if i > 0 {
            sql.push(',');
        }
        sql.push_str("(?, ?, ?, ?, ?)");
    }
    sql
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_statements_hold_only_placeholders() {
        assert_eq!(insert_sql(2), "insert into t (id, name, qty, price, note) values (?, ?, ?, ?, ?),(?, ?, ?, ?, ?)");
    }

    #[test]
    fn null_and_empty_text_hash_differently() {
        let row =
            |name: Option<&str>| BenchRow { id: 1, name: name.map(String::from), qty: None, price: None, note: None };
        let digest = |r: &BenchRow| {
            let mut h = Sha256::new();
            hash_row(&mut h, r);
            h.finalize()
        };
        assert_ne!(digest(&row(None)), digest(&row(Some(""))));
        assert_ne!(digest(&row(Some("a"))), digest(&row(Some("b"))));
    }
}

//! The incremental baseline: PostgreSQL's own logical replication, from a
//! publication on one database to a subscription on another holding the same
//! rows (`copy_data = false`), timed from the `UPDATE`'s commit on the
//! publisher until the subscriber shows it, once per round.
//!
//! Both databases are in the same cluster, so the replication slot is created
//! beforehand and the subscription told not to create it (a `CREATE
//! SUBSCRIPTION` that creates a slot in its own cluster would wait for itself).

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use sqlx::postgres::PgConnection;
use sqlx::{AssertSqlSafe, Connection};

use super::pg::{self, quote_ident};
use super::rows;

/// How long the subscription may take to start streaming, and the update to arrive.
const START_TIMEOUT: Duration = Duration::from_secs(60);
const APPLY_TIMEOUT: Duration = Duration::from_secs(600);
/// How often the subscriber is polled while the update travels.
const POLL: Duration = Duration::from_millis(2);

/// The `ALTER SYSTEM` advice printed when `wal_level` is not `logical`.
pub(crate) fn wal_level_advice(current: &str) -> String {
    format!(
        "PostgreSQL's wal_level is `{current}`; logical replication needs `logical`, so its baseline is NOT \
         MEASURED. To measure it, run as a superuser\n    psql -c \"ALTER SYSTEM SET wal_level = logical\"\n\
         then restart PostgreSQL (e.g. `sudo systemctl restart postgresql`, or `pg_ctlcluster 15 main restart` \
         on Debian), and rerun. The bench never restarts the server itself."
    )
}

/// A publication, its slot and the subscription, all named `name`.
pub(crate) struct Replication {
    name: String,
    publisher: String,
    subscriber: String,
}

impl Replication {
    /// Publishes `t` on `publisher`, subscribes `subscriber` to it without
    /// copying data, and waits until the subscription streams.
    pub(crate) async fn start(name: &str, publisher: &str, subscriber: &str) -> anyhow::Result<Self> {
        let replication = Replication {
            name: name.to_string(),
            publisher: publisher.to_string(),
            subscriber: subscriber.to_string(),
        };
        let mut publ = pg::connect(publisher).await?;
        sqlx::raw_sql(AssertSqlSafe(format!("create publication {} for table t", quote_ident(name))))
            .execute(&mut publ)
            .await
            .context("creating the publication")?;
        sqlx::query("select pg_create_logical_replication_slot($1, 'pgoutput')")
            .bind(name)
            .execute(&mut publ)
            .await
            .context("creating the replication slot")?;
        let mut subs = pg::connect(subscriber).await?;
        // CREATE SUBSCRIPTION takes no parameters: the server quotes the
        // values into the statement with format(), and it is run as text.
        let sql: String = sqlx::query_scalar(
            "select format('create subscription %I connection %L publication %I \
             with (copy_data = false, create_slot = false, slot_name = %L)', $1::text, $2::text, $1::text, $1::text)",
        )
        .bind(name)
        .bind(publisher)
        .fetch_one(&mut subs)
        .await
        .context("quoting the subscription statement")?;
        sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut subs).await.context("creating the subscription")?;
        subs.close().await.context("closing the subscriber connection")?;

        let started = Instant::now();
        loop {
            let streaming: i64 = sqlx::query_scalar(
                "select count(*) from pg_stat_replication where application_name = $1 and state = 'streaming'",
            )
            .bind(name)
            .fetch_one(&mut publ)
            .await
            .context("reading pg_stat_replication")?;
            if streaming > 0 {
                break;
            }
            if started.elapsed() > START_TIMEOUT {
                bail!("the subscription did not start streaming within {} s", START_TIMEOUT.as_secs());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        publ.close().await.context("closing the publisher connection")?;
        Ok(replication)
    }

    /// Runs the application's `UPDATE` of `rows` rows on the publisher and
    /// returns the time from its commit until the subscriber has applied it.
    /// The update adds one to `qty` of every row it touches, so the last
    /// updated row shows the arrival in every round (the subscriber applies a
    /// transaction atomically: when that row shows, all do); the subscriber's
    /// rows are compared with the publisher's afterwards.
    pub(crate) async fn time_update(&self, rows: u64) -> anyhow::Result<Duration> {
        let mut publ = pg::connect(&self.publisher).await?;
        let mut subs = pg::connect(&self.subscriber).await?;
        let last = i64::try_from(rows).context("--updated is too large")?;
        let qty_of_last = "select qty::int8 from t where id = $1";
        let before: i64 = sqlx::query_scalar(qty_of_last)
            .bind(last)
            .fetch_one(&mut subs)
            .await
            .context("reading the subscriber's last row before the update")?;
        let (updated, _) = pg::update(&mut publ, rows).await?;
        let committed = Instant::now();
        if updated != rows {
            bail!("the update on the publisher changed {updated} rows instead of {rows}");
        }
        loop {
            let now: Option<i64> = sqlx::query_scalar(qty_of_last)
                .bind(last)
                .fetch_optional(&mut subs)
                .await
                .context("polling the subscriber")?;
            if now == Some(before + 1) {
                break;
            }
            if committed.elapsed() > APPLY_TIMEOUT {
                bail!("the subscriber did not apply the update within {} s", APPLY_TIMEOUT.as_secs());
            }
            tokio::time::sleep(POLL).await;
        }
        let elapsed = committed.elapsed();
        publ.close().await.context("closing the publisher connection")?;
        subs.close().await.context("closing the subscriber connection")?;
        rows::verify_same_rows(&self.publisher, &self.subscriber)
            .await
            .context("comparing the subscriber's rows with the publisher's after the replicated update")?;
        Ok(elapsed)
    }

    /// The handle of a replication that may have been started (or half
    /// started), to stop what exists of it.
    pub(crate) fn resume(name: &str, publisher: &str, subscriber: &str) -> Self {
        Replication { name: name.to_string(), publisher: publisher.to_string(), subscriber: subscriber.to_string() }
    }

    /// Drops the subscription, the slot and the publication, those that exist.
    pub(crate) async fn stop(self) -> anyhow::Result<()> {
        let name = quote_ident(&self.name);
        let mut subs = pg::connect(&self.subscriber).await?;
        let exists: i64 = sqlx::query_scalar("select count(*) from pg_subscription where subname = $1")
            .bind(&self.name)
            .fetch_one(&mut subs)
            .await
            .context("reading pg_subscription")?;
        let statements = if exists > 0 {
            vec![
                format!("alter subscription {name} disable"),
                format!("alter subscription {name} set (slot_name = none)"),
                format!("drop subscription {name}"),
            ]
        } else {
            Vec::new()
        };
        for sql in statements {
            sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut subs).await.context("dropping the subscription")?;
        }
        subs.close().await.context("closing the subscriber connection")?;
        let mut publ = pg::connect(&self.publisher).await?;
        drop_slot(&mut publ, &self.name).await?;
        sqlx::raw_sql(AssertSqlSafe(format!("drop publication if exists {name}")))
            .execute(&mut publ)
            .await
            .context("dropping the publication")?;
        publ.close().await.context("closing the publisher connection")?;
        Ok(())
    }
}

/// Drops a replication slot once its sender has gone (the subscription's
/// sender ends a moment after the subscription is disabled).
pub(crate) async fn drop_slot(conn: &mut PgConnection, name: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let state: Option<bool> = sqlx::query_scalar("select active from pg_replication_slots where slot_name = $1")
            .bind(name)
            .fetch_optional(&mut *conn)
            .await
            .context("reading pg_replication_slots")?;
        match state {
            None => return Ok(()),
            Some(false) => {
                sqlx::query("select pg_drop_replication_slot($1)")
                    .bind(name)
                    .execute(&mut *conn)
                    .await
                    .context("dropping the replication slot")?;
                return Ok(());
            }
            Some(true) if started.elapsed() > START_TIMEOUT => {
                bail!("replication slot {name} stayed active; drop it with pg_drop_replication_slot")
            }
            Some(true) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_advice_says_what_to_run() {
        let advice = wal_level_advice("replica");
        assert!(advice.contains("`replica`") && advice.contains("ALTER SYSTEM SET wal_level = logical"), "{advice}");
        assert!(advice.contains("restart") && advice.contains("NOT MEASURED"), "{advice}");
    }
}

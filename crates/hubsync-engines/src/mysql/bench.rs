//! Measuring what change tracking costs concurrent writers, for hubsync's
//! gap-detected versions and, for comparison, for the alternative of one
//! counter row every tracked write updates and holds until commit (which
//! serialises writers of *different* rows).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hubsync_core::{Endpoint, EndpointError, TableName};

use super::errors::ctx;
use super::{MySqlEndpoint, ddl, query};

/// Transactions per second of concurrent single-row updates, without and
/// with hubsync's triggers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrackingCost {
    /// Concurrent connections.
    pub writers: usize,
    /// Without tracking.
    pub untracked_tps: f64,
    /// With hubsync's triggers (versions from `hubsync_seq`, gap detection).
    pub tracked_tps: f64,
    /// With a trigger doing what a serialised counter would: update one
    /// counter row (held until commit) and upsert a tracking row.
    pub serialised_tps: f64,
}

/// Runs `writers` connections, each updating its own rows in one-row
/// transactions for `duration`, on a scratch table in the URL's database;
/// first untracked, then provisioned. Drops everything it created.
pub async fn measure_tracking_cost(
    url: &str,
    writers: usize,
    duration: Duration,
) -> Result<TrackingCost, EndpointError> {
    let endpoint = MySqlEndpoint::open(url, crate::redact_url(url)).await?;
    let name = format!("hubsync_bench_{}", std::process::id());
    let table = TableName::new(name.clone());
    let t = super::dialect::qualified(&table, endpoint.database());
    ddl(format!("DROP TABLE IF EXISTS {t}")).execute(&endpoint.pool).await.map_err(ctx("preparing the benchmark"))?;
    ddl(format!("CREATE TABLE {t} (id BIGINT PRIMARY KEY, v BIGINT NOT NULL, note VARCHAR(64)) ENGINE=InnoDB"))
        .execute(&endpoint.pool)
        .await
        .map_err(ctx("preparing the benchmark"))?;
    let rows = (writers * 16) as i64;
    for id in 0..rows {
        query(format!("INSERT INTO {t} (id, v, note) VALUES (?, 0, 'x')"))
            .bind(id)
            .execute(&endpoint.pool)
            .await
            .map_err(ctx("preparing the benchmark"))?;
    }
    let untracked = run(url, &t, writers, duration).await;
    let serialised = serialised(&endpoint, url, &t, &name, writers, duration).await;
    let schema = endpoint.introspect(&table).await?;
    let tracked = match schema {
        Some(schema) => match endpoint.provision(&schema).await {
            Ok(()) => run(url, &t, writers, duration).await,
            Err(e) => Err(e),
        },
        None => Err(EndpointError::new(hubsync_core::ErrorKind::TableMissing, "the benchmark table vanished")),
    };
    let _ = endpoint.deprovision(std::slice::from_ref(&table)).await;
    let _ = ddl(format!("DROP TABLE IF EXISTS {t}")).execute(&endpoint.pool).await;
    Ok(TrackingCost { writers, untracked_tps: untracked?, tracked_tps: tracked?, serialised_tps: serialised? })
}

/// The serialised-counter design, as a trigger of the same shape as hubsync's.
async fn serialised(
    endpoint: &MySqlEndpoint,
    url: &str,
    t: &str,
    name: &str,
    writers: usize,
    duration: Duration,
) -> Result<f64, EndpointError> {
    let db = endpoint.database();
    let ctr = super::dialect::in_db(db, &format!("{name}_ctr"));
    let tr = super::dialect::in_db(db, &format!("{name}_tr"));
    let trigger = super::dialect::in_db(db, &format!("{name}_upd"));
    let setup = [
        format!("CREATE TABLE {ctr} (id INT PRIMARY KEY, v BIGINT NOT NULL) ENGINE=InnoDB"),
        format!("INSERT INTO {ctr} VALUES (1, 0)"),
        format!("CREATE TABLE {tr} (id BIGINT PRIMARY KEY, version BIGINT NOT NULL) ENGINE=InnoDB"),
        format!(
            "CREATE TRIGGER {trigger} AFTER UPDATE ON {t} FOR EACH ROW BEGIN \
             UPDATE {ctr} SET v = LAST_INSERT_ID(v + 1) WHERE id = 1; \
             INSERT INTO {tr} VALUES (NEW.id, LAST_INSERT_ID()) ON DUPLICATE KEY UPDATE version = VALUES(version); END"
        ),
    ];
    for sql in setup {
        ddl(sql).execute(&endpoint.pool).await.map_err(ctx("preparing the serialised-counter benchmark"))?;
    }
    let result = run(url, t, writers, duration).await;
    for sql in [format!("DROP TRIGGER IF EXISTS {trigger}"), format!("DROP TABLE IF EXISTS {ctr}, {tr}")] {
        let _ = ddl(sql).execute(&endpoint.pool).await;
    }
    result
}

async fn run(url: &str, t: &str, writers: usize, duration: Duration) -> Result<f64, EndpointError> {
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let endpoint = MySqlEndpoint::open(url, crate::redact_url(url)).await?;
        let sql = format!("UPDATE {t} SET v = v + 1 WHERE id = ?");
        let done = Arc::clone(&done);
        tasks.push(tokio::spawn(async move {
            let mut conn = endpoint.pool.acquire().await.map_err(ctx("benchmark connection"))?;
            let mut i = 0i64;
            while start.elapsed() < duration {
                let id = (w as i64) * 16 + (i % 16);
                i += 1;
                match query(sql.clone()).bind(id).execute(&mut *conn).await {
                    Ok(_) => {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    // A deadlock victim just tries again, as an application would.
                    Err(e) if super::errors::kind_of(&e).is_transient() => {}
                    Err(e) => return Err(super::errors::map_err(e, "benchmark update")),
                }
            }
            Ok::<(), EndpointError>(())
        }));
    }
    for task in tasks {
        task.await
            .map_err(|e| EndpointError::new(hubsync_core::ErrorKind::Other, format!("benchmark task: {e}")))??;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64())
}

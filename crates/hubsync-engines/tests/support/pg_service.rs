//! The PostgreSQL test server, shared by the engine tests and the conformance
//! harness: where it is, one fresh database per test, and the rule for an
//! unreachable server (fail under `CI`/`HUBSYNC_REQUIRE_SERVICES`, else skip
//! loudly).

#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};

use sqlx::{AssertSqlSafe, Connection, PgConnection};

/// The admin URL when `HUBSYNC_TEST_PG_URL` is unset; its database is used
/// only to create and drop test databases.
const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// The server's admin URL.
pub fn admin_url() -> String {
    std::env::var("HUBSYNC_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_string())
}

/// The URL of database `db` on the admin URL's server.
pub fn db_url(db: &str) -> String {
    let admin = admin_url();
    let (base, query) = match admin.split_once('?') {
        Some((b, q)) => (b.to_string(), format!("?{q}")),
        None => (admin.clone(), String::new()),
    };
    let server = match base.rfind('/') {
        Some(i) if i > base.find("://").map_or(0, |s| s + 2) => base[..i].to_string(),
        _ => base,
    };
    format!("{server}/{db}{query}")
}

/// Whether tests must fail (not skip) when the server is unreachable.
fn services_required() -> bool {
    std::env::var_os("CI").is_some() || std::env::var_os("HUBSYNC_REQUIRE_SERVICES").is_some()
}

/// Connects to the admin database. Parallel suites can fill the server's
/// connection slots for a moment (`too many clients`, SQLSTATE 53300): that
/// is waited out, for up to a minute, instead of failing the test.
async fn connect_admin() -> Result<PgConnection, sqlx::Error> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        match PgConnection::connect(&admin_url()).await {
            Err(sqlx::Error::Database(e))
                if e.code().as_deref() == Some("53300") && std::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            other => return other,
        }
    }
}

/// `None` when the server is reachable, else why not (after saying loudly
/// that the test is skipped). Panics when services are required.
pub async fn server_unavailable() -> Option<String> {
    match connect_admin().await {
        Ok(conn) => {
            let _ = conn.close().await;
            None
        }
        Err(e) => {
            let why = format!("PostgreSQL at {} is unreachable: {e}", hubsync_engines::redact_url(&admin_url()));
            assert!(
                !services_required(),
                "{why}. CI or HUBSYNC_REQUIRE_SERVICES is set, so PostgreSQL tests must run: start the server or set HUBSYNC_TEST_PG_URL"
            );
            eprintln!("\n*** SKIPPED: {why}. Set HUBSYNC_TEST_PG_URL or start PostgreSQL to run this test. ***\n");
            Some(why)
        }
    }
}

/// Creates a uniquely named empty database; returns its name and URL.
pub async fn create_database(label: &str) -> (String, String) {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let slug: String = label.chars().filter(|c| c.is_ascii_alphanumeric()).take(12).collect::<String>().to_lowercase();
    let db = format!("hubsync_t_{}_{n}_{nanos:x}_{slug}", std::process::id());
    let mut admin = connect_admin().await.expect("connecting to the PostgreSQL test server");
    sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE \"{db}\"")))
        .execute(&mut admin)
        .await
        .unwrap_or_else(|e| panic!("creating database {db}: {e}"));
    let _ = admin.close().await;
    let url = db_url(&db);
    (db, url)
}

/// Drops a test database, disconnecting whoever is still on it.
pub async fn drop_database(db: &str) {
    let mut admin = connect_admin().await.expect("connecting to the test server");
    sqlx::raw_sql(AssertSqlSafe(format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)")))
        .execute(&mut admin)
        .await
        .unwrap_or_else(|e| panic!("dropping database {db}: {e}"));
    let _ = admin.close().await;
}

//! What the binary's integration tests share: the local servers' admin urls,
//! unique database names, and connecting to a server or skipping loudly.

// Each test binary includes this module and uses part of it.
#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};

use sqlx::Connection;
use sqlx::mysql::MySqlConnection;
use sqlx::postgres::PgConnection;

/// The local PostgreSQL server's admin database (DEVELOPERS.md).
pub const PG_ADMIN: &str = "postgres://postgres@127.0.0.1:5432/test";
/// The local MariaDB server's admin database (DEVELOPERS.md).
pub const MY_ADMIN: &str = "mysql://root@127.0.0.1:3306/test";

/// Whether an unreachable server fails the test instead of skipping it.
pub fn services_required() -> bool {
    std::env::var_os("CI").is_some() || std::env::var_os("HUBSYNC_REQUIRE_SERVICES").is_some()
}

/// A database name no other test run uses, starting with `prefix`.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{prefix}_{}_{}_{nanos}", std::process::id(), COUNTER.fetch_add(1, Ordering::SeqCst))
}

/// Connects to PostgreSQL's admin database, or says why `test` skips.
pub async fn postgres(test: &str) -> Option<PgConnection> {
    match PgConnection::connect(PG_ADMIN).await {
        Ok(c) => Some(c),
        Err(e) => {
            assert!(!services_required(), "PostgreSQL at {PG_ADMIN} is required (CI or HUBSYNC_REQUIRE_SERVICES): {e}");
            eprintln!("SKIPPED: {test} needs PostgreSQL at {PG_ADMIN}: {e}");
            None
        }
    }
}

/// Connects to MariaDB's admin database, or says why `test` skips.
pub async fn mariadb(test: &str) -> Option<MySqlConnection> {
    match MySqlConnection::connect(MY_ADMIN).await {
        Ok(c) => Some(c),
        Err(e) => {
            assert!(!services_required(), "MariaDB at {MY_ADMIN} is required (CI or HUBSYNC_REQUIRE_SERVICES): {e}");
            eprintln!("SKIPPED: {test} needs MariaDB at {MY_ADMIN}: {e}");
            None
        }
    }
}

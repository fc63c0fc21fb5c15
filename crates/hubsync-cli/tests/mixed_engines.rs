//! End to end through the binary: one group with a PostgreSQL hub, a MariaDB
//! member and a SQLite member, configured in a file and synced by `hubsync
//! sync`. Each test creates its own databases on the local servers and drops
//! them afterwards; without the servers it skips loudly (or fails under CI).

#![allow(clippy::unwrap_used, missing_docs)]

use std::process::{Command, Output};

use sqlx::mysql::MySqlConnection;
use sqlx::postgres::PgConnection;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{AssertSqlSafe, Connection, SqliteConnection};

mod support;

use support::{mariadb, postgres, unique_name};

fn hubsync(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_hubsync")).args(args).env_remove("RUST_LOG").output().unwrap();
    eprintln!(
        "$ hubsync {}\n--- stdout\n{}--- stderr\n{}--- exit {:?}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        out.status.code()
    );
    out
}

/// Connects to both servers' admin databases, or says why the test skips.
async fn servers() -> Option<(PgConnection, MySqlConnection)> {
    let pg = postgres("the mixed-engine CLI test").await?;
    let my = mariadb("the mixed-engine CLI test").await?;
    Some((pg, my))
}

async fn pg_exec(url: &str, sqls: &[&str]) {
    let mut c = PgConnection::connect(url).await.unwrap();
    for sql in sqls {
        sqlx::raw_sql(AssertSqlSafe(sql.to_string())).execute(&mut c).await.unwrap();
    }
    c.close().await.unwrap();
}

async fn pg_count(url: &str, table: &str) -> i64 {
    let mut c = PgConnection::connect(url).await.unwrap();
    let n: i64 =
        sqlx::query_scalar(AssertSqlSafe(format!("SELECT count(*) FROM {table}"))).fetch_one(&mut c).await.unwrap();
    c.close().await.unwrap();
    n
}

async fn my_count(url: &str, table: &str) -> i64 {
    let mut c = MySqlConnection::connect(url).await.unwrap();
    let n: i64 =
        sqlx::query_scalar(AssertSqlSafe(format!("SELECT count(*) FROM {table}"))).fetch_one(&mut c).await.unwrap();
    c.close().await.unwrap();
    n
}

async fn sqlite_exec(path: &std::path::Path, sql: &str) -> i64 {
    let mut c = SqliteConnection::connect_with(&SqliteConnectOptions::new().filename(path).create_if_missing(true))
        .await
        .unwrap();
    let r = if sql.starts_with("SELECT") {
        sqlx::query_scalar(AssertSqlSafe(sql.to_string())).fetch_one(&mut c).await.unwrap()
    } else {
        sqlx::raw_sql(AssertSqlSafe(sql.to_string())).execute(&mut c).await.unwrap().rows_affected() as i64
    };
    c.close().await.unwrap();
    r
}

#[tokio::test]
async fn a_postgres_hub_syncs_with_a_mariadb_and_a_sqlite_member_from_a_config_file() {
    let Some((mut pg_admin, mut my_admin)) = servers().await else { return };
    let name = unique_name("hubsync_cli");
    sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut pg_admin).await.unwrap();
    sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut my_admin).await.unwrap();
    let pg_url = format!("postgres://postgres@127.0.0.1:5432/{name}");
    let my_url = format!("mysql://root@127.0.0.1:3306/{name}");
    pg_exec(
        &pg_url,
        &[
            "CREATE TABLE customers (id bigint PRIMARY KEY, name text NOT NULL, joined timestamptz, credit numeric(10,2))",
            "CREATE TABLE orders (id bigint PRIMARY KEY, customer_id bigint NOT NULL REFERENCES customers(id), total numeric(10,2), note text)",
            "INSERT INTO customers VALUES (1, 'Ada', '2024-01-02 03:04:05+00', 10.50), (2, 'Brian', NULL, 0), (3, 'Chloé', '2025-06-07 08:09:10.5+00', 99.99)",
            "INSERT INTO orders VALUES (1, 1, 12.00, 'first'), (2, 1, 3.50, NULL), (3, 3, 100.00, 'big')",
        ],
    )
    .await;
    let tmp = tempfile::tempdir().unwrap();
    let config = format!(
        "[[group]]\nname = \"shop\"\nhub = \"{pg_url}\"\nconflict_resolution = \"HubWin\"\ntables = [\"customers\", \"orders\"]\n\n\
         [[group.member]]\nname = \"branch\"\nurl = \"{my_url}\"\n\n\
         [[group.member]]\nname = \"laptop\"\nurl = \"sqlite://laptop.db\"\n"
    );
    let config_path = tmp.path().join("hubsync.toml");
    std::fs::write(&config_path, config).unwrap();
    let config_path = config_path.to_str().unwrap();
    let laptop = tmp.path().join("laptop.db");

    let first = hubsync(&["sync", "--config", config_path]);
    assert!(first.status.success(), "the first sync failed");
    assert_eq!(my_count(&my_url, "customers").await, 3);
    assert_eq!(my_count(&my_url, "orders").await, 3);
    assert_eq!(sqlite_exec(&laptop, "SELECT count(*) FROM orders").await, 3);

    // A change on each member travels to the hub and on to the other member.
    sqlite_exec(&laptop, "INSERT INTO customers (id, name, credit) VALUES (10, 'from the laptop', '1.00')").await;
    let mut my = MySqlConnection::connect(&my_url).await.unwrap();
    sqlx::raw_sql("UPDATE customers SET name = 'Brian (branch)' WHERE id = 2; DELETE FROM orders WHERE id = 2")
        .execute(&mut my)
        .await
        .unwrap();
    my.close().await.unwrap();
    for _ in 0..2 {
        assert!(hubsync(&["sync", "--config", config_path]).status.success());
    }
    assert_eq!(pg_count(&pg_url, "customers").await, 4);
    assert_eq!(pg_count(&pg_url, "orders").await, 2);
    assert_eq!(my_count(&my_url, "customers").await, 4);
    assert_eq!(sqlite_exec(&laptop, "SELECT count(*) FROM orders").await, 2);
    assert_eq!(sqlite_exec(&laptop, "SELECT count(*) FROM customers WHERE name = 'Brian (branch)'").await, 1);

    let again = hubsync(&["sync", "--config", config_path]);
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stdout).contains("0 rows moved"), "a converged group must move nothing");
    let status = hubsync(&["status", "--config", config_path]);
    assert!(status.status.success());

    let de = hubsync(&["deprovision", "--config", config_path]);
    assert!(de.status.success());
    assert_eq!(pg_count(&pg_url, "customers").await, 4, "user data stays");
    assert_eq!(my_count(&my_url, "customers").await, 4, "user data stays");
    assert_eq!(pg_count(&pg_url, "pg_namespace WHERE nspname LIKE 'hubsync%'").await, 0, "hubsync's schema is gone");
    assert_eq!(
        pg_count(&pg_url, "pg_trigger WHERE NOT tgisinternal AND tgname LIKE 'hubsync%'").await,
        0,
        "hubsync's triggers are gone"
    );
    assert_eq!(
        my_count(
            &my_url,
            &format!("information_schema.tables WHERE table_schema = '{name}' AND table_name LIKE 'hubsync%'")
        )
        .await,
        0,
        "hubsync's tables are gone from MariaDB"
    );
    assert_eq!(
        my_count(&my_url, &format!("information_schema.triggers WHERE trigger_schema = '{name}'")).await,
        0,
        "hubsync's triggers are gone from MariaDB"
    );
    assert_eq!(
        sqlite_exec(&laptop, "SELECT count(*) FROM sqlite_master WHERE name LIKE 'hubsync%'").await,
        0,
        "hubsync's objects are gone from SQLite"
    );

    sqlx::raw_sql(AssertSqlSafe(format!("DROP DATABASE {name} WITH (FORCE)"))).execute(&mut pg_admin).await.unwrap();
    sqlx::raw_sql(AssertSqlSafe(format!("DROP DATABASE {name}"))).execute(&mut my_admin).await.unwrap();
}

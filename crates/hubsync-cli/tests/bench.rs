//! Smoke test of `hubsync bench` on tiny sizes: it runs every phase, verifies
//! the member against the hub, and prints the results table. No timing is
//! asserted: speed targets live in the benchmark and `docs/benchmarks.md`.

use std::process::Command;

#[test]
fn bench_quick_runs_every_phase_and_prints_the_results_table() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let output = Command::new(env!("CARGO_BIN_EXE_hubsync"))
        .args(["bench", "--quick", "--rows", "20000", "--scale-rows", "40000", "--updated", "5000", "--dir"])
        .arg(dir.path())
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "bench failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}", output.status);

    for expected in [
        "| Phase",
        "| Rows/s",
        "baseline INSERT … SELECT (main)",
        "initial sync: provision member + sync (main)",
        "incremental sync (download of updates)",
        "initial sync: provision member + sync (scale)",
        "member verified",
        "Targets: ",
        "SQLite:",
        "machine:",
    ] {
        assert!(stdout.contains(expected), "missing `{expected}` in:\n{stdout}\nstderr:\n{stderr}");
    }
    let table_rows = stdout.lines().filter(|l| l.starts_with("| ")).count();
    // Header, separator, 4 lines per size and the incremental sync.
    assert_eq!(table_rows, 2 + 4 + 1 + 4, "{stdout}");
    assert!(stdout.contains("PASS") || stdout.contains("MISS"), "{stdout}");
    Ok(())
}

#[test]
fn bench_refuses_to_update_more_rows_than_it_generates() -> Result<(), Box<dyn std::error::Error>> {
    let output = Command::new(env!("CARGO_BIN_EXE_hubsync"))
        .args(["bench", "--rows", "10", "--updated", "11", "--scale-rows", "0"])
        .output()?;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--updated"), "{stderr}");
    Ok(())
}

/// The PostgreSQL server the server-engine smoke tests use.
fn postgres_url() -> String {
    std::env::var("HUBSYNC_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// The MySQL/MariaDB server the server-engine smoke tests use.
fn mysql_url() -> String {
    std::env::var("HUBSYNC_MYSQL_URL")
        .or_else(|_| std::env::var("HUBSYNC_TEST_MYSQL_URL"))
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into())
}

/// Whether the server a URL names accepts connections. When it does not, the
/// test fails if `CI` or `HUBSYNC_REQUIRE_SERVICES` is set, and otherwise says
/// loudly that it skips.
fn server_reachable(what: &str, url: &str, default_port: u16) -> bool {
    use std::net::{TcpStream, ToSocketAddrs};
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let address = if host.contains(':') { host.to_string() } else { format!("{host}:{default_port}") };
    let reachable = address
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|addr| TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(3)).is_ok());
    if !reachable {
        let why = format!("{what} is unreachable at {address}");
        if std::env::var_os("CI").is_some() || std::env::var_os("HUBSYNC_REQUIRE_SERVICES").is_some() {
            panic!("{why}; CI or HUBSYNC_REQUIRE_SERVICES is set, so this test must run: start the server");
        }
        eprintln!("\n*** SKIPPED: {why}. Start it (or point the test at one) to run this benchmark smoke test. ***\n");
    }
    reachable
}

/// Runs `hubsync bench` with `args` and returns its standard output, failing
/// with both outputs when it fails.
fn bench(args: &[&str]) -> Result<String, Box<dyn std::error::Error>> {
    let output = Command::new(env!("CARGO_BIN_EXE_hubsync")).arg("bench").args(args).output()?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "bench failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}", output.status);
    Ok(stdout)
}

fn assert_contains(stdout: &str, expected: &[&str]) {
    for expected in expected {
        assert!(stdout.contains(expected), "missing `{expected}` in:\n{stdout}");
    }
}

#[test]
fn bench_postgres_quick_measures_every_figure_next_to_its_baseline() -> Result<(), Box<dyn std::error::Error>> {
    let url = postgres_url();
    if !server_reachable("PostgreSQL", &url, 5432) {
        return Ok(());
    }
    let stdout = bench(&[
        "--engine",
        "postgres",
        "--quick",
        "--rows",
        "2000",
        "--updated",
        "500",
        "--incremental-rounds",
        "2",
        "--pgbench-seconds",
        "1",
        "--postgres-url",
        &url,
    ])?;
    assert_contains(
        &stdout,
        &[
            "| Phase",
            "PostgreSQL:",
            "baseline COPY TO STDOUT → COPY FROM STDIN (PostgreSQL → PostgreSQL)",
            "initial sync: provision member + sync (PostgreSQL → PostgreSQL)",
            "Initial sync of 2,000 rows",
            "Baseline COPY of 2,000 rows",
            "bulk UPDATE, untracked",
            "bulk UPDATE, tracked (hub)",
            "incremental sync (PostgreSQL → PostgreSQL)",
            "Incremental sync of 500 updated rows (round 1 of 2)",
            "Incremental sync of 500 updated rows (round 2 of 2)",
            "Incremental sync and logical replication alternated 2 times",
            "verified (2,000 rows, checksum",
            "pgbench simple-update",
            "Targets: ",
        ],
    );
    // The logical replication baseline needs wal_level=logical; without it the
    // run says what to do instead.
    assert!(
        stdout.contains("baseline logical replication (same update)")
            || stdout.contains("ALTER SYSTEM SET wal_level = logical"),
        "{stdout}"
    );
    assert!(stdout.contains("PASS") || stdout.contains("MISS"), "{stdout}");
    Ok(())
}

#[test]
fn bench_mysql_quick_measures_the_initial_syncs_against_multi_row_inserts() -> Result<(), Box<dyn std::error::Error>> {
    let url = mysql_url();
    if !server_reachable("MySQL/MariaDB", &url, 3306) {
        return Ok(());
    }
    let stdout = bench(&[
        "--engine",
        "mysql",
        "--quick",
        "--rows",
        "2000",
        "--mysql-url",
        &url,
        "--postgres-url",
        &postgres_url(),
    ])?;
    assert_contains(
        &stdout,
        &[
            "| Phase",
            "MySQL:",
            "baseline multi-row INSERT (MariaDB → MariaDB)",
            "initial sync: provision member + sync (MariaDB → MariaDB)",
            "Initial sync of 2,000 rows (MariaDB → MariaDB)",
            "verified (2,000 rows, checksum",
            "Targets: ",
        ],
    );
    // PostgreSQL → MariaDB runs when PostgreSQL is reachable, else says so.
    assert!(
        stdout.contains("initial sync: provision member + sync (PostgreSQL → MariaDB)")
            || stdout.contains("PostgreSQL → MariaDB was NOT MEASURED"),
        "{stdout}"
    );
    Ok(())
}

//! `hubsync quickstart`: a guided first run on three SQLite files.
//!
//! It builds a hub and two stores, writes the config it uses, and then runs
//! exactly what `hubsync sync` runs ([`super::sync::sync_groups`]), so what the
//! user sees here is what they will get with their own config.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use hubsync_core::Cancel;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Connection, SqliteConnection};

use super::Target;
use super::sync::{GroupOutcome, sync_groups};
use crate::config::Config;
use crate::progress::Progress;
use crate::report;

/// Options of `hubsync quickstart`.
#[derive(Debug, Clone, clap::Args)]
pub struct QuickstartArgs {
    /// Where to create the databases and the config. Re-running replaces the
    /// files quickstart created there, and only those.
    #[arg(long, value_name = "DIR", default_value = "hubsync-quickstart")]
    pub dir: PathBuf,
}

const DATABASES: [&str; 3] = ["hub.db", "store1.db", "store2.db"];
const CONFIG_FILE: &str = "hubsync.toml";

const CONFIG: &str = r#"# Written by `hubsync quickstart`. Run it yourself with:
#   hubsync sync --config hubsync.toml
#   hubsync status --config hubsync.toml

[[group]]
name = "quickstart"
hub = "sqlite://hub.db"            # relative paths are relative to this file
conflict_resolution = "HubWin"     # HubWin | MemberWin | LastWriterWins
interval = "5m"                    # used by a scheduler; `hubsync sync` runs once
tables = ["customers", "orders"]

[[group.member]]
name = "store1"
url = "sqlite://store1.db"         # does not exist yet: hubsync creates its tables
direction = "Bidirectional"

[[group.member]]
name = "store2"
url = "sqlite://store2.db"         # already has a customers table with its own row
direction = "Bidirectional"
"#;

const CUSTOMERS_DDL: &str =
    "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT, city TEXT)";
const ORDERS_DDL: &str = "CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL REFERENCES customers(id), \
     item TEXT, amount NUMERIC, created_at TEXT)";

/// Runs the quickstart.
pub async fn run(args: &QuickstartArgs, cancel: &Cancel) -> anyhow::Result<ExitCode> {
    let dir = &args.dir;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let replaced = remove_previous_run(dir)?;

    say!("hubsync quickstart: one hub and two stores, all SQLite files in {}", dir.display());
    if replaced {
        say!("(replaced the databases and config of a previous quickstart run there)");
    }
    step("1. Creating the databases");
    create_databases(dir).await?;
    say!("   hub.db     customers (5 rows) and orders (6 rows)");
    say!("   store1.db  empty: hubsync will create its tables from the hub's schema");
    say!("   store2.db  a customers table holding one walk-in customer (id 101) of its own");
    let config_path = dir.join(CONFIG_FILE);
    std::fs::write(&config_path, CONFIG).with_context(|| format!("cannot write {}", config_path.display()))?;
    say!("   {}  the sync group: hub + store1 + store2, tables customers and orders, HubWin", config_path.display());

    let config = Config::load(&config_path)?;
    let target = Target { config: config_path.clone(), group: None, member: None };
    let progress = Progress::bars_or_quiet();

    step("2. First sync: the initial copy");
    let outcomes = sync_groups(&config, &target, &progress, cancel).await?;
    if !show(&outcomes) {
        return Ok(ExitCode::from(1));
    }
    say!("   store1's tables were created and filled by bulk copy; store2's own customer went up to the hub.");

    step("3. Making different changes on each database");
    make_changes(dir).await?;
    say!("   hub.db     new customer 6 (Farah Haddad); customer 2's city -> \"Lyon\"");
    say!("   store1.db  new order 1001; customer 2's city -> \"Marseille\"  (a conflict: the hub changed it too)");
    say!("   store2.db  new order 2001; customer 3's email updated; order 5 deleted");
    say!("   (each database inserts in its own id range, so new rows never collide)");

    step("4. Second sync");
    let outcomes = sync_groups(&config, &target, &progress, cancel).await?;
    if !show(&outcomes) {
        return Ok(ExitCode::from(1));
    }
    say!("   The conflict on customer 2 went to the hub under HubWin, although store1 wrote later;");
    say!("   with conflict_resolution = \"LastWriterWins\" store1's \"Marseille\" would have won.");

    step("5. One more sync, so every change reaches every store");
    say!("   Members talk only to the hub: a change made on store2 reaches store1 on store1's next sync.");
    let outcomes = sync_groups(&config, &target, &progress, cancel).await?;
    if !show(&outcomes) {
        return Ok(ExitCode::from(1));
    }

    step("6. Checking that all three databases hold the same rows");
    let (customers, orders) = compare(dir).await?;
    say!("✔ hub, store1 and store2 hold the same {customers} customers and {orders} orders");
    say!();
    say!("Next: change a row with `sqlite3 {}`, then run", dir.join("store1.db").display());
    say!("  hubsync sync --config {}", config_path.display());
    say!("  hubsync status --config {}", config_path.display());
    Ok(ExitCode::SUCCESS)
}

fn step(title: &str) {
    say!("\n{title}");
}

/// Prints a sync's summary and failures; false when anything failed.
fn show(outcomes: &[GroupOutcome]) -> bool {
    report::print_sync_summary(outcomes);
    let failures: Vec<super::Failure> = outcomes.iter().flat_map(|o| o.all_failures().into_iter().cloned()).collect();
    super::print_failures(&failures);
    failures.is_empty()
}

/// Deletes the files a previous quickstart created in `dir`, and nothing else.
fn remove_previous_run(dir: &Path) -> anyhow::Result<bool> {
    let mut removed = false;
    let files = DATABASES
        .iter()
        .flat_map(|db| ["", "-wal", "-shm", "-journal"].map(|suffix| format!("{db}{suffix}")))
        .chain(std::iter::once(CONFIG_FILE.to_string()));
    for name in files {
        let path = dir.join(&name);
        match std::fs::remove_file(&path) {
            Ok(()) => removed = true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot remove {} from a previous run", path.display())),
        }
    }
    Ok(removed)
}

async fn open(path: &Path) -> anyhow::Result<SqliteConnection> {
    let opts = SqliteConnectOptions::new().filename(path).create_if_missing(true);
    SqliteConnection::connect_with(&opts).await.with_context(|| format!("cannot open {}", path.display()))
}

async fn exec(conn: &mut SqliteConnection, sql: &'static str) -> anyhow::Result<()> {
    sqlx::query(sql).execute(&mut *conn).await.with_context(|| format!("quickstart SQL failed: {sql}"))?;
    Ok(())
}

async fn insert_customer(
    conn: &mut SqliteConnection,
    id: i64,
    name: &str,
    email: &str,
    city: &str,
) -> anyhow::Result<()> {
    sqlx::query("INSERT INTO customers (id, name, email, city) VALUES (?, ?, ?, ?)")
        .bind(id)
        .bind(name)
        .bind(email)
        .bind(city)
        .execute(&mut *conn)
        .await
        .context("inserting a sample customer")?;
    Ok(())
}

async fn insert_order(
    conn: &mut SqliteConnection,
    id: i64,
    customer: i64,
    item: &str,
    amount: f64,
    at: &str,
) -> anyhow::Result<()> {
    sqlx::query("INSERT INTO orders (id, customer_id, item, amount, created_at) VALUES (?, ?, ?, ?, ?)")
        .bind(id)
        .bind(customer)
        .bind(item)
        .bind(amount)
        .bind(at)
        .execute(&mut *conn)
        .await
        .context("inserting a sample order")?;
    Ok(())
}

async fn create_databases(dir: &Path) -> anyhow::Result<()> {
    let mut hub = open(&dir.join("hub.db")).await?;
    exec(&mut hub, CUSTOMERS_DDL).await?;
    exec(&mut hub, ORDERS_DDL).await?;
    let customers = [
        (1, "Ada Lovelace", "ada@example.com", "London"),
        (2, "Blaise Pascal", "blaise@example.com", "Paris"),
        (3, "Carol Shaw", "carol@example.com", "Palo Alto"),
        (4, "Dennis Ritchie", "dmr@example.com", "Bronxville"),
        (5, "Edsger Dijkstra", "ewd@example.com", "Rotterdam"),
    ];
    for (id, name, email, city) in customers {
        insert_customer(&mut hub, id, name, email, city).await?;
    }
    let orders = [
        (1, 1, "Notebook", 12.5, "2026-01-05 09:14:00"),
        (2, 1, "Fountain pen", 48.0, "2026-01-06 11:02:00"),
        (3, 2, "Calculator", 99.99, "2026-01-07 15:40:00"),
        (4, 3, "Joystick", 24.9, "2026-01-08 10:21:00"),
        (5, 4, "Terminal", 350.0, "2026-01-09 16:55:00"),
        (6, 5, "Chalk", 3.2, "2026-01-10 08:30:00"),
    ];
    for (id, customer, item, amount, at) in orders {
        insert_order(&mut hub, id, customer, item, amount, at).await?;
    }
    hub.close().await?;

    let mut store2 = open(&dir.join("store2.db")).await?;
    exec(&mut store2, CUSTOMERS_DDL).await?;
    insert_customer(&mut store2, 101, "Walk-in customer", "", "Store 2").await?;
    store2.close().await?;
    Ok(())
}

async fn make_changes(dir: &Path) -> anyhow::Result<()> {
    let set_city = "UPDATE customers SET city = ? WHERE id = ?";

    let mut hub = open(&dir.join("hub.db")).await?;
    insert_customer(&mut hub, 6, "Farah Haddad", "farah@example.com", "Beirut").await?;
    sqlx::query(set_city).bind("Lyon").bind(2).execute(&mut hub).await.context("updating on the hub")?;
    hub.close().await?;

    let mut store1 = open(&dir.join("store1.db")).await?;
    insert_order(&mut store1, 1001, 1, "Ink bottle", 7.5, "2026-02-01 10:00:00").await?;
    sqlx::query(set_city).bind("Marseille").bind(2).execute(&mut store1).await.context("updating on store1")?;
    store1.close().await?;

    let mut store2 = open(&dir.join("store2.db")).await?;
    insert_order(&mut store2, 2001, 101, "Gift card", 25.0, "2026-02-01 12:30:00").await?;
    sqlx::query("UPDATE customers SET email = ? WHERE id = ?")
        .bind("carol.shaw@example.org")
        .bind(3)
        .execute(&mut store2)
        .await
        .context("updating on store2")?;
    sqlx::query("DELETE FROM orders WHERE id = ?").bind(5).execute(&mut store2).await.context("deleting on store2")?;
    store2.close().await?;
    Ok(())
}

/// Every row of a table, ordered by key, each rendered with SQLite's `quote()`
/// so a type difference (12 vs '12') counts as a difference.
async fn rows(conn: &mut SqliteConnection, table: &str, columns: &[&str]) -> anyhow::Result<Vec<String>> {
    let cols = columns.iter().map(|c| format!("quote({c})")).collect::<Vec<_>>().join(" || ', ' || ");
    let sql = format!("SELECT {cols} FROM {table} ORDER BY id");
    // The SQL is built from the fixed names above, never from input.
    sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql))
        .fetch_all(&mut *conn)
        .await
        .with_context(|| format!("reading {table}"))
}

/// Compares both tables across the three databases; returns the row counts.
async fn compare(dir: &Path) -> anyhow::Result<(usize, usize)> {
    let tables: [(&str, &[&str]); 2] = [
        ("customers", &["id", "name", "email", "city"]),
        ("orders", &["id", "customer_id", "item", "amount", "created_at"]),
    ];
    let mut counts = Vec::new();
    let mut content: Vec<Vec<Vec<String>>> = Vec::new();
    for db in DATABASES {
        let mut conn = open(&dir.join(db)).await?;
        let mut per_table = Vec::new();
        for (table, cols) in tables {
            per_table.push(rows(&mut conn, table, cols).await?);
        }
        conn.close().await?;
        content.push(per_table);
    }
    for (t, (table, _)) in tables.iter().enumerate() {
        let hub = &content[0][t];
        for (d, db) in DATABASES.iter().enumerate().skip(1) {
            let other = &content[d][t];
            if other != hub {
                let only_hub: Vec<&String> = hub.iter().filter(|r| !other.contains(r)).collect();
                let only_other: Vec<&String> = other.iter().filter(|r| !hub.contains(r)).collect();
                bail!(
                    "✘ {table} differs between hub.db ({} rows) and {db} ({} rows)\n  only on the hub: {only_hub:?}\n  only on {db}: {only_other:?}\nThis is a hubsync bug; please report it with this output.",
                    hub.len(),
                    other.len()
                );
            }
        }
        counts.push(hub.len());
    }
    let city: String = {
        let mut hub = open(&dir.join("hub.db")).await?;
        let city = sqlx::query_scalar("SELECT city FROM customers WHERE id = 2").fetch_one(&mut hub).await?;
        hub.close().await?;
        city
    };
    say!(
        "   customer 2's city is \"{city}\" everywhere; order 5 is gone everywhere; store2's walk-in customer is everywhere."
    );
    Ok((counts[0], counts[1]))
}

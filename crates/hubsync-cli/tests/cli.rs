//! End-to-end tests of the `hubsync` binary on SQLite files in temp dirs.

#![allow(clippy::unwrap_used, missing_docs)]

use std::path::Path;
use std::process::{Command, Output};

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Connection, SqliteConnection};

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

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

async fn open(path: &Path) -> SqliteConnection {
    SqliteConnection::connect_with(&SqliteConnectOptions::new().filename(path).create_if_missing(true)).await.unwrap()
}

async fn exec(path: &Path, sqls: &[&'static str]) {
    let mut c = open(path).await;
    for sql in sqls {
        sqlx::query(*sql).execute(&mut c).await.unwrap();
    }
    c.close().await.unwrap();
}

async fn count(path: &Path, table: &'static str) -> i64 {
    let mut c = open(path).await;
    let sql = match table {
        "items" => "SELECT count(*) FROM items",
        "tags" => "SELECT count(*) FROM tags",
        _ => panic!("unknown table"),
    };
    let n: i64 = sqlx::query_scalar(sql).fetch_one(&mut c).await.unwrap();
    c.close().await.unwrap();
    n
}

async fn hubsync_objects(path: &Path) -> Vec<String> {
    let mut c = open(path).await;
    let names: Vec<String> = sqlx::query_scalar("SELECT name FROM sqlite_master WHERE lower(name) LIKE '%hubsync%'")
        .fetch_all(&mut c)
        .await
        .unwrap();
    c.close().await.unwrap();
    names
}

/// A hub with `items` (3 rows) and `tags` (2 rows), and a config syncing them
/// to the given members.
async fn setup(dir: &Path, members: &[(&str, &str)], tables: &str) -> String {
    exec(
        &dir.join("hub.db"),
        &[
            "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, price NUMERIC)",
            "INSERT INTO items VALUES (1, 'apple', 1.5), (2, 'pear', 2), (3, 'plum', 0.75)",
            "CREATE TABLE tags (id INTEGER PRIMARY KEY, item_id INTEGER REFERENCES items(id), tag TEXT)",
            "INSERT INTO tags VALUES (1, 1, 'fruit'), (2, 2, 'green')",
        ],
    )
    .await;
    let mut config = format!("[[group]]\nname = \"shop\"\nhub = \"sqlite://hub.db\"\ntables = {tables}\n");
    for (name, url) in members {
        config.push_str(&format!("\n[[group.member]]\nname = \"{name}\"\nurl = \"{url}\"\n"));
    }
    let path = dir.join("hubsync.toml");
    std::fs::write(&path, config).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn quickstart_runs_twice_and_keeps_other_files() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("qs");
    let dir_s = dir.to_str().unwrap();
    let first = hubsync(&["quickstart", "--dir", dir_s]);
    assert!(first.status.success());
    assert!(
        stdout(&first).contains("✔ hub, store1 and store2 hold the same 7 customers and 7 orders"),
        "{}",
        stdout(&first)
    );
    std::fs::write(dir.join("notes.txt"), "mine").unwrap();
    let second = hubsync(&["quickstart", "--dir", dir_s]);
    assert!(second.status.success());
    assert!(stdout(&second).contains("✔ hub, store1 and store2 hold the same"));
    assert!(stdout(&second).contains("HubWin"));
    assert_eq!(std::fs::read_to_string(dir.join("notes.txt")).unwrap(), "mine");
}

#[tokio::test]
async fn sync_moves_rows_then_reports_nothing_to_do_and_status_and_deprovision_work() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let config =
        setup(dir, &[("store1", "sqlite://store1.db"), ("store2", "sqlite://store2.db")], "[\"items\", \"tags\"]")
            .await;

    let first = hubsync(&["sync", "--config", &config]);
    assert!(first.status.success());
    for db in ["store1.db", "store2.db"] {
        assert_eq!(count(&dir.join(db), "items").await, 3, "{db}");
        assert_eq!(count(&dir.join(db), "tags").await, 2, "{db}");
    }
    assert!(stdout(&first).contains("store1") && stdout(&first).contains("created"), "{}", stdout(&first));

    let second = hubsync(&["sync", "--config", &config]);
    assert!(second.status.success());
    assert!(stdout(&second).contains("Already in sync: 0 rows moved."), "{}", stdout(&second));

    // A member change travels up, and to the other member.
    exec(&dir.join("store1.db"), &["INSERT INTO items VALUES (10, 'kiwi', 3)"]).await;
    assert!(hubsync(&["sync", "--config", &config, "--member", "store1"]).status.success());
    assert_eq!(count(&dir.join("hub.db"), "items").await, 4);
    let status = hubsync(&["status", "--config", &config]);
    assert!(status.status.success());
    let s = stdout(&status);
    assert!(s.contains("Member `store1`") && s.contains("Member `store2`"), "{s}");
    assert!(s.contains("SyncSucceeded") && s.contains("last successful sync: ") && s.contains("UTC"), "{s}");
    assert!(s.contains("items") && s.contains("tags") && s.contains("PENDING DOWN"), "{s}");
    assert!(s.contains("1 to download"), "store2 has the kiwi pending: {s}");
    assert!(hubsync(&["sync", "--config", &config]).status.success());
    assert_eq!(count(&dir.join("store2.db"), "items").await, 4);

    let de = hubsync(&["deprovision", "--config", &config]);
    assert!(de.status.success());
    assert!(stdout(&de).contains("removed"), "{}", stdout(&de));
    for db in ["hub.db", "store1.db", "store2.db"] {
        assert_eq!(hubsync_objects(&dir.join(db)).await, Vec::<String>::new(), "{db}");
        assert_eq!(count(&dir.join(db), "items").await, 4, "{db}: user data stays");
    }
}

#[tokio::test]
async fn unknown_key_is_reported_with_its_line() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("bad.toml");
    std::fs::write(
        &path,
        "[[group]]\nname = \"g\"\nhub = \"sqlite://hub.db\"\ntables = [\"items\"]\nconflict = \"HubWin\"\n",
    )
    .unwrap();
    let out = hubsync(&["sync", "--config", path.to_str().unwrap()]);
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(
        e.contains("bad.toml:5:1") && e.contains("unknown key `conflict`") && e.contains("`conflict_resolution`"),
        "{e}"
    );
    assert!(!tmp.path().join("hub.db").exists(), "nothing is opened when the config is invalid");
}

#[tokio::test]
async fn a_member_that_cannot_be_opened_fails_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::create_dir(dir.join("adir")).unwrap();
    let config = setup(dir, &[("broken", "sqlite://adir"), ("good", "sqlite://good.db")], "[\"items\"]").await;
    let out = hubsync(&["sync", "--config", &config]);
    assert_eq!(out.status.code(), Some(1));
    let e = stderr(&out);
    assert!(e.contains("member `broken`") && e.contains("group `shop`"), "{e}");
    assert!(e.contains("hubsync.toml:"), "the error points at the config line: {e}");
    assert_eq!(count(&dir.join("good.db"), "items").await, 3);
    assert!(stdout(&out).contains("FAILED"));
}

/// Price of the item with id 1 in a database.
async fn price_of_first_item(path: &Path) -> Option<f64> {
    let mut c = open(path).await;
    let price: Option<f64> =
        sqlx::query_scalar("SELECT CAST(price AS REAL) FROM items WHERE id = 1").fetch_one(&mut c).await.unwrap();
    c.close().await.unwrap();
    price
}

/// Every sync provisions the hub again: when the configuration selects one
/// more column, the hub's triggers track writes to it from that sync on.
#[tokio::test]
async fn a_column_added_to_the_selection_is_tracked_on_the_hub_from_the_next_sync() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    setup(dir, &[], "[]").await;
    exec(&dir.join("store1.db"), &["CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, price NUMERIC)"])
        .await;
    let config = |columns: &str| {
        let text = format!(
            "[[group]]\nname = \"shop\"\nhub = \"sqlite://hub.db\"\n\n[[group.table]]\nname = \"items\"\n\
             columns = {columns}\n\n[[group.member]]\nname = \"store1\"\nurl = \"sqlite://store1.db\"\n"
        );
        let path = dir.join("hubsync.toml");
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    };
    let narrow = config(r#"["id", "name"]"#);
    assert!(hubsync(&["sync", "--config", &narrow]).status.success());
    assert_eq!(count(&dir.join("store1.db"), "items").await, 3);
    assert_eq!(price_of_first_item(&dir.join("store1.db")).await, None, "price is not synced yet");

    let wide = config(r#"["id", "name", "price"]"#);
    assert!(hubsync(&["sync", "--config", &wide]).status.success());
    exec(&dir.join("hub.db"), &["UPDATE items SET price = 9 WHERE id = 1"]).await;
    assert!(hubsync(&["sync", "--config", &wide]).status.success());
    assert_eq!(price_of_first_item(&dir.join("store1.db")).await, Some(9.0), "the hub tracked the price change");
}

#[tokio::test]
async fn a_table_missing_on_the_hub_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let config = setup(dir, &[("store1", "sqlite://store1.db")], "[\"items\", \"nosuch\"]").await;
    let out = hubsync(&["sync", "--config", &config]);
    assert_eq!(out.status.code(), Some(1));
    let e = stderr(&out);
    assert!(
        e.contains("table `nosuch`") && e.contains("does not exist on the hub") && e.contains("hubsync.toml:4:"),
        "{e}"
    );
}

#[tokio::test]
async fn an_unknown_column_points_at_its_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let config = setup(dir, &[("store1", "sqlite://store1.db")], "[\"tags\"]").await;
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("\n[[group.table]]\nname = \"items\"\ncolumns = [\"name\",\n  \"colour\"]\n");
    std::fs::write(&config, text).unwrap();
    let out = hubsync(&["sync", "--config", &config]);
    assert_eq!(out.status.code(), Some(1));
    let e = stderr(&out);
    assert!(e.contains("table `items`") && e.contains("`colour`") && e.contains("hubsync.toml:13:3"), "{e}");
}

//! `hubsync serve` and the commands that talk to it, through the real binary:
//! a config imported at start and synced through the CLI; a group built
//! entirely over the REST API with a PostgreSQL hub and SQLite and MariaDB
//! members; a server killed with SIGKILL mid-sync and restarted; tokens and
//! passwords; two servers sharing a PostgreSQL metadata store.
//!
//! Each server listens on `127.0.0.1:0` and the test reads the address from
//! the ready line on stderr. Tests that need PostgreSQL or MariaDB create
//! their own databases and drop them afterwards; without the servers they
//! skip loudly (or fail under CI / HUBSYNC_REQUIRE_SERVICES).

#![allow(clippy::unwrap_used, missing_docs)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::mysql::MySqlConnection;
use sqlx::postgres::PgConnection;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{AssertSqlSafe, Connection, SqliteConnection};

mod support;

use support::{mariadb, postgres, unique_name};

/// Generous: the machine is shared, and these wait for correctness only.
const STARTUP: Duration = Duration::from_secs(90);
const SYNC_DONE: Duration = Duration::from_secs(300);

// ---- Running the binary -----------------------------------------------------

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_hubsync"));
    c.env_remove("RUST_LOG").env_remove("HUBSYNC_SERVER").env_remove("HUBSYNC_TOKEN").env_remove("HUBSYNC_METADATA");
    c
}

fn show(args: &[&str], out: &Output) {
    eprintln!(
        "$ hubsync {}\n--- stdout\n{}--- stderr\n{}--- exit {:?}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        out.status.code()
    );
}

/// Runs a command that needs no server.
fn hubsync(args: &[&str]) -> Output {
    let out = bin().args(args).output().unwrap();
    show(args, &out);
    out
}

/// Runs a client command against `server` with `token`.
fn client(server: &str, token: Option<&str>, args: &[&str]) -> Output {
    let mut c = bin();
    c.args(args).env("HUBSYNC_SERVER", server);
    if let Some(t) = token {
        c.env("HUBSYNC_TOKEN", t);
    }
    let out = c.output().unwrap();
    show(args, &out);
    out
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A new secret key from `hubsync secret-key`.
fn secret_key() -> String {
    let out = hubsync(&["secret-key"]);
    assert!(out.status.success());
    assert!(stderr(&out).contains("HUBSYNC_SECRET_KEY"), "the key comes with a hint how to use it");
    stdout(&out).trim().to_string()
}

/// A new token from `hubsync token create`.
fn create_token(store: &[&str], name: &str, read_only: bool) -> String {
    let mut args = vec!["token", "create", "--name", name];
    if read_only {
        args.push("--read-only");
    }
    args.extend_from_slice(store);
    let out = hubsync(&args);
    assert!(out.status.success(), "token create failed");
    assert!(stderr(&out).contains("shown only this once"), "the token is said to be shown once");
    let token = stdout(&out).trim().to_string();
    assert!(!token.is_empty() && !token.contains(char::is_whitespace), "stdout holds only the token: {token:?}");
    token
}

/// A running `hubsync serve`, killed when dropped.
struct Serve {
    child: Child,
    url: String,
    log: Arc<Mutex<String>>,
}

impl Serve {
    /// Starts `hubsync serve ARGS --listen 127.0.0.1:0` and waits for its ready line.
    fn start(args: &[&str], secret: &str) -> Serve {
        let mut child = bin()
            .arg("serve")
            .args(args)
            .args(["--listen", "127.0.0.1:0"])
            .env("HUBSYNC_SECRET_KEY", secret)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let pipe = child.stderr.take().unwrap();
        let sink = Arc::clone(&log);
        // Drains stderr all along, so a chatty server never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let started = Instant::now();
        loop {
            let ready = ready_url(&log.lock().unwrap());
            if let Some(url) = ready {
                eprintln!("serve {args:?} is ready at {url}");
                return Serve { child, url, log };
            }
            if let Some(status) = child.try_wait().unwrap() {
                std::thread::sleep(Duration::from_millis(200));
                panic!("hubsync serve exited ({status}) before it was ready:\n{}", log.lock().unwrap());
            }
            assert!(started.elapsed() < STARTUP, "hubsync serve was not ready in time:\n{}", log.lock().unwrap());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Everything it logged so far.
    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// SIGKILL: no chance to clean up.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits for it to exit; returns whether it exited cleanly.
    fn terminate(&mut self) -> bool {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.success();
            }
            assert!(started.elapsed() < STARTUP, "hubsync serve did not stop after SIGTERM:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The `http://127.0.0.1:PORT` of the ready line, in text or JSON logs.
fn ready_url(log: &str) -> Option<String> {
    let at = log.find("http://127.0.0.1:")?;
    let url: String =
        log[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '/' | '.')).collect();
    url.rsplit(':')
        .next()
        .is_some_and(|port| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()))
        .then_some(url)
}

// ---- The REST API, straight ---------------------------------------------------

struct Api {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Api {
    fn new(base: &str, token: Option<&str>) -> Api {
        Api { http: reqwest::Client::new(), base: base.to_string(), token: token.map(String::from) }
    }

    /// Sends a request; returns the status, the `Location` and the body text.
    async fn raw(&self, method: Method, path: &str, body: Option<&Value>) -> (StatusCode, Option<String>, String) {
        let mut r = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            r = r.bearer_auth(t);
        }
        if let Some(b) = body {
            r = r.json(b);
        }
        let resp = r.send().await.unwrap();
        let status = resp.status();
        let location = resp.headers().get("location").map(|v| v.to_str().unwrap().to_string());
        (status, location, resp.text().await.unwrap())
    }

    /// Sends a request that must succeed; returns the JSON body (`Null` when empty).
    async fn ok(&self, method: Method, path: &str, body: Option<&Value>) -> (StatusCode, Option<String>, Value) {
        let (status, location, text) = self.raw(method.clone(), path, body).await;
        assert!(status.is_success(), "{method} {path} answered {status}: {text}");
        let v = if text.trim().is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap() };
        (status, location, v)
    }

    async fn get(&self, path: &str) -> Value {
        self.ok(Method::GET, path, None).await.2
    }

    /// Waits for a `202 Accepted` operation to succeed.
    async fn wait_operation(&self, location: &str) -> Value {
        let path = location.strip_prefix(&self.base).unwrap_or(location).to_string();
        let started = Instant::now();
        loop {
            let op = self.get(&path).await;
            match op["status"].as_str() {
                Some("Succeeded") => return op,
                Some("Failed") => panic!("operation {path} failed: {op}"),
                _ => {}
            }
            assert!(started.elapsed() < SYNC_DONE, "operation {path} did not finish: {op}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The tables of the group's hub schema as last refreshed.
    async fn hub_tables(&self, group: &str) -> Vec<Value> {
        let schemas = self.get(&format!("/v1/syncGroups/{group}/hubSchemas")).await;
        schemas["value"][0]["tables"].as_array().unwrap_or_else(|| panic!("no hub schema: {schemas}")).clone()
    }

    /// Polls the group until its state is `want`; fails at once on `Error`.
    async fn wait_group_state(&self, group: &str, want: &str) -> Value {
        let started = Instant::now();
        loop {
            let g = self.get(&format!("/v1/syncGroups/{group}")).await;
            let state = g["properties"]["syncState"].as_str().unwrap_or_default().to_string();
            if state == want {
                return g;
            }
            if state == "Error" {
                let logs = self.get(&format!("/v1/syncGroups/{group}/logs?type=Error")).await;
                panic!("group {group} ended in Error: {g}\nlogs: {logs}");
            }
            assert!(started.elapsed() < SYNC_DONE, "group {group} never reached {want}: {g}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

// ---- Databases ----------------------------------------------------------------

async fn pg_create(admin: &mut PgConnection, name: &str) -> String {
    sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut *admin).await.unwrap();
    format!("postgres://postgres@127.0.0.1:5432/{name}")
}

async fn pg_drop(admin: &mut PgConnection, name: &str) {
    sqlx::raw_sql(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
        .execute(&mut *admin)
        .await
        .unwrap();
}

async fn pg_exec(url: &str, sql: &str) {
    let mut c = PgConnection::connect(url).await.unwrap();
    sqlx::raw_sql(AssertSqlSafe(sql.to_string())).execute(&mut c).await.unwrap();
    c.close().await.unwrap();
}

async fn sqlite(path: &Path) -> SqliteConnection {
    let opts = SqliteConnectOptions::new().filename(path).create_if_missing(true).busy_timeout(Duration::from_secs(30));
    SqliteConnection::connect_with(&opts).await.unwrap()
}

async fn sqlite_exec(path: &Path, sql: &str) {
    let mut c = sqlite(path).await;
    sqlx::raw_sql(AssertSqlSafe(sql.to_string())).execute(&mut c).await.unwrap();
    c.close().await.unwrap();
}

async fn sqlite_i64(path: &Path, sql: &str) -> i64 {
    let mut c = sqlite(path).await;
    let n: i64 = sqlx::query_scalar(AssertSqlSafe(sql.to_string())).fetch_one(&mut c).await.unwrap();
    c.close().await.unwrap();
    n
}

/// A table's column names, in order.
async fn sqlite_columns(path: &Path, table: &str) -> Vec<String> {
    let mut c = sqlite(path).await;
    let cols: Vec<String> = sqlx::query_scalar("SELECT name FROM pragma_table_info(?) ORDER BY cid")
        .bind(table)
        .fetch_all(&mut c)
        .await
        .unwrap();
    c.close().await.unwrap();
    cols
}

/// Row count and a checksum over every column of `big`, to compare two copies.
async fn sqlite_fingerprint(path: &Path) -> (i64, i64, i64) {
    try_fingerprint(path).await.unwrap()
}

/// [`sqlite_fingerprint`], or the error while the table does not exist yet.
async fn try_fingerprint(path: &Path) -> Result<(i64, i64, i64), sqlx::Error> {
    let mut c = sqlite(path).await;
    let row = sqlx::query_as("SELECT count(*), coalesce(sum(id * 31 + n), 0), coalesce(sum(length(name)), 0) FROM big")
        .fetch_one(&mut c)
        .await;
    c.close().await.unwrap();
    row
}

fn write(path: &Path, text: &str) -> String {
    std::fs::write(path, text).unwrap();
    path.to_str().unwrap().to_string()
}

/// A free TCP port, by binding port 0 and letting go.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A hub holding `big` (id, name, n) with `seed` rows, and an empty member;
/// the config syncs it with small batches.
async fn big_group(dir: &Path, seed: i64, interval: &str) -> (PathBuf, PathBuf, String) {
    let hub = dir.join("hub.db");
    let member = dir.join("member.db");
    sqlite_exec(&hub, "CREATE TABLE big (id INTEGER PRIMARY KEY, name TEXT NOT NULL, n INTEGER NOT NULL)").await;
    sqlite_exec(&hub, &insert_big(1, seed)).await;
    let config = write(
        &dir.join("hubsync.toml"),
        &format!(
            "[[group]]\nname = \"big\"\nhub = \"sqlite://hub.db\"\ninterval = {interval}\nbatch_rows = 1000\ntables = [\"big\"]\n\n\
             [[group.member]]\nname = \"m1\"\nurl = \"sqlite://member.db\"\n"
        ),
    );
    (hub, member, config)
}

/// Who holds the lease on group `big` in a PostgreSQL metadata store.
async fn lease_holder(store: &str) -> Option<String> {
    let mut c = PgConnection::connect(store).await.unwrap();
    let owner = sqlx::query_scalar("SELECT owner FROM hubsync_leases WHERE group_name = 'big'")
        .fetch_optional(&mut c)
        .await
        .unwrap();
    c.close().await.unwrap();
    owner
}

/// Inserts rows `from..=to` into `big` in one statement.
fn insert_big(from: i64, to: i64) -> String {
    format!(
        "WITH RECURSIVE c(x) AS (SELECT {from} UNION ALL SELECT x + 1 FROM c WHERE x < {to}) \
         INSERT INTO big (id, name, n) SELECT x, 'row number ' || x, (x * 7919) % 1000003 FROM c"
    )
}

/// Waits until the member holds more than `above` rows of `big` and fewer than
/// `total`: a sync is then half done.
async fn wait_mid_sync(member: &Path, above: i64, total: i64) -> i64 {
    let started = Instant::now();
    loop {
        if member.exists() {
            let mut c = sqlite(member).await;
            let n: Option<i64> = sqlx::query_scalar("SELECT count(*) FROM big").fetch_one(&mut c).await.ok();
            c.close().await.unwrap();
            if let Some(n) = n.filter(|n| *n > above) {
                assert!(n < total, "the sync finished before it could be interrupted ({n} rows); use more rows");
                return n;
            }
        }
        assert!(started.elapsed() < SYNC_DONE, "the sync never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_member_caught_up(hub: &Path, member: &Path, timeout: Duration) -> Duration {
    let started = Instant::now();
    let want = sqlite_fingerprint(hub).await;
    loop {
        let got = try_fingerprint(member).await.ok();
        if got == Some(want) {
            return started.elapsed();
        }
        assert!(started.elapsed() < timeout, "the member never caught up: hub {want:?}, member {got:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

// ---- Tests that need no server ------------------------------------------------------

#[tokio::test]
async fn sync_keeps_its_one_shot_form_beside_trigger_and_cancel() {
    let tmp = tempfile::tempdir().unwrap();
    let (hub, member, config) = big_group(tmp.path(), 20, "-1").await;
    let one_shot = hubsync(&["sync", "--config", &config]);
    assert!(one_shot.status.success(), "the one-shot `sync --config` must keep working");
    assert!(stdout(&one_shot).contains("Sync complete"), "it prints its summary");
    assert_eq!(sqlite_fingerprint(&member).await, sqlite_fingerprint(&hub).await);

    let server = format!("http://127.0.0.1:{}", free_port());
    for action in ["trigger", "cancel"] {
        let out = client(&server, None, &["sync", action, "big"]);
        assert_eq!(out.status.code(), Some(1));
        let err = stderr(&out);
        assert!(err.starts_with("error: cannot connect to the hubsync server at "), "{err}");
        assert!(err.contains(&server) && err.contains("hubsync serve"), "names the URL and what to do: {err}");
    }

    let mixed = hubsync(&["sync", "--config", &config, "trigger", "big"]);
    assert_eq!(mixed.status.code(), Some(2), "a config file and a subcommand exclude each other");
}

#[test]
fn client_commands_take_a_server_url_or_host_and_port_and_refuse_other_schemes() {
    let out = client("ftp://127.0.0.1:7400", None, &["group", "list"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("is not an http:// or https:// URL"), "{}", stderr(&out));
    let port = free_port();
    let out = client(&format!("127.0.0.1:{port}"), None, &["group", "list"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains(&format!("cannot connect to the hubsync server at http://127.0.0.1:{port}")), "{err}");
}

// ---- (a) A config imported by serve, driven by the CLI -----------------------

#[tokio::test]
async fn a_config_imported_by_serve_is_listed_and_synced_through_the_cli() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let hub = dir.join("hub.db");
    sqlite_exec(
        &hub,
        "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, price REAL);\
         INSERT INTO items VALUES (1, 'apple', 0.5), (2, 'pear', 0.75), (3, 'plum', 1.25);",
    )
    .await;
    let config = write(
        &dir.join("hubsync.toml"),
        "[[group]]\nname = \"shop\"\nhub = \"sqlite://hub.db\"\ninterval = -1\ntables = [\"items\"]\n\n\
         [[group.member]]\nname = \"store1\"\nurl = \"sqlite://store1.db\"\n\n\
         [[group.member]]\nname = \"store2\"\nurl = \"sqlite://store2.db\"\ndirection = \"OneWayHubToMember\"\n",
    );
    let key = secret_key();
    let token = create_token(&["--config", &config], "ci", false);
    assert!(dir.join("hubsync-meta.db").exists(), "the store defaults to hubsync-meta.db beside the config");
    let tokens = hubsync(&["token", "list", "--config", &config]);
    assert!(tokens.status.success());
    assert!(stdout(&tokens).contains("ci") && stdout(&tokens).contains("read-write"), "token list shows it");
    assert!(!stdout(&tokens).contains(&token), "token list never shows a secret");

    let mut serve = Serve::start(&["--config", &config], &key);
    let (url, token) = (serve.url.clone(), Some(token.as_str()));

    let groups = client(&url, token, &["group", "list"]);
    assert!(groups.status.success());
    assert!(stdout(&groups).starts_with("NAME") && stdout(&groups).contains("shop"), "a table of groups");
    let json = client(&url, token, &["group", "list", "--output", "json"]);
    let json: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(json["value"][0]["name"], "shop");
    assert_eq!(json["value"][0]["properties"]["interval"], -1);

    let members = client(&url, token, &["member", "list", "shop"]);
    assert!(members.status.success());
    let members = stdout(&members);
    assert!(members.contains("store1") && members.contains("store2"), "{members}");
    assert!(members.contains("OneWayHubToMember"), "{members}");
    let shown = client(&url, token, &["group", "show", "shop"]);
    assert!(shown.status.success() && stdout(&shown).contains("items"), "show lists the sync schema");

    let synced = client(&url, token, &["sync", "trigger", "shop", "--wait", "--timeout", "5m"]);
    assert!(synced.status.success(), "the triggered sync succeeds");
    assert!(stdout(&synced).contains("Good"), "it reports the group's state");
    for store in ["store1.db", "store2.db"] {
        assert_eq!(sqlite_i64(&dir.join(store), "SELECT count(*) FROM items").await, 3, "{store} got the rows");
    }

    // A change on a member goes up to the hub, and with the next sync down to
    // the other member (members sync in parallel, so the first sync may have
    // served the other member before the change reached the hub).
    sqlite_exec(&dir.join("store1.db"), "INSERT INTO items VALUES (4, 'fig', 2.0)").await;
    for _ in 0..2 {
        let again = client(&url, token, &["sync", "trigger", "shop", "--wait", "--timeout", "5m"]);
        assert!(again.status.success());
    }
    assert_eq!(sqlite_i64(&hub, "SELECT count(*) FROM items").await, 4);
    assert_eq!(sqlite_i64(&dir.join("store2.db"), "SELECT count(*) FROM items WHERE name = 'fig'").await, 1);

    let logs = client(&url, token, &["logs", "shop", "--since", "1h", "--output", "json"]);
    assert!(logs.status.success());
    let logs: Value = serde_json::from_slice(&logs.stdout).unwrap();
    assert!(!logs["value"].as_array().unwrap().is_empty(), "the syncs were logged: {logs}");
    let errors = client(&url, token, &["logs", "shop", "--type", "Error"]);
    assert!(errors.status.success() && stdout(&errors).contains("No log entries"), "no errors were logged");

    assert!(serve.terminate(), "SIGTERM stops the server cleanly:\n{}", serve.log());
    assert!(serve.log().contains("Shutting down"), "it says it is shutting down");
}

// ---- (b) End to end over the API: PostgreSQL hub, SQLite and MariaDB members ---

#[tokio::test]
async fn a_group_built_over_the_api_syncs_a_postgres_hub_to_sqlite_and_mariadb_members() {
    let test = "the end-to-end API test";
    let Some(mut pg) = postgres(test).await else { return };
    let Some(mut my) = mariadb(test).await else { return };
    let name = unique_name("hubsync_serve");
    let hub_url = pg_create(&mut pg, &name).await;
    sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut my).await.unwrap();
    let my_url = format!("mysql://root@127.0.0.1:3306/{name}");
    pg_exec(
        &hub_url,
        "CREATE TABLE customers (id bigint PRIMARY KEY, name text NOT NULL, email text, notes text);\
         CREATE TABLE orders (id bigint PRIMARY KEY, customer_id bigint NOT NULL REFERENCES customers (id), total numeric(10,2));\
         CREATE TABLE audit (id bigint PRIMARY KEY, what text);\
         INSERT INTO customers VALUES (1, 'Ada', 'ada@example.org', 'vip'), (2, 'Brian', NULL, NULL), (3, 'Chloé', 'c@example.org', 'new');\
         INSERT INTO orders VALUES (1, 1, 12.00), (2, 1, 3.50), (3, 3, 100.00);\
         INSERT INTO audit VALUES (1, 'not synced');",
    )
    .await;
    let tmp = tempfile::tempdir().unwrap();
    let laptop = tmp.path().join("laptop.db");
    let store = format!("sqlite://{}", tmp.path().join("meta.db").display());
    let key = secret_key();
    let token = create_token(&["--metadata", &store], "e2e", false);
    let serve = Serve::start(&["--metadata", &store], &key);
    let api = Api::new(&serve.url, Some(&token));

    let hub = json!({"databaseType": "PostgreSql", "serverName": "127.0.0.1:5432", "databaseName": name, "userName": "postgres"});
    let mut group = json!({"properties": {"interval": -1, "conflictResolutionPolicy": "HubWin", "hub": hub}});
    let (status, _, _) = api.ok(Method::PUT, "/v1/syncGroups/shop", Some(&group)).await;
    assert_eq!(status, StatusCode::CREATED, "a new group is created");
    let laptop_member = json!({"properties": {"databaseType": "Sqlite", "databaseName": laptop.to_str().unwrap(), "syncDirection": "Bidirectional"}});
    api.ok(Method::PUT, "/v1/syncGroups/shop/syncMembers/laptop", Some(&laptop_member)).await;
    let branch = json!({"properties": {"databaseType": "MySql", "serverName": "127.0.0.1:3306", "databaseName": name, "userName": "root", "syncDirection": "OneWayHubToMember"}});
    api.ok(Method::PUT, "/v1/syncGroups/shop/syncMembers/branch", Some(&branch)).await;

    let (status, location, _) = api.ok(Method::POST, "/v1/syncGroups/shop/refreshHubSchema", None).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    api.wait_operation(&location.expect("refreshHubSchema gives a Location")).await;
    let tables = api.hub_tables("shop").await;
    let quoted = |table: &str| {
        let t = tables.iter().find(|t| t["name"].as_str().unwrap().ends_with(table)).unwrap();
        assert_eq!(t["hasError"], false, "{t}");
        t["quotedName"].as_str().unwrap().to_string()
    };
    group["properties"]["schema"] = json!({"tables": [
        {"quotedName": quoted("customers"), "columns": [{"quotedName": "\"id\""}, {"quotedName": "\"name\""}]},
        {"quotedName": quoted("orders")},
    ]});
    let (status, _, _) = api.ok(Method::PUT, "/v1/syncGroups/shop", Some(&group)).await;
    assert_eq!(status, StatusCode::OK, "the existing group is updated");

    api.ok(Method::POST, "/v1/syncGroups/shop/triggerSync", None).await;
    let done = api.wait_group_state("shop", "Good").await;
    assert!(done["properties"]["lastSyncTime"].is_string(), "{done}");
    let members = api.get("/v1/syncGroups/shop/syncMembers").await;
    for m in members["value"].as_array().unwrap() {
        assert_eq!(m["properties"]["syncState"], "SyncSucceeded", "{m}");
    }

    // SQLite: the selected columns only, every row, no unselected table.
    assert_eq!(sqlite_columns(&laptop, "customers").await, ["id", "name"]);
    assert_eq!(sqlite_i64(&laptop, "SELECT count(*) FROM customers").await, 3);
    assert_eq!(sqlite_i64(&laptop, "SELECT count(*) FROM customers WHERE name = 'Chloé'").await, 1);
    assert_eq!(sqlite_i64(&laptop, "SELECT count(*) FROM orders").await, 3);
    assert_eq!(sqlite_i64(&laptop, "SELECT count(*) FROM sqlite_master WHERE name = 'audit'").await, 0);
    // MariaDB likewise.
    let mut branch_db = MySqlConnection::connect(&my_url).await.unwrap();
    let cols: Vec<String> = sqlx::query_scalar(
        "SELECT CAST(column_name AS CHAR) FROM information_schema.columns WHERE table_schema = ? AND table_name = 'customers' ORDER BY ordinal_position",
    )
    .bind(&name)
    .fetch_all(&mut branch_db)
    .await
    .unwrap();
    assert_eq!(cols, ["id", "name"]);
    let count = |sql: &'static str| sqlx::query_scalar::<_, i64>(sql);
    assert_eq!(count("SELECT count(*) FROM customers").fetch_one(&mut branch_db).await.unwrap(), 3);
    assert_eq!(count("SELECT count(*) FROM orders WHERE total = 100.00").fetch_one(&mut branch_db).await.unwrap(), 1);
    let audit: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = 'audit'",
    )
    .bind(&name)
    .fetch_one(&mut branch_db)
    .await
    .unwrap();
    assert_eq!(audit, 0, "an unselected table is not created");
    branch_db.close().await.unwrap();

    drop(serve);
    pg_drop(&mut pg, &name).await;
    sqlx::raw_sql(AssertSqlSafe(format!("DROP DATABASE {name}"))).execute(&mut my).await.unwrap();
}

// ---- (c) SIGKILL mid-sync, restart ------------------------------------------------

#[tokio::test]
async fn a_server_killed_mid_sync_resumes_after_a_restart_with_nothing_lost_or_duplicated() {
    const SEED: i64 = 10;
    const TOTAL: i64 = 300_000;
    let tmp = tempfile::tempdir().unwrap();
    let (hub, member, config) = big_group(tmp.path(), SEED, "-1").await;
    let key = secret_key();
    let token = create_token(&["--config", &config], "crash", false);
    let mut first = Serve::start(&["--config", &config], &key);
    let url = first.url.clone();
    let token = Some(token.as_str());
    assert!(client(&url, token, &["sync", "trigger", "big", "--wait", "--timeout", "5m"]).status.success());
    assert_eq!(sqlite_fingerprint(&member).await, sqlite_fingerprint(&hub).await, "the initial sync is complete");

    // Enough changes for hundreds of 1000-row batches.
    sqlite_exec(&hub, &insert_big(SEED + 1, TOTAL)).await;
    assert!(client(&url, token, &["sync", "trigger", "big"]).status.success());
    let at_kill = wait_mid_sync(&member, SEED, TOTAL).await;
    first.kill();
    eprintln!("killed the server with {at_kill} of {TOTAL} rows on the member");

    let second = Serve::start(&["--config", &config], &key);
    let resumed = client(&second.url, token, &["sync", "trigger", "big", "--wait", "--timeout", "5m"]);
    assert!(resumed.status.success(), "the sync after the restart succeeds:\n{}", second.log());
    let want = sqlite_fingerprint(&hub).await;
    assert_eq!(want.0, TOTAL);
    assert_eq!(sqlite_fingerprint(&member).await, want, "every row arrived once, with its values");
}

// ---- (d) Tokens and passwords ---------------------------------------------------------

#[tokio::test]
async fn requests_without_a_valid_token_are_refused_and_read_only_tokens_cannot_write() {
    let tmp = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", tmp.path().join("meta.db").display());
    let key = secret_key();
    let writer = create_token(&["--metadata", &store], "writer", false);
    let reader = create_token(&["--metadata", &store], "reader", true);
    let listed = hubsync(&["token", "list", "--metadata", &store]);
    assert!(stdout(&listed).contains("read-only") && stdout(&listed).contains("read-write"));
    let serve = Serve::start(&["--metadata", &store], &key);
    let url = serve.url.as_str();

    let health = Api::new(url, None).raw(Method::GET, "/healthz", None).await;
    assert!(health.0.is_success(), "the health check needs no token: {health:?}");
    let group = json!({"properties": {"interval": -1, "conflictResolutionPolicy": "HubWin",
        "hub": {"databaseType": "Sqlite", "databaseName": tmp.path().join("hub.db").to_str().unwrap()}}});
    for (who, token) in [("no token", None), ("a wrong token", Some("hs_this-is-not-a-token"))] {
        let api = Api::new(url, token);
        for (method, path, body) in [
            (Method::GET, "/v1/syncGroups", None),
            (Method::PUT, "/v1/syncGroups/g", Some(&group)),
            (Method::GET, "/v1/openapi.json", None),
        ] {
            let (status, _, text) = api.raw(method.clone(), path, body).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{who}: {method} {path}: {text}");
            let body: Value = serde_json::from_str(&text).unwrap();
            assert!(body["error"]["code"].is_string() && body["error"]["message"].is_string(), "{text}");
        }
    }
    let ro = Api::new(url, Some(&reader));
    let rw = Api::new(url, Some(&writer));
    assert_eq!(ro.raw(Method::PUT, "/v1/syncGroups/g", Some(&group)).await.0, StatusCode::FORBIDDEN);
    rw.ok(Method::PUT, "/v1/syncGroups/g", Some(&group)).await;
    assert_eq!(ro.raw(Method::GET, "/v1/syncGroups/g", None).await.0, StatusCode::OK, "read-only can read");
    for (method, path) in [
        (Method::POST, "/v1/syncGroups/g/triggerSync"),
        (Method::POST, "/v1/syncGroups/g/refreshHubSchema"),
        (Method::DELETE, "/v1/syncGroups/g"),
    ] {
        assert_eq!(ro.raw(method.clone(), path, None).await.0, StatusCode::FORBIDDEN, "{method} {path}");
    }
    assert_eq!(rw.raw(Method::GET, "/v1/syncGroups/g", None).await.0, StatusCode::OK, "the group was not deleted");

    // The CLI shows the API's message and code, and what to do.
    let anonymous = client(url, None, &["group", "list"]);
    assert_eq!(anonymous.status.code(), Some(1));
    let err = stderr(&anonymous);
    let first_line = err.lines().next().unwrap_or_default();
    assert!(first_line.starts_with("error: ") && first_line.ends_with(')'), "`error: <message> (<code>)`: {err}");
    assert!(err.contains("hint: pass --token or set HUBSYNC_TOKEN"), "{err}");
    let file = write(&tmp.path().join("g.json"), &json!({"name": "g2", "properties": group["properties"]}).to_string());
    let refused = client(url, Some(&reader), &["group", "apply", "--file", &file]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(stderr(&refused).contains("needs a read-write token"), "{}", stderr(&refused));
    let missing = client(url, Some(&reader), &["group", "show", "nosuch"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(stderr(&missing).starts_with("error: ") && stderr(&missing).contains("(SyncGroupNotFound)"));
    let applied = client(url, Some(&writer), &["group", "apply", "--file", &file]);
    assert!(applied.status.success() && stdout(&applied).contains("g2"));
}

#[tokio::test]
async fn no_response_and_no_log_line_contains_a_database_password() {
    let Some(mut pg) = postgres("the password test").await else { return };
    let name = unique_name("hubsync_serve");
    let hub_url = pg_create(&mut pg, &name).await;
    let member_name = format!("{name}_m");
    pg_create(&mut pg, &member_name).await;
    pg_exec(&hub_url, "CREATE TABLE notes (id bigint PRIMARY KEY, body text); INSERT INTO notes VALUES (1, 'hello');")
        .await;
    // PostgreSQL's trust authentication ignores the password, so the syncs
    // work; the characters need escaping in a URL, to catch an encoded leak.
    let password = format!("Pw/{name}@S3cret%!");
    let encoded: String = url::form_urlencoded::byte_serialize(password.as_bytes()).collect();
    let tmp = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", tmp.path().join("meta.db").display());
    let key = secret_key();
    let token = create_token(&["--metadata", &store], "pw", false);
    // Debug logs and JSON: the most there is to leak into.
    let serve = Serve::start(&["--metadata", &store, "-v", "--log-format", "json"], &key);
    let api = Api::new(&serve.url, Some(&token));
    let mut bodies: Vec<String> = Vec::new();
    let mut keep = |text: String| bodies.push(text);

    let pg_db = |db: &str| json!({"databaseType": "PostgreSql", "serverName": "127.0.0.1:5432", "databaseName": db, "userName": "postgres", "password": password});
    let group = json!({"properties": {"interval": -1, "conflictResolutionPolicy": "HubWin", "hub": pg_db(&name)}});
    keep(api.raw(Method::PUT, "/v1/syncGroups/pw", Some(&group)).await.2);
    // The member through the CLI, its password from the environment.
    let mut add = bin();
    add.args(["member", "add", "pw", "pgmember", "--database-type", "PostgreSql", "--server-name", "127.0.0.1:5432"])
        .args(["--database-name", &member_name, "--user-name", "postgres", "--password-env", "MEMBER_PW"])
        .env("HUBSYNC_SERVER", &serve.url)
        .env("HUBSYNC_TOKEN", &token)
        .env("MEMBER_PW", &password);
    let added = add.output().unwrap();
    show(&["member", "add", "..."], &added);
    assert!(added.status.success());
    keep(stdout(&added) + &stderr(&added));
    // A member that cannot be reached: its connection error must not carry the password.
    let mut down = pg_db("nowhere");
    down["serverName"] = json!("127.0.0.1:1");
    down["syncDirection"] = json!("Bidirectional");
    keep(api.raw(Method::PUT, "/v1/syncGroups/pw/syncMembers/down", Some(&json!({"properties": down}))).await.2);
    // A refused body must not echo what it was sent.
    let bad = json!({"properties": {"databaseType": "NoSuchEngine", "password": password}});
    let (status, _, text) = api.raw(Method::PUT, "/v1/syncGroups/pw/syncMembers/bad", Some(&bad)).await;
    assert!(status.is_client_error(), "{status} {text}");
    keep(text);

    let (_, location, op) = api.ok(Method::POST, "/v1/syncGroups/pw/refreshHubSchema", None).await;
    keep(op.to_string());
    keep(api.wait_operation(&location.unwrap()).await.to_string());
    let tables = api.hub_tables("pw").await;
    keep(Value::Array(tables.clone()).to_string());
    let notes = tables.iter().find(|t| t["name"].as_str().unwrap().ends_with("notes"));
    let notes = notes.unwrap_or_else(|| panic!("the hub schema lists `notes`: {tables:?}"));
    let mut with_schema = group.clone();
    with_schema["properties"]["schema"] = json!({"tables": [{"quotedName": notes["quotedName"]}]});
    keep(api.raw(Method::PUT, "/v1/syncGroups/pw", Some(&with_schema)).await.2);
    keep(api.raw(Method::POST, "/v1/syncGroups/pw/triggerSync", None).await.2);
    // The unreachable member fails the group (Error); wait for the sync to end.
    let started = Instant::now();
    loop {
        let g = api.get("/v1/syncGroups/pw").await;
        let state = g["properties"]["syncState"].as_str().unwrap_or_default().to_string();
        if state == "Error" || state == "Good" || state == "Warning" {
            break;
        }
        assert!(started.elapsed() < SYNC_DONE, "the sync never ended: {g}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let member_db = format!("postgres://postgres@127.0.0.1:5432/{member_name}");
    let mut m = PgConnection::connect(&member_db).await.unwrap();
    let synced: i64 = sqlx::query_scalar("SELECT count(*) FROM notes").fetch_one(&mut m).await.unwrap();
    assert_eq!(synced, 1, "the reachable member synced despite the password being ignored");
    m.close().await.unwrap();

    for path in [
        "/v1/syncGroups",
        "/v1/syncGroups/pw",
        "/v1/syncGroups/pw/syncMembers",
        "/v1/syncGroups/pw/syncMembers/pgmember",
        "/v1/syncGroups/pw/syncMembers/down",
        "/v1/syncGroups/pw/hubSchemas",
        "/v1/syncGroups/pw/logs",
        "/v1/openapi.json",
        "/metrics",
    ] {
        keep(api.raw(Method::GET, path, None).await.2);
    }
    for args in [&["group", "show", "pw"][..], &["group", "show", "pw", "--output", "json"], &["logs", "pw"]] {
        let out = client(&serve.url, Some(&token), args);
        keep(stdout(&out) + &stderr(&out));
    }
    let errors = api.get("/v1/syncGroups/pw/logs?type=Error").await;
    assert!(!errors["value"].as_array().unwrap().is_empty(), "the unreachable member's failure is logged");
    for body in &bodies {
        assert!(!body.contains(&password) && !body.contains(&encoded), "a response holds the password: {body}");
    }
    let log = serve.log();
    assert!(log.lines().count() > 3 && log.lines().all(|l| l.starts_with('{')), "JSON log lines:\n{log}");
    for line in log.lines() {
        assert!(!line.contains(&password) && !line.contains(&encoded), "a log line holds the password: {line}");
    }

    drop(serve);
    pg_drop(&mut pg, &name).await;
    pg_drop(&mut pg, &member_name).await;
}

// ---- (e) Two servers, one PostgreSQL store ------------------------------------

#[tokio::test]
async fn the_second_of_two_servers_on_one_postgres_store_finishes_the_sync_of_a_killed_one() {
    const SEED: i64 = 10;
    const TOTAL: i64 = 300_000;
    let Some(mut pg) = postgres("the scale-out test").await else { return };
    let meta = unique_name("hubsync_serve");
    let store = pg_create(&mut pg, &meta).await;
    let tmp = tempfile::tempdir().unwrap();
    let (hub, member, config) = big_group(tmp.path(), SEED, "2").await;
    let key = secret_key();
    let args = ["--config", config.as_str(), "--metadata", store.as_str()];
    let first = Serve::start(&args, &key);
    wait_member_caught_up(&hub, &member, SYNC_DONE).await;
    let second = Serve::start(&args, &key);

    sqlite_exec(&hub, &insert_big(SEED + 1, TOTAL)).await;
    let at_kill = wait_mid_sync(&member, SEED, TOTAL).await;
    // Kill the server that is syncing: the holder of the group's lease,
    // whose owner name carries its process id.
    let holder = lease_holder(&store).await.expect("the syncing server holds the group's lease");
    let holds = |s: &Serve, holder: &str| holder.contains(&format!("-{}-", s.child.id()));
    let (mut victim, survivor) = match (holds(&first, &holder), holds(&second, &holder)) {
        (true, false) => (first, second),
        (false, true) => (second, first),
        _ => panic!("the lease holder `{holder}` is neither server"),
    };
    victim.kill();
    eprintln!("killed the syncing server ({holder}) with {at_kill} of {TOTAL} rows on the member");
    // The promise: another server picks the group up within 30 s (the
    // lease lasts 10 s); twice that allows for a loaded machine.
    let killed = Instant::now();
    loop {
        if lease_holder(&store).await.is_some_and(|h| holds(&survivor, &h)) {
            break;
        }
        assert!(killed.elapsed() < Duration::from_secs(60), "no server took the group over:\n{}", survivor.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("the other server took the group over {:?} after the kill", killed.elapsed());
    let took = wait_member_caught_up(&hub, &member, SYNC_DONE).await;
    eprintln!("the other server finished the sync {took:?} after the kill");
    assert_eq!(sqlite_fingerprint(&member).await.0, TOTAL, "nothing lost, nothing twice");
    let token = create_token(&["--metadata", &store], "scale", true);
    let api = Api::new(&survivor.url, Some(&token));
    api.wait_group_state("big", "Good").await;

    drop(survivor);
    pg_drop(&mut pg, &meta).await;
}

//! The web portal, in process: the portal's router on a free port, a
//! SQLite metadata store in a temporary directory, and a browser stood in
//! for by reqwest with a cookie jar.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use hubsync_core::{ConflictPolicy, Direction, Side, TableName, Value};
use hubsync_server::api::ApiState;
use hubsync_server::model::{DatabaseType, LogType};
use hubsync_server::runner::Runner;
use hubsync_server::scheduler::Wake;
use hubsync_server::store::{ConflictRecord, LogRecord, MemberProgress, RunProgress, RunRecord};
use hubsync_server::{DatabaseSpec, GroupSpec, MemberSpec, MetaStore, Schedule, SecretKey, TableSpec};
use sqlx::ConnectOptions as _;
use sqlx::sqlite::SqliteConnectOptions;

const HUB_PASSWORD: &str = "hub-pw-Zq81x";
const MEMBER_PASSWORD: &str = "member-pw-Kd27y";

struct Portal {
    base: String,
    wake: Wake,
    store: MetaStore,
    runner: Runner,
    dir: tempfile::TempDir,
    write_token: String,
    read_token: String,
}

impl Portal {
    async fn start() -> Portal {
        let dir = tempfile::tempdir().unwrap();
        let key = SecretKey::parse(&"ab".repeat(32), "test").unwrap();
        let url = format!("sqlite://{}", dir.path().join("meta.db").display());
        let store = MetaStore::open(&url, Some(key)).await.unwrap();
        let write_token = store.create_token("alice", false).await.unwrap();
        let read_token = store.create_token("auditor", true).await.unwrap();
        let wake = Wake::default();
        let state = ApiState {
            store: store.clone(),
            wake: wake.clone(),
            base_dir: dir.path().to_path_buf(),
            metrics: metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder().handle(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let runner = Runner::new(store.clone(), dir.path().to_path_buf(), 4);
        // Mounted as `serve` mounts it: merged into the API's router.
        let app =
            hubsync_server::api::router(state.clone()).merge(hubsync_server::portal::router(state, runner.clone()));
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Portal { base, wake, store, runner, dir, write_token, read_token }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A browser with its own cookie jar, signed in with `token`.
    async fn browser(&self, token: &str) -> reqwest::Client {
        let client = reqwest::Client::builder().cookie_store(true).build().unwrap();
        let response = client.post(self.url("/portal/signin")).form(&[("token", token)]).send().await.unwrap();
        assert_eq!(response.url().path(), "/portal/groups", "a good token lands on the groups list");
        client
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}

async fn get(client: &reqwest::Client, url: &str) -> (u16, String, String) {
    let response = client.get(url).send().await.unwrap();
    let status = response.status().as_u16();
    let path = response.url().path().to_string();
    (status, path, response.text().await.unwrap())
}

async fn post(client: &reqwest::Client, url: &str, form: &[(&str, &str)]) -> (u16, String, String) {
    let response = client.post(url).form(form).send().await.unwrap();
    let status = response.status().as_u16();
    let path = response.url().to_string();
    (status, path, response.text().await.unwrap())
}

/// Creates a SQLite file running `sql`.
async fn sqlite_file(path: &str, sql: &str) {
    let mut conn = SqliteConnectOptions::new().filename(path).create_if_missing(true).connect().await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string())).execute(&mut conn).await.unwrap();
}

fn postgres(password: &str) -> DatabaseSpec {
    DatabaseSpec {
        database_type: DatabaseType::PostgreSql,
        server_name: "db.internal:5432".into(),
        database_name: "sales".into(),
        user_name: "sync".into(),
        password: Some(password.into()),
    }
}

fn group(name: &str, hub: DatabaseSpec) -> GroupSpec {
    GroupSpec {
        name: name.into(),
        hub,
        policy: ConflictPolicy::HubWin,
        schedule: Schedule::Manual,
        batch_rows: 1000,
        tables: vec![TableSpec { name: TableName::new("items"), columns: None, policy: None }],
        conflict_logging: true,
        conflict_retention_days: 30,
    }
}

/// A stored group with a password-protected hub and member, some history,
/// a log entry and a conflict.
async fn stored_group(portal: &Portal, name: &str) {
    let store = &portal.store;
    store.put_group(&group(name, postgres(HUB_PASSWORD))).await.unwrap();
    store
        .put_member(&MemberSpec {
            group: name.into(),
            name: "branch1".into(),
            database: postgres(MEMBER_PASSWORD),
            direction: Direction::OneWayHubToMember,
        })
        .await
        .unwrap();
    for (i, outcome) in ["Succeeded", "Failed"].iter().enumerate() {
        store
            .append_run(&RunRecord {
                group: name.into(),
                member: "branch1".into(),
                tracing_id: format!("run{i}"),
                started_at: 1_000_000 * (i as i64 + 1),
                duration_ms: 40,
                uploaded: 3,
                downloaded: 4,
                conflicts: 0,
                outcome: (*outcome).into(),
            })
            .await
            .unwrap();
    }
    for (log_type, details) in [
        (LogType::Success, "Synced 7 rows with branch1."),
        (LogType::Error, "branch1: connection reset by peer\nwhile applying a batch"),
    ] {
        store
            .append_log(
                name,
                &LogRecord {
                    id: 0,
                    timestamp: hubsync_core::now_micros(),
                    log_type,
                    source: "branch1".into(),
                    details: details.into(),
                    tracing_id: "run1".into(),
                    operation_status: "Failed".into(),
                },
            )
            .await
            .unwrap();
    }
    store
        .append_conflicts(
            name,
            &[ConflictRecord {
                id: 0,
                timestamp: hubsync_core::now_micros(),
                member: "branch1".into(),
                conflict: hubsync_core::Conflict {
                    table: TableName::new("items"),
                    key: vec![Value::Integer(7)],
                    hub_row: Some(vec![Value::Integer(7), Value::Text("hub side".into())]),
                    member_row: Some(vec![Value::Integer(7), Value::Text("member side".into())]),
                    hub_changed_at: 1,
                    member_changed_at: 2,
                    winner: Side::Hub,
                    policy: ConflictPolicy::HubWin,
                    reason: "the hub wins under HubWin".into(),
                },
                columns: vec!["id".into(), "name".into()],
            }],
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn a_wrong_token_shows_an_error_and_opens_no_session() {
    let portal = Portal::start().await;
    let client = reqwest::Client::builder().cookie_store(true).build().unwrap();
    let (status, _, body) = post(&client, &portal.url("/portal/signin"), &[("token", "not-a-token")]).await;
    assert_eq!(status, 401);
    assert!(body.contains("This token is not valid"), "{body}");
    let (_, path, _) = get(&client, &portal.url("/portal/groups")).await;
    assert_eq!(path, "/portal/signin", "without a session every page sends to the sign-in page");
}

#[tokio::test]
async fn a_good_token_lists_the_groups_with_state_hub_members_and_interval() {
    let portal = Portal::start().await;
    stored_group(&portal, "sales").await;
    let client = portal.browser(&portal.write_token).await;
    let (status, _, body) = get(&client, &portal.url("/portal/groups")).await;
    assert_eq!(status, 200);
    assert!(body.contains(r#"href="/portal/groups/sales""#), "{body}");
    assert!(body.contains("Not ready"), "the state badge has text");
    assert!(body.contains("postgres://sync@db.internal:5432/sales"));
    assert!(body.contains("Manual only"));
    assert!(body.contains("<td>1</td>"), "one member");
    assert!(body.contains("Signed in as <strong>alice</strong>"));

    let (_, _, signed_out) = post(&client, &portal.url("/portal/signout"), &[]).await;
    assert!(signed_out.contains("Sign in"));
    let (_, path, _) = get(&client, &portal.url("/portal/groups")).await;
    assert_eq!(path, "/portal/signin", "signing out ends the session");
}

#[tokio::test]
async fn a_read_only_session_sees_no_buttons_and_cannot_trigger_a_sync() {
    let portal = Portal::start().await;
    stored_group(&portal, "sales").await;
    let reader = portal.browser(&portal.read_token).await;
    let (_, _, page) = get(&reader, &portal.url("/portal/groups/sales")).await;
    assert!(page.contains("(read-only)"));
    assert!(!page.contains("Sync now"), "no button that changes something");
    assert!(!page.contains("/portal/new"), "no link to create a group");
    let (status, _, body) = post(&reader, &portal.url("/portal/groups/sales/sync"), &[]).await;
    assert_eq!(status, 403);
    assert!(body.contains("read-only token"), "{body}");
    assert!(!portal.store.take_sync_request("sales").await.unwrap(), "no sync was requested");
    let (status, _, _) = get(&reader, &portal.url("/portal/new")).await;
    assert_eq!(status, 403);

    let writer = portal.browser(&portal.write_token).await;
    let (status, url, body) = post(&writer, &portal.url("/portal/groups/sales/sync"), &[]).await;
    assert_eq!(status, 200);
    assert!(url.ends_with("/portal/groups/sales?done=sync"), "{url}");
    assert!(body.contains("A sync was requested"));
    assert!(portal.store.take_sync_request("sales").await.unwrap(), "the writer's sync was requested");
}

#[tokio::test]
async fn the_portal_sits_beside_the_api_without_taking_its_routes() {
    let portal = Portal::start().await;
    let client = reqwest::Client::new();
    assert_eq!(client.get(portal.url("/healthz")).send().await.unwrap().status().as_u16(), 200);
    assert_eq!(client.get(portal.url("/v1/syncGroups")).send().await.unwrap().status().as_u16(), 401);
    let (status, path, _) = get(&client, &portal.url("/")).await;
    assert_eq!((status, path.as_str()), (200, "/portal/signin"), "the root leads to the portal's sign-in");
    let (status, _, body) = get(&client, &portal.url("/portal/nothing/here")).await;
    assert_eq!(status, 404);
    assert!(body.contains("There is no portal page"));
}

#[tokio::test]
async fn a_post_from_another_site_is_refused() {
    let portal = Portal::start().await;
    stored_group(&portal, "sales").await;
    let writer = portal.browser(&portal.write_token).await;
    let response = writer
        .post(portal.url("/portal/groups/sales/sync"))
        .header("Origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 403);
    assert!(!portal.store.take_sync_request("sales").await.unwrap());
}

#[tokio::test]
async fn the_group_page_shows_members_history_chart_logs_and_conflicts() {
    let portal = Portal::start().await;
    stored_group(&portal, "sales").await;
    let client = portal.browser(&portal.read_token).await;
    let (_, _, page) = get(&client, &portal.url("/portal/groups/sales")).await;
    assert!(page.contains("branch1") && page.contains("From the hub (one way)"), "{page}");
    assert!(page.contains("Not provisioned"), "the member's state in words");
    assert!(page.contains("<svg") && page.contains(r#"class="mark-failed""#), "a chart with the failure marked");
    assert!(page.contains(r#"data-refresh="/portal/groups/sales/status""#));
    let (status, _, fragment) = get(&client, &portal.url("/portal/groups/sales/status")).await;
    assert_eq!(status, 200);
    assert!(fragment.contains("branch1") && !fragment.contains("<html"), "the fragment is the state area alone");

    let (_, _, all) = get(&client, &portal.url("/portal/groups/sales/logs")).await;
    assert!(all.contains("Synced 7 rows") && all.contains("connection reset"), "{all}");
    assert!(all.contains("<details>"));
    let (_, _, errors) = get(&client, &portal.url("/portal/groups/sales/logs?type=Error")).await;
    assert!(errors.contains("connection reset") && !errors.contains("Synced 7 rows"), "{errors}");
    let (status, _, bad) = get(&client, &portal.url("/portal/groups/sales/logs?since=yesterday")).await;
    assert_eq!(status, 200);
    assert!(bad.contains(r#"id="since-error""#) && bad.contains("RFC 3339"), "{bad}");

    let (_, _, conflicts) = get(&client, &portal.url("/portal/groups/sales/conflicts")).await;
    assert!(conflicts.contains("Winner: the hub"), "{conflicts}");
    assert!(conflicts.contains("hub side") && conflicts.contains("member side"));
    assert!(conflicts.contains("Hub ✓ winner"));

    let (status, _, missing) = get(&client, &portal.url("/portal/groups/nope")).await;
    assert_eq!(status, 404);
    assert!(missing.contains("No such sync group"));
}

/// Starts the wizard; returns the draft's address.
async fn new_draft(portal: &Portal, client: &reqwest::Client) -> String {
    let (status, path, body) = get(client, &portal.url("/portal/new")).await;
    assert_eq!(status, 200, "{body}");
    assert!(path.starts_with("/portal/new/"), "{path}");
    portal.url(&path)
}

fn basics<'a>(name: &'a str, hub: &'a str, interval: &'a str) -> Vec<(&'static str, &'a str)> {
    vec![
        ("name", name),
        ("hub_type", "Sqlite"),
        ("hub_server", ""),
        ("hub_database", hub),
        ("hub_user", ""),
        ("hub_password", ""),
        ("schedule", "every"),
        ("interval_value", interval),
        ("interval_unit", "minutes"),
        ("policy", "LastWriterWins"),
        ("action", "next"),
    ]
}

fn with_password<'a>(mut form: Vec<(&'static str, &'a str)>, password: &'a str) -> Vec<(&'static str, &'a str)> {
    for field in &mut form {
        if field.0 == "hub_password" {
            field.1 = password;
        }
    }
    form
}

#[tokio::test]
async fn an_invalid_interval_shows_the_message_next_to_the_field_and_creates_nothing() {
    let portal = Portal::start().await;
    let client = portal.browser(&portal.write_token).await;
    let draft = new_draft(&portal, &client).await;
    let form = with_password(basics("sales", "hub.db", "0"), "typed-pw-Qm44");
    let (status, _, body) = post(&client, &draft, &form).await;
    assert_eq!(status, 422);
    assert!(body.contains(r#"id="interval_value-error""#), "{body}");
    assert!(body.contains("The interval must be at least 1 (you gave 0 minutes)"), "{body}");
    assert!(!body.contains("typed-pw-Qm44"), "a typed password is never rendered back");
    assert!(body.contains("A password you typed is kept"));
    let (status, _, body) = post(&client, &draft, &basics("bad!name", "hub.db", "5")).await;
    assert_eq!(status, 422);
    assert!(body.contains(r#"id="name-error""#) && body.contains("contains `!`"), "{body}");
    assert!(portal.store.list_groups().await.unwrap().is_empty(), "nothing was created");
}

/// The indices the tables step gives table `table` and its column `column`.
fn choice(page: &str, table: &str, column: &str) -> (String, String) {
    for section in page.split(r#"<fieldset class="table-choice">"#).skip(1) {
        if !section.contains(&format!("<code>{table}</code>")) {
            continue;
        }
        let t = section.split(r#"name="table" value=""#).nth(1).unwrap().split('"').next().unwrap().to_string();
        for item in section.split("<li>").skip(1) {
            if item.contains(&format!("<code>{column}</code>")) {
                let c = item.split(r#"name="col" value=""#).nth(1).unwrap().split('"').next().unwrap().to_string();
                return (t, c);
            }
        }
    }
    panic!("no table {table} with column {column} in:\n{page}");
}

#[tokio::test]
async fn the_create_flow_writes_the_group_its_members_and_the_chosen_columns() {
    let portal = Portal::start().await;
    let hub = portal.path("hub.db");
    sqlite_file(
        &hub,
        "create table items (id integer primary key, name text, note text);
         create table loose (a text, b text);",
    )
    .await;
    for member in ["m1.db", "m2.db"] {
        sqlite_file(&portal.path(member), "select 1").await;
    }
    let client = portal.browser(&portal.write_token).await;
    let draft = new_draft(&portal, &client).await;
    let (status, url, _) = post(&client, &draft, &basics("shop", &hub, "5")).await;
    assert_eq!(status, 200);
    assert!(url.ends_with("/members"), "{url}");
    let members = format!("{draft}/members");
    let (_, _, tested) = post(
        &client,
        &members,
        &[
            ("member_name", "m1"),
            ("member_type", "Sqlite"),
            ("member_database", &portal.path("m1.db")),
            ("direction", "Bidirectional"),
            ("action", "test"),
        ],
    )
    .await;
    assert!(tested.contains("Connection test passed"), "{tested}");
    for (name, direction) in [("m1", "Bidirectional"), ("m2", "OneWayHubToMember")] {
        let file = portal.path(&format!("{name}.db"));
        let (status, _, body) = post(
            &client,
            &members,
            &[
                ("member_name", name),
                ("member_type", "Sqlite"),
                ("member_database", &file),
                ("direction", direction),
                ("action", "add"),
            ],
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert!(body.contains(&format!("<th scope=\"row\">{name}</th>")), "{body}");
    }
    let (_, url, tables) = post(&client, &members, &[("action", "next")]).await;
    assert!(url.ends_with("/tables"), "{url}");
    assert!(tables.contains("Not selectable") && tables.contains("no primary key"), "{tables}");
    let loose = tables.split("<code>loose</code>").nth(1).unwrap();
    assert!(!loose.contains(" checked"), "a table without a key offers nothing ticked: {loose}");
    let items = tables.split("<code>items</code>").nth(1).unwrap().split("</fieldset>").next().unwrap();
    assert_eq!(items.matches(" checked").count(), 3, "every column is ticked by default: {items}");
    let (t, name_column) = choice(&tables, "items", "name");
    assert!(tables.contains("primary key, always synced"));

    let (status, _, none) = post(&client, &format!("{draft}/tables"), &[("action", "create")]).await;
    assert_eq!(status, 422);
    assert!(none.contains("Choose at least one table"));
    assert!(portal.store.list_groups().await.unwrap().is_empty());

    // `note` is left unticked.
    let (status, url, page) =
        post(&client, &format!("{draft}/tables"), &[("table", &t), ("col", &name_column), ("action", "create")]).await;
    assert_eq!(status, 200, "{page}");
    assert!(url.ends_with("/portal/groups/shop?done=created"), "{url}");
    let stored = portal.store.get_group("shop").await.unwrap().unwrap();
    assert_eq!(stored.spec.schedule, Schedule::EverySeconds(300));
    assert_eq!(stored.spec.policy, ConflictPolicy::LastWriterWins);
    assert_eq!(stored.spec.tables.len(), 1);
    assert_eq!(stored.spec.tables[0].name.name, "items");
    assert_eq!(stored.spec.tables[0].columns, Some(vec!["id".to_string(), "name".to_string()]));
    let members = portal.store.list_members("shop").await.unwrap();
    let found: Vec<(&str, Direction)> = members.iter().map(|m| (m.spec.name.as_str(), m.spec.direction)).collect();
    assert_eq!(found, [("m1", Direction::Bidirectional), ("m2", Direction::OneWayHubToMember)]);
    assert!(portal.store.hub_schema("shop").await.unwrap().is_some(), "the refreshed schema is kept");
}

#[tokio::test]
async fn an_unreachable_member_database_shows_what_failed_and_creates_nothing() {
    let portal = Portal::start().await;
    let hub = portal.path("hub.db");
    sqlite_file(&hub, "create table items (id integer primary key)").await;
    let client = portal.browser(&portal.write_token).await;
    let draft = new_draft(&portal, &client).await;
    post(&client, &draft, &basics("shop", &hub, "5")).await;
    let (status, _, body) = post(
        &client,
        &format!("{draft}/members"),
        &[
            ("member_name", "far"),
            ("member_type", "PostgreSql"),
            ("member_server", "127.0.0.1:1"),
            ("member_database", "nowhere"),
            ("member_user", "sync"),
            ("member_password", MEMBER_PASSWORD),
            ("direction", "Bidirectional"),
            ("action", "test"),
        ],
    )
    .await;
    assert_eq!(status, 422);
    assert!(body.contains("Connection test failed"), "{body}");
    assert!(body.contains("127.0.0.1:1"), "the message names the database: {body}");
    assert!(!body.contains(MEMBER_PASSWORD), "the password is not rendered back");
    let missing = portal.path("missing.db");
    let (_, _, body) = post(
        &client,
        &format!("{draft}/members"),
        &[
            ("member_name", "gone"),
            ("member_type", "Sqlite"),
            ("member_database", &missing),
            ("direction", "Bidirectional"),
            ("action", "test"),
        ],
    )
    .await;
    assert!(body.contains("Connection test failed") && body.contains("missing.db"), "{body}");
    assert!(!Path::new(&missing).exists(), "testing does not create the file");
    // Adding it anyway tests it first, and leaves it out.
    let (status, _, body) = post(
        &client,
        &format!("{draft}/members"),
        &[
            ("member_name", "gone"),
            ("member_type", "Sqlite"),
            ("member_database", &missing),
            ("direction", "Bidirectional"),
            ("action", "add"),
        ],
    )
    .await;
    assert_eq!(status, 422);
    assert!(body.contains("Connection test failed") && body.contains("The member was not added"), "{body}");
    assert!(!body.contains(r#"<th scope="row">gone</th>"#), "the member is not in the list: {body}");
    assert!(!Path::new(&missing).exists());
    let (_, _, tables) = post(&client, &format!("{draft}/members"), &[("action", "next")]).await;
    assert!(tables.contains("0 member(s) will be added"), "{tables}");
    assert!(portal.store.list_groups().await.unwrap().is_empty());
}

/// Every page a signed-in writer can open, with the wizard's first step.
async fn every_page(portal: &Portal, client: &reqwest::Client) -> Vec<(String, String)> {
    let mut pages = Vec::new();
    for path in [
        "/portal/groups",
        "/portal/groups/sales",
        "/portal/groups/sales/status",
        "/portal/groups/sales/logs",
        "/portal/groups/sales/conflicts",
        "/portal/static/portal.css",
        "/portal/static/portal.js",
    ] {
        let (status, _, body) = get(client, &portal.url(path)).await;
        assert_eq!(status, 200, "{path}");
        pages.push((path.to_string(), body));
    }
    let draft = new_draft(portal, client).await;
    let form = with_password(basics("other", "hub.db", "5"), HUB_PASSWORD);
    let (_, _, step2) = post(client, &draft, &form).await;
    pages.push(("step 2".into(), step2));
    let (_, _, step1) = get(client, &draft).await;
    pages.push(("step 1 again".into(), step1));
    let signed_out = reqwest::Client::new();
    let (_, _, signin) = get(&signed_out, &portal.url("/portal/signin")).await;
    pages.push(("sign-in".into(), signin));
    pages
}

#[tokio::test]
async fn no_page_contains_a_stored_or_typed_password() {
    let portal = Portal::start().await;
    stored_group(&portal, "sales").await;
    let client = portal.browser(&portal.write_token).await;
    for (path, body) in every_page(&portal, &client).await {
        assert!(!body.contains(HUB_PASSWORD), "{path} shows the hub password");
        assert!(!body.contains(MEMBER_PASSWORD), "{path} shows a member password");
    }
}

#[tokio::test]
async fn no_page_references_another_host() {
    let portal = Portal::start().await;
    stored_group(&portal, "sales").await;
    let client = portal.browser(&portal.write_token).await;
    for (path, body) in every_page(&portal, &client).await {
        for absolute in ["http://", "https://", "src=\"//", "href=\"//", "url(//"] {
            assert!(!body.contains(absolute), "{path} references `{absolute}`:\n{body}");
        }
    }
}

fn sqlite(path: &str) -> DatabaseSpec {
    DatabaseSpec {
        database_type: DatabaseType::Sqlite,
        server_name: String::new(),
        database_name: path.into(),
        user_name: String::new(),
        password: None,
    }
}

/// A group `name` with a SQLite hub holding `items` (id, name, note: only
/// id and name synced) and `loose` (no key), members `m1` (bidirectional)
/// and `m2` (from the hub), synced once.
async fn synced_group(portal: &Portal, name: &str) {
    let hub = portal.path("hub.db");
    sqlite_file(
        &hub,
        "create table items (id integer primary key, name text, note text);
         insert into items values (1, 'apple', 'x');
         create table loose (a text);",
    )
    .await;
    let mut spec = group(name, sqlite(&hub));
    spec.tables[0].columns = Some(vec!["id".into(), "name".into()]);
    portal.store.put_group(&spec).await.unwrap();
    for (member, direction) in [("m1", Direction::Bidirectional), ("m2", Direction::OneWayHubToMember)] {
        let file = portal.path(&format!("{member}.db"));
        sqlite_file(&file, "select 1").await;
        let spec = MemberSpec { group: name.into(), name: member.into(), database: sqlite(&file), direction };
        portal.store.put_member(&spec).await.unwrap();
    }
    let stored = portal.store.get_group(name).await.unwrap().unwrap();
    let summary = portal.runner.run_group(&stored, &hubsync_core::Cancel::default()).await;
    assert_eq!((summary.succeeded, summary.failed), (2, 0), "{summary:?}");
}

/// Adds member `gone` to `group`, whose SQLite file does not exist; returns
/// the file's path.
async fn gone_member(portal: &Portal, group: &str) -> String {
    let gone = portal.path("gone.db");
    let database = sqlite(&gone);
    let spec = MemberSpec { group: group.into(), name: "gone".into(), database, direction: Direction::Bidirectional };
    portal.store.put_member(&spec).await.unwrap();
    gone
}

/// How many triggers hubsync left in a SQLite file.
async fn hubsync_triggers(path: &str) -> i64 {
    use sqlx::Connection as _;
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{path}")).await.unwrap();
    sqlx::query_scalar("select count(*) from sqlite_master where type = 'trigger' and name like 'hubsync%'")
        .fetch_one(&mut conn)
        .await
        .unwrap()
}

/// The `<tr>` of a member in the state area.
fn member_row<'a>(page: &'a str, member: &str) -> &'a str {
    let start = page.find(&format!("<th scope=\"row\">{member}</th>")).unwrap_or_else(|| panic!("no {member}: {page}"));
    let rest = &page[start..];
    &rest[..rest.find("</tr>").unwrap()]
}

#[tokio::test]
async fn the_group_page_edits_interval_and_policy_with_errors_by_the_field() {
    let portal = Portal::start().await;
    stored_group(&portal, "sales").await;
    let writer = portal.browser(&portal.write_token).await;
    let (_, _, page) = get(&writer, &portal.url("/portal/groups/sales")).await;
    assert!(page.contains(r#"action="/portal/groups/sales/settings""#), "{page}");
    assert!(page.contains(r#"<option value="manual" selected>"#), "the form shows the current schedule");

    let settings = portal.url("/portal/groups/sales/settings");
    let bad = [("schedule", "every"), ("interval_value", "0"), ("interval_unit", "hours"), ("policy", "MemberWin")];
    let (status, _, body) = post(&writer, &settings, &bad).await;
    assert_eq!(status, 422);
    assert!(body.contains(r#"id="interval_value-error""#), "{body}");
    assert!(body.contains("The interval must be at least 1 (you gave 0 hours)"), "{body}");
    assert!(body.contains(r#"<option value="MemberWin" selected>"#), "what was chosen is kept");
    let (status, _, body) = post(
        &writer,
        &settings,
        &[("schedule", "every"), ("interval_value", "2"), ("interval_unit", "hours"), ("policy", "Nobody")],
    )
    .await;
    assert_eq!(status, 422);
    assert!(body.contains(r#"id="policy-error""#), "{body}");
    let unchanged = portal.store.get_group("sales").await.unwrap().unwrap().spec;
    assert_eq!((unchanged.schedule, unchanged.policy), (Schedule::Manual, ConflictPolicy::HubWin), "nothing was saved");

    let good = [("schedule", "every"), ("interval_value", "2"), ("interval_unit", "hours"), ("policy", "MemberWin")];
    let (status, url, body) = post(&writer, &settings, &good).await;
    assert_eq!(status, 200);
    assert!(url.ends_with("/portal/groups/sales?done=settings"), "{url}");
    assert!(body.contains("Every 2 hours") && body.contains("The settings were saved"), "{body}");
    let saved = portal.store.get_group("sales").await.unwrap().unwrap().spec;
    assert_eq!(
        (saved.schedule, saved.policy, saved.conflict_logging),
        (Schedule::EverySeconds(7200), ConflictPolicy::MemberWin, false)
    );
    assert_eq!(saved.hub.password.as_deref(), Some(HUB_PASSWORD), "the hub's password is kept");

    let reader = portal.browser(&portal.read_token).await;
    let (_, _, page) = get(&reader, &portal.url("/portal/groups/sales")).await;
    assert!(!page.contains("<form method=\"post\" action=\"/portal/groups/sales/"), "a reader sees no form: {page}");
    assert!(!page.contains("Remove…") && !page.contains("/delete"), "nor links to change things");
    let (status, _, _) = post(&reader, &settings, &[("schedule", "manual"), ("policy", "HubWin")]).await;
    assert_eq!(status, 403);
    assert_eq!(portal.store.get_group("sales").await.unwrap().unwrap().spec.schedule, Schedule::EverySeconds(7200));
}

#[tokio::test]
async fn the_schema_editor_ticks_the_current_choice_keeps_keys_and_refuses_keyless_tables() {
    let portal = Portal::start().await;
    synced_group(&portal, "shop").await;
    let writer = portal.browser(&portal.write_token).await;
    let tables_url = portal.url("/portal/groups/shop/tables");
    let (status, _, page) = get(&writer, &tables_url).await;
    assert_eq!(status, 200, "{page}");
    let items = page.split("<code>items</code>").nth(1).unwrap().split("</fieldset>").next().unwrap();
    assert_eq!(items.matches(" checked").count(), 2, "id and name are ticked, note is not: {items}");
    let (t, note) = choice(&page, "items", "note");
    assert!(page.contains(&format!(r#"name="table" value="{t}" checked"#)), "the synced table is ticked");
    let (_, id) = choice(&page, "items", "id");
    assert!(page.contains(&format!(r#"value="{id}" checked disabled"#)), "the key is ticked and disabled: {page}");
    let loose = page.split("<code>loose</code>").nth(1).unwrap().split("</fieldset>").next().unwrap();
    assert!(
        loose.contains("Not selectable") && loose.contains("no primary key") && !loose.contains(" checked"),
        "{loose}"
    );

    let (status, _, body) = post(&writer, &tables_url, &[("action", "save")]).await;
    assert_eq!(status, 422);
    assert!(body.contains("Choose at least one table"), "{body}");
    let loose_section =
        page.split(r#"<fieldset class="table-choice">"#).find(|s| s.contains("<code>loose</code>")).unwrap();
    let loose_index = loose_section.split(r#"name="table" value=""#).nth(1).unwrap().split('"').next().unwrap();
    let (status, _, body) = post(&writer, &tables_url, &[("table", loose_index), ("action", "save")]).await;
    assert_eq!(status, 422, "a keyless table sent anyway is refused");
    assert!(body.contains("has no primary key"), "{body}");
    let kept = portal.store.get_group("shop").await.unwrap().unwrap().spec;
    assert_eq!(kept.tables[0].columns, Some(vec!["id".to_string(), "name".to_string()]), "nothing was saved");

    // `name` unticked, `note` ticked; the key comes along without being sent.
    let (status, url, _) = post(&writer, &tables_url, &[("table", &t), ("col", &note), ("action", "save")]).await;
    assert_eq!(status, 200);
    assert!(url.ends_with("?done=tables"), "{url}");
    let saved = portal.store.get_group("shop").await.unwrap().unwrap().spec;
    assert_eq!(saved.tables.len(), 1);
    assert_eq!(saved.tables[0].columns, Some(vec!["id".to_string(), "note".to_string()]));

    let reader = portal.browser(&portal.read_token).await;
    assert_eq!(get(&reader, &tables_url).await.0, 403);
    assert_eq!(post(&reader, &tables_url, &[("table", &t), ("action", "save")]).await.0, 403);
    assert_eq!(portal.store.get_group("shop").await.unwrap().unwrap().spec, saved);
}

#[tokio::test]
async fn removing_a_member_deprovisions_it_only_when_asked() {
    let portal = Portal::start().await;
    synced_group(&portal, "shop").await;
    let (m1, m2) = (portal.path("m1.db"), portal.path("m2.db"));
    assert!(hubsync_triggers(&m1).await > 0 && hubsync_triggers(&m2).await > 0, "the sync provisioned both");
    let reader = portal.browser(&portal.read_token).await;
    let remove_m1 = portal.url("/portal/groups/shop/members/m1/remove");
    assert_eq!(get(&reader, &remove_m1).await.0, 403);
    assert_eq!(post(&reader, &remove_m1, &[("deprovision", "on")]).await.0, 403);
    assert_eq!(portal.store.list_members("shop").await.unwrap().len(), 2);

    let writer = portal.browser(&portal.write_token).await;
    let (_, _, page) = get(&writer, &portal.url("/portal/groups/shop")).await;
    assert!(page.contains(r#"href="/portal/groups/shop/members/m1/remove""#), "{page}");
    let (status, _, confirm) = get(&writer, &remove_m1).await;
    assert_eq!(status, 200);
    assert!(confirm.contains(r#"name="deprovision""#) && confirm.contains("Remove member"), "{confirm}");
    let (status, url, body) = post(&writer, &remove_m1, &[("deprovision", "on")]).await;
    assert_eq!(status, 200, "{body}");
    assert!(url.ends_with("/portal/groups/shop?done=removed"), "{url}");
    assert_eq!(hubsync_triggers(&m1).await, 0, "m1 was deprovisioned");
    let (status, _, _) = post(&writer, &portal.url("/portal/groups/shop/members/m2/remove"), &[]).await;
    assert_eq!(status, 200);
    assert!(hubsync_triggers(&m2).await > 0, "m2 keeps its tracking objects");
    assert!(portal.store.list_members("shop").await.unwrap().is_empty());

    // A member whose database is gone cannot be deprovisioned: it is kept.
    let gone = gone_member(&portal, "shop").await;
    let (status, _, body) =
        post(&writer, &portal.url("/portal/groups/shop/members/gone/remove"), &[("deprovision", "on")]).await;
    assert_eq!(status, 422);
    assert!(body.contains("The member was not removed") && body.contains("gone.db"), "{body}");
    let kept = portal.store.get_member("shop", "gone").await.unwrap().unwrap();
    assert_eq!(kept.status.state, hubsync_server::model::SyncMemberState::UnProvisioned, "its state is restored");
    assert!(!Path::new(&gone).exists());
}

#[tokio::test]
async fn deleting_a_group_needs_its_name_typed_and_can_deprovision_the_members() {
    let portal = Portal::start().await;
    synced_group(&portal, "shop").await;
    let delete = portal.url("/portal/groups/shop/delete");
    let reader = portal.browser(&portal.read_token).await;
    assert_eq!(get(&reader, &delete).await.0, 403);
    assert_eq!(post(&reader, &delete, &[("confirm", "shop")]).await.0, 403);

    let writer = portal.browser(&portal.write_token).await;
    let (status, _, confirm) = get(&writer, &delete).await;
    assert_eq!(status, 200);
    assert!(confirm.contains("m1, m2") && confirm.contains(r#"id="confirm""#), "{confirm}");
    let (status, _, body) = post(&writer, &delete, &[("confirm", "shopp"), ("deprovision", "on")]).await;
    assert_eq!(status, 422);
    assert!(body.contains(r#"id="confirm-error""#) && body.contains("nothing was deleted"), "{body}");
    assert!(body.contains(r#"id="deprovision" name="deprovision" type="checkbox" value="on" checked"#), "{body}");
    assert!(portal.store.get_group("shop").await.unwrap().is_some());
    assert!(hubsync_triggers(&portal.path("m1.db")).await > 0, "nothing was deprovisioned either");

    let (status, url, body) = post(&writer, &delete, &[("confirm", "shop"), ("deprovision", "on")]).await;
    assert_eq!(status, 200, "{body}");
    assert!(url.ends_with("/portal/groups?deleted=shop"), "{url}");
    assert!(body.contains("The sync group `shop` was deleted"), "{body}");
    assert!(portal.store.get_group("shop").await.unwrap().is_none());
    assert!(portal.store.list_members("shop").await.unwrap().is_empty());
    for member in ["m1.db", "m2.db"] {
        assert_eq!(hubsync_triggers(&portal.path(member)).await, 0, "{member} was deprovisioned");
    }
    assert!(hubsync_triggers(&portal.path("hub.db")).await > 0, "the hub keeps its tracking objects");
}

#[tokio::test]
async fn pending_rows_are_counted_per_direction_cached_and_unknown_when_unreachable() {
    let portal = Portal::start().await;
    synced_group(&portal, "shop").await;
    sqlite_file(&portal.path("hub.db"), "insert into items values (2, 'pear', 'y'), (3, 'fig', 'z')").await;
    sqlite_file(&portal.path("m1.db"), "insert into items values (10, 'plum')").await;
    let gone = gone_member(&portal, "shop").await;
    let reader = portal.browser(&portal.read_token).await;
    let (_, _, area) = get(&reader, &portal.url("/portal/groups/shop/status")).await;
    let m1 = member_row(&area, "m1");
    assert!(m1.contains("<td>1 row</td>") && m1.contains("<td>2 rows"), "1 up, 2 down: {m1}");
    let m2 = member_row(&area, "m2");
    assert!(m2.contains("<td>Not synced (one way)</td>") && m2.contains("<td>2 rows"), "{m2}");
    let far = member_row(&area, "gone");
    assert!(far.contains("Unknown") && far.contains("Why unknown") && far.contains("gone.db"), "{far}");
    assert!(!Path::new(&gone).exists(), "counting creates no file");

    // Counted again only after a few seconds: the next refresh shows the same.
    sqlite_file(&portal.path("hub.db"), "insert into items values (4, 'kiwi', 'w')").await;
    let (_, _, again) = get(&reader, &portal.url("/portal/groups/shop/status")).await;
    assert!(member_row(&again, "m2").contains("<td>2 rows"), "{again}");
}

#[tokio::test]
async fn a_running_syncs_published_progress_shows_in_the_refreshing_area() {
    let portal = Portal::start().await;
    stored_group(&portal, "sales").await;
    let reader = portal.browser(&portal.read_token).await;
    let status = portal.url("/portal/groups/sales/status");
    let (_, _, idle) = get(&reader, &status).await;
    assert!(!idle.contains("Sync in progress"), "{idle}");
    // As another server running the group would publish it.
    let now = hubsync_core::now_micros();
    let progress = RunProgress {
        started_at: now,
        updated_at: now,
        members: vec![MemberProgress {
            member: "branch1".into(),
            leg: Some(hubsync_core::Leg::Download),
            table: Some("items".into()),
            table_pending: Some(5000),
            table_rows: 1200,
            uploaded: 0,
            downloaded: 1200,
            finished: false,
        }],
    };
    portal.store.publish_progress("sales", &progress).await.unwrap();
    let (_, _, running) = get(&reader, &status).await;
    assert!(running.contains("Sync in progress"), "{running}");
    assert!(running.contains("Table items from the hub: 1200 of about 5000 rows"), "{running}");
    assert!(running.contains("1200 rows moved so far"), "{running}");
    let stale = RunProgress { updated_at: now - 120_000_000, ..progress };
    portal.store.publish_progress("sales", &stale).await.unwrap();
    let (_, _, stopped) = get(&reader, &status).await;
    assert!(!stopped.contains("Sync in progress"), "progress of a server that stopped is not shown");
    portal.store.clear_progress("sales").await.unwrap();
    assert!(portal.store.progress("sales").await.unwrap().is_none());
}

/// The end-to-end test in headless Chromium, driven over the WebDriver
/// protocol by `chromedriver` (plain JSON over HTTP, so no client crate).
mod browser {
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    use base64::Engine as _;
    use hubsync_server::scheduler::Scheduler;
    use serde_json::{Value as Json, json};
    use sqlx::Connection as _;
    use sqlx::Row as _;

    use super::*;

    const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

    fn services_required() -> bool {
        std::env::var_os("CI").is_some() || std::env::var_os("HUBSYNC_REQUIRE_SERVICES").is_some()
    }

    fn on_path(program: &str) -> bool {
        std::process::Command::new(program)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    struct Driver {
        http: reqwest::Client,
        session: String,
        process: tokio::process::Child,
    }

    impl Driver {
        async fn start() -> Option<Driver> {
            if !(on_path("chromium") && on_path("chromedriver")) {
                let why = "chromium or chromedriver is not installed (apt-get install chromium chromium-driver)";
                assert!(
                    !services_required(),
                    "the browser test is required (CI or HUBSYNC_REQUIRE_SERVICES is set): {why}"
                );
                eprintln!("SKIPPED: the portal's browser test needs headless Chromium: {why}.");
                return None;
            }
            let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            // Its own process group, so that a failing test can end
            // chromedriver and the browser it started together (see Drop).
            let process = tokio::process::Command::new("chromedriver")
                .arg(format!("--port={port}"))
                .process_group(0)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .unwrap();
            let http = reqwest::Client::new();
            let root = format!("http://127.0.0.1:{port}");
            let deadline = Instant::now() + Duration::from_secs(30);
            while http.get(format!("{root}/status")).send().await.is_err() {
                assert!(Instant::now() < deadline, "chromedriver did not answer within 30 s");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let args = [
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--disable-dev-shm-usage",
                "--window-size=1280,1000",
            ];
            let capabilities = json!({"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args}
            }}});
            let created: Json =
                http.post(format!("{root}/session")).json(&capabilities).send().await.unwrap().json().await.unwrap();
            let id = created["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {created}"));
            Some(Driver { http, session: format!("{root}/session/{id}"), process })
        }

        async fn try_call(&self, method: reqwest::Method, path: &str, body: &Json) -> Result<Json, Json> {
            let url = format!("{}{path}", self.session);
            let request = self.http.request(method, &url);
            let request = if body.is_null() { request } else { request.json(body) };
            let answer: Json = request.send().await.unwrap().json().await.unwrap();
            if answer["value"].get("error").is_some() { Err(answer) } else { Ok(answer["value"].clone()) }
        }

        async fn call(&self, method: reqwest::Method, path: &str, body: Json) -> Json {
            self.try_call(method, path, &body).await.unwrap_or_else(|e| panic!("{path}: {e}"))
        }

        async fn goto(&self, url: &str) {
            self.call(reqwest::Method::POST, "/url", json!({"url": url})).await;
        }

        /// Finds the element and acts on it; while a page is still loading
        /// the element may be missing or stale, so that is retried.
        async fn act(&self, xpath: &str, actions: &[(&str, Json)]) -> String {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let attempt = async {
                    let found = self
                        .try_call(reqwest::Method::POST, "/element", &json!({"using": "xpath", "value": xpath}))
                        .await?;
                    let element = found[ELEMENT].as_str().unwrap_or_default().to_string();
                    for (action, body) in actions {
                        self.try_call(reqwest::Method::POST, &format!("/element/{element}/{action}"), body).await?;
                    }
                    Ok::<String, Json>(element)
                };
                match attempt.await {
                    Ok(element) => return element,
                    Err(e) => {
                        assert!(Instant::now() < deadline, "{xpath}: {e}");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        }

        async fn find(&self, xpath: &str) -> String {
            self.act(xpath, &[]).await
        }

        async fn click(&self, xpath: &str) {
            self.act(xpath, &[("click", json!({}))]).await;
        }

        async fn type_into(&self, id: &str, text: &str) {
            self.act(&format!("//*[@id='{id}']"), &[("clear", json!({})), ("value", json!({"text": text}))]).await;
        }

        async fn script(&self, script: &str) -> Json {
            self.call(reqwest::Method::POST, "/execute/sync", json!({"script": script, "args": []})).await
        }

        async fn path(&self) -> String {
            let url = self.call(reqwest::Method::GET, "/url", Json::Null).await;
            url::Url::parse(url.as_str().unwrap()).unwrap().path().to_string()
        }

        /// Waits for the browser to arrive at a page whose path ends with `end`.
        async fn wait_path(&self, end: &str) {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let path = self.path().await;
                if path.ends_with(end) {
                    return;
                }
                assert!(Instant::now() < deadline, "the browser is at {path}, not at …{end}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }

        async fn screenshot(&self, name: &str) {
            let shot = self.call(reqwest::Method::GET, "/screenshot", Json::Null).await;
            let png = base64::engine::general_purpose::STANDARD.decode(shot.as_str().unwrap()).unwrap();
            let file = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
            std::fs::write(&file, png).unwrap();
            eprintln!("Screenshot: {}", file.display());
        }

        /// Every address the current page loaded (itself, styles, scripts,
        /// fetches) must be on `origin`.
        async fn assert_only(&self, origin: &str) {
            let loaded = self
                .script("return [location.href].concat(performance.getEntriesByType('resource').map(e => e.name));")
                .await;
            for url in loaded.as_array().unwrap() {
                let url = url.as_str().unwrap();
                assert!(url.starts_with(origin), "the portal requested {url}, which is not on {origin}");
            }
        }

        async fn stop(self) {
            let _ = self.http.delete(&self.session).send().await;
        }
    }

    impl Drop for Driver {
        fn drop(&mut self) {
            if let Some(pid) = self.process.id() {
                let _ = std::process::Command::new("kill").args(["-TERM", "--", &format!("-{pid}")]).status();
            }
        }
    }

    #[tokio::test]
    async fn a_person_signs_in_creates_a_group_syncs_it_and_sees_it_good() {
        let Some(driver) = Driver::start().await else { return };
        let portal = Portal::start().await;
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let scheduler =
            Scheduler::new(portal.store.clone(), portal.runner.clone(), "browser-test".into(), portal.wake.clone());
        let scheduler = tokio::spawn(scheduler.run(stopped));
        let hub = portal.path("hub.db");
        sqlite_file(
            &hub,
            "create table items (id integer primary key, name text, note text);
             insert into items values (1, 'apple', 'secret'), (2, 'pear', 'secret');
             create table loose (a text);",
        )
        .await;
        for member in ["m1.db", "m2.db"] {
            sqlite_file(&portal.path(member), "select 1").await;
        }
        let origin = portal.url("/");
        let origin = origin.trim_end_matches('/');

        driver.goto(&portal.url("/portal/groups")).await;
        driver.wait_path("/portal/signin").await;
        driver.type_into("token", "wrong").await;
        driver.click("//button[text()='Sign in']").await;
        assert!(driver.find("//*[@id='token-error']").await.len() > 1, "a wrong token shows a message");
        driver.type_into("token", &portal.write_token).await;
        driver.click("//button[text()='Sign in']").await;
        driver.wait_path("/portal/groups").await;
        driver.assert_only(origin).await;

        driver.click("//main//a[text()='Create a sync group']").await;
        driver.type_into("name", "shop").await;
        driver.type_into("hub_database", &hub).await;
        driver.click("//select[@id='schedule']/option[@value='manual']").await;
        driver.click("//button[@value='next']").await;
        driver.wait_path("/members").await;
        for (name, direction) in [("m1", "Bidirectional"), ("m2", "OneWayHubToMember")] {
            driver.type_into("member_name", name).await;
            driver.type_into("member_database", &portal.path(&format!("{name}.db"))).await;
            driver.click(&format!("//select[@id='direction']/option[@value='{direction}']")).await;
            driver.click("//button[@value='test']").await;
            driver.find("//p[contains(., 'Connection test passed')]").await;
            driver.click("//button[@value='add']").await;
        }
        driver.click("//button[@value='next']").await;
        driver.wait_path("/tables").await;
        driver.find("//fieldset[.//code[text()='loose']]//input[@name='table' and @disabled]").await;
        driver.click("//fieldset[.//code[text()='items']]//input[@name='table']").await;
        driver.click("//fieldset[.//code[text()='items']]//li[.//code[text()='note']]/input").await;
        driver.screenshot("portal-new-tables.png").await;
        driver.click("//button[@value='create']").await;
        driver.wait_path("/portal/groups/shop").await;

        driver.click("//button[text()='Sync now']").await;
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let state = driver.script("return document.querySelector('.state-line').textContent;").await;
            if state.as_str().unwrap_or_default().contains("Good") {
                break;
            }
            assert!(Instant::now() < deadline, "the group did not reach Good within 5 minutes: {state}");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        driver.assert_only(origin).await;
        driver.screenshot("portal-group-page.png").await;
        // A phone's width: the page reflows instead of scrolling sideways.
        driver.call(reqwest::Method::POST, "/window/rect", json!({"width": 390, "height": 900})).await;
        let fits = driver.script("return document.documentElement.scrollWidth <= window.innerWidth + 1;").await;
        driver.screenshot("portal-group-page-390px.png").await;
        assert_eq!(fits, Json::Bool(true), "the group page is wider than 390 px");
        driver.stop().await;
        let _ = stop.send(true);
        let _ = scheduler.await;

        for member in ["m1.db", "m2.db"] {
            let url = format!("sqlite://{}", portal.path(member));
            let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
            let rows: Vec<(i64, String)> = sqlx::query("select id, name from items order by id")
                .fetch_all(&mut conn)
                .await
                .unwrap()
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect();
            assert_eq!(rows, [(1, "apple".to_string()), (2, "pear".to_string())], "{member}");
            let columns: Vec<String> = sqlx::query("select name from pragma_table_info('items')")
                .fetch_all(&mut conn)
                .await
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect();
            assert!(!columns.contains(&"note".to_string()), "the unticked column is not synced: {columns:?}");
        }
    }
}

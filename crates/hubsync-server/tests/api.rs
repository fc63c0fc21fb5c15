//! The REST API, in process over a fresh SQLite metadata store: CRUD of
//! groups and members, PATCH semantics, validation with stable error codes,
//! authentication, long operations, sync requests, logs and conflicts. Every
//! response is checked against the OpenAPI document (`common/api.rs`), and
//! none may contain a password.

#![allow(clippy::unwrap_used)]

#[path = "common/api.rs"]
mod support;

use hubsync_core::{Conflict, ConflictPolicy, Side, TableName, Value as Cell};
use hubsync_server::model::LogType;
use hubsync_server::store::{ConflictRecord, LogRecord};
use reqwest::Method;
use serde_json::{Value, json};
use sqlx::AssertSqlSafe;
use support::{Api, Body, PASSWORDS, Reply, sqlite_group, start};

#[test]
fn the_openapi_document_matches_its_snapshot() {
    let doc = serde_json::to_value(hubsync_server::api::openapi()).unwrap();
    insta::assert_json_snapshot!("openapi", doc);
}

#[test]
fn every_protected_operation_declares_the_auth_errors() {
    let doc = serde_json::to_value(hubsync_server::api::openapi()).unwrap();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let responses = op["responses"].as_object().unwrap();
            let protected = path != "/healthz";
            assert_eq!(responses.contains_key("401"), protected, "{method} {path}");
            assert_eq!(responses.contains_key("403"), protected && method != "get", "{method} {path}");
            assert_eq!(op.get("requestBody").is_some(), responses.contains_key("413"), "{method} {path}");
        }
    }
}

#[test]
fn the_response_check_refuses_what_the_document_does_not_declare() {
    let doc = serde_json::to_value(hubsync_server::api::openapi()).unwrap();
    let refused = |status: u16, body: &str| {
        let doc = &doc;
        std::panic::catch_unwind(|| {
            support::conforms(doc, &Method::GET, "/v1/syncGroups/g", status, Some("application/json"), body)
        })
        .is_err()
    };
    assert!(!refused(404, r#"{"error": {"code": "SyncGroupNotFound", "message": "no"}}"#));
    assert!(!refused(200, r#"{"name": "g", "properties": {"interval": 5}}"#));
    assert!(refused(404, r#"{"error": {"code": "SyncGroupNotFound"}}"#));
    assert!(refused(200, r#"{"properties": {"interval": "often"}}"#));
    assert!(refused(200, r#"{"properties": {}, "colour": "red"}"#));
    assert!(refused(418, "{}"));
}

#[test]
fn the_document_declares_passwords_as_write_only() {
    let doc = serde_json::to_value(hubsync_server::api::openapi()).unwrap();
    for schema in ["DatabaseConnection", "SyncMemberProperties"] {
        let password = &doc["components"]["schemas"][schema]["properties"]["password"];
        assert_eq!(password["writeOnly"], true, "{schema}: {password}");
    }
    let bearer = &doc["components"]["securitySchemes"]["bearer"];
    assert_eq!((bearer["type"].as_str(), bearer["scheme"].as_str()), (Some("http"), Some("bearer")));
}

/// A SQLite database file at `name` in the test's directory, with `sql` run.
async fn sqlite_db(api: &Api, name: &str, sql: &str) -> std::path::PathBuf {
    let path = api.dir.path().join(name);
    let url = format!("sqlite://{}", path.display());
    let hubsync_engines::AnyEndpoint::Sqlite(db) = hubsync_engines::connect(&url, api.dir.path()).await.unwrap() else {
        panic!("not SQLite")
    };
    if !sql.is_empty() {
        sqlx::raw_sql(AssertSqlSafe(sql.to_string())).execute(db.pool()).await.unwrap();
    }
    db.close().await;
    path
}

fn member_body(path: &std::path::Path) -> Value {
    json!({"properties": {
        "databaseType": "Sqlite",
        "databaseName": path.display().to_string(),
        "password": PASSWORDS[1],
        "syncDirection": "Bidirectional",
    }})
}

/// Refreshes the hub's schema through the API and waits for it.
async fn refresh_hub(api: &Api, group: &str) -> Value {
    let accepted = api.post(&format!("/v1/syncGroups/{group}/refreshHubSchema")).await;
    let operation = api.wait_for_operation(&accepted).await;
    assert_eq!(operation["status"], "Succeeded", "{operation}");
    assert_eq!(operation["name"], "refreshHubSchema");
    api.get(&format!("/v1/syncGroups/{group}/hubSchemas")).await.json
}

#[tokio::test]
async fn groups_are_created_replaced_read_listed_and_deleted_without_returning_passwords() {
    let api = start().await;
    let hub = api.dir.path().join("hub.db");
    let created = api.put("/v1/syncGroups/sales", sqlite_group(&hub, json!({}))).await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(created.json["id"], "/v1/syncGroups/sales");
    assert_eq!(created.json["name"], "sales");
    let p = &created.json["properties"];
    assert_eq!(p["interval"], 60);
    assert_eq!(p["syncState"], "NotReady");
    assert_eq!(p["hub"]["databaseType"], "Sqlite");
    assert_eq!(p["batchRows"], 10_000);
    assert_eq!(p["enableConflictLogging"], false);
    assert!(p["hub"].get("password").is_none(), "{}", created.text);
    // The stored password is the one given: only the API hides it.
    let stored = api.store.get_group("sales").await.unwrap().unwrap();
    assert_eq!(stored.spec.hub.password.as_deref(), Some(PASSWORDS[0]));

    let replaced = api
        .put(
            "/v1/syncGroups/sales",
            sqlite_group(&hub, json!({"interval": -1, "conflictResolutionPolicy": "MemberWin"})),
        )
        .await;
    assert_eq!(replaced.status, 200, "{}", replaced.text);
    assert_eq!(replaced.json["properties"]["interval"], -1);
    assert_eq!(replaced.json["properties"]["conflictResolutionPolicy"], "MemberWin");

    let read = api.get("/v1/syncGroups/sales").await;
    assert_eq!(read.status, 200);
    assert_eq!(read.json, replaced.json);
    api.put("/v1/syncGroups/archive", sqlite_group(&hub, json!({}))).await;
    let list = api.get("/v1/syncGroups").await;
    let names: Vec<&str> = list.json["value"].as_array().unwrap().iter().map(|g| g["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["archive", "sales"]);

    // A PUT back of what was read (which has no password) keeps the password.
    let round_trip = api.put("/v1/syncGroups/sales", read.json.clone()).await;
    assert_eq!(round_trip.status, 200, "{}", round_trip.text);
    let stored = api.store.get_group("sales").await.unwrap().unwrap();
    assert_eq!(stored.spec.hub.password.as_deref(), Some(PASSWORDS[0]));

    let deleted = api.delete("/v1/syncGroups/sales").await;
    assert_eq!(deleted.status, 204);
    assert_eq!(api.get("/v1/syncGroups/sales").await.code(), "SyncGroupNotFound");
    assert_eq!(api.delete("/v1/syncGroups/sales").await.status, 404);
}

#[tokio::test]
async fn patch_changes_only_the_given_properties_and_keeps_the_password() {
    let api = start().await;
    let hub = api.dir.path().join("hub.db");
    let missing = api.patch("/v1/syncGroups/nope", json!({"properties": {"interval": 5}})).await;
    assert_eq!((missing.status, missing.code()), (404, "SyncGroupNotFound"));
    api.put("/v1/syncGroups/g", sqlite_group(&hub, json!({"enableConflictLogging": true}))).await;
    let patched =
        api.patch("/v1/syncGroups/g", json!({"properties": {"interval": 0, "hub": {"userName": "ann"}}})).await;
    assert_eq!(patched.status, 200, "{}", patched.text);
    let p = &patched.json["properties"];
    assert_eq!(p["interval"], 0);
    assert_eq!(p["enableConflictLogging"], true);
    assert_eq!(p["conflictResolutionPolicy"], "HubWin");
    assert_eq!(p["hub"]["userName"], "ann");
    assert_eq!(p["hub"]["databaseName"], hub.display().to_string());
    let stored = api.store.get_group("g").await.unwrap().unwrap();
    assert_eq!(stored.spec.hub.password.as_deref(), Some(PASSWORDS[0]));
    let new_password = api.patch("/v1/syncGroups/g", json!({"properties": {"hub": {"password": "changed"}}})).await;
    assert!(!new_password.text.contains("changed"));
    let stored = api.store.get_group("g").await.unwrap().unwrap();
    assert_eq!(stored.spec.hub.password.as_deref(), Some("changed"));
    let bad = api.patch("/v1/syncGroups/g", json!({"properties": {"interval": -7}})).await;
    assert_eq!((bad.status, bad.code()), (400, "InvalidSyncGroupInterval"));
}

#[tokio::test]
async fn members_are_created_patched_listed_and_deleted_without_returning_passwords() {
    let api = start().await;
    let hub = api.dir.path().join("hub.db");
    let member_db = api.dir.path().join("m1.db");
    let orphan = api.put("/v1/syncGroups/g/syncMembers/m1", member_body(&member_db)).await;
    assert_eq!((orphan.status, orphan.code()), (404, "SyncGroupNotFound"));
    api.put("/v1/syncGroups/g", sqlite_group(&hub, json!({}))).await;
    let created = api.put("/v1/syncGroups/g/syncMembers/m1", member_body(&member_db)).await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(created.json["id"], "/v1/syncGroups/g/syncMembers/m1");
    assert_eq!(created.json["properties"]["syncState"], "UnProvisioned");
    assert_eq!(created.json["properties"]["syncDirection"], "Bidirectional");
    assert!(created.json["properties"].get("password").is_none());
    let stored = api.store.get_member("g", "m1").await.unwrap().unwrap();
    assert_eq!(stored.spec.database.password.as_deref(), Some(PASSWORDS[1]));

    let patched = api
        .patch("/v1/syncGroups/g/syncMembers/m1", json!({"properties": {"syncDirection": "OneWayHubToMember"}}))
        .await;
    assert_eq!(patched.status, 200, "{}", patched.text);
    assert_eq!(patched.json["properties"]["syncDirection"], "OneWayHubToMember");
    assert_eq!(patched.json["properties"]["databaseName"], member_db.display().to_string());
    let stored = api.store.get_member("g", "m1").await.unwrap().unwrap();
    assert_eq!(stored.spec.database.password.as_deref(), Some(PASSWORDS[1]));

    let list = api.get("/v1/syncGroups/g/syncMembers").await;
    assert_eq!(list.json["value"].as_array().unwrap().len(), 1);
    assert_eq!(api.get("/v1/syncGroups/g/syncMembers/m1").await.json, patched.json);
    let missing = api.get("/v1/syncGroups/g/syncMembers/m2").await;
    assert_eq!((missing.status, missing.code()), (404, "SyncMemberNotFound"));
    let no_direction = json!({"properties": {"databaseType": "Sqlite", "databaseName": "x.db"}});
    let refused = api.put("/v1/syncGroups/g/syncMembers/m2", no_direction).await;
    assert_eq!((refused.status, refused.code()), (400, "MissingProperty"));
    assert!(refused.json["error"]["message"].as_str().unwrap().contains("syncDirection"));
    let bad_name = api.put("/v1/syncGroups/g/syncMembers/hub", member_body(&member_db)).await;
    assert_eq!((bad_name.status, bad_name.code()), (400, "InvalidSyncMemberName"));

    assert_eq!(api.delete("/v1/syncGroups/g/syncMembers/m1").await.status, 204);
    assert_eq!(api.delete("/v1/syncGroups/g/syncMembers/m1").await.code(), "SyncMemberNotFound");
}

#[tokio::test]
async fn bad_requests_are_refused_with_json_errors_and_stable_codes() {
    let api = start().await;
    let hub = api.dir.path().join("hub.db");
    let put = |name: &str, body: Value| {
        let path = format!("/v1/syncGroups/{name}");
        let api = &api;
        async move { api.put(&path, body).await }
    };
    let cases: Vec<(Reply, u16, &str)> = vec![
        (put("g", sqlite_group(&hub, json!({"interval": -2}))).await, 400, "InvalidSyncGroupInterval"),
        (put("g", sqlite_group(&hub, json!({"interval": 40 * 24 * 3600}))).await, 400, "InvalidSyncGroupInterval"),
        (put("g", sqlite_group(&hub, json!({"batchRows": 0}))).await, 400, "InvalidBatchRows"),
        (
            put("g", sqlite_group(&hub, json!({"conflictLoggingRetentionInDays": -1}))).await,
            400,
            "InvalidConflictLoggingRetentionInDays",
        ),
        (put("bad%20name", sqlite_group(&hub, json!({}))).await, 400, "InvalidSyncGroupName"),
        (put(&"x".repeat(129), sqlite_group(&hub, json!({}))).await, 400, "InvalidSyncGroupName"),
        (put("g", sqlite_group(&hub, json!({"intervall": 5}))).await, 400, "UnknownProperty"),
        (put("g", json!({"properties": {"interval": "often", "hub": {}}})).await, 400, "InvalidRequestBody"),
        (put("g", json!({"properties": {"conflictResolutionPolicy": "Coin"}})).await, 400, "InvalidRequestBody"),
        (put("g", json!({"properties": {"interval": 5}})).await, 400, "MissingProperty"),
        (put("g", json!({"name": "other", "properties": {}})).await, 400, "InvalidRequestBody"),
        (
            put("g", sqlite_group(&hub, json!({"schema": {"tables": [{"quotedName": "\"open"}]}}))).await,
            400,
            "InvalidTableName",
        ),
    ];
    let typed_password = put("g", json!({"properties": {"hub": {"databaseType": "Sqlite", "password": 424242}}})).await;
    assert_eq!((typed_password.status, typed_password.code()), (400, "InvalidRequestBody"));
    assert!(
        typed_password.text.contains("password") && !typed_password.text.contains("424242"),
        "{}",
        typed_password.text
    );
    for (reply, status, code) in &cases {
        assert_eq!((reply.status, reply.code()), (*status, *code), "{}", reply.text);
        assert!(reply.json["error"]["message"].as_str().unwrap().len() > 10, "{}", reply.text);
    }
    let raw = |content_type: Option<&'static str>, bytes: Vec<u8>| {
        let api = &api;
        async move {
            api.send(Method::PUT, "/v1/syncGroups/g", Some(&api.token), Some(Body::Raw(content_type, bytes))).await
        }
    };
    let json_type = Some("application/json");
    let malformed = raw(json_type, b"{\"properties\": {".to_vec()).await;
    assert_eq!((malformed.status, malformed.code()), (400, "MalformedJson"));
    let not_json = raw(Some("text/plain"), b"{}".to_vec()).await;
    assert_eq!((not_json.status, not_json.code()), (415, "UnsupportedMediaType"));
    let no_type = raw(None, b"{}".to_vec()).await;
    assert_eq!((no_type.status, no_type.code()), (415, "UnsupportedMediaType"));
    let mut huge = b"{\"properties\": {\"hub\": {\"databaseName\": \"".to_vec();
    huge.extend(std::iter::repeat_n(b'x', 2 * 1024 * 1024));
    huge.extend(b"\"}}}");
    let too_large = raw(json_type, huge).await;
    assert_eq!((too_large.status, too_large.code()), (413, "PayloadTooLarge"));
    // Nothing was stored by any of these.
    assert!(api.store.list_groups().await.unwrap().is_empty());

    let unknown_route = api.get("/v1/nothing/here").await;
    assert_eq!((unknown_route.status, unknown_route.code()), (404, "NotFound"));
    let wrong_method = api.call(Method::POST, "/v1/syncGroups", None).await;
    assert_eq!((wrong_method.status, wrong_method.code()), (405, "MethodNotAllowed"));
    let operation = api.get("/v1/operations/no-such-op").await;
    assert_eq!((operation.status, operation.code()), (404, "OperationNotFound"));
    let bad_query = api.call(Method::DELETE, "/v1/syncGroups/g/syncMembers/m?deprovision=maybe", None).await;
    assert_eq!((bad_query.status, bad_query.code()), (400, "InvalidQueryParameter"));
}

#[tokio::test]
async fn tokens_are_required_and_read_only_tokens_cannot_change_anything() {
    let api = start().await;
    let hub = api.dir.path().join("hub.db");
    let none = api.send(Method::GET, "/v1/syncGroups", None, None).await;
    assert_eq!((none.status, none.code()), (401, "Unauthorized"));
    assert!(none.headers.get("www-authenticate").unwrap().to_str().unwrap().starts_with("Bearer"));
    let wrong = api.send(Method::GET, "/v1/syncGroups", Some("hs_not-a-real-token"), None).await;
    assert_eq!((wrong.status, wrong.code()), (401, "InvalidToken"));
    let unknown_route = api.send(Method::GET, "/v1/nothing", None, None).await;
    assert_eq!(unknown_route.status, 401);
    let body = || Some(Body::Json(sqlite_group(&hub, json!({}))));
    let no_token_put = api.send(Method::PUT, "/v1/syncGroups/g", None, body()).await;
    assert_eq!(no_token_put.status, 401);
    let read_only_put = api.send(Method::PUT, "/v1/syncGroups/g", Some(&api.read_only), body()).await;
    assert_eq!((read_only_put.status, read_only_put.code()), (403, "ReadOnlyToken"));
    assert!(api.store.get_group("g").await.unwrap().is_none());
    assert_eq!(api.put("/v1/syncGroups/g", sqlite_group(&hub, json!({}))).await.status, 201);
    let read_only_get = api.send(Method::GET, "/v1/syncGroups/g", Some(&api.read_only), None).await;
    assert_eq!(read_only_get.status, 200);
    let read_only_delete = api.send(Method::DELETE, "/v1/syncGroups/g", Some(&api.read_only), None).await;
    assert_eq!(read_only_delete.status, 403);
    let read_only_trigger = api.send(Method::POST, "/v1/syncGroups/g/triggerSync", Some(&api.read_only), None).await;
    assert_eq!(read_only_trigger.status, 403);
    assert!(api.store.get_group("g").await.unwrap().is_some());
}

#[tokio::test]
async fn the_health_check_needs_no_token_and_metrics_need_one() {
    let api = start().await;
    let health = api.send(Method::GET, "/healthz", None, None).await;
    assert_eq!(health.status, 200);
    assert_eq!(health.json["status"], "ok");
    assert_eq!(api.send(Method::GET, "/metrics", None, None).await.status, 401);
    let metrics = api.get("/metrics").await;
    assert_eq!(metrics.status, 200);
    assert!(metrics.headers.get("content-type").unwrap().to_str().unwrap().starts_with("text/plain"));
    let doc = api.get("/v1/openapi.json").await;
    assert_eq!(doc.status, 200);
    assert_eq!(doc.json, api.doc);
}

#[tokio::test]
async fn refreshing_the_hub_schema_lists_its_tables_and_selections_are_checked_against_it() {
    let api = start().await;
    let hub = sqlite_db(
        &api,
        "hub.db",
        "CREATE TABLE items (id INTEGER PRIMARY KEY, name VARCHAR(40), qty INT); \
         CREATE TABLE loose (note TEXT)",
    )
    .await;
    api.put("/v1/syncGroups/g", sqlite_group(&hub, json!({}))).await;
    assert_eq!(api.get("/v1/syncGroups/g/hubSchemas").await.json["value"], json!([]));
    let schemas = refresh_hub(&api, "g").await;
    let schema = &schemas["value"][0];
    assert!(schema["lastUpdateTime"].as_str().unwrap().ends_with('Z'));
    let tables = schema["tables"].as_array().unwrap();
    let names: Vec<&str> = tables.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["items", "loose"]);
    assert_eq!(tables[0]["hasError"], false);
    assert_eq!(
        tables[0]["columns"][0],
        json!({"name": "id", "quotedName": "\"id\"", "dataType": "INTEGER", "isPrimaryKey": true})
    );
    assert_eq!(tables[0]["columns"][1]["dataSize"], "40");
    assert_eq!(tables[1]["hasError"], true);
    assert_eq!(tables[1]["errorId"], "TableHasNoPrimaryKey");
    assert!(tables[1]["errorMessage"].as_str().unwrap().contains("primary key"));

    let select = |tables: Value| sqlite_group(&hub, json!({"schema": {"tables": tables}}));
    let no_key = api.put("/v1/syncGroups/g", select(json!([{"quotedName": "\"loose\""}]))).await;
    assert_eq!((no_key.status, no_key.code()), (422, "TableHasNoPrimaryKey"));
    let absent = api.put("/v1/syncGroups/g", select(json!([{"quotedName": "\"ghost\""}]))).await;
    assert_eq!((absent.status, absent.code()), (422, "TableNotFound"));
    let bad_column = api
        .patch(
            "/v1/syncGroups/g",
            json!({"properties": {"schema": {"tables": [
        {"quotedName": "\"items\"", "columns": [{"quotedName": "\"colour\""}]}]}}}),
        )
        .await;
    assert_eq!((bad_column.status, bad_column.code()), (422, "ColumnNotFound"));
    let good = api
        .put("/v1/syncGroups/g", select(json!([{"quotedName": "\"items\"", "columns": [{"quotedName": "\"name\""}]}])))
        .await;
    assert_eq!(good.status, 200, "{}", good.text);
    assert_eq!(good.json["properties"]["schema"]["tables"][0]["quotedName"], "\"items\"");
    assert_eq!(good.json["properties"]["schema"]["tables"][0]["columns"][0]["quotedName"], "\"name\"");

    // A hub that cannot be read fails the operation with a reason.
    api.put("/v1/syncGroups/broken", sqlite_group(&api.dir.path().join("missing.db"), json!({}))).await;
    let accepted = api.post("/v1/syncGroups/broken/refreshHubSchema").await;
    let operation = api.wait_for_operation(&accepted).await;
    assert_eq!(operation["status"], "Failed");
    assert_eq!(operation["error"]["code"], "SchemaRefreshFailed");
    assert!(operation["error"]["message"].as_str().unwrap().contains("does not exist"), "{operation}");
}

#[tokio::test]
async fn member_schemas_are_refreshed_and_deprovisioning_deletes_the_member() {
    let api = start().await;
    let hub = sqlite_db(&api, "hub.db", "CREATE TABLE items (id INTEGER PRIMARY KEY, v TEXT)").await;
    let member_db = sqlite_db(&api, "m.db", "CREATE TABLE items (id INTEGER PRIMARY KEY, v TEXT)").await;
    api.put("/v1/syncGroups/g", sqlite_group(&hub, json!({"schema": {"tables": [{"quotedName": "\"items\""}]}}))).await;
    api.put("/v1/syncGroups/g/syncMembers/m", member_body(&member_db)).await;
    assert_eq!(api.get("/v1/syncGroups/g/syncMembers/m/schemas").await.json["value"], json!([]));
    let accepted = api.post("/v1/syncGroups/g/syncMembers/m/refreshSchema").await;
    assert_eq!(api.wait_for_operation(&accepted).await["status"], "Succeeded");
    let schemas = api.get("/v1/syncGroups/g/syncMembers/m/schemas").await;
    assert_eq!(schemas.json["value"][0]["tables"][0]["name"], "items");

    // Provision the member as a sync would, then delete it with deprovisioning.
    let hubsync_engines::AnyEndpoint::Sqlite(db) =
        hubsync_engines::connect(&format!("sqlite://{}", member_db.display()), api.dir.path()).await.unwrap()
    else {
        panic!("not SQLite")
    };
    use hubsync_core::Endpoint;
    let items = db.introspect(&TableName::new("items")).await.unwrap().unwrap();
    db.provision(&items).await.unwrap();
    assert!(db.is_provisioned(&items.name).await.unwrap());
    let accepted = api.call(Method::DELETE, "/v1/syncGroups/g/syncMembers/m?deprovision=true", None).await;
    let operation = api.wait_for_operation(&accepted).await;
    assert_eq!(operation["status"], "Succeeded", "{operation}");
    assert_eq!(operation["name"], "deleteSyncMember");
    assert!(!db.is_provisioned(&items.name).await.unwrap());
    assert_eq!(api.get("/v1/syncGroups/g/syncMembers/m").await.status, 404);
    assert_eq!(db.list_tables().await.unwrap(), [TableName::new("items")]);
}

#[tokio::test]
async fn trigger_and_cancel_record_requests_for_the_scheduler() {
    let api = start().await;
    let hub = api.dir.path().join("hub.db");
    let missing = api.post("/v1/syncGroups/nope/triggerSync").await;
    assert_eq!((missing.status, missing.code()), (404, "SyncGroupNotFound"));
    api.put("/v1/syncGroups/empty", sqlite_group(&hub, json!({}))).await;
    let not_ready = api.post("/v1/syncGroups/empty/triggerSync").await;
    assert_eq!((not_ready.status, not_ready.code()), (409, "SyncGroupNotReady"));
    assert!(!api.store.take_sync_request("empty").await.unwrap());

    api.put("/v1/syncGroups/g", sqlite_group(&hub, json!({"schema": {"tables": [{"quotedName": "\"items\""}]}}))).await;
    assert!(!api.store.take_sync_request("g").await.unwrap());
    assert_eq!(api.post("/v1/syncGroups/g/triggerSync").await.status, 202);
    assert!(api.store.take_sync_request("g").await.unwrap());
    assert!(!api.store.take_sync_request("g").await.unwrap());
    assert!(!api.store.take_cancel_request("g").await.unwrap());
    assert_eq!(api.post("/v1/syncGroups/g/cancelSync").await.status, 202);
    assert!(api.store.take_cancel_request("g").await.unwrap());
}

fn log(timestamp: i64, log_type: LogType, details: &str) -> LogRecord {
    LogRecord {
        id: 0,
        timestamp,
        log_type,
        source: "m1".to_string(),
        details: details.to_string(),
        tracing_id: "run-1".to_string(),
        operation_status: if log_type == LogType::Error { "Failed" } else { "Succeeded" }.to_string(),
    }
}

#[tokio::test]
async fn logs_are_paged_newest_first_and_filtered_by_type_and_time() {
    let api = start().await;
    api.put("/v1/syncGroups/g", sqlite_group(&api.dir.path().join("hub.db"), json!({}))).await;
    let hour = 3_600_000_000i64;
    let base = 1_767_225_600_000_000i64; // 2026-01-01T00:00:00Z
    for i in 0..5 {
        let log_type = if i % 2 == 0 { LogType::Error } else { LogType::Success };
        api.store.append_log("g", &log(base + i * hour, log_type, &format!("entry {i}"))).await.unwrap();
    }
    let details = |reply: &Reply| -> Vec<String> {
        reply.json["value"].as_array().unwrap().iter().map(|e| e["details"].as_str().unwrap().to_string()).collect()
    };
    let mut seen = Vec::new();
    let mut next = Some("/v1/syncGroups/g/logs?pageSize=2".to_string());
    let mut pages = 0;
    while let Some(link) = next {
        let page = api.get(&link).await;
        assert_eq!(page.status, 200, "{}", page.text);
        seen.extend(details(&page));
        next = page.json["nextLink"].as_str().map(str::to_string);
        pages += 1;
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, ["entry 4", "entry 3", "entry 2", "entry 1", "entry 0"]);

    let errors = api.get("/v1/syncGroups/g/logs?type=Error").await;
    assert_eq!(details(&errors), ["entry 4", "entry 2", "entry 0"]);
    assert!(errors.json.get("nextLink").is_none());
    let first = &errors.json["value"][0];
    assert_eq!(first["type"], "Error");
    assert_eq!(first["timestamp"], "2026-01-01T04:00:00.000000Z");
    assert_eq!(first["operationStatus"], "Failed");
    let all = api.get("/v1/syncGroups/g/logs?type=All").await;
    assert_eq!(details(&all).len(), 5);
    let window = api.get("/v1/syncGroups/g/logs?startTime=2026-01-01T01:00:00Z&endTime=2026-01-01T03:00:00Z").await;
    assert_eq!(details(&window), ["entry 3", "entry 2", "entry 1"]);
    let filtered_pages = api.get("/v1/syncGroups/g/logs?type=Success&pageSize=1").await;
    let link = filtered_pages.json["nextLink"].as_str().unwrap();
    assert!(link.contains("type=Success") && link.contains("pageSize=1"), "{link}");
    assert_eq!(details(&api.get(link).await), ["entry 1"]);

    for (query, code) in [
        ("type=Fatal", "InvalidQueryParameter"),
        ("startTime=yesterday", "InvalidQueryParameter"),
        ("continuationToken=abc", "InvalidQueryParameter"),
        ("pageSize=0", "InvalidQueryParameter"),
        ("colour=red", "InvalidQueryParameter"),
    ] {
        let reply = api.get(&format!("/v1/syncGroups/g/logs?{query}")).await;
        assert_eq!((reply.status, reply.code()), (400, code), "{query}: {}", reply.text);
    }
    assert_eq!(api.get("/v1/syncGroups/nope/logs").await.code(), "SyncGroupNotFound");
}

#[tokio::test]
async fn conflicts_are_listed_with_both_images_when_conflict_logging_is_on() {
    let api = start().await;
    api.put("/v1/syncGroups/g", sqlite_group(&api.dir.path().join("hub.db"), json!({}))).await;
    let off = api.get("/v1/syncGroups/g/conflicts").await;
    assert_eq!((off.status, off.code()), (409, "ConflictLoggingDisabled"));
    api.patch("/v1/syncGroups/g", json!({"properties": {"enableConflictLogging": true}})).await;
    assert_eq!(api.get("/v1/syncGroups/g/conflicts").await.json, json!({"value": []}));
    let conflict = |id: i64| ConflictRecord {
        id: 0,
        timestamp: 1_767_225_600_000_000 + id,
        member: "m1".to_string(),
        conflict: Conflict {
            table: TableName::new("items"),
            key: vec![Cell::Integer(id)],
            hub_row: Some(vec![Cell::Integer(id), Cell::Text("hub".into()), Cell::Blob(vec![1, 2])]),
            member_row: None,
            hub_changed_at: 2,
            member_changed_at: 1,
            winner: Side::Hub,
            policy: ConflictPolicy::HubWin,
            reason: "the hub wins".to_string(),
        },
        columns: vec!["id".into(), "v".into(), "b".into()],
    };
    api.store.append_conflicts("g", &[conflict(1), conflict(2), conflict(3)]).await.unwrap();
    let page = api.get("/v1/syncGroups/g/conflicts?pageSize=2").await;
    let entries = page.json["value"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["key"], json!([3]));
    assert_eq!(entries[0]["hubRow"], json!({"id": 3, "v": "hub", "b": "AQI="}));
    assert_eq!(entries[0]["memberRow"], Value::Null);
    assert_eq!(entries[0]["winner"], "Hub");
    assert_eq!(entries[0]["policy"], "HubWin");
    let rest = api.get(page.json["nextLink"].as_str().unwrap()).await;
    assert_eq!(rest.json["value"][0]["key"], json!([1]));
    assert!(rest.json.get("nextLink").is_none());
}

#[tokio::test]
async fn a_failing_store_answers_a_generic_500_without_internals() {
    let api = start().await;
    assert_eq!(api.get("/v1/syncGroups").await.status, 200);
    api.store.close().await;
    let failed = api.get("/v1/syncGroups").await;
    assert_eq!((failed.status, failed.code()), (500, "InternalError"));
    let message = failed.json["error"]["message"].as_str().unwrap();
    assert!(message.contains("log") && !message.contains("meta.db") && !message.contains("sqlx"), "{message}");
}

//! An API server in process over a fresh SQLite metadata store, a client
//! that sends with or without a token, and the check every response goes
//! through: it must be declared in the OpenAPI document and its body must
//! match the declared schema. No response may contain a password.

#![allow(clippy::unwrap_used, dead_code)]

use std::path::Path;

use hubsync_server::api::{ApiState, router};
use hubsync_server::scheduler::Wake;
use hubsync_server::{MetaStore, SecretKey};
use reqwest::Method;
use serde_json::{Value, json};

/// Every password the tests write: none may come back in any response.
pub const PASSWORDS: [&str; 2] = ["hub-s3cret-pw", "member-s3cret-pw"];

/// A running API.
pub struct Api {
    pub base: String,
    pub http: reqwest::Client,
    /// A token that may change things.
    pub token: String,
    /// A read-only token.
    pub read_only: String,
    pub store: MetaStore,
    pub doc: Value,
    pub dir: tempfile::TempDir,
}

/// A request body.
pub enum Body<'a> {
    /// JSON, declared as such.
    Json(Value),
    /// Bytes with this content type (or none).
    Raw(Option<&'a str>, Vec<u8>),
}

/// A response, already checked against the document.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
    pub json: Value,
}

impl Reply {
    /// The error code of an error body.
    pub fn code(&self) -> &str {
        self.json["error"]["code"].as_str().unwrap_or_else(|| panic!("no error code in {}", self.text))
    }
}

/// Starts an API on a free port.
pub async fn start() -> Api {
    let dir = tempfile::tempdir().unwrap();
    let key = SecretKey::parse(&SecretKey::generate(), "test").unwrap();
    let url = format!("sqlite://{}", dir.path().join("meta.db").display());
    let store = MetaStore::open(&url, Some(key)).await.unwrap();
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder().handle();
    let state = ApiState { store: store.clone(), wake: Wake::default(), base_dir: dir.path().to_path_buf(), metrics };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router(state)).await.unwrap() });
    let token = store.create_token("admin", false).await.unwrap();
    let read_only = store.create_token("viewer", true).await.unwrap();
    let doc = serde_json::to_value(hubsync_server::api::openapi()).unwrap();
    Api { base: format!("http://{addr}"), http: reqwest::Client::new(), token, read_only, store, doc, dir }
}

impl Api {
    /// Sends a request with `token` (none: no `Authorization`), checks the
    /// response against the document, and returns it.
    pub async fn send(&self, method: Method, path: &str, token: Option<&str>, body: Option<Body<'_>>) -> Reply {
        let mut request = self.http.request(method.clone(), format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request = match body {
            Some(Body::Json(value)) => request.json(&value),
            Some(Body::Raw(content_type, bytes)) => {
                let request = match content_type {
                    Some(ct) => request.header(reqwest::header::CONTENT_TYPE, ct),
                    None => request,
                };
                request.body(bytes)
            }
            None => request,
        };
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        for password in PASSWORDS {
            assert!(!text.contains(password), "{method} {path} returned a password: {text}");
        }
        let content_type = headers.get(reqwest::header::CONTENT_TYPE).map(|v| v.to_str().unwrap().to_string());
        let json = conforms(&self.doc, &method, path, status, content_type.as_deref(), &text);
        Reply { status, headers, text, json }
    }

    /// Sends with the full token.
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        self.send(method, path, Some(&self.token), body.map(Body::Json)).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.call(Method::GET, path, None).await
    }

    pub async fn put(&self, path: &str, body: Value) -> Reply {
        self.call(Method::PUT, path, Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Reply {
        self.call(Method::PATCH, path, Some(body)).await
    }

    pub async fn post(&self, path: &str) -> Reply {
        self.call(Method::POST, path, None).await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.call(Method::DELETE, path, None).await
    }

    /// Follows a 202's `Location` until the operation ends; returns it.
    pub async fn wait_for_operation(&self, accepted: &Reply) -> Value {
        assert_eq!(accepted.status, 202, "{}", accepted.text);
        let location = accepted.headers.get(reqwest::header::LOCATION).unwrap().to_str().unwrap().to_string();
        assert_eq!(location, format!("/v1/operations/{}", accepted.json["id"].as_str().unwrap()));
        for _ in 0..600 {
            let reply = self.get(&location).await;
            assert_eq!(reply.status, 200, "{}", reply.text);
            if reply.json["status"] != "InProgress" {
                return reply.json;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("operation {location} did not end within 30 s");
    }
}

/// A SQLite hub group body with the hub's password.
pub fn sqlite_group(path: &Path, extra: Value) -> Value {
    let mut properties = json!({
        "interval": 60,
        "conflictResolutionPolicy": "HubWin",
        "hub": {"databaseType": "Sqlite", "databaseName": path.display().to_string(), "password": PASSWORDS[0]},
    });
    merge(&mut properties, extra);
    json!({ "properties": properties })
}

fn merge(into: &mut Value, from: Value) {
    if let (Some(into), Value::Object(from)) = (into.as_object_mut(), from) {
        for (k, v) in from {
            into.insert(k, v);
        }
    }
}

/// The operation the document declares for a request path, matching `{x}`
/// segments to anything; literal segments win over parameters.
fn operation<'d>(doc: &'d Value, method: &Method, path: &str) -> Option<&'d Value> {
    let path = path.split('?').next().unwrap();
    let segments: Vec<&str> = path.split('/').collect();
    let mut best: Option<(usize, &Value)> = None;
    for (template, item) in doc["paths"].as_object().unwrap() {
        let parts: Vec<&str> = template.split('/').collect();
        if parts.len() != segments.len() {
            continue;
        }
        let mut literal = 0;
        let matches = parts.iter().zip(&segments).all(|(t, s)| {
            if t.starts_with('{') {
                true
            } else {
                literal += 1;
                t == s
            }
        });
        if matches && best.is_none_or(|(l, _)| literal > l) {
            best = Some((literal, item));
        }
    }
    best.and_then(|(_, item)| item.get(method.as_str().to_ascii_lowercase()))
}

/// Checks a response against the document; returns its JSON body (`null`
/// when it has none).
pub fn conforms(
    doc: &Value,
    method: &Method,
    path: &str,
    status: u16,
    content_type: Option<&str>,
    text: &str,
) -> Value {
    let declared = match operation(doc, method, path) {
        Some(op) => op["responses"]
            .get(status.to_string())
            .or_else(|| op["responses"].get("default"))
            .unwrap_or_else(|| panic!("{method} {path} answered {status}, which the document does not declare: {text}"))
            .clone(),
        // No route: only the JSON 404 and 405 fallbacks may answer, or a 401 before them.
        None => {
            assert!(matches!(status, 401 | 404 | 405), "{method} {path}: undeclared route answered {status}");
            json!({"content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}})
        }
    };
    let Some(content) = declared.get("content").and_then(Value::as_object) else {
        assert!(text.is_empty(), "{method} {path} {status} declares no body but sent {text}");
        return Value::Null;
    };
    let content_type = content_type.unwrap_or_else(|| panic!("{method} {path} {status} has no content type"));
    if let Some(media) = content.get("application/json") {
        assert!(content_type.starts_with("application/json"), "{method} {path} {status}: {content_type}");
        let body: Value =
            serde_json::from_str(text).unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {text}"));
        let mut schema = media["schema"].clone();
        schema.as_object_mut().unwrap().insert("components".to_string(), doc["components"].clone());
        let validator = jsonschema::validator_for(&schema).unwrap();
        let errors: Vec<String> =
            validator.iter_errors(&body).map(|e| format!("{e} at {}", e.instance_path())).collect();
        assert!(errors.is_empty(), "{method} {path} {status} breaks its schema: {errors:?}\n{text}");
        return body;
    }
    assert!(
        content.contains_key("text/plain") && content_type.starts_with("text/plain"),
        "{method} {path}: {content_type}"
    );
    Value::Null
}

//! The commands that manage a running `hubsync serve` over its REST API:
//! `group`, `member`, `sync trigger|cancel`, `logs`.
//!
//! Responses are read as JSON values rather than into the server's typed
//! resources: those refuse unknown fields (right for requests), and a client
//! must keep working against a server that has grown a property. Requests are
//! built from the typed resources (`hubsync_server::model`), so their field
//! names cannot drift from the server's.

pub mod groups;
pub mod logs;
pub mod members;
pub mod output;
pub mod sync;

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use url::Url;

use self::output::OutputFormat;

/// Where the server is when neither `--server` nor `HUBSYNC_SERVER` says.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:7400";

/// How often `--wait` asks the server how things stand.
const POLL_EVERY: Duration = Duration::from_millis(500);

/// The options every API client command takes.
#[derive(Debug, Clone, clap::Args)]
pub struct ApiArgs {
    /// The hubsync server's URL.
    #[arg(long, env = "HUBSYNC_SERVER", value_name = "URL", default_value = DEFAULT_SERVER, global = true)]
    pub server: String,
    /// The API token (`hubsync token create` makes one).
    #[arg(long, env = "HUBSYNC_TOKEN", value_name = "TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// A PEM CA certificate to trust for an https:// server whose
    /// certificate no public CA signed (a self-signed `--tls-cert`).
    #[arg(long, env = "HUBSYNC_CA_CERT", value_name = "FILE", global = true)]
    pub ca_cert: Option<std::path::PathBuf>,
    /// How to print results: aligned tables for people, or the API's JSON.
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = OutputFormat::Table, global = true)]
    pub output: OutputFormat,
}

/// An error the API answered with (`{"error": {"code", "message"}}`),
/// shown as `<message> (<code>)`, plus a line on what to do when the client
/// knows better than the server (a token that was never given).
#[derive(Debug, thiserror::Error)]
#[error("{message} ({code}){}", hint.map(|h| format!("\nhint: {h}")).unwrap_or_default())]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The stable code (`SyncGroupNotFound`, ...).
    pub code: String,
    /// What went wrong and what to do, as the server says it.
    pub message: String,
    /// What to do, from the client's side.
    pub hint: Option<&'static str>,
}

/// A successful answer.
#[derive(Debug)]
pub struct Answer {
    /// The HTTP status (`200`, `201`, `202`, `204`).
    pub status: StatusCode,
    /// The `Location` header, for `202 Accepted` long operations.
    pub location: Option<String>,
    /// The body; `Null` when there was none.
    pub body: Value,
}

/// A connection to one hubsync server.
#[derive(Debug)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
    token: Option<String>,
}

impl Client {
    /// A client for the server `--server` names.
    pub fn new(args: &ApiArgs) -> anyhow::Result<Client> {
        // `--server host:port` is what people type; http is then meant.
        let written = if args.server.contains("://") { args.server.clone() } else { format!("http://{}", args.server) };
        let mut base = Url::parse(&written).with_context(|| {
            format!("--server `{}` is not a URL; write it like {DEFAULT_SERVER} (or https://host:port)", args.server)
        })?;
        if !matches!(base.scheme(), "http" | "https") {
            bail!("--server `{}` is not an http:// or https:// URL; write it like {DEFAULT_SERVER}", args.server);
        }
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let mut http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(120))
            .user_agent(concat!("hubsync-cli/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &args.ca_cert {
            let pem = std::fs::read(path)
                .with_context(|| format!("cannot read the CA certificate {} (--ca-cert)", path.display()))?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .with_context(|| format!("{} is not a PEM certificate (--ca-cert)", path.display()))?;
            http = http.add_root_certificate(cert);
        }
        let http = http.build().context("cannot set up the HTTP client")?;
        let token = args.token.clone().filter(|t| !t.trim().is_empty());
        Ok(Client { http, base, token })
    }

    /// The server's URL as given, for messages.
    pub fn server(&self) -> &str {
        self.base.as_str().trim_end_matches('/')
    }

    /// The URL of `/v1/<segments...>`, each segment escaped.
    pub fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().push("v1").extend(segments);
        }
        url
    }

    /// `GET /v1/<segments>`.
    pub async fn get(&self, segments: &[&str]) -> anyhow::Result<Value> {
        Ok(self.send(Method::GET, self.url(segments), None).await?.body)
    }

    /// `PUT /v1/<segments>` with a JSON body.
    pub async fn put(&self, segments: &[&str], body: &Value) -> anyhow::Result<Answer> {
        self.send(Method::PUT, self.url(segments), Some(body)).await
    }

    /// `POST /v1/<segments>` without a body.
    pub async fn post(&self, segments: &[&str]) -> anyhow::Result<Answer> {
        self.send(Method::POST, self.url(segments), None).await
    }

    /// Sends one request; an error answer becomes an [`ApiError`], an
    /// unreachable server a message saying what to do.
    pub async fn send(&self, method: Method, url: Url, body: Option<&Value>) -> anyhow::Result<Answer> {
        let mut request = self.http.request(method.clone(), url.clone());
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| self.unreachable(&e))?;
        let status = response.status();
        let location =
            response.headers().get(reqwest::header::LOCATION).and_then(|v| v.to_str().ok()).map(String::from);
        let text = response.text().await.with_context(|| format!("reading the answer to {method} {url}"))?;
        if !status.is_success() {
            return Err(self.refused(status, &text));
        }
        let body = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).with_context(|| {
                format!("the server's answer to {method} {url} is not JSON (is {} a hubsync server?)", self.server())
            })?
        };
        Ok(Answer { status, location, body })
    }

    fn unreachable(&self, e: &reqwest::Error) -> anyhow::Error {
        if e.is_connect() {
            anyhow::anyhow!(
                "cannot connect to the hubsync server at {}: {}. Is it running? Start it with `hubsync serve`, or point --server (or HUBSYNC_SERVER) at the server's address",
                self.server(),
                root_cause(e)
            )
        } else if e.is_timeout() {
            anyhow::anyhow!("the hubsync server at {} did not answer in time; check that it is healthy", self.server())
        } else {
            anyhow::anyhow!("the request to the hubsync server at {} failed: {}", self.server(), root_cause(e))
        }
    }

    fn refused(&self, status: StatusCode, text: &str) -> anyhow::Error {
        let parsed: Option<(String, String)> = serde_json::from_str::<Value>(text).ok().and_then(|v| {
            let e = v.get("error")?;
            Some((e.get("code")?.as_str()?.to_string(), e.get("message")?.as_str()?.to_string()))
        });
        let (code, message) = match parsed {
            Some(parsed) => parsed,
            None => (
                format!("Http{}", status.as_u16()),
                format!(
                    "the server at {} answered {status}{}",
                    self.server(),
                    if text.trim().is_empty() { String::new() } else { format!(": {}", snippet(text)) }
                ),
            ),
        };
        let hint = match (status, &self.token) {
            (StatusCode::UNAUTHORIZED, None) => {
                Some("pass --token or set HUBSYNC_TOKEN; `hubsync token create --name NAME` on the server makes one")
            }
            (StatusCode::UNAUTHORIZED, Some(_)) => {
                Some("check the token (--token or HUBSYNC_TOKEN); `hubsync token list` on the server shows the tokens")
            }
            (StatusCode::FORBIDDEN, _) => {
                Some("this needs a read-write token (`hubsync token create` without --read-only)")
            }
            _ => None,
        };
        anyhow::Error::new(ApiError { status, code, message, hint })
    }

    /// Waits for a long operation (`202 Accepted` with a `Location`) to end;
    /// fails when it failed or did not end within `timeout`.
    pub async fn wait_operation(&self, location: &str, timeout: Duration) -> anyhow::Result<Value> {
        let url = self.base.join(location).with_context(|| format!("the server gave a bad Location `{location}`"))?;
        let started = Instant::now();
        loop {
            let op = self.send(Method::GET, url.clone(), None).await?.body;
            match op.get("status").and_then(Value::as_str) {
                Some("InProgress") | None => {}
                Some("Failed") => {
                    let e = op.get("error");
                    let text = |k: &str| e.and_then(|e| e.get(k)).and_then(Value::as_str).unwrap_or("").to_string();
                    let (code, message) = (text("code"), text("message"));
                    bail!("{}", ApiError { status: StatusCode::OK, code, message, hint: None });
                }
                Some(_) => return Ok(op),
            }
            if started.elapsed() > timeout {
                bail!(
                    "the operation at {url} did not finish within {}; it goes on on the server",
                    humantime::format_duration(timeout)
                );
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }
}

/// The innermost cause of a reqwest error (`connection refused`), which says
/// more than reqwest's own "error sending request".
fn root_cause(e: &reqwest::Error) -> String {
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

fn snippet(text: &str) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() > 200 {
        format!("{}…", one_line.chars().take(200).collect::<String>())
    } else {
        one_line
    }
}

/// A string property at a `/`-separated path of a JSON value, or `""`.
pub fn text<'v>(v: &'v Value, path: &str) -> &'v str {
    lookup(v, path).and_then(Value::as_str).unwrap_or("")
}

/// The value at a `/`-separated path of a JSON value.
pub fn lookup<'v>(v: &'v Value, path: &str) -> Option<&'v Value> {
    path.split('/').try_fold(v, |v, key| v.get(key))
}

/// The `value` array of a list answer.
pub fn items(v: &Value) -> &[Value] {
    v.get("value").and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

/// Reads a password from the environment variable `--password-env` names.
pub fn password_from_env(var: &str) -> anyhow::Result<String> {
    std::env::var(var).with_context(|| {
        format!("the environment variable `{var}` (named by --password-env) is not set; export {var}=... first")
    })
}

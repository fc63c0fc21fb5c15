//! Portal sessions: a random id in an `HttpOnly`, `SameSite=Strict` cookie,
//! mapped in this process's memory to the API token that signed in.
//!
//! The cookie carries nothing but 32 random bytes, so a stolen cookie jar
//! holds no token, and signing out (or a restart) ends the session for good.
//! The token itself stays in memory so that every request re-checks it with
//! the store: a token that is no longer valid ends its sessions at once.
//! The price is that a session is known to one server process only; behind a
//! load balancer of several `hubsync serve` processes, sessions need sticky
//! routing (or a sign-in per process).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore as _;

use super::PortalState;
use super::create::Draft;
use super::pages::error_page;

/// The session cookie's name.
pub const COOKIE_NAME: &str = "hubsync_session";

/// The path the cookie is sent for: the portal only, never the API.
const COOKIE_PATH: &str = "/portal";

/// A session unused for this long is forgotten.
const IDLE_TIMEOUT: Duration = Duration::from_secs(8 * 3600);

/// Drafts of new groups one session may hold at once; the oldest goes first.
const MAX_DRAFTS: usize = 8;

/// One signed-in browser.
#[derive(Debug)]
struct Entry {
    /// The API token, kept to re-check it on every request.
    secret: String,
    /// The token's name, shown in the page header.
    name: String,
    /// Whether the token may only read.
    read_only: bool,
    /// When the session was last used.
    last_seen: Instant,
    /// Groups being created (the wizard's state, passwords included: they
    /// are kept here, never in a page).
    drafts: Vec<(String, Draft)>,
}

/// Every session of this process. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Sessions(Arc<Mutex<HashMap<String, Entry>>>);

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        // A panic while holding the lock leaves plain data behind; keep going.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts a session for a verified token; returns its id.
    pub fn create(&self, secret: &str, name: &str, read_only: bool) -> String {
        let id = random_id();
        let mut map = self.lock();
        let now = Instant::now();
        map.retain(|_, e| now.duration_since(e.last_seen) < IDLE_TIMEOUT);
        map.insert(
            id.clone(),
            Entry { secret: secret.to_string(), name: name.to_string(), read_only, last_seen: now, drafts: Vec::new() },
        );
        id
    }

    /// Ends a session.
    pub fn remove(&self, id: &str) {
        self.lock().remove(id);
    }

    /// The token of a live session (touching it), or `None`.
    fn secret(&self, id: &str) -> Option<String> {
        let mut map = self.lock();
        let entry = map.get_mut(id)?;
        if entry.last_seen.elapsed() >= IDLE_TIMEOUT {
            map.remove(id);
            return None;
        }
        entry.last_seen = Instant::now();
        Some(entry.secret.clone())
    }

    fn describe(&self, id: &str) -> Option<(String, bool)> {
        self.lock().get(id).map(|e| (e.name.clone(), e.read_only))
    }

    /// Stores a new draft; returns its id.
    pub fn add_draft(&self, id: &str, draft: Draft) -> Option<String> {
        let mut map = self.lock();
        let entry = map.get_mut(id)?;
        if entry.drafts.len() >= MAX_DRAFTS {
            entry.drafts.remove(0);
        }
        let draft_id = random_id();
        entry.drafts.push((draft_id.clone(), draft));
        Some(draft_id)
    }

    /// A copy of a draft (the lock is not held across awaits).
    pub fn draft(&self, id: &str, draft_id: &str) -> Option<Draft> {
        let map = self.lock();
        map.get(id)?.drafts.iter().find(|(d, _)| d == draft_id).map(|(_, draft)| draft.clone())
    }

    /// Replaces a draft.
    pub fn put_draft(&self, id: &str, draft_id: &str, draft: Draft) {
        let mut map = self.lock();
        if let Some(slot) =
            map.get_mut(id).and_then(|e| e.drafts.iter_mut().find(|(d, _)| d == draft_id).map(|(_, d)| d))
        {
            *slot = draft;
        }
    }

    /// Forgets a draft (the group was created).
    pub fn remove_draft(&self, id: &str, draft_id: &str) {
        if let Some(entry) = self.lock().get_mut(id) {
            entry.drafts.retain(|(d, _)| d != draft_id);
        }
    }
}

/// 32 random bytes, URL-safe.
fn random_id() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The `Set-Cookie` value that starts a session. `Secure` when the browser
/// reached us over HTTPS: the sign-in is a form POST, which browsers send
/// with an `Origin` header, and a TLS-terminating proxy says so in
/// `X-Forwarded-Proto`.
pub fn session_cookie(id: &str, headers: &HeaderMap) -> HeaderValue {
    let https = header_str(headers, header::ORIGIN).is_some_and(|o| o.starts_with("https://"))
        || header_str(headers, "x-forwarded-proto").is_some_and(|p| p.eq_ignore_ascii_case("https"));
    let secure = if https { "; Secure" } else { "" };
    cookie_value(&format!("{COOKIE_NAME}={id}; Path={COOKIE_PATH}; HttpOnly; SameSite=Strict{secure}"))
}

/// The `Set-Cookie` value that ends a session.
pub fn clearing_cookie() -> HeaderValue {
    cookie_value(&format!("{COOKIE_NAME}=; Path={COOKIE_PATH}; HttpOnly; SameSite=Strict; Max-Age=0"))
}

fn cookie_value(text: &str) -> HeaderValue {
    // The text is ASCII built from base64url ids; the fallback is never taken.
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("hubsync_session=; Max-Age=0"))
}

fn header_str(headers: &HeaderMap, name: impl header::AsHeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The session id the request's cookie names, if any.
pub fn session_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, value)| *name == COOKIE_NAME && !value.is_empty())
        .map(|(_, value)| value.to_string())
}

/// Who is looking at a page: a signed-in session whose token is still valid.
/// Handlers that take a `Viewer` are only reached when signed in; everyone
/// else is sent to the sign-in page.
#[derive(Debug, Clone)]
pub struct Viewer {
    /// The session id.
    pub session: String,
    /// The token's name.
    pub name: String,
    /// Whether the token may only read.
    pub read_only: bool,
}

impl Viewer {
    /// Refuses a change (403 page) to a read-only session.
    pub fn require_write(&self) -> Result<(), Response> {
        if self.read_only {
            Err(error_page(
                axum::http::StatusCode::FORBIDDEN,
                Some(self),
                "Read-only access",
                "You signed in with a read-only token, which can look at everything but change nothing. Sign in with a token created without --read-only to make changes.",
            ))
        } else {
            Ok(())
        }
    }
}

impl FromRequestParts<PortalState> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &PortalState) -> Result<Viewer, Response> {
        let to_sign_in = || Redirect::to("/portal/signin").into_response();
        let Some(id) = session_id(&parts.headers) else { return Err(to_sign_in()) };
        let Some(secret) = state.sessions.secret(&id) else { return Err(to_sign_in()) };
        match state.api.store.verify_token(&secret).await {
            Ok(Some(_)) => {}
            Ok(None) => {
                state.sessions.remove(&id);
                return Err(to_sign_in());
            }
            Err(e) => {
                return Err(error_page(
                    axum::http::StatusCode::SERVICE_UNAVAILABLE,
                    None,
                    "The metadata store cannot be read",
                    &e.to_string(),
                ));
            }
        }
        let Some((name, read_only)) = state.sessions.describe(&id) else { return Err(to_sign_in()) };
        Ok(Viewer { session: id, name, read_only })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_session_id_is_read_from_among_other_cookies() {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_static("a=1; hubsync_session=abc; b=2"));
        assert_eq!(session_id(&headers).as_deref(), Some("abc"));
        headers.insert(header::COOKIE, HeaderValue::from_static("hubsync_session="));
        assert_eq!(session_id(&headers), None);
    }

    #[test]
    fn the_cookie_is_secure_only_over_https() {
        let mut headers = HeaderMap::new();
        let plain = session_cookie("x", &headers);
        assert!(plain.to_str().unwrap().contains("HttpOnly; SameSite=Strict"));
        assert!(!plain.to_str().unwrap().contains("Secure"));
        headers.insert(header::ORIGIN, HeaderValue::from_static("https://sync.example"));
        assert!(session_cookie("x", &headers).to_str().unwrap().ends_with("; Secure"));
    }

    #[test]
    fn session_ids_are_random_and_unguessable_in_length() {
        let (a, b) = (random_id(), random_id());
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
    }
}

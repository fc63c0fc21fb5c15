//! Bearer-token authentication for every route but `/healthz`, and the
//! read-only rule: a read-only token may only `GET`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::App;
use super::error::{ApiError, code};
use crate::store::{MetaStore, StoreError, TokenInfo};

/// How long a verified token is trusted without asking the store again: a
/// deleted token stops working within this time.
const CACHE_TTL: Duration = Duration::from_secs(5);

/// More cached tokens than this and the cache is emptied (a client trying
/// random tokens must not grow it; misses are never cached anyway).
const CACHE_MAX: usize = 1024;

/// Verified tokens by the SHA-256 of their secret, with when they were verified.
#[derive(Debug, Default)]
pub(crate) struct TokenCache(Mutex<HashMap<[u8; 32], (TokenInfo, Instant)>>);

impl TokenCache {
    /// The token a secret belongs to, from the cache or the store.
    async fn verify(&self, store: &MetaStore, secret: &str) -> Result<Option<TokenInfo>, StoreError> {
        let key: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
        if let Some(info) = self.cached(&key) {
            return Ok(Some(info));
        }
        let info = store.verify_token(secret).await?;
        if let Some(info) = &info {
            let mut cache = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
            cache.insert(key, (info.clone(), Instant::now()));
        }
        Ok(info)
    }

    fn cached(&self, key: &[u8; 32]) -> Option<TokenInfo> {
        let cache = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        cache.get(key).filter(|(_, at)| at.elapsed() < CACHE_TTL).map(|(info, _)| info.clone())
    }
}

/// The middleware: refuses requests without a valid token (401) and changes
/// made with a read-only token (403).
pub(crate) async fn require_token(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    match check(&app, request.headers(), request.method()).await {
        Ok(()) => next.run(request).await,
        Err(error) => error.into_response(),
    }
}

async fn check(app: &App, headers: &HeaderMap, method: &Method) -> Result<(), ApiError> {
    let secret = bearer(headers).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            code::UNAUTHORIZED,
            "this endpoint needs a token: send `Authorization: Bearer <token>` (create one with `hubsync token create`)",
        )
    })?;
    let info = app.tokens.verify(&app.api.store, secret).await?.ok_or_else(|| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            code::INVALID_TOKEN,
            "the bearer token is not valid; create a token with `hubsync token create`",
        )
    })?;
    if info.read_only && !matches!(*method, Method::GET | Method::HEAD) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            code::READ_ONLY_TOKEN,
            format!("token `{}` is read-only; use a token created without --read-only to make changes", info.name),
        ));
    }
    Ok(())
}

/// The secret of an `Authorization: Bearer <secret>` header (the scheme in
/// any case, as RFC 9110 allows).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, secret) = value.trim().split_once(' ')?;
    let secret = secret.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !secret.is_empty()).then_some(secret)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, value.parse().unwrap());
        h
    }

    #[test]
    fn bearer_tokens_are_read_in_any_case_and_other_schemes_are_not() {
        assert_eq!(bearer(&headers("Bearer hs_abc")), Some("hs_abc"));
        assert_eq!(bearer(&headers("bearer  hs_abc ")), Some("hs_abc"));
        assert_eq!(bearer(&headers("Basic dXNlcjpwdw==")), None);
        assert_eq!(bearer(&headers("Bearer ")), None);
        assert_eq!(bearer(&HeaderMap::new()), None);
    }
}

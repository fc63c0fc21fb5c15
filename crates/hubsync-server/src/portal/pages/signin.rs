//! Signing in with an API token, and signing out.

use askama::Template;
use axum::Form;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::{Layout, render};
use crate::portal::PortalState;
use crate::portal::session::{clearing_cookie, session_cookie, session_id};

#[derive(Template)]
#[template(path = "signin.html")]
struct SignIn {
    layout: Layout,
    error: Option<String>,
}

fn page(status: StatusCode, error: Option<String>) -> Response {
    render(status, &SignIn { layout: Layout::new("Sign in", None), error })
}

/// The sign-in form.
pub async fn form() -> Response {
    page(StatusCode::OK, None)
}

/// What the sign-in form sends.
#[derive(Debug, Deserialize)]
pub struct SignInForm {
    token: String,
}

/// Checks the token; a good one starts a session and goes to the groups.
pub async fn submit(State(state): State<PortalState>, headers: HeaderMap, Form(form): Form<SignInForm>) -> Response {
    let token = form.token.trim();
    if token.is_empty() {
        return page(StatusCode::UNPROCESSABLE_ENTITY, Some("Paste an API token to sign in.".into()));
    }
    match state.api.store.verify_token(token).await {
        Ok(Some(info)) => {
            let id = state.sessions.create(token, &info.name, info.read_only);
            tracing::info!(token = %info.name, read_only = info.read_only, "Signed in to the portal.");
            ([(header::SET_COOKIE, session_cookie(&id, &headers))], Redirect::to("/portal/groups")).into_response()
        }
        Ok(None) => page(
            StatusCode::UNAUTHORIZED,
            Some(
                "This token is not valid: it was mistyped, or it is not a token of this server. Check it, or create one with `hubsync token create --name NAME`."
                    .into(),
            ),
        ),
        Err(e) => page(StatusCode::SERVICE_UNAVAILABLE, Some(format!("The token cannot be checked: {e}"))),
    }
}

/// Ends the session.
pub async fn sign_out(State(state): State<PortalState>, headers: HeaderMap) -> Response {
    if let Some(id) = session_id(&headers) {
        state.sessions.remove(&id);
    }
    ([(header::SET_COOKIE, clearing_cookie())], Redirect::to("/portal/signin")).into_response()
}

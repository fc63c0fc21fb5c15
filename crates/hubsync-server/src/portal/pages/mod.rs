//! The portal's pages, one module per area, and what they share: the page
//! frame ([`Layout`]), rendering, and error pages.

pub mod groups;
pub mod logs;
pub mod manage;
pub mod signin;

use askama::Template;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

use super::PortalState;
use super::session::Viewer;
use crate::store::{StoreError, StoredGroup};

/// What the page frame shows around every page.
#[derive(Debug, Clone, Default)]
pub struct Layout {
    /// The page's title.
    pub title: String,
    /// The signed-in token's name; `None` on the sign-in page.
    pub user: Option<String>,
    /// Whether the session may only read (forms that change things are hidden).
    pub read_only: bool,
}

impl Layout {
    /// The frame for a signed-in viewer.
    pub fn new(title: impl Into<String>, viewer: Option<&Viewer>) -> Layout {
        Layout {
            title: title.into(),
            user: viewer.map(|v| v.name.clone()),
            read_only: viewer.is_none_or(|v| v.read_only),
        }
    }
}

/// A page rendered to a response; a template that fails to render (it
/// cannot, short of a bug) becomes a plain 500.
pub fn render<T: Template>(status: StatusCode, page: &T) -> Response {
    match page.render() {
        Ok(html) => (status, [(header::CACHE_CONTROL, "no-store")], Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "A portal page failed to render.");
            (StatusCode::INTERNAL_SERVER_ERROR, "The page could not be rendered; see the server's log.").into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    layout: Layout,
    heading: &'a str,
    message: &'a str,
}

/// An error page with a heading and a message saying what to do.
pub fn error_page(status: StatusCode, viewer: Option<&Viewer>, heading: &str, message: &str) -> Response {
    render(status, &ErrorPage { layout: Layout::new(heading, viewer), heading, message })
}

/// The page for a store that failed.
pub fn store_failed(viewer: &Viewer, error: &StoreError) -> Response {
    error_page(StatusCode::SERVICE_UNAVAILABLE, Some(viewer), "The metadata store failed", &error.to_string())
}

/// The stored group, or the page saying it does not exist or cannot be read.
pub async fn find_group(state: &PortalState, viewer: &Viewer, name: &str) -> Result<StoredGroup, Response> {
    match state.api.store.get_group(name).await {
        Ok(Some(group)) => Ok(group),
        Ok(None) => Err(no_such_group(viewer, name)),
        Err(e) => Err(store_failed(viewer, &e)),
    }
}

/// The page for a group that does not exist.
pub fn no_such_group(viewer: &Viewer, group: &str) -> Response {
    error_page(
        StatusCode::NOT_FOUND,
        Some(viewer),
        "No such sync group",
        &format!("There is no sync group named `{group}`; it may have been deleted. Go back to the list of groups."),
    )
}

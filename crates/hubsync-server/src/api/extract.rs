//! Extractors that refuse bad requests with the API's JSON errors instead of
//! axum's plain-text rejections.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::error::{ApiError, code};

/// The largest request body accepted.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// A JSON request body.
#[derive(Debug, Clone)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(json_error(&rejection)),
        }
    }
}

/// Maps axum's JSON rejection onto the API's codes.
fn json_error(rejection: &JsonRejection) -> ApiError {
    // axum's texts start with a generic sentence; the part after it says
    // where in the body the problem is (`properties.interval: invalid type`).
    let text = rejection.body_text();
    let mut detail = text.split_once(": ").map_or(text.as_str(), |(_, rest)| rest).to_string();
    // serde quotes the offending value; a password must never be echoed.
    if let Some((path, _)) = detail.split_once(": ").filter(|(path, _)| path.ends_with("password")) {
        detail = format!("{path}: must be a string");
    }
    match rejection {
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            code::UNSUPPORTED_MEDIA_TYPE,
            "the request body must be JSON: send the header `Content-Type: application/json`",
        ),
        JsonRejection::JsonSyntaxError(_) => {
            ApiError::bad_request(code::MALFORMED_JSON, format!("the request body is not valid JSON: {detail}"))
        }
        JsonRejection::JsonDataError(_) if detail.contains("unknown field") => ApiError::bad_request(
            code::UNKNOWN_PROPERTY,
            format!("the request body has a property this resource does not have: {detail}"),
        ),
        JsonRejection::JsonDataError(_) if detail.contains("missing field") => ApiError::bad_request(
            code::MISSING_PROPERTY,
            format!("the request body lacks a required property: {detail}"),
        ),
        JsonRejection::JsonDataError(_) => {
            ApiError::bad_request(code::INVALID_REQUEST_BODY, format!("the request body is not acceptable: {detail}"))
        }
        JsonRejection::BytesRejection(_) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            code::PAYLOAD_TOO_LARGE,
            format!("the request body is larger than the limit of {MAX_BODY_BYTES} bytes"),
        ),
        _ => ApiError::bad_request(code::INVALID_REQUEST_BODY, format!("the request body cannot be read: {detail}")),
    }
}

/// Path parameters.
#[derive(Debug, Clone)]
pub struct ApiPath<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(ApiPath(value)),
            Err(rejection) => Err(path_error(&rejection)),
        }
    }
}

fn path_error(rejection: &PathRejection) -> ApiError {
    ApiError::bad_request(code::INVALID_PATH, format!("the URL path cannot be read: {}", rejection.body_text()))
}

/// Query parameters. Unknown parameters are refused where the target type
/// says `deny_unknown_fields`.
#[derive(Debug, Clone)]
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(ApiQuery(value)),
            Err(rejection) => Err(query_error(&rejection)),
        }
    }
}

fn query_error(rejection: &QueryRejection) -> ApiError {
    let text = rejection.body_text();
    let detail = text.split_once(": ").map_or(text.as_str(), |(_, rest)| rest);
    ApiError::bad_request(code::INVALID_QUERY_PARAMETER, format!("the query string is not acceptable: {detail}"))
}

//! The API's one error type: a status, a stable code and a message, sent as
//! `{"error": {"code": "...", "message": "..."}}`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::model::{ErrorDetail, ErrorResponse};
use crate::store::StoreError;

/// Stable error codes. Clients match on these, so they never change meaning.
pub mod code {
    /// No bearer token was sent, or not in the `Bearer` scheme.
    pub const UNAUTHORIZED: &str = "Unauthorized";
    /// The bearer token is unknown.
    pub const INVALID_TOKEN: &str = "InvalidToken";
    /// A read-only token was used for a change.
    pub const READ_ONLY_TOKEN: &str = "ReadOnlyToken";
    /// The sync group does not exist.
    pub const SYNC_GROUP_NOT_FOUND: &str = "SyncGroupNotFound";
    /// The sync member does not exist.
    pub const SYNC_MEMBER_NOT_FOUND: &str = "SyncMemberNotFound";
    /// The long operation does not exist.
    pub const OPERATION_NOT_FOUND: &str = "OperationNotFound";
    /// No such route.
    pub const NOT_FOUND: &str = "NotFound";
    /// The route exists but not with this method.
    pub const METHOD_NOT_ALLOWED: &str = "MethodNotAllowed";
    /// The group name breaks the naming rules.
    pub const INVALID_SYNC_GROUP_NAME: &str = "InvalidSyncGroupName";
    /// The member name breaks the naming rules.
    pub const INVALID_SYNC_MEMBER_NAME: &str = "InvalidSyncMemberName";
    /// The interval is out of range.
    pub const INVALID_SYNC_GROUP_INTERVAL: &str = "InvalidSyncGroupInterval";
    /// The conflict logging retention is out of range.
    pub const INVALID_RETENTION: &str = "InvalidConflictLoggingRetentionInDays";
    /// `batchRows` is out of range.
    pub const INVALID_BATCH_ROWS: &str = "InvalidBatchRows";
    /// A table name cannot be read.
    pub const INVALID_TABLE_NAME: &str = "InvalidTableName";
    /// A column name cannot be read.
    pub const INVALID_COLUMN_NAME: &str = "InvalidColumnName";
    /// A table is selected twice.
    pub const DUPLICATE_TABLE: &str = "DuplicateTable";
    /// A selected table is not in the hub's refreshed schema.
    pub const TABLE_NOT_FOUND: &str = "TableNotFound";
    /// A selected column is not in the hub's refreshed schema.
    pub const COLUMN_NOT_FOUND: &str = "ColumnNotFound";
    /// A selected table has no primary key.
    pub const TABLE_HAS_NO_PRIMARY_KEY: &str = "TableHasNoPrimaryKey";
    /// A required property is missing.
    pub const MISSING_PROPERTY: &str = "MissingProperty";
    /// The body is not JSON.
    pub const MALFORMED_JSON: &str = "MalformedJson";
    /// The body has a property the resource does not know.
    pub const UNKNOWN_PROPERTY: &str = "UnknownProperty";
    /// The body is JSON of the wrong shape (a wrong type, an unknown enum value).
    pub const INVALID_REQUEST_BODY: &str = "InvalidRequestBody";
    /// The body is over the size limit.
    pub const PAYLOAD_TOO_LARGE: &str = "PayloadTooLarge";
    /// The body is not declared as JSON.
    pub const UNSUPPORTED_MEDIA_TYPE: &str = "UnsupportedMediaType";
    /// A query parameter is unknown or malformed.
    pub const INVALID_QUERY_PARAMETER: &str = "InvalidQueryParameter";
    /// A path segment cannot be read.
    pub const INVALID_PATH: &str = "InvalidPath";
    /// The group has no tables, so it cannot sync.
    pub const SYNC_GROUP_NOT_READY: &str = "SyncGroupNotReady";
    /// The group does not log conflicts.
    pub const CONFLICT_LOGGING_DISABLED: &str = "ConflictLoggingDisabled";
    /// A password must be stored, but the server has no secret key.
    pub const SECRET_KEY_MISSING: &str = "SecretKeyMissing";
    /// Something failed inside the server; details are in its log.
    pub const INTERNAL_ERROR: &str = "InternalError";
    /// A long operation failed to read a database's schema.
    pub const SCHEMA_REFRESH_FAILED: &str = "SchemaRefreshFailed";
    /// A long operation failed to deprovision a member.
    pub const DEPROVISION_FAILED: &str = "DeprovisionFailed";
}

/// An error answered to an API client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The stable code (see [`code`]).
    pub code: &'static str,
    /// What went wrong and what to do, for people.
    pub message: String,
}

impl ApiError {
    /// An error with this status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into() }
    }

    /// A 400 Bad Request.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// A 422 Unprocessable Entity: well-formed, but not acceptable as it is.
    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    /// A 404 for a group.
    pub fn group_not_found(group: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            code::SYNC_GROUP_NOT_FOUND,
            format!("sync group `{group}` does not exist; list the groups with GET /v1/syncGroups"),
        )
    }

    /// A 404 for a member.
    pub fn member_not_found(group: &str, member: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            code::SYNC_MEMBER_NOT_FOUND,
            format!(
                "sync member `{member}` does not exist in sync group `{group}`; list them with \
                 GET /v1/syncGroups/{group}/syncMembers"
            ),
        )
    }

    /// A 500 whose cause is logged, not sent: internals stay in the server.
    pub fn internal(detail: &str) -> ApiError {
        tracing::error!(detail, "An API request failed inside the server.");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            code::INTERNAL_ERROR,
            "the server failed to handle the request; its log says why",
        )
    }

    /// The body of this error.
    pub fn detail(&self) -> ErrorDetail {
        ErrorDetail { code: self.code.to_string(), message: self.message.clone() }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.code, self.message)
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> ApiError {
        match error {
            // Not an internal detail: the operator must configure a key.
            StoreError::SecretKeyMissing => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, code::SECRET_KEY_MISSING, error.to_string())
            }
            other => ApiError::internal(&other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status;
        let body = ErrorResponse { error: self.detail() };
        let mut response = (status, axum::Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"hubsync\""));
        }
        response
    }
}

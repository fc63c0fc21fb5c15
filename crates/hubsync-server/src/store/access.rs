//! API tokens (only their hashes) and long operations.

use sqlx::any::AnyRow;

use super::groups::get;
use super::time::rfc3339;
use super::{MetaStore, StoreError, TokenInfo, enum_from_text, enum_text, from_json, query_error, to_json};
use crate::model::{ErrorDetail, Operation, OperationStatus};
use crate::secrets::{new_token, token_hash};

const TOKEN_COLUMNS: &str = "select id, name, read_only, created_at from hubsync_tokens";

impl MetaStore {
    /// Creates an API token and returns it in clear (the only time it is
    /// seen: only its SHA-256 is stored). The name must not be empty.
    pub async fn create_token(&self, name: &str, read_only: bool) -> Result<String, StoreError> {
        if name.trim().is_empty() {
            return Err(StoreError::Invalid("a token needs a name (--name) saying who or what uses it".into()));
        }
        let secret = new_token();
        sqlx::query("insert into hubsync_tokens (name, secret_hash, read_only, created_at) values ($1, $2, $3, $4)")
            .bind(name)
            .bind(token_hash(&secret))
            .bind(i64::from(read_only))
            .bind(hubsync_core::now_micros())
            .execute(&self.pool)
            .await
            .map_err(query_error("creating an API token"))?;
        Ok(secret)
    }

    /// The token a bearer secret belongs to, if any.
    pub async fn verify_token(&self, secret: &str) -> Result<Option<TokenInfo>, StoreError> {
        let doing = "checking an API token";
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("{TOKEN_COLUMNS} where secret_hash = $1")))
            .bind(token_hash(secret))
            .fetch_optional(&self.pool)
            .await
            .map_err(query_error(doing))?;
        row.map(|row| token_from_row(&row, doing)).transpose()
    }

    /// Every token (without secrets), oldest first.
    pub async fn list_tokens(&self) -> Result<Vec<TokenInfo>, StoreError> {
        let doing = "listing API tokens";
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("{TOKEN_COLUMNS} order by id")))
            .fetch_all(&self.pool)
            .await
            .map_err(query_error(doing))?;
        rows.iter().map(|row| token_from_row(row, doing)).collect()
    }

    /// Starts a long operation; returns it (`InProgress`).
    pub async fn create_operation(&self, name: &str) -> Result<Operation, StoreError> {
        let id = uuid::Uuid::new_v4().to_string();
        let start = hubsync_core::now_micros();
        sqlx::query("insert into hubsync_operations (id, name, status, start_time) values ($1, $2, $3, $4)")
            .bind(&id)
            .bind(name)
            .bind(enum_text("the operation status", &OperationStatus::InProgress)?)
            .bind(start)
            .execute(&self.pool)
            .await
            .map_err(query_error("starting an operation"))?;
        Ok(Operation {
            id,
            name: name.to_string(),
            status: OperationStatus::InProgress,
            start_time: rfc3339(start),
            end_time: None,
            error: None,
        })
    }

    /// Ends a long operation: `Ok` succeeded, `Err` failed with that error.
    /// An unknown id is not an error (the operation may have been purged).
    pub async fn finish_operation(&self, id: &str, result: Result<(), ErrorDetail>) -> Result<(), StoreError> {
        let (status, error) = match &result {
            Ok(()) => (OperationStatus::Succeeded, None),
            Err(detail) => (OperationStatus::Failed, Some(to_json("the operation's error", detail)?)),
        };
        sqlx::query("update hubsync_operations set status = $2, end_time = $3, error = $4 where id = $1")
            .bind(id)
            .bind(enum_text("the operation status", &status)?)
            .bind(hubsync_core::now_micros())
            .bind(error)
            .execute(&self.pool)
            .await
            .map_err(query_error("finishing an operation"))?;
        Ok(())
    }

    /// One long operation.
    pub async fn get_operation(&self, id: &str) -> Result<Option<Operation>, StoreError> {
        let doing = "reading an operation";
        let row =
            sqlx::query("select id, name, status, start_time, end_time, error from hubsync_operations where id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(query_error(doing))?;
        let Some(row) = row else { return Ok(None) };
        let error: Option<String> = get(&row, 5, doing)?;
        Ok(Some(Operation {
            id: get(&row, 0, doing)?,
            name: get(&row, 1, doing)?,
            status: enum_from_text("operation status", &get::<String>(&row, 2, doing)?)?,
            start_time: rfc3339(get(&row, 3, doing)?),
            end_time: get::<Option<i64>>(&row, 4, doing)?.map(rfc3339),
            error: error.map(|e| from_json("operation error", &e)).transpose()?,
        }))
    }
}

fn token_from_row(row: &AnyRow, doing: &str) -> Result<TokenInfo, StoreError> {
    Ok(TokenInfo {
        id: get(row, 0, doing)?,
        name: get(row, 1, doing)?,
        read_only: get::<i64>(row, 2, doing)? != 0,
        created_at: get(row, 3, doing)?,
    })
}

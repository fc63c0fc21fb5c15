//! What happened in a group: log entries, logged conflicts and the runs
//! history, each newest first and paged by id.

use super::groups::get;
use super::{
    ConflictRecord, LogQuery, LogRecord, MetaStore, RunRecord, StoreError, enum_from_text, enum_text, from_json,
    limit_value, query_error, to_json,
};
use crate::model::LogType;

impl MetaStore {
    /// Appends a log entry (its `id` is ignored); returns the new id.
    pub async fn append_log(&self, group: &str, record: &LogRecord) -> Result<i64, StoreError> {
        if record.log_type == LogType::All {
            return Err(StoreError::Invalid("a log entry's type must be Error, Warning or Success, not All".into()));
        }
        sqlx::query_scalar(
            "insert into hubsync_logs (group_name, logged_at, log_type, source, details, tracing_id, operation_status)
             values ($1, $2, $3, $4, $5, $6, $7) returning id",
        )
        .bind(group)
        .bind(record.timestamp)
        .bind(enum_text("the log type", &record.log_type)?)
        .bind(&record.source)
        .bind(&record.details)
        .bind(&record.tracing_id)
        .bind(&record.operation_status)
        .fetch_one(&self.pool)
        .await
        .map_err(query_error("appending a log entry"))
    }

    /// Log entries, newest first, filtered by [`LogQuery`].
    pub async fn logs(&self, group: &str, query: &LogQuery) -> Result<Vec<LogRecord>, StoreError> {
        let doing = "reading log entries";
        // One statement for every filter: an absent bound is the widest value,
        // an absent type the empty string, which matches every type.
        let log_type = match query.log_type {
            None | Some(LogType::All) => String::new(),
            Some(t) => enum_text("the log type", &t)?,
        };
        let rows = sqlx::query(
            "select id, logged_at, log_type, source, details, tracing_id, operation_status from hubsync_logs
             where group_name = $1 and logged_at >= $2 and logged_at <= $3 and id < $4 and ($5 = '' or log_type = $5)
             order by id desc limit $6",
        )
        .bind(group)
        .bind(query.start.unwrap_or(i64::MIN))
        .bind(query.end.unwrap_or(i64::MAX))
        .bind(query.before_id.unwrap_or(i64::MAX))
        .bind(log_type)
        .bind(limit_value(query.limit))
        .fetch_all(&self.pool)
        .await
        .map_err(query_error(doing))?;
        rows.iter()
            .map(|row| {
                Ok(LogRecord {
                    id: get(row, 0, doing)?,
                    timestamp: get(row, 1, doing)?,
                    log_type: enum_from_text("log type", &get::<String>(row, 2, doing)?)?,
                    source: get(row, 3, doing)?,
                    details: get(row, 4, doing)?,
                    tracing_id: get(row, 5, doing)?,
                    operation_status: get(row, 6, doing)?,
                })
            })
            .collect()
    }

    /// Appends conflicts (their `id`s are ignored), in one transaction.
    pub async fn append_conflicts(&self, group: &str, records: &[ConflictRecord]) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        let doing = "logging conflicts";
        let mut tx = self.begin(doing).await?;
        for record in records {
            sqlx::query(
                "insert into hubsync_conflicts (group_name, resolved_at, member, conflict, columns_json)
                 values ($1, $2, $3, $4, $5)",
            )
            .bind(group)
            .bind(record.timestamp)
            .bind(&record.member)
            .bind(to_json("the conflict", &record.conflict)?)
            .bind(to_json("the conflict's columns", &record.columns)?)
            .execute(&mut *tx)
            .await
            .map_err(query_error(doing))?;
        }
        tx.commit().await.map_err(query_error(doing))
    }

    /// Logged conflicts, newest first, with ids below `before_id` when given;
    /// `limit` `0` for no limit.
    pub async fn conflicts(
        &self,
        group: &str,
        before_id: Option<i64>,
        limit: u32,
    ) -> Result<Vec<ConflictRecord>, StoreError> {
        let doing = "reading logged conflicts";
        let rows = sqlx::query(
            "select id, resolved_at, member, conflict, columns_json from hubsync_conflicts
             where group_name = $1 and id < $2 order by id desc limit $3",
        )
        .bind(group)
        .bind(before_id.unwrap_or(i64::MAX))
        .bind(limit_value(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(query_error(doing))?;
        rows.iter()
            .map(|row| {
                Ok(ConflictRecord {
                    id: get(row, 0, doing)?,
                    timestamp: get(row, 1, doing)?,
                    member: get(row, 2, doing)?,
                    conflict: from_json("conflict", &get::<String>(row, 3, doing)?)?,
                    columns: from_json("conflict columns", &get::<String>(row, 4, doing)?)?,
                })
            })
            .collect()
    }

    /// Deletes a group's conflicts logged before `older_than` (µs); returns how many.
    pub async fn purge_conflicts(&self, group: &str, older_than: i64) -> Result<u64, StoreError> {
        let done = sqlx::query("delete from hubsync_conflicts where group_name = $1 and resolved_at < $2")
            .bind(group)
            .bind(older_than)
            .execute(&self.pool)
            .await
            .map_err(query_error("purging logged conflicts"))?;
        Ok(done.rows_affected())
    }

    /// Appends one member's run to the history.
    pub async fn append_run(&self, record: &RunRecord) -> Result<(), StoreError> {
        sqlx::query(
            "insert into hubsync_runs
             (group_name, member, tracing_id, started_at, duration_ms, uploaded, downloaded, conflicts, outcome)
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&record.group)
        .bind(&record.member)
        .bind(&record.tracing_id)
        .bind(record.started_at)
        .bind(record.duration_ms)
        .bind(record.uploaded)
        .bind(record.downloaded)
        .bind(record.conflicts)
        .bind(&record.outcome)
        .execute(&self.pool)
        .await
        .map_err(query_error("recording a sync run"))?;
        Ok(())
    }

    /// A group's last runs, newest first; `limit` `0` for no limit.
    pub async fn runs(&self, group: &str, limit: u32) -> Result<Vec<RunRecord>, StoreError> {
        let doing = "reading the sync history";
        let rows = sqlx::query(
            "select group_name, member, tracing_id, started_at, duration_ms, uploaded, downloaded, conflicts, outcome
             from hubsync_runs where group_name = $1 order by id desc limit $2",
        )
        .bind(group)
        .bind(limit_value(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(query_error(doing))?;
        rows.iter()
            .map(|row| {
                Ok(RunRecord {
                    group: get(row, 0, doing)?,
                    member: get(row, 1, doing)?,
                    tracing_id: get(row, 2, doing)?,
                    started_at: get(row, 3, doing)?,
                    duration_ms: get(row, 4, doing)?,
                    uploaded: get(row, 5, doing)?,
                    downloaded: get(row, 6, doing)?,
                    conflicts: get(row, 7, doing)?,
                    outcome: get(row, 8, doing)?,
                })
            })
            .collect()
    }
}

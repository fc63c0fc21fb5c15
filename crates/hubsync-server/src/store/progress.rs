//! The progress of running syncs. The server that runs a group publishes it
//! here (throttled by the runner) because the portal showing it may be
//! served by another server sharing the store; the row goes when the run ends.

use hubsync_core::Leg;
use serde::{Deserialize, Serialize};

use super::{MetaStore, StoreError, from_json, query_error, to_json};

/// What a running sync of one group has done so far.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunProgress {
    /// When the run started (µs since the epoch).
    pub started_at: i64,
    /// When this was published (µs since the epoch); a reader ignores
    /// progress too old to be live (its server stopped mid-run).
    pub updated_at: i64,
    /// Every member of the run, in the group's order.
    pub members: Vec<MemberProgress>,
}

/// One member's part of a running sync.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberProgress {
    /// The member's name.
    pub member: String,
    /// The leg being applied, while a table is.
    pub leg: Option<Leg>,
    /// The table being applied, if any.
    pub table: Option<String>,
    /// Rows the session expected for that table, when it counted them.
    pub table_pending: Option<u64>,
    /// Rows of that table committed so far.
    pub table_rows: u64,
    /// Rows committed on the hub so far.
    pub uploaded: u64,
    /// Rows committed on the member so far.
    pub downloaded: u64,
    /// Whether the member's session has ended.
    pub finished: bool,
}

impl MetaStore {
    /// Publishes a group's progress, replacing what was there.
    pub async fn publish_progress(&self, group: &str, progress: &RunProgress) -> Result<(), StoreError> {
        sqlx::query(
            "insert into hubsync_progress (group_name, progress, updated_at) values ($1, $2, $3)
             on conflict (group_name) do update set progress = excluded.progress, updated_at = excluded.updated_at",
        )
        .bind(group)
        .bind(to_json("the run's progress", progress)?)
        .bind(progress.updated_at)
        .execute(&self.pool)
        .await
        .map_err(query_error("publishing a run's progress"))?;
        Ok(())
    }

    /// A group's published progress, if a run published any and has not ended.
    pub async fn progress(&self, group: &str) -> Result<Option<RunProgress>, StoreError> {
        let text: Option<String> = sqlx::query_scalar("select progress from hubsync_progress where group_name = $1")
            .bind(group)
            .fetch_optional(&self.pool)
            .await
            .map_err(query_error("reading a run's progress"))?;
        text.map(|t| from_json("the run's progress", &t)).transpose()
    }

    /// Removes a group's published progress (its run ended).
    pub async fn clear_progress(&self, group: &str) -> Result<(), StoreError> {
        sqlx::query("delete from hubsync_progress where group_name = $1")
            .bind(group)
            .execute(&self.pool)
            .await
            .map_err(query_error("clearing a run's progress"))?;
        Ok(())
    }
}

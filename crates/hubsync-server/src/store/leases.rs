//! How several servers share the groups: a lease per group (who syncs it),
//! and sync or cancel requests that whichever server holds the lease takes.
//! Each is one atomic statement, so it holds across processes.

use std::time::Duration;

use super::{MetaStore, StoreError, duration_micros, query_error};

/// The kinds of request a group can have pending.
const SYNC: &str = "sync";
const CANCEL: &str = "cancel";

impl MetaStore {
    /// Takes or renews the lease on a group for `owner` for `ttl`. Succeeds
    /// when nobody holds it, `owner` holds it, or the holder's lease expired.
    /// Atomic across servers sharing the store: one upsert whose update only
    /// applies when the lease is free for `owner`. Expiry uses each server's
    /// clock, so keep the servers' clocks in sync (NTP) and `ttl` well above
    /// their skew.
    pub async fn try_lease(&self, group: &str, owner: &str, ttl: Duration) -> Result<bool, StoreError> {
        let now = hubsync_core::now_micros();
        let done = sqlx::query(
            "insert into hubsync_leases (group_name, owner, expires_at) values ($1, $2, $3)
             on conflict (group_name) do update set owner = excluded.owner, expires_at = excluded.expires_at
             where hubsync_leases.owner = excluded.owner or hubsync_leases.expires_at < $4",
        )
        .bind(group)
        .bind(owner)
        .bind(now.saturating_add(duration_micros(ttl)))
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(query_error("taking a group's lease"))?;
        Ok(done.rows_affected() > 0)
    }

    /// Gives up a lease held by `owner` (no-op otherwise).
    pub async fn release_lease(&self, group: &str, owner: &str) -> Result<(), StoreError> {
        sqlx::query("delete from hubsync_leases where group_name = $1 and owner = $2")
            .bind(group)
            .bind(owner)
            .execute(&self.pool)
            .await
            .map_err(query_error("releasing a group's lease"))?;
        Ok(())
    }

    /// Asks for a sync of the group now (`triggerSync`), on whichever server
    /// holds or takes its lease. Several requests before one is taken are one.
    pub async fn request_sync(&self, group: &str) -> Result<(), StoreError> {
        self.request(group, SYNC, "requesting a sync").await
    }

    /// Takes a pending sync request: `true` once per request.
    pub async fn take_sync_request(&self, group: &str) -> Result<bool, StoreError> {
        self.take_request(group, SYNC, "taking a sync request").await
    }

    /// Asks the running sync of the group to stop between batches (`cancelSync`).
    pub async fn request_cancel(&self, group: &str) -> Result<(), StoreError> {
        self.request(group, CANCEL, "requesting a cancel").await
    }

    /// Takes a pending cancel request: `true` once per request.
    pub async fn take_cancel_request(&self, group: &str) -> Result<bool, StoreError> {
        self.take_request(group, CANCEL, "taking a cancel request").await
    }

    async fn request(&self, group: &str, kind: &str, doing: &str) -> Result<(), StoreError> {
        sqlx::query(
            "insert into hubsync_requests (group_name, kind, requested_at) values ($1, $2, $3)
             on conflict (group_name, kind) do nothing",
        )
        .bind(group)
        .bind(kind)
        .bind(hubsync_core::now_micros())
        .execute(&self.pool)
        .await
        .map_err(query_error(doing))?;
        Ok(())
    }

    /// Deleting the request is what takes it: of several servers deleting at
    /// once, exactly one sees a row affected.
    async fn take_request(&self, group: &str, kind: &str, doing: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("delete from hubsync_requests where group_name = $1 and kind = $2")
            .bind(group)
            .bind(kind)
            .execute(&self.pool)
            .await
            .map_err(query_error(doing))?;
        Ok(done.rows_affected() > 0)
    }
}

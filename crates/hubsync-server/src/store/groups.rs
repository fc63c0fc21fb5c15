//! Groups and members: their specs (JSON, the password sealed in its own
//! column), statuses and last refreshed schemas.

use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use super::{
    GroupStatus, MemberStatusRecord, MetaStore, PutOutcome, StoreError, StoredGroup, StoredMember, enum_from_text,
    enum_text, from_json, query_error, to_json,
};
use crate::model::{DatabaseSchema, SyncGroupState, SyncMemberState};
use crate::spec::{GroupSpec, MemberSpec};

const GROUP_COLUMNS: &str = "select spec, hub_password, state, last_sync_time from hubsync_groups";
const MEMBER_COLUMNS: &str = "select spec, password, state, last_sync_time, last_error from hubsync_members";

impl MetaStore {
    /// Every group, by name.
    pub async fn list_groups(&self) -> Result<Vec<StoredGroup>, StoreError> {
        let doing = "listing sync groups";
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("{GROUP_COLUMNS} order by name")))
            .fetch_all(&self.pool)
            .await
            .map_err(query_error(doing))?;
        rows.iter().map(|row| self.group_from_row(row, doing)).collect()
    }

    /// One group.
    pub async fn get_group(&self, name: &str) -> Result<Option<StoredGroup>, StoreError> {
        let doing = "reading a sync group";
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("{GROUP_COLUMNS} where name = $1")))
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(query_error(doing))?;
        row.map(|row| self.group_from_row(&row, doing)).transpose()
    }

    /// Creates or replaces a group's spec (its status is kept; a new group is
    /// `NotReady`). The outcome compares the whole spec, the hub password
    /// included, so re-importing an unchanged config writes nothing.
    pub async fn put_group(&self, spec: &GroupSpec) -> Result<PutOutcome, StoreError> {
        let doing = "saving a sync group";
        let mut tx = self.begin(doing).await?;
        let existing = sqlx::query(sqlx::AssertSqlSafe(format!("{GROUP_COLUMNS} where name = $1")))
            .bind(&spec.name)
            .fetch_optional(&mut *tx)
            .await
            .map_err(query_error(doing))?;
        let outcome = match existing {
            Some(row) if self.group_from_row(&row, doing)?.spec == *spec => return Ok(PutOutcome::Unchanged),
            Some(_) => PutOutcome::Updated,
            None => PutOutcome::Created,
        };
        sqlx::query(
            "insert into hubsync_groups (name, spec, hub_password, state) values ($1, $2, $3, $4)
             on conflict (name) do update set spec = excluded.spec, hub_password = excluded.hub_password",
        )
        .bind(&spec.name)
        .bind(to_json("the group spec", spec)?)
        .bind(self.seal(spec.hub.password.as_deref())?)
        .bind(enum_text("the group state", &SyncGroupState::NotReady)?)
        .execute(&mut *tx)
        .await
        .map_err(query_error(doing))?;
        tx.commit().await.map_err(query_error(doing))?;
        Ok(outcome)
    }

    /// Deletes a group with its members, logs, conflicts, history, schemas,
    /// lease, requests and published progress, in one transaction. Returns whether it existed.
    pub async fn delete_group(&self, name: &str) -> Result<bool, StoreError> {
        let doing = "deleting a sync group";
        let mut tx = self.begin(doing).await?;
        for statement in [
            "delete from hubsync_members where group_name = $1",
            "delete from hubsync_logs where group_name = $1",
            "delete from hubsync_conflicts where group_name = $1",
            "delete from hubsync_runs where group_name = $1",
            "delete from hubsync_leases where group_name = $1",
            "delete from hubsync_requests where group_name = $1",
            "delete from hubsync_progress where group_name = $1",
        ] {
            sqlx::query(statement).bind(name).execute(&mut *tx).await.map_err(query_error(doing))?;
        }
        let deleted = sqlx::query("delete from hubsync_groups where name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(query_error(doing))?
            .rows_affected();
        tx.commit().await.map_err(query_error(doing))?;
        Ok(deleted > 0)
    }

    /// Sets a group's status; [`StoreError::GroupNotFound`] when it does not
    /// exist.
    pub async fn set_group_status(&self, name: &str, status: &GroupStatus) -> Result<(), StoreError> {
        let done = sqlx::query("update hubsync_groups set state = $2, last_sync_time = $3 where name = $1")
            .bind(name)
            .bind(enum_text("the group state", &status.state)?)
            .bind(status.last_sync_time)
            .execute(&self.pool)
            .await
            .map_err(query_error("setting a sync group's status"))?;
        group_found(name, done.rows_affected())
    }

    /// A group's members, by name.
    pub async fn list_members(&self, group: &str) -> Result<Vec<StoredMember>, StoreError> {
        let doing = "listing sync members";
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("{MEMBER_COLUMNS} where group_name = $1 order by name")))
            .bind(group)
            .fetch_all(&self.pool)
            .await
            .map_err(query_error(doing))?;
        rows.iter().map(|row| self.member_from_row(row, doing)).collect()
    }

    /// One member.
    pub async fn get_member(&self, group: &str, name: &str) -> Result<Option<StoredMember>, StoreError> {
        let doing = "reading a sync member";
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("{MEMBER_COLUMNS} where group_name = $1 and name = $2")))
            .bind(group)
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(query_error(doing))?;
        row.map(|row| self.member_from_row(&row, doing)).transpose()
    }

    /// Creates or replaces a member's spec (a new member is `UnProvisioned`).
    /// The group must exist ([`StoreError::GroupNotFound`]). The outcome
    /// compares the whole spec, the password included.
    pub async fn put_member(&self, spec: &MemberSpec) -> Result<PutOutcome, StoreError> {
        let doing = "saving a sync member";
        let mut tx = self.begin(doing).await?;
        require_group(&mut tx, &spec.group, doing).await?;
        let existing =
            sqlx::query(sqlx::AssertSqlSafe(format!("{MEMBER_COLUMNS} where group_name = $1 and name = $2")))
                .bind(&spec.group)
                .bind(&spec.name)
                .fetch_optional(&mut *tx)
                .await
                .map_err(query_error(doing))?;
        let outcome = match existing {
            Some(row) if self.member_from_row(&row, doing)?.spec == *spec => return Ok(PutOutcome::Unchanged),
            Some(_) => PutOutcome::Updated,
            None => PutOutcome::Created,
        };
        sqlx::query(
            "insert into hubsync_members (group_name, name, spec, password, state) values ($1, $2, $3, $4, $5)
             on conflict (group_name, name) do update set spec = excluded.spec, password = excluded.password",
        )
        .bind(&spec.group)
        .bind(&spec.name)
        .bind(to_json("the member spec", spec)?)
        .bind(self.seal(spec.database.password.as_deref())?)
        .bind(enum_text("the member state", &SyncMemberState::UnProvisioned)?)
        .execute(&mut *tx)
        .await
        .map_err(query_error(doing))?;
        tx.commit().await.map_err(query_error(doing))?;
        Ok(outcome)
    }

    /// Deletes a member, its schema, its runs and its conflicts, in one
    /// transaction: a member added later under the same name starts with no
    /// history that is not its own. The group's log keeps what happened.
    /// Returns whether the member existed.
    pub async fn delete_member(&self, group: &str, name: &str) -> Result<bool, StoreError> {
        let doing = "deleting a sync member";
        let mut tx = self.begin(doing).await?;
        for statement in [
            "delete from hubsync_runs where group_name = $1 and member = $2",
            "delete from hubsync_conflicts where group_name = $1 and member = $2",
        ] {
            sqlx::query(statement).bind(group).bind(name).execute(&mut *tx).await.map_err(query_error(doing))?;
        }
        let done = sqlx::query("delete from hubsync_members where group_name = $1 and name = $2")
            .bind(group)
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(query_error(doing))?;
        tx.commit().await.map_err(query_error(doing))?;
        Ok(done.rows_affected() > 0)
    }

    /// Sets a member's status; [`StoreError::MemberNotFound`] when it does
    /// not exist.
    pub async fn set_member_status(
        &self,
        group: &str,
        name: &str,
        status: &MemberStatusRecord,
    ) -> Result<(), StoreError> {
        let done = sqlx::query(
            "update hubsync_members set state = $3, last_sync_time = $4, last_error = $5
             where group_name = $1 and name = $2",
        )
        .bind(group)
        .bind(name)
        .bind(enum_text("the member state", &status.state)?)
        .bind(status.last_sync_time)
        .bind(status.last_error.as_deref())
        .execute(&self.pool)
        .await
        .map_err(query_error("setting a sync member's status"))?;
        member_found(group, name, done.rows_affected())
    }

    /// Stores the hub's schema as last refreshed; [`StoreError::GroupNotFound`]
    /// when the group does not exist.
    pub async fn put_hub_schema(&self, group: &str, schema: &DatabaseSchema) -> Result<(), StoreError> {
        let done = sqlx::query("update hubsync_groups set hub_schema = $2 where name = $1")
            .bind(group)
            .bind(to_json("the hub schema", schema)?)
            .execute(&self.pool)
            .await
            .map_err(query_error("saving the hub schema"))?;
        group_found(group, done.rows_affected())
    }

    /// The hub's schema as last refreshed.
    pub async fn hub_schema(&self, group: &str) -> Result<Option<DatabaseSchema>, StoreError> {
        let text: Option<Option<String>> = sqlx::query_scalar("select hub_schema from hubsync_groups where name = $1")
            .bind(group)
            .fetch_optional(&self.pool)
            .await
            .map_err(query_error("reading the hub schema"))?;
        text.flatten().map(|t| from_json("hub schema", &t)).transpose()
    }

    /// Stores a member's schema as last refreshed; [`StoreError::MemberNotFound`]
    /// when the member does not exist.
    pub async fn put_member_schema(
        &self,
        group: &str,
        member: &str,
        schema: &DatabaseSchema,
    ) -> Result<(), StoreError> {
        let done = sqlx::query("update hubsync_members set member_schema = $3 where group_name = $1 and name = $2")
            .bind(group)
            .bind(member)
            .bind(to_json("the member schema", schema)?)
            .execute(&self.pool)
            .await
            .map_err(query_error("saving a member schema"))?;
        member_found(group, member, done.rows_affected())
    }

    /// A member's schema as last refreshed.
    pub async fn member_schema(&self, group: &str, member: &str) -> Result<Option<DatabaseSchema>, StoreError> {
        let text: Option<Option<String>> =
            sqlx::query_scalar("select member_schema from hubsync_members where group_name = $1 and name = $2")
                .bind(group)
                .bind(member)
                .fetch_optional(&self.pool)
                .await
                .map_err(query_error("reading a member schema"))?;
        text.flatten().map(|t| from_json("member schema", &t)).transpose()
    }

    /// Whether any group or member has a stored password, so that a server
    /// started without a secret key can say so at start rather than at the
    /// first sync.
    pub async fn stores_passwords(&self) -> Result<bool, StoreError> {
        let found = sqlx::query(
            "select name from hubsync_groups where hub_password is not null
             union all select name from hubsync_members where password is not null limit 1",
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(query_error("looking for stored passwords"))?;
        Ok(found.is_some())
    }

    fn group_from_row(&self, row: &AnyRow, doing: &str) -> Result<StoredGroup, StoreError> {
        let (spec, password, state, last_sync_time): (String, Option<String>, String, Option<i64>) =
            (get(row, 0, doing)?, get(row, 1, doing)?, get(row, 2, doing)?, get(row, 3, doing)?);
        let mut spec: GroupSpec = from_json("group spec", &spec)?;
        spec.hub.password = self.unseal(password.as_deref())?;
        let state = enum_from_text("group state", &state)?;
        Ok(StoredGroup { spec, status: GroupStatus { state, last_sync_time } })
    }

    fn member_from_row(&self, row: &AnyRow, doing: &str) -> Result<StoredMember, StoreError> {
        let (spec, password, state): (String, Option<String>, String) =
            (get(row, 0, doing)?, get(row, 1, doing)?, get(row, 2, doing)?);
        let (last_sync_time, last_error): (Option<i64>, Option<String>) = (get(row, 3, doing)?, get(row, 4, doing)?);
        let mut spec: MemberSpec = from_json("member spec", &spec)?;
        spec.database.password = self.unseal(password.as_deref())?;
        let state = enum_from_text("member state", &state)?;
        Ok(StoredMember { spec, status: MemberStatusRecord { state, last_sync_time, last_error } })
    }
}

/// One column of a row, by position.
pub(super) fn get<T>(row: &AnyRow, index: usize, doing: &str) -> Result<T, StoreError>
where
    T: for<'r> sqlx::Decode<'r, Any> + sqlx::Type<Any>,
{
    row.try_get(index).map_err(query_error(doing))
}

async fn require_group(tx: &mut Transaction<'static, Any>, group: &str, doing: &str) -> Result<(), StoreError> {
    let found = sqlx::query("select name from hubsync_groups where name = $1")
        .bind(group)
        .fetch_optional(&mut **tx)
        .await
        .map_err(query_error(doing))?;
    found.map(|_| ()).ok_or_else(|| StoreError::GroupNotFound(group.to_string()))
}

fn group_found(group: &str, rows: u64) -> Result<(), StoreError> {
    if rows == 0 { Err(StoreError::GroupNotFound(group.to_string())) } else { Ok(()) }
}

fn member_found(group: &str, member: &str, rows: u64) -> Result<(), StoreError> {
    if rows == 0 {
        Err(StoreError::MemberNotFound { group: group.to_string(), member: member.to_string() })
    } else {
        Ok(())
    }
}

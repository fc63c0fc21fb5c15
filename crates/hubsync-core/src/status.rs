//! What `hubsync status` shows for a member.

use serde::{Deserialize, Serialize};

use crate::change::{OriginFilter, Watermarks};
use crate::endpoint::Endpoint;
use crate::error::EndpointError;
use crate::schema::TableName;
use crate::session::{HUB_ORIGIN, SyncTable};
use crate::state::{MemberState, SessionRecord};

/// One table's position between a member and its hub.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableStatus {
    /// The table.
    pub table: TableName,
    /// What the hub has applied from the member.
    pub upload_watermarks: Watermarks,
    /// What the member has applied from the hub.
    pub download_watermarks: Watermarks,
    /// Member changes not yet uploaded.
    pub pending_upload: u64,
    /// Hub changes not yet downloaded.
    pub pending_download: u64,
}

/// A member's status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberStatus {
    /// The member.
    pub member: String,
    /// Its state.
    pub state: MemberState,
    /// The last session's record, if any.
    pub last_session: Option<SessionRecord>,
    /// Per table; empty when not provisioned.
    pub tables: Vec<TableStatus>,
}

/// Reads a member's state, watermarks and pending change counts. Both databases
/// must be reachable; nothing is written.
pub async fn member_status<H: Endpoint, M: Endpoint>(
    hub: &H,
    member: &M,
    scope: &str,
    member_name: &str,
    tables: &[SyncTable],
) -> Result<MemberStatus, EndpointError> {
    let mut provisioned = true;
    for t in tables {
        if !member.is_provisioned(&t.schema.name).await? || !hub.is_provisioned(&t.schema.name).await? {
            provisioned = false;
        }
    }
    if !provisioned {
        return Ok(MemberStatus {
            member: member_name.into(),
            state: MemberState::UnProvisioned,
            last_session: None,
            tables: vec![],
        });
    }
    let last_session = member.session_record(scope, HUB_ORIGIN).await?;
    let mut out = Vec::with_capacity(tables.len());
    for t in tables {
        let name = &t.schema.name;
        let upload_watermarks = hub.watermarks(scope, member_name, name).await?;
        let download_watermarks = member.watermarks(scope, HUB_ORIGIN, name).await?;
        let pending_upload = member.count_changes(&t.schema, upload_watermarks, &OriginFilter::LocalOnly).await?;
        let pending_download =
            hub.count_changes(&t.schema, download_watermarks, &OriginFilter::NotFrom(member_name.to_string())).await?;
        out.push(TableStatus {
            table: name.clone(),
            upload_watermarks,
            download_watermarks,
            pending_upload,
            pending_download,
        });
    }
    let state = last_session.as_ref().map_or(MemberState::Provisioned, |r| r.state);
    Ok(MemberStatus { member: member_name.into(), state, last_session, tables: out })
}

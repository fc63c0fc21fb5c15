//! Preparing databases for sync: resolving the sync schema on the hub, creating
//! missing member tables, and provisioning change tracking on both sides.

use crate::endpoint::Endpoint;
use crate::error::{EndpointError, ErrorKind};
use crate::policy::ConflictPolicy;
use crate::schema::{TableName, TableSchema};
use crate::session::SyncTable;

/// One table as the configuration selects it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSelection {
    /// The table.
    pub name: TableName,
    /// The selected columns; `None` selects all. The key is always included.
    pub columns: Option<Vec<String>>,
    /// A per-table policy override.
    pub policy: Option<ConflictPolicy>,
}

/// Reads the selected tables from the hub and projects them to the selected
/// columns. Fails on the first table that is missing, has no primary key or
/// names a column that does not exist.
pub async fn resolve_tables<H: Endpoint>(
    hub: &H,
    selection: &[TableSelection],
) -> Result<Vec<SyncTable>, EndpointError> {
    let mut tables = Vec::with_capacity(selection.len());
    for sel in selection {
        let schema = hub.introspect(&sel.name).await?.ok_or_else(|| {
            EndpointError::new(
                ErrorKind::TableMissing,
                format!("table `{}` does not exist on the hub ({})", sel.name, hub.label()),
            )
            .with_hint("create it on the hub, fix the name in the config, or remove it from the sync schema")
        })?;
        let schema = schema.project(sel.columns.as_deref())?;
        tables.push(SyncTable { schema, policy: sel.policy });
    }
    Ok(tables)
}

/// Provisions change tracking for every table on the hub.
pub async fn provision_hub<H: Endpoint>(hub: &H, tables: &[SyncTable]) -> Result<(), EndpointError> {
    for table in tables {
        hub.provision_as_hub(&table.schema)
            .await
            .map_err(|e| e.context(format!("provisioning table `{}` on the hub", table.schema.name)))?;
    }
    Ok(())
}

/// What provisioning a member did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberProvisioning {
    /// Tables that did not exist and were created from the hub's schema.
    pub created: Vec<TableName>,
}

/// Creates the member's missing tables from the hub's schema (parents first, so
/// foreign keys resolve), checks existing ones hold every synced column and the
/// same key, and provisions change tracking.
pub async fn provision_member<M: Endpoint>(
    member: &M,
    tables: &[SyncTable],
) -> Result<MemberProvisioning, EndpointError> {
    let mut done = MemberProvisioning::default();
    let schemas: Vec<TableSchema> = tables.iter().map(|t| t.schema.clone()).collect();
    for i in crate::order::parents_first(&schemas) {
        let hub_schema = &schemas[i];
        let existing = member
            .introspect(&hub_schema.name)
            .await
            .map_err(|e| e.context(format!("reading table `{}` on {}", hub_schema.name, member.label())))?;
        match existing {
            Some(existing) => hub_schema
                .check_compatible(&existing)
                .map_err(|e| EndpointError::from(e).context(format!("on {}", member.label())))?,
            None => {
                member
                    .create_table(hub_schema)
                    .await
                    .map_err(|e| e.context(format!("creating table `{}`", hub_schema.name)))?;
                done.created.push(hub_schema.name.clone());
            }
        }
        member
            .provision(hub_schema)
            .await
            .map_err(|e| e.context(format!("provisioning table `{}`", hub_schema.name)))?;
    }
    Ok(done)
}

//! The one-off database work the API and the portal ask for: introspecting a
//! hub's or a member's tables (`refreshHubSchema`, `refreshSchema`),
//! deprovisioning a member, and testing a connection.

use std::path::Path;

use crate::model::DatabaseSchema;
use crate::spec::{DatabaseSpec, GroupSpec, MemberSpec};

/// Introspects every table of a database.
pub async fn refresh_schema(database: &DatabaseSpec, base_dir: &Path) -> Result<DatabaseSchema, String> {
    let _ = (database, base_dir);
    todo!()
}

/// Removes hubsync's objects for the group's tables from a member; returns
/// the names of the objects removed.
pub async fn deprovision_member(
    group: &GroupSpec,
    member: &MemberSpec,
    base_dir: &Path,
) -> Result<Vec<String>, String> {
    let _ = (group, member, base_dir);
    todo!()
}

/// Opens the database and runs a trivial query; the error says exactly what
/// failed (for the portal's "test connection").
pub async fn test_connection(database: &DatabaseSpec, base_dir: &Path) -> Result<(), String> {
    let _ = (database, base_dir);
    todo!()
}

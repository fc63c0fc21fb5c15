//! The heart of hubsync: the domain model (schemas, values, changes, conflict
//! policies, states), the [`Endpoint`] contract every engine implements, and the
//! sync session algorithm that moves changes between a hub and one member.
//!
//! This crate knows no database engine and no transport: engines, agents and
//! offline clients are all just [`Endpoint`] implementations.

pub mod change;
pub mod endpoint;
pub mod error;
pub mod order;
pub mod policy;
pub mod provision;
pub mod schema;
pub mod session;
pub mod state;
pub mod status;
#[cfg(any(test, feature = "test-utils"))]
pub mod testing;
pub mod value;

pub use change::{Change, ChangeKind, OriginFilter, Version, Watermarks};
pub use endpoint::{
    ApplyBatch, ApplyOutcome, BulkItem, BulkTarget, Endpoint, Held, HeldApply, LocalState, ReadRequest, Verdict,
};
pub use error::{EndpointError, ErrorKind};
pub use policy::{Conflict, ConflictPolicy, ConflictResolver, Side};
pub use provision::{MemberProvisioning, TableSelection, provision_hub, provision_member, resolve_tables};
pub use schema::{CanonicalType, Column, ForeignKey, Index, SchemaError, TableName, TableSchema};
pub use session::{
    Cancel, Direction, HUB_ORIGIN, Leg, LogObserver, SessionError, SessionEvent, SessionObserver, SessionOptions,
    SessionReport, SyncTable, TableStats, compact_after_sync, now_micros, sync_member,
};
pub use state::{MemberState, SessionRecord};
pub use status::{MemberStatus, TableStatus, member_status};
pub use value::Value;

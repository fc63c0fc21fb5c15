//! The hubsync service: `hubsync serve`.
//!
//! It keeps sync groups in a metadata store ([`store`]), runs them on their
//! schedules ([`scheduler`], [`runner`]), and is managed over a REST API with an
//! OpenAPI document ([`api`]) that uses Azure SQL Data Sync's resource and
//! property names. It adds no engine-specific code: databases are reached
//! through `hubsync_engines::connect`.

pub mod api;
pub mod inspect;
pub mod metrics;
pub mod model;
pub mod portal;
pub mod runner;
pub mod scheduler;
pub mod secrets;
pub mod serve;
pub mod spec;
pub mod store;

pub use secrets::SecretKey;
pub use serve::{RunningServer, ServeError, ServeOptions, Server, shutdown_signal};
pub use spec::{DatabaseSpec, GroupSpec, MemberSpec, Schedule, TableSpec};
pub use store::{MetaStore, StoreError};

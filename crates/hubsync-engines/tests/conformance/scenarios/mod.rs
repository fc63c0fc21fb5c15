//! The scenarios, each written once against [`crate::harness::Harness`].

pub(crate) mod bad_input;
pub(crate) mod columns;
pub(crate) mod commit_safety;
pub(crate) mod concurrency;
pub(crate) mod conflicts;
pub(crate) mod convergence;
pub(crate) mod crash;
pub(crate) mod directions;
pub(crate) mod foreign_keys;
pub(crate) mod initial_copy;
pub(crate) mod names_values;

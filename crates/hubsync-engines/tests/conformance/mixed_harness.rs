//! Groups that mix engines: the hub on one engine, members on others.
//!
//! A [`MixedHarness`] delegates each database to the harness of the engine
//! its role calls for, so every scenario runs unchanged on a mixed group.

use std::sync::Arc;

use hubsync_core::Value;

use crate::harness::{BadUrl, BoxFut, Harness, Role, TestDb};

/// The hub on one engine, member `i` on `members[i % members.len()]`.
pub(crate) struct MixedHarness {
    hub: Arc<dyn Harness>,
    members: Vec<Arc<dyn Harness>>,
}

impl MixedHarness {
    /// A mixed harness; `None` when one of its engines is unavailable (its
    /// harness has already said why).
    pub(crate) fn start(
        hub: Option<Arc<dyn Harness>>,
        members: Vec<Option<Arc<dyn Harness>>>,
    ) -> Option<Arc<dyn Harness>> {
        let hub = hub?;
        let members: Option<Vec<_>> = members.into_iter().collect();
        let members = members?;
        assert!(!members.is_empty(), "a mixed harness needs at least one member engine");
        Some(Arc::new(MixedHarness { hub, members }))
    }

    fn all(&self) -> impl Iterator<Item = &Arc<dyn Harness>> {
        std::iter::once(&self.hub).chain(&self.members)
    }
}

impl Harness for MixedHarness {
    fn create_db<'a>(&'a self, role: Role, name: &'a str) -> BoxFut<'a, Box<dyn TestDb>> {
        match role {
            Role::Hub => self.hub.create_db(role, name),
            Role::Member(i) => self.members[i % self.members.len()].create_db(role, name),
        }
    }

    fn concurrent_writers(&self) -> bool {
        self.all().all(|h| h.concurrent_writers())
    }

    fn tracks_foreign_key_actions(&self, role: Role) -> bool {
        match role {
            Role::Hub => self.hub.tracks_foreign_key_actions(role),
            Role::Member(i) => self.members[i % self.members.len()].tracks_foreign_key_actions(role),
        }
    }

    fn unopenable_urls(&self) -> Vec<BadUrl> {
        self.members.iter().flat_map(|h| h.unopenable_urls()).collect()
    }

    /// A value passes through every engine of the group, so it ends in the
    /// form the most restrictive of them keeps.
    fn stored_form(&self, value: Value) -> Value {
        self.all().fold(value, |v, h| h.stored_form(v))
    }
}

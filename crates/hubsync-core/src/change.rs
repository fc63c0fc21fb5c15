//! Captured changes and the watermarks that say how far a peer has received them.

use serde::{Deserialize, Serialize};

use crate::value::Value;

/// A commit-ordered change number. Each engine guarantees that once it reports a
/// snapshot version `S`, no change with a version `<= S` can still appear.
pub type Version = i64;

/// The two kinds of change a tracking row can hold. They are read and applied in
/// separate phases (deletes children-first, upserts parents-first), each with its
/// own watermark, which is safe because a key's tracking row holds only its
/// latest state: a key is never both a pending delete and a pending upsert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ChangeKind {
    /// An insert or update: the row's current image.
    Upsert,
    /// A delete (tombstone).
    Delete,
}

impl ChangeKind {
    /// The name stored in scope tables.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Upsert => "upsert",
            ChangeKind::Delete => "delete",
        }
    }

    /// The other kind.
    pub fn other(self) -> ChangeKind {
        match self {
            ChangeKind::Upsert => ChangeKind::Delete,
            ChangeKind::Delete => ChangeKind::Upsert,
        }
    }

    /// The kind a scope table's name stands for (see [`ChangeKind::as_str`]).
    pub fn from_name(name: &str) -> Option<ChangeKind> {
        [ChangeKind::Upsert, ChangeKind::Delete].into_iter().find(|k| k.as_str() == name)
    }
}

/// One row's latest change, as read from a tracking table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// Primary key values, in key order.
    pub key: Vec<Value>,
    /// The change's version on the database it was read from.
    pub version: Version,
    /// Who made it there: empty for a local write, else the peer it came from.
    pub origin: String,
    /// Commit time, microseconds since the Unix epoch (UTC).
    pub changed_at: i64,
    /// The row image over the synced columns (table order), or `None` for a delete.
    pub row: Option<Vec<Value>>,
}

impl Change {
    /// Whether this change is a delete.
    pub fn is_delete(&self) -> bool {
        self.row.is_none()
    }

    /// Approximate size in bytes, to bound batches.
    pub fn approx_size(&self) -> usize {
        let key: usize = self.key.iter().map(Value::approx_size).sum();
        let row: usize = self.row.iter().flatten().map(Value::approx_size).sum();
        key + row + self.origin.len() + 24
    }
}

/// How far one database has received one table's changes from one peer:
/// the highest applied version of each kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watermarks {
    /// Highest upsert version applied.
    pub upserts: Version,
    /// Highest delete version applied.
    pub deletes: Version,
}

impl Watermarks {
    /// The watermark of one kind.
    pub fn get(&self, kind: ChangeKind) -> Version {
        match kind {
            ChangeKind::Upsert => self.upserts,
            ChangeKind::Delete => self.deletes,
        }
    }

    /// Sets the watermark of one kind.
    pub fn set(&mut self, kind: ChangeKind, value: Version) {
        match kind {
            ChangeKind::Upsert => self.upserts = value,
            ChangeKind::Delete => self.deletes = value,
        }
    }

    /// The watermarks stored as (kind name, version) rows in a scope table;
    /// rows of unknown kinds are ignored.
    pub fn from_rows(rows: impl IntoIterator<Item = (String, Version)>) -> Watermarks {
        let mut marks = Watermarks::default();
        for (name, version) in rows {
            if let Some(kind) = ChangeKind::from_name(&name) {
                marks.set(kind, version);
            }
        }
        marks
    }

    /// Whether nothing has been received yet.
    pub fn is_zero(&self) -> bool {
        self.upserts == 0 && self.deletes == 0
    }
}

/// Which changes a reader may send, by origin (loop prevention).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginFilter {
    /// Only changes made locally (`origin = ''`): what a member uploads.
    LocalOnly,
    /// Every change whose origin is not this peer: what the hub sends a member.
    NotFrom(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watermarks_come_from_scope_rows_by_kind_name() {
        let rows = [("upsert".to_string(), 7), ("delete".to_string(), 3), ("other".to_string(), 99)];
        assert_eq!(Watermarks::from_rows(rows), Watermarks { upserts: 7, deletes: 3 });
        assert_eq!(ChangeKind::from_name(ChangeKind::Delete.as_str()), Some(ChangeKind::Delete));
        assert_eq!(Watermarks::from_rows([]), Watermarks::default());
    }
}

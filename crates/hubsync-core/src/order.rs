//! Foreign-key order: parents before children.

use std::collections::{BTreeMap, BTreeSet};

use crate::schema::{TableName, TableSchema};

/// Orders tables so that every table comes after the tables it references
/// (self-references are ignored). Tables in a reference cycle keep their
/// configured order relative to each other; the engines' deferred constraint
/// checks and the session's delete retry pass handle what order cannot.
pub fn parents_first(tables: &[TableSchema]) -> Vec<usize> {
    let index: BTreeMap<&TableName, usize> = tables.iter().enumerate().map(|(i, t)| (&t.name, i)).collect();
    let deps: Vec<BTreeSet<usize>> = tables
        .iter()
        .enumerate()
        .map(|(i, t)| {
            t.foreign_keys
                .iter()
                .filter_map(|fk| {
                    index.get(&fk.referenced_table).copied().or_else(|| find_unqualified(tables, &fk.referenced_table))
                })
                .filter(|&j| j != i)
                .collect()
        })
        .collect();
    let mut placed = vec![false; tables.len()];
    let mut order = Vec::with_capacity(tables.len());
    while order.len() < tables.len() {
        // Take the first table (in configured order) whose parents are all placed;
        // if none is ready there is a cycle, so take the first unplaced one.
        let ready = (0..tables.len()).find(|&i| !placed[i] && deps[i].iter().all(|&d| placed[d]));
        let next = ready.or_else(|| (0..tables.len()).find(|&i| !placed[i]));
        let Some(next) = next else { break };
        placed[next] = true;
        order.push(next);
    }
    order
}

/// A foreign key may name its parent without the schema qualifier the config used.
fn find_unqualified(tables: &[TableSchema], name: &TableName) -> Option<usize> {
    tables.iter().position(|t| t.name.name == name.name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::ForeignKey;

    fn table(name: &str, parents: &[&str]) -> TableSchema {
        TableSchema {
            name: TableName::new(name),
            columns: vec![],
            primary_key: vec!["id".into()],
            indexes: vec![],
            foreign_keys: parents
                .iter()
                .map(|p| ForeignKey {
                    columns: vec!["x".into()],
                    referenced_table: TableName::new(*p),
                    referenced_columns: vec!["id".into()],
                })
                .collect(),
            engine: "test".into(),
        }
    }

    #[test]
    fn children_come_after_parents_whatever_the_configured_order() {
        let tables = vec![
            table("lines", &["orders", "products"]),
            table("orders", &["customers"]),
            table("customers", &[]),
            table("products", &[]),
        ];
        let order: Vec<&str> = parents_first(&tables).into_iter().map(|i| tables[i].name.name.as_str()).collect();
        let pos = |n: &str| order.iter().position(|x| *x == n).unwrap();
        assert!(pos("customers") < pos("orders"));
        assert!(pos("orders") < pos("lines"));
        assert!(pos("products") < pos("lines"));
    }

    #[test]
    fn self_references_and_cycles_still_order_every_table() {
        let tables = vec![table("a", &["b"]), table("b", &["a"]), table("tree", &["tree"])];
        let mut order = parents_first(&tables);
        order.sort();
        assert_eq!(order, vec![0, 1, 2]);
    }
}

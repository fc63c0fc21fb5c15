//! Engine-neutral rules for the DDL hubsync writes: how provisioned objects
//! are named, and which declared types may be spliced into a statement.

use sha2::{Digest, Sha256};

/// The stem of every object hubsync provisions for one table: a readable slug
/// of `readable` (ASCII letters, digits and `_`, at most 24, lower case) and
/// 8 hex digits of the SHA-256 of `identity`, so any name (quotes, spaces,
/// Unicode, any length) gives short valid names, and names that slug alike
/// still differ.
pub(crate) fn object_stem(readable: &str, identity: &str) -> String {
    let slug: String = readable
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(24)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    let digest = Sha256::digest(identity.as_bytes());
    let hash8: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    format!("{slug}_{hash8}")
}

/// Whether a declared type is a plain type name with optional sizes
/// (`DECIMAL(10, 2)`, `int(10) unsigned`), safe to splice into DDL. Types
/// cannot be bound as parameters, so anything else is refused rather than
/// risk it carrying SQL.
pub(crate) fn is_plain_type(declared: &str) -> bool {
    let mut depth = 0i32;
    for c in declared.chars() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            c if c.is_ascii_alphanumeric() || matches!(c, ' ' | '_' | ',' | '.' | '+' | '-') => {}
            _ => return false,
        }
    }
    depth == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stems_are_short_valid_and_distinct() {
        let a = object_stem("my table", "my table");
        let b = object_stem("my_table", "my_table");
        assert_ne!(a, b, "names that slug alike must still differ");
        assert!(a.starts_with("mytable_") && a.len() == "mytable_".len() + 8, "{a}");
        let long = object_stem(&"é\"x".repeat(100), "id");
        assert!(long.len() <= 24 + 9 && long.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "{long}");
    }

    #[test]
    fn only_plain_types_pass() {
        assert!(is_plain_type("DECIMAL(10, 2)"));
        assert!(is_plain_type("int(10) unsigned"));
        assert!(!is_plain_type("INT); DROP TABLE x; --"));
        assert!(!is_plain_type("text)"));
        assert!(!is_plain_type("text COLLATE \"x\""));
    }
}

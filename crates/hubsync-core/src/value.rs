//! Column values as they travel between databases.

use serde::{Deserialize, Serialize};

/// One column value, in the storage classes every engine can represent
/// losslessly. Decimals, dates and timestamps travel as text so no precision is
/// lost on the way; each engine maps them back to its own types.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// A signed 64-bit integer (booleans travel as 0/1).
    Integer(i64),
    /// A 64-bit IEEE float.
    Real(f64),
    /// UTF-8 text.
    Text(String),
    /// Raw bytes.
    Blob(Vec<u8>),
}

impl Value {
    /// Approximate size in bytes, used to bound batches by bytes as well as rows.
    pub fn approx_size(&self) -> usize {
        match self {
            Value::Null => 1,
            Value::Integer(_) | Value::Real(_) => 8,
            Value::Text(s) => s.len(),
            Value::Blob(b) => b.len(),
        }
    }

    /// A short human-readable rendering for reports (long values are cut).
    pub fn display_short(&self) -> String {
        const MAX: usize = 40;
        let full = match self {
            Value::Null => "NULL".to_string(),
            Value::Integer(i) => i.to_string(),
            Value::Real(f) => f.to_string(),
            Value::Text(s) => format!("{s:?}"),
            Value::Blob(b) => format!("<{} bytes>", b.len()),
        };
        if full.chars().count() > MAX {
            let cut: String = full.chars().take(MAX).collect();
            format!("{cut}…")
        } else {
            full
        }
    }
}

/// Equality is bit-exact: two floats are equal when their bits are, so NaN
/// equals itself and -0.0 differs from 0.0. Sync must never treat a changed
/// value as unchanged.
impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Value::Null, Value::Null) => true,
            (Value::Integer(a), Value::Integer(b)) => a == b,
            (Value::Real(a), Value::Real(b)) => a.to_bits() == b.to_bits(),
            (Value::Text(a), Value::Text(b)) => a == b,
            (Value::Blob(a), Value::Blob(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for Value {}

/// Hashed as compared: floats by their bits.
impl std::hash::Hash for Value {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        std::mem::discriminant(self).hash(state);
        match self {
            Value::Null => {}
            Value::Integer(i) => i.hash(state),
            Value::Real(r) => r.to_bits().hash(state),
            Value::Text(t) => t.hash(state),
            Value::Blob(b) => b.hash(state),
        }
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Integer(v)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_string())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Real(v)
    }
}

impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Self {
        Value::Blob(v)
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

/// Formats a primary key for messages: `(1, "a")`.
pub fn format_key(key: &[Value]) -> String {
    let parts: Vec<String> = key.iter().map(Value::display_short).collect();
    format!("({})", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_equality_is_bit_exact() {
        assert_eq!(Value::Real(f64::NAN), Value::Real(f64::NAN));
        assert_ne!(Value::Real(0.0), Value::Real(-0.0));
        assert_ne!(Value::Integer(1), Value::Real(1.0));
    }

    #[test]
    fn long_values_are_cut_for_display() {
        let v = Value::Text("x".repeat(100));
        assert!(v.display_short().ends_with('…'));
        assert_eq!(format_key(&[Value::Integer(1), Value::Null]), "(1, NULL)");
    }
}

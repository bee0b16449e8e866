//! A JSON-RPC id exactly as the peer wrote it.
//!
//! Miners may send any JSON value as the id (numbers beyond 64 bits,
//! strings with escapes, null, even arrays); the answer must carry the same
//! bytes, or the miner cannot match it to its request. An [`Id`] keeps the
//! id's JSON text as read, and writes it back unchanged.

use serde_json::Value;

/// The JSON text of a request id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Id(Box<str>);

impl Id {
    /// `null`: notifications, and requests without an id.
    pub fn null() -> Self {
        Id("null".into())
    }

    /// The id `n`.
    pub fn number(n: u64) -> Self {
        Id(n.to_string().into())
    }

    /// `value` as JSON.
    pub fn from_value(value: &Value) -> Self {
        Id(value.to_string().into())
    }

    /// From JSON text, if it is one JSON value (kept as written).
    pub fn parse(text: &str) -> Option<Self> {
        serde_json::from_str::<&serde_json::value::RawValue>(text)
            .ok()
            .map(|raw| Id(raw.get().into()))
    }

    /// From JSON text a parser has already checked (a raw value).
    pub(crate) fn from_checked_json(text: &str) -> Self {
        Id(text.into())
    }

    /// The JSON text, as read.
    pub fn as_json(&self) -> &str {
        &self.0
    }

    /// The id as a `u64`, if it is one written plainly.
    pub fn as_u64(&self) -> Option<u64> {
        self.0.parse().ok()
    }

    /// Whether it is `null`.
    pub fn is_null(&self) -> bool {
        &*self.0 == "null"
    }

    /// The id as a JSON value (big integers lose precision).
    pub fn to_value(&self) -> Value {
        serde_json::from_str(&self.0).unwrap_or(Value::Null)
    }
}

impl Default for Id {
    fn default() -> Self {
        Id::null()
    }
}

impl From<u64> for Id {
    fn from(n: u64) -> Self {
        Id::number(n)
    }
}

impl std::fmt::Display for Id {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

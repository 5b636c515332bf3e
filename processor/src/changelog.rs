//! The state changelog topic (`topics.state`): the source of truth of the dedup state. RocksDB
//! ([`crate::store`]) is a local cache of it that any processor can rebuild ([`crate::restore`]).
//!
//! The topic is compacted and partition-aligned with the raw topic: partition `p` holds the dedup entries of
//! raw partition `p`, written by its owner inside the transaction that publishes the record's outputs and
//! commits its raw offset ([`crate::session`]), so an entry is visible to a read_committed reader exactly
//! when its outputs are. One record per entry, both JSON so `hookline tail hookline.state` reads them:
//!
//! - key `["stripe","evt_1"]` (source, dedup key): compaction keeps the latest record of each key;
//! - value `{"v":2,"expires_at_ms":1764460800000}`, or no value (a tombstone) once the entry expired: the
//!   owner sweeps expired entries ([`crate::store::Store::expired`]) so compaction can drop them.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::output::OutputRecord;

/// The changelog format version.
pub const VERSION: u32 = 2;

#[derive(Serialize, Deserialize)]
struct Value {
    v: u32,
    expires_at_ms: i64,
}

/// A changelog record's key: the entry's source and dedup key.
pub fn key(source: &str, dedup_key: &str) -> Vec<u8> {
    serde_json::to_vec(&(source, dedup_key)).unwrap_or_default()
}

/// A live entry's record value.
pub fn value(expires_at_ms: i64) -> Vec<u8> {
    serde_json::to_vec(&Value { v: VERSION, expires_at_ms }).unwrap_or_default()
}

/// One webhook to remember: a live entry of the dedup state.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Entry {
    /// Source name.
    pub source: String,
    /// Dedup key.
    pub dedup_key: String,
    /// When to forget it (ms).
    pub expires_at_ms: i64,
}

/// The changelog record of one key on `topic`: the entry until `expires_at_ms`, or its tombstone (`None`).
pub fn record(topic: &Arc<str>, source: &str, dedup_key: &str, expires_at_ms: Option<i64>) -> OutputRecord {
    OutputRecord {
        topic: topic.clone(),
        key: Some(key(source, dedup_key)),
        value: expires_at_ms.map(value),
        headers: Vec::new(),
    }
}

/// What a changelog record says about one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The entry exists until its expiry.
    Put(Entry),
    /// The entry is gone (a tombstone).
    Delete {
        /// The source.
        source: String,
        /// The dedup key.
        dedup_key: String,
    },
}

/// Reads a changelog record; `None` for a record that is not one (another format or version), which a
/// restore skips.
pub fn parse(key: Option<&[u8]>, value: Option<&[u8]>) -> Option<Change> {
    let (source, dedup_key): (String, String) = serde_json::from_slice(key?).ok()?;
    match value {
        None => Some(Change::Delete { source, dedup_key }),
        Some(bytes) => {
            let v: Value = serde_json::from_slice(bytes).ok().filter(|v: &Value| v.v == VERSION)?;
            Some(Change::Put(Entry { source, dedup_key, expires_at_ms: v.expires_at_ms }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_foreign_records_are_skipped() {
        let k = key("stripe", "evt_1");
        assert_eq!(k, br#"["stripe","evt_1"]"#);
        let put = parse(Some(&k), Some(&value(42)));
        assert_eq!(
            put,
            Some(Change::Put(Entry { source: "stripe".into(), dedup_key: "evt_1".into(), expires_at_ms: 42 }))
        );
        let gone = parse(Some(&k), None);
        assert_eq!(gone, Some(Change::Delete { source: "stripe".into(), dedup_key: "evt_1".into() }));
        assert_eq!(parse(None, Some(&value(42))), None, "a record without a key is not an entry");
        assert_eq!(parse(Some(&k), Some(br#"{"v":1,"entries":[]}"#)), None, "the old format is skipped");
    }
}

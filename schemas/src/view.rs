//! A JSON view of a Kafka record, the shape the `*-record` JSON Schemas describe and `hookline tail` prints.
//!
//! hookline's own headers (`hookline-*`) hold JSON objects and are shown parsed; other header values are shown
//! as text, with replacement characters where they are not UTF-8. When a header name occurs more than once,
//! the view keeps the last value (the one hookline's readers use).

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// One Kafka record as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordView {
    /// Topic name.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Record timestamp in ms, if the broker gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp_ms: Option<i64>,
    /// The key as UTF-8 text, or null when absent.
    pub key: Option<String>,
    /// Headers, name to value (parsed JSON for `hookline-*` headers, else text).
    pub headers: BTreeMap<String, serde_json::Value>,
    /// The value parsed as JSON (events topic).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<serde_json::Value>,
    /// The value as base64 (raw and DLQ topics, whose values are webhook bodies of any content type).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_base64: Option<String>,
}

/// How to show a record's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueAs {
    /// Parse as JSON; fall back to base64 if it is not JSON.
    Json,
    /// Always base64.
    Base64,
}

impl RecordView {
    /// Builds the view of one record.
    #[allow(clippy::too_many_arguments)]
    pub fn new<'a>(
        topic: &str,
        partition: i32,
        offset: i64,
        timestamp_ms: Option<i64>,
        key: Option<&[u8]>,
        headers: impl IntoIterator<Item = (&'a str, Option<&'a [u8]>)>,
        value: Option<&[u8]>,
        value_as: ValueAs,
    ) -> Self {
        let headers = headers
            .into_iter()
            .map(|(k, v)| {
                let bytes = v.unwrap_or_default();
                let parsed = k
                    .starts_with("hookline-")
                    .then(|| serde_json::from_slice::<serde_json::Value>(bytes).ok())
                    .flatten()
                    .filter(serde_json::Value::is_object);
                let value = parsed.unwrap_or_else(|| String::from_utf8_lossy(bytes).into_owned().into());
                (k.to_owned(), value)
            })
            .collect();
        let json = match (value_as, value) {
            (ValueAs::Json, Some(v)) => serde_json::from_slice(v).ok(),
            _ => None,
        };
        let value_base64 = match (&json, value) {
            (None, Some(v)) => Some(base64::engine::general_purpose::STANDARD.encode(v)),
            _ => None,
        };
        RecordView {
            topic: topic.to_owned(),
            partition,
            offset,
            timestamp_ms,
            key: key.map(|k| String::from_utf8_lossy(k).into_owned()),
            headers,
            value: json,
            value_base64,
        }
    }

    /// A header's JSON object, if it is one.
    pub fn header_json(&self, name: &str) -> Option<&serde_json::Value> {
        self.headers.get(name).filter(|v| v.is_object())
    }

    /// The value bytes, decoded from the view (JSON re-serialized, or base64 decoded).
    pub fn value_bytes(&self) -> Option<Vec<u8>> {
        if let Some(v) = &self.value_base64 {
            return base64::engine::general_purpose::STANDARD.decode(v).ok();
        }
        self.value.as_ref().and_then(|v| serde_json::to_vec(v).ok())
    }
}

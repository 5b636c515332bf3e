//! The raw topic's record: what the ingress stores for every accepted webhook and the processor reads.
//!
//! - key: the ordering key (UTF-8). Records with the same key land in the same partition and keep their order.
//! - value: the request body, byte for byte as received.
//! - headers: one, [`crate::header::META`], the JSON [`RawMeta`].
//!
//! Deduplication is per raw partition, so the ordering key must be a function of the webhook itself (a field
//! of the body or a header the provider repeats on redelivery): a redelivered webhook then lands in the same
//! partition as its first delivery.

use serde::{Deserialize, Serialize};

use crate::header;

/// Longest dedup key kept verbatim; a longer one is replaced by `sha256:` and its hex digest
/// (see [`bounded_key`]), so a hostile sender cannot make records or dedup entries arbitrarily large.
pub const MAX_KEY_BYTES: usize = 256;

/// Where the dedup key of a raw record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyOrigin {
    /// A request header named in the source's config.
    Header,
    /// A JSON pointer into the body, named in the source's config.
    JsonPointer,
    /// The provider's own delivery or event id (for example Stripe's event `id`).
    Provider,
    /// No key was configured or found: the SHA-256 of the body.
    BodySha256,
}

impl KeyOrigin {
    /// Every origin, in a fixed order (for metric label sets).
    pub const ALL: [KeyOrigin; 4] =
        [KeyOrigin::Header, KeyOrigin::JsonPointer, KeyOrigin::Provider, KeyOrigin::BodySha256];

    /// Its name (`dedup_key_origin` in [`RawMeta`], and a metric label).
    pub fn as_str(self) -> &'static str {
        match self {
            KeyOrigin::Header => "header",
            KeyOrigin::JsonPointer => "json_pointer",
            KeyOrigin::Provider => "provider",
            KeyOrigin::BodySha256 => "body_sha256",
        }
    }
}

/// The metadata of a raw record: the JSON value of its [`header::META`] header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RawMeta {
    /// Contract version, [`header::VERSION`].
    pub v: u32,
    /// The configured source name.
    pub source: String,
    /// When the ingress finished reading the body, in ms since the Unix epoch.
    pub received_at_ms: i64,
    /// The dedup key (at most [`MAX_KEY_BYTES`] bytes).
    pub dedup_key: String,
    /// Where the dedup key came from.
    pub dedup_key_origin: KeyOrigin,
    /// The request's `Content-Type`, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// The id the ingress gave the request.
    pub request_id: String,
    /// The request's headers without credentials: `[name, value]` pairs in the order received, lowercase
    /// names; a header sent several times appears several times. Values that are not UTF-8 are kept with
    /// replacement characters.
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    /// The W3C `traceparent` of the webhook's trace, when it has one (`hookline_runtime::traces`): the
    /// ingress's span, or the context the request came with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// Set when an operator sent this webhook through the processor again (`hookline dlq redrive`,
    /// `hookline replay`): absent on what the ingress writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reprocess: Option<Reprocess>,
}

/// Why and when a webhook already on the raw topic was written to it again.
///
/// The processor deduplicates such a record on `{kind}:{id}/{dedup_key}` instead of its dedup key, so it is
/// processed even though the webhook already has an output (its DLQ record, or the events a replay
/// re-derives), and exactly once per redriven DLQ record or per replay run. Its outputs keep the webhook's
/// dedup key (and so the event ids).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reprocess {
    /// `redrive` (a DLQ record sent back) or `replay` (raw records re-derived).
    pub kind: ReprocessKind,
    /// What makes it unique: the DLQ record's `topic:partition:offset`, or the replay run's id.
    pub id: String,
    /// When it was written again, in ms since the Unix epoch (its dedup entry lasts the source's window from then).
    pub at_ms: i64,
}

/// The kind of [`Reprocess`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReprocessKind {
    /// A DLQ record sent back through the processor.
    Redrive,
    /// Raw records re-derived into events (after a mapping fix).
    Replay,
}

impl ReprocessKind {
    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            ReprocessKind::Redrive => "redrive",
            ReprocessKind::Replay => "replay",
        }
    }
}

/// A raw record's headers could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HeaderError {
    /// A required header is absent.
    #[error("header `{0}` is missing")]
    Missing(&'static str),
    /// A header is present but its value cannot be used.
    #[error("header `{name}` is invalid: {why}")]
    Invalid {
        /// The header name.
        name: &'static str,
        /// What is wrong with it.
        why: String,
    },
    /// The record was written under a contract version this build does not read.
    #[error("header `{name}` has version {version}; this build reads version {}", header::VERSION)]
    UnsupportedVersion {
        /// The header name.
        name: &'static str,
        /// The version found.
        version: u32,
    },
}

/// Parses the JSON object of header `name`, checking its `v`.
pub(crate) fn parse_header<'a, T: serde::de::DeserializeOwned>(
    headers: impl IntoIterator<Item = (&'a str, Option<&'a [u8]>)>,
    name: &'static str,
) -> Result<T, HeaderError> {
    #[derive(Deserialize)]
    struct Version {
        v: u32,
    }
    let raw = header::last(headers, name).ok_or(HeaderError::Missing(name))?;
    let version: Version = serde_json::from_slice(raw)
        .map_err(|e| HeaderError::Invalid { name, why: format!("not a versioned JSON object: {e}") })?;
    if version.v != header::VERSION {
        return Err(HeaderError::UnsupportedVersion { name, version: version.v });
    }
    serde_json::from_slice(raw).map_err(|e| HeaderError::Invalid { name, why: e.to_string() })
}

impl RawMeta {
    /// The header to write on the raw record.
    pub fn to_header(&self) -> (&'static str, Vec<u8>) {
        // Serializing a struct of strings and integers cannot fail.
        (header::META, serde_json::to_vec(self).unwrap_or_default())
    }

    /// Reads the metadata from a raw record's headers (the last [`header::META`] counts).
    pub fn from_headers<'a, I>(headers: I) -> Result<Self, HeaderError>
    where
        I: IntoIterator<Item = (&'a str, Option<&'a [u8]>)>,
    {
        let meta: RawMeta = parse_header(headers, header::META)?;
        let invalid = |why: &str| HeaderError::Invalid { name: header::META, why: why.to_owned() };
        if !crate::is_valid_source_name(&meta.source) {
            return Err(invalid("`source` is not a valid source name"));
        }
        if meta.dedup_key.is_empty() || meta.dedup_key.len() > MAX_KEY_BYTES {
            return Err(invalid("`dedup_key` is empty or longer than 256 bytes"));
        }
        Ok(meta)
    }

    /// The first value of a request header, by case-insensitive name.
    pub fn http_header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Bounds a key to [`MAX_KEY_BYTES`]: a longer key becomes `sha256:` followed by the hex SHA-256 of the key.
/// The result is a function of the key alone, so a redelivery gets the same bounded key.
pub fn bounded_key(key: &str) -> std::borrow::Cow<'_, str> {
    use sha2::{Digest, Sha256};
    if key.len() <= MAX_KEY_BYTES {
        return std::borrow::Cow::Borrowed(key);
    }
    std::borrow::Cow::Owned(format!("sha256:{}", hex::encode(Sha256::digest(key.as_bytes()))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> RawMeta {
        RawMeta {
            v: header::VERSION,
            source: "shop".into(),
            received_at_ms: 1_700_000_000_123,
            dedup_key: "evt_1".into(),
            dedup_key_origin: KeyOrigin::JsonPointer,
            content_type: Some("application/json".into()),
            request_id: "0f0e".into(),
            headers: vec![("x-github-event".into(), "push".into()), ("accept".into(), "*/*".into())],
            traceparent: None,
            reprocess: None,
        }
    }

    fn read(headers: &[(&'static str, Vec<u8>)]) -> Result<RawMeta, HeaderError> {
        RawMeta::from_headers(headers.iter().map(|(k, v)| (*k, Some(v.as_slice()))))
    }

    #[test]
    fn the_header_round_trips() {
        let meta = sample();
        let back = read(&[meta.to_header()]).unwrap();
        assert_eq!(back, meta);
        assert_eq!(back.http_header("X-GitHub-Event"), Some("push"));
        let (name, value) = meta.to_header();
        assert_eq!(name, "hookline-meta");
        let json: serde_json::Value = serde_json::from_slice(&value).unwrap();
        assert_eq!(json["dedup_key_origin"], "json_pointer");
        assert_eq!(json["headers"][0], serde_json::json!(["x-github-event", "push"]));
    }

    #[test]
    fn missing_invalid_and_future_headers_are_named() {
        assert_eq!(read(&[]), Err(HeaderError::Missing(header::META)));
        assert!(matches!(read(&[(header::META, b"not json".to_vec())]), Err(HeaderError::Invalid { .. })));
        let mut future = serde_json::to_value(sample()).unwrap();
        future["v"] = 2.into();
        future["new_field"] = "x".into();
        assert_eq!(
            read(&[(header::META, serde_json::to_vec(&future).unwrap())]),
            Err(HeaderError::UnsupportedVersion { name: header::META, version: 2 })
        );
        let mut no_key = sample();
        no_key.dedup_key = String::new();
        assert!(matches!(read(&[no_key.to_header()]), Err(HeaderError::Invalid { .. })));
        let mut bad_source = sample();
        bad_source.source = "../x".into();
        assert!(matches!(read(&[bad_source.to_header()]), Err(HeaderError::Invalid { .. })));
    }

    #[test]
    fn long_keys_are_hashed_deterministically() {
        assert_eq!(bounded_key("short"), "short");
        let exact = "k".repeat(MAX_KEY_BYTES);
        assert_eq!(bounded_key(&exact), exact.as_str());
        let long = "k".repeat(MAX_KEY_BYTES + 1);
        let bounded = bounded_key(&long);
        assert!(bounded.starts_with("sha256:"), "{bounded}");
        assert_eq!(bounded.len(), 7 + 64);
        assert_eq!(bounded, bounded_key(&long));
        assert_ne!(bounded, bounded_key(&"k".repeat(MAX_KEY_BYTES + 2)));
    }
}

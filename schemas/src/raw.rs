//! The raw topic's record: what the ingress stores for every accepted webhook and the processor reads.
//!
//! - key: the ordering key (UTF-8). Records with the same key land in the same partition and keep their order.
//! - value: the request body, byte for byte as received.
//! - headers: [`RawMeta`], written with the names in [`crate::header`].
//!
//! Deduplication is per raw partition, so the ordering key must be a function of the webhook itself (a field
//! of the body or a header the provider repeats on redelivery): a redelivered webhook then lands in the same
//! partition as its first delivery.

use crate::header;

/// Longest dedup key kept verbatim; a longer one is replaced by `sha256:` and its hex digest
/// (see [`bounded_key`]), so a hostile sender cannot make Kafka headers or dedup entries arbitrarily large.
pub const MAX_KEY_BYTES: usize = 256;

/// Where the dedup key of a raw record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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

    /// The name written in the [`header::DEDUP_KEY_ORIGIN`] header.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyOrigin::Header => "header",
            KeyOrigin::JsonPointer => "json_pointer",
            KeyOrigin::Provider => "provider",
            KeyOrigin::BodySha256 => "body_sha256",
        }
    }

    /// Parses a name written by [`KeyOrigin::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.as_str() == s)
    }
}

/// The metadata of a raw record, carried in its headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawMeta {
    /// The configured source name.
    pub source: String,
    /// When the ingress finished reading the body, in ms since the Unix epoch.
    pub received_at_ms: i64,
    /// The dedup key (at most [`MAX_KEY_BYTES`] bytes).
    pub dedup_key: String,
    /// Where the dedup key came from.
    pub dedup_key_origin: KeyOrigin,
    /// The request's `Content-Type`, if any.
    pub content_type: Option<String>,
    /// The id the ingress gave the request.
    pub request_id: String,
    /// The request's headers without credentials: lowercase names without the `http-` prefix, in the order
    /// received; a header sent several times appears several times.
    pub http_headers: Vec<(String, Vec<u8>)>,
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
        why: &'static str,
    },
    /// The record was written under a contract version this build does not read.
    #[error("unsupported record version `{0}`")]
    UnsupportedVersion(String),
}

impl RawMeta {
    /// The headers to write on the raw record, in a stable order.
    pub fn to_headers(&self) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::with_capacity(7 + self.http_headers.len());
        out.push((header::VERSION.to_owned(), header::RECORD_VERSION.as_bytes().to_vec()));
        out.push((header::SOURCE.to_owned(), self.source.as_bytes().to_vec()));
        out.push((header::RECEIVED_AT_MS.to_owned(), self.received_at_ms.to_string().into_bytes()));
        out.push((header::DEDUP_KEY.to_owned(), self.dedup_key.as_bytes().to_vec()));
        out.push((header::DEDUP_KEY_ORIGIN.to_owned(), self.dedup_key_origin.as_str().as_bytes().to_vec()));
        if let Some(ct) = &self.content_type {
            out.push((header::CONTENT_TYPE.to_owned(), ct.as_bytes().to_vec()));
        }
        out.push((header::REQUEST_ID.to_owned(), self.request_id.as_bytes().to_vec()));
        for (name, value) in &self.http_headers {
            out.push((format!("{}{name}", header::HTTP_PREFIX), value.clone()));
        }
        out
    }

    /// Reads the metadata from a raw record's headers. Unknown headers are ignored, so later versions may add some.
    pub fn from_headers<'a, I>(headers: I) -> Result<Self, HeaderError>
    where
        I: IntoIterator<Item = (&'a str, Option<&'a [u8]>)>,
    {
        let mut version = None;
        let mut source = None;
        let mut received = None;
        let mut dedup_key = None;
        let mut origin = None;
        let mut content_type = None;
        let mut request_id = None;
        let mut http_headers = Vec::new();
        for (name, value) in headers {
            let value = value.unwrap_or_default();
            match name {
                header::VERSION => version = Some(value),
                header::SOURCE => source = Some(text(header::SOURCE, value)?),
                header::RECEIVED_AT_MS => received = Some(text(header::RECEIVED_AT_MS, value)?),
                header::DEDUP_KEY => dedup_key = Some(text(header::DEDUP_KEY, value)?),
                header::DEDUP_KEY_ORIGIN => origin = Some(text(header::DEDUP_KEY_ORIGIN, value)?),
                header::CONTENT_TYPE => content_type = Some(text(header::CONTENT_TYPE, value)?.to_owned()),
                header::REQUEST_ID => request_id = Some(text(header::REQUEST_ID, value)?),
                _ => {
                    if let Some(http) = name.strip_prefix(header::HTTP_PREFIX) {
                        http_headers.push((http.to_owned(), value.to_vec()));
                    }
                }
            }
        }
        let version = version.ok_or(HeaderError::Missing(header::VERSION))?;
        if version != header::RECORD_VERSION.as_bytes() {
            return Err(HeaderError::UnsupportedVersion(String::from_utf8_lossy(version).into_owned()));
        }
        let source = source.ok_or(HeaderError::Missing(header::SOURCE))?;
        if source.is_empty() {
            return Err(HeaderError::Invalid { name: header::SOURCE, why: "empty" });
        }
        let received_at_ms = received
            .ok_or(HeaderError::Missing(header::RECEIVED_AT_MS))?
            .parse::<i64>()
            .map_err(|_| HeaderError::Invalid { name: header::RECEIVED_AT_MS, why: "not an integer" })?;
        let dedup_key = dedup_key.ok_or(HeaderError::Missing(header::DEDUP_KEY))?;
        if dedup_key.is_empty() || dedup_key.len() > MAX_KEY_BYTES {
            return Err(HeaderError::Invalid { name: header::DEDUP_KEY, why: "empty or too long" });
        }
        let dedup_key_origin = origin
            .map(|o| {
                KeyOrigin::parse(o)
                    .ok_or(HeaderError::Invalid { name: header::DEDUP_KEY_ORIGIN, why: "unknown origin" })
            })
            .transpose()?
            .ok_or(HeaderError::Missing(header::DEDUP_KEY_ORIGIN))?;
        Ok(RawMeta {
            source: source.to_owned(),
            received_at_ms,
            dedup_key: dedup_key.to_owned(),
            dedup_key_origin,
            content_type,
            request_id: request_id.ok_or(HeaderError::Missing(header::REQUEST_ID))?.to_owned(),
            http_headers,
        })
    }

    /// The first value of a request header, by case-insensitive name.
    pub fn http_header(&self, name: &str) -> Option<&[u8]> {
        self.http_headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_slice())
    }
}

fn text<'a>(name: &'static str, value: &'a [u8]) -> Result<&'a str, HeaderError> {
    std::str::from_utf8(value).map_err(|_| HeaderError::Invalid { name, why: "not UTF-8" })
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
            source: "shop".into(),
            received_at_ms: 1_700_000_000_123,
            dedup_key: "evt_1".into(),
            dedup_key_origin: KeyOrigin::JsonPointer,
            content_type: Some("application/json".into()),
            request_id: "0f0e".into(),
            http_headers: vec![("x-github-event".into(), b"push".to_vec()), ("accept".into(), b"*/*".to_vec())],
        }
    }

    #[test]
    fn headers_round_trip() {
        let meta = sample();
        let headers = meta.to_headers();
        let back = RawMeta::from_headers(headers.iter().map(|(k, v)| (k.as_str(), Some(v.as_slice())))).unwrap();
        assert_eq!(back, meta);
        assert_eq!(back.http_header("X-GitHub-Event"), Some(&b"push"[..]));
    }

    #[test]
    fn missing_and_invalid_headers_are_named() {
        let meta = sample();
        let headers = meta.to_headers();
        let without = |name: &str| {
            RawMeta::from_headers(
                headers.iter().filter(|(k, _)| k != name).map(|(k, v)| (k.as_str(), Some(v.as_slice()))),
            )
        };
        assert_eq!(without(header::DEDUP_KEY), Err(HeaderError::Missing(header::DEDUP_KEY)));
        assert_eq!(without(header::VERSION), Err(HeaderError::Missing(header::VERSION)));
        let bad_time = headers.iter().map(|(k, v)| {
            if k == header::RECEIVED_AT_MS {
                (k.as_str(), Some(&b"yesterday"[..]))
            } else {
                (k.as_str(), Some(v.as_slice()))
            }
        });
        assert!(matches!(
            RawMeta::from_headers(bad_time),
            Err(HeaderError::Invalid { name: header::RECEIVED_AT_MS, .. })
        ));
        let future = headers.iter().map(|(k, v)| {
            if k == header::VERSION {
                (k.as_str(), Some(&b"2"[..]))
            } else {
                (k.as_str(), Some(v.as_slice()))
            }
        });
        assert_eq!(RawMeta::from_headers(future), Err(HeaderError::UnsupportedVersion("2".into())));
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

//! Dedup and ordering keys of a verified request.
//!
//! The dedup key says "this is the same webhook again"; the ordering key says "these webhooks are about the
//! same thing, keep them in order". Both must be functions of the webhook itself, so that a redelivery gets
//! the same keys and lands in the same partition as the first delivery.

use hookline_schemas::raw::{bounded_key, KeyOrigin};
use http::{HeaderMap, HeaderName};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Where a key is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySelector {
    /// A request header.
    Header(HeaderName),
    /// A JSON pointer into the body.
    JsonPointer(String),
}

/// The body parsed as JSON at most once, on first use.
#[derive(Debug)]
pub struct LazyJson<'a> {
    body: &'a [u8],
    parsed: Option<Option<Value>>,
}

impl<'a> LazyJson<'a> {
    /// Wraps a body.
    pub fn new(body: &'a [u8]) -> Self {
        LazyJson { body, parsed: None }
    }

    fn get(&mut self) -> Option<&Value> {
        let body = self.body;
        self.parsed
            .get_or_insert_with(|| serde_json::from_slice(body).ok())
            .as_ref()
    }
}

impl KeySelector {
    /// The key, if the request has a usable one: a non-empty header value that is UTF-8, or a JSON string or
    /// number at the pointer. Longer than [`hookline_schemas::raw::MAX_KEY_BYTES`] keys are hashed.
    pub fn extract(&self, headers: &HeaderMap, json: &mut LazyJson<'_>) -> Option<String> {
        let raw = match self {
            KeySelector::Header(name) => headers.get(name)?.to_str().ok()?.trim().to_owned(),
            KeySelector::JsonPointer(pointer) => match json.get()?.pointer(pointer)? {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                _ => return None,
            },
        };
        if raw.is_empty() {
            return None;
        }
        Some(bounded_key(&raw).into_owned())
    }

    /// The origin recorded when this selector supplied the dedup key.
    pub fn origin(&self) -> KeyOrigin {
        match self {
            KeySelector::Header(_) => KeyOrigin::Header,
            KeySelector::JsonPointer(_) => KeyOrigin::JsonPointer,
        }
    }
}

/// The keys of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    /// The dedup key.
    pub dedup: String,
    /// Where it came from.
    pub dedup_origin: KeyOrigin,
    /// The ordering key (the Kafka record key).
    pub ordering: String,
}

/// Works out the keys of a verified request.
pub fn keys(
    dedup: Option<&KeySelector>,
    ordering: Option<&KeySelector>,
    headers: &HeaderMap,
    body: &[u8],
) -> Keys {
    let mut json = LazyJson::new(body);
    let (dedup, dedup_origin) =
        match dedup.and_then(|sel| sel.extract(headers, &mut json).map(|k| (k, sel.origin()))) {
            Some(found) => found,
            None => (body_sha256(body), KeyOrigin::BodySha256),
        };
    let ordering = ordering
        .and_then(|sel| sel.extract(headers, &mut json))
        .unwrap_or_else(|| dedup.clone());
    Keys {
        dedup,
        dedup_origin,
        ordering,
    }
}

/// `sha256:` and the hex SHA-256 of the body.
pub fn body_sha256(body: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(body)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn keys_from_header_and_pointer() {
        let h = headers(&[("x-event-id", "evt_42")]);
        let body = br#"{"data":{"object":{"id":"cus_1","n":7}}}"#;
        let k = keys(
            Some(&KeySelector::Header(HeaderName::from_static("x-event-id"))),
            Some(&KeySelector::JsonPointer("/data/object/id".into())),
            &h,
            body,
        );
        assert_eq!(
            k,
            Keys {
                dedup: "evt_42".into(),
                dedup_origin: KeyOrigin::Header,
                ordering: "cus_1".into()
            }
        );
        let k = keys(
            Some(&KeySelector::JsonPointer("/data/object/n".into())),
            None,
            &h,
            body,
        );
        assert_eq!(k.dedup, "7");
        assert_eq!(k.dedup_origin, KeyOrigin::JsonPointer);
        assert_eq!(k.ordering, "7", "ordering falls back to the dedup key");
    }

    #[test]
    fn missing_keys_fall_back_to_the_body_hash() {
        let body = b"not json";
        let k = keys(
            Some(&KeySelector::JsonPointer("/id".into())),
            Some(&KeySelector::Header(HeaderName::from_static("x-missing"))),
            &HeaderMap::new(),
            body,
        );
        assert_eq!(k.dedup_origin, KeyOrigin::BodySha256);
        assert_eq!(k.dedup, body_sha256(body));
        assert_eq!(k.ordering, k.dedup);
        let objects = keys(
            Some(&KeySelector::JsonPointer("/id".into())),
            None,
            &HeaderMap::new(),
            br#"{"id":{}}"#,
        );
        assert_eq!(
            objects.dedup_origin,
            KeyOrigin::BodySha256,
            "objects are not keys"
        );
        let empty = keys(
            Some(&KeySelector::JsonPointer("/id".into())),
            None,
            &HeaderMap::new(),
            br#"{"id":""}"#,
        );
        assert_eq!(
            empty.dedup_origin,
            KeyOrigin::BodySha256,
            "empty strings are not keys"
        );
    }

    #[test]
    fn the_body_hash_is_the_sha256_of_the_exact_bytes() {
        assert_eq!(
            body_sha256(b"abc"),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_ne!(body_sha256(b"{\"a\":1}"), body_sha256(b"{\"a\": 1}"));
    }
}

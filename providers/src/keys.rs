//! Dedup and ordering keys of a verified request.
//!
//! The dedup key says "this is the same webhook again"; the ordering key says "these webhooks are about the
//! same thing, keep them in order". Both must be functions of the webhook itself, so that a redelivery gets
//! the same keys and lands in the same partition as the first delivery.

use std::borrow::Cow;

use hookline_schemas::raw::{bounded_key, KeyOrigin};
use http::{HeaderMap, HeaderName};
use serde::de::{Deserializer as _, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The body as JSON, checked at most once, on first use, and never built as a whole: a key is found by
/// scanning the document along its pointer ([`pointer`]), keeping the one member wanted at each level and
/// skipping the rest; only the key's own value is parsed. (Building a `Value` of every body was a tenth of
/// the ingress's own CPU time per webhook.)
#[derive(Debug)]
pub struct LazyJson<'a> {
    body: &'a [u8],
    parsed: Option<Option<&'a RawValue>>,
}

impl<'a> LazyJson<'a> {
    /// Wraps a body.
    pub fn new(body: &'a [u8]) -> Self {
        LazyJson { body, parsed: None }
    }

    /// The document, or `None` if the body is not JSON.
    pub fn get(&mut self) -> Option<&'a RawValue> {
        let body = self.body;
        *self.parsed.get_or_insert_with(|| serde_json::from_slice::<&RawValue>(body).ok())
    }
}

/// The value at JSON pointer `pointer` (RFC 6901) in `doc`, as `serde_json::Value::pointer` finds it.
pub fn pointer<'a>(doc: &'a RawValue, pointer: &str) -> Option<&'a RawValue> {
    if pointer.is_empty() {
        return Some(doc);
    }
    let mut at = doc;
    for token in pointer.strip_prefix('/')?.split('/') {
        let token = if token.contains('~') {
            Cow::Owned(token.replace("~1", "/").replace("~0", "~"))
        } else {
            Cow::Borrowed(token)
        };
        at = member(at, &token)?;
    }
    Some(at)
}

/// Member `token` of an object, or element `token` of an array; `None` for anything else.
fn member<'a>(value: &'a RawValue, token: &str) -> Option<&'a RawValue> {
    if !value.get().starts_with(['{', '[']) {
        return None;
    }
    serde_json::Deserializer::from_str(value.get()).deserialize_any(Member { token }).ok().flatten()
}

/// Scans one object or array for one member, borrowing it and skipping the others (the last of duplicate
/// keys wins, as in `serde_json::Value`).
struct Member<'t> {
    token: &'t str,
}

impl<'de> Visitor<'de> for Member<'_> {
    type Value = Option<&'de RawValue>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object or array")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(Key(key)) = map.next_key()? {
            if key == self.token {
                found = Some(map.next_value::<&RawValue>()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        // Indexes as `serde_json::Value::pointer` reads them: digits, no sign, no leading zero.
        let wanted = (!self.token.starts_with('+') && (self.token == "0" || !self.token.starts_with('0')))
            .then(|| self.token.parse::<usize>().ok())
            .flatten();
        let (mut found, mut i) = (None, 0);
        loop {
            if Some(i) == wanted {
                match seq.next_element::<&RawValue>()? {
                    Some(v) => found = Some(v),
                    None => break,
                }
            } else if seq.next_element::<IgnoredAny>()?.is_none() {
                break;
            }
            i += 1;
        }
        Ok(found)
    }
}

/// An object key, borrowed from the document unless it has escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

/// A JSON string's text.
pub fn as_str(v: &RawValue) -> Option<String> {
    v.get().starts_with('"').then(|| serde_json::from_str(v.get()).ok()).flatten()
}

/// A JSON non-negative integer.
pub fn as_u64(v: &RawValue) -> Option<u64> {
    serde_json::from_str::<Value>(v.get()).ok()?.as_u64()
}

/// A provider's key that is not a single header or pointer: a function of the headers and the JSON body,
/// written in the provider's module (GitHub's repository and pull request number, say).
#[derive(Clone, Copy)]
pub struct KeyFn {
    /// How `hookline config check` shows it (`github entity`).
    pub name: &'static str,
    /// The key, if the request has one.
    pub extract: fn(&HeaderMap, &RawValue) -> Option<String>,
}

impl std::fmt::Debug for KeyFn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

impl PartialEq for KeyFn {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for KeyFn {}

/// Where a key's text comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    Header(HeaderName),
    /// The first header if present, else the second (Svix ids under either name).
    HeaderOr(HeaderName, HeaderName),
    JsonPointer(String),
    Preset(KeyFn),
}

/// Where a key is read from, and whether the source configured it or the provider's scheme supplied it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySelector {
    source: Source,
    origin: KeyOrigin,
}

impl KeySelector {
    /// A header the source configured.
    pub fn header(name: HeaderName) -> Self {
        KeySelector { source: Source::Header(name), origin: KeyOrigin::Header }
    }

    /// A JSON pointer the source configured.
    pub fn pointer(pointer: String) -> Self {
        KeySelector { source: Source::JsonPointer(pointer), origin: KeyOrigin::JsonPointer }
    }

    /// A provider's own id header.
    pub fn provider_header(name: HeaderName) -> Self {
        KeySelector { source: Source::Header(name), origin: KeyOrigin::Provider }
    }

    /// A provider's own id header, under either of two names.
    pub fn provider_header_or(first: HeaderName, second: HeaderName) -> Self {
        KeySelector { source: Source::HeaderOr(first, second), origin: KeyOrigin::Provider }
    }

    /// A provider's own id field.
    pub fn provider_pointer(pointer: &str) -> Self {
        KeySelector { source: Source::JsonPointer(pointer.to_owned()), origin: KeyOrigin::Provider }
    }

    /// A provider's own key function.
    pub fn preset(preset: KeyFn) -> Self {
        KeySelector { source: Source::Preset(preset), origin: KeyOrigin::Provider }
    }

    /// The origin recorded when this selector supplied the dedup key.
    pub fn origin(&self) -> KeyOrigin {
        self.origin
    }

    /// The key, if the request has a usable one: a non-empty UTF-8 header value, or a JSON string or number.
    /// Keys longer than [`hookline_schemas::raw::MAX_KEY_BYTES`] are hashed.
    pub fn extract(&self, headers: &HeaderMap, json: &mut LazyJson<'_>) -> Option<String> {
        let raw = match &self.source {
            Source::Header(name) => header_text(headers, name)?,
            Source::HeaderOr(first, second) => header_text(headers, first).or_else(|| header_text(headers, second))?,
            Source::JsonPointer(p) => scalar(pointer(json.get()?, p)?)?,
            Source::Preset(preset) => (preset.extract)(headers, json.get()?)?,
        };
        if raw.is_empty() {
            return None;
        }
        Some(bounded_key(&raw).into_owned())
    }
}

/// How an operator reads a selector (`hookline config check`): `header X-Event-Id`, `json /id`,
/// `provider header X-GitHub-Delivery`, `provider header svix-id or webhook-id`, `preset github entity`.
/// Header names print in their canonical lowercase form.
impl std::fmt::Display for KeySelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.origin == KeyOrigin::Provider && !matches!(self.source, Source::Preset(_)) {
            f.write_str("provider ")?;
        }
        match &self.source {
            Source::Header(name) => write!(f, "header {name}"),
            Source::HeaderOr(first, second) => write!(f, "header {first} or {second}"),
            Source::JsonPointer(pointer) => write!(f, "json {pointer}"),
            Source::Preset(preset) => write!(f, "preset {}", preset.name),
        }
    }
}

fn header_text(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    Some(headers.get(name)?.to_str().ok()?.trim().to_owned())
}

/// A JSON string's text or a number's, else `None`.
pub fn scalar(v: &RawValue) -> Option<String> {
    if !v.get().starts_with(|c: char| c == '"' || c == '-' || c.is_ascii_digit()) {
        return None; // objects, arrays, booleans, null: never parsed
    }
    match serde_json::from_str::<Value>(v.get()).ok()? {
        Value::String(s) => Some(s),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
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

/// Works out the keys of a verified request: the configured selectors, else the provider's, else the
/// body's SHA-256 (dedup) and the dedup key (ordering).
pub fn keys(dedup: Option<&KeySelector>, ordering: Option<&KeySelector>, headers: &HeaderMap, body: &[u8]) -> Keys {
    let mut json = LazyJson::new(body);
    let (dedup, dedup_origin) = match dedup.and_then(|sel| sel.extract(headers, &mut json).map(|k| (k, sel.origin()))) {
        Some(found) => found,
        None => (body_sha256(body), KeyOrigin::BodySha256),
    };
    let ordering = ordering.and_then(|sel| sel.extract(headers, &mut json)).unwrap_or_else(|| dedup.clone());
    Keys { dedup, dedup_origin, ordering }
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
            Some(&KeySelector::header(HeaderName::from_static("x-event-id"))),
            Some(&KeySelector::pointer("/data/object/id".into())),
            &h,
            body,
        );
        assert_eq!(k, Keys { dedup: "evt_42".into(), dedup_origin: KeyOrigin::Header, ordering: "cus_1".into() });
        let k = keys(Some(&KeySelector::pointer("/data/object/n".into())), None, &h, body);
        assert_eq!(k.dedup, "7");
        assert_eq!(k.dedup_origin, KeyOrigin::JsonPointer);
        assert_eq!(k.ordering, "7", "ordering falls back to the dedup key");
    }

    #[test]
    fn missing_keys_fall_back_to_the_body_hash() {
        let body = b"not json";
        let k = keys(
            Some(&KeySelector::pointer("/id".into())),
            Some(&KeySelector::header(HeaderName::from_static("x-missing"))),
            &HeaderMap::new(),
            body,
        );
        assert_eq!(k.dedup_origin, KeyOrigin::BodySha256);
        assert_eq!(k.dedup, body_sha256(body));
        assert_eq!(k.ordering, k.dedup);
        let objects = keys(Some(&KeySelector::pointer("/id".into())), None, &HeaderMap::new(), br#"{"id":{}}"#);
        assert_eq!(objects.dedup_origin, KeyOrigin::BodySha256, "objects are not keys");
        let empty = keys(Some(&KeySelector::pointer("/id".into())), None, &HeaderMap::new(), br#"{"id":""}"#);
        assert_eq!(empty.dedup_origin, KeyOrigin::BodySha256, "empty strings are not keys");
    }

    /// A provider key function: the id of a batch's last element.
    const LAST: KeyFn = KeyFn {
        name: "last element",
        extract: |_, body| {
            let n = serde_json::from_str::<Vec<&RawValue>>(body.get()).ok()?.len();
            scalar(pointer(body, &format!("/{}/id", n.checked_sub(1)?))?)
        },
    };

    #[test]
    fn provider_keys() {
        let last = KeySelector::preset(LAST);
        let mut batch = LazyJson::new(br#"[{"id":1},{"id":2}]"#);
        assert_eq!(last.extract(&HeaderMap::new(), &mut batch).as_deref(), Some("2"));
        assert_eq!(last.origin(), KeyOrigin::Provider);
        assert_eq!(last.extract(&HeaderMap::new(), &mut LazyJson::new(b"{}")), None);

        let svix =
            KeySelector::provider_header_or(HeaderName::from_static("svix-id"), HeaderName::from_static("webhook-id"));
        assert_eq!(
            svix.extract(&headers(&[("webhook-id", "msg_1")]), &mut LazyJson::new(b"")).as_deref(),
            Some("msg_1")
        );
        assert_eq!(
            svix.extract(&headers(&[("webhook-id", "msg_1"), ("svix-id", "msg_2")]), &mut LazyJson::new(b""))
                .as_deref(),
            Some("msg_2")
        );
    }

    #[test]
    fn selectors_display_where_the_key_comes_from() {
        assert_eq!(KeySelector::header(HeaderName::from_static("x-event-id")).to_string(), "header x-event-id");
        assert_eq!(KeySelector::pointer("/data/id".into()).to_string(), "json /data/id");
        assert_eq!(
            KeySelector::provider_header(HeaderName::from_static("x-github-delivery")).to_string(),
            "provider header x-github-delivery"
        );
        assert_eq!(KeySelector::provider_pointer("/id").to_string(), "provider json /id");
        assert_eq!(
            KeySelector::provider_header_or(HeaderName::from_static("svix-id"), HeaderName::from_static("webhook-id"))
                .to_string(),
            "provider header svix-id or webhook-id"
        );
        assert_eq!(KeySelector::preset(LAST).to_string(), "preset last element");
    }

    #[test]
    fn pointers_find_what_serde_json_value_pointer_finds() {
        let docs = [
            r#"{"id":"evt_1","data":{"object":{"id":"cus_1","n":7,"list":[1,{"k":"v"},[2,3]]}}}"#,
            r#" { "a/b" : 1 , "m~n" : {"x":null}, "e\u0073c": "esc", "dup": 1, "dup": 2, "": {"": 3} } "#,
            r#"[{"eventId":100},{"eventId":101}]"#,
            r#""just a string""#,
            r#"42"#,
            r#"{"deep":{"a":{"b":{"c":{"d":[[[{"e":"deep"}]]]}}}}}"#,
        ];
        let pointers = [
            "",
            "/",
            "/id",
            "/data",
            "/data/object/id",
            "/data/object/n",
            "/data/object/list/0",
            "/data/object/list/1/k",
            "/data/object/list/2/1",
            "/data/object/list/3",
            "/data/object/list/01",
            "/data/object/list/+1",
            "/data/object/list/-1",
            "/a~1b",
            "/m~0n/x",
            "/esc",
            "/dup",
            "//",
            "/0/eventId",
            "/1/eventId",
            "/2",
            "/0",
            "no-slash",
            "/deep/a/b/c/d/0/0/0/e",
            "/id/x",
            "/missing/x",
        ];
        for doc in docs {
            let raw: &RawValue = serde_json::from_str(doc).unwrap();
            let value: Value = serde_json::from_str(doc).unwrap();
            for p in pointers {
                let ours = pointer(raw, p).map(|v| serde_json::from_str::<Value>(v.get()).unwrap());
                assert_eq!(ours.as_ref(), value.pointer(p), "pointer {p:?} in {doc}");
            }
        }
    }

    #[test]
    fn keys_read_the_same_from_json_that_is_not_an_object() {
        for body in [&b"[1,2]"[..], b"\"id\"", b"null", b"{\"id\":true}", b"{\"id\":null}", b"{\"id\":[\"a\"]}"] {
            let k = keys(Some(&KeySelector::pointer("/id".into())), None, &HeaderMap::new(), body);
            assert_eq!(k.dedup_origin, KeyOrigin::BodySha256, "{}", String::from_utf8_lossy(body));
        }
        let k = keys(Some(&KeySelector::pointer("/id".into())), None, &HeaderMap::new(), br#"{"id":-1.5e3}"#);
        assert_eq!(k.dedup, "-1500.0", "numbers print as serde_json prints them");
        let k = keys(Some(&KeySelector::pointer("/id".into())), None, &HeaderMap::new(), br#"{"id":"\u00e9t\u00e9"}"#);
        assert_eq!(k.dedup, "été", "strings are unescaped");
    }

    #[test]
    fn the_body_hash_is_the_sha256_of_the_exact_bytes() {
        assert_eq!(body_sha256(b"abc"), "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_ne!(body_sha256(b"{\"a\":1}"), body_sha256(b"{\"a\": 1}"));
    }
}

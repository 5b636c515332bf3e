//! Dedup and ordering keys of a verified request.
//!
//! The dedup key says "this is the same webhook again"; the ordering key says "these webhooks are about the
//! same thing, keep them in order". Both must be functions of the webhook itself, so that a redelivery gets
//! the same keys and lands in the same partition as the first delivery.

use hookline_schemas::raw::{bounded_key, KeyOrigin};
use http::{HeaderMap, HeaderName};
use serde_json::Value;
use sha2::{Digest, Sha256};

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

    /// The parsed body, or `None` if it is not JSON.
    pub fn get(&mut self) -> Option<&Value> {
        let body = self.body;
        self.parsed.get_or_insert_with(|| serde_json::from_slice(body).ok()).as_ref()
    }
}

/// Provider-specific keys that are not a single header or pointer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    /// GitHub: `repository.full_name`, plus `#<number>` of the pull request or issue the event is about.
    GitHubEntity,
    /// Shopify: `admin_graphql_api_id` of the resource, else `{topic resource}:{id}` (`orders:820982911946154508`).
    ShopifyResource,
    /// HubSpot: `eventId` of the event, or of the first event of a batch.
    HubSpotEvent,
}

/// Where a key's text comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    Header(HeaderName),
    /// The first header if present, else the second (Svix ids under either name).
    HeaderOr(HeaderName, HeaderName),
    JsonPointer(String),
    Preset(Preset),
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

    /// A provider preset.
    pub fn preset(preset: Preset) -> Self {
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
            Source::JsonPointer(pointer) => scalar(json.get()?.pointer(pointer)?)?,
            Source::Preset(preset) => preset_key(*preset, headers, json.get()?)?,
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
            Source::Preset(Preset::GitHubEntity) => f.write_str("preset github entity"),
            Source::Preset(Preset::ShopifyResource) => f.write_str("preset shopify resource"),
            Source::Preset(Preset::HubSpotEvent) => f.write_str("preset hubspot event"),
        }
    }
}

fn header_text(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    Some(headers.get(name)?.to_str().ok()?.trim().to_owned())
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn preset_key(preset: Preset, headers: &HeaderMap, body: &Value) -> Option<String> {
    match preset {
        Preset::GitHubEntity => {
            let repo = body.pointer("/repository/full_name")?.as_str()?;
            let number = ["/pull_request/number", "/issue/number", "/number"]
                .iter()
                .find_map(|p| body.pointer(p).and_then(Value::as_u64));
            Some(match number {
                Some(n) => format!("{repo}#{n}"),
                None => repo.to_owned(),
            })
        }
        Preset::ShopifyResource => {
            if let Some(gid) = body.get("admin_graphql_api_id").and_then(Value::as_str) {
                return Some(gid.to_owned());
            }
            let topic = headers.get("x-shopify-topic").or_else(|| headers.get("shopify-topic"))?.to_str().ok()?;
            let resource = topic.split('/').next().filter(|r| !r.is_empty())?;
            Some(format!("{resource}:{}", scalar(body.get("id")?)?))
        }
        Preset::HubSpotEvent => match body {
            Value::Array(events) => scalar(events.first()?.get("eventId")?),
            other => scalar(other.get("eventId")?),
        },
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

    #[test]
    fn provider_presets() {
        let gh = KeySelector::preset(Preset::GitHubEntity);
        let mut pr = LazyJson::new(br#"{"repository":{"full_name":"acme/api"},"pull_request":{"number":42}}"#);
        assert_eq!(gh.extract(&HeaderMap::new(), &mut pr).as_deref(), Some("acme/api#42"));
        let mut push = LazyJson::new(br#"{"repository":{"full_name":"acme/api"},"ref":"refs/heads/main"}"#);
        assert_eq!(gh.extract(&HeaderMap::new(), &mut push).as_deref(), Some("acme/api"));
        assert_eq!(gh.origin(), KeyOrigin::Provider);

        let shop = KeySelector::preset(Preset::ShopifyResource);
        let mut gid = LazyJson::new(br#"{"id":1,"admin_graphql_api_id":"gid://shopify/Order/1"}"#);
        assert_eq!(shop.extract(&HeaderMap::new(), &mut gid).as_deref(), Some("gid://shopify/Order/1"));
        let topic = headers(&[("x-shopify-topic", "orders/updated")]);
        let mut plain = LazyJson::new(br#"{"id":820982911946154508}"#);
        assert_eq!(shop.extract(&topic, &mut plain).as_deref(), Some("orders:820982911946154508"));

        let hs = KeySelector::preset(Preset::HubSpotEvent);
        let mut batch = LazyJson::new(br#"[{"eventId":100,"objectId":7},{"eventId":101}]"#);
        assert_eq!(hs.extract(&HeaderMap::new(), &mut batch).as_deref(), Some("100"));

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
        assert_eq!(KeySelector::preset(Preset::GitHubEntity).to_string(), "preset github entity");
        assert_eq!(KeySelector::preset(Preset::ShopifyResource).to_string(), "preset shopify resource");
        assert_eq!(KeySelector::preset(Preset::HubSpotEvent).to_string(), "preset hubspot event");
    }

    #[test]
    fn the_body_hash_is_the_sha256_of_the_exact_bytes() {
        assert_eq!(body_sha256(b"abc"), "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_ne!(body_sha256(b"{\"a\":1}"), body_sha256(b"{\"a\": 1}"));
    }
}

//! Realistic webhooks, as a provider sends them ([`crate::Provider::sample`]): the body for an event type,
//! where the provider puts that type (body field, `X-GitHub-Event`, `X-Shopify-Topic`…), its id headers, and
//! the entity the webhook is about. `hookline send` and the tests send them.
//!
//! Every webhook gets ids unique to its run ([`Run`] prefix) and to its number; webhooks `4k..4k+3` are about
//! the same entity (payment intent, pull request, order…), so the ingress gives them one ordering key.

use http::HeaderName;
use time::format_description::well_known::Rfc3339;

/// Webhooks in a row about one entity.
pub const PER_ENTITY: u64 = 4;

/// One webhook, before signing: what is the same on every delivery of it.
#[derive(Debug, Clone)]
pub struct Webhook {
    /// Its number in the run (0-based).
    pub n: u64,
    /// Its id (event id, message id…): the `webhook-id` of Standard Webhooks, the generic `{id}`.
    pub id: String,
    /// The exact body.
    pub body: bytes::Bytes,
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// Provider headers that are not credentials (`X-GitHub-Event`, `X-Shopify-Topic`…).
    pub headers: Vec<(HeaderName, String)>,
    /// The entity it is about: the ordering key the provider's default selector finds.
    pub entity: String,
    /// The dedup key the provider's default selector finds; `None` when the provider has none (the ingress
    /// then uses the body's hash).
    pub dedup_key: Option<String>,
}

/// What varies per run: a unique prefix and the clock reading the bodies carry.
#[derive(Debug, Clone)]
pub struct Run {
    /// Hex prefix unique to this run.
    pub id: String,
    /// Seconds since the epoch when the run started.
    pub now: i64,
}

impl Run {
    /// A fresh run id (from a UUIDv7: time and randomness) at `now`.
    pub fn new(now: i64) -> Run {
        let hex = uuid::Uuid::now_v7().simple().to_string();
        Run { id: format!("{}{}", &hex[4..12], &hex[20..28]), now }
    }
}

/// A JSON body.
pub fn json(v: &serde_json::Value) -> bytes::Bytes {
    bytes::Bytes::from(v.to_string())
}

/// `secs` as RFC 3339.
pub fn rfc3339(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_owned())
}

/// A header pair.
pub fn header(name: &'static str, value: String) -> (HeaderName, String) {
    (HeaderName::from_static(name), value)
}

/// A fresh UUID, hyphenated.
pub fn uuid() -> String {
    uuid::Uuid::now_v7().hyphenated().to_string()
}

/// `a.b.c` → (`a`, `c`): the resource a dotted type is about and its last word.
pub fn split_type(event: &str) -> (&str, &str) {
    let first = event.split('.').next().unwrap_or(event);
    let last = event.rsplit('.').next().unwrap_or(event);
    (first, last)
}

/// A sender without a provider (`hmac`, `bearer`, `basic`, `none` sources): `{id, type, created_at, data}`.
pub fn generic(event: &str, run: &Run, n: u64, rng: &mut fastrand::Rng) -> Webhook {
    let r = &run.id;
    let id = format!("{r}{n:06}");
    let entity = format!("{}_{r}{:06}", split_type(event).0, n / PER_ENTITY);
    let body = serde_json::json!({
        "id": id,
        "type": event,
        "created_at": rfc3339(run.now),
        "data": { "id": entity, "amount": rng.u64(100..100_000), "currency": "usd" },
    });
    Webhook { n, id, body: json(&body), content_type: "application/json", headers: Vec::new(), entity, dedup_key: None }
}

/// The event type of a generic sample when none is asked for.
pub const GENERIC_EVENT: &str = "order.created";

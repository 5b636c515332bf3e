//! Shopify: `X-Shopify-Hmac-Sha256: <base64 HMAC-SHA256 of the body>` under the app's client secret, or the
//! same under `Shopify-Hmac-Sha256` for Shopify's newer event webhooks (headers without `X-`). Shopify does
//! not sign a timestamp; replays are caught by deduplication on the webhook id.
//!
//! As `@shopify/shopify-api`'s `webhooks.validate` does: an empty body is refused before anything else; a
//! non-empty `Shopify-Hmac-Sha256` header makes the request an event webhook, checked under that header and
//! required to carry the event headers; once the signature matches, the headers Shopify always sends (topic,
//! shop domain, API version, webhook id; and the event id for event webhooks) must be present.
//!
//! Reference: <https://shopify.dev/docs/apps/build/webhooks/subscribe/https#step-5-verify-the-webhook>; vectors
//! checked by `@shopify/shopify-api`'s `webhooks.validate`.
//! Default keys: dedup = `X-Shopify-Webhook-Id`; ordering = the resource the webhook is about
//! (`admin_graphql_api_id`, else `{topic resource}:{id}`).

use base64::Engine as _;
use hookline_schemas::event::parse_rfc3339_millis;
use hookline_schemas::raw::RawMeta;
use http::HeaderName;
use serde_json::{json, Value};

use crate::keys::{as_str, pointer, scalar, KeyFn, KeySelector};
use crate::preset::{at, header_text, required, Preset};
use crate::sample::{self, header, Run, Webhook, PER_ENTITY};
use crate::settings::{self, SecretsOnly, SettingError, Settings};
use crate::verify::common::{matching_secret, single_header, Algorithm};
use crate::verify::{Outgoing, Request, Scheme, Secret, VerifyError};

/// The signature header.
pub const HEADER: HeaderName = HeaderName::from_static("x-shopify-hmac-sha256");
/// The signature header of event webhooks.
pub const EVENTS_HEADER: HeaderName = HeaderName::from_static("shopify-hmac-sha256");
/// The webhook's delivery id, the same on every retry.
pub const WEBHOOK_ID: HeaderName = HeaderName::from_static("x-shopify-webhook-id");
/// The delivery id of event webhooks.
pub const EVENTS_WEBHOOK_ID: HeaderName = HeaderName::from_static("shopify-webhook-id");

/// The headers every webhook carries besides its signature, as `@shopify/shopify-api` requires them.
const REQUIRED: [HeaderName; 4] = [
    HeaderName::from_static("x-shopify-topic"),
    HeaderName::from_static("x-shopify-shop-domain"),
    HeaderName::from_static("x-shopify-api-version"),
    WEBHOOK_ID,
];
/// The same for event webhooks, which also carry their event id.
const EVENTS_REQUIRED: [HeaderName; 5] = [
    HeaderName::from_static("shopify-topic"),
    HeaderName::from_static("shopify-shop-domain"),
    HeaderName::from_static("shopify-api-version"),
    EVENTS_WEBHOOK_ID,
    HeaderName::from_static("shopify-event-id"),
];

/// A configured Shopify app endpoint.
#[derive(Debug)]
pub struct Endpoint {
    /// Client secrets.
    pub secrets: Vec<Secret>,
}

impl Endpoint {
    /// The header value Shopify sends for `body`.
    pub fn sign(secret: &[u8], body: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(Algorithm::Sha256.mac(secret, &[body]))
    }
}

impl Scheme for Endpoint {
    fn name(&self) -> &'static str {
        "shopify"
    }

    fn sign(&self, secret: &[u8], out: &Outgoing<'_>) -> Vec<(HeaderName, String)> {
        vec![(HEADER, Endpoint::sign(secret, out.body))]
    }

    fn verify(&self, req: &Request<'_>) -> Result<usize, VerifyError> {
        if req.body.is_empty() {
            return Err(VerifyError::EmptyBody);
        }
        let events = req.headers.get(&EVENTS_HEADER).is_some_and(|v| !v.is_empty());
        let (name, required) = if events { (&EVENTS_HEADER, &EVENTS_REQUIRED[..]) } else { (&HEADER, &REQUIRED[..]) };
        let value = single_header(req.headers, name)?;
        let sig = base64::engine::general_purpose::STANDARD
            .decode(value)
            .ok()
            .filter(|s| s.len() == 32)
            .ok_or_else(|| VerifyError::MalformedSignature(name.to_string()))?;
        let matched = matching_secret(&self.secrets, &[sig], |key| Algorithm::Sha256.mac(key, &[req.body]))?;
        if let Some(missing) = required.iter().find(|h| req.headers.get(*h).is_none_or(|v| v.is_empty())) {
            return Err(VerifyError::MissingHeader(missing.to_string()));
        }
        Ok(matched)
    }

    fn secrets(&self) -> &[Secret] {
        &self.secrets
    }

    fn credential_headers(&self) -> Vec<HeaderName> {
        vec![HEADER, EVENTS_HEADER]
    }

    fn default_dedup_key(&self) -> Option<KeySelector> {
        Some(KeySelector::provider_header_or(WEBHOOK_ID, EVENTS_WEBHOOK_ID))
    }

    fn default_ordering_key(&self) -> Option<KeySelector> {
        Some(KeySelector::preset(RESOURCE))
    }
}

/// The ordering key: `admin_graphql_api_id` of the resource, else `{topic resource}:{id}`
/// (`orders:820982911946154508`).
const RESOURCE: KeyFn = KeyFn {
    name: "shopify resource",
    extract: |headers, body| {
        if let Some(gid) = pointer(body, "/admin_graphql_api_id").and_then(as_str) {
            return Some(gid);
        }
        let topic = headers.get("x-shopify-topic").or_else(|| headers.get("shopify-topic"))?.to_str().ok()?;
        let resource = topic.split('/').next().filter(|r| !r.is_empty())?;
        Some(format!("{resource}:{}", scalar(pointer(body, "/id")?)?))
    },
};

/// Shopify.
#[derive(Debug)]
pub struct Shopify;

impl crate::Provider for Shopify {
    fn name(&self) -> &'static str {
        "shopify"
    }

    /// `secrets`: the app's client secrets.
    fn verifier(&self, settings: Settings) -> Result<Box<dyn Scheme>, SettingError> {
        let s: SecretsOnly = settings.read()?;
        Ok(Box::new(Endpoint { secrets: settings::secrets(s.secrets)? }))
    }

    /// Type from the `X-Shopify-Topic` header; subject `admin_graphql_api_id`, else `id`; time from the
    /// `X-Shopify-Triggered-At` header.
    fn preset(&self, meta: &RawMeta, data: &Value) -> Preset {
        let header = |name: &str| meta.http_header(&format!("x-{name}")).or_else(|| meta.http_header(name));
        Preset {
            ty: required(
                header("shopify-topic").and_then(header_text),
                "a Shopify webhook has an `X-Shopify-Topic` header",
            )
            .map(Some),
            subject: at(data, "/admin_graphql_api_id").or_else(|| at(data, "/id")),
            time_ms: header("shopify-triggered-at").and_then(parse_rfc3339_millis),
        }
    }

    fn default_event(&self) -> &'static str {
        "orders/create"
    }

    fn sample(&self, event: &str, run: &Run, n: u64, rng: &mut fastrand::Rng) -> Webhook {
        let (r, group) = (&run.id, n / PER_ENTITY);
        let amount = rng.u64(100..100_000);
        let gid = match event.split('/').next().unwrap_or(event) {
            "orders" => "Order",
            "products" => "Product",
            "customers" => "Customer",
            "fulfillments" => "Fulfillment",
            "refunds" => "Refund",
            "carts" => "Cart",
            "checkouts" => "Checkout",
            _ => "Resource",
        };
        // Shopify ids are 64-bit integers, beyond what a double holds exactly; one per run and entity.
        let run_part = u64::from_str_radix(r.get(..8).unwrap_or("0"), 16).unwrap_or(0) % 1_000_000;
        let object_id: u64 = 820_982_911_946_154_508 + run_part * 1_000_000_000 + group;
        let entity = format!("gid://shopify/{gid}/{object_id}");
        let webhook_id = sample::uuid();
        let body = json!({
            "id": object_id,
            "admin_graphql_api_id": entity,
            "email": format!("buyer{group}@example.com"),
            "created_at": sample::rfc3339(run.now),
            "currency": "USD",
            "total_price": format!("{}.{:02}", amount / 100, amount % 100),
            "financial_status": "paid",
            "line_items": [{ "id": object_id + 1, "quantity": 1, "sku": "HOOK-1", "price": "10.00" }],
        });
        let headers = vec![
            header("x-shopify-topic", event.to_owned()),
            header("x-shopify-webhook-id", webhook_id.clone()),
            header("x-shopify-event-id", sample::uuid()),
            header("x-shopify-shop-domain", "hookline-sandbox.myshopify.com".to_owned()),
            header("x-shopify-triggered-at", sample::rfc3339(run.now)),
            header("x-shopify-api-version", "2024-07".to_owned()),
        ];
        Webhook {
            n,
            dedup_key: Some(webhook_id.clone()),
            id: webhook_id,
            body: sample::json(&body),
            content_type: "application/json",
            headers,
            entity,
        }
    }

    fn sample_settings(&self, _url: &str) -> String {
        "secrets = [{ value = \"shpss_sandbox\" }]".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::test_support::{request, secrets, Vector};

    #[test]
    fn official_library_vectors_verify() {
        for v in Vector::load("shopify") {
            let sent = v.headers.get("x-shopify-hmac-sha256").or_else(|| v.headers.get("shopify-hmac-sha256")).unwrap();
            assert_eq!(&Endpoint::sign(v.secret.as_bytes(), v.body.as_bytes()), sent);
            let s = Endpoint { secrets: secrets(&[&v.secret]) };
            assert_eq!(s.verify(&request(&v.headers(), v.body.as_bytes(), v.now).req()), Ok(0), "{}", v.name);
        }
    }

    /// The headers Shopify sends with a webhook signed `sig`, under `prefix` (`x-shopify` or `shopify`).
    fn sent<'a>(prefix: &str, sig: &'a str) -> Vec<(String, &'a str)> {
        let mut h = vec![(format!("{prefix}-hmac-sha256"), sig)];
        for (name, value) in
            [("topic", "orders/create"), ("shop-domain", "s.myshopify.com"), ("api-version", "2025-10")]
        {
            h.push((format!("{prefix}-{name}"), value));
        }
        h.push((format!("{prefix}-webhook-id"), "wh-1"));
        h.push((format!("{prefix}-event-id"), "ev-1"));
        h
    }

    fn check(s: &Endpoint, headers: &[(String, &str)], body: &[u8]) -> Result<usize, VerifyError> {
        let pairs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        s.verify(&request(&pairs, body, 0).req())
    }

    #[test]
    fn rotation_tampering_and_malformed_headers() {
        let s = Endpoint { secrets: secrets(&["old", "new"]) };
        let body = br#"{"id":820982911946154508}"#;
        let sig = Endpoint::sign(b"old", body);
        assert_eq!(check(&s, &sent("x-shopify", &sig), body), Ok(0));
        assert_eq!(check(&s, &sent("x-shopify", &sig), b"{}"), Err(VerifyError::Mismatch));
        let hex = hex::encode(Algorithm::Sha256.mac(b"old", &[body]));
        for bad in [hex.as_str(), "###", "AAAA"] {
            let r = check(&s, &sent("x-shopify", bad), body);
            assert!(matches!(r, Err(VerifyError::MalformedSignature(_))), "{bad}: {r:?}");
        }
        assert!(matches!(s.verify(&request(&[], body, 0).req()), Err(VerifyError::MissingSignature(_))));
    }

    /// What `@shopify/shopify-api`'s `webhooks.validate` refuses beyond the MAC.
    #[test]
    fn empty_bodies_and_missing_shopify_headers_are_refused_as_shopifys_library_does() {
        let s = Endpoint { secrets: secrets(&["k"]) };
        let empty = Endpoint::sign(b"k", b"");
        assert_eq!(check(&s, &sent("x-shopify", &empty), b""), Err(VerifyError::EmptyBody));
        let body = b"{}";
        let sig = Endpoint::sign(b"k", body);
        for missing in ["x-shopify-topic", "x-shopify-shop-domain", "x-shopify-api-version", "x-shopify-webhook-id"] {
            let headers: Vec<(String, &str)> =
                sent("x-shopify", &sig).into_iter().filter(|(k, _)| k != missing).collect();
            assert_eq!(check(&s, &headers, body), Err(VerifyError::MissingHeader(missing.into())), "{missing}");
        }
        // The legacy webhooks do not need an event id; event webhooks do.
        let legacy: Vec<(String, &str)> =
            sent("x-shopify", &sig).into_iter().filter(|(k, _)| k != "x-shopify-event-id").collect();
        assert_eq!(check(&s, &legacy, body), Ok(0));
        assert_eq!(check(&s, &sent("shopify", &sig), body), Ok(0));
        let events: Vec<(String, &str)> =
            sent("shopify", &sig).into_iter().filter(|(k, _)| k != "shopify-event-id").collect();
        assert_eq!(check(&s, &events, body), Err(VerifyError::MissingHeader("shopify-event-id".into())));
        // A wrong signature is a mismatch before any header is looked for.
        let mut forged = sent("x-shopify", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=");
        forged.retain(|(k, _)| k != "x-shopify-topic");
        assert_eq!(check(&s, &forged, body), Err(VerifyError::Mismatch));
    }

    #[test]
    fn ordering_key_is_the_resource() {
        use crate::keys::LazyJson;
        let shop = KeySelector::preset(RESOURCE);
        let mut gid = LazyJson::new(br#"{"id":1,"admin_graphql_api_id":"gid://shopify/Order/1"}"#);
        assert_eq!(shop.extract(&http::HeaderMap::new(), &mut gid).as_deref(), Some("gid://shopify/Order/1"));
        let mut topic = http::HeaderMap::new();
        topic.insert("x-shopify-topic", http::HeaderValue::from_static("orders/updated"));
        let mut plain = LazyJson::new(br#"{"id":820982911946154508}"#);
        assert_eq!(shop.extract(&topic, &mut plain).as_deref(), Some("orders:820982911946154508"));
        assert_eq!(shop.to_string(), "preset shopify resource");
    }
}

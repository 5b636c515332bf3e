//! Shopify: `X-Shopify-Hmac-Sha256: <base64 HMAC-SHA256 of the body>` under the app's client secret, or the
//! same under `Shopify-Hmac-Sha256` for Shopify's newer event webhooks (headers without `X-`). Shopify does
//! not sign a timestamp; replays are caught by deduplication on the webhook id.
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
        let name = if req.headers.contains_key(&HEADER) || !req.headers.contains_key(&EVENTS_HEADER) {
            &HEADER
        } else {
            &EVENTS_HEADER
        };
        let value = single_header(req.headers, name)?;
        let sig = base64::engine::general_purpose::STANDARD
            .decode(value)
            .ok()
            .filter(|s| s.len() == 32)
            .ok_or_else(|| VerifyError::MalformedSignature(name.to_string()))?;
        matching_secret(&self.secrets, &[sig], |key| Algorithm::Sha256.mac(key, &[req.body]))
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

    #[test]
    fn rotation_tampering_and_malformed_headers() {
        let s = Endpoint { secrets: secrets(&["old", "new"]) };
        let body = br#"{"id":820982911946154508}"#;
        let sig = Endpoint::sign(b"old", body);
        assert_eq!(s.verify(&request(&[("x-shopify-hmac-sha256", &sig)], body, 0).req()), Ok(0));
        assert_eq!(s.verify(&request(&[("x-shopify-hmac-sha256", &sig)], b"{}", 0).req()), Err(VerifyError::Mismatch));
        let hex = hex::encode(Algorithm::Sha256.mac(b"old", &[body]));
        for bad in [hex.as_str(), "###", "AAAA"] {
            let r = s.verify(&request(&[("x-shopify-hmac-sha256", bad)], body, 0).req());
            assert!(matches!(r, Err(VerifyError::MalformedSignature(_))), "{bad}: {r:?}");
        }
        assert!(matches!(s.verify(&request(&[], body, 0).req()), Err(VerifyError::MissingSignature(_))));
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

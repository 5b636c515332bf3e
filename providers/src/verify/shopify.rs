//! Shopify: `X-Shopify-Hmac-Sha256: <base64 HMAC-SHA256 of the body>` under the app's client secret, or the
//! same under `Shopify-Hmac-Sha256` for Shopify's newer event webhooks (headers without `X-`). Shopify does
//! not sign a timestamp; replays are caught by deduplication on the webhook id.
//!
//! Reference: <https://shopify.dev/docs/apps/build/webhooks/subscribe/https#step-5-verify-the-webhook>; vectors
//! checked by `@shopify/shopify-api`'s `webhooks.validate`.
//! Default keys: dedup = `X-Shopify-Webhook-Id`; ordering = the resource the webhook is about
//! (`admin_graphql_api_id`, else `{topic resource}:{id}`).

use base64::Engine as _;
use http::HeaderName;

use super::common::{matching_secret, single_header, Algorithm};
use super::{Outgoing, Request, Scheme, Secret, VerifyError};
use crate::keys::{KeySelector, Preset};

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
pub struct Shopify {
    /// Client secrets.
    pub secrets: Vec<Secret>,
}

impl Shopify {
    /// The header value Shopify sends for `body`.
    pub fn sign(secret: &[u8], body: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(Algorithm::Sha256.mac(secret, &[body]))
    }
}

impl Scheme for Shopify {
    fn name(&self) -> &'static str {
        "shopify"
    }

    fn sign(&self, secret: &[u8], out: &Outgoing<'_>) -> Vec<(HeaderName, String)> {
        vec![(HEADER, Shopify::sign(secret, out.body))]
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
        Some(KeySelector::preset(Preset::ShopifyResource))
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
            assert_eq!(&Shopify::sign(v.secret.as_bytes(), v.body.as_bytes()), sent);
            let s = Shopify { secrets: secrets(&[&v.secret]) };
            assert_eq!(s.verify(&request(&v.headers(), v.body.as_bytes(), v.now).req()), Ok(0), "{}", v.name);
        }
    }

    #[test]
    fn rotation_tampering_and_malformed_headers() {
        let s = Shopify { secrets: secrets(&["old", "new"]) };
        let body = br#"{"id":820982911946154508}"#;
        let sig = Shopify::sign(b"old", body);
        assert_eq!(s.verify(&request(&[("x-shopify-hmac-sha256", &sig)], body, 0).req()), Ok(0));
        assert_eq!(s.verify(&request(&[("x-shopify-hmac-sha256", &sig)], b"{}", 0).req()), Err(VerifyError::Mismatch));
        let hex = hex::encode(Algorithm::Sha256.mac(b"old", &[body]));
        for bad in [hex.as_str(), "###", "AAAA"] {
            let r = s.verify(&request(&[("x-shopify-hmac-sha256", bad)], body, 0).req());
            assert!(matches!(r, Err(VerifyError::MalformedSignature(_))), "{bad}: {r:?}");
        }
        assert!(matches!(s.verify(&request(&[], body, 0).req()), Err(VerifyError::MissingSignature(_))));
    }
}

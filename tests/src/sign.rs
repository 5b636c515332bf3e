//! Requests signed as each provider signs them, at the current time, for end-to-end tests.
//!
//! The signers are the verify modules' own `sign` functions; their unit tests check them against vectors made
//! by the providers' official libraries, so a request signed here is a request the provider would send.

use base64::Engine as _;
use hookline_providers::verify::github::HubSignature;
use hookline_providers::verify::hubspot::HubSpot;
use hookline_providers::verify::paddle::Paddle;
use hookline_providers::verify::shopify::Shopify;
use hookline_providers::verify::slack::Slack;
use hookline_providers::verify::standard_webhooks::{decode_secret, StandardWebhooks};
use hookline_providers::verify::stripe::Stripe;
use hookline_providers::verify::twilio::Twilio;
use hookline_providers::verify::Algorithm;

/// A provider and the secret a test source uses for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// Stripe.
    Stripe,
    /// Standard Webhooks.
    StandardWebhooks,
    /// Svix.
    Svix,
    /// GitHub.
    GitHub,
    /// Meta.
    Meta,
    /// Shopify.
    Shopify,
    /// Slack.
    Slack,
    /// Zoom.
    Zoom,
    /// Twilio.
    Twilio,
    /// HubSpot.
    HubSpot,
    /// Paddle.
    Paddle,
    /// Generic HMAC (`X-Acme-Signature: v1=<base64 HMAC-SHA512 of "{id}.{timestamp}.{body}">`).
    Acme,
    /// Bearer token.
    Bearer,
    /// Basic auth.
    Basic,
}

impl Provider {
    /// Every provider.
    pub const ALL: [Provider; 14] = [
        Provider::Stripe,
        Provider::StandardWebhooks,
        Provider::Svix,
        Provider::GitHub,
        Provider::Meta,
        Provider::Shopify,
        Provider::Slack,
        Provider::Zoom,
        Provider::Twilio,
        Provider::HubSpot,
        Provider::Paddle,
        Provider::Acme,
        Provider::Bearer,
        Provider::Basic,
    ];

    /// The test source's name.
    pub fn source(self) -> &'static str {
        match self {
            Provider::Stripe => "stripe",
            Provider::StandardWebhooks => "standard",
            Provider::Svix => "svix",
            Provider::GitHub => "github",
            Provider::Meta => "meta",
            Provider::Shopify => "shopify",
            Provider::Slack => "slack",
            Provider::Zoom => "zoom",
            Provider::Twilio => "twilio",
            Provider::HubSpot => "hubspot",
            Provider::Paddle => "paddle",
            Provider::Acme => "acme",
            Provider::Bearer => "partner",
            Provider::Basic => "legacy",
        }
    }

    /// The secret of the test source.
    pub fn secret(self) -> &'static str {
        match self {
            Provider::StandardWebhooks | Provider::Svix => "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            Provider::Basic => "hooks:s3cret-password",
            Provider::Stripe => "whsec_e2e_stripe",
            _ => "e2e-secret",
        }
    }

    /// The `[sources.*]` TOML of every provider's test source, for an ingress whose public base URL is `base`.
    pub fn all_sources_toml(base: &str) -> String {
        let mut out = String::new();
        for p in Provider::ALL {
            let name = p.source();
            let secret = p.secret();
            let extra = match p {
                Provider::Stripe => "scheme = \"stripe\"".to_owned(),
                Provider::StandardWebhooks => "scheme = \"standard_webhooks\"".to_owned(),
                Provider::Svix => "scheme = \"svix\"".to_owned(),
                Provider::GitHub => "scheme = \"github\"".to_owned(),
                Provider::Meta => "scheme = \"meta\"\nverify_token = { value = \"meta-verify-token\" }".to_owned(),
                Provider::Shopify => "scheme = \"shopify\"".to_owned(),
                Provider::Slack => "scheme = \"slack\"".to_owned(),
                Provider::Zoom => "scheme = \"zoom\"".to_owned(),
                Provider::Twilio => format!("scheme = \"twilio\"\npublic_url = \"{base}/webhooks/twilio\""),
                Provider::HubSpot => format!("scheme = \"hubspot\"\npublic_url = \"{base}/webhooks/hubspot\""),
                Provider::Paddle => "scheme = \"paddle\"".to_owned(),
                Provider::Acme => "scheme = \"hmac\"\nheader = \"X-Acme-Signature\"\nalgorithm = \"sha512\"\nencoding = \"base64\"\nprefix = \"v1=\"\ntemplate = \"{id}.{timestamp}.{body}\"\ntimestamp_header = \"X-Acme-Timestamp\"\nid_header = \"X-Acme-Id\"".to_owned(),
                Provider::Bearer => "scheme = \"bearer\"".to_owned(),
                Provider::Basic => "scheme = \"basic\"".to_owned(),
            };
            out.push_str(&format!("[sources.{name}.verify]\n{extra}\nsecrets = [{{ value = \"{secret}\" }}]\n"));
        }
        out
    }

    /// A realistic body for this provider's webhook number `n`.
    pub fn body(self, n: u32) -> String {
        match self {
            Provider::Stripe => format!(
                r#"{{"id":"evt_e2e_{n}","object":"event","type":"invoice.paid","data":{{"object":{{"id":"in_{n}"}}}}}}"#
            ),
            Provider::GitHub => format!(
                r#"{{"action":"opened","number":{n},"pull_request":{{"number":{n}}},"repository":{{"full_name":"acme/api"}}}}"#
            ),
            Provider::Shopify => {
                format!(r#"{{"id":{n},"admin_graphql_api_id":"gid://shopify/Order/{n}","total_price":"10.00"}}"#)
            }
            Provider::Slack => {
                format!(r#"{{"type":"event_callback","event_id":"Ev{n}","event":{{"type":"app_mention"}}}}"#)
            }
            Provider::Twilio => format!("MessageSid=SM{n}&MessageStatus=delivered&Body=H%C3%A9llo+world"),
            Provider::HubSpot => format!(r#"[{{"eventId":{n},"subscriptionType":"contact.creation","objectId":7}}]"#),
            Provider::Paddle => format!(
                r#"{{"notification_id":"ntf_{n}","event_type":"transaction.completed","data":{{"id":"txn_{n}"}}}}"#
            ),
            _ => format!(r#"{{"id":"{n}","type":"thing.happened","n":{n}}}"#),
        }
    }

    /// The headers the provider sends with `body` at `now` (seconds), for webhook number `n`.
    pub fn headers(self, body: &str, now: i64, n: u32, base: &str) -> Vec<(String, String)> {
        let s = self.secret().as_bytes();
        let b = body.as_bytes();
        let ts = now.to_string();
        let h = |k: &str, v: String| (k.to_owned(), v);
        let json = h("content-type", "application/json".into());
        match self {
            Provider::Stripe => vec![json, h("stripe-signature", Stripe::sign(s, b, now))],
            Provider::StandardWebhooks | Provider::Svix => {
                let prefix = if self == Provider::Svix { "svix" } else { "webhook" };
                let key = decode_secret(self.secret()).unwrap_or_default();
                let id = format!("msg_e2e_{n}");
                let sig = StandardWebhooks::sign(&key, &id, now, b);
                vec![
                    json,
                    h(&format!("{prefix}-id"), id),
                    h(&format!("{prefix}-timestamp"), ts),
                    h(&format!("{prefix}-signature"), sig),
                ]
            }
            Provider::GitHub | Provider::Meta => vec![
                json,
                h("x-hub-signature-256", HubSignature::sign(s, b)),
                h("x-github-delivery", format!("d-{n}")),
                h("x-github-event", "pull_request".into()),
            ],
            Provider::Shopify => vec![
                json,
                h("x-shopify-hmac-sha256", Shopify::sign(s, b)),
                h("x-shopify-topic", "orders/create".into()),
                h("x-shopify-webhook-id", format!("wh-{n}")),
            ],
            Provider::Slack => {
                vec![json, h("x-slack-signature", Slack::sign(s, &ts, b)), h("x-slack-request-timestamp", ts)]
            }
            Provider::Zoom => vec![json, h("x-zm-signature", Slack::sign(s, &ts, b)), h("x-zm-request-timestamp", ts)],
            Provider::Twilio => {
                let params: Vec<(String, String)> =
                    form_urlencoded::parse(b).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
                let sig = Twilio::sign(Algorithm::Sha1, s, &format!("{base}/webhooks/twilio"), &params);
                vec![
                    h("content-type", "application/x-www-form-urlencoded".into()),
                    h("x-twilio-signature", sig),
                    h("i-twilio-idempotency-token", format!("idem-{n}")),
                ]
            }
            Provider::HubSpot => {
                let ms = (now * 1000).to_string();
                let sig = HubSpot::sign(s, "POST", &format!("{base}/webhooks/hubspot"), b, &ms);
                vec![json, h("x-hubspot-signature-v3", sig), h("x-hubspot-request-timestamp", ms)]
            }
            Provider::Paddle => vec![json, h("paddle-signature", Paddle::sign(s, now, b))],
            Provider::Acme => {
                let id = format!("acme-{n}");
                let mac = Algorithm::Sha512.mac(s, &[id.as_bytes(), b".", ts.as_bytes(), b".", b]);
                let sig = format!("v1={}", base64::engine::general_purpose::STANDARD.encode(mac));
                vec![json, h("x-acme-signature", sig), h("x-acme-timestamp", ts), h("x-acme-id", id)]
            }
            Provider::Bearer => vec![json, h("authorization", format!("Bearer {}", self.secret()))],
            Provider::Basic => vec![
                json,
                h(
                    "authorization",
                    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(self.secret())),
                ),
            ],
        }
    }

    /// The dedup key the ingress should find for webhook number `n` (`None`: the body hash).
    pub fn expected_dedup_key(self, n: u32) -> Option<String> {
        match self {
            Provider::Stripe => Some(format!("evt_e2e_{n}")),
            Provider::StandardWebhooks | Provider::Svix => Some(format!("msg_e2e_{n}")),
            Provider::GitHub => Some(format!("d-{n}")),
            Provider::Shopify => Some(format!("wh-{n}")),
            Provider::Slack => Some(format!("Ev{n}")),
            Provider::Twilio => Some(format!("idem-{n}")),
            Provider::HubSpot => Some(n.to_string()),
            Provider::Paddle => Some(format!("ntf_{n}")),
            Provider::Meta | Provider::Zoom | Provider::Acme | Provider::Bearer | Provider::Basic => None,
        }
    }
}

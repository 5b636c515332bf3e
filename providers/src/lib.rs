//! # hookline providers
//!
//! Everything hookline knows of a webhook provider lives in that provider's module, behind one trait,
//! [`Provider`]: how it signs and how hookline verifies it (and the settings of its `[verify]` table), the keys
//! it identifies a webhook and its entity by, the format of its bodies, where its events put their type,
//! subject and time, and a realistic sample webhook. The ingress verifies with it, the processor normalizes
//! with it, the CLI's `send` and the tests make webhooks with it. Adding a provider is one new module, listed
//! once in [`ALL`].
//!
//! What is not a provider's: the generic verification schemes a source may use with any sender
//! ([`verify::hmac`], [`verify::auth`]), the verification machinery ([`verify`]), key extraction ([`keys`]),
//! and the pieces the provider modules share ([`preset`], [`sample`], [`settings`]).

pub mod keys;
pub mod preset;
pub mod sample;
pub mod settings;
pub mod verify;

pub mod github;
pub mod hubspot;
pub mod meta;
pub mod paddle;
pub mod shopify;
pub mod slack;
pub mod standard_webhooks;
pub mod stripe;
pub mod twilio;
pub mod zoom;

use hookline_schemas::raw::RawMeta;
use serde_json::Value;

pub use self::preset::Preset;
pub use self::sample::{Run, Webhook};
pub use self::settings::{SettingError, Settings};
use self::verify::Scheme;

/// Every provider, in the order `hookline` lists them. The name of each is unique.
pub static ALL: &[&dyn Provider] = &[
    &stripe::Stripe,
    &github::GitHub,
    &meta::Meta,
    &shopify::Shopify,
    &slack::Slack,
    &standard_webhooks::STANDARD_WEBHOOKS,
    &standard_webhooks::SVIX,
    &twilio::Twilio,
    &hubspot::HubSpot,
    &paddle::Paddle,
    &zoom::Zoom,
];

/// The provider named `name` in a config (`scheme = "stripe"`, `provider = "stripe"`).
pub fn find(name: &str) -> Option<&'static dyn Provider> {
    ALL.iter().copied().find(|p| p.name() == name)
}

/// The names of every provider, for error messages: `stripe, github, …`.
pub fn names() -> String {
    ALL.iter().map(|p| p.name()).collect::<Vec<_>>().join(", ")
}

/// One webhook provider: everything hookline knows of it.
pub trait Provider: std::fmt::Debug + Send + Sync {
    /// Its config name, both as a verification scheme (`[verify] scheme = "stripe"`) and as a processor
    /// preset (`provider = "stripe"`); also a metric label.
    fn name(&self) -> &'static str;

    /// The verifier of a source's `[verify]` table (the `scheme` key removed). Each provider reads its own
    /// settings; errors name the field relative to the table.
    fn verifier(&self, settings: Settings) -> Result<Box<dyn Scheme>, SettingError>;

    /// How its bodies are written.
    fn body(&self) -> BodyShape {
        BodyShape::JSON
    }

    /// Where one of its events (one element of a batch) puts its type, subject and time.
    fn preset(&self, meta: &RawMeta, data: &Value) -> Preset;

    /// The shortest dedup window that catches its retries, and why; `None` when it has no such bound.
    fn min_dedup_window_secs(&self) -> Option<(u64, &'static str)> {
        None
    }

    /// The event type a sample webhook has when none is asked for.
    fn default_event(&self) -> &'static str;

    /// Webhook number `n` of a run, of event type `event`, as the provider would send it (before signing).
    fn sample(&self, event: &str, run: &Run, n: u64, rng: &mut fastrand::Rng) -> Webhook;

    /// A working `[verify]` table for a sandbox source whose public URL is `url`: its settings and a test
    /// secret, as TOML lines (used by the tests and as documentation).
    fn sample_settings(&self, url: &str) -> String;
}

/// How a provider writes its bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyShape {
    /// The format a source of this provider reads by default.
    pub format: Format,
    /// A form field whose value is the JSON body (Slack's interactions send `payload={...}`).
    pub json_in_form_field: Option<&'static str>,
    /// Whether a body may be a JSON array of events (HubSpot), each published as its own event.
    pub batch: bool,
}

impl BodyShape {
    /// One JSON event per body.
    pub const JSON: BodyShape = BodyShape { format: Format::Json, json_in_form_field: None, batch: false };
}

/// How a body is parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// JSON; `data` is the body verbatim.
    Json,
    /// `application/x-www-form-urlencoded`; `data` is an object of its parameters.
    Form,
    /// By the request's `Content-Type`.
    Auto,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_found() {
        let mut names: Vec<&str> = ALL.iter().map(|p| p.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ALL.len(), "two providers share a name");
        for p in ALL {
            assert_eq!(find(p.name()).map(|f| f.name()), Some(p.name()));
        }
        assert!(find("generic").is_none() && find("hmac").is_none());
    }

    /// The preset of a sample webhook's (first) event, its body parsed as the processor parses it.
    fn preset_of(p: &dyn Provider, w: &Webhook) -> Preset {
        let data: Value = if p.body().format == Format::Form || w.content_type.contains("form") {
            let fields: serde_json::Map<String, Value> =
                form_urlencoded::parse(&w.body).map(|(k, v)| (k.into_owned(), Value::from(v.into_owned()))).collect();
            Value::Object(fields)
        } else {
            serde_json::from_slice(&w.body).unwrap()
        };
        let data = if p.body().batch { data[0].clone() } else { data };
        let meta = RawMeta {
            v: 1,
            source: "sample".into(),
            received_at_ms: 0,
            dedup_key: w.id.clone(),
            dedup_key_origin: hookline_schemas::raw::KeyOrigin::Provider,
            content_type: Some(w.content_type.into()),
            request_id: "r".into(),
            headers: w.headers.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
            traceparent: None,
            reprocess: None,
        };
        p.preset(&meta, &data)
    }

    /// Every provider's sample, signed with its sample settings, verifies, and has the keys it says it has.
    #[test]
    fn samples_sign_verify_and_carry_their_keys() {
        use verify::{Outgoing, Request};
        let url = "https://hooks.example.com/webhooks/sample";
        let run = Run { id: "abcd1234".into(), now: 1_700_000_000 };
        for p in ALL {
            let settings = Settings::from_toml(&p.sample_settings(url)).unwrap();
            let scheme = p.verifier(settings).unwrap_or_else(|e| panic!("{}: {e}", p.name()));
            assert_eq!(scheme.name(), p.name());
            let mut rng = fastrand::Rng::with_seed(7);
            let ws: Vec<Webhook> = (0..8).map(|n| p.sample(p.default_event(), &run, n, &mut rng)).collect();
            for w in &ws {
                let out = Outgoing {
                    method: &http::Method::POST,
                    url,
                    content_type: w.content_type,
                    body: &w.body,
                    timestamp_secs: run.now,
                    id: &w.id,
                };
                let mut headers = http::HeaderMap::new();
                for (k, v) in w.headers.iter().cloned().chain(scheme.sign(scheme.secrets()[0].expose(), &out)) {
                    headers.insert(k, http::HeaderValue::from_str(&v).unwrap());
                }
                headers.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static(w.content_type));
                let uri: http::Uri = "/webhooks/sample".parse().unwrap();
                let req = Request {
                    method: &http::Method::POST,
                    uri: &uri,
                    headers: &headers,
                    body: &w.body,
                    now_secs: run.now,
                };
                assert_eq!(scheme.verify(&req), Ok(0), "{}", p.name());
                let keys = keys::keys(
                    scheme.default_dedup_key().as_ref(),
                    scheme.default_ordering_key().as_ref(),
                    &headers,
                    &w.body,
                );
                if let Some(dedup) = &w.dedup_key {
                    assert_eq!(&keys.dedup, dedup, "{}", p.name());
                }
                if scheme.default_ordering_key().is_some() {
                    assert_eq!(keys.ordering, w.entity, "{}", p.name());
                }
                let ty = preset_of(*p, w).ty.unwrap_or_else(|e| panic!("{}: {e}", p.name()));
                assert!(
                    ty.is_some_and(|t| t.ends_with(p.default_event())),
                    "{}: the type is where the preset looks",
                    p.name()
                );
            }
            let ids: std::collections::BTreeSet<&str> = ws.iter().map(|w| w.id.as_str()).collect();
            assert_eq!(ids.len(), 8, "{}: ids are unique per webhook", p.name());
            assert_eq!(ws[0].entity, ws[3].entity, "{}: four webhooks per entity", p.name());
            assert_ne!(ws[3].entity, ws[4].entity, "{}", p.name());
        }
    }
}

//! Meta: Facebook, Instagram and WhatsApp webhooks. They are signed as GitHub signs
//! (`X-Hub-Signature-256`, [`crate::github::HubSignature`]) under the app secret; Meta also checks endpoint
//! ownership with `GET ?hub.mode=subscribe&hub.verify_token=…&hub.challenge=…`, answered with the challenge
//! when the token matches the configured `verify_token`. Meta sends no id of its own: the dedup key is the
//! body's hash.
//!
//! Reference: <https://developers.facebook.com/docs/graph-api/webhooks/getting-started>.

use hookline_schemas::raw::RawMeta;
use serde_json::{json, Value};

use crate::github::HubSignature;
use crate::preset::{at, required, seconds_or_millis, Preset};
use crate::sample::{self, Run, Webhook, PER_ENTITY};
use crate::settings::{self, SecretSource, SettingError, Settings};
use crate::verify::Scheme;

/// Meta.
#[derive(Debug)]
pub struct Meta;

/// `[verify]` of a Meta source.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct MetaSettings {
    /// Live app secrets.
    secrets: Vec<SecretSource>,
    /// The verify token of the subscription check; without it, GET checks are refused.
    verify_token: Option<SecretSource>,
}

impl crate::Provider for Meta {
    fn name(&self) -> &'static str {
        "meta"
    }

    /// `secrets` (app secrets) and `verify_token` (the subscription check's; without it GET checks are
    /// refused).
    fn verifier(&self, settings: Settings) -> Result<Box<dyn Scheme>, SettingError> {
        let s: MetaSettings = settings.read()?;
        Ok(Box::new(HubSignature {
            name: "meta",
            secrets: settings::secrets(s.secrets)?,
            allow_sha1: false,
            verify_token: s.verify_token.map(|t| t.resolve("verify_token", 0)).transpose()?,
            dedup_key: None,
            ordering_key: None,
        }))
    }

    /// Type `object`, then `.{field}` of the first change; subject `entry[0].id`; time `entry[0].time`.
    fn preset(&self, _meta: &RawMeta, data: &Value) -> Preset {
        let field = at(data, "/entry/0/changes/0/field")
            .or_else(|| data.pointer("/entry/0/messaging").map(|_| "messaging".to_owned()));
        Preset {
            ty: required(at(data, "/object"), "a Meta webhook has an `object`").map(|object| {
                Some(match field {
                    Some(f) => format!("{object}.{f}"),
                    None => object,
                })
            }),
            subject: at(data, "/entry/0/id"),
            time_ms: data.pointer("/entry/0/time").and_then(seconds_or_millis),
        }
    }

    fn default_event(&self) -> &'static str {
        "feed"
    }

    /// A Graph API page change notification; `event` is the changed field.
    fn sample(&self, event: &str, run: &Run, n: u64, _rng: &mut fastrand::Rng) -> Webhook {
        let id = format!("{}{n:06}", run.id);
        let page = format!("1{:014}", n / PER_ENTITY);
        let body = json!({
            "object": "page",
            "entry": [{
                "id": page,
                "time": run.now,
                "changes": [{
                    "field": event,
                    "value": { "item": "status", "verb": "add", "post_id": format!("{page}_{id}"),
                               "message": "Hello from hookline send", "created_time": run.now },
                }],
            }],
        });
        Webhook {
            n,
            id,
            body: sample::json(&body),
            content_type: "application/json",
            headers: Vec::new(),
            entity: page,
            dedup_key: None,
        }
    }

    fn sample_settings(&self, _url: &str) -> String {
        "secrets = [{ value = \"sandbox-app-secret\" }]\nverify_token = { value = \"sandbox-verify-token\" }".to_owned()
    }
}

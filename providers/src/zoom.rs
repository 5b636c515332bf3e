//! Zoom: `x-zm-signature: v0=<hex HMAC-SHA256 of "v0:{timestamp}:{body}">` under the app's secret token, with
//! `x-zm-request-timestamp` (seconds). Default tolerance 300 s.
//!
//! Zoom validates an endpoint with a signed `{"event":"endpoint.url_validation","payload":{"plainToken":…}}`
//! POST, answered `{"plainToken":…,"encryptedToken":<hex HMAC-SHA256 of plainToken>}` and not stored.
//!
//! Reference: <https://developers.zoom.us/docs/api/webhooks/#verify-webhook-events>.

use hookline_schemas::raw::RawMeta;
use http::HeaderName;
use serde_json::{json, Value};

use crate::preset::{at, number, required, Preset};
use crate::sample::{self, Run, Webhook, PER_ENTITY};
use crate::settings::{self, SettingError, Settings};
use crate::slack::verify_v0;
use crate::slack::Endpoint as Slack;
use crate::verify::common::Algorithm;
use crate::verify::{Handshake, Outgoing, Request, Scheme, Secret, VerifyError};

/// The signature header.
pub const HEADER: HeaderName = HeaderName::from_static("x-zm-signature");
/// The timestamp header.
pub const TIMESTAMP: HeaderName = HeaderName::from_static("x-zm-request-timestamp");

/// A configured Zoom app endpoint.
#[derive(Debug)]
pub struct Endpoint {
    /// Secret tokens.
    pub secrets: Vec<Secret>,
    /// Tolerance in seconds.
    pub tolerance_secs: u64,
}

impl Scheme for Endpoint {
    fn name(&self) -> &'static str {
        "zoom"
    }

    fn sign(&self, secret: &[u8], out: &Outgoing<'_>) -> Vec<(HeaderName, String)> {
        // Zoom signs as Slack does (`v0:{timestamp}:{body}`), under its own header names.
        let ts = out.timestamp_secs.to_string();
        vec![(HEADER, Slack::sign(secret, &ts, out.body)), (TIMESTAMP, ts)]
    }

    fn signs_timestamp(&self) -> bool {
        true
    }

    fn verify(&self, req: &Request<'_>) -> Result<usize, VerifyError> {
        verify_v0(req, &HEADER, &TIMESTAMP, self.tolerance_secs, &self.secrets)
    }

    fn secrets(&self) -> &[Secret] {
        &self.secrets
    }

    fn credential_headers(&self) -> Vec<HeaderName> {
        vec![HEADER]
    }

    fn handshake(&self, req: &Request<'_>, matched: usize) -> Option<Handshake> {
        let body: serde_json::Value = serde_json::from_slice(req.body).ok()?;
        if body.get("event")?.as_str()? != "endpoint.url_validation" {
            return None;
        }
        let plain = body.pointer("/payload/plainToken")?.as_str()?;
        let secret = self.secrets.get(matched)?;
        let encrypted = hex::encode(Algorithm::Sha256.mac(secret.expose(), &[plain.as_bytes()]));
        Some(Handshake::json(&serde_json::json!({ "plainToken": plain, "encryptedToken": encrypted })))
    }
}

/// Zoom.
#[derive(Debug)]
pub struct Zoom;

impl crate::Provider for Zoom {
    fn name(&self) -> &'static str {
        "zoom"
    }

    /// `secrets` (secret tokens) and `tolerance_secs` (default 300).
    fn verifier(&self, settings: Settings) -> Result<Box<dyn Scheme>, SettingError> {
        let (secrets, tolerance_secs) = settings::timestamped(settings, 300)?;
        Ok(Box::new(Endpoint { secrets, tolerance_secs }))
    }

    /// Type `event`; subject `payload.object.id`; time `event_ts` (Unix ms).
    fn preset(&self, _meta: &RawMeta, data: &Value) -> Preset {
        Preset {
            ty: required(at(data, "/event"), "a Zoom event has an `event`").map(Some),
            subject: at(data, "/payload/object/id"),
            time_ms: data.pointer("/event_ts").and_then(number),
        }
    }

    fn default_event(&self) -> &'static str {
        "meeting.started"
    }

    fn sample(&self, event: &str, run: &Run, n: u64, _rng: &mut fastrand::Rng) -> Webhook {
        let id = format!("{}{n:06}", run.id);
        let meeting = 80_000_000_000 + n / PER_ENTITY;
        let body = json!({
            "event": event,
            "event_ts": run.now * 1000,
            "payload": {
                "account_id": "hooklineSandbox",
                "object": { "id": meeting, "uuid": id, "topic": "Sandbox meeting", "host_id": "h0st" },
            },
        });
        Webhook {
            n,
            id,
            body: sample::json(&body),
            content_type: "application/json",
            headers: Vec::new(),
            entity: meeting.to_string(),
            dedup_key: None,
        }
    }

    fn sample_settings(&self, _url: &str) -> String {
        "secrets = [{ value = \"sandbox-secret-token\" }]".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::test_support::{request, secrets};

    fn zoom() -> Endpoint {
        Endpoint { secrets: secrets(&["secret-token"]), tolerance_secs: 300 }
    }

    #[test]
    fn sign_then_verify_and_tamper() {
        let sig = Slack::sign(b"secret-token", "1000", b"{}");
        let h = |sig: &str| [("x-zm-signature", sig.to_owned()), ("x-zm-request-timestamp", "1000".to_owned())];
        let check = |sig: &str, body: &[u8], now| {
            let h = h(sig);
            zoom().verify(&request(&[(h[0].0, h[0].1.as_str()), (h[1].0, h[1].1.as_str())], body, now).req())
        };
        assert_eq!(check(&sig, b"{}", 1000), Ok(0));
        assert_eq!(check(&sig, b"[]", 1000), Err(VerifyError::Mismatch));
        assert_eq!(check(&sig, b"{}", 2000), Err(VerifyError::StaleTimestamp(300)));
    }

    #[test]
    fn url_validation_is_answered_with_the_encrypted_token() {
        let body = br#"{"payload":{"plainToken":"qgg8vlvZRS6UYooatFL8Aw"},"event_ts":1654503849680,"event":"endpoint.url_validation"}"#;
        let answer = zoom().handshake(&request(&[], body, 0).req(), 0).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
        assert_eq!(json["plainToken"], "qgg8vlvZRS6UYooatFL8Aw");
        assert_eq!(
            json["encryptedToken"].as_str().unwrap(),
            hex::encode(Algorithm::Sha256.mac(b"secret-token", &[b"qgg8vlvZRS6UYooatFL8Aw"]))
        );
        assert_eq!(zoom().handshake(&request(&[], br#"{"event":"meeting.started"}"#, 0).req(), 0), None);
    }
}

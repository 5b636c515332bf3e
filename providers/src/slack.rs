//! Slack: `X-Slack-Signature: v0=<hex HMAC-SHA256 of "v0:{timestamp}:{body}">` under the app's signing secret,
//! with `X-Slack-Request-Timestamp` (seconds). Default tolerance 300 s, as Slack recommends.
//!
//! Slack checks a new Events API URL with a signed `{"type":"url_verification","challenge":…}` POST: once
//! verified, it is answered with the challenge and not stored.
//!
//! Reference: <https://api.slack.com/authentication/verifying-requests-from-slack> (its example is a test
//! below); vectors from `slack_sdk` `SignatureVerifier.generate_signature`. Default dedup key: the Events API
//! `event_id` (slash commands and interactions have none and fall back to the body hash).

use hookline_schemas::raw::RawMeta;
use http::HeaderName;
use serde_json::{json, Value};

use crate::keys::KeySelector;
use crate::preset::{at, required, seconds, Preset};
use crate::sample::{self, Run, Webhook, PER_ENTITY};
use crate::settings::{self, SettingError, Settings};
use crate::verify::common::{check_window, lower_hex, matching_secret, single_header, timestamp_header, Algorithm};
use crate::verify::{Handshake, Outgoing, Request, Scheme, Secret, VerifyError};

/// The signature header.
pub const HEADER: HeaderName = HeaderName::from_static("x-slack-signature");
/// The timestamp header.
pub const TIMESTAMP: HeaderName = HeaderName::from_static("x-slack-request-timestamp");
/// Slack's recommended tolerance.
pub const DEFAULT_TOLERANCE_SECS: u64 = 300;

/// A configured Slack app endpoint.
#[derive(Debug)]
pub struct Endpoint {
    /// Signing secrets.
    pub secrets: Vec<Secret>,
    /// Tolerance in seconds.
    pub tolerance_secs: u64,
}

impl Endpoint {
    /// The `X-Slack-Signature` value for `body` at `timestamp`.
    pub fn sign(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
        format!("v0={}", hex::encode(Algorithm::Sha256.mac(secret, &[b"v0:", timestamp.as_bytes(), b":", body])))
    }
}

/// Verifies the `v0=` hex scheme Slack and Zoom share, with their header names.
pub(crate) fn verify_v0(
    req: &Request<'_>,
    signature: &HeaderName,
    timestamp: &HeaderName,
    tolerance_secs: u64,
    secrets: &[Secret],
) -> Result<usize, VerifyError> {
    let (ts, text) = timestamp_header(req.headers, timestamp, 12)?;
    let value = single_header(req.headers, signature)?;
    let sig = value
        .strip_prefix("v0=")
        .and_then(|h| lower_hex(h, 32))
        .ok_or_else(|| VerifyError::MalformedSignature(signature.to_string()))?;
    check_window(ts, req.now_secs, tolerance_secs)?;
    matching_secret(secrets, &[sig], |key| Algorithm::Sha256.mac(key, &[b"v0:", text.as_bytes(), b":", req.body]))
}

impl Scheme for Endpoint {
    fn name(&self) -> &'static str {
        "slack"
    }

    fn sign(&self, secret: &[u8], out: &Outgoing<'_>) -> Vec<(HeaderName, String)> {
        let ts = out.timestamp_secs.to_string();
        vec![(HEADER, Endpoint::sign(secret, &ts, out.body)), (TIMESTAMP, ts)]
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

    fn default_dedup_key(&self) -> Option<KeySelector> {
        Some(KeySelector::provider_pointer("/event_id"))
    }

    fn handshake(&self, req: &Request<'_>, _matched: usize) -> Option<Handshake> {
        #[derive(serde::Deserialize)]
        struct Check<'a> {
            #[serde(rename = "type")]
            ty: &'a str,
            challenge: &'a str,
        }
        let check: Check<'_> = serde_json::from_slice(req.body).ok()?;
        (check.ty == "url_verification").then(|| Handshake::json(&serde_json::json!({ "challenge": check.challenge })))
    }
}

/// Slack: the Events API, slash commands and interactions.
#[derive(Debug)]
pub struct Slack;

impl crate::Provider for Slack {
    fn name(&self) -> &'static str {
        "slack"
    }

    /// `secrets` (signing secrets) and `tolerance_secs` (default 300).
    fn verifier(&self, settings: Settings) -> Result<Box<dyn Scheme>, SettingError> {
        let (secrets, tolerance_secs) = settings::timestamped(settings, DEFAULT_TOLERANCE_SECS)?;
        Ok(Box::new(Endpoint { secrets, tolerance_secs }))
    }

    /// Events API JSON, slash commands as a form, interactions as a form whose `payload` field is the JSON.
    fn body(&self) -> crate::BodyShape {
        crate::BodyShape { format: crate::Format::Auto, json_in_form_field: Some("payload"), batch: false }
    }

    /// Type `event.type` (Events API), `type` (interactions), `slash_command` (commands); subject
    /// `event.channel`, `channel.id`, `channel_id`; time `event_time` (Unix seconds).
    fn preset(&self, _meta: &RawMeta, data: &Value) -> Preset {
        match at(data, "/type").as_deref() {
            Some("event_callback") => Preset {
                ty: required(at(data, "/event/type"), "a Slack event_callback has an `event.type`").map(Some),
                subject: at(data, "/event/channel")
                    .or_else(|| at(data, "/event/item/channel"))
                    .or_else(|| at(data, "/event/user")),
                time_ms: data.pointer("/event_time").and_then(seconds),
            },
            Some(ty) => Preset {
                ty: Ok(Some(ty.to_owned())),
                subject: at(data, "/channel/id").or_else(|| at(data, "/view/id")).or_else(|| at(data, "/user/id")),
                time_ms: None,
            },
            None if at(data, "/command").is_some() => {
                Preset { ty: Ok(Some("slash_command".to_owned())), subject: at(data, "/channel_id"), time_ms: None }
            }
            None => Preset {
                ty: Err("a Slack payload has a `type` (or a `command`, for a slash command)".to_owned()),
                subject: None,
                time_ms: None,
            },
        }
    }

    fn default_event(&self) -> &'static str {
        "app_mention"
    }

    fn sample(&self, event: &str, run: &Run, n: u64, _rng: &mut fastrand::Rng) -> Webhook {
        let (r, now) = (&run.id, run.now);
        let id = format!("Ev{}{n:06}", r.to_ascii_uppercase());
        let channel = format!("C{:08}", n / PER_ENTITY);
        let body = json!({
            "token": "sandbox-verification-token",
            "team_id": "T0HOOKLINE",
            "api_app_id": "A0HOOKLINE",
            "event": {
                "type": event,
                "user": "U0SANDBOX",
                "text": "<@U0HOOKLINE> hello",
                "ts": format!("{now}.{n:06}"),
                "channel": channel,
                "event_ts": format!("{now}.{n:06}"),
            },
            "type": "event_callback",
            "event_id": id,
            "event_time": now,
        });
        Webhook {
            n,
            dedup_key: Some(id.clone()),
            id,
            body: sample::json(&body),
            content_type: "application/json",
            headers: Vec::new(),
            entity: channel,
        }
    }

    fn sample_settings(&self, _url: &str) -> String {
        "secrets = [{ value = \"sandbox-signing-secret\" }]".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::test_support::{request, secrets, Vector};

    const DOC_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
    const DOC_TS: &str = "1531420618";
    const DOC_BODY: &str = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    const DOC_SIG: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";

    fn slack(list: &[&str]) -> Endpoint {
        Endpoint { secrets: secrets(list), tolerance_secs: DEFAULT_TOLERANCE_SECS }
    }

    #[test]
    fn slacks_documented_example_verifies() {
        let h = [("x-slack-signature", DOC_SIG), ("x-slack-request-timestamp", DOC_TS)];
        assert_eq!(slack(&[DOC_SECRET]).verify(&request(&h, DOC_BODY.as_bytes(), 1531420618).req()), Ok(0));
        assert_eq!(Endpoint::sign(DOC_SECRET.as_bytes(), DOC_TS, DOC_BODY.as_bytes()), DOC_SIG);
    }

    #[test]
    fn official_library_vectors_verify() {
        for v in Vector::load("slack") {
            let ts = &v.headers["x-slack-request-timestamp"];
            assert_eq!(&Endpoint::sign(v.secret.as_bytes(), ts, v.body.as_bytes()), &v.headers["x-slack-signature"]);
            assert_eq!(
                slack(&[&v.secret]).verify(&request(&v.headers(), v.body.as_bytes(), v.now).req()),
                Ok(0),
                "{}",
                v.name
            );
        }
    }

    #[test]
    fn replays_tampering_rotation_and_malformed_headers() {
        let s = slack(&["old", "new"]);
        let sig = Endpoint::sign(b"new", "1000", b"{}");
        let check = |sig: &str, ts: &str, body: &[u8], now| {
            s.verify(&request(&[("x-slack-signature", sig), ("x-slack-request-timestamp", ts)], body, now).req())
        };
        assert_eq!(check(&sig, "1000", b"{}", 1000), Ok(1));
        assert_eq!(check(&sig, "1000", b"{} ", 1000), Err(VerifyError::Mismatch));
        assert_eq!(check(&sig, "1001", b"{}", 1000), Err(VerifyError::Mismatch));
        assert_eq!(check(&sig, "1000", b"{}", 1301), Err(VerifyError::StaleTimestamp(300)));
        assert_eq!(check(&sig, "1000", b"{}", 699), Err(VerifyError::FutureTimestamp(300)));
        assert!(matches!(check(&sig, "soon", b"{}", 1000), Err(VerifyError::MalformedTimestamp(_))));
        assert!(matches!(check("v1=00", "1000", b"{}", 1000), Err(VerifyError::MalformedSignature(_))));
        assert!(matches!(
            s.verify(&request(&[("x-slack-signature", &sig)], b"{}", 1000).req()),
            Err(VerifyError::MissingTimestamp(_))
        ));
    }

    #[test]
    fn url_verification_is_answered_after_verification() {
        let s = slack(&["k"]);
        let body = br#"{"token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#;
        let req = request(&[], body, 0);
        assert_eq!(
            s.handshake(&req.req(), 0),
            Some(Handshake::json(
                &serde_json::json!({"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"})
            ))
        );
        assert_eq!(s.handshake(&request(&[], br#"{"type":"event_callback","event_id":"Ev1"}"#, 0).req(), 0), None);
        assert_eq!(s.handshake(&request(&[], b"token=x&command=%2Fdo", 0).req(), 0), None);
    }
}

//! Paddle Billing: `Paddle-Signature: ts=1671552777;h1=<hex HMAC-SHA256 of "{ts}:{body}">` under the
//! notification destination's secret key. Several `h1` entries may be sent while a secret is rotated. Paddle's
//! SDKs allow 5 seconds of clock difference by default, and so does hookline (`tolerance_secs`).
//!
//! Reference: <https://developer.paddle.com/webhooks/signature-verification>; vectors from
//! `paddle-python-sdk` `PaddleSignature`. Default keys: dedup = `notification_id`; ordering = `data.id`, the
//! entity the event is about.

use hookline_schemas::raw::RawMeta;
use http::HeaderName;
use serde_json::{json, Value};

use crate::keys::KeySelector;
use crate::preset::{at, required, rfc3339, Preset};
use crate::sample::{self, split_type, Run, Webhook, PER_ENTITY};
use crate::settings::{self, SettingError, Settings};
use crate::verify::common::{check_window, lower_hex, matching_secret, parse_timestamp, single_header, Algorithm};
use crate::verify::{Outgoing, Request, Scheme, Secret, VerifyError, MAX_SIGNATURES};

/// The signature header.
pub const HEADER: HeaderName = HeaderName::from_static("paddle-signature");
/// Paddle's SDK default.
pub const DEFAULT_TOLERANCE_SECS: u64 = 5;

/// A configured Paddle notification destination.
#[derive(Debug)]
pub struct Endpoint {
    /// Secret keys.
    pub secrets: Vec<Secret>,
    /// Tolerance in seconds.
    pub tolerance_secs: u64,
}

impl Endpoint {
    /// The `Paddle-Signature` value.
    pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
        let mac = Algorithm::Sha256.mac(secret, &[timestamp.to_string().as_bytes(), b":", body]);
        format!("ts={timestamp};h1={}", hex::encode(mac))
    }
}

impl Scheme for Endpoint {
    fn name(&self) -> &'static str {
        "paddle"
    }

    fn sign(&self, secret: &[u8], out: &Outgoing<'_>) -> Vec<(HeaderName, String)> {
        vec![(HEADER, Endpoint::sign(secret, out.timestamp_secs, out.body))]
    }

    fn signs_timestamp(&self) -> bool {
        true
    }

    fn verify(&self, req: &Request<'_>) -> Result<usize, VerifyError> {
        let malformed = || VerifyError::MalformedSignature(HEADER.to_string());
        let value = single_header(req.headers, &HEADER)?;
        let mut timestamp = None;
        let mut candidates = Vec::new();
        for item in value.split(';') {
            let (key, val) = item.trim().split_once('=').ok_or_else(malformed)?;
            match key {
                "ts" if timestamp.is_none() => {
                    timestamp = Some((
                        parse_timestamp(val, 12).ok_or_else(|| VerifyError::MalformedTimestamp("ts".into()))?,
                        val,
                    ));
                }
                "h1" => {
                    candidates.push(lower_hex(val, 32).ok_or_else(malformed)?);
                    if candidates.len() > MAX_SIGNATURES {
                        return Err(malformed());
                    }
                }
                // Paddle's SDKs refuse unknown keys and a repeated timestamp.
                _ => return Err(malformed()),
            }
        }
        let (ts, text) = timestamp.ok_or_else(|| VerifyError::MissingTimestamp("ts".into()))?;
        if candidates.is_empty() {
            return Err(malformed());
        }
        check_window(ts, req.now_secs, self.tolerance_secs)?;
        matching_secret(&self.secrets, &candidates, |key| {
            Algorithm::Sha256.mac(key, &[text.as_bytes(), b":", req.body])
        })
    }

    fn secrets(&self) -> &[Secret] {
        &self.secrets
    }

    fn credential_headers(&self) -> Vec<HeaderName> {
        vec![HEADER]
    }

    fn default_dedup_key(&self) -> Option<KeySelector> {
        Some(KeySelector::provider_pointer("/notification_id"))
    }

    fn default_ordering_key(&self) -> Option<KeySelector> {
        Some(KeySelector::provider_pointer("/data/id"))
    }
}

/// Paddle Billing.
#[derive(Debug)]
pub struct Paddle;

impl crate::Provider for Paddle {
    fn name(&self) -> &'static str {
        "paddle"
    }

    /// `secrets` (the destination's secret keys) and `tolerance_secs` (default 5, as Paddle's SDKs).
    fn verifier(&self, settings: Settings) -> Result<Box<dyn Scheme>, SettingError> {
        let (secrets, tolerance_secs) = settings::timestamped(settings, DEFAULT_TOLERANCE_SECS)?;
        Ok(Box::new(Endpoint { secrets, tolerance_secs }))
    }

    /// `event_type`; subject `data.id`; time `occurred_at` (RFC 3339).
    fn preset(&self, _meta: &RawMeta, data: &Value) -> Preset {
        Preset {
            ty: required(at(data, "/event_type"), "a Paddle notification has an `event_type`").map(Some),
            subject: at(data, "/data/id"),
            time_ms: data.pointer("/occurred_at").and_then(rfc3339),
        }
    }

    fn default_event(&self) -> &'static str {
        "transaction.completed"
    }

    fn sample(&self, event: &str, run: &Run, n: u64, rng: &mut fastrand::Rng) -> Webhook {
        let r = &run.id;
        let id = format!("evt_{r}{n:06}");
        let prefix = match split_type(event).0 {
            "transaction" => "txn",
            "subscription" => "sub",
            "customer" => "ctm",
            "address" => "add",
            "adjustment" => "adj",
            other => other,
        };
        let entity = format!("{prefix}_{r}{:06}", n / PER_ENTITY);
        let notification = format!("ntf_{r}{n:06}");
        let body = json!({
            "event_id": id,
            "event_type": event,
            "occurred_at": sample::rfc3339(run.now),
            "notification_id": notification,
            "data": {
                "id": entity,
                "status": split_type(event).1,
                "currency_code": "USD",
                "details": { "totals": { "total": rng.u64(100..100_000).to_string() } },
            },
        });
        Webhook {
            n,
            id,
            body: sample::json(&body),
            content_type: "application/json",
            headers: Vec::new(),
            entity,
            dedup_key: Some(notification),
        }
    }

    fn sample_settings(&self, _url: &str) -> String {
        "secrets = [{ value = \"pdl_ntfset_sandbox\" }]".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::test_support::{request, secrets, Vector};

    fn paddle(list: &[&str]) -> Endpoint {
        Endpoint { secrets: secrets(list), tolerance_secs: DEFAULT_TOLERANCE_SECS }
    }

    #[test]
    fn official_library_vectors_verify() {
        for v in Vector::load("paddle") {
            assert_eq!(&Endpoint::sign(v.secret.as_bytes(), v.now, v.body.as_bytes()), &v.headers["paddle-signature"]);
            assert_eq!(
                paddle(&[&v.secret]).verify(&request(&v.headers(), v.body.as_bytes(), v.now).req()),
                Ok(0),
                "{}",
                v.name
            );
        }
    }

    #[test]
    fn rotation_tampering_time_and_malformed() {
        let s = paddle(&["pdl_ntfset_old", "pdl_ntfset_new"]);
        let body = br#"{"notification_id":"ntf_1"}"#;
        let new = Endpoint::sign(b"pdl_ntfset_new", 1000, body);
        let old = Endpoint::sign(b"pdl_ntfset_old", 1000, body);
        let both = format!("{new};h1={}", old.split("h1=").nth(1).unwrap());
        let check = |sig: &str, body: &[u8], now| s.verify(&request(&[("paddle-signature", sig)], body, now).req());
        assert_eq!(check(&new, body, 1000), Ok(1));
        assert_eq!(check(&both, body, 1000), Ok(0));
        assert_eq!(check(&new, b"{}", 1000), Err(VerifyError::Mismatch));
        assert_eq!(check(&new, body, 1006), Err(VerifyError::StaleTimestamp(5)));
        assert_eq!(check(&new, body, 994), Err(VerifyError::FutureTimestamp(5)));
        for bad in ["ts=1000", "h1=00", "ts=1000;h1=zz", "ts=1000;h2=00", "ts=abc;h1=00", "garbage"] {
            assert!(check(bad, body, 1000).is_err_and(|e| e != VerifyError::Mismatch), "{bad}");
        }
    }
}

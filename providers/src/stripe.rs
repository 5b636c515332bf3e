//! Stripe: `Stripe-Signature: t=1492774577,v1=5257a869…,v1=…` where each `v1` is the hex HMAC-SHA256 of
//! `{t}.{body}` under the endpoint's signing secret (`whsec_…`, used as it is). Several `v1` entries are sent
//! while a secret is being rolled; `v0` entries (test-mode legacy) are ignored. Default tolerance 300 s.
//!
//! Reference: <https://docs.stripe.com/webhooks#verify-manually>; vectors from `stripe` (Python)
//! `WebhookSignature.generate_signature_header` in `tests/vectors/stripe.json`.
//!
//! Default keys: dedup = the event `id`; ordering = `data.object.id`, the object the event is about.

use hookline_schemas::raw::RawMeta;
use http::HeaderName;
use serde_json::{json, Value};

use crate::keys::KeySelector;
use crate::preset::{at, required, seconds, Preset};
use crate::sample::{self, split_type, Run, Webhook, PER_ENTITY};
use crate::settings::{self, SettingError, Settings};
use crate::verify::common::{check_window, lower_hex, matching_secret, parse_timestamp, single_header, Algorithm};
use crate::verify::{Outgoing, Request, Scheme, Secret, VerifyError, MAX_SIGNATURES};

/// The header.
pub const HEADER: HeaderName = HeaderName::from_static("stripe-signature");
/// Stripe's own default tolerance.
pub const DEFAULT_TOLERANCE_SECS: u64 = 300;

/// A configured Stripe endpoint.
#[derive(Debug)]
pub struct Endpoint {
    /// Signing secrets.
    pub secrets: Vec<Secret>,
    /// Tolerance in seconds.
    pub tolerance_secs: u64,
}

impl Endpoint {
    /// The header value Stripe sends for `body` at `timestamp` (for tests and the CLI).
    pub fn sign(secret: &[u8], body: &[u8], timestamp: i64) -> String {
        let mac = Algorithm::Sha256.mac(secret, &[timestamp.to_string().as_bytes(), b".", body]);
        format!("t={timestamp},v1={}", hex::encode(mac))
    }
}

impl Scheme for Endpoint {
    fn name(&self) -> &'static str {
        "stripe"
    }

    fn sign(&self, secret: &[u8], out: &Outgoing<'_>) -> Vec<(HeaderName, String)> {
        vec![(HEADER, Endpoint::sign(secret, out.body, out.timestamp_secs))]
    }

    fn signs_timestamp(&self) -> bool {
        true
    }

    fn verify(&self, req: &Request<'_>) -> Result<usize, VerifyError> {
        let malformed = || VerifyError::MalformedSignature(HEADER.to_string());
        let value = single_header(req.headers, &HEADER)?;
        let mut timestamp = None;
        let mut candidates = Vec::new();
        for item in value.split(',') {
            let (key, val) = item.trim().split_once('=').ok_or_else(malformed)?;
            match key {
                "t" => {
                    if timestamp.is_some() {
                        return Err(malformed());
                    }
                    timestamp =
                        Some(parse_timestamp(val, 12).ok_or_else(|| VerifyError::MalformedTimestamp("t".into()))?);
                }
                "v1" => {
                    // An entry that is not 32 bytes of lower-case hex cannot match (Stripe's libraries compare
                    // lower-case hex text); it does not void the others.
                    if let Some(sig) = lower_hex(val, 32) {
                        candidates.push(sig);
                    }
                    if candidates.len() > MAX_SIGNATURES {
                        return Err(malformed());
                    }
                }
                _ => {}
            }
        }
        let timestamp = timestamp.ok_or_else(|| VerifyError::MissingTimestamp("t".into()))?;
        if candidates.is_empty() {
            return Err(malformed());
        }
        check_window(timestamp, req.now_secs, self.tolerance_secs)?;
        let t = timestamp.to_string();
        matching_secret(&self.secrets, &candidates, |key| Algorithm::Sha256.mac(key, &[t.as_bytes(), b".", req.body]))
    }

    fn secrets(&self) -> &[Secret] {
        &self.secrets
    }

    fn credential_headers(&self) -> Vec<HeaderName> {
        vec![HEADER]
    }

    fn default_dedup_key(&self) -> Option<KeySelector> {
        Some(KeySelector::provider_pointer("/id"))
    }

    fn default_ordering_key(&self) -> Option<KeySelector> {
        Some(KeySelector::provider_pointer("/data/object/id"))
    }
}

/// Stripe.
#[derive(Debug)]
pub struct Stripe;

impl crate::Provider for Stripe {
    fn name(&self) -> &'static str {
        "stripe"
    }

    /// `secrets` (endpoint signing secrets `whsec_…`) and `tolerance_secs` (default 300).
    fn verifier(&self, settings: Settings) -> Result<Box<dyn Scheme>, SettingError> {
        let (secrets, tolerance_secs) = settings::timestamped(settings, DEFAULT_TOLERANCE_SECS)?;
        Ok(Box::new(Endpoint { secrets, tolerance_secs }))
    }

    /// `type`; subject `data.object.id`; time `created` (Unix seconds).
    fn preset(&self, _meta: &RawMeta, data: &Value) -> Preset {
        Preset {
            ty: required(at(data, "/type"), "a Stripe event has a `type`").map(Some),
            subject: at(data, "/data/object/id"),
            time_ms: data.pointer("/created").and_then(seconds),
        }
    }

    fn min_dedup_window_secs(&self) -> Option<(u64, &'static str)> {
        Some((259_200, "Stripe retries for up to 3 days"))
    }

    fn default_event(&self) -> &'static str {
        "payment_intent.succeeded"
    }

    fn sample(&self, event: &str, run: &Run, n: u64, rng: &mut fastrand::Rng) -> Webhook {
        let r = &run.id;
        let id = format!("evt_{r}{n:06}");
        let object = stripe_object(event, r, n / PER_ENTITY, rng.u64(100..100_000));
        let entity = object["id"].as_str().unwrap_or_default().to_owned();
        let body = json!({
            "id": id,
            "object": "event",
            "api_version": "2024-06-20",
            "created": run.now,
            "data": { "object": object },
            "livemode": false,
            "pending_webhooks": 1,
            "request": { "id": format!("req_{r}{n:06}"), "idempotency_key": sample::uuid() },
            "type": event,
        });
        Webhook {
            n,
            dedup_key: Some(id.clone()),
            id,
            body: sample::json(&body),
            content_type: "application/json",
            headers: Vec::new(),
            entity,
        }
    }

    fn sample_settings(&self, _url: &str) -> String {
        "secrets = [{ value = \"whsec_sandbox_stripe\" }]".to_owned()
    }
}

/// The object a sample event of type `event` is about.
fn stripe_object(event: &str, r: &str, group: u64, amount: u64) -> Value {
    let customer = format!("cus_{r}{group:06}");
    let last = split_type(event).1;
    if event.starts_with("checkout.session.") {
        return json!({ "id": format!("cs_test_{r}{group:06}"), "object": "checkout.session", "mode": "payment",
                        "amount_total": amount, "currency": "usd", "customer": customer,
                        "payment_status": if last == "completed" { "paid" } else { "unpaid" } });
    }
    if event.starts_with("customer.subscription.") {
        return json!({ "id": format!("sub_{r}{group:06}"), "object": "subscription", "customer": customer,
                        "status": if last == "deleted" { "canceled" } else { "active" } });
    }
    match split_type(event).0 {
        "payment_intent" => json!({
            "id": format!("pi_{r}{group:06}"), "object": "payment_intent", "amount": amount, "currency": "usd",
            "customer": customer,
            "status": match last { "succeeded" => "succeeded", "canceled" => "canceled", "processing" => "processing",
                                   _ => "requires_payment_method" },
        }),
        "charge" => json!({
            "id": format!("ch_{r}{group:06}"), "object": "charge", "amount": amount, "currency": "usd",
            "payment_intent": format!("pi_{r}{group:06}"), "paid": last != "failed",
            "status": if last == "failed" { "failed" } else { "succeeded" },
        }),
        "customer" => json!({ "id": customer, "object": "customer", "email": format!("customer{group}@example.com") }),
        "invoice" => json!({
            "id": format!("in_{r}{group:06}"), "object": "invoice", "customer": customer, "currency": "usd",
            "amount_due": amount, "amount_paid": if last == "paid" { amount } else { 0 },
            "status": if last == "paid" { "paid" } else { "open" },
        }),
        other => json!({ "id": format!("{other}_{r}{group:06}"), "object": other }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::test_support::{request, secrets, Vector};

    fn stripe(list: &[&str]) -> Endpoint {
        Endpoint { secrets: secrets(list), tolerance_secs: DEFAULT_TOLERANCE_SECS }
    }

    #[test]
    fn official_library_vectors_verify() {
        for v in Vector::load("stripe") {
            let s = stripe(&[&v.secret]);
            let header = &v.headers["stripe-signature"];
            if !v.name.contains("two v1") {
                let signed = Endpoint::sign(v.secret.as_bytes(), v.body.as_bytes(), v.now);
                assert_eq!(&signed, header, "our signer matches Stripe's: {}", v.name);
            }
            assert_eq!(s.verify(&request(&v.headers(), v.body.as_bytes(), v.now).req()), Ok(0), "{}", v.name);
        }
    }

    #[test]
    fn sign_then_verify_with_rotation() {
        let s = stripe(&["whsec_old", "whsec_new"]);
        let body = br#"{"id":"evt_1"}"#;
        let header = Endpoint::sign(b"whsec_new", body, 1000);
        assert_eq!(s.verify(&request(&[("stripe-signature", &header)], body, 1000).req()), Ok(1));
        // Stripe sends one v1 per active secret while rolling: any of them may match.
        let old = Endpoint::sign(b"whsec_old", body, 1000);
        let both = format!("{header},v1={},v0=ignored", old.split("v1=").nth(1).unwrap());
        assert_eq!(s.verify(&request(&[("stripe-signature", &both)], body, 1000).req()), Ok(0));
    }

    #[test]
    fn tampering_wrong_secrets_and_time_are_refused() {
        let s = stripe(&["whsec_right"]);
        let body = br#"{"id":"evt_1","amount":100}"#;
        let header = Endpoint::sign(b"whsec_right", body, 1000);
        let ok = |b: &[u8], now| s.verify(&request(&[("stripe-signature", &header)], b, now).req());
        assert_eq!(ok(body, 1000), Ok(0));
        assert_eq!(ok(br#"{"id":"evt_1","amount":900}"#, 1000), Err(VerifyError::Mismatch));
        assert_eq!(ok(body, 1301), Err(VerifyError::StaleTimestamp(300)));
        assert_eq!(ok(body, 699), Err(VerifyError::FutureTimestamp(300)));
        let wrong = Endpoint::sign(b"whsec_wrong", body, 1000);
        assert_eq!(s.verify(&request(&[("stripe-signature", &wrong)], body, 1000).req()), Err(VerifyError::Mismatch));
        // The timestamp is signed: moving it breaks the signature.
        let moved = header.replace("t=1000", "t=1001");
        assert_eq!(s.verify(&request(&[("stripe-signature", &moved)], body, 1000).req()), Err(VerifyError::Mismatch));
    }

    #[test]
    fn malformed_headers_are_401_reasons() {
        let s = stripe(&["k"]);
        for bad in ["", "garbage", "t=1000", "v1=abcd", "t=x,v1=00", "t=1,t=2,v1=00"] {
            let r = s.verify(&request(&[("stripe-signature", bad)], b"{}", 1000).req());
            assert!(r.is_err() && r != Err(VerifyError::Mismatch), "{bad:?}: {r:?}");
        }
        let sig = Endpoint::sign(b"k", b"{}", 1000);
        let r = s.verify(&request(&[("stripe-signature", &sig), ("stripe-signature", &sig)], b"{}", 1000).req());
        assert!(matches!(r, Err(VerifyError::DuplicateSignature(_))));
        assert!(matches!(s.verify(&request(&[], b"{}", 1000).req()), Err(VerifyError::MissingSignature(_))));
    }
}

//! Stripe: `Stripe-Signature: t=1492774577,v1=5257a869…,v1=…` where each `v1` is the hex HMAC-SHA256 of
//! `{t}.{body}` under the endpoint's signing secret (`whsec_…`, used as it is). Several `v1` entries are sent
//! while a secret is being rolled; `v0` entries (test-mode legacy) are ignored. Default tolerance 300 s.
//!
//! Reference: <https://docs.stripe.com/webhooks#verify-manually>; vectors from `stripe` (Python)
//! `WebhookSignature.generate_signature_header` in `tests/vectors/stripe.json`.
//!
//! Default keys: dedup = the event `id`; ordering = `data.object.id`, the object the event is about.

use http::HeaderName;

use super::common::{check_window, matching_secret, parse_timestamp, single_header, Algorithm};
use super::{Outgoing, Request, Scheme, Secret, VerifyError, MAX_SIGNATURES};
use crate::keys::KeySelector;

/// The header.
pub const HEADER: HeaderName = HeaderName::from_static("stripe-signature");
/// Stripe's own default tolerance.
pub const DEFAULT_TOLERANCE_SECS: u64 = 300;

/// A configured Stripe endpoint.
#[derive(Debug)]
pub struct Stripe {
    /// Signing secrets.
    pub secrets: Vec<Secret>,
    /// Tolerance in seconds.
    pub tolerance_secs: u64,
}

impl Stripe {
    /// The header value Stripe sends for `body` at `timestamp` (for tests and the CLI).
    pub fn sign(secret: &[u8], body: &[u8], timestamp: i64) -> String {
        let mac = Algorithm::Sha256.mac(secret, &[timestamp.to_string().as_bytes(), b".", body]);
        format!("t={timestamp},v1={}", hex::encode(mac))
    }
}

impl Scheme for Stripe {
    fn name(&self) -> &'static str {
        "stripe"
    }

    fn sign(&self, secret: &[u8], out: &Outgoing<'_>) -> Vec<(HeaderName, String)> {
        vec![(HEADER, Stripe::sign(secret, out.body, out.timestamp_secs))]
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
                    // An entry that is not 32 bytes of hex cannot match; it does not void the others.
                    if let Some(sig) = hex::decode(val).ok().filter(|s| s.len() == 32) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::test_support::{request, secrets, Vector};

    fn stripe(list: &[&str]) -> Stripe {
        Stripe { secrets: secrets(list), tolerance_secs: DEFAULT_TOLERANCE_SECS }
    }

    #[test]
    fn official_library_vectors_verify() {
        for v in Vector::load("stripe") {
            let s = stripe(&[&v.secret]);
            let header = &v.headers["stripe-signature"];
            if !v.name.contains("two v1") {
                let signed = Stripe::sign(v.secret.as_bytes(), v.body.as_bytes(), v.now);
                assert_eq!(&signed, header, "our signer matches Stripe's: {}", v.name);
            }
            assert_eq!(s.verify(&request(&v.headers(), v.body.as_bytes(), v.now).req()), Ok(0), "{}", v.name);
        }
    }

    #[test]
    fn sign_then_verify_with_rotation() {
        let s = stripe(&["whsec_old", "whsec_new"]);
        let body = br#"{"id":"evt_1"}"#;
        let header = Stripe::sign(b"whsec_new", body, 1000);
        assert_eq!(s.verify(&request(&[("stripe-signature", &header)], body, 1000).req()), Ok(1));
        // Stripe sends one v1 per active secret while rolling: any of them may match.
        let old = Stripe::sign(b"whsec_old", body, 1000);
        let both = format!("{header},v1={},v0=ignored", old.split("v1=").nth(1).unwrap());
        assert_eq!(s.verify(&request(&[("stripe-signature", &both)], body, 1000).req()), Ok(0));
    }

    #[test]
    fn tampering_wrong_secrets_and_time_are_refused() {
        let s = stripe(&["whsec_right"]);
        let body = br#"{"id":"evt_1","amount":100}"#;
        let header = Stripe::sign(b"whsec_right", body, 1000);
        let ok = |b: &[u8], now| s.verify(&request(&[("stripe-signature", &header)], b, now).req());
        assert_eq!(ok(body, 1000), Ok(0));
        assert_eq!(ok(br#"{"id":"evt_1","amount":900}"#, 1000), Err(VerifyError::Mismatch));
        assert_eq!(ok(body, 1301), Err(VerifyError::StaleTimestamp(300)));
        assert_eq!(ok(body, 699), Err(VerifyError::FutureTimestamp(300)));
        let wrong = Stripe::sign(b"whsec_wrong", body, 1000);
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
        let sig = Stripe::sign(b"k", b"{}", 1000);
        let r = s.verify(&request(&[("stripe-signature", &sig), ("stripe-signature", &sig)], b"{}", 1000).req());
        assert!(matches!(r, Err(VerifyError::DuplicateSignature(_))));
        assert!(matches!(s.verify(&request(&[], b"{}", 1000).req()), Err(VerifyError::MissingSignature(_))));
    }
}

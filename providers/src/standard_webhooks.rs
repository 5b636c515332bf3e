//! Standard Webhooks (<https://www.standardwebhooks.com/>) and Svix, which uses the same scheme under
//! `svix-*` header names.
//!
//! Headers `webhook-id`, `webhook-timestamp` (seconds), `webhook-signature`: space-separated `v1,<base64>`
//! entries, each the HMAC-SHA256 of `{id}.{timestamp}.{body}` under the secret, which is configured as
//! `whsec_<base64>` and used base64-decoded. Other versions (`v1a`, asymmetric) are ignored. Default tolerance
//! 300 s, both directions, as the specification requires. The `svix` scheme reads `svix-*` headers and, as
//! Svix's own library does, the `webhook-*` names when those are absent.
//!
//! Vectors: `standardwebhooks` and `svix` (Python) `Webhook.sign`, in `tests/vectors/standard_webhooks.json`
//! and `svix.json`. Default dedup key: the message id header.

use base64::Engine as _;
use hookline_schemas::raw::RawMeta;
use http::HeaderName;
use serde_json::{json, Value};

use crate::keys::KeySelector;
use crate::preset::{at, required, rfc3339, Preset};
use crate::sample::{self, split_type, Run, Webhook, PER_ENTITY};
use crate::settings::{self, SettingError, Settings};
use crate::verify::common::{check_window, matching_secret, single_header, timestamp_header, Algorithm};
use crate::verify::{Outgoing, Request, Scheme, Secret, VerifyError, MAX_SIGNATURES};

/// The specification's default tolerance.
pub const DEFAULT_TOLERANCE_SECS: u64 = 300;
/// Longest message id accepted.
pub const MAX_ID_BYTES: usize = 256;

/// Which header names are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// `webhook-id`, `webhook-timestamp`, `webhook-signature`.
    Standard,
    /// `svix-id`, `svix-timestamp`, `svix-signature` (falling back to the `webhook-*` names).
    Svix,
}

static STANDARD_HEADERS: [HeaderName; 3] = [
    HeaderName::from_static("webhook-id"),
    HeaderName::from_static("webhook-timestamp"),
    HeaderName::from_static("webhook-signature"),
];
static SVIX_HEADERS: [HeaderName; 3] = [
    HeaderName::from_static("svix-id"),
    HeaderName::from_static("svix-timestamp"),
    HeaderName::from_static("svix-signature"),
];

/// Decodes a `whsec_…` secret (padding optional, as the reference libraries accept).
pub fn decode_secret(text: &str) -> Result<Vec<u8>, String> {
    let b64 = text.strip_prefix("whsec_").unwrap_or(text);
    let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(b64.trim_end_matches('='))
        .map_err(|_| "is not a base64 secret (whsec_<base64>)".to_owned())?;
    if bytes.is_empty() {
        return Err("is empty".into());
    }
    Ok(bytes)
}

/// A configured Standard Webhooks or Svix endpoint.
#[derive(Debug)]
pub struct Endpoint {
    /// Header names.
    pub flavor: Flavor,
    /// Secrets, already base64-decoded.
    pub secrets: Vec<Secret>,
    /// Tolerance in seconds.
    pub tolerance_secs: u64,
}

impl Endpoint {
    /// The `webhook-signature` value for a message (for tests and the CLI).
    pub fn sign(decoded_secret: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
        let mac =
            Algorithm::Sha256.mac(decoded_secret, &[id.as_bytes(), b".", timestamp.to_string().as_bytes(), b".", body]);
        format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(mac))
    }

    /// The (id, timestamp, signature) header names present on a request.
    fn names(&self, req: &Request<'_>) -> &'static [HeaderName; 3] {
        match self.flavor {
            Flavor::Standard => &STANDARD_HEADERS,
            Flavor::Svix
                if req.headers.contains_key(&SVIX_HEADERS[0]) || !req.headers.contains_key(&STANDARD_HEADERS[0]) =>
            {
                &SVIX_HEADERS
            }
            Flavor::Svix => &STANDARD_HEADERS,
        }
    }
}

impl Scheme for Endpoint {
    fn name(&self) -> &'static str {
        match self.flavor {
            Flavor::Standard => "standard_webhooks",
            Flavor::Svix => "svix",
        }
    }

    fn sign(&self, secret: &[u8], out: &Outgoing<'_>) -> Vec<(HeaderName, String)> {
        let [id, timestamp, signature] = match self.flavor {
            Flavor::Standard => &STANDARD_HEADERS,
            Flavor::Svix => &SVIX_HEADERS,
        };
        vec![
            (id.clone(), out.id.to_owned()),
            (timestamp.clone(), out.timestamp_secs.to_string()),
            (signature.clone(), Endpoint::sign(secret, out.id, out.timestamp_secs, out.body)),
        ]
    }

    fn signs_timestamp(&self) -> bool {
        true
    }

    fn verify(&self, req: &Request<'_>) -> Result<usize, VerifyError> {
        let [id_name, ts_name, sig_name] = self.names(req);
        let malformed = || VerifyError::MalformedSignature(sig_name.to_string());
        let id = single_header(req.headers, id_name)?;
        if id.is_empty() || id.len() > MAX_ID_BYTES {
            return Err(VerifyError::MalformedSignature(id_name.to_string()));
        }
        let (timestamp, text) = timestamp_header(req.headers, ts_name, 12)?;
        let value = single_header(req.headers, sig_name)?;
        let mut candidates = Vec::new();
        for entry in value.split(' ').filter(|e| !e.is_empty()) {
            let (version, sig) = entry.split_once(',').ok_or_else(malformed)?;
            if version != "v1" {
                continue;
            }
            if let Some(sig) = base64::engine::general_purpose::STANDARD.decode(sig).ok().filter(|s| s.len() == 32) {
                candidates.push(sig);
            }
            if candidates.len() > MAX_SIGNATURES {
                return Err(malformed());
            }
        }
        if candidates.is_empty() {
            return Err(malformed());
        }
        check_window(timestamp, req.now_secs, self.tolerance_secs)?;
        matching_secret(&self.secrets, &candidates, |key| {
            Algorithm::Sha256.mac(key, &[id.as_bytes(), b".", text.as_bytes(), b".", req.body])
        })
    }

    fn secrets(&self) -> &[Secret] {
        &self.secrets
    }

    fn credential_headers(&self) -> Vec<HeaderName> {
        vec![STANDARD_HEADERS[2].clone(), SVIX_HEADERS[2].clone()]
    }

    fn default_dedup_key(&self) -> Option<KeySelector> {
        Some(match self.flavor {
            Flavor::Standard => KeySelector::provider_header(STANDARD_HEADERS[0].clone()),
            Flavor::Svix => KeySelector::provider_header_or(SVIX_HEADERS[0].clone(), STANDARD_HEADERS[0].clone()),
        })
    }
}

/// Standard Webhooks, or Svix: one provider type, two flavors of header names.
#[derive(Debug)]
pub struct StandardWebhooks(Flavor);

/// Standard Webhooks (`webhook-*` headers).
pub const STANDARD_WEBHOOKS: StandardWebhooks = StandardWebhooks(Flavor::Standard);
/// Svix (`svix-*` headers, or `webhook-*`).
pub const SVIX: StandardWebhooks = StandardWebhooks(Flavor::Svix);

impl crate::Provider for StandardWebhooks {
    fn name(&self) -> &'static str {
        match self.0 {
            Flavor::Standard => "standard_webhooks",
            Flavor::Svix => "svix",
        }
    }

    /// `secrets` (`whsec_<base64>`) and `tolerance_secs` (default 300).
    fn verifier(&self, settings: Settings) -> Result<Box<dyn Scheme>, SettingError> {
        let (secrets, tolerance_secs) = settings::timestamped(settings, DEFAULT_TOLERANCE_SECS)?;
        let decoded = secrets
            .into_iter()
            .enumerate()
            .map(|(i, s)| {
                let at = format!("secrets[{i}]");
                let text = std::str::from_utf8(s.expose()).map_err(|_| SettingError::new(&at, "is not text"))?;
                let bytes = decode_secret(text).map_err(|e| SettingError::new(&at, e))?;
                Ok(Secret::new(s.id().to_owned(), bytes))
            })
            .collect::<Result<Vec<_>, SettingError>>()?;
        Ok(Box::new(Endpoint { flavor: self.0, secrets: decoded, tolerance_secs }))
    }

    /// Type `type`; subject: the ordering key; time `timestamp` (RFC 3339).
    fn preset(&self, _meta: &RawMeta, data: &Value) -> Preset {
        Preset {
            ty: required(at(data, "/type"), "a Standard Webhooks payload has a `type`").map(Some),
            subject: None,
            time_ms: data.pointer("/timestamp").and_then(rfc3339),
        }
    }

    fn default_event(&self) -> &'static str {
        "invoice.paid"
    }

    /// `{type, timestamp, data}`.
    fn sample(&self, event: &str, run: &Run, n: u64, rng: &mut fastrand::Rng) -> Webhook {
        let id = format!("msg_{}{n:06}", run.id);
        let entity = format!("{}_{}{:06}", split_type(event).0, run.id, n / PER_ENTITY);
        let body = json!({
            "type": event,
            "timestamp": sample::rfc3339(run.now),
            "data": { "id": entity, "amount": rng.u64(100..100_000), "currency": "usd" },
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
        "secrets = [{ value = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\" }]".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::test_support::{request, Vector};

    fn scheme(flavor: Flavor, secrets: &[&str]) -> Endpoint {
        Endpoint {
            flavor,
            secrets: secrets
                .iter()
                .enumerate()
                .map(|(i, s)| Secret::new(i.to_string(), decode_secret(s).unwrap()))
                .collect(),
            tolerance_secs: DEFAULT_TOLERANCE_SECS,
        }
    }

    #[test]
    fn official_library_vectors_verify() {
        for (provider, flavor) in [("standard_webhooks", Flavor::Standard), ("svix", Flavor::Svix)] {
            for v in Vector::load(provider) {
                let s = scheme(flavor, &[&v.secret]);
                let prefix = if flavor == Flavor::Svix { "svix" } else { "webhook" };
                let sent = &v.headers[&format!("{prefix}-signature")];
                if !sent.contains(' ') {
                    let id = &v.headers[&format!("{prefix}-id")];
                    let key = decode_secret(&v.secret).unwrap();
                    assert_eq!(&Endpoint::sign(&key, id, v.now, v.body.as_bytes()), sent, "{}", v.name);
                }
                assert_eq!(s.verify(&request(&v.headers(), v.body.as_bytes(), v.now).req()), Ok(0), "{}", v.name);
            }
        }
    }

    #[test]
    fn specification_example_verifies() {
        // The example of the Standard Webhooks specification's reference test suites:
        // secret whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw, msg_p5jXN8AQM9LWM0D4loKWxJek, 1614265330.
        let s = scheme(Flavor::Standard, &["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]);
        let h = [
            ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
            ("webhook-timestamp", "1614265330"),
            ("webhook-signature", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="),
        ];
        assert_eq!(s.verify(&request(&h, br#"{"test": 2432232314}"#, 1614265330).req()), Ok(0));
    }

    #[test]
    fn several_signatures_rotation_and_tampering() {
        let s = scheme(Flavor::Standard, &["whsec_b2xk", "whsec_bmV3"]);
        let sig_new = Endpoint::sign(b"new", "msg_1", 1000, b"{}");
        let sig_old = Endpoint::sign(b"old", "msg_1", 1000, b"{}");
        let both = format!("v1a,ignored {sig_old} {sig_new}");
        let h = |sig: &str| {
            vec![
                ("webhook-id", "msg_1".to_owned()),
                ("webhook-timestamp", "1000".to_owned()),
                ("webhook-signature", sig.to_owned()),
            ]
        };
        let check = |sig: &str, body: &[u8], now| {
            let h = h(sig);
            let pairs: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
            s.verify(&request(&pairs, body, now).req())
        };
        assert_eq!(check(&both, b"{}", 1000), Ok(0));
        assert_eq!(check(&sig_new, b"{}", 1000), Ok(1));
        assert_eq!(check(&sig_new, b"{ }", 1000), Err(VerifyError::Mismatch));
        assert_eq!(check(&sig_new, b"{}", 1301), Err(VerifyError::StaleTimestamp(300)));
        assert_eq!(check(&sig_new, b"{}", 699), Err(VerifyError::FutureTimestamp(300)));
        assert!(matches!(check("v1a,only-asymmetric", b"{}", 1000), Err(VerifyError::MalformedSignature(_))));
        assert!(matches!(check("nocomma", b"{}", 1000), Err(VerifyError::MalformedSignature(_))));
    }

    #[test]
    fn svix_reads_svix_headers_and_falls_back_to_standard_names() {
        let s = scheme(Flavor::Svix, &["whsec_a2V5"]);
        let sig = Endpoint::sign(b"key", "msg_9", 1000, b"{}");
        let svix = [("svix-id", "msg_9"), ("svix-timestamp", "1000"), ("svix-signature", sig.as_str())];
        assert_eq!(s.verify(&request(&svix, b"{}", 1000).req()), Ok(0));
        let std = [("webhook-id", "msg_9"), ("webhook-timestamp", "1000"), ("webhook-signature", sig.as_str())];
        assert_eq!(s.verify(&request(&std, b"{}", 1000).req()), Ok(0));
        let only_std = scheme(Flavor::Standard, &["whsec_a2V5"]);
        assert!(matches!(only_std.verify(&request(&svix, b"{}", 1000).req()), Err(VerifyError::MissingSignature(_))));
    }

    #[test]
    fn secrets_decode_with_or_without_prefix_and_padding() {
        assert_eq!(decode_secret("whsec_a2V5").unwrap(), b"key");
        assert_eq!(decode_secret("a2V5").unwrap(), b"key");
        assert_eq!(decode_secret("whsec_aGk=").unwrap(), b"hi");
        assert_eq!(decode_secret("whsec_aGk").unwrap(), b"hi");
        assert!(decode_secret("whsec_!!").is_err());
        assert!(decode_secret("whsec_").is_err());
    }
}

//! Twilio: `X-Twilio-Signature: <base64 HMAC-SHA1>` under the account's auth token (or HMAC-SHA256 under a
//! SharedKey secret, `algorithm = "sha256"`), over the full public URL Twilio requested followed, for a
//! form-encoded POST, by every parameter name and value sorted by name (then by value). For a JSON body the
//! URL carries `bodySHA256=<hex SHA-256 of the body>` and only the URL is signed; the digest must then match
//! the body. As in Twilio's own validators, the URL is tried with and without its default port.
//!
//! The URL is the source's `public_url` (the one configured at Twilio, without query) followed by the query
//! string of the request as received.
//!
//! A SharedKey webhook announces itself with `X-Twilio-Webhooks-Signature-Settings: key=…,algorithm=HMAC_SHA256`
//! (the header is absent for the auth token's HMAC-SHA1). As Twilio's validators choose the secret and the
//! algorithm by that header, a source accepts exactly its own: a `sha256` (SharedKey) source refuses a request
//! without the announcement, and a `sha1` (auth token) source refuses one that announces an algorithm, so a
//! request can never be checked with a weaker algorithm than the one it announces (no downgrade).
//!
//! Reference: <https://www.twilio.com/docs/usage/webhooks/webhooks-security> (its example is a test below);
//! vectors from `twilio` (Python) `RequestValidator.compute_signature`. Default dedup key:
//! `I-Twilio-Idempotency-Token`.

use base64::Engine as _;
use hookline_schemas::raw::RawMeta;
use http::HeaderName;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::keys::KeySelector;
use crate::preset::{at, Preset};
use crate::sample::{self, header, Run, Webhook, PER_ENTITY};
use crate::settings::{self, SecretSource, SettingError, Settings};
use crate::verify::common::{
    check_public_url, ct_eq, matching_secret, optional_header, single_header, with_query, Algorithm,
};
use crate::verify::{Outgoing, Request, Scheme, Secret, VerifyError};

/// The signature header.
pub const HEADER: HeaderName = HeaderName::from_static("x-twilio-signature");
/// Twilio's idempotency token, the same on every retry.
pub const IDEMPOTENCY: HeaderName = HeaderName::from_static("i-twilio-idempotency-token");
/// The SharedKey announcement: `key=<key sid>,algorithm=HMAC_SHA256`.
pub const SIGNATURE_SETTINGS: HeaderName = HeaderName::from_static("x-twilio-webhooks-signature-settings");

/// The algorithm a request announces in [`SIGNATURE_SETTINGS`]; `None` without the header (the auth token's
/// HMAC-SHA1).
fn announced(req: &Request<'_>) -> Result<Option<String>, VerifyError> {
    let Some(settings) = optional_header(req.headers, &SIGNATURE_SETTINGS)? else { return Ok(None) };
    settings
        .split(',')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| key.trim() == "algorithm")
        .map(|(_, algorithm)| Some(algorithm.trim().to_owned()))
        .ok_or_else(|| VerifyError::MalformedSignature(SIGNATURE_SETTINGS.to_string()))
}

/// How a SharedKey announcement names `algorithm`; `None` for the auth token's HMAC-SHA1, which has none.
fn announcement(algorithm: Algorithm) -> Option<&'static str> {
    match algorithm {
        Algorithm::Sha1 => None,
        Algorithm::Sha256 => Some("HMAC_SHA256"),
        Algorithm::Sha512 => Some("HMAC_SHA512"),
    }
}

/// A configured Twilio endpoint.
#[derive(Debug)]
pub struct Endpoint {
    /// Auth tokens (or SharedKey secrets).
    pub secrets: Vec<Secret>,
    /// HMAC-SHA1 (auth token) or HMAC-SHA256 (SharedKey).
    pub algorithm: Algorithm,
    /// The public URL as configured, then without and with an explicit port (Twilio's validators try both).
    bases: Vec<String>,
}

impl Endpoint {
    /// A Twilio endpoint whose URL, as configured at Twilio, is `public_url` (absolute, without query).
    pub fn new(secrets: Vec<Secret>, algorithm: Algorithm, public_url: &str) -> Result<Endpoint, String> {
        Ok(Endpoint { secrets, algorithm, bases: url_variants(public_url)? })
    }

    /// The signature Twilio sends for a request to `url` with these form parameters.
    pub fn sign(algorithm: Algorithm, secret: &[u8], url: &str, params: &[(String, String)]) -> String {
        base64::engine::general_purpose::STANDARD
            .encode(algorithm.mac(secret, &[signed_string(url, params).as_bytes()]))
    }
}

/// The configured public URL as written, then without and with an explicit port.
pub fn url_variants(public_url: &str) -> Result<Vec<String>, String> {
    let url = check_public_url(public_url)?;
    let host = url.host_str().unwrap_or_default();
    let port = url.port_or_known_default().unwrap_or(443);
    let path = url.path();
    let mut out = vec![public_url.to_owned()];
    for v in [format!("{}://{host}{path}", url.scheme()), format!("{}://{host}:{port}{path}", url.scheme())] {
        if !out.contains(&v) {
            out.push(v);
        }
    }
    Ok(out)
}

fn signed_string(url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    sorted.dedup();
    let mut s = url.to_owned();
    for (k, v) in sorted {
        s.push_str(k);
        s.push_str(v);
    }
    s
}

fn is_form(req: &Request<'_>) -> bool {
    req.headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.trim().to_ascii_lowercase().starts_with("application/x-www-form-urlencoded"))
}

impl Scheme for Endpoint {
    fn name(&self) -> &'static str {
        "twilio"
    }

    fn sign(&self, secret: &[u8], out: &Outgoing<'_>) -> Vec<(HeaderName, String)> {
        // Form parameters are signed unless the URL carries the body's digest (a JSON body).
        let digest_in_url = url::Url::parse(out.url).is_ok_and(|u| u.query_pairs().any(|(k, _)| k == "bodySHA256"));
        let form = out.content_type.trim().to_ascii_lowercase().starts_with("application/x-www-form-urlencoded");
        let params: Vec<(String, String)> = if form && !digest_in_url {
            form_urlencoded::parse(out.body).map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
        } else {
            Vec::new()
        };
        let mut headers = vec![(HEADER, Endpoint::sign(self.algorithm, secret, out.url, &params))];
        if let Some(algorithm) = announcement(self.algorithm) {
            headers.push((SIGNATURE_SETTINGS, format!("key=hookline,algorithm={algorithm}")));
        }
        headers
    }

    fn verify(&self, req: &Request<'_>) -> Result<usize, VerifyError> {
        let value = single_header(req.headers, &HEADER)?;
        match (announced(req)?, announcement(self.algorithm)) {
            (None, None) => {}
            (Some(sent), Some(ours)) if sent == ours => {}
            // Named only when it is one of Twilio's: the answer does not echo what a sender wrote.
            (Some(sent), _) => {
                let named = ["HMAC_SHA1", "HMAC_SHA256", "HMAC_SHA512"].into_iter().find(|a| *a == sent);
                return Err(VerifyError::WrongAlgorithm(named.unwrap_or("an unknown algorithm").to_owned()));
            }
            (None, Some(_)) => return Err(VerifyError::WrongAlgorithm("none: the auth token's HMAC_SHA1".into())),
        }
        let sig = base64::engine::general_purpose::STANDARD
            .decode(value)
            .ok()
            .filter(|s| s.len() == self.algorithm.mac_len())
            .ok_or_else(|| VerifyError::MalformedSignature(HEADER.to_string()))?;
        let query = req.uri.query();
        let body_digest = query.and_then(|q| {
            form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "bodySHA256").map(|(_, v)| v.into_owned())
        });
        let params: Vec<(String, String)> = match &body_digest {
            Some(_) => Vec::new(),
            None if is_form(req) => {
                form_urlencoded::parse(req.body).map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
            }
            None => Vec::new(),
        };
        let matched = self.bases.iter().find_map(|base| {
            let s = signed_string(&with_query(base, query), &params);
            matching_secret(&self.secrets, std::slice::from_ref(&sig), |key| self.algorithm.mac(key, &[s.as_bytes()]))
                .ok()
        });
        let matched = matched.ok_or(VerifyError::Mismatch)?;
        if let Some(digest) = body_digest {
            // Lower-case hex, compared as text, as Twilio's validators do.
            if !ct_eq(hex::encode(Sha256::digest(req.body)).as_bytes(), digest.as_bytes()) {
                return Err(VerifyError::BodyDigestMismatch);
            }
        }
        Ok(matched)
    }

    fn secrets(&self) -> &[Secret] {
        &self.secrets
    }

    fn credential_headers(&self) -> Vec<HeaderName> {
        vec![HEADER]
    }

    fn default_dedup_key(&self) -> Option<KeySelector> {
        Some(KeySelector::provider_header(IDEMPOTENCY))
    }
}

/// Twilio: status callbacks and incoming messages.
#[derive(Debug)]
pub struct Twilio;

/// `[verify]` of a Twilio source.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TwilioSettings {
    /// Live auth tokens (or SharedKey secrets with `algorithm = "sha256"`).
    secrets: Vec<SecretSource>,
    /// The URL configured at Twilio, without query: `https://hooks.example.com/webhooks/twilio`.
    public_url: String,
    /// `sha1` (default, auth token) or `sha256` (SharedKey).
    #[serde(default = "sha1")]
    algorithm: Algorithm,
}

fn sha1() -> Algorithm {
    Algorithm::Sha1
}

impl crate::Provider for Twilio {
    fn name(&self) -> &'static str {
        "twilio"
    }

    /// `secrets`, `public_url` (as configured at Twilio, without query) and `algorithm` (`sha1`, default, or
    /// `sha256` for SharedKey).
    fn verifier(&self, settings: Settings) -> Result<Box<dyn Scheme>, SettingError> {
        let s: TwilioSettings = settings.read()?;
        if s.algorithm == Algorithm::Sha512 {
            return Err(SettingError::new("algorithm", "Twilio signs with sha1 or sha256"));
        }
        let secrets = settings::secrets(s.secrets)?;
        Ok(Box::new(
            Endpoint::new(secrets, s.algorithm, &s.public_url).map_err(|e| SettingError::new("public_url", e))?,
        ))
    }

    /// A form body.
    fn body(&self) -> crate::BodyShape {
        crate::BodyShape { format: crate::Format::Form, ..crate::BodyShape::JSON }
    }

    /// Type `message.{MessageStatus or SmsStatus}` or `call.{CallStatus}`; subject `MessageSid`, else
    /// `CallSid`; time of receipt.
    fn preset(&self, _meta: &RawMeta, data: &Value) -> Preset {
        let status = |field: &str| at(data, field).map(|s| s.to_ascii_lowercase());
        Preset {
            ty: Ok(status("/MessageStatus")
                .or_else(|| status("/SmsStatus"))
                .map(|s| format!("message.{s}"))
                .or_else(|| status("/CallStatus").map(|s| format!("call.{s}")))),
            subject: at(data, "/MessageSid").or_else(|| at(data, "/SmsSid")).or_else(|| at(data, "/CallSid")),
            time_ms: None,
        }
    }

    fn default_event(&self) -> &'static str {
        "delivered"
    }

    fn sample(&self, event: &str, run: &Run, n: u64, _rng: &mut fastrand::Rng) -> Webhook {
        let sid = format!("SM{}{n:016}", run.id);
        let to = format!("+1555{:07}", (n / PER_ENTITY) % 10_000_000);
        let body: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("AccountSid", "AC00000000000000000000000000sandbox")
            .append_pair("ApiVersion", "2010-04-01")
            .append_pair("From", "+15005550006")
            .append_pair("To", &to)
            .append_pair("MessageSid", &sid)
            .append_pair("MessageStatus", event)
            .append_pair("SmsStatus", event)
            .finish();
        let token = format!("{sid}-{}", sample::uuid());
        Webhook {
            n,
            id: sid,
            body: bytes::Bytes::from(body),
            content_type: "application/x-www-form-urlencoded",
            headers: vec![header("i-twilio-idempotency-token", token.clone())],
            entity: to,
            dedup_key: Some(token),
        }
    }

    fn sample_settings(&self, url: &str) -> String {
        format!("public_url = \"{url}\"\nsecrets = [{{ value = \"sandbox-auth-token\" }}]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::test_support::{request_to, secrets, Vector};
    use http::Method;

    fn twilio(secret: &str, url: &str) -> Endpoint {
        Endpoint::new(secrets(&[secret]), Algorithm::Sha1, url).unwrap()
    }

    const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");

    #[test]
    fn twilios_documented_example_verifies() {
        // twilio.com/docs/usage/webhooks/webhooks-security, "Validating signatures": auth token 12345,
        // URL https://mycompany.com/myapp.php?foo=1&bar=2 and five POST parameters.
        let t = twilio("12345", "https://mycompany.com/myapp.php");
        let body = "CallSid=CA1234567890ABCDE&Caller=%2B12349013030&Digits=1234&From=%2B12349013030&To=%2B18005551212";
        let h = [FORM, ("x-twilio-signature", "0/KCTR6DLpKmkAf8muzZqo1nDgQ=")];
        let req = request_to(Method::POST, "/webhooks/twilio?foo=1&bar=2", &h, body.as_bytes(), 0);
        assert_eq!(t.verify(&req.req()), Ok(0));
    }

    #[test]
    fn official_library_vectors_verify() {
        for v in Vector::load("twilio") {
            let public: url::Url = v.url.as_deref().unwrap().parse().unwrap();
            let mut base = public.clone();
            base.set_query(None);
            let path_and_query = match public.query() {
                Some(q) => format!("/webhooks/twilio?{q}"),
                None => "/webhooks/twilio".to_owned(),
            };
            let t = Endpoint::new(secrets(&[&v.secret]), Algorithm::Sha1, base.as_str()).unwrap();
            let params: Vec<(String, String)> = if v.headers["content-type"].contains("form") {
                form_urlencoded::parse(v.body.as_bytes()).map(|(k, val)| (k.into_owned(), val.into_owned())).collect()
            } else {
                Vec::new()
            };
            let signed = Endpoint::sign(Algorithm::Sha1, v.secret.as_bytes(), v.url.as_deref().unwrap(), &params);
            assert_eq!(&signed, &v.headers["x-twilio-signature"], "{}", v.name);
            assert_eq!(t.verify(&v.request_to(&path_and_query).req()), Ok(0), "{}", v.name);
        }
    }

    #[test]
    fn json_bodies_are_checked_against_their_signed_digest() {
        let t = twilio("token", "https://hooks.example.com/twilio");
        let body = br#"{"event":"x"}"#;
        let digest = hex::encode(Sha256::digest(body));
        let url = format!("https://hooks.example.com/twilio?bodySHA256={digest}");
        let sig = Endpoint::sign(Algorithm::Sha1, b"token", &url, &[]);
        let uri = format!("/webhooks/t?bodySHA256={digest}");
        let h = [("content-type", "application/json"), ("x-twilio-signature", sig.as_str())];
        assert_eq!(t.verify(&request_to(Method::POST, &uri, &h, body, 0).req()), Ok(0));
        assert_eq!(
            t.verify(&request_to(Method::POST, &uri, &h, br#"{"event":"y"}"#, 0).req()),
            Err(VerifyError::BodyDigestMismatch)
        );
        // The digest in upper-case hex is refused, as Twilio's validators compare lower-case hex text.
        let upper = digest.to_uppercase();
        let url = format!("https://hooks.example.com/twilio?bodySHA256={upper}");
        let sig = Endpoint::sign(Algorithm::Sha1, b"token", &url, &[]);
        let h = [("content-type", "application/json"), ("x-twilio-signature", sig.as_str())];
        let uri = format!("/webhooks/t?bodySHA256={upper}");
        assert_eq!(t.verify(&request_to(Method::POST, &uri, &h, body, 0).req()), Err(VerifyError::BodyDigestMismatch));
    }

    #[test]
    fn the_port_variant_tampering_and_wrong_urls() {
        let t = twilio("token", "https://hooks.example.com/twilio");
        let params = vec![("B".to_owned(), "2".to_owned()), ("A".to_owned(), "1".to_owned())];
        let body = b"B=2&A=1";
        let with_port = Endpoint::sign(Algorithm::Sha1, b"token", "https://hooks.example.com:443/twilio", &params);
        let h = [FORM, ("x-twilio-signature", with_port.as_str())];
        assert_eq!(t.verify(&request_to(Method::POST, "/x", &h, body, 0).req()), Ok(0), "default port accepted");
        assert_eq!(t.verify(&request_to(Method::POST, "/x", &h, b"B=2&A=9", 0).req()), Err(VerifyError::Mismatch));
        assert_eq!(t.verify(&request_to(Method::POST, "/x?extra=1", &h, body, 0).req()), Err(VerifyError::Mismatch));
        let other = twilio("token", "https://elsewhere.example.com/twilio");
        assert_eq!(other.verify(&request_to(Method::POST, "/x", &h, body, 0).req()), Err(VerifyError::Mismatch));
        assert!(url_variants("https://x.com/a?b=1").is_err());
        assert!(url_variants("/relative").is_err());
        assert_eq!(url_variants("https://x.com/a").unwrap(), vec!["https://x.com/a", "https://x.com:443/a"]);
        let bad = [FORM, ("x-twilio-signature", "not base64!")];
        assert!(matches!(
            t.verify(&request_to(Method::POST, "/x", &bad, body, 0).req()),
            Err(VerifyError::MalformedSignature(_))
        ));
    }

    /// A SharedKey source takes only requests announcing its algorithm; an auth-token source takes none that
    /// announce one, even when the SHA-1 signature is right: no request is checked below what it announces.
    #[test]
    fn the_announced_algorithm_must_be_the_sources_own() {
        let body = b"MessageSid=SM1&MessageStatus=delivered";
        let url = "https://hooks.example.com/twilio";
        let params: Vec<(String, String)> =
            form_urlencoded::parse(body).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
        let shared = Endpoint::new(secrets(&["shared-key"]), Algorithm::Sha256, url).unwrap();
        let sha256 = Endpoint::sign(Algorithm::Sha256, b"shared-key", url, &params);
        let announce = ("x-twilio-webhooks-signature-settings", "key=KS0123,algorithm=HMAC_SHA256");
        let check = |t: &Endpoint, h: &[(&str, &str)]| t.verify(&request_to(Method::POST, "/x", h, body, 0).req());
        assert_eq!(check(&shared, &[FORM, ("x-twilio-signature", &sha256), announce]), Ok(0));
        assert!(matches!(
            check(&shared, &[FORM, ("x-twilio-signature", &sha256)]),
            Err(VerifyError::WrongAlgorithm(_))
        ));
        let sha512 = ("x-twilio-webhooks-signature-settings", "key=KS0123,algorithm=HMAC_SHA512");
        assert_eq!(
            check(&shared, &[FORM, ("x-twilio-signature", &sha256), sha512]),
            Err(VerifyError::WrongAlgorithm("HMAC_SHA512".into()))
        );
        let garbled = ("x-twilio-webhooks-signature-settings", "key=KS0123");
        assert!(matches!(
            check(&shared, &[FORM, ("x-twilio-signature", &sha256), garbled]),
            Err(VerifyError::MalformedSignature(_))
        ));
        // The downgrade: a right SHA-1 signature on a request that announces SHA-256.
        let token = twilio("token", url);
        let sha1 = Endpoint::sign(Algorithm::Sha1, b"token", url, &params);
        assert_eq!(check(&token, &[FORM, ("x-twilio-signature", &sha1)]), Ok(0));
        assert_eq!(
            check(&token, &[FORM, ("x-twilio-signature", &sha1), announce]),
            Err(VerifyError::WrongAlgorithm("HMAC_SHA256".into()))
        );
        // What a SharedKey source signs, it verifies.
        let out = Outgoing { method: &Method::POST, url, content_type: FORM.1, body, timestamp_secs: 0, id: "" };
        let signed = Scheme::sign(&shared, b"shared-key", &out);
        let owned: Vec<(String, String)> = signed.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        let mut h: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        h.push(FORM);
        assert_eq!(check(&shared, &h), Ok(0));
    }
}

//! GitHub, and Meta (Facebook, Instagram, WhatsApp), which signs the same way.
//!
//! `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>` under the webhook secret (GitHub) or the app
//! secret (Meta). GitHub's legacy `X-Hub-Signature: sha1=…` is checked only when the source sets
//! `allow_sha1 = true`, and only when no SHA-256 header is present: a failing SHA-256 signature is never
//! retried as SHA-1. Neither provider signs a timestamp, so replays are caught by deduplication.
//!
//! Meta also checks endpoint ownership with `GET ?hub.mode=subscribe&hub.verify_token=…&hub.challenge=…`,
//! answered with the challenge when the token matches the configured `verify_token`.
//!
//! Reference: <https://docs.github.com/webhooks/using-webhooks/validating-webhook-deliveries> (its example is
//! a test below), <https://developers.facebook.com/docs/graph-api/webhooks/getting-started>.
//! Default keys (GitHub): dedup = `X-GitHub-Delivery`; ordering = the repository, plus the pull request or
//! issue number when the event is about one.

use http::{HeaderName, Method};

use super::common::{matching_secret, optional_header, Algorithm};
use super::{Handshake, Outgoing, Request, Scheme, Secret, VerifyError};
use crate::keys::{KeySelector, Preset};

/// The SHA-256 signature header.
pub const HEADER_SHA256: HeaderName = HeaderName::from_static("x-hub-signature-256");
/// The legacy SHA-1 signature header.
pub const HEADER_SHA1: HeaderName = HeaderName::from_static("x-hub-signature");
/// GitHub's delivery id.
pub const DELIVERY: HeaderName = HeaderName::from_static("x-github-delivery");

/// Whose webhooks these are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// GitHub.
    GitHub,
    /// Meta.
    Meta,
}

/// A configured GitHub or Meta endpoint.
#[derive(Debug)]
pub struct HubSignature {
    /// Whose.
    pub provider: Provider,
    /// Webhook or app secrets.
    pub secrets: Vec<Secret>,
    /// Accept GitHub's legacy SHA-1 header when no SHA-256 header is sent.
    pub allow_sha1: bool,
    /// Meta's `hub.verify_token`, for the GET subscription check.
    pub verify_token: Option<Secret>,
}

impl HubSignature {
    /// The `X-Hub-Signature-256` value for `body`.
    pub fn sign(secret: &[u8], body: &[u8]) -> String {
        format!("sha256={}", hex::encode(Algorithm::Sha256.mac(secret, &[body])))
    }
}

fn query_param<'a>(query: &'a str, name: &str) -> Option<std::borrow::Cow<'a, str>> {
    form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v)
}

impl Scheme for HubSignature {
    fn name(&self) -> &'static str {
        match self.provider {
            Provider::GitHub => "github",
            Provider::Meta => "meta",
        }
    }

    fn sign(&self, secret: &[u8], out: &Outgoing<'_>) -> Vec<(HeaderName, String)> {
        vec![(HEADER_SHA256, HubSignature::sign(secret, out.body))]
    }

    fn verify(&self, req: &Request<'_>) -> Result<usize, VerifyError> {
        let (name, prefix, algorithm) = match optional_header(req.headers, &HEADER_SHA256)? {
            Some(v) => (&HEADER_SHA256, v.strip_prefix("sha256="), Algorithm::Sha256),
            None => match (self.allow_sha1, optional_header(req.headers, &HEADER_SHA1)?) {
                (true, Some(v)) => (&HEADER_SHA1, v.strip_prefix("sha1="), Algorithm::Sha1),
                _ => return Err(VerifyError::MissingSignature(HEADER_SHA256.to_string())),
            },
        };
        let sig = prefix
            .and_then(|hex_sig| hex::decode(hex_sig).ok())
            .filter(|s| s.len() == algorithm.mac_len())
            .ok_or_else(|| VerifyError::MalformedSignature(name.to_string()))?;
        matching_secret(&self.secrets, &[sig], |key| algorithm.mac(key, &[req.body]))
    }

    fn secrets(&self) -> &[Secret] {
        &self.secrets
    }

    fn credential_headers(&self) -> Vec<HeaderName> {
        vec![HEADER_SHA256, HEADER_SHA1]
    }

    fn default_dedup_key(&self) -> Option<KeySelector> {
        (self.provider == Provider::GitHub).then(|| KeySelector::provider_header(DELIVERY))
    }

    fn default_ordering_key(&self) -> Option<KeySelector> {
        (self.provider == Provider::GitHub).then_some(KeySelector::preset(Preset::GitHubEntity))
    }

    fn get_challenge(&self, req: &Request<'_>) -> Option<Result<Handshake, VerifyError>> {
        let token = self.verify_token.as_ref()?;
        if req.method != Method::GET {
            return None;
        }
        let query = req.uri.query().unwrap_or_default();
        if query_param(query, "hub.mode").as_deref() != Some("subscribe") {
            return Some(Err(VerifyError::MissingSignature("hub.mode".into())));
        }
        let given = query_param(query, "hub.verify_token").unwrap_or_default();
        if !super::ct_eq_digest(given.as_bytes(), token.expose()) {
            return Some(Err(VerifyError::Mismatch));
        }
        let challenge = query_param(query, "hub.challenge").unwrap_or_default();
        if challenge.is_empty() || challenge.len() > 1024 {
            return Some(Err(VerifyError::MalformedSignature("hub.challenge".into())));
        }
        Some(Ok(Handshake::text(challenge.into_owned())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::test_support::{request, request_to, secrets, Vector};

    fn github(list: &[&str], allow_sha1: bool) -> HubSignature {
        HubSignature { provider: Provider::GitHub, secrets: secrets(list), allow_sha1, verify_token: None }
    }

    #[test]
    fn githubs_documented_example_verifies() {
        // docs.github.com "Validating webhook deliveries": secret "It's a Secret to Everybody", payload
        // "Hello, World!", signature below.
        let s = github(&["It's a Secret to Everybody"], false);
        let sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert_eq!(s.verify(&request(&[("x-hub-signature-256", sig)], b"Hello, World!", 0).req()), Ok(0));
    }

    #[test]
    fn official_library_vectors_verify() {
        for v in Vector::load("github") {
            assert_eq!(&HubSignature::sign(v.secret.as_bytes(), v.body.as_bytes()), &v.headers["x-hub-signature-256"]);
            assert_eq!(
                github(&[&v.secret], false).verify(&request(&v.headers(), v.body.as_bytes(), v.now).req()),
                Ok(0),
                "{}",
                v.name
            );
        }
    }

    #[test]
    fn rotation_tampering_and_malformed_headers() {
        let s = github(&["old", "new"], false);
        let body = br#"{"action":"opened"}"#;
        let sig = HubSignature::sign(b"new", body);
        assert_eq!(s.verify(&request(&[("x-hub-signature-256", &sig)], body, 0).req()), Ok(1));
        assert_eq!(s.verify(&request(&[("x-hub-signature-256", &sig)], b"{}", 0).req()), Err(VerifyError::Mismatch));
        for bad in
            ["sha1=00", "sha256=xyz", "sha256=00", "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"]
        {
            let r = s.verify(&request(&[("x-hub-signature-256", bad)], body, 0).req());
            assert!(matches!(r, Err(VerifyError::MalformedSignature(_))), "{bad}: {r:?}");
        }
        let r = s.verify(&request(&[("x-hub-signature-256", &sig), ("x-hub-signature-256", &sig)], body, 0).req());
        assert!(matches!(r, Err(VerifyError::DuplicateSignature(_))));
    }

    #[test]
    fn sha1_only_when_enabled_and_never_as_a_fallback() {
        let body = b"{}";
        let sha1 = format!("sha1={}", hex::encode(Algorithm::Sha1.mac(b"k", &[body])));
        let bad256 = format!("sha256={}", "0".repeat(64));
        assert!(matches!(
            github(&["k"], false).verify(&request(&[("x-hub-signature", &sha1)], body, 0).req()),
            Err(VerifyError::MissingSignature(_))
        ));
        assert_eq!(github(&["k"], true).verify(&request(&[("x-hub-signature", &sha1)], body, 0).req()), Ok(0));
        // A bad SHA-256 signature is not rescued by a good SHA-1 one.
        let both = [("x-hub-signature-256", bad256.as_str()), ("x-hub-signature", sha1.as_str())];
        assert_eq!(github(&["k"], true).verify(&request(&both, body, 0).req()), Err(VerifyError::Mismatch));
    }

    #[test]
    fn meta_answers_its_subscription_check_only_with_the_right_token() {
        let meta = HubSignature {
            provider: Provider::Meta,
            secrets: secrets(&["app-secret"]),
            allow_sha1: false,
            verify_token: Some(Secret::new("t".into(), b"my-token".to_vec())),
        };
        let get =
            |q: &str| meta.get_challenge(&request_to(Method::GET, &format!("/webhooks/meta?{q}"), &[], b"", 0).req());
        assert_eq!(
            get("hub.mode=subscribe&hub.verify_token=my-token&hub.challenge=1158201444"),
            Some(Ok(Handshake::text("1158201444")))
        );
        assert_eq!(get("hub.mode=subscribe&hub.verify_token=nope&hub.challenge=1"), Some(Err(VerifyError::Mismatch)));
        assert!(matches!(get("hub.verify_token=my-token&hub.challenge=1"), Some(Err(_))));
        assert!(matches!(get("hub.mode=subscribe&hub.verify_token=my-token"), Some(Err(_))));
        assert_eq!(
            github(&["k"], false).get_challenge(&request_to(Method::GET, "/x?hub.mode=subscribe", &[], b"", 0).req()),
            None
        );
        let sig = HubSignature::sign(b"app-secret", b"{}");
        assert_eq!(meta.verify(&request(&[("x-hub-signature-256", &sig)], b"{}", 0).req()), Ok(0));
    }
}

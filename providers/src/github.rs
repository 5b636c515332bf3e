//! GitHub, and the `X-Hub-Signature-256` scheme it shares with Meta ([`crate::meta`]).
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

use hookline_schemas::raw::RawMeta;
use http::{HeaderName, Method};
use serde_json::{json, Value};

use crate::keys::{as_str, as_u64, pointer, KeyFn, KeySelector};
use crate::preset::{at, header_text, required, Preset};
use crate::sample::{self, header, Run, Webhook, PER_ENTITY};
use crate::settings::{self, SecretSource, SettingError, Settings};
use crate::verify::common::{lower_hex, matching_secret, optional_header, Algorithm};
use crate::verify::{Handshake, Outgoing, Request, Scheme, Secret, VerifyError};

/// The SHA-256 signature header.
pub const HEADER_SHA256: HeaderName = HeaderName::from_static("x-hub-signature-256");
/// The legacy SHA-1 signature header.
pub const HEADER_SHA1: HeaderName = HeaderName::from_static("x-hub-signature");
/// GitHub's delivery id.
pub const DELIVERY: HeaderName = HeaderName::from_static("x-github-delivery");

/// A configured GitHub or Meta endpoint.
#[derive(Debug)]
pub struct HubSignature {
    /// The scheme's name, `github` or `meta`.
    pub name: &'static str,
    /// Webhook or app secrets.
    pub secrets: Vec<Secret>,
    /// Accept GitHub's legacy SHA-1 header when no SHA-256 header is sent.
    pub allow_sha1: bool,
    /// Meta's `hub.verify_token`, for the GET subscription check.
    pub verify_token: Option<Secret>,
    /// The provider's dedup key.
    pub dedup_key: Option<KeySelector>,
    /// The provider's ordering key.
    pub ordering_key: Option<KeySelector>,
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
        self.name
    }

    fn sign(&self, secret: &[u8], out: &Outgoing<'_>) -> Vec<(HeaderName, String)> {
        vec![(HEADER_SHA256, HubSignature::sign(secret, out.body))]
    }

    fn verify(&self, req: &Request<'_>) -> Result<usize, VerifyError> {
        // Neither provider sends an empty body, and `@octokit/webhooks-methods` refuses one.
        if req.body.is_empty() {
            return Err(VerifyError::EmptyBody);
        }
        let (name, prefix, algorithm) = match optional_header(req.headers, &HEADER_SHA256)? {
            Some(v) => (&HEADER_SHA256, v.strip_prefix("sha256="), Algorithm::Sha256),
            None => match (self.allow_sha1, optional_header(req.headers, &HEADER_SHA1)?) {
                (true, Some(v)) => (&HEADER_SHA1, v.strip_prefix("sha1="), Algorithm::Sha1),
                _ => return Err(VerifyError::MissingSignature(HEADER_SHA256.to_string())),
            },
        };
        let sig = prefix
            .and_then(|hex_sig| lower_hex(hex_sig, algorithm.mac_len()))
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
        self.dedup_key.clone()
    }

    fn default_ordering_key(&self) -> Option<KeySelector> {
        self.ordering_key.clone()
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
        if !crate::verify::ct_eq_digest(given.as_bytes(), token.expose()) {
            return Some(Err(VerifyError::Mismatch));
        }
        let challenge = query_param(query, "hub.challenge").unwrap_or_default();
        if challenge.is_empty() || challenge.len() > 1024 {
            return Some(Err(VerifyError::MalformedSignature("hub.challenge".into())));
        }
        Some(Ok(Handshake::text(challenge.into_owned())))
    }
}

/// The ordering key: `repository.full_name`, plus `#<number>` of the pull request or issue the event is about.
const ENTITY: KeyFn = KeyFn {
    name: "github entity",
    extract: |_, body| {
        let repo = as_str(pointer(body, "/repository/full_name")?)?;
        let number =
            ["/pull_request/number", "/issue/number", "/number"].iter().find_map(|p| pointer(body, p).and_then(as_u64));
        Some(match number {
            Some(n) => format!("{repo}#{n}"),
            None => repo,
        })
    },
};

/// GitHub.
#[derive(Debug)]
pub struct GitHub;

/// `[verify]` of a GitHub source.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct GitHubSettings {
    /// Live webhook secrets.
    secrets: Vec<SecretSource>,
    /// Accept the legacy SHA-1 `X-Hub-Signature` when no SHA-256 header is sent. Default false.
    #[serde(default)]
    allow_sha1: bool,
}

impl crate::Provider for GitHub {
    fn name(&self) -> &'static str {
        "github"
    }

    /// `secrets` and `allow_sha1` (default false).
    fn verifier(&self, settings: Settings) -> Result<Box<dyn Scheme>, SettingError> {
        let s: GitHubSettings = settings.read()?;
        Ok(Box::new(HubSignature {
            name: "github",
            secrets: settings::secrets(s.secrets)?,
            allow_sha1: s.allow_sha1,
            verify_token: None,
            dedup_key: Some(KeySelector::provider_header(DELIVERY)),
            ordering_key: Some(KeySelector::preset(ENTITY)),
        }))
    }

    /// Type from the `X-GitHub-Event` header, then `.{action}` when the body has one; subject
    /// `repository.full_name` (or the organization); time of receipt.
    fn preset(&self, meta: &RawMeta, data: &Value) -> Preset {
        let event = required(
            meta.http_header("x-github-event").and_then(header_text),
            "a GitHub webhook has an `X-GitHub-Event` header",
        );
        Preset {
            ty: event.map(|event| {
                Some(match at(data, "/action") {
                    Some(action) => format!("{event}.{action}"),
                    None => event,
                })
            }),
            subject: at(data, "/repository/full_name").or_else(|| at(data, "/organization/login")),
            time_ms: None,
        }
    }

    fn default_event(&self) -> &'static str {
        "push"
    }

    /// `pull_request.closed` is event `pull_request` with `"action": "closed"`.
    fn sample(&self, event: &str, _run: &Run, n: u64, _rng: &mut fastrand::Rng) -> Webhook {
        let (name, action) = match event.split_once('.') {
            Some((name, action)) => (name, Some(action)),
            None => (event, None),
        };
        let group = n / PER_ENTITY;
        let number = group + 1;
        let repo_name = if name == "push" { format!("widgets-{group}") } else { "widgets".to_owned() };
        let repository = json!({ "id": 4_200_000 + group, "name": repo_name, "full_name": format!("acme/{repo_name}"),
                                 "private": false, "owner": { "login": "acme", "id": 1 } });
        let sender = json!({ "login": "octocat", "id": 583_231, "type": "User" });
        let sha = |k: u64| format!("{:040x}", u128::from(k) * 0x9e37_79b9 + u128::from(n));
        let (body, entity) = match name {
            "push" => (
                json!({ "ref": "refs/heads/main", "before": sha(1), "after": sha(2), "created": false,
                        "deleted": false, "forced": false,
                        "commits": [{ "id": sha(2), "message": "Sandbox commit", "distinct": true }],
                        "repository": repository, "pusher": { "name": "octocat" }, "sender": sender }),
                format!("acme/{repo_name}"),
            ),
            "pull_request" => (
                json!({ "action": action.unwrap_or("opened"), "number": number,
                        "pull_request": { "id": 1_000_000 + number, "number": number, "state": "open",
                                          "title": "Sandbox change", "user": sender.clone() },
                        "repository": repository, "sender": sender }),
                format!("acme/widgets#{number}"),
            ),
            "issues" => (
                json!({ "action": action.unwrap_or("opened"), "issue": { "id": 2_000_000 + number,
                        "number": number, "title": "Sandbox issue", "state": "open", "user": sender.clone() },
                        "repository": repository, "sender": sender }),
                format!("acme/widgets#{number}"),
            ),
            "ping" => (
                json!({ "zen": "Keep it logically awesome.", "hook_id": 12_345_678,
                        "hook": { "type": "Repository", "id": 12_345_678, "events": ["*"], "active": true },
                        "repository": repository, "sender": sender }),
                format!("acme/{repo_name}"),
            ),
            _ => {
                let mut body = json!({ "repository": repository, "sender": sender });
                if let Some(action) = action {
                    body["action"] = json!(action);
                }
                (body, format!("acme/{repo_name}"))
            }
        };
        let delivery = sample::uuid();
        Webhook {
            n,
            id: delivery.clone(),
            body: sample::json(&body),
            content_type: "application/json",
            headers: vec![
                header("x-github-event", name.to_owned()),
                header("x-github-delivery", delivery.clone()),
                header("x-github-hook-id", "12345678".to_owned()),
                header("user-agent", "GitHub-Hookshot/hookline-send".to_owned()),
            ],
            entity,
            dedup_key: Some(delivery),
        }
    }

    fn sample_settings(&self, _url: &str) -> String {
        "secrets = [{ value = \"sandbox-webhook-secret\" }]".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::test_support::{request, request_to, secrets, Vector};

    fn github(list: &[&str], allow_sha1: bool) -> HubSignature {
        HubSignature {
            name: "github",
            secrets: secrets(list),
            allow_sha1,
            verify_token: None,
            dedup_key: None,
            ordering_key: None,
        }
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
            name: "meta",
            secrets: secrets(&["app-secret"]),
            allow_sha1: false,
            verify_token: Some(Secret::new("t".into(), b"my-token".to_vec())),
            dedup_key: None,
            ordering_key: None,
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

    #[test]
    fn ordering_key_is_the_repository_and_the_number() {
        use crate::keys::LazyJson;
        let gh = KeySelector::preset(ENTITY);
        let mut pr = LazyJson::new(br#"{"repository":{"full_name":"acme/api"},"pull_request":{"number":42}}"#);
        assert_eq!(gh.extract(&http::HeaderMap::new(), &mut pr).as_deref(), Some("acme/api#42"));
        let mut push = LazyJson::new(br#"{"repository":{"full_name":"acme/api"},"ref":"refs/heads/main"}"#);
        assert_eq!(gh.extract(&http::HeaderMap::new(), &mut push).as_deref(), Some("acme/api"));
        assert_eq!(gh.to_string(), "preset github entity");
    }
}

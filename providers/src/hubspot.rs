//! HubSpot, signature v3: `X-HubSpot-Signature-v3: <base64 HMAC-SHA256>` under the app's client secret,
//! over `{method}{uri}{body}{timestamp}`, where `uri` is the full public URL HubSpot called and `timestamp`
//! is `X-HubSpot-Request-Timestamp` (milliseconds) as sent. HubSpot rejects requests older than 5 minutes; so
//! do we, and in both directions.
//!
//! The URI is the source's `public_url` followed by the request's query string, with the escapes HubSpot
//! decodes before signing (`%3A` `%2F` `%3F` `%40` `%21` `%24` `%27` `%28` `%29` `%2A` `%2C` `%3B`) decoded.
//!
//! Reference: <https://developers.hubspot.com/docs/api/webhooks/validating-requests>; vectors from
//! `hubspot-api-client` (Python) `Signature.get_signature(..., "v3", ...)`. Default dedup key: the `eventId`
//! of the (first) event in the body.

use base64::Engine as _;
use hookline_schemas::raw::RawMeta;
use http::HeaderName;
use serde_json::{json, Value};

use crate::keys::{pointer, scalar, KeyFn, KeySelector};
use crate::preset::{at, number, required, Preset};
use crate::sample::{self, Run, Webhook, PER_ENTITY};
use crate::settings::{self, SecretSource, SettingError, Settings};
use crate::verify::common::check_public_url;
use crate::verify::common::{check_window, matching_secret, single_header, timestamp_header, with_query, Algorithm};
use crate::verify::{Outgoing, Request, Scheme, Secret, VerifyError};

/// The signature header.
pub const HEADER: HeaderName = HeaderName::from_static("x-hubspot-signature-v3");
/// The timestamp header (milliseconds).
pub const TIMESTAMP: HeaderName = HeaderName::from_static("x-hubspot-request-timestamp");
/// HubSpot's maximum age.
pub const DEFAULT_TOLERANCE_SECS: u64 = 300;

/// A configured HubSpot app endpoint.
#[derive(Debug)]
pub struct Endpoint {
    /// Client secrets.
    pub secrets: Vec<Secret>,
    /// The URL configured at HubSpot, without query, as written.
    pub public_url: String,
    /// Tolerance in seconds.
    pub tolerance_secs: u64,
}

/// Decodes the escapes HubSpot decodes in the URI before signing.
pub fn decode_uri(uri: &str) -> String {
    const DECODED: [(&str, &str); 12] = [
        ("%3A", ":"),
        ("%2F", "/"),
        ("%3F", "?"),
        ("%40", "@"),
        ("%21", "!"),
        ("%24", "$"),
        ("%27", "'"),
        ("%28", "("),
        ("%29", ")"),
        ("%2A", "*"),
        ("%2C", ","),
        ("%3B", ";"),
    ];
    let mut out = String::with_capacity(uri.len());
    let mut rest = uri;
    'outer: while !rest.is_empty() {
        if rest.starts_with('%') {
            for (from, to) in DECODED {
                if rest.len() >= 3 && rest[..3].eq_ignore_ascii_case(from) {
                    out.push_str(to);
                    rest = &rest[3..];
                    continue 'outer;
                }
            }
        }
        let ch = rest.chars().next().unwrap_or_default();
        out.push(ch);
        rest = &rest[ch.len_utf8()..];
    }
    out
}

impl Endpoint {
    /// The `X-HubSpot-Signature-v3` value.
    pub fn sign(secret: &[u8], method: &str, uri: &str, body: &[u8], timestamp: &str) -> String {
        let mac = Algorithm::Sha256.mac(secret, &[method.as_bytes(), uri.as_bytes(), body, timestamp.as_bytes()]);
        base64::engine::general_purpose::STANDARD.encode(mac)
    }
}

impl Scheme for Endpoint {
    fn name(&self) -> &'static str {
        "hubspot"
    }

    fn sign(&self, secret: &[u8], out: &Outgoing<'_>) -> Vec<(HeaderName, String)> {
        let ms = out.timestamp_secs.saturating_mul(1000).to_string();
        let sig = Endpoint::sign(secret, out.method.as_str(), &decode_uri(out.url), out.body, &ms);
        vec![(HEADER, sig), (TIMESTAMP, ms)]
    }

    fn signs_timestamp(&self) -> bool {
        true
    }

    fn verify(&self, req: &Request<'_>) -> Result<usize, VerifyError> {
        let (ts_ms, text) = timestamp_header(req.headers, &TIMESTAMP, 15)?;
        let value = single_header(req.headers, &HEADER)?;
        let sig = base64::engine::general_purpose::STANDARD
            .decode(value)
            .ok()
            .filter(|s| s.len() == 32)
            .ok_or_else(|| VerifyError::MalformedSignature(HEADER.to_string()))?;
        // HubSpot's library takes a request younger than the tolerance: one exactly `tolerance_secs` old is
        // refused (`check_window` takes that one). Ahead of the clock, the usual window applies.
        let ts = ts_ms.div_euclid(1000);
        if req.now_secs.saturating_sub(ts) >= i64::try_from(self.tolerance_secs).unwrap_or(i64::MAX) {
            return Err(VerifyError::StaleTimestamp(self.tolerance_secs));
        }
        check_window(ts, req.now_secs, self.tolerance_secs)?;
        let uri = decode_uri(&with_query(&self.public_url, req.uri.query()));
        matching_secret(&self.secrets, &[sig], |key| {
            Algorithm::Sha256.mac(key, &[req.method.as_str().as_bytes(), uri.as_bytes(), req.body, text.as_bytes()])
        })
    }

    fn secrets(&self) -> &[Secret] {
        &self.secrets
    }

    fn credential_headers(&self) -> Vec<HeaderName> {
        vec![HEADER, HeaderName::from_static("x-hubspot-signature")]
    }

    fn default_dedup_key(&self) -> Option<KeySelector> {
        Some(KeySelector::preset(EVENT))
    }
}

/// The dedup key: `eventId` of the event, or of the first event of a batch.
const EVENT: KeyFn = KeyFn {
    name: "hubspot event",
    extract: |_, body| scalar(pointer(body, "/0/eventId").or_else(|| pointer(body, "/eventId"))?),
};

/// HubSpot: webhooks of an app's subscriptions, sent in batches.
#[derive(Debug)]
pub struct HubSpot;

/// `[verify]` of a HubSpot source.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct HubSpotSettings {
    /// Live client secrets.
    secrets: Vec<SecretSource>,
    /// The URL configured at HubSpot, without query.
    public_url: String,
    /// Default 300.
    tolerance_secs: Option<u64>,
}

impl crate::Provider for HubSpot {
    fn name(&self) -> &'static str {
        "hubspot"
    }

    /// `secrets` (client secrets), `public_url` (as configured at HubSpot, without query) and
    /// `tolerance_secs` (default 300).
    fn verifier(&self, settings: Settings) -> Result<Box<dyn Scheme>, SettingError> {
        let s: HubSpotSettings = settings.read()?;
        check_public_url(&s.public_url).map_err(|e| SettingError::new("public_url", e))?;
        Ok(Box::new(Endpoint {
            secrets: settings::secrets(s.secrets)?,
            public_url: s.public_url,
            tolerance_secs: settings::tolerance(s.tolerance_secs, DEFAULT_TOLERANCE_SECS)?,
        }))
    }

    /// A JSON array of events, each its own event.
    fn body(&self) -> crate::BodyShape {
        crate::BodyShape { batch: true, ..crate::BodyShape::JSON }
    }

    /// Each element's `subscriptionType`; subject `objectId`; time `occurredAt` (Unix ms).
    fn preset(&self, _meta: &RawMeta, data: &Value) -> Preset {
        Preset {
            ty: required(at(data, "/subscriptionType"), "a HubSpot event has a `subscriptionType`").map(Some),
            subject: at(data, "/objectId"),
            time_ms: data.pointer("/occurredAt").and_then(number),
        }
    }

    fn default_event(&self) -> &'static str {
        "contact.creation"
    }

    fn sample(&self, event: &str, run: &Run, n: u64, _rng: &mut fastrand::Rng) -> Webhook {
        // HubSpot event ids are numbers; unique per run through the run's clock and the webhook number.
        let event_id = (run.now as u64 % 1_000_000_000) * 1_000_000 + n % 1_000_000;
        let object_id = 5_000 + n / PER_ENTITY;
        let body = json!([{
            "eventId": event_id,
            "subscriptionId": 2_000_001,
            "portalId": 62_515,
            "appId": 1_160_452,
            "occurredAt": run.now * 1000,
            "subscriptionType": event,
            "attemptNumber": 0,
            "objectId": object_id,
            "changeSource": "CRM",
            "changeFlag": "NEW",
        }]);
        Webhook {
            n,
            id: event_id.to_string(),
            body: sample::json(&body),
            content_type: "application/json",
            headers: Vec::new(),
            entity: object_id.to_string(),
            dedup_key: Some(event_id.to_string()),
        }
    }

    fn sample_settings(&self, url: &str) -> String {
        format!("public_url = \"{url}\"\nsecrets = [{{ value = \"sandbox-client-secret\" }}]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::test_support::{request_to, secrets, Vector};
    use http::Method;

    fn hubspot(secret: &str, url: &str) -> Endpoint {
        Endpoint { secrets: secrets(&[secret]), public_url: url.to_owned(), tolerance_secs: DEFAULT_TOLERANCE_SECS }
    }

    #[test]
    fn official_library_vectors_verify() {
        for v in Vector::load("hubspot") {
            let public: url::Url = v.url.as_deref().unwrap().parse().unwrap();
            let mut base = public.clone();
            base.set_query(None);
            let uri = match public.query() {
                Some(q) => format!("/webhooks/hubspot?{q}"),
                None => "/webhooks/hubspot".to_owned(),
            };
            let h = Endpoint { secrets: secrets(&[&v.secret]), public_url: base.to_string(), tolerance_secs: 300 };
            let method = v.method.as_deref().unwrap_or("POST");
            let signed = Endpoint::sign(
                v.secret.as_bytes(),
                method,
                v.url.as_deref().unwrap(),
                v.body.as_bytes(),
                &v.headers["x-hubspot-request-timestamp"],
            );
            assert_eq!(&signed, &v.headers["x-hubspot-signature-v3"], "{}", v.name);
            assert_eq!(h.verify(&v.request_to(&uri).req()), Ok(0), "{}", v.name);
        }
    }

    #[test]
    fn sign_then_verify_tamper_and_time() {
        let h = hubspot("client-secret", "https://hooks.example.com/webhooks/hubspot");
        let body = br#"[{"eventId":1,"subscriptionType":"contact.creation"}]"#;
        let sig =
            Endpoint::sign(b"client-secret", "POST", "https://hooks.example.com/webhooks/hubspot", body, "1000000");
        let headers = [("x-hubspot-signature-v3", sig.as_str()), ("x-hubspot-request-timestamp", "1000000")];
        let check =
            |method: Method, uri: &str, body: &[u8], now| h.verify(&request_to(method, uri, &headers, body, now).req());
        assert_eq!(check(Method::POST, "/webhooks/hubspot", body, 1000), Ok(0));
        assert_eq!(check(Method::POST, "/webhooks/hubspot", b"[]", 1000), Err(VerifyError::Mismatch));
        assert_eq!(check(Method::PUT, "/webhooks/hubspot", body, 1000), Err(VerifyError::Mismatch));
        assert_eq!(check(Method::POST, "/webhooks/hubspot?x=1", body, 1000), Err(VerifyError::Mismatch));
        assert_eq!(check(Method::POST, "/webhooks/hubspot", body, 1301), Err(VerifyError::StaleTimestamp(300)));
        // As hubspot-api-client's `Signature.is_valid`: younger than 300 s passes, exactly 300 s old does not.
        assert_eq!(check(Method::POST, "/webhooks/hubspot", body, 1299), Ok(0));
        assert_eq!(check(Method::POST, "/webhooks/hubspot", body, 1300), Err(VerifyError::StaleTimestamp(300)));
        assert_eq!(check(Method::POST, "/webhooks/hubspot", body, 699), Err(VerifyError::FutureTimestamp(300)));
    }

    #[test]
    fn the_uri_is_decoded_as_hubspot_does() {
        assert_eq!(decode_uri("https://x.com/a%3Ab%2Fc?d=%40e%2a%20"), "https://x.com/a:b/c?d=@e*%20");
        assert_eq!(decode_uri("https://x.com/%E2%82%AC"), "https://x.com/%E2%82%AC");
    }

    #[test]
    fn dedup_key_is_the_first_event_id() {
        use crate::keys::LazyJson;
        let mut batch = LazyJson::new(br#"[{"eventId":100,"objectId":7},{"eventId":101}]"#);
        assert_eq!(KeySelector::preset(EVENT).extract(&http::HeaderMap::new(), &mut batch).as_deref(), Some("100"));
        assert_eq!(KeySelector::preset(EVENT).to_string(), "preset hubspot event");
    }
}

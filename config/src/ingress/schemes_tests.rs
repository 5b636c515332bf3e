//! [`Verifier::sign_request`] then [`Verifier::verify`], for every scheme, built from config as the ingress
//! builds it.

use bytes::Bytes;
use hookline_providers::verify::{Outgoing, Request, Verifier, VerifyError};
use http::{Method, Uri};

use super::{Config, Settings};

const PUBLIC: &str = "http://127.0.0.1:8080";

fn settings() -> Settings {
    let sources = [
        ("stripe", r#"scheme = "stripe""#, "whsec_k"),
        ("standard", r#"scheme = "standard_webhooks""#, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
        ("svix", r#"scheme = "svix""#, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
        ("github", r#"scheme = "github""#, "k"),
        ("meta", r#"scheme = "meta""#, "k"),
        ("shopify", r#"scheme = "shopify""#, "k"),
        ("slack", r#"scheme = "slack""#, "k"),
        ("zoom", r#"scheme = "zoom""#, "k"),
        ("twilio", "scheme = \"twilio\"\npublic_url = \"http://127.0.0.1:8080/webhooks/twilio\"", "k"),
        ("twilio256", "scheme = \"twilio\"\nalgorithm = \"sha256\"\npublic_url = \"http://127.0.0.1:8080/webhooks/twilio256\"", "k"),
        ("hubspot", "scheme = \"hubspot\"\npublic_url = \"http://127.0.0.1:8080/webhooks/hubspot\"", "k"),
        ("paddle", r#"scheme = "paddle""#, "k"),
        ("acme", "scheme = \"hmac\"\nheader = \"X-Acme-Signature\"\nalgorithm = \"sha512\"\nencoding = \"base64\"\nprefix = \"v1=\"\ntemplate = \"{id}.{timestamp}.{body}\"\ntimestamp_header = \"X-Acme-Timestamp\"\ntimestamp_unit = \"milliseconds\"\nid_header = \"X-Acme-Id\"", "k"),
        ("plain", "scheme = \"hmac\"\nheader = \"X-Sig\"\nalgorithm = \"sha1\"", "k"),
        ("bearer", r#"scheme = "bearer""#, "token"),
        ("apikey", "scheme = \"bearer\"\nheader = \"X-Api-Key\"", "token"),
        ("basic", r#"scheme = "basic""#, "user:pass"),
    ];
    let mut text = String::new();
    for (name, scheme, secret) in sources {
        text.push_str(&format!("[sources.{name}.verify]\n{scheme}\nsecrets = [{{ value = \"{secret}\" }}]\n"));
    }
    text.push_str("[sources.open]\nallow_unverified = true\nverify = { scheme = \"none\" }\n");
    hookline_runtime::config::from_str_with_env::<Config>(&text, Vec::new()).unwrap().validate().unwrap()
}

fn check(
    verifier: &Verifier,
    name: &str,
    content_type: &str,
    query: &str,
    signed_at: i64,
    now: i64,
) -> Result<(), VerifyError> {
    let body: &[u8] = if content_type.starts_with("application/x-www-form-urlencoded") {
        b"MessageSid=SM1&MessageStatus=delivered&Body=H%C3%A9llo+world"
    } else {
        br#"{"id":"evt_1","type":"thing.happened"}"#
    };
    let path = format!("/webhooks/{name}{query}");
    let url = format!("{PUBLIC}{path}");
    let method = Method::POST;
    let out = Outgoing { method: &method, url: &url, content_type, body, timestamp_secs: signed_at, id: "msg_1" };
    let mut headers = verifier.sign_request(&out).unwrap();
    headers.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_str(content_type).unwrap());
    if name == "shopify" {
        // Headers Shopify always sends besides the signature, which its library requires.
        for (k, v) in [
            ("x-shopify-topic", "orders/create"),
            ("x-shopify-shop-domain", "s.myshopify.com"),
            ("x-shopify-api-version", "2025-10"),
            ("x-shopify-webhook-id", "wh-1"),
        ] {
            headers.insert(k, http::HeaderValue::from_static(v));
        }
    }
    let uri: Uri = path.parse().unwrap();
    let req = Request { method: &method, uri: &uri, headers: &headers, body, now_secs: now };
    verifier.verify(&req, Bytes::copy_from_slice(body)).map(|_| ())
}

#[test]
fn every_scheme_verifies_what_it_signs() {
    let s = settings();
    assert_eq!(s.sources.len(), 18);
    let now = 1_700_000_000;
    for (name, source) in &s.sources {
        let v = &source.verifier;
        let ct = if name.starts_with("twilio") { "application/x-www-form-urlencoded" } else { "application/json" };
        assert_eq!(check(v, name, ct, "", now, now), Ok(()), "{name} ({})", v.scheme_name());
        assert_eq!(check(v, name, ct, "?attempt=2", now - 3, now), Ok(()), "{name} with a query");
    }
    // Twilio with a JSON body signs only the URL, which carries the body's digest.
    let twilio = &s.sources["twilio"].verifier;
    use sha2::{Digest, Sha256};
    let digest = hex::encode(Sha256::digest(br#"{"id":"evt_1","type":"thing.happened"}"#));
    assert_eq!(check(twilio, "twilio", "application/json", &format!("?bodySHA256={digest}"), now, now), Ok(()));
    let wrong = format!("?bodySHA256={}", "0".repeat(64));
    assert_eq!(check(twilio, "twilio", "application/json", &wrong, now, now), Err(VerifyError::BodyDigestMismatch));
}

#[test]
fn stale_signatures_are_refused_exactly_when_the_scheme_signs_a_timestamp() {
    let s = settings();
    let now = 1_700_000_000;
    let mut timestamped = Vec::new();
    for (name, source) in &s.sources {
        let v = &source.verifier;
        let ct = if name.starts_with("twilio") { "application/x-www-form-urlencoded" } else { "application/json" };
        let stale = check(v, name, ct, "", now - 3600, now);
        if v.signs_timestamp() {
            timestamped.push(name.as_str());
            assert!(matches!(stale, Err(VerifyError::StaleTimestamp(_))), "{name}: {stale:?}");
        } else {
            assert_eq!(stale, Ok(()), "{name} signs no timestamp");
        }
    }
    assert_eq!(timestamped, ["acme", "hubspot", "paddle", "slack", "standard", "stripe", "svix", "zoom"]);
}

#[test]
fn a_wrong_secret_does_not_verify_and_unverified_sources_need_no_headers() {
    let s = settings();
    let method = Method::POST;
    let out = Outgoing {
        method: &method,
        url: "http://127.0.0.1:8080/webhooks/open",
        content_type: "application/json",
        body: b"{}",
        timestamp_secs: 0,
        id: "x",
    };
    assert!(s.sources["open"].verifier.sign_request(&out).unwrap().is_empty());
    let signed = s.sources["github"].verifier.sign_request(&out).unwrap();
    let uri: Uri = "/webhooks/stripe".parse().unwrap();
    let req = Request { method: &method, uri: &uri, headers: &signed, body: b"{}", now_secs: 0 };
    assert!(s.sources["shopify"].verifier.verify(&req, Bytes::from_static(b"{}")).is_err());
}

//! hookline's verifiers give the answer of each provider's official library, case by case.
//!
//! The cases in `tests/conformance/*.json` are requests made and judged by the providers' own libraries
//! (`generate.py`, `generate.mjs`: valid, tampered, another secret, a rotated secret, timestamps at and beyond the
//! tolerance both ways, upper-case hex, malformed, duplicated and missing headers, empty bodies). Each is built
//! into the source's verifier from the case's `[verify]` settings, exactly as the ingress builds it, and must
//! be accepted or refused as the library does, but for the few places where hookline is stricter on purpose,
//! listed in [`STRICTER`] (and in the README): a case hookline accepts and the library refuses always fails.
//!
//! `tests/vectors/` is the other half: requests signed by the official libraries, which hookline's own signers
//! (`hookline send`, the tests) must reproduce byte for byte.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;

use hookline_providers::settings::Settings;
use hookline_providers::verify::Request;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use serde::Deserialize;

/// Cases the official library accepts and hookline refuses, on purpose: (scheme, case, why).
const STRICTER: &[(&str, &str, &str)] = &[
    ("stripe", "one second further ahead than the tolerance", "a timestamp ahead of the window is refused"),
    ("stripe", "an hour ahead", "a timestamp ahead of the window is refused"),
    ("hubspot", "one second further ahead than the tolerance", "a timestamp ahead of the window is refused"),
    ("hubspot", "an hour ahead", "a timestamp ahead of the window is refused"),
    ("stripe", "signature header sent twice", "a credential header sent twice is refused"),
    ("standard_webhooks", "signature header sent twice", "a credential header sent twice is refused"),
    ("svix", "signature header sent twice", "a credential header sent twice is refused"),
];

#[derive(Debug, Deserialize)]
struct Case {
    scheme: String,
    case: String,
    settings: String,
    headers: Vec<(String, String)>,
    body: String,
    now: i64,
    official: String,
    library: String,
    url: Option<String>,
}

fn cases() -> Vec<Case> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files.iter().flat_map(|f| serde_json::from_slice::<Vec<Case>>(&std::fs::read(f).unwrap()).unwrap()).collect()
}

/// Whether hookline accepts the case's request.
fn hookline_accepts(case: &Case) -> bool {
    let provider = hookline_providers::find(&case.scheme).unwrap_or_else(|| panic!("no provider {}", case.scheme));
    let scheme = provider
        .verifier(Settings::from_toml(&case.settings).unwrap())
        .unwrap_or_else(|e| panic!("{} settings: {e}", case.scheme));
    let uri: Uri = match &case.url {
        Some(url) => {
            let url: Uri = url.parse().unwrap();
            url.path_and_query().unwrap().as_str().parse().unwrap()
        }
        None => format!("/webhooks/{}", case.scheme).parse().unwrap(),
    };
    let mut headers = HeaderMap::new();
    for (name, value) in &case.headers {
        headers.append(HeaderName::from_bytes(name.as_bytes()).unwrap(), HeaderValue::from_str(value).unwrap());
    }
    let req =
        Request { method: &Method::POST, uri: &uri, headers: &headers, body: case.body.as_bytes(), now_secs: case.now };
    scheme.verify(&req).is_ok()
}

#[test]
fn every_scheme_answers_as_the_providers_own_library() {
    let cases = cases();
    let schemes: BTreeSet<&str> = cases.iter().map(|c| c.scheme.as_str()).collect();
    assert_eq!(
        schemes,
        BTreeSet::from([
            "github",
            "hubspot",
            "paddle",
            "shopify",
            "slack",
            "standard_webhooks",
            "stripe",
            "svix",
            "twilio"
        ]),
        "a scheme's cases are missing"
    );
    let mut wrong = Vec::new();
    let mut stricter_used = BTreeSet::new();
    for case in &cases {
        let official = case.official == "accept";
        let ours = hookline_accepts(case);
        let stricter = STRICTER.iter().find(|(s, c, _)| *s == case.scheme && *c == case.case);
        match (official, ours, stricter) {
            (o, h, None) if o == h => {}
            (true, false, Some(_)) => {
                stricter_used.insert((case.scheme.as_str(), case.case.as_str()));
            }
            _ => wrong.push(format!(
                "{} / {}: {} says {}, hookline {}",
                case.scheme,
                case.case,
                case.library,
                case.official,
                if ours { "accepts" } else { "refuses" }
            )),
        }
    }
    assert!(wrong.is_empty(), "hookline and the official libraries disagree:\n{}", wrong.join("\n"));
    let unused: Vec<_> = STRICTER.iter().filter(|(s, c, _)| !stricter_used.contains(&(*s, *c))).collect();
    assert!(unused.is_empty(), "listed as stricter but the libraries agree now: {unused:?}");
}

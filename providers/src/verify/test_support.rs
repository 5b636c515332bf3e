//! Helpers for the schemes' unit tests: owned requests and the official-library vectors in
//! `providers/tests/vectors/` (see `generate.py` there for how each was made).

use std::collections::BTreeMap;

use http::{HeaderMap, HeaderValue, Method, Uri};
use serde::Deserialize;

use super::{Request, Secret};

/// Secrets with positional ids.
pub fn secrets(list: &[&str]) -> Vec<Secret> {
    list.iter().enumerate().map(|(i, s)| Secret::new(i.to_string(), s.as_bytes().to_vec())).collect()
}

/// A request that owns its parts.
#[derive(Debug)]
pub struct TestRequest {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Vec<u8>,
    now: i64,
}

impl TestRequest {
    /// The borrowed view schemes take.
    pub fn req(&self) -> Request<'_> {
        Request { method: &self.method, uri: &self.uri, headers: &self.headers, body: &self.body, now_secs: self.now }
    }
}

/// A POST to `/webhooks/test` with these headers and body, at `now`.
pub fn request(headers: &[(&str, &str)], body: &[u8], now: i64) -> TestRequest {
    request_to(Method::POST, "/webhooks/test", headers, body, now)
}

/// A request with a given method and URI.
pub fn request_to(method: Method, uri: &str, headers: &[(&str, &str)], body: &[u8], now: i64) -> TestRequest {
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        map.append(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
    }
    TestRequest { method, uri: uri.parse().unwrap(), headers: map, body: body.to_vec(), now }
}

/// One vector: a request as the provider's official library signs it.
#[derive(Debug, Deserialize)]
pub struct Vector {
    /// What it shows.
    pub name: String,
    /// The secret it was signed with.
    pub secret: String,
    /// The body.
    pub body: String,
    /// The headers.
    pub headers: BTreeMap<String, String>,
    /// The time it was made at (seconds since the epoch).
    pub now: i64,
    /// The public URL the provider called (Twilio, HubSpot).
    #[serde(default)]
    pub url: Option<String>,
    /// The method (HubSpot).
    #[serde(default)]
    pub method: Option<String>,
}

impl Vector {
    /// The vectors of one provider.
    pub fn load(provider: &str) -> Vec<Vector> {
        let path = format!(
            "{}/tests/vectors/{provider}.json",
            std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned())
        );
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let vectors: Vec<Vector> = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert!(!vectors.is_empty(), "{path} has no vectors");
        vectors
    }

    /// Its headers as pairs.
    pub fn headers(&self) -> Vec<(&str, &str)> {
        self.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
    }

    /// The request, to `uri` (path and query as the ingress sees it).
    pub fn request_to(&self, uri: &str) -> TestRequest {
        let method = self.method.as_deref().unwrap_or("POST").parse().unwrap();
        request_to(method, uri, &self.headers(), self.body.as_bytes(), self.now)
    }
}

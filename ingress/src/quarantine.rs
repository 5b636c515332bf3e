//! The rejected-request quarantine: an optional topic with a short, redacted record of each refused request
//! and why it was refused, so an operator can tell a misconfigured secret from an attack without guessing.
//!
//! Recording never delays or fails the answer: records are handed to their own producer without waiting,
//! limited to `max_records_per_sec` (the excess is counted and dropped, so a flood of forged requests cannot
//! flood Kafka), and dropped when the producer's queue is full. Credentials are never recorded: headers that
//! carry them are replaced by their length; the body is summarised by its size and SHA-256, plus at most
//! `body_prefix_bytes` of it when configured.
//!
//! Record: key = source name (or `_unknown`), value = JSON, schema `schemas/json/rejected.v1.schema.json`.

use std::net::IpAddr;

use base64::Engine as _;
use hookline_config::ingress::{QuarantineConfig, Settings};
use http::{HeaderMap, HeaderName, Method};
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord};
use sha2::{Digest, Sha256};

use crate::limits::TokenBucket;

/// Header-name fragments that mark a header as carrying a credential.
const SENSITIVE: &[&str] = &["auth", "signature", "token", "secret", "cookie", "key", "hmac", "password", "session"];
/// Longest path or source name kept (both are sender-chosen).
const MAX_TEXT: usize = 256;

/// One refused request.
#[derive(Debug)]
pub struct Rejection<'a> {
    /// The configured source, or `None` for an unknown one.
    pub source: Option<&'a str>,
    /// The source name the request asked for.
    pub requested: &'a str,
    /// Why it was refused (a metric reason: `mismatch`, `stale_timestamp`, `payload_too_large`…).
    pub reason: &'static str,
    /// The status answered.
    pub status: u16,
    /// The client address.
    pub client_ip: IpAddr,
    /// The method.
    pub method: &'a Method,
    /// The path (the query is left out: it can carry tokens).
    pub path: &'a str,
    /// The headers.
    pub headers: &'a HeaderMap,
    /// Headers to redact beyond the usual credential names (the source's signature headers).
    pub credential_headers: &'a [HeaderName],
    /// The body, when it was read.
    pub body: Option<&'a [u8]>,
}

/// The quarantine producer.
pub struct Quarantine {
    producer: FutureProducer,
    config: QuarantineConfig,
    bucket: TokenBucket,
}

impl std::fmt::Debug for Quarantine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Quarantine").field("topic", &self.config.topic).finish_non_exhaustive()
    }
}

/// What happened to a rejection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// Handed to the producer.
    Sent,
    /// Over the rate limit or the queue is full: dropped.
    Dropped,
}

impl Quarantine {
    /// A quarantine for `settings.quarantine`, if configured.
    pub fn new(settings: &Settings) -> Result<Option<Quarantine>, KafkaError> {
        let Some(config) = settings.quarantine.clone() else { return Ok(None) };
        let mut client = settings.kafka.client_config();
        client
            .set("linger.ms", "50")
            .set("compression.type", "lz4")
            .set("queue.buffering.max.messages", "10000")
            .set("message.timeout.ms", "30000");
        let rate = f64::from(config.max_records_per_sec);
        Ok(Some(Quarantine { producer: client.create()?, bucket: TokenBucket::new(rate, rate), config }))
    }

    /// Records a rejection without waiting.
    pub fn record(&self, r: &Rejection<'_>, received_at_ms: i64) -> Recorded {
        if self.bucket.try_take().is_err() {
            return Recorded::Dropped;
        }
        let value = record(r, received_at_ms, self.config.body_prefix_bytes as usize).to_string();
        let key = r.source.unwrap_or(hookline_schemas::UNKNOWN_SOURCE);
        match self.producer.send_result(FutureRecord::to(&self.config.topic).key(key).payload(&value)) {
            // The delivery is not awaited: the record is best-effort by design.
            Ok(_delivery) => Recorded::Sent,
            Err(_) => Recorded::Dropped,
        }
    }
}

fn cut(text: &str) -> &str {
    hookline_schemas::dlq::truncate(text, MAX_TEXT)
}

/// The JSON record of a rejection.
pub fn record(r: &Rejection<'_>, received_at_ms: i64, body_prefix: usize) -> serde_json::Value {
    let mut headers = serde_json::Map::new();
    for (name, value) in r.headers {
        let lower = name.as_str();
        let sensitive = r.credential_headers.contains(name) || SENSITIVE.iter().any(|s| lower.contains(s));
        let shown = if sensitive {
            format!("<redacted: {} bytes>", value.len())
        } else {
            cut(&String::from_utf8_lossy(value.as_bytes())).to_owned()
        };
        headers.insert(lower.to_owned(), serde_json::Value::String(shown));
    }
    let mut out = serde_json::json!({
        "source": r.source.unwrap_or(hookline_schemas::UNKNOWN_SOURCE),
        "requested_source": cut(r.requested),
        "reason": r.reason,
        "status": r.status,
        "received_at": hookline_schemas::event::rfc3339_millis(received_at_ms),
        "client_ip": r.client_ip.to_string(),
        "method": r.method.as_str(),
        "path": cut(r.path),
        "headers": headers,
    });
    if let Some(body) = r.body {
        out["body_bytes"] = body.len().into();
        out["body_sha256"] = hex::encode(Sha256::digest(body)).into();
        if body_prefix > 0 {
            let prefix = &body[..body.len().min(body_prefix)];
            out["body_prefix_base64"] = base64::engine::general_purpose::STANDARD.encode(prefix).into();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use hookline_schemas::json_schema::Contract;
    use http::HeaderValue;

    #[test]
    fn records_are_redacted_bounded_and_match_their_schema() {
        let mut h = HeaderMap::new();
        h.insert("authorization", HeaderValue::from_static("Bearer secret-token"));
        h.insert("x-signature", HeaderValue::from_static("sha256=abcdef"));
        h.insert("x-custom-sig", HeaderValue::from_static("deadbeef"));
        h.insert("stripe-signature", HeaderValue::from_static("t=1,v1=00"));
        h.insert("content-type", HeaderValue::from_static("application/json"));
        let path = format!("/webhooks/{}", "x".repeat(1000));
        let custom = [HeaderName::from_static("x-custom-sig")];
        let r = Rejection {
            source: Some("shop"),
            requested: "shop",
            reason: "mismatch",
            status: 401,
            client_ip: "203.0.113.9".parse().unwrap(),
            method: &Method::POST,
            path: &path,
            headers: &h,
            credential_headers: &custom,
            body: Some(b"{\"card\":\"4242\"}"),
        };
        let rec = record(&r, 0, 0);
        let text = rec.to_string();
        for secret in ["secret-token", "abcdef", "deadbeef", "v1=00", "4242"] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
        assert_eq!(rec["headers"]["authorization"], "<redacted: 19 bytes>");
        assert_eq!(rec["headers"]["content-type"], "application/json");
        assert_eq!(rec["body_bytes"], 15);
        assert!(rec["path"].as_str().unwrap().len() <= MAX_TEXT);
        assert!(rec.get("body_prefix_base64").is_none());
        let with_prefix = record(&r, 0, 3);
        assert_eq!(with_prefix["body_prefix_base64"], "eyJj");
        let v = Contract::Rejected.validator().unwrap();
        assert_eq!(v.violations(&rec), Vec::<String>::new());
        assert_eq!(v.violations(&with_prefix), Vec::<String>::new());
    }

    /// Every reason a refusal can be recorded with is one the published schema allows.
    #[test]
    fn every_refusal_reason_is_in_the_schema() {
        // The refusals of `server::gates` and `server::webhook`, then every verification failure.
        let refusals = [
            "unknown_source",
            "ip_not_allowed",
            "method_not_allowed",
            "unsupported_media_type",
            "rate_limited",
            "overloaded",
            "too_many_bodies",
            "too_many_bodies_from_client",
            "payload_too_large",
            "request_timeout",
            "bad_request",
            "bad_host",
        ];
        let v = Contract::Rejected.validator().unwrap();
        let h = HeaderMap::new();
        for reason in refusals.iter().chain(hookline_providers::verify::VerifyError::REASONS.iter()) {
            let r = Rejection {
                source: None,
                requested: "x",
                reason,
                status: 400,
                client_ip: "203.0.113.9".parse().unwrap(),
                method: &Method::POST,
                path: "/webhooks/x",
                headers: &h,
                credential_headers: &[],
                body: None,
            };
            assert_eq!(v.violations(&record(&r, 0, 0)), Vec::<String>::new(), "{reason}");
        }
    }
}

//! The webhook handler: a request to `/webhooks/{source}` that the admission gates let through
//! ([`super::gates`]) has its body read through the source's byte limit within the read and stall deadlines
//! (413, 408), is verified over the raw bytes (401), may be the provider's ownership handshake (200, not
//! stored), takes the capacity to store it (503), and is then stored as one raw record ([`crate::producer`]): 202 once Kafka acknowledged it, else 503 with
//! `Retry-After`. Every refusal is counted and can be recorded, redacted, on the quarantine topic
//! ([`crate::quarantine`]).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use hookline_config::ingress::ChallengeResponse;
use hookline_providers::verify::{self, Handshake, VerifyError};
use hookline_runtime::traces::{self, TARGET as TRACES};
use hookline_schemas::raw::RawMeta;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use tracing::Instrument as _;

use super::gates::{host, too_large, Refusal};
use super::{App, Route};
use crate::net::client_ip;
use crate::quarantine::Rejection;
use crate::telemetry::Outcome;

/// The W3C trace-context header.
const TRACEPARENT: &str = "traceparent";

/// Request headers never kept on the raw record: credentials, and hop-by-hop headers that describe the
/// connection rather than the webhook. A scheme's own signature headers are added per source.
pub(super) const DROPPED_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "x-api-key",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// One request to a webhook endpoint, as far as it is known when it is answered.
struct Attempt<'a> {
    route: Option<&'a Route>,
    requested: &'a str,
    peer: SocketAddr,
    parts: &'a Parts,
    received_at_ms: i64,
}

impl App {
    /// Answers one request to `/webhooks/{name}`, in its span of the webhook's trace (exported only when
    /// tracing is on): the request's `traceparent` continued, else a new trace.
    pub(super) async fn webhook(&self, name: &str, req: Request<Incoming>, peer: SocketAddr) -> Response<Full<Bytes>> {
        let span = tracing::trace_span!(
            target: TRACES,
            "webhook",
            otel.name = %format_args!("POST /webhooks/{name}"),
            otel.kind = "server",
            hookline.source = %name,
            http.response.status_code = tracing::field::Empty,
        );
        traces::continue_trace(&span, req.headers().get(TRACEPARENT).and_then(|v| v.to_str().ok()));
        let response = self.answer(name, req, peer).instrument(span.clone()).await;
        span.record("http.response.status_code", response.status().as_u16());
        response
    }

    async fn answer(&self, name: &str, req: Request<Incoming>, peer: SocketAddr) -> Response<Full<Bytes>> {
        let started = Instant::now();
        let received_at_ms = hookline_runtime::now_ms();
        let (parts, body) = req.into_parts();
        let routes = self.routes();
        let route = routes.get(name);
        let attempt = Attempt { route, requested: name, peer, parts: &parts, received_at_ms };
        if let Err(refusal) = host(&parts) {
            return self.refuse(&attempt, refusal, None);
        }
        let Some(route) = route else {
            let refusal = Refusal::new(Outcome::NotFound, "unknown_source", "no source is configured under this name");
            return self.refuse(&attempt, refusal, None);
        };
        if let Err(refusal) = self.allowed(route, &parts, peer) {
            return self.refuse(&attempt, refusal, None);
        }
        if parts.method == Method::GET {
            return self.challenge(&attempt, route);
        }
        if parts.method != Method::POST {
            return self.refuse(&attempt, not_post(), None);
        }
        let client = client_ip(peer.ip(), &parts.headers, &self.settings.trusted_proxies);
        let reading = match self.admit(route, &parts, client) {
            Ok(reading) => reading,
            Err(refusal) => return self.refuse(&attempt, refusal, None),
        };
        let source = &route.source;
        let timeouts = (self.settings.read_timeout, self.settings.body_stall_timeout);
        let body = match read_body(body, source.max_body_bytes, timeouts).await {
            Ok(body) => body,
            Err(BodyError::TooLarge) => return self.refuse(&attempt, too_large(source.max_body_bytes), None),
            Err(BodyError::Timeout) => {
                let refusal =
                    Refusal::new(Outcome::RequestTimeout, "request_timeout", "the body was not received in time");
                return self.refuse(&attempt, refusal, None);
            }
            Err(BodyError::Unreadable) => {
                let refusal = Refusal::new(Outcome::BadRequest, "bad_request", "the body could not be read");
                return self.refuse(&attempt, refusal, None);
            }
        };
        drop(reading);

        let view = verify::Request {
            method: &parts.method,
            uri: &parts.uri,
            headers: &parts.headers,
            body: &body,
            now_secs: received_at_ms.div_euclid(1000),
        };
        let verifying = tracing::trace_span!(target: TRACES, "verify", hookline.scheme = source.verifier.scheme_name());
        let verified = match verifying.in_scope(|| source.verifier.verify(&view, body.clone())) {
            Ok(v) => v,
            Err(e) => return self.unauthorized(&attempt, &e, Some(&body)),
        };
        let m = &route.metrics;
        if let Some(handshake) = source.verifier.handshake(&view, &verified) {
            m.handshake();
            return handshake_response(handshake);
        }
        if !self.topics_ready.load(std::sync::atomic::Ordering::Acquire) {
            m.store_failed(None);
            return self.unavailable("the raw topic is not available yet");
        }
        let _permit = match self.admit_store(route) {
            Ok(permit) => permit,
            Err(refusal) => return self.refuse(&attempt, refusal, Some(&body)),
        };
        let keys = hookline_providers::keys::keys(
            source.dedup_key.as_ref(),
            source.ordering_key.as_ref(),
            &parts.headers,
            verified.body(),
        );
        let meta = RawMeta {
            v: hookline_schemas::header::VERSION,
            source: source.name.clone(),
            received_at_ms,
            dedup_key: keys.dedup,
            dedup_key_origin: keys.dedup_origin,
            content_type: parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned),
            request_id: uuid::Uuid::now_v7().to_string(),
            headers: kept_headers(&parts.headers, &route.dropped_headers),
            traceparent: traces::traceparent(
                &tracing::Span::current(),
                parts.headers.get(TRACEPARENT).and_then(|v| v.to_str().ok()),
            ),
            reprocess: None,
        };
        let acked =
            tracing::trace_span!(target: TRACES, "kafka.ack", messaging.destination.name = %self.settings.raw_topic);
        let stored = self.producer.store(&keys.ordering, &verified, &meta).instrument(acked).await;
        self.adaptive.record(stored.as_ref().ok().map(|s| s.ack_latency));
        self.metrics.admission_limit(self.adaptive.limit());
        match stored {
            Ok(stored) => {
                m.accepted(
                    verified.body().len(),
                    meta.dedup_key_origin,
                    verified.matched_secret(),
                    stored.ack_latency,
                    started.elapsed(),
                );
                json(
                    StatusCode::ACCEPTED,
                    &Accepted { status: "accepted", request_id: &meta.request_id, dedup_key: &meta.dedup_key },
                )
            }
            Err(e) => {
                let outcome = m.store_failed(Some(&e));
                self.unavailable(if outcome == Outcome::Overloaded {
                    "hookline is overloaded; retry later"
                } else {
                    "the webhook could not be stored; retry later"
                })
            }
        }
    }

    /// A `GET` on a source: the scheme's or the source's ownership check, else 405.
    fn challenge(&self, attempt: &Attempt<'_>, route: &Route) -> Response<Full<Bytes>> {
        let parts = attempt.parts;
        let view = verify::Request {
            method: &parts.method,
            uri: &parts.uri,
            headers: &parts.headers,
            body: b"",
            now_secs: attempt.received_at_ms.div_euclid(1000),
        };
        let answer = match route.source.verifier.get_challenge(&view) {
            Some(result) => result,
            None => match &route.source.challenge {
                Some(c) => generic_challenge(c, parts.uri.query().unwrap_or_default()),
                None => return self.refuse(attempt, not_post(), None),
            },
        };
        match answer {
            Ok(h) => {
                route.metrics.handshake();
                handshake_response(h)
            }
            Err(e) => self.unauthorized(attempt, &e, None),
        }
    }

    fn unauthorized(&self, attempt: &Attempt<'_>, e: &VerifyError, body: Option<&[u8]>) -> Response<Full<Bytes>> {
        if let Some(route) = attempt.route {
            route.metrics.verification_failed(e);
        }
        self.record(attempt, e.reason(), StatusCode::UNAUTHORIZED, body);
        error(StatusCode::UNAUTHORIZED, "unauthorized", &e.to_string())
    }

    /// Counts, records and answers a refusal (every outcome but 401, 202 and store failures).
    fn refuse(&self, attempt: &Attempt<'_>, refusal: Refusal, body: Option<&[u8]>) -> Response<Full<Bytes>> {
        match attempt.route {
            Some(route) => route.metrics.refused(refusal.outcome),
            None => self.metrics.unknown().refused(refusal.outcome),
        }
        let status = refusal.outcome.status();
        self.record(attempt, refusal.reason, status, body);
        let mut resp = error(status, refusal.reason, &refusal.message);
        if refusal.outcome == Outcome::MethodNotAllowed {
            resp.headers_mut().insert(header::ALLOW, HeaderValue::from_static("POST"));
        }
        if let Some(secs) = refusal.retry_after {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }

    fn record(&self, attempt: &Attempt<'_>, reason: &'static str, status: StatusCode, body: Option<&[u8]>) {
        let Some(q) = &self.quarantine else { return };
        let parts = attempt.parts;
        let rejection = Rejection {
            source: attempt.route.map(|r| r.source.name.as_str()),
            requested: attempt.requested,
            reason,
            status: status.as_u16(),
            client_ip: client_ip(attempt.peer.ip(), &parts.headers, &self.settings.trusted_proxies),
            method: &parts.method,
            path: parts.uri.path(),
            headers: &parts.headers,
            credential_headers: attempt.route.map(|r| r.dropped_headers.as_slice()).unwrap_or_default(),
            body,
        };
        self.metrics.quarantine(reason, q.record(&rejection, attempt.received_at_ms));
    }

    fn unavailable(&self, message: &str) -> Response<Full<Bytes>> {
        let mut resp = error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message);
        resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(self.settings.producer.retry_after_secs));
        resp
    }
}

fn not_post() -> Refusal {
    Refusal::new(Outcome::MethodNotAllowed, "method_not_allowed", "webhooks are sent with POST")
}

fn generic_challenge(c: &hookline_config::ingress::Challenge, query: &str) -> Result<Handshake, VerifyError> {
    let params: Vec<(String, String)> =
        form_urlencoded::parse(query.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    let get = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    if let Some((param, token)) = &c.token {
        let given = get(param).ok_or_else(|| VerifyError::MissingSignature(param.clone()))?;
        if !verify::ct_eq_digest(given.as_bytes(), token.expose()) {
            return Err(VerifyError::Mismatch);
        }
    }
    let value = get(&c.param).ok_or_else(|| VerifyError::MissingSignature(c.param.clone()))?;
    if value.is_empty() || value.len() > 1024 {
        return Err(VerifyError::MalformedSignature(c.param.clone()));
    }
    Ok(match c.respond {
        ChallengeResponse::Text => Handshake::text(value.to_owned()),
        ChallengeResponse::Json => Handshake::json(&serde_json::json!({ c.param.as_str(): value })),
    })
}

fn handshake_response(h: Handshake) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(h.body));
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(h.content_type));
    resp
}

#[derive(Debug)]
enum BodyError {
    TooLarge,
    Timeout,
    Unreadable,
}

/// Reads a body of at most `limit` bytes within `total`, each piece arriving within `stall` of the previous
/// one (a sender that stops sending gets 408 after `stall`, not after the whole `total`).
async fn read_body(body: Incoming, limit: usize, (total, stall): (Duration, Duration)) -> Result<Bytes, BodyError> {
    let read = async {
        let mut body = Limited::new(body, limit);
        // Most bodies come in one piece, kept as it is; more pieces are put together.
        let (mut first, mut joined): (Option<Bytes>, Option<BytesMut>) = (None, None);
        loop {
            let frame = match tokio::time::timeout(stall, body.frame()).await {
                Err(_) => return Err(BodyError::Timeout),
                Ok(None) => break,
                Ok(Some(Err(e))) if e.downcast_ref::<LengthLimitError>().is_some() => return Err(BodyError::TooLarge),
                Ok(Some(Err(_))) => return Err(BodyError::Unreadable),
                Ok(Some(Ok(frame))) => frame,
            };
            let Ok(data) = frame.into_data() else { continue };
            match (&mut joined, first.take()) {
                (Some(all), _) => all.extend_from_slice(&data),
                (None, None) => first = Some(data),
                (None, Some(earlier)) => {
                    let mut all = BytesMut::with_capacity(earlier.len() + data.len());
                    all.extend_from_slice(&earlier);
                    all.extend_from_slice(&data);
                    joined = Some(all);
                }
            }
        }
        Ok(joined.map(BytesMut::freeze).or(first).unwrap_or_default())
    };
    tokio::time::timeout(total, read).await.unwrap_or(Err(BodyError::Timeout))
}

fn kept_headers(headers: &HeaderMap, dropped: &[HeaderName]) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(name, _)| !dropped.contains(name))
        .map(|(name, value)| (name.as_str().to_owned(), String::from_utf8_lossy(value.as_bytes()).into_owned()))
        .collect()
}

/// The body of a 202.
#[derive(serde::Serialize)]
struct Accepted<'a> {
    status: &'static str,
    request_id: &'a str,
    dedup_key: &'a str,
}

fn json(status: StatusCode, body: &impl serde::Serialize) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(serde_json::to_vec(body).unwrap_or_default())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

pub(super) fn error(status: StatusCode, code: &str, message: &str) -> Response<Full<Bytes>> {
    json(status, &serde_json::json!({ "error": code, "message": message }))
}

#[cfg(test)]
mod tests {
    use hookline_config::ingress::Challenge;
    use hookline_providers::verify::Secret;

    use super::*;

    #[test]
    fn credentials_and_hop_by_hop_headers_are_not_kept() {
        let mut h = HeaderMap::new();
        h.insert("authorization", HeaderValue::from_static("Bearer t"));
        h.insert("cookie", HeaderValue::from_static("a=b"));
        h.insert("x-signature", HeaderValue::from_static("sha256=00"));
        h.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        h.insert("x-github-event", HeaderValue::from_static("push"));
        h.append("x-multi", HeaderValue::from_static("1"));
        h.append("x-multi", HeaderValue::from_static("2"));
        let mut dropped: Vec<HeaderName> = DROPPED_HEADERS.iter().map(|n| HeaderName::from_static(n)).collect();
        dropped.push(HeaderName::from_static("x-signature"));
        let kept = kept_headers(&h, &dropped);
        let names: Vec<&str> = kept.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, vec!["x-github-event", "x-multi", "x-multi"]);
        assert_eq!(kept[2].1, "2");
    }

    #[test]
    fn generic_challenges_echo_the_value_and_check_the_token() {
        let open = Challenge { param: "challenge".into(), respond: ChallengeResponse::Text, token: None };
        assert_eq!(generic_challenge(&open, "challenge=abc%20d"), Ok(Handshake::text("abc d")));
        assert!(generic_challenge(&open, "other=1").is_err());
        let guarded = Challenge {
            param: "crc".into(),
            respond: ChallengeResponse::Json,
            token: Some(("verify".into(), Secret::new("t".into(), b"tok".to_vec()))),
        };
        assert_eq!(
            generic_challenge(&guarded, "crc=x&verify=tok"),
            Ok(Handshake::json(&serde_json::json!({"crc": "x"})))
        );
        assert_eq!(generic_challenge(&guarded, "crc=x&verify=nope"), Err(VerifyError::Mismatch));
        assert!(matches!(generic_challenge(&guarded, "crc=x"), Err(VerifyError::MissingSignature(_))));
    }
}

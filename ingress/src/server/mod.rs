//! The HTTP side: accepting connections (plain or TLS, HTTP/1.1 and HTTP/2), routing, and answering each
//! webhook request.
//!
//! `POST /webhooks/{source}` goes through, in order: the source's IP allowlist (403), the global and per-source
//! in-flight budgets (503 at once), the source's rate limit (429), its accepted content types (415), the body
//! limit on the declared length and then on the bytes read (413) within the read deadline (408), verification
//! over the raw bytes (401), and the provider's ownership handshake (200, not stored). Only then is the raw
//! record produced, and 202 is answered once Kafka acknowledged it ([`crate::producer`]); otherwise 503 with
//! `Retry-After`. Nothing on this path queues without bound. Every refusal can be recorded, redacted, on the
//! quarantine topic ([`crate::quarantine`]).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hookline_runtime::admin::{self, Readiness};
use hookline_schemas::raw::RawMeta;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::{ChallengeResponse, Settings, Source};
use crate::limits::{retry_after_secs, AdaptiveLimit, Budget};
use crate::net::client_ip;
use crate::producer::RawProducer;
use crate::quarantine::{Quarantine, Rejection};
use crate::telemetry::{Metrics, Outcome, SourceLabels, SourceMetrics};
use crate::verify::{self, Handshake, VerifyError};

/// Request headers never kept on the raw record: credentials, and hop-by-hop headers that describe the
/// connection rather than the webhook. A scheme's own signature headers are added per source.
const DROPPED_HEADERS: &[&str] = &[
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

/// A configured source with its metric handles, budget and the headers to drop.
#[derive(Debug)]
struct Route {
    source: Arc<Source>,
    metrics: SourceMetrics,
    dropped_headers: Vec<HeaderName>,
    budget: Option<Budget>,
}

/// Everything a request handler needs.
#[derive(Debug)]
pub struct App {
    settings: Settings,
    producer: RawProducer,
    quarantine: Option<Quarantine>,
    metrics: Metrics,
    registry: Registry,
    readiness: Arc<Readiness>,
    topics_ready: AtomicBool,
    in_flight: Budget,
    adaptive: AdaptiveLimit,
    routes: HashMap<String, Route>,
}

/// What is known of a request when it is refused.
struct Refusal<'a> {
    route: Option<&'a Route>,
    requested: &'a str,
    peer: SocketAddr,
    parts: &'a Parts,
    received_at_ms: i64,
}

impl App {
    /// Builds the app: metrics registered, producers created.
    pub fn new(settings: Settings, readiness: Arc<Readiness>) -> Result<App, rdkafka::error::KafkaError> {
        let mut registry = Registry::default();
        let labels: Vec<SourceLabels> = settings
            .sources
            .iter()
            .map(|(name, s)| SourceLabels {
                name: name.clone(),
                secret_ids: s.verifier.secret_ids(),
                ack_budget: s.ack_budget,
            })
            .collect();
        let metrics = Metrics::register(&mut registry, &labels);
        let routes = settings
            .sources
            .iter()
            .map(|(name, source)| {
                let mut dropped_headers: Vec<HeaderName> =
                    DROPPED_HEADERS.iter().map(|h| HeaderName::from_static(h)).collect();
                dropped_headers.extend(source.verifier.credential_headers());
                let route = Route {
                    source: source.clone(),
                    metrics: metrics.source(name).clone(),
                    dropped_headers,
                    budget: source.max_in_flight.map(Budget::new),
                };
                (name.clone(), route)
            })
            .collect();
        let producer = RawProducer::new(&settings)?;
        let quarantine = Quarantine::new(&settings)?;
        let target = Duration::from_millis(settings.producer.target_ack_latency_ms);
        Ok(App {
            in_flight: Budget::new(settings.max_in_flight),
            adaptive: AdaptiveLimit::new((settings.max_in_flight / 64).max(8), settings.max_in_flight, target),
            settings,
            producer,
            quarantine,
            metrics,
            registry,
            readiness,
            topics_ready: AtomicBool::new(false),
            routes,
        })
    }

    /// The producer.
    pub fn producer(&self) -> &RawProducer {
        &self.producer
    }

    /// The quarantine, if configured.
    pub fn quarantine(&self) -> Option<&Quarantine> {
        self.quarantine.as_ref()
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Marks the topics as present: webhooks may be stored from now on.
    pub fn topics_ensured(&self) {
        self.topics_ready.store(true, Ordering::Release);
    }

    /// Routes one request from `peer`.
    pub async fn handle(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<Full<Bytes>> {
        let path = req.uri().path();
        if let Some(name) = path.strip_prefix("/webhooks/") {
            let name = name.trim_end_matches('/').to_owned();
            return self.webhook(&name, req, peer).await;
        }
        admin::respond(req.method(), path, &self.registry, &self.readiness)
            .unwrap_or_else(|| error(StatusCode::NOT_FOUND, "not_found", "no such endpoint"))
    }

    async fn webhook(&self, name: &str, req: Request<Incoming>, peer: SocketAddr) -> Response<Full<Bytes>> {
        let started = Instant::now();
        let received_at_ms = hookline_runtime::now_ms();
        let (parts, body) = req.into_parts();
        let route = self.routes.get(name);
        let refusal = Refusal { route, requested: name, peer, parts: &parts, received_at_ms };
        let Some(route) = route else {
            return self.refuse(
                &refusal,
                Outcome::NotFound,
                "unknown_source",
                "no source is configured under this name",
                None,
            );
        };
        let source = &route.source;
        let m = &route.metrics;

        if let Some(allowed) = &source.allowed_ips {
            let ip = client_ip(peer.ip(), &parts.headers, &self.settings.trusted_proxies);
            if !allowed.iter().any(|net| net.contains(&ip)) {
                return self.refuse(
                    &refusal,
                    Outcome::Forbidden,
                    "ip_not_allowed",
                    "this address may not send to this source",
                    None,
                );
            }
        }
        if parts.method == Method::GET {
            return self.challenge(&refusal, route);
        }
        if parts.method != Method::POST {
            return self.refuse(
                &refusal,
                Outcome::MethodNotAllowed,
                "method_not_allowed",
                "webhooks are sent with POST",
                None,
            );
        }
        let _in_flight = self.metrics.in_flight();
        let Some(_global) = self.in_flight.try_acquire() else {
            return self.refuse(
                &refusal,
                Outcome::Overloaded,
                "overloaded",
                "hookline is at capacity; retry later",
                None,
            );
        };
        let Some(_admitted) = self.adaptive.try_acquire() else {
            let message = "Kafka is slow to acknowledge; retry later";
            return self.refuse(&refusal, Outcome::Overloaded, "overloaded", message, None);
        };
        let _local = match &route.budget {
            Some(budget) => match budget.try_acquire() {
                Some(permit) => Some(permit),
                None => {
                    return self.refuse(
                        &refusal,
                        Outcome::Overloaded,
                        "overloaded",
                        "this source is at capacity; retry later",
                        None,
                    )
                }
            },
            None => None,
        };
        if let Some(bucket) = &source.rate_limit {
            if let Err(wait) = bucket.try_take() {
                let mut resp = self.refuse(
                    &refusal,
                    Outcome::RateLimited,
                    "rate_limited",
                    "rate limit exceeded; retry later",
                    None,
                );
                resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs(wait)));
                return resp;
            }
        }
        if let Some(types) = &source.content_types {
            let media = parts
                .headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.split(';').next().unwrap_or_default().trim().to_ascii_lowercase());
            if !media.is_some_and(|media| types.contains(&media)) {
                let accepted = types.join(", ");
                return self.refuse(
                    &refusal,
                    Outcome::UnsupportedMediaType,
                    "unsupported_media_type",
                    &format!("this source accepts {accepted}"),
                    None,
                );
            }
        }
        if declared_length(&parts.headers).is_some_and(|len| len > source.max_body_bytes as u64) {
            return self.too_large(&refusal, source.max_body_bytes);
        }
        let body = match read_body(body, source.max_body_bytes, self.settings.read_timeout).await {
            Ok(body) => body,
            Err(BodyError::TooLarge) => return self.too_large(&refusal, source.max_body_bytes),
            Err(BodyError::Timeout) => {
                return self.refuse(
                    &refusal,
                    Outcome::RequestTimeout,
                    "request_timeout",
                    "the body was not received in time",
                    None,
                )
            }
            Err(BodyError::Unreadable) => {
                return self.refuse(&refusal, Outcome::BadRequest, "bad_request", "the body could not be read", None)
            }
        };

        let view = verify::Request {
            method: &parts.method,
            uri: &parts.uri,
            headers: &parts.headers,
            body: &body,
            now_secs: received_at_ms.div_euclid(1000),
        };
        let verified = match source.verifier.verify(&view, body.clone()) {
            Ok(v) => v,
            Err(e) => return self.unauthorized(&refusal, &e, Some(&body)),
        };
        if let Some(handshake) = source.verifier.handshake(&view, &verified) {
            m.handshake();
            return handshake_response(handshake);
        }
        if !self.topics_ready.load(Ordering::Acquire) {
            m.store_failed(None);
            return self.unavailable("the raw topic is not available yet");
        }
        let keys =
            crate::keys::keys(source.dedup_key.as_ref(), source.ordering_key.as_ref(), &parts.headers, verified.body());
        let meta = RawMeta {
            v: hookline_schemas::header::VERSION,
            source: source.name.clone(),
            received_at_ms,
            dedup_key: keys.dedup,
            dedup_key_origin: keys.dedup_origin,
            content_type: parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned),
            request_id: uuid::Uuid::now_v7().to_string(),
            headers: kept_headers(&parts.headers, &route.dropped_headers),
            reprocess: None,
        };
        let stored = self.producer.store(&keys.ordering, verified.body(), &meta).await;
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
    fn challenge(&self, refusal: &Refusal<'_>, route: &Route) -> Response<Full<Bytes>> {
        let parts = refusal.parts;
        let view = verify::Request {
            method: &parts.method,
            uri: &parts.uri,
            headers: &parts.headers,
            body: b"",
            now_secs: refusal.received_at_ms.div_euclid(1000),
        };
        let answer = match route.source.verifier.get_challenge(&view) {
            Some(result) => result,
            None => match &route.source.challenge {
                Some(c) => generic_challenge(c, parts.uri.query().unwrap_or_default()),
                None => {
                    return self.refuse(
                        refusal,
                        Outcome::MethodNotAllowed,
                        "method_not_allowed",
                        "webhooks are sent with POST",
                        None,
                    )
                }
            },
        };
        match answer {
            Ok(h) => {
                route.metrics.handshake();
                handshake_response(h)
            }
            Err(e) => self.unauthorized(refusal, &e, None),
        }
    }

    fn unauthorized(&self, refusal: &Refusal<'_>, e: &VerifyError, body: Option<&[u8]>) -> Response<Full<Bytes>> {
        if let Some(route) = refusal.route {
            route.metrics.verification_failed(e);
        }
        self.record(refusal, e.reason(), StatusCode::UNAUTHORIZED, body);
        error(StatusCode::UNAUTHORIZED, "unauthorized", &e.to_string())
    }

    fn too_large(&self, refusal: &Refusal<'_>, limit: usize) -> Response<Full<Bytes>> {
        let message = format!("the body is larger than {limit} bytes");
        self.refuse(refusal, Outcome::PayloadTooLarge, "payload_too_large", &message, None)
    }

    /// Counts, records and answers a refusal (every outcome but 401, 202 and store failures).
    fn refuse(
        &self,
        refusal: &Refusal<'_>,
        outcome: Outcome,
        reason: &'static str,
        message: &str,
        body: Option<&[u8]>,
    ) -> Response<Full<Bytes>> {
        match refusal.route {
            Some(route) => route.metrics.refused(outcome),
            None => self.metrics.unknown().refused(outcome),
        }
        self.record(refusal, reason, outcome.status(), body);
        let mut resp = error(outcome.status(), reason, message);
        match outcome {
            Outcome::MethodNotAllowed => {
                resp.headers_mut().insert(header::ALLOW, HeaderValue::from_static("POST"));
            }
            Outcome::Overloaded => {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(self.settings.producer.retry_after_secs));
            }
            _ => {}
        }
        resp
    }

    fn record(&self, refusal: &Refusal<'_>, reason: &'static str, status: StatusCode, body: Option<&[u8]>) {
        let Some(q) = &self.quarantine else { return };
        let parts = refusal.parts;
        let rejection = Rejection {
            source: refusal.route.map(|r| r.source.name.as_str()),
            requested: refusal.requested,
            reason,
            status: status.as_u16(),
            client_ip: client_ip(refusal.peer.ip(), &parts.headers, &self.settings.trusted_proxies),
            method: &parts.method,
            path: parts.uri.path(),
            headers: &parts.headers,
            credential_headers: refusal.route.map(|r| r.dropped_headers.as_slice()).unwrap_or_default(),
            body,
        };
        self.metrics.quarantine(reason, q.record(&rejection, refusal.received_at_ms));
    }

    fn unavailable(&self, message: &str) -> Response<Full<Bytes>> {
        let mut resp = error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message);
        resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(self.settings.producer.retry_after_secs));
        resp
    }
}

fn generic_challenge(c: &crate::config::Challenge, query: &str) -> Result<Handshake, VerifyError> {
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

/// How busy one connection is: requests in progress, and when the last one ended.
#[derive(Debug)]
struct Activity {
    active: AtomicUsize,
    last_done: std::sync::Mutex<Instant>,
}

impl Activity {
    /// When the connection reaches `idle_timeout` with no request, if nothing happens meanwhile: `None`
    /// while a request is in progress.
    fn idle_deadline(&self, idle_timeout: Duration) -> Option<Instant> {
        if self.active.load(Ordering::Acquire) > 0 {
            return None;
        }
        self.last_done.lock().ok().map(|t| *t + idle_timeout)
    }
}

/// Marks a request as in progress on its connection until dropped.
struct Busy(Arc<Activity>);

impl Busy {
    fn new(activity: &Arc<Activity>) -> Busy {
        activity.active.fetch_add(1, Ordering::AcqRel);
        Busy(activity.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        if let Ok(mut t) = self.0.last_done.lock() {
            *t = Instant::now();
        }
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Accepts connections until `shutdown`, then stops accepting and lets in-flight requests finish for up to
/// the drain timeout. At most `max_connections` are open; further clients wait in the listen backlog. A
/// connection with no request in progress for `idle_timeout` is closed, so idle keep-alive connections
/// cannot pile up; one whose request head does not arrive within the read timeout is closed by hyper.
pub async fn serve(app: Arc<App>, listener: TcpListener, shutdown: CancellationToken) {
    let s = app.settings();
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(s.read_timeout)
        .max_buf_size(s.max_header_bytes)
        .max_headers(s.max_headers);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(s.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(256)
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(s.read_timeout);
    let tls = match &s.tls {
        Some(t) => match crate::net::tls_acceptor(&t.cert_file, &t.key_file) {
            Ok(acceptor) => Some(acceptor),
            Err(e) => {
                tracing::error!(error = %e, "cannot start TLS; not serving");
                return;
            }
        },
        None => None,
    };
    let connections = Budget::new(s.max_connections);
    let tasks = tokio_util::task::TaskTracker::new();
    loop {
        let permit = tokio::select! {
            p = connections.acquire() => p,
            () = shutdown.cancelled() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let builder = builder.clone();
        let tls = tls.clone();
        let stop = shutdown.clone();
        tasks.spawn(async move {
            let _permit = permit;
            let _open = app.metrics().connection();
            let read_timeout = app.settings().read_timeout;
            match tls {
                None => serve_connection(app, &builder, TokioIo::new(stream), peer, stop).await,
                Some(acceptor) => match tokio::time::timeout(read_timeout, acceptor.accept(stream)).await {
                    Ok(Ok(tls_stream)) => serve_connection(app, &builder, TokioIo::new(tls_stream), peer, stop).await,
                    Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!("TLS handshake timed out"),
                },
            }
        });
    }
    drop(listener);
    tasks.close();
    tracing::info!(connections = tasks.len(), "stopped accepting; draining in-flight requests");
    let drain = app.settings().drain_timeout;
    match tokio::time::timeout(drain, tasks.wait()).await {
        Ok(()) => tracing::info!("all connections drained"),
        Err(_) => tracing::warn!(timeout = ?drain, "drain timeout reached; closing remaining connections"),
    }
}

/// Serves one connection until it ends, closing it gracefully (in-flight requests finish) on shutdown or
/// after `idle_timeout` without a request.
async fn serve_connection<I>(
    app: Arc<App>,
    builder: &hyper_util::server::conn::auto::Builder<TokioExecutor>,
    io: TokioIo<I>,
    peer: SocketAddr,
    stop: CancellationToken,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let idle_timeout = app.settings().idle_timeout;
    let activity = Arc::new(Activity { active: AtomicUsize::new(0), last_done: std::sync::Mutex::new(Instant::now()) });
    let svc_activity = activity.clone();
    let svc = hyper::service::service_fn(move |req| {
        let app = app.clone();
        let busy = Busy::new(&svc_activity);
        async move {
            let resp = app.handle(req, peer).await;
            drop(busy);
            Ok::<_, Infallible>(resp)
        }
    });
    let conn = builder.serve_connection(io, svc);
    tokio::pin!(conn);
    // One timer per connection that fires only when the idle timeout may have been reached, then moves to
    // the next possible moment (a request in progress, or one that ended since, pushes it back): no periodic
    // wake-ups of every open connection.
    let idle = tokio::time::sleep(idle_timeout);
    tokio::pin!(idle);
    let mut closing = false;
    let result = loop {
        tokio::select! {
            r = conn.as_mut() => break r,
            () = stop.cancelled(), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            () = idle.as_mut(), if !closing => {
                match activity.idle_deadline(idle_timeout) {
                    Some(deadline) if deadline <= Instant::now() => {
                        conn.as_mut().graceful_shutdown();
                        closing = true;
                    }
                    Some(deadline) => idle.as_mut().reset(deadline.into()),
                    None => idle.as_mut().reset((Instant::now() + idle_timeout).into()),
                }
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

#[derive(Debug)]
enum BodyError {
    TooLarge,
    Timeout,
    Unreadable,
}

async fn read_body(body: Incoming, limit: usize, timeout: Duration) -> Result<Bytes, BodyError> {
    match tokio::time::timeout(timeout, Limited::new(body, limit).collect()).await {
        Err(_) => Err(BodyError::Timeout),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => Err(BodyError::TooLarge),
        Ok(Err(_)) => Err(BodyError::Unreadable),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
    }
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
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

fn error(status: StatusCode, code: &str, message: &str) -> Response<Full<Bytes>> {
    json(status, &serde_json::json!({ "error": code, "message": message }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Challenge, ChallengeResponse};
    use crate::verify::Secret;

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

//! The HTTP side: accepting connections, routing, and answering each webhook request.
//!
//! `POST /webhooks/{source}` is read through a byte limit and a deadline, verified over the raw bytes, and
//! answered 202 only once Kafka acknowledged the raw record ([`crate::producer`]). Every other answer says what
//! the sender should do: 401/404/405/413 are final, 400/408 and 503 (with `Retry-After`) invite a retry.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hookline_runtime::admin::{self, Readiness};
use hookline_schemas::raw::RawMeta;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::{Settings, Source};
use crate::producer::{RawProducer, StoreError};
use crate::telemetry::{Metrics, Outcome, SourceMetrics};

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

/// A configured source with its metric handles and the headers to drop.
#[derive(Debug)]
struct Route {
    source: Arc<Source>,
    metrics: SourceMetrics,
    dropped_headers: Vec<HeaderName>,
}

/// Everything a request handler needs.
#[derive(Debug)]
pub struct App {
    settings: Settings,
    producer: RawProducer,
    metrics: Metrics,
    registry: Registry,
    readiness: Arc<Readiness>,
    topics_ready: AtomicBool,
    routes: HashMap<String, Route>,
}

impl App {
    /// Builds the app: metrics registered, producer created.
    pub fn new(
        settings: Settings,
        readiness: Arc<Readiness>,
    ) -> Result<App, rdkafka::error::KafkaError> {
        let mut registry = Registry::default();
        let secret_ids: Vec<(String, Vec<String>)> = settings
            .sources
            .iter()
            .map(|(name, s)| (name.clone(), s.verifier.secret_ids()))
            .collect();
        let metrics = Metrics::register(&mut registry, &secret_ids);
        let routes = settings
            .sources
            .iter()
            .map(|(name, source)| {
                let mut dropped_headers: Vec<HeaderName> = DROPPED_HEADERS
                    .iter()
                    .map(|h| HeaderName::from_static(h))
                    .collect();
                dropped_headers.extend(source.verifier.credential_headers());
                let route = Route {
                    source: source.clone(),
                    metrics: metrics.source(name).clone(),
                    dropped_headers,
                };
                (name.clone(), route)
            })
            .collect();
        let producer = RawProducer::new(&settings)?;
        Ok(App {
            settings,
            producer,
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

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Marks the raw topic as present: webhooks may be stored from now on.
    pub fn topics_ensured(&self) {
        self.topics_ready.store(true, Ordering::Release);
    }

    /// Routes one request.
    pub async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let path = req.uri().path();
        if let Some(name) = path.strip_prefix("/webhooks/") {
            let name = name.trim_end_matches('/').to_owned();
            return self.webhook(&name, req).await;
        }
        admin::respond(req.method(), path, &self.registry, &self.readiness)
            .unwrap_or_else(|| error(StatusCode::NOT_FOUND, "not_found", "no such endpoint"))
    }

    async fn webhook(&self, name: &str, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let Some(route) = self.routes.get(name) else {
            self.metrics.unknown_source(name);
            return error(
                StatusCode::NOT_FOUND,
                "unknown_source",
                "no source is configured under this name",
            );
        };
        let _in_flight = self.metrics.in_flight();
        let m = &route.metrics;
        let source = &route.source;
        if req.method() != Method::POST {
            m.outcome(Outcome::MethodNotAllowed);
            let mut resp = error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "webhooks are sent with POST",
            );
            resp.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST"));
            return resp;
        }
        if declared_length(req.headers()).is_some_and(|len| len > source.max_body_bytes as u64) {
            m.outcome(Outcome::PayloadTooLarge);
            return too_large(source.max_body_bytes);
        }
        let (parts, body) = req.into_parts();
        let body = match read_body(body, source.max_body_bytes, self.settings.read_timeout).await {
            Ok(body) => body,
            Err(BodyError::TooLarge) => {
                m.outcome(Outcome::PayloadTooLarge);
                return too_large(source.max_body_bytes);
            }
            Err(BodyError::Timeout) => {
                m.outcome(Outcome::RequestTimeout);
                return error(
                    StatusCode::REQUEST_TIMEOUT,
                    "request_timeout",
                    "the body was not received in time",
                );
            }
            Err(BodyError::Unreadable) => {
                m.outcome(Outcome::BadRequest);
                return error(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    "the body could not be read",
                );
            }
        };
        let received_at_ms = hookline_runtime::now_ms();
        let verified = match source.verifier.verify(&parts.headers, body) {
            Ok(v) => v,
            Err(e) => {
                m.verification_failed(&e);
                return error(StatusCode::UNAUTHORIZED, "unauthorized", &e.to_string());
            }
        };
        if !self.topics_ready.load(Ordering::Acquire) {
            m.store_failed(Outcome::Unavailable, &"raw topic not yet ensured");
            return self.unavailable("the raw topic is not available yet");
        }
        let keys = crate::keys::keys(
            source.dedup_key.as_ref(),
            source.ordering_key.as_ref(),
            &parts.headers,
            verified.body(),
        );
        let meta = RawMeta {
            source: source.name.clone(),
            received_at_ms,
            dedup_key: keys.dedup,
            dedup_key_origin: keys.dedup_origin,
            content_type: parts
                .headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            request_id: uuid::Uuid::now_v7().to_string(),
            http_headers: kept_headers(&parts.headers, &route.dropped_headers),
        };
        match self
            .producer
            .store(&keys.ordering, verified.body(), &meta)
            .await
        {
            Ok(stored) => {
                m.accepted(
                    verified.body().len(),
                    meta.dedup_key_origin,
                    verified.matched_secret(),
                    stored.ack_latency,
                );
                let body = serde_json::json!({
                    "status": "accepted",
                    "request_id": meta.request_id,
                    "dedup_key": meta.dedup_key,
                });
                json(StatusCode::ACCEPTED, &body)
            }
            Err(e @ StoreError::QueueFull) => {
                m.store_failed(Outcome::Overloaded, &e);
                self.unavailable("hookline is overloaded; retry later")
            }
            Err(e) => {
                m.store_failed(Outcome::Unavailable, &e);
                self.unavailable("the webhook could not be stored; retry later")
            }
        }
    }

    fn unavailable(&self, message: &str) -> Response<Full<Bytes>> {
        let mut resp = error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message);
        resp.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(self.settings.producer.retry_after_secs),
        );
        resp
    }
}

/// Accepts connections until `shutdown`, then stops accepting and lets in-flight requests finish for up to
/// the drain timeout.
pub async fn serve(app: Arc<App>, listener: TcpListener, shutdown: CancellationToken) {
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(app.settings.read_timeout);
    builder.http2().timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
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
        let svc = hyper::service::service_fn(move |req| {
            let app = app.clone();
            async move { Ok::<_, Infallible>(app.handle(req).await) }
        });
        let conn = graceful.watch(
            builder
                .serve_connection(TokioIo::new(stream), svc)
                .into_owned(),
        );
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tracing::info!("stopped accepting; draining in-flight requests");
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections drained"),
        () = tokio::time::sleep(app.settings.drain_timeout) => {
            tracing::warn!(timeout = ?app.settings.drain_timeout, "drain timeout reached; closing remaining connections");
        }
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
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

fn kept_headers(headers: &HeaderMap, dropped: &[HeaderName]) -> Vec<(String, Vec<u8>)> {
    headers
        .iter()
        .filter(|(name, _)| !dropped.contains(name))
        .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
        .collect()
}

fn json(status: StatusCode, body: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

fn error(status: StatusCode, code: &str, message: &str) -> Response<Full<Bytes>> {
    json(
        status,
        &serde_json::json!({ "error": code, "message": message }),
    )
}

fn too_large(limit: usize) -> Response<Full<Bytes>> {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        &format!("the body is larger than {limit} bytes"),
    )
}

#[cfg(test)]
mod tests {
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
        let mut dropped: Vec<HeaderName> = DROPPED_HEADERS
            .iter()
            .map(|n| HeaderName::from_static(n))
            .collect();
        dropped.push(HeaderName::from_static("x-signature"));
        let kept = kept_headers(&h, &dropped);
        let names: Vec<&str> = kept.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, vec!["x-github-event", "x-multi", "x-multi"]);
        assert_eq!(kept[2].1, b"2");
    }
}

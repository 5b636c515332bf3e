//! The operator endpoints every hookline process serves: `/livez`, `/readyz` and `/metrics`.
//!
//! `/livez` answers 200 while the process runs. `/readyz` answers 200 only when every readiness check passes,
//! else 503 with the failing checks listed (one per line), so a load balancer stops sending traffic and an SRE
//! sees why. `/metrics` is the Prometheus registry in the text exposition format.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The `Content-Type` of `/metrics`.
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Named readiness checks. A check that was never set counts as failing ("starting").
#[derive(Debug, Default)]
pub struct Readiness {
    checks: Mutex<BTreeMap<&'static str, Result<(), String>>>,
}

impl Readiness {
    /// A readiness with the given checks, all failing until set.
    pub fn new(names: &[&'static str]) -> Self {
        let checks = names.iter().map(|n| (*n, Err("starting".to_owned()))).collect();
        Readiness { checks: Mutex::new(checks) }
    }

    /// Marks a check as passing.
    pub fn pass(&self, name: &'static str) {
        self.set(name, Ok(()));
    }

    /// Marks a check as failing, with a reason shown on `/readyz`.
    pub fn fail(&self, name: &'static str, why: impl Into<String>) {
        self.set(name, Err(why.into()));
    }

    fn set(&self, name: &'static str, state: Result<(), String>) {
        if let Ok(mut checks) = self.checks.lock() {
            checks.insert(name, state);
        }
    }

    /// The failing checks, as `name: reason`; empty when ready.
    pub fn failing(&self) -> Vec<String> {
        match self.checks.lock() {
            Ok(checks) => {
                checks.iter().filter_map(|(n, s)| s.as_ref().err().map(|why| format!("{n}: {why}"))).collect()
            }
            Err(_) => vec!["readiness: lock poisoned".to_owned()],
        }
    }

    /// Whether every check passes.
    pub fn is_ready(&self) -> bool {
        self.failing().is_empty()
    }
}

/// A plain-text response.
pub fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/plain; charset=utf-8"));
    resp
}

/// The `/livez`, `/readyz` or `/metrics` response for `path`, or `None` for any other path.
pub fn respond(
    method: &Method,
    path: &str,
    registry: &Registry,
    readiness: &Readiness,
) -> Option<Response<Full<Bytes>>> {
    if method != Method::GET && method != Method::HEAD {
        return match path {
            "/livez" | "/readyz" | "/metrics" => {
                let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
                r.headers_mut().insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
                Some(r)
            }
            _ => None,
        };
    }
    match path {
        "/livez" => Some(text(StatusCode::OK, "ok\n")),
        "/readyz" => {
            let failing = readiness.failing();
            Some(if failing.is_empty() {
                text(StatusCode::OK, "ready\n")
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, format!("not ready\n{}\n", failing.join("\n")))
            })
        }
        "/metrics" => {
            let mut body = String::with_capacity(16 * 1024);
            if prometheus_client::encoding::text::encode(&mut body, registry).is_err() {
                return Some(text(StatusCode::INTERNAL_SERVER_ERROR, "cannot encode metrics\n"));
            }
            let mut r = text(StatusCode::OK, body);
            r.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static(METRICS_CONTENT_TYPE));
            Some(r)
        }
        _ => None,
    }
}

/// Serves only the operator endpoints on `listener` until `shutdown` is cancelled.
pub async fn serve(
    listener: TcpListener,
    registry: Arc<Registry>,
    readiness: Arc<Readiness>,
    shutdown: CancellationToken,
) {
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    loop {
        let (stream, _peer): (_, SocketAddr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => return,
        };
        let registry = registry.clone();
        let readiness = readiness.clone();
        let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
            let resp = respond(req.method(), req.uri().path(), &registry, &readiness)
                .unwrap_or_else(|| text(StatusCode::NOT_FOUND, "not found\n"));
            async move { Ok::<_, Infallible>(resp) }
        });
        let conn = builder.serve_connection(TokioIo::new(stream), svc).into_owned();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = conn => {}
                () = shutdown.cancelled() => {}
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_lists_failing_checks_until_all_pass() {
        let r = Readiness::new(&["kafka", "topics"]);
        assert_eq!(r.failing(), vec!["kafka: starting", "topics: starting"]);
        r.pass("kafka");
        r.fail("topics", "cannot create hookline.raw");
        assert!(!r.is_ready());
        let resp = respond(&Method::GET, "/readyz", &Registry::default(), &r).unwrap();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        r.pass("topics");
        assert!(r.is_ready());
        let resp = respond(&Method::GET, "/readyz", &Registry::default(), &r).unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(respond(&Method::GET, "/other", &Registry::default(), &r).is_none());
        let resp = respond(&Method::POST, "/metrics", &Registry::default(), &r).unwrap();
        assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    }
}

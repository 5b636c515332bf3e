//! The HTTP side of the ingress, in three parts a request goes through:
//!
//! - `accept`: connections (plain or TLS, HTTP/1.1 and HTTP/2), their limits, idle timeout and draining;
//! - `gates`: admission (the `Host`, the sender's address, a place to receive the body with the rate limit,
//!   content type and declared length, then the capacity to store it once verified), each returning a
//!   permit or a refusal;
//! - `webhook`: the handler: body, verification, handshake, storage and the answer;
//! - `routes`: the configured sources as requests find them, replaced as a whole when the config is reloaded.
//!
//! [`App::handle`] routes `/webhooks/{source}` to the handler and anything else to 404: the operator endpoints
//! (`/metrics`, `/livez`, `/readyz`) are on the admin address ([`hookline_runtime::admin`]), so nothing about
//! the configuration answers on the public port. Nothing on the webhook path queues without bound.

mod accept;
mod gates;
mod routes;
mod webhook;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use hookline_config::ingress::Settings;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use prometheus_client::registry::Registry;

use crate::limits::{AdaptiveLimit, Budget, PerClient};
use crate::producer::RawProducer;
use crate::quarantine::Quarantine;
use crate::telemetry::Metrics;

pub use self::accept::serve;
use self::routes::{Route, Routes};

/// Everything a request handler needs.
#[derive(Debug)]
pub struct App {
    /// The settings the process started with, without their sources: those are in `routes`, replaced on
    /// reload.
    settings: Settings,
    producer: RawProducer,
    quarantine: Option<Quarantine>,
    metrics: Metrics,
    registry: Arc<Registry>,
    topics_ready: AtomicBool,
    in_flight: Budget,
    adaptive: AdaptiveLimit,
    reading: Budget,
    reading_per_client: PerClient,
    routes: RwLock<Arc<Routes>>,
}

impl App {
    /// Builds the app: metrics registered, producers created.
    pub fn new(mut settings: Settings) -> Result<App, rdkafka::error::KafkaError> {
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry);
        let sources = std::mem::take(&mut settings.sources);
        let routes = Routes::first(sources, &metrics);
        let producer = RawProducer::new(&settings)?;
        let quarantine = Quarantine::new(&settings)?;
        let target = Duration::from_millis(settings.producer.target_ack_latency_ms);
        Ok(App {
            in_flight: Budget::new(settings.max_in_flight),
            reading: Budget::new(settings.max_reading),
            reading_per_client: PerClient::new(settings.max_reading_per_client),
            adaptive: AdaptiveLimit::new((settings.max_in_flight / 64).max(8), settings.max_in_flight, target),
            settings,
            producer,
            quarantine,
            metrics,
            registry: Arc::new(registry),
            topics_ready: AtomicBool::new(false),
            routes: RwLock::new(Arc::new(routes)),
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

    /// The metrics registry, for the admin endpoints.
    pub fn registry(&self) -> Arc<Registry> {
        self.registry.clone()
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
        let (parts, _) = req.into_parts();
        match gates::host(&parts) {
            Ok(()) => webhook::error(StatusCode::NOT_FOUND, "not_found", "no such endpoint"),
            Err(refusal) => webhook::error(StatusCode::BAD_REQUEST, refusal.reason, &refusal.message),
        }
    }
}

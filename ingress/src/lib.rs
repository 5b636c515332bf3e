//! # hookline ingress
//!
//! A thin HTTP server in front of Kafka. For each `POST /webhooks/{source}` it reads the body through a byte
//! limit, verifies it against the source's config ([`hookline_providers::verify`]; the config is
//! [`hookline_config::ingress`]), works out its dedup and ordering keys ([`hookline_providers::keys`]),
//! stores the exact body bytes with their metadata as one raw record and answers 202 only once Kafka has
//! acknowledged that record. When it cannot store, it answers 503 with `Retry-After`; it never answers 2xx
//! for a webhook it did not store.
//!
//! Inside: `server` (connections, admission gates, the webhook handler), `producer` (the raw record and its
//! bounded wait), `quarantine` (refused requests, recorded redacted), `limits` (budgets, the adaptive limit,
//! token buckets), `net` (client address, TLS), `telemetry` (every metric).
//!
//! [`run`] serves on the listeners it is given (webhooks, and the admin endpoints apart from them) until a
//! cancellation token fires, so tests can run several ingresses in one process on port 0. Configs reloaded on
//! SIGHUP replace the sources (secrets included) without dropping a connection.

mod limits;
mod net;
mod producer;
mod quarantine;
mod server;
mod telemetry;

use std::sync::Arc;
use std::time::Duration;

use hookline_config::topics::ingress_topics;
use hookline_runtime::admin::{self, Readiness};
use hookline_runtime::backoff::{self, Backoff};
use hookline_runtime::kafka::ensure_topics;
use hookline_runtime::reload::Reloads;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use hookline_config::ingress::{Config, Settings};
use server::App;

/// The ingress could not run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Kafka producer could not be created (a bad `kafka.client` property, usually).
    #[error("cannot create the Kafka producer: {0}")]
    Producer(#[source] rdkafka::error::KafkaError),
    /// `[server.tls]`'s certificate or key cannot be used.
    #[error("cannot start TLS: {0}")]
    Tls(String),
}

/// Readiness checks of the ingress.
const CHECK_KAFKA: &str = "kafka";
const CHECK_TOPICS: &str = "topics";
/// Fails as soon as shutdown begins, so that a load balancer polling `/readyz` on the admin address stops
/// sending; the webhook port keeps accepting for `server.shutdown_grace_ms`, then stops and drains.
const CHECK_ACCEPTING: &str = "accepting";

/// Serves webhooks on `webhooks` and `/metrics`, `/livez`, `/readyz` on `admin` until `shutdown` is
/// cancelled: then `/readyz` fails at once, the webhook port keeps accepting for `server.shutdown_grace_ms`
/// (the time a load balancer needs to notice), stops, drains in-flight requests and flushes the producer;
/// the admin endpoints answer until the end. The raw topic is created in the background if missing; until
/// it exists, webhooks get 503. A TLS certificate or key that cannot be used is an error at once.
///
/// Each config from `reloads` replaces the sources for the requests that arrive from then on; one that failed
/// to load leaves the live config as it is. `hookline_ingress_config_generation` says which is live.
pub async fn run(
    settings: Settings,
    webhooks: TcpListener,
    admin: TcpListener,
    shutdown: CancellationToken,
    reloads: Reloads<Settings>,
) -> Result<(), Error> {
    let readiness = Arc::new(Readiness::new(&[CHECK_KAFKA, CHECK_TOPICS, CHECK_ACCEPTING]));
    let tls = match &settings.tls {
        Some(t) => Some(net::tls_acceptor(&t.cert_file, &t.key_file).map_err(Error::Tls)?),
        None => None,
    };
    let grace = settings.shutdown_grace;
    let app = Arc::new(App::new(settings).map_err(Error::Producer)?);
    let admin_stop = CancellationToken::new();
    let admin_task = tokio::spawn(admin::serve(admin, app.registry(), readiness.clone(), admin_stop.clone()));
    let background = shutdown.child_token();
    let topics = tokio::spawn(ensure_topics_loop(app.clone(), readiness.clone(), background.clone()));
    let probe = tokio::spawn(probe_kafka(app.clone(), readiness.clone(), background.clone()));
    let reloading = tokio::spawn(apply_reloads(app.clone(), reloads, background.clone()));
    readiness.pass(CHECK_ACCEPTING);
    let stop_accepting = CancellationToken::new();
    let draining = tokio::spawn({
        let (readiness, shutdown, stop_accepting) = (readiness.clone(), shutdown.clone(), stop_accepting.clone());
        async move {
            shutdown.cancelled().await;
            readiness.fail(CHECK_ACCEPTING, "shutting down: taking the last requests, then draining");
            tokio::time::sleep(grace).await;
            stop_accepting.cancel();
        }
    });

    server::serve(app.clone(), webhooks, tls, stop_accepting).await;
    draining.abort();
    readiness.fail(CHECK_ACCEPTING, "shutting down: no new connections, draining in-flight requests");

    background.cancel();
    let _ = tokio::join!(topics, probe, reloading);
    let flush_app = app.clone();
    let flush_timeout = app.settings().ack_timeout();
    let flushed = tokio::task::spawn_blocking(move || flush_app.producer().flush(flush_timeout)).await;
    match flushed {
        Ok(Ok(())) => tracing::info!("producer flushed; ingress stopped"),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, in_flight = app.producer().in_flight(), "producer flush incomplete")
        }
        Err(e) => tracing::warn!(error = %e, "producer flush task failed"),
    }
    admin_stop.cancel();
    let _ = admin_task.await;
    Ok(())
}

async fn apply_reloads(app: Arc<App>, mut reloads: Reloads<Settings>, stop: CancellationToken) {
    loop {
        let loaded = tokio::select! {
            loaded = reloads.next() => loaded,
            () = stop.cancelled() => return,
        };
        match loaded {
            Some(Ok(settings)) => app.reload(settings),
            Some(Err(e)) => {
                app.metrics().config_refused();
                tracing::error!(generation = app.generation(), "config reload refused; the live config stays: {e}");
            }
            None => return,
        }
    }
}

async fn ensure_topics_loop(app: Arc<App>, readiness: Arc<Readiness>, stop: CancellationToken) {
    let s = app.settings();
    let specs = ingress_topics(s);
    let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(10));
    loop {
        let attempt = tokio::select! {
            r = ensure_topics(&s.kafka, &specs) => r,
            () = stop.cancelled() => return,
        };
        let e = match attempt {
            Ok(topics) => {
                for t in &topics {
                    tracing::info!(topic = %t.name, partitions = t.partitions, created = t.created, "topic ready");
                }
                app.topics_ensured();
                readiness.pass(CHECK_TOPICS);
                return;
            }
            Err(e) => e,
        };
        let wait = backoff.next_wait();
        tracing::warn!(error = %e, retry_in = ?wait, "cannot ensure the topics");
        readiness.fail(CHECK_TOPICS, format!("cannot ensure the topics: {e}"));
        if !backoff::sleep(wait, &stop).await {
            return;
        }
    }
}

async fn probe_kafka(app: Arc<App>, readiness: Arc<Readiness>, stop: CancellationToken) {
    let mut was_up = None;
    let mut up_since: Option<tokio::time::Instant> = None;
    loop {
        let probe_app = app.clone();
        let probe = tokio::task::spawn_blocking(move || probe_app.producer().probe(Duration::from_secs(2)));
        let result = tokio::select! {
            r = probe => r,
            () = stop.cancelled() => return,
        };
        let up = matches!(result, Ok(Ok(())));
        app.metrics().producer_queue(app.producer().in_flight());
        up_since = if up { up_since.or_else(|| Some(tokio::time::Instant::now())) } else { None };
        if let Some(reason) = app.producer().needs_replacing(up_since.map(|t| t.elapsed())) {
            let replace_app = app.clone();
            match tokio::task::spawn_blocking(move || replace_app.producer().replace(reason)).await {
                Ok(Ok(())) => app.metrics().producer_replaced(reason),
                Ok(Err(e)) => tracing::error!(error = %e, "cannot create a new Kafka producer"),
                Err(e) => tracing::error!(error = %e, "producer replacement task failed"),
            }
        }
        match result {
            Ok(Ok(())) => readiness.pass(CHECK_KAFKA),
            Ok(Err(e)) => readiness.fail(CHECK_KAFKA, format!("cluster unreachable: {e}")),
            Err(e) => readiness.fail(CHECK_KAFKA, format!("probe failed: {e}")),
        }
        if was_up != Some(up) {
            if up {
                tracing::info!("Kafka cluster reachable");
            } else {
                tracing::warn!("Kafka cluster unreachable; webhooks will be answered 503 until it is back");
            }
            was_up = Some(up);
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(if up { 2 } else { 1 })) => {}
            () = stop.cancelled() => return,
        }
    }
}

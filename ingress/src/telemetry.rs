//! Every event the ingress reports: the metric bump and, where useful, the log line, in one place.
//!
//! Metric names follow `hookline_ingress_<what>_<unit>`; labels come from fixed sets: `source` is a configured
//! source name (or `_unknown` for requests to an unconfigured one), `outcome`, `reason` and `kind` are the
//! names below, `secret` is a configured secret id. Per-request events are logged at debug level only: a flood
//! of bad requests must not flood the logs.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use hookline_providers::verify::VerifyError;
use hookline_schemas::raw::KeyOrigin;
use hookline_schemas::UNKNOWN_SOURCE;
use http::StatusCode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::producer::{ReplaceReason, StoreError};
use crate::quarantine::Recorded;

/// How a webhook request ended. The answer's status follows from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 202: stored in Kafka.
    Accepted,
    /// 200: an endpoint-ownership check, answered and not stored.
    Handshake,
    /// 401: verification failed.
    Unauthorized,
    /// 403: the client address is not allowed.
    Forbidden,
    /// 404: no such source.
    NotFound,
    /// 405: not a POST (or a GET the source has no challenge for).
    MethodNotAllowed,
    /// 413: body over the limit.
    PayloadTooLarge,
    /// 415: content type not accepted by the source.
    UnsupportedMediaType,
    /// 408: body not received in time.
    RequestTimeout,
    /// 400: the body could not be read (aborted, malformed chunking).
    BadRequest,
    /// 429: over the source's rate limit.
    RateLimited,
    /// 503: shed at once: in-flight budget spent or producer queue full.
    Overloaded,
    /// 503: Kafka did not acknowledge within the bounded wait, or refused the record.
    Unavailable,
}

impl Outcome {
    /// Every outcome, in label order.
    pub const ALL: [Outcome; 13] = [
        Outcome::Accepted,
        Outcome::Handshake,
        Outcome::Unauthorized,
        Outcome::Forbidden,
        Outcome::NotFound,
        Outcome::MethodNotAllowed,
        Outcome::PayloadTooLarge,
        Outcome::UnsupportedMediaType,
        Outcome::RequestTimeout,
        Outcome::BadRequest,
        Outcome::RateLimited,
        Outcome::Overloaded,
        Outcome::Unavailable,
    ];

    /// The `outcome` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Accepted => "accepted",
            Outcome::Handshake => "handshake",
            Outcome::Unauthorized => "unauthorized",
            Outcome::Forbidden => "forbidden",
            Outcome::NotFound => "not_found",
            Outcome::MethodNotAllowed => "method_not_allowed",
            Outcome::PayloadTooLarge => "payload_too_large",
            Outcome::UnsupportedMediaType => "unsupported_media_type",
            Outcome::RequestTimeout => "request_timeout",
            Outcome::BadRequest => "bad_request",
            Outcome::RateLimited => "rate_limited",
            Outcome::Overloaded => "overloaded",
            Outcome::Unavailable => "unavailable",
        }
    }

    /// The HTTP status of the answer.
    pub fn status(self) -> StatusCode {
        match self {
            Outcome::Accepted => StatusCode::ACCEPTED,
            Outcome::Handshake => StatusCode::OK,
            Outcome::Unauthorized => StatusCode::UNAUTHORIZED,
            Outcome::Forbidden => StatusCode::FORBIDDEN,
            Outcome::NotFound => StatusCode::NOT_FOUND,
            Outcome::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Outcome::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Outcome::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Outcome::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Outcome::BadRequest => StatusCode::BAD_REQUEST,
            Outcome::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Outcome::Overloaded | Outcome::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn index(self) -> usize {
        Self::ALL.iter().position(|o| *o == self).unwrap_or(0)
    }
}

/// Why a record was not stored (`kind` label of the store-failure counter).
pub const STORE_FAILURE_KINDS: [&str; 4] = ["queue_full", "timeout", "kafka", "not_ready"];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceOutcome {
    source: String,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabel {
    source: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceReason {
    source: String,
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceKind {
    source: String,
    kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceOrigin {
    source: String,
    origin: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceSecret {
    source: String,
    secret: String,
}

/// The metric handles of one source, made when the source is configured (at startup or on a reload).
#[derive(Debug, Clone)]
pub struct SourceMetrics {
    source: String,
    outcomes: Vec<Counter>,
    verify_failures: Vec<Counter>,
    store_failures: Vec<Counter>,
    dedup_origins: Vec<Counter>,
    secret_matches: Vec<Counter>,
    ack_latency: Histogram,
    time_to_durable: Histogram,
    body_bytes: Counter,
}

/// The per-source metric families, from which each source's handles are made.
#[derive(Debug, Clone)]
struct SourceFamilies {
    requests: Family<SourceOutcome, Counter>,
    verify_failures: Family<SourceReason, Counter>,
    store_failures: Family<SourceKind, Counter>,
    dedup_origins: Family<SourceOrigin, Counter>,
    secret_matches: Family<SourceSecret, Counter>,
    ack_latency: Family<SourceLabel, Histogram>,
    time_to_durable: Family<SourceLabel, Histogram>,
    body_bytes: Family<SourceLabel, Counter>,
    ack_budget: Family<SourceLabel, Gauge<f64, AtomicU64>>,
}

/// Process-wide handles.
#[derive(Debug, Clone)]
pub struct Metrics {
    in_flight: Gauge,
    admission_limit: Gauge,
    connections: Gauge,
    producer_queue: Gauge,
    producer_replacements: Family<ReasonLabel, Counter>,
    quarantined: Family<ReasonLabel, Counter>,
    quarantine_dropped: Counter,
    config_generation: Gauge,
    config_last_reload_successful: Gauge,
    families: SourceFamilies,
    unknown: SourceMetrics,
}

fn family<L, M>(registry: &mut Registry, name: &str, help: &str) -> Family<L, M>
where
    L: Clone + std::hash::Hash + Eq + EncodeLabelSet + std::fmt::Debug + Send + Sync + 'static,
    M: prometheus_client::metrics::TypedMetric
        + prometheus_client::encoding::EncodeMetric
        + Default
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let f = Family::<L, M>::default();
    registry.register(name, help, f.clone());
    f
}

fn latency_family(registry: &mut Registry, name: &str, help: &str) -> Family<SourceLabel, Histogram> {
    let f = Family::<SourceLabel, Histogram>::new_with_constructor(|| {
        // 1 ms to 16 s.
        Histogram::new(exponential_buckets(0.001, 2.0, 15))
    });
    registry.register(name, help, f.clone());
    f
}

/// What the metrics of one configured source are labelled and set with.
#[derive(Debug, Clone)]
pub struct SourceLabels {
    /// The source name.
    pub name: String,
    /// The ids of its secrets (`hookline_ingress_secret_matches_total{secret}`).
    pub secret_ids: Vec<String>,
    /// Its p99 ack latency budget (`hookline_ingress_ack_budget_seconds`).
    pub ack_budget: Duration,
}

impl Metrics {
    /// Registers every metric; [`Metrics::for_source`] makes each configured source's handles.
    pub fn register(registry: &mut Registry) -> Metrics {
        let requests: Family<SourceOutcome, Counter> =
            family(registry, "hookline_ingress_requests", "Webhook requests by source and outcome");
        let verify_failures: Family<SourceReason, Counter> =
            family(registry, "hookline_ingress_verification_failures", "Requests that failed verification, by reason");
        let store_failures: Family<SourceKind, Counter> = family(
            registry,
            "hookline_ingress_store_failures",
            "Verified webhooks not stored (answered 503), by kind: queue_full, timeout, kafka, not_ready",
        );
        let dedup_origins: Family<SourceOrigin, Counter> = family(
            registry,
            "hookline_ingress_dedup_key_origin",
            "Accepted webhooks by where their dedup key came from (body_sha256: no provider or configured key found)",
        );
        let secret_matches: Family<SourceSecret, Counter> = family(
            registry,
            "hookline_ingress_secret_matches",
            "Verified requests by the id of the secret that matched (an old id at zero can be removed)",
        );
        let ack_latency = latency_family(
            registry,
            "hookline_ingress_ack_latency_seconds",
            "Time from handing a record to the producer to Kafka's acknowledgement",
        );
        let time_to_durable = latency_family(
            registry,
            "hookline_ingress_time_to_durable_seconds",
            "Time from receiving a webhook's headers to its record being acknowledged by Kafka",
        );
        let body_bytes: Family<SourceLabel, Counter> =
            family(registry, "hookline_ingress_received_bytes", "Body bytes of accepted webhooks");
        let ack_budget: Family<SourceLabel, Gauge<f64, AtomicU64>> = family(
            registry,
            "hookline_ingress_ack_budget_seconds",
            "The configured p99 ack latency budget of each source (sources.NAME.ack_budget_ms), for alerting",
        );
        let producer_replacements: Family<ReasonLabel, Counter> = family(
            registry,
            "hookline_ingress_producer_replacements",
            "Kafka producers replaced because they could no longer deliver (fatal error, or stuck while the cluster was reachable)",
        );
        for reason in [ReplaceReason::Fatal, ReplaceReason::Stuck] {
            producer_replacements.get_or_create(&ReasonLabel { reason: reason.as_str() }).inc_by(0);
        }
        let quarantined: Family<ReasonLabel, Counter> = family(
            registry,
            "hookline_ingress_quarantined",
            "Rejected requests recorded on the quarantine topic, by reason",
        );
        let quarantine_dropped = Counter::default();
        registry.register(
            "hookline_ingress_quarantine_dropped",
            "Rejected requests not recorded: over the quarantine rate limit or its queue full",
            quarantine_dropped.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "hookline_ingress_in_flight_requests",
            "Webhook requests being stored (verified, waiting for Kafka), against server.max_in_flight",
            in_flight.clone(),
        );
        let admission_limit = Gauge::default();
        registry.register(
            "hookline_ingress_admission_limit_requests",
            "Requests currently admitted at once to wait for Kafka (shrinks when acks are slower than the target)",
            admission_limit.clone(),
        );
        let connections = Gauge::default();
        registry.register("hookline_ingress_open_connections", "Client connections open", connections.clone());
        let producer_queue = Gauge::default();
        registry.register(
            "hookline_ingress_producer_queue_records",
            "Records handed to the Kafka producer and not yet acknowledged",
            producer_queue.clone(),
        );

        let config_generation = Gauge::default();
        registry.register(
            "hookline_ingress_config_generation",
            "The config generation live: 1 at startup, one more for each reload applied (SIGHUP)",
            config_generation.clone(),
        );
        config_generation.set(1);
        let config_last_reload_successful = Gauge::default();
        registry.register(
            "hookline_ingress_config_last_reload_successful",
            "1 when the last config reload (SIGHUP) was applied, or none was tried; 0 when it was refused (the \
             new config is invalid and the previous one stays live)",
            config_last_reload_successful.clone(),
        );
        config_last_reload_successful.set(1);
        let families = SourceFamilies {
            requests,
            verify_failures,
            store_failures,
            dedup_origins,
            secret_matches,
            ack_latency,
            time_to_durable,
            body_bytes,
            ack_budget,
        };
        Metrics {
            in_flight,
            admission_limit,
            connections,
            producer_queue,
            producer_replacements,
            quarantined,
            quarantine_dropped,
            config_generation,
            config_last_reload_successful,
            unknown: families.handles(UNKNOWN_SOURCE, &[]),
            families,
        }
    }

    /// The handles of a configured source; its ack budget gauge is set.
    pub fn for_source(&self, source: &SourceLabels) -> SourceMetrics {
        self.families
            .ack_budget
            .get_or_create(&SourceLabel { source: source.name.clone() })
            .set(source.ack_budget.as_secs_f64());
        self.families.handles(&source.name, &source.secret_ids)
    }

    /// The handles of requests to unconfigured sources.
    pub fn unknown(&self) -> &SourceMetrics {
        &self.unknown
    }

    /// A config reload was applied: `generation` is live.
    pub fn config_applied(&self, generation: u64) {
        self.config_generation.set(i64::try_from(generation).unwrap_or(i64::MAX));
        self.config_last_reload_successful.set(1);
    }

    /// A config reload was refused: the live config stays.
    pub fn config_refused(&self) {
        self.config_last_reload_successful.set(0);
    }

    /// The producer was replaced.
    pub fn producer_replaced(&self, reason: ReplaceReason) {
        self.producer_replacements.get_or_create(&ReasonLabel { reason: reason.as_str() }).inc();
    }

    /// A rejection was (or was not) recorded on the quarantine topic.
    pub fn quarantine(&self, reason: &'static str, recorded: Recorded) {
        match recorded {
            Recorded::Sent => {
                self.quarantined.get_or_create(&ReasonLabel { reason }).inc();
            }
            Recorded::Dropped => {
                self.quarantine_dropped.inc();
            }
        }
    }

    /// The adaptive admission limit.
    pub fn admission_limit(&self, limit: usize) {
        self.admission_limit.set(i64::try_from(limit).unwrap_or(i64::MAX));
    }

    /// Records waiting in the producer.
    pub fn producer_queue(&self, records: i32) {
        self.producer_queue.set(i64::from(records));
    }

    /// Counts a request as in flight until the guard is dropped.
    pub fn in_flight(&self) -> Gauged {
        self.in_flight.inc();
        Gauged(self.in_flight.clone())
    }

    /// Counts a connection as open until the guard is dropped.
    pub fn connection(&self) -> Gauged {
        self.connections.inc();
        Gauged(self.connections.clone())
    }
}

impl SourceFamilies {
    fn handles(&self, source: &str, secret_ids: &[String]) -> SourceMetrics {
        let s = || source.to_owned();
        SourceMetrics {
            source: s(),
            outcomes: Outcome::ALL
                .iter()
                .map(|o| self.requests.get_or_create(&SourceOutcome { source: s(), outcome: o.as_str() }).clone())
                .collect(),
            verify_failures: VerifyError::REASONS
                .iter()
                .map(|r| self.verify_failures.get_or_create(&SourceReason { source: s(), reason: r }).clone())
                .collect(),
            store_failures: STORE_FAILURE_KINDS
                .iter()
                .map(|k| self.store_failures.get_or_create(&SourceKind { source: s(), kind: k }).clone())
                .collect(),
            dedup_origins: KeyOrigin::ALL
                .iter()
                .map(|o| self.dedup_origins.get_or_create(&SourceOrigin { source: s(), origin: o.as_str() }).clone())
                .collect(),
            secret_matches: secret_ids
                .iter()
                .map(|id| self.secret_matches.get_or_create(&SourceSecret { source: s(), secret: id.clone() }).clone())
                .collect(),
            ack_latency: self.ack_latency.get_or_create(&SourceLabel { source: s() }).clone(),
            time_to_durable: self.time_to_durable.get_or_create(&SourceLabel { source: s() }).clone(),
            body_bytes: self.body_bytes.get_or_create(&SourceLabel { source: s() }).clone(),
        }
    }
}

/// Decrements its gauge when dropped.
#[derive(Debug)]
pub struct Gauged(Gauge);

impl Drop for Gauged {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl SourceMetrics {
    /// A request ended with `outcome`.
    pub fn outcome(&self, outcome: Outcome) {
        self.outcomes[outcome.index()].inc();
    }

    /// A request was refused before verification (405, 413, 415, 429, 403, 400, 408, 503 shed).
    pub fn refused(&self, outcome: Outcome) {
        tracing::debug!(source = %self.source, outcome = outcome.as_str(), "request refused");
        self.outcome(outcome);
    }

    /// Verification failed.
    pub fn verification_failed(&self, error: &VerifyError) {
        tracing::debug!(source = %self.source, reason = error.reason(), "verification failed");
        if let Some(c) =
            VerifyError::REASONS.iter().position(|r| *r == error.reason()).and_then(|i| self.verify_failures.get(i))
        {
            c.inc();
        }
        self.outcome(Outcome::Unauthorized);
    }

    /// A webhook was stored: Kafka acknowledged it `ack_latency` after it was produced and `time_to_durable`
    /// after its headers arrived.
    pub fn accepted(
        &self,
        body_len: usize,
        origin: KeyOrigin,
        secret: Option<usize>,
        ack_latency: Duration,
        time_to_durable: Duration,
    ) {
        self.outcome(Outcome::Accepted);
        self.ack_latency.observe(ack_latency.as_secs_f64());
        self.time_to_durable.observe(time_to_durable.as_secs_f64());
        self.body_bytes.inc_by(u64::try_from(body_len).unwrap_or(u64::MAX));
        if let Some(c) = KeyOrigin::ALL.iter().position(|o| *o == origin).and_then(|i| self.dedup_origins.get(i)) {
            c.inc();
        }
        if let Some(c) = secret.and_then(|i| self.secret_matches.get(i)) {
            c.inc();
        }
    }

    /// A verified handshake was answered.
    pub fn handshake(&self) {
        tracing::info!(source = %self.source, "endpoint ownership check answered");
        self.outcome(Outcome::Handshake);
    }

    /// The record could not be stored; the sender was told 503.
    pub fn store_failed(&self, error: Option<&StoreError>) -> Outcome {
        let (kind, outcome) = match error {
            None => ("not_ready", Outcome::Unavailable),
            Some(StoreError::QueueFull) => ("queue_full", Outcome::Overloaded),
            Some(StoreError::Timeout(_)) => ("timeout", Outcome::Unavailable),
            Some(StoreError::Kafka(_)) => ("kafka", Outcome::Unavailable),
        };
        tracing::debug!(source = %self.source, kind, "webhook not stored; answered 503");
        if let Some(c) = STORE_FAILURE_KINDS.iter().position(|k| *k == kind).and_then(|i| self.store_failures.get(i)) {
            c.inc();
        }
        self.outcome(outcome);
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(registry: &Registry) -> String {
        let mut t = String::new();
        prometheus_client::encoding::text::encode(&mut t, registry).unwrap();
        t
    }

    #[test]
    fn metrics_are_exported_with_bounded_labels() {
        let mut registry = Registry::default();
        let shop = SourceLabels {
            name: "shop".into(),
            secret_ids: vec!["0".into(), "2026-q4".into()],
            ack_budget: Duration::from_millis(250),
        };
        let m = Metrics::register(&mut registry);
        let shop = m.for_source(&shop);
        shop.accepted(10, KeyOrigin::BodySha256, Some(1), Duration::from_millis(3), Duration::from_millis(4));
        shop.verification_failed(&VerifyError::StaleTimestamp(300));
        shop.store_failed(Some(&StoreError::QueueFull));
        m.unknown().refused(Outcome::NotFound);
        let t = text(&registry);
        assert!(t.contains(r#"hookline_ingress_requests_total{source="shop",outcome="accepted"} 1"#), "{t}");
        assert!(t.contains(r#"hookline_ingress_requests_total{source="shop",outcome="overloaded"} 1"#));
        assert!(t.contains(r#"hookline_ingress_requests_total{source="_unknown",outcome="not_found"} 1"#));
        assert!(t.contains(r#"hookline_ingress_verification_failures_total{source="shop",reason="stale_timestamp"} 1"#));
        assert!(t.contains(r#"hookline_ingress_store_failures_total{source="shop",kind="queue_full"} 1"#));
        assert!(t.contains(r#"hookline_ingress_dedup_key_origin_total{source="shop",origin="body_sha256"} 1"#));
        assert!(t.contains(r#"hookline_ingress_secret_matches_total{source="shop",secret="2026-q4"} 1"#));
        assert!(t.contains("hookline_ingress_time_to_durable_seconds_bucket"));
        assert!(t.contains(r#"hookline_ingress_ack_budget_seconds{source="shop"} 0.25"#), "{t}");
        assert!(t.contains(r#"hookline_ingress_producer_replacements_total{reason="stuck"} 0"#));
        assert!(t.contains("hookline_ingress_config_generation 1"), "{t}");
        assert!(t.contains("hookline_ingress_config_last_reload_successful 1"), "{t}");
        m.config_refused();
        assert!(text(&registry).contains("hookline_ingress_config_last_reload_successful 0"));
        m.config_applied(2);
        let t = text(&registry);
        assert!(t.contains("hookline_ingress_config_generation 2"), "{t}");
        assert!(t.contains("hookline_ingress_config_last_reload_successful 1"), "{t}");
        {
            let _guard = m.in_flight();
            assert!(text(&registry).contains("hookline_ingress_in_flight_requests 1"));
        }
        assert!(text(&registry).contains("hookline_ingress_in_flight_requests 0"));
    }

    #[test]
    fn every_outcome_has_its_status() {
        let statuses: Vec<u16> = Outcome::ALL.iter().map(|o| o.status().as_u16()).collect();
        assert_eq!(statuses, vec![202, 200, 401, 403, 404, 405, 413, 415, 408, 400, 429, 503, 503]);
    }
}

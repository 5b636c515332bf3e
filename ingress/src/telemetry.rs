//! Every event the ingress reports: the metric bump and, where useful, the log line, in one place.
//!
//! Metric names follow `hookline_ingress_<what>_<unit>`; labels come from fixed sets: `source` is a configured
//! source name (or `_unknown` for requests to an unconfigured one), `outcome` and `reason` are the names below.
//! Per-request events are logged at debug level only: a flood of bad requests must not flood the logs.

use std::collections::HashMap;
use std::time::Duration;

use hookline_schemas::raw::KeyOrigin;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::producer::ReplaceReason;
use crate::verify::VerifyError;

/// The `source` label of requests to a source that is not configured.
pub const UNKNOWN_SOURCE: &str = "_unknown";

/// How a webhook request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 202: stored in Kafka.
    Accepted,
    /// 401: verification failed.
    Unauthorized,
    /// 404: no such source.
    NotFound,
    /// 405: not a POST.
    MethodNotAllowed,
    /// 413: body over the limit.
    PayloadTooLarge,
    /// 408: body not received in time.
    RequestTimeout,
    /// 400: the body could not be read (aborted, malformed chunking).
    BadRequest,
    /// 503: the producer queue is full; shed without waiting.
    Overloaded,
    /// 503: Kafka did not acknowledge within the bounded wait, or refused the record.
    Unavailable,
}

impl Outcome {
    /// Every outcome, in label order.
    pub const ALL: [Outcome; 9] = [
        Outcome::Accepted,
        Outcome::Unauthorized,
        Outcome::NotFound,
        Outcome::MethodNotAllowed,
        Outcome::PayloadTooLarge,
        Outcome::RequestTimeout,
        Outcome::BadRequest,
        Outcome::Overloaded,
        Outcome::Unavailable,
    ];

    /// The `outcome` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Accepted => "accepted",
            Outcome::Unauthorized => "unauthorized",
            Outcome::NotFound => "not_found",
            Outcome::MethodNotAllowed => "method_not_allowed",
            Outcome::PayloadTooLarge => "payload_too_large",
            Outcome::RequestTimeout => "request_timeout",
            Outcome::BadRequest => "bad_request",
            Outcome::Overloaded => "overloaded",
            Outcome::Unavailable => "unavailable",
        }
    }

    fn index(self) -> usize {
        Self::ALL.iter().position(|o| *o == self).unwrap_or(0)
    }
}

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

/// The metric handles of one source, created at startup.
#[derive(Debug, Clone)]
pub struct SourceMetrics {
    source: String,
    outcomes: Vec<Counter>,
    verify_failures: Vec<Counter>,
    dedup_origins: Vec<Counter>,
    secret_matches: Vec<Counter>,
    ack_latency: Histogram,
    body_bytes: Counter,
}

/// Process-wide handles.
#[derive(Debug, Clone)]
pub struct Metrics {
    in_flight: Gauge,
    producer_replacements: Family<ReasonLabel, Counter>,
    unknown: SourceMetrics,
    sources: HashMap<String, SourceMetrics>,
}

impl Metrics {
    /// Registers every metric, with a handle set for each source (`sources` gives each source's secret ids).
    pub fn register(registry: &mut Registry, sources: &[(String, Vec<String>)]) -> Metrics {
        let requests = Family::<SourceOutcome, Counter>::default();
        registry.register(
            "hookline_ingress_requests",
            "Webhook requests by source and outcome",
            requests.clone(),
        );
        let verify_failures = Family::<SourceReason, Counter>::default();
        registry.register(
            "hookline_ingress_verification_failures",
            "Requests that failed signature verification, by reason",
            verify_failures.clone(),
        );
        let dedup_origins = Family::<SourceOrigin, Counter>::default();
        registry.register(
            "hookline_ingress_dedup_key_origin",
            "Accepted webhooks by where their dedup key came from (body_sha256 means no configured key was found)",
            dedup_origins.clone(),
        );
        let secret_matches = Family::<SourceSecret, Counter>::default();
        registry.register(
            "hookline_ingress_secret_matches",
            "Verified requests by the id of the secret that matched (watch the old id drop to zero before removing it)",
            secret_matches.clone(),
        );
        let ack_latency = Family::<SourceLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 14))
        });
        registry.register(
            "hookline_ingress_ack_latency_seconds",
            "Time from handing a record to the producer to Kafka's acknowledgement",
            ack_latency.clone(),
        );
        let body_bytes = Family::<SourceLabel, Counter>::default();
        registry.register(
            "hookline_ingress_received_bytes",
            "Body bytes of accepted webhooks",
            body_bytes.clone(),
        );
        let producer_replacements = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "hookline_ingress_producer_replacements",
            "Kafka producers replaced because they could no longer deliver (fatal error, or stuck while the cluster was reachable)",
            producer_replacements.clone(),
        );
        for reason in [ReplaceReason::Fatal, ReplaceReason::Stuck] {
            drop(producer_replacements.get_or_create(&ReasonLabel {
                reason: reason.as_str(),
            }));
        }
        let in_flight = Gauge::default();
        registry.register(
            "hookline_ingress_in_flight_requests",
            "Webhook requests being handled",
            in_flight.clone(),
        );

        let make = |source: &str, secret_ids: &[String]| SourceMetrics {
            source: source.to_owned(),
            outcomes: Outcome::ALL
                .iter()
                .map(|o| {
                    requests
                        .get_or_create(&SourceOutcome {
                            source: source.to_owned(),
                            outcome: o.as_str(),
                        })
                        .clone()
                })
                .collect(),
            verify_failures: VerifyError::REASONS
                .iter()
                .map(|r| {
                    verify_failures
                        .get_or_create(&SourceReason {
                            source: source.to_owned(),
                            reason: r,
                        })
                        .clone()
                })
                .collect(),
            dedup_origins: KeyOrigin::ALL
                .iter()
                .map(|o| {
                    dedup_origins
                        .get_or_create(&SourceOrigin {
                            source: source.to_owned(),
                            origin: o.as_str(),
                        })
                        .clone()
                })
                .collect(),
            secret_matches: secret_ids
                .iter()
                .map(|id| {
                    secret_matches
                        .get_or_create(&SourceSecret {
                            source: source.to_owned(),
                            secret: id.clone(),
                        })
                        .clone()
                })
                .collect(),
            ack_latency: ack_latency
                .get_or_create(&SourceLabel {
                    source: source.to_owned(),
                })
                .clone(),
            body_bytes: body_bytes
                .get_or_create(&SourceLabel {
                    source: source.to_owned(),
                })
                .clone(),
        };
        Metrics {
            in_flight,
            producer_replacements,
            unknown: make(UNKNOWN_SOURCE, &[]),
            sources: sources
                .iter()
                .map(|(name, ids)| (name.clone(), make(name, ids)))
                .collect(),
        }
    }

    /// The handles of a configured source.
    pub fn source(&self, name: &str) -> &SourceMetrics {
        self.sources.get(name).unwrap_or(&self.unknown)
    }

    /// A request to an unconfigured source. The name is not logged above debug: it is attacker-chosen.
    pub fn unknown_source(&self, name: &str) {
        tracing::debug!(source = name, "request for an unknown source");
        self.unknown.outcomes[Outcome::NotFound.index()].inc();
    }

    /// The producer was replaced.
    pub fn producer_replaced(&self, reason: ReplaceReason) {
        self.producer_replacements
            .get_or_create(&ReasonLabel {
                reason: reason.as_str(),
            })
            .inc();
    }

    /// Counts a request as in flight until the guard is dropped.
    pub fn in_flight(&self) -> InFlight {
        self.in_flight.inc();
        InFlight(self.in_flight.clone())
    }
}

/// Decrements the in-flight gauge when dropped.
#[derive(Debug)]
pub struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl SourceMetrics {
    /// A request ended with `outcome`.
    pub fn outcome(&self, outcome: Outcome) {
        self.outcomes[outcome.index()].inc();
    }

    /// Verification failed.
    pub fn verification_failed(&self, error: &VerifyError) {
        tracing::debug!(source = %self.source, reason = error.reason(), "verification failed");
        if let Some(c) = VerifyError::REASONS
            .iter()
            .position(|r| *r == error.reason())
            .and_then(|i| self.verify_failures.get(i))
        {
            c.inc();
        }
        self.outcome(Outcome::Unauthorized);
    }

    /// A webhook was stored: Kafka acknowledged it after `ack_latency`.
    pub fn accepted(
        &self,
        body_len: usize,
        origin: KeyOrigin,
        secret: Option<usize>,
        ack_latency: Duration,
    ) {
        self.outcome(Outcome::Accepted);
        self.ack_latency.observe(ack_latency.as_secs_f64());
        self.body_bytes
            .inc_by(u64::try_from(body_len).unwrap_or(u64::MAX));
        if let Some(c) = KeyOrigin::ALL
            .iter()
            .position(|o| *o == origin)
            .and_then(|i| self.dedup_origins.get(i))
        {
            c.inc();
        }
        if let Some(c) = secret.and_then(|i| self.secret_matches.get(i)) {
            c.inc();
        }
    }

    /// The record could not be stored; the sender was told 503.
    pub fn store_failed(&self, outcome: Outcome, error: &dyn std::fmt::Display) {
        tracing::debug!(source = %self.source, outcome = outcome.as_str(), error = %error, "webhook not stored; answered 503");
        self.outcome(outcome);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_exported_with_bounded_labels() {
        let mut registry = Registry::default();
        let m = Metrics::register(
            &mut registry,
            &[("shop".into(), vec!["0".into(), "2026-q4".into()])],
        );
        m.source("shop")
            .accepted(10, KeyOrigin::BodySha256, Some(1), Duration::from_millis(3));
        m.source("shop").verification_failed(&VerifyError::Mismatch);
        m.unknown_source("../../etc/passwd");
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains(r#"hookline_ingress_requests_total{source="shop",outcome="accepted"} 1"#),
            "{text}"
        );
        assert!(text.contains(
            r#"hookline_ingress_requests_total{source="_unknown",outcome="not_found"} 1"#
        ));
        assert!(text.contains(
            r#"hookline_ingress_verification_failures_total{source="shop",reason="mismatch"} 1"#
        ));
        assert!(text.contains(
            r#"hookline_ingress_dedup_key_origin_total{source="shop",origin="body_sha256"} 1"#
        ));
        assert!(text.contains(
            r#"hookline_ingress_secret_matches_total{source="shop",secret="2026-q4"} 1"#
        ));
        assert!(text.contains("hookline_ingress_ack_latency_seconds_bucket"));
        assert!(
            !text.contains("passwd"),
            "attacker-chosen names never become labels"
        );
        {
            let _guard = m.in_flight();
            let mut t = String::new();
            prometheus_client::encoding::text::encode(&mut t, &registry).unwrap();
            assert!(t.contains("hookline_ingress_in_flight_requests 1"));
        }
        let mut t = String::new();
        prometheus_client::encoding::text::encode(&mut t, &registry).unwrap();
        assert!(t.contains("hookline_ingress_in_flight_requests 0"));
    }
}

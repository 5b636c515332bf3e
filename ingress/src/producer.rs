//! Storing raw records in Kafka.
//!
//! Invariant: [`RawProducer::store`] returns `Ok` only for a record the cluster acknowledged with `acks=all`
//! through an idempotent producer; that is the only path to a 202. It never waits without bound: a full
//! producer queue fails at once ([`StoreError::QueueFull`]) and an acknowledgement that does not come within
//! `producer.ack_timeout_ms` fails with [`StoreError::Timeout`]. After a failure the record may still be
//! stored by librdkafka's retries (for up to `producer.delivery_timeout_ms`); the sender retries on 503 and
//! deduplication absorbs the second copy.
//!
//! Only a verified body can be stored: [`RawProducer::store`] takes a [`Verified`], which only
//! [`hookline_providers::verify::Verifier::verify`] makes.

use std::sync::atomic::{AtomicI64, Ordering as AtomicOrdering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use hookline_config::ingress::Settings;
use hookline_providers::verify::Verified;
use hookline_runtime::now_ms;
use hookline_schemas::raw::RawMeta;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer, PurgeConfig};
use rdkafka::types::RDKafkaErrorCode;

/// Why a record was not stored.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// librdkafka's queue is full: the cluster is not keeping up. Shed load now.
    #[error("producer queue is full")]
    QueueFull,
    /// No acknowledgement within the bounded wait.
    #[error("no acknowledgement from Kafka within {0:?}")]
    Timeout(Duration),
    /// Kafka refused the record or the producer failed.
    #[error("kafka: {0}")]
    Kafka(#[source] KafkaError),
}

/// Where a stored record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// Time from handing it to the producer to the acknowledgement.
    pub ack_latency: Duration,
}

/// The raw-topic producer.
///
/// It replaces its librdkafka producer when that one can no longer deliver while the cluster is reachable
/// ([`RawProducer::needs_replacing`]): after a fatal error, or when deliveries have failed for a while with no
/// success. A fatal error (the broker fenced the producer's epoch, or a sequence gap librdkafka cannot
/// repair) leaves a producer that can never deliver again, on any broker; so does a broker that lost the
/// producer's idempotence state (first seen on Tansu 0.6 after a restart). Replacing it is the only way out
/// short of restarting the ingress.
pub struct RawProducer {
    config: ClientConfig,
    /// A separate client for health probes: a producer in trouble may have its own connections reset.
    prober: BaseConsumer,
    current: RwLock<Arc<FutureProducer>>,
    topic: String,
    ack_timeout: Duration,
    replace_after: Duration,
    /// When deliveries started failing with no success since (ms since the epoch; 0 = healthy).
    failing_since_ms: AtomicI64,
}

impl std::fmt::Debug for RawProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawProducer").field("topic", &self.topic).finish_non_exhaustive()
    }
}

/// Why the producer was replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplaceReason {
    /// librdkafka reported a fatal error.
    Fatal,
    /// Deliveries kept failing while the cluster answered metadata requests.
    Stuck,
}

impl ReplaceReason {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            ReplaceReason::Fatal => "fatal",
            ReplaceReason::Stuck => "stuck",
        }
    }
}

impl RawProducer {
    /// Creates the producer (no network I/O happens until the first request).
    pub fn new(settings: &Settings) -> Result<Self, KafkaError> {
        let p = &settings.producer;
        let mut config = settings.kafka.client_config();
        config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", p.linger_ms.to_string())
            .set("compression.type", &p.compression)
            .set("queue.buffering.max.messages", p.max_queued_messages.to_string())
            .set("queue.buffering.max.kbytes", p.max_queued_kbytes.to_string())
            // Java-compatible key hashing: other Kafka clients put the same key in the same partition.
            .set("partitioner", "murmur2_random")
            // Leave room above the largest body for headers and framing.
            .set("message.max.bytes", (64 * 1024 * 1024 + 1024 * 1024).to_string())
            .set("message.timeout.ms", p.delivery_timeout_ms.to_string());
        let producer = Arc::new(config.create::<FutureProducer>()?);
        let prober = settings.kafka.client_config().create::<BaseConsumer>()?;
        Ok(RawProducer {
            config,
            prober,
            current: RwLock::new(producer),
            topic: settings.raw_topic.clone(),
            ack_timeout: settings.ack_timeout(),
            replace_after: settings.ack_timeout() * 2,
            failing_since_ms: AtomicI64::new(0),
        })
    }

    fn producer(&self) -> Arc<FutureProducer> {
        match self.current.read() {
            Ok(p) => p.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn delivery_failed(&self) {
        let _ = self.failing_since_ms.compare_exchange(0, now_ms(), AtomicOrdering::Relaxed, AtomicOrdering::Relaxed);
    }

    /// Stores one verified body as a raw record with ordering key `key`; see the module invariant.
    pub async fn store(&self, key: &str, verified: &Verified, meta: &RawMeta) -> Result<Stored, StoreError> {
        let body: &[u8] = verified.body();
        let (name, value) = meta.to_header();
        let owned = OwnedHeaders::new_with_capacity(1).insert(Header { key: name, value: Some(value.as_slice()) });
        let record = FutureRecord::to(&self.topic).key(key).payload(body).headers(owned);
        let producer = self.producer();
        let started = Instant::now();
        let delivery = match producer.send_result(record) {
            Ok(delivery) => delivery,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                self.delivery_failed();
                return Err(StoreError::QueueFull);
            }
            Err((e, _)) => {
                self.delivery_failed();
                return Err(StoreError::Kafka(e));
            }
        };
        let result = match tokio::time::timeout(self.ack_timeout, delivery).await {
            Err(_) => Err(StoreError::Timeout(self.ack_timeout)),
            Ok(Err(_canceled)) => Err(StoreError::Kafka(KafkaError::Canceled)),
            Ok(Ok(Err((e, _)))) => Err(StoreError::Kafka(e)),
            Ok(Ok(Ok(d))) => Ok(Stored { partition: d.partition, offset: d.offset, ack_latency: started.elapsed() }),
        };
        match &result {
            Ok(_) => self.failing_since_ms.store(0, AtomicOrdering::Relaxed),
            Err(_) => self.delivery_failed(),
        }
        result
    }

    /// Checks that the cluster answers a metadata request for the raw topic (blocking; call off the runtime).
    pub fn probe(&self, timeout: Duration) -> Result<(), KafkaError> {
        let metadata = self.prober.fetch_metadata(Some(&self.topic), timeout)?;
        match metadata.topics().first().and_then(|t| t.error()) {
            Some(e) => Err(KafkaError::MetadataFetch(e.into())),
            None => Ok(()),
        }
    }

    /// Whether the producer should be replaced, given for how long the cluster has been answering metadata
    /// requests without interruption (`None`: it is not reachable now). A producer is stuck when its
    /// deliveries have failed, with no success, for twice the ack timeout while the cluster was reachable:
    /// a plain outage never triggers a replacement, and librdkafka gets the time to recover by itself.
    pub fn needs_replacing(&self, reachable_for: Option<Duration>) -> Option<ReplaceReason> {
        if self.producer().client().fatal_error().is_some() {
            return Some(ReplaceReason::Fatal);
        }
        let since = self.failing_since_ms.load(AtomicOrdering::Relaxed);
        let reachable_for = reachable_for?;
        let failing_for = Duration::from_millis(u64::try_from(now_ms().saturating_sub(since)).unwrap_or(0));
        (since != 0 && failing_for.min(reachable_for) >= self.replace_after).then_some(ReplaceReason::Stuck)
    }

    /// Replaces the librdkafka producer with a new one. Records queued in the old one are purged: their
    /// requests, if still waiting, are answered 503. Blocking; call off the runtime.
    pub fn replace(&self, reason: ReplaceReason) -> Result<(), KafkaError> {
        let fresh = Arc::new(self.config.create::<FutureProducer>()?);
        let old = match self.current.write() {
            Ok(mut p) => std::mem::replace(&mut *p, fresh),
            Err(poisoned) => std::mem::replace(&mut *poisoned.into_inner(), fresh),
        };
        self.failing_since_ms.store(0, AtomicOrdering::Relaxed);
        if let Some((_, fatal)) = old.client().fatal_error() {
            tracing::warn!(reason = reason.as_str(), %fatal, "replacing the Kafka producer after a fatal error");
        } else {
            tracing::warn!(
                reason = reason.as_str(),
                "replacing the Kafka producer: deliveries kept failing while the cluster was reachable"
            );
        }
        old.purge(PurgeConfig::default().queue().inflight());
        drop(old);
        Ok(())
    }

    /// Records handed to librdkafka and not yet acknowledged or failed.
    pub fn in_flight(&self) -> i32 {
        self.producer().in_flight_count()
    }

    /// Waits up to `timeout` for queued records to be delivered (on shutdown).
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.producer().flush(timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hookline_schemas::raw::KeyOrigin;
    use rdkafka::mocking::MockCluster;
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

    fn settings(brokers: &str) -> Settings {
        let text = format!(
            r#"
            [kafka]
            brokers = "{brokers}"
            [topics]
            raw = "raw"
            [producer]
            ack_timeout_ms = 1500
            linger_ms = 0
            [sources.s.verify]
            scheme = "hmac"
            header = "x-sig"
            secrets = [{{ value = "k" }}]
            "#
        );
        hookline_runtime::config::from_str_with_env::<crate::Config>(&text, Vec::new()).unwrap().validate().unwrap()
    }

    fn meta() -> RawMeta {
        RawMeta {
            v: hookline_schemas::header::VERSION,
            source: "s".into(),
            received_at_ms: 1,
            dedup_key: "k".into(),
            dedup_key_origin: KeyOrigin::Header,
            content_type: None,
            request_id: "r".into(),
            headers: vec![],
            traceparent: None,
            reprocess: None,
        }
    }

    /// `body`, through the verifier of an unverified source: the only way to a [`Verified`].
    fn verified(body: &'static [u8]) -> Verified {
        let (method, uri, headers) =
            (http::Method::POST, http::Uri::from_static("/webhooks/s"), http::HeaderMap::new());
        let req =
            hookline_providers::verify::Request { method: &method, uri: &uri, headers: &headers, body, now_secs: 0 };
        hookline_providers::verify::Verifier::Unverified.verify(&req, bytes::Bytes::from_static(body)).unwrap()
    }

    /// A mock cluster and a producer that has stored a first record (the first one also waits for
    /// metadata and a producer id, which on a loaded machine can take longer than one ack timeout).
    async fn mock() -> (MockCluster<'static, rdkafka::producer::DefaultProducerContext>, RawProducer) {
        let cluster = MockCluster::new(1).unwrap();
        cluster.create_topic("raw", 2, 1).unwrap();
        let producer = RawProducer::new(&settings(&cluster.bootstrap_servers())).unwrap();
        let mut attempts = 0;
        while producer.store("key", &verified(b"warm-up"), &meta()).await.is_err() {
            attempts += 1;
            assert!(attempts < 10, "the mock cluster never acknowledged");
        }
        (cluster, producer)
    }

    #[tokio::test]
    async fn a_stored_record_reports_where_it_landed() {
        let (_cluster, producer) = mock().await;
        let stored = producer.store("key", &verified(b"{}"), &meta()).await.unwrap();
        assert!(stored.partition >= 0 && stored.offset >= 0);
        assert_eq!(producer.needs_replacing(Some(Duration::from_secs(60))), None);
    }

    #[tokio::test]
    async fn a_down_broker_fails_the_store_within_the_bounded_wait() {
        let (cluster, producer) = mock().await;
        cluster.broker_down(1).unwrap();
        let started = Instant::now();
        let result = producer.store("key", &verified(b"{}"), &meta()).await;
        assert!(matches!(result, Err(StoreError::Timeout(_))), "{result:?}");
        assert!(started.elapsed() < Duration::from_millis(2500), "{:?}", started.elapsed());
        assert_eq!(producer.needs_replacing(None), None, "an outage alone never replaces the producer");
    }

    #[tokio::test]
    async fn a_producer_with_a_fatal_error_is_replaced_and_stores_again() {
        let (_cluster, producer) = mock().await;
        #[allow(unsafe_code)]
        // SAFETY: the client pointer is valid for the producer's lifetime; the reason is a C string literal.
        unsafe {
            rdkafka::bindings::rd_kafka_test_fatal_error(
                producer.producer().client().native_ptr(),
                RDKafkaRespErr::RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
                c"injected by a test".as_ptr(),
            );
        }
        assert!(
            producer.store("key", &verified(b"{}"), &meta()).await.is_err(),
            "nothing is stored after a fatal error"
        );
        assert_eq!(producer.needs_replacing(None), Some(ReplaceReason::Fatal));
        producer.replace(ReplaceReason::Fatal).unwrap();
        producer.store("key", &verified(b"{}"), &meta()).await.unwrap();
        assert_eq!(producer.needs_replacing(Some(Duration::from_secs(60))), None);
    }

    #[tokio::test]
    async fn a_producer_failing_while_the_cluster_answers_is_stuck() {
        let (cluster, producer) = mock().await;
        cluster.request_errors(RDKafkaApiKey::Produce, &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS; 50]);
        assert!(producer.store("key", &verified(b"{}"), &meta()).await.is_err());
        assert_eq!(producer.needs_replacing(Some(Duration::ZERO)), None, "the cluster just came back");
        tokio::time::sleep(producer.replace_after).await;
        assert_eq!(producer.needs_replacing(Some(producer.replace_after)), Some(ReplaceReason::Stuck));
        cluster.clear_request_errors(RDKafkaApiKey::Produce);
        producer.replace(ReplaceReason::Stuck).unwrap();
        producer.store("key", &verified(b"{}"), &meta()).await.unwrap();
    }
}

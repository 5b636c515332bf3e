//! Publishing outputs: an event or a DLQ record, to the raw record's partition of its topic.
//!
//! Invariant: [`Outputs::publish`] returns `Ok` only once Kafka acknowledged the record (`acks=all`, idempotent
//! producer). It never gives up on a record: librdkafka retries without a deadline (`message.timeout.ms=0`),
//! a full queue is waited out, and a refused record is retried with backoff. A processor that cannot publish
//! stops advancing (its lag grows and alerts fire); it never skips. Only a fatal producer error, after which
//! nothing can be published, is returned, and the processor stops.
//!
//! Outputs are partition-aligned: the output of raw partition `p` goes to partition `p` of the events or DLQ
//! topic, so one entity's events keep their order and each output partition has a single writer.

use std::time::Duration;

use hookline_runtime::kafka::KafkaConfig;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use tokio_util::sync::CancellationToken;

/// Which output topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The events topic.
    Events,
    /// The DLQ topic.
    Dlq,
}

/// One output record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputRecord {
    /// Its topic.
    pub target: Target,
    /// Key (the raw record's key).
    pub key: Option<Vec<u8>>,
    /// Value.
    pub value: Vec<u8>,
    /// Headers, in order.
    pub headers: Vec<(String, Vec<u8>)>,
}

/// Publishing stopped.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The producer hit a fatal error; nothing more can be published by it.
    #[error("fatal producer error: {0}")]
    Fatal(String),
    /// The worker was told to stop before the record was acknowledged.
    #[error("stopped before the record was acknowledged")]
    Stopped,
}

/// The output producer.
pub struct Outputs {
    producer: FutureProducer,
    events: String,
    dlq: String,
}

impl std::fmt::Debug for Outputs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outputs").field("events", &self.events).field("dlq", &self.dlq).finish_non_exhaustive()
    }
}

impl Outputs {
    /// Creates the producer.
    pub fn new(kafka: &KafkaConfig, events: &str, dlq: &str) -> Result<Self, KafkaError> {
        let mut config = kafka.client_config();
        config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("compression.type", "lz4")
            .set("message.timeout.ms", "0")
            .set("message.max.bytes", (66 * 1024 * 1024).to_string());
        Ok(Outputs { producer: config.create()?, events: events.to_owned(), dlq: dlq.to_owned() })
    }

    fn topic(&self, target: Target) -> &str {
        match target {
            Target::Events => &self.events,
            Target::Dlq => &self.dlq,
        }
    }

    /// Publishes `record` to `partition` of its topic; returns the offset it was stored at.
    pub async fn publish(
        &self,
        partition: i32,
        record: &OutputRecord,
        stop: &CancellationToken,
    ) -> Result<i64, PublishError> {
        let mut backoff = Duration::from_millis(50);
        loop {
            let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
            for (k, v) in &record.headers {
                headers = headers.insert(Header { key: k.as_str(), value: Some(v.as_slice()) });
            }
            let mut fr = FutureRecord::<[u8], [u8]>::to(self.topic(record.target))
                .partition(partition)
                .payload(&record.value)
                .headers(headers);
            if let Some(k) = &record.key {
                fr = fr.key(k.as_slice());
            }
            let error = match self.producer.send_result(fr) {
                Ok(delivery) => match delivery.await {
                    Ok(Ok(d)) => return Ok(d.offset),
                    Ok(Err((e, _))) => e,
                    Err(_canceled) => KafkaError::Canceled,
                },
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)
                }
                Err((e, _)) => e,
            };
            if let Some((_, reason)) = self.producer.client().fatal_error() {
                return Err(PublishError::Fatal(reason));
            }
            if error != KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull) {
                tracing::warn!(%error, topic = self.topic(record.target), partition, retry_in = ?backoff, "publish failed; retrying");
            }
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = stop.cancelled() => return Err(PublishError::Stopped),
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    /// Waits for queued records (on shutdown).
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.producer.flush(timeout)
    }
}

//! Publishing: events, DLQ records and changelog records, each to the raw record's partition of its topic.
//!
//! Invariant: [`Outputs::publish`] returns `Ok` only once Kafka acknowledged the record (`acks=all`, idempotent
//! producer). It never gives up on a record for a transient reason: librdkafka retries without a deadline
//! (`message.timeout.ms=0`), a full queue is waited out, and any other refusal is retried with exponential
//! backoff and jitter. A processor that cannot publish stops advancing (its lag grows and alerts fire); it
//! never skips. It returns early only when Kafka refuses the record for good (too large, invalid: the caller
//! sends a DLQ record instead), when the producer hit a fatal error, or when the caller stops before anything
//! was handed to the producer.
//!
//! Outputs are partition-aligned: the output of raw partition `p` goes to partition `p` of its topic, so one
//! entity's events keep their order and each output partition has a single writer: the raw partition's owner.
//!
//! [`OutputLog`] tracks, per raw partition, where in each output topic the outputs of unfinished records can
//! be, so a checkpoint can tell a future owner where to start reading the outputs back ([`crate::recovery`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use hookline_runtime::kafka::KafkaConfig;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use tokio_util::sync::CancellationToken;

/// One output record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputRecord {
    /// Its topic.
    pub topic: Arc<str>,
    /// Key (the raw record's key).
    pub key: Option<Vec<u8>>,
    /// Value.
    pub value: Vec<u8>,
    /// Headers, in order.
    pub headers: Vec<(String, Vec<u8>)>,
}

/// Publishing stopped without an acknowledgement.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The producer hit a fatal error; nothing more can be published by it.
    #[error("fatal producer error: {0}")]
    Fatal(String),
    /// Kafka refused this record for good.
    #[error("{0}")]
    Rejected(String),
    /// The caller stopped before the record was handed to the producer.
    #[error("stopped before the record was sent")]
    Stopped,
}

/// The output producer, shared by every partition.
pub struct Outputs {
    producer: FutureProducer,
}

impl std::fmt::Debug for Outputs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outputs").finish_non_exhaustive()
    }
}

/// Refusals that retrying the same record cannot change.
fn is_permanent(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidMessageSize
                | RDKafkaErrorCode::InvalidRecord
                | RDKafkaErrorCode::InvalidMessage
        )
    )
}

/// `base` with ±25% jitter, so partitions retrying together do not hit the broker in lockstep.
pub fn jittered(base: Duration) -> Duration {
    base.mul_f64(0.75 + fastrand::f64() * 0.5)
}

impl Outputs {
    /// Creates the producer.
    pub fn new(kafka: &KafkaConfig) -> Result<Self, KafkaError> {
        let mut config = kafka.client_config();
        config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("compression.type", "lz4")
            .set("message.timeout.ms", "0")
            .set("message.max.bytes", (66 * 1024 * 1024).to_string());
        Ok(Outputs { producer: config.create()? })
    }

    /// Publishes `record` to `partition` of its topic and returns the offset it was stored at. `on_send` is
    /// called before each attempt is handed to the producer; `retried` after each failed attempt.
    pub async fn publish(
        &self,
        partition: i32,
        record: &OutputRecord,
        stop: &CancellationToken,
        mut on_send: impl FnMut(),
        mut retried: impl FnMut(),
    ) -> Result<i64, PublishError> {
        let mut backoff = Duration::from_millis(50);
        loop {
            if stop.is_cancelled() {
                return Err(PublishError::Stopped);
            }
            let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
            for (k, v) in &record.headers {
                headers = headers.insert(Header { key: k.as_str(), value: Some(v.as_slice()) });
            }
            let mut fr = FutureRecord::<[u8], [u8]>::to(&record.topic)
                .partition(partition)
                .payload(&record.value)
                .headers(headers);
            if let Some(k) = &record.key {
                fr = fr.key(k.as_slice());
            }
            on_send();
            let error = match self.producer.send_result(fr) {
                // Once handed over, the record is waited for even if asked to stop: it may be stored, and the
                // caller must know where before it lets the partition go.
                Ok(delivery) => match delivery.await {
                    Ok(Ok(d)) => return Ok(d.offset),
                    Ok(Err((e, _))) => e,
                    Err(_canceled) => KafkaError::Canceled,
                },
                Err((e, _)) => e,
            };
            if let Some((_, reason)) = self.producer.client().fatal_error() {
                return Err(PublishError::Fatal(reason));
            }
            if is_permanent(&error) {
                return Err(PublishError::Rejected(format!("Kafka refused the record for {}: {error}", record.topic)));
            }
            retried();
            if error != KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull) {
                tracing::warn!(%error, topic = &*record.topic, partition, retry_in = ?backoff, "publish failed; retrying");
            }
            tokio::select! {
                () = tokio::time::sleep(jittered(backoff)) => {}
                () = stop.cancelled() => return Err(PublishError::Stopped),
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    /// Waits for queued records (on shutdown).
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.producer.flush(timeout)
    }

    /// Records the producer holds that Kafka has not acknowledged.
    pub fn in_flight(&self) -> i32 {
        self.producer.in_flight_count()
    }
}

/// Where the outputs of one raw partition's unfinished records can be, per output topic.
///
/// The producer keeps each partition's records in send order (idempotence), so a record handed over after
/// an acknowledged one is stored after it. Hence a record being sent to topic `t` lands at or after the
/// highest acknowledged offset of `t` known *when it is sent*; that bound is noted per raw offset before the
/// send and kept until a checkpoint covers the raw offset.
#[derive(Debug, Default)]
pub struct OutputLog {
    next: HashMap<Arc<str>, i64>,
    floors: BTreeMap<i64, HashMap<Arc<str>, i64>>,
}

impl OutputLog {
    /// A log whose topics end at `ends` (read by recovery, before anything was sent).
    pub fn new(ends: impl IntoIterator<Item = (Arc<str>, i64)>) -> Self {
        OutputLog { next: ends.into_iter().collect(), floors: BTreeMap::new() }
    }

    /// Notes that an output of `raw_offset` is about to be sent to `topic`.
    pub fn sending(&mut self, raw_offset: i64, topic: &Arc<str>) {
        let bound = self.next.get(topic).copied().unwrap_or(0);
        let floor = self.floors.entry(raw_offset).or_default().entry(topic.clone()).or_insert(bound);
        *floor = (*floor).min(bound);
    }

    /// Notes that an output was stored at `offset` of `topic`.
    pub fn acked(&mut self, topic: &Arc<str>, offset: i64) {
        let next = self.next.entry(topic.clone()).or_insert(0);
        *next = (*next).max(offset + 1);
    }

    /// For a checkpoint at `next_raw_offset`: per topic, the offset from which every output of a raw record
    /// at or after `next_raw_offset` lies. Forgets the records below it.
    pub fn scan_from(&mut self, next_raw_offset: i64) -> BTreeMap<String, i64> {
        self.floors = self.floors.split_off(&next_raw_offset);
        let mut out: BTreeMap<String, i64> = self.next.iter().map(|(t, o)| (t.to_string(), *o)).collect();
        for floors in self.floors.values() {
            for (topic, floor) in floors {
                let entry = out.entry(topic.to_string()).or_insert(*floor);
                *entry = (*entry).min(*floor);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_from_covers_unacknowledged_and_out_of_order_outputs() {
        let events: Arc<str> = Arc::from("events");
        let dlq: Arc<str> = Arc::from("dlq");
        let mut log = OutputLog::new([(events.clone(), 100), (dlq.clone(), 7)]);
        log.sending(10, &events); // bound 100
        log.sending(11, &events); // bound 100
        log.acked(&events, 101); // 11's output, acknowledged first
        log.sending(12, &dlq); // bound 7
        assert_eq!(
            log.scan_from(10),
            BTreeMap::from([("events".into(), 100), ("dlq".into(), 7)]),
            "10 is unfinished: its output may be at 100"
        );
        log.acked(&events, 100);
        log.acked(&dlq, 7);
        assert_eq!(
            log.scan_from(12),
            BTreeMap::from([("events".into(), 102), ("dlq".into(), 7)]),
            "10 and 11 are covered; 12's DLQ record is at 7"
        );
        assert_eq!(log.scan_from(13), BTreeMap::from([("events".into(), 102), ("dlq".into(), 8)]));
        log.sending(13, &events);
        log.acked(&events, 102);
        log.sending(14, &events);
        assert_eq!(log.scan_from(14)["events"], 103, "14 was sent after 102 was acknowledged");
    }

    #[test]
    fn permanent_refusals_are_told_apart() {
        assert!(is_permanent(&KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge)));
        assert!(!is_permanent(&KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)));
        assert!(!is_permanent(&KafkaError::MessageProduction(RDKafkaErrorCode::NotLeaderForPartition)));
        let j = jittered(Duration::from_millis(1000));
        assert!(j >= Duration::from_millis(750) && j <= Duration::from_millis(1250));
    }
}

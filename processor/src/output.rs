//! The processor's transactional producer: events, DLQ records and changelog records, each to the raw
//! record's partition of its topic, inside the session's current transaction ([`crate::session`]).
//!
//! Outputs are partition-aligned: the output of raw partition `p` goes to partition `p` of its topic, so one
//! entity's events keep their order and each output partition has a single writer: the raw partition's owner.
//!
//! A record handed to the producer belongs to the open transaction: it becomes visible to read_committed
//! readers when the transaction commits and never if it aborts. So a failed delivery is not retried (the
//! transaction cannot commit any more; the session aborts it and the records are processed again).

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::future_producer::DeliveryFuture;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::TopicPartitionList;

use crate::Settings;

/// A record to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputRecord {
    /// Topic.
    pub topic: Arc<str>,
    /// Key.
    pub key: Option<Vec<u8>>,
    /// Value; `None` for a tombstone.
    pub value: Option<Vec<u8>>,
    /// Headers, in order.
    pub headers: Vec<(String, Vec<u8>)>,
}

/// Why a record was not published.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The producer refused the record before sending it, for good (larger than `message.max.bytes`): the
    /// transaction is unaffected, the caller publishes a DLQ record instead.
    #[error("{0}")]
    Refused(String),
    /// Kafka failed to store the record. The transaction must abort; `permanent` when sending it again
    /// would fail the same way (the topic refuses it: too large, invalid).
    #[error("{reason}")]
    Failed {
        /// Why.
        reason: String,
        /// Whether the broker refused this very record for good.
        permanent: bool,
    },
}

/// Why [`Outputs::enqueue`] did not take a record.
#[derive(Debug)]
pub enum Enqueue {
    /// The producer's local queue is full: try again shortly.
    Full,
    /// It will not take it.
    Failed(SendError),
}

/// Waits for a record handed to the producer to be stored; its offset.
pub async fn delivered(topic: &str, delivery: DeliveryFuture) -> Result<i64, SendError> {
    match delivery.await {
        Ok(Ok(d)) => Ok(d.offset),
        Ok(Err((e, _))) => Err(SendError::Failed {
            permanent: is_permanent(&e),
            reason: format!("Kafka did not store a record for {topic}: {e}"),
        }),
        Err(_canceled) => Err(SendError::Failed { reason: "the producer is gone".into(), permanent: false }),
    }
}

/// The transactional producer of one session.
pub struct Outputs {
    producer: FutureProducer,
    timeout: Duration,
}

impl std::fmt::Debug for Outputs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outputs").finish_non_exhaustive()
    }
}

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

/// The transactional id of the processor whose data folder has id `instance`: stable across its restarts, so
/// a restarted processor fences its previous incarnation and aborts the transaction it left open at once.
pub fn transactional_id(group_id: &str, instance: &str) -> String {
    format!("{group_id}-{instance}")
}

impl Outputs {
    /// A transactional producer; [`Outputs::init`] must succeed before the first transaction.
    pub fn new(settings: &Settings, transactional_id: &str) -> Result<Self, KafkaError> {
        let timeout = Duration::from_millis(u64::from(settings.consumer.transaction_timeout_ms));
        let mut config = settings.kafka.client_config();
        config
            .set("transactional.id", transactional_id)
            .set("transaction.timeout.ms", timeout.as_millis().to_string())
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("compression.type", "lz4")
            // A delivery may not outlive its transaction.
            .set("message.timeout.ms", timeout.as_millis().to_string())
            .set("message.max.bytes", (66 * 1024 * 1024).to_string());
        Ok(Outputs { producer: config.create()?, timeout })
    }

    /// Registers the transactional id with the cluster: fences any earlier producer with the same id and
    /// aborts the transaction it left open. Blocks.
    pub fn init(&self) -> Result<(), KafkaError> {
        self.producer.init_transactions(self.timeout)?;
        self.producer.begin_transaction()
    }

    /// Hands `record` to the producer now; the returned future resolves when Kafka stored it.
    pub fn enqueue(&self, partition: i32, record: &OutputRecord) -> Result<DeliveryFuture, Enqueue> {
        let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
        for (k, v) in &record.headers {
            headers = headers.insert(Header { key: k.as_str(), value: Some(v.as_slice()) });
        }
        let mut fr = FutureRecord::<[u8], [u8]>::to(&record.topic).partition(partition).headers(headers);
        if let Some(v) = &record.value {
            fr = fr.payload(v.as_slice());
        }
        if let Some(k) = &record.key {
            fr = fr.key(k.as_slice());
        }
        match self.producer.send_result(fr) {
            Ok(delivery) => Ok(delivery),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => Err(Enqueue::Full),
            Err((e, _)) if is_permanent(&e) => Err(Enqueue::Failed(SendError::Refused(format!(
                "the producer refused a record for {}: {e}",
                record.topic
            )))),
            Err((e, _)) => Err(Enqueue::Failed(SendError::Failed {
                reason: format!("cannot send a record to {}: {e}", record.topic),
                permanent: false,
            })),
        }
    }

    /// Commits the open transaction with the consumed offsets (`offsets`, for the group of `group`), then
    /// begins the next one. Blocks for up to the transaction timeout. On error the transaction is not
    /// committed: the caller aborts the session.
    pub fn commit(&self, offsets: &TopicPartitionList, group: &ConsumerGroupMetadata) -> Result<(), KafkaError> {
        if offsets.count() > 0 {
            self.producer.send_offsets_to_transaction(offsets, group, self.timeout)?;
            crate::faults::on_offsets_sent();
        }
        self.producer.commit_transaction(self.timeout)?;
        self.producer.begin_transaction()
    }

    /// Aborts the open transaction, if the producer still can. Blocks.
    pub fn abort(&self) {
        if let Err(e) = self.producer.abort_transaction(self.timeout) {
            tracing::debug!(error = %e, "abort_transaction failed; the transaction coordinator aborts it after the transaction timeout");
        }
    }
}

/// Whether `error` says the cluster cannot do transactions at all (as opposed to failing now).
pub fn is_unsupported(error: &KafkaError) -> bool {
    let code = match error {
        KafkaError::Transaction(e) => Some(e.code()),
        other => other.rdkafka_error_code(),
    };
    matches!(
        code,
        Some(
            RDKafkaErrorCode::UnsupportedVersion
                | RDKafkaErrorCode::UnsupportedForMessageFormat
                | RDKafkaErrorCode::TransactionalIdAuthorizationFailed
                | RDKafkaErrorCode::ClusterAuthorizationFailed
        )
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permanent_refusals_and_brokers_without_transactions_are_told_apart() {
        assert!(is_permanent(&KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge)));
        assert!(!is_permanent(&KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)));
        assert!(!is_permanent(&KafkaError::MessageProduction(RDKafkaErrorCode::NotLeaderForPartition)));
        let unsupported = KafkaError::Global(RDKafkaErrorCode::UnsupportedVersion);
        assert!(is_unsupported(&unsupported), "a broker without transactions stops the processor");
        assert!(!is_unsupported(&KafkaError::Global(RDKafkaErrorCode::CoordinatorLoadInProgress)), "retried");
    }
}

//! Taking over a raw partition: bringing the local cache of its dedup state up to date.
//!
//! 1. The group's committed offset of the raw partition is fetched *stable* (read_committed: Kafka answers
//!    only once no transaction that commits an offset of this partition is pending).
//! 2. The partition of the state changelog ([`crate::changelog`]) is read read_committed, from the offset
//!    this cache last applied ([`Store::changelog_next`]; from the start when it knows nothing) to its end,
//!    and every entry and tombstone is applied to the store. Its end is the log's end: while a transaction
//!    is still open on the partition, the read waits for it to end. A processor restarted on its own data
//!    folder reads only what was committed since its last commit; a new or wiped one reads the compacted
//!    partition once.
//!
//! Why this is enough: an entry is committed in the same transaction as its record's outputs and raw offset.
//! A previous owner frozen in the middle of a commit (its offsets sent, its commit not yet) can still commit
//! that transaction when it wakes: step 1 waits until it did (or until it was aborted). Kafka writes the
//! transaction's markers to each of its partitions separately, so the offset can be stable before the
//! changelog's marker is written: step 2 reads to the log's end, markers included, so the entries are read
//! either way. Any other transaction the previous owner left open cannot commit any more: its offsets would
//! be sent with a stale group generation, which the group coordinator refuses, and every transaction carries
//! offsets ([`crate::session`]); the read waits for it to be aborted (at most the transaction timeout). So
//! after the read, every raw record from the committed offset on is either a known duplicate or was never
//! published.
//!
//! Everything here blocks (Kafka reads, RocksDB writes): it runs on a blocking thread.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::ClientContext;
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::changelog::{self, Change};
use crate::consumer::GroupConsumer;
use crate::store::{Positions, Store, StoreError};
use crate::Settings;

/// How long reading the changelog may take before the attempt is abandoned and retried.
const READ_DEADLINE: Duration = Duration::from_secs(300);

/// Changes are written to the store in batches of this many.
const APPLY_BATCH: usize = 10_000;

/// Why a restore did not complete.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// Reading the changelog failed.
    #[error("reading {topic}: {error}")]
    Kafka {
        /// The topic.
        topic: String,
        /// Why.
        error: String,
    },
    /// Writing the store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Asked to stop.
    #[error("stopped")]
    Stopped,
}

/// A restored partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Restored {
    /// The changes applied.
    pub changes: u64,
    /// The group's committed offset of the raw partition (`None` before the group's first commit of it).
    pub committed: Option<i64>,
}

/// Waits until the group's committed offset of raw `partition` is stable, then brings the store's state of
/// `partition` up to the changelog's end (waiting for any transaction still open on it to end).
pub fn restore(
    settings: &Settings,
    store: &Store,
    group: &GroupConsumer,
    partition: i32,
    stop: &CancellationToken,
) -> Result<Restored, RestoreError> {
    let topic = &settings.topics.state;
    let start = store.changelog_next(partition)?;
    let consumer = reader(settings).map_err(|e| RestoreError::Kafka { topic: topic.clone(), error: e.to_string() })?;
    let committed = stable_offset(group, &settings.topics.raw, partition, stop)?;
    let log_end = log_end(settings, topic, partition)?;
    let mut batch: Vec<Change> = Vec::with_capacity(APPLY_BATCH);
    let mut applied = 0;
    let end = read_to_end(&consumer, topic, partition, start, log_end, stop, |msg| {
        if let Some(change) = changelog::parse(msg.key(), msg.payload()) {
            batch.push(change);
        }
        if batch.len() >= APPLY_BATCH {
            let next = Positions { changelog: Some(msg.offset() + 1), raw: None };
            store.apply(partition, &batch, &[], next)?;
            applied += batch.len() as u64;
            batch.clear();
        }
        Ok(())
    })?;
    store.apply(partition, &batch, &[], Positions { changelog: Some(end), raw: None })?;
    Ok(Restored { changes: applied + batch.len() as u64, committed })
}

/// How long one request for the committed offset may wait (librdkafka asks again while it is unstable).
const STABLE_WAIT: Duration = Duration::from_secs(5);

/// The group's committed offset of `partition` of the raw `topic`, once no transaction committing an offset
/// of it is pending, asked of the session's group consumer (already connected to the group's coordinator).
/// librdkafka asks for stable offsets (KIP-447) because the consumer is read_committed, and asks again while
/// the answer is "unstable"; this loop bounds each wait so `stop` is seen.
fn stable_offset(
    consumer: &GroupConsumer,
    topic: &str,
    partition: i32,
    stop: &CancellationToken,
) -> Result<Option<i64>, RestoreError> {
    let kafka = |error: String| RestoreError::Kafka { topic: topic.to_owned(), error };
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, partition);
    let started = Instant::now();
    let mut warned = false;
    loop {
        if stop.is_cancelled() {
            return Err(RestoreError::Stopped);
        }
        let answer = consumer.committed_offsets(tpl.clone(), STABLE_WAIT).and_then(|offsets| {
            let elem = offsets.find_partition(topic, partition);
            elem.as_ref().map_or(Ok(()), |e| e.error())?;
            Ok(elem.map(|e| e.offset()))
        });
        match answer {
            Ok(offset) => {
                return match offset {
                    Some(Offset::Offset(o)) => Ok(Some(o)),
                    Some(Offset::Invalid) | None => Ok(None),
                    Some(other) => Err(kafka(format!("unexpected committed offset {other:?}"))),
                };
            }
            Err(e) if started.elapsed() < READ_DEADLINE => {
                if !warned {
                    warned = true;
                    tracing::warn!(error = %e, partition, "committed offset not available yet (a previous owner's transaction may still be ending); retrying");
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => return Err(kafka(format!("the committed offset is not stable after {READ_DEADLINE:?}: {e}"))),
        }
    }
}

/// The end of `partition` of `topic` now, open transactions included (its high watermark: what a
/// read_uncommitted reader sees; a read_committed one is told the end is before the first open transaction).
fn log_end(settings: &Settings, topic: &str, partition: i32) -> Result<i64, RestoreError> {
    let kafka = |e: KafkaError| RestoreError::Kafka { topic: topic.to_owned(), error: e.to_string() };
    let mut config = settings.kafka.client_config();
    config.set("isolation.level", "read_uncommitted");
    let client: Reader = config.create_with_context(ReaderContext).map_err(kafka)?;
    let (_, high) = client.fetch_watermarks(topic, partition, Duration::from_secs(10)).map_err(kafka)?;
    Ok(high)
}

struct ReaderContext;

impl ClientContext for ReaderContext {
    fn error(&self, error: KafkaError, reason: &str) {
        let eof = matches!(error, KafkaError::PartitionEOF(_))
            || matches!(error, KafkaError::Global(rdkafka::types::RDKafkaErrorCode::PartitionEOF));
        if !eof {
            tracing::warn!(%error, reason, "state restore: kafka error");
        }
    }
}

impl ConsumerContext for ReaderContext {}

type Reader = BaseConsumer<ReaderContext>;

fn reader(settings: &Settings) -> Result<Reader, KafkaError> {
    let mut config = settings.kafka.client_config();
    // librdkafka assigns partitions only in a consumer with a group; this one never joins it (it only
    // assigns) and never commits, so its name only needs to be recognisable.
    config
        .set("group.id", format!("{}.restore", settings.consumer.group_id))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .set("fetch.wait.max.ms", "50")
        .set("queued.max.messages.kbytes", "65536");
    config.create_with_context(ReaderContext)
}

/// Reads `partition` of `topic` from `start` up to `log_end` at least and returns the next offset. A
/// read_committed reader stops before a transaction that is still open (and librdkafka reports the end
/// there): then it waits until the transaction ends, so nothing it commits is missed. Gives up after
/// [`READ_DEADLINE`] or when `stop` is cancelled.
fn read_to_end(
    consumer: &Reader,
    topic: &str,
    partition: i32,
    start: i64,
    log_end: i64,
    stop: &CancellationToken,
    mut each: impl FnMut(&rdkafka::message::BorrowedMessage<'_>) -> Result<(), StoreError>,
) -> Result<i64, RestoreError> {
    let kafka = |error: String| RestoreError::Kafka { topic: topic.to_owned(), error };
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(start)).map_err(|e| kafka(e.to_string()))?;
    consumer.assign(&tpl).map_err(|e| kafka(e.to_string()))?;
    let mut last: Option<i64> = None;
    let deadline = Instant::now() + READ_DEADLINE;
    let end = loop {
        if stop.is_cancelled() {
            return Err(RestoreError::Stopped);
        }
        if Instant::now() > deadline {
            return Err(kafka(format!("did not reach the end within {READ_DEADLINE:?}")));
        }
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Ok(msg)) if msg.partition() == partition => {
                last = Some(msg.offset());
                each(&msg)?;
            }
            Some(Ok(_)) => {}
            Some(Err(KafkaError::PartitionEOF(p))) if p == partition => {
                // How far this reader got: transaction markers, which it consumes without returning them,
                // included.
                let position = consumer
                    .position()
                    .ok()
                    .and_then(|tpl| tpl.find_partition(topic, partition).and_then(|e| e.offset().to_raw()))
                    .filter(|o| *o >= 0);
                match position.or(last.map(|o| o + 1)) {
                    Some(at) if at >= log_end => break at,
                    // Nothing to read. A log that ends before the start (a recreated topic) is read from its
                    // end next time: a lower position only makes the next read longer.
                    None if start >= log_end => break log_end.max(0),
                    _ => {}
                }
                // A transaction is still open at `at`: its end (a commit or an abort marker) moves the
                // read_committed end on, and librdkafka reports the new end.
            }
            Some(Err(KafkaError::PartitionEOF(_))) => {}
            Some(Err(e)) => return Err(kafka(e.to_string())),
        }
    };
    consumer.unassign().map_err(|e| kafka(e.to_string()))?;
    Ok(end)
}

//! Taking over a raw partition: rebuilding its dedup state and learning what was already published.
//!
//! A partition arrives with whatever this process's store knows about it (nothing, stale state from an
//! earlier assignment, or state left by a crash of this process). Before its first record is processed:
//!
//! 1. **Changelog.** The partition of the state changelog ([`crate::changelog`]) is read from where the
//!    local store left it (from the start when it knows nothing) to its end; its entries are written to the
//!    store and its last checkpoint is kept. The more advanced of that checkpoint and the local one wins.
//!    If the partition's last ownership record is another instance's unreleased claim, the read goes on
//!    until that owner's release arrives (it may still be publishing: see the handoff in
//!    [`crate::changelog`]), or until `session_timeout_ms` + `drain_timeout_ms` have passed (it died).
//! 2. **Outputs.** Each output topic's partition is read from the checkpoint's `scan_from` (from the start
//!    without a checkpoint) to its end. Every output names its raw record ([`Origin`]); the dedup entries of
//!    those webhooks are written to the store, and the outputs of raw records at or after the resume point
//!    are kept in memory as *emitted*: when such a record is read again, it is completed (a fan-out that was
//!    cut short gets its missing events), never published twice.
//! 3. **Crash suspects.** Records this store marked as running are the ones in progress when this process
//!    last died here; they are retried alone ([`crate::scheduler`]) and sent to the DLQ as `crash_loop`
//!    after `state.crash_loop_attempts` solo attempts.
//!
//! Why this is enough: no one else publishes the partition's records while this runs (the handoff), an
//! output is published before its entry is stored, and a record's entry is in the
//! changelog before the raw offset covering it is committed. So after a crash at any point, every raw record
//! from the committed offset on is either covered by a stored entry (a duplicate: dropped), or has outputs
//! after `scan_from` (emitted: completed), or has no output at all (processed normally). The checkpoint's
//! `scan_from` bounds the outputs read back to about one commit interval.
//!
//! If the local store knows more than the changelog (the changelog topic was deleted or recreated), the
//! worker first writes a snapshot of the partition's entries to the changelog, so the next owner has them.
//!
//! Everything here blocks (Kafka reads, RocksDB writes): it runs on a blocking thread.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hookline_schemas::output::Origin;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::ClientContext;
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::changelog::ChangelogRecord;
use crate::process::UNKNOWN_SOURCE;
use crate::store::{Checkpoint, Entry, Store, StoreError};
use crate::Settings;

/// How long reading one topic back may take before the attempt is abandoned and retried.
const READ_DEADLINE: Duration = Duration::from_secs(120);

/// Entries are written to the store in batches of this many.
const APPLY_BATCH: usize = 10_000;

/// An output already published for a raw record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Emitted {
    /// Its topic.
    pub topic: Arc<str>,
    /// For a split batch, its position.
    pub index: Option<u32>,
    /// Whether it is a DLQ record.
    pub dlq: bool,
    /// Its webhook's source.
    pub source: String,
    /// Its webhook's dedup key.
    pub dedup_key: String,
}

/// What a worker needs to start on a partition.
#[derive(Debug, Clone, Default)]
pub struct Recovered {
    /// The checkpoint to continue from (`changelog_next` is where the changelog partition ends now).
    pub checkpoint: Checkpoint,
    /// Outputs already published, by raw offset, for records at or after the resume point.
    pub emitted: HashMap<i64, Vec<Emitted>>,
    /// Where each output topic's partition ends now.
    pub ends: Vec<(Arc<str>, i64)>,
    /// The local store knows entries the changelog does not: write a snapshot before processing.
    pub snapshot_needed: bool,
    /// Records in progress when this process last died here: offset → solo attempts so far.
    pub suspects: BTreeMap<i64, u32>,
    /// Entries restored from the changelog.
    pub from_changelog: u64,
    /// Entries restored from the outputs.
    pub from_outputs: u64,
    /// When another instance held the partition: how long it was waited for, and whether it released it
    /// (`false`: presumed gone after the patience).
    pub handoff: Option<(Duration, bool)>,
}

/// Reading back failed; the caller retries.
#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    /// Kafka could not be read.
    #[error("reading {topic} back: {error}")]
    Kafka {
        /// The topic.
        topic: String,
        /// Why.
        error: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The partitions were revoked or the process is stopping.
    #[error("stopped")]
    Stopped,
}

/// Restores `partitions`. `committed` is each partition's committed raw offset (where consumption resumes),
/// `None` when the group has none.
pub fn recover(
    settings: &Settings,
    store: &Store,
    partitions: &[i32],
    committed: &HashMap<i32, Option<i64>>,
    stop: &CancellationToken,
) -> Result<HashMap<i32, Recovered>, RecoveryError> {
    let now = hookline_runtime::now_ms();
    let consumer =
        reader(settings).map_err(|e| RecoveryError::Kafka { topic: "(client)".into(), error: e.to_string() })?;
    let mut out: HashMap<i32, Recovered> = HashMap::new();

    // 1. The changelog.
    let local: HashMap<i32, Option<Checkpoint>> =
        partitions.iter().map(|p| Ok((*p, store.checkpoint(*p)?))).collect::<Result<_, StoreError>>()?;
    let starts: HashMap<i32, Option<i64>> =
        local.iter().map(|(p, c)| (*p, c.as_ref().map(|c| c.changelog_next))).collect();
    let mut latest: HashMap<i32, Checkpoint> = HashMap::new();
    let mut buffers: HashMap<i32, Vec<Entry>> = HashMap::new();
    let mut from_changelog: HashMap<i32, u64> = HashMap::new();
    // The last ownership record of each partition: (owner, released).
    let owners: std::cell::RefCell<HashMap<i32, (String, bool)>> = std::cell::RefCell::default();
    let state_topic = settings.topics.state.as_str();
    let mut each = |p: i32, msg: &rdkafka::message::BorrowedMessage<'_>| {
        let Some(record) = msg.payload().and_then(ChangelogRecord::parse) else {
            return Ok(());
        };
        if record.partition != p || record.raw_topic != settings.topics.raw {
            return Ok(());
        }
        if let Some(owner) = &record.owner {
            owners.borrow_mut().insert(p, (owner.clone(), record.released));
        }
        let buffer = buffers.entry(p).or_default();
        buffer.extend(record.live_entries(now));
        *from_changelog.entry(p).or_default() += record.entries.len() as u64;
        if buffer.len() >= APPLY_BATCH {
            store.apply(p, &std::mem::take(buffer))?;
        }
        if let Some(c) = record.checkpoint {
            let newer = latest.get(&p).is_none_or(|l| c.next_raw_offset >= l.next_raw_offset);
            if newer {
                latest.insert(p, c);
            }
        }
        Ok(())
    };
    let mut changelog_ends = read_to_end(&consumer, state_topic, &starts, stop, &mut each)?;
    // Handoff: a partition another instance claimed and has not released may still be published by it. Wait
    // for its release (it writes it once its last outputs are acknowledged), or until it must be gone.
    let me = store.instance().to_owned();
    let patience = Duration::from_millis(u64::from(settings.consumer.session_timeout_ms)) + settings.drain_timeout;
    let waiting_since = Instant::now();
    let initially_held = owners_holding(&owners.borrow(), &me);
    loop {
        let held: Vec<(i32, String)> = owners_holding(&owners.borrow(), &me);
        if held.is_empty() {
            break;
        }
        if waiting_since.elapsed() >= patience {
            tracing::warn!(?held, ?patience, "previous owners did not release their partitions; presumed gone");
            break;
        }
        if stop.is_cancelled() {
            return Err(RecoveryError::Stopped);
        }
        std::thread::sleep(Duration::from_millis(100));
        let from: HashMap<i32, Option<i64>> = changelog_ends.iter().map(|(p, end)| (*p, Some(*end))).collect();
        changelog_ends = read_to_end(&consumer, state_topic, &from, stop, &mut each)?;
    }
    if !initially_held.is_empty() {
        let waited = waiting_since.elapsed();
        let still_held = owners_holding(&owners.borrow(), &me);
        tracing::info!(?waited, ?initially_held, ?still_held, "waited for the previous owners of partitions");
        for (p, _) in &initially_held {
            let released = !still_held.iter().any(|(q, _)| q == p);
            out.entry(*p).or_default().handoff = Some((waited, released));
        }
    }
    for (p, buffer) in buffers.drain() {
        store.apply(p, &buffer)?;
    }

    // 2. Choose each partition's checkpoint.
    let mut chosen: HashMap<i32, Option<Checkpoint>> = HashMap::new();
    for p in partitions {
        let end = changelog_ends.get(p).copied().unwrap_or(0);
        let local = local.get(p).cloned().flatten();
        let from_log = latest.remove(p);
        let snapshot_needed = local.as_ref().is_some_and(|l| {
            end < l.changelog_next || from_log.as_ref().is_some_and(|c| c.next_raw_offset < l.next_raw_offset)
        });
        let best = match (local, from_log) {
            (Some(l), Some(c)) => Some(if c.next_raw_offset >= l.next_raw_offset { c } else { l }),
            (l, c) => l.or(c),
        };
        let recovered = out.entry(*p).or_default();
        recovered.snapshot_needed = snapshot_needed;
        recovered.from_changelog = from_changelog.get(p).copied().unwrap_or(0);
        recovered.checkpoint.changelog_next = end;
        recovered.suspects = store.running(*p)?;
        chosen.insert(*p, best);
    }

    // 3. The outputs.
    for topic in settings.output_topics() {
        let topic: Arc<str> = Arc::from(topic.as_str());
        let is_dlq = *topic == *settings.topics.dlq;
        let starts: HashMap<i32, Option<i64>> = partitions
            .iter()
            .map(|p| (*p, chosen.get(p).cloned().flatten().and_then(|c| c.scan_from.get(&*topic).copied())))
            .collect();
        let mut buffers: HashMap<i32, Vec<Entry>> = HashMap::new();
        let ends = read_to_end(&consumer, &topic, &starts, stop, |p, msg| {
            let origin = if is_dlq {
                let headers = msg.headers().map(|h| h.iter().map(|h| (h.key, h.value)).collect::<Vec<_>>());
                Origin::of_dlq(headers.unwrap_or_default())
            } else {
                Origin::of_event(msg.payload().unwrap_or_default())
            };
            // Records that are not a hookline output of this partition (another writer's) are not ours.
            let Ok(origin) = origin else {
                return Ok(());
            };
            if origin.raw_partition != p {
                return Ok(());
            }
            // Every record from the committed offset on is read again. Those below the checkpoint have their
            // entries, but an entry may have expired meanwhile (a lag longer than the window): knowing their
            // outputs too keeps them from being published twice even then.
            let resume = committed.get(&p).copied().flatten().unwrap_or(0);
            let recovered = out.entry(p).or_default();
            recovered.from_outputs += 1;
            if origin.source != UNKNOWN_SOURCE && !origin.dedup_key.starts_with("raw:") {
                let window = i64::try_from(settings.window_of(&origin.source).as_millis()).unwrap_or(i64::MAX);
                let expires_at_ms = origin.received_at_ms.unwrap_or(now).saturating_add(window);
                if expires_at_ms > now {
                    let buffer = buffers.entry(p).or_default();
                    buffer.push(Entry {
                        source: origin.source.clone(),
                        dedup_key: origin.dedup_key.clone(),
                        expires_at_ms,
                    });
                    if buffer.len() >= APPLY_BATCH {
                        store.apply(p, &std::mem::take(buffer))?;
                    }
                }
            }
            if origin.raw_offset >= resume {
                recovered.emitted.entry(origin.raw_offset).or_default().push(Emitted {
                    topic: topic.clone(),
                    index: origin.index,
                    dlq: is_dlq,
                    source: origin.source,
                    dedup_key: origin.dedup_key,
                });
            }
            Ok(())
        })?;
        for (p, buffer) in buffers.drain() {
            store.apply(p, &buffer)?;
        }
        for p in partitions {
            out.entry(*p).or_default().ends.push((topic.clone(), ends.get(p).copied().unwrap_or(0)));
        }
    }

    for p in partitions {
        let recovered = out.entry(*p).or_default();
        if let Some(c) = chosen.remove(p).flatten() {
            recovered.checkpoint.next_raw_offset = c.next_raw_offset;
            recovered.checkpoint.scan_from = c.scan_from;
        }
    }
    Ok(out)
}

/// The partitions whose last ownership record is an unreleased claim by another instance, with that owner.
fn owners_holding(owners: &HashMap<i32, (String, bool)>, me: &str) -> Vec<(i32, String)> {
    owners.iter().filter(|(_, (owner, released))| !released && owner != me).map(|(p, (o, _))| (*p, o.clone())).collect()
}

/// The restore reader's client context: reaching the end of a partition is how a read ends, not an error.
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

/// Reads `topic`'s `partitions` (each from its start offset, or from the beginning) up to their ends and
/// returns where each ended (the next offset). Gives up after [`READ_DEADLINE`] or when `stop` is cancelled.
fn read_to_end(
    consumer: &Reader,
    topic: &str,
    starts: &HashMap<i32, Option<i64>>,
    stop: &CancellationToken,
    mut each: impl FnMut(i32, &rdkafka::message::BorrowedMessage<'_>) -> Result<(), StoreError>,
) -> Result<HashMap<i32, i64>, RecoveryError> {
    let kafka = |error: String| RecoveryError::Kafka { topic: topic.to_owned(), error };
    let mut tpl = TopicPartitionList::new();
    for (p, start) in starts {
        let offset = start.map_or(Offset::Beginning, Offset::Offset);
        tpl.add_partition_offset(topic, *p, offset).map_err(|e| kafka(e.to_string()))?;
    }
    consumer.assign(&tpl).map_err(|e| kafka(e.to_string()))?;
    let mut ends: HashMap<i32, i64> = HashMap::new();
    let mut last: HashMap<i32, i64> = HashMap::new();
    let deadline = Instant::now() + READ_DEADLINE;
    while ends.len() < starts.len() {
        if stop.is_cancelled() {
            return Err(RecoveryError::Stopped);
        }
        if Instant::now() > deadline {
            return Err(kafka(format!("did not reach the end within {READ_DEADLINE:?}")));
        }
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Ok(msg)) => {
                let p = msg.partition();
                if starts.contains_key(&p) && !ends.contains_key(&p) {
                    last.insert(p, msg.offset());
                    each(p, &msg)?;
                }
            }
            Some(Err(KafkaError::PartitionEOF(p))) if starts.contains_key(&p) => {
                let end = match last.get(&p) {
                    Some(o) => o + 1,
                    // Nothing read: the partition ends where the read started, or earlier if the broker
                    // says so (a recreated topic). A lower end only makes later reads longer.
                    None => {
                        let start = starts.get(&p).copied().flatten().unwrap_or(0);
                        match consumer.fetch_watermarks(topic, p, Duration::from_secs(5)) {
                            Ok((_, high)) => start.min(high).max(0),
                            Err(_) => 0,
                        }
                    }
                };
                ends.entry(p).or_insert(end);
            }
            Some(Err(KafkaError::PartitionEOF(_))) => {}
            Some(Err(e)) => return Err(kafka(e.to_string())),
        }
    }
    consumer.unassign().map_err(|e| kafka(e.to_string()))?;
    Ok(ends)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_another_instances_unreleased_claim_holds_a_partition() {
        let owners = HashMap::from([
            (0, ("other".to_owned(), false)),
            (1, ("other".to_owned(), true)),
            (2, ("me".to_owned(), false)),
        ]);
        assert_eq!(owners_holding(&owners, "me"), vec![(0, "other".to_owned())]);
        assert!(owners_holding(&HashMap::new(), "me").is_empty(), "a partition never claimed is free");
    }
}

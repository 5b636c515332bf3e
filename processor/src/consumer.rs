//! Group membership: the consumer group and its rebalances.
//!
//! The group consumer is polled on a dedicated thread, where the rebalance callbacks run. On an assignment,
//! each partition's messages are split into their own queue and handed to the session ([`crate::session`]),
//! which starts a worker per partition. On a revocation, the callback asks the session to commit the open
//! transaction and stop the partitions' workers, and waits for it: the consumed offsets are committed inside
//! the transaction, with this member's group generation, before the rebalance proceeds, so the next owner
//! starts exactly after the last record this process committed. Blocking in the callback is what makes the
//! hand-over clean (rather than aborted and redone), which is why it runs on its own thread. When the
//! partitions were *lost* (this member was expelled), nothing is committed: the open transaction could not
//! commit anyway (its generation is stale), and the session ends.

use std::collections::BTreeMap;
use std::sync::mpsc::RecvTimeoutError;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::consumer::stream_consumer::StreamPartitionQueue;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, ConsumerGroupMetadata, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::Message;
use rdkafka::statistics::Statistics;
use rdkafka::TopicPartitionList;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::shared::{Breaker, Shared};
use crate::CHECK_GROUP;

/// What the group thread asks of the session's transaction loop.
pub(crate) enum Request {
    /// Partitions were assigned: start their workers.
    Assign(Vec<(i32, StreamPartitionQueue<ProcessorContext>)>),
    /// Partitions (all when `None`) are being revoked: commit what they did if `commit`, stop their workers,
    /// then answer.
    Revoke { partitions: Option<Vec<i32>>, commit: bool, done: std::sync::mpsc::SyncSender<()> },
}

/// The group consumer type.
pub type GroupConsumer = StreamConsumer<ProcessorContext>;

/// Callbacks of the group consumer.
pub struct ProcessorContext {
    shared: Arc<Shared>,
    breaker: Arc<Breaker>,
    requests: mpsc::UnboundedSender<Request>,
    consumer: OnceLock<Weak<GroupConsumer>>,
    assigned: Mutex<Vec<i32>>,
    assignment_metadata: Mutex<Option<Arc<ConsumerGroupMetadata>>>,
}

impl std::fmt::Debug for ProcessorContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessorContext").finish_non_exhaustive()
    }
}

impl ProcessorContext {
    fn new(shared: Arc<Shared>, breaker: Arc<Breaker>, requests: mpsc::UnboundedSender<Request>) -> Self {
        ProcessorContext {
            shared,
            breaker,
            requests,
            consumer: OnceLock::new(),
            assigned: Mutex::new(Vec::new()),
            assignment_metadata: Mutex::new(None),
        }
    }

    /// The group metadata (member id and generation) of the current assignment, as it was when the
    /// partitions were assigned. Transactions commit offsets with it rather than with the consumer's metadata
    /// of the moment: once expelled, librdkafka resets its member id and generation, and the group
    /// coordinator accepts a transactional offset commit that names neither (generation -1, no member id),
    /// which would let a processor expelled while frozen commit its open transaction unfenced.
    pub(crate) fn assignment_metadata(&self) -> Option<Arc<ConsumerGroupMetadata>> {
        self.assignment_metadata.lock().ok().and_then(|g| g.clone())
    }

    fn assign(&self, tpl: &TopicPartitionList) {
        let Some(consumer) = self.consumer.get().and_then(Weak::upgrade) else {
            self.breaker.fail("partitions assigned to a consumer that is gone".into());
            return;
        };
        let mut queues = Vec::new();
        for elem in tpl.elements() {
            let (topic, partition) = (elem.topic().to_owned(), elem.partition());
            match consumer.split_partition_queue(&topic, partition) {
                Some(queue) => queues.push((partition, queue)),
                None => self.breaker.fail(format!("cannot split the queue of {topic} partition {partition}")),
            }
        }
        if let Ok(mut assigned) = self.assigned.lock() {
            assigned.extend(queues.iter().map(|(p, _)| *p));
        }
        if self.requests.send(Request::Assign(queues)).is_err() {
            self.breaker.fail("the session's transaction loop is gone".into());
        }
    }

    /// Asks the session to commit (if `commit`) and stop the workers of `partitions` (all when `None`), and
    /// waits for it.
    fn revoke(&self, partitions: Option<Vec<i32>>, commit: bool) {
        if let Ok(mut assigned) = self.assigned.lock() {
            match &partitions {
                Some(ps) => assigned.retain(|p| !ps.contains(p)),
                None => assigned.clear(),
            }
        }
        let (done, finished) = std::sync::mpsc::sync_channel(1);
        if self.requests.send(Request::Revoke { partitions, commit, done }).is_err() {
            return;
        }
        let s = &self.shared.settings;
        let txn = Duration::from_millis(u64::from(s.consumer.transaction_timeout_ms));
        let deadline = s.drain_timeout + txn * 2 + Duration::from_secs(10);
        match finished.recv_timeout(deadline) {
            Ok(()) | Err(RecvTimeoutError::Disconnected) => {}
            Err(RecvTimeoutError::Timeout) => {
                self.shared.fail(format!("the partition workers did not stop within {deadline:?}"));
            }
        }
    }
}

impl ClientContext for ProcessorContext {
    fn stats(&self, stats: Statistics) {
        let raw = &self.shared.settings.topics.raw;
        let assigned: Vec<i32> = match self.assigned.lock() {
            Ok(a) => a.clone(),
            Err(_) => return,
        };
        let mut lags = BTreeMap::new();
        if let Some(topic) = stats.topics.get(raw) {
            for p in &assigned {
                let Some(s) = topic.partitions.get(p) else {
                    continue;
                };
                if s.hi_offset < 0 {
                    continue;
                }
                // Offsets are committed in transactions, which librdkafka's statistics do not see.
                let ours = self.shared.committed_offset(*p).unwrap_or(-1);
                let next = [ours, s.committed_offset, s.lo_offset, 0].into_iter().find(|o| *o >= 0).unwrap_or(0);
                lags.insert(*p, (s.hi_offset - next).max(0));
            }
        }
        self.shared.metrics.lag(&lags);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(%error, reason, "kafka consumer error");
    }
}

impl ConsumerContext for ProcessorContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                let partitions: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
                let lost = consumer.assignment_lost();
                tracing::info!(?partitions, lost, "partitions revoked");
                self.shared.metrics.rebalance(if lost { "lost" } else { "revoke" });
                if lost {
                    self.breaker
                        .fail(format!("partitions {partitions:?} lost (this member was expelled from the group)"));
                }
                self.revoke(Some(partitions), !lost);
            }
            Rebalance::Assign(_) => {}
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let partitions: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
            tracing::info!(?partitions, "partitions assigned");
            if let Ok(mut metadata) = self.assignment_metadata.lock() {
                *metadata = consumer.group_metadata().map(Arc::new);
            }
            self.shared.metrics.rebalance("assign");
            self.assign(tpl);
            self.shared.readiness.pass(CHECK_GROUP);
        }
    }
}

/// Creates the group consumer of one session, subscribed to the raw topic: its rebalances become `requests`
/// to the session's transaction loop, and its failures end the session through `breaker`.
pub(crate) fn create(
    shared: &Arc<Shared>,
    breaker: Arc<Breaker>,
    requests: mpsc::UnboundedSender<Request>,
) -> KafkaResult<Arc<GroupConsumer>> {
    let s = &shared.settings;
    let c = &s.consumer;
    let mut config = s.kafka.client_config();
    config
        .set("group.id", &c.group_id)
        // Offsets are committed inside the session's transactions.
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .set("session.timeout.ms", c.session_timeout_ms.to_string())
        .set("heartbeat.interval.ms", c.heartbeat_interval_ms.to_string())
        .set("fetch.wait.max.ms", c.fetch_wait_max_ms.to_string())
        .set("statistics.interval.ms", c.stats_interval_ms.to_string())
        .set("partition.assignment.strategy", "range")
        // Read-ahead is bounded per partition (each has its own queue, split for its worker): at most 1,000
        // records or 2 MB of fetched bytes, whichever comes first. The count matters as much as the bytes: the
        // byte limit counts compressed batches, and webhook bodies compress well, so behind a backlog 2 MB of
        // fetched batches per partition decompressed to hundreds of MB in all. The fetch size sets the rest
        // (`consumer.fetch_max_bytes_per_partition`: speed against memory).
        .set("queued.min.messages", "1000")
        .set("queued.max.messages.kbytes", "2048")
        .set("max.partition.fetch.bytes", c.fetch_max_bytes_per_partition.to_string())
        .set("enable.partition.eof", "false");
    let consumer: Arc<GroupConsumer> =
        Arc::new(config.create_with_context(ProcessorContext::new(shared.clone(), breaker, requests))?);
    let _ = consumer.context().consumer.set(Arc::downgrade(&consumer));
    consumer.subscribe(&[&s.topics.raw])?;
    Ok(consumer)
}

/// Polls the group consumer on a dedicated thread until `shutdown` (or the end of the session, or a fatal
/// error), then commits (unless the session failed), stops every worker and leaves the group. Returns when
/// the consumer is closed.
pub fn spawn_group_thread(
    consumer: Arc<GroupConsumer>,
    shutdown: CancellationToken,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name("hookline-group".into()).spawn(move || {
        let poller = match tokio::runtime::Builder::new_current_thread().enable_time().build() {
            Ok(rt) => rt,
            Err(e) => {
                consumer.context().shared.fail(format!("cannot start the group thread: {e}"));
                return;
            }
        };
        let ctx = consumer.context();
        poller.block_on(async {
            loop {
                tokio::select! {
                    m = consumer.recv() => match m {
                        // Partitions are split off as soon as they are assigned; a record on the main queue
                        // means one was fetched before the split. It cannot be processed in order from here,
                        // so end the session: the partitions are restored and read again.
                        Ok(m) => {
                            ctx.breaker.fail(format!(
                                "record of partition {} offset {} arrived on the group queue", m.partition(), m.offset()
                            ));
                            break;
                        }
                        Err(e) => tracing::warn!(error = %e, "group consumer error"),
                    },
                    () = shutdown.cancelled() => break,
                    () = ctx.shared.fatal.cancelled() => break,
                    () = ctx.breaker.broken() => break,
                }
            }
        });
        let commit = !ctx.breaker.is_broken() && !ctx.shared.fatal.is_cancelled();
        ctx.revoke(None, commit);
        consumer.unsubscribe();
        // Serve the revocation the unsubscribe triggers, so the group rebalances now rather than after the
        // session timeout.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            match consumer.assignment() {
                Ok(a) if a.count() == 0 => break,
                _ => {}
            }
            let _ = poller.block_on(async { tokio::time::timeout(Duration::from_millis(50), consumer.recv()).await });
        }
        tracing::info!("left the consumer group");
    })
}

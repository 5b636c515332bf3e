//! Group membership: the consumer group, its rebalances, and one worker per assigned partition.
//!
//! The group consumer is polled on a dedicated thread, where the rebalance callbacks run. On an assignment,
//! each partition's messages are split into their own queue and handed to a [`crate::partition`] worker on
//! the tokio runtime. On a revocation, the callback stops the partition's worker, waits (up to the drain
//! timeout) for the record it is processing to finish, and commits the stored offsets synchronously before
//! the rebalance proceeds: the next owner starts exactly after the last record this process finished.
//! Blocking in the callback is what makes this hand-over safe, which is why it runs on its own thread.

use std::collections::{BTreeMap, HashMap};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::Message;
use rdkafka::statistics::Statistics;
use rdkafka::TopicPartitionList;
use tokio_util::sync::CancellationToken;

use crate::partition::{self, Shared};
use crate::CHECK_GROUP;

/// The group consumer type.
pub type GroupConsumer = StreamConsumer<ProcessorContext>;

struct Worker {
    stop: CancellationToken,
    done: Receiver<()>,
}

/// Callbacks of the group consumer.
pub struct ProcessorContext {
    shared: Arc<Shared>,
    runtime: tokio::runtime::Handle,
    consumer: OnceLock<Weak<GroupConsumer>>,
    workers: Mutex<HashMap<i32, Worker>>,
}

impl std::fmt::Debug for ProcessorContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessorContext").finish_non_exhaustive()
    }
}

impl ProcessorContext {
    /// A context whose workers run on `runtime`.
    pub fn new(shared: Arc<Shared>, runtime: tokio::runtime::Handle) -> Self {
        ProcessorContext { shared, runtime, consumer: OnceLock::new(), workers: Mutex::new(HashMap::new()) }
    }

    /// Gives the context the consumer it belongs to (needed to split partition queues).
    pub fn attach(&self, consumer: &Arc<GroupConsumer>) {
        let _ = self.consumer.set(Arc::downgrade(consumer));
    }

    fn start_workers(&self, tpl: &TopicPartitionList) {
        let Some(consumer) = self.consumer.get().and_then(Weak::upgrade) else {
            self.shared.fail("partitions assigned to a consumer that is gone".into());
            return;
        };
        let Ok(mut workers) = self.workers.lock() else {
            return;
        };
        for elem in tpl.elements() {
            let (topic, partition) = (elem.topic().to_owned(), elem.partition());
            let Some(queue) = consumer.split_partition_queue(&topic, partition) else {
                self.shared.fail(format!("cannot split the queue of {topic} partition {partition}"));
                continue;
            };
            let stop = CancellationToken::new();
            let (done_tx, done_rx) = std::sync::mpsc::sync_channel(1);
            self.runtime.spawn(partition::run(
                self.shared.clone(),
                consumer.clone(),
                queue,
                topic,
                partition,
                stop.clone(),
                done_tx,
            ));
            workers.insert(partition, Worker { stop, done: done_rx });
        }
        self.shared.metrics.assigned(workers.len());
    }

    /// Stops the workers of `partitions` (all when `None`) and waits for them, up to the drain timeout.
    fn stop_workers(&self, partitions: Option<Vec<i32>>) {
        let stopping: Vec<(i32, Worker)> = {
            let Ok(mut workers) = self.workers.lock() else {
                return;
            };
            let chosen: Vec<i32> = partitions.unwrap_or_else(|| workers.keys().copied().collect());
            let out = chosen.into_iter().filter_map(|p| workers.remove(&p).map(|w| (p, w))).collect();
            self.shared.metrics.assigned(workers.len());
            out
        };
        for (_, w) in &stopping {
            w.stop.cancel();
        }
        let deadline = Instant::now() + self.shared.settings.drain_timeout;
        for (p, w) in stopping {
            match w.done.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(()) | Err(RecvTimeoutError::Disconnected) => {}
                Err(RecvTimeoutError::Timeout) => {
                    tracing::warn!(partition = p, "partition worker did not finish within the drain timeout");
                }
            }
        }
    }

    fn commit(&self, consumer: &BaseConsumer<Self>) {
        match consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) => {}
            // Nothing processed since the last commit.
            Err(KafkaError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::NoOffset)) => {}
            Err(e) => {
                tracing::warn!(error = %e, "offset commit failed; the next owner re-reads and deduplicates")
            }
        }
    }
}

impl ClientContext for ProcessorContext {
    fn stats(&self, stats: Statistics) {
        let raw = &self.shared.settings.topics.raw;
        let assigned: Vec<i32> = match self.workers.lock() {
            Ok(w) => w.keys().copied().collect(),
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
                let next =
                    [s.stored_offset, s.committed_offset, s.lo_offset, 0].into_iter().find(|o| *o >= 0).unwrap_or(0);
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
                tracing::info!(?partitions, lost = consumer.assignment_lost(), "partitions revoked; draining");
                self.stop_workers(Some(partitions));
                if !consumer.assignment_lost() {
                    self.commit(consumer);
                }
            }
            Rebalance::Assign(_) => {}
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let partitions: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
            tracing::info!(?partitions, "partitions assigned");
            self.start_workers(tpl);
            self.shared.readiness.pass(CHECK_GROUP);
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        match result {
            Ok(()) | Err(KafkaError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::NoOffset)) => {}
            Err(e) => tracing::warn!(error = %e, "offset commit failed"),
        }
    }
}

/// Creates the group consumer, subscribed to the raw topic.
pub fn create(shared: &Arc<Shared>, runtime: tokio::runtime::Handle) -> KafkaResult<Arc<GroupConsumer>> {
    let s = &shared.settings;
    let c = &s.consumer;
    let mut config = s.kafka.client_config();
    config
        .set("group.id", &c.group_id)
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", c.commit_interval_ms.to_string())
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .set("session.timeout.ms", c.session_timeout_ms.to_string())
        .set("heartbeat.interval.ms", c.heartbeat_interval_ms.to_string())
        .set("fetch.wait.max.ms", c.fetch_wait_max_ms.to_string())
        .set("statistics.interval.ms", c.stats_interval_ms.to_string())
        .set("partition.assignment.strategy", "range")
        .set("enable.partition.eof", "false");
    let consumer: Arc<GroupConsumer> =
        Arc::new(config.create_with_context(ProcessorContext::new(shared.clone(), runtime))?);
    consumer.context().attach(&consumer);
    consumer.subscribe(&[&s.topics.raw])?;
    Ok(consumer)
}

/// Polls the group consumer on a dedicated thread until `shutdown`, then stops every worker, commits and
/// leaves the group. Returns when the consumer is closed.
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
        poller.block_on(async {
            loop {
                tokio::select! {
                    m = consumer.recv() => match m {
                        // Partitions are split off as soon as they are assigned; a record on the main queue
                        // means one was fetched before the split. It cannot be processed in order from here,
                        // so stop: a restart re-reads it from the last commit.
                        Ok(m) => {
                            let reason = format!(
                                "record of partition {} offset {} arrived on the group queue", m.partition(), m.offset()
                            );
                            consumer.context().shared.fail(reason);
                            break;
                        }
                        Err(e) => tracing::warn!(error = %e, "group consumer error"),
                    },
                    () = shutdown.cancelled() => break,
                    () = consumer.context().shared.fatal.cancelled() => break,
                }
            }
        });
        let ctx = consumer.context();
        ctx.stop_workers(None);
        if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
            if !matches!(e, KafkaError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::NoOffset)) {
                tracing::warn!(error = %e, "final offset commit failed");
            }
        }
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

//! Group membership: the consumer group, its rebalances, and one worker (running keys concurrently) per assigned
//! partition.
//!
//! The group consumer is polled on a dedicated thread, where the rebalance callbacks run. On an assignment,
//! each partition's messages are split into their own queue and handed to a [`crate::partition`] worker,
//! which waits for the partition's state to be restored ([`crate::recovery`], one blocking task per
//! assignment) before processing. On a revocation, the callback stops the partitions' workers and waits for
//! them: running records finish, a last checkpoint is written, and the stored offsets are committed
//! synchronously before the rebalance proceeds, so the next owner starts exactly after the last record this
//! process finished. Blocking in the callback is what makes the hand-over safe, which is why it runs on its
//! own thread.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::Message;
use rdkafka::statistics::Statistics;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::partition::{self, Session, Shared, StopSignal, WorkerArgs};
use crate::recovery::{self, Recovered, RecoveryError};
use crate::telemetry::Retry;
use crate::CHECK_GROUP;

/// The group consumer type.
pub type GroupConsumer = StreamConsumer<ProcessorContext>;

struct Worker {
    stop: StopSignal,
    done: Receiver<()>,
}

/// Callbacks of the group consumer.
pub struct ProcessorContext {
    shared: Arc<Shared>,
    session: Arc<Session>,
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
    pub fn new(shared: Arc<Shared>, session: Arc<Session>, runtime: tokio::runtime::Handle) -> Self {
        ProcessorContext { shared, session, runtime, consumer: OnceLock::new(), workers: Mutex::new(HashMap::new()) }
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
        let mut batch = Vec::new();
        for elem in tpl.elements() {
            let (topic, partition) = (elem.topic().to_owned(), elem.partition());
            let Some(queue) = consumer.split_partition_queue(&topic, partition) else {
                self.shared.fail(format!("cannot split the queue of {topic} partition {partition}"));
                continue;
            };
            let stop = StopSignal { token: CancellationToken::new(), lost: Arc::new(AtomicBool::new(false)) };
            let (done_tx, done_rx) = std::sync::mpsc::sync_channel(1);
            let (recovered_tx, recovered_rx) = oneshot::channel();
            self.runtime.spawn(partition::run(WorkerArgs {
                shared: self.shared.clone(),
                session: self.session.clone(),
                consumer: consumer.clone(),
                queue,
                partition,
                recovered: recovered_rx,
                stop: stop.clone(),
                done: done_tx,
            }));
            batch.push((partition, recovered_tx, stop.token.clone()));
            workers.insert(partition, Worker { stop, done: done_rx });
        }
        self.shared.metrics.assigned(workers.len());
        if !batch.is_empty() {
            self.runtime.spawn(restore(self.shared.clone(), consumer, batch));
        }
    }

    /// Stops the workers of `partitions` (all when `None`) and waits for them.
    fn stop_workers(&self, partitions: Option<Vec<i32>>, lost: bool) {
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
            w.stop.lost.store(lost, Ordering::SeqCst);
            w.stop.token.cancel();
        }
        // A worker drains within the drain timeout and then writes its last checkpoint (bounded too); past
        // that it stops the process itself.
        let deadline = Instant::now() + self.shared.settings.drain_timeout * 2 + Duration::from_secs(10);
        for (p, w) in stopping {
            match w.done.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(()) | Err(RecvTimeoutError::Disconnected) => {}
                Err(RecvTimeoutError::Timeout) => {
                    self.shared.fail(format!("the worker of partition {p} did not stop in time"));
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
                tracing::warn!(error = %e, "offset commit failed; the next owner reads back from the changelog")
            }
        }
    }
}

/// Restores a newly assigned batch of partitions and hands each worker its recovery. Retries while Kafka or
/// the store fail; gives up when every partition of the batch was revoked.
async fn restore(
    shared: Arc<Shared>,
    consumer: Arc<GroupConsumer>,
    batch: Vec<(i32, oneshot::Sender<Recovered>, CancellationToken)>,
) {
    let stop = CancellationToken::new();
    let watcher = {
        let stop = stop.clone();
        let tokens: Vec<CancellationToken> = batch.iter().map(|(_, _, t)| t.clone()).collect();
        tokio::spawn(async move {
            for t in tokens {
                t.cancelled().await;
            }
            stop.cancel();
        })
    };
    let partitions: Vec<i32> = batch.iter().map(|(p, _, _)| *p).collect();
    let started = Instant::now();
    let mut backoff = Duration::from_millis(500);
    let recovered = loop {
        let attempt = {
            let (shared, consumer, partitions, stop) =
                (shared.clone(), consumer.clone(), partitions.clone(), stop.clone());
            tokio::task::spawn_blocking(move || {
                let committed = committed_offsets(&consumer, &shared.settings.topics.raw, &partitions)?;
                recovery::recover(&shared.settings, &shared.store, &partitions, &committed, &stop)
            })
            .await
        };
        match attempt {
            Ok(Ok(r)) => break r,
            Ok(Err(RecoveryError::Stopped)) => {
                watcher.abort();
                return;
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, ?partitions, retry_in = ?backoff, "cannot restore partitions yet");
                shared.metrics.retry(Retry::Restore);
            }
            Err(join) => {
                shared.fail(format!("the restore task failed: {join}"));
                watcher.abort();
                return;
            }
        }
        tokio::select! {
            () = tokio::time::sleep(crate::output::jittered(backoff)) => {}
            () = stop.cancelled() => {
                watcher.abort();
                return;
            }
        }
        backoff = (backoff * 2).min(Duration::from_secs(10));
    };
    watcher.abort();
    let (from_changelog, from_outputs) =
        recovered.values().fold((0, 0), |(c, o), r| (c + r.from_changelog, o + r.from_outputs));
    let seconds = started.elapsed().as_secs_f64();
    shared.metrics.restored(seconds, from_changelog, from_outputs);
    for (waited, released) in recovered.values().filter_map(|r| r.handoff) {
        shared.metrics.handoff(waited.as_secs_f64(), released);
    }
    tracing::info!(?partitions, seconds, from_changelog, from_outputs, "partitions restored");
    let mut recovered = recovered;
    for (p, tx, _) in batch {
        let _ = tx.send(recovered.remove(&p).unwrap_or_default());
    }
}

fn committed_offsets(
    consumer: &GroupConsumer,
    topic: &str,
    partitions: &[i32],
) -> Result<HashMap<i32, Option<i64>>, RecoveryError> {
    let kafka = |e: KafkaError| RecoveryError::Kafka { topic: topic.to_owned(), error: e.to_string() };
    let mut tpl = TopicPartitionList::new();
    for p in partitions {
        tpl.add_partition(topic, *p);
    }
    let committed = consumer.committed_offsets(tpl, Duration::from_secs(10)).map_err(kafka)?;
    Ok(committed
        .elements()
        .iter()
        .map(|e| {
            let offset = match e.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            };
            (e.partition(), offset)
        })
        .collect())
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
                let lost = consumer.assignment_lost();
                tracing::info!(?partitions, lost, "partitions revoked; draining");
                self.shared.metrics.rebalance(if lost { "lost" } else { "revoke" });
                self.stop_workers(Some(partitions), lost);
                if !lost {
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
            self.shared.metrics.rebalance("assign");
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
pub fn create(
    shared: &Arc<Shared>,
    session: &Arc<Session>,
    runtime: tokio::runtime::Handle,
) -> KafkaResult<Arc<GroupConsumer>> {
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
        // Read-ahead is bounded per partition (each has its own queue, split for its worker): at most 1,000
        // records or 2 MB of fetched bytes, whichever comes first. The count matters as much as the bytes: the
        // byte limit counts compressed batches, and webhook bodies compress well, so behind a backlog 2 MB of
        // fetched batches per partition decompressed to hundreds of MB in all. For the same reason a partition
        // fetch is capped at 256 KB (a batch larger than that is still fetched whole).
        .set("queued.min.messages", "1000")
        .set("queued.max.messages.kbytes", "2048")
        .set("max.partition.fetch.bytes", "262144")
        .set("enable.partition.eof", "false");
    let consumer: Arc<GroupConsumer> =
        Arc::new(config.create_with_context(ProcessorContext::new(shared.clone(), session.clone(), runtime))?);
    consumer.context().attach(&consumer);
    consumer.subscribe(&[&s.topics.raw])?;
    Ok(consumer)
}

/// Polls the group consumer on a dedicated thread until `shutdown` (or the end of the session, or a fatal
/// error), then stops every worker, commits and leaves the group. Returns when the consumer is closed.
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
                            ctx.session.fail(format!(
                                "record of partition {} offset {} arrived on the group queue", m.partition(), m.offset()
                            ));
                            break;
                        }
                        Err(e) => tracing::warn!(error = %e, "group consumer error"),
                    },
                    () = shutdown.cancelled() => break,
                    () = ctx.shared.fatal.cancelled() => break,
                    () = ctx.session.broken.cancelled() => break,
                }
            }
        });
        ctx.stop_workers(None, false);
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

//! One session: a generation of Kafka clients (the group consumer and a transactional producer), the
//! workers of the partitions assigned to it, and the loop that commits their work in transactions.
//!
//! # The guarantee
//!
//! Every raw record yields exactly one outcome: its events (on every topic its routes name), or one DLQ
//! record, or nothing when it is a duplicate of a webhook already processed within its source's dedup window
//! (or when all its events are filtered out). It rests on one mechanism, Kafka transactions (KIP-98, and
//! KIP-447 for consumer-group fencing): a record's outputs, its dedup entry on the state changelog and a
//! consumed offset covering it are committed in one transaction, so for a read_committed reader they appear
//! together or not at all. After any failure, the records from the committed offset on are processed again
//! against the committed dedup state, and anything published for them before was aborted.
//!
//! Fencing: the consumed offsets are sent with the consumer's group metadata. A processor that lost its
//! partitions without knowing it (frozen, or cut off from the cluster, for longer than its session timeout)
//! cannot commit: the group coordinator rejects its stale generation, and the transaction coordinator aborts
//! a transaction left open longer than `consumer.transaction_timeout_ms`. Its outputs are never visible.
//!
//! # The loop
//!
//! Every `consumer.commit_interval_ms`, [`Transactions::commit`] pauses every worker ([`crate::partition`]),
//! which answers once Kafka stored everything it sent in the transaction (outputs, and dedup entries and
//! tombstones on the changelog), commits with their offsets, applies their dedup changes to RocksDB and
//! resumes them. On a revocation it
//! commits first, then stops the revoked workers while they are paused. Any failure to commit ends the
//! session: the transaction is aborted, the clients are dropped, and [`crate::run`] starts a new session,
//! whose producer (same transactional id) fences whatever the old one left behind.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use hookline_runtime::admin::Readiness;
use rdkafka::consumer::stream_consumer::StreamPartitionQueue;
use rdkafka::consumer::Consumer;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::consumer::GroupConsumer;
use crate::output::Outputs;
use crate::partition::{self, store_call, Command, Interrupt, Progress};
use crate::pipeline::Pipeline;
use crate::store::{Positions, Store};
use crate::telemetry::Metrics;
use crate::{ProcessorContext, Settings};

/// What every session of the process shares.
pub struct Shared {
    /// The validated config.
    pub settings: Settings,
    /// The state store.
    pub store: Store,
    /// The compiled pipelines.
    pub pipeline: Pipeline,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Readiness checks.
    pub readiness: Arc<Readiness>,
    /// The DLQ topic.
    pub dlq_topic: Arc<str>,
    /// The state changelog topic.
    pub state_topic: Arc<str>,
    /// Cancelled when the process must stop because of an unrecoverable error.
    pub fatal: CancellationToken,
    /// The unrecoverable error.
    pub fatal_reason: Mutex<Option<String>>,
    /// Records whose event Kafka refused for good, by (partition, offset), with why: the transaction that
    /// sent it aborted, and the record goes to the DLQ when processed again.
    rejected: Mutex<HashMap<(i32, i64), String>>,
    /// The raw offset last committed per partition, for the lag metric.
    committed: Mutex<HashMap<i32, i64>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("store", &self.store).finish_non_exhaustive()
    }
}

impl Shared {
    /// Process-wide state.
    pub fn new(
        settings: Settings,
        store: Store,
        pipeline: Pipeline,
        metrics: Arc<Metrics>,
        readiness: Arc<Readiness>,
    ) -> Self {
        Shared {
            dlq_topic: Arc::from(settings.topics.dlq.as_str()),
            state_topic: Arc::from(settings.topics.state.as_str()),
            settings,
            store,
            pipeline,
            metrics,
            readiness,
            fatal: CancellationToken::new(),
            fatal_reason: Mutex::new(None),
            rejected: Mutex::new(HashMap::new()),
            committed: Mutex::new(HashMap::new()),
        }
    }

    /// Stops the process with `reason` (the first reason given wins).
    pub(crate) fn fail(&self, reason: String) {
        tracing::error!(%reason, "processor stopping on an unrecoverable error");
        if let Ok(mut r) = self.fatal_reason.lock() {
            r.get_or_insert(reason);
        }
        self.fatal.cancel();
    }

    pub(crate) fn reject(&self, partition: i32, offset: i64, reason: String) {
        if let Ok(mut r) = self.rejected.lock() {
            r.insert((partition, offset), reason);
        }
    }

    /// The raw offset this process last committed for `partition`.
    pub(crate) fn committed_offset(&self, partition: i32) -> Option<i64> {
        self.committed.lock().ok()?.get(&partition).copied()
    }

    pub(crate) fn take_rejected(&self, partition: i32, offset: i64) -> Option<String> {
        self.rejected.lock().ok()?.remove(&(partition, offset))
    }
}

/// What the group thread asks of the session.
pub(crate) enum Request {
    /// Partitions were assigned: start their workers.
    Assign(Vec<(i32, StreamPartitionQueue<ProcessorContext>)>),
    /// Partitions (all when `None`) are being revoked: commit what they did if `commit`, stop their workers,
    /// then answer.
    Revoke { partitions: Option<Vec<i32>>, commit: bool, done: std::sync::mpsc::SyncSender<()> },
}

/// One generation of Kafka clients. A failure ends it; [`crate::run`] then starts another.
pub struct Session {
    /// The transactional producer.
    pub outputs: Outputs,
    /// Cancelled when the session cannot go on.
    pub broken: CancellationToken,
    /// Why.
    pub reason: Mutex<Option<String>>,
    /// Cancelled once the group thread is done: the transaction loop stops its workers and ends.
    closed: CancellationToken,
    requests: mpsc::UnboundedSender<Request>,
    inbox: Mutex<Option<mpsc::UnboundedReceiver<Request>>>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("broken", &self.broken.is_cancelled()).finish_non_exhaustive()
    }
}

impl Session {
    /// A session publishing with `outputs` (initialized).
    pub fn new(outputs: Outputs) -> Self {
        let (requests, inbox) = mpsc::unbounded_channel();
        Session {
            outputs,
            broken: CancellationToken::new(),
            reason: Mutex::new(None),
            closed: CancellationToken::new(),
            requests,
            inbox: Mutex::new(Some(inbox)),
        }
    }

    /// Ends the session with `reason`.
    pub(crate) fn fail(&self, reason: String) {
        if !self.broken.is_cancelled() {
            tracing::warn!(%reason, "aborting the transaction and starting a new session");
        }
        if let Ok(mut r) = self.reason.lock() {
            r.get_or_insert(reason);
        }
        self.broken.cancel();
    }

    /// Ends the transaction loop (after the group thread is done: no request can come any more).
    pub(crate) fn close(&self) {
        self.closed.cancel();
    }

    /// Sends a request to the transaction loop; false when the loop is gone.
    pub(crate) fn request(&self, request: Request) -> bool {
        self.requests.send(request).is_ok()
    }

    /// Starts the transaction loop of this session. Call once.
    pub(crate) fn start(self: &Arc<Self>, shared: Arc<Shared>, consumer: Arc<GroupConsumer>) -> JoinHandle<()> {
        let inbox = self.inbox.lock().ok().and_then(|mut i| i.take());
        let session = self.clone();
        tokio::spawn(async move {
            let Some(inbox) = inbox else {
                return;
            };
            Transactions { shared, session, consumer, workers: HashMap::new() }.run(inbox).await;
        })
    }
}

struct WorkerHandle {
    commands: mpsc::UnboundedSender<Command>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

struct Transactions {
    shared: Arc<Shared>,
    session: Arc<Session>,
    consumer: Arc<GroupConsumer>,
    workers: HashMap<i32, WorkerHandle>,
}

impl Transactions {
    async fn run(mut self, mut inbox: mpsc::UnboundedReceiver<Request>) {
        let mut ticker = tokio::time::interval(self.shared.settings.commit_interval());
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                request = inbox.recv() => match request {
                    Some(Request::Assign(queues)) => self.assign(queues),
                    Some(Request::Revoke { partitions, commit, done }) => {
                        if commit && !self.session.broken.is_cancelled() {
                            self.commit().await;
                        }
                        let partitions = partitions.unwrap_or_else(|| self.workers.keys().copied().collect());
                        self.stop(&partitions).await;
                        let _ = done.send(());
                    }
                    None => break,
                },
                () = self.session.closed.cancelled() => break,
                _ = ticker.tick(), if !self.session.broken.is_cancelled() => self.commit().await,
                () = self.session.broken.cancelled(), if !self.workers.is_empty() => {
                    let all: Vec<i32> = self.workers.keys().copied().collect();
                    self.stop(&all).await;
                }
            }
        }
        let all: Vec<i32> = self.workers.keys().copied().collect();
        self.stop(&all).await;
    }

    fn assign(&mut self, queues: Vec<(i32, StreamPartitionQueue<ProcessorContext>)>) {
        for (partition, queue) in queues {
            let (commands, inbox) = mpsc::unbounded_channel();
            let stop = CancellationToken::new();
            let task = tokio::spawn(partition::run(
                self.shared.clone(),
                self.session.clone(),
                partition,
                queue,
                inbox,
                stop.clone(),
            ));
            if let Some(old) = self.workers.insert(partition, WorkerHandle { commands, stop, task }) {
                old.stop.cancel();
            }
        }
        self.shared.metrics.assigned(self.workers.len());
    }

    async fn stop(&mut self, partitions: &[i32]) {
        let stopping: Vec<WorkerHandle> = partitions.iter().filter_map(|p| self.workers.remove(p)).collect();
        for w in &stopping {
            w.stop.cancel();
        }
        for w in stopping {
            let _ = w.task.await;
        }
        for p in partitions {
            if let Ok(mut committed) = self.shared.committed.lock() {
                committed.remove(p);
            }
        }
        self.shared.metrics.assigned(self.workers.len());
    }

    /// Pauses the workers, commits their work in the open transaction, and resumes them. On failure the
    /// session ends (the workers stay paused until they are stopped).
    async fn commit(&mut self) {
        let started = Instant::now();
        match self.try_commit().await {
            Ok(true) => self.shared.metrics.committed(started.elapsed().as_secs_f64()),
            Ok(false) => {}
            Err(Interrupt::Stopped) => {}
            Err(Interrupt::Session(reason)) => {
                self.shared.metrics.aborted();
                self.abort().await;
                self.session.fail(reason);
            }
            Err(Interrupt::Process(reason)) => {
                self.abort().await;
                self.shared.fail(reason);
            }
        }
        if !self.session.broken.is_cancelled() {
            for w in self.workers.values() {
                let _ = w.commands.send(Command::Resume);
            }
        }
    }

    async fn abort(&self) {
        let session = self.session.clone();
        let _ = tokio::task::spawn_blocking(move || session.outputs.abort()).await;
    }

    /// Returns whether a transaction was committed (false when there was nothing to commit).
    async fn try_commit(&mut self) -> Result<bool, Interrupt> {
        let drain = self.shared.settings.drain_timeout;
        let mut waiting = Vec::with_capacity(self.workers.len());
        for (p, w) in &self.workers {
            let (reply, progress) = oneshot::channel();
            if w.commands.send(Command::Pause(reply)).is_ok() {
                waiting.push((*p, progress));
            }
        }
        let mut progress: HashMap<i32, Progress> = HashMap::with_capacity(waiting.len());
        for (p, reply) in waiting {
            match tokio::time::timeout(drain, reply).await {
                Ok(Ok(pr)) => {
                    progress.insert(p, pr);
                }
                // The worker stopped (its session failed, or it was told to): it reports why itself.
                Ok(Err(_)) => return Err(Interrupt::Stopped),
                Err(_) => {
                    return Err(Interrupt::Session(format!(
                        "partition {p}: records still running after the drain timeout ({drain:?})"
                    )))
                }
            }
        }
        if self.session.broken.is_cancelled() {
            return Err(Interrupt::Stopped);
        }

        if !progress.values().any(|pr| pr.has_work()) {
            return Ok(false);
        }

        let mut offsets = TopicPartitionList::new();
        for (p, pr) in &progress {
            if let Some(next) = pr.next_offset {
                let _ = offsets.add_partition_offset(&self.shared.settings.topics.raw, *p, Offset::Offset(next));
            }
        }
        tracing::debug!(partitions = progress.len(), offsets = offsets.count(), "committing");
        let Some(group) = self.consumer.group_metadata() else {
            return Err(Interrupt::Session("the consumer has no group metadata".into()));
        };
        let session = self.session.clone();
        let committed = tokio::task::spawn_blocking(move || session.outputs.commit(&offsets, &group)).await;
        match committed {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(Interrupt::Session(format!("transaction not committed: {e}"))),
            Err(e) => return Err(Interrupt::Process(format!("the commit task failed: {e}"))),
        }

        tracing::debug!("committed");
        // Committed: the cache learns what the changelog now says.
        for (p, pr) in progress {
            if !pr.has_work() {
                continue;
            }
            let (next, changes, expired) = (pr.next_offset, pr.changes, pr.expired);
            let at = Positions { changelog: pr.changelog_next, raw: next };
            store_call(&self.shared, &CancellationToken::new(), move |s| s.apply(p, &changes, &expired, at)).await?;
            if let (Some(next), Ok(mut committed)) = (next, self.shared.committed.lock()) {
                committed.insert(p, next);
            }
        }
        Ok(true)
    }
}

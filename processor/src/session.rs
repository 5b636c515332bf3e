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
//! Fencing: every transaction carries consumed offsets, sent with the group metadata of the assignment
//! (member id and generation, [`crate::consumer::ProcessorContext::assignment_metadata`]). A processor that
//! lost its partitions without knowing it (frozen, or cut off from the cluster, for longer than its session
//! timeout) cannot commit: the group coordinator rejects its stale generation, and the transaction
//! coordinator aborts a transaction left open longer than `consumer.transaction_timeout_ms`. Its outputs
//! are never visible. One frozen after its offsets were accepted but before its commit can still commit
//! when it wakes; the next owner waits for that before restoring ([`crate::restore`]).
//!
//! # The loop
//!
//! Every `consumer.commit_interval_ms`, [`Transactions::commit`] pauses every worker ([`crate::partition`]),
//! which answers once Kafka stored everything it sent in the transaction (outputs, and dedup entries and
//! tombstones on the changelog), commits with their offsets, applies their dedup changes to RocksDB and
//! resumes them. On a revocation it commits first, then stops the revoked workers while they are paused. Any
//! failure to commit ends the session ([`Breaker`]): the transaction is aborted, the clients are dropped, and
//! [`crate::run`] starts a new session, whose producer (same transactional id) fences whatever the old one
//! left behind.
//!
//! The layers, without import cycles: this loop; one worker per partition ([`crate::partition`]); the group
//! consumer ([`crate::consumer`]), whose rebalances arrive here as requests; what one record becomes, without
//! I/O ([`crate::process`], [`crate::pipeline`]). Beside them: the producer ([`crate::output`]), the state
//! ([`crate::store`], [`crate::changelog`], [`crate::restore`]) and what they share ([`crate::shared`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rdkafka::consumer::stream_consumer::StreamPartitionQueue;
use rdkafka::consumer::Consumer;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::consumer::{GroupConsumer, ProcessorContext, Request};
use crate::output::Outputs;
use crate::partition::{self, Command, Progress};
use crate::shared::{store_call, Breaker, Interrupt, Shared};
use crate::store::Positions;

/// One generation of Kafka clients. A failure ends it; [`crate::run`] then starts another.
pub struct Session {
    /// The transactional producer.
    pub outputs: Arc<Outputs>,
    /// Ends the session; says why.
    pub breaker: Arc<Breaker>,
    /// The group thread's requests to the transaction loop.
    pub(crate) requests: mpsc::UnboundedSender<Request>,
    /// Cancelled once the group thread is done: the transaction loop stops its workers and ends.
    closed: CancellationToken,
    inbox: Mutex<Option<mpsc::UnboundedReceiver<Request>>>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("broken", &self.breaker.is_broken()).finish_non_exhaustive()
    }
}

impl Session {
    /// A session publishing with `outputs` (initialized).
    pub fn new(outputs: Outputs) -> Self {
        let (requests, inbox) = mpsc::unbounded_channel();
        Session {
            outputs: Arc::new(outputs),
            breaker: Arc::new(Breaker::default()),
            requests,
            closed: CancellationToken::new(),
            inbox: Mutex::new(Some(inbox)),
        }
    }

    /// Ends the transaction loop (after the group thread is done: no request can come any more).
    pub(crate) fn close(&self) {
        self.closed.cancel();
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
                        if commit && !self.session.breaker.is_broken() {
                            self.commit().await;
                        }
                        let partitions = partitions.unwrap_or_else(|| self.workers.keys().copied().collect());
                        self.stop(&partitions).await;
                        let _ = done.send(());
                    }
                    None => break,
                },
                () = self.session.closed.cancelled() => break,
                _ = ticker.tick(), if !self.session.breaker.is_broken() => self.commit().await,
                () = self.session.breaker.broken(), if !self.workers.is_empty() => {
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
            let parts = partition::SessionParts {
                outputs: self.session.outputs.clone(),
                group: self.consumer.clone(),
                breaker: self.session.breaker.clone(),
            };
            let task = tokio::spawn(partition::run(self.shared.clone(), parts, partition, queue, inbox, stop.clone()));
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
                self.session.breaker.fail(reason);
            }
            Err(Interrupt::Process(reason)) => {
                self.abort().await;
                self.shared.fail(reason);
            }
        }
        if !self.session.breaker.is_broken() {
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
        if self.session.breaker.is_broken() {
            return Err(Interrupt::Stopped);
        }

        if !progress.values().any(|pr| pr.has_work()) {
            return Ok(false);
        }

        // Every partition with work commits its offset (a worker that only swept expired entries commits the
        // offset it already had): a transaction without offsets would not be fenced.
        let mut offsets = TopicPartitionList::new();
        for (p, pr) in progress.iter().filter(|(_, pr)| pr.has_work()) {
            let Some(next) = pr.next_offset else {
                return Err(Interrupt::Process(format!("partition {p} has work to commit but no offset")));
            };
            let _ = offsets.add_partition_offset(&self.shared.settings.topics.raw, *p, Offset::Offset(next));
        }
        tracing::debug!(partitions = progress.len(), offsets = offsets.count(), "committing");
        let Some(group) = self.consumer.context().assignment_metadata() else {
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
        // Committed: the cache learns what the changelog now says, every partition in one blocking call (a
        // retry applies them all again, which changes nothing).
        let applied: Vec<(i32, Progress)> = progress.into_iter().filter(|(_, pr)| pr.has_work()).collect();
        let applied = Arc::new(applied);
        let batches = applied.clone();
        store_call(&self.shared, &CancellationToken::new(), move |s| {
            for (p, pr) in batches.iter() {
                let at = Positions { changelog: pr.changelog_next, raw: pr.next_offset };
                s.apply(*p, &pr.changes, &pr.expired, at)?;
            }
            Ok(())
        })
        .await?;
        if let Ok(mut committed) = self.shared.committed.lock() {
            committed.extend(applied.iter().filter_map(|(p, pr)| Some((*p, pr.next_offset?))));
        }
        Ok(true)
    }
}

//! The worker of one assigned raw partition.
//!
//! # The guarantee
//!
//! Every raw record yields exactly one outcome: its events (on every topic its routes name), or one DLQ
//! record, or nothing when it is a duplicate of a webhook already processed within its source's dedup window
//! (or when all its events are filtered out). This holds across kill -9 at any instant, broker restarts, and
//! partitions moving between processes. It rests on three orderings:
//!
//! 1. a record's dedup entry is stored only after all its outputs were acknowledged by Kafka;
//! 2. entries reach the changelog, then the local store, before the raw offset covering them is committed;
//! 3. the committed offset only ever covers a gap-free prefix of completed records.
//!
//! After a crash, the records from the committed offset on are read again. [`crate::recovery`] has rebuilt
//! the entries and read back the outputs published after the last checkpoint, so each record read again is
//! either a known duplicate (dropped), or has outputs already (completed, never republished), or has none
//! (processed normally). Transactions are not used: this design was made on a broker (Tansu 0.6.0) that
//! showed aborted records to read_committed readers; now that Apache Kafka is the reference, transactions
//! are the next step (they would also close the gap below).
//!
//! What it does not cover: a process frozen (SIGSTOP, a VM pause) for longer than the session timeout keeps
//! believing it owns its partitions when it resumes, and can publish the records it had in flight a second
//! time before librdkafka tells it they are gone. Kafka transactions would fence it; see the README.
//!
//! # The loop
//!
//! Records are admitted in offset order into the [`Scheduler`], which runs records of different keys
//! concurrently (up to `consumer.max_in_flight_per_partition`) and one key's records in order. Each record
//! runs as a task: dedup lookup (in memory, then RocksDB on a blocking thread), pipeline, publish. Every
//! `consumer.commit_interval_ms` a checkpoint writes the entries of completed records to the changelog, then
//! to RocksDB with the checkpoint, then stores the prefix's offset for the group commit.
//!
//! On revocation or shutdown the worker stops admitting, lets running records finish (they do not start new
//! sends once stopped), writes a last checkpoint and hands the partition over. A record whose send is still
//! unacknowledged at the drain deadline may yet be stored by Kafka; rather than hand over a partition with
//! outputs in the air, the process stops (and restarts clean).

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::hash::BuildHasher;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hookline_runtime::admin::Readiness;
use hookline_schemas::dlq::{ErrorClass, Stage};
use rdkafka::consumer::stream_consumer::StreamPartitionQueue;
use rdkafka::consumer::Consumer;
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::oneshot;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::changelog::ChangelogRecord;
use crate::consumer::GroupConsumer;
use crate::output::{OutputLog, OutputRecord, Outputs, PublishError};
use crate::pipeline::{Decision, Failure, Pipeline};
use crate::process::{decide, identify, plan, remaining, Envelope, Identity};
use crate::recovery::{Emitted, Recovered};
use crate::scheduler::Scheduler;
use crate::store::{Checkpoint, Entry, Store, StoreError};
use crate::telemetry::{Metrics, Retry};
use crate::{ProcessorContext, Settings, CHECK_STATE};

/// A checkpoint is written at least this often, even on an idle partition, so the changelog always holds a
/// recent one (its retention would otherwise drop the last checkpoint of a long-idle partition).
const KEEPALIVE: Duration = Duration::from_secs(3600);

/// What every worker of the process shares.
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
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("store", &self.store).finish_non_exhaustive()
    }
}

impl Shared {
    /// Stops the process with `reason` (the first reason given wins).
    pub(crate) fn fail(&self, reason: String) {
        tracing::error!(%reason, "processor stopping on an unrecoverable error");
        if let Ok(mut r) = self.fatal_reason.lock() {
            r.get_or_insert(reason);
        }
        self.fatal.cancel();
    }
}

/// One generation of Kafka clients: the output producer (the group consumer lives beside it). A fatal
/// producer error ends the session; the processor then recreates both clients and recovers its partitions.
pub struct Session {
    /// The output producer.
    pub outputs: Outputs,
    /// Cancelled when the session's clients cannot go on.
    pub broken: CancellationToken,
    /// Why.
    pub reason: Mutex<Option<String>>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("broken", &self.broken.is_cancelled()).finish_non_exhaustive()
    }
}

impl Session {
    /// A session publishing with `outputs`.
    pub fn new(outputs: Outputs) -> Self {
        Session { outputs, broken: CancellationToken::new(), reason: Mutex::new(None) }
    }

    /// Ends the session with `reason`.
    pub(crate) fn fail(&self, reason: String) {
        tracing::error!(%reason, "Kafka clients failed; recreating them");
        if let Ok(mut r) = self.reason.lock() {
            r.get_or_insert(reason);
        }
        self.broken.cancel();
    }
}

/// How a worker is told to stop.
#[derive(Debug, Clone)]
pub struct StopSignal {
    /// Cancelled to stop.
    pub token: CancellationToken,
    /// Set when the partition was lost (another member may own it already): no last checkpoint is written.
    pub lost: Arc<AtomicBool>,
}

/// Everything a worker starts with.
#[allow(missing_debug_implementations)]
pub struct WorkerArgs {
    /// Process-wide state.
    pub shared: Arc<Shared>,
    /// The session's clients.
    pub session: Arc<Session>,
    /// The group consumer (for storing offsets).
    pub consumer: Arc<GroupConsumer>,
    /// The partition's own message queue.
    pub queue: StreamPartitionQueue<ProcessorContext>,
    /// The raw partition.
    pub partition: i32,
    /// The partition's recovery, delivered once the changelog and outputs were read back.
    pub recovered: oneshot::Receiver<Recovered>,
    /// Stop signal.
    pub stop: StopSignal,
    /// Dropped when the worker is done.
    pub done: std::sync::mpsc::SyncSender<()>,
}

/// Per-partition state shared by the worker and its record tasks.
struct Ctx {
    shared: Arc<Shared>,
    session: Arc<Session>,
    partition: i32,
    log: Mutex<OutputLog>,
    /// Entries of completed records not yet in RocksDB: (source, dedup key) → expiry.
    recent: Mutex<HashMap<(String, String), i64>>,
    stop: CancellationToken,
}

impl Ctx {
    fn recently_done(&self, source: &str, key: &str, now_ms: i64) -> bool {
        self.recent
            .lock()
            .map(|r| r.get(&(source.to_owned(), key.to_owned())).is_some_and(|expiry| *expiry > now_ms))
            .unwrap_or(false)
    }

    fn window_ms(&self, source: &str) -> i64 {
        i64::try_from(self.shared.settings.window_of(source).as_millis()).unwrap_or(i64::MAX)
    }
}

/// Why a record did not complete.
#[derive(Debug)]
enum Interrupt {
    /// The worker is stopping.
    Stopped,
    /// The session's producer failed.
    Session(String),
    /// The process must stop.
    Process(String),
}

/// A record's outcome.
#[derive(Debug)]
enum Outcome {
    Duplicate,
    Filtered,
    Events(Vec<Arc<str>>),
    Dlq(Failure),
    /// Its outputs were already published (by a previous owner); the missing ones, if any, were added.
    Completed(Vec<Arc<str>>),
}

struct Job {
    msg: OwnedMessage,
    envelope: Envelope,
    identity: Identity,
    solo_attempts: Option<u32>,
    emitted: Vec<Emitted>,
}

struct Done {
    offset: i64,
    identity: Identity,
    result: Result<Outcome, Interrupt>,
    started: Instant,
}

type CheckpointFuture = Pin<Box<dyn Future<Output = Result<(Checkpoint, Vec<Entry>), Interrupt>> + Send>>;

/// Runs the worker of one partition until it is stopped.
pub async fn run(args: WorkerArgs) {
    let WorkerArgs { shared, session, consumer, queue, partition, recovered, stop, done } = args;
    let recovered = tokio::select! {
        r = recovered => match r {
            Ok(r) => r,
            Err(_) => return drop(done),
        },
        () = stop.token.cancelled() => return drop(done),
    };
    let ctx = Arc::new(Ctx {
        log: Mutex::new(OutputLog::new(recovered.ends.iter().cloned())),
        recent: Mutex::new(HashMap::new()),
        stop: stop.token.clone(),
        shared,
        session,
        partition,
    });
    tracing::info!(
        partition,
        next = recovered.checkpoint.next_raw_offset,
        emitted = recovered.emitted.len(),
        suspects = recovered.suspects.len(),
        "partition worker started"
    );
    let mut worker = Worker::new(ctx.clone(), consumer, &recovered);
    let suspects: BTreeSet<i64> = recovered.suspects.keys().copied().collect();
    // Claim the partition before publishing anything of it (see the handoff in `crate::changelog`).
    let raw_topic = ctx.shared.settings.topics.raw.clone();
    let instance = ctx.shared.store.instance().to_owned();
    let claim = ChangelogRecord::ownership(&raw_topic, partition, &instance, false);
    let mut outcome = publish_changelog(&ctx, vec![claim], &ctx.stop).await.map(|_| ());
    let claimed = outcome.is_ok();
    if outcome.is_ok() && recovered.snapshot_needed {
        outcome = worker.snapshot().await;
    }
    if outcome.is_ok() {
        outcome = worker.run(queue, recovered).await;
    }
    let lost = stop.lost.load(Ordering::SeqCst);
    if outcome.is_ok() || matches!(outcome, Err(Interrupt::Stopped)) {
        outcome = worker.finish(lost).await;
    }
    // Drained cleanly: every record this worker marked running completed or stopped before sending anything,
    // so none of them crashed the process. Without this, a partition lost without a last checkpoint (its group
    // session expired: a broker or network failure) left the marks of completed records behind, and this
    // machine's next worker retried them alone as crash suspects, on the way to a false `crash_loop`.
    if matches!(outcome, Ok(()) | Err(Interrupt::Stopped)) {
        let give_up = CancellationToken::new();
        let forget = store_call(&ctx, &give_up, move |s| s.forget_uncrashed(partition, &suspects));
        if tokio::time::timeout(Duration::from_secs(5), forget).await.is_err() {
            give_up.cancel();
        }
    }
    // Release it once its last outputs are acknowledged, so the next owner need not wait. Not when the
    // partition was lost (the next owner may have claimed it already) or the drain failed.
    if claimed && !lost && matches!(outcome, Ok(()) | Err(Interrupt::Stopped)) {
        let release = ChangelogRecord::ownership(&raw_topic, partition, &instance, true);
        let give_up = CancellationToken::new();
        match tokio::time::timeout(Duration::from_secs(5), publish_changelog(&ctx, vec![release], &give_up)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(partition, error = ?e, "partition not released; the next owner waits"),
            Err(_) => {
                give_up.cancel();
                tracing::warn!(partition, "partition not released in time; the next owner waits");
            }
        }
    }
    match outcome {
        Ok(()) | Err(Interrupt::Stopped) => {}
        Err(Interrupt::Session(reason)) => ctx.session.fail(reason),
        Err(Interrupt::Process(reason)) => ctx.shared.fail(reason),
    }
    ctx.shared.metrics.forget_partition(partition);
    tracing::info!(partition, "partition worker stopped");
    drop(done);
}

struct Worker {
    ctx: Arc<Ctx>,
    consumer: Arc<GroupConsumer>,
    sched: Scheduler,
    jobs: HashMap<i64, Job>,
    received: HashMap<i64, i64>,
    tasks: JoinSet<Done>,
    pending: Vec<Entry>,
    checkpoint: Option<CheckpointFuture>,
    last: Checkpoint,
    last_at: Instant,
    stored: i64,
    hasher: std::hash::RandomState,
}

impl Worker {
    fn new(ctx: Arc<Ctx>, consumer: Arc<GroupConsumer>, recovered: &Recovered) -> Self {
        let s = &ctx.shared.settings.consumer;
        let start = recovered.checkpoint.next_raw_offset;
        Worker {
            sched: Scheduler::new(start, s.max_in_flight_per_partition as usize, s.max_buffered_per_partition as usize),
            jobs: HashMap::new(),
            received: HashMap::new(),
            tasks: JoinSet::new(),
            pending: Vec::new(),
            checkpoint: None,
            last: recovered.checkpoint.clone(),
            last_at: Instant::now(),
            stored: -1,
            hasher: std::hash::RandomState::new(),
            ctx,
            consumer,
        }
    }

    async fn run(
        &mut self,
        queue: StreamPartitionQueue<ProcessorContext>,
        recovered: Recovered,
    ) -> Result<(), Interrupt> {
        let Recovered { mut emitted, mut suspects, .. } = recovered;
        let mut ticker = tokio::time::interval(self.ctx.shared.settings.commit_interval());
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let stop = self.ctx.stop.clone();
        loop {
            while let Some(offset) = self.sched.start_next() {
                let Some(job) = self.jobs.remove(&offset) else {
                    continue;
                };
                self.ctx.shared.metrics.started(self.sched.running());
                self.tasks.spawn(handle(self.ctx.clone(), job));
            }
            tokio::select! {
                biased;
                () = stop.cancelled() => return Ok(()),
                Some(done) = self.tasks.join_next(), if !self.tasks.is_empty() => self.completed(done)?,
                result = poll_checkpoint(&mut self.checkpoint), if self.checkpoint.is_some() => {
                    self.checkpoint = None;
                    self.checkpointed(result?);
                }
                _ = ticker.tick() => {
                    self.report_lag();
                    if self.checkpoint.is_none() && self.checkpoint_due() {
                        self.checkpoint = Some(self.start_checkpoint(CancellationToken::new()));
                    }
                }
                received = queue.recv(), if self.sched.has_room() => match received {
                    Ok(m) => {
                        let msg = m.detach();
                        let offset = msg.offset();
                        self.admit(msg, suspects.remove(&offset), emitted.remove(&offset).unwrap_or_default());
                    }
                    Err(e) => tracing::warn!(error = %e, partition = self.ctx.partition, "consumer error"),
                },
            }
        }
    }

    fn admit(&mut self, msg: OwnedMessage, solo_attempts: Option<u32>, emitted: Vec<Emitted>) {
        let (envelope, identity) = identify(&msg);
        self.ctx.shared.metrics.consumed(&identity.source);
        let offset = msg.offset();
        let ordering = msg.key().unwrap_or(identity.dedup_key.as_bytes());
        let lanes = [
            self.hasher.hash_one((0u8, ordering)),
            self.hasher.hash_one((1u8, identity.source.as_str(), identity.dedup_key.as_str())),
        ];
        if let Some(attempts) = solo_attempts {
            self.ctx.shared.metrics.suspect(self.ctx.partition, offset, attempts);
        }
        self.sched.admit(offset, &lanes, solo_attempts.is_some());
        self.received.insert(offset, identity.entry_from_ms);
        self.jobs.insert(offset, Job { msg, envelope, identity, solo_attempts, emitted });
    }

    fn completed(&mut self, done: Result<Done, tokio::task::JoinError>) -> Result<(), Interrupt> {
        let done = done.map_err(|e| Interrupt::Process(format!("a record task failed: {e}")))?;
        let outcome = done.result?;
        let m = &self.ctx.shared.metrics;
        let source = done.identity.source.as_str();
        let (partition, offset) = (self.ctx.partition, done.offset);
        match &outcome {
            Outcome::Duplicate => m.duplicate(source, partition, offset),
            Outcome::Filtered => m.filtered(source, partition, offset),
            Outcome::Events(topics) | Outcome::Completed(topics) => topics.iter().for_each(|t| m.event(source, t)),
            Outcome::Dlq(failure) => m.dlq(source, partition, offset, failure),
        }
        m.processed(done.started.elapsed().as_secs_f64());
        let now = hookline_runtime::now_ms();
        m.latency(source, (now - done.identity.entry_from_ms) as f64 / 1000.0);
        if !done.identity.synthetic && !matches!(outcome, Outcome::Duplicate) {
            let entry = Entry {
                source: done.identity.source.clone(),
                dedup_key: done.identity.entry_key.clone(),
                expires_at_ms: done.identity.entry_from_ms.saturating_add(self.ctx.window_ms(source)),
            };
            if let Ok(mut recent) = self.ctx.recent.lock() {
                recent.insert((entry.source.clone(), entry.dedup_key.clone()), entry.expires_at_ms);
            }
            self.pending.push(entry);
        }
        self.sched.complete(offset);
        self.received.remove(&offset);
        Ok(())
    }

    fn checkpoint_due(&self) -> bool {
        self.sched.committable() > self.last.next_raw_offset
            || !self.pending.is_empty()
            || self.last_at.elapsed() > KEEPALIVE
    }

    /// Starts writing a checkpoint of the completed prefix: changelog (acknowledged), then RocksDB.
    fn start_checkpoint(&mut self, stop: CancellationToken) -> CheckpointFuture {
        let next = self.sched.committable();
        let scan_from = match self.ctx.log.lock() {
            Ok(mut log) => log.scan_from(next),
            Err(_) => self.last.scan_from.clone(),
        };
        let entries = std::mem::take(&mut self.pending);
        let ctx = self.ctx.clone();
        Box::pin(async move {
            let checkpoint = Checkpoint { next_raw_offset: next, scan_from, changelog_next: 0 };
            let raw_topic = ctx.shared.settings.topics.raw.clone();
            let records = ChangelogRecord::commit(&raw_topic, ctx.partition, &entries, checkpoint.clone());
            let changelog_next = publish_changelog(&ctx, records, &stop).await?;
            let checkpoint = Checkpoint { changelog_next, ..checkpoint };
            let (c, e) = (checkpoint.clone(), entries.clone());
            let p = ctx.partition;
            store_call(&ctx, &stop, move |s| s.commit(p, &e, &c)).await?;
            Ok((checkpoint, entries))
        })
    }

    fn checkpointed(&mut self, (checkpoint, entries): (Checkpoint, Vec<Entry>)) {
        if let Ok(mut recent) = self.ctx.recent.lock() {
            for e in &entries {
                recent.remove(&(e.source.clone(), e.dedup_key.clone()));
            }
        }
        let next = checkpoint.next_raw_offset;
        self.last = checkpoint;
        self.last_at = Instant::now();
        if next > self.stored {
            let mut tpl = TopicPartitionList::new();
            let topic = &self.ctx.shared.settings.topics.raw;
            if tpl.add_partition_offset(topic, self.ctx.partition, Offset::Offset(next)).is_ok() {
                match self.consumer.store_offsets(&tpl) {
                    Ok(()) => self.stored = next,
                    // Revoked meanwhile: the next owner starts from the changelog's checkpoint anyway.
                    Err(e) => tracing::debug!(error = %e, partition = self.ctx.partition, "offset not stored"),
                }
            }
        }
    }

    fn report_lag(&self) {
        let now = hookline_runtime::now_ms();
        let age = self.sched.oldest().and_then(|o| self.received.get(&o)).map_or(0, |received| now - received);
        self.ctx.shared.metrics.lag_seconds(self.ctx.partition, age as f64 / 1000.0);
    }

    /// Writes every live entry of the partition to the changelog, then a checkpoint: the changelog was behind
    /// the local store (deleted or recreated), and the next owner must not lose what only this store knows.
    async fn snapshot(&mut self) -> Result<(), Interrupt> {
        let p = self.ctx.partition;
        let now = hookline_runtime::now_ms();
        let never = CancellationToken::new();
        let chunks = store_call(&self.ctx, &self.ctx.stop, move |s| {
            let mut chunks = Vec::new();
            s.entries(p, now, crate::changelog::MAX_ENTRIES_PER_RECORD, |chunk| {
                chunks.push(chunk);
                Ok(())
            })?;
            Ok(chunks)
        })
        .await?;
        let raw_topic = self.ctx.shared.settings.topics.raw.clone();
        let total: usize = chunks.iter().map(Vec::len).sum();
        let records = chunks.iter().map(|chunk| ChangelogRecord::entries(&raw_topic, p, chunk)).collect();
        publish_changelog(&self.ctx, records, &never).await?;
        tracing::info!(partition = p, entries = total, "state snapshot written to the changelog");
        self.ctx.shared.metrics.snapshot();
        let result = self.start_checkpoint(never).await?;
        self.checkpointed(result);
        Ok(())
    }

    /// Lets running records finish, then writes a last checkpoint (unless the partition was lost).
    async fn finish(&mut self, lost: bool) -> Result<(), Interrupt> {
        let drain = self.ctx.shared.settings.drain_timeout;
        let deadline = tokio::time::Instant::now() + drain;
        while !self.tasks.is_empty() {
            match tokio::time::timeout_at(deadline, self.tasks.join_next()).await {
                Ok(Some(done)) => match self.completed(done) {
                    Ok(()) | Err(Interrupt::Stopped) => {}
                    Err(e) => return Err(e),
                },
                Ok(None) => break,
                Err(_) => {
                    return Err(Interrupt::Process(format!(
                        "partition {}: {} records still had outputs in the air after the drain timeout ({drain:?}); \
                         stopping the process so none is stored after the partition changed hands",
                        self.ctx.partition,
                        self.tasks.len()
                    )))
                }
            }
        }
        if let Some(pending) = self.checkpoint.take() {
            if let Ok(Ok(result)) = tokio::time::timeout_at(deadline, pending).await {
                self.checkpointed(result);
            }
        }
        if lost || !self.checkpoint_due() {
            return Ok(());
        }
        let stop = CancellationToken::new();
        let attempt = self.start_checkpoint(stop.clone());
        match tokio::time::timeout_at(deadline.max(tokio::time::Instant::now() + Duration::from_secs(5)), attempt).await
        {
            Ok(Ok(result)) => self.checkpointed(result),
            Ok(Err(e)) => tracing::warn!(partition = self.ctx.partition, error = ?e, "last checkpoint not written"),
            Err(_) => {
                stop.cancel();
                tracing::warn!(
                    partition = self.ctx.partition,
                    "last checkpoint not written in time; the next owner reads a little more back"
                );
            }
        }
        Ok(())
    }
}

async fn poll_checkpoint(pending: &mut Option<CheckpointFuture>) -> Result<(Checkpoint, Vec<Entry>), Interrupt> {
    match pending {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

/// Publishes changelog records in order; returns the offset after the last one.
async fn publish_changelog(ctx: &Ctx, records: Vec<Vec<u8>>, stop: &CancellationToken) -> Result<i64, Interrupt> {
    let mut next = 0;
    for value in records {
        let record = OutputRecord { topic: ctx.shared.state_topic.clone(), key: None, value, headers: Vec::new() };
        let offset = ctx
            .session
            .outputs
            .publish(ctx.partition, &record, stop, || {}, || ctx.shared.metrics.retry(Retry::Publish))
            .await
            .map_err(|e| match e {
                PublishError::Stopped => Interrupt::Stopped,
                PublishError::Fatal(reason) => Interrupt::Session(reason),
                PublishError::Rejected(reason) => {
                    Interrupt::Process(format!("the state changelog refused a record: {reason}"))
                }
            })?;
        next = offset + 1;
    }
    Ok(next)
}

/// Runs a store call on a blocking thread, retrying with backoff while the store fails (a full or read-only
/// disk): the partition stops advancing and `/readyz` says why, instead of records being skipped.
async fn store_call<T, F>(ctx: &Ctx, stop: &CancellationToken, call: F) -> Result<T, Interrupt>
where
    T: Send + 'static,
    F: Fn(&Store) -> Result<T, StoreError> + Send + Sync + 'static,
{
    let shared = &ctx.shared;
    let call = Arc::new(call);
    let mut backoff = Duration::from_millis(100);
    loop {
        let store = shared.store.clone();
        let attempt = call.clone();
        match tokio::task::spawn_blocking(move || attempt(&store)).await {
            Ok(Ok(value)) => {
                shared.readiness.pass(CHECK_STATE);
                return Ok(value);
            }
            Ok(Err(e)) => {
                shared.metrics.store_error(&e);
                shared.readiness.fail(CHECK_STATE, e.to_string());
                // A database that refuses writes after a failed one stays so until reopened.
                let store = shared.store.clone();
                if let Ok(Err(e)) = tokio::task::spawn_blocking(move || store.recover()).await {
                    shared.readiness.fail(CHECK_STATE, e.to_string());
                }
            }
            Err(join) => return Err(Interrupt::Process(format!("state store task failed: {join}"))),
        }
        tokio::select! {
            () = tokio::time::sleep(crate::output::jittered(backoff)) => {}
            () = stop.cancelled() => return Err(Interrupt::Stopped),
            () = shared.fatal.cancelled() => return Err(Interrupt::Stopped),
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Processes one record: dedup, pipeline, publish.
async fn handle(ctx: Arc<Ctx>, job: Job) -> Done {
    let started = Instant::now();
    let result = handle_record(&ctx, &job).await;
    if job.solo_attempts.is_some() && result.is_ok() {
        // A suspect that completed is no longer one, even if this process dies before the next checkpoint.
        let (p, offset) = (ctx.partition, job.msg.offset());
        let _ = store_call(&ctx, &ctx.stop, move |s| s.unmark_running(p, offset)).await;
    }
    Done { offset: job.msg.offset(), identity: job.identity, result, started }
}

async fn handle_record(ctx: &Arc<Ctx>, job: &Job) -> Result<Outcome, Interrupt> {
    let shared = &ctx.shared;
    let (p, offset) = (ctx.partition, job.msg.offset());
    let id = &job.identity;
    let now = hookline_runtime::now_ms();
    // Outputs a previous owner published for this very webhook: the record is completed, not redone.
    let emitted: Vec<Emitted> =
        job.emitted.iter().filter(|e| e.source == id.source && e.dedup_key == id.dedup_key).cloned().collect();
    if emitted.iter().any(|e| e.dlq) {
        return Ok(Outcome::Completed(Vec::new()));
    }
    if ctx.stop.is_cancelled() {
        return Err(Interrupt::Stopped);
    }
    let runs_pipeline = matches!(job.envelope, Envelope::Valid(_));
    let solo_attempts = job.solo_attempts.unwrap_or(0);
    let marked = if job.solo_attempts.is_some() { solo_attempts + 1 } else { 0 };
    if emitted.is_empty() && !id.synthetic {
        if ctx.recently_done(&id.source, &id.entry_key, now) {
            return Ok(Outcome::Duplicate);
        }
        let (source, key) = (id.source.clone(), id.entry_key.clone());
        let duplicate = store_call(ctx, &ctx.stop, move |s| {
            if s.contains(p, &source, &key, now)? {
                return Ok(true);
            }
            s.mark_running(p, offset, marked)?;
            Ok(false)
        })
        .await?;
        if duplicate {
            return Ok(Outcome::Duplicate);
        }
    } else if runs_pipeline {
        store_call(ctx, &ctx.stop, move |s| s.mark_running(p, offset, marked)).await?;
    }

    let limit = shared.settings.crash_loop_attempts;
    let decision = if emitted.is_empty() && job.solo_attempts.is_some_and(|a| a >= limit) {
        Decision::Fail(Failure::new(
            ErrorClass::CrashLoop,
            Stage::Process,
            format!("the processor died {solo_attempts} times while processing this record alone; set aside"),
        ))
    } else {
        decide(&shared.pipeline, &job.msg, &job.envelope)
    };
    let attempts = solo_attempts.max(1);
    let (planned, failure) = plan(&shared.dlq_topic, &job.msg, id, decision, attempts, now);
    let todo = remaining(planned, &emitted);
    let mut published: Vec<Arc<str>> = Vec::with_capacity(todo.len());
    for output in todo {
        if failure.is_some() {
            publish_dlq(ctx, offset, &output.record).await?;
            continue;
        }
        match publish(ctx, offset, &output.record).await {
            Ok(()) => published.push(output.record.topic.clone()),
            Err(PublishError::Rejected(reason)) => {
                // An event Kafka will never take (too large for its topic): the record goes to the DLQ, whose
                // value is the raw record's, which Kafka already took once.
                let f = Failure::new(ErrorClass::OutputRejected, Stage::Publish, reason);
                let record = crate::dlq::record(&shared.dlq_topic, &job.msg, id, &f, 1, now);
                publish_dlq(ctx, offset, &record).await?;
                if !published.is_empty() || !emitted.is_empty() {
                    tracing::error!(partition = p, offset, "record has events on some topics and a DLQ record");
                }
                return Ok(Outcome::Dlq(f));
            }
            Err(e) => return Err(publish_interrupt(e, p, offset)),
        }
    }
    Ok(match failure {
        _ if !emitted.is_empty() => Outcome::Completed(published),
        Some(f) => Outcome::Dlq(f),
        None if published.is_empty() => Outcome::Filtered,
        None => Outcome::Events(published),
    })
}

fn publish_interrupt(e: PublishError, partition: i32, offset: i64) -> Interrupt {
    match e {
        PublishError::Stopped => Interrupt::Stopped,
        PublishError::Fatal(reason) => Interrupt::Session(reason),
        PublishError::Rejected(reason) => {
            Interrupt::Process(format!("partition {partition} offset {offset}: no topic takes this record: {reason}"))
        }
    }
}

async fn publish(ctx: &Arc<Ctx>, raw_offset: i64, record: &OutputRecord) -> Result<(), PublishError> {
    let topic = record.topic.clone();
    let offset = ctx
        .session
        .outputs
        .publish(
            ctx.partition,
            record,
            &ctx.stop,
            || {
                if let Ok(mut log) = ctx.log.lock() {
                    log.sending(raw_offset, &topic);
                }
            },
            || ctx.shared.metrics.retry(Retry::Publish),
        )
        .await?;
    if let Ok(mut log) = ctx.log.lock() {
        log.acked(&record.topic, offset);
    }
    Ok(())
}

/// Publishes a DLQ record; if the DLQ topic refuses it for good, retries slowly rather than losing it (the
/// partition stops advancing and the lag alerts).
async fn publish_dlq(ctx: &Arc<Ctx>, raw_offset: i64, record: &OutputRecord) -> Result<(), Interrupt> {
    loop {
        match publish(ctx, raw_offset, record).await {
            Ok(()) => return Ok(()),
            Err(PublishError::Rejected(reason)) => {
                tracing::error!(partition = ctx.partition, raw_offset, %reason, "the DLQ refused a record; retrying in 30 s");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(30)) => {}
                    () = ctx.stop.cancelled() => return Err(Interrupt::Stopped),
                }
            }
            Err(e) => return Err(publish_interrupt(e, ctx.partition, raw_offset)),
        }
    }
}

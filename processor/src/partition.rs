//! The worker of one assigned raw partition.
//!
//! It first brings the partition's dedup state up to date ([`crate::restore`]), then reads the partition's
//! records in offset order into the [`Scheduler`], which runs records of different keys concurrently (up to
//! `consumer.max_in_flight_per_partition`) and one key's records in order. Each record runs as a task:
//! dedup lookup (this transaction's entries in memory, then RocksDB on a blocking thread), pipeline
//! ([`crate::process`]), publish into the open transaction.
//!
//! The session's transaction loop ([`crate::session`]) commits on a timer. It first *pauses* every worker:
//! a paused worker starts no record, and once its running records are done it hands over its
//! [`Progress`]: the offset below which every record is done, and the dedup entries of the records done
//! since the last pause. The loop writes those entries to the changelog, commits the transaction with the
//! offsets, stores the entries in RocksDB and *resumes* the workers. A record is therefore in exactly one
//! transaction, with its outputs, its dedup entry and an offset that covers it.
//!
//! A record that crashes the process (an abort, an out-of-memory kill) would crash every processor that
//! takes its partition over. Each record is marked in RocksDB while it runs; marks left behind by a crash
//! make their records *suspects*, retried alone, and sent to the DLQ as `crash_loop` after
//! `state.crash_loop_attempts` solo attempts.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hookline_schemas::dlq::{ErrorClass, Stage};
use rdkafka::consumer::stream_consumer::StreamPartitionQueue;
use rdkafka::message::{Message, OwnedMessage};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::output::{OutputRecord, SendError};
use crate::pipeline::{Decision, Failure};
use crate::process::{decide, dlq_record, identify, plan, Envelope, Identity};
use crate::restore::{restore, RestoreError};
use crate::scheduler::Scheduler;
use crate::session::{Session, Shared};
use crate::store::{Entry, Store, StoreError};
use crate::telemetry::Retry;
use crate::{ProcessorContext, CHECK_STATE};

/// What the transaction loop asks of a worker.
#[derive(Debug)]
pub(crate) enum Command {
    /// Start no record; once none runs, answer with the progress since the last pause.
    Pause(oneshot::Sender<Progress>),
    /// The transaction committed (its entries are in RocksDB): go on.
    Resume,
}

/// A paused worker's work since its last pause.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    /// Every record of the partition below this offset is done; `None` before the first record.
    pub next_offset: Option<i64>,
    /// The dedup entries of the records done since the last pause.
    pub entries: Vec<Entry>,
    /// How many records were done since the last pause.
    pub done: usize,
}

/// Why a record did not complete.
#[derive(Debug)]
pub(crate) enum Interrupt {
    /// The worker is stopping.
    Stopped,
    /// The transaction cannot commit: the session aborts it and starts again.
    Session(String),
    /// The process must stop.
    Process(String),
}

/// Per-partition state shared by the worker and its record tasks.
struct Ctx {
    shared: Arc<Shared>,
    session: Arc<Session>,
    partition: i32,
    /// Entries of this transaction's records (not yet in RocksDB): (source, dedup key) → expiry.
    recent: std::sync::Mutex<HashMap<(String, String), i64>>,
    stop: CancellationToken,
}

impl Ctx {
    fn recently_done(&self, source: &str, key: &str, now_ms: i64) -> bool {
        self.recent
            .lock()
            .map(|r| r.get(&(source.to_owned(), key.to_owned())).is_some_and(|expiry| *expiry > now_ms))
            .unwrap_or(false)
    }
}

/// A record's outcome.
#[derive(Debug)]
enum Outcome {
    Duplicate,
    Filtered,
    Events(Vec<Arc<str>>),
    Dlq(Failure),
}

struct Job {
    msg: OwnedMessage,
    envelope: Envelope,
    identity: Identity,
    solo_attempts: Option<u32>,
}

struct Done {
    offset: i64,
    identity: Identity,
    result: Result<Outcome, Interrupt>,
    started: Instant,
}

/// Runs the worker of `partition` until `stop` is cancelled or its session fails.
pub(crate) async fn run(
    shared: Arc<Shared>,
    session: Arc<Session>,
    partition: i32,
    queue: StreamPartitionQueue<ProcessorContext>,
    mut commands: mpsc::UnboundedReceiver<Command>,
    stop: CancellationToken,
) {
    let ctx = Arc::new(Ctx { shared, session, partition, recent: std::sync::Mutex::new(HashMap::new()), stop });
    let outcome = match prepare(&ctx, &mut commands).await {
        Ok((suspects, paused)) => {
            let seen: BTreeSet<i64> = suspects.keys().copied().collect();
            let mut worker = Worker::new(ctx.clone());
            worker.paused = paused;
            let outcome = worker.run(queue, &mut commands, suspects).await;
            drop(worker);
            // This process is alive: none of the records it was running crashed it. Without this, a partition
            // taken away mid-transaction left the marks of those records behind, and this machine's next worker
            // retried them alone as crash suspects, on the way to a false `crash_loop`.
            let give_up = CancellationToken::new();
            let forget = store_call(&ctx.shared, &give_up, move |s| s.forget_uncrashed(partition, &seen));
            if tokio::time::timeout(Duration::from_secs(5), forget).await.is_err() {
                give_up.cancel();
            }
            outcome
        }
        Err(e) => Err(e),
    };
    match outcome {
        Ok(()) | Err(Interrupt::Stopped) => {}
        Err(Interrupt::Session(reason)) => ctx.session.fail(reason),
        Err(Interrupt::Process(reason)) => ctx.shared.fail(reason),
    }
    ctx.shared.metrics.forget_partition(partition);
    tracing::info!(partition, "partition worker stopped");
}

/// Restores the partition's state (answering pauses meanwhile: there is nothing to commit yet) and returns
/// its crash suspects (offset → solo attempts so far), and whether it is paused: a pause answered during the
/// restore holds until its resume, or the worker's first records would slip into a commit in progress.
async fn prepare(
    ctx: &Arc<Ctx>,
    commands: &mut mpsc::UnboundedReceiver<Command>,
) -> Result<(BTreeMap<i64, u32>, bool), Interrupt> {
    let mut paused = false;
    let started = Instant::now();
    let mut backoff = Duration::from_millis(500);
    let restored = loop {
        let attempt = {
            let (shared, stop, p) = (ctx.shared.clone(), ctx.stop.clone(), ctx.partition);
            tokio::task::spawn_blocking(move || restore(&shared.settings, &shared.store, p, &stop))
        };
        tokio::pin!(attempt);
        let result = loop {
            tokio::select! {
                r = &mut attempt => break r,
                cmd = commands.recv() => match cmd {
                    Some(Command::Pause(reply)) => {
                        paused = true;
                        let _ = reply.send(Progress::default());
                    }
                    Some(Command::Resume) => paused = false,
                    None => ctx.stop.cancel(),
                },
            }
        };
        match result {
            Ok(Ok(n)) => break n,
            Ok(Err(RestoreError::Stopped)) => return Err(Interrupt::Stopped),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, partition = ctx.partition, retry_in = ?backoff, "cannot restore the partition yet");
                ctx.shared.metrics.retry(Retry::Restore);
            }
            Err(join) => return Err(Interrupt::Process(format!("the restore task failed: {join}"))),
        }
        tokio::select! {
            () = tokio::time::sleep(crate::output::jittered(backoff)) => {}
            () = ctx.stop.cancelled() => return Err(Interrupt::Stopped),
        }
        backoff = (backoff * 2).min(Duration::from_secs(10));
    };
    let seconds = started.elapsed().as_secs_f64();
    ctx.shared.metrics.restored(seconds, restored);
    let p = ctx.partition;
    let suspects = store_call(&ctx.shared, &ctx.stop, move |s| s.running(p)).await?;
    tracing::info!(partition = p, seconds, changes = restored, suspects = suspects.len(), "partition restored");
    Ok((suspects, paused))
}

struct Worker {
    ctx: Arc<Ctx>,
    sched: Scheduler,
    jobs: HashMap<i64, Job>,
    received: HashMap<i64, i64>,
    tasks: JoinSet<Done>,
    entries: Vec<Entry>,
    done: usize,
    pause: Option<oneshot::Sender<Progress>>,
    paused: bool,
    hasher: std::hash::RandomState,
}

impl Worker {
    fn new(ctx: Arc<Ctx>) -> Self {
        let s = &ctx.shared.settings.consumer;
        Worker {
            // The first record read sets where the partition starts.
            sched: Scheduler::new(-1, s.max_in_flight_per_partition as usize, s.max_buffered_per_partition as usize),
            jobs: HashMap::new(),
            received: HashMap::new(),
            tasks: JoinSet::new(),
            entries: Vec::new(),
            done: 0,
            pause: None,
            paused: false,
            hasher: std::hash::RandomState::new(),
            ctx,
        }
    }

    async fn run(
        &mut self,
        queue: StreamPartitionQueue<ProcessorContext>,
        commands: &mut mpsc::UnboundedReceiver<Command>,
        mut suspects: BTreeMap<i64, u32>,
    ) -> Result<(), Interrupt> {
        let mut lag = tokio::time::interval(Duration::from_secs(1));
        lag.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let stop = self.ctx.stop.clone();
        loop {
            while !self.paused {
                let Some(offset) = self.sched.start_next() else {
                    break;
                };
                let Some(job) = self.jobs.remove(&offset) else {
                    continue;
                };
                tracing::trace!(partition = self.ctx.partition, offset, "record started");
                self.ctx.shared.metrics.started(self.sched.running());
                self.tasks.spawn(handle(self.ctx.clone(), job));
            }
            if self.tasks.is_empty() {
                if let Some(reply) = self.pause.take() {
                    let _ = reply.send(self.progress());
                }
            }
            tokio::select! {
                biased;
                () = stop.cancelled() => return Ok(()),
                cmd = commands.recv() => match cmd {
                    Some(Command::Pause(reply)) => {
                        self.paused = true;
                        self.pause = Some(reply);
                    }
                    Some(Command::Resume) => {
                        self.paused = false;
                        if let Ok(mut recent) = self.ctx.recent.lock() {
                            recent.clear();
                        }
                    }
                    None => return Ok(()),
                },
                Some(done) = self.tasks.join_next(), if !self.tasks.is_empty() => self.completed(done)?,
                _ = lag.tick() => self.report_lag(),
                received = queue.recv(), if self.sched.has_room() => match received {
                    Ok(m) => {
                        let msg = m.detach();
                        let offset = msg.offset();
                        self.admit(msg, suspects.remove(&offset));
                    }
                    Err(e) => tracing::warn!(error = %e, partition = self.ctx.partition, "consumer error"),
                },
            }
        }
    }

    fn progress(&mut self) -> Progress {
        let next = self.sched.committable();
        Progress {
            next_offset: (next >= 0).then_some(next),
            entries: std::mem::take(&mut self.entries),
            done: std::mem::take(&mut self.done),
        }
    }

    fn admit(&mut self, msg: OwnedMessage, solo_attempts: Option<u32>) {
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
        self.jobs.insert(offset, Job { msg, envelope, identity, solo_attempts });
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
            Outcome::Events(topics) => topics.iter().for_each(|t| m.event(source, t)),
            Outcome::Dlq(failure) => m.dlq(source, partition, offset, failure),
        }
        m.processed(done.started.elapsed().as_secs_f64());
        let now = hookline_runtime::now_ms();
        m.latency(source, (now - done.identity.entry_from_ms) as f64 / 1000.0);
        if !done.identity.synthetic && !matches!(outcome, Outcome::Duplicate) {
            let window = i64::try_from(self.ctx.shared.settings.window_of(source).as_millis()).unwrap_or(i64::MAX);
            let entry = Entry {
                source: done.identity.source.clone(),
                dedup_key: done.identity.entry_key.clone(),
                expires_at_ms: done.identity.entry_from_ms.saturating_add(window),
            };
            if let Ok(mut recent) = self.ctx.recent.lock() {
                recent.insert((entry.source.clone(), entry.dedup_key.clone()), entry.expires_at_ms);
            }
            self.entries.push(entry);
        }
        self.done += 1;
        self.sched.complete(offset);
        self.received.remove(&offset);
        Ok(())
    }

    fn report_lag(&self) {
        let now = hookline_runtime::now_ms();
        let age = self.sched.oldest().and_then(|o| self.received.get(&o)).map_or(0, |received| now - received);
        self.ctx.shared.metrics.lag_seconds(self.ctx.partition, age as f64 / 1000.0);
    }
}

/// Runs a store call on a blocking thread, retrying with backoff while the store fails (a full or read-only
/// disk): the partition stops advancing and `/readyz` says why, instead of records being skipped.
pub(crate) async fn store_call<T, F>(shared: &Shared, stop: &CancellationToken, call: F) -> Result<T, Interrupt>
where
    T: Send + 'static,
    F: Fn(&Store) -> Result<T, StoreError> + Send + Sync + 'static,
{
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
        // A suspect that completed did not crash the process, even if the process dies before the commit.
        let (p, offset) = (ctx.partition, job.msg.offset());
        let _ = store_call(&ctx.shared, &ctx.stop, move |s| s.unmark_running(p, offset)).await;
    }
    Done { offset: job.msg.offset(), identity: job.identity, result, started }
}

async fn handle_record(ctx: &Arc<Ctx>, job: &Job) -> Result<Outcome, Interrupt> {
    let shared = &ctx.shared;
    let (p, offset) = (ctx.partition, job.msg.offset());
    let id = &job.identity;
    let now = hookline_runtime::now_ms();
    if ctx.stop.is_cancelled() {
        return Err(Interrupt::Stopped);
    }
    let solo_attempts = job.solo_attempts.unwrap_or(0);
    if !id.synthetic {
        if ctx.recently_done(&id.source, &id.entry_key, now) {
            return Ok(Outcome::Duplicate);
        }
        let (source, key) = (id.source.clone(), id.entry_key.clone());
        let marked = if job.solo_attempts.is_some() { solo_attempts + 1 } else { 0 };
        let duplicate = store_call(&ctx.shared, &ctx.stop, move |s| {
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
    }

    let decision = if let Some(reason) = shared.take_rejected(p, offset) {
        Decision::Fail(Failure::new(ErrorClass::OutputRejected, Stage::Publish, reason))
    } else if job.solo_attempts.is_some_and(|a| a >= shared.settings.crash_loop_attempts) {
        Decision::Fail(Failure::new(
            ErrorClass::CrashLoop,
            Stage::Process,
            format!("the processor died {solo_attempts} times while processing this record alone; set aside"),
        ))
    } else {
        decide(&shared.pipeline, &job.msg, &job.envelope)
    };
    let (outputs, failure) = plan(&shared.dlq_topic, &job.msg, id, decision, solo_attempts.max(1), now);
    if let Some(f) = failure {
        send(ctx, offset, &outputs[0], false).await?;
        return Ok(Outcome::Dlq(f));
    }
    let mut published: Vec<Arc<str>> = Vec::with_capacity(outputs.len());
    for output in &outputs {
        match send(ctx, offset, output, true).await {
            Ok(()) => published.push(output.topic.clone()),
            Err(SendOutcome::Refused(reason)) => {
                // An event the producer will never take (larger than it may send): the record goes to the DLQ
                // instead, whose value is the raw record's, which Kafka already took once. Events already sent
                // for it are in the same transaction: the session aborts it, and the record is processed again
                // straight into the DLQ.
                if !published.is_empty() {
                    shared.reject(p, offset, reason.clone());
                    return Err(Interrupt::Session(format!(
                        "partition {p} offset {offset}: an event was refused after others were sent; processing the \
                         record again into the DLQ: {reason}"
                    )));
                }
                let f = Failure::new(ErrorClass::OutputRejected, Stage::Publish, reason);
                let record = dlq_record(&shared.dlq_topic, &job.msg, id, &f, 1, now);
                send(ctx, offset, &record, false).await?;
                return Ok(Outcome::Dlq(f));
            }
            Err(SendOutcome::Interrupt(i)) => return Err(i),
        }
    }
    Ok(if published.is_empty() { Outcome::Filtered } else { Outcome::Events(published) })
}

enum SendOutcome {
    Refused(String),
    Interrupt(Interrupt),
}

impl From<SendOutcome> for Interrupt {
    fn from(o: SendOutcome) -> Interrupt {
        match o {
            SendOutcome::Refused(reason) => Interrupt::Session(reason),
            SendOutcome::Interrupt(i) => i,
        }
    }
}

/// Sends one output into the open transaction. A record Kafka refused for good (`event`: an event, which the
/// record's DLQ record can replace) is remembered, so the record goes to the DLQ when processed again.
async fn send(ctx: &Arc<Ctx>, offset: i64, record: &OutputRecord, event: bool) -> Result<(), SendOutcome> {
    let (p, shared) = (ctx.partition, &ctx.shared);
    match ctx.session.outputs.send(p, record).await {
        Ok(_) => Ok(()),
        Err(SendError::Refused(reason)) if event => Err(SendOutcome::Refused(reason)),
        Err(SendError::Refused(reason)) => {
            Err(SendOutcome::Interrupt(Interrupt::Process(format!("no topic takes this record: {reason}"))))
        }
        Err(SendError::Failed { reason, permanent }) => {
            if permanent && event {
                shared.reject(p, offset, reason.clone());
            }
            shared.metrics.retry(Retry::Publish);
            Err(SendOutcome::Interrupt(Interrupt::Session(reason)))
        }
    }
}

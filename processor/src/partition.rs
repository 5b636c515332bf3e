//! The worker of one assigned raw partition.
//!
//! It first brings the partition's dedup state up to date ([`crate::restore`]), then processes the
//! partition's records in offset order, in batches of what the consumer has read (up to
//! `consumer.max_batch_per_partition`):
//!
//! 1. one blocking call marks the batch as started ([`crate::store::Store::started`]) and looks up its dedup
//!    keys in RocksDB; this transaction's own entries, not in RocksDB yet, are kept in memory;
//! 2. each record, in order: a duplicate is dropped; otherwise its outcome ([`crate::process`]: events or one
//!    DLQ record) and its dedup entry on the state changelog are handed to the transactional producer.
//!
//! Nothing waits for Kafka per record: one key's records keep their order because they go, in offset order,
//! to one partition of each output topic through one idempotent producer. The wait is at the commit.
//!
//! The session's transaction loop ([`crate::session`]) commits on a timer. It first *pauses* every worker:
//! a paused worker waits until Kafka stored everything it sent in the transaction, hands over its
//! [`Progress`] (the offset below which every record is done, the dedup changes to apply to RocksDB once
//! committed) and starts nothing until *resumed*. A record is therefore in exactly one transaction, with its
//! outputs, its dedup entry and an offset that covers it. Once a second, a worker also tombstones expired
//! entries in the open transaction.
//!
//! A record that crashes the process (an abort, an out-of-memory kill) would crash every processor that
//! takes its partition over. If the process dies before a commit, the records it had started are crash
//! *suspects* for the next worker on this machine: each is tried alone, with its own mark counting the
//! attempts, and goes to the DLQ as `crash_loop` after `state.crash_loop_attempts` of them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use hookline_runtime::backoff::{self, Backoff};
use hookline_runtime::traces::{self, TARGET as TRACES};
use hookline_schemas::dlq::{ErrorClass, Stage};
use rdkafka::consumer::stream_consumer::StreamPartitionQueue;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::future_producer::DeliveryFuture;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::changelog::{self, Change, Entry};
use crate::consumer::{GroupConsumer, ProcessorContext};
use crate::output::{delivered, Enqueue, OutputRecord, Outputs, SendError};
use crate::process::{decide, dlq_record, identify, plan, Envelope, Identity};
use crate::restore::{restore, RestoreError};
use crate::shared::{store_call, Breaker, Interrupt, Shared};
use crate::store::{Expired, Marks};
use crate::telemetry::Retry;
use hookline_pipeline::{Decision, Failure};

/// Expired entries tombstoned per partition and transaction, at most.
const SWEEP_LIMIT: usize = 1_000;

/// How often a worker looks for expired entries to tombstone.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// What the transaction loop asks of a worker.
#[derive(Debug)]
pub(crate) enum Command {
    /// Start no record; once everything sent is stored, answer with the progress since the last pause.
    Pause(oneshot::Sender<Progress>),
    /// The transaction committed (its changes are in RocksDB): go on.
    Resume,
}

/// A paused worker's work in the open transaction.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    /// Every record of the partition below this offset is done: the offset to commit. `None` while unknown
    /// (before the first record of a partition the group never committed).
    pub next_offset: Option<i64>,
    /// Whether records were done in this transaction.
    pub advanced: bool,
    /// Dedup entries written and deleted on the changelog, in order.
    pub changes: Vec<Change>,
    /// The expiry index entries swept.
    pub expired: Vec<Expired>,
    /// The changelog offset after the last record written, if any was.
    pub changelog_next: Option<i64>,
}

impl Progress {
    /// Whether anything was done since the last pause.
    pub fn has_work(&self) -> bool {
        self.advanced || !self.changes.is_empty() || !self.expired.is_empty()
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

impl Outcome {
    /// Its name, on the record's span.
    fn name(&self) -> &'static str {
        match self {
            Outcome::Duplicate => "duplicate",
            Outcome::Filtered => "filtered",
            Outcome::Events(_) => "published",
            Outcome::Dlq(_) => "dlq",
        }
    }
}

/// The span of one raw record's processing, in the trace its metadata names (exported only when tracing is
/// on): its `dedup`, `pipeline` and `output` spans are children.
fn record_span(record: &Record<'_>) -> tracing::Span {
    let span = tracing::trace_span!(
        target: TRACES,
        "process",
        otel.kind = "consumer",
        hookline.source = %record.identity.source,
        hookline.dedup_key = %record.identity.dedup_key,
        messaging.destination.partition.id = record.msg.partition(),
        messaging.kafka.offset = record.msg.offset(),
        hookline.outcome = tracing::field::Empty,
    );
    if let Envelope::Valid(meta) = &record.envelope {
        traces::continue_trace(&span, meta.traceparent.as_deref());
    }
    span
}

/// A raw record, read. It stays in the consumer's buffer (not copied out) until processed.
struct Record<'m> {
    msg: BorrowedMessage<'m>,
    envelope: Envelope,
    identity: Identity,
}

/// An output handed to the producer in the open transaction.
struct Sent {
    offset: i64,
    topic: Arc<str>,
    /// An event (which the record's DLQ record can replace if Kafka refuses it for good).
    event: bool,
    delivery: DeliveryFuture,
}

/// What the worker put in the open transaction.
#[derive(Default)]
struct Transaction {
    advanced: bool,
    sent: Vec<Sent>,
    changelog: Vec<DeliveryFuture>,
    changes: Vec<Change>,
    expired: Vec<Expired>,
    swept: bool,
    /// This transaction's dedup entries, not in RocksDB yet: source → entry key → expiry.
    recent: HashMap<String, HashMap<String, i64>>,
    /// The `output` spans of the records whose outputs were sent: they end once Kafka has stored them.
    spans: Vec<tracing::Span>,
}

impl Transaction {
    /// The expiry of the entry this transaction wrote for `key` of `source`, if it wrote one.
    fn written_until(&self, source: &str, key: &str) -> Option<i64> {
        self.recent.get(source)?.get(key).copied()
    }
}

/// What a worker uses of its session.
pub(crate) struct SessionParts {
    /// The transactional producer.
    pub outputs: Arc<Outputs>,
    /// The group consumer, asked for the partition's committed offset before the restore.
    pub group: Arc<GroupConsumer>,
    /// Ends the session.
    pub breaker: Arc<Breaker>,
}

/// Runs the worker of `partition` until `stop` is cancelled or its session fails.
pub(crate) async fn run(
    shared: Arc<Shared>,
    session: SessionParts,
    partition: i32,
    queue: StreamPartitionQueue<ProcessorContext>,
    mut commands: mpsc::UnboundedReceiver<Command>,
    stop: CancellationToken,
) {
    let mut worker = Worker {
        batch: shared.settings.consumer.max_batch_per_partition as usize,
        shared,
        outputs: session.outputs,
        group: session.group,
        breaker: session.breaker,
        partition,
        stop,
        txn: Transaction::default(),
        next_offset: None,
        paused: false,
        last_sweep: Instant::now(),
        backlog_since_ms: None,
    };
    let outcome = match worker.prepare(&mut commands).await {
        Ok(found) => {
            let outcome = worker.run(&queue, &mut commands, &found).await;
            // This process is alive: none of the records it started since crashed it. Without this, a partition
            // taken away mid-transaction left its marks behind, and this machine's next worker retried those
            // records alone as crash suspects, on the way to a false `crash_loop`.
            let give_up = CancellationToken::new();
            let forget = store_call(&worker.shared, &give_up, move |s| s.forget_uncrashed(partition, &found));
            if tokio::time::timeout(Duration::from_secs(5), forget).await.is_err() {
                give_up.cancel();
            }
            outcome
        }
        Err(e) => Err(e),
    };
    match outcome {
        Ok(()) | Err(Interrupt::Stopped) => {}
        Err(Interrupt::Session(reason)) => worker.breaker.fail(reason),
        Err(Interrupt::Process(reason)) => worker.shared.fail(reason),
    }
    worker.shared.metrics.forget_partition(partition);
    tracing::info!(partition, "partition worker stopped");
}

struct Worker {
    shared: Arc<Shared>,
    outputs: Arc<Outputs>,
    group: Arc<GroupConsumer>,
    breaker: Arc<Breaker>,
    partition: i32,
    stop: CancellationToken,
    batch: usize,
    txn: Transaction,
    /// Every record below this offset is done (in a committed transaction or the open one).
    next_offset: Option<i64>,
    paused: bool,
    last_sweep: Instant,
    /// When the last record processed entered the pipeline, while records are waiting behind it.
    backlog_since_ms: Option<i64>,
}

impl Worker {
    /// Restores the partition's state (answering pauses meanwhile: there is nothing to commit yet) and returns
    /// the crash marks found. A pause answered during the restore holds until its resume, or the worker's
    /// first records would slip into a commit in progress.
    async fn prepare(&mut self, commands: &mut mpsc::UnboundedReceiver<Command>) -> Result<Marks, Interrupt> {
        let started = Instant::now();
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(10));
        let restored = loop {
            let attempt = {
                let (shared, group, stop, p) =
                    (self.shared.clone(), self.group.clone(), self.stop.clone(), self.partition);
                tokio::task::spawn_blocking(move || restore(&shared.settings, &shared.store, &group, p, &stop))
            };
            tokio::pin!(attempt);
            let result = loop {
                tokio::select! {
                    r = &mut attempt => break r,
                    cmd = commands.recv() => match cmd {
                        Some(Command::Pause(reply)) => {
                            self.paused = true;
                            let _ = reply.send(Progress::default());
                        }
                        Some(Command::Resume) => self.paused = false,
                        None => self.stop.cancel(),
                    },
                }
            };
            match result {
                Ok(Ok(restored)) => break restored,
                Ok(Err(RestoreError::Stopped)) => return Err(Interrupt::Stopped),
                Ok(Err(e)) => {
                    let wait = backoff.next_wait();
                    tracing::warn!(error = %e, partition = self.partition, retry_in = ?wait, "cannot restore the partition yet");
                    self.shared.metrics.retry(Retry::Restore);
                    if !backoff::sleep(wait, &self.stop).await {
                        return Err(Interrupt::Stopped);
                    }
                }
                Err(join) => return Err(Interrupt::Process(format!("the restore task failed: {join}"))),
            }
        };
        let seconds = started.elapsed().as_secs_f64();
        self.shared.metrics.restored(seconds, restored.changes);
        self.next_offset = restored.committed;
        let p = self.partition;
        let found = store_call(&self.shared, &self.stop, move |s| s.marks(p)).await?;
        tracing::info!(
            partition = p,
            seconds,
            changes = restored.changes,
            committed = restored.committed,
            suspects_up_to = found.started,
            "partition restored"
        );
        Ok(found)
    }

    async fn run(
        &mut self,
        queue: &StreamPartitionQueue<ProcessorContext>,
        commands: &mut mpsc::UnboundedReceiver<Command>,
        found: &Marks,
    ) -> Result<(), Interrupt> {
        let mut records = queue.stream();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let stop = self.stop.clone();
        loop {
            tokio::select! {
                biased;
                () = stop.cancelled() => return Ok(()),
                cmd = commands.recv() => match cmd {
                    Some(Command::Pause(reply)) => {
                        let progress = self.pause().await?;
                        self.paused = true;
                        let _ = reply.send(progress);
                    }
                    Some(Command::Resume) => self.paused = false,
                    None => return Ok(()),
                },
                _ = tick.tick() => {
                    self.report_lag();
                    // A sweep needs an offset to commit with its tombstones (see `Progress::next_offset`).
                    let sweep_due = !self.txn.swept && self.last_sweep.elapsed() >= SWEEP_INTERVAL;
                    if !self.paused && sweep_due && self.next_offset.is_some() {
                        self.sweep().await?;
                    }
                }
                first = records.next(), if !self.paused => {
                    let mut batch = Vec::with_capacity(self.batch.min(64));
                    let mut next = first;
                    loop {
                        match next {
                            Some(Ok(m)) => batch.push(m),
                            Some(Err(e)) => tracing::warn!(error = %e, partition = self.partition, "consumer error"),
                            None => break,
                        }
                        if batch.len() >= self.batch {
                            break;
                        }
                        // What the consumer has already read, without waiting for more.
                        next = records.next().now_or_never().flatten();
                    }
                    let full = batch.len() >= self.batch;
                    if !batch.is_empty() {
                        self.process(batch, found).await?;
                    }
                    if !full {
                        self.backlog_since_ms = None;
                    }
                }
            }
        }
    }

    /// Waits until Kafka stored everything this worker sent in the open transaction; its progress.
    async fn pause(&mut self) -> Result<Progress, Interrupt> {
        let txn = std::mem::take(&mut self.txn);
        let stored = async {
            for sent in txn.sent {
                if let Err(e) = delivered(&sent.topic, sent.delivery).await {
                    self.shared.metrics.retry(Retry::Publish);
                    if let SendError::Failed { permanent: true, .. } = &e {
                        if sent.event {
                            // The record goes to the DLQ when the aborted transaction is processed again.
                            self.shared.reject(self.partition, sent.offset, e.to_string());
                        }
                    }
                    return Err(Interrupt::Session(e.to_string()));
                }
            }
            let mut last = None;
            for delivery in txn.changelog {
                let offset = delivered(&self.shared.state_topic, delivery)
                    .await
                    .map_err(|e| Interrupt::Session(format!("writing the state changelog: {e}")))?;
                last = last.max(Some(offset));
            }
            Ok(last.map(|o| o + 1))
        };
        let changelog_next = tokio::select! {
            r = stored => r?,
            () = self.stop.cancelled() => return Err(Interrupt::Stopped),
        };
        // The records' outputs are stored: their `output` spans end.
        drop(txn.spans);
        Ok(Progress {
            next_offset: self.next_offset,
            advanced: txn.advanced,
            changes: txn.changes,
            expired: txn.expired,
            changelog_next,
        })
    }

    async fn process(&mut self, batch: Vec<BorrowedMessage<'_>>, found: &Marks) -> Result<(), Interrupt> {
        self.shared.metrics.batch(batch.len());
        let mut group = Vec::with_capacity(batch.len());
        for msg in batch {
            let (envelope, identity) = identify(&msg);
            self.shared.metrics.consumed(&identity.source);
            let record = Record { msg, envelope, identity };
            match found.suspect(record.msg.offset()) {
                None => group.push(record),
                Some(attempts) => {
                    self.process_group(std::mem::take(&mut group)).await?;
                    self.process_suspect(record, attempts).await?;
                }
            }
        }
        self.process_group(group).await
    }

    /// Records that are not crash suspects: marked started and looked up together, then processed in order.
    async fn process_group(&mut self, group: Vec<Record<'_>>) -> Result<(), Interrupt> {
        let Some(last) = group.last().map(|r| r.msg.offset()) else {
            return Ok(());
        };
        let (p, now) = (self.partition, hookline_runtime::now_ms());
        let keys: Vec<(String, String)> = group
            .iter()
            .filter(|r| !r.identity.synthetic)
            .map(|r| (r.identity.source.clone(), r.identity.entry_key.clone()))
            .collect();
        let spans: Vec<tracing::Span> = group.iter().map(record_span).collect();
        let lookups: Vec<tracing::Span> =
            spans.iter().map(|s| tracing::trace_span!(target: TRACES, parent: s, "dedup")).collect();
        let mut in_store = store_call(&self.shared, &self.stop, move |s| {
            s.started(p, last)?;
            s.contains_all(p, &keys, now)
        })
        .await?
        .into_iter();
        drop(lookups);
        for (record, span) in group.into_iter().zip(spans) {
            let started = Instant::now();
            let stored = !record.identity.synthetic && in_store.next().unwrap_or(false);
            let outcome = if stored || self.recently_done(&record.identity, now) {
                Outcome::Duplicate
            } else {
                self.publish(&record, None, now, &span).await?
            };
            span.record("hookline.outcome", outcome.name());
            self.done(&record, outcome, started).await?;
        }
        Ok(())
    }

    /// A crash suspect, tried alone: marked with its attempt before it runs, unmarked once it did not crash.
    async fn process_suspect(&mut self, record: Record<'_>, attempts: u32) -> Result<(), Interrupt> {
        let (p, offset, now) = (self.partition, record.msg.offset(), hookline_runtime::now_ms());
        self.shared.metrics.suspect(p, offset, attempts);
        let started = Instant::now();
        let key = (record.identity.source.clone(), record.identity.entry_key.clone());
        let synthetic = record.identity.synthetic;
        let span = record_span(&record);
        let lookup = tracing::trace_span!(target: TRACES, parent: &span, "dedup");
        let stored = store_call(&self.shared, &self.stop, move |s| {
            s.mark_running(p, offset, attempts + 1)?;
            Ok(!synthetic && s.contains(p, &key.0, &key.1, now)?)
        })
        .await?;
        drop(lookup);
        let outcome = if stored || self.recently_done(&record.identity, now) {
            Outcome::Duplicate
        } else {
            self.publish(&record, Some(attempts), now, &span).await?
        };
        span.record("hookline.outcome", outcome.name());
        store_call(&self.shared, &self.stop, move |s| s.unmark_running(p, offset)).await?;
        self.done(&record, outcome, started).await
    }

    fn recently_done(&self, id: &Identity, now_ms: i64) -> bool {
        !id.synthetic && self.txn.written_until(&id.source, &id.entry_key).is_some_and(|expiry| expiry > now_ms)
    }

    /// Decides what a new record becomes and hands it to the producer: its events, or its DLQ record.
    /// `solo_attempts`: how many times it was tried alone before, for a crash suspect.
    async fn publish(
        &mut self,
        record: &Record<'_>,
        solo_attempts: Option<u32>,
        now: i64,
        span: &tracing::Span,
    ) -> Result<Outcome, Interrupt> {
        let shared = self.shared.clone();
        let (p, offset, id) = (self.partition, record.msg.offset(), &record.identity);
        // A DLQ record counts the attempts that failed: the solo ones that crashed the process, or this one.
        let attempts = solo_attempts.unwrap_or(0).max(1);
        let decision = if let Some(reason) = shared.take_rejected(p, offset) {
            Decision::Fail(Failure::new(ErrorClass::OutputRejected, Stage::Publish, reason))
        } else if let Some(died) = solo_attempts.filter(|a| *a >= shared.settings.crash_loop_attempts) {
            Decision::Fail(Failure::new(
                ErrorClass::CrashLoop,
                Stage::Process,
                format!("the processor died {died} times while processing this record alone; set aside"),
            ))
        } else {
            let passed_on = match &record.envelope {
                Envelope::Valid(meta) => meta.traceparent.as_deref(),
                Envelope::Invalid(_) => None,
            };
            let traceparent = traces::traceparent(span, passed_on);
            tracing::trace_span!(target: TRACES, parent: span, "pipeline")
                .in_scope(|| decide(&shared.pipeline, &record.msg, &record.envelope, traceparent.as_deref()))
        };
        self.txn.spans.push(tracing::trace_span!(target: TRACES, parent: span, "output"));
        let (outputs, failure) = plan(&shared.dlq_topic, &record.msg, id, decision, attempts, now);
        if let Some(f) = failure {
            self.send(offset, &outputs[0], false).await.map_err(Interrupt::from)?;
            return Ok(Outcome::Dlq(f));
        }
        let mut published: Vec<Arc<str>> = Vec::with_capacity(outputs.len());
        for output in &outputs {
            match self.send(offset, output, true).await {
                Ok(()) => published.push(output.topic.clone()),
                Err(SendOutcome::Refused(reason)) => {
                    // An event the producer will never take (larger than it may send): the record goes to the
                    // DLQ instead, whose value is the raw record's, which Kafka already took once. Events already
                    // sent for it are in the same transaction: the session aborts it, and the record is
                    // processed again straight into the DLQ.
                    if !published.is_empty() {
                        shared.reject(p, offset, reason.clone());
                        return Err(Interrupt::Session(format!(
                            "partition {p} offset {offset}: an event was refused after others were sent; \
                             processing the record again into the DLQ: {reason}"
                        )));
                    }
                    let f = Failure::new(ErrorClass::OutputRejected, Stage::Publish, reason);
                    let dlq = dlq_record(&shared.dlq_topic, &record.msg, id, &f, 1, now);
                    self.send(offset, &dlq, false).await.map_err(Interrupt::from)?;
                    return Ok(Outcome::Dlq(f));
                }
                Err(SendOutcome::Interrupt(i)) => return Err(i),
            }
        }
        Ok(if published.is_empty() { Outcome::Filtered } else { Outcome::Events(published) })
    }

    /// Counts a record's outcome and puts its dedup entry in the transaction.
    async fn done(&mut self, record: &Record<'_>, outcome: Outcome, started: Instant) -> Result<(), Interrupt> {
        let m = self.shared.metrics.clone();
        let id = &record.identity;
        let (source, partition, offset) = (id.source.as_str(), self.partition, record.msg.offset());
        match &outcome {
            Outcome::Duplicate => m.duplicate(source, partition, offset),
            Outcome::Filtered => m.filtered(source, partition, offset),
            Outcome::Events(topics) => topics.iter().for_each(|t| m.event(source, t)),
            Outcome::Dlq(failure) => m.dlq(source, partition, offset, failure),
        }
        if !id.synthetic && !matches!(outcome, Outcome::Duplicate) {
            let window = i64::try_from(self.shared.settings.window_of(source).as_millis()).unwrap_or(i64::MAX);
            let entry = Entry {
                source: id.source.clone(),
                dedup_key: id.entry_key.clone(),
                expires_at_ms: id.entry_from_ms.saturating_add(window),
            };
            let record =
                changelog::record(&self.shared.state_topic, &entry.source, &entry.dedup_key, Some(entry.expires_at_ms));
            let delivery = self.enqueue(&record).await.map_err(|e| changelog_error(&e))?;
            self.txn.changelog.push(delivery);
            self.txn
                .recent
                .entry(entry.source.clone())
                .or_default()
                .insert(entry.dedup_key.clone(), entry.expires_at_ms);
            self.txn.changes.push(Change::Put(entry));
        }
        self.txn.advanced = true;
        self.next_offset = Some(offset + 1);
        m.processed(started.elapsed().as_secs_f64());
        m.latency(source, (hookline_runtime::now_ms() - id.entry_from_ms) as f64 / 1000.0);
        self.backlog_since_ms = Some(id.entry_from_ms);
        Ok(())
    }

    /// Tombstones expired entries in the open transaction. An entry this transaction wrote again is not in
    /// RocksDB yet: only its old index entry goes.
    async fn sweep(&mut self) -> Result<(), Interrupt> {
        self.last_sweep = Instant::now();
        self.txn.swept = true;
        let (p, now) = (self.partition, hookline_runtime::now_ms());
        let expired = store_call(&self.shared, &self.stop, move |s| s.expired(p, now, SWEEP_LIMIT)).await?;
        for mut e in expired {
            e.stale = e.stale || self.txn.written_until(&e.source, &e.dedup_key).is_some_and(|expiry| expiry > now);
            if !e.stale {
                let tombstone = changelog::record(&self.shared.state_topic, &e.source, &e.dedup_key, None);
                let delivery = self.enqueue(&tombstone).await.map_err(|e| changelog_error(&e))?;
                self.txn.changelog.push(delivery);
                self.txn.changes.push(Change::Delete { source: e.source.clone(), dedup_key: e.dedup_key.clone() });
            }
            self.txn.expired.push(e);
        }
        Ok(())
    }

    /// Hands one output to the producer in the open transaction. A record Kafka refused for good (`event`:
    /// an event, which the record's DLQ record can replace) is remembered, so the record goes to the DLQ when
    /// processed again.
    async fn send(&mut self, offset: i64, record: &OutputRecord, event: bool) -> Result<(), SendOutcome> {
        match self.enqueue(record).await {
            Ok(delivery) => {
                self.txn.sent.push(Sent { offset, topic: record.topic.clone(), event, delivery });
                Ok(())
            }
            Err(SendError::Refused(reason)) if event => Err(SendOutcome::Refused(reason)),
            Err(SendError::Refused(reason)) => {
                Err(SendOutcome::Interrupt(Interrupt::Process(format!("no topic takes this record: {reason}"))))
            }
            Err(SendError::Failed { reason, .. }) => {
                self.shared.metrics.retry(Retry::Publish);
                Err(SendOutcome::Interrupt(Interrupt::Session(reason)))
            }
        }
    }

    /// Hands `record` to the producer for this partition, waiting while its local queue is full.
    async fn enqueue(&self, record: &OutputRecord) -> Result<DeliveryFuture, SendError> {
        loop {
            match self.outputs.enqueue(self.partition, record) {
                Ok(delivery) => return Ok(delivery),
                Err(Enqueue::Full) => tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(5)) => {}
                    () = self.stop.cancelled() => {
                        return Err(SendError::Failed { reason: "the worker is stopping".into(), permanent: false })
                    }
                },
                Err(Enqueue::Failed(e)) => return Err(e),
            }
        }
    }

    fn report_lag(&self) {
        let age = self.backlog_since_ms.map_or(0, |since| hookline_runtime::now_ms() - since);
        self.shared.metrics.lag_seconds(self.partition, age as f64 / 1000.0);
    }
}

fn changelog_error(e: &SendError) -> Interrupt {
    Interrupt::Session(format!("writing the state changelog: {e}"))
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

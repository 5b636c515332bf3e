//! The worker of one assigned raw partition: reads its records in offset order and, for each one, in order:
//!
//! 1. reads its identity (source, dedup key) from its headers;
//! 2. asks the dedup store whether that webhook already has an output; if so, drops it;
//! 3. builds its output: the event, or a DLQ record with the reason;
//! 4. publishes the output to the same partition of the events or DLQ topic and waits for Kafka's ack;
//! 5. records the dedup key and the partition checkpoint in the store (one write batch);
//! 6. stores the record's offset for the next commit.
//!
//! Invariant: an offset is stored for commit only after steps 4 and 5 succeeded, so a committed offset never
//! covers a record without a published output, and a crash re-reads at most the records after the last
//! commit. A re-read record whose output was published and recorded is dropped at step 2.
//!
//! Nothing is skipped: a failing publish or store is retried until it succeeds, the worker is stopped (the
//! partition is revoked or the process shuts down) or the producer fails fatally (the process stops).

use std::sync::Arc;
use std::time::{Duration, Instant};

use hookline_runtime::admin::Readiness;
use rdkafka::consumer::stream_consumer::StreamPartitionQueue;
use rdkafka::consumer::Consumer;
use rdkafka::message::{Message, OwnedMessage};
use tokio_util::sync::CancellationToken;

use crate::consumer::GroupConsumer;
use crate::dedup::{DedupStore, Entry, StoreError};
use crate::output::{Outputs, PublishError};
use crate::process::{identify, output_for};
use crate::telemetry::Metrics;
use crate::{ProcessorContext, Settings, CHECK_STATE};

/// What every partition worker shares.
#[derive(Debug)]
pub struct Shared {
    /// The validated config.
    pub settings: Settings,
    /// The dedup store.
    pub store: DedupStore,
    /// The output producer.
    pub outputs: Outputs,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Readiness checks.
    pub readiness: Arc<Readiness>,
    /// Cancelled when the process must stop because of an unrecoverable error.
    pub fatal: CancellationToken,
    /// The unrecoverable error.
    pub fatal_reason: std::sync::Mutex<Option<String>>,
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

/// Why a worker stopped in the middle of a record.
enum Interrupted {
    Stopped,
    Fatal(String),
}

/// Runs the worker until `stop` is cancelled. `done` is dropped when the worker has finished, after its
/// last offset was stored.
pub async fn run(
    shared: Arc<Shared>,
    consumer: Arc<GroupConsumer>,
    queue: StreamPartitionQueue<ProcessorContext>,
    topic: String,
    partition: i32,
    stop: CancellationToken,
    done: std::sync::mpsc::SyncSender<()>,
) {
    tracing::info!(topic = %topic, partition, "partition worker started");
    loop {
        let received = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            m = queue.recv() => m,
        };
        let msg = match received {
            Ok(m) => m.detach(),
            Err(e) => {
                tracing::warn!(error = %e, partition, "consumer error");
                continue;
            }
        };
        match process(&shared, &msg, &stop).await {
            Ok(()) => {
                if let Err(e) = consumer.store_offset(&topic, partition, msg.offset()) {
                    // The partition was revoked meanwhile: the next owner re-reads this record and the dedup
                    // store (or its rebuild) drops it.
                    tracing::debug!(error = %e, partition, offset = msg.offset(), "offset not stored");
                }
            }
            Err(Interrupted::Stopped) => break,
            Err(Interrupted::Fatal(reason)) => {
                shared.fail(reason);
                break;
            }
        }
    }
    drop(queue);
    tracing::info!(topic = %topic, partition, "partition worker stopped");
    drop(done);
}

async fn process(shared: &Arc<Shared>, msg: &OwnedMessage, stop: &CancellationToken) -> Result<(), Interrupted> {
    let started = Instant::now();
    let (envelope, identity) = identify(msg);
    shared.metrics.consumed(&identity.source);
    let now = hookline_runtime::now_ms();

    let (source, key) = (identity.source.clone(), identity.dedup_key.clone());
    if with_store(shared, stop, move |s| s.contains(&source, &key, now)).await? {
        shared.metrics.duplicate(&identity.source, msg.partition(), msg.offset());
        return Ok(());
    }

    let (output, failure) = output_for(msg, &envelope, &identity, &shared.settings.sources, now);
    shared.outputs.publish(msg.partition(), &output, stop).await.map_err(|e| match e {
        PublishError::Stopped => Interrupted::Stopped,
        PublishError::Fatal(reason) => Interrupted::Fatal(reason),
    })?;
    match &failure {
        None => shared.metrics.event(&identity.source),
        Some(f) => shared.metrics.dlq(&identity.source, msg.partition(), msg.offset(), f),
    }

    let window_ms = i64::try_from(shared.settings.dedup_window.as_millis()).unwrap_or(i64::MAX);
    let entry = Entry {
        source: identity.source,
        dedup_key: identity.dedup_key,
        seen_at_ms: identity.received_at_ms,
        expires_at_ms: identity.received_at_ms.saturating_add(window_ms),
    };
    let checkpoint = (msg.topic().to_owned(), msg.partition(), msg.offset() + 1);
    // The output is published: from here on the record must be recorded even if asked to stop, or a
    // re-read would publish it twice. Only a fatal error interrupts this.
    let never = CancellationToken::new();
    with_store(shared, &never, move |s| {
        s.record(std::slice::from_ref(&entry), (&checkpoint.0, checkpoint.1, checkpoint.2))
    })
    .await?;
    shared.metrics.processed(started.elapsed().as_secs_f64());
    Ok(())
}

/// Runs a store call off the async workers, retrying with backoff while the store fails (a full or
/// read-only disk): the partition stops advancing and `/readyz` says why, instead of records being skipped.
async fn with_store<T, F>(shared: &Arc<Shared>, stop: &CancellationToken, call: F) -> Result<T, Interrupted>
where
    T: Send + 'static,
    F: Fn(&DedupStore) -> Result<T, StoreError> + Send + Sync + 'static,
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
            }
            Err(join) => return Err(Interrupted::Fatal(format!("dedup store task failed: {join}"))),
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = stop.cancelled() => return Err(Interrupted::Stopped),
            () = shared.fatal.cancelled() => return Err(Interrupted::Stopped),
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

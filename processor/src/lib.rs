//! # hookline processor
//!
//! Reads the raw topic as a member of a consumer group and turns every raw record into exactly one outcome:
//! its CloudEvents on the events topic(s), or a record on the DLQ topic saying why it could not be one, or
//! nothing when the webhook was already processed (a duplicate) or filtered out. See [`partition`] for the
//! guarantee and how it is kept.
//!
//! - [`consumer`]: group membership, rebalances, one worker per assigned partition;
//! - [`recovery`]: rebuilding a partition's state when it is assigned (changelog and outputs read back);
//! - [`partition`]: the per-partition loop, its checkpoints and its invariant;
//! - [`scheduler`]: per-key order with concurrency inside a partition;
//! - [`pipeline`], [`process`], [`dlq`]: what a record becomes, without I/O;
//! - [`output`]: publishing, partition-aligned with the raw topic;
//! - [`store`], [`changelog`]: the local RocksDB state and its changelog topic.
//!
//! [`run`] takes an admin listener and a cancellation token, so tests can run several processors in one
//! process.

pub mod changelog;
pub mod config;
pub mod consumer;
pub mod dlq;
mod faults;
pub mod output;
pub mod partition;
pub mod pipeline;
pub mod process;
pub mod recovery;
pub mod scheduler;
pub mod store;
pub mod telemetry;

use std::sync::Arc;
use std::time::Duration;

use hookline_runtime::admin::{self, Readiness};
use hookline_runtime::kafka::{ensure_topics, TopicError, TopicInfo, TopicSpec};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::{Config, Settings};
pub use consumer::ProcessorContext;

pub(crate) const CHECK_TOPICS: &str = "topics";
pub(crate) const CHECK_GROUP: &str = "group";
pub(crate) const CHECK_STATE: &str = "state";

/// The processor could not run, or stopped on an unrecoverable error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The state store cannot be opened.
    #[error("cannot open the state store in {dir} (config field `state.dir`): {source}")]
    State {
        /// The folder.
        dir: String,
        /// Why.
        #[source]
        source: store::StoreError,
    },
    /// The pipelines cannot be compiled.
    #[error("{0}")]
    Pipeline(String),
    /// The topics are not usable as they are.
    #[error("{0}")]
    Topics(String),
    /// A Kafka client could not be created.
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// A background task or thread failed to start or finish.
    #[error("{0}")]
    Task(String),
    /// Processing stopped on an unrecoverable error; a restart resumes from the last commit.
    #[error("processing stopped: {0}")]
    Fatal(String),
}

/// Runs the processor until `shutdown` is cancelled (or an unrecoverable error), serving `/metrics`,
/// `/livez` and `/readyz` on `admin_listener`.
pub async fn run(settings: Settings, admin_listener: TcpListener, shutdown: CancellationToken) -> Result<(), Error> {
    let mut registry = Registry::default();
    let metrics = Arc::new(telemetry::Metrics::register(&mut registry, settings.sources.keys()));
    let readiness = Arc::new(Readiness::new(&[CHECK_TOPICS, CHECK_GROUP, CHECK_STATE]));
    let admin_stop = CancellationToken::new();
    let admin_task =
        tokio::spawn(admin::serve(admin_listener, Arc::new(registry), readiness.clone(), admin_stop.clone()));
    let result = run_inner(settings, metrics, readiness, shutdown).await;
    admin_stop.cancel();
    let _ = admin_task.await;
    result
}

async fn run_inner(
    settings: Settings,
    metrics: Arc<telemetry::Metrics>,
    readiness: Arc<Readiness>,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let dir = settings.state_dir.clone();
    let raw_topic = settings.topics.raw.clone();
    let store = tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&dir).map_err(|e| Error::Task(format!("cannot create {}: {e}", dir.display())))?;
        store::Store::open(&dir, &raw_topic).map_err(|source| Error::State { dir: dir.display().to_string(), source })
    })
    .await
    .map_err(|e| Error::Task(e.to_string()))??;
    readiness.pass(CHECK_STATE);
    let pipeline = pipeline::Pipeline::new(&settings).map_err(Error::Pipeline)?;

    let Some(partitions) = ensure_all_topics(&settings, &readiness, &shutdown).await? else {
        return Ok(());
    };
    tracing::info!(partitions, raw = %settings.topics.raw, "topics ready");

    let shared = Arc::new(partition::Shared {
        dlq_topic: Arc::from(settings.topics.dlq.as_str()),
        state_topic: Arc::from(settings.topics.state.as_str()),
        settings,
        store,
        pipeline,
        metrics,
        readiness,
        fatal: CancellationToken::new(),
        fatal_reason: std::sync::Mutex::new(None),
    });
    let sizes = tokio::spawn(report_state_size(shared.clone(), shutdown.clone()));
    let mut backoff = Duration::from_secs(1);
    loop {
        let session = Arc::new(partition::Session::new(output::Outputs::new(&shared.settings.kafka)?));
        let consumer = consumer::create(&shared, &session, tokio::runtime::Handle::current())?;
        let group = consumer::spawn_group_thread(consumer, shutdown.clone()).map_err(|e| Error::Task(e.to_string()))?;
        tokio::task::spawn_blocking(move || group.join())
            .await
            .map_err(|e| Error::Task(e.to_string()))?
            .map_err(|_| Error::Task("the group thread panicked".into()))?;
        let flushing = session.clone();
        let _ = tokio::task::spawn_blocking(move || {
            if let Err(e) = flushing.outputs.flush(Duration::from_secs(10)) {
                tracing::warn!(error = %e, "output producer flush incomplete");
            }
        })
        .await;
        if shutdown.is_cancelled() || shared.fatal.is_cancelled() || !session.broken.is_cancelled() {
            break;
        }
        let reason = session.reason.lock().ok().and_then(|r| r.clone()).unwrap_or_default();
        shared.metrics.session_restart();
        tracing::warn!(%reason, retry_in = ?backoff, "recreating the Kafka clients");
        drop(session);
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = shutdown.cancelled() => break,
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
    sizes.abort();

    let flush = shared.clone();
    let _ = tokio::task::spawn_blocking(move || {
        if let Err(e) = flush.store.flush() {
            tracing::warn!(error = %e, "state store flush failed");
        }
    })
    .await;
    let fatal = shared.fatal_reason.lock().ok().and_then(|r| r.clone());
    match fatal {
        Some(reason) => Err(Error::Fatal(reason)),
        None => {
            tracing::info!("processor stopped");
            Ok(())
        }
    }
}

/// Refreshes the state store's size metrics every 15 s.
async fn report_state_size(shared: Arc<partition::Shared>, shutdown: CancellationToken) {
    loop {
        let store = shared.store.clone();
        if let Ok(Ok((bytes, entries))) = tokio::task::spawn_blocking(move || store.size()).await {
            shared.metrics.state_size(bytes, entries);
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(15)) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

/// The state changelog's topic-level settings: plain deletion (not compaction) with a retention of the longest
/// dedup window plus a day, so a processor taking over a partition can still read every live dedup key.
pub fn state_topic_config(settings: &Settings) -> Vec<(String, String)> {
    let retention_ms = (settings.longest_window() + Duration::from_secs(24 * 3600)).as_millis().to_string();
    vec![("cleanup.policy".into(), "delete".into()), ("retention.ms".into(), retention_ms)]
}

/// Creates the processor's missing topics in one attempt: the raw topic with its configured partitions, then
/// the output topics and the state changelog with the raw topic's actual partition count. Returns the raw
/// topic first, then the others in the order of [`Settings::output_topics`], then the changelog. Existing
/// topics are left as they are; [`check_partition_alignment`] says whether the processor can use them.
pub async fn ensure_processor_topics(settings: &Settings) -> Result<Vec<TopicInfo>, TopicError> {
    let t = &settings.topics;
    let mut all = ensure_topics(
        &settings.kafka,
        &[TopicSpec { name: t.raw.clone(), partitions: t.raw_partitions, config: Vec::new() }],
    )
    .await?;
    let partitions = all.first().map(|r| r.partitions).unwrap_or(t.raw_partitions);
    let mut specs: Vec<TopicSpec> =
        settings.output_topics().into_iter().map(|name| TopicSpec { name, partitions, config: Vec::new() }).collect();
    specs.push(TopicSpec { name: t.state.clone(), partitions, config: state_topic_config(settings) });
    all.extend(ensure_topics(&settings.kafka, &specs).await?);
    Ok(all)
}

/// The raw topic's partition count, if every output topic and the changelog have the same (they are
/// partition-aligned with the raw topic); else an error naming the misaligned topic. `topics` is what
/// [`ensure_processor_topics`] returned.
pub fn check_partition_alignment(settings: &Settings, topics: &[TopicInfo]) -> Result<i32, Error> {
    let raw = &settings.topics.raw;
    let partitions = topics.first().map(|r| r.partitions).unwrap_or(settings.topics.raw_partitions);
    match topics.iter().skip(1).find(|o| o.partitions != partitions) {
        Some(bad) => Err(Error::Topics(format!(
            "topic `{}` has {} partitions but the raw topic `{raw}` has {partitions}: outputs and the state \
             changelog are partition-aligned with the raw topic, so recreate `{}` with {partitions} partitions \
             or configure another topic in its place",
            bad.name, bad.partitions, bad.name,
        ))),
        None => Ok(partitions),
    }
}

/// Creates missing topics ([`ensure_processor_topics`]), retrying while the cluster is unreachable; `None` if
/// shut down meanwhile.
async fn ensure_all_topics(
    settings: &Settings,
    readiness: &Readiness,
    shutdown: &CancellationToken,
) -> Result<Option<i32>, Error> {
    let mut backoff = Duration::from_millis(250);
    loop {
        let attempt = tokio::select! {
            r = ensure_processor_topics(settings) => r,
            () = shutdown.cancelled() => return Ok(None),
        };
        match attempt {
            Ok(topics) => {
                let partitions = check_partition_alignment(settings, &topics)?;
                readiness.pass(CHECK_TOPICS);
                return Ok(Some(partitions));
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "cannot ensure topics");
                readiness.fail(CHECK_TOPICS, e.to_string());
            }
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = shutdown.cancelled() => return Ok(None),
        }
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

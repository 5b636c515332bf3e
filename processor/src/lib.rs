//! # hookline processor
//!
//! Reads the raw topic as a member of a consumer group and turns every raw record into exactly one output:
//! a CloudEvent on the events topic, or a record on the DLQ topic saying why it could not be one. A webhook
//! whose dedup key was already processed yields nothing.
//!
//! - [`consumer`]: group membership, rebalances, one worker per assigned partition;
//! - [`partition`]: the per-partition loop and its invariant (offsets stored only after outputs are acked);
//! - [`process`], [`normalize`], [`dlq`]: what a record becomes, without I/O;
//! - [`output`]: publishing, partition-aligned with the raw topic;
//! - [`dedup`]: the RocksDB dedup store.
//!
//! [`run`] takes an admin listener and a cancellation token, so tests can run several processors in one
//! process.

pub mod config;
pub mod consumer;
pub mod dedup;
pub mod dlq;
pub mod normalize;
pub mod output;
pub mod partition;
pub mod process;
pub mod telemetry;

use std::sync::Arc;
use std::time::Duration;

use hookline_runtime::admin::{self, Readiness};
use hookline_runtime::kafka::{ensure_topics, TopicError, TopicSpec};
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
    /// The dedup store cannot be opened.
    #[error("cannot open the dedup store in {dir} (config field `state.dir`): {source}")]
    State {
        /// The folder.
        dir: String,
        /// Why.
        #[source]
        source: dedup::StoreError,
    },
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
    let store = tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&dir).map_err(|e| Error::Task(format!("cannot create {}: {e}", dir.display())))?;
        dedup::DedupStore::open(&dir).map_err(|source| Error::State { dir: dir.display().to_string(), source })
    })
    .await
    .map_err(|e| Error::Task(e.to_string()))??;
    readiness.pass(CHECK_STATE);

    let Some(partitions) = ensure_all_topics(&settings, &readiness, &shutdown).await? else {
        return Ok(());
    };
    tracing::info!(partitions, raw = %settings.topics.raw, "topics ready");

    let outputs = output::Outputs::new(&settings.kafka, &settings.topics.events, &settings.topics.dlq)?;
    let shared = Arc::new(partition::Shared {
        settings,
        store,
        outputs,
        metrics,
        readiness,
        fatal: CancellationToken::new(),
        fatal_reason: std::sync::Mutex::new(None),
    });
    let consumer = consumer::create(&shared, tokio::runtime::Handle::current())?;
    let group = consumer::spawn_group_thread(consumer, shutdown).map_err(|e| Error::Task(e.to_string()))?;
    tokio::task::spawn_blocking(move || group.join())
        .await
        .map_err(|e| Error::Task(e.to_string()))?
        .map_err(|_| Error::Task("the group thread panicked".into()))?;

    let flush = shared.clone();
    let _ = tokio::task::spawn_blocking(move || {
        if let Err(e) = flush.outputs.flush(Duration::from_secs(10)) {
            tracing::warn!(error = %e, "output producer flush incomplete");
        }
        if let Err(e) = flush.store.flush() {
            tracing::warn!(error = %e, "dedup store flush failed");
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

/// Creates missing topics: the raw topic with its configured partitions, the output topics with the raw
/// topic's partition count. Retries while the cluster is unreachable; `None` if shut down meanwhile.
async fn ensure_all_topics(
    settings: &Settings,
    readiness: &Readiness,
    shutdown: &CancellationToken,
) -> Result<Option<i32>, Error> {
    let t = &settings.topics;
    let mut backoff = Duration::from_millis(250);
    loop {
        let attempt = async {
            let raw = ensure_topics(
                &settings.kafka,
                &[TopicSpec { name: t.raw.clone(), partitions: t.raw_partitions, config: Vec::new() }],
            )
            .await?;
            let partitions = raw.first().map(|r| r.partitions).unwrap_or(t.raw_partitions);
            let outputs = [&t.events, &t.dlq]
                .into_iter()
                .map(|name| TopicSpec { name: name.clone(), partitions, config: Vec::new() })
                .collect::<Vec<_>>();
            Ok::<_, TopicError>((partitions, ensure_topics(&settings.kafka, &outputs).await?))
        };
        let attempt = tokio::select! {
            r = attempt => r,
            () = shutdown.cancelled() => return Ok(None),
        };
        match attempt {
            Ok((partitions, outputs)) => {
                if let Some(bad) = outputs.iter().find(|o| o.partitions != partitions) {
                    return Err(Error::Topics(format!(
                        "topic `{}` has {} partitions but the raw topic `{}` has {partitions}: outputs are \
                         partition-aligned with the raw topic, so recreate `{}` with {partitions} partitions \
                         or point topics.{} at another topic",
                        bad.name,
                        bad.partitions,
                        t.raw,
                        bad.name,
                        if bad.name == t.events { "events" } else { "dlq" },
                    )));
                }
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

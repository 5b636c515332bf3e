//! # hookline processor
//!
//! Reads the raw topic as a member of a consumer group and turns every raw record into exactly one outcome:
//! its CloudEvents on the events topic(s), or a record on the DLQ topic saying why it could not be one, or
//! nothing when the webhook was already processed (a duplicate) or filtered out. See [`session`] for the
//! guarantee and how Kafka transactions keep it.
//!
//! From the top down (no import cycles: a module uses only those listed after it and the leaves
//! [`telemetry`] and [`faults`]; the config is [`hookline_config::processor`]):
//! - [`session`]: one generation of Kafka clients, its partition workers, and the transaction loop;
//! - [`partition`]: one partition's worker: restore ([`restore`]), then its records in offset order, in
//!   batches: deduplicated, run through the pipeline and handed to the transactional producer;
//! - [`consumer`]: group membership and rebalances, on their own thread, sent to the session as requests;
//! - [`shared`]: the process-wide state, how a session is ended, and RocksDB calls from async code;
//! - [`process`] and the `hookline-pipeline` crate: what a record becomes (its events or its DLQ record), without I/O;
//! - [`store`], [`changelog`]: the local RocksDB cache of the dedup state and its source of truth;
//! - [`output`]: the transactional producer, partition-aligned with the raw topic.
//!
//! [`run`] takes an admin listener and a cancellation token, so tests can run several processors in one
//! process.

mod changelog;
mod consumer;
mod faults;
mod output;
mod partition;
mod process;
mod restore;
mod session;
mod shared;
mod store;
mod telemetry;

use std::sync::Arc;
use std::time::Duration;

use hookline_config::topics::{check_partition_alignment, ensure_processor_topics};
use hookline_runtime::admin::{self, Readiness};
use hookline_runtime::backoff::{self, Backoff};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use hookline_config::processor::{Config, Settings};

/// What a raw record becomes, without Kafka or state: the entry point of the fuzz targets in `fuzz/`
/// (feature `fuzzing`, which no build of the binaries turns on).
#[cfg(feature = "fuzzing")]
pub mod fuzzing {
    use std::sync::Arc;

    use rdkafka::message::{Header, OwnedHeaders, OwnedMessage};
    use rdkafka::Timestamp;

    /// Every source's pipeline and the routes, compiled from a config.
    #[derive(Debug)]
    pub struct Pipeline(hookline_pipeline::Pipeline);

    impl Pipeline {
        /// Compiles the pipeline of `settings`, as the processor does at startup.
        pub fn new(settings: &crate::Settings) -> Result<Pipeline, String> {
            hookline_pipeline::Pipeline::new(settings).map(Pipeline).map_err(|e| e.to_string())
        }
    }

    /// A raw record with `headers`, `key` and `body` read and run through the pipeline as a partition worker
    /// does (envelope, identity, pipeline, then its output records): the values of its events, or its DLQ
    /// reason.
    pub fn record(
        pipeline: &Pipeline,
        headers: &[(&str, &[u8])],
        key: Option<&[u8]>,
        body: &[u8],
    ) -> Result<Vec<Vec<u8>>, String> {
        let headers =
            headers.iter().fold(OwnedHeaders::new(), |h, (key, value)| h.insert(Header { key, value: Some(*value) }));
        let raw = OwnedMessage::new(
            Some(body.to_vec()),
            key.map(<[u8]>::to_vec),
            "hookline.raw".to_owned(),
            Timestamp::CreateTime(1_700_000_000_000),
            0,
            0,
            Some(headers),
        );
        let (envelope, identity) = crate::process::identify(&raw);
        let decision = crate::process::decide(&pipeline.0, &raw, &envelope, None);
        let dlq: Arc<str> = Arc::from("hookline.dlq");
        let (outputs, failure) = crate::process::plan(&dlq, &raw, &identity, decision, 1, 1_700_000_000_000);
        match failure {
            Some(f) => Err(f.reason),
            None => Ok(outputs.into_iter().filter_map(|o| o.value).collect()),
        }
    }
}

pub(crate) const CHECK_TOPICS: &str = "topics";
pub(crate) const CHECK_GROUP: &str = "group";
pub(crate) const CHECK_STATE: &str = "state";
pub(crate) const CHECK_TRANSACTIONS: &str = "transactions";

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
    /// The pipelines cannot be compiled (a VRL program, a route schema).
    #[error("{0}")]
    Pipeline(#[source] hookline_runtime::config::ConfigError),
    /// The topics are not usable as they are.
    #[error("{0}")]
    Topics(String),
    /// A Kafka client could not be created.
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// A background task or thread failed to start or finish.
    #[error("{0}")]
    Task(String),
    /// The cluster cannot do what the processor needs (transactions).
    #[error("{0}")]
    Transactions(String),
    /// Processing stopped on an unrecoverable error; a restart resumes from the last commit.
    #[error("processing stopped: {0}")]
    Fatal(String),
}

/// Runs the processor until `shutdown` is cancelled (or an unrecoverable error), serving `/metrics`,
/// `/livez` and `/readyz` on `admin_listener`.
pub async fn run(settings: Settings, admin_listener: TcpListener, shutdown: CancellationToken) -> Result<(), Error> {
    let mut registry = Registry::default();
    let metrics = Arc::new(telemetry::Metrics::register(&mut registry, settings.sources.keys()));
    let readiness = Arc::new(Readiness::new(&[CHECK_TOPICS, CHECK_TRANSACTIONS, CHECK_GROUP, CHECK_STATE]));
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
    let pipeline = hookline_pipeline::Pipeline::new(&settings).map_err(Error::Pipeline)?;
    let dir = settings.state_dir.clone();
    let raw_topic = settings.topics.raw.clone();
    let store = tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&dir).map_err(|e| Error::Task(format!("cannot create {}: {e}", dir.display())))?;
        store::Store::open(&dir, &raw_topic).map_err(|source| Error::State { dir: dir.display().to_string(), source })
    })
    .await
    .map_err(|e| Error::Task(e.to_string()))??;
    readiness.pass(CHECK_STATE);

    let Some(partitions) = ensure_all_topics(&settings, &readiness, &shutdown).await? else {
        return Ok(());
    };
    tracing::info!(partitions, raw = %settings.topics.raw, "topics ready");

    let shared = Arc::new(shared::Shared::new(settings, store, pipeline, metrics, readiness));
    let sizes = tokio::spawn(report_state_size(shared.clone(), shutdown.clone()));
    let transactional_id = output::transactional_id(&shared.settings.consumer.group_id, shared.store.instance());
    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
    loop {
        let Some(outputs) = init_producer(&shared, &transactional_id, &shutdown).await? else {
            break;
        };
        let session = Arc::new(session::Session::new(outputs));
        let consumer = consumer::create(&shared, session.breaker.clone(), session.requests.clone())?;
        let transactions = session.start(shared.clone(), consumer.clone());
        let group = consumer::spawn_group_thread(consumer, shutdown.clone()).map_err(|e| Error::Task(e.to_string()))?;
        tokio::task::spawn_blocking(move || group.join())
            .await
            .map_err(|e| Error::Task(e.to_string()))?
            .map_err(|_| Error::Task("the group thread panicked".into()))?;
        session.close();
        let _ = transactions.await;
        if shutdown.is_cancelled() || shared.fatal.is_cancelled() {
            break;
        }
        let reason = session.breaker.reason();
        shared.metrics.session_restart();
        let wait = backoff.next_wait();
        tracing::warn!(%reason, retry_in = ?wait, "starting a new session");
        let aborting = session.clone();
        let _ = tokio::task::spawn_blocking(move || aborting.outputs.abort()).await;
        drop(session);
        if !backoff::sleep(wait, &shutdown).await {
            break;
        }
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

/// A transactional producer registered with the cluster, retrying while the cluster is unreachable; `None` if
/// shut down meanwhile. A cluster that cannot do transactions stops the process.
async fn init_producer(
    shared: &Arc<shared::Shared>,
    transactional_id: &str,
    shutdown: &CancellationToken,
) -> Result<Option<output::Outputs>, Error> {
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(10));
    loop {
        let outputs = output::Outputs::new(&shared.settings, transactional_id)?;
        let attempt = tokio::task::spawn_blocking(move || outputs.init().map(|()| outputs));
        let result = tokio::select! {
            r = attempt => r.map_err(|e| Error::Task(e.to_string()))?,
            () = shutdown.cancelled() => return Ok(None),
        };
        let e = match result {
            Ok(outputs) => {
                shared.readiness.pass(CHECK_TRANSACTIONS);
                return Ok(Some(outputs));
            }
            Err(e) if output::is_unsupported(&e) => {
                return Err(Error::Transactions(format!(
                    "the Kafka cluster refused transactions ({e}). hookline's processor needs Kafka transactions \
                     (Apache Kafka 2.5 or later, or a compatible broker with transactions enabled, and permission to \
                     use the transactional id `{transactional_id}`): see the README's \"What hookline needs of a broker\""
                )))
            }
            Err(e) => e,
        };
        let wait = backoff.next_wait();
        tracing::warn!(error = %e, retry_in = ?wait, "cannot start a transactional producer yet");
        shared.readiness.fail(CHECK_TRANSACTIONS, e.to_string());
        if !backoff::sleep(wait, shutdown).await {
            return Ok(None);
        }
    }
}

/// Refreshes the state store's size metrics every 15 s.
async fn report_state_size(shared: Arc<shared::Shared>, shutdown: CancellationToken) {
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

/// Creates missing topics ([`ensure_processor_topics`]), retrying while the cluster is unreachable; `None` if
/// shut down meanwhile.
async fn ensure_all_topics(
    settings: &Settings,
    readiness: &Readiness,
    shutdown: &CancellationToken,
) -> Result<Option<i32>, Error> {
    let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(10));
    loop {
        let attempt = tokio::select! {
            r = ensure_processor_topics(settings) => r,
            () = shutdown.cancelled() => return Ok(None),
        };
        let e = match attempt {
            Ok(topics) => {
                let partitions =
                    check_partition_alignment(settings, &topics).map_err(|e| Error::Topics(e.to_string()))?;
                readiness.pass(CHECK_TOPICS);
                return Ok(Some(partitions));
            }
            Err(e) => e,
        };
        let wait = backoff.next_wait();
        tracing::warn!(error = %e, retry_in = ?wait, "cannot ensure topics");
        readiness.fail(CHECK_TOPICS, e.to_string());
        if !backoff::sleep(wait, shutdown).await {
            return Ok(None);
        }
    }
}

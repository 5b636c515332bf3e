//! What every layer of the processor shares: the process-wide state ([`Shared`]), how a session is ended
//! ([`Breaker`]), why work stopped ([`Interrupt`]), and RocksDB calls made from async code ([`store_call`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hookline_config::processor::Settings;
use hookline_runtime::admin::Readiness;
use hookline_runtime::backoff::Backoff;
use tokio_util::sync::CancellationToken;

use crate::store::{Store, StoreError};
use crate::telemetry::Metrics;
use crate::CHECK_STATE;
use hookline_pipeline::Pipeline;

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
    pub(crate) committed: Mutex<HashMap<i32, i64>>,
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

/// Ends one session ([`crate::session`]): cancelled once the session cannot go on, with the first reason given.
/// The group thread, the partition workers and the transaction loop each hold it.
#[derive(Debug, Default)]
pub struct Breaker {
    token: CancellationToken,
    reason: Mutex<Option<String>>,
}

impl Breaker {
    /// Ends the session with `reason` (the first reason given wins).
    pub fn fail(&self, reason: String) {
        if !self.token.is_cancelled() {
            tracing::warn!(%reason, "aborting the transaction and starting a new session");
        }
        if let Ok(mut r) = self.reason.lock() {
            r.get_or_insert(reason);
        }
        self.token.cancel();
    }

    /// Whether the session has ended.
    pub fn is_broken(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Resolves once the session has ended.
    pub async fn broken(&self) {
        self.token.cancelled().await;
    }

    /// Why the session ended.
    pub fn reason(&self) -> String {
        self.reason.lock().ok().and_then(|r| r.clone()).unwrap_or_default()
    }
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

/// Runs a store call on a blocking thread, retrying with backoff while the store fails (a full or read-only
/// disk): the partition stops advancing and `/readyz` says why, instead of records being skipped.
pub(crate) async fn store_call<T, F>(shared: &Shared, stop: &CancellationToken, call: F) -> Result<T, Interrupt>
where
    T: Send + 'static,
    F: Fn(&Store) -> Result<T, StoreError> + Send + Sync + 'static,
{
    let call = Arc::new(call);
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
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
            () = tokio::time::sleep(backoff.next_wait()) => {}
            () = stop.cancelled() => return Err(Interrupt::Stopped),
            () = shared.fatal.cancelled() => return Err(Interrupt::Stopped),
        }
    }
}

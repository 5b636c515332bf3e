//! Every event the processor reports: the metric and, where useful, the log line, in one place.
//!
//! Names follow `hookline_processor_<what>_<unit>`. Labels are bounded: `source` is a source named in the
//! config or `_unknown` (raw records can come from anywhere, so unknown names never become labels); `topic` is
//! an output topic of the config; `class` is a DLQ error class; `partition` is a raw partition number.

use std::collections::BTreeMap;
use std::sync::Mutex;

use hookline_schemas::dlq::ErrorClass;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use hookline_schemas::UNKNOWN_SOURCE;

use hookline_pipeline::Failure;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabel {
    source: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceClass {
    source: String,
    class: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceTopic {
    source: String,
    topic: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartitionLabel {
    partition: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

/// Handles for one source label.
#[derive(Debug, Clone)]
struct SourceHandles {
    consumed: Counter,
    duplicates: Counter,
    filtered: Counter,
    dlq: Vec<Counter>,
    latency: Histogram,
}

/// What a retry was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Publishing an output or a changelog record.
    Publish,
    /// A state store read or write.
    Store,
    /// Reading the changelog and outputs back.
    Restore,
}

/// The processor's metrics.
#[derive(Debug)]
pub struct Metrics {
    sources: BTreeMap<String, SourceHandles>,
    other: SourceHandles,
    events: Family<SourceTopic, Counter>,
    retries: Family<KindLabel, Counter>,
    lag: Family<PartitionLabel, Gauge>,
    lag_seconds: Family<PartitionLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
    lag_partitions: Mutex<Vec<i32>>,
    assigned: Gauge,
    rebalances: Family<KindLabel, Counter>,
    restore_seconds: Histogram,
    restored: Counter,
    transactions: Family<KindLabel, Counter>,
    commit_seconds: Histogram,
    batch_records: Histogram,
    record_seconds: Histogram,
    store_errors: Counter,
    state_bytes: Gauge,
    state_entries: Gauge,
    sessions: Counter,
    suspects: Counter,
}

impl Metrics {
    /// Registers every metric, with handles for each configured source.
    pub fn register<'a>(registry: &mut Registry, sources: impl IntoIterator<Item = &'a String>) -> Metrics {
        let consumed = Family::<SourceLabel, Counter>::default();
        registry.register("hookline_processor_records_consumed", "Raw records read", consumed.clone());
        let duplicates = Family::<SourceLabel, Counter>::default();
        registry.register(
            "hookline_processor_duplicates_dropped",
            "Raw records dropped because their webhook (source and dedup key) already has an output",
            duplicates.clone(),
        );
        let filtered = Family::<SourceLabel, Counter>::default();
        registry.register(
            "hookline_processor_records_filtered",
            "Raw records whose events were all filtered out by the source's allow/deny lists",
            filtered.clone(),
        );
        let events = Family::<SourceTopic, Counter>::default();
        registry.register("hookline_processor_events_produced", "Events published, per topic", events.clone());
        let dlq = Family::<SourceClass, Counter>::default();
        registry.register(
            "hookline_processor_dlq_records",
            "Records published to the DLQ, by error class",
            dlq.clone(),
        );
        let latency = Family::<SourceLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.005, 2.0, 16))
        });
        registry.register(
            "hookline_processor_latency_seconds",
            "From the ingress receiving a webhook to its outputs being handed to the producer in the open transaction (or its duplicate dropped); visibility adds up to one commit interval and the commit",
            latency.clone(),
        );
        let retries = Family::<KindLabel, Counter>::default();
        registry.register(
            "hookline_processor_retries",
            "Transient failures retried (operation: publish = a transaction aborted on a failed delivery, store, restore)",
            retries.clone(),
        );
        let lag = Family::<PartitionLabel, Gauge>::default();
        registry.register(
            "hookline_processor_consumer_lag_records",
            "Raw records not yet processed, per assigned partition (high watermark minus next offset to process)",
            lag.clone(),
        );
        let lag_seconds = Family::<PartitionLabel, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register(
            "hookline_processor_consumer_lag_seconds",
            "Age of the oldest raw record read but not yet processed, per assigned partition (0 when caught up)",
            lag_seconds.clone(),
        );
        let assigned = Gauge::default();
        registry.register(
            "hookline_processor_assigned_partitions",
            "Raw partitions assigned to this process",
            assigned.clone(),
        );
        let rebalances = Family::<KindLabel, Counter>::default();
        registry.register(
            "hookline_processor_rebalances",
            "Consumer group rebalances seen by this process (kind: assign, revoke, lost)",
            rebalances.clone(),
        );
        let restore_seconds = Histogram::new(exponential_buckets(0.01, 2.0, 14));
        registry.register(
            "hookline_processor_restore_duration_seconds",
            "Time to bring a newly assigned partition's dedup state up to date from the state changelog",
            restore_seconds.clone(),
        );
        let restored = Counter::default();
        registry.register(
            "hookline_processor_restored_entries",
            "State changelog records (entries and tombstones) applied when partitions were assigned",
            restored.clone(),
        );
        let transactions = Family::<KindLabel, Counter>::default();
        registry.register(
            "hookline_processor_transactions",
            "Transactions ended (kind: committed, aborted); an abort ends the session and its records are processed again",
            transactions.clone(),
        );
        let commit_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 14));
        registry.register(
            "hookline_processor_commit_duration_seconds",
            "Time to commit one transaction, from pausing the partitions to resuming them",
            commit_seconds.clone(),
        );
        let batch_records = Histogram::new([1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0]);
        registry.register(
            "hookline_processor_batch_records",
            "Records of one partition processed as one batch (one state lookup): near 1 the partition keeps up \
             with its input, near consumer.max_batch_per_partition it works through a backlog",
            batch_records.clone(),
        );
        let record_seconds = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        registry.register(
            "hookline_processor_record_duration_seconds",
            "Time to process one raw record, from its batch's state lookup to its outputs handed to the producer",
            record_seconds.clone(),
        );
        let store_errors = Counter::default();
        registry.register(
            "hookline_processor_state_errors",
            "State store read or write failures (the partition stops advancing until the store works)",
            store_errors.clone(),
        );
        let state_bytes = Gauge::default();
        registry.register(
            "hookline_processor_state_bytes",
            "Size of the dedup store (SST files and memtables)",
            state_bytes.clone(),
        );
        let state_entries = Gauge::default();
        registry.register(
            "hookline_processor_state_entries",
            "Dedup entries in the store (RocksDB's estimate, expired ones not yet compacted included)",
            state_entries.clone(),
        );
        let sessions = Counter::default();
        registry.register(
            "hookline_processor_session_restarts",
            "Times the Kafka clients were recreated after a transaction could not commit (an abort, a lost partition, a fatal client error)",
            sessions.clone(),
        );
        let suspects = Counter::default();
        registry.register(
            "hookline_processor_crash_suspects",
            "Records retried alone because they were in progress when the process died",
            suspects.clone(),
        );

        let make = |source: &str| SourceHandles {
            consumed: consumed.get_or_create(&SourceLabel { source: source.to_owned() }).clone(),
            duplicates: duplicates.get_or_create(&SourceLabel { source: source.to_owned() }).clone(),
            filtered: filtered.get_or_create(&SourceLabel { source: source.to_owned() }).clone(),
            dlq: ErrorClass::ALL
                .iter()
                .map(|c| dlq.get_or_create(&SourceClass { source: source.to_owned(), class: c.as_str() }).clone())
                .collect(),
            latency: latency.get_or_create(&SourceLabel { source: source.to_owned() }).clone(),
        };
        // Every bounded label value exists from the start at 0, so `increase()` in alert rules sees the first
        // occurrence (a series born at 1 shows no increase) and dashboards show 0 rather than no data.
        for (family, kinds) in [
            (&retries, &["publish", "store", "restore"][..]),
            (&rebalances, &["assign", "revoke", "lost"][..]),
            (&transactions, &["committed", "aborted"][..]),
        ] {
            for kind in kinds {
                let _ = family.get_or_create(&KindLabel { kind });
            }
        }
        Metrics {
            sources: sources.into_iter().map(|s| (s.clone(), make(s))).collect(),
            other: make(UNKNOWN_SOURCE),
            events,
            retries,
            lag,
            lag_seconds,
            lag_partitions: Mutex::new(Vec::new()),
            assigned,
            rebalances,
            restore_seconds,
            restored,
            transactions,
            commit_seconds,
            batch_records,
            record_seconds,
            store_errors,
            state_bytes,
            state_entries,
            sessions,
            suspects,
        }
    }

    fn source(&self, name: &str) -> &SourceHandles {
        self.sources.get(name).unwrap_or(&self.other)
    }

    fn source_label<'a>(&self, name: &'a str) -> &'a str {
        if self.sources.contains_key(name) {
            name
        } else {
            UNKNOWN_SOURCE
        }
    }

    /// A raw record was read.
    pub fn consumed(&self, source: &str) {
        self.source(source).consumed.inc();
    }

    /// A duplicate was dropped.
    pub fn duplicate(&self, source: &str, partition: i32, offset: i64) {
        tracing::debug!(source, partition, offset, "duplicate dropped");
        self.source(source).duplicates.inc();
    }

    /// A record's events were all filtered out.
    pub fn filtered(&self, source: &str, partition: i32, offset: i64) {
        tracing::debug!(source, partition, offset, "filtered out");
        self.source(source).filtered.inc();
    }

    /// An event was published to `topic`.
    pub fn event(&self, source: &str, topic: &str) {
        self.events
            .get_or_create(&SourceTopic { source: self.source_label(source).to_owned(), topic: topic.to_owned() })
            .inc();
    }

    /// A DLQ record was published.
    pub fn dlq(&self, source: &str, partition: i32, offset: i64, failure: &Failure) {
        tracing::info!(
            source,
            partition,
            offset,
            class = failure.class.as_str(),
            stage = failure.stage.as_str(),
            reason = %failure.reason,
            "record sent to the DLQ"
        );
        if let Some(c) =
            ErrorClass::ALL.iter().position(|c| *c == failure.class).and_then(|i| self.source(source).dlq.get(i))
        {
            c.inc();
        }
    }

    /// A record was done (outputs handed to the producer, or dropped) `seconds` after the ingress received it.
    pub fn latency(&self, source: &str, seconds: f64) {
        self.source(source).latency.observe(seconds.max(0.0));
    }

    /// A partition worker took a batch of `records`.
    pub fn batch(&self, records: usize) {
        self.batch_records.observe(records as f64);
    }

    /// A record finished after `seconds`.
    pub fn processed(&self, seconds: f64) {
        self.record_seconds.observe(seconds);
    }

    /// A transient failure is being retried.
    pub fn retry(&self, what: Retry) {
        let kind = match what {
            Retry::Publish => "publish",
            Retry::Store => "store",
            Retry::Restore => "restore",
        };
        self.retries.get_or_create(&KindLabel { kind }).inc();
    }

    /// The state store failed.
    pub fn store_error(&self, error: &dyn std::fmt::Display) {
        tracing::error!(%error, "state store failure");
        self.store_errors.inc();
        self.retry(Retry::Store);
    }

    /// A rebalance handed partitions to this process or took them away.
    pub fn rebalance(&self, kind: &'static str) {
        self.rebalances.get_or_create(&KindLabel { kind }).inc();
    }

    /// The number of assigned partitions changed.
    pub fn assigned(&self, count: usize) {
        self.assigned.set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// A partition's state was restored: how long it took, how many changelog records were applied.
    pub fn restored(&self, seconds: f64, changes: u64) {
        self.restore_seconds.observe(seconds);
        self.restored.inc_by(changes);
    }

    /// A transaction committed, in `seconds` from pausing the partitions.
    pub fn committed(&self, seconds: f64) {
        self.commit_seconds.observe(seconds);
        self.transactions.get_or_create(&KindLabel { kind: "committed" }).inc();
    }

    /// A transaction was aborted.
    pub fn aborted(&self) {
        self.transactions.get_or_create(&KindLabel { kind: "aborted" }).inc();
    }

    /// A record in progress when the process died is retried alone.
    pub fn suspect(&self, partition: i32, offset: i64, attempts: u32) {
        tracing::warn!(
            partition,
            offset,
            attempts,
            "retrying alone a record that was in progress when the process died"
        );
        self.suspects.inc();
    }

    /// The Kafka clients were recreated.
    pub fn session_restart(&self) {
        self.sessions.inc();
    }

    /// The state store's size.
    pub fn state_size(&self, bytes: u64, entries: u64) {
        self.state_bytes.set(i64::try_from(bytes).unwrap_or(i64::MAX));
        self.state_entries.set(i64::try_from(entries).unwrap_or(i64::MAX));
    }

    /// Sets the lag in records of the assigned partitions; partitions no longer listed are removed.
    pub fn lag(&self, lags: &BTreeMap<i32, i64>) {
        let Ok(mut known) = self.lag_partitions.lock() else {
            return;
        };
        for p in known.iter() {
            if !lags.contains_key(p) {
                self.lag.remove(&PartitionLabel { partition: p.to_string() });
                self.lag_seconds.remove(&PartitionLabel { partition: p.to_string() });
            }
        }
        known.clear();
        for (p, lag) in lags {
            self.lag.get_or_create(&PartitionLabel { partition: p.to_string() }).set(*lag);
            known.push(*p);
        }
    }

    /// Sets the lag in seconds of one partition.
    pub fn lag_seconds(&self, partition: i32, seconds: f64) {
        self.lag_seconds.get_or_create(&PartitionLabel { partition: partition.to_string() }).set(seconds.max(0.0));
    }

    /// A partition was revoked: its lag is no longer this process's to report.
    pub fn forget_partition(&self, partition: i32) {
        self.lag.remove(&PartitionLabel { partition: partition.to_string() });
        self.lag_seconds.remove(&PartitionLabel { partition: partition.to_string() });
        if let Ok(mut known) = self.lag_partitions.lock() {
            known.retain(|p| *p != partition);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hookline_schemas::dlq::Stage;

    #[test]
    fn labels_are_bounded_and_lag_follows_the_assignment() {
        let mut registry = Registry::default();
        let m = Metrics::register(&mut registry, &["shop".to_owned()]);
        m.consumed("shop");
        m.consumed("attacker-chosen-name");
        m.event("attacker-chosen-name", "hookline.events");
        m.dlq("shop", 0, 1, &Failure { class: ErrorClass::InvalidJson, stage: Stage::Parse, reason: "x".into() });
        m.lag(&BTreeMap::from([(0, 5), (1, 7)]));
        m.lag_seconds(0, 2.5);
        m.lag(&BTreeMap::from([(1, 3)]));
        m.batch(3);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(text.contains(r#"hookline_processor_records_consumed_total{source="shop"} 1"#), "{text}");
        assert!(text.contains(r#"hookline_processor_records_consumed_total{source="_unknown"} 1"#));
        assert!(
            text.contains(r#"hookline_processor_events_produced_total{source="_unknown",topic="hookline.events"} 1"#)
        );
        assert!(!text.contains("attacker"));
        assert!(text.contains(r#"hookline_processor_dlq_records_total{source="shop",class="invalid_json"} 1"#));
        assert!(text.contains(r#"hookline_processor_consumer_lag_records{partition="1"} 3"#));
        assert!(!text.contains(r#"partition="0""#), "revoked partitions leave the lag gauges");
        assert!(text.contains(r#"hookline_processor_batch_records_bucket{le="4.0"} 1"#), "{text}");
    }

    #[test]
    fn every_kind_of_rare_event_is_exported_at_zero_before_it_happens() {
        let mut registry = Registry::default();
        let m = Metrics::register(&mut registry, &["shop".to_owned()]);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for series in [
            r#"hookline_processor_transactions_total{kind="aborted"} 0"#,
            r#"hookline_processor_rebalances_total{kind="lost"} 0"#,
            r#"hookline_processor_restored_entries_total 0"#,
            r#"hookline_processor_retries_total{kind="publish"} 0"#,
        ] {
            assert!(text.contains(series), "{series} missing from\n{text}");
        }
        m.aborted();
        text.clear();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(text.contains(r#"hookline_processor_transactions_total{kind="aborted"} 1"#), "{text}");
    }
}

//! Every event the processor reports: the metric and, where useful, the log line, in one place.
//!
//! Names follow `hookline_processor_<what>_<unit>`. Labels: `source` is a source named in the config or
//! `_other` (raw records can come from anywhere, so unknown names never become labels); `class` is a DLQ error
//! class; `partition` is a raw partition number (bounded by the partition count).

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;

use hookline_schemas::dlq::ErrorClass;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::normalize::Failure;

/// The `source` label of records from a source the config does not name.
pub const OTHER_SOURCE: &str = "_other";

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
struct PartitionLabel {
    partition: String,
}

/// Handles for one source label.
#[derive(Debug, Clone)]
struct SourceHandles {
    consumed: Counter,
    duplicates: Counter,
    events: Counter,
    dlq: Vec<Counter>,
}

/// The processor's metrics.
#[derive(Debug)]
pub struct Metrics {
    sources: BTreeMap<String, SourceHandles>,
    other: SourceHandles,
    lag: Family<PartitionLabel, Gauge>,
    lag_partitions: Mutex<HashSet<i32>>,
    assigned: Gauge,
    process_seconds: Histogram,
    store_errors: Counter,
}

impl Metrics {
    /// Registers every metric, with handles for each configured source.
    pub fn register<'a>(registry: &mut Registry, sources: impl IntoIterator<Item = &'a String>) -> Metrics {
        let consumed = Family::<SourceLabel, Counter>::default();
        registry.register("hookline_processor_records_consumed", "Raw records read", consumed.clone());
        let duplicates = Family::<SourceLabel, Counter>::default();
        registry.register(
            "hookline_processor_duplicates_dropped",
            "Raw records dropped because their dedup key was already processed",
            duplicates.clone(),
        );
        let events = Family::<SourceLabel, Counter>::default();
        registry.register("hookline_processor_events_produced", "Events published", events.clone());
        let dlq = Family::<SourceClass, Counter>::default();
        registry.register(
            "hookline_processor_dlq_records",
            "Records published to the DLQ, by error class",
            dlq.clone(),
        );
        let lag = Family::<PartitionLabel, Gauge>::default();
        registry.register(
            "hookline_processor_consumer_lag_records",
            "Raw records not yet processed, per assigned partition (high watermark minus next offset to process)",
            lag.clone(),
        );
        let assigned = Gauge::default();
        registry.register(
            "hookline_processor_assigned_partitions",
            "Raw partitions assigned to this process",
            assigned.clone(),
        );
        let process_seconds = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        registry.register(
            "hookline_processor_record_duration_seconds",
            "Time to process one raw record, from read to output acknowledged and state recorded",
            process_seconds.clone(),
        );
        let store_errors = Counter::default();
        registry.register(
            "hookline_processor_state_errors",
            "Dedup store read or write failures",
            store_errors.clone(),
        );

        let make = |source: &str| SourceHandles {
            consumed: consumed.get_or_create(&SourceLabel { source: source.to_owned() }).clone(),
            duplicates: duplicates.get_or_create(&SourceLabel { source: source.to_owned() }).clone(),
            events: events.get_or_create(&SourceLabel { source: source.to_owned() }).clone(),
            dlq: ErrorClass::ALL
                .iter()
                .map(|c| dlq.get_or_create(&SourceClass { source: source.to_owned(), class: c.as_str() }).clone())
                .collect(),
        };
        Metrics {
            sources: sources.into_iter().map(|s| (s.clone(), make(s))).collect(),
            other: make(OTHER_SOURCE),
            lag,
            lag_partitions: Mutex::new(HashSet::new()),
            assigned,
            process_seconds,
            store_errors,
        }
    }

    fn source(&self, name: &str) -> &SourceHandles {
        self.sources.get(name).unwrap_or(&self.other)
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

    /// An event was published.
    pub fn event(&self, source: &str) {
        self.source(source).events.inc();
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

    /// A record was fully processed after `seconds`.
    pub fn processed(&self, seconds: f64) {
        self.process_seconds.observe(seconds);
    }

    /// The dedup store failed.
    pub fn store_error(&self, error: &dyn std::fmt::Display) {
        tracing::error!(%error, "dedup store failure");
        self.store_errors.inc();
    }

    /// The number of assigned partitions changed.
    pub fn assigned(&self, count: usize) {
        self.assigned.set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// Sets the lag of the assigned partitions; partitions no longer listed are removed.
    pub fn lag(&self, lags: &BTreeMap<i32, i64>) {
        let Ok(mut known) = self.lag_partitions.lock() else {
            return;
        };
        for p in known.iter() {
            if !lags.contains_key(p) {
                self.lag.remove(&PartitionLabel { partition: p.to_string() });
            }
        }
        known.clear();
        for (p, lag) in lags {
            self.lag.get_or_create(&PartitionLabel { partition: p.to_string() }).set(*lag);
            known.insert(*p);
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
        m.dlq("shop", 0, 1, &Failure { class: ErrorClass::InvalidJson, stage: Stage::Parse, reason: "x".into() });
        m.lag(&BTreeMap::from([(0, 5), (1, 7)]));
        m.lag(&BTreeMap::from([(1, 3)]));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(text.contains(r#"hookline_processor_records_consumed_total{source="shop"} 1"#), "{text}");
        assert!(text.contains(r#"hookline_processor_records_consumed_total{source="_other"} 1"#));
        assert!(!text.contains("attacker"));
        assert!(text.contains(r#"hookline_processor_dlq_records_total{source="shop",class="invalid_json"} 1"#));
        assert!(text.contains(r#"hookline_processor_consumer_lag_records{partition="1"} 3"#));
        assert!(!text.contains(r#"partition="0""#), "revoked partitions leave the lag gauge");
    }
}

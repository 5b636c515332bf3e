//! What `dlq` and `replay` share: reading a topic to its current end (from the beginning, or from a time by
//! offsets-for-times), command-line times, and writing webhooks back to the raw topic marked as sent again.
//!
//! A webhook written back carries [`Reprocess`] in its `hookline-meta`: the processor then deduplicates it on
//! `{kind}:{id}/{dedup key}` rather than on its dedup key (which already has an output), so it is processed
//! once per redriven DLQ record or per replay run, and its outputs keep the webhook's dedup key (event ids do
//! not change). It goes to the raw partition the webhook was first stored in, so it stays with its ordering key.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use hookline_runtime::kafka::KafkaConfig;
use hookline_schemas::header;
use hookline_schemas::raw::{RawMeta, Reprocess};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

use crate::config::{load, Kind, Loaded};
use crate::Error;

/// The processor config at `config` (or the processor's defaults), `HOOKLINE_*` overrides applied, brokers
/// replaced by `brokers` if given: where the raw topic and the DLQ are.
pub fn processor_settings(
    config: Option<&Path>,
    brokers: Option<&str>,
) -> Result<hookline_config::processor::Settings, Error> {
    let mut settings = match config {
        Some(path) => match load(path, Some(Kind::Processor))
            .map_err(|source| Error::InvalidConfig { path: path.to_owned(), source })?
        {
            Loaded::Processor(s) => s,
            Loaded::Ingress(_) => return Err(Error::WrongConfig { path: path.to_owned(), expected: "processor" }),
        },
        None => default_processor_settings()?,
    };
    if let Some(brokers) = brokers {
        brokers.clone_into(&mut settings.kafka.brokers);
    }
    Ok(settings)
}

/// The processor's default config with the environment's overrides (no `--config` given).
pub fn default_processor_settings() -> Result<hookline_config::processor::Settings, Error> {
    hookline_runtime::config::from_str_with_env::<hookline_config::processor::Config>("", std::env::vars())
        .and_then(hookline_config::processor::Config::validate)
        .map_err(Error::DefaultConfig)
}

/// How long reading may go without a record before the partitions not at their end are reported.
const QUIET_LIMIT: Duration = Duration::from_secs(30);

/// How long metadata and offset requests may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A record's headers, in order: names and values.
pub type HeaderList = Vec<(String, Vec<u8>)>;

/// A record read from a topic.
#[derive(Debug, Clone)]
pub struct Record {
    /// Its topic.
    pub topic: String,
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// Its timestamp (ms), if any.
    pub timestamp_ms: Option<i64>,
    /// Its key.
    pub key: Option<Vec<u8>>,
    /// Its value.
    pub value: Option<Vec<u8>>,
    /// Its headers, in order.
    pub headers: HeaderList,
}

impl Record {
    /// The headers as the schema crate's parsers take them.
    pub fn header_pairs(&self) -> Vec<(&str, Option<&[u8]>)> {
        self.headers.iter().map(|(k, v)| (k.as_str(), Some(v.as_slice()))).collect()
    }

    /// `partition:offset`, how records are named on the command line.
    pub fn position(&self) -> String {
        format!("{}:{}", self.partition, self.offset)
    }
}

/// Where reading starts in each partition.
#[derive(Debug, Clone, Copy)]
pub enum Start {
    /// The oldest record.
    Beginning,
    /// The first record at or after this time (ms).
    At(i64),
}

/// Reads `topic` from `start` up to each partition's end as it is when reading starts (read_committed),
/// calling `each` in partition order per partition. Records after `until_ms` (record time) end their
/// partition. Returns how many records were read.
pub fn read(
    kafka: &KafkaConfig,
    topic: &str,
    start: Start,
    until_ms: Option<i64>,
    mut each: impl FnMut(Record) -> Result<(), Error>,
) -> Result<usize, Error> {
    let consumer: BaseConsumer = kafka
        .client_config()
        .set("group.id", format!("hookline-cli-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .set("fetch.wait.max.ms", "100")
        .set("log_level", "3")
        .create()
        .map_err(|e| Error::kafka("cannot create a Kafka client", e))?;
    let metadata = consumer
        .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
        .map_err(|e| Error::kafka(format!("cannot reach Kafka at {}", kafka.brokers), e))?;
    let partitions: Vec<i32> =
        metadata.topics().first().map(|t| t.partitions().iter().map(|p| p.id()).collect()).unwrap_or_default();
    if partitions.is_empty() {
        return Err(Error::NoTopic { topic: topic.to_owned(), brokers: kafka.brokers.clone() });
    }
    // Where each partition ends now; records written later (by a redrive, for one) are not read.
    let mut ends: BTreeMap<i32, i64> = BTreeMap::new();
    for &p in &partitions {
        let (_, high) = consumer
            .fetch_watermarks(topic, p, REQUEST_TIMEOUT)
            .map_err(|e| Error::kafka(format!("cannot read the watermarks of {topic}/{p}"), e))?;
        ends.insert(p, high);
    }
    let mut tpl = TopicPartitionList::new();
    for &p in &partitions {
        let offset = match start {
            Start::Beginning => Offset::Beginning,
            Start::At(ms) => Offset::Offset(ms),
        };
        tpl.add_partition_offset(topic, p, offset).map_err(|e| Error::kafka(format!("reading {topic}"), e))?;
    }
    if let Start::At(_) = start {
        tpl = consumer
            .offsets_for_times(tpl, REQUEST_TIMEOUT)
            .map_err(|e| Error::kafka(format!("cannot look up offsets by time in {topic}"), e))?;
        // A time after the last record gives the end offset (or none): nothing to read there.
        for elem in tpl.elements() {
            if !matches!(elem.offset(), Offset::Offset(_)) {
                ends.insert(elem.partition(), -1);
            }
        }
    }
    let mut open: BTreeMap<i32, i64> = ends.iter().filter(|(_, end)| **end > 0).map(|(p, e)| (*p, *e)).collect();
    let mut assigned = TopicPartitionList::new();
    for elem in tpl.elements() {
        if open.contains_key(&elem.partition()) {
            let offset = match elem.offset() {
                Offset::Offset(o) => Offset::Offset(o),
                _ => Offset::Beginning,
            };
            assigned
                .add_partition_offset(topic, elem.partition(), offset)
                .map_err(|e| Error::kafka(format!("reading {topic}"), e))?;
        }
    }
    consumer.assign(&assigned).map_err(|e| Error::kafka(format!("reading {topic}"), e))?;
    let mut read = 0usize;
    let mut quiet_since = Instant::now();
    while !open.is_empty() {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                quiet_since = Instant::now();
                let (p, offset) = (m.partition(), m.offset());
                let Some(&end) = open.get(&p) else { continue };
                if offset >= end {
                    open.remove(&p);
                    continue;
                }
                if offset + 1 >= end {
                    open.remove(&p);
                }
                // Several writers' clocks: a later record can be older, so the partition is read to its end.
                let timestamp_ms = m.timestamp().to_millis();
                if until_ms.is_some_and(|until| timestamp_ms.is_some_and(|t| t > until)) {
                    continue;
                }
                let headers = m
                    .headers()
                    .map(|h| h.iter().map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec())).collect())
                    .unwrap_or_default();
                read += 1;
                each(Record {
                    topic: topic.to_owned(),
                    partition: p,
                    offset,
                    timestamp_ms,
                    key: m.key().map(<[u8]>::to_vec),
                    value: m.payload().map(<[u8]>::to_vec),
                    headers,
                })?;
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                open.remove(&p);
            }
            Some(Err(e)) => return Err(Error::kafka(format!("reading {topic}"), e)),
            None => {
                if quiet_since.elapsed() > QUIET_LIMIT {
                    // At its end already (the last offsets were transaction markers or compacted away), or stuck.
                    let positions = consumer.position().map_err(|e| Error::kafka(format!("reading {topic}"), e))?;
                    for elem in positions.elements() {
                        let end = open.get(&elem.partition()).copied();
                        if let (Some(end), Offset::Offset(at)) = (end, elem.offset()) {
                            if at >= end {
                                open.remove(&elem.partition());
                            }
                        }
                    }
                    if !open.is_empty() {
                        let left: Vec<String> = open.keys().map(ToString::to_string).collect();
                        return Err(Error::Stalled {
                            topic: topic.to_owned(),
                            secs: QUIET_LIMIT.as_secs(),
                            partitions: left.join(", "),
                            read,
                        });
                    }
                }
            }
        }
    }
    Ok(read)
}

/// A command-line time: RFC 3339 (`2026-11-23T10:00:00Z`) or an age (`90s`, `15m`, `2h`, `7d`, `1h 30m`: that
/// long ago, as `humantime` reads durations), in ms since the Unix epoch.
pub fn parse_time(text: &str) -> Result<i64, String> {
    if let Some(ms) = hookline_schemas::event::parse_rfc3339_millis(text) {
        return Ok(ms);
    }
    let age = humantime::parse_duration(text.trim())
        .map_err(|e| format!("`{text}` is neither an RFC 3339 time nor an age like 2h ({e})"))?;
    Ok(hookline_runtime::now_ms().saturating_sub(i64::try_from(age.as_millis()).unwrap_or(i64::MAX)))
}

/// A time for people, `2026-11-23T10:00:00.123Z`.
pub fn show_time(ms: i64) -> String {
    hookline_schemas::event::rfc3339_millis(ms)
}

/// The webhook of `record` (a raw record, or a DLQ record which keeps the raw headers) with its metadata
/// marked as sent again: `hookline-dlq` and the old `hookline-meta` dropped, the marked `hookline-meta` last.
pub fn marked(record: &Record, reprocess: Reprocess) -> Result<(RawMeta, HeaderList), Error> {
    let mut meta = RawMeta::from_headers(record.header_pairs())?;
    meta.reprocess = Some(reprocess);
    let mut headers: HeaderList =
        record.headers.iter().filter(|(k, _)| k != header::META && k != header::DLQ).cloned().collect();
    let (name, value) = meta.to_header();
    headers.push((name.to_owned(), value));
    Ok((meta, headers))
}

/// Writes records to the raw topic, each to a given partition, waiting for every acknowledgement.
pub struct Writer {
    producer: FutureProducer,
    runtime: tokio::runtime::Runtime,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer").finish_non_exhaustive()
    }
}

impl Writer {
    /// An idempotent producer on `kafka` (acks=all).
    pub fn new(kafka: &KafkaConfig) -> Result<Writer, Error> {
        let producer: FutureProducer = kafka
            .client_config()
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("log_level", "3")
            .create()
            .map_err(|e| Error::kafka("cannot create a Kafka producer", e))?;
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(Error::Runtime)?;
        Ok(Writer { producer, runtime })
    }

    /// Writes `key`/`value`/`headers` to `topic` partition `partition`; Kafka's acknowledgement or its error.
    pub fn write(
        &self,
        topic: &str,
        partition: i32,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[(String, Vec<u8>)],
    ) -> Result<(), KafkaError> {
        let mut h = OwnedHeaders::new_with_capacity(headers.len());
        for (k, v) in headers {
            h = h.insert(Header { key: k, value: Some(v) });
        }
        let mut record = FutureRecord::<[u8], [u8]>::to(topic).partition(partition).headers(h);
        if let Some(k) = key {
            record = record.key(k);
        }
        if let Some(v) = value {
            record = record.payload(v);
        }
        self.runtime.block_on(self.producer.send(record, Duration::from_secs(30))).map(|_| ()).map_err(|(e, _)| e)
    }
}

/// Prints `what` to stderr at most once a second (long operations show progress).
#[derive(Debug)]
pub struct Progress {
    last: Instant,
}

impl Progress {
    /// Starts the clock.
    pub fn new() -> Progress {
        Progress { last: Instant::now() }
    }

    /// Reports `what` if a second has passed since the last report.
    pub fn tick(&mut self, what: impl FnOnce() -> String) {
        if self.last.elapsed() >= Duration::from_secs(1) {
            eprintln!("{}", what());
            self.last = Instant::now();
        }
    }
}

impl Default for Progress {
    fn default() -> Self {
        Progress::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hookline_schemas::dlq::{DlqMeta, ErrorClass, Stage};
    use hookline_schemas::raw::{KeyOrigin, ReprocessKind};

    #[test]
    fn times_are_rfc3339_or_ages() {
        assert_eq!(parse_time("2026-11-23T10:00:00Z").unwrap(), 1_795_428_000_000);
        let two_hours_ago = parse_time("2h").unwrap();
        let expected = hookline_runtime::now_ms() - 7_200_000;
        assert!((two_hours_ago - expected).abs() < 5_000, "{two_hours_ago} vs {expected}");
        assert!(parse_time("yesterday").unwrap_err().contains("RFC 3339"));
        let ninety_minutes_ago = parse_time("1h 30m").unwrap();
        assert!((ninety_minutes_ago - (hookline_runtime::now_ms() - 5_400_000)).abs() < 5_000);
        assert!(parse_time("7d").unwrap() < two_hours_ago);
        assert!(parse_time("3x").unwrap_err().contains("unknown time unit"), "{:?}", parse_time("3x"));
        assert_eq!(show_time(1_795_428_000_123), "2026-11-23T10:00:00.123Z");
    }

    #[test]
    fn a_dlq_record_goes_back_with_its_headers_and_marked_metadata_only() {
        let meta = RawMeta {
            v: header::VERSION,
            source: "shop".into(),
            received_at_ms: 1,
            dedup_key: "evt_1".into(),
            dedup_key_origin: KeyOrigin::Provider,
            content_type: None,
            request_id: "r".into(),
            headers: vec![],
            traceparent: None,
            reprocess: None,
        };
        let dlq = DlqMeta {
            v: header::VERSION,
            source: "shop".into(),
            dedup_key: "evt_1".into(),
            raw_topic: "hookline.raw".into(),
            raw_partition: 2,
            raw_offset: 9,
            class: ErrorClass::Panic,
            stage: Stage::Process,
            reason: "boom".into(),
            attempts: 1,
            first_failure_ms: 5,
        };
        let (m, d) = (meta.to_header(), dlq.to_header());
        let record = Record {
            topic: "hookline.dlq".into(),
            partition: 2,
            offset: 40,
            timestamp_ms: None,
            key: Some(b"order_1".to_vec()),
            value: Some(b"{}".to_vec()),
            headers: vec![("x-other".into(), b"1".to_vec()), (m.0.into(), m.1), (d.0.into(), d.1)],
        };
        let redrive = Reprocess { kind: ReprocessKind::Redrive, id: "hookline.dlq:2:40".into(), at_ms: 7 };
        let (marked_meta, headers) = marked(&record, redrive.clone()).unwrap();
        assert_eq!(marked_meta.reprocess, Some(redrive));
        let names: Vec<&str> = headers.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["x-other", header::META]);
        let pairs: Vec<(&str, Option<&[u8]>)> = headers.iter().map(|(k, v)| (k.as_str(), Some(v.as_slice()))).collect();
        assert_eq!(RawMeta::from_headers(pairs).unwrap(), marked_meta);

        let no_meta = Record { headers: vec![], ..record };
        assert!(marked(&no_meta, marked_meta.reprocess.clone().unwrap())
            .unwrap_err()
            .to_string()
            .contains("no hookline metadata"));
    }
}

//! The processor config: one TOML file (`deploy/processor.example.toml` documents every field) plus
//! `HOOKLINE_*` environment overrides, validated once at startup with errors that name the field.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use hookline_providers::Format;
use hookline_providers::Provider;
use hookline_runtime::config::{in_range, socket_addr, ConfigError};
use hookline_runtime::kafka::KafkaConfig;
use hookline_runtime::traces::{TracingConfig, TracingSettings};
use serde::Deserialize;

/// The librdkafka properties the processor sets itself on its consumer and producer.
pub const RESERVED_PROPERTIES: &[&str] = &[
    "group.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "auto.offset.reset",
    "isolation.level",
    "session.timeout.ms",
    "heartbeat.interval.ms",
    "fetch.wait.max.ms",
    "auto.commit.interval.ms",
    "statistics.interval.ms",
    "partition.assignment.strategy",
    "group.protocol",
    "enable.idempotence",
    "acks",
    "request.required.acks",
    "message.timeout.ms",
    "delivery.timeout.ms",
    "message.max.bytes",
    "linger.ms",
    "enable.partition.eof",
    "transactional.id",
    "transaction.timeout.ms",
    "compression.type",
    "compression.codec",
    "queue.buffering.max.ms",
    "queued.min.messages",
    "queued.max.messages.kbytes",
    "max.partition.fetch.bytes",
    "fetch.message.max.bytes",
];

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[server]`: the operator endpoints.
    #[serde(default)]
    pub server: ServerConfig,
    /// `[kafka]`: the cluster.
    #[serde(default)]
    pub kafka: KafkaConfig,
    /// `[topics]`: input and outputs.
    #[serde(default)]
    pub topics: TopicsConfig,
    /// `[consumer]`: the consumer group, its transactions and per-partition batches.
    #[serde(default)]
    pub consumer: ConsumerConfig,
    /// `[state]`: the local dedup store.
    #[serde(default)]
    pub state: StateConfig,
    /// `[sources.NAME]`: per-source pipelines. Sources not listed get the generic pipeline.
    #[serde(default)]
    pub sources: BTreeMap<String, SourceConfig>,
    /// `[[routes]]`: where events go. An event goes to every matching route's topic; to `topics.events` when
    /// none matches.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// `[vrl]`: limits of the VRL transforms and conditions.
    #[serde(default)]
    pub vrl: VrlConfig,
    /// `[tracing]`: where spans are exported over OTLP, if anywhere.
    #[serde(default)]
    pub tracing: TracingConfig,
}

/// `[vrl]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VrlConfig {
    /// How long one run of a transform or condition on one event may take; past it the run is stopped and
    /// the webhook goes to the DLQ (`transform_error`). Default 50 ms.
    pub time_budget_ms: u64,
}

impl Default for VrlConfig {
    fn default() -> Self {
        VrlConfig { time_budget_ms: 50 }
    }
}

/// `[server]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address of `/metrics`, `/livez` and `/readyz`. Default `127.0.0.1:9091`.
    pub listen: String,
    /// On SIGTERM or a partition revocation: how long the records being processed may take to finish.
    /// Default 10000 ms.
    pub drain_timeout_ms: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig { listen: "127.0.0.1:9091".to_owned(), drain_timeout_ms: 10_000 }
    }
}

/// `[topics]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TopicsConfig {
    /// The raw topic the ingress writes. Default `hookline.raw`.
    pub raw: String,
    /// Partitions of the raw topic if the processor has to create it. Default 12.
    pub raw_partitions: i32,
    /// The default events topic. Default `hookline.events`. Every output topic is created with the raw
    /// topic's partition count.
    pub events: String,
    /// The dead-letter topic. Default `hookline.dlq`.
    pub dlq: String,
    /// The processor's state changelog: one record per dedup entry, keyed by source and dedup key, written in
    /// the same transactions as the outputs; a processor taking a partition over restores from it. Default
    /// `hookline.state`. Created compacted, with the raw topic's partition count.
    pub state: String,
}

impl Default for TopicsConfig {
    fn default() -> Self {
        TopicsConfig {
            raw: crate::DEFAULT_RAW_TOPIC.to_owned(),
            raw_partitions: crate::DEFAULT_RAW_PARTITIONS,
            events: "hookline.events".to_owned(),
            dlq: "hookline.dlq".to_owned(),
            state: "hookline.state".to_owned(),
        }
    }
}

/// `[consumer]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsumerConfig {
    /// The consumer group. Processors with the same group share the raw partitions. Default `hookline-processor`.
    pub group_id: String,
    /// A processor silent for this long is removed from the group and its partitions move. Default 6000 ms,
    /// the least Apache Kafka accepts unless the broker lowers `group.min.session.timeout.ms`: a dead
    /// processor's partitions move within seconds. Cost: a stall longer than this (a VM pause, a network
    /// blip) moves them too; the stalled processor's open transaction is then fenced and aborted, and its
    /// records are processed again by the new owner.
    pub session_timeout_ms: u32,
    /// Heartbeat interval; at most a third of the session timeout. Default 1000 ms.
    pub heartbeat_interval_ms: u32,
    /// Longest the broker holds a fetch when there is nothing new (it answers as soon as records arrive):
    /// idle fetch requests versus nothing. Default 100 ms.
    pub fetch_wait_max_ms: u32,
    /// How often the transaction is committed: outputs, dedup entries and consumed offsets become visible
    /// together. Default 100 ms: the latency it adds to every event, against one commit's fixed cost (a
    /// pause of the partitions' work and two round trips to the transaction coordinator).
    pub commit_interval_ms: u32,
    /// The longest a transaction may stay open (`transaction.timeout.ms`); the broker aborts one left open
    /// longer (a processor that died or froze mid-transaction), so read_committed readers of its output
    /// partitions wait at most this long behind it. Also bounds each delivery and commit. Default 10000 ms;
    /// at least ten commit intervals and at most the broker's `transaction.max.timeout.ms`.
    pub transaction_timeout_ms: u32,
    /// How often consumer lag is refreshed (librdkafka statistics). Default 5000 ms.
    pub stats_interval_ms: u32,
    /// Records of one partition processed as one batch, at most: one RocksDB call marks them started and
    /// looks up their dedup keys. Default 256 (each is held in the consumer's buffer meanwhile).
    pub max_batch_per_partition: u32,
    /// Bytes fetched from one raw partition at a time, at most (`max.partition.fetch.bytes`; a record batch
    /// larger than that is still fetched whole). Throughput against memory: behind a backlog of 1 KB webhooks
    /// in `make bench`, 256 KB gave 56-60k records/s at 274-300 MB resident, 512 KB 80-105k/s at 290-316 MB,
    /// 1 MB about the same speed at 460-480 MB. Default 524288; at most 2 MiB, the read-ahead limit per
    /// partition (a larger fetch could not be queued).
    pub fetch_max_bytes_per_partition: u32,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            group_id: "hookline-processor".to_owned(),
            session_timeout_ms: 6_000,
            heartbeat_interval_ms: 1_000,
            fetch_wait_max_ms: 100,
            commit_interval_ms: 100,
            transaction_timeout_ms: 10_000,
            stats_interval_ms: 5_000,
            max_batch_per_partition: 256,
            fetch_max_bytes_per_partition: 512 * 1024,
        }
    }
}

/// `[state]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StateConfig {
    /// The data folder (RocksDB). Kept across restarts; one processor per folder. Default `./data/processor`.
    pub dir: PathBuf,
    /// How long a dedup key is remembered, for sources that set none: a redelivery within this window is
    /// dropped. Default 604800 s (7 days). Cost: one small RocksDB entry per webhook for this long.
    pub dedup_window_secs: u64,
    /// After this many restarts at the same record, the record is sent to the DLQ (`crash_loop`) instead of
    /// being tried again. Default 3.
    pub crash_loop_attempts: u32,
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig { dir: PathBuf::from("./data/processor"), dedup_window_secs: 7 * 24 * 3600, crash_loop_attempts: 3 }
    }
}

/// `[sources.NAME]`: the pipeline of one source.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// The provider whose format and presets parse the body and give the event's `type`, `subject` and `time`:
    /// the name of one of [`hookline_providers::ALL`] (an unknown name is refused, listing them), or
    /// `generic` (default: no preset).
    #[serde(default, deserialize_with = "provider")]
    pub provider: Option<&'static dyn Provider>,
    /// `json`, `form` (application/x-www-form-urlencoded, turned into a JSON object) or `auto` (by the
    /// request's content type). Default: the provider's (`form` for Twilio, `auto` for Slack, else `json`).
    pub format: Option<Format>,
    /// Where the event type comes from, overriding the preset: `{ json_pointer = "/type" }` or
    /// `{ header = "X-Event-Type" }`. When set and absent from a webhook, it goes to the DLQ (`missing_field`).
    /// Default: the preset's, else `{source}.webhook`.
    pub event_type: Option<FieldSelector>,
    /// Where the event's `subject` comes from, overriding the preset. Default: the preset's, else the ordering key.
    pub subject: Option<FieldSelector>,
    /// Where the event's `time` comes from, overriding the preset. Default: the preset's, else when hookline
    /// received the webhook.
    pub time: Option<TimeSelector>,
    /// Keep only some event types: `{ allow = ["invoice.*"], deny = ["*.test"] }` (`*` matches anything).
    /// Filtered webhooks are counted, not sent to the DLQ.
    pub filter: Option<FilterConfig>,
    /// A VRL program file (Vector Remap Language) run on each of the source's events after its preset:
    /// it may change `data`, `type`, `subject` and add extension attributes, drop the event (`abort`), or
    /// send the webhook to the DLQ (any runtime error, such as `assert!(false, "why")`: `transform_error`).
    /// Compiled at startup; a relative path is from the working directory.
    pub transform: Option<PathBuf>,
    /// How long this source's dedup keys are remembered. Default `state.dedup_window_secs`; at least 3 days
    /// for Stripe.
    pub dedup_window_secs: Option<u64>,
    /// Validate every event against the published event schema before it is published. Default true.
    #[serde(default = "yes")]
    pub validate: bool,
}

fn yes() -> bool {
    true
}

/// Reads `provider = "…"`: `generic` (no provider) or the name of one of [`hookline_providers::ALL`].
fn provider<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'static dyn Provider>, D::Error> {
    let name = String::deserialize(d)?;
    if name == GENERIC {
        return Ok(None);
    }
    hookline_providers::find(&name).map(Some).ok_or_else(|| {
        serde::de::Error::custom(format!(
            "unknown provider `{name}`; one of {GENERIC}, {}",
            hookline_providers::names()
        ))
    })
}

/// The name of a source without a provider.
pub const GENERIC: &str = "generic";

/// `{ header = "..." }` or `{ json_pointer = "/..." }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum FieldSelector {
    /// A request header kept on the raw record.
    Header(String),
    /// A JSON pointer into the parsed body.
    JsonPointer(String),
}

/// `{ json_pointer = "/created", format = "unix_seconds" }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeSelector {
    /// A JSON pointer into the parsed body.
    pub json_pointer: Option<String>,
    /// A request header.
    pub header: Option<String>,
    /// `rfc3339` (default), `unix_seconds` or `unix_millis`.
    #[serde(default)]
    pub format: TimeFormat,
}

/// How a time is written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeFormat {
    /// `2026-11-27T09:00:00Z`.
    #[default]
    Rfc3339,
    /// Seconds since the Unix epoch.
    UnixSeconds,
    /// Milliseconds since the Unix epoch.
    UnixMillis,
}

impl TimeFormat {
    /// Its config name.
    pub fn as_str(self) -> &'static str {
        match self {
            TimeFormat::Rfc3339 => "rfc3339",
            TimeFormat::UnixSeconds => "unix_seconds",
            TimeFormat::UnixMillis => "unix_millis",
        }
    }
}

/// `filter = { allow = [...], deny = [...] }`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// Types kept (globs). When set, every other type is filtered out.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Types filtered out (globs), checked after `allow`.
    #[serde(default)]
    pub deny: Vec<String>,
    /// A VRL expression: events for which it is not `true` are filtered out (`'.data.livemode == true'`).
    pub condition: Option<String>,
}

/// `[[routes]]`: one routing rule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// The topic events matching this rule go to (created with the raw topic's partition count).
    pub topic: String,
    /// Only events of these sources. Default: any.
    pub sources: Option<Vec<String>>,
    /// Only events of these types (globs). Default: any.
    pub types: Option<Vec<String>>,
    /// Only events for which this VRL expression is `true` (`'(to_int(.data.data.object.amount) ?? 0) >= 100000'`).
    pub condition: Option<String>,
    /// A VRL program file run on the event before it goes to this route's topic only (after the source's
    /// transform); as a source's `transform`, it may change the event, drop it from this route, or fail the
    /// webhook into the DLQ.
    pub transform: Option<PathBuf>,
    /// A JSON Schema file the event's `data` must satisfy on this route; a violation sends the webhook to
    /// the DLQ (`schema_violation`).
    pub data_schema: Option<PathBuf>,
}

/// The validated config the processor runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Operator endpoints address.
    pub listen: SocketAddr,
    /// Drain deadline.
    pub drain_timeout: Duration,
    /// The cluster.
    pub kafka: KafkaConfig,
    /// Topics.
    pub topics: TopicsConfig,
    /// Consumer group.
    pub consumer: ConsumerConfig,
    /// Data folder.
    pub state_dir: PathBuf,
    /// Default dedup window.
    pub dedup_window: Duration,
    /// Restarts at one record before it goes to the DLQ.
    pub crash_loop_attempts: u32,
    /// Per-source pipelines.
    pub sources: BTreeMap<String, SourceConfig>,
    /// Routes.
    pub routes: Vec<RouteConfig>,
    /// How long one run of a VRL transform or condition may take.
    pub vrl_time_budget: Duration,
    /// Where spans are exported, if anywhere.
    pub tracing: Option<TracingSettings>,
}

impl Settings {
    /// How often checkpoints are written.
    pub fn commit_interval(&self) -> Duration {
        Duration::from_millis(u64::from(self.consumer.commit_interval_ms))
    }

    /// The dedup window of `source`.
    pub fn window_of(&self, source: &str) -> Duration {
        self.sources.get(source).and_then(|s| s.dedup_window_secs).map_or(self.dedup_window, Duration::from_secs)
    }

    /// Every topic events can be published to: the events topic and every route's.
    pub fn event_topics(&self) -> Vec<String> {
        let mut out = vec![self.topics.events.clone()];
        for r in &self.routes {
            if !out.contains(&r.topic) {
                out.push(r.topic.clone());
            }
        }
        out
    }

    /// Every output topic: event topics and the DLQ.
    pub fn output_topics(&self) -> Vec<String> {
        let mut out = self.event_topics();
        out.push(self.topics.dlq.clone());
        out
    }
}

impl Config {
    /// Loads `path` with environment overrides.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        hookline_runtime::config::load(path, std::env::vars())
    }

    /// Checks every field; the first problem is returned, naming its field.
    pub fn validate(self) -> Result<Settings, ConfigError> {
        let listen = socket_addr("server.listen", &self.server.listen)?;
        in_range("server.drain_timeout_ms", self.server.drain_timeout_ms, 0, 600_000)?;
        self.kafka.validate(RESERVED_PROPERTIES)?;
        let t = &self.topics;
        let named =
            [("topics.raw", &t.raw), ("topics.events", &t.events), ("topics.dlq", &t.dlq), ("topics.state", &t.state)];
        for (i, (field, name)) in named.iter().enumerate() {
            if name.is_empty() {
                return Err(ConfigError::field(*field, "must not be empty"));
            }
            if named[..i].iter().any(|(_, other)| other == name) {
                return Err(ConfigError::field(*field, "raw, events, dlq and state must be four different topics"));
            }
        }
        in_range("topics.raw_partitions", t.raw_partitions, 1, 10_000)?;
        let c = &self.consumer;
        if c.group_id.is_empty() {
            return Err(ConfigError::field("consumer.group_id", "must not be empty"));
        }
        in_range("consumer.session_timeout_ms", c.session_timeout_ms, 1_000, 300_000)?;
        in_range("consumer.heartbeat_interval_ms", c.heartbeat_interval_ms, 100, c.session_timeout_ms / 3)?;
        in_range("consumer.fetch_wait_max_ms", c.fetch_wait_max_ms, 1, 10_000)?;
        in_range("consumer.commit_interval_ms", c.commit_interval_ms, 10, 60_000)?;
        in_range("consumer.transaction_timeout_ms", c.transaction_timeout_ms, c.commit_interval_ms * 10, 900_000)?;
        in_range("consumer.stats_interval_ms", c.stats_interval_ms, 100, 600_000)?;
        in_range("consumer.max_batch_per_partition", c.max_batch_per_partition, 1, 100_000)?;
        in_range("consumer.fetch_max_bytes_per_partition", c.fetch_max_bytes_per_partition, 16 * 1024, 2 << 20)?;
        in_range("state.dedup_window_secs", self.state.dedup_window_secs, 60, 90 * 24 * 3600)?;
        in_range("state.crash_loop_attempts", self.state.crash_loop_attempts, 1, 100)?;
        in_range("vrl.time_budget_ms", self.vrl.time_budget_ms, 1, 10_000)?;
        if self.state.dir.as_os_str().is_empty() {
            return Err(ConfigError::field("state.dir", "must not be empty"));
        }
        for (name, source) in &self.sources {
            source.check(name, self.state.dedup_window_secs)?;
        }
        for (i, route) in self.routes.iter().enumerate() {
            let field = |f: &str| format!("routes[{i}].{f}");
            if route.topic.is_empty() || route.topic == t.raw || route.topic == t.dlq || route.topic == t.state {
                return Err(ConfigError::field(field("topic"), "must name an events topic (not raw, dlq or state)"));
            }
            if let Some(sources) = &route.sources {
                if let Some(bad) = sources.iter().find(|s| !hookline_schemas::is_valid_source_name(s)) {
                    return Err(ConfigError::field(field("sources"), format!("`{bad}` is not a source name")));
                }
            }
            if let Some(path) = &route.data_schema {
                load_schema(path).map_err(|e| ConfigError::field(field("data_schema"), e))?;
            }
            if let Some(path) = &route.transform {
                load_program(path).map_err(|e| ConfigError::field(field("transform"), e))?;
            }
        }
        Ok(Settings {
            listen,
            drain_timeout: Duration::from_millis(self.server.drain_timeout_ms),
            kafka: self.kafka,
            topics: self.topics,
            consumer: self.consumer,
            state_dir: self.state.dir,
            dedup_window: Duration::from_secs(self.state.dedup_window_secs),
            crash_loop_attempts: self.state.crash_loop_attempts,
            sources: self.sources,
            routes: self.routes,
            vrl_time_budget: Duration::from_millis(self.vrl.time_budget_ms),
            tracing: self.tracing.validate("hookline-processor")?,
        })
    }
}

impl SourceConfig {
    fn check(&self, name: &str, default_window: u64) -> Result<(), ConfigError> {
        let field = |f: &str| format!("sources.{name}.{f}");
        if !hookline_schemas::is_valid_source_name(name) {
            return Err(ConfigError::field(
                format!("sources.{name}"),
                "a source name is 1-64 characters of a-z, 0-9, `_` and `-`, starting with a letter or digit",
            ));
        }
        for (f, selector) in [("event_type", &self.event_type), ("subject", &self.subject)] {
            match selector {
                Some(FieldSelector::JsonPointer(p)) => pointer(&field(&format!("{f}.json_pointer")), p)?,
                Some(FieldSelector::Header(h)) => header(&field(&format!("{f}.header")), h)?,
                None => {}
            }
        }
        if let Some(t) = &self.time {
            match (&t.json_pointer, &t.header) {
                (Some(p), None) => pointer(&field("time.json_pointer"), p)?,
                (None, Some(h)) => header(&field("time.header"), h)?,
                _ => return Err(ConfigError::field(field("time"), "set exactly one of json_pointer or header")),
            }
        }
        if let Some(f) = &self.filter {
            if f.allow.is_empty() && f.deny.is_empty() && f.condition.is_none() {
                return Err(ConfigError::field(field("filter"), "set allow, deny, condition or several"));
            }
        }
        if let Some(path) = &self.transform {
            load_program(path).map_err(|e| ConfigError::field(field("transform"), e))?;
        }
        let window = self.dedup_window_secs.unwrap_or(default_window);
        in_range(&field("dedup_window_secs"), window, 60, 90 * 24 * 3600)?;
        if let Some((min, why)) = self.provider.and_then(|p| p.min_dedup_window_secs()) {
            if window < min {
                return Err(ConfigError::field(
                    field("dedup_window_secs"),
                    format!("{why}: the window must be at least {min} s"),
                ));
            }
        }
        Ok(())
    }
}

fn pointer(field: &str, p: &str) -> Result<(), ConfigError> {
    if p.starts_with('/') {
        Ok(())
    } else {
        Err(ConfigError::field(
            field,
            format!("`{p}` is not a JSON pointer (RFC 6901): it must start with `/`, as in \"/type\""),
        ))
    }
}

fn header(field: &str, name: &str) -> Result<(), ConfigError> {
    let valid = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if valid {
        Ok(())
    } else {
        Err(ConfigError::field(field, format!("`{name}` is not a valid HTTP header name")))
    }
}

/// Reads a VRL program file (a source's or route's `transform`). The config check only reads it; the
/// pipeline compiles it, at startup and in `hookline config check`.
pub fn load_program(path: &Path) -> Result<String, String> {
    // A VRL program of a megabyte is already a mistake.
    read_bounded(path, 1024 * 1024)
}

/// Reads and compiles a JSON Schema file (a route's `data_schema`): at startup, to refuse a config whose
/// schema does not compile, and by the pipeline, which keeps the compiled schema.
pub fn load_schema(path: &Path) -> Result<jsonschema::Validator, String> {
    let text = read_bounded(path, 16 * 1024 * 1024)?;
    let schema: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{} is not JSON: {e}", path.display()))?;
    jsonschema::validator_for(&schema).map_err(|e| format!("{} is not a valid JSON Schema: {e}", path.display()))
}

/// Reads a text file of at most `max` bytes: bounded, so that a wrong path (a device, a huge file) is an error
/// rather than a startup that never ends.
fn read_bounded(path: &Path, max: u64) -> Result<String, String> {
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| std::io::Read::read_to_string(&mut std::io::Read::take(f, max + 1), &mut text))
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if text.len() as u64 > max {
        return Err(format!("{} is larger than {max} bytes", path.display()));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Settings, ConfigError> {
        hookline_runtime::config::from_str_with_env::<Config>(text, Vec::new())?.validate()
    }

    #[test]
    fn the_example_config_in_deploy_is_valid() {
        let path =
            Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned()))
                .join("../deploy/processor.example.toml");
        let s = parse(&std::fs::read_to_string(path).unwrap()).unwrap();
        assert_eq!(s.topics.events, "hookline.events");
    }

    #[test]
    fn an_empty_file_gives_the_documented_defaults() {
        let s = parse("").unwrap();
        assert_eq!(s.listen.to_string(), "127.0.0.1:9091");
        assert_eq!(s.consumer.group_id, "hookline-processor");
        assert_eq!(s.dedup_window, Duration::from_secs(7 * 24 * 3600));
        assert_eq!(s.topics.raw, "hookline.raw");
        assert_eq!(s.topics.state, "hookline.state");
        assert_eq!(s.output_topics(), vec!["hookline.events".to_owned(), "hookline.dlq".to_owned()]);
        assert_eq!(s.crash_loop_attempts, 3);
    }

    #[test]
    fn bad_fields_are_named() {
        let e = |t: &str| parse(t).unwrap_err().to_string();
        assert!(e("[state]\ndirectory = 'x'\n").contains("directory"));
        assert!(e("[server]\nlisten = 'nowhere'\n").contains("server.listen"));
        assert!(e("[consumer]\nheartbeat_interval_ms = 5000\n").contains("consumer.heartbeat_interval_ms"));
        assert!(e("[topics]\nevents = 'hookline.raw'\n").contains("topics.events"));
        assert!(e("[topics]\nstate = 'hookline.dlq'\n").contains("topics.state"));
        assert!(e("[sources.shop]\nevent_type = { json_pointer = 'type' }\n")
            .contains("sources.shop.event_type.json_pointer"));
        assert!(e("[sources.shop]\nevent_type = { header = 'X Type' }\n").contains("sources.shop.event_type.header"));
        assert!(e("[sources.shop]\nevent_type = { body = '/x' }\n").contains("body"));
        assert!(e("[sources.shop]\nprovider = 'stripes'\n").contains("stripes"));
        assert!(e("[sources.shop]\ntime = { format = 'unix_seconds' }\n").contains("sources.shop.time"));
        assert!(e("[sources.shop]\nfilter = {}\n").contains("sources.shop.filter"));
        assert!(e("[kafka.client]\n'group.id' = 'mine'\n").contains("group.id"));
        assert!(e("[kafka.client]\n'max.partition.fetch.bytes' = '1'\n").contains("max.partition.fetch.bytes"));
        assert!(
            e("[consumer]\nfetch_max_bytes_per_partition = 100\n").contains("consumer.fetch_max_bytes_per_partition")
        );
        assert!(e("[[routes]]\ntopic = 'hookline.dlq'\n").contains("routes[0].topic"));
        assert!(e("[[routes]]\ntopic = 'x'\ndata_schema = '/nonexistent.json'\n").contains("routes[0].data_schema"));
    }

    #[test]
    fn stripe_keeps_keys_for_at_least_three_days() {
        let e = parse("[sources.stripe]\nprovider = 'stripe'\ndedup_window_secs = 86400\n").unwrap_err().to_string();
        assert!(e.contains("sources.stripe.dedup_window_secs") && e.contains("3 days"), "{e}");
        let s = parse("[sources.stripe]\nprovider = 'stripe'\ndedup_window_secs = 259200\n[sources.shop]\n").unwrap();
        assert_eq!(s.window_of("stripe"), Duration::from_secs(259_200));
        assert_eq!(s.window_of("shop"), Duration::from_secs(7 * 24 * 3600));
        assert_eq!(s.window_of("unknown"), Duration::from_secs(7 * 24 * 3600));
    }

    #[test]
    fn provider_names_read_back_as_configured() {
        for name in ["generic", "stripe", "github", "standard_webhooks", "hubspot", "meta"] {
            let s = parse(&format!("[sources.x]\nprovider = '{name}'\n")).unwrap();
            assert_eq!(s.sources["x"].provider.map_or(GENERIC, |p| p.name()), name);
        }
    }

    #[test]
    fn routes_extend_the_output_topics() {
        let s = parse("[[routes]]\ntopic = 'billing'\ntypes = ['invoice.*']\n[[routes]]\ntopic = 'hookline.events'\n")
            .unwrap();
        assert_eq!(s.output_topics(), vec!["hookline.events", "billing", "hookline.dlq"]);
    }
}

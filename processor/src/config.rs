//! The processor config: one TOML file (`deploy/processor.example.toml` documents every field) plus
//! `HOOKLINE_*` environment overrides, validated once at startup with errors that name the field.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hookline_runtime::config::{in_range, socket_addr, ConfigError};
use hookline_runtime::kafka::KafkaConfig;
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
    /// `[consumer]`: the consumer group.
    #[serde(default)]
    pub consumer: ConsumerConfig,
    /// `[state]`: the local dedup store.
    #[serde(default)]
    pub state: StateConfig,
    /// `[sources.NAME]`: per-source normalization. Sources not listed get the defaults.
    #[serde(default)]
    pub sources: BTreeMap<String, SourceConfig>,
}

/// `[server]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address of `/metrics`, `/livez` and `/readyz`. Default `127.0.0.1:9091`.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// On SIGTERM or a partition revocation: how long the records being processed may take to finish.
    /// Default 10000 ms.
    #[serde(default = "default_drain_timeout_ms")]
    pub drain_timeout_ms: u64,
}

fn default_listen() -> String {
    "127.0.0.1:9091".to_owned()
}
fn default_drain_timeout_ms() -> u64 {
    10_000
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig { listen: default_listen(), drain_timeout_ms: default_drain_timeout_ms() }
    }
}

/// `[topics]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicsConfig {
    /// The raw topic the ingress writes. Default `hookline.raw`.
    #[serde(default = "default_raw")]
    pub raw: String,
    /// Partitions of the raw topic if the processor has to create it. Default 12.
    #[serde(default = "default_raw_partitions")]
    pub raw_partitions: i32,
    /// The normalized events topic. Default `hookline.events`. Created with the raw topic's partition count.
    #[serde(default = "default_events")]
    pub events: String,
    /// The dead-letter topic. Default `hookline.dlq`. Created with the raw topic's partition count.
    #[serde(default = "default_dlq")]
    pub dlq: String,
}

fn default_raw() -> String {
    "hookline.raw".to_owned()
}
fn default_raw_partitions() -> i32 {
    12
}
fn default_events() -> String {
    "hookline.events".to_owned()
}
fn default_dlq() -> String {
    "hookline.dlq".to_owned()
}

impl Default for TopicsConfig {
    fn default() -> Self {
        TopicsConfig {
            raw: default_raw(),
            raw_partitions: default_raw_partitions(),
            events: default_events(),
            dlq: default_dlq(),
        }
    }
}

/// `[consumer]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumerConfig {
    /// The consumer group. Processors with the same group share the raw partitions. Default `hookline-processor`.
    #[serde(default = "default_group")]
    pub group_id: String,
    /// A processor silent for this long is removed from the group and its partitions move. Default 6000 ms.
    /// (Tansu holds a group join for half of it.)
    #[serde(default = "default_session_timeout_ms")]
    pub session_timeout_ms: u32,
    /// Heartbeat interval; at most a third of the session timeout. Default 1000 ms.
    #[serde(default = "default_heartbeat_interval_ms")]
    pub heartbeat_interval_ms: u32,
    /// Longest a fetch waits for new records: latency versus broker load. Default 100 ms.
    #[serde(default = "default_fetch_wait_max_ms")]
    pub fetch_wait_max_ms: u32,
    /// How often processed offsets are committed. Default 1000 ms. A crash re-reads at most this much, and
    /// deduplication drops what was already published.
    #[serde(default = "default_commit_interval_ms")]
    pub commit_interval_ms: u32,
    /// How often consumer lag is refreshed (librdkafka statistics). Default 5000 ms.
    #[serde(default = "default_stats_interval_ms")]
    pub stats_interval_ms: u32,
}

fn default_group() -> String {
    "hookline-processor".to_owned()
}
fn default_session_timeout_ms() -> u32 {
    6_000
}
fn default_heartbeat_interval_ms() -> u32 {
    1_000
}
fn default_fetch_wait_max_ms() -> u32 {
    100
}
fn default_commit_interval_ms() -> u32 {
    1_000
}
fn default_stats_interval_ms() -> u32 {
    5_000
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            group_id: default_group(),
            session_timeout_ms: default_session_timeout_ms(),
            heartbeat_interval_ms: default_heartbeat_interval_ms(),
            fetch_wait_max_ms: default_fetch_wait_max_ms(),
            commit_interval_ms: default_commit_interval_ms(),
            stats_interval_ms: default_stats_interval_ms(),
        }
    }
}

/// `[state]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    /// The data folder (RocksDB). Kept across restarts; one processor per folder. Default `./data/processor`.
    #[serde(default = "default_dir")]
    pub dir: PathBuf,
    /// How long a dedup key is remembered: a redelivery within this window is dropped. Default 604800 s
    /// (7 days). Cost: one small RocksDB entry per webhook for this long.
    #[serde(default = "default_window")]
    pub dedup_window_secs: u64,
}

fn default_dir() -> PathBuf {
    PathBuf::from("./data/processor")
}
fn default_window() -> u64 {
    7 * 24 * 3600
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig { dir: default_dir(), dedup_window_secs: default_window() }
    }
}

/// `[sources.NAME]`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// Where the event type comes from: `{ json_pointer = "/type" }` or `{ header = "X-GitHub-Event" }`. When
    /// set and absent from a webhook, the webhook goes to the DLQ (`missing_type`). Default: `{source}.webhook`.
    pub event_type: Option<FieldSelector>,
}

/// `{ header = "..." }` or `{ json_pointer = "/..." }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum FieldSelector {
    /// A request header kept on the raw record.
    Header(String),
    /// A JSON pointer into the body.
    JsonPointer(String),
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
    /// Dedup window.
    pub dedup_window: Duration,
    /// Per-source normalization.
    pub sources: BTreeMap<String, SourceConfig>,
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
        for (field, name) in [("topics.raw", &t.raw), ("topics.events", &t.events), ("topics.dlq", &t.dlq)] {
            if name.is_empty() {
                return Err(ConfigError::field(field, "must not be empty"));
            }
        }
        if t.events == t.raw || t.dlq == t.raw || t.dlq == t.events {
            return Err(ConfigError::field("topics", "raw, events and dlq must be three different topics"));
        }
        in_range("topics.raw_partitions", t.raw_partitions, 1, 10_000)?;
        let c = &self.consumer;
        if c.group_id.is_empty() {
            return Err(ConfigError::field("consumer.group_id", "must not be empty"));
        }
        in_range("consumer.session_timeout_ms", c.session_timeout_ms, 1_000, 300_000)?;
        in_range("consumer.heartbeat_interval_ms", c.heartbeat_interval_ms, 100, c.session_timeout_ms / 3)?;
        in_range("consumer.fetch_wait_max_ms", c.fetch_wait_max_ms, 1, 10_000)?;
        in_range("consumer.commit_interval_ms", c.commit_interval_ms, 100, 60_000)?;
        in_range("consumer.stats_interval_ms", c.stats_interval_ms, 100, 600_000)?;
        in_range("state.dedup_window_secs", self.state.dedup_window_secs, 60, 90 * 24 * 3600)?;
        if self.state.dir.as_os_str().is_empty() {
            return Err(ConfigError::field("state.dir", "must not be empty"));
        }
        for (name, source) in &self.sources {
            if !hookline_schemas::is_valid_source_name(name) {
                return Err(ConfigError::field(
                    format!("sources.{name}"),
                    "a source name is 1-64 characters of a-z, 0-9, `_` and `-`, starting with a letter or digit",
                ));
            }
            match &source.event_type {
                Some(FieldSelector::JsonPointer(p)) if !p.starts_with('/') => {
                    return Err(ConfigError::field(
                        format!("sources.{name}.event_type.json_pointer"),
                        format!("`{p}` is not a JSON pointer (RFC 6901): it must start with `/`, as in \"/type\""),
                    ));
                }
                Some(FieldSelector::Header(h)) if http_header_name_invalid(h) => {
                    return Err(ConfigError::field(
                        format!("sources.{name}.event_type.header"),
                        format!("`{h}` is not a valid HTTP header name"),
                    ));
                }
                _ => {}
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
            sources: self.sources,
        })
    }
}

fn http_header_name_invalid(name: &str) -> bool {
    name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Settings, ConfigError> {
        hookline_runtime::config::from_str_with_env::<Config>(text, Vec::new())?.validate()
    }

    #[test]
    fn the_example_config_in_deploy_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/processor.example.toml");
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
    }

    #[test]
    fn bad_fields_are_named() {
        let e = |t: &str| parse(t).unwrap_err().to_string();
        assert!(e("[state]\ndirectory = 'x'\n").contains("directory"));
        assert!(e("[server]\nlisten = 'nowhere'\n").contains("server.listen"));
        assert!(e("[consumer]\nheartbeat_interval_ms = 5000\n").contains("consumer.heartbeat_interval_ms"));
        assert!(e("[topics]\nevents = 'hookline.raw'\n").contains("topics"));
        assert!(e("[sources.shop]\nevent_type = { json_pointer = 'type' }\n")
            .contains("sources.shop.event_type.json_pointer"));
        assert!(e("[sources.shop]\nevent_type = { header = 'X Type' }\n").contains("sources.shop.event_type.header"));
        assert!(e("[sources.shop]\nevent_type = { body = '/x' }\n").contains("body"));
        assert!(e("[kafka.client]\n'group.id' = 'mine'\n").contains("group.id"));
    }
}

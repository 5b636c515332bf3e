//! The ingress config: one TOML file (`deploy/ingress.example.toml` documents every field) plus `HOOKLINE_*`
//! environment overrides. [`Config::validate`] turns it into [`Settings`] once at startup; every error names
//! the field it is about, and the process refuses to start.

mod verify;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hookline_runtime::config::{in_range, socket_addr, ConfigError};
use hookline_runtime::kafka::KafkaConfig;
use hookline_runtime::traces::{TracingConfig, TracingSettings};
use http::HeaderName;
use ipnet::IpNet;
use serde::Deserialize;

pub use self::verify::VerifyConfig;
use hookline_providers::keys::KeySelector;
pub use hookline_providers::settings::SecretSource;
use hookline_providers::verify::{Secret, Verifier};

/// The librdkafka properties the ingress sets itself; `kafka.client` may not override them.
pub const RESERVED_PRODUCER_PROPERTIES: &[&str] = &[
    "enable.idempotence",
    "acks",
    "request.required.acks",
    "message.timeout.ms",
    "delivery.timeout.ms",
    "queue.buffering.max.messages",
    "queue.buffering.max.kbytes",
    "linger.ms",
    "queue.buffering.max.ms",
    "compression.type",
    "compression.codec",
    "partitioner",
    "message.max.bytes",
];

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[server]`: the HTTP listener.
    #[serde(default)]
    pub server: ServerConfig,
    /// `[kafka]`: the cluster.
    #[serde(default)]
    pub kafka: KafkaConfig,
    /// `[topics]`: where raw webhooks go.
    #[serde(default)]
    pub topics: TopicsConfig,
    /// `[producer]`: how records are stored.
    #[serde(default)]
    pub producer: ProducerConfig,
    /// `[quarantine]`: where refused requests are recorded, if anywhere.
    pub quarantine: Option<QuarantineConfig>,
    /// `[sources.NAME]`: one table per webhook sender, served at `POST /webhooks/NAME`.
    pub sources: BTreeMap<String, SourceConfig>,
    /// `[tracing]`: where spans are exported over OTLP, if anywhere.
    #[serde(default)]
    pub tracing: TracingConfig,
}

/// `[server]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Where webhooks are received. Default `127.0.0.1:8080`; use `0.0.0.0:8080` in a container. Only
    /// `/webhooks/{source}` is served there.
    pub listen: String,
    /// Where `/metrics`, `/livez` and `/readyz` are served, apart from the public webhook port so that nothing
    /// about the configuration (source names, secret ids) is public. Default `127.0.0.1:9190`.
    pub admin_listen: String,
    /// Largest accepted body, for sources that set none, counted on the bytes actually read (chunked bodies
    /// included). Default 1 MiB. Larger requests get 413.
    pub max_body_bytes: u64,
    /// Time allowed to receive a request's headers and then its whole body, each. Default 10000 ms. A
    /// slower client gets 408 (body) or a closed connection (headers).
    pub read_timeout_ms: u64,
    /// On SIGTERM, how long in-flight requests may take to finish before the process exits. Default 10000 ms.
    pub drain_timeout_ms: u64,
    /// On SIGTERM, `/readyz` fails at once and the webhook port keeps accepting for this long (the time a
    /// load balancer takes to notice) before it stops and drains. Default 0; behind a load balancer, set it
    /// to its health-check interval times its failure threshold.
    pub shutdown_grace_ms: u64,
    /// A connection with no request for this long is closed. Default 60000 ms.
    pub idle_timeout_ms: u64,
    /// Webhook requests being stored at once (verified, waiting for Kafka's acknowledgement); beyond it, 503 at
    /// once. Default 1024.
    pub max_in_flight: u32,
    /// Webhook requests receiving their bodies at once, kept apart from `max_in_flight` so that senders of
    /// slow bodies cannot take the capacity meant for storing; beyond it, 503 at once. Default 2048. Memory:
    /// at most `max_reading + max_in_flight` bodies are held, each up to its source's `max_body_bytes`.
    pub max_reading: u32,
    /// Requests receiving their bodies at once from one client address (an IPv6 client by its /64), behind
    /// `trusted_proxies`; beyond it, 503 at once. Default 512: one client holding many slow bodies cannot keep
    /// the others out. Behind a load balancer, set `trusted_proxies`, or every request counts as the
    /// balancer's.
    pub max_reading_per_client: u32,
    /// A body that sends nothing for this long gets 408 (`read_timeout_ms` still bounds the whole body, and
    /// this one when it is shorter). Default 2000 ms.
    pub body_stall_timeout_ms: u64,
    /// Open connections; beyond it, new ones wait in the kernel's listen backlog. Default 10000.
    pub max_connections: u32,
    /// Largest request head (request line and headers), in bytes. Default 16384; larger gets 431.
    pub max_header_bytes: u32,
    /// Most request headers. Default 100; more gets 431.
    pub max_headers: u32,
    /// Proxies (CIDRs) whose `X-Forwarded-For` / `Forwarded` headers are believed when working out the
    /// client address for `allowed_ips`. Default none: the peer address is the client.
    pub trusted_proxies: Vec<String>,
    /// `[server.tls]`: serve HTTPS (HTTP/1.1 and HTTP/2 by ALPN). Default: plain HTTP (HTTP/1.1 and h2c).
    pub tls: Option<TlsConfig>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8080".to_owned(),
            admin_listen: "127.0.0.1:9190".to_owned(),
            max_body_bytes: 1024 * 1024,
            read_timeout_ms: 10_000,
            drain_timeout_ms: 10_000,
            shutdown_grace_ms: 0,
            idle_timeout_ms: 60_000,
            max_in_flight: 1024,
            max_reading: 2048,
            max_reading_per_client: 512,
            body_stall_timeout_ms: 2000,
            max_connections: 10_000,
            max_header_bytes: 16 * 1024,
            max_headers: 100,
            trusted_proxies: Vec::new(),
            tls: None,
        }
    }
}

/// `[server.tls]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub cert_file: PathBuf,
    /// PEM private key.
    pub key_file: PathBuf,
}

/// `[topics]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TopicsConfig {
    /// The raw topic. Default `hookline.raw`.
    pub raw: String,
    /// Partitions of the raw topic when the ingress creates it. Default 12. The processors of one group scale
    /// up to this many. An existing topic is used as it is.
    pub raw_partitions: i32,
}

impl Default for TopicsConfig {
    fn default() -> Self {
        TopicsConfig { raw: crate::DEFAULT_RAW_TOPIC.to_owned(), raw_partitions: crate::DEFAULT_RAW_PARTITIONS }
    }
}

/// `[producer]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProducerConfig {
    /// The longest a request waits for Kafka's acknowledgement before it is answered 503. Default 2000 ms:
    /// under the shortest provider deadline (Slack retries after 3 s; Shopify and Paddle after 5 s).
    /// A 503 does not mean the record was dropped: it may still be stored, and the sender's retry is then
    /// absorbed by deduplication.
    pub ack_timeout_ms: u64,
    /// How long librdkafka keeps trying to deliver a record (`message.timeout.ms`), at least `ack_timeout_ms`.
    /// Default 300000 ms (librdkafka's own default). A record whose request was already answered 503 may
    /// still be stored meanwhile, which is harmless: the sender's retry is deduplicated.
    pub delivery_timeout_ms: u64,
    /// The acknowledgement latency the ingress holds under overload. When more than a tenth of the acks of
    /// 100 ms are slower, fewer requests are admitted at once and the rest get 503 at once; the bound grows
    /// back while acks are fast. Default 500 ms. Lower means faster 503s under load, higher more 202s.
    pub target_ack_latency_ms: u64,
    /// `Retry-After` of 503 answers, in seconds. Default 5.
    pub retry_after_secs: u32,
    /// How long librdkafka waits to batch records; adds at most that to each ack. Default 1 ms: measured on
    /// Apache Kafka (`make bench`), 5 ms put the median 202 at 6.6 ms at light load against 2.4 ms, for about
    /// a quarter less CPU per webhook at 3,000/s; under heavy load batches fill while requests are in flight
    /// whatever this is.
    pub linger_ms: u32,
    /// `none`, `gzip`, `snappy`, `lz4` or `zstd`. Default `lz4`.
    pub compression: String,
    /// Records waiting in librdkafka's queue before new requests are shed with 503. Default 100000.
    pub max_queued_messages: u32,
    /// Bytes waiting in librdkafka's queue before new requests are shed with 503, in KiB. Default 65536 (64 MiB).
    pub max_queued_kbytes: u32,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            ack_timeout_ms: 2_000,
            delivery_timeout_ms: 300_000,
            target_ack_latency_ms: 500,
            retry_after_secs: 5,
            linger_ms: 1,
            compression: "lz4".to_owned(),
            max_queued_messages: 100_000,
            max_queued_kbytes: 65_536,
        }
    }
}

/// `[quarantine]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuarantineConfig {
    /// The topic, created at startup if missing.
    pub topic: String,
    /// Partitions when created. Default 3.
    #[serde(default = "default_quarantine_partitions")]
    pub partitions: i32,
    /// Records per second at most; the excess is counted and dropped. Default 50.
    #[serde(default = "default_quarantine_rate")]
    pub max_records_per_sec: u32,
    /// Bytes of a refused body kept (base64). Default 0: only its size and SHA-256. Bodies can hold personal
    /// data; raise this only where the topic is access-controlled.
    #[serde(default)]
    pub body_prefix_bytes: u32,
}

fn default_quarantine_partitions() -> i32 {
    3
}
fn default_quarantine_rate() -> u32 {
    50
}

/// `[sources.NAME]`: one webhook sender.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// How requests are authenticated (`[sources.NAME.verify]`, keyed by `scheme`).
    pub verify: VerifyConfig,
    /// Must be `true` for `scheme = "none"`: an explicit acknowledgement that anyone who can reach the
    /// ingress can write to this source.
    #[serde(default)]
    pub allow_unverified: bool,
    /// Largest accepted body for this source; default `server.max_body_bytes`.
    pub max_body_bytes: Option<u64>,
    /// Where the dedup key comes from: `{ header = "X-Event-Id" }` or `{ json_pointer = "/id" }`. When unset:
    /// the provider's own id if the scheme has one; when absent from a request: the SHA-256 of the body.
    pub dedup_key: Option<KeySelectorConfig>,
    /// Where the ordering key comes from (same forms). When unset: the provider's entity key (Stripe
    /// `data.object.id`, GitHub repository and PR/issue, Shopify resource, Paddle `data.id`), else the dedup key.
    pub ordering_key: Option<KeySelectorConfig>,
    /// Accepted `Content-Type` media types (`application/json`); others get 415. Default: any.
    pub content_types: Option<Vec<String>>,
    /// Token-bucket rate limit; beyond it, 429 with `Retry-After`. Default: none.
    pub rate_limit: Option<RateLimitConfig>,
    /// Requests of this source handled at once; beyond it, 503 at once. Default: only the global bound.
    pub max_in_flight: Option<u32>,
    /// The p99 Kafka ack latency this source's sender can live with, exported as
    /// `hookline_ingress_ack_budget_seconds{source}` for the `HooklineIngressAckLatencyOverBudget` alert.
    /// Default: `producer.target_ack_latency_ms`.
    pub ack_budget_ms: Option<u64>,
    /// Client addresses (CIDRs) allowed to send; others get 403. Default: any.
    pub allowed_ips: Option<Vec<String>>,
    /// Answer `GET ?<param>=<value>` with the value: a generic endpoint-ownership check.
    pub challenge: Option<ChallengeConfig>,
}

/// `rate_limit = { per_second = 100, burst = 200 }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Sustained requests per second.
    pub per_second: f64,
    /// Requests allowed in a burst above the rate. Default: one second's worth.
    pub burst: Option<u32>,
}

/// `[sources.NAME.challenge]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChallengeConfig {
    /// The query parameter carrying the challenge (`challenge`, `crc_token`…).
    pub param: String,
    /// Answer with the bare value (`text`, default) or as `{"<param>": value}` (`json`).
    #[serde(default)]
    pub respond: ChallengeResponse,
    /// A query parameter that must carry the verify token below.
    pub token_param: Option<String>,
    /// The verify token (required with `token_param`).
    pub token: Option<SecretSource>,
}

/// How a generic GET challenge is answered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChallengeResponse {
    /// `text/plain` body: the value.
    #[default]
    Text,
    /// `application/json` body: `{"<param>": value}`.
    Json,
}

/// `{ header = "X-Id" }` or `{ json_pointer = "/id" }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum KeySelectorConfig {
    /// A request header.
    Header(String),
    /// An RFC 6901 JSON pointer into the body.
    JsonPointer(String),
}

/// The validated config the ingress runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where webhooks are received.
    pub listen: SocketAddr,
    /// Where `/metrics`, `/livez` and `/readyz` are served.
    pub admin_listen: SocketAddr,
    /// Header and body read deadline, each.
    pub read_timeout: Duration,
    /// Drain deadline on shutdown.
    pub drain_timeout: Duration,
    /// How long the webhook port keeps accepting after shutdown begins (while `/readyz` fails).
    pub shutdown_grace: Duration,
    /// Idle connection deadline.
    pub idle_timeout: Duration,
    /// Requests being stored at once.
    pub max_in_flight: usize,
    /// Requests receiving their bodies at once.
    pub max_reading: usize,
    /// Requests receiving their bodies at once from one client.
    pub max_reading_per_client: usize,
    /// How long a body may send nothing.
    pub body_stall_timeout: Duration,
    /// Connections open at once.
    pub max_connections: usize,
    /// Largest request head.
    pub max_header_bytes: usize,
    /// Most headers.
    pub max_headers: usize,
    /// Proxies whose forwarding headers are believed.
    pub trusted_proxies: Vec<IpNet>,
    /// HTTPS certificate and key.
    pub tls: Option<TlsConfig>,
    /// The cluster.
    pub kafka: KafkaConfig,
    /// The raw topic.
    pub raw_topic: String,
    /// Partitions to create the raw topic with.
    pub raw_partitions: i32,
    /// Producer behaviour.
    pub producer: ProducerConfig,
    /// Refused-request recording.
    pub quarantine: Option<QuarantineConfig>,
    /// The sources by name.
    pub sources: BTreeMap<String, Arc<Source>>,
    /// Where spans are exported, if anywhere.
    pub tracing: Option<TracingSettings>,
}

impl Settings {
    /// The bounded wait for Kafka's acknowledgement.
    pub fn ack_timeout(&self) -> Duration {
        Duration::from_millis(self.producer.ack_timeout_ms)
    }

    /// The sections, other than `[sources]`, in which `other` differs from these settings: the ones a reload
    /// cannot apply (`server`, `kafka`, `topics`, `producer`, `quarantine`).
    pub fn differences(&self, other: &Settings) -> Vec<&'static str> {
        // Destructured so that a new field cannot be left out of the comparison.
        let Settings {
            listen,
            admin_listen,
            read_timeout,
            drain_timeout,
            shutdown_grace,
            idle_timeout,
            max_in_flight,
            max_reading,
            max_reading_per_client,
            body_stall_timeout,
            max_connections,
            max_header_bytes,
            max_headers,
            trusted_proxies,
            tls,
            kafka,
            raw_topic,
            raw_partitions,
            producer,
            quarantine,
            sources: _,
            tracing,
        } = self;
        let server = [
            *listen != other.listen,
            *admin_listen != other.admin_listen,
            *read_timeout != other.read_timeout,
            *drain_timeout != other.drain_timeout,
            *shutdown_grace != other.shutdown_grace,
            *idle_timeout != other.idle_timeout,
            *max_in_flight != other.max_in_flight,
            *max_reading != other.max_reading,
            *max_reading_per_client != other.max_reading_per_client,
            *body_stall_timeout != other.body_stall_timeout,
            *max_connections != other.max_connections,
            *max_header_bytes != other.max_header_bytes,
            *max_headers != other.max_headers,
            *trusted_proxies != other.trusted_proxies,
            *tls != other.tls,
        ]
        .contains(&true);
        [
            ("server", server),
            ("kafka", *kafka != other.kafka),
            ("topics", (raw_topic, raw_partitions) != (&other.raw_topic, &other.raw_partitions)),
            ("producer", *producer != other.producer),
            ("quarantine", *quarantine != other.quarantine),
            ("tracing", *tracing != other.tracing),
        ]
        .into_iter()
        .filter_map(|(section, differs)| differs.then_some(section))
        .collect()
    }
}

/// A validated source.
#[derive(Debug)]
pub struct Source {
    /// Its name (the URL path segment).
    pub name: String,
    /// How its requests are verified.
    pub verifier: Verifier,
    /// Largest accepted body.
    pub max_body_bytes: usize,
    /// Dedup key selector (configured or the provider's).
    pub dedup_key: Option<KeySelector>,
    /// Ordering key selector (configured or the provider's).
    pub ordering_key: Option<KeySelector>,
    /// Accepted media types (lowercase), or any.
    pub content_types: Option<Vec<String>>,
    /// Rate limit (the ingress keeps a token bucket of it per source).
    pub rate_limit: Option<RateLimit>,
    /// Per-source bound on requests at once.
    pub max_in_flight: Option<usize>,
    /// The p99 ack latency budget (a metric for alerting; it changes no answer).
    pub ack_budget: Duration,
    /// Allowed client networks, or any.
    pub allowed_ips: Option<Vec<IpNet>>,
    /// Generic GET challenge.
    pub challenge: Option<Challenge>,
}

/// A validated rate limit: a token bucket refilled at `per_second`, holding at most `burst` tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Sustained requests per second.
    pub per_second: f64,
    /// Requests allowed at once above the rate.
    pub burst: f64,
}

/// A validated generic GET challenge.
#[derive(Debug)]
pub struct Challenge {
    /// Query parameter of the challenge.
    pub param: String,
    /// Answer form.
    pub respond: ChallengeResponse,
    /// Token parameter and expected token.
    pub token: Option<(String, Secret)>,
}

impl Config {
    /// Loads `path` with environment overrides.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        hookline_runtime::config::load(path, std::env::vars())
    }

    /// Checks every field and resolves secrets. The first problem found is returned, naming its field.
    pub fn validate(self) -> Result<Settings, ConfigError> {
        let s = &self.server;
        let listen = socket_addr("server.listen", &s.listen)?;
        let admin_listen = socket_addr("server.admin_listen", &s.admin_listen)?;
        if admin_listen == listen && listen.port() != 0 {
            return Err(ConfigError::field(
                "server.admin_listen",
                "must differ from server.listen: the operator endpoints are not served on the webhook port",
            ));
        }
        in_range("server.max_body_bytes", s.max_body_bytes, 1, 64 * 1024 * 1024)?;
        in_range("server.read_timeout_ms", s.read_timeout_ms, 100, 600_000)?;
        in_range("server.drain_timeout_ms", s.drain_timeout_ms, 0, 600_000)?;
        in_range("server.shutdown_grace_ms", s.shutdown_grace_ms, 0, 600_000)?;
        in_range("server.idle_timeout_ms", s.idle_timeout_ms, 100, 3_600_000)?;
        in_range("server.max_in_flight", s.max_in_flight, 1, 1_000_000)?;
        in_range("server.max_reading", s.max_reading, 1, 1_000_000)?;
        in_range("server.max_reading_per_client", s.max_reading_per_client, 1, s.max_reading)?;
        in_range("server.body_stall_timeout_ms", s.body_stall_timeout_ms, 100, 600_000)?;
        in_range("server.max_connections", s.max_connections, 1, 1_000_000)?;
        in_range("server.max_header_bytes", s.max_header_bytes, 8192, 1024 * 1024)?;
        in_range("server.max_headers", s.max_headers, 8, 1000)?;
        let trusted_proxies = cidrs("server.trusted_proxies", &s.trusted_proxies)?;
        if let Some(tls) = &s.tls {
            for (field, path) in [("server.tls.cert_file", &tls.cert_file), ("server.tls.key_file", &tls.key_file)] {
                std::fs::metadata(path)
                    .map_err(|e| ConfigError::field(field, format!("cannot read {}: {e}", path.display())))?;
            }
        }
        self.kafka.validate(RESERVED_PRODUCER_PROPERTIES)?;
        if self.topics.raw.is_empty() {
            return Err(ConfigError::field("topics.raw", "must not be empty"));
        }
        in_range("topics.raw_partitions", self.topics.raw_partitions, 1, 10_000)?;
        let p = &self.producer;
        in_range("producer.ack_timeout_ms", p.ack_timeout_ms, 100, 120_000)?;
        in_range("producer.delivery_timeout_ms", p.delivery_timeout_ms, p.ack_timeout_ms, 3_600_000)?;
        in_range("producer.target_ack_latency_ms", p.target_ack_latency_ms, 10, p.ack_timeout_ms)?;
        in_range("producer.retry_after_secs", p.retry_after_secs, 1, 3600)?;
        in_range("producer.linger_ms", p.linger_ms, 0, 1000)?;
        in_range("producer.max_queued_messages", p.max_queued_messages, 1, 10_000_000)?;
        in_range("producer.max_queued_kbytes", p.max_queued_kbytes, 1, 2_097_151)?;
        if !["none", "gzip", "snappy", "lz4", "zstd"].contains(&p.compression.as_str()) {
            return Err(ConfigError::field(
                "producer.compression",
                format!("`{}` is not one of none, gzip, snappy, lz4, zstd", p.compression),
            ));
        }
        if let Some(q) = &self.quarantine {
            if q.topic.is_empty() || q.topic == self.topics.raw {
                return Err(ConfigError::field("quarantine.topic", "must be a topic of its own"));
            }
            in_range("quarantine.partitions", q.partitions, 1, 1000)?;
            in_range("quarantine.max_records_per_sec", q.max_records_per_sec, 1, 100_000)?;
            in_range("quarantine.body_prefix_bytes", q.body_prefix_bytes, 0, 4096)?;
        }
        if self.sources.is_empty() {
            return Err(ConfigError::field("sources", "at least one source must be configured"));
        }
        let mut sources = BTreeMap::new();
        for (name, source) in self.sources {
            let validated = source.validate(&name, self.server.max_body_bytes, &self.producer)?;
            sources.insert(name, Arc::new(validated));
        }
        let s = self.server;
        let tracing = self.tracing.validate("hookline-ingress")?;
        Ok(Settings {
            listen,
            admin_listen,
            read_timeout: Duration::from_millis(s.read_timeout_ms),
            drain_timeout: Duration::from_millis(s.drain_timeout_ms),
            shutdown_grace: Duration::from_millis(s.shutdown_grace_ms),
            idle_timeout: Duration::from_millis(s.idle_timeout_ms),
            max_in_flight: s.max_in_flight as usize,
            max_reading: s.max_reading as usize,
            max_reading_per_client: s.max_reading_per_client as usize,
            body_stall_timeout: Duration::from_millis(s.body_stall_timeout_ms.min(s.read_timeout_ms)),
            max_connections: s.max_connections as usize,
            max_header_bytes: s.max_header_bytes as usize,
            max_headers: s.max_headers as usize,
            trusted_proxies,
            tls: s.tls,
            kafka: self.kafka,
            raw_topic: self.topics.raw,
            raw_partitions: self.topics.raw_partitions,
            producer: self.producer,
            quarantine: self.quarantine,
            sources,
            tracing,
        })
    }
}

impl SourceConfig {
    fn validate(self, name: &str, default_max_body: u64, producer: &ProducerConfig) -> Result<Source, ConfigError> {
        let field = |f: &str| format!("sources.{name}.{f}");
        if !hookline_schemas::is_valid_source_name(name) {
            return Err(ConfigError::field(
                format!("sources.{name}"),
                "a source name is 1-64 characters of a-z, 0-9, `_` and `-`, starting with a letter or digit",
            ));
        }
        let max_body = self.max_body_bytes.unwrap_or(default_max_body);
        in_range(&field("max_body_bytes"), max_body, 1, 64 * 1024 * 1024)?;
        let verifier =
            match (self.verify.is_none(), self.allow_unverified) {
                (true, true) => {
                    verify::none(&self.verify, &field("verify"))?;
                    Verifier::Unverified
                }
                (true, false) => return Err(ConfigError::field(
                    field("allow_unverified"),
                    "scheme \"none\" accepts requests without any signature; set allow_unverified = true to confirm",
                )),
                (false, true) => {
                    return Err(ConfigError::field(
                        field("allow_unverified"),
                        "only applies to scheme \"none\"; remove it from a verified source",
                    ))
                }
                (false, false) => Verifier::Scheme(verify::scheme(self.verify, &field("verify"))?),
            };
        let dedup_key = match self.dedup_key {
            Some(k) => Some(k.validate(&field("dedup_key"))?),
            None => verifier.default_dedup_key(),
        };
        let ordering_key = match self.ordering_key {
            Some(k) => Some(k.validate(&field("ordering_key"))?),
            None => verifier.default_ordering_key(),
        };
        let content_types = self.content_types.map(|list| media_types(&field("content_types"), list)).transpose()?;
        let rate_limit = self
            .rate_limit
            .map(|r| {
                if !(r.per_second > 0.0 && r.per_second <= 1_000_000.0) {
                    return Err(ConfigError::field(
                        field("rate_limit.per_second"),
                        "must be above 0 and at most 1000000",
                    ));
                }
                let burst = r.burst.map_or(r.per_second.ceil().max(1.0), f64::from);
                in_range(&field("rate_limit.burst"), burst, 1.0, 10_000_000.0)?;
                Ok(RateLimit { per_second: r.per_second, burst })
            })
            .transpose()?;
        let max_in_flight = self
            .max_in_flight
            .map(|n| in_range(&field("max_in_flight"), n, 1, 1_000_000).map(|n| n as usize))
            .transpose()?;
        let ack_budget_ms = self.ack_budget_ms.unwrap_or(producer.target_ack_latency_ms);
        in_range(&field("ack_budget_ms"), ack_budget_ms, 1, producer.ack_timeout_ms)?;
        let allowed_ips = self.allowed_ips.map(|list| cidrs(&field("allowed_ips"), &list)).transpose()?;
        let challenge = self
            .challenge
            .map(|c| {
                if c.param.is_empty() {
                    return Err(ConfigError::field(field("challenge.param"), "must name a query parameter"));
                }
                let token = match (c.token_param, c.token) {
                    (None, None) => None,
                    (Some(p), Some(t)) => Some((
                        p,
                        t.resolve(&field("challenge.token"), 0).map_err(|e| ConfigError::field(e.field, e.message))?,
                    )),
                    _ => {
                        return Err(ConfigError::field(
                            field("challenge"),
                            "set both token_param and token, or neither",
                        ))
                    }
                };
                Ok(Challenge { param: c.param, respond: c.respond, token })
            })
            .transpose()?;
        Ok(Source {
            name: name.to_owned(),
            verifier,
            max_body_bytes: usize::try_from(max_body).unwrap_or(usize::MAX),
            dedup_key,
            ordering_key,
            content_types,
            rate_limit,
            max_in_flight,
            ack_budget: Duration::from_millis(ack_budget_ms),
            allowed_ips,
            challenge,
        })
    }
}

impl KeySelectorConfig {
    fn validate(self, field: &str) -> Result<KeySelector, ConfigError> {
        match self {
            KeySelectorConfig::Header(h) => Ok(KeySelector::header(header_name(&format!("{field}.header"), &h)?)),
            KeySelectorConfig::JsonPointer(p) => {
                if !p.starts_with('/') {
                    return Err(ConfigError::field(
                        format!("{field}.json_pointer"),
                        format!("`{p}` is not a JSON pointer (RFC 6901): it must start with `/`, as in \"/id\""),
                    ));
                }
                Ok(KeySelector::pointer(p))
            }
        }
    }
}

fn media_types(field: &str, list: Vec<String>) -> Result<Vec<String>, ConfigError> {
    if list.is_empty() {
        return Err(ConfigError::field(field, "an empty list would refuse everything; remove it to accept any"));
    }
    list.into_iter()
        .map(|ct| {
            let ct = ct.trim().to_ascii_lowercase();
            if ct.contains(';') || !ct.contains('/') {
                return Err(ConfigError::field(field, format!("`{ct}` is not a media type such as application/json")));
            }
            Ok(ct)
        })
        .collect()
}

fn cidrs(field: &str, list: &[String]) -> Result<Vec<IpNet>, ConfigError> {
    list.iter()
        .map(|c| {
            c.parse::<IpNet>()
                .or_else(|_| c.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| ConfigError::field(field, format!("`{c}` is not an IP network such as 203.0.113.0/24")))
        })
        .collect()
}

fn header_name(field: &str, value: &str) -> Result<HeaderName, ConfigError> {
    HeaderName::from_bytes(value.as_bytes())
        .map_err(|_| ConfigError::field(field, format!("`{value}` is not a valid HTTP header name")))
}

#[cfg(test)]
mod schemes_tests;
#[cfg(test)]
mod tests;

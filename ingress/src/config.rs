//! The ingress config: one TOML file (`deploy/ingress.example.toml` documents every field) plus `HOOKLINE_*`
//! environment overrides. [`Config::validate`] turns it into [`Settings`] once at startup; every error names
//! the field it is about, and the process refuses to start.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hookline_runtime::config::{in_range, socket_addr, ConfigError};
use hookline_runtime::kafka::KafkaConfig;
use http::HeaderName;
use serde::Deserialize;

use crate::keys::KeySelector;
use crate::verify::{Encoding, HmacScheme, Secret, Verifier};

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
    /// `[sources.NAME]`: one table per webhook sender, served at `POST /webhooks/NAME`.
    pub sources: BTreeMap<String, SourceConfig>,
}

/// `[server]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on. Default `127.0.0.1:8080`; use `0.0.0.0:8080` in a container.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Largest accepted body, for sources that set none, counted on the bytes actually read (chunked bodies
    /// included). Default 1 MiB. Larger requests get 413.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: u64,
    /// Time allowed to receive a request's headers and then its whole body, each. Default 10000 ms. A
    /// slower client gets 408 (body) or a closed connection (headers).
    #[serde(default = "default_read_timeout_ms")]
    pub read_timeout_ms: u64,
    /// On SIGTERM, how long in-flight requests may take to finish before the process exits. Default 10000 ms.
    #[serde(default = "default_drain_timeout_ms")]
    pub drain_timeout_ms: u64,
}

fn default_listen() -> String {
    "127.0.0.1:8080".to_owned()
}
fn default_max_body_bytes() -> u64 {
    1024 * 1024
}
fn default_read_timeout_ms() -> u64 {
    10_000
}
fn default_drain_timeout_ms() -> u64 {
    10_000
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: default_listen(),
            max_body_bytes: default_max_body_bytes(),
            read_timeout_ms: default_read_timeout_ms(),
            drain_timeout_ms: default_drain_timeout_ms(),
        }
    }
}

/// `[topics]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicsConfig {
    /// The raw topic. Default `hookline.raw`.
    #[serde(default = "default_raw_topic")]
    pub raw: String,
    /// Partitions of the raw topic when the ingress creates it. Default 12. The processors of one group scale
    /// up to this many. An existing topic is used as it is.
    #[serde(default = "default_raw_partitions")]
    pub raw_partitions: i32,
}

fn default_raw_topic() -> String {
    "hookline.raw".to_owned()
}
fn default_raw_partitions() -> i32 {
    12
}

impl Default for TopicsConfig {
    fn default() -> Self {
        TopicsConfig {
            raw: default_raw_topic(),
            raw_partitions: default_raw_partitions(),
        }
    }
}

/// `[producer]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProducerConfig {
    /// The longest a request waits for Kafka's acknowledgement before it is answered 503. Default 5000 ms.
    /// A 503 does not mean the record was dropped: it may still be stored, and the sender's retry is then
    /// absorbed by deduplication.
    #[serde(default = "default_ack_timeout_ms")]
    pub ack_timeout_ms: u64,
    /// How long librdkafka keeps trying to deliver a record (`message.timeout.ms`), at least `ack_timeout_ms`.
    /// Default 300000 ms (librdkafka's own default). A record whose request was already answered 503 may
    /// still be stored meanwhile, which is harmless: the sender's retry is deduplicated. When records time
    /// out, librdkafka bumps the idempotent producer's epoch; Tansu 0.6 cannot handle that (its storage
    /// stops until restarted), so with Tansu keep this longer than any broker outage.
    #[serde(default = "default_delivery_timeout_ms")]
    pub delivery_timeout_ms: u64,
    /// `Retry-After` of 503 answers, in seconds. Default 5.
    #[serde(default = "default_retry_after_secs")]
    pub retry_after_secs: u32,
    /// How long librdkafka waits to batch records. Default 5 ms: adds at most that to each ack.
    #[serde(default = "default_linger_ms")]
    pub linger_ms: u32,
    /// `none`, `gzip`, `snappy`, `lz4` or `zstd`. Default `lz4`.
    #[serde(default = "default_compression")]
    pub compression: String,
    /// Records waiting in librdkafka's queue before new requests are shed with 503. Default 100000.
    #[serde(default = "default_max_queued_messages")]
    pub max_queued_messages: u32,
    /// Bytes waiting in librdkafka's queue before new requests are shed with 503, in KiB. Default 65536 (64 MiB).
    #[serde(default = "default_max_queued_kbytes")]
    pub max_queued_kbytes: u32,
}

fn default_ack_timeout_ms() -> u64 {
    5_000
}
fn default_delivery_timeout_ms() -> u64 {
    300_000
}
fn default_retry_after_secs() -> u32 {
    5
}
fn default_linger_ms() -> u32 {
    5
}
fn default_compression() -> String {
    "lz4".to_owned()
}
fn default_max_queued_messages() -> u32 {
    100_000
}
fn default_max_queued_kbytes() -> u32 {
    65_536
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            ack_timeout_ms: default_ack_timeout_ms(),
            delivery_timeout_ms: default_delivery_timeout_ms(),
            retry_after_secs: default_retry_after_secs(),
            linger_ms: default_linger_ms(),
            compression: default_compression(),
            max_queued_messages: default_max_queued_messages(),
            max_queued_kbytes: default_max_queued_kbytes(),
        }
    }
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
    /// Where the dedup key comes from: `{ header = "X-Event-Id" }` or `{ json_pointer = "/id" }`. When unset,
    /// or when the request lacks it, the SHA-256 of the body is used.
    pub dedup_key: Option<KeySelectorConfig>,
    /// Where the ordering key comes from (same forms). When unset or absent, the dedup key is used: no order
    /// between webhooks, but each lands in one partition.
    pub ordering_key: Option<KeySelectorConfig>,
}

/// `[sources.NAME.verify]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "scheme", rename_all = "snake_case", deny_unknown_fields)]
pub enum VerifyConfig {
    /// An HMAC-SHA256 of the raw body, in a header.
    Hmac {
        /// The header carrying the signature (`X-Signature`).
        header: String,
        /// `hex` (default) or `base64`.
        #[serde(default)]
        encoding: Encoding,
        /// A prefix before the signature in the header value, such as `sha256=`. Default none.
        #[serde(default)]
        prefix: String,
        /// The live secrets; a request is accepted when any of them matches, so a secret can be rotated by
        /// adding the new one, switching the sender, then removing the old one.
        secrets: Vec<SecretConfig>,
    },
    /// No verification. Requires `allow_unverified = true` on the source.
    None,
}

/// One secret: exactly one of `value`, `env` or `file`.
#[derive(Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SecretConfig {
    /// The secret itself (avoid in files that are committed).
    pub value: Option<String>,
    /// The name of an environment variable holding the secret.
    pub env: Option<String>,
    /// A file holding the secret (a trailing newline is ignored), such as a mounted Kubernetes secret.
    pub file: Option<PathBuf>,
    /// A name for this secret in metrics (`secret="2026-q4"`); default its position in the list.
    pub id: Option<String>,
}

impl std::fmt::Debug for SecretConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretConfig")
            .field("value", &self.value.as_ref().map(|_| "<redacted>"))
            .field("env", &self.env)
            .field("file", &self.file)
            .field("id", &self.id)
            .finish()
    }
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
    /// Where to listen.
    pub listen: SocketAddr,
    /// Header and body read deadline, each.
    pub read_timeout: Duration,
    /// Drain deadline on shutdown.
    pub drain_timeout: Duration,
    /// The cluster.
    pub kafka: KafkaConfig,
    /// The raw topic.
    pub raw_topic: String,
    /// Partitions to create the raw topic with.
    pub raw_partitions: i32,
    /// Producer behaviour.
    pub producer: ProducerConfig,
    /// The sources by name.
    pub sources: BTreeMap<String, Arc<Source>>,
}

impl Settings {
    /// The bounded wait for Kafka's acknowledgement.
    pub fn ack_timeout(&self) -> Duration {
        Duration::from_millis(self.producer.ack_timeout_ms)
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
    /// Dedup key selector.
    pub dedup_key: Option<KeySelector>,
    /// Ordering key selector.
    pub ordering_key: Option<KeySelector>,
}

impl Config {
    /// Loads `path` with environment overrides.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        hookline_runtime::config::load(path, std::env::vars())
    }

    /// Checks every field and resolves secrets. The first problem found is returned, naming its field.
    pub fn validate(self) -> Result<Settings, ConfigError> {
        let listen = socket_addr("server.listen", &self.server.listen)?;
        in_range(
            "server.max_body_bytes",
            self.server.max_body_bytes,
            1,
            64 * 1024 * 1024,
        )?;
        in_range(
            "server.read_timeout_ms",
            self.server.read_timeout_ms,
            100,
            600_000,
        )?;
        in_range(
            "server.drain_timeout_ms",
            self.server.drain_timeout_ms,
            0,
            600_000,
        )?;
        self.kafka.validate(RESERVED_PRODUCER_PROPERTIES)?;
        if self.topics.raw.is_empty() {
            return Err(ConfigError::field("topics.raw", "must not be empty"));
        }
        in_range(
            "topics.raw_partitions",
            self.topics.raw_partitions,
            1,
            10_000,
        )?;
        let p = &self.producer;
        in_range("producer.ack_timeout_ms", p.ack_timeout_ms, 100, 120_000)?;
        in_range(
            "producer.delivery_timeout_ms",
            p.delivery_timeout_ms,
            p.ack_timeout_ms,
            3_600_000,
        )?;
        in_range("producer.retry_after_secs", p.retry_after_secs, 1, 3600)?;
        in_range("producer.linger_ms", p.linger_ms, 0, 1000)?;
        in_range(
            "producer.max_queued_messages",
            p.max_queued_messages,
            1,
            10_000_000,
        )?;
        in_range(
            "producer.max_queued_kbytes",
            p.max_queued_kbytes,
            1,
            2_097_151,
        )?;
        if !["none", "gzip", "snappy", "lz4", "zstd"].contains(&p.compression.as_str()) {
            return Err(ConfigError::field(
                "producer.compression",
                format!(
                    "`{}` is not one of none, gzip, snappy, lz4, zstd",
                    p.compression
                ),
            ));
        }
        if self.sources.is_empty() {
            return Err(ConfigError::field(
                "sources",
                "at least one source must be configured",
            ));
        }
        let mut sources = BTreeMap::new();
        for (name, source) in self.sources {
            let validated = source.validate(&name, self.server.max_body_bytes)?;
            sources.insert(name, Arc::new(validated));
        }
        Ok(Settings {
            listen,
            read_timeout: Duration::from_millis(self.server.read_timeout_ms),
            drain_timeout: Duration::from_millis(self.server.drain_timeout_ms),
            kafka: self.kafka,
            raw_topic: self.topics.raw,
            raw_partitions: self.topics.raw_partitions,
            producer: self.producer,
            sources,
        })
    }
}

impl SourceConfig {
    fn validate(self, name: &str, default_max_body: u64) -> Result<Source, ConfigError> {
        let field = |f: &str| format!("sources.{name}.{f}");
        if !hookline_schemas::is_valid_source_name(name) {
            return Err(ConfigError::field(
                format!("sources.{name}"),
                "a source name is 1-64 characters of a-z, 0-9, `_` and `-`, starting with a letter or digit",
            ));
        }
        let max_body = self.max_body_bytes.unwrap_or(default_max_body);
        in_range(&field("max_body_bytes"), max_body, 1, 64 * 1024 * 1024)?;
        let verifier = match self.verify {
            VerifyConfig::None => {
                if !self.allow_unverified {
                    return Err(ConfigError::field(
                        field("allow_unverified"),
                        "scheme \"none\" accepts requests without any signature; set allow_unverified = true to confirm",
                    ));
                }
                Verifier::Unverified
            }
            VerifyConfig::Hmac {
                header,
                encoding,
                prefix,
                secrets,
            } => {
                if self.allow_unverified {
                    return Err(ConfigError::field(
                        field("allow_unverified"),
                        "only applies to scheme \"none\"; remove it from a verified source",
                    ));
                }
                let header = header_name(&field("verify.header"), &header)?;
                let secrets = resolve_secrets(&field("verify.secrets"), secrets)?;
                Verifier::Hmac(HmacScheme::new(header, encoding, prefix, secrets))
            }
        };
        Ok(Source {
            name: name.to_owned(),
            verifier,
            max_body_bytes: usize::try_from(max_body).unwrap_or(usize::MAX),
            dedup_key: self
                .dedup_key
                .map(|k| k.validate(&field("dedup_key")))
                .transpose()?,
            ordering_key: self
                .ordering_key
                .map(|k| k.validate(&field("ordering_key")))
                .transpose()?,
        })
    }
}

impl KeySelectorConfig {
    fn validate(self, field: &str) -> Result<KeySelector, ConfigError> {
        match self {
            KeySelectorConfig::Header(h) => Ok(KeySelector::Header(header_name(
                &format!("{field}.header"),
                &h,
            )?)),
            KeySelectorConfig::JsonPointer(p) => {
                if !p.starts_with('/') {
                    return Err(ConfigError::field(
                        format!("{field}.json_pointer"),
                        format!("`{p}` is not a JSON pointer (RFC 6901): it must start with `/`, as in \"/id\""),
                    ));
                }
                Ok(KeySelector::JsonPointer(p))
            }
        }
    }
}

fn header_name(field: &str, value: &str) -> Result<HeaderName, ConfigError> {
    HeaderName::from_bytes(value.as_bytes()).map_err(|_| {
        ConfigError::field(field, format!("`{value}` is not a valid HTTP header name"))
    })
}

fn resolve_secrets(field: &str, secrets: Vec<SecretConfig>) -> Result<Vec<Secret>, ConfigError> {
    if secrets.is_empty() {
        return Err(ConfigError::field(field, "at least one secret is required"));
    }
    secrets
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            let field = format!("{field}[{i}]");
            let id = s.id.clone().unwrap_or_else(|| i.to_string());
            let bytes = match (s.value, s.env, s.file) {
                (Some(v), None, None) => v.into_bytes(),
                (None, Some(var), None) => std::env::var(&var)
                    .map_err(|_| {
                        ConfigError::field(
                            format!("{field}.env"),
                            format!("environment variable {var} is not set"),
                        )
                    })?
                    .into_bytes(),
                (None, None, Some(path)) => {
                    let mut bytes = std::fs::read(&path).map_err(|e| {
                        ConfigError::field(
                            format!("{field}.file"),
                            format!("cannot read {}: {e}", path.display()),
                        )
                    })?;
                    while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                        bytes.pop();
                    }
                    bytes
                }
                _ => {
                    return Err(ConfigError::field(
                        field,
                        "set exactly one of `value`, `env` or `file`",
                    ))
                }
            };
            if bytes.is_empty() {
                return Err(ConfigError::field(field, "the secret is empty"));
            }
            Ok(Secret::new(id, bytes))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Settings, ConfigError> {
        hookline_runtime::config::from_str_with_env::<Config>(text, Vec::new())?.validate()
    }

    const GOOD: &str = r#"
        [sources.shop.verify]
        scheme = "hmac"
        header = "X-Signature"
        prefix = "sha256="
        secrets = [{ value = "s3cret" }]
    "#;

    #[test]
    fn the_example_config_in_deploy_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/ingress.example.toml");
        let text = std::fs::read_to_string(path).unwrap();
        let settings = hookline_runtime::config::from_str_with_env::<Config>(&text, Vec::new())
            .unwrap()
            .validate()
            .unwrap();
        assert!(settings.sources.contains_key("demo"));
    }

    #[test]
    fn defaults_are_documented_values() {
        let s = parse(GOOD).unwrap();
        assert_eq!(s.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(s.raw_topic, "hookline.raw");
        assert_eq!(s.raw_partitions, 12);
        assert_eq!(s.sources["shop"].max_body_bytes, 1024 * 1024);
        assert_eq!(s.ack_timeout(), Duration::from_secs(5));
    }

    fn err(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn an_unknown_field_is_named() {
        let e = err(&format!("{GOOD}\n[server]\nlisten_addr = '0.0.0.0:1'\n"));
        assert!(e.contains("listen_addr"), "{e}");
        let e = err(&GOOD.replace("prefix", "prefx"));
        assert!(e.contains("prefx"), "{e}");
    }

    #[test]
    fn a_missing_secret_is_named() {
        let e = err(&GOOD.replace("secrets = [{ value = \"s3cret\" }]", ""));
        assert!(
            e.contains("sources.shop.verify") && e.contains("secrets"),
            "{e}"
        );
        let e = err(&GOOD.replace("secrets = [{ value = \"s3cret\" }]", "secrets = []"));
        assert!(
            e.contains("sources.shop.verify.secrets") && e.contains("at least one"),
            "{e}"
        );
        let e = err(&GOOD.replace(
            "{ value = \"s3cret\" }",
            "{ env = \"HOOKLINE_TEST_SURELY_UNSET_VAR\" }",
        ));
        assert!(
            e.contains("sources.shop.verify.secrets[0].env") && e.contains("not set"),
            "{e}"
        );
        let e = err(&GOOD.replace(
            "{ value = \"s3cret\" }",
            "{ file = \"/nonexistent/secret\" }",
        ));
        assert!(e.contains("sources.shop.verify.secrets[0].file"), "{e}");
        let e = err(&GOOD.replace("{ value = \"s3cret\" }", "{ value = \"a\", env = \"B\" }"));
        assert!(e.contains("exactly one"), "{e}");
    }

    #[test]
    fn secrets_from_a_file_drop_the_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "from-file\n").unwrap();
        let text = GOOD.replace(
            "{ value = \"s3cret\" }",
            &format!("{{ file = {:?}, id = \"k8s\" }}", path),
        );
        let s = parse(&text).unwrap();
        let Verifier::Hmac(h) = &s.sources["shop"].verifier else {
            panic!("not hmac")
        };
        assert_eq!(h.secrets()[0].id(), "k8s");
        assert_eq!(h.secrets()[0].expose(), b"from-file");
    }

    #[test]
    fn an_unusable_listen_address_is_named() {
        let e = err(&format!("{GOOD}\n[server]\nlisten = 'localhost'\n"));
        assert!(e.contains("server.listen"), "{e}");
    }

    #[test]
    fn unverified_sources_need_an_explicit_flag() {
        let e = err("[sources.open.verify]\nscheme = 'none'\n");
        assert!(e.contains("sources.open.allow_unverified"), "{e}");
        parse("[sources.open]\nallow_unverified = true\n[sources.open.verify]\nscheme = 'none'\n")
            .unwrap();
        let e = err(&GOOD.replace(
            "[sources.shop.verify]",
            "[sources.shop]\nallow_unverified = true\n[sources.shop.verify]",
        ));
        assert!(e.contains("sources.shop.allow_unverified"), "{e}");
    }

    #[test]
    fn bad_names_pointers_and_numbers_are_named() {
        let e = err(&GOOD.replace("sources.shop", "sources.Shop"));
        assert!(e.contains("sources.Shop"), "{e}");
        let e = err(&format!(
            "{GOOD}\n[sources.shop.dedup_key]\njson_pointer = 'id'\n"
        ));
        assert!(e.contains("sources.shop.dedup_key.json_pointer"), "{e}");
        let e = err(&format!("{GOOD}\n[topics]\nraw_partitions = 0\n"));
        assert!(e.contains("topics.raw_partitions"), "{e}");
        let e = err(&format!("{GOOD}\n[producer]\ncompression = 'brotli'\n"));
        assert!(e.contains("producer.compression"), "{e}");
        let e = err(&GOOD.replace("X-Signature", "X Signature"));
        assert!(e.contains("sources.shop.verify.header"), "{e}");
        let e = err(&format!(
            "{GOOD}\n[kafka.client]\n'enable.idempotence' = 'false'\n"
        ));
        assert!(e.contains("enable.idempotence"), "{e}");
    }

    #[test]
    fn no_sources_is_an_error() {
        let e = hookline_runtime::config::from_str_with_env::<Config>("", Vec::new())
            .unwrap_err()
            .to_string();
        assert!(e.contains("sources"), "{e}");
    }
}

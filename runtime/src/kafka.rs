//! The `[kafka]` config section both binaries share, librdkafka client settings, and topic creation.
//!
//! Topics are created at startup when missing, with the configured partition count. An existing topic is
//! never altered; a caller that needs a specific partition count (the processor's partition-aligned output
//! topics) checks [`TopicInfo::partitions`] and refuses to start on a mismatch.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use serde::Deserialize;

use crate::config::ConfigError;

/// The `[kafka]` section.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap brokers, comma-separated `host:port`. Default `127.0.0.1:9092`. The `KAFKA_BROKERS`
    /// environment variable overrides it.
    pub brokers: String,
    /// librdkafka properties passed through as they are: security (`security.protocol`, `sasl.*`, `ssl.*`),
    /// `client.id`, tuning. Properties hookline sets itself are refused at startup.
    pub client: BTreeMap<String, String>,
    /// Replication factor of the topics hookline creates; `-1` lets the broker decide. Default `-1`.
    pub replication_factor: i32,
    /// Deadline of each admin request (metadata, topic creation), in ms. Default 10000.
    pub admin_timeout_ms: u64,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: "127.0.0.1:9092".to_owned(),
            client: BTreeMap::new(),
            replication_factor: -1,
            admin_timeout_ms: 10_000,
        }
    }
}

/// Hides the values of client properties that can hold credentials (`sasl.password`, `ssl.key.password`,
/// `sasl.oauthbearer.client.secret`, ...), so that a logged or printed config never shows them.
impl std::fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const SENSITIVE: [&str; 6] = ["password", "secret", "key", "token", "jaas", "credential"];
        let client: BTreeMap<&str, &str> = self
            .client
            .iter()
            .map(|(k, v)| {
                let hidden = SENSITIVE.iter().any(|s| k.to_ascii_lowercase().contains(s));
                (k.as_str(), if hidden { "<redacted>" } else { v.as_str() })
            })
            .collect();
        f.debug_struct("KafkaConfig")
            .field("brokers", &self.brokers)
            .field("client", &client)
            .field("replication_factor", &self.replication_factor)
            .field("admin_timeout_ms", &self.admin_timeout_ms)
            .finish()
    }
}

impl KafkaConfig {
    /// Checks the section. `reserved` lists the librdkafka properties the calling binary sets itself.
    pub fn validate(&self, reserved: &[&str]) -> Result<(), ConfigError> {
        if self.brokers.split(',').any(|b| b.trim().is_empty()) {
            return Err(ConfigError::field("kafka.brokers", "must list at least one host:port, comma-separated"));
        }
        for key in self.client.keys() {
            if key == "bootstrap.servers" || key == "metadata.broker.list" {
                return Err(ConfigError::field(format!("kafka.client.\"{key}\""), "set `kafka.brokers` instead"));
            }
            if reserved.contains(&key.as_str()) {
                return Err(ConfigError::field(
                    format!("kafka.client.\"{key}\""),
                    "hookline sets this property itself; it cannot be overridden",
                ));
            }
        }
        if self.replication_factor == 0 || self.replication_factor < -1 {
            return Err(ConfigError::field("kafka.replication_factor", "must be -1 (broker default) or at least 1"));
        }
        crate::config::in_range("kafka.admin_timeout_ms", self.admin_timeout_ms, 100, 600_000)?;
        Ok(())
    }

    /// A librdkafka config with the brokers and the pass-through properties.
    pub fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers);
        for (k, v) in &self.client {
            c.set(k, v);
        }
        c
    }

    /// The admin request deadline.
    pub fn admin_timeout(&self) -> Duration {
        Duration::from_millis(self.admin_timeout_ms)
    }
}

/// A topic hookline needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    /// Name.
    pub name: String,
    /// Partitions to create it with.
    pub partitions: i32,
    /// Topic-level configs to create it with.
    pub config: Vec<(String, String)>,
}

/// A topic as it exists on the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    /// Name.
    pub name: String,
    /// Its partition count.
    pub partitions: i32,
    /// Whether this call created it.
    pub created: bool,
}

/// A topic could not be looked up or created.
#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    /// The cluster did not answer.
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    /// The broker refused to create the topic.
    #[error("cannot create topic `{topic}`: {code}")]
    Create {
        /// The topic.
        topic: String,
        /// The broker's error code.
        code: RDKafkaErrorCode,
    },
    /// The blocking metadata task panicked or was cancelled.
    #[error("metadata lookup task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// The topic did not appear in metadata after creation.
    #[error("topic `{0}` is not in the cluster's metadata after creation")]
    Missing(String),
}

/// The partition counts of the named topics that exist (absent topics are left out).
pub async fn describe_topics(kafka: &KafkaConfig, names: &[&str]) -> Result<BTreeMap<String, i32>, TopicError> {
    let admin = admin_client(kafka)?;
    partition_counts(admin, kafka.admin_timeout(), names).await
}

/// Creates the topics that are missing and returns every topic's partition count.
pub async fn ensure_topics(kafka: &KafkaConfig, specs: &[TopicSpec]) -> Result<Vec<TopicInfo>, TopicError> {
    let admin = admin_client(kafka)?;
    let timeout = kafka.admin_timeout();
    let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
    let existing = partition_counts(admin.clone(), timeout, &names).await?;
    let missing: Vec<&TopicSpec> = specs.iter().filter(|s| !existing.contains_key(&s.name)).collect();
    let mut created = Vec::new();
    if !missing.is_empty() {
        let new_topics: Vec<NewTopic<'_>> = missing
            .iter()
            .map(|s| {
                let mut t = NewTopic::new(&s.name, s.partitions, TopicReplication::Fixed(kafka.replication_factor));
                for (k, v) in &s.config {
                    t = t.set(k, v);
                }
                t
            })
            .collect();
        let opts = AdminOptions::new().operation_timeout(Some(timeout)).request_timeout(Some(timeout));
        for result in admin.create_topics(new_topics.iter(), &opts).await? {
            match result {
                Ok(name) => {
                    tracing::info!(topic = %name, "created topic");
                    created.push(name);
                }
                // Another process created it between our metadata read and our request.
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => return Err(TopicError::Create { topic, code }),
            }
        }
    }
    // Read back what exists, waiting briefly for creations to show in metadata.
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let now = partition_counts(admin.clone(), timeout, &names).await?;
        if let Some(absent) = specs.iter().find(|s| !now.contains_key(&s.name)) {
            if tokio::time::Instant::now() >= deadline {
                return Err(TopicError::Missing(absent.name.clone()));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        return Ok(specs
            .iter()
            .map(|s| TopicInfo {
                name: s.name.clone(),
                partitions: now.get(&s.name).copied().unwrap_or_default(),
                created: created.contains(&s.name),
            })
            .collect());
    }
}

type Admin = std::sync::Arc<AdminClient<DefaultClientContext>>;

fn admin_client(kafka: &KafkaConfig) -> Result<Admin, KafkaError> {
    let mut config = kafka.client_config();
    // Metadata lookups must not create topics as a side effect (a broker with `auto.create.topics.enable`,
    // Kafka's default, would, with its default partition count).
    config.set("allow.auto.create.topics", "false");
    Ok(std::sync::Arc::new(config.create()?))
}

async fn partition_counts(
    admin: Admin,
    timeout: Duration,
    names: &[&str],
) -> Result<BTreeMap<String, i32>, TopicError> {
    let wanted: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
    let counts = tokio::task::spawn_blocking(move || -> Result<BTreeMap<String, i32>, KafkaError> {
        let metadata = admin.inner().fetch_metadata(None, timeout)?;
        Ok(metadata
            .topics()
            .iter()
            .filter(|t| wanted.iter().any(|w| w == t.name()) && t.error().is_none() && !t.partitions().is_empty())
            .map(|t| (t.name().to_owned(), i32::try_from(t.partitions().len()).unwrap_or(i32::MAX)))
            .collect())
    })
    .await??;
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_and_bootstrap_properties_are_refused_by_name() {
        let mut k = KafkaConfig::default();
        k.client.insert("enable.idempotence".into(), "false".into());
        let err = k.validate(&["enable.idempotence"]).unwrap_err().to_string();
        assert!(err.contains("kafka.client.\"enable.idempotence\""), "{err}");
        let mut k = KafkaConfig::default();
        k.client.insert("bootstrap.servers".into(), "x:1".into());
        assert!(k.validate(&[]).unwrap_err().to_string().contains("kafka.brokers"));
        let k = KafkaConfig { brokers: "a:1,".into(), ..KafkaConfig::default() };
        assert!(k.validate(&[]).unwrap_err().to_string().contains("kafka.brokers"));
        let k = KafkaConfig { replication_factor: 0, ..KafkaConfig::default() };
        assert!(k.validate(&[]).is_err());
        KafkaConfig::default().validate(&[]).unwrap();
    }

    #[test]
    fn debug_output_hides_credentials_of_client_properties() {
        let mut k = KafkaConfig::default();
        k.client.insert("sasl.password".into(), "hunter2-sasl".into());
        k.client.insert("ssl.key.password".into(), "hunter2-key".into());
        k.client.insert("sasl.oauthbearer.client.secret".into(), "hunter2-oauth".into());
        k.client.insert("security.protocol".into(), "SASL_SSL".into());
        let shown = format!("{k:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("sasl.password") && shown.contains("SASL_SSL"), "{shown}");
    }
}

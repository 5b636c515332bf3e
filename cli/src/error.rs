//! Why a `hookline` command failed: one type for every subcommand. [`crate::run`] prints it once on stderr
//! (`hookline: …`) and exits 1. A command that already printed its own account of what failed (the summary of
//! a `send`) returns [`Error::Reported`].

use std::path::PathBuf;

use hookline_config::topics::Misaligned;
use hookline_runtime::config::ConfigError;
use hookline_runtime::kafka::TopicError;
use hookline_schemas::raw::HeaderError;
use rdkafka::error::KafkaError;

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A config file its binary would refuse to start with.
    #[error("{}: invalid: {source}", path.display())]
    InvalidConfig {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the field.
        #[source]
        source: ConfigError,
    },
    /// The processor's defaults with the environment's `HOOKLINE_*` overrides (no `--config` given).
    #[error("the default processor config: invalid: {0}")]
    DefaultConfig(#[source] ConfigError),
    /// A valid config of the other binary.
    #[error("{}: not a {expected} config", path.display())]
    WrongConfig {
        /// The file.
        path: PathBuf,
        /// The binary whose config was needed.
        expected: &'static str,
    },
    /// `--source` names no source of the config.
    #[error("{} has no source `{name}` (configured: {})", path.display(), configured.join(", "))]
    UnknownSource {
        /// The config file.
        path: PathBuf,
        /// The name asked for.
        name: String,
        /// The sources it has.
        configured: Vec<String>,
    },
    /// An argument the command cannot use (its form was checked by the parser).
    #[error("{0}")]
    Usage(String),
    /// Kafka cannot be reached, or refused a request.
    #[error("{context}: {source}")]
    Kafka {
        /// What was being done.
        context: String,
        /// Kafka's error.
        #[source]
        source: KafkaError,
    },
    /// The topics cannot be created or checked.
    #[error("cannot create the topics at {brokers}: {source}")]
    Topics {
        /// The cluster.
        brokers: String,
        /// Why.
        #[source]
        source: TopicError,
    },
    /// The topics exist with partition counts the processor cannot work with.
    #[error(transparent)]
    Misaligned(#[from] Misaligned),
    /// A topic that does not exist.
    #[error("topic {topic} does not exist at {brokers}")]
    NoTopic {
        /// The topic.
        topic: String,
        /// The cluster.
        brokers: String,
    },
    /// Topics a config names that do not exist.
    #[error("{} not exist at {brokers} (`hookline topics create` creates them)", missing(topics))]
    MissingTopics {
        /// The topics.
        topics: Vec<String>,
        /// The cluster.
        brokers: String,
    },
    /// Reading stopped short of the partitions' ends.
    #[error("no record from {topic} for {secs}s before the end of partitions {partitions} (read {read} records)")]
    Stalled {
        /// The topic.
        topic: String,
        /// How long nothing came.
        secs: u64,
        /// The partitions not read to their end.
        partitions: String,
        /// Records read before.
        read: usize,
    },
    /// Records asked for by position that are not there.
    #[error("not on {topic}{}: {}", if *filtered { " (or not matching the filters)" } else { "" }, positions.join(", "))]
    NotFound {
        /// The topic.
        topic: String,
        /// Whether filters also selected.
        filtered: bool,
        /// The positions (`PARTITION:OFFSET`).
        positions: Vec<String>,
    },
    /// A record without the hookline metadata needed to send it back.
    #[error("no hookline metadata to send back ({0})")]
    NoMetadata(#[from] HeaderError),
    /// Selected records that could not be sent back (each was listed).
    #[error("{0} selected records could not be redriven")]
    NotRedriven(usize),
    /// The async runtime cannot start.
    #[error("cannot start the runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// Writing the output failed (a closed pipe, say).
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
    /// What failed was printed already.
    #[error("the operation failed")]
    Reported,
}

/// `topic a does` or `topics a, b do`.
fn missing(topics: &[String]) -> String {
    match topics {
        [one] => format!("topic {one} does"),
        many => format!("topics {} do", many.join(", ")),
    }
}

impl Error {
    /// A Kafka error while doing `context`.
    pub fn kafka(context: impl Into<String>, source: KafkaError) -> Error {
        Error::Kafka { context: context.into(), source }
    }
}

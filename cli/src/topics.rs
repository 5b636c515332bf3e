//! `hookline topics create|describe`: the topics a config names, created the way its binary creates them and
//! described with their watermarks and the processor group's lag.
//!
//! `create` runs the binaries' own creation code ([`hookline_config::topics::ingress_topics`] with
//! [`hookline_runtime::kafka::ensure_topics`], or [`hookline_config::topics::ensure_processor_topics`]), so partition
//! counts and the state changelog's settings are the ones the processes would use; existing topics are left
//! as they are and reported as existing. `describe` only reads: it never joins or commits for the group.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use hookline_runtime::kafka::{ensure_topics, KafkaConfig, TopicInfo};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use crate::config::{load, Kind, Loaded};
use crate::reprocess::default_processor_settings;
use crate::Error;

/// The processor's consumer group when the config names none.
pub const DEFAULT_GROUP: &str = "hookline-processor";

/// `hookline topics …`.
#[derive(Debug, clap::Subcommand)]
pub enum TopicsCommand {
    /// Create the topics the config names that do not exist yet, with its partition counts: for an ingress
    /// config the raw topic (and the quarantine topic); for a processor config the raw topic, every events
    /// topic, the DLQ and the state changelog. Existing topics are reported as existing and left alone.
    Create(TopicsArgs),
    /// Print each of the config's topics with its partitions' low and high watermarks, and for the raw topic
    /// the processor group's committed offset and lag per partition, with totals. Exits 1 if a topic is
    /// missing.
    Describe(DescribeArgs),
}

/// Which config, and which cluster.
#[derive(Debug, clap::Args)]
pub struct TopicsArgs {
    /// An ingress or processor config file (`HOOKLINE_*` overrides apply). Default: the processor's defaults
    /// (hookline.raw, hookline.events, hookline.dlq, hookline.state; 12 partitions).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Which binary's config it is. Default: detected, as for `config check`.
    #[arg(long, value_enum)]
    pub kind: Option<Kind>,
    /// Bootstrap brokers. Default: `KAFKA_BROKERS`, else the config's `kafka.brokers`.
    #[arg(long, env = "KAFKA_BROKERS")]
    pub brokers: Option<String>,
}

/// `hookline topics describe`.
#[derive(Debug, clap::Args)]
pub struct DescribeArgs {
    #[command(flatten)]
    pub topics: TopicsArgs,
    /// The consumer group whose lag is shown on the raw topic. Default: the processor config's
    /// `consumer.group_id`, else hookline-processor.
    #[arg(long)]
    pub group: Option<String>,
}

/// `hookline topics …`.
pub fn run(cmd: &TopicsCommand) -> Result<(), Error> {
    let args = match cmd {
        TopicsCommand::Create(a) => a,
        TopicsCommand::Describe(a) => &a.topics,
    };
    let mut loaded = load_config(args)?;
    if let Some(brokers) = &args.brokers {
        kafka_mut(&mut loaded).brokers.clone_from(brokers);
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(Error::Runtime)?;
    match cmd {
        TopicsCommand::Create(_) => runtime.block_on(create(&loaded)),
        TopicsCommand::Describe(d) => {
            let group = d.group.clone().unwrap_or_else(|| match &loaded {
                Loaded::Processor(s) => s.consumer.group_id.clone(),
                Loaded::Ingress(_) => DEFAULT_GROUP.to_owned(),
            });
            let loaded = &loaded;
            runtime.block_on(async move {
                let group = group.clone();
                let kafka = kafka(loaded).clone();
                let (raw, names) = (raw_topic(loaded), topic_names(loaded));
                tokio::task::spawn_blocking(move || describe(&kafka, &raw, &names, &group))
                    .await
                    .unwrap_or_else(|e| Err(Error::Runtime(std::io::Error::other(e))))
            })
        }
    }
}

fn load_config(args: &TopicsArgs) -> Result<Loaded, Error> {
    match &args.config {
        Some(path) => load(path, args.kind).map_err(|source| Error::InvalidConfig { path: path.clone(), source }),
        None => default_processor_settings().map(Loaded::Processor),
    }
}

fn kafka(loaded: &Loaded) -> &KafkaConfig {
    match loaded {
        Loaded::Ingress(s) => &s.kafka,
        Loaded::Processor(s) => &s.kafka,
    }
}

fn kafka_mut(loaded: &mut Loaded) -> &mut KafkaConfig {
    match loaded {
        Loaded::Ingress(s) => &mut s.kafka,
        Loaded::Processor(s) => &mut s.kafka,
    }
}

fn raw_topic(loaded: &Loaded) -> String {
    match loaded {
        Loaded::Ingress(s) => s.raw_topic.clone(),
        Loaded::Processor(s) => s.topics.raw.clone(),
    }
}

/// The topics a config names, in the order its binary creates them.
pub fn topic_names(loaded: &Loaded) -> Vec<String> {
    match loaded {
        Loaded::Ingress(s) => hookline_config::topics::ingress_topics(s).into_iter().map(|t| t.name).collect(),
        Loaded::Processor(s) => {
            let mut names = vec![s.topics.raw.clone()];
            names.extend(s.output_topics());
            names.push(s.topics.state.clone());
            names
        }
    }
}

async fn create(loaded: &Loaded) -> Result<(), Error> {
    let brokers = &kafka(loaded).brokers;
    let created = match loaded {
        Loaded::Ingress(s) => ensure_topics(&s.kafka, &hookline_config::topics::ingress_topics(s)).await,
        Loaded::Processor(s) => hookline_config::topics::ensure_processor_topics(s).await,
    };
    let topics = created.map_err(|source| Error::Topics { brokers: brokers.clone(), source })?;
    print!("{}", format_created(&topics));
    if let Loaded::Processor(s) = loaded {
        hookline_config::topics::check_partition_alignment(s, &topics)?;
    }
    Ok(())
}

/// One line a topic: `NAME: created (N partitions)` or `NAME: exists (N partitions)`.
pub fn format_created(topics: &[TopicInfo]) -> String {
    let mut out = String::new();
    for t in topics {
        let what = if t.created { "created" } else { "exists" };
        let _ = writeln!(out, "{}: {what} ({} partitions)", t.name, t.partitions);
    }
    out
}

/// One partition as `describe` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionState {
    /// Its id.
    pub partition: i32,
    /// Offset of its oldest record.
    pub low: i64,
    /// Offset its next record will get.
    pub high: i64,
    /// The group's committed offset, if it has one (raw topic only).
    pub committed: Option<i64>,
}

impl PartitionState {
    /// Records the group has not processed yet: from its committed offset, else from the oldest record (the
    /// processor starts at the earliest offset).
    pub fn lag(&self) -> i64 {
        (self.high - self.committed.unwrap_or(self.low).max(self.low)).max(0)
    }
}

/// One topic as `describe` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicState {
    /// Its name.
    pub name: String,
    /// The group whose offsets are shown (the raw topic only).
    pub group: Option<String>,
    /// Its partitions; `None` when the topic does not exist.
    pub partitions: Option<Vec<PartitionState>>,
}

fn describe(kafka: &KafkaConfig, raw: &str, names: &[String], group: &str) -> Result<(), Error> {
    let consumer: BaseConsumer = kafka
        .client_config()
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("allow.auto.create.topics", "false")
        .create()
        .map_err(|e| Error::kafka("cannot create a Kafka client", e))?;
    let timeout = kafka.admin_timeout();
    let unreachable = |e| Error::kafka(format!("cannot reach Kafka at {}", kafka.brokers), e);
    let metadata = consumer.fetch_metadata(None, timeout).map_err(unreachable)?;
    let mut states = Vec::new();
    for name in names {
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .find(|t| t.name() == name && t.error().is_none())
            .map(|t| t.partitions().iter().map(|p| p.id()).collect())
            .unwrap_or_default();
        if partitions.is_empty() {
            states.push(TopicState { name: name.clone(), group: None, partitions: None });
            continue;
        }
        let mut committed = BTreeMap::new();
        let is_raw = name == raw;
        if is_raw {
            let mut tpl = TopicPartitionList::new();
            for p in &partitions {
                tpl.add_partition(name, *p);
            }
            let offsets = consumer.committed_offsets(tpl, timeout).map_err(unreachable)?;
            for e in offsets.elements() {
                if let Offset::Offset(o) = e.offset() {
                    committed.insert(e.partition(), o);
                }
            }
        }
        let mut out = Vec::with_capacity(partitions.len());
        for partition in partitions {
            let (low, high) = consumer.fetch_watermarks(name, partition, timeout).map_err(unreachable)?;
            out.push(PartitionState { partition, low, high, committed: committed.get(&partition).copied() });
        }
        out.sort_by_key(|p| p.partition);
        states.push(TopicState { name: name.clone(), group: is_raw.then(|| group.to_owned()), partitions: Some(out) });
    }
    print!("{}", format_described(&states));
    let missing: Vec<String> = states.iter().filter(|s| s.partitions.is_none()).map(|s| s.name.clone()).collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Error::MissingTopics { topics: missing, brokers: kafka.brokers.clone() })
    }
}

/// The `describe` table: per topic its partitions' watermarks, and for the raw topic the group's committed
/// offsets and lag, each with a total line.
pub fn format_described(topics: &[TopicState]) -> String {
    let mut out = String::new();
    for t in topics {
        let Some(partitions) = &t.partitions else {
            let _ = writeln!(out, "{}: does not exist", t.name);
            continue;
        };
        let n = partitions.len();
        let total_low: i64 = partitions.iter().map(|p| p.low).sum();
        let total_high: i64 = partitions.iter().map(|p| p.high).sum();
        match &t.group {
            None => {
                let _ = writeln!(out, "{}: {n} partitions", t.name);
                let _ = writeln!(out, "  {:>9} {:>12} {:>12}", "partition", "low", "high");
                for p in partitions {
                    let _ = writeln!(out, "  {:>9} {:>12} {:>12}", p.partition, p.low, p.high);
                }
                let _ = writeln!(out, "  {:>9} {:>12} {:>12}", "total", total_low, total_high);
            }
            Some(group) => {
                let _ = writeln!(out, "{}: {n} partitions, group {group}", t.name);
                let head = ("partition", "low", "high", "committed", "lag");
                let _ = writeln!(out, "  {:>9} {:>12} {:>12} {:>12} {:>12}", head.0, head.1, head.2, head.3, head.4);
                for p in partitions {
                    let committed = p.committed.map_or("-".to_owned(), |c| c.to_string());
                    let _ = writeln!(
                        out,
                        "  {:>9} {:>12} {:>12} {committed:>12} {:>12}",
                        p.partition,
                        p.low,
                        p.high,
                        p.lag()
                    );
                }
                let lag: i64 = partitions.iter().map(PartitionState::lag).sum();
                let _ = writeln!(out, "  {:>9} {:>12} {:>12} {:>12} {:>12}", "total", total_low, total_high, "", lag);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    use crate::{Cli, Command};

    #[test]
    fn create_and_describe_take_a_config_brokers_and_a_group() {
        let cli =
            Cli::try_parse_from(["hookline", "topics", "create", "--config", "p.toml", "--brokers", "b:9092"]).unwrap();
        let Command::Topics(TopicsCommand::Create(a)) = cli.command else { panic!("not topics create") };
        assert_eq!(a.config, Some(PathBuf::from("p.toml")));
        assert_eq!(a.brokers.as_deref(), Some("b:9092"));
        let cli = Cli::try_parse_from([
            "hookline", "topics", "describe", "-c", "i.toml", "--kind", "ingress", "--group", "g",
        ])
        .unwrap();
        let Command::Topics(TopicsCommand::Describe(d)) = cli.command else { panic!("not topics describe") };
        assert_eq!(d.topics.kind, Some(Kind::Ingress));
        assert_eq!(d.group.as_deref(), Some("g"));
        assert!(Cli::try_parse_from(["hookline", "topics"]).is_err(), "create or describe is required");
    }

    #[test]
    fn a_processor_config_names_raw_outputs_dlq_and_state_in_creation_order() {
        let s = hookline_runtime::config::from_str_with_env::<hookline_config::processor::Config>(
            "[[routes]]\ntopic = 'billing'\n",
            Vec::new(),
        )
        .and_then(hookline_config::processor::Config::validate)
        .unwrap();
        assert_eq!(
            topic_names(&Loaded::Processor(s)),
            ["hookline.raw", "hookline.events", "billing", "hookline.dlq", "hookline.state"]
        );
    }

    #[test]
    fn created_topics_are_told_from_existing_ones() {
        let t = |name: &str, created| TopicInfo { name: name.into(), partitions: 3, created };
        assert_eq!(
            format_created(&[t("a.raw", true), t("a.events", false)]),
            "a.raw: created (3 partitions)\na.events: exists (3 partitions)\n"
        );
    }

    #[test]
    fn lag_counts_from_the_committed_offset_else_from_the_oldest_record() {
        let p = |low, high, committed| PartitionState { partition: 0, low, high, committed };
        assert_eq!(p(0, 10, Some(4)).lag(), 6);
        assert_eq!(p(0, 10, None).lag(), 10);
        assert_eq!(p(5, 10, None).lag(), 5, "records deleted by retention are not lag");
        assert_eq!(p(5, 10, Some(2)).lag(), 5);
        assert_eq!(p(0, 10, Some(10)).lag(), 0);
    }

    #[test]
    fn describe_shows_watermarks_lag_totals_and_missing_topics() {
        let raw = TopicState {
            name: "a.raw".into(),
            group: Some("a-group".into()),
            partitions: Some(vec![
                PartitionState { partition: 0, low: 0, high: 3, committed: Some(1) },
                PartitionState { partition: 1, low: 0, high: 2, committed: None },
            ]),
        };
        let events = TopicState {
            name: "a.events".into(),
            group: None,
            partitions: Some(vec![PartitionState { partition: 0, low: 0, high: 7, committed: None }]),
        };
        let dlq = TopicState { name: "a.dlq".into(), group: None, partitions: None };
        assert_eq!(
            format_described(&[raw, events, dlq]),
            "\
a.raw: 2 partitions, group a-group
  partition          low         high    committed          lag
          0            0            3            1            2
          1            0            2            -            2
      total            0            5                         4
a.events: 1 partitions
  partition          low         high
          0            0            7
      total            0            7
a.dlq: does not exist
"
        );
    }
}

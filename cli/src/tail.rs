//! `hookline tail TOPIC`: prints a topic's records as JSON lines, in the shape of
//! `schemas/json/*-record.v1.schema.json`. It reads with a throwaway group and never commits offsets, so it
//! does not disturb the processor's group.

use std::collections::HashSet;
use std::io::Write;
use std::time::{Duration, Instant};

use clap::ValueEnum;
use hookline_schemas::view::{RecordView, ValueAs};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use crate::Error;

/// `hookline tail`.
#[derive(Debug, clap::Args)]
pub struct TailArgs {
    /// The topic (for example hookline.events).
    pub topic: String,
    /// Bootstrap brokers.
    #[arg(long, env = "KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    pub brokers: String,
    /// Where to start in each partition.
    #[arg(long, value_enum, default_value_t = From::Beginning)]
    pub from: From,
    /// Keep waiting for new records (until Ctrl-C) instead of stopping at the end.
    #[arg(long, short)]
    pub follow: bool,
    /// Stop after this many records.
    #[arg(long, short = 'n')]
    pub count: Option<usize>,
    /// How to print values: `json` if they parse as JSON (else base64), or always `base64`.
    #[arg(long, value_enum, default_value_t = ValueMode::Json)]
    pub value: ValueMode,
}

/// `--from`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum From {
    /// The oldest record.
    Beginning,
    /// After the newest record.
    End,
}

/// `--value`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ValueMode {
    Json,
    Base64,
}

/// Prints the records of `args.topic` to stdout, one JSON object a line.
pub fn tail(args: &TailArgs) -> Result<(), Error> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &args.brokers)
        .set("group.id", format!("hookline-tail-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed")
        .set("fetch.wait.max.ms", "100")
        .set("log_level", "3")
        .create()
        .map_err(|e| Error::kafka("cannot create a Kafka client", e))?;
    let metadata = consumer
        .fetch_metadata(Some(&args.topic), Duration::from_secs(10))
        .map_err(|e| Error::kafka(format!("cannot reach Kafka at {}", args.brokers), e))?;
    let partitions = metadata.topics().first().map(|t| t.partitions().len()).unwrap_or(0);
    if partitions == 0 {
        return Err(Error::NoTopic { topic: args.topic.clone(), brokers: args.brokers.clone() });
    }
    let mut tpl = TopicPartitionList::new();
    let start = match args.from {
        From::Beginning => Offset::Beginning,
        From::End => Offset::End,
    };
    let reading = |e| Error::kafka(format!("reading {}", args.topic), e);
    for p in 0..partitions {
        let p = i32::try_from(p).unwrap_or(i32::MAX);
        tpl.add_partition_offset(&args.topic, p, start).map_err(reading)?;
    }
    consumer.assign(&tpl).map_err(reading)?;
    let value_as = match args.value {
        ValueMode::Json => ValueAs::Json,
        ValueMode::Base64 => ValueAs::Base64,
    };
    let mut at_end = HashSet::new();
    let mut printed = 0usize;
    let stdout = std::io::stdout();
    let mut last_activity = Instant::now();
    loop {
        if args.count.is_some_and(|n| printed >= n) {
            return Ok(());
        }
        if !args.follow && at_end.len() == partitions {
            return Ok(());
        }
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                last_activity = Instant::now();
                let headers: Vec<(&str, Option<&[u8]>)> =
                    m.headers().map(|h| h.iter().map(|h| (h.key, h.value)).collect()).unwrap_or_default();
                let view = RecordView::new(
                    m.topic(),
                    m.partition(),
                    m.offset(),
                    m.timestamp().to_millis(),
                    m.key(),
                    headers,
                    m.payload(),
                    value_as,
                );
                let mut out = stdout.lock();
                serde_json::to_writer(&mut out, &view).map_err(std::io::Error::from)?;
                out.write_all(b"\n")?;
                out.flush()?;
                printed += 1;
                at_end.remove(&m.partition());
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
            }
            Some(Err(KafkaError::MessageConsumption(RDKafkaErrorCode::UnknownTopicOrPartition))) => {
                return Err(Error::NoTopic { topic: args.topic.clone(), brokers: args.brokers.clone() });
            }
            Some(Err(e)) => eprintln!("hookline: {e}"),
            None => {
                // An empty partition may never report EOF on some brokers; stop after a quiet spell.
                if !args.follow && last_activity.elapsed() > Duration::from_secs(5) {
                    return Ok(());
                }
            }
        }
    }
}

//! The topics a config implies: what each binary creates when missing, and what it needs of existing ones.

use hookline_runtime::kafka::{ensure_topics, TopicError, TopicInfo, TopicSpec};

use crate::{ingress, processor};

/// The topics the ingress creates when missing: the raw topic, then the quarantine topic if configured.
pub fn ingress_topics(s: &ingress::Settings) -> Vec<TopicSpec> {
    let mut specs = vec![TopicSpec { name: s.raw_topic.clone(), partitions: s.raw_partitions, config: Vec::new() }];
    if let Some(q) = &s.quarantine {
        specs.push(TopicSpec { name: q.topic.clone(), partitions: q.partitions, config: Vec::new() });
    }
    specs
}

/// The state changelog's topic-level settings: compacted, so it keeps the latest record of every (source,
/// dedup key), and drops a key some time after its tombstone (Kafka's `delete.retention.ms`, a day by default).
fn state_topic_config() -> Vec<(String, String)> {
    vec![("cleanup.policy".into(), "compact".into())]
}

/// Creates the processor's missing topics in one attempt: the raw topic with its configured partitions, then
/// the output topics and the state changelog with the raw topic's actual partition count. Returns the raw
/// topic first, then the others in the order of [`processor::Settings::output_topics`], then the changelog.
/// Existing topics are left as they are; [`check_partition_alignment`] says whether the processor can use
/// them.
pub async fn ensure_processor_topics(settings: &processor::Settings) -> Result<Vec<TopicInfo>, TopicError> {
    let t = &settings.topics;
    let mut all = ensure_topics(
        &settings.kafka,
        &[TopicSpec { name: t.raw.clone(), partitions: t.raw_partitions, config: Vec::new() }],
    )
    .await?;
    let partitions = all.first().map(|r| r.partitions).unwrap_or(t.raw_partitions);
    let mut specs: Vec<TopicSpec> =
        settings.output_topics().into_iter().map(|name| TopicSpec { name, partitions, config: Vec::new() }).collect();
    specs.push(TopicSpec { name: t.state.clone(), partitions, config: state_topic_config() });
    all.extend(ensure_topics(&settings.kafka, &specs).await?);
    Ok(all)
}

/// An output topic or the state changelog whose partition count differs from the raw topic's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "topic `{topic}` has {partitions} partitions but the raw topic `{raw}` has {raw_partitions}: outputs and the \
     state changelog are partition-aligned with the raw topic, so recreate `{topic}` with {raw_partitions} \
     partitions or configure another topic in its place"
)]
pub struct Misaligned {
    /// The misaligned topic.
    pub topic: String,
    /// Its partitions.
    pub partitions: i32,
    /// The raw topic.
    pub raw: String,
    /// The raw topic's partitions.
    pub raw_partitions: i32,
}

/// The raw topic's partition count, if every output topic and the changelog have the same (they are
/// partition-aligned with the raw topic); else which topic is not. `topics` is what
/// [`ensure_processor_topics`] returned.
pub fn check_partition_alignment(settings: &processor::Settings, topics: &[TopicInfo]) -> Result<i32, Misaligned> {
    let partitions = topics.first().map(|r| r.partitions).unwrap_or(settings.topics.raw_partitions);
    match topics.iter().skip(1).find(|o| o.partitions != partitions) {
        Some(bad) => Err(Misaligned {
            topic: bad.name.clone(),
            partitions: bad.partitions,
            raw: settings.topics.raw.clone(),
            raw_partitions: partitions,
        }),
        None => Ok(partitions),
    }
}

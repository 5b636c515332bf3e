//! DLQ records: a raw record that cannot become events, kept intact, with what failed and where it came from.
//!
//! The value and key are the raw record's, byte for byte; its headers are kept in their order, followed by
//! `hookline-dlq`, the JSON [`DlqMeta`]: source, dedup key, raw topic/partition/offset, error class, stage,
//! reason, attempts and first-failure time. When the raw record names no usable source or dedup key, they
//! are `_unknown` and `raw:{topic}:{partition}:{offset}`, so every DLQ record can be traced and deduplicated.

use std::sync::Arc;

use hookline_schemas::dlq::DlqMeta;
use hookline_schemas::header;
use rdkafka::message::{Headers, Message, OwnedMessage};

use crate::output::OutputRecord;
use crate::pipeline::Failure;
use crate::process::Identity;

/// Builds the DLQ record of `raw`, for the DLQ topic `topic`.
pub fn record(
    topic: &Arc<str>,
    raw: &OwnedMessage,
    identity: &Identity,
    failure: &Failure,
    attempts: u32,
    now_ms: i64,
) -> OutputRecord {
    let mut headers: Vec<(String, Vec<u8>)> = raw
        .headers()
        .map(|h| h.iter().map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec())).collect())
        .unwrap_or_default();
    let meta = DlqMeta {
        v: header::VERSION,
        source: identity.source.clone(),
        dedup_key: identity.dedup_key.clone(),
        raw_topic: raw.topic().to_owned(),
        raw_partition: raw.partition(),
        raw_offset: raw.offset(),
        class: failure.class,
        stage: failure.stage,
        reason: failure.reason.clone(),
        attempts: attempts.max(1),
        first_failure_ms: now_ms,
    };
    let (name, value) = meta.to_header();
    headers.push((name.to_owned(), value));
    OutputRecord {
        topic: topic.clone(),
        key: raw.key().map(<[u8]>::to_vec),
        value: raw.payload().map(<[u8]>::to_vec).unwrap_or_default(),
        headers,
    }
}

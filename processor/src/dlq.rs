//! DLQ records: a raw record that cannot become an event, kept intact, with what failed and where it came from.
//!
//! The value and key are the raw record's, byte for byte; its headers are kept in their order, followed by
//! hookline's (raw topic/partition/offset, error class, stage, reason, attempts, first-failure time). When the
//! raw record lacks a usable source or dedup key, hookline adds them (`_unknown`, and
//! `raw:{topic}:{partition}:{offset}`), so every DLQ record can be traced and deduplicated.

use hookline_schemas::dlq::DlqMeta;
use hookline_schemas::header;
use rdkafka::message::{Headers, Message, OwnedMessage};

use crate::normalize::Failure;
use crate::output::{OutputRecord, Target};
use crate::process::Identity;

/// Builds the DLQ record of `raw`.
pub fn record(raw: &OwnedMessage, identity: &Identity, failure: &Failure, now_ms: i64) -> OutputRecord {
    let mut headers: Vec<(String, Vec<u8>)> = raw
        .headers()
        .map(|h| h.iter().map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec())).collect())
        .unwrap_or_default();
    if identity.synthetic {
        headers.push((header::SOURCE.to_owned(), identity.source.as_bytes().to_vec()));
        headers.push((header::DEDUP_KEY.to_owned(), identity.dedup_key.as_bytes().to_vec()));
    }
    headers.push((header::RAW_TOPIC.to_owned(), raw.topic().as_bytes().to_vec()));
    headers.push((header::RAW_PARTITION.to_owned(), raw.partition().to_string().into_bytes()));
    headers.push((header::RAW_OFFSET.to_owned(), raw.offset().to_string().into_bytes()));
    let meta = DlqMeta {
        class: failure.class,
        stage: failure.stage,
        reason: failure.reason.clone(),
        attempts: 1,
        first_failure_ms: now_ms,
    };
    headers.extend(meta.to_headers().into_iter().map(|(k, v)| (k.to_owned(), v)));
    OutputRecord {
        target: Target::Dlq,
        key: raw.key().map(<[u8]>::to_vec),
        value: raw.payload().map(<[u8]>::to_vec).unwrap_or_default(),
        headers,
    }
}

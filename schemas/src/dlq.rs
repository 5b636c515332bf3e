//! The DLQ topic's record: a raw record the processor could not turn into an event, with the reason.
//!
//! - key and value: the raw record's key and value, byte for byte.
//! - headers: the raw record's headers, intact, then [`header::DLQ`], the JSON [`DlqMeta`]: where the record
//!   came from and what failed.
//!
//! Fix the cause, then redrive the value and headers to the raw topic. JSON Schema of the record's JSON view:
//! `schemas/json/dlq-record.v1.schema.json`.

use serde::{Deserialize, Serialize};

use crate::header;
use crate::raw::{parse_header, HeaderError};

/// Longest reason kept; longer ones are cut at a character boundary.
pub const MAX_REASON_BYTES: usize = 1024;

/// What kind of failure sent a record to the DLQ. A small fixed set, usable as a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// The raw record's hookline metadata is missing or invalid (not written by a hookline ingress).
    InvalidEnvelope,
    /// The body is not valid JSON.
    InvalidJson,
    /// The body is not valid `application/x-www-form-urlencoded`.
    InvalidForm,
    /// A field the pipeline needs (the event type, or a configured subject or time) is absent.
    MissingField,
    /// A field the pipeline needs is present but unusable (not a non-empty string, not a time).
    InvalidField,
    /// The event does not satisfy the JSON Schema of its topic.
    SchemaViolation,
    /// A VRL transform or condition failed on this event (VRL's message: a runtime error, an `assert!`, an
    /// event it left unusable, or its time budget spent).
    TransformError,
    /// Kafka refused the output for good (too large, invalid); retrying cannot help.
    OutputRejected,
    /// The processing code panicked on this record (a hookline bug; the record is kept for a redrive).
    Panic,
    /// The processor died while processing this record, again and again; it was set aside.
    CrashLoop,
}

impl ErrorClass {
    /// Every class, in a fixed order (for metric label sets).
    pub const ALL: [ErrorClass; 10] = [
        ErrorClass::InvalidEnvelope,
        ErrorClass::InvalidJson,
        ErrorClass::InvalidForm,
        ErrorClass::MissingField,
        ErrorClass::InvalidField,
        ErrorClass::SchemaViolation,
        ErrorClass::TransformError,
        ErrorClass::OutputRejected,
        ErrorClass::Panic,
        ErrorClass::CrashLoop,
    ];

    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::InvalidEnvelope => "invalid_envelope",
            ErrorClass::InvalidJson => "invalid_json",
            ErrorClass::InvalidForm => "invalid_form",
            ErrorClass::MissingField => "missing_field",
            ErrorClass::InvalidField => "invalid_field",
            ErrorClass::SchemaViolation => "schema_violation",
            ErrorClass::TransformError => "transform_error",
            ErrorClass::OutputRejected => "output_rejected",
            ErrorClass::Panic => "panic",
            ErrorClass::CrashLoop => "crash_loop",
        }
    }
}

/// The pipeline stage that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Reading the raw record's metadata.
    Envelope,
    /// Parsing the body.
    Parse,
    /// Mapping the parsed body to a CloudEvent.
    Normalize,
    /// Running the source's or a route's VRL transform, or a VRL condition.
    Transform,
    /// Checking the event against its topic's JSON Schema.
    Validate,
    /// Publishing the event.
    Publish,
    /// The record as a whole (a panic or a crash loop).
    Process,
}

impl Stage {
    /// Every stage, in pipeline order.
    pub const ALL: [Stage; 7] = [
        Stage::Envelope,
        Stage::Parse,
        Stage::Normalize,
        Stage::Transform,
        Stage::Validate,
        Stage::Publish,
        Stage::Process,
    ];

    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Envelope => "envelope",
            Stage::Parse => "parse",
            Stage::Normalize => "normalize",
            Stage::Transform => "transform",
            Stage::Validate => "validate",
            Stage::Publish => "publish",
            Stage::Process => "process",
        }
    }
}

/// Why a record is in the DLQ, and where it came from: the JSON value of its [`header::DLQ`] header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DlqMeta {
    /// Contract version, [`header::VERSION`].
    pub v: u32,
    /// The source (`_unknown` when the raw record named none).
    pub source: String,
    /// The dedup key (`raw:{topic}:{partition}:{offset}` when the raw record had none).
    pub dedup_key: String,
    /// The raw topic.
    pub raw_topic: String,
    /// The raw partition.
    pub raw_partition: i32,
    /// The raw offset.
    pub raw_offset: i64,
    /// The kind of failure.
    pub class: ErrorClass,
    /// Where it failed.
    pub stage: Stage,
    /// A human-readable reason (never the body), at most [`MAX_REASON_BYTES`].
    pub reason: String,
    /// How many times the record was attempted.
    pub attempts: u32,
    /// When the record first failed, ms since the Unix epoch.
    pub first_failure_ms: i64,
}

impl DlqMeta {
    /// The [`header::DLQ`] header; the reason is cut to [`MAX_REASON_BYTES`].
    pub fn to_header(&self) -> (&'static str, Vec<u8>) {
        let mut bounded = self.clone();
        bounded.reason = truncate(&self.reason, MAX_REASON_BYTES).to_owned();
        (header::DLQ, serde_json::to_vec(&bounded).unwrap_or_default())
    }

    /// Reads it from a DLQ record's headers.
    pub fn from_headers<'a, I>(headers: I) -> Result<Self, HeaderError>
    where
        I: IntoIterator<Item = (&'a str, Option<&'a [u8]>)>,
    {
        parse_header(headers, header::DLQ)
    }
}

/// Cuts `s` to at most `max` bytes at a character boundary.
pub fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_round_trip_and_reason_is_bounded() {
        let meta = DlqMeta {
            v: header::VERSION,
            source: "shop".into(),
            dedup_key: "evt_1".into(),
            raw_topic: "hookline.raw".into(),
            raw_partition: 2,
            raw_offset: 9,
            class: ErrorClass::InvalidJson,
            stage: Stage::Parse,
            reason: "é".repeat(MAX_REASON_BYTES),
            attempts: 1,
            first_failure_ms: 1_700_000_000_000,
        };
        let (name, value) = meta.to_header();
        let back = DlqMeta::from_headers([(name, Some(value.as_slice()))]).unwrap();
        assert_eq!(back.class, ErrorClass::InvalidJson);
        assert_eq!(back.reason.len(), MAX_REASON_BYTES);
        assert_eq!(back.raw_offset, 9);
        let json: serde_json::Value = serde_json::from_slice(&value).unwrap();
        assert_eq!((json["class"].as_str(), json["stage"].as_str()), (Some("invalid_json"), Some("parse")));
    }

    #[test]
    fn truncation_keeps_characters_whole() {
        assert_eq!(truncate("abc", 2), "ab");
        assert_eq!(truncate("aé", 2), "a");
    }
}

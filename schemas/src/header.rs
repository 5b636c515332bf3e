//! Kafka header names used on hookline's topics.
//!
//! Header names are lowercase ASCII. Values are UTF-8 text, except the `http-*` headers of a raw record,
//! which carry the request's header bytes as received.

/// Contract version of the record's headers. Raw records carry [`RECORD_VERSION`].
pub const VERSION: &str = "hookline-version";
/// The version this crate writes and reads.
pub const RECORD_VERSION: &str = "1";

/// Name of the configured source the webhook arrived on (`POST /webhooks/{source}`).
pub const SOURCE: &str = "hookline-source";
/// When the ingress finished reading the request body, in milliseconds since the Unix epoch.
pub const RECEIVED_AT_MS: &str = "hookline-received-at-ms";
/// The key deduplication uses: the same webhook delivered twice carries the same dedup key.
pub const DEDUP_KEY: &str = "hookline-dedup-key";
/// Where the dedup key came from, one of [`crate::raw::KeyOrigin`]'s names.
pub const DEDUP_KEY_ORIGIN: &str = "hookline-dedup-key-origin";
/// The request's `Content-Type`, when it had one.
pub const CONTENT_TYPE: &str = "hookline-content-type";
/// A unique id the ingress gave the accepted request; returned to the sender in the 202 body.
pub const REQUEST_ID: &str = "hookline-request-id";
/// Prefix of the request's own headers, kept on the raw record without credentials
/// (`X-GitHub-Event: push` becomes `http-x-github-event: push`).
pub const HTTP_PREFIX: &str = "http-";

/// On an output record (event or DLQ): the raw topic the input record was read from.
pub const RAW_TOPIC: &str = "hookline-raw-topic";
/// On an output record: the raw partition the input record was read from.
pub const RAW_PARTITION: &str = "hookline-raw-partition";
/// On an output record: the raw offset of the input record.
pub const RAW_OFFSET: &str = "hookline-raw-offset";

/// On an event record: `application/cloudevents+json; charset=UTF-8` (CloudEvents Kafka binding, structured mode).
pub const CONTENT_TYPE_CE: &str = "content-type";
/// The value of [`CONTENT_TYPE_CE`] on every event record.
pub const CLOUDEVENTS_JSON: &str = "application/cloudevents+json; charset=UTF-8";

/// On a DLQ record: the error class, one of [`crate::dlq::ErrorClass`]'s names.
pub const DLQ_CLASS: &str = "hookline-dlq-class";
/// On a DLQ record: the pipeline stage that failed, one of [`crate::dlq::Stage`]'s names.
pub const DLQ_STAGE: &str = "hookline-dlq-stage";
/// On a DLQ record: a human-readable reason, at most [`crate::dlq::MAX_REASON_BYTES`] bytes.
pub const DLQ_REASON: &str = "hookline-dlq-reason";
/// On a DLQ record: how many times the record was attempted.
pub const DLQ_ATTEMPTS: &str = "hookline-dlq-attempts";
/// On a DLQ record: when the record first failed, in milliseconds since the Unix epoch.
pub const DLQ_FIRST_FAILURE_MS: &str = "hookline-dlq-first-failure-ms";

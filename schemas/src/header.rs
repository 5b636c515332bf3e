//! Kafka header names used on hookline's topics.
//!
//! hookline writes one header per concern, each a JSON object, rather than one header per field: one
//! versioned object is one thing to parse and to validate against its schema, and every header costs bytes
//! and parsing per record in every consumer.
//!
//! | topic  | headers                                                                 |
//! |--------|-------------------------------------------------------------------------|
//! | raw    | [`META`] ([`crate::raw::RawMeta`])                                      |
//! | events | [`CONTENT_TYPE`] ([`CLOUDEVENTS_JSON`]); the origin is in the event's `hookline*` attributes |
//! | DLQ    | the raw record's headers, intact, then [`DLQ`] ([`crate::dlq::DlqMeta`]) |

/// On a raw record: the webhook's metadata, a JSON [`crate::raw::RawMeta`].
pub const META: &str = "hookline-meta";
/// On a DLQ record: where it came from and why it failed, a JSON [`crate::dlq::DlqMeta`].
pub const DLQ: &str = "hookline-dlq";
/// On an event record: the CloudEvents Kafka binding's structured-mode content type.
pub const CONTENT_TYPE: &str = "content-type";
/// The value of [`CONTENT_TYPE`] on every event record.
pub const CLOUDEVENTS_JSON: &str = "application/cloudevents+json; charset=UTF-8";

/// The contract version this crate writes in every JSON header (`"v": 1`).
pub const VERSION: u32 = 1;

/// The value of the last header named `name`, if any.
pub fn last<'a>(headers: impl IntoIterator<Item = (&'a str, Option<&'a [u8]>)>, name: &str) -> Option<&'a [u8]> {
    headers.into_iter().filter(|(k, _)| *k == name).last().map(|(_, v)| v.unwrap_or_default())
}

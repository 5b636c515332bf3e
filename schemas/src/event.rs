//! The events topic's record: one CloudEvents 1.0 event per accepted, non-duplicate webhook.
//!
//! - key: the ordering key of the raw record, so one entity's events stay in one partition, in order.
//! - value: the event in CloudEvents structured-mode JSON ([`CloudEvent`]); `data` is the webhook's JSON
//!   body, embedded verbatim (number precision and key order are kept).
//! - headers: `content-type` ([`crate::header::CLOUDEVENTS_JSON`]), as the CloudEvents Kafka binding's
//!   structured mode asks. Where the event came from is in its `hookline*` attributes
//!   ([`crate::output::Origin::of_event`]).
//!
//! JSON Schema: `schemas/json/event.v1.schema.json`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// The CloudEvents version hookline writes.
pub const SPEC_VERSION: &str = "1.0";

/// A normalized event, CloudEvents 1.0 in structured-mode JSON.
///
/// The `hookline*` members are CloudEvents extension attributes that tie the event back to its raw record.
/// CloudEvents allows only flat attributes with lowercase alphanumeric names (no nested object), hence one
/// `hookline`-prefixed attribute per field rather than a `hookline` object.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CloudEvent {
    /// Always [`SPEC_VERSION`].
    pub specversion: String,
    /// The webhook's dedup key (for an event split out of a batch, `{dedup key}/{index}`): the same webhook
    /// delivered twice has the same id.
    pub id: String,
    /// `/webhooks/{source}`.
    pub source: String,
    /// The event type: the provider's own (`invoice.paid`, `pull_request.opened`, `orders/create`…), from the
    /// source's preset or configured field, else `{source}.webhook`.
    #[serde(rename = "type")]
    pub ty: String,
    /// When the event happened, RFC 3339. Without a provider time, when hookline received it.
    pub time: String,
    /// The entity the event is about (the provider's object id where the preset knows it, else the ordering
    /// key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Always `application/json`.
    pub datacontenttype: String,
    /// The webhook body, verbatim (a form body as an object of its fields; a batch element verbatim).
    pub data: Box<RawValue>,
    /// Extension: the configured source name.
    pub hooklinesource: String,
    /// Extension: when the ingress received the webhook, RFC 3339 with milliseconds.
    pub hooklinereceivedat: String,
    /// Extension: the raw partition the webhook was stored in.
    pub hooklinepartition: i32,
    /// Extension: the raw offset, as a decimal string (CloudEvents integers are 32-bit).
    pub hooklineoffset: String,
    /// Extension: the webhook's dedup key.
    pub hooklinededupkey: String,
    /// Extension: for an event split out of a batch webhook (HubSpot), its position in the batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hooklineindex: Option<u32>,
    /// Extension attributes a source's or route's VRL transform set: lowercase alphanumeric names, string,
    /// boolean or integer values, written after the others.
    #[serde(flatten, skip_serializing_if = "BTreeMap::is_empty")]
    pub extensions: BTreeMap<String, serde_json::Value>,
}

/// RFC 3339 in UTC with exactly three fractional digits, the form of every time hookline writes.
const RFC3339_MILLIS: &[time::format_description::BorrowedFormatItem<'static>] =
    time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");

/// Formats milliseconds since the Unix epoch as RFC 3339 UTC with millisecond precision
/// (`2026-11-27T09:00:00.123Z`).
pub fn rfc3339_millis(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(RFC3339_MILLIS).ok())
        // Out of `time`'s range (year ±9999): the epoch rather than failing a whole record.
        .unwrap_or_else(|| "1970-01-01T00:00:00.000Z".to_owned())
}

/// Parses an RFC 3339 time (any offset, any fractional digits, surrounding white space ignored) to
/// milliseconds since the Unix epoch.
pub fn parse_rfc3339_millis(s: &str) -> Option<i64> {
    let t = time::OffsetDateTime::parse(s.trim(), &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos().div_euclid(1_000_000)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formatting() {
        assert_eq!(rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_millis(1_764_234_000_123), "2025-11-27T09:00:00.123Z");
        assert_eq!(rfc3339_millis(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(rfc3339_millis(i64::MAX), "1970-01-01T00:00:00.000Z", "out of range");
        for ms in [0, -1, 1_764_234_000_123, 253_402_300_799_999] {
            assert_eq!(parse_rfc3339_millis(&rfc3339_millis(ms)), Some(ms), "{ms}");
        }
        assert_eq!(parse_rfc3339_millis(" 2024-04-12T10:18:49.621022Z"), Some(1_712_917_129_621));
        assert_eq!(parse_rfc3339_millis("2026-11-27T10:00:00+01:00"), Some(1_795_770_000_000));
        assert_eq!(parse_rfc3339_millis("yesterday"), None);
    }

    #[test]
    fn data_is_embedded_verbatim() {
        let body = r#"{"amount":12345678901234567890,"b":1,"a":2}"#;
        let event = CloudEvent {
            specversion: SPEC_VERSION.into(),
            id: "evt_1".into(),
            source: "/webhooks/shop".into(),
            ty: "shop.webhook".into(),
            time: rfc3339_millis(0),
            subject: Some("order_1".into()),
            datacontenttype: "application/json".into(),
            data: RawValue::from_string(body.into()).unwrap(),
            hooklinesource: "shop".into(),
            hooklinereceivedat: rfc3339_millis(0),
            hooklinepartition: 3,
            hooklineoffset: "42".into(),
            hooklinededupkey: "evt_1".into(),
            hooklineindex: None,
            extensions: BTreeMap::new(),
        };
        let json = serde_json::to_string(&event).unwrap();
        assert!(json.contains(body), "{json}");
        assert!(json.contains(r#""type":"shop.webhook""#), "{json}");
        let back: CloudEvent = serde_json::from_str(&json).unwrap();
        assert_eq!(back.data.get(), body);
    }
}

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
}

/// Formats milliseconds since the Unix epoch as RFC 3339 UTC with millisecond precision
/// (`2026-11-27T09:00:00.123Z`).
pub fn rfc3339_millis(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    match time::OffsetDateTime::from_unix_timestamp(secs) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{millis:03}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        // Out of `time`'s range (year ±9999): clamp to the epoch rather than fail a whole record.
        Err(_) => "1970-01-01T00:00:00.000Z".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formatting() {
        assert_eq!(rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_millis(1_764_234_000_123), "2025-11-27T09:00:00.123Z");
        assert_eq!(rfc3339_millis(-1), "1969-12-31T23:59:59.999Z");
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
        };
        let json = serde_json::to_string(&event).unwrap();
        assert!(json.contains(body), "{json}");
        assert!(json.contains(r#""type":"shop.webhook""#), "{json}");
        let back: CloudEvent = serde_json::from_str(&json).unwrap();
        assert_eq!(back.data.get(), body);
    }
}

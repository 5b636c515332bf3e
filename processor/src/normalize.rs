//! Mapping a raw record to a CloudEvent. Pure: no I/O, so every rule is unit-tested here.
//!
//! - `id` = dedup key; `source` = `/webhooks/{source}`; `subject` = ordering key (the record key);
//! - `type` = the configured JSON pointer or header, else `{source}.webhook`;
//! - `time` = when the ingress received the webhook;
//! - `data` = the body, verbatim (it must be JSON).
//!
//! A body that is not JSON, or a configured type that is absent or not a non-empty string, is a permanent
//! failure: retrying cannot fix it, so the record goes to the DLQ with the reason.

use hookline_schemas::dlq::{ErrorClass, Stage};
use hookline_schemas::event::{rfc3339_millis, CloudEvent, SPEC_VERSION};
use hookline_schemas::raw::RawMeta;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::config::{FieldSelector, SourceConfig};

/// Why a record cannot become an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The kind of failure.
    pub class: ErrorClass,
    /// The stage that failed.
    pub stage: Stage,
    /// A human-readable reason; never contains the body.
    pub reason: String,
}

impl Failure {
    fn new(class: ErrorClass, stage: Stage, reason: impl Into<String>) -> Self {
        Failure { class, stage, reason: reason.into() }
    }
}

/// Where the record was read from.
#[derive(Debug, Clone, Copy)]
pub struct Position {
    /// Raw partition.
    pub partition: i32,
    /// Raw offset.
    pub offset: i64,
}

/// Maps one raw record (already known to have valid hookline headers) to an event.
pub fn to_event(
    meta: &RawMeta,
    key: Option<&[u8]>,
    body: &[u8],
    at: Position,
    rules: Option<&SourceConfig>,
) -> Result<CloudEvent, Failure> {
    let data: Box<RawValue> = serde_json::from_slice(body)
        .map_err(|e| Failure::new(ErrorClass::InvalidJson, Stage::Parse, format!("body is not JSON: {e}")))?;
    let ty = match rules.and_then(|r| r.event_type.as_ref()) {
        None => format!("{}.webhook", meta.source),
        Some(selector) => event_type(selector, meta, &data)?,
    };
    let received = rfc3339_millis(meta.received_at_ms);
    Ok(CloudEvent {
        specversion: SPEC_VERSION.to_owned(),
        id: meta.dedup_key.clone(),
        source: format!("/webhooks/{}", meta.source),
        ty,
        time: received.clone(),
        subject: key.and_then(|k| std::str::from_utf8(k).ok()).filter(|k| !k.is_empty()).map(str::to_owned),
        datacontenttype: "application/json".to_owned(),
        data,
        hooklinesource: meta.source.clone(),
        hooklinereceivedat: received,
        hooklinepartition: at.partition,
        hooklineoffset: at.offset.to_string(),
    })
}

fn event_type(selector: &FieldSelector, meta: &RawMeta, data: &RawValue) -> Result<String, Failure> {
    let normalize = Stage::Normalize;
    match selector {
        FieldSelector::Header(name) => {
            let value = meta.http_header(name).ok_or_else(|| {
                Failure::new(ErrorClass::MissingType, normalize, format!("event type header `{name}` is absent"))
            })?;
            match value.trim() {
                t if !t.is_empty() => Ok(t.to_owned()),
                _ => Err(Failure::new(
                    ErrorClass::InvalidType,
                    normalize,
                    format!("event type header `{name}` is empty"),
                )),
            }
        }
        FieldSelector::JsonPointer(pointer) => {
            let parsed: Value = serde_json::from_str(data.get())
                .map_err(|e| Failure::new(ErrorClass::InvalidJson, Stage::Parse, format!("body is not JSON: {e}")))?;
            match parsed.pointer(pointer) {
                None => Err(Failure::new(
                    ErrorClass::MissingType,
                    normalize,
                    format!("event type field `{pointer}` is absent from the body"),
                )),
                Some(Value::String(t)) if !t.trim().is_empty() => Ok(t.trim().to_owned()),
                Some(other) => Err(Failure::new(
                    ErrorClass::InvalidType,
                    normalize,
                    format!("event type field `{pointer}` is {}, not a non-empty string", kind(other)),
                )),
            }
        }
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "an empty string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hookline_schemas::json_schema::Contract;
    use hookline_schemas::raw::KeyOrigin;

    fn meta() -> RawMeta {
        RawMeta {
            v: 1,
            source: "shop".into(),
            received_at_ms: 1_764_234_000_123,
            dedup_key: "evt_1".into(),
            dedup_key_origin: KeyOrigin::JsonPointer,
            content_type: Some("application/json".into()),
            request_id: "r".into(),
            headers: vec![("x-shop-topic".into(), "orders/create".into())],
        }
    }

    const AT: Position = Position { partition: 2, offset: 40 };

    #[test]
    fn default_mapping_satisfies_the_published_schema() {
        let body = br#"{"id":"evt_1","type":"order.created","n":12345678901234567890}"#;
        let e = to_event(&meta(), Some(b"order_9"), body, AT, None).unwrap();
        assert_eq!(e.id, "evt_1");
        assert_eq!(e.source, "/webhooks/shop");
        assert_eq!(e.ty, "shop.webhook");
        assert_eq!(e.subject.as_deref(), Some("order_9"));
        assert_eq!(e.time, "2025-11-27T09:00:00.123Z");
        assert_eq!(e.data.get().as_bytes(), body, "data is verbatim, big numbers included");
        assert_eq!((e.hooklinepartition, e.hooklineoffset.as_str()), (2, "40"));
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(Contract::Event.validator().unwrap().violations(&json), Vec::<String>::new());
    }

    #[test]
    fn type_from_pointer_or_header() {
        let rules = SourceConfig { event_type: Some(FieldSelector::JsonPointer("/type".into())) };
        let e = to_event(&meta(), None, br#"{"type":"order.paid"}"#, AT, Some(&rules)).unwrap();
        assert_eq!(e.ty, "order.paid");
        assert_eq!(e.subject, None);
        let rules = SourceConfig { event_type: Some(FieldSelector::Header("X-Shop-Topic".into())) };
        let e = to_event(&meta(), None, b"{}", AT, Some(&rules)).unwrap();
        assert_eq!(e.ty, "orders/create");
    }

    #[test]
    fn unmappable_records_fail_with_a_class_and_a_reason_without_the_body() {
        let f = to_event(&meta(), None, b"secret-ish <html>", AT, None).unwrap_err();
        assert_eq!((f.class, f.stage), (ErrorClass::InvalidJson, Stage::Parse));
        assert!(!f.reason.contains("secret-ish"), "{}", f.reason);
        let f = to_event(&meta(), None, b"", AT, None).unwrap_err();
        assert_eq!(f.class, ErrorClass::InvalidJson);

        let rules = SourceConfig { event_type: Some(FieldSelector::JsonPointer("/type".into())) };
        let f = to_event(&meta(), None, br#"{"kind":"x"}"#, AT, Some(&rules)).unwrap_err();
        assert_eq!((f.class, f.stage), (ErrorClass::MissingType, Stage::Normalize));
        assert!(f.reason.contains("/type"), "{}", f.reason);
        let f = to_event(&meta(), None, br#"{"type":7}"#, AT, Some(&rules)).unwrap_err();
        assert_eq!(f.class, ErrorClass::InvalidType);
        let f = to_event(&meta(), None, br#"{"type":"  "}"#, AT, Some(&rules)).unwrap_err();
        assert_eq!(f.class, ErrorClass::InvalidType);

        let rules = SourceConfig { event_type: Some(FieldSelector::Header("x-missing".into())) };
        let f = to_event(&meta(), None, b"{}", AT, Some(&rules)).unwrap_err();
        assert_eq!(f.class, ErrorClass::MissingType);
    }
}

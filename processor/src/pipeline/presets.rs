//! Provider presets: where each provider puts an event's type, subject and time.
//!
//! | provider | `type` | `subject` | `time` |
//! |---|---|---|---|
//! | `stripe` | `type` | `data.object.id` | `created` (Unix seconds) |
//! | `github` | `X-GitHub-Event` header, then `.{action}` when the body has one | `repository.full_name` | received |
//! | `shopify` | `X-Shopify-Topic` header | `admin_graphql_api_id`, else `id` | `X-Shopify-Triggered-At` header |
//! | `slack` | `event.type` (Events API), `type` (interactions), `slash_command` (commands) | `event.channel`, `channel.id`, `channel_id` | `event_time` (Unix seconds) |
//! | `standard_webhooks`, `svix` | `type` | ordering key | `timestamp` (RFC 3339) |
//! | `twilio` | `message.{MessageStatus or SmsStatus}`, `call.{CallStatus}` | `MessageSid`, else `CallSid` | received |
//! | `hubspot` | each batch element's `subscriptionType` | `objectId` | `occurredAt` (Unix ms) |
//! | `paddle` | `event_type` | `data.id` | `occurred_at` (RFC 3339) |
//! | `zoom` | `event` | `payload.object.id` | `event_ts` (Unix ms) |
//! | `meta` | `object`, then `.{field}` of the first change | `entry[0].id` | `entry[0].time` |
//! | `generic` | `{source}.webhook` | ordering key | received |
//!
//! A provider's type is part of its format, so a webhook without it goes to the DLQ (`missing_field`); a
//! missing subject or time falls back to the ordering key and the time of receipt.

use hookline_config::processor::Provider;
use hookline_schemas::dlq::{ErrorClass, Stage};
use hookline_schemas::event::parse_rfc3339_millis;
use hookline_schemas::raw::RawMeta;
use serde_json::Value;

use super::Failure;

/// What a preset found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresetFields {
    /// The event type (`None` when the preset has no notion of one); a failure when the provider's format
    /// has one and this webhook lacks it (which only matters when the source configures no `event_type`).
    pub ty: Result<Option<String>, Failure>,
    /// The subject.
    pub subject: Option<String>,
    /// The time, ms since the Unix epoch.
    pub time_ms: Option<i64>,
}

/// The preset fields of one event body.
pub fn fields(provider: Provider, meta: &RawMeta, data: &Value) -> PresetFields {
    let at = |p: &str| data.pointer(p).and_then(text);
    match provider {
        Provider::Generic => PresetFields { ty: Ok(None), subject: None, time_ms: None },
        Provider::Stripe => PresetFields {
            ty: required(at("/type"), "a Stripe event has a `type`").map(Some),
            subject: at("/data/object/id"),
            time_ms: data.pointer("/created").and_then(seconds),
        },
        Provider::Github => {
            let event = required(
                meta.http_header("x-github-event").map(str::trim).filter(|e| !e.is_empty()).map(str::to_owned),
                "a GitHub webhook has an `X-GitHub-Event` header",
            );
            PresetFields {
                ty: event.map(|event| {
                    Some(match at("/action") {
                        Some(action) => format!("{event}.{action}"),
                        None => event,
                    })
                }),
                subject: at("/repository/full_name").or_else(|| at("/organization/login")),
                time_ms: None,
            }
        }
        Provider::Shopify => PresetFields {
            ty: required(
                meta.http_header("x-shopify-topic").or_else(|| meta.http_header("shopify-topic")).and_then(header_text),
                "a Shopify webhook has an `X-Shopify-Topic` header",
            )
            .map(Some),
            subject: at("/admin_graphql_api_id").or_else(|| at("/id")),
            time_ms: meta
                .http_header("x-shopify-triggered-at")
                .or_else(|| meta.http_header("shopify-triggered-at"))
                .and_then(parse_rfc3339_millis),
        },
        Provider::Slack => slack(data),
        Provider::StandardWebhooks | Provider::Svix => PresetFields {
            ty: required(at("/type"), "a Standard Webhooks payload has a `type`").map(Some),
            subject: None,
            time_ms: data.pointer("/timestamp").and_then(Value::as_str).and_then(parse_rfc3339_millis),
        },
        Provider::Twilio => {
            let status = |field: &str| at(field).map(|s| s.to_ascii_lowercase());
            PresetFields {
                ty: Ok(status("/MessageStatus")
                    .or_else(|| status("/SmsStatus"))
                    .map(|s| format!("message.{s}"))
                    .or_else(|| status("/CallStatus").map(|s| format!("call.{s}")))),
                subject: at("/MessageSid").or_else(|| at("/SmsSid")).or_else(|| at("/CallSid")),
                time_ms: None,
            }
        }
        Provider::Hubspot => PresetFields {
            ty: required(at("/subscriptionType"), "a HubSpot event has a `subscriptionType`").map(Some),
            subject: at("/objectId"),
            time_ms: data.pointer("/occurredAt").and_then(number),
        },
        Provider::Paddle => PresetFields {
            ty: required(at("/event_type"), "a Paddle notification has an `event_type`").map(Some),
            subject: at("/data/id"),
            time_ms: data.pointer("/occurred_at").and_then(Value::as_str).and_then(parse_rfc3339_millis),
        },
        Provider::Zoom => PresetFields {
            ty: required(at("/event"), "a Zoom event has an `event`").map(Some),
            subject: at("/payload/object/id"),
            time_ms: data.pointer("/event_ts").and_then(number),
        },
        Provider::Meta => {
            let field = at("/entry/0/changes/0/field")
                .or_else(|| data.pointer("/entry/0/messaging").map(|_| "messaging".to_owned()));
            PresetFields {
                ty: required(at("/object"), "a Meta webhook has an `object`").map(|object| {
                    Some(match field {
                        Some(f) => format!("{object}.{f}"),
                        None => object,
                    })
                }),
                subject: at("/entry/0/id"),
                time_ms: data.pointer("/entry/0/time").and_then(seconds_or_millis),
            }
        }
    }
}

fn slack(data: &Value) -> PresetFields {
    let at = |p: &str| data.pointer(p).and_then(text);
    match at("/type").as_deref() {
        Some("event_callback") => PresetFields {
            ty: required(at("/event/type"), "a Slack event_callback has an `event.type`").map(Some),
            subject: at("/event/channel").or_else(|| at("/event/item/channel")).or_else(|| at("/event/user")),
            time_ms: data.pointer("/event_time").and_then(seconds),
        },
        Some(ty) => PresetFields {
            ty: Ok(Some(ty.to_owned())),
            subject: at("/channel/id").or_else(|| at("/view/id")).or_else(|| at("/user/id")),
            time_ms: None,
        },
        None if at("/command").is_some() => {
            PresetFields { ty: Ok(Some("slash_command".to_owned())), subject: at("/channel_id"), time_ms: None }
        }
        None => PresetFields {
            ty: Err(Failure::new(
                ErrorClass::MissingField,
                Stage::Normalize,
                "a Slack payload has a `type` (or a `command`, for a slash command)",
            )),
            subject: None,
            time_ms: None,
        },
    }
}

fn required(value: Option<String>, what: &str) -> Result<String, Failure> {
    value.ok_or_else(|| Failure::new(ErrorClass::MissingField, Stage::Normalize, format!("{what}; this one has none")))
}

fn header_text(v: &str) -> Option<String> {
    Some(v.trim()).filter(|v| !v.is_empty()).map(str::to_owned)
}

/// A non-empty string (trimmed), or a number written out; `None` for anything else.
pub fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => header_text(s),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A JSON value's kind, for failure reasons.
pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "an empty string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// An integer, from a JSON number or a string of digits.
pub fn number(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().filter(|f| f.is_finite()).map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn seconds(v: &Value) -> Option<i64> {
    number(v).and_then(|s| s.checked_mul(1000))
}

/// Unix seconds, or milliseconds when the number is too large to be seconds (after the year 5138).
fn seconds_or_millis(v: &Value) -> Option<i64> {
    number(v).and_then(|n| if n.abs() < 100_000_000_000 { n.checked_mul(1000) } else { Some(n) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_times() {
        assert_eq!(text(&Value::from(" a ")), Some("a".into()));
        assert_eq!(text(&Value::from(42)), Some("42".into()));
        assert_eq!(text(&Value::from("  ")), None);
        assert_eq!(text(&Value::Bool(true)), None);
        assert_eq!(number(&Value::from("17")), Some(17));
        assert_eq!(seconds_or_millis(&Value::from(1_700_000_000)), Some(1_700_000_000_000));
        assert_eq!(seconds_or_millis(&Value::from(1_700_000_000_123_i64)), Some(1_700_000_000_123));
    }
}

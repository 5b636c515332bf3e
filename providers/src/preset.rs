//! What a provider's event says of itself: its type, subject and time ([`Preset`]), and the readers the
//! provider modules find them with.
//!
//! A provider's type is part of its format, so a webhook without it is refused (the processor sends it to the
//! DLQ as `missing_field`); a missing subject or time falls back to the ordering key and the time of receipt.

use hookline_schemas::event::parse_rfc3339_millis;
use serde_json::Value;

/// What a provider preset found in one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preset {
    /// The event type; `Ok(None)` when the provider has no notion of one, `Err(reason)` when its format has
    /// one and this event lacks it.
    pub ty: Result<Option<String>, String>,
    /// The subject.
    pub subject: Option<String>,
    /// The time, ms since the Unix epoch.
    pub time_ms: Option<i64>,
}

impl Preset {
    /// Nothing found, nothing required: a source without a provider.
    pub const NONE: Preset = Preset { ty: Ok(None), subject: None, time_ms: None };
}

/// `value`, or the reason it is required: `what` and "this one has none".
pub fn required(value: Option<String>, what: &str) -> Result<String, String> {
    value.ok_or_else(|| format!("{what}; this one has none"))
}

/// A trimmed, non-empty header value.
pub fn header_text(v: &str) -> Option<String> {
    Some(v.trim()).filter(|v| !v.is_empty()).map(str::to_owned)
}

/// The text at JSON pointer `pointer` ([`text`]).
pub fn at(data: &Value, pointer: &str) -> Option<String> {
    data.pointer(pointer).and_then(text)
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

/// Unix seconds, as milliseconds.
pub fn seconds(v: &Value) -> Option<i64> {
    number(v).and_then(|s| s.checked_mul(1000))
}

/// Unix seconds, or milliseconds when the number is too large to be seconds (after the year 5138).
pub fn seconds_or_millis(v: &Value) -> Option<i64> {
    number(v).and_then(|n| if n.abs() < 100_000_000_000 { n.checked_mul(1000) } else { Some(n) })
}

/// An RFC 3339 time string, as milliseconds.
pub fn rfc3339(v: &Value) -> Option<i64> {
    v.as_str().and_then(parse_rfc3339_millis)
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
        assert_eq!(rfc3339(&Value::from("2026-11-27T09:00:00Z")), Some(1_795_770_000_000));
    }
}

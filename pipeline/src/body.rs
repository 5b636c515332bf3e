//! Parsing a webhook body into the JSON an event carries as `data`.

use hookline_providers::{BodyShape, Format};
use hookline_schemas::dlq::{ErrorClass, Stage};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::Failure;

const FORM: &str = "application/x-www-form-urlencoded";

/// Parses `body` as the source's format says: JSON is kept verbatim (number precision and member order
/// included); a form becomes an object of its fields (a field given twice becomes an array of its values).
pub(super) fn parse(body: &[u8], shape: &BodyShape, content_type: Option<&str>) -> Result<Box<RawValue>, Failure> {
    let is_form = match shape.format {
        Format::Json => false,
        Format::Form => true,
        Format::Auto => {
            content_type.and_then(|ct| ct.split(';').next()).is_some_and(|ct| ct.trim().eq_ignore_ascii_case(FORM))
        }
    };
    if !is_form {
        return json(body);
    }
    let fields = form(body)?;
    // A Slack interaction (button, modal, shortcut) is a form whose one `payload` field holds the JSON.
    if let Some(Value::String(payload)) = shape.json_in_form_field.and_then(|f| fields.get(f)) {
        return json(payload.as_bytes());
    }
    serde_json::value::to_raw_value(&Value::Object(fields))
        .map_err(|e| Failure::new(ErrorClass::InvalidForm, Stage::Parse, format!("cannot encode the form: {e}")))
}

fn json(body: &[u8]) -> Result<Box<RawValue>, Failure> {
    serde_json::from_slice(body)
        .map_err(|e| Failure::new(ErrorClass::InvalidJson, Stage::Parse, format!("body is not JSON: {e}")))
}

fn form(body: &[u8]) -> Result<Map<String, Value>, Failure> {
    if let Err(e) = std::str::from_utf8(body) {
        return Err(Failure::new(ErrorClass::InvalidForm, Stage::Parse, format!("form body is not UTF-8: {e}")));
    }
    let mut fields = Map::new();
    for (name, value) in form_urlencoded::parse(body) {
        if name.contains('\u{FFFD}') || value.contains('\u{FFFD}') {
            return Err(Failure::new(
                ErrorClass::InvalidForm,
                Stage::Parse,
                "a form field decodes to bytes that are not UTF-8",
            ));
        }
        let value = Value::String(value.into_owned());
        match fields.get_mut(name.as_ref()) {
            None => {
                fields.insert(name.into_owned(), value);
            }
            Some(Value::Array(values)) => values.push(value),
            Some(first) => {
                let first = first.take();
                fields.insert(name.into_owned(), Value::Array(vec![first, value]));
            }
        }
    }
    Ok(fields)
}

/// The events of one body: each with its position in a batch (`None` for a body that is one event).
pub(super) type Elements = Vec<(Option<u32>, Box<RawValue>)>;

/// Most events in one batch webhook. HubSpot sends at most 100; a body of many tiny elements would otherwise
/// become that many events (a 1 MiB body of `{}` is some 350,000), so a larger batch goes to the DLQ.
pub(super) const MAX_BATCH: usize = 1000;

/// Splits a batch body (a JSON array) into its elements, verbatim, with their positions. A body that is
/// not an array is one event.
pub(super) fn split(parsed: Box<RawValue>) -> Result<Elements, Failure> {
    if !parsed.get().trim_start().starts_with('[') {
        return Ok(vec![(None, parsed)]);
    }
    let elements: Vec<Box<RawValue>> = serde_json::from_str(parsed.get())
        .map_err(|e| Failure::new(ErrorClass::InvalidJson, Stage::Parse, format!("batch is not a JSON array: {e}")))?;
    if elements.len() > MAX_BATCH {
        return Err(Failure::new(
            ErrorClass::InvalidField,
            Stage::Parse,
            format!("the batch has {} events; at most {MAX_BATCH} are published from one webhook", elements.len()),
        ));
    }
    elements
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            let i = u32::try_from(i)
                .map_err(|_| Failure::new(ErrorClass::InvalidField, Stage::Parse, "batch has too many elements"))?;
            Ok((Some(i), e))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hookline_providers::{slack::Slack, twilio::Twilio, Provider};

    fn shape(format: Format) -> BodyShape {
        BodyShape { format, ..BodyShape::JSON }
    }

    #[test]
    fn json_is_kept_verbatim() {
        let body = br#"{"amount":12345678901234567890.5,"z":1,"a":2}"#;
        let v = parse(body, &shape(Format::Json), Some(FORM)).unwrap();
        assert_eq!(v.get().as_bytes(), body, "format json ignores the content type");
        let f = parse(b"{nope", &shape(Format::Json), None).unwrap_err();
        assert_eq!((f.class, f.stage), (ErrorClass::InvalidJson, Stage::Parse));
    }

    #[test]
    fn forms_become_objects_and_repeated_fields_arrays() {
        let body = b"MessageSid=SM1&MessageStatus=delivered&To=%2B15551234567&Media=a&Media=b&Media=c&Empty=";
        let v = parse(body, &Twilio.body(), None).unwrap();
        let v: Value = serde_json::from_str(v.get()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"MessageSid":"SM1","MessageStatus":"delivered","To":"+15551234567","Media":["a","b","c"],"Empty":""})
        );
        let f = parse(b"a=%FF", &Twilio.body(), None).unwrap_err();
        assert_eq!(f.class, ErrorClass::InvalidForm);
        let f = parse(b"\xff=1", &Twilio.body(), None).unwrap_err();
        assert_eq!(f.class, ErrorClass::InvalidForm);
    }

    #[test]
    fn auto_follows_the_content_type_and_slack_payloads_are_unwrapped() {
        let body = b"payload=%7B%22type%22%3A%22block_actions%22%7D";
        let v = parse(body, &Slack.body(), Some("application/x-www-form-urlencoded; charset=utf-8")).unwrap();
        assert_eq!(v.get(), r#"{"type":"block_actions"}"#);
        let v = parse(br#"{"type":"event_callback"}"#, &Slack.body(), Some("application/json")).unwrap();
        assert_eq!(v.get(), r#"{"type":"event_callback"}"#);
        let f = parse(b"payload=%7Bnot", &Slack.body(), Some(FORM)).unwrap_err();
        assert_eq!(f.class, ErrorClass::InvalidJson);
    }

    #[test]
    fn batches_split_verbatim_and_objects_stay_whole() {
        let parsed = json(br#" [{"eventId":1,"n":1.50}, {"eventId":2}] "#).unwrap();
        let parts = split(parsed).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!((parts[0].0, parts[0].1.get()), (Some(0), r#"{"eventId":1,"n":1.50}"#));
        assert_eq!(parts[1].0, Some(1));
        let whole = split(json(br#"{"eventId":3}"#).unwrap()).unwrap();
        assert_eq!((whole.len(), whole[0].0), (1, None));
        assert!(split(json(b"[]").unwrap()).unwrap().is_empty());
    }
}

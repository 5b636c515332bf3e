//! The JSON Schema files of hookline's records, embedded, and a validator for each.
//!
//! The files live in `schemas/json/` so data teams can use them without Rust; this module embeds the same
//! bytes, so the processor, the CLI and the tests validate against exactly what is published.

use serde_json::Value;

/// A published record contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Contract {
    /// The value of an events-topic record (a CloudEvent).
    Event,
    /// The JSON view of an events-topic record (key and headers).
    EventRecord,
    /// The JSON view of a DLQ record.
    DlqRecord,
    /// The JSON view of a raw record.
    RawRecord,
    /// The value of a quarantine-topic record (a refused request).
    Rejected,
}

impl Contract {
    /// Every contract.
    pub const ALL: [Contract; 5] =
        [Contract::Event, Contract::EventRecord, Contract::DlqRecord, Contract::RawRecord, Contract::Rejected];

    /// The file name under `schemas/json/`.
    pub fn file_name(self) -> &'static str {
        match self {
            Contract::Event => "event.v1.schema.json",
            Contract::EventRecord => "event-record.v1.schema.json",
            Contract::DlqRecord => "dlq-record.v1.schema.json",
            Contract::RawRecord => "raw-record.v1.schema.json",
            Contract::Rejected => "rejected.v1.schema.json",
        }
    }

    /// The schema text.
    pub fn text(self) -> &'static str {
        match self {
            Contract::Event => include_str!("../json/event.v1.schema.json"),
            Contract::EventRecord => include_str!("../json/event-record.v1.schema.json"),
            Contract::DlqRecord => include_str!("../json/dlq-record.v1.schema.json"),
            Contract::RawRecord => include_str!("../json/raw-record.v1.schema.json"),
            Contract::Rejected => include_str!("../json/rejected.v1.schema.json"),
        }
    }

    /// Compiles the schema.
    pub fn validator(self) -> Result<Validator, SchemaError> {
        let schema: Value =
            serde_json::from_str(self.text()).map_err(|e| SchemaError { contract: self, message: e.to_string() })?;
        let inner =
            jsonschema::validator_for(&schema).map_err(|e| SchemaError { contract: self, message: e.to_string() })?;
        Ok(Validator { contract: self, inner })
    }
}

/// A schema file that does not compile (a bug in the published contract).
#[derive(Debug, thiserror::Error)]
#[error("schema {} does not compile: {message}", contract.file_name())]
pub struct SchemaError {
    contract: Contract,
    message: String,
}

/// A compiled contract.
pub struct Validator {
    contract: Contract,
    inner: jsonschema::Validator,
}

impl std::fmt::Debug for Validator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Validator").field("contract", &self.contract).finish_non_exhaustive()
    }
}

impl Validator {
    /// Every violation of the contract, as `path: message` lines; empty when the instance is valid.
    pub fn violations(&self, instance: &Value) -> Vec<String> {
        // The common case first: `is_valid` stops at the first failed keyword and builds no error.
        if self.inner.is_valid(instance) {
            return Vec::new();
        }
        self.inner
            .iter_errors(instance)
            .map(|e| format!("{} at `{}`: {}", self.contract.file_name(), e.instance_path(), e))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{rfc3339_millis, CloudEvent, SPEC_VERSION};
    use crate::{dlq, header, raw, view};

    #[test]
    fn every_schema_compiles_and_matches_its_file_on_disk() {
        for c in Contract::ALL {
            c.validator().unwrap();
            let on_disk = std::fs::read_to_string(format!(
                "{}/json/{}",
                std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned()),
                c.file_name()
            ))
            .unwrap();
            assert_eq!(on_disk, c.text());
        }
    }

    fn event() -> CloudEvent {
        CloudEvent {
            specversion: SPEC_VERSION.into(),
            id: "evt_1".into(),
            source: "/webhooks/shop".into(),
            ty: "order.created".into(),
            time: rfc3339_millis(1_764_234_000_123),
            subject: Some("order_1".into()),
            datacontenttype: "application/json".into(),
            data: serde_json::value::RawValue::from_string(r#"{"id":"evt_1"}"#.into()).unwrap(),
            hooklinesource: "shop".into(),
            hooklinereceivedat: rfc3339_millis(1_764_234_000_123),
            hooklinepartition: 0,
            hooklineoffset: "17".into(),
            hooklinededupkey: "evt_1".into(),
            hooklineindex: None,
            extensions: Default::default(),
        }
    }

    #[test]
    fn the_rust_event_type_satisfies_the_event_schema() {
        let v = Contract::Event.validator().unwrap();
        let json = serde_json::to_value(event()).unwrap();
        assert_eq!(v.violations(&json), Vec::<String>::new());
    }

    #[test]
    fn the_event_schema_rejects_what_consumers_could_not_rely_on() {
        let v = Contract::Event.validator().unwrap();
        let mut missing_id = serde_json::to_value(event()).unwrap();
        missing_id.as_object_mut().unwrap().remove("id");
        assert!(!v.violations(&missing_id).is_empty());
        let mut bad_time = serde_json::to_value(event()).unwrap();
        bad_time["time"] = "yesterday".into();
        assert!(!v.violations(&bad_time).is_empty());
        let mut bad_ext = serde_json::to_value(event()).unwrap();
        bad_ext["Hookline-X"] = 1.into();
        assert!(!v.violations(&bad_ext).is_empty(), "extension names must be lowercase alphanumeric");
    }

    fn raw_meta() -> raw::RawMeta {
        raw::RawMeta {
            v: header::VERSION,
            source: "shop".into(),
            received_at_ms: 1,
            dedup_key: "evt_1".into(),
            dedup_key_origin: raw::KeyOrigin::Header,
            content_type: Some("application/json".into()),
            request_id: "r1".into(),
            headers: vec![("x-shop-topic".into(), "orders/create".into())],
            traceparent: None,
            reprocess: None,
        }
    }

    fn view(topic: &str, headers: &[(&str, Vec<u8>)], value: &[u8], value_as: view::ValueAs) -> serde_json::Value {
        let v = view::RecordView::new(
            topic,
            0,
            5,
            None,
            Some(b"order_1"),
            headers.iter().map(|(k, v)| (*k, Some(v.as_slice()))),
            Some(value),
            value_as,
        );
        serde_json::to_value(v).unwrap()
    }

    #[test]
    fn rust_written_records_satisfy_the_record_schemas() {
        let raw_header = raw_meta().to_header();
        let raw_json = view("hookline.raw", std::slice::from_ref(&raw_header), b"not json", view::ValueAs::Json);
        assert_eq!(Contract::RawRecord.validator().unwrap().violations(&raw_json), Vec::<String>::new());
        assert_eq!(raw_json["headers"]["hookline-meta"]["source"], "shop", "hookline headers are shown parsed");

        let failure = dlq::DlqMeta {
            v: header::VERSION,
            source: "shop".into(),
            dedup_key: "evt_1".into(),
            raw_topic: "hookline.raw".into(),
            raw_partition: 0,
            raw_offset: 5,
            class: dlq::ErrorClass::InvalidJson,
            stage: dlq::Stage::Parse,
            reason: "expected value at line 1 column 1".into(),
            attempts: 1,
            first_failure_ms: 2,
        };
        let dlq_json = view("hookline.dlq", &[raw_header, failure.to_header()], b"not json", view::ValueAs::Base64);
        assert_eq!(Contract::DlqRecord.validator().unwrap().violations(&dlq_json), Vec::<String>::new());

        let event_bytes = serde_json::to_vec(&event()).unwrap();
        let headers = [(header::CONTENT_TYPE, header::CLOUDEVENTS_JSON.as_bytes().to_vec())];
        let event_json = view("hookline.events", &headers, &event_bytes, view::ValueAs::Json);
        assert_eq!(Contract::EventRecord.validator().unwrap().violations(&event_json), Vec::<String>::new());
    }

    #[test]
    fn the_raw_schema_rejects_credentials_and_missing_metadata() {
        let v = Contract::RawRecord.validator().unwrap();
        let mut meta = raw_meta();
        meta.headers.push(("authorization".into(), "Bearer secret".into()));
        let record = view("hookline.raw", &[meta.to_header()], b"{}", view::ValueAs::Json);
        assert!(!v.violations(&record).is_empty(), "a credential header must not validate");
        let bare = view("hookline.raw", &[], b"{}", view::ValueAs::Json);
        assert!(!v.violations(&bare).is_empty(), "a raw record without hookline-meta must not validate");
    }
}

//! What to do with one raw record, decided without I/O: who it is ([`identify`]) and what it becomes
//! ([`output_for`]). The partition worker does the I/O around these (dedup lookup, produce, record).

use std::collections::BTreeMap;

use hookline_schemas::dlq::{ErrorClass, Stage};
use hookline_schemas::output::Origin;
use hookline_schemas::raw::{HeaderError, RawMeta};
use hookline_schemas::{header, is_valid_source_name};
use rdkafka::message::{Headers, Message, OwnedMessage};

use crate::config::SourceConfig;
use crate::normalize::{to_event, Failure, Position};
use crate::output::{OutputRecord, Target};

/// The source name given to records whose headers name none.
pub const UNKNOWN_SOURCE: &str = "_unknown";

/// The identity deduplication uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Source name.
    pub source: String,
    /// Dedup key.
    pub dedup_key: String,
    /// When the webhook was received (ms); the record time when the envelope is unreadable.
    pub received_at_ms: i64,
    /// True when the envelope was unreadable and the identity was made up from the record's position.
    pub synthetic: bool,
}

/// A raw record, read.
#[derive(Debug)]
pub enum Envelope {
    /// Its hookline headers are valid.
    Valid(RawMeta),
    /// They are not; the record goes to the DLQ.
    Invalid(HeaderError),
}

/// Reads the envelope and the identity of a raw record.
pub fn identify(raw: &OwnedMessage) -> (Envelope, Identity) {
    let headers = raw.headers().map(|h| h.iter().map(|h| (h.key, h.value)).collect::<Vec<_>>()).unwrap_or_default();
    match RawMeta::from_headers(headers.iter().copied()) {
        Ok(meta) => {
            let identity = Identity {
                source: meta.source.clone(),
                dedup_key: meta.dedup_key.clone(),
                received_at_ms: meta.received_at_ms,
                synthetic: false,
            };
            (Envelope::Valid(meta), identity)
        }
        Err(e) => {
            // Whatever source the unreadable metadata still names, if any.
            let source = header::last(headers.iter().copied(), header::META)
                .and_then(|v| serde_json::from_slice::<serde_json::Value>(v).ok())
                .and_then(|v| v.get("source").and_then(serde_json::Value::as_str).map(str::to_owned))
                .filter(|s| is_valid_source_name(s))
                .unwrap_or_else(|| UNKNOWN_SOURCE.to_owned());
            let identity = Identity {
                source,
                dedup_key: format!("raw:{}:{}:{}", raw.topic(), raw.partition(), raw.offset()),
                received_at_ms: raw.timestamp().to_millis().unwrap_or_else(hookline_runtime::now_ms),
                synthetic: true,
            };
            (Envelope::Invalid(e), identity)
        }
    }
}

/// The one output of a raw record that is not a duplicate: its event, or its DLQ record.
pub fn output_for(
    raw: &OwnedMessage,
    envelope: &Envelope,
    identity: &Identity,
    sources: &BTreeMap<String, SourceConfig>,
    now_ms: i64,
) -> (OutputRecord, Option<Failure>) {
    let meta = match envelope {
        Envelope::Valid(meta) => meta,
        Envelope::Invalid(e) => {
            let failure = Failure {
                class: ErrorClass::InvalidEnvelope,
                stage: Stage::Envelope,
                reason: format!("not a hookline raw record: {e}"),
            };
            return (crate::dlq::record(raw, identity, &failure, now_ms), Some(failure));
        }
    };
    let at = Position { partition: raw.partition(), offset: raw.offset() };
    match to_event(meta, raw.key(), raw.payload().unwrap_or_default(), at, sources.get(&meta.source)) {
        Ok(event) => match serde_json::to_vec(&event) {
            Ok(value) => {
                let origin = Origin {
                    v: header::VERSION,
                    source: identity.source.clone(),
                    dedup_key: identity.dedup_key.clone(),
                    raw_topic: raw.topic().to_owned(),
                    raw_partition: raw.partition(),
                    raw_offset: raw.offset(),
                };
                let (name, value_bytes) = origin.to_header();
                let headers = vec![
                    (header::CONTENT_TYPE.to_owned(), header::CLOUDEVENTS_JSON.as_bytes().to_vec()),
                    (name.to_owned(), value_bytes),
                ];
                (OutputRecord { target: Target::Events, key: raw.key().map(<[u8]>::to_vec), value, headers }, None)
            }
            // Serializing a struct of strings and a validated RawValue cannot fail; if it ever did, the record
            // must still end somewhere.
            Err(e) => {
                let failure = Failure {
                    class: ErrorClass::InvalidJson,
                    stage: Stage::Normalize,
                    reason: format!("cannot serialize the event: {e}"),
                };
                (crate::dlq::record(raw, identity, &failure, now_ms), Some(failure))
            }
        },
        Err(failure) => (crate::dlq::record(raw, identity, &failure, now_ms), Some(failure)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hookline_schemas::dlq::DlqMeta;
    use hookline_schemas::json_schema::Contract;
    use hookline_schemas::raw::KeyOrigin;
    use hookline_schemas::view::{RecordView, ValueAs};
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::Timestamp;

    fn raw(headers: &[(&str, Vec<u8>)], value: &[u8]) -> OwnedMessage {
        let mut h = OwnedHeaders::new();
        for (k, v) in headers {
            h = h.insert(Header { key: k, value: Some(v) });
        }
        OwnedMessage::new(
            Some(value.to_vec()),
            Some(b"order_1".to_vec()),
            "hookline.raw".into(),
            Timestamp::CreateTime(5),
            3,
            77,
            Some(h),
        )
    }

    fn meta() -> RawMeta {
        RawMeta {
            v: header::VERSION,
            source: "shop".into(),
            received_at_ms: 1_700_000_000_000,
            dedup_key: "evt_1".into(),
            dedup_key_origin: KeyOrigin::JsonPointer,
            content_type: None,
            request_id: "r".into(),
            headers: vec![],
        }
    }

    fn view(out: &OutputRecord, value_as: ValueAs) -> serde_json::Value {
        let v = RecordView::new(
            "t",
            3,
            0,
            None,
            out.key.as_deref(),
            out.headers.iter().map(|(k, v)| (k.as_str(), Some(v.as_slice()))),
            Some(&out.value),
            value_as,
        );
        serde_json::to_value(v).unwrap()
    }

    fn pairs(out: &OutputRecord) -> impl Iterator<Item = (&str, Option<&[u8]>)> {
        out.headers.iter().map(|(k, v)| (k.as_str(), Some(v.as_slice())))
    }

    #[test]
    fn a_valid_record_becomes_an_event_record_that_matches_the_contract() {
        let msg = raw(&[meta().to_header()], br#"{"id":"evt_1"}"#);
        let (envelope, identity) = identify(&msg);
        assert!(!identity.synthetic);
        let (out, failure) = output_for(&msg, &envelope, &identity, &BTreeMap::new(), 0);
        assert_eq!(failure, None);
        assert_eq!(out.target, Target::Events);
        assert_eq!(out.key.as_deref(), Some(&b"order_1"[..]));
        assert_eq!(out.headers.len(), 2, "content-type and hookline-origin only");
        let record = view(&out, ValueAs::Json);
        assert_eq!(Contract::EventRecord.validator().unwrap().violations(&record), Vec::<String>::new());
        assert_eq!(Contract::Event.validator().unwrap().violations(&record["value"]), Vec::<String>::new());
        let origin = Origin::from_headers(pairs(&out)).unwrap();
        assert_eq!((origin.raw_partition, origin.raw_offset, origin.dedup_key.as_str()), (3, 77, "evt_1"));
    }

    #[test]
    fn a_non_json_body_becomes_a_dlq_record_with_the_raw_bytes_and_headers_intact() {
        let raw_header = meta().to_header();
        let msg = raw(std::slice::from_ref(&raw_header), b"\xff not json");
        let (envelope, identity) = identify(&msg);
        let (out, failure) = output_for(&msg, &envelope, &identity, &BTreeMap::new(), 42);
        assert_eq!(failure.unwrap().class, ErrorClass::InvalidJson);
        assert_eq!(out.target, Target::Dlq);
        assert_eq!(out.value, b"\xff not json");
        assert_eq!(
            (out.headers[0].0.as_str(), &out.headers[0].1),
            (raw_header.0, &raw_header.1),
            "raw header first, intact"
        );
        let dlq = DlqMeta::from_headers(pairs(&out)).unwrap();
        assert_eq!((dlq.stage, dlq.attempts, dlq.first_failure_ms), (Stage::Parse, 1, 42));
        assert_eq!((dlq.raw_partition, dlq.raw_offset, dlq.dedup_key.as_str()), (3, 77, "evt_1"));
        let record = view(&out, ValueAs::Base64);
        assert_eq!(Contract::DlqRecord.validator().unwrap().violations(&record), Vec::<String>::new());
    }

    #[test]
    fn a_record_without_hookline_metadata_gets_a_synthetic_identity_and_goes_to_the_dlq() {
        let msg = raw(&[("hookline-meta", br#"{"v":1,"source":"shop"}"#.to_vec()), ("x-other", b"1".to_vec())], b"{}");
        let (envelope, identity) = identify(&msg);
        assert!(matches!(envelope, Envelope::Invalid(_)));
        assert_eq!(identity.dedup_key, "raw:hookline.raw:3:77");
        assert_eq!(identity.source, "shop", "the source is kept when the metadata still names one");
        let (out, failure) = output_for(&msg, &envelope, &identity, &BTreeMap::new(), 0);
        assert_eq!(failure.unwrap().class, ErrorClass::InvalidEnvelope);
        let dlq = DlqMeta::from_headers(pairs(&out)).unwrap();
        assert_eq!(dlq.dedup_key, "raw:hookline.raw:3:77");
        assert_eq!(out.headers[1].0, "x-other", "foreign headers are kept too");
        let record = view(&out, ValueAs::Base64);
        assert_eq!(Contract::DlqRecord.validator().unwrap().violations(&record), Vec::<String>::new());
    }
}

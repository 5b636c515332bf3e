//! What to do with one raw record, decided without I/O: who it is ([`identify`]), what it becomes
//! ([`decide`]) and the records that carry it: its events, or its one DLQ record ([`plan`], [`dlq_record`]).
//! The partition worker ([`crate::partition`]) does the I/O around these (dedup lookup, publish).

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use hookline_schemas::dlq::DlqMeta;
use hookline_schemas::dlq::{ErrorClass, Stage};
use hookline_schemas::raw::{HeaderError, RawMeta};
use hookline_schemas::{header, is_valid_source_name, UNKNOWN_SOURCE};
use rdkafka::message::{Headers, Message};

use crate::output::OutputRecord;
use hookline_pipeline::{Decision, Failure, Input, Pipeline};

/// The identity deduplication uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Source name.
    pub source: String,
    /// Dedup key.
    pub dedup_key: String,
    /// When the webhook was received (ms); the record time when the envelope is unreadable.
    pub received_at_ms: i64,
    /// True when the envelope was unreadable and the identity was made up from the record's position: such a
    /// record has no dedup entry (its identity is unique anyway).
    pub synthetic: bool,
    /// The key of its dedup entry: the dedup key, or for a webhook an operator sent again (`reprocess` in its
    /// metadata) `{kind}:{id}/{dedup key}`, so a redrive or replay is not dropped as a duplicate of the
    /// webhook's first outputs and happens once per DLQ record or replay run. Outputs keep `dedup_key`.
    pub entry_key: String,
    /// When it entered the pipeline: the receipt, or when an operator sent it again. Its dedup entry lasts the
    /// source's window from then, and its lag and latency are measured from then (a replay of last week's
    /// webhooks is not a week of lag).
    pub entry_from_ms: i64,
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
pub fn identify(raw: &impl Message) -> (Envelope, Identity) {
    let headers = raw.headers().map(|h| h.iter().map(|h| (h.key, h.value)).collect::<Vec<_>>()).unwrap_or_default();
    match RawMeta::from_headers(headers.iter().copied()) {
        Ok(meta) => {
            let (entry_key, entry_from_ms) = match &meta.reprocess {
                Some(r) => (format!("{}:{}/{}", r.kind.as_str(), r.id, meta.dedup_key), r.at_ms),
                None => (meta.dedup_key.clone(), meta.received_at_ms),
            };
            let identity = Identity {
                source: meta.source.clone(),
                dedup_key: meta.dedup_key.clone(),
                received_at_ms: meta.received_at_ms,
                synthetic: false,
                entry_key,
                entry_from_ms,
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
            let dedup_key = format!("raw:{}:{}:{}", raw.topic(), raw.partition(), raw.offset());
            let received_at_ms = raw.timestamp().to_millis().unwrap_or_else(hookline_runtime::now_ms);
            let identity = Identity {
                source,
                entry_key: dedup_key.clone(),
                dedup_key,
                received_at_ms,
                synthetic: true,
                entry_from_ms: received_at_ms,
            };
            (Envelope::Invalid(e), identity)
        }
    }
}

/// Runs the pipeline on a record whose envelope is valid; its events carry `traceparent`. A panic in the
/// pipeline (a hookline bug triggered by this record) is caught and becomes a DLQ decision, so one bad record
/// cannot stop the stream.
pub fn decide(pipeline: &Pipeline, raw: &impl Message, envelope: &Envelope, traceparent: Option<&str>) -> Decision {
    let meta = match envelope {
        Envelope::Valid(meta) => meta,
        Envelope::Invalid(e) => {
            return Decision::Fail(Failure::new(
                ErrorClass::InvalidEnvelope,
                Stage::Envelope,
                format!("not a hookline raw record: {e}"),
            ))
        }
    };
    let input = Input {
        meta,
        key: raw.key(),
        body: raw.payload().unwrap_or_default(),
        partition: raw.partition(),
        offset: raw.offset(),
        traceparent,
    };
    match std::panic::catch_unwind(AssertUnwindSafe(|| {
        crate::faults::on_mapping(input.body);
        pipeline.process(&input)
    })) {
        Ok(decision) => decision,
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(no message)".to_owned());
            Decision::Fail(Failure::new(
                ErrorClass::Panic,
                Stage::Process,
                format!("the pipeline panicked on this record: {message}"),
            ))
        }
    }
}

/// The outputs of a decision: its events (with the CloudEvents content-type header), or one DLQ record.
pub fn plan(
    dlq_topic: &Arc<str>,
    raw: &impl Message,
    identity: &Identity,
    decision: Decision,
    attempts: u32,
    now_ms: i64,
) -> (Vec<OutputRecord>, Option<Failure>) {
    match decision {
        Decision::Publish(events) => {
            let outputs = events
                .into_iter()
                .map(|e| OutputRecord {
                    topic: e.topic,
                    key: raw.key().map(<[u8]>::to_vec),
                    value: Some(e.value),
                    headers: vec![(header::CONTENT_TYPE.to_owned(), header::CLOUDEVENTS_JSON.as_bytes().to_vec())],
                })
                .collect();
            (outputs, None)
        }
        Decision::Filtered => (Vec::new(), None),
        Decision::Fail(failure) => {
            let record = dlq_record(dlq_topic, raw, identity, &failure, attempts, now_ms);
            (vec![record], Some(failure))
        }
    }
}

/// The DLQ record of a raw record that cannot become events: the raw record kept intact, with what failed
/// and where it came from.
///
/// The value and key are the raw record's, byte for byte; its headers are kept in their order, followed by
/// `hookline-dlq`, the JSON [`DlqMeta`]: source, dedup key, raw topic/partition/offset, error class, stage,
/// reason, attempts and first-failure time. When the raw record names no usable source or dedup key, they
/// are `_unknown` and `raw:{topic}:{partition}:{offset}`, so every DLQ record can be traced and deduplicated.
pub fn dlq_record(
    topic: &Arc<str>,
    raw: &impl Message,
    identity: &Identity,
    failure: &Failure,
    attempts: u32,
    now_ms: i64,
) -> OutputRecord {
    let mut headers: Vec<(String, Vec<u8>)> = raw
        .headers()
        .map(|h| h.iter().map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec())).collect())
        .unwrap_or_default();
    let meta = DlqMeta {
        v: header::VERSION,
        source: identity.source.clone(),
        dedup_key: identity.dedup_key.clone(),
        raw_topic: raw.topic().to_owned(),
        raw_partition: raw.partition(),
        raw_offset: raw.offset(),
        class: failure.class,
        stage: failure.stage,
        reason: failure.reason.clone(),
        attempts: attempts.max(1),
        first_failure_ms: now_ms,
    };
    let (name, value) = meta.to_header();
    headers.push((name.to_owned(), value));
    OutputRecord {
        topic: topic.clone(),
        key: raw.key().map(<[u8]>::to_vec),
        value: Some(raw.payload().map(<[u8]>::to_vec).unwrap_or_default()),
        headers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hookline_schemas::dlq::DlqMeta;
    use hookline_schemas::json_schema::Contract;
    use hookline_schemas::output::Origin;
    use hookline_schemas::raw::KeyOrigin;
    use hookline_schemas::view::{RecordView, ValueAs};
    use rdkafka::message::{Header, OwnedHeaders, OwnedMessage};
    use rdkafka::Timestamp;

    use hookline_config::processor::Config;

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
            traceparent: None,
            reprocess: None,
        }
    }

    fn pipeline(toml: &str) -> Pipeline {
        let settings =
            hookline_runtime::config::from_str_with_env::<Config>(toml, Vec::new()).unwrap().validate().unwrap();
        Pipeline::new(&settings).unwrap()
    }

    fn dlq() -> Arc<str> {
        Arc::from("hookline.dlq")
    }

    #[test]
    fn a_webhook_sent_again_is_deduplicated_per_redrive_but_keeps_its_dedup_key_for_its_outputs() {
        let (_, first) = identify(&raw(&[meta().to_header()], br#"{"id":"evt_1"}"#));
        assert_eq!((first.entry_key.as_str(), first.entry_from_ms), ("evt_1", 1_700_000_000_000));
        let mut again = meta();
        again.reprocess = Some(hookline_schemas::raw::Reprocess {
            kind: hookline_schemas::raw::ReprocessKind::Redrive,
            id: "hookline.dlq:2:40".into(),
            at_ms: 1_800_000_000_000,
        });
        let msg = raw(&[again.to_header()], br#"{"id":"evt_1"}"#);
        let (envelope, identity) = identify(&msg);
        assert_eq!(identity.dedup_key, "evt_1", "outputs (event ids, DLQ metadata) keep the webhook's key");
        assert_eq!(identity.entry_key, "redrive:hookline.dlq:2:40/evt_1");
        assert_eq!(identity.entry_from_ms, 1_800_000_000_000, "the entry lasts a window from the redrive");
        let decision = decide(&pipeline(""), &msg, &envelope, None);
        let (out, _) = plan(&dlq(), &msg, &identity, decision, 1, 0);
        let event: serde_json::Value = serde_json::from_slice(out[0].value.as_ref().unwrap()).unwrap();
        assert_eq!(event["id"], "evt_1");
    }

    fn view(out: &OutputRecord, value_as: ValueAs) -> serde_json::Value {
        let v = RecordView::new(
            "t",
            3,
            0,
            None,
            out.key.as_deref(),
            out.headers.iter().map(|(k, v)| (k.as_str(), Some(v.as_slice()))),
            out.value.as_deref(),
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
        let decision = decide(&pipeline(""), &msg, &envelope, None);
        let (out, failure) = plan(&dlq(), &msg, &identity, decision, 1, 0);
        assert_eq!(failure, None);
        assert_eq!(out.len(), 1);
        let out = &out[0];
        assert_eq!(&*out.topic, "hookline.events");
        assert_eq!(out.key.as_deref(), Some(&b"order_1"[..]));
        assert_eq!(out.headers.len(), 1, "content-type only");
        let record = view(out, ValueAs::Json);
        assert_eq!(Contract::EventRecord.validator().unwrap().violations(&record), Vec::<String>::new());
        assert_eq!(Contract::Event.validator().unwrap().violations(&record["value"]), Vec::<String>::new());
        let origin = Origin::of_event(out.value.as_ref().unwrap()).unwrap();
        assert_eq!((origin.raw_partition, origin.raw_offset, origin.dedup_key.as_str()), (3, 77, "evt_1"));
        assert_eq!(origin.received_at_ms, Some(1_700_000_000_000));
    }

    #[test]
    fn a_non_json_body_becomes_a_dlq_record_with_the_raw_bytes_and_headers_intact() {
        let raw_header = meta().to_header();
        let msg = raw(std::slice::from_ref(&raw_header), b"\xff not json");
        let (envelope, identity) = identify(&msg);
        let decision = decide(&pipeline(""), &msg, &envelope, None);
        let (out, failure) = plan(&dlq(), &msg, &identity, decision, 1, 42);
        assert_eq!(failure.unwrap().class, ErrorClass::InvalidJson);
        let out = &out[0];
        assert_eq!(&*out.topic, "hookline.dlq");
        assert_eq!(out.value.as_deref(), Some(&b"\xff not json"[..]));
        assert_eq!(
            (out.headers[0].0.as_str(), &out.headers[0].1),
            (raw_header.0, &raw_header.1),
            "raw header first, intact"
        );
        let dlq = DlqMeta::from_headers(pairs(out)).unwrap();
        assert_eq!((dlq.stage, dlq.attempts, dlq.first_failure_ms), (Stage::Parse, 1, 42));
        assert_eq!((dlq.raw_partition, dlq.raw_offset, dlq.dedup_key.as_str()), (3, 77, "evt_1"));
        let record = view(out, ValueAs::Base64);
        assert_eq!(Contract::DlqRecord.validator().unwrap().violations(&record), Vec::<String>::new());
        let origin = Origin::of_dlq(pairs(out)).unwrap();
        assert_eq!((origin.raw_offset, origin.received_at_ms), (77, Some(1_700_000_000_000)));
    }

    #[test]
    fn a_record_without_hookline_metadata_gets_a_synthetic_identity_and_goes_to_the_dlq() {
        let msg = raw(&[("hookline-meta", br#"{"v":1,"source":"shop"}"#.to_vec()), ("x-other", b"1".to_vec())], b"{}");
        let (envelope, identity) = identify(&msg);
        assert!(matches!(envelope, Envelope::Invalid(_)));
        assert!(identity.synthetic);
        assert_eq!(identity.dedup_key, "raw:hookline.raw:3:77");
        assert_eq!(identity.source, "shop", "the source is kept when the metadata still names one");
        let decision = decide(&pipeline(""), &msg, &envelope, None);
        let (out, failure) = plan(&dlq(), &msg, &identity, decision, 1, 0);
        assert_eq!(failure.unwrap().class, ErrorClass::InvalidEnvelope);
        let out = &out[0];
        let dlq = DlqMeta::from_headers(pairs(out)).unwrap();
        assert_eq!(dlq.dedup_key, "raw:hookline.raw:3:77");
        assert_eq!(out.headers[1].0, "x-other", "foreign headers are kept too");
        let record = view(out, ValueAs::Base64);
        assert_eq!(Contract::DlqRecord.validator().unwrap().violations(&record), Vec::<String>::new());
    }
}

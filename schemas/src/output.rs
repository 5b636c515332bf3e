//! Where an output record came from: the raw record (and, for a batch webhook split into several events, the
//! element) it was derived from.
//!
//! Every output names its raw record: an event in its `hookline*` extension attributes
//! ([`crate::event::CloudEvent`]), a DLQ record in its [`crate::header::DLQ`] header
//! ([`crate::dlq::DlqMeta`]). The output of raw partition `p` is written to partition `p` of its topic, so the
//! processor taking over a partition reads these back from the tail of its outputs to learn what was already
//! published: the output topics double as the changelog of what has been processed.

use serde::Deserialize;

use crate::dlq::DlqMeta;
use crate::raw::RawMeta;

/// The raw record an output was derived from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The configured source name.
    pub source: String,
    /// The raw record's dedup key.
    pub dedup_key: String,
    /// The raw partition.
    pub raw_partition: i32,
    /// The raw offset.
    pub raw_offset: i64,
    /// For an event split out of a batch webhook, its position in the batch.
    pub index: Option<u32>,
    /// When the ingress received the webhook (ms), when the output says.
    pub received_at_ms: Option<i64>,
}

/// The members of an event value that name its origin; everything else is skipped unparsed.
#[derive(Deserialize)]
struct EventOrigin {
    hooklinesource: String,
    hooklinededupkey: String,
    hooklinepartition: i32,
    hooklineoffset: String,
    #[serde(default)]
    hooklineindex: Option<u32>,
    #[serde(default)]
    hooklinereceivedat: Option<String>,
}

/// An output record that does not say where it came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a hookline output: {0}")]
pub struct NotAnOutput(String);

impl Origin {
    /// Reads the origin of an events-topic record from its value.
    pub fn of_event(value: &[u8]) -> Result<Origin, NotAnOutput> {
        let e: EventOrigin = serde_json::from_slice(value).map_err(|e| NotAnOutput(e.to_string()))?;
        let raw_offset = e
            .hooklineoffset
            .parse()
            .map_err(|_| NotAnOutput(format!("hooklineoffset `{}` is not an offset", e.hooklineoffset)))?;
        Ok(Origin {
            source: e.hooklinesource,
            dedup_key: e.hooklinededupkey,
            raw_partition: e.hooklinepartition,
            raw_offset,
            index: e.hooklineindex,
            received_at_ms: e.hooklinereceivedat.as_deref().and_then(crate::event::parse_rfc3339_millis),
        })
    }

    /// Reads the origin of a DLQ record from its headers.
    pub fn of_dlq<'a, I>(headers: I) -> Result<Origin, NotAnOutput>
    where
        I: IntoIterator<Item = (&'a str, Option<&'a [u8]>)>,
    {
        let headers: Vec<(&str, Option<&[u8]>)> = headers.into_iter().collect();
        let meta = DlqMeta::from_headers(headers.iter().copied()).map_err(|e| NotAnOutput(e.to_string()))?;
        let received_at_ms = RawMeta::from_headers(headers.iter().copied()).ok().map(|raw| raw.received_at_ms);
        Ok(Origin {
            source: meta.source,
            dedup_key: meta.dedup_key,
            raw_partition: meta.raw_partition,
            raw_offset: meta.raw_offset,
            index: None,
            received_at_ms: received_at_ms.or(Some(meta.first_failure_ms)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_of_an_event_skips_the_data() {
        let value = br#"{"id":"x","data":{"big":[1,2,3]},"hooklinesource":"shop","hooklinededupkey":"evt_9",
            "hooklinepartition":7,"hooklineoffset":"123456789012","hooklineindex":2,
            "hooklinereceivedat":"2025-11-27T09:00:00.123Z"}"#;
        let o = Origin::of_event(value).unwrap();
        assert_eq!(
            o,
            Origin {
                source: "shop".into(),
                dedup_key: "evt_9".into(),
                raw_partition: 7,
                raw_offset: 123_456_789_012,
                index: Some(2),
                received_at_ms: Some(1_764_234_000_123),
            }
        );
        assert!(Origin::of_event(br#"{"id":"x"}"#).is_err());
        assert!(Origin::of_event(
            br#"{"hooklinesource":"s","hooklinededupkey":"k","hooklinepartition":0,"hooklineoffset":"x"}"#
        )
        .is_err());
    }
}

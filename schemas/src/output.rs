//! The [`header::ORIGIN`] header of an event record: the raw record it was derived from.
//!
//! An output of raw partition `p` is written to partition `p` of its topic and names its raw record's source,
//! dedup key, topic, partition and offset (events in [`header::ORIGIN`], DLQ records inside
//! [`crate::dlq::DlqMeta`]). The processor reads these back when it takes over a partition, so the output
//! topics double as the changelog of what has been processed.

use serde::{Deserialize, Serialize};

use crate::header;
use crate::raw::{parse_header, HeaderError};

/// The raw record an output record was derived from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// Contract version, [`header::VERSION`].
    pub v: u32,
    /// The configured source name.
    pub source: String,
    /// The raw record's dedup key.
    pub dedup_key: String,
    /// The raw topic.
    pub raw_topic: String,
    /// The raw partition.
    pub raw_partition: i32,
    /// The raw offset.
    pub raw_offset: i64,
}

impl Origin {
    /// The [`header::ORIGIN`] header.
    pub fn to_header(&self) -> (&'static str, Vec<u8>) {
        (header::ORIGIN, serde_json::to_vec(self).unwrap_or_default())
    }

    /// Reads the origin from an event record's headers.
    pub fn from_headers<'a, I>(headers: I) -> Result<Self, HeaderError>
    where
        I: IntoIterator<Item = (&'a str, Option<&'a [u8]>)>,
    {
        parse_header(headers, header::ORIGIN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_round_trip() {
        let o = Origin {
            v: header::VERSION,
            source: "shop".into(),
            dedup_key: "evt_9".into(),
            raw_topic: "hookline.raw".into(),
            raw_partition: 7,
            raw_offset: 123_456_789_012,
        };
        let (name, value) = o.to_header();
        let back = Origin::from_headers([(name, Some(value.as_slice()))]).unwrap();
        assert_eq!(back, o);
        assert_eq!(Origin::from_headers([]), Err(HeaderError::Missing(header::ORIGIN)));
    }
}

//! Headers shared by every output record (events and DLQ): where the record came from.
//!
//! An output record of raw partition `p` is written to partition `p` of its output topic and carries the raw
//! record's source, dedup key, topic, partition and offset. The processor reads these back when it takes over a
//! partition, so the output topics double as the changelog of what has been processed.

use crate::header;
use crate::raw::HeaderError;

/// The raw record an output record was derived from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
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
    /// The headers naming this origin.
    pub fn to_headers(&self) -> [(&'static str, Vec<u8>); 5] {
        [
            (header::SOURCE, self.source.as_bytes().to_vec()),
            (header::DEDUP_KEY, self.dedup_key.as_bytes().to_vec()),
            (header::RAW_TOPIC, self.raw_topic.as_bytes().to_vec()),
            (header::RAW_PARTITION, self.raw_partition.to_string().into_bytes()),
            (header::RAW_OFFSET, self.raw_offset.to_string().into_bytes()),
        ]
    }

    /// Reads the origin from an output record's headers.
    pub fn from_headers<'a, I>(headers: I) -> Result<Self, HeaderError>
    where
        I: IntoIterator<Item = (&'a str, Option<&'a [u8]>)>,
    {
        let (mut source, mut key, mut topic, mut partition, mut offset) = (None, None, None, None, None);
        for (name, value) in headers {
            let slot = match name {
                header::SOURCE => &mut source,
                header::DEDUP_KEY => &mut key,
                header::RAW_TOPIC => &mut topic,
                header::RAW_PARTITION => &mut partition,
                header::RAW_OFFSET => &mut offset,
                _ => continue,
            };
            *slot = Some(value.unwrap_or_default());
        }
        let text = |name: &'static str, v: Option<&'a [u8]>| -> Result<&'a str, HeaderError> {
            let v = v.ok_or(HeaderError::Missing(name))?;
            std::str::from_utf8(v).map_err(|_| HeaderError::Invalid { name, why: "not UTF-8" })
        };
        Ok(Origin {
            source: text(header::SOURCE, source)?.to_owned(),
            dedup_key: text(header::DEDUP_KEY, key)?.to_owned(),
            raw_topic: text(header::RAW_TOPIC, topic)?.to_owned(),
            raw_partition: text(header::RAW_PARTITION, partition)?
                .parse()
                .map_err(|_| HeaderError::Invalid { name: header::RAW_PARTITION, why: "not an integer" })?,
            raw_offset: text(header::RAW_OFFSET, offset)?
                .parse()
                .map_err(|_| HeaderError::Invalid { name: header::RAW_OFFSET, why: "not an integer" })?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_round_trip() {
        let o = Origin {
            source: "shop".into(),
            dedup_key: "evt_9".into(),
            raw_topic: "hookline.raw".into(),
            raw_partition: 7,
            raw_offset: 123_456_789_012,
        };
        let headers = o.to_headers();
        let back = Origin::from_headers(headers.iter().map(|(k, v)| (*k, Some(v.as_slice())))).unwrap();
        assert_eq!(back, o);
        let partial = Origin::from_headers(headers.iter().skip(1).map(|(k, v)| (*k, Some(v.as_slice()))));
        assert_eq!(partial, Err(HeaderError::Missing(header::SOURCE)));
    }
}

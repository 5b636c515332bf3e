//! The DLQ topic's record: a raw record the processor could not turn into an event, with the reason.
//!
//! - key and value: the raw record's key and value, byte for byte.
//! - headers: the raw record's headers, intact, then the [`crate::output::Origin`] headers (raw topic,
//!   partition, offset) and the [`DlqMeta`] headers saying what failed.
//!
//! Fix the cause, then redrive the value and headers to the raw topic. JSON Schema of the record's JSON view:
//! `schemas/json/dlq-record.v1.schema.json`.

use crate::header;
use crate::raw::HeaderError;

/// Longest reason kept in [`header::DLQ_REASON`]; longer ones are cut at a character boundary.
pub const MAX_REASON_BYTES: usize = 1024;

/// What kind of failure sent a record to the DLQ. A small fixed set, usable as a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// The raw record's hookline headers are missing or invalid (not written by a hookline ingress).
    InvalidEnvelope,
    /// The body is not valid JSON.
    InvalidJson,
    /// The configured event-type field is absent from the body or headers.
    MissingType,
    /// The configured event-type field is present but not a non-empty string.
    InvalidType,
}

impl ErrorClass {
    /// Every class, in a fixed order (for metric label sets).
    pub const ALL: [ErrorClass; 4] =
        [ErrorClass::InvalidEnvelope, ErrorClass::InvalidJson, ErrorClass::MissingType, ErrorClass::InvalidType];

    /// The name written in the [`header::DLQ_CLASS`] header.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::InvalidEnvelope => "invalid_envelope",
            ErrorClass::InvalidJson => "invalid_json",
            ErrorClass::MissingType => "missing_type",
            ErrorClass::InvalidType => "invalid_type",
        }
    }

    /// Parses a name written by [`ErrorClass::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// The pipeline stage that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// Reading the raw record's headers.
    Envelope,
    /// Parsing the body.
    Parse,
    /// Mapping the parsed body to a CloudEvent.
    Normalize,
}

impl Stage {
    /// Every stage, in a fixed order.
    pub const ALL: [Stage; 3] = [Stage::Envelope, Stage::Parse, Stage::Normalize];

    /// The name written in the [`header::DLQ_STAGE`] header.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Envelope => "envelope",
            Stage::Parse => "parse",
            Stage::Normalize => "normalize",
        }
    }

    /// Parses a name written by [`Stage::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// Why a record is in the DLQ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DlqMeta {
    /// The kind of failure.
    pub class: ErrorClass,
    /// Where it failed.
    pub stage: Stage,
    /// A human-readable reason (never the body).
    pub reason: String,
    /// How many times the record was attempted.
    pub attempts: u32,
    /// When the record first failed, ms since the Unix epoch.
    pub first_failure_ms: i64,
}

impl DlqMeta {
    /// The headers describing the failure. The reason is cut to [`MAX_REASON_BYTES`].
    pub fn to_headers(&self) -> [(&'static str, Vec<u8>); 5] {
        [
            (header::DLQ_CLASS, self.class.as_str().as_bytes().to_vec()),
            (header::DLQ_STAGE, self.stage.as_str().as_bytes().to_vec()),
            (header::DLQ_REASON, truncate(&self.reason, MAX_REASON_BYTES).as_bytes().to_vec()),
            (header::DLQ_ATTEMPTS, self.attempts.to_string().into_bytes()),
            (header::DLQ_FIRST_FAILURE_MS, self.first_failure_ms.to_string().into_bytes()),
        ]
    }

    /// Reads the failure description from a DLQ record's headers.
    pub fn from_headers<'a, I>(headers: I) -> Result<Self, HeaderError>
    where
        I: IntoIterator<Item = (&'a str, Option<&'a [u8]>)>,
    {
        let (mut class, mut stage, mut reason, mut attempts, mut first) = (None, None, None, None, None);
        for (name, value) in headers {
            let slot = match name {
                header::DLQ_CLASS => &mut class,
                header::DLQ_STAGE => &mut stage,
                header::DLQ_REASON => &mut reason,
                header::DLQ_ATTEMPTS => &mut attempts,
                header::DLQ_FIRST_FAILURE_MS => &mut first,
                _ => continue,
            };
            *slot = Some(value.unwrap_or_default());
        }
        let text = |name: &'static str, v: Option<&'a [u8]>| -> Result<&'a str, HeaderError> {
            let v = v.ok_or(HeaderError::Missing(name))?;
            std::str::from_utf8(v).map_err(|_| HeaderError::Invalid { name, why: "not UTF-8" })
        };
        let invalid = |name: &'static str, why: &'static str| HeaderError::Invalid { name, why };
        Ok(DlqMeta {
            class: ErrorClass::parse(text(header::DLQ_CLASS, class)?)
                .ok_or(invalid(header::DLQ_CLASS, "unknown class"))?,
            stage: Stage::parse(text(header::DLQ_STAGE, stage)?).ok_or(invalid(header::DLQ_STAGE, "unknown stage"))?,
            reason: text(header::DLQ_REASON, reason)?.to_owned(),
            attempts: text(header::DLQ_ATTEMPTS, attempts)?
                .parse()
                .map_err(|_| invalid(header::DLQ_ATTEMPTS, "not an integer"))?,
            first_failure_ms: text(header::DLQ_FIRST_FAILURE_MS, first)?
                .parse()
                .map_err(|_| invalid(header::DLQ_FIRST_FAILURE_MS, "not an integer"))?,
        })
    }
}

/// Cuts `s` to at most `max` bytes at a character boundary.
pub fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_round_trip_and_reason_is_bounded() {
        let meta = DlqMeta {
            class: ErrorClass::InvalidJson,
            stage: Stage::Parse,
            reason: "é".repeat(MAX_REASON_BYTES),
            attempts: 1,
            first_failure_ms: 1_700_000_000_000,
        };
        let headers = meta.to_headers();
        let back = DlqMeta::from_headers(headers.iter().map(|(k, v)| (*k, Some(v.as_slice())))).unwrap();
        assert_eq!(back.class, ErrorClass::InvalidJson);
        assert_eq!(back.stage, Stage::Parse);
        assert_eq!(back.reason.len(), MAX_REASON_BYTES);
        assert_eq!(back.first_failure_ms, 1_700_000_000_000);
    }

    #[test]
    fn names_parse_back() {
        for c in ErrorClass::ALL {
            assert_eq!(ErrorClass::parse(c.as_str()), Some(c));
        }
        for s in Stage::ALL {
            assert_eq!(Stage::parse(s.as_str()), Some(s));
        }
        assert_eq!(truncate("abc", 2), "ab");
        assert_eq!(truncate("aé", 2), "a");
    }
}

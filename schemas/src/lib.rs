//! # hookline record contracts
//!
//! What hookline writes to Kafka, shared by the ingress (which writes raw records), the processor (which
//! reads them and writes events and DLQ records) and anyone consuming those topics.
//!
//! | topic  | key          | value                         | headers                                         |
//! |--------|--------------|-------------------------------|-------------------------------------------------|
//! | raw    | ordering key | request body, verbatim        | `hookline-meta`: [`raw::RawMeta`]                |
//! | events | ordering key | [`event::CloudEvent`] JSON    | `content-type`                                  |
//! | DLQ    | raw key      | raw value, verbatim           | raw headers, `hookline-dlq`: [`dlq::DlqMeta`]    |
//!
//! Each record kind has a JSON Schema in `schemas/json/` ([`json_schema`]); tests keep the Rust types, the
//! schema files and the records the running pipeline writes in agreement. `schemas/json/data/` describes the
//! `data` of events from the providers hookline has presets for, `schemas/examples/` holds example records of
//! every schema version, and [`compat`] (the `schemas-check` binary) checks that every version accepts its
//! examples and those of its earlier versions.

pub mod compat;
pub mod dlq;
pub mod event;
pub mod header;
pub mod json_schema;
pub mod output;
pub mod raw;
pub mod view;

/// The source name of whatever names no source this process knows: a request to a source the ingress does
/// not configure, a record whose metadata names none (in its DLQ record), and the `source` label of both in
/// metrics (a source the processor's config does not name included), so unknown names never become labels.
/// It is not a valid source name, so no configured source can take it.
pub const UNKNOWN_SOURCE: &str = "_unknown";

/// Source names: 1 to 64 characters of `a-z`, `0-9`, `_` and `-`, starting with a letter or digit.
/// They appear in URLs, Kafka headers, metric labels and CloudEvents `source` attributes.
pub fn is_valid_source_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 64
        && bytes[0].is_ascii_alphanumeric()
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_' || *b == b'-')
}

#[cfg(test)]
mod tests {
    #[test]
    fn source_names() {
        for ok in ["shop", "stripe-live", "a", "github_2", "0x"] {
            assert!(super::is_valid_source_name(ok), "{ok}");
        }
        for bad in ["", "Shop", "-x", "a/b", "a b", &"x".repeat(65)] {
            assert!(!super::is_valid_source_name(bad), "{bad}");
        }
    }
}

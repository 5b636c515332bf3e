//! The raw record's and the DLQ record's metadata headers, as the processor and the CLI read them from Kafka,
//! over any bytes: read or refused with a reason, never a panic; what is read writes back to the same.
#![no_main]

use hookline_schemas::dlq::DlqMeta;
use hookline_schemas::raw::RawMeta;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The input is the header's value, given twice when it starts with `2` (the last one counts).
    let headers: Vec<(&str, Option<&[u8]>)> = match data.split_first() {
        Some((b'2', rest)) => vec![("hookline-meta", Some(b"{}")), ("hookline-meta", Some(rest))],
        _ => vec![("hookline-meta", Some(data))],
    };
    if let Ok(meta) = RawMeta::from_headers(headers.iter().copied()) {
        let (name, value) = meta.to_header();
        assert_eq!(RawMeta::from_headers([(name, Some(value.as_slice()))]), Ok(meta));
    }
    let headers = [("hookline-dlq", Some(data))];
    if let Ok(meta) = DlqMeta::from_headers(headers) {
        let (name, value) = meta.to_header();
        assert_eq!(DlqMeta::from_headers([(name, Some(value.as_slice()))]), Ok(meta));
    }
});

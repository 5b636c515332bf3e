//! Dedup and ordering key extraction (every provider's keys, a configured JSON pointer, the body hash
//! fallback) over any request: always a dedup key, both keys within the bounded length, never a panic.
#![no_main]

use hookline_fuzz::Request;
use hookline_providers::keys::{keys, KeySelector};
use hookline_schemas::raw::MAX_KEY_BYTES;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(req) = Request::parse(data) else { return };
    let source = req.source();
    let provider = keys(source.dedup_key.as_ref(), source.ordering_key.as_ref(), &req.headers, &req.body);
    // The request target, read as a configured JSON pointer (`/data/object/id`), and as a header name.
    let pointer = KeySelector::pointer(req.uri.path().to_owned());
    let configured = keys(Some(&pointer), Some(&pointer), &req.headers, &req.body);
    for k in [&provider, &configured] {
        assert!(!k.dedup.is_empty() && k.dedup.len() <= MAX_KEY_BYTES, "dedup key {:?}", k.dedup);
        assert!(!k.ordering.is_empty() && k.ordering.len() <= MAX_KEY_BYTES, "ordering key {:?}", k.ordering);
    }
    // A request gets the same keys each time (a redelivery must be recognised as one).
    let again = keys(source.dedup_key.as_ref(), source.ordering_key.as_ref(), &req.headers, &req.body);
    assert_eq!(provider, again);
});

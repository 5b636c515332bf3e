//! The processor's pipeline over any webhook of any source (every provider's preset, the form and JSON body
//! paths, batches, routes and filters): CloudEvents that are JSON, or a DLQ reason, never a panic.
#![no_main]

use hookline_fuzz::{Request, PIPELINE};
use hookline_processor::fuzzing::record;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(req) = Request::parse(data) else { return };
    let source = req.pipeline_source();
    let meta = req.raw_meta(source);
    match record(&PIPELINE, &[("hookline-meta", &meta)], Some(b"ordering-key"), &req.body) {
        Ok(events) => {
            for event in events {
                let event: serde_json::Value = serde_json::from_slice(&event).expect("an event is JSON");
                assert_eq!(event["specversion"], "1.0", "{event}");
                assert!(event["type"].as_str().is_some_and(|t| !t.is_empty()), "{event}");
                assert_eq!(event["hooklinesource"].as_str(), Some(source), "{event}");
            }
        }
        Err(reason) => assert!(!reason.is_empty()),
    }
});

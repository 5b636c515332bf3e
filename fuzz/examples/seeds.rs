//! Writes the seed corpus of the fuzz targets into `fuzz/seeds/<target>/`: for `verify`, `keys` and `pipeline`
//! a realistic webhook of every source, signed as its provider signs it; for `raw_meta` the metadata headers
//! the ingress and the processor write; for `config` the example configs. It checks on the way that every
//! signed seed verifies and every pipeline seed publishes, so the fuzzer starts past the signature check.
//!
//! `make fuzz-seeds` runs it; the seeds are committed.

use std::path::Path;

use hookline_fuzz::{Request, BASE_URL, NOW_SECS, PIPELINE, PIPELINE_SOURCES, SOURCES};
use hookline_providers::sample::{self, Run, Webhook};
use hookline_providers::verify::Outgoing;
use http::{HeaderMap, HeaderValue, Method};

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    let run = Run { id: "fuzzseed".to_owned(), now: NOW_SECS };
    let mut rng = fastrand::Rng::with_seed(7);
    let sample = |name: &str, rng: &mut fastrand::Rng| -> Webhook {
        match hookline_providers::find(name) {
            Some(p) => p.sample(p.default_event(), &run, 1, rng),
            None => sample::generic("charge.succeeded", &run, 1, rng),
        }
    };
    let write = |target: &str, name: &str, bytes: &[u8]| {
        let path = dir.join(target).join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, bytes).unwrap();
    };

    for (selector, source) in SOURCES.iter().enumerate() {
        let selector = u8::try_from(selector).unwrap();
        let webhook = sample(&source.name, &mut rng);
        let target = format!("/webhooks/{}", source.name);
        let url = format!("{BASE_URL}{target}");
        let out = Outgoing {
            method: &Method::POST,
            url: &url,
            content_type: webhook.content_type,
            body: &webhook.body,
            timestamp_secs: NOW_SECS,
            id: &webhook.id,
        };
        let mut headers = source.verifier.sign_request(&out).unwrap();
        add_headers(&mut headers, &webhook);
        let input = Request::encode(selector, &Method::POST, &target, &headers, &webhook.body);
        let req = Request::parse(&input).unwrap();
        assert_eq!(req.source().name, source.name);
        if let Err(e) = source.verifier.verify(&req.view(), bytes::Bytes::from(req.body.clone())) {
            panic!("the {} seed does not verify: {e}", source.name);
        }
        write("verify", &source.name, &input);
        write("keys", &source.name, &input);
    }

    for (selector, name) in PIPELINE_SOURCES.iter().enumerate() {
        let selector = u8::try_from(selector).unwrap();
        let webhook = sample(name, &mut rng);
        let mut headers = HeaderMap::new();
        add_headers(&mut headers, &webhook);
        let input = Request::encode(selector, &Method::POST, "/", &headers, &webhook.body);
        let req = Request::parse(&input).unwrap();
        let meta = req.raw_meta(name);
        match hookline_processor::fuzzing::record(&PIPELINE, &[("hookline-meta", &meta)], Some(b"k"), &req.body) {
            Ok(events) if !events.is_empty() => {}
            other => panic!("the {name} pipeline seed publishes nothing: {other:?}"),
        }
        write("pipeline", name, &input);
        write("raw_meta", &format!("raw-{name}"), &meta);
    }
    let dlq = hookline_schemas::dlq::DlqMeta {
        v: hookline_schemas::header::VERSION,
        source: "stripe".to_owned(),
        dedup_key: "evt_1".to_owned(),
        raw_topic: "hookline.raw".to_owned(),
        raw_partition: 3,
        raw_offset: 77,
        class: hookline_schemas::dlq::ErrorClass::InvalidJson,
        stage: hookline_schemas::dlq::Stage::Parse,
        reason: "body is not JSON: expected value at line 1 column 1".to_owned(),
        attempts: 1,
        first_failure_ms: NOW_SECS * 1000,
    };
    write("raw_meta", "dlq", &dlq.to_header().1);

    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for example in ["ingress", "processor"] {
        let text = std::fs::read(root.join(format!("deploy/{example}.example.toml"))).unwrap();
        write("config", &format!("{example}.example"), &text);
    }
    write("config", "ingress-every-scheme", hookline_fuzz::ingress_config().as_bytes());
    write("config", "processor-every-provider", hookline_fuzz::processor_config().as_bytes());
    write("config", "with-overrides", b"[server]\nlisten = \"127.0.0.1:0\"\n\0HOOKLINE_SERVER__MAX_IN_FLIGHT=7\n");
    println!("seeds written to {}", dir.display());
}

/// The webhook's own headers and content type, next to the signature's.
fn add_headers(headers: &mut HeaderMap, webhook: &Webhook) {
    for (name, value) in &webhook.headers {
        headers.append(name.clone(), HeaderValue::from_str(value).unwrap());
    }
    headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static(webhook.content_type));
}
